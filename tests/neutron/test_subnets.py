"""Neutron subnets through the unmodified `openstack` CLI: each is the DHCP
subnet of its network's bridge, with the same id."""
import json
import urllib.request

from test_networks import ok


def dhcp_subnets(server, bridge):
    with urllib.request.urlopen(server.api + "/bridges/%s/dhcp" % bridge, timeout=5) as r:
        return json.load(r)


def test_subnet_lifecycle_is_a_dhcp_subnet(openstack, server):
    net = json.loads(ok(openstack, "network", "create", "sn-net", "-f", "json"))
    sub = json.loads(ok(openstack, "subnet", "create", "--network", "sn-net", "--subnet-range", "10.7.0.5/24",
                        "--dns-nameserver", "10.7.0.53", "sub-a", "-f", "json"))
    assert sub["cidr"] == "10.7.0.0/24" and sub["gateway_ip"] == "10.7.0.1"
    assert sub["allocation_pools"] == [{"start": "10.7.0.2", "end": "10.7.0.254"}]
    assert sub["enable_dhcp"] is True and sub["ip_version"] == 4
    shown = json.loads(ok(openstack, "network", "show", "sn-net", "-f", "json"))
    assert shown["subnets"] == [sub["id"]]
    (d,) = dhcp_subnets(server, net["id"])
    assert d["subnetPrefix"] == "10.7.0.0" and d["subnetLength"] == 24
    assert d["defaultGateway"] == "10.7.0.1" and d["dnsServerAddrs"] == ["10.7.0.53"]

    # Overlapping another subnet of the network: refused, nothing written.
    code, _, err = openstack("subnet", "create", "--network", "sn-net", "--subnet-range", "10.7.0.128/25", "sub-b")
    assert code != 0 and "overlaps with another subnet" in err
    assert len(dhcp_subnets(server, net["id"])) == 1

    # No DHCP, a gateway of its own, a pool: as given.
    sub2 = json.loads(ok(openstack, "subnet", "create", "--network", "sn-net", "--subnet-range", "10.8.0.0/24",
                         "--no-dhcp", "--gateway", "10.8.0.254", "--allocation-pool", "start=10.8.0.10,end=10.8.0.20",
                         "sub-c", "-f", "json"))
    assert sub2["enable_dhcp"] is False and sub2["gateway_ip"] == "10.8.0.254"
    assert sub2["allocation_pools"] == [{"start": "10.8.0.10", "end": "10.8.0.20"}]
    listed = {s["Name"] for s in json.loads(ok(openstack, "subnet", "list", "--network", "sn-net", "-f", "json"))}
    assert listed == {"sub-a", "sub-c"}

    ok(openstack, "subnet", "set", "--name", "sub-a2", "--dns-nameserver", "10.7.0.54", "--no-dns-nameservers", "sub-a")
    d = [x for x in dhcp_subnets(server, net["id"]) if x["subnetPrefix"] == "10.7.0.0"][0]
    assert d["dnsServerAddrs"] == ["10.7.0.54"], "the update reaches the DHCP subnet"

    ok(openstack, "subnet", "delete", "sub-c")
    assert [x["subnetPrefix"] for x in dhcp_subnets(server, net["id"])] == ["10.7.0.0"]
    shown = json.loads(ok(openstack, "network", "show", "sn-net", "-f", "json"))
    assert shown["subnets"] == [sub["id"]]

    # A network goes with its subnets.
    ok(openstack, "network", "delete", "sn-net")
    code, _, err = openstack("subnet", "show", sub["id"])
    assert code != 0 and "No Subnet found" in err


def test_subnet_errors(openstack):
    code, _, err = openstack("subnet", "create", "--network", "no-such-net", "--subnet-range", "10.9.0.0/24", "x")
    assert code != 0 and "no-such-net" in err
    ok(openstack, "network", "create", "err-net")
    code, _, err = openstack("subnet", "create", "--network", "err-net", "--subnet-range", "10.9.0.0/24",
                             "--gateway", "10.10.0.1", "x")
    assert code != 0 and "not in subnet" in err
