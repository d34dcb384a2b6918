//! Chains of rules: MidoNet's filters, NAT and security groups.

use crate::addr::{MacAddr, parse_mac_mask};
use crate::error::{Checker, Invalid};
use crate::lenient;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Chain {
    pub id: Uuid,
    pub tenant_id: Option<String>,
    pub name: Option<String>,
    /// The rules in evaluation order; the REST `position` is an index into it.
    #[serde(deserialize_with = "lenient::vec")]
    pub rule_ids: Vec<Uuid>,
}

impl Chain {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.len("name", &self.name, 0, 255);
        c.finish()
    }
}
crate::object!(Chain, Chain);

/// An inclusive L4 port range (`{"start":22,"end":22}`); a missing end is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortRange {
    #[serde(deserialize_with = "lenient::opt_int")]
    pub start: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub end: Option<u32>,
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        let p = u32::from(p);
        self.start.is_none_or(|s| p >= s) && self.end.is_none_or(|e| p <= e)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FragmentPolicy {
    #[default]
    Any,
    Header,
    Nonheader,
    Unfragmented,
}

/// What a rule's packet must look like. Every clause is optional; an unset clause passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Condition {
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub cond_invert: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub match_forward_flow: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub match_return_flow: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::vec"
    )]
    pub in_ports: Vec<Uuid>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_in_ports: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::vec"
    )]
    pub out_ports: Vec<Uuid>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_out_ports: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub port_group: Option<Uuid>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_port_group: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub in_port_group: Option<Uuid>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_in_port_group: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub out_port_group: Option<Uuid>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_out_port_group: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub ip_addr_group_src: Option<Uuid>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_ip_addr_group_src: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub ip_addr_group_dst: Option<Uuid>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_ip_addr_group_dst: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub traversed_device: Option<Uuid>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_traversed_device: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub no_vlan: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt_int"
    )]
    pub vlan: Option<u16>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt_int"
    )]
    pub dl_type: Option<u32>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_dl_type: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub dl_src: Option<MacAddr>,
    #[serde(skip_serializing_if = "crate::stored::unset")]
    pub dl_src_mask: Option<String>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_dl_src: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub dl_dst: Option<MacAddr>,
    #[serde(skip_serializing_if = "crate::stored::unset")]
    pub dl_dst_mask: Option<String>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_dl_dst: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt_int"
    )]
    pub nw_tos: Option<u8>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_nw_tos: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt_int"
    )]
    pub nw_proto: Option<u8>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_nw_proto: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub nw_src_address: Option<IpAddr>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::int"
    )]
    pub nw_src_length: u8,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_nw_src: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub nw_dst_address: Option<IpAddr>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::int"
    )]
    pub nw_dst_length: u8,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_nw_dst: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub tp_src: Option<PortRange>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_tp_src: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub tp_dst: Option<PortRange>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_tp_dst: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub icmp_data_src_ip_address: Option<Ipv4Addr>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::int"
    )]
    pub icmp_data_src_ip_length: u8,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_icmp_data_src_ip: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub icmp_data_dst_ip_address: Option<Ipv4Addr>,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::int"
    )]
    pub icmp_data_dst_ip_length: u8,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub inv_icmp_data_dst_ip: bool,
    #[serde(
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub fragment_policy: Option<FragmentPolicy>,
}

impl Condition {
    pub fn has_l4(&self) -> bool {
        self.tp_src.is_some() || self.tp_dst.is_some()
    }

