//! Traces. What-if (`midonet trace`): a probe packet simulated by a packet
//! worker against its live topology and state tables, with tracing on and
//! nothing applied (no state written, no flow installed, nothing sent).
//! Live (REST v5 `traces`): the workers match real packets against the
//! enabled trace requests, and send the walk of each one matched, up to the
//! request's limit on this host, to the cluster (see [`Live`]).

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sim::probe::{Probe, Proto};
use sim::{Outcome, Step};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use uuid::Uuid;

/// Packets one host traces for a request whose limit is unset (0), and at
/// most for any request: each is simulated twice and never cached as a
/// flow, and its record is kept by the cluster.
pub const LIMIT_MAX: u64 = 1_000;

/// The enabled trace requests, as the packet workers match them: the
/// sim's per-device conditions, and each request's packets left to trace
/// on this host (shared by the workers).
#[derive(Clone, Debug, Default)]
pub struct TraceSet {
    pub requests: sim::topology::TraceRequests,
    pub budgets: FxHashMap<Uuid, Arc<AtomicU64>>,
}

impl TraceSet {
    /// Takes one packet of `request`'s budget: `false` when it is spent.
    pub fn take(&self, request: Uuid) -> bool {
        self.budgets.get(&request).is_some_and(|b| {
            b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        })
    }
}

/// The agent's side: the trace requests it holds, each with its budget. A
/// request changed (enabled again, a new condition or limit) starts a new
/// budget, as MidoNet re-arms a request disabled and enabled.
#[derive(Default)]
pub struct Live {
    held: FxHashMap<Uuid, (model::TraceRequest, Arc<AtomicU64>)>,
}

impl Live {
    /// The stored requests now: the set for the workers and the devices
    /// whose flows must go (a request there came, changed or went), or
    /// `None` when nothing changed.
    pub fn update(&mut self, stored: Vec<model::TraceRequest>) -> Option<(TraceSet, Vec<Uuid>)> {
        let mut now: FxHashMap<Uuid, (model::TraceRequest, Arc<AtomicU64>)> = FxHashMap::default();
        let mut devices = Vec::new();
        for t in stored {
            let (Some(device), Some(_), true) = (t.device_id, &t.condition, t.enabled) else {
                continue;
            };
            let budget = match self.held.remove(&t.id) {
                Some((old, b)) if old == t => b,
                old => {
                    devices.extend(old.and_then(|(o, _)| o.device_id));
                    devices.push(device);
                    let limit = u64::try_from(t.limit).unwrap_or(0);
                    let limit = if limit == 0 {
                        LIMIT_MAX
                    } else {
                        limit.min(LIMIT_MAX)
                    };
                    Arc::new(AtomicU64::new(limit))
                }
            };
            now.insert(t.id, (t, budget));
        }
        devices.extend(self.held.values().filter_map(|(t, _)| t.device_id));
        self.held = now;
        if devices.is_empty() {
            return None;
        }
        let mut set = TraceSet::default();
        for (id, (t, b)) in &self.held {
            if let (Some(d), Some(c)) = (t.device_id, &t.condition) {
                set.requests.add(d, *id, c);
                set.budgets.insert(*id, b.clone());
            }
        }
        devices.sort();
        devices.dedup();
        Some((set, devices))
    }
}

/// One traced packet's record for the cluster: the request, where and
/// when, the packet, and its walk as `midonet trace` shows one.
pub fn record(
    request: Uuid,
    host: Uuid,
    in_port: Uuid,
    time_ms: u64,
    packet: &sim::Fields,
    out: &Outcome,
    topo: &sim::Topology,
) -> Value {
    let mut v = serde_json::to_value(Reply::of(out, topo)).unwrap_or_else(|_| json!({}));
    let summary: Vec<String> = packet
        .describe(sim::FieldSet(u32::MAX))
        .into_iter()
        .filter(|(k, _)| *k != "in_port")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    v["requestId"] = json!(request);
    v["hostId"] = json!(host);
    v["inPort"] = json!(in_port);
    v["timeMs"] = json!(time_ms);
    v["packet"] = json!(summary.join(" "));
    v
}

