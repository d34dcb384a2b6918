//! Simulations per second on one core, for the four shapes of issue 3:
//! (a) L2 unicast on a bridge with a learned MAC; (b) bridge → router →
//! bridge with ARP resolved; (c) a new connection through a router with
//! dynamic SNAT, conntrack and a 100-rule chain; (d) a new connection to an
//! L4 load-balancer VIP.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sim::*;
use std::hint::black_box;

/// One simulation of `frame` from `port`.
fn once(r: &mut Run, port: uuid::Uuid, frame: &[u8], out: &mut Outcome) {
    simulate(
        &r.topo,
        &r.state,
        &Input {
            in_port: port,
            frame: black_box(frame),
            now: r.now,
            trace: false,
        },
        &mut r.rng,
        out,
    );
}

fn run(
    c: &mut Criterion,
    name: &str,
    r: &mut Run,
    port: uuid::Uuid,
    frames: &[Vec<u8>],
    expect: Verdict,
) {
    let mut out = Outcome::default();
    // Sanity: the benchmark measures the path it claims to.
    once(r, port, &frames[0], &mut out);
    assert_eq!(out.verdict, expect, "{name}: {:?}", out.trace);
    let mut g = c.benchmark_group("simulation");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function(name, |b| {
        b.iter(|| {
            let f = &frames[i % frames.len()];
            i += 1;
            once(r, port, f, &mut out);
            black_box(&out.verdict);
        })
    });
    // The same with the agent's meter around it (counted, one in 64
    // timed, drops by class): what the metrics cost a simulation.
    let mut meter = sim::meter::Meter::default();
    g.bench_function(format!("{name}_metered"), |b| {
        b.iter(|| {
            let f = &frames[i % frames.len()];
            i += 1;
            meter.run(|| once(r, port, f, &mut out));
            black_box(meter.verdict(&out.verdict));
        })
    });
    // A live trace request on the ingress port that this traffic does not
    // match (its condition is read there): what an active request costs
    // the packets it does not trace.
    let other: model::Condition = serde_json::from_value(
        json!({"nwProto": 1, "nwDstAddress": "192.0.2.1", "nwDstLength": 32}),
    )
    .unwrap();
    r.topo.traces.add(port, uuid::Uuid::from_u128(1), &other);
    once(r, port, &frames[0], &mut out);
    assert!(out.traced.is_empty() && out.trace.is_empty(), "{name}");
    g.bench_function(format!("{name}_trace_request_unmatched"), |b| {
        b.iter(|| {
            let f = &frames[i % frames.len()];
            i += 1;
            once(r, port, f, &mut out);
            black_box(&out.verdict);
        })
    });
    // One it matches: each packet is walked twice, the second time recorded.
    let every = uuid::Uuid::from_u128(2);
    r.topo.traces.add(port, every, &model::Condition::default());
    once(r, port, &frames[0], &mut out);
    assert_eq!(out.traced, vec![every], "{name}");
    g.bench_function(format!("{name}_trace_request_matched"), |b| {
        b.iter(|| {
            let f = &frames[i % frames.len()];
            i += 1;
            once(r, port, f, &mut out);
            black_box(&out.trace.len());
        })
    });
    r.topo.traces = Default::default();
    g.finish();
}

fn l2(c: &mut Criterion) {
    let mut n = Net::new();
    let b = n.bridge();
    let (p1, p2) = (n.vm_port(b), n.vm_port(b));
    let mut r = Run::new(&n);
    r.learn(b, mac(1), p1);
    r.learn(b, mac(2), p2);
    let frames = vec![udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000)];
    run(
        c,
        "a_l2_unicast_learned",
        &mut r,
        p1,
        &frames,
        Verdict::Forward,
    );
}

