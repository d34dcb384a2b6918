//! The incremental engine against the full recompute: random sequences of
//! changes over a small cloud, applied one by one and committed in random
//! batches, must leave the same reach and the same compiled topology as a
//! recompute from the final objects alone.

// Random words picked by remainder read as such.
#![allow(clippy::manual_is_multiple_of)]

use model::{Kind, Obj};
use proptest::prelude::*;
use serde_json::{Value, json};
use topology::Engine;
use uuid::Uuid;

const HOST: u128 = 0xff;

fn id(kind: u8, i: u8) -> Uuid {
    Uuid::from_u128(((kind as u128) << 8) | i as u128 | 0x1000)
}

/// How many objects of each kind the cloud has.
const KINDS: [(Kind, u8); 14] = [
    (Kind::Bridge, 3),
    (Kind::Router, 2),
    (Kind::Port, 9),
    (Kind::Route, 4),
    (Kind::Chain, 3),
    (Kind::Rule, 5),
    (Kind::PortGroup, 2),
    (Kind::IpAddrGroup, 1),
    (Kind::DhcpSubnet, 2),
    (Kind::LoadBalancer, 1),
    (Kind::Pool, 2),
    (Kind::PoolMember, 3),
    (Kind::Vip, 2),
    (Kind::HealthMonitor, 1),
];

fn kind_no(k: Kind) -> u8 {
    KINDS.iter().position(|(x, _)| *x == k).unwrap() as u8
}

fn some(k: Kind, r: u32) -> Uuid {
    let n = KINDS[kind_no(k) as usize].1;
    id(kind_no(k), (r % n as u32) as u8)
}

fn opt(k: Kind, r: u32) -> Value {
    if r % 3 == 0 {
        Value::Null
    } else {
        json!(some(k, r / 3))
    }
}

/// A random version of object `i` of `kind`, from random words `w`.
fn version(kind: Kind, i: u8, w: &[u32; 8]) -> Obj {
    let me = id(kind_no(kind), i);
    let v = match kind {
        Kind::Bridge => json!({"id": me, "adminStateUp": w[0] % 4 != 0,
            "inboundFilterId": opt(Kind::Chain, w[1]), "outboundFilterId": opt(Kind::Chain, w[2])}),
        Kind::Router => json!({"id": me, "adminStateUp": w[0] % 4 != 0,
            "inboundFilterId": opt(Kind::Chain, w[1]), "forwardChainId": opt(Kind::Chain, w[2]),
            "loadBalancerId": opt(Kind::LoadBalancer, w[3])}),
        Kind::Port => {
            // Ports 0-5 are bridge ports, 6-8 router ports.
            let router = i >= 6;
            let host = match w[1] % 3 {
                0 => json!(Uuid::from_u128(HOST)),
                1 => json!(Uuid::from_u128(HOST + 1)),
                _ => Value::Null,
            };
            json!({"id": me, "type": if router { "Router" } else { "Bridge" },
                "deviceId": if router { some(Kind::Router, w[0]) } else { some(Kind::Bridge, w[0]) },
                "hostId": host, "interfaceName": if w[2] % 2 == 0 { json!("eth0") } else { Value::Null },
                "peerId": opt(Kind::Port, w[3]), "adminStateUp": w[4] % 5 != 0,
                "inboundFilterId": opt(Kind::Chain, w[5]),
                "vlanId": if w[6] % 4 == 0 { json!(10) } else { Value::Null },
                "portMac": format!("02:00:00:00:00:{:02x}", w[7] % 4),
                "portAddress": if router { json!(format!("10.0.{}.1", w[7] % 3)) } else { Value::Null },
                "networkAddress": if router { json!(format!("10.0.{}.0", w[7] % 3)) } else { Value::Null },
                "networkLength": 24})
        }
        Kind::Route => {
            json!({"id": me, "routerId": opt(Kind::Router, w[0]), "nextHopPort": opt(Kind::Port, w[1]),
            "type": if w[2] % 3 == 0 { "Local" } else { "Normal" },
            "dstNetworkAddr": format!("10.0.{}.1", w[3] % 3), "dstNetworkLength": if w[4] % 2 == 0 { 32 } else { 24 },
            "srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0, "weight": w[5] % 3})
        }
        Kind::Chain => {
            let rules: Vec<Uuid> = (0..(w[0] % 4))
                .map(|j| some(Kind::Rule, w[1 + j as usize]))
                .collect();
            json!({"id": me, "name": "c", "ruleIds": rules})
        }
        Kind::Rule => json!({"id": me, "chainId": some(Kind::Chain, w[0]),
            "type": if w[1] % 2 == 0 { "jump" } else { "accept" },
            "jumpChainId": opt(Kind::Chain, w[2]), "targetPortId": opt(Kind::Port, w[3]),
            "portGroup": opt(Kind::PortGroup, w[4]), "ipAddrGroupSrc": opt(Kind::IpAddrGroup, w[5])}),
        Kind::PortGroup => {
            let ports: Vec<Uuid> = (0..(w[0] % 4))
                .map(|j| some(Kind::Port, w[1 + j as usize]))
                .collect();
            json!({"id": me, "stateful": w[6] % 2 == 0, "portIds": ports})
        }
        Kind::IpAddrGroup => json!({"id": me, "addrs": [format!("10.1.0.{}", w[0] % 4)]}),
        Kind::DhcpSubnet => json!({"id": me, "bridgeId": some(Kind::Bridge, w[0]),
            "subnetPrefix": "10.0.0.0", "subnetLength": 24}),
        Kind::LoadBalancer => json!({"id": me, "adminStateUp": w[0] % 3 != 0}),
        Kind::Pool => json!({"id": me, "loadBalancerId": opt(Kind::LoadBalancer, w[0]),
            "healthMonitorId": opt(Kind::HealthMonitor, w[1]), "adminStateUp": true}),
        Kind::PoolMember => {
            json!({"id": me, "poolId": opt(Kind::Pool, w[0]), "address": "10.0.0.5",
            "protocolPort": 80 + w[1] % 2, "weight": w[2] % 3, "adminStateUp": true})
        }
        Kind::Vip => {
            json!({"id": me, "poolId": opt(Kind::Pool, w[0]), "loadBalancerId": opt(Kind::LoadBalancer, w[1]),
            "address": "10.9.0.1", "protocolPort": 80, "adminStateUp": true})
        }
        Kind::HealthMonitor => json!({"id": me}),
        _ => unreachable!(),
    };
    let o = Obj::decode(kind, v.to_string().as_bytes())
        .unwrap_or_else(|| panic!("fixture {kind:?} decodes: {v}"));
    assert_eq!(o.id(), me);
    o
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8, [u32; 8]),
    Delete(u8, u8),
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..14u8, 0..9u8, any::<[u32; 8]>()).prop_map(|(k, i, w)| Op::Put(k, i, w)),
        2 => (0..14u8, 0..9u8).prop_map(|(k, i)| Op::Delete(k, i)),
        1 => Just(Op::Commit),
    ]
}

