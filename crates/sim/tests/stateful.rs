//! Connection tracking, NAT (floating IP, SNAT, DNAT, ICMP errors), the L4
//! load balancer, fragments and chain semantics.

mod common;
use common::*;
use serde_json::json;
use sim::flow::field;
use sim::*;
use std::collections::{HashMap, HashSet};
use wire::ipv4::Ipv4Packet;
use wire::{EthernetFrame, TcpPacket, UdpPacket};

fn l4_of(frame: &[u8]) -> (std::net::Ipv4Addr, u16, std::net::Ipv4Addr, u16) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    let (s, d) = match ip.protocol() {
        6 => {
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(
                t.verify_checksum(ip.src(), ip.dst()),
                "TCP checksum after rewrite"
            );
            (t.src_port(), t.dst_port())
        }
        17 => {
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(
                u.verify_checksum(ip.src(), ip.dst()),
                "UDP checksum after rewrite"
            );
            (u.src_port(), u.dst_port())
        }
        _ => (0, 0),
    };
    (ip.src(), s, ip.dst(), d)
}

/// An edge router: tenant subnet 10.0.1.0/24 behind it, uplink 203.0.113.1/24
/// to an "internet" host 203.0.113.9 (exterior port `ext`).
struct Edge {
    n: Net,
    r: uuid::Uuid,
    b: uuid::Uuid,
    vm: uuid::Uuid,
    vm2: uuid::Uuid,
    up: uuid::Uuid,
    inbound: uuid::Uuid,
    outbound: uuid::Uuid,
}

fn edge() -> Edge {
    let mut n = Net::new();
    let r = n.router();
    let (b, _) = n.subnet(r, "10.0.1.1", 24, mac(0xa1));
    let vm = n.vm_port(b);
    let vm2 = n.vm_port(b);
    let up = n.uplink(r, "203.0.113.1", 24, mac(0xb1));
    n.route(r, "203.0.113.0", 24, up, None, 100);
    let inbound = n.chain();
    let outbound = n.chain();
    n.set_router(r, |x| {
        x.inbound_filter_id = Some(inbound);
        x.outbound_filter_id = Some(outbound);
    });
    Edge {
        n,
        r,
        b,
        vm,
        vm2,
        up,
        inbound,
        outbound,
    }
}

fn ready(e: &Edge) -> Run {
    let mut r = Run::new(&e.n);
    r.arp(e.r, "203.0.113.9", mac(9));
    r.arp(e.r, "10.0.1.5", mac(1));
    r.arp(e.r, "10.0.1.6", mac(6));
    r.learn(e.b, mac(1), e.vm);
    r.learn(e.b, mac(6), e.vm2);
    r
}

#[test]
fn snat_both_ways_with_distinct_ports() {
    let mut e = edge();
    e.n.rule(e.outbound, json!({"type": "snat", "flowAction": "accept", "outPorts": [e.up],
        "natTargets": [{"addressFrom": "203.0.113.100", "addressTo": "203.0.113.100", "portFrom": 1024, "portTo": 65535}]}));
    e.n.rule(
        e.inbound,
        json!({"type": "rev_snat", "flowAction": "accept", "inPorts": [e.up]}),
    );
    let mut r = ready(&e);
    let mut mapped = HashSet::new();
    for sport in 40000..40200 {
        let f = tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", sport, 80);
        let o = r.send(e.vm, &f);
        assert_eq!(out_ports(&o), vec![e.up]);
        let (s, sp, d, dp) = l4_of(&deliver(&o, &f)[0].1);
        assert_eq!(
            (s, d, dp),
            (ip("203.0.113.100"), ip("203.0.113.9"), 80),
            "the outside sees the SNAT address"
        );
        assert!(mapped.insert(sp), "every connection gets its own port");
        assert_eq!(o.flow.as_ref().unwrap().expiry_ms, STATEFUL_FLOW_EXPIRY_MS);
        // The reply finds its way back.
        let reply = tcp(mac(9), mac(0xb1), "203.0.113.9", "203.0.113.100", 80, sp);
        let o = r.send(e.up, &reply);
        assert_eq!(out_ports(&o), vec![e.vm], "{:?}", o.trace);
        let (s, sp2, d, dp2) = l4_of(&deliver(&o, &reply)[0].1);
        assert_eq!(
            (s, sp2, d, dp2),
            (ip("203.0.113.9"), 80, ip("10.0.1.5"), sport)
        );
    }
    // The same connection keeps its mapping.
    let f = tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", 40000, 80);
    let first = l4_of(&deliver(&r.send(e.vm, &f), &f)[0].1).1;
    let again = l4_of(&deliver(&r.send(e.vm, &f), &f)[0].1).1;
    assert_eq!(first, again);
    // Unsolicited inbound to the SNAT address finds no binding.
    let o = r.sim(
        e.up,
        &tcp(mac(9), mac(0xb1), "203.0.113.9", "203.0.113.100", 80, 999),
    );
    assert!(
        o.tags.iter().any(|t| matches!(t, Tag::Nat(_))),
        "a miss is tagged too"
    );
    assert_ne!(out_ports(&o), vec![e.vm]);
}