fn routed(c: &mut Criterion) {
    let mut n = Net::new();
    let rt = n.router();
    let (b1, _) = n.subnet(rt, "10.0.1.1", 24, mac(0xa1));
    let (b2, _) = n.subnet(rt, "10.0.2.1", 24, mac(0xa2));
    let (vm1, vm2) = (n.vm_port(b1), n.vm_port(b2));
    let mut r = Run::new(&n);
    r.learn(b1, mac(1), vm1);
    r.learn(b2, mac(2), vm2);
    r.arp(rt, "10.0.2.5", mac(2));
    let frames = vec![udp(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.5", 1000, 2000)];
    run(
        c,
        "b_bridge_router_bridge",
        &mut r,
        vm1,
        &frames,
        Verdict::Forward,
    );
}

fn snat(c: &mut Criterion) {
    let mut n = Net::new();
    let rt = n.router();
    let (b, _) = n.subnet(rt, "10.0.1.1", 24, mac(0xa1));
    let vm = n.vm_port(b);
    let up = n.uplink(rt, "203.0.113.1", 24, mac(0xb1));
    n.route(rt, "0.0.0.0", 0, up, Some("203.0.113.254"), 10);
    let chain = n.chain();
    // 100 rules: 98 that do not match, then conntrack, then SNAT.
    for i in 0..98u32 {
        n.rule(chain, json!({"type": "drop", "nwSrcAddress": format!("172.16.{}.0", i), "nwSrcLength": 24, "nwProto": 6,
            "tpDst": {"start": 1 + i, "end": 1 + i}}));
    }
    n.rule(chain, json!({"type": "accept", "matchReturnFlow": true}));
    n.rule(chain, json!({"type": "snat", "flowAction": "accept", "matchForwardFlow": true,
        "natTargets": [{"addressFrom": "203.0.113.100", "addressTo": "203.0.113.100", "portFrom": 1024, "portTo": 65535}]}));
    n.set_router(rt, |x| x.outbound_filter_id = Some(chain));
    let mut r = Run::new(&n);
    r.learn(b, mac(0xa1), vm);
    r.arp(rt, "203.0.113.254", mac(0xfe));
    let frames: Vec<Vec<u8>> = (0..4096u16)
        .map(|i| {
            tcp(
                mac(1),
                mac(0xa1),
                "10.0.1.5",
                "198.51.100.7",
                10000 + i,
                443,
            )
        })
        .collect();
    run(
        c,
        "c_snat_conntrack_100_rules",
        &mut r,
        vm,
        &frames,
        Verdict::Forward,
    );
}

fn lb(c: &mut Criterion) {
    let mut n = Net::new();
    let rt = n.router();
    let (b, _) = n.subnet(rt, "10.0.1.1", 24, mac(0xa1));
    let _vm = n.vm_port(b);
    let up = n.uplink(rt, "203.0.113.1", 24, mac(0xb1));
    n.route(rt, "0.0.0.0", 0, up, Some("203.0.113.254"), 10);
    let lb: model::LoadBalancer =
        serde_json::from_value(json!({"id": uuid::Uuid::new_v4()})).unwrap();
    let pool: model::Pool = serde_json::from_value(
        json!({"id": uuid::Uuid::new_v4(), "loadBalancerId": lb.id, "lbMethod": "ROUND_ROBIN"}),
    )
    .unwrap();
    for (i, w) in [1, 3, 9].iter().enumerate() {
        n.o.members.push(
            serde_json::from_value(json!({"id": uuid::Uuid::new_v4(), "poolId": pool.id,
            "address": format!("10.0.1.{}", 10 + i), "protocolPort": 8080, "weight": w}))
            .unwrap(),
        );
    }
    n.o.vips.push(
        serde_json::from_value(
            json!({"id": uuid::Uuid::new_v4(), "poolId": pool.id, "loadBalancerId": lb.id,
        "address": "203.0.113.80", "protocolPort": 80}),
        )
        .unwrap(),
    );
    n.o.pools.push(pool);
    n.o.load_balancers.push(lb.clone());
    n.set_router(rt, |x| x.load_balancer_id = Some(lb.id));
    let mut r = Run::new(&n);
    for i in 0..3 {
        r.arp(rt, &format!("10.0.1.{}", 10 + i), mac(10 + i as u8));
    }
    let frames: Vec<Vec<u8>> = (0..4096u16)
        .map(|i| {
            tcp(
                mac(9),
                mac(0xb1),
                "198.51.100.7",
                "203.0.113.80",
                10000 + i,
                80,
            )
        })
        .collect();
    run(
        c,
        "d_new_connection_to_vip",
        &mut r,
        up,
        &frames,
        Verdict::Forward,
    );
}

criterion_group!(benches, l2, routed, snat, lb);
criterion_main!(benches);