fn oracle(e: &Engine) -> (Vec<(Kind, Uuid)>, String) {
    // A fresh engine fed the final objects, recomputed in full.
    let mut full = Engine::new(Uuid::from_u128(HOST), true);
    for (k, n) in KINDS {
        for i in 0..n {
            if let Some(o) = e.get((k, id(kind_no(k), i))) {
                full.put(o.clone());
            }
        }
    }
    full.recompute();
    let mut r: Vec<_> = full.reached().iter().copied().collect();
    r.sort();
    (r, full.topology().canonical())
}

/// Commits, then holds reach and topology equal to the full recompute's, and
/// so does a copy of the topology kept by the commits' deltas (a worker's).
fn commit_matches_full(e: &mut Engine, copy: &mut sim::Topology) -> Result<(), TestCaseError> {
    let c = e.commit();
    copy.apply(&e.topology().delta(c.compiled));
    let mut r: Vec<_> = e.reached().iter().copied().collect();
    r.sort();
    let (want_r, want_t) = oracle(e);
    prop_assert_eq!(&r, &want_r, "reach");
    prop_assert_eq!(&e.topology().canonical(), &want_t, "topology");
    prop_assert_eq!(copy.canonical(), want_t, "the copy kept by deltas");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full_recompute(ops in prop::collection::vec(op(), 1..60)) {
        let mut e = Engine::new(Uuid::from_u128(HOST), true);
        let mut copy = sim::Topology::default();
        for o in ops {
            match o {
                Op::Put(k, i, w) => {
                    let (kind, n) = KINDS[k as usize];
                    e.put(version(kind, i % n, &w));
                }
                Op::Delete(k, i) => {
                    let (kind, n) = KINDS[k as usize];
                    e.delete(kind, id(k, i % n));
                }
                Op::Commit => commit_matches_full(&mut e, &mut copy)?,
            }
        }
        commit_matches_full(&mut e, &mut copy)?;
    }
}

