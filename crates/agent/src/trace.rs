//! What-if traces (`midonet trace`): a probe packet simulated by a packet
//! worker against its live topology and state tables, with tracing on and
//! nothing applied (no state written, no flow installed, nothing sent).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sim::probe::{Probe, Proto};
use sim::{Outcome, Step};
use std::net::Ipv4Addr;
use uuid::Uuid;

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

/// One step as JSON: its kind and what it names, and the text.
fn step_json(device: Option<Uuid>, step: &Step, what: &str) -> Value {
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
    pub fn of(out: &Outcome) -> Reply {
        Reply {
            verdict: format!("{:?}", out.verdict),
            steps: out
                .trace
                .iter()
                .map(|s| step_json(s.device, &s.step, &s.what))
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
