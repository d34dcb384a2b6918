//! Cost of one topology change at a gateway host that reaches every tenant,
//! for N tenants: the incremental engine against the full recompute it
//! replaced (reach walked from the ports and everything compiled again).
//! Each change includes what the agent hands its workers: the delta of the
//! entries it recompiled.
//!
//! `cargo bench -p topology --bench scale` prints one row per N.

use model::{Kind, Obj};
use serde_json::{Value, json};
use std::time::Instant;
use topology::Engine;
use uuid::Uuid;

fn obj(kind: Kind, v: Value) -> Obj {
    Obj::decode(kind, v.to_string().as_bytes()).expect("fixture decodes")
}

/// A provider router with `n` tenants, each a router linked to it, a bridge
/// with two VM ports, a 5-rule chain on the bridge and two routes (~16
/// objects); the host's port is on the provider router.
fn cloud(n: usize, host: Uuid) -> (Vec<Obj>, Vec<Uuid>) {
    let mut v = Vec::new();
    let provider = Uuid::new_v4();
    v.push(obj(Kind::Router, json!({"id": provider})));
    let up = Uuid::new_v4();
    v.push(obj(Kind::Port, json!({"id": up, "type": "Router", "deviceId": provider, "hostId": host,
        "interfaceName": "uplink", "portAddress": "203.0.113.1", "networkAddress": "203.0.113.0", "networkLength": 24,
        "portMac": "02:00:00:00:00:01"})));
    let mut chains = Vec::new();
    for i in 0..n {
        let (r, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (pp, rp, rb, br) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let net = format!("10.{}.{}.0", i / 256, i % 256);
        v.push(obj(Kind::Router, json!({"id": r})));
        v.push(obj(Kind::Bridge, json!({"id": b, "inboundFilterId": c})));
        v.push(obj(Kind::Port, json!({"id": pp, "type": "Router", "deviceId": provider, "peerId": rp,
            "portAddress": "169.254.0.1", "networkAddress": "169.254.0.0", "networkLength": 30, "portMac": "02:00:00:00:01:01"})));
        v.push(obj(Kind::Port, json!({"id": rp, "type": "Router", "deviceId": r, "peerId": pp,
            "portAddress": "169.254.0.2", "networkAddress": "169.254.0.0", "networkLength": 30, "portMac": "02:00:00:00:01:02"})));
        v.push(obj(Kind::Port, json!({"id": rb, "type": "Router", "deviceId": r, "peerId": br,
            "portAddress": format!("10.{}.{}.1", i / 256, i % 256), "networkAddress": net, "networkLength": 24,
            "portMac": "02:00:00:00:01:03"})));
        v.push(obj(
            Kind::Port,
            json!({"id": br, "type": "Bridge", "deviceId": b, "peerId": rb}),
        ));
        for _ in 0..2 {
            v.push(obj(
                Kind::Port,
                json!({"id": Uuid::new_v4(), "type": "Bridge", "deviceId": b,
                "hostId": Uuid::new_v4(), "interfaceName": "tap"}),
            ));
        }
        let rules: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        v.push(obj(Kind::Chain, json!({"id": c, "ruleIds": rules})));
        for id in &rules {
            v.push(obj(Kind::Rule, json!({"id": id, "chainId": c, "type": "accept", "nwProto": 6, "tpDst": {"start": 22, "end": 22}})));
        }
        v.push(obj(Kind::Route, json!({"id": Uuid::new_v4(), "routerId": provider, "nextHopPort": pp,
            "dstNetworkAddr": net, "dstNetworkLength": 24, "srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0})));
        v.push(obj(Kind::Route, json!({"id": Uuid::new_v4(), "routerId": r, "nextHopPort": rp,
            "dstNetworkAddr": "0.0.0.0", "dstNetworkLength": 0, "srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0})));
        chains.push(c);
    }
    (v, chains)
}

/// Commits, and makes the workers' delta as the agent does; whether the
/// commit walked the host's reach again.
fn publish(e: &mut Engine) -> bool {
    let c = e.commit();
    std::hint::black_box(e.topology().delta(c.compiled));
    c.rewalked
}

fn main() {
    println!(
        "tenants objects full_recompute_ms rule_add_us port_add_us port_delete_us ratio_full_to_rule_add rewalks"
    );
    for n in [100usize, 1000, 10000] {
        let host = Uuid::new_v4();
        let (objs, chains) = cloud(n, host);
        let count = objs.len();
        let mut e = Engine::new(host, true);
        for o in objs {
            e.put(o);
        }
        e.commit();
        let t = Instant::now();
        let runs = if n >= 10000 { 3 } else { 10 };
        for _ in 0..runs {
            e.recompute();
        }
        let full = t.elapsed().as_secs_f64() * 1e3 / runs as f64;
        // A rule added to one tenant's chain: the rule and the chain's new list.
        let changes = 200;
        let t = Instant::now();
        for i in 0..changes {
            let c = chains[(i * 7919) % chains.len()];
            let rule = Uuid::new_v4();
            e.put(obj(
                Kind::Rule,
                json!({"id": rule, "chainId": c, "type": "drop"}),
            ));
            let mut chain = match e.get((Kind::Chain, c)) {
                Some(Obj::Chain(x)) => x.clone(),
                _ => unreachable!(),
            };
            chain.rule_ids.push(rule);
            e.put(Obj::Chain(chain));
            publish(&mut e);
        }
        let rule_us = t.elapsed().as_secs_f64() * 1e6 / changes as f64;
        // A VM port added to one tenant's bridge.
        let bridges: Vec<Uuid> = e
            .reached()
            .iter()
            .filter(|k| k.0 == Kind::Bridge)
            .map(|k| k.1)
            .collect();
        let mut ports = Vec::new();
        let t = Instant::now();
        for i in 0..changes {
            let b = bridges[(i * 7919) % bridges.len()];
            let id = Uuid::new_v4();
            e.put(obj(
                Kind::Port,
                json!({"id": id, "type": "Bridge", "deviceId": b,
                "hostId": Uuid::new_v4(), "interfaceName": "tap"}),
            ));
            publish(&mut e);
            ports.push(id);
        }
        let port_us = t.elapsed().as_secs_f64() * 1e6 / changes as f64;
        // Those ports deleted again: a change that may shrink reach.
        let mut rewalks = 0;
        let t = Instant::now();
        for id in ports {
            e.delete(Kind::Port, id);
            rewalks += usize::from(publish(&mut e));
        }
        let delete_us = t.elapsed().as_secs_f64() * 1e6 / changes as f64;
        println!(
            "{n} {count} {full:.1} {rule_us:.1} {port_us:.1} {delete_us:.1} {:.0} {rewalks}",
            full * 1e3 / rule_us
        );
    }
}
