//! No input makes the simulation panic: random packets (and mutated real
//! ones) through random small topologies, and through topologies whose
//! rules are generated field by field, as any the API accepts (the approach
//! that found a self-redirect's recursion, a NAT range that divided by
//! zero, a wide range walked per connection and a jump limit skipping
//! rules).

mod common;
use common::*;
use proptest::prelude::*;
use serde_json::json;
use sim::*;

/// A random topology: 1–3 bridges with 1–3 VM ports, a router joining them,
/// a few routes, chains with random rules on random devices.
fn topology(seed: u64) -> (Net, Vec<uuid::Uuid>) {
    let mut rng = XorShift(seed | 1);
    let mut n = Net::new();
    let r = n.router();
    let mut vms = Vec::new();
    let nb = 1 + rng.next_u32() % 3;
    for i in 0..nb {
        let (b, _) = n.subnet(r, &format!("10.0.{i}.1"), 24, mac(0xa0 + i as u8));
        for _ in 0..1 + rng.next_u32() % 3 {
            vms.push(n.vm_port(b));
        }
    }
    let up = n.uplink(r, "203.0.113.1", 24, mac(0xb0));
    vms.push(up);
    n.route(r, "0.0.0.0", 0, up, Some("203.0.113.254"), 10);
    let rules = [
        json!({"type": "drop", "nwProto": 6, "tpDst": {"start": 22, "end": 22}}),
        json!({"type": "accept", "matchReturnFlow": true}),
        json!({"type": "drop", "dlType": 0x86dd, "invDlType": true, "condInvert": true}),
        json!({"type": "snat", "flowAction": "accept", "natTargets": [{"addressFrom": "203.0.113.5", "addressTo": "203.0.113.6", "portFrom": 1000, "portTo": 1010}]}),
        json!({"type": "dnat", "flowAction": "continue", "nwDstAddress": "203.0.113.80", "nwDstLength": 32,
               "natTargets": [{"addressFrom": "10.0.0.9", "addressTo": "10.0.0.9", "portFrom": 0, "portTo": 0}]}),
        json!({"type": "rev_snat", "flowAction": "accept"}),
        json!({"type": "rev_dnat", "flowAction": "return"}),
        json!({"type": "reject", "nwSrcAddress": "10.0.1.0", "nwSrcLength": 24}),
        json!({"type": "return", "fragmentPolicy": "nonheader"}),
    ];
    let c = n.chain();
    for _ in 0..rng.next_u32() % 6 {
        n.rule(c, rules[rng.next_u32() as usize % rules.len()].clone());
    }
    let c2 = n.chain();
    n.rule(c2, json!({"type": "jump", "jumpChainId": c}));
    n.rule(c, json!({"type": "jump", "jumpChainId": c2}));
    match rng.next_u32() % 3 {
        0 => n.set_router(r, |x| x.inbound_filter_id = Some(c2)),
        1 => n.set_router(r, |x| x.outbound_filter_id = Some(c)),
        _ => n.set_port(vms[0], |p| p.inbound_filter_id = Some(c2)),
    }
    (n, vms)
}