#[test]
fn replies_keep_a_nat_binding_alive_like_forward_packets() {
    let mut e = edge();
    e.n.rule(e.outbound, json!({"type": "snat", "flowAction": "accept", "outPorts": [e.up],
        "natTargets": [{"addressFrom": "203.0.113.100", "addressTo": "203.0.113.100", "portFrom": 1024, "portTo": 65535}]}));
    e.n.rule(
        e.inbound,
        json!({"type": "rev_snat", "flowAction": "accept", "inPorts": [e.up]}),
    );
    let mut r = ready(&e);
    let out = tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", 40000, 80);
    let o = r.send(e.vm, &out);
    let port = l4_of(&deliver(&o, &out)[0].1).1;
    // Only replies for two idle times: the binding stays.
    for _ in 0..4 {
        r.now += STATE_IDLE_MS / 2;
        r.state.expire(r.now);
        r.arp(e.r, "10.0.1.5", mac(1)); // neighbours stay known
        r.arp(e.r, "203.0.113.9", mac(9));
        let reply = tcp(mac(9), mac(0xb1), "203.0.113.9", "203.0.113.100", 80, port);
        let o = r.send(e.up, &reply);
        assert_eq!(
            out_ports(&o),
            vec![e.vm],
            "the reply finds its binding: {:?} {:?}",
            o.verdict,
            o.trace
        );
        assert_eq!(o.writes.len(), 2, "both keys refreshed: {:?}", o.writes);
    }
    let o = r.send(e.vm, &out);
    assert_eq!(l4_of(&deliver(&o, &out)[0].1).1, port, "the same mapping");
    // Without traffic, it idles out.
    r.now += STATE_IDLE_MS + 1;
    r.state.expire(r.now);
    assert!(r.state.nat.is_empty());
}

#[test]
fn snat_port_exhaustion_refuses_new_connections_cleanly() {
    let mut e = edge();
    e.n.rule(e.outbound, json!({"type": "snat", "flowAction": "accept", "outPorts": [e.up],
        "natTargets": [{"addressFrom": "203.0.113.100", "addressTo": "203.0.113.100", "portFrom": 5000, "portTo": 5003}]}));
    let mut r = ready(&e);
    for sport in 0..4u16 {
        assert_eq!(
            r.send(
                e.vm,
                &tcp(
                    mac(1),
                    mac(0xa1),
                    "10.0.1.5",
                    "203.0.113.9",
                    100 + sport,
                    80
                )
            )
            .verdict,
            Verdict::Forward
        );
    }
    let o = r.send(
        e.vm,
        &tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", 200, 80),
    );
    assert_eq!(o.verdict, Verdict::Drop(DropReason::NatPortsExhausted));
    // Existing connections continue; another destination can reuse the ports.
    assert_eq!(
        r.send(
            e.vm,
            &tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", 100, 80)
        )
        .verdict,
        Verdict::Forward
    );
    r.arp(e.r, "203.0.113.10", mac(10));
    assert_eq!(
        r.send(
            e.vm,
            &tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.10", 200, 80)
        )
        .verdict,
        Verdict::Forward
    );
}

#[test]
fn leased_snat_draws_only_from_owned_blocks_and_asks_for_more() {
    let mut e = edge();
    e.n.rule(e.outbound, json!({"type": "snat", "flowAction": "accept", "outPorts": [e.up],
        "natTargets": [{"addressFrom": "203.0.113.100", "addressTo": "203.0.113.100", "portFrom": 1024, "portTo": 65535}]}));
    let mut r = ready(&e);
    r.state.nat_leasing = true;
    let nat = ip("203.0.113.100");
    let conn = |sport| tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", sport, 80);
    // No block yet: the packet waits for one, naming the router and address.
    let o = r.send(e.vm, &conn(100));
    assert_eq!(
        o.verdict,
        Verdict::NotYet(Missing::NatBlock {
            device: e.r,
            ip: nat,
            ports: (1024, 65535)
        })
    );
    // Block 100 (ports 6400..=6463): 64 connections fit, all in it.
    r.state.nat_blocks.insert((e.r, nat), vec![100]);
    let (lo, hi) = nat_block_ports(100);
    let mut seen = HashSet::new();
    for sport in 0..NAT_BLOCK_PORTS {
        let f = conn(1000 + sport);
        let o = r.send(e.vm, &f);
        assert_eq!(o.verdict, Verdict::Forward, "{:?}", o.trace);
        let p = l4_of(&deliver(&o, &f)[0].1).1;
        assert!((lo..=hi).contains(&p), "port {p} outside the leased block");
        assert!(seen.insert(p));
    }
    // The 65th asks for another block.
    assert!(matches!(
        r.send(e.vm, &conn(2000)).verdict,
        Verdict::NotYet(Missing::NatBlock { .. })
    ));
    // When leasing failed, new connections are refused, not parked...
    r.state.nat_refused.insert((e.r, nat), r.now + 1_000);
    assert_eq!(
        r.send(e.vm, &conn(2000)).verdict,
        Verdict::Drop(DropReason::NatPortsExhausted)
    );
    // ...while existing ones continue.
    assert_eq!(r.send(e.vm, &conn(1000)).verdict, Verdict::Forward);
    // A block outside the rule's range is not used.
    r.state.nat_refused.clear();
    r.state.nat_blocks.insert((e.r, nat), vec![100, 3]);
    assert!(matches!(
        r.send(e.vm, &conn(2000)).verdict,
        Verdict::NotYet(Missing::NatBlock { .. })
    ));
}

