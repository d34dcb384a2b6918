//! Routers: forwarding across subnets, ARP, ICMP, routes, loops.

mod common;
use common::*;
use sim::flow::field;
use sim::*;
use wire::ipv4::Ipv4Packet;
use wire::{EthernetFrame, Icmpv4Packet, icmpv4};

/// vm1 (10.0.1.5) — b1 — r (10.0.1.1 | 10.0.2.1) — b2 — vm2 (10.0.2.5)
struct Two {
    n: Net,
    r: uuid::Uuid,
    b1: uuid::Uuid,
    b2: uuid::Uuid,
    rp1: uuid::Uuid,
    rp2: uuid::Uuid,
    vm1: uuid::Uuid,
    vm2: uuid::Uuid,
}

fn two_subnets() -> Two {
    let mut n = Net::new();
    let r = n.router();
    let (b1, rp1) = n.subnet(r, "10.0.1.1", 24, mac(0xa1));
    let (b2, rp2) = n.subnet(r, "10.0.2.1", 24, mac(0xa2));
    let vm1 = n.vm_port(b1);
    let vm2 = n.vm_port(b2);
    Two {
        n,
        r,
        b1,
        b2,
        rp1,
        rp2,
        vm1,
        vm2,
    }
}

fn icmp_of(frame: &[u8]) -> (u8, u8, std::net::Ipv4Addr, std::net::Ipv4Addr) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let i = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(i.verify_checksum());
    (i.msg_type(), i.code(), ip.src(), ip.dst())
}

#[test]
fn ping_across_subnets_rewrites_macs_and_ttl() {
    let t = two_subnets();
    let mut r = Run::new(&t.n);
    r.learn(t.b2, mac(2), t.vm2);
    r.arp(t.r, "10.0.2.5", mac(2));
    let f = ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.5", 64);
    let o = r.sim(t.vm1, &f);
    assert_eq!(o.verdict, Verdict::Forward, "{:?}", o.trace);
    assert_eq!(out_ports(&o), vec![t.vm2]);
    let (_, out) = &deliver(&o, &f)[0];
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!((eth.src(), eth.dst()), (mac(0xa2), mac(2)));
    let pkt = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(pkt.ttl(), 63);
    assert!(pkt.verify_checksum());
    for d in [t.vm1, t.b1, t.rp1, t.r, t.rp2, t.b2, t.vm2] {
        assert!(
            o.tags.contains(&Tag::Device(d)),
            "tagged with every device on the path"
        );
    }
    assert!(o.tags.contains(&Tag::Arp {
        router: t.r,
        ip: ip("10.0.2.5")
    }));
    // The reply path.
    r.learn(t.b1, mac(1), t.vm1);
    r.arp(t.r, "10.0.1.5", mac(1));
    let back = r.sim(t.vm2, &pong(mac(2), mac(0xa2), "10.0.2.5", "10.0.1.5"));
    assert_eq!(out_ports(&back), vec![t.vm1]);
}