/// A trace request, as the control socket takes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    pub in_port: Uuid,
    #[serde(default = "default_src_mac")]
    pub eth_src: String,
    #[serde(default = "default_dst_mac")]
    pub eth_dst: String,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    #[serde(default = "default_proto")]
    pub proto: String,
    #[serde(default)]
    pub src_port: u16,
    #[serde(default)]
    pub dst_port: u16,
    #[serde(default = "default_ttl")]
    pub ttl: u8,
}

fn default_src_mac() -> String {
    "02:00:00:00:00:01".into()
}
fn default_dst_mac() -> String {
    "ff:ff:ff:ff:ff:ff".into()
}
fn default_proto() -> String {
    "icmp".into()
}
fn default_ttl() -> u8 {
    64
}

impl Request {
    /// The probe it names, or what is wrong with it.
    pub fn probe(&self) -> Result<Probe, String> {
        let mac = |field: &str, s: &str| -> Result<wire::Mac, String> {
            s.parse::<model::MacAddr>()
                .map(|m| wire::Mac(m.0))
                .map_err(|_| format!("{field}: not a MAC address: {s:?}"))
        };
        let proto = match self.proto.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            other => return Err(format!("proto: tcp, udp or icmp, not {other:?}")),
        };
        if proto != Proto::Icmp && (self.src_port == 0 || self.dst_port == 0) {
            return Err("srcPort and dstPort: required for tcp and udp (1-65535)".into());
        }
        Ok(Probe {
            eth_src: mac("ethSrc", &self.eth_src)?,
            eth_dst: mac("ethDst", &self.eth_dst)?,
            ip_src: self.ip_src,
            ip_dst: self.ip_dst,
            proto,
            src_port: self.src_port,
            dst_port: self.dst_port,
            ttl: self.ttl,
        })
    }
}

/// One step as JSON: its kind and what it names (the device by id and,
/// when it has one, name), and the text.
fn step_json(device: Option<Uuid>, name: Option<&str>, step: &Step, what: &str) -> Value {
    let mut v = match step {
        Step::PortIngress => json!({"kind": "portIngress"}),
        Step::PortEgress => json!({"kind": "portEgress"}),
        Step::Bridge => json!({"kind": "bridge"}),
        Step::MacForward { port } => json!({"kind": "macForward", "port": port}),
        Step::Flood => json!({"kind": "flood"}),
        Step::Router => json!({"kind": "router"}),
        Step::Route { route, port } => json!({"kind": "route", "route": route, "port": port}),
        Step::NoRoute { dst } => json!({"kind": "noRoute", "dst": dst}),
        Step::Rule {
            chain,
            chain_name,
            position,
            rule,
            action,
        } => json!({"kind": "rule", "chain": chain, "chainName": chain_name,
                    "position": position, "rule": rule, "action": action}),
        Step::Nat { dnat, from, to } => json!({"kind": if *dnat { "dnat" } else { "snat" },
            "from": format!("{}:{}", from.0, from.1), "to": format!("{}:{}", to.0, to.1)}),
        Step::Result(v) => json!({"kind": "result", "verdict": format!("{v:?}")}),
        Step::Note => json!({"kind": "note"}),
    };
    v["device"] = json!(device);
    v["deviceName"] = json!(name);
    v["what"] = json!(what);
    v
}

/// What a trace answers: the walk, the verdict, where the packet leaves,
/// and the flow that would be installed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub verdict: String,
    pub steps: Vec<Value>,
    /// Egress ports and the hosts they are bound to.
    pub outputs: Vec<Value>,
    pub actions: Vec<String>,
    /// The fields the flow would match (its mask), by name.
    pub flow_match: Vec<(String, String)>,
    /// State the packet would write (connections, NAT bindings, learned
    /// entries); a trace applies none of it.
    pub state_writes: usize,
}

