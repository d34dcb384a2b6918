"""Neutron networks through the unmodified `openstack` CLI: each is a
MidoNet bridge with the same id."""
import json
import urllib.request


def ok(run, *args):
    code, out, err = run(*args)
    assert code == 0, "openstack %s: %s" % (" ".join(args), err)
    return out


def bridges(server):
    with urllib.request.urlopen(server.api + "/bridges", timeout=5) as r:
        return {b["id"]: b for b in json.load(r)}


def test_discovery_and_extensions(openstack):
    out = json.loads(ok(openstack, "extension", "list", "--network", "-f", "json"))
    aliases = {e["Alias"] for e in out}
    assert {"external-net", "net-mtu", "project-id"} <= aliases


def test_network_lifecycle_is_a_bridge(openstack, server):
    net = json.loads(ok(openstack, "network", "create", "--description", "d1", "tenant-net", "-f", "json"))
    assert net["name"] == "tenant-net" and net["description"] == "d1"
    assert net["admin_state_up"] is True and net["status"] == "ACTIVE"
    assert net["mtu"] == 1450 and net["subnets"] == [] and net["router:external"] is False
    b = bridges(server)[net["id"]]
    assert b["name"] == "tenant-net", "the bridge has the network's id and name"

    ext = json.loads(ok(openstack, "network", "create", "--external", "public", "-f", "json"))
    assert ext["router:external"] is True

    names = [n["Name"] for n in json.loads(ok(openstack, "network", "list", "-f", "json"))]
    assert "tenant-net" in names and "public" in names
    external = [n["Name"] for n in json.loads(ok(openstack, "network", "list", "--external", "-f", "json"))]
    assert external == ["public"], "the router:external filter filters"

    ok(openstack, "network", "set", "--name", "renamed", "--disable", "tenant-net")
    shown = json.loads(ok(openstack, "network", "show", "renamed", "-f", "json"))
    assert shown["admin_state_up"] is False and shown["revision_number"] == 2
    b = bridges(server)[net["id"]]
    assert b["name"] == "renamed" and b["adminStateUp"] is False, "the update reaches the bridge"

    ok(openstack, "network", "delete", "renamed", "public")
    assert net["id"] not in bridges(server) and ext["id"] not in bridges(server)
    code, _, err = openstack("network", "show", "renamed")
    assert code != 0 and "No Network found" in err


def test_errors_are_neutron_errors(openstack, server):
    code, _, err = openstack("network", "show", "no-such-network")
    assert code != 0 and "No Network found for no-such-network" in err
    net = json.loads(ok(openstack, "network", "create", "busy", "-f", "json"))
    # A port on its bridge (made through the MidoNet API) keeps it in use.
    req = urllib.request.Request(server.api + "/bridges/%s/ports" % net["id"], data=b"{}",
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=5).read()
    code, _, err = openstack("network", "delete", "busy")
    assert code != 0 and "409" in err and "ports still in use" in err
    assert net["id"] in bridges(server), "nothing was deleted"
    # Bad input: a 400 with Neutron's error body.
    req = urllib.request.Request(server.endpoint + "/v2.0/networks", data=b'{"network": {"bogus": 1}}',
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("an unknown attribute was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 400
        body = json.load(e)
        assert body["NeutronError"]["type"] == "HTTPBadRequest"
        assert "bogus" in body["NeutronError"]["message"]