#[test]
fn unresolved_next_hop_asks_by_arp_and_waits() {
    let t = two_subnets();
    let mut r = Run::new(&t.n);
    let o = r.sim(t.vm1, &ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.5", 64));
    assert_eq!(
        o.verdict,
        Verdict::NotYet(Missing::Arp {
            router: t.r,
            ip: ip("10.0.2.5")
        })
    );
    assert_eq!(
        o.emits.len(),
        1,
        "the ARP request is flooded to b2's exterior port"
    );
    assert_eq!(o.emits[0].output.port, t.vm2);
    let a = wire::ArpRepr::parse(&wire::ArpPacket::new_checked(&o.emits[0].frame[14..]).unwrap())
        .unwrap();
    assert_eq!(
        (a.spa, a.tpa, a.sha),
        (ip("10.0.2.1"), ip("10.0.2.5"), mac(0xa2))
    );
    assert!(o.flow.is_none());
    // The answer arrives and is learned; the retried packet goes through.
    let ans = r.send(t.vm2, &arp_reply(mac(2), "10.0.2.5", mac(0xa2), "10.0.2.1"));
    assert_eq!(ans.verdict, Verdict::Consumed);
    assert!(ans.writes.contains(&StateWrite::ArpLearned {
        router: t.r,
        ip: ip("10.0.2.5"),
        mac: mac(2)
    }));
    let o = r.send(t.vm1, &ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.5", 64));
    assert_eq!(out_ports(&o), vec![t.vm2]);
}

#[test]
fn router_answers_arp_and_ping_for_its_addresses() {
    let t = two_subnets();
    let mut r = Run::new(&t.n);
    // ARP for the router's port address: answered by the bridge (suppression).
    let o = r.sim(t.vm1, &arp_request(mac(1), "10.0.1.5", "10.0.1.1"));
    assert_eq!(o.verdict, Verdict::Consumed);
    // Ping the far port address: the router replies.
    r.learn(t.b1, mac(1), t.vm1);
    let o = r.sim(t.vm1, &ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.1", 64));
    assert_eq!(o.verdict, Verdict::Consumed, "{:?}", o.trace);
    assert_eq!(o.emits.len(), 1);
    assert_eq!(o.emits[0].output.port, t.vm1);
    assert_eq!(
        icmp_of(&o.emits[0].frame),
        (icmpv4::ECHO_REPLY, 0, ip("10.0.2.1"), ip("10.0.1.5"))
    );
}

#[test]
fn ttl_exceeded_and_unreachable_come_back_as_icmp() {
    let t = two_subnets();
    let mut r = Run::new(&t.n);
    r.learn(t.b1, mac(1), t.vm1);
    r.arp(t.r, "10.0.2.5", mac(2));
    let o = r.sim(
        t.vm1,
        &udp(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.5", 1, 33434)
            .iter()
            .enumerate()
            .map(|(i, b)| if i == 22 { 1 } else { *b })
            .collect::<Vec<u8>>(),
    );
    // (TTL 1 with a stale checksum is still routed; the router reads the TTL.)
    assert_eq!(o.verdict, Verdict::ErrorDrop(DropReason::TtlExpired));
    assert_eq!(
        icmp_of(&o.emits[0].frame),
        (icmpv4::TIME_EXCEEDED, 0, ip("10.0.1.1"), ip("10.0.1.5"))
    );
    // No state written or pinned; the topology it read still removes it.
    assert!(o.writes.is_empty());
    assert!(
        !o.tags
            .iter()
            .any(|t| matches!(t, Tag::ConnTrack(_) | Tag::Nat(_)))
    );
    assert!(o.tags.contains(&Tag::Device(t.r)), "{:?}", o.tags);
    assert_eq!(o.flow.unwrap().expiry_ms, ERROR_FLOW_EXPIRY_MS);

    let o = r.sim(t.vm1, &ping(mac(1), mac(0xa1), "10.0.1.5", "8.8.8.8", 64));
    assert_eq!(o.verdict, Verdict::ShortDrop(DropReason::NoRoute));
    assert_eq!(
        icmp_of(&o.emits[0].frame),
        (
            icmpv4::DST_UNREACHABLE,
            icmpv4::unreachable::NET,
            ip("10.0.1.1"),
            ip("10.0.1.5")
        )
    );
    // No ICMP error about an ICMP error.
    let mut n = t.n;
    let mut r = Run::new(&n);
    r.learn(t.b1, mac(1), t.vm1);
    let err = {
        // An ICMP error from vm1 to an unroutable address.
        let quote = ping(mac(1), mac(0xa1), "8.8.8.8", "10.0.1.5", 64);
        let repr = wire::Icmpv4Repr::DstUnreachable {
            code: 3,
            mtu: 0,
            quote: &quote[14..],
        };
        let mut p = vec![0u8; repr.buffer_len()];
        repr.emit(&mut p);
        let mut f = vec![0u8; 34 + p.len()];
        wire::EthernetRepr {
            src: mac(1),
            dst: mac(0xa1),
            ethertype: 0x0800,
            vlan: None,
        }
        .emit(&mut f);
        wire::Ipv4Repr {
            src: ip("10.0.1.5"),
            dst: ip("8.8.8.8"),
            protocol: 1,
            payload_len: p.len(),
            ttl: 64,
            tos: 0,
            ident: 1,
            dont_frag: false,
        }
        .emit(&mut f[14..]);
        f[34..].copy_from_slice(&p);
        f
    };
    let o = r.sim(t.vm1, &err);
    assert_eq!(o.verdict, Verdict::ShortDrop(DropReason::NoRoute));
    assert!(o.emits.is_empty(), "no ICMP error about an ICMP error");
    // Blackhole and reject routes.
    n.special_route(t.r, "192.168.0.0", 16, "BlackHole");
    n.special_route(t.r, "172.16.0.0", 12, "Reject");
    let mut r = Run::new(&n);
    r.learn(t.b1, mac(1), t.vm1);
    let o = r.sim(
        t.vm1,
        &ping(mac(1), mac(0xa1), "10.0.1.5", "192.168.1.1", 64),
    );
    assert_eq!(
        (o.verdict, o.emits.len()),
        (Verdict::ErrorDrop(DropReason::BlackholeRoute), 0)
    );
    // Deleting the blackhole route removes its drop flow at once.
    assert!(
        o.tags.iter().any(|t| matches!(t, Tag::Route(_))),
        "{:?}",
        o.tags
    );
    let o = r.sim(
        t.vm1,
        &ping(mac(1), mac(0xa1), "10.0.1.5", "172.16.1.1", 64),
    );
    assert_eq!(o.verdict, Verdict::ShortDrop(DropReason::RejectRoute));
    assert_eq!(
        icmp_of(&o.emits[0].frame).1,
        icmpv4::unreachable::ADMIN_PROHIBITED
    );
}

#[test]
fn longest_prefix_then_weight_then_ecmp() {
    let mut n = Net::new();
    let r = n.router();
    let (b1, _) = n.subnet(r, "10.0.1.1", 24, mac(0xa1));
    let vm = n.vm_port(b1);
    let u1 = n.uplink(r, "192.0.2.1", 24, mac(0xb1));
    let u2 = n.uplink(r, "198.51.100.1", 24, mac(0xb2));
    n.route(r, "0.0.0.0", 0, u1, Some("192.0.2.254"), 100);
    n.route(r, "203.0.113.0", 24, u2, Some("198.51.100.254"), 100);
    n.route(r, "203.0.113.0", 24, u1, Some("192.0.2.254"), 50);
    n.route(r, "203.0.113.128", 25, u2, Some("198.51.100.254"), 500);
    let mut run = Run::new(&n);
    run.arp(r, "192.0.2.254", mac(0xc1));
    run.arp(r, "198.51.100.254", mac(0xc2));
    let to = |run: &mut Run, dst: &str, sport: u16| {
        out_ports(&run.sim(vm, &udp(mac(1), mac(0xa1), "10.0.1.5", dst, sport, 53)))
    };
    assert_eq!(to(&mut run, "8.8.8.8", 1), vec![u1], "default route");
    assert_eq!(
        to(&mut run, "203.0.113.5", 1),
        vec![u1],
        "lower weight wins within a prefix"
    );
    assert_eq!(
        to(&mut run, "203.0.113.200", 1),
        vec![u2],
        "longer prefix wins over weight"
    );
    // ECMP: two equal routes spread flows by their hash.
    n.route(r, "100.64.0.0", 10, u2, Some("198.51.100.254"), 50);
    n.route(r, "100.64.0.0", 10, u1, Some("192.0.2.254"), 50);
    let mut run2 = Run::new(&n);
    run2.arp(r, "192.0.2.254", mac(0xc1));
    run2.arp(r, "198.51.100.254", mac(0xc2));
    let mut used = std::collections::HashSet::new();
    for sport in 1000..1064 {
        let o = run2.sim(
            vm,
            &udp(mac(1), mac(0xa1), "10.0.1.5", "100.64.1.1", sport, 53),
        );
        used.insert(out_ports(&o)[0]);
        assert!(
            o.flow.as_ref().unwrap().mask.contains(field::TP_SRC),
            "an ECMP choice depends on the ports"
        );
        // The same flow always takes the same path.
        let again = run2.sim(
            vm,
            &udp(mac(1), mac(0xa1), "10.0.1.5", "100.64.1.1", sport, 53),
        );
        assert_eq!(out_ports(&again), out_ports(&o));
    }
    assert_eq!(used.len(), 2, "both equal-cost routes carry flows");
}

#[test]
fn spoofed_arp_reply_moves_an_address() {
    let t = two_subnets();
    let mut r = Run::new(&t.n);
    let o = r.sim(t.vm1, &ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.2", 64));
    assert!(matches!(o.verdict, Verdict::NotYet(Missing::Arp { .. })));
    // vm2 claims 10.0.2.2 with an unsolicited reply to its gateway.
    let o = r.send(t.vm2, &arp_reply(mac(2), "10.0.2.2", mac(0xa2), "10.0.2.1"));
    assert!(o.writes.contains(&StateWrite::ArpLearned {
        router: t.r,
        ip: ip("10.0.2.2"),
        mac: mac(2)
    }));
    r.learn(t.b2, mac(2), t.vm2);
    assert_eq!(
        out_ports(&r.sim(t.vm1, &ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.2", 64))),
        vec![t.vm2]
    );
    // ARP from outside the port's subnet is not learned.
    let o = r.sim(t.vm2, &arp_reply(mac(9), "10.9.9.9", mac(0xa2), "10.0.2.1"));
    assert!(
        o.writes
            .iter()
            .all(|w| !matches!(w, StateWrite::ArpLearned { .. }))
    );
}

#[test]
fn frames_not_for_the_router_and_ipv6_are_dropped() {
    let t = two_subnets();
    let mut r = Run::new(&t.n);
    // Unicast to another MAC through the router-facing port never reaches the router.
    r.learn(t.b1, mac(0xa1), t.vm1);
    let o = r.sim(t.vm1, &ipv6(mac(1), mac(0xa1)));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::UnsupportedEtherType));
}

#[test]
fn a_routing_loop_is_caught() {
    let mut n = Net::new();
    let (r1, r2) = (n.router(), n.router());
    let b = n.bridge();
    let vm = n.vm_port(b);
    let g = n.router_port(r1, "10.0.0.1", 24, mac(0xa1));
    let bp = n.bridge_port(b);
    n.link(g, bp);
    n.route(r1, "10.0.0.0", 24, g, None, 1);
    let (x1, x2) = (
        n.router_port(r1, "169.254.0.1", 30, mac(0xb1)),
        n.router_port(r2, "169.254.0.2", 30, mac(0xb2)),
    );
    n.link(x1, x2);
    // Each router sends 8.8.8.8 to the other.
    n.route(r1, "0.0.0.0", 0, x1, Some("169.254.0.2"), 1);
    n.route(r2, "0.0.0.0", 0, x2, Some("169.254.0.1"), 1);
    let mut r = Run::new(&n);
    let mut f = ping(mac(1), mac(0xa1), "10.0.0.5", "8.8.8.8", 255);
    f[22] = 255;
    let o = r.sim(vm, &f);
    assert!(
        matches!(
            o.verdict,
            Verdict::ErrorDrop(DropReason::LoopDetected)
                | Verdict::ErrorDrop(DropReason::TtlExpired)
        ),
        "{:?}",
        o.verdict
    );
}

#[test]
fn trace_names_the_path() {
    let t = two_subnets();
    let mut r = Run::new(&t.n);
    r.learn(t.b2, mac(2), t.vm2);
    r.arp(t.r, "10.0.2.5", mac(2));
    let o = r.sim(t.vm1, &ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.5", 64));
    let steps: Vec<&str> = o.trace.iter().map(|s| s.what.as_str()).collect();
    assert!(
        steps.contains(&"bridge") && steps.contains(&"router"),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("route Normal to 10.0.2.0/24")),
        "{steps:?}"
    );
    assert!(steps.last().unwrap().starts_with("result: Forward"));
}

#[test]
fn an_agent_compiles_only_what_its_ports_reach() {
    let t = two_subnets();
    let mut n = t.n;
    // An unrelated tenant: its own bridge, router and chain.
    let other_r = n.router();
    let (other_b, _) = n.subnet(other_r, "10.9.0.1", 24, mac(0xee));
    let other_vm = n.vm_port(other_b);
    let c = n.chain();
    n.rule(c, serde_json::json!({"type": "drop"}));
    n.set_bridge(other_b, |b| b.inbound_filter_id = Some(c));
    let mine = n.o.reachable_from(&[t.vm1]);
    let ids = |v: &[model::Bridge]| v.iter().map(|b| b.id).collect::<Vec<_>>();
    assert!(
        ids(&mine.bridges).contains(&t.b1) && ids(&mine.bridges).contains(&t.b2),
        "through the router"
    );
    assert!(!ids(&mine.bridges).contains(&other_b));
    assert!(mine.routers.iter().all(|r| r.id == t.r));
    assert!(mine.chains.is_empty() && mine.rules.is_empty());
    assert!(
        mine.ports.iter().any(|p| p.id == t.vm2) && !mine.ports.iter().any(|p| p.id == other_vm)
    );
    // The slice simulates like the whole.
    let mut r = Run {
        topo: Topology::build(&mine),
        state: StateTables::default(),
        rng: XorShift(1),
        now: 0,
    };
    r.learn(t.b2, mac(2), t.vm2);
    r.arp(t.r, "10.0.2.5", mac(2));
    assert_eq!(
        out_ports(&r.sim(t.vm1, &ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.5", 64))),
        vec![t.vm2]
    );
    assert!(
        n.o.reachable_from(&[other_vm])
            .chains
            .iter()
            .any(|x| x.id == c)
    );
}

#[test]
fn stale_arp_entries_are_used_and_refreshed_then_expire() {
    let t = two_subnets();
    let mut r = Run::new(&t.n);
    r.learn(t.b2, mac(2), t.vm2);
    r.arp(t.r, "10.0.2.5", mac(2));
    let f = ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.5", 64);
    assert!(r.sim(t.vm1, &f).emits.is_empty(), "fresh: no ARP request");
    r.now += sim::state::ARP_STALE_MS + 1;
    let o = r.sim(t.vm1, &f);
    assert_eq!(out_ports(&o), vec![t.vm2], "stale: still used");
    assert_eq!(o.emits.len(), 1, "and refreshed by a request");
    r.now += sim::state::ARP_EXPIRY_MS;
    assert!(
        matches!(
            r.sim(t.vm1, &f).verdict,
            Verdict::NotYet(Missing::Arp { .. })
        ),
        "expired: asked again"
    );
}

#[test]
fn a_router_across_a_router_link_answers_ping() {
    // vm1 - bridge - tenant router - link 100.64.0.2 <-> 100.64.0.1 - provider.
    let mut n = Net::new();
    let tenant = n.router();
    let provider = n.router();
    let (b, _) = n.subnet(tenant, "10.0.0.1", 24, mac(0xa1));
    let vm = n.vm_port(b);
    let down = n.router_port(tenant, "100.64.0.2", 30, mac(0xd2));
    let up = n.router_port(provider, "100.64.0.1", 30, mac(0xd1));
    n.link(down, up);
    n.route(tenant, "0.0.0.0", 0, down, Some("100.64.0.1"), 100);
    n.route(provider, "10.0.0.0", 24, up, Some("100.64.0.2"), 100);
    let mut r = Run::new(&n);
    r.learn(b, mac(1), vm);
    r.arp(tenant, "10.0.0.5", mac(1));
    r.arp(tenant, "100.64.0.1", mac(0xd1));
    let o = r.sim(vm, &ping(mac(1), mac(0xa1), "10.0.0.5", "100.64.0.1", 64));
    assert_eq!(o.verdict, Verdict::Consumed, "{:?}", o.trace);
    assert_eq!(o.emits.len(), 1, "{:?}", o.trace);
    assert_eq!(o.emits[0].output.port, vm);
    assert_eq!(
        icmp_of(&o.emits[0].frame),
        (icmpv4::ECHO_REPLY, 0, ip("100.64.0.1"), ip("10.0.0.5"))
    );
}