#[test]
fn dnat_both_ways_and_icmp_errors_translated_back() {
    let mut e = edge();
    e.n.rule(e.inbound, json!({"type": "dnat", "flowAction": "accept", "nwDstAddress": "203.0.113.50", "nwDstLength": 32,
        "nwProto": 17, "tpDst": {"start": 53, "end": 53},
        "natTargets": [{"addressFrom": "10.0.1.5", "addressTo": "10.0.1.5", "portFrom": 1000, "portTo": 1000}]}));
    e.n.rule(
        e.outbound,
        json!({"type": "rev_dnat", "flowAction": "accept"}),
    );
    let mut r = ready(&e);
    let q = udp(mac(9), mac(0xb1), "203.0.113.9", "203.0.113.50", 7777, 53);
    let o = r.send(e.up, &q);
    assert_eq!(out_ports(&o), vec![e.vm], "{:?}", o.trace);
    assert_eq!(
        l4_of(&deliver(&o, &q)[0].1),
        (ip("203.0.113.9"), 7777, ip("10.0.1.5"), 1000)
    );
    // The server answers: the client sees the public address and port.
    let a = udp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", 1000, 7777);
    let o = r.send(e.vm, &a);
    assert_eq!(
        l4_of(&deliver(&o, &a)[0].1),
        (ip("203.0.113.50"), 53, ip("203.0.113.9"), 7777)
    );
    // The server's port-unreachable about that datagram is translated too.
    let inner = &deliver(&r.sim(e.up, &q), &q)[0].1;
    let repr = wire::Icmpv4Repr::DstUnreachable {
        code: 3,
        mtu: 0,
        quote: &inner[14..],
    };
    let mut p = vec![0u8; repr.buffer_len()];
    repr.emit(&mut p);
    let mut err = vec![0u8; 34 + p.len()];
    wire::EthernetRepr {
        src: mac(1),
        dst: mac(0xa1),
        ethertype: 0x0800,
        vlan: None,
    }
    .emit(&mut err);
    wire::Ipv4Repr {
        src: ip("10.0.1.5"),
        dst: ip("203.0.113.9"),
        protocol: 1,
        payload_len: p.len(),
        ttl: 64,
        tos: 0,
        ident: 3,
        dont_frag: false,
    }
    .emit(&mut err[14..]);
    err[34..].copy_from_slice(&p);
    let o = r.sim(e.vm, &err);
    assert_eq!(out_ports(&o), vec![e.up], "{:?}", o.trace);
    assert!(
        o.flow.as_ref().unwrap().userspace_only,
        "ICMP payload rewrites are per packet"
    );
    let out = &deliver(&o, &err)[0].1;
    let quoted = sim::services::quoted(out).unwrap();
    assert_eq!(
        (quoted.dst, quoted.dport),
        (ip("203.0.113.50"), 53),
        "the quote shows the public address"
    );
    let (src, _, _, _) = l4_of(out);
    assert_eq!(src, ip("203.0.113.50"));
    let icmp = wire::Icmpv4Packet::new_checked(&out[34..]).unwrap();
    assert!(icmp.verify_checksum());
}

