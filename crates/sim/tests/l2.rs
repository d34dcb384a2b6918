//! Bridges: learning, flooding, isolation, ARP suppression, L2 chains, masks.

mod common;
use common::*;
use serde_json::json;
use sim::flow::field;
use sim::*;

#[test]
fn unknown_unicast_floods_then_learned_mac_is_unicast() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2, p3) = (n.vm_port(b), n.vm_port(b), n.vm_port(b));
    let mut r = Run::new(&n);
    let f = udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000);
    let o = r.send(p1, &f);
    assert_eq!(o.verdict, Verdict::Forward);
    assert_eq!(
        out_ports(&o),
        sorted(vec![p2, p3]),
        "flooded to every exterior port but the ingress one"
    );
    assert!(o.writes.contains(&StateWrite::MacLearned {
        bridge: b,
        vlan: 0,
        mac: mac(1),
        port: p1
    }));
    assert!(
        o.tags.contains(&Tag::MacPort {
            bridge: b,
            vlan: 0,
            mac: mac(2)
        }),
        "a flooded flow is tagged by the missing MAC"
    );
    // mac(2) answers from p2: it is learned, and the reply goes to p1 only.
    let o = r.send(p2, &udp(mac(2), mac(1), "10.0.0.2", "10.0.0.1", 2000, 1000));
    assert_eq!(out_ports(&o), vec![p1]);
    let o = r.send(p1, &f);
    assert_eq!(out_ports(&o), vec![p2], "now unicast");
    // A known MAC sends no learning write again.
    assert!(o.writes.is_empty());
}

#[test]
fn a_mac_that_moves_is_followed() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2, p3) = (n.vm_port(b), n.vm_port(b), n.vm_port(b));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    assert_eq!(
        out_ports(&r.send(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))),
        vec![p2]
    );
    let o = r.send(p3, &udp(mac(2), mac(1), "10.0.0.2", "10.0.0.1", 2, 1));
    assert!(o.writes.contains(&StateWrite::MacLearned {
        bridge: b,
        vlan: 0,
        mac: mac(2),
        port: p3
    }));
    assert_eq!(
        out_ports(&r.send(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))),
        vec![p3]
    );
}

#[test]
fn bridges_are_isolated_and_broadcast_sources_dropped() {
    let mut n = Net::new();
    let (b1, b2) = (n.bridge(), n.bridge());
    let (a1, a2) = (n.vm_port(b1), n.vm_port(b1));
    let (c1, c2) = (n.vm_port(b2), n.vm_port(b2));
    let mut r = Run::new(&n);
    let o = r.send(
        a1,
        &udp(mac(1), wire::Mac::BROADCAST, "10.0.0.1", "10.0.0.255", 1, 2),
    );
    assert_eq!(out_ports(&o), vec![a2]);
    assert!(!out_ports(&o).contains(&c1) && !out_ports(&o).contains(&c2));
    let o = r.sim(
        c1,
        &udp(wire::Mac::BROADCAST, mac(1), "10.0.0.1", "10.0.0.2", 1, 2),
    );
    assert_eq!(o.verdict, Verdict::Drop(DropReason::MulticastSource));
}

#[test]
fn hairpin_is_refused() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, _p2) = (n.vm_port(b), n.vm_port(b));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p1);
    let o = r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2));
    assert_eq!(o.verdict, Verdict::ErrorDrop(DropReason::HairpinDenied));
}

#[test]
fn l2_flow_mask_is_minimal_and_chains_widen_it() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    let o = r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000));
    let flow = o.flow.unwrap();
    assert!(
        flow.mask
            .contains(field::IN_PORT | field::ETH_SRC | field::ETH_DST)
    );
    assert!(
        !flow.mask.any(field::L3 | field::L4),
        "an L2 flow does not match IP fields: {:?}",
        flow.mask
    );
    assert_eq!(flow.key.nw_src, std::net::Ipv4Addr::UNSPECIFIED);
    assert_eq!(flow.expiry_ms, FLOW_EXPIRY_MS);
    // A chain that reads nw_src adds it (and the ethertype) to the mask, nothing more.
    let c = n.chain();
    n.rule(
        c,
        json!({"type": "drop", "nwSrcAddress": "192.168.0.0", "nwSrcLength": 16}),
    );
    n.set_bridge(b, |x| x.inbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    let o = r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000));
    assert_eq!(o.verdict, Verdict::Forward);
    let mask = o.flow.unwrap().mask;
    assert!(mask.contains(field::NW_SRC | field::ETH_TYPE));
    assert!(!mask.any(field::NW_DST | field::L4));
    assert!(
        o.tags.contains(&Tag::Device(c)),
        "the flow depends on the chain"
    );
}