fn frames(seed: u64) -> Vec<Vec<u8>> {
    vec![
        udp(mac(1), mac(0xa0), "10.0.0.5", "10.0.1.5", 1, 2),
        tcp(mac(1), mac(0xa0), "10.0.0.5", "8.8.8.8", 3333, 22),
        ping(mac(1), mac(0xa0), "10.0.0.5", "10.0.0.1", (seed % 3) as u8),
        arp_request(mac(1), "10.0.0.5", "10.0.0.1"),
        arp_reply(mac(1), "10.0.0.5", mac(0xa0), "10.0.0.1"),
        fragment(
            mac(1),
            mac(0xa0),
            "10.0.0.5",
            "10.0.1.5",
            seed.is_multiple_of(2),
        ),
        ipv6(mac(1), wire::Mac::BROADCAST),
        tcp(mac(9), mac(0xb0), "8.8.8.8", "203.0.113.80", 80, 5555),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_packets_through_random_topologies(
        seed in any::<u64>(),
        which in 0usize..8,
        flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
        cut in any::<u16>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let (n, ports) = topology(seed);
        let mut r = Run::new(&n);
        let mut f = frames(seed)[which].clone();
        for (at, v) in flips {
            let i = usize::from(at) % f.len();
            f[i] = v;
        }
        let n_cut = usize::from(cut) % (f.len() + 1);
        for port in &ports {
            for frame in [&f[..], &f[..n_cut], &garbage[..]] {
                let o = r.send(*port, frame);
                // Whatever happened, the outcome is coherent.
                if o.verdict == Verdict::Forward {
                    prop_assert!(o.outputs().count() > 0);
                    prop_assert!(o.flow.is_some());
                }
                let _ = sim::actions::execute(&o.actions, frame);
            }
        }
    }
}

/// A rule of any type with random fields: addresses and ranges anywhere in
/// their spaces, jumps to any chain (itself, a sibling, a cycle), redirects
/// to any port (the rule's own port included), both directions.
fn any_rule(rng: &mut XorShift, chains: &[uuid::Uuid], ports: &[uuid::Uuid]) -> serde_json::Value {
    let ip = |rng: &mut XorShift| std::net::Ipv4Addr::from(rng.next_u32()).to_string();
    let pick = |rng: &mut XorShift, v: &[uuid::Uuid]| v[rng.next_u32() as usize % v.len()];
    let types = [
        "accept",
        "drop",
        "reject",
        "return",
        "jump",
        "dnat",
        "snat",
        "rev_dnat",
        "rev_snat",
        "l2_transform",
    ];
    let actions = ["accept", "continue", "return", "drop", "reject", "redirect"];
    let t = types[rng.next_u32() as usize % types.len()];
    let mut v = json!({"type": t});
    let flow = actions[rng.next_u32() as usize % actions.len()];
    match t {
        "jump" => v["jumpChainId"] = json!(pick(rng, chains)),
        "dnat" | "snat" => {
            let (a, b) = (rng.next_u32(), rng.next_u32());
            // Whole space, a /8, or two random ends (the API orders them).
            let (lo, hi) = match rng.next_u32() % 3 {
                0 => (0, u32::MAX),
                1 => (a & 0xff00_0000, a | 0x00ff_ffff),
                _ => (a.min(b), a.max(b)),
            };
            let (p, q) = (rng.next_u32() % 65536, rng.next_u32() % 65536);
            v["flowAction"] = json!(flow);
            v["natTargets"] = json!([{
                "addressFrom": std::net::Ipv4Addr::from(lo).to_string(),
                "addressTo": std::net::Ipv4Addr::from(hi).to_string(),
                "portFrom": p.min(q), "portTo": p.max(q),
            }]);
        }
        "rev_dnat" | "rev_snat" => v["flowAction"] = json!(flow),
        "l2_transform" => {
            v["flowAction"] = json!(if rng.next_u32().is_multiple_of(2) {
                "redirect"
            } else {
                "accept"
            });
            v["targetPortId"] = json!(pick(rng, ports));
            v["ingress"] = json!(rng.next_u32().is_multiple_of(2));
            v["failOpen"] = json!(rng.next_u32().is_multiple_of(2));
            if rng.next_u32().is_multiple_of(3) {
                v["pushVlan"] = json!(rng.next_u32() % 4096);
            }
            v["popVlan"] = json!(rng.next_u32().is_multiple_of(4));
        }
        _ => {}
    }
    // A random condition on some fields.
    if rng.next_u32().is_multiple_of(2) {
        v["nwSrcAddress"] = json!(ip(rng));
        v["nwSrcLength"] = json!(rng.next_u32() % 33);
    }
    if rng.next_u32().is_multiple_of(3) {
        v["nwProto"] = json!([1, 6, 17][rng.next_u32() as usize % 3]);
        let (p, q) = (rng.next_u32() % 65536, rng.next_u32() % 65536);
        v["tpDst"] = json!({"start": p.min(q), "end": p.max(q)});
    }
    if rng.next_u32().is_multiple_of(4) {
        v["condInvert"] = json!(true);
    }
    if rng.next_u32().is_multiple_of(4) {
        v["matchForwardFlow"] = json!(true);
    }
    v
}

/// A topology as `topology` builds, then 2-6 chains of generated rules
/// hung on random ports' and routers' filters.
fn generated(seed: u64) -> (Net, Vec<uuid::Uuid>, usize) {
    let (mut n, ports) = topology(seed);
    let mut rng = XorShift(seed.rotate_left(17) | 1);
    let chains: Vec<uuid::Uuid> = (0..2 + rng.next_u32() % 5).map(|_| n.chain()).collect();
    let mut accepted = 0;
    for _ in 0..rng.next_u32() % 40 {
        let c = chains[rng.next_u32() as usize % chains.len()];
        let r = any_rule(&mut rng, &chains, &ports);
        accepted += usize::from(n.try_rule(c, r).is_some());
    }
    for p in &ports {
        let pick = |rng: &mut XorShift| {
            (rng.next_u32().is_multiple_of(2))
                .then(|| chains[rng.next_u32() as usize % chains.len()])
        };
        let (i, o) = (pick(&mut rng), pick(&mut rng));
        n.set_port(*p, |x| {
            x.inbound_filter_id = i;
            x.outbound_filter_id = o;
        });
    }
    (n, ports, accepted)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn generated_rules_the_api_accepts_never_crash_the_simulation(seed in any::<u64>(), which in 0usize..8) {
        let (n, ports, _) = generated(seed);
        let mut r = Run::new(&n);
        let f = frames(seed)[which].clone();
        for port in &ports {
            // Twice: the second packet meets the first one's state (NAT
            // bindings, conntrack) and leased blocks.
            for _ in 0..2 {
                let o = r.send(*port, &f);
                if o.verdict == Verdict::Forward {
                    prop_assert!(o.outputs().count() > 0);
                }
                let _ = sim::actions::execute(&o.actions, &f);
            }
        }
    }
}

/// The generator makes rules the API accepts, not only ones it refuses.
#[test]
fn the_generator_makes_accepted_rules() {
    let total: usize = (1..200u64).map(|s| generated(s).2).sum();
    assert!(total > 1000, "only {total} generated rules were accepted");
}