#[test]
fn floating_ip_both_ways() {
    let mut e = edge();
    e.n.rule(e.inbound, json!({"type": "dnat", "flowAction": "accept", "nwDstAddress": "203.0.113.77", "nwDstLength": 32,
        "natTargets": [{"addressFrom": "10.0.1.5", "addressTo": "10.0.1.5", "portFrom": 0, "portTo": 0}]}));
    e.n.rule(e.outbound, json!({"type": "snat", "flowAction": "accept", "nwSrcAddress": "10.0.1.5", "nwSrcLength": 32,
        "natTargets": [{"addressFrom": "203.0.113.77", "addressTo": "203.0.113.77", "portFrom": 0, "portTo": 0}]}));
    let mut r = ready(&e);
    let p = ping(mac(9), mac(0xb1), "203.0.113.9", "203.0.113.77", 64);
    let o = r.send(e.up, &p);
    assert_eq!(out_ports(&o), vec![e.vm]);
    assert_eq!(l4_of(&deliver(&o, &p)[0].1).2, ip("10.0.1.5"));
    assert!(
        !o.flow.as_ref().unwrap().userspace_only,
        "a floating IP is stateless, a datapath flow"
    );
    let back = pong(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9");
    let o = r.send(e.vm, &back);
    assert_eq!(
        l4_of(&deliver(&o, &back)[0].1).0,
        ip("203.0.113.77"),
        "replies carry the floating IP"
    );
    // TCP works the same way, ports untouched.
    let t = tcp(mac(9), mac(0xb1), "203.0.113.9", "203.0.113.77", 5555, 22);
    assert_eq!(
        l4_of(&deliver(&r.send(e.up, &t), &t)[0].1),
        (ip("203.0.113.9"), 5555, ip("10.0.1.5"), 22)
    );
}

#[test]
fn security_group_lets_replies_in_but_refuses_new_inbound() {
    let mut e = edge();
    // On the VM's port: outbound from the VM accepted (and tracked), inbound
    // only as a reply.
    let egress = e.n.chain();
    e.n.rule(egress, json!({"type": "accept", "matchReturnFlow": true}));
    e.n.rule(egress, json!({"type": "drop", "dlType": 0x0800}));
    e.n.set_port(e.vm, |p| p.outbound_filter_id = Some(egress));
    let ingress = e.n.chain();
    e.n.rule(ingress, json!({"type": "accept", "matchForwardFlow": true}));
    e.n.set_port(e.vm, |p| p.inbound_filter_id = Some(ingress));
    let mut r = ready(&e);
    let out = tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", 33000, 443);
    let o = r.send(e.vm, &out);
    assert_eq!(out_ports(&o), vec![e.up]);
    assert!(
        o.writes
            .iter()
            .any(|w| matches!(w, StateWrite::ConnTrack(_))),
        "the return key is recorded"
    );
    let reply = tcp(mac(9), mac(0xb1), "203.0.113.9", "10.0.1.5", 443, 33000);
    let o = r.send(e.up, &reply);
    assert_eq!(
        out_ports(&o),
        vec![e.vm],
        "the reply is let in: {:?}",
        o.trace
    );
    assert!(
        o.flow
            .as_ref()
            .unwrap()
            .mask
            .contains(field::TP_SRC | field::TP_DST | field::NW_SRC)
    );
    let new_in = tcp(mac(9), mac(0xb1), "203.0.113.9", "10.0.1.5", 443, 22);
    assert!(
        r.send(e.up, &new_in).verdict.is_drop(),
        "a new inbound connection is refused"
    );
    // State idles out: after 60 s the reply is no longer recognised.
    r.now += 61_000;
    assert!(r.sim(e.up, &reply).verdict.is_drop());
}

#[test]
fn conntrack_is_per_device_not_per_port() {
    // A reply entering the same bridge by another port still matches.
    let mut n = Net::new();
    let b = n.bridge();
    let (inside, out1, out2) = (n.vm_port(b), n.vm_port(b), n.vm_port(b));
    let c = n.chain();
    n.rule(
        c,
        json!({"type": "accept", "matchForwardFlow": true, "inPorts": [inside]}),
    );
    n.rule(c, json!({"type": "accept", "matchReturnFlow": true}));
    n.rule(c, json!({"type": "drop"}));
    n.set_bridge(b, |x| x.inbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), out1);
    r.learn(b, mac(1), inside);
    let reply = udp(mac(2), mac(1), "10.0.0.2", "10.0.0.1", 2222, 1111);
    assert!(r.sim(out2, &reply).verdict.is_drop(), "no connection yet");
    assert_eq!(
        r.send(
            inside,
            &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1111, 2222)
        )
        .verdict,
        Verdict::Forward
    );
    assert_eq!(
        out_ports(&r.send(out2, &reply)),
        vec![inside],
        "a reply by another port of the device matches"
    );
}

/// A load balancer on the edge router: VIP 203.0.113.80 (plain) and .81
/// (SOURCE_IP) in front of one pool of `members` (address, weight), port 8080.
fn balanced(e: &mut Edge, members: &[(&str, i64)]) -> Vec<model::PoolMember> {
    let lb: model::LoadBalancer =
        serde_json::from_value(json!({"id": uuid::Uuid::new_v4()})).unwrap();
    let pool: model::Pool = serde_json::from_value(
        json!({"id": uuid::Uuid::new_v4(), "loadBalancerId": lb.id, "lbMethod": "ROUND_ROBIN"}),
    )
    .unwrap();
    let members: Vec<model::PoolMember> = members
        .iter()
        .map(|(addr, w)| {
            serde_json::from_value(json!({"id": uuid::Uuid::new_v4(), "poolId": pool.id, "address": addr, "protocolPort": 8080, "weight": w})).unwrap()
        })
        .collect();
    let vip = |addr: &str, sticky: bool| -> model::Vip {
        serde_json::from_value(json!({"id": uuid::Uuid::new_v4(), "poolId": pool.id, "loadBalancerId": lb.id,
            "address": addr, "protocolPort": 80, "sessionPersistence": if sticky { Some("SOURCE_IP") } else { None }})).unwrap()
    };
    e.n.o.vips = vec![vip("203.0.113.80", false), vip("203.0.113.81", true)];
    e.n.o.members = members.clone();
    e.n.o.pools = vec![pool];
    e.n.set_router(e.r, |x| x.load_balancer_id = Some(lb.id));
    e.n.o.load_balancers = vec![lb];
    members
}