#[test]
fn arp_suppression_from_router_ports_and_ip4mac_table() {
    let mut n = Net::new();
    let r = n.router();
    let (b, _rp) = n.subnet(r, "10.0.0.1", 24, mac(0xaa));
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let mut run = Run::new(&n);
    // For the router's address: the bridge answers for it.
    let o = run.sim(p1, &arp_request(mac(1), "10.0.0.5", "10.0.0.1"));
    assert_eq!(o.verdict, Verdict::Consumed);
    assert_eq!(o.emits.len(), 1);
    assert_eq!(o.emits[0].output.port, p1);
    let a = wire::ArpRepr::parse(&wire::ArpPacket::new_checked(&o.emits[0].frame[14..]).unwrap())
        .unwrap();
    assert_eq!(
        (a.op, a.sha, a.spa),
        (wire::ArpOp::Reply, mac(0xaa), ip("10.0.0.1"))
    );
    // From the seeded IP→MAC table.
    run.state.apply(
        &[StateWrite::Ip4Mac {
            bridge: b,
            ip: ip("10.0.0.7"),
            mac: mac(7),
        }],
        0,
    );
    let o = run.sim(p1, &arp_request(mac(1), "10.0.0.5", "10.0.0.7"));
    assert_eq!(o.verdict, Verdict::Consumed);
    // Unknown: flooded (the router port is interior, so not a flood target).
    let o = run.sim(p1, &arp_request(mac(1), "10.0.0.5", "10.0.0.9"));
    assert_eq!(out_ports(&o), vec![p2]);
    // Gratuitous ARP is learned into the table and flooded.
    let o = run.sim(p2, &arp_request(mac(2), "10.0.0.2", "10.0.0.2"));
    assert!(o.writes.contains(&StateWrite::Ip4Mac {
        bridge: b,
        ip: ip("10.0.0.2"),
        mac: mac(2)
    }));
}

#[test]
fn chains_drop_by_mac_masks_and_ipv6_ethertype() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let c = n.chain();
    // Drop multicast destinations (the group bit), and IPv6.
    n.rule(
        c,
        json!({"type": "drop", "dlDst": "01:00:00:00:00:00", "dlDstMask": "0100.0000.0000"}),
    );
    n.rule(c, json!({"type": "drop", "dlType": 0x86dd}));
    n.set_bridge(b, |x| x.inbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    let mcast = wire::Mac([0x01, 0, 0x5e, 0, 0, 1]);
    assert!(matches!(
        r.sim(p1, &udp(mac(1), mcast, "10.0.0.1", "224.0.0.1", 1, 2))
            .verdict,
        Verdict::Drop(DropReason::FilteredByChain(_))
    ));
    assert_eq!(
        r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))
            .verdict,
        Verdict::Forward
    );
    assert!(r.sim(p1, &ipv6(mac(1), mac(2))).verdict.is_drop());
    // The inverse: drop even source MACs only (bit 0 of the last byte clear).
    let mut n2 = Net::new();
    let b = n2.bridge();
    let (q1, q2) = (n2.vm_port(b), n2.vm_port(b));
    let c = n2.chain();
    n2.rule(
        c,
        json!({"type": "drop", "dlSrc": "00:00:00:00:00:00", "dlSrcMask": "0000.0000.0001"}),
    );
    n2.set_bridge(b, |x| x.inbound_filter_id = Some(c));
    let mut r = Run::new(&n2);
    r.learn(b, mac(2), q2);
    r.learn(b, mac(3), q1);
    assert!(
        r.sim(q2, &udp(mac(2), mac(3), "10.0.0.2", "10.0.0.3", 1, 2))
            .verdict
            .is_drop(),
        "even source"
    );
    assert_eq!(
        r.sim(q1, &udp(mac(3), mac(2), "10.0.0.3", "10.0.0.2", 1, 2))
            .verdict,
        Verdict::Forward,
        "odd source"
    );
    // IPv6 passes a bridge without chains.
    let mut n3 = Net::new();
    let b = n3.bridge();
    let (s1, s2) = (n3.vm_port(b), n3.vm_port(b));
    let r3 = Run::new(&n3);
    let mut r3 = r3;
    r3.learn(b, mac(2), s2);
    assert_eq!(out_ports(&r3.sim(s1, &ipv6(mac(1), mac(2)))), vec![s2]);
}

#[test]
fn admin_down_port_and_bridge_drop() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, _p2) = (n.vm_port(b), n.vm_port(b));
    n.set_port(p1, |p| p.admin_state_up = false);
    let mut r = Run::new(&n);
    assert_eq!(
        r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))
            .verdict,
        Verdict::Drop(DropReason::AdminDown)
    );
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, _p2) = (n.vm_port(b), n.vm_port(b));
    n.set_bridge(b, |x| x.admin_state_up = false);
    let mut r = Run::new(&n);
    assert_eq!(
        r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))
            .verdict,
        Verdict::Drop(DropReason::AdminDown)
    );
}

#[test]
fn outputs_to_remote_ports_carry_host_and_tunnel_key() {
    let mut n = Net::new();
    let b = n.bridge();
    let other = uuid::Uuid::new_v4();
    let (p1, p2) = (n.vm_port(b), n.remote_vm_port(b, other));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    let o = r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2));
    let out = o.outputs().next().unwrap();
    assert_eq!(out.host, Some(other));
    assert_eq!(out.tunnel_key, r.topo.ports[&p2].tunnel_key);
    assert!(out.tunnel_key > 0);
}