    /// Every object id the condition refers to, for reference checks.
    pub fn port_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.in_ports.iter().chain(self.out_ports.iter()).copied()
    }
    pub fn port_group_ids(&self) -> impl Iterator<Item = Uuid> {
        [self.port_group, self.in_port_group, self.out_port_group]
            .into_iter()
            .flatten()
    }
    pub fn ip_addr_group_ids(&self) -> impl Iterator<Item = Uuid> {
        [self.ip_addr_group_src, self.ip_addr_group_dst]
            .into_iter()
            .flatten()
    }

    pub fn check(&self, c: &mut Checker) {
        if let Some(t) = self.dl_type {
            c.range("dlType", t.into(), 0x0600, 0xffff);
        }
        if let Some(v) = self.vlan {
            c.range("vlan", v.into(), 0, 4095);
        }
        for (name, m) in [
            ("dlSrcMask", &self.dl_src_mask),
            ("dlDstMask", &self.dl_dst_mask),
        ] {
            if let Some(m) = m
                && parse_mac_mask(m).is_none()
            {
                c.fail(
                    name,
                    format!("invalid MAC mask \"{m}\", expected the form ffff.ffff.0000"),
                );
            }
        }
        let max = |a: &Option<IpAddr>| {
            if matches!(a, Some(IpAddr::V6(_))) {
                128
            } else {
                32
            }
        };
        c.range(
            "nwSrcLength",
            self.nw_src_length.into(),
            0,
            max(&self.nw_src_address),
        );
        c.range(
            "nwDstLength",
            self.nw_dst_length.into(),
            0,
            max(&self.nw_dst_address),
        );
        c.range(
            "icmpDataSrcIpLength",
            self.icmp_data_src_ip_length.into(),
            0,
            32,
        );
        c.range(
            "icmpDataDstIpLength",
            self.icmp_data_dst_ip_length.into(),
            0,
            32,
        );
        for (name, r) in [("tpSrc", &self.tp_src), ("tpDst", &self.tp_dst)] {
            if let Some(r) = r {
                if r.start.is_some_and(|s| s > 65535) || r.end.is_some_and(|e| e > 65535) {
                    c.fail(name, "ports must be between 0 and 65535");
                }
                if let (Some(s), Some(e)) = (r.start, r.end)
                    && s > e
                {
                    c.fail(name, "start must not exceed end");
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleType {
    Accept,
    Drop,
    Reject,
    Return,
    Jump,
    Dnat,
    Snat,
    RevDnat,
    RevSnat,
    L2Transform,
    Trace,
}

/// The fields only some rule types have (the rest are every rule's: id,
/// chain, position, the condition).
pub const TYPE_FIELDS: &[&str] = &[
    "jumpChainId",
    "jumpChainName",
    "flowAction",
    "natTargets",
    "popVlan",
    "pushVlan",
    "targetPortId",
    "ingress",
    "failOpen",
    "requestId",
    "limit",
];

impl RuleType {
    /// Which of [`TYPE_FIELDS`] this type has, as MidoNet's rule DTOs do.
    pub fn own_fields(self) -> &'static [&'static str] {
        match self {
            RuleType::Accept | RuleType::Drop | RuleType::Reject | RuleType::Return => &[],
            RuleType::Jump => &["jumpChainId", "jumpChainName"],
            RuleType::Dnat | RuleType::Snat => &["flowAction", "natTargets"],
            RuleType::RevDnat | RuleType::RevSnat => &["flowAction"],
            RuleType::L2Transform => &[
                "flowAction",
                "popVlan",
                "pushVlan",
                "targetPortId",
                "ingress",
                "failOpen",
            ],
            RuleType::Trace => &["requestId", "limit"],
        }
    }

    pub fn is_forward_nat(self) -> bool {
        matches!(self, RuleType::Dnat | RuleType::Snat)
    }
    pub fn is_nat(self) -> bool {
        matches!(
            self,
            RuleType::Dnat | RuleType::Snat | RuleType::RevDnat | RuleType::RevSnat
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowAction {
    Accept,
    Continue,
    Return,
    Drop,
    Reject,
    Jump,
    Redirect,
}

/// One NAT translation target: an address range and a port range (0/0 = keep ports).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NatTarget {
    #[serde(deserialize_with = "lenient::opt")]
    pub address_from: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::opt")]
    pub address_to: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::int")]
    pub port_from: u32,
    #[serde(deserialize_with = "lenient::int")]
    pub port_to: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub id: Uuid,
    #[serde(default)]
    pub chain_id: Uuid,
    #[serde(rename = "type")]
    pub rule_type: RuleType,
    #[serde(default, deserialize_with = "lenient::int")]
    pub position: u32,
    #[serde(default, skip_serializing_if = "crate::stored::unset")]
    pub meter_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub flow_action: Option<FlowAction>,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub jump_chain_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "crate::stored::unset")]
    pub jump_chain_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::vec"
    )]
    pub nat_targets: Vec<NatTarget>,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub pop_vlan: bool,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt_int"
    )]
    pub push_vlan: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub target_port_id: Option<Uuid>,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub ingress: bool,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::bool"
    )]
    pub fail_open: bool,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt"
    )]
    pub request_id: Option<Uuid>,
    #[serde(
        default,
        skip_serializing_if = "crate::stored::unset",
        deserialize_with = "lenient::opt_int"
    )]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "crate::stored::unset")]
    pub properties: Option<serde_json::Value>,
    #[serde(flatten)]
    pub condition: Condition,
}

impl Rule {
    /// A rule of type `rule_type` in `chain_id` matching `condition`, every
    /// type's own field unset.
    pub fn new(id: Uuid, chain_id: Uuid, rule_type: RuleType, condition: Condition) -> Rule {
        Rule {
            id,
            chain_id,
            rule_type,
            position: 0,
            meter_name: None,
            flow_action: None,
            jump_chain_id: None,
            jump_chain_name: None,
            nat_targets: Vec::new(),
            pop_vlan: false,
            push_vlan: None,
            target_port_id: None,
            ingress: false,
            fail_open: false,
            request_id: None,
            limit: None,
            properties: None,
            condition,
        }
    }

    /// A floating-IP NAT: one address, ports untouched, no L4 match.
    fn is_floating_ip_nat(&self) -> bool {
        self.nat_targets.len() == 1
            && self.nat_targets[0].address_from == self.nat_targets[0].address_to
            && self.nat_targets[0].port_from == 0
            && self.nat_targets[0].port_to == 0
            && !self.condition.has_l4()
    }