/// `n` new connections from the outside to the plain VIP, each forwarded
/// to a member's port 8080: how many each member got.
fn vip_hits(r: &mut Run, e: &Edge, n: u16) -> HashMap<std::net::Ipv4Addr, u32> {
    let mut hits = HashMap::new();
    for sport in 0..n {
        let f = tcp(
            mac(9),
            mac(0xb1),
            "203.0.113.9",
            "203.0.113.80",
            10000 + sport,
            80,
        );
        let o = r.send(e.up, &f);
        assert_eq!(o.verdict, Verdict::Forward, "{:?}", o.trace);
        let (_, _, d, dp) = l4_of(&deliver(&o, &f)[0].1);
        assert_eq!(dp, 8080);
        *hits.entry(d).or_default() += 1;
    }
    hits
}

#[test]
fn load_balancer_weights_stickiness_and_draining() {
    let mut e = edge();
    let m9 = balanced(&mut e, &[("10.0.1.5", 1), ("10.0.1.6", 3), ("10.0.1.7", 9)]).remove(2);
    let mut r = ready(&e);
    r.arp(e.r, "10.0.1.7", mac(7));
    r.learn(e.b, mac(7), e.vm2);
    // A flow to an address that is no VIP (yet) depends on the balancer:
    // adding a VIP there must remove it.
    let o = r.sim(
        e.up,
        &tcp(mac(9), mac(0xb1), "203.0.113.9", "10.0.1.5", 7, 80),
    );
    let lb = e.n.o.load_balancers[0].id;
    assert!(o.tags.contains(&Tag::Device(lb)), "{:?}", o.tags);
    let hits = vip_hits(&mut r, &e, 2600);
    let share = |a: &str| f64::from(hits[&ip(a)]) / 2600.0;
    // Weights 1/3/9 of 13: expect 7.7 %, 23 %, 69 % (within 4 points).
    assert!((share("10.0.1.5") - 1.0 / 13.0).abs() < 0.04, "{hits:?}");
    assert!((share("10.0.1.6") - 3.0 / 13.0).abs() < 0.04, "{hits:?}");
    assert!((share("10.0.1.7") - 9.0 / 13.0).abs() < 0.04, "{hits:?}");
    // Member replies leave with the VIP as source.
    let back = tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", 8080, 10000);
    let f = tcp(mac(9), mac(0xb1), "203.0.113.9", "203.0.113.80", 10000, 80);
    let first = l4_of(&deliver(&r.send(e.up, &f), &f)[0].1).2;
    if first == ip("10.0.1.5") {
        let o = r.send(e.vm, &back);
        assert_eq!(l4_of(&deliver(&o, &back)[0].1).0, ip("203.0.113.80"));
    }
    // SOURCE_IP: one client, one member, whatever its ports.
    let chosen: HashSet<_> = (0..50u16)
        .map(|s| {
            let f = tcp(
                mac(9),
                mac(0xb1),
                "203.0.113.9",
                "203.0.113.81",
                20000 + s,
                80,
            );
            l4_of(&deliver(&r.send(e.up, &f), &f)[0].1).2
        })
        .collect();
    assert_eq!(chosen.len(), 1, "a sticky VIP keeps a client on one member");
    // Draining: a disabled member keeps its connections but gets no new ones.
    let mut e2 = e;
    for m in e2.n.o.members.iter_mut() {
        if m.id == m9.id {
            m.admin_state_up = false;
        }
    }
    let mut r2 = Run {
        topo: e2.n.topo(),
        state: r.state.clone(),
        rng: XorShift(7),
        now: r.now,
    };
    for sport in 0..200u16 {
        let f = tcp(
            mac(9),
            mac(0xb1),
            "203.0.113.9",
            "203.0.113.80",
            30000 + sport,
            80,
        );
        let d = l4_of(&deliver(&r2.send(e2.up, &f), &f)[0].1).2;
        assert_ne!(d, ip("10.0.1.7"), "no new connection to a disabled member");
    }
    // No usable member at all: dropped.
    for m in e2.n.o.members.iter_mut() {
        m.admin_state_up = false;
    }
    let mut r3 = Run::new(&e2.n);
    let o = r3.sim(
        e2.up,
        &tcp(mac(9), mac(0xb1), "203.0.113.9", "203.0.113.80", 1, 80),
    );
    assert_eq!(o.verdict, Verdict::Drop(DropReason::NoPoolMember));
}

