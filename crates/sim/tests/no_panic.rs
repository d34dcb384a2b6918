//! No input makes the simulation panic: random packets (and mutated real
//! ones) through random small topologies.

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
