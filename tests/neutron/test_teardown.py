"""Deleting in Neutron removes everything it derived: a whole cloud made
through the `openstack` CLI and taken down again leaves no bridge, router,
port, chain or address group behind in the MidoNet API (a fresh server:
this module's own)."""
import json
import urllib.request

from test_networks import ok


def get(server, path):
    with urllib.request.urlopen(server.api + path, timeout=5) as r:
        return json.load(r)


def test_a_cloud_taken_down_leaves_nothing(openstack, server):
    ok(openstack, "network", "create", "--external", "td-public")
    ok(openstack, "subnet", "create", "--network", "td-public", "--subnet-range", "198.51.100.0/24", "td-pub-sub")
    ok(openstack, "network", "create", "td-net")
    ok(openstack, "subnet", "create", "--network", "td-net", "--subnet-range", "10.50.0.0/24", "td-sub")
    ok(openstack, "router", "create", "td-r")
    ok(openstack, "router", "set", "--external-gateway", "td-public", "td-r")
    ok(openstack, "router", "add", "subnet", "td-r", "td-sub")
    ok(openstack, "router", "set", "--route", "destination=10.99.0.0/16,gateway=10.50.0.254", "td-r")
    ok(openstack, "security", "group", "create", "td-web")
    ok(openstack, "security", "group", "rule", "create", "--ingress", "--protocol", "tcp", "--dst-port", "80", "td-web")
    ok(openstack, "port", "create", "--network", "td-net", "td-vm1")
    vm2 = json.loads(ok(openstack, "port", "create", "--network", "td-net", "--security-group", "td-web",
                        "--allowed-address", "ip-address=10.50.0.200", "td-vm2", "-f", "json"))
    fip = json.loads(ok(openstack, "floating", "ip", "create", "--port", vm2["id"], "td-public", "-f", "json"))
    assert get(server, "/bridges") and get(server, "/routers") and get(server, "/chains")

    ok(openstack, "floating", "ip", "delete", fip["id"])
    ok(openstack, "port", "delete", "td-vm1", "td-vm2")
    ok(openstack, "router", "unset", "--route", "destination=10.99.0.0/16,gateway=10.50.0.254", "td-r")
    ok(openstack, "router", "remove", "subnet", "td-r", "td-sub")
    ok(openstack, "router", "unset", "--external-gateway", "td-r")
    ok(openstack, "router", "delete", "td-r")
    ok(openstack, "subnet", "delete", "td-sub", "td-pub-sub")
    ok(openstack, "network", "delete", "td-net", "td-public")
    ok(openstack, "security", "group", "delete", "td-web")
    for g in json.loads(ok(openstack, "security", "group", "list", "-f", "json")):
        ok(openstack, "security", "group", "delete", g["ID"])

    for path in ("/bridges", "/routers", "/ports", "/chains", "/ip_addr_groups", "/port_groups"):
        assert get(server, path) == [], "%s left behind: %s" % (path, get(server, path))
    for coll in ("networks", "subnets", "ports", "routers", "floatingips", "security-group-rules"):
        with urllib.request.urlopen(server.endpoint + "/v2.0/" + coll, timeout=5) as r:
            left = json.load(r)[coll.replace("-", "_")]
        assert left == [], "Neutron %s left: %s" % (coll, left)