#[test]
fn a_client_port_reused_through_another_vip_is_answered_from_that_vip() {
    // Two VIPs, one plain and one sticky, in front of the same members: a
    // client that reaches a member through one and then, from the same
    // port, through the other, must see the member's replies come from the
    // second VIP (its reverse binding replaces the first's).
    let mut e = edge();
    balanced(&mut e, &[("10.0.1.5", 1), ("10.0.1.6", 1)]);
    let mut r = ready(&e);
    let member_of = |r: &mut Run, vip: &str, sport: u16| {
        let f = tcp(mac(9), mac(0xb1), "203.0.113.9", vip, sport, 80);
        let o = r.send(e.up, &f);
        assert_eq!(o.verdict, Verdict::Forward, "{:?}", o.trace);
        l4_of(&deliver(&o, &f)[0].1).2
    };
    let replied_from = |r: &mut Run, m: std::net::Ipv4Addr, sport: u16| {
        let (port, src_mac) = if m == ip("10.0.1.5") {
            (e.vm, mac(1))
        } else {
            (e.vm2, mac(6))
        };
        let back = tcp(
            src_mac,
            mac(0xa1),
            &m.to_string(),
            "203.0.113.9",
            8080,
            sport,
        );
        let o = r.send(port, &back);
        assert_eq!(o.verdict, Verdict::Forward, "{:?}", o.trace);
        l4_of(&deliver(&o, &back)[0].1).0
    };
    let sticky = member_of(&mut r, "203.0.113.81", 20000);
    let mut reused = 0;
    for sport in 40000..40040u16 {
        if member_of(&mut r, "203.0.113.80", sport) != sticky {
            continue;
        }
        assert_eq!(replied_from(&mut r, sticky, sport), ip("203.0.113.80"));
        assert_eq!(member_of(&mut r, "203.0.113.81", sport), sticky);
        assert_eq!(
            replied_from(&mut r, sticky, sport),
            ip("203.0.113.81"),
            "port {sport}: the reply must come from the VIP it was sent to"
        );
        reused += 1;
    }
    assert!(reused > 5, "only {reused} ports reached the sticky member");
}

#[test]
fn fragments_and_fragment_policies() {
    // A bridge chain accepting only unfragmented packets drops fragments.
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let c = n.chain();
    n.rule(
        c,
        json!({"type": "accept", "fragmentPolicy": "unfragmented"}),
    );
    n.rule(c, json!({"type": "drop", "fragmentPolicy": "any"}));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    assert_eq!(
        r.sim(p1, &fragment(mac(1), mac(2), "10.0.0.1", "10.0.0.2", true))
            .verdict,
        Verdict::Forward
    );
    n.set_bridge(b, |x| x.inbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    assert!(
        r.sim(p1, &fragment(mac(1), mac(2), "10.0.0.1", "10.0.0.2", true))
            .verdict
            .is_drop()
    );
    assert!(
        r.sim(p1, &fragment(mac(1), mac(2), "10.0.0.1", "10.0.0.2", false))
            .verdict
            .is_drop()
    );
    assert_eq!(
        r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))
            .verdict,
        Verdict::Forward
    );
    // Through a router, a dropped first fragment earns "fragmentation needed".
    let mut e = edge();
    e.n.rule(
        e.inbound,
        json!({"type": "accept", "fragmentPolicy": "unfragmented"}),
    );
    e.n.rule(e.inbound, json!({"type": "drop", "fragmentPolicy": "any"}));
    let mut r = ready(&e);
    let o = r.sim(
        e.vm,
        &fragment(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", true),
    );
    assert!(o.verdict.is_drop());
    let icmp = wire::Icmpv4Packet::new_checked(&o.emits[0].frame[34..]).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.code()),
        (3, wire::icmpv4::unreachable::FRAG_NEEDED)
    );
    // Later fragments have no L4 header: a port rule treats them as inside the range.
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let c = n.chain();
    n.rule(
        c,
        json!({"type": "drop", "tpDst": {"start": 2000, "end": 2000}, "fragmentPolicy": "header"}),
    );
    n.set_bridge(b, |x| x.inbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    assert!(
        r.sim(p1, &fragment(mac(1), mac(2), "10.0.0.1", "10.0.0.2", true))
            .verdict
            .is_drop()
    );
    assert_eq!(
        r.sim(p1, &fragment(mac(1), mac(2), "10.0.0.1", "10.0.0.2", false))
            .verdict,
        Verdict::Forward,
        "header policy skips later fragments"
    );
}