impl Reply {
    /// `out`'s walk, naming devices as `topo` has them.
    pub fn of(out: &Outcome, topo: &sim::Topology) -> Reply {
        Reply {
            verdict: format!("{:?}", out.verdict),
            steps: out
                .trace
                .iter()
                .map(|s| {
                    let name = s.device.and_then(|d| topo.name_of(d));
                    step_json(s.device, name, &s.step, &s.what)
                })
                .collect(),
            outputs: out
                .outputs()
                .map(|o| json!({"port": o.port, "host": o.host}))
                .collect(),
            actions: out.actions.iter().map(ToString::to_string).collect(),
            flow_match: out
                .flow
                .as_ref()
                .map(|f| {
                    f.key
                        .describe(f.mask)
                        .into_iter()
                        .filter(|(k, _)| *k != "in_port")
                        .map(|(k, v)| (k.to_string(), v))
                        .collect()
                })
                .unwrap_or_default(),
            state_writes: out.writes.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Result<Probe, String> {
        serde_json::from_value::<Request>(v)
            .map_err(|e| e.to_string())?
            .probe()
    }

    fn request(device: Uuid, limit: i64, enabled: bool) -> model::TraceRequest {
        model::TraceRequest {
            id: Uuid::from_u128(7),
            device_type: Some("PORT".into()),
            device_id: Some(device),
            condition: Some(serde_json::from_value(json!({"nwProto": 1})).unwrap()),
            limit,
            enabled,
            ..Default::default()
        }
    }

    #[test]
    fn live_requests_are_budgeted_per_host_and_rearmed_when_enabled_again() {
        let (port, id) = (Uuid::from_u128(1), Uuid::from_u128(7));
        let mut live = Live::default();
        assert!(live.update(vec![request(port, 2, false)]).is_none());
        let (set, devices) = live.update(vec![request(port, 2, true)]).unwrap();
        assert_eq!(devices, vec![port]);
        assert!(set.take(id) && set.take(id) && !set.take(id));
        // Unchanged: no new set, the spent budget stays spent.
        assert!(live.update(vec![request(port, 2, true)]).is_none());
        // Disabled, then enabled: flows through the port go, budget anew.
        let (off, devices) = live.update(vec![request(port, 2, false)]).unwrap();
        assert_eq!(devices, vec![port]);
        assert!(!off.take(id));
        let (on, _) = live.update(vec![request(port, 2, true)]).unwrap();
        assert!(on.take(id));
        // No limit: capped.
        let (unlimited, _) = live.update(vec![request(port, 0, true)]).unwrap();
        let n = (0..LIMIT_MAX + 5).filter(|_| unlimited.take(id)).count() as u64;
        assert_eq!(n, LIMIT_MAX);
    }

    #[test]
    fn requests_and_their_errors() {
        let port = Uuid::from_u128(1);
        let ok = req(
            json!({"inPort": port, "ipSrc": "10.0.0.1", "ipDst": "10.0.0.2",
            "proto": "udp", "srcPort": 1000, "dstPort": 53, "ethSrc": "02:00:00:00:00:0a"}),
        )
        .unwrap();
        assert_eq!(ok.proto, Proto::Udp);
        assert_eq!(ok.eth_src, wire::Mac([2, 0, 0, 0, 0, 10]));
        assert!(
            req(json!({"inPort": port, "ipSrc": "10.0.0.1", "ipDst": "10.0.0.2", "proto": "sctp"}))
                .unwrap_err()
                .contains("proto")
        );
        assert!(
            req(json!({"inPort": port, "ipSrc": "10.0.0.1", "ipDst": "10.0.0.2", "proto": "tcp"}))
                .unwrap_err()
                .contains("dstPort")
        );
        assert!(
            req(
                json!({"inPort": port, "ipSrc": "10.0.0.1", "ipDst": "10.0.0.2", "ethDst": "nope"})
            )
            .unwrap_err()
            .contains("ethDst")
        );
        assert!(req(json!({"inPort": port, "ipSrc": "10.0.0.1", "ipDst": "x"})).is_err());
        assert!(
            req(json!({"inPort": port, "ipSrc": "10.0.0.1", "ipDst": "10.0.0.2", "colour": 1}))
                .is_err()
        );
    }
}