    /// Fills the defaults MidoNet's API fills (fragment policy by rule kind).
    pub fn normalize(&mut self) {
        if self.condition.fragment_policy.is_none() {
            self.condition.fragment_policy = Some(
                if self.rule_type.is_forward_nat() && !self.is_floating_ip_nat() {
                    FragmentPolicy::Unfragmented
                } else if self.condition.has_l4() {
                    FragmentPolicy::Header
                } else {
                    FragmentPolicy::Any
                },
            );
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        self.condition.check(&mut c);
        let fp = self.condition.fragment_policy.unwrap_or_default();
        if self.condition.has_l4() && matches!(fp, FragmentPolicy::Any | FragmentPolicy::Nonheader)
        {
            c.fail(
                "fragmentPolicy",
                "a rule matching L4 ports must use fragment policy header or unfragmented",
            );
        }
        if self.rule_type.is_forward_nat()
            && !self.is_floating_ip_nat()
            && fp != FragmentPolicy::Unfragmented
        {
            c.fail(
                "fragmentPolicy",
                "a NAT rule with port translation matches unfragmented packets only",
            );
        }
        match self.rule_type {
            RuleType::Jump if self.jump_chain_id.is_none() => {
                c.fail("jumpChainId", "may not be null for a jump rule");
            }
            RuleType::Dnat | RuleType::Snat => {
                check_nat_action(&mut c, self.flow_action);
                if self.nat_targets.is_empty() {
                    c.fail("natTargets", "a NAT rule needs at least one target");
                }
                for t in &self.nat_targets {
                    match (t.address_from, t.address_to) {
                        (Some(a), Some(b)) if u32::from(a) <= u32::from(b) => {}
                        (Some(_), Some(_)) => {
                            c.fail("natTargets", "addressFrom must not exceed addressTo")
                        }
                        _ => c.fail("natTargets", "addressFrom and addressTo may not be null"),
                    }
                    if t.port_from > 65535 || t.port_to > 65535 || t.port_from > t.port_to {
                        c.fail(
                            "natTargets",
                            "ports must be an ordered range within 0..65535",
                        );
                    }
                }
            }
            RuleType::RevDnat | RuleType::RevSnat => check_nat_action(&mut c, self.flow_action),
            RuleType::L2Transform => {
                if let Some(v) = self.push_vlan {
                    c.range("pushVlan", v.into(), 0, 65535);
                }
                if !matches!(
                    self.flow_action,
                    None | Some(FlowAction::Accept | FlowAction::Redirect)
                ) {
                    c.fail(
                        "flowAction",
                        "must be accept or redirect for an l2_transform rule",
                    );
                }
            }
            RuleType::Trace => c.require("requestId", &self.request_id),
            _ => {}
        }
        c.finish()
    }
}

fn check_nat_action(c: &mut Checker, a: Option<FlowAction>) {
    match a {
        Some(FlowAction::Accept | FlowAction::Continue | FlowAction::Return) => {}
        Some(_) => c.fail(
            "flowAction",
            "must be accept, continue or return for a NAT rule",
        ),
        None => c.fail("flowAction", "may not be null for a NAT rule"),
    }
}

crate::object!(Rule, Rule);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Object;
    use serde_json::json;

    fn rule(v: serde_json::Value) -> Rule {
        let mut r: Rule = serde_json::from_value(v).unwrap();
        r.normalize();
        r
    }

    #[test]
    fn lenient_fields_and_fragment_defaults() {
        let r = rule(
            json!({"type":"accept","position":null,"invTpSrc":null,"tpDst":{"start":"22","end":"22"},"nwProto":"6"}),
        );
        assert_eq!(r.position, 0);
        assert_eq!(r.condition.nw_proto, Some(6));
        assert_eq!(r.condition.fragment_policy, Some(FragmentPolicy::Header));
        assert!(r.validate().is_ok());
        let fip = rule(
            json!({"type":"dnat","flowAction":"accept","natTargets":[{"addressFrom":"10.0.0.5","addressTo":"10.0.0.5","portFrom":0,"portTo":0}]}),
        );
        assert_eq!(fip.condition.fragment_policy, Some(FragmentPolicy::Any));
        let snat = rule(
            json!({"type":"snat","flowAction":"accept","natTargets":[{"addressFrom":"1.1.1.1","addressTo":"1.1.1.1","portFrom":1024,"portTo":65535}]}),
        );
        assert_eq!(
            snat.condition.fragment_policy,
            Some(FragmentPolicy::Unfragmented)
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let r = rule(json!({"type":"snat","natTargets":[],"fragmentPolicy":"any"}));
        let msg = r.validate().unwrap_err().to_string();
        assert!(
            msg.contains("flowAction")
                && msg.contains("natTargets")
                && msg.contains("fragmentPolicy"),
            "{msg}"
        );
        let r = rule(json!({"type":"drop","dlSrcMask":"ffff.zzzz.0000","dlType":12}));
        let msg = r.validate().unwrap_err().to_string();
        assert!(msg.contains("dlSrcMask") && msg.contains("dlType"), "{msg}");
        assert!(serde_json::from_value::<Rule>(json!({"type":"continue"})).is_err());
        assert!(serde_json::from_value::<Rule>(json!({"type":"accept","nwProto":"tcp"})).is_err());
    }
}