#[test]
fn chain_semantics_jump_return_loops_inversions_and_groups() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2, p3) = (n.vm_port(b), n.vm_port(b), n.vm_port(b));
    let (top, sub, looped) = (n.chain(), n.chain(), n.chain());
    // sub: return for UDP port 53, drop anything else from 10.0.0.0/24.
    n.rule(
        sub,
        json!({"type": "return", "nwProto": 17, "tpDst": {"start": 53, "end": 53}}),
    );
    n.rule(sub, json!({"type": "jump", "jumpChainId": looped}));
    n.rule(
        sub,
        json!({"type": "drop", "nwSrcAddress": "10.0.0.0", "nwSrcLength": 24}),
    );
    // looped jumps back to sub: the loop guard skips it.
    n.rule(looped, json!({"type": "jump", "jumpChainId": sub}));
    n.rule(top, json!({"type": "jump", "jumpChainId": sub}));
    // Not from p3, inverted: applies to p1 and p2 only... and condInvert.
    n.rule(
        top,
        json!({"type": "drop", "inPorts": [p3], "invInPorts": true, "nwProto": 6}),
    );
    n.rule(
        top,
        json!({"type": "drop", "condInvert": true, "nwDstAddress": "10.0.0.0", "nwDstLength": 8}),
    );
    n.set_bridge(b, |x| x.inbound_filter_id = Some(top));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    r.learn(b, mac(3), p3);
    assert_eq!(
        r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 9, 53))
            .verdict,
        Verdict::Forward,
        "RETURN resumes the caller"
    );
    assert!(
        r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 9, 54))
            .verdict
            .is_drop(),
        "dropped inside the jump"
    );
    assert_eq!(
        r.sim(p1, &udp(mac(1), mac(2), "10.1.0.1", "10.0.0.2", 9, 54))
            .verdict,
        Verdict::Forward
    );
    assert!(
        r.sim(p1, &tcp(mac(1), mac(2), "10.1.0.1", "10.0.0.2", 9, 22))
            .verdict
            .is_drop(),
        "inverted in-port"
    );
    assert_eq!(
        r.sim(p3, &tcp(mac(3), mac(2), "10.1.0.1", "10.0.0.2", 9, 22))
            .verdict,
        Verdict::Forward
    );
    assert!(
        r.sim(p1, &udp(mac(1), mac(2), "10.1.0.1", "192.168.0.2", 9, 54))
            .verdict
            .is_drop(),
        "condInvert"
    );
    // Port groups and IP address groups.
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let pg: model::PortGroup =
        serde_json::from_value(json!({"id": uuid::Uuid::new_v4(), "portIds": [p1]})).unwrap();
    let ag: model::IpAddrGroup = serde_json::from_value(
        json!({"id": uuid::Uuid::new_v4(), "name": "g", "addrs": ["10.0.0.66"]}),
    )
    .unwrap();
    let c = n.chain();
    n.rule(
        c,
        json!({"type": "drop", "portGroup": pg.id, "ipAddrGroupDst": ag.id}),
    );
    n.o.port_groups.push(pg);
    n.o.ip_addr_groups.push(ag);
    n.set_bridge(b, |x| x.inbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    r.learn(b, mac(1), p1);
    assert!(
        r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.66", 1, 2))
            .verdict
            .is_drop()
    );
    assert_eq!(
        r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.67", 1, 2))
            .verdict,
        Verdict::Forward
    );
    assert_eq!(
        r.sim(p2, &udp(mac(2), mac(1), "10.0.0.2", "10.0.0.66", 1, 2))
            .verdict,
        Verdict::Forward,
        "p2 is not in the group"
    );
}

#[test]
fn reject_on_a_router_sends_admin_prohibited() {
    let mut e = edge();
    e.n.rule(e.inbound, json!({"type": "reject", "nwProto": 6}));
    let mut r = ready(&e);
    let o = r.sim(
        e.vm,
        &tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", 1, 80),
    );
    assert!(matches!(
        o.verdict,
        Verdict::Drop(DropReason::RejectedByChain(_))
    ));
    let icmp = wire::Icmpv4Packet::new_checked(&o.emits[0].frame[34..]).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.code()),
        (3, wire::icmpv4::unreachable::ADMIN_PROHIBITED)
    );
    let _ = e.vm2;
}

#[test]
fn security_groups_on_one_bridge_port() {
    let mut n = Net::new();
    let b = n.bridge();
    let (vm1, vm2) = (n.vm_port(b), n.vm_port(b));
    let (sg_in, sg_out) = (n.chain(), n.chain());
    n.rule(sg_out, json!({"type": "accept", "matchForwardFlow": true}));
    n.rule(sg_in, json!({"type": "accept", "matchReturnFlow": true}));
    n.rule(sg_in, json!({"type": "drop", "dlType": 2048}));
    n.set_port(vm1, |p| {
        p.inbound_filter_id = Some(sg_out);
        p.outbound_filter_id = Some(sg_in);
    });
    let mut r = Run::new(&n);
    r.learn(b, mac(1), vm1);
    r.learn(b, mac(2), vm2);
    let o = r.send(vm1, &ping(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 64));
    assert_eq!(out_ports(&o), vec![vm2], "{:?}", o.trace);
    let o = r.send(vm2, &pong(mac(2), mac(1), "10.0.0.2", "10.0.0.1"));
    assert_eq!(
        out_ports(&o),
        vec![vm1],
        "the reply comes in: {:?}",
        o.trace
    );
    assert!(
        r.send(vm2, &udp(mac(2), mac(1), "10.0.0.2", "10.0.0.1", 5, 6))
            .verdict
            .is_drop(),
        "new inbound refused"
    );
}

