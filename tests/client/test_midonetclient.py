"""The unmodified midonetclient 5.2.0 library against `midonet server`."""
import os
import subprocess
import tempfile

import midoshim
import pytest
import webob.exc
from midonetclient.api import MidonetApi
from pyutil import BIN  # conftest puts tests/ on the path


def api_for(server, user="admin", password="admin"):
    midoshim.reset_token()
    return MidonetApi(server.url, user, password, project_id="admin")


def test_full_topology_round_trip(server):
    api = api_for(server)
    tenant = "tenant-a"

    # Chains first: the devices point at them.
    in_chain = api.add_chain().name("in").tenant_id(tenant).create()
    out_chain = api.add_chain().name("out").tenant_id(tenant).create()
    jump_target = api.add_chain().name("target").tenant_id(tenant).create()

    router = api.add_router().name("r1").tenant_id(tenant).asn(64512).create()
    b1 = api.add_bridge().name("b1").tenant_id(tenant).inbound_filter_id(in_chain.get_id()).create()
    b2 = api.add_bridge().name("b2").tenant_id(tenant).create()

    rp1 = router.add_port().port_address("10.0.1.1").network_address("10.0.1.0").network_length(24) \
        .port_mac("02:00:00:00:01:01").create()
    rp2 = router.add_port().port_address("10.0.2.1").network_address("10.0.2.0").network_length(24).create()
    bp1 = b1.add_port().create()
    bp2 = b2.add_port().vlan_id(0).create()
    vm1 = b1.add_port().create()
    rp1.link(bp1.get_id())
    rp2.link(bp2.get_id())
    assert api.get_port(rp1.get_id()).get_peer_id() == bp1.get_id()
    assert api.get_port(bp2.get_id()).get_peer_id() == rp2.get_id()
    assert rp1.get_port_mac() == "02:00:00:00:01:01"
    assert rp2.get_port_mac()  # generated
    assert rp1.get_tunnel_key() if hasattr(rp1, "get_tunnel_key") else rp1.dto["tunnelKey"] > 0

    # Router port creation added LOCAL /32 routes.
    local = [r for r in router.get_routes() if r.get_type() == "Local"]
    assert sorted(r.get_dst_network_addr() for r in local) == ["10.0.1.1", "10.0.2.1"]
    route = router.add_route().type("Normal").src_network_addr("0.0.0.0").src_network_length(0) \
        .dst_network_addr("192.168.0.0").dst_network_length(16).next_hop_port(rp1.get_id()) \
        .next_hop_gateway("10.0.1.254").weight(100).create()
    got = api.get_route(route.get_id())
    assert (got.get_dst_network_addr(), got.get_dst_network_length(), got.get_weight(), got.get_next_hop_gateway()) \
        == ("192.168.0.0", 16, 100, "10.0.1.254")
    assert got.get_router_id() == router.get_id()

    # DHCP subnets and hosts on both bridges.
    d1 = b1.add_dhcp_subnet().subnet_prefix("10.0.1.0").subnet_length(24).default_gateway("10.0.1.1") \
        .server_addr("10.0.1.2").dns_server_addrs(["8.8.8.8", "1.1.1.1"]).interface_mtu(1450) \
        .opt121_routes([{"destinationPrefix": "172.16.0.0", "destinationLength": 12, "gatewayAddr": "10.0.1.1"}]) \
        .create()
    d1.add_dhcp_host().name("vm1").ip_addr("10.0.1.10").mac_addr("aa:bb:cc:00:00:01").create()
    b2.add_dhcp_subnet().subnet_prefix("10.0.2.0").subnet_length(24).default_gateway("10.0.2.1").create()
    sub = b1.get_dhcp_subnet("10.0.1.0_24")
    assert sub.get_dns_server_addrs() == ["8.8.8.8", "1.1.1.1"]
    assert sub.get_interface_mtu() == 1450
    assert sub.get_opt121_routes()[0]["gatewayAddr"] == "10.0.1.1"
    assert sub.is_enabled() is True
    hosts = sub.get_dhcp_hosts()
    assert [(h.get_name(), h.get_ip_addr(), h.get_mac_addr()) for h in hosts] == [("vm1", "10.0.1.10", "aa:bb:cc:00:00:01")]
    assert len(b2.get_dhcp_subnets()) == 1

    # Groups.
    pg = api.add_port_group().name("pg1").tenant_id(tenant).stateful(True).create()
    pg.add_port_group_port().port_id(vm1.get_id()).create()
    assert [p.get_port_id() for p in pg.get_ports()] == [vm1.get_id()]
    assert api.get_port_group(pg.get_id()).is_stateful() is True
    ipg = api.add_ip_addr_group().name("ipg1").create()
    ipg.add_ipv4_addr().addr("10.0.1.10").create()
    ipg.add_ipv6_addr().addr("fd00::10").create()
    assert sorted(a.get_addr() for a in ipg.get_addrs()) == ["10.0.1.10", "fd00::10"]

    # Chains with every rule type.
    rules = in_chain
    accept = rules.add_rule().type("accept").nw_proto(6).tp_dst({"start": 22, "end": 22}).position(1).create()
    rules.add_rule().type("drop").dl_src("aa:bb:cc:00:00:00").dl_src_mask("ffff.ffff.0000").position(2).create()
    rules.add_rule().type("reject").dl_type(0x86DD).position(3).create()
    rules.add_rule().type("return").nw_src_address("10.0.0.0").nw_src_length(8).inv_nw_src(True).position(4).create()
    rules.add_rule().type("jump").jump_chain_id(jump_target.get_id()).position(5).create()
    rules.add_rule().type("dnat").flow_action("accept").nw_dst_address("203.0.113.5").nw_dst_length(32) \
        .nw_proto(6).tp_dst({"start": 80, "end": 80}) \
        .nat_targets([{"addressFrom": "10.0.1.10", "addressTo": "10.0.1.10", "portFrom": 8080, "portTo": 8080}]) \
        .position(6).create()
    out_chain.add_rule().type("snat").flow_action("accept") \
        .nat_targets([{"addressFrom": "203.0.113.1", "addressTo": "203.0.113.1", "portFrom": 1024, "portTo": 65535}]) \
        .create()
    out_chain.add_rule().type("rev_dnat").flow_action("accept").position(2).create()
    out_chain.add_rule().type("rev_snat").flow_action("continue").match_return_flow(True).position(3).create()
    out_chain.add_rule().type("accept").port_group(pg.get_id()).ip_addr_group_src(ipg.get_id()).position(4).create()
    listed = in_chain.get_rules()
    assert [r.get_type() for r in listed] == ["accept", "drop", "reject", "return", "jump", "dnat"]
    assert [r.get_position() for r in listed] == [1, 2, 3, 4, 5, 6]
    assert listed[1].dto["dlSrcMask"] == "ffff.ffff.0000"
    assert listed[2].dto["dlType"] == 0x86DD
    assert listed[3].dto["invNwSrc"] is True
    assert listed[4].get_jump_chain_name() == "target"
    assert listed[5].get_nat_targets()[0]["portFrom"] == 8080
    assert listed[5].dto["fragmentPolicy"] == "unfragmented"
    assert api.get_rule(accept.get_id()).dto["tpDst"] == {"start": 22, "end": 22}
    assert api.get_rule(accept.get_id()).dto["fragmentPolicy"] == "header"
    # Insert at the head: positions shift.
    head = in_chain.add_rule().type("accept").position(1).create()
    assert [r.get_id() for r in in_chain.get_rules()][:2] == [head.get_id(), accept.get_id()]

    # Filters on the router.
    router.inbound_filter_id(in_chain.get_id()).outbound_filter_id(out_chain.get_id()).update()
    r = api.get_router(router.get_id())
    assert (r.get_inbound_filter_id(), r.get_outbound_filter_id(), r.get_asn()) == (in_chain.get_id(), out_chain.get_id(), 64512)

    # Tunnel zone with a host.
    host_id = "11111111-2222-3333-4444-555555555555"
    api.add_host().id(host_id).name("hv1").create()
    tz = api.add_vxlan_tunnel_zone().name("tz1").create()
    tz.add_tunnel_zone_host().host_id(host_id).ip_address("192.0.2.1").create()
    members = tz.get_hosts()
    assert [(m.get_host_id(), m.get_ip_address()) for m in members] == [(host_id, "192.0.2.1")]
    assert api.get_tunnel_zone(tz.get_id()).get_type() == "vxlan"
    h = api.get_host(host_id)
    assert (h.get_name(), h.is_alive(), h.get_flooding_proxy_weight(), h.get_container_limit()) == ("hv1", False, 1, -1)
    api.add_host_interface_port(h, vm1.get_id(), "tap-vm1")
    assert api.get_port(vm1.get_id()).get_host_id() == host_id
    assert api.get_port(vm1.get_id()).get_interface_name() == "tap-vm1"

    # BGP.
    net = router.add_bgp_network().subnet_address("10.0.0.0").subnet_length(16).create()
    peer = router.add_bgp_peer().asn(65000).address("192.0.2.254").keep_alive(10).hold_time(30) \
        .connect_retry(15).password("s3cret").create()
    assert [n.get_id() for n in router.get_bgp_networks()] == [net.get_id()]
    p = api.get_bgp_peer(peer.get_id())
    assert (p.get_asn(), p.get_address(), p.get_keep_alive(), p.get_hold_time(), p.get_connect_retry(), p.get_password()) \
        == (65000, "192.0.2.254", 10, 30, 15, "s3cret")

    # Load balancer: attach to the router, pool, members, VIP, health monitor.
    lb = api.add_load_balancer().create()
    router.load_balancer_id(lb.get_id()).update()
    assert api.get_load_balancer(lb.get_id()).get_router_id() == router.get_id()
    hm = api.add_health_monitor().type("TCP").delay(5).timeout(10).max_retries(3).create()
    pool = lb.add_pool().load_balancer_id(lb.get_id()).lb_method("ROUND_ROBIN").health_monitor_id(hm.get_id()).create()
    m1 = pool.add_pool_member().pool_id(pool.get_id()).address("10.0.1.10").protocol_port(80).weight(3).create()
    m2 = pool.add_pool_member().pool_id(pool.get_id()).address("10.0.1.11").protocol_port(80).create()
    vip = pool.add_vip().pool_id(pool.get_id()).address("203.0.113.10").protocol_port(80) \
        .session_persistence("SOURCE_IP").create()
    got = api.get_pool(pool.get_id())
    assert (got.get_lb_method(), got.get_protocol(), got.get_health_monitor_id(), got.get_load_balancer_id()) \
        == ("ROUND_ROBIN", "TCP", hm.get_id(), lb.get_id())
    assert sorted(m.get_weight() for m in got.get_pool_members()) == [1, 3]
    v = api.get_vip(vip.get_id())
    assert (v.get_address(), v.get_protocol_port(), v.get_session_persistence(), v.get_load_balancer_id()) \
        == ("203.0.113.10", 80, "SOURCE_IP", lb.get_id())
    assert [x.get_id() for x in lb.get_vips()] == [vip.get_id()]
    assert [x.get_id() for x in hm.get_pools()] == [pool.get_id()]
    g = api.get_health_monitor(hm.get_id())
    assert (g.get_type(), g.get_delay(), g.get_timeout(), g.get_max_retries()) == ("TCP", 5, 10, 3)

    # Lists filter by tenant.
    assert [x.get_id() for x in api.get_routers({"tenant_id": tenant})] == [router.get_id()]
    assert api.get_routers({"tenant_id": "someone-else"}) == []
    assert len(api.get_bridges({"tenant_id": tenant})) == 2

    # Updates.
    b2.name("b2-renamed").update()
    assert api.get_bridge(b2.get_id()).get_name() == "b2-renamed"
    m1.weight(9).update()
    assert api.get_pool_member(m1.get_id()).get_weight() == 9
    assert api.get_pool_member(m1.get_id()).get_address() == "10.0.1.10"
    d1.interface_mtu(1400).update()
    assert b1.get_dhcp_subnet("10.0.1.0_24").get_interface_mtu() == 1400
    assert len(b1.get_dhcp_subnet("10.0.1.0_24").get_dhcp_hosts()) == 1, "PUT keeps the hosts"

    # A router with a load balancer refuses to go.
    with pytest.raises(webob.exc.HTTPConflict):
        api.delete_router(router.get_id())
    router.load_balancer_id(None).update()

    # Delete everything; every object is gone after.
    vip.delete()
    api.delete_pool_member(m2.get_id())
    api.delete_load_balancer(lb.get_id())
    with pytest.raises(webob.exc.HTTPNotFound):
        api.get_pool(pool.get_id())
    with pytest.raises(webob.exc.HTTPNotFound):
        api.get_pool_member(m1.get_id())
    api.delete_health_monitor(hm.get_id())
    api.delete_bgp_peer(peer.get_id())
    api.delete_bgp_network(net.get_id())
    api.delete_port_group(pg.get_id())
    api.delete_ip_addr_group(ipg.get_id())
    api.delete_chain(jump_target.get_id())
    # The jump rule went with its target chain.
    assert [r.get_type() for r in in_chain.get_rules()] == ["accept", "accept", "drop", "reject", "return", "dnat"]
    api.delete_chain(in_chain.get_id())
    assert api.get_bridge(b1.get_id()).get_inbound_filter_id() is None, "deleting a chain clears filters"
    api.delete_chain(out_chain.get_id())
    h.get_ports()[0].delete()
    api.delete_router(router.get_id())
    with pytest.raises(webob.exc.HTTPNotFound):
        api.get_port(rp1.get_id())
    with pytest.raises(webob.exc.HTTPNotFound):
        api.get_route(route.get_id())
    assert api.get_port(bp1.get_id()).get_peer_id() is None, "the peer was unlinked"
    api.delete_bridge(b1.get_id())
    api.delete_bridge(b2.get_id())
    tz.delete()
    h.delete()
    for getter, oid in [(api.get_router, router.get_id()), (api.get_bridge, b1.get_id()), (api.get_port, vm1.get_id()),
                        (api.get_chain, in_chain.get_id()), (api.get_rule, accept.get_id()),
                        (api.get_tunnel_zone, tz.get_id()), (api.get_host, host_id), (api.get_vip, vip.get_id()),
                        (api.get_health_monitor, hm.get_id()), (api.get_bgp_peer, peer.get_id()),
                        (api.get_port_group, pg.get_id()), (api.get_ip_addr_group, ipg.get_id())]:
        with pytest.raises(webob.exc.HTTPNotFound):
            getter(oid)
    assert api.get_ports() == []
    assert api.get_chains() == []


