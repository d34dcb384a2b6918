"""Routers, gateways, interfaces and floating IPs through the unmodified
`openstack` CLI, checked against what they translate to in the MidoNet API:
a router with the same id, router ports linked to the interfaces' bridge
ports, routes, and the NAT rules of the gateway and the floating IP."""
import json
import urllib.request

from test_networks import ok


def get(server, path):
    with urllib.request.urlopen(server.api + path, timeout=5) as r:
        return json.load(r)


def rules(server, chain):
    return get(server, "/chains/%s/rules" % chain)


def test_router_gateway_interfaces_and_floating_ip(openstack, server):
    ok(openstack, "network", "create", "--external", "r-public")
    ok(openstack, "subnet", "create", "--network", "r-public", "--subnet-range", "198.51.100.0/24",
       "r-public-sub")
    ok(openstack, "network", "create", "r-net")
    sub = json.loads(ok(openstack, "subnet", "create", "--network", "r-net", "--subnet-range", "10.30.0.0/24",
                        "r-sub", "-f", "json"))
    r = json.loads(ok(openstack, "router", "create", "r1", "-f", "json"))
    mr = get(server, "/routers/%s" % r["id"])
    assert mr["name"] == "r1" and mr["inboundFilterId"] and mr["outboundFilterId"]

    ok(openstack, "router", "set", "--external-gateway", "r-public", "r1")
    shown = json.loads(ok(openstack, "router", "show", "r1", "-f", "json"))
    gw = shown["external_gateway_info"]
    assert gw["enable_snat"] is True
    gw_ip = gw["external_fixed_ips"][0]["ip_address"]
    assert gw_ip == "198.51.100.2", "the first pool address"
    snat = [x for x in rules(server, mr["outboundFilterId"]) if x["type"] == "snat"]
    assert snat and snat[0]["natTargets"][0]["addressFrom"] == gw_ip
    assert any(x["type"] == "rev_snat" for x in rules(server, mr["inboundFilterId"]))
    routes = get(server, "/routers/%s/routes" % r["id"])
    assert any(x["dstNetworkAddr"] == "0.0.0.0" and x["nextHopGateway"] == "198.51.100.1" for x in routes), routes

    ok(openstack, "router", "add", "subnet", "r1", "r-sub")
    ports = json.loads(ok(openstack, "port", "list", "--router", "r1", "-f", "json", "-c", "ID", "-c", "Fixed IP Addresses"))
    assert len(ports) == 2
    iface = [p for p in ports if "10.30.0.1" in json.dumps(p["Fixed IP Addresses"])]
    assert iface, ports
    bp = get(server, "/ports/%s" % iface[0]["ID"])
    peer = get(server, "/ports/%s" % bp["peerId"])
    assert peer["deviceId"] == r["id"] and peer["portAddress"] == "10.30.0.1" and peer["networkLength"] == 24
    routes = get(server, "/routers/%s/routes" % r["id"])
    assert any(x["dstNetworkAddr"] == "10.30.0.0" and x["dstNetworkLength"] == 24 for x in routes)
    code, _, err = openstack("router", "add", "subnet", "r1", "r-sub")
    assert code != 0 and "400" in err and "already has a port" in err
    code, _, err = openstack("port", "delete", iface[0]["ID"])
    assert code != 0 and "409" in err, "an interface goes with the router operation"

    # Extra routes: the next hop must be on one of the router's networks.
    ok(openstack, "router", "set", "--route", "destination=10.99.0.0/16,gateway=10.30.0.254", "r1")
    routes = get(server, "/routers/%s/routes" % r["id"])
    assert any(x["dstNetworkAddr"] == "10.99.0.0" and x["nextHopGateway"] == "10.30.0.254" for x in routes)
    code, _, err = openstack("router", "set", "--route", "destination=10.98.0.0/16,gateway=172.16.0.1", "r1")
    assert code != 0 and "400" in err and "not connected" in err
    ok(openstack, "router", "unset", "--route", "destination=10.99.0.0/16,gateway=10.30.0.254", "r1")
    assert not any(x["dstNetworkAddr"] == "10.99.0.0" for x in get(server, "/routers/%s/routes" % r["id"]))

    # A floating IP: DNAT and SNAT on the router once associated.
    vm = json.loads(ok(openstack, "port", "create", "--network", "r-net", "r-vm", "-f", "json"))
    fip = json.loads(ok(openstack, "floating", "ip", "create", "r-public", "-f", "json"))
    assert fip["status"] == "DOWN" and fip["floating_ip_address"] == "198.51.100.3"
    ok(openstack, "floating", "ip", "set", "--port", vm["id"], fip["id"])
    f = json.loads(ok(openstack, "floating", "ip", "show", fip["id"], "-f", "json"))
    assert f["status"] == "ACTIVE" and f["router_id"] == r["id"] and f["fixed_ip_address"] == "10.30.0.2"
    dnat = [x for x in rules(server, mr["inboundFilterId"]) if x["type"] == "dnat"]
    assert dnat and dnat[0]["nwDstAddress"] == "198.51.100.3" and dnat[0]["position"] == 1
    assert dnat[0]["natTargets"][0]["addressFrom"] == "10.30.0.2"
    code, _, err = openstack("router", "remove", "subnet", "r1", "r-sub")
    assert code != 0 and "409" in err, "the floating IP needs the interface"
    code, _, err = openstack("router", "unset", "--external-gateway", "r1")
    assert code != 0 and "409" in err, "the floating IP needs the gateway"
    ok(openstack, "floating", "ip", "unset", "--port", fip["id"])
    assert not [x for x in rules(server, mr["inboundFilterId"]) if x["type"] == "dnat"]
    ok(openstack, "floating", "ip", "delete", fip["id"])
    code, _, err = openstack("floating", "ip", "show", fip["id"])
    assert code != 0 and "No FloatingIP found" in err

    # Order of teardown Neutron asks for.
    code, _, err = openstack("router", "delete", "r1")
    assert code != 0 and "409" in err and "still has ports" in err
    ok(openstack, "port", "delete", "r-vm")
    ok(openstack, "router", "remove", "subnet", "r1", "r-sub")
    assert peer["id"] not in [p["id"] for p in get(server, "/routers/%s/ports" % r["id"])]
    ok(openstack, "router", "unset", "--external-gateway", "r1")
    assert get(server, "/routers/%s/ports" % r["id"]) == []
    assert not [x for x in rules(server, mr["outboundFilterId"]) if x["type"] == "snat"]
    ok(openstack, "router", "delete", "r1")
    code, _, err = openstack("router", "show", "r1")
    assert code != 0 and "No Router found" in err
    assert sub["id"]
    ok(openstack, "subnet", "delete", "r-sub")
    ok(openstack, "network", "delete", "r-net")


def test_gateway_needs_an_external_network(openstack):
    ok(openstack, "network", "create", "g-internal")
    ok(openstack, "router", "create", "g1")
    code, _, err = openstack("router", "set", "--external-gateway", "g-internal", "g1")
    assert code != 0 and "400" in err and "not a valid external network" in err
    code, _, err = openstack("floating", "ip", "create", "g-internal")
    assert code != 0 and "400" in err