/// Linking a tenant's router to the bridge of a bound port brings the router,
/// its ports and routes into reach; unlinking takes them out again.
#[test]
fn reach_is_gained_and_lost_as_links_are_made_and_removed() {
    let host = Uuid::new_v4();
    let (b, r) = (Uuid::new_v4(), Uuid::new_v4());
    let (vm, bp, rp, route) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let o = |k: Kind, v: Value| Obj::decode(k, v.to_string().as_bytes()).unwrap();
    let mut e = Engine::new(host, true);
    e.put(o(Kind::Bridge, json!({"id": b})));
    e.put(o(
        Kind::Port,
        json!({"id": vm, "type": "Bridge", "deviceId": b, "hostId": host, "interfaceName": "tap0"}),
    ));
    e.put(o(
        Kind::Port,
        json!({"id": bp, "type": "Bridge", "deviceId": b}),
    ));
    e.put(o(Kind::Router, json!({"id": r})));
    e.put(o(
        Kind::Port,
        json!({"id": rp, "type": "Router", "deviceId": r, "portAddress": "10.0.0.1",
        "networkAddress": "10.0.0.0", "networkLength": 24}),
    ));
    e.put(o(
        Kind::Route,
        json!({"id": route, "routerId": r, "dstNetworkAddr": "0.0.0.0", "dstNetworkLength": 0}),
    ));
    let c = e.commit();
    assert!(c.gained.contains(&(Kind::Bridge, b)));
    assert!(!e.reached().contains(&(Kind::Router, r)), "not linked yet");
    assert!(e.topology().routers.is_empty());
    // Link: bridge port <-> router port.
    e.put(o(
        Kind::Port,
        json!({"id": bp, "type": "Bridge", "deviceId": b, "peerId": rp}),
    ));
    e.put(o(
        Kind::Port,
        json!({"id": rp, "type": "Router", "deviceId": r, "peerId": bp, "portAddress": "10.0.0.1",
        "networkAddress": "10.0.0.0", "networkLength": 24}),
    ));
    let c = e.commit();
    for k in [(Kind::Router, r), (Kind::Port, rp), (Kind::Route, route)] {
        assert!(c.gained.contains(&k), "{k:?} gained: {c:?}");
    }
    assert!(!c.rewalked, "a new link only adds");
    assert!(e.topology().routers.contains_key(&r));
    assert_eq!(
        e.topology().bridges[&b].router_ips.len(),
        1,
        "the router's address is known on the bridge"
    );
    // Unlink (both sides, as the API does): the router and what only it
    // reached are lost.
    e.put(o(
        Kind::Port,
        json!({"id": bp, "type": "Bridge", "deviceId": b}),
    ));
    e.put(o(
        Kind::Port,
        json!({"id": rp, "type": "Router", "deviceId": r, "portAddress": "10.0.0.1",
        "networkAddress": "10.0.0.0", "networkLength": 24}),
    ));
    let c = e.commit();
    assert!(c.rewalked);
    for k in [(Kind::Router, r), (Kind::Port, rp), (Kind::Route, route)] {
        assert!(c.lost.contains(&k), "{k:?} lost: {c:?}");
    }
    assert!(e.topology().routers.is_empty() && e.topology().bridges[&b].router_ips.is_empty());
    assert!(
        c.tags.contains(&sim::Tag::Device(b)),
        "the bridge's flows go"
    );
}

/// Deleting a port far from the host's own (a VM of another tenant behind
/// the provider router) proves what stays reached along the walk's depths:
/// no walk of the whole cloud. Unlinking that tenant still loses it.
#[test]
fn a_far_port_goes_without_walking_everything_again() {
    let host = Uuid::new_v4();
    let o = |k: Kind, v: Value| Obj::decode(k, v.to_string().as_bytes()).unwrap();
    let mut e = Engine::new(host, true);
    let provider = Uuid::new_v4();
    e.put(o(Kind::Router, json!({"id": provider})));
    // Tenant i: bridge <-> router <-> provider, a VM port on the bridge.
    let tenant = |e: &mut Engine, bound: bool| {
        let (b, r) = (Uuid::new_v4(), Uuid::new_v4());
        let [bp, rp, up, pp, vm] = [(); 5].map(|_| Uuid::new_v4());
        e.put(o(Kind::Bridge, json!({"id": b})));
        e.put(o(Kind::Router, json!({"id": r})));
        let port = |id: Uuid, ty: &str, dev: Uuid, peer: Uuid| {
            o(
                Kind::Port,
                json!({"id": id, "type": ty, "deviceId": dev, "peerId": peer}),
            )
        };
        e.put(port(bp, "Bridge", b, rp));
        e.put(port(rp, "Router", r, bp));
        e.put(port(up, "Router", r, pp));
        e.put(port(pp, "Router", provider, up));
        let vm_port = if bound {
            json!({"id": vm, "type": "Bridge", "deviceId": b, "hostId": host, "interfaceName": "tap0"})
        } else {
            json!({"id": vm, "type": "Bridge", "deviceId": b})
        };
        e.put(o(Kind::Port, vm_port));
        (b, r, pp, vm)
    };
    tenant(&mut e, true);
    let far: Vec<_> = (0..50).map(|_| tenant(&mut e, false)).collect();
    e.commit();
    let (fb, fr, fpp, fvm) = far[25];
    assert!(e.reached().contains(&(Kind::Port, fvm)));
    e.delete(Kind::Port, fvm);
    let c = e.commit();
    assert!(!c.rewalked, "proved along the depths");
    assert_eq!(c.lost, vec![(Kind::Port, fvm)]);
    assert!(e.reached().contains(&(Kind::Bridge, fb)));
    // Unlinking the tenant from the provider: its router and bridge go.
    e.delete(Kind::Port, fpp);
    let c = e.commit();
    assert!(c.rewalked);
    for k in [(Kind::Router, fr), (Kind::Bridge, fb)] {
        assert!(c.lost.contains(&k), "{k:?} lost");
    }
    let mut full = Engine::new(host, true);
    for k in e.keys() {
        full.put(e.get(*k).unwrap().clone());
    }
    full.recompute();
    assert_eq!(e.reached(), full.reached());
    assert_eq!(e.topology().canonical(), full.topology().canonical());
}