def test_relinking_a_linked_port_is_a_conflict(server):
    api = api_for(server)
    r = api.add_router().name("r").create()
    b = api.add_bridge().name("b").create()
    rp = r.add_port().port_address("10.0.0.1").network_address("10.0.0.0").network_length(24).create()
    bp = b.add_port().create()
    bp2 = b.add_port().create()
    rp.link(bp.get_id())
    with pytest.raises(webob.exc.HTTPConflict):
        rp.link(bp2.get_id())
    with pytest.raises(webob.exc.HTTPBadRequest):
        bp2.link(b.add_port().create().get_id())
    rp.unlink()
    assert api.get_port(bp.get_id()).get_peer_id() is None
    rp.link(bp2.get_id())


def test_system_state_and_tenants(server):
    api = api_for(server)
    s = api.get_system_state()
    assert (s.get_state(), s.get_availability()) == ("ACTIVE", "READWRITE")
    api.add_bridge().name("x").tenant_id("t9").create()
    assert [t.get_id() for t in api.get_tenants()] == ["t9"]


def users_file(*users):
    """A users file made by `midonet user add`, one (name, password, extra args) each."""
    path = os.path.join(tempfile.mkdtemp(prefix="midonet-users-"), "users")
    for name, password, *extra in users:
        subprocess.run([BIN, "user", "add", "--file", path, name] + list(extra),
                       input=password + "\n", text=True, check=True)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert "secret" not in open(path).read(), "passwords are stored hashed"
    return path


def test_static_auth_login_and_one_retry_on_401(make_server):
    s = make_server("--auth", "static", "--users-file", users_file(("admin", "secret"))).start()
    with pytest.raises(webob.exc.HTTPUnauthorized):
        api_for(s, "admin", "wrong").get_routers()
    api = api_for(s, "admin", "secret")
    r = api.add_router().name("r1").create()
    # A restart forgets tokens: the next call gets 401, logs in again, and succeeds.
    s.stop()
    s.start()
    assert api.get_router(r.get_id()).get_name() == "r1"
