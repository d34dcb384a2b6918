"""Neutron ports through the unmodified `openstack` CLI: each is a bridge
port with the same id, its address from the subnet's pool and a DHCP host
entry for it."""
import json
import urllib.request

from test_networks import ok


def get(server, path):
    with urllib.request.urlopen(server.api + path, timeout=5) as r:
        return json.load(r)


def neutron(server, path):
    with urllib.request.urlopen(server.endpoint + path, timeout=5) as r:
        return json.load(r)


def test_port_lifecycle_is_a_bridge_port(openstack, server):
    net = json.loads(ok(openstack, "network", "create", "p-net", "-f", "json"))
    sub = json.loads(ok(openstack, "subnet", "create", "--network", "p-net", "--subnet-range", "10.20.0.0/24",
                        "p-sub", "-f", "json"))
    p1 = json.loads(ok(openstack, "port", "create", "--network", "p-net", "vm-a", "-f", "json"))
    assert p1["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.20.0.2"}]
    assert p1["mac_address"].startswith("fa:16:3e:")
    raw = neutron(server, "/v2.0/ports/%s" % p1["id"])["port"]
    assert raw["binding:vif_type"] == "unbound" and raw["status"] == "DOWN"
    assert raw["network_id"] == net["id"] and len(raw["security_groups"]) == 1, "the default group"
    bp = get(server, "/ports/%s" % p1["id"])
    assert bp["deviceId"] == net["id"] and bp["type"] == "Bridge", "a bridge port with the port's id"
    (d,) = get(server, "/bridges/%s/dhcp" % net["id"])
    hosts = get(server, "/bridges/%s/dhcp/10.20.0.0_24/hosts" % net["id"])
    assert {"macAddr": p1["mac_address"], "ipAddr": "10.20.0.2"}.items() <= hosts[0].items()

    p2 = json.loads(ok(openstack, "port", "create", "--network", "p-net", "--fixed-ip",
                       "subnet=p-sub,ip-address=10.20.0.50", "--device-owner", "compute:nova", "vm-b", "-f", "json"))
    assert p2["fixed_ips"][0]["ip_address"] == "10.20.0.50"
    code, _, err = openstack("port", "create", "--network", "p-net", "--fixed-ip",
                             "subnet=p-sub,ip-address=10.20.0.50", "vm-c")
    assert code != 0 and "409" in err and "already allocated" in err
    code, _, err = openstack("port", "create", "--network", "p-net", "--fixed-ip",
                             "subnet=p-sub,ip-address=10.99.0.5", "vm-d")
    assert code != 0 and "not a valid IP" in err

    names = {p["Name"] for p in json.loads(ok(openstack, "port", "list", "--network", "p-net", "-f", "json"))}
    assert names == {"vm-a", "vm-b"}
    owned = [p["Name"] for p in json.loads(ok(openstack, "port", "list", "--device-owner", "compute:nova", "-f", "json"))]
    assert owned == ["vm-b"]
    ok(openstack, "port", "set", "--name", "vm-a2", "--disable", "vm-a")
    assert get(server, "/ports/%s" % p1["id"])["adminStateUp"] is False
    # A binding host no agent registered: the binding fails, visibly.
    ok(openstack, "port", "set", "--host", "no-such-host", "vm-a2")
    assert neutron(server, "/v2.0/ports/%s" % p1["id"])["port"]["binding:vif_type"] == "binding_failed"
    by_ip = neutron(server, "/v2.0/ports?fixed_ips=ip_address%3D10.20.0.50")["ports"]
    assert [p["name"] for p in by_ip] == ["vm-b"]

    # In use: the network and the subnet refuse to go while ports hold them.
    code, _, err = openstack("subnet", "delete", "p-sub")
    assert code != 0 and "409" in err
    code, _, err = openstack("network", "delete", "p-net")
    assert code != 0 and "409" in err

    ok(openstack, "port", "delete", "vm-a2", "vm-b")
    code, _, _ = openstack("port", "show", "vm-b")
    assert code != 0
    try:
        get(server, "/ports/%s" % p1["id"])
        raise AssertionError("the bridge port outlived the Neutron port")
    except urllib.error.HTTPError as e:
        assert e.code == 404
    assert get(server, "/bridges/%s/dhcp/10.20.0.0_24/hosts" % net["id"]) == []
    ok(openstack, "subnet", "delete", "p-sub")
    ok(openstack, "network", "delete", "p-net")


def test_concurrent_creates_get_distinct_addresses(openstack, server):
    import threading
    net = json.loads(ok(openstack, "network", "create", "c-net", "-f", "json"))
    ok(openstack, "subnet", "create", "--network", "c-net", "--subnet-range", "10.30.0.0/24", "c-sub")
    got, errors = [], []

    def create():
        req = urllib.request.Request(server.endpoint + "/v2.0/ports",
                                     data=json.dumps({"port": {"network_id": net["id"]}}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                got.append(json.load(r)["port"]["fixed_ips"][0]["ip_address"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=create) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert len(got) == 20 and len(set(got)) == 20, "two ports got the same address: %s" % sorted(got)
