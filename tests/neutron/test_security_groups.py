"""Security groups and rules through the unmodified `openstack` CLI, and the
chains they become: a port with the default group gets its own chains
jumping to the group's."""
import json
import urllib.request

from test_networks import ok


def get(server, path):
    with urllib.request.urlopen(server.api + path, timeout=5) as r:
        return json.load(r)


def test_groups_rules_and_port_chains(openstack, server):
    groups = json.loads(ok(openstack, "security", "group", "list", "-f", "json"))
    default = [g for g in groups if g["Name"] == "default"]
    assert len(default) == 1, "a default group per project, made on first use"
    drules = json.loads(ok(openstack, "security", "group", "rule", "list", default[0]["ID"], "-f", "json"))
    assert len(drules) == 4, drules  # egress v4/v6, ingress v4/v6 from the group

    sg = json.loads(ok(openstack, "security", "group", "create", "--description", "web", "web", "-f", "json"))
    assert sg["description"] == "web"
    assert len(sg["rules"]) == 2, "egress IPv4 and IPv6"
    r22 = json.loads(ok(openstack, "security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                        "--dst-port", "22", "web", "-f", "json"))
    assert r22["port_range_min"] == 22 and r22["remote_ip_prefix"] == "0.0.0.0/0"
    code, _, err = openstack("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                             "--dst-port", "22", "web")
    assert code != 0 and "409" in err and "already exists" in err
    code, _, err = openstack("security", "group", "rule", "create", "--ingress", "--protocol", "bogus", "web")
    assert code != 0 and "400" in err and "not supported" in err
    # The rule is an ACCEPT in the group's ingress chain.
    chains = {c["name"]: c["id"] for c in get(server, "/chains")}
    ingress = chains["OS_SG_%s_INGRESS" % sg["id"]]
    accepts = get(server, "/chains/%s/rules" % ingress)
    assert any(a["id"] == r22["id"] and a["type"] == "accept" and a["nwProto"] == 6
               and a["tpDst"] == {"start": 22, "end": 22} for a in accepts), accepts

    ok(openstack, "network", "create", "sg-net")
    ok(openstack, "subnet", "create", "--network", "sg-net", "--subnet-range", "10.40.0.0/24", "sg-sub")
    p = json.loads(ok(openstack, "port", "create", "--network", "sg-net", "--security-group", "web",
                      "--allowed-address", "ip-address=10.40.0.200", "sg-vm", "-f", "json"))
    assert p["security_group_ids"] == [sg["id"]]
    bp = get(server, "/ports/%s" % p["id"])
    inbound = get(server, "/chains/%s/rules" % bp["inboundFilterId"])
    assert inbound[0]["type"] == "jump", "anti-spoofing first"
    spoof = get(server, "/chains/%s/rules" % inbound[0]["jumpChainId"])
    srcs = {x.get("nwSrcAddress") for x in spoof if x["type"] == "return"}
    assert {"10.40.0.2", "10.40.0.200"} <= srcs, spoof
    outbound = get(server, "/chains/%s/rules" % bp["outboundFilterId"])
    assert any(x["type"] == "jump" and x["jumpChainId"] == ingress for x in outbound)
    group = get(server, "/ip_addr_groups/%s/ip_addrs" % sg["id"])
    assert [a["addr"] for a in group] == ["10.40.0.2"]

    code, _, err = openstack("security", "group", "delete", "web")
    assert code != 0 and "409" in err and "in use" in err
    # Port security off: no groups, no chains.
    ok(openstack, "port", "set", "--no-security-group", "--disable-port-security", "sg-vm")
    bp = get(server, "/ports/%s" % p["id"])
    assert bp["inboundFilterId"] is None and bp["outboundFilterId"] is None
    assert get(server, "/ip_addr_groups/%s/ip_addrs" % sg["id"]) == []
    ok(openstack, "security", "group", "rule", "delete", r22["id"])
    assert not any(a["id"] == r22["id"] for a in get(server, "/chains/%s/rules" % ingress))
    ok(openstack, "security", "group", "delete", "web")
    code, _, err = openstack("security", "group", "show", "web")
    assert code != 0