#[test]
fn malformed_frames_and_unknown_ports() {
    let mut n = Net::new();
    let b = n.bridge();
    let p1 = n.vm_port(b);
    let mut r = Run::new(&n);
    assert_eq!(
        r.sim(p1, &[0u8; 10]).verdict,
        Verdict::ErrorDrop(DropReason::Malformed)
    );
    let mut truncated = udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2);
    truncated.truncate(30);
    assert_eq!(
        r.sim(p1, &truncated).verdict,
        Verdict::ErrorDrop(DropReason::Malformed)
    );
    let ghost = uuid::Uuid::new_v4();
    assert_eq!(
        r.sim(ghost, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))
            .verdict,
        Verdict::NotYet(Missing::Port(ghost))
    );
}

#[test]
fn redirect_rules_send_the_packet_to_another_port() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2, svc) = (n.vm_port(b), n.vm_port(b), n.vm_port(b));
    let c = n.chain();
    n.rule(c, json!({"type": "l2_transform", "flowAction": "redirect", "targetPortId": svc, "nwProto": 17}));
    n.set_port(p1, |p| p.inbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    assert_eq!(
        out_ports(&r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))),
        vec![svc]
    );
    assert_eq!(
        out_ports(&r.sim(p1, &tcp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))),
        vec![p2]
    );
}

#[test]
fn tagged_frames_learn_per_vlan_and_skip_bridge_chains() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let c = n.chain();
    n.rule(c, json!({"type": "drop"}));
    n.set_bridge(b, |x| x.inbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    let mut f = udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2);
    wire::ethernet::push_vlan(&mut f, 10);
    let o = r.sim(p1, &f);
    assert_eq!(
        out_ports(&o),
        vec![p2],
        "bridges never filter tagged frames"
    );
    assert!(o.writes.contains(&StateWrite::MacLearned {
        bridge: b,
        vlan: 10,
        mac: mac(1),
        port: p1
    }));
    assert!(
        r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))
            .verdict
            .is_drop()
    );
}

#[test]
fn vlan_aware_bridge_maps_trunk_vlans_to_interior_ports() {
    // A trunk bridge with an exterior trunk port and an interior port for
    // VLAN 10, linked to a tenant bridge with a VM.
    let mut n = Net::new();
    let (trunk_br, tenant) = (n.bridge(), n.bridge());
    let trunk = n.vm_port(trunk_br);
    let v10 = n.bridge_port(trunk_br);
    n.set_port(v10, |p| p.vlan_id = Some(10));
    let up = n.bridge_port(tenant);
    n.link(v10, up);
    let vm = n.vm_port(tenant);
    let mut r = Run::new(&n);
    // Tagged 10 from the trunk: untagged to the tenant's VM.
    let mut f = udp(mac(9), mac(1), "10.0.0.9", "10.0.0.1", 1, 2);
    wire::ethernet::push_vlan(&mut f, 10);
    let o = r.send(trunk, &f);
    assert_eq!(out_ports(&o), vec![vm], "{:?}", o.trace);
    let (_, out) = &deliver(&o, &f)[0];
    assert_eq!(
        wire::EthernetFrame::new_checked(&out[..]).unwrap().vlan(),
        None
    );
    // From the VM: tagged 10 towards the trunk.
    let back = udp(mac(1), mac(9), "10.0.0.1", "10.0.0.9", 2, 1);
    let o = r.send(vm, &back);
    assert_eq!(out_ports(&o), vec![trunk], "{:?}", o.trace);
    let (_, out) = &deliver(&o, &back)[0];
    assert_eq!(
        wire::EthernetFrame::new_checked(&out[..]).unwrap().vlan(),
        Some(10)
    );
    // Another VLAN has no interior port: it stays on the trunks.
    let mut other = udp(mac(9), mac(1), "10.0.0.9", "10.0.0.1", 1, 2);
    wire::ethernet::push_vlan(&mut other, 20);
    assert!(!out_ports(&r.sim(trunk, &other)).contains(&vm));
}

/// A MAC learned on a port since deleted (a VM whose port was deleted and
/// created again, which has not spoken yet) is flooded to, not dropped.
#[test]
fn a_mac_learned_on_a_deleted_port_is_unknown_again() {
    let mut n = Net::new();
    let b = n.bridge();
    let other = n.bridge();
    let (p1, p2, p3) = (n.vm_port(b), n.vm_port(b), n.vm_port(other));
    let mut r = Run::new(&n);
    let f = udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2);
    r.learn(b, mac(2), uuid::Uuid::new_v4());
    let o = r.send(p1, &f);
    assert_eq!(o.verdict, Verdict::Forward);
    assert_eq!(out_ports(&o), vec![p2], "flooded");
    // Learned on a port of another bridge: the same.
    r.learn(b, mac(2), p3);
    assert_eq!(out_ports(&r.send(p1, &f)), vec![p2]);
}
