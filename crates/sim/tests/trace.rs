//! Structured traces (`midonet trace`): each step says what it found, by id
//! and position, so a tool reads them without parsing text.

mod common;
use common::*;
use serde_json::json;
use sim::*;

#[test]
fn a_drop_by_rule_3_names_that_chain_and_rule() {
    let mut n = Net::new();
    let b = n.bridge();
    let (vm1, vm2) = (n.vm_port(b), n.vm_port(b));
    let c = n.chain();
    n.rule(c, json!({"type": "accept", "nwProto": 6}));
    n.rule(
        c,
        json!({"type": "accept", "nwProto": 17, "tpDst": {"start": 53, "end": 53}}),
    );
    let third = n.rule(c, json!({"type": "drop", "nwProto": 17}));
    n.set_port(vm1, |p| p.inbound_filter_id = Some(c));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), vm2);
    let o = r.sim(
        vm1,
        &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000),
    );
    assert!(o.verdict.is_drop(), "{:?}", o.trace);
    let rule = o
        .trace
        .iter()
        .find_map(|s| match &s.step {
            Step::Rule {
                chain,
                chain_name,
                position,
                rule,
                action,
            } => Some((*chain, chain_name.clone(), *position, *rule, action.clone())),
            _ => None,
        })
        .expect("a rule step");
    assert_eq!(rule, (c, "c".to_string(), 3, third, "Drop".to_string()));
    assert!(matches!(
        o.trace.last().map(|s| &s.step),
        Some(Step::Result(Verdict::Drop(DropReason::FilteredByChain(x)))) if *x == c
    ));
}

#[test]
fn a_routed_ping_names_the_route_and_the_egress_port_and_host() {
    let mut n = Net::new();
    let rt = n.router();
    let (b1, _) = n.subnet(rt, "10.0.1.1", 24, mac(0xa1));
    let (b2, _) = n.subnet(rt, "10.0.2.1", 24, mac(0xa2));
    let vm1 = n.vm_port(b1);
    let host = uuid::Uuid::new_v4();
    let vm2 = n.remote_vm_port(b2, host);
    let mut r = Run::new(&n);
    r.learn(b2, mac(2), vm2);
    r.arp(rt, "10.0.2.5", mac(2));
    let o = r.sim(vm1, &ping(mac(1), mac(0xa1), "10.0.1.5", "10.0.2.5", 64));
    let steps: Vec<&Step> = o.trace.iter().map(|s| &s.step).collect();
    assert!(steps.iter().any(|s| matches!(s, Step::Router)), "{steps:?}");
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, Step::Route { port: Some(_), .. })),
        "{steps:?}"
    );
    assert!(
        o.trace
            .iter()
            .any(|s| s.step == Step::PortEgress && s.device == Some(vm2)),
        "{:?}",
        o.trace
    );
    assert_eq!(
        o.outputs().map(|x| (x.port, x.host)).collect::<Vec<_>>(),
        vec![(vm2, Some(host))]
    );
    assert_eq!(
        o.trace.last().map(|s| &s.step),
        Some(&Step::Result(Verdict::Forward))
    );
}

#[test]
fn a_trace_through_snat_shows_the_binding_chosen() {
    let mut n = Net::new();
    let rt = n.router();
    let (b, _) = n.subnet(rt, "10.0.1.1", 24, mac(0xa1));
    let vm = n.vm_port(b);
    let up = n.uplink(rt, "203.0.113.1", 24, mac(0xb1));
    n.route(rt, "203.0.113.0", 24, up, None, 100);
    let out = n.chain();
    n.set_router(rt, |x| x.outbound_filter_id = Some(out));
    n.rule(out, json!({"type": "snat", "flowAction": "accept", "outPorts": [up],
        "natTargets": [{"addressFrom": "203.0.113.100", "addressTo": "203.0.113.100", "portFrom": 20000, "portTo": 20000}]}));
    let mut r = Run::new(&n);
    r.arp(rt, "203.0.113.9", mac(9));
    r.learn(b, mac(1), vm);
    let o = r.sim(
        vm,
        &tcp(mac(1), mac(0xa1), "10.0.1.5", "203.0.113.9", 40000, 80),
    );
    let nat = o.trace.iter().find_map(|s| match s.step {
        Step::Nat { dnat, from, to } => Some((dnat, from, to)),
        _ => None,
    });
    assert_eq!(
        nat,
        Some((false, (ip("10.0.1.5"), 40000), (ip("203.0.113.100"), 20000))),
        "{:?}",
        o.trace
    );
}

#[test]
fn a_live_trace_request_traces_the_packets_its_condition_matches_with_the_what_if_walk() {
    let mut n = Net::new();
    let b = n.bridge();
    let (vm1, vm2) = (n.vm_port(b), n.vm_port(b));
    let mut r = Run::new(&n);
    r.learn(b, mac(2), vm2);
    let live = r.sim_live(vm1, &ping(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 64));
    assert!(live.traced.is_empty() && live.trace.is_empty());

    let request = uuid::Uuid::new_v4();
    let icmp: model::Condition = serde_json::from_value(json!({"nwProto": 1})).unwrap();
    r.topo.traces.add(b, request, &icmp);
    let ping1 = ping(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 64);
    let live = r.sim_live(vm1, &ping1);
    assert_eq!(live.traced, vec![request]);
    assert_eq!(live.verdict, Verdict::Forward);
    let what_if = r.sim(vm1, &ping1);
    let steps = |o: &Outcome| {
        o.trace
            .iter()
            .map(|s| (s.device, s.step.clone()))
            .collect::<Vec<_>>()
    };
    assert!(!live.trace.is_empty());
    assert_eq!(steps(&live), steps(&what_if));
    assert!(
        live.trace
            .iter()
            .any(|s| s.step == Step::PortEgress && s.device == Some(vm2))
    );

    // Not matched: no walk, and the flow installed for it reads the
    // protocol, so it never covers a ping.
    let other = r.sim_live(
        vm1,
        &udp(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000),
    );
    assert!(other.traced.is_empty() && other.trace.is_empty());
    let mask = other.flow.as_ref().expect("a flow").mask;
    assert!(mask.any(sim::flow::field::NW_PROTO));

    // A request on another device is not matched here; taken off, none is.
    r.topo
        .traces
        .add(uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), &icmp);
    r.topo.traces.remove(request);
    assert!(r.sim_live(vm1, &ping1).traced.is_empty());
}
