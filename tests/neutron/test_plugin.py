"""MidoNet's own Neutron endpoints (`/midonet-api/neutron` on the MidoNet
API's port), posted as the networking-midonet plugin does: the Neutron dict
without its envelope, with the ids and addresses Neutron chose."""
import json
import urllib.error
import urllib.request
import uuid


def call(server, method, path, body=None):
    req = urllib.request.Request(server.api + "/neutron" + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/vnd.org.midonet.neutron.Network-v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def get(server, path):
    with urllib.request.urlopen(server.api + path, timeout=5) as r:
        return json.load(r)


def test_the_plugin_posts_neutron_objects_with_their_ids(server):
    code, index = call(server, "GET", "")
    assert code == 200 and index["networks"].endswith("/neutron/networks")
    assert index["add_router_interface_template"].endswith("/routers/{id}/add_router_interface")

    net, sub, port, router, iface = (str(uuid.uuid4()) for _ in range(5))
    code, n = call(server, "POST", "/networks", {
        "id": net, "name": "plug-net", "tenant_id": "t1", "admin_state_up": True, "shared": False,
        "status": "ACTIVE", "subnets": [], "router:external": False, "mtu": 1450,
        "created_at": "2024-01-01T00:00:00Z", "revision_number": 1, "tags": []})
    assert code == 201 and n["id"] == net, n
    assert get(server, "/bridges/%s" % net)["name"] == "plug-net", "the bridge has the plugin's id"
    code, s = call(server, "POST", "/subnets", {
        "id": sub, "network_id": net, "tenant_id": "t1", "ip_version": 4, "cidr": "10.61.0.0/24",
        "gateway_ip": "10.61.0.1", "allocation_pools": [{"start": "10.61.0.2", "end": "10.61.0.254"}],
        "enable_dhcp": True, "dns_nameservers": [], "host_routes": [], "subnetpool_id": None})
    assert code == 201 and s["id"] == sub, s
    code, p = call(server, "POST", "/ports", {
        "id": port, "network_id": net, "tenant_id": "t1", "mac_address": "fa:16:3e:11:22:33",
        "fixed_ips": [{"subnet_id": sub, "ip_address": "10.61.0.7"}], "device_owner": "compute:nova",
        "device_id": str(uuid.uuid4()), "status": "DOWN", "binding:vif_type": "unbound",
        "admin_state_up": True, "security_groups": []})
    assert code == 201 and p["id"] == port and p["fixed_ips"][0]["ip_address"] == "10.61.0.7", p
    assert get(server, "/ports/%s" % port)["deviceId"] == net, "the bridge port has the Neutron port's id"
    code, u = call(server, "PUT", "/ports/%s" % port, dict(p, name="renamed"))
    assert code == 200 and u["name"] == "renamed", u

    # A router interface as Neutron makes it: the port first, then the call.
    code, r = call(server, "POST", "/routers", {"id": router, "name": "plug-r", "tenant_id": "t1",
                                                 "admin_state_up": True, "status": "ACTIVE"})
    assert code == 201 and r["id"] == router, r
    code, ip = call(server, "POST", "/ports", {
        "id": iface, "network_id": net, "tenant_id": "t1", "mac_address": "fa:16:3e:11:22:01",
        "fixed_ips": [{"subnet_id": sub, "ip_address": "10.61.0.1"}],
        "device_owner": "network:router_interface", "device_id": router})
    assert code == 201, ip
    code, a = call(server, "PUT", "/routers/%s/add_router_interface" % router,
                   {"id": router, "port_id": iface, "subnet_id": sub, "tenant_id": "t1"})
    assert code == 200 and a["port_id"] == iface, a
    rports = get(server, "/routers/%s/ports" % router)
    assert [x["portAddress"] for x in rports] == ["10.61.0.1"] and rports[0]["peerId"] == iface

    code, _ = call(server, "PUT", "/routers/%s/remove_router_interface" % router, {"id": router, "port_id": iface})
    assert code == 200
    # Neutron then deletes the port, which went with the interface: no error.
    assert call(server, "DELETE", "/ports/%s" % iface)[0] == 204
    for path in ("/ports/" + port, "/routers/" + router, "/subnets/" + sub, "/networks/" + net):
        assert call(server, "DELETE", path)[0] == 204, path
    assert all(b["id"] != net for b in get(server, "/bridges"))
    code, e = call(server, "GET", "/lb/pools")
    assert code == 404 and "NeutronError" in e