// Configurations the REST API accepts that once crashed or subverted an
// agent with one packet: each is harmless now.

#[test]
fn a_port_redirecting_to_itself_on_egress_is_a_loop_not_a_crash() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let c = n.chain();
    n.rule(
        c,
        json!({"type": "l2_transform", "flowAction": "redirect", "targetPortId": p2, "ingress": false}),
    );
    n.set_port(p2, |p| p.outbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    let o = r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2));
    assert_eq!(o.verdict, Verdict::ErrorDrop(DropReason::LoopDetected));
}

#[test]
fn nat_over_the_whole_address_space_or_a_slash_8_is_quick_and_sound() {
    for (from, to) in [
        ("0.0.0.0", "255.255.255.255"),
        ("10.0.0.0", "10.255.255.255"),
    ] {
        for leasing in [false, true] {
            let mut e = edge();
            e.n.rule(e.outbound, json!({"type": "snat", "flowAction": "accept", "outPorts": [e.up],
                "natTargets": [{"addressFrom": from, "addressTo": to, "portFrom": 1024, "portTo": 65535}]}));
            let mut r = ready(&e);
            r.state.nat_leasing = leasing;
            let t = std::time::Instant::now();
            for sport in 0..200u16 {
                let f = tcp(
                    mac(1),
                    mac(0xa1),
                    "10.0.1.5",
                    "203.0.113.9",
                    1000 + sport,
                    80,
                );
                let o = r.send(e.vm, &f);
                match (leasing, &o.verdict) {
                    (_, Verdict::Forward) => {}
                    // Leasing asks for a block on some address of the range.
                    (true, Verdict::NotYet(Missing::NatBlock { device, ip, .. })) => {
                        assert!(ip >= &self::ip(from) && ip <= &self::ip(to));
                        // The lease: the next block of that address.
                        let held = r.state.nat_blocks.entry((*device, *ip)).or_default();
                        held.push(100 + held.len() as u16);
                    }
                    (_, v) => panic!("{from}-{to} leasing {leasing}: {v:?}"),
                }
            }
            // Generous for a debug build; a walk of the range took 0.29 s
            // per connection.
            assert!(
                t.elapsed() < std::time::Duration::from_secs(5),
                "{:?}",
                t.elapsed()
            );
            if leasing {
                // Blocks are filled before new ones are asked for: 200
                // connections in 64-port blocks need at most 4 (plus the
                // first ask of each).
                let blocks: usize = r.state.nat_blocks.values().map(Vec::len).sum();
                assert!(blocks <= 8, "{blocks} blocks for 200 connections");
            }
        }
    }
}

#[test]
fn member_weights_summing_past_32_bits_still_balance() {
    let mut e = edge();
    balanced(
        &mut e,
        &[("10.0.1.5", 4_000_000_000), ("10.0.1.6", 4_000_000_000)],
    );
    let mut r = ready(&e);
    r.arp(e.r, "10.0.1.5", mac(5));
    r.arp(e.r, "10.0.1.6", mac(6));
    let hits = vip_hits(&mut r, &e, 400);
    assert!(hits.values().all(|n| *n > 120), "{hits:?}");
}

#[test]
fn many_sibling_jumps_skip_no_rule_and_deep_jumps_drop() {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let top = n.chain();
    // 40 security-group-like chains jumped to in turn; the last drops UDP.
    for i in 0..40 {
        let c = n.chain();
        if i == 39 {
            n.rule(c, json!({"type": "drop", "nwProto": 17}));
        }
        n.rule(top, json!({"type": "jump", "jumpChainId": c}));
    }
    n.set_bridge(b, |x| x.inbound_filter_id = Some(top));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    let o = r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2));
    assert!(
        o.verdict.is_drop(),
        "the 40th jump's drop applies: {:?}",
        o.verdict
    );
    // A chain of jumps 40 deep: dropped, not accepted half-way.
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let top = n.chain();
    let mut at = top;
    for _ in 0..40 {
        let c = n.chain();
        n.rule(at, json!({"type": "jump", "jumpChainId": c}));
        at = c;
    }
    n.set_bridge(b, |x| x.inbound_filter_id = Some(top));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), p2);
    let o = r.sim(p1, &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2));
    assert!(o.verdict.is_drop(), "{:?}", o.verdict);
}
