//! Security groups: a group is an IP address group (its ports' addresses,
//! same id) and two chains, one of its egress rules (on traffic from its
//! ports' VMs) and one of its ingress rules (on traffic to them); each rule
//! is an ACCEPT in one of them. A port with port security gets three chains
//! of its own: anti-spoofing (its MAC and IPs and allowed address pairs),
//! then on traffic from the VM: replies pass, each group's egress chain,
//! drop the rest but ARP; on traffic to the VM the same with the ingress
//! chains. Every project has a `default` group (created on first use):
//! egress anything, ingress from its own members.

use crate::error::NeutronError;
use crate::ids::{Derived, derived, nth};
use crate::network::project;
use crate::port::{PortRecord, fixed_ips, mac_of};
use crate::record::{self, Record, blocking, body_of, find, only, standard, touched};
use crate::{Raw, Shared};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cluster::App;
use cluster::error::ApiError;
use cluster::topo::Writer;
use model::{
    Chain, Condition, FlowAction, IpAddrGroup, IpAddrGroupMember, Kind, MacAddr, Port, PortRange,
    Rule, RuleType,
};
use serde_json::{Map, Value, json};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use uuid::Uuid;

crate::record::record!(
    GroupRecord,
    NeutronSecurityGroup,
    "security_group",
    "security_groups",
    "SecurityGroupNotFound"
);
crate::record::record!(
    RuleRecord,
    NeutronSecurityGroupRule,
    "security_group_rule",
    "security_group_rules",
    "SecurityGroupRuleNotFound"
);

const IPV4: u32 = 0x0800;
const IPV6: u32 = 0x86dd;
const ARP: u32 = 0x0806;

/// The id of a project's `default` group: derived from the project, so
/// finding it is one read.
pub fn default_group_id(project: &str) -> Uuid {
    crate::ids::named(project, Derived::DefaultGroup)
}

fn chain(id: Uuid, name: String, tenant: &str) -> Chain {
    Chain {
        id,
        tenant_id: Some(tenant.to_string()),
        name: Some(name),
        rule_ids: Vec::new(),
    }
}

/// A rule record of group `sg` with Neutron's defaults under `set`.
fn new_rule(sg: Uuid, project: &str, set: Map<String, Value>) -> RuleRecord {
    let mut f = json!({
        "security_group_id": sg.to_string(), "direction": "ingress", "ethertype": "IPv4",
        "protocol": null, "port_range_min": null, "port_range_max": null,
        "remote_ip_prefix": null, "remote_group_id": null, "remote_address_group_id": null,
        "normalized_cidr": null, "belongs_to_default_sg": sg == default_group_id(project),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    for (k, v) in set {
        f.insert(k, v);
    }
    if let Some(p) = f.get("remote_ip_prefix").filter(|v| v.is_string()).cloned() {
        f.insert("normalized_cidr".into(), p);
    }
    RuleRecord::new(Uuid::new_v4(), standard(project, f))
}

/// A new group record (its rules added by the caller).
fn new_group(id: Uuid, project: &str, set: Map<String, Value>) -> GroupRecord {
    let mut f = json!({"name": "", "stateful": true, "shared": false, "security_group_rules": []})
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (k, v) in set {
        f.insert(k, v);
    }
    GroupRecord::new(id, standard(project, f))
}

/// Writes a new group, its address group and chains, and its rules.
fn write_group(
    w: &mut Writer<'_>,
    g: &mut GroupRecord,
    rules: &[RuleRecord],
) -> Result<(), ApiError> {
    let tenant = g.f("project_id").as_str().unwrap_or("").to_string();
    w.tx.put(&IpAddrGroup {
        id: g.id,
        name: Some(format!("OS_SG_{}", g.id)),
        addrs: Vec::new(),
    });
    w.tx.put(&chain(
        derived(g.id, Derived::InChain),
        format!("OS_SG_{}_EGRESS", g.id),
        &tenant,
    ));
    w.tx.put(&chain(
        derived(g.id, Derived::OutChain),
        format!("OS_SG_{}_INGRESS", g.id),
        &tenant,
    ));
    for r in rules {
        add_rule(w, g, r)?;
    }
    record::put_new(w, g);
    Ok(())
}

/// Adds rule `r` to group `g` (record and chain); the caller writes `g`.
fn add_rule(w: &mut Writer<'_>, g: &mut GroupRecord, r: &RuleRecord) -> Result<(), ApiError> {
    if let Value::Array(a) = g.fields.entry("security_group_rules").or_insert(json!([])) {
        a.push(record::shown(r));
    }
    let rule = translated(r);
    if let Some(t) = fragments_twin(&rule) {
        cluster::ops::add_rule(w, t, None)?;
    }
    cluster::ops::add_rule(w, rule, None)?;
    record::put_new(w, r);
    Ok(())
}

/// A rule on L4 ports matches a packet's first fragment only; as in
/// MidoNet, a twin without the ports accepts the later fragments of what
/// it let in (they carry no ports to match).
fn fragments_twin(rule: &Rule) -> Option<Rule> {
    if !rule.condition.has_l4() {
        return None;
    }
    let mut t = rule.clone();
    t.id = twin_id(rule.id);
    t.condition.tp_src = None;
    t.condition.tp_dst = None;
    t.condition.fragment_policy = Some(model::FragmentPolicy::Nonheader);
    Some(t)
}

fn twin_id(rule: Uuid) -> Uuid {
    nth(rule, Derived::InChain, 0xffff)
}

/// The chain rule a Neutron rule is: an ACCEPT in the group's egress chain
/// (traffic from its VMs, matched on the destination) or ingress chain
/// (traffic to them, matched on the source).
fn translated(r: &RuleRecord) -> Rule {
    let sg: Uuid = r
        .f("security_group_id")
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let egress = r.f("direction").as_str() == Some("egress");
    let mut c = Condition {
        dl_type: Some(if r.f("ethertype").as_str() == Some("IPv6") {
            IPV6
        } else {
            IPV4
        }),
        nw_proto: r.f("protocol").as_str().and_then(protocol_number),
        ..Default::default()
    };
    let lo = r.f("port_range_min").as_u64().map(|v| v as u32);
    let hi = r.f("port_range_max").as_u64().map(|v| v as u32);
    if matches!(c.nw_proto, Some(1) | Some(58)) {
        // ICMP: the range's ends are the type and the code.
        c.tp_src = lo.map(|t| PortRange {
            start: Some(t),
            end: Some(t),
        });
        c.tp_dst = hi.map(|t| PortRange {
            start: Some(t),
            end: Some(t),
        });
    } else if lo.is_some() || hi.is_some() {
        c.tp_dst = Some(PortRange {
            start: lo.or(hi),
            end: hi.or(lo),
        });
    }
    let prefix = r.f("remote_ip_prefix").as_str().and_then(|p| {
        let (a, l) = p.split_once('/').unwrap_or((p, "32"));
        Some((a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?))
    });
    let group: Option<Uuid> = r.f("remote_group_id").as_str().and_then(|s| s.parse().ok());
    if let Some((a, l)) = prefix.filter(|(_, l)| *l > 0) {
        if egress {
            (c.nw_dst_address, c.nw_dst_length) = (Some(a), l);
        } else {
            (c.nw_src_address, c.nw_src_length) = (Some(a), l);
        }
    }
    if egress {
        c.ip_addr_group_dst = group;
    } else {
        c.ip_addr_group_src = group;
    }
    let chain = derived(
        sg,
        if egress {
            Derived::InChain
        } else {
            Derived::OutChain
        },
    );
    Rule::new(r.id, chain, RuleType::Accept, c)
}

/// IP protocol numbers by Neutron's names (numbers as they are).
fn protocol_number(p: &str) -> Option<u8> {
    Some(match p {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "egp" => 8,
        "udp" => 17,
        "dccp" => 33,
        "ipv6-icmp" | "icmpv6" => 58,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ospf" => 89,
        "pgm" => 113,
        "sctp" => 132,
        "vrrp" => 112,
        "any" => return None,
        n => return n.parse().ok(),
    })
}

/// Neutron's rules of a new group: egress anything (IPv4 and IPv6), and for
/// a `default` group ingress from its own members.
fn default_rules(sg: Uuid, project: &str, default: bool) -> Vec<RuleRecord> {
    let mut v = Vec::new();
    for eth in ["IPv4", "IPv6"] {
        let mut m = Map::new();
        m.insert("direction".into(), json!("egress"));
        m.insert("ethertype".into(), json!(eth));
        v.push(new_rule(sg, project, m));
        if default {
            let mut m = Map::new();
            m.insert("direction".into(), json!("ingress"));
            m.insert("ethertype".into(), json!(eth));
            m.insert("remote_group_id".into(), json!(sg.to_string()));
            v.push(new_rule(sg, project, m));
        }
    }
    v
}

/// The project's `default` group, made in `w` when it has none.
pub fn ensure_default(app: &App, w: &mut Writer<'_>, project: &str) -> Result<Uuid, ApiError> {
    let id = default_group_id(project);
    if app.topo.get::<GroupRecord>(id)?.is_none() && w.tx.get::<GroupRecord>(id)?.is_none() {
        let mut set = Map::new();
        set.insert("name".into(), json!("default"));
        set.insert("description".into(), json!("Default security group"));
        let mut g = new_group(id, project, set);
        let rules = default_rules(id, project, true);
        write_group(w, &mut g, &rules)?;
    }
    Ok(id)
}

/// The groups a port names.
pub fn groups_of(r: &PortRecord) -> Vec<Uuid> {
    r.f("security_groups")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.parse().ok())
        .collect()
}

/// Whether a port is filtered: a VM's or container's port (not one of
/// Neutron's own, `network:*`) with port security on.
fn filtered(r: &PortRecord) -> bool {
    let owner = r.f("device_owner").as_str().unwrap_or("");
    !owner.starts_with("network:") && r.f("port_security_enabled").as_bool() != Some(false)
}

/// The addresses (and MACs) a port may send from: its fixed IPs with its
/// MAC, and its allowed address pairs.
fn sources(r: &PortRecord) -> Vec<(MacAddr, IpAddr, u8)> {
    let mac = mac_of(r);
    let mut v: Vec<(MacAddr, IpAddr, u8)> = fixed_ips(r)
        .into_iter()
        .map(|(_, a)| (mac, IpAddr::V4(a), 32))
        .collect();
    for p in r
        .f("allowed_address_pairs")
        .as_array()
        .into_iter()
        .flatten()
    {
        let m = p["mac_address"]
            .as_str()
            .and_then(|m| m.parse().ok())
            .unwrap_or(mac);
        let s = p["ip_address"].as_str().unwrap_or("");
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        if let (Ok(a), Ok(l)) = (a.parse::<IpAddr>(), l.parse::<u8>()) {
            v.push((m, a, l));
        }
    }
    v
}

/// Port `port`'s membership of group `g` with address `a` (per port: two
/// ports of a project may share an address on different networks).
fn member_id(g: Uuid, port: Uuid, a: IpAddr) -> Uuid {
    let m = IpAddrGroupMember::id_for(g, a).as_u128() ^ port.as_u128().rotate_left(17);
    Uuid::from_u128(m)
}

/// (Re)writes the filters of port `r` (what its record says now), after
/// `old` (what it said before, `None` for a new port): its chains, its
/// bridge port's filters, its addresses in its groups' address groups.
/// With `r` `None` the port is going: everything is taken away.
pub fn port_filters(
    w: &mut Writer<'_>,
    r: Option<&PortRecord>,
    old: Option<&PortRecord>,
) -> Result<(), ApiError> {
    let Some(id) = r.or(old).map(|p| p.id) else {
        return Ok(());
    };
    let Some(mut port) = w.tx.get::<Port>(id)? else {
        // No bridge port (an uplink network's or a floating IP's).
        return Ok(());
    };
    let member = |p: &PortRecord| -> Vec<(Uuid, IpAddr)> {
        if !filtered(p) {
            return Vec::new();
        }
        let ips: Vec<IpAddr> = fixed_ips(p)
            .into_iter()
            .map(|(_, a)| IpAddr::V4(a))
            .collect();
        groups_of(p)
            .into_iter()
            .flat_map(|g| ips.iter().map(move |a| (g, *a)))
            .collect()
    };
    let before = old.map(member).unwrap_or_default();
    let after = r.map(member).unwrap_or_default();
    // Each address its own object: joining a group rewrites nothing of
    // the group's other members.
    for (g, a) in before.iter().filter(|x| !after.contains(x)) {
        w.tx.delete(Kind::IpAddrGroupMember, member_id(*g, id, *a))?;
    }
    for (g, a) in after.iter().filter(|x| !before.contains(x)) {
        if w.tx.exists(Kind::IpAddrGroup, *g) {
            w.tx.put(&IpAddrGroupMember {
                id: member_id(*g, id, *a),
                group_id: *g,
                addr: *a,
            });
        }
    }
    let ids = [
        derived(id, Derived::InChain),
        derived(id, Derived::OutChain),
        derived(id, Derived::AntiSpoof),
    ];
    for c in ids {
        if let Some(ch) = w.tx.get::<Chain>(c)? {
            for rule in ch.rule_ids {
                w.tx.remove(Kind::Rule, rule);
            }
            w.tx.remove(Kind::Chain, c);
        }
    }
    let Some(r) = r.filter(|r| filtered(r)) else {
        port.inbound_filter_id = None;
        port.outbound_filter_id = None;
        w.tx.put(&port);
        return Ok(());
    };
    let tenant = r.f("project_id").as_str().unwrap_or("").to_string();
    let [inc, outc, spoof] = ids;
    for (c, what) in [(inc, "INBOUND"), (outc, "OUTBOUND"), (spoof, "ANTI_SPOOF")] {
        w.tx.put(&chain(c, format!("OS_PORT_{id}_{what}"), &tenant));
    }
    let mut n = 0u16;
    let mut rule = |chain: Uuid, ty: RuleType, c: Condition| {
        n += 1;
        let mut rl = Rule::new(nth(chain, Derived::InChain, n), chain, ty, c);
        if ty == RuleType::Jump {
            rl.flow_action = Some(FlowAction::Jump);
        }
        rl
    };
    let mut rules: Vec<(Rule, Option<Uuid>)> = Vec::new();
    // Anti-spoofing: DHCP out, then only the port's own sources.
    rules.push((
        rule(
            spoof,
            RuleType::Return,
            Condition {
                dl_type: Some(IPV4),
                nw_proto: Some(17),
                tp_src: Some(PortRange {
                    start: Some(68),
                    end: Some(68),
                }),
                tp_dst: Some(PortRange {
                    start: Some(67),
                    end: Some(67),
                }),
                ..Default::default()
            },
        ),
        None,
    ));
    let srcs = sources(r);
    let mut macs: Vec<MacAddr> = srcs.iter().map(|s| s.0).collect();
    macs.push(mac_of(r));
    macs.dedup();
    for m in macs {
        rules.push((
            rule(
                spoof,
                RuleType::Return,
                Condition {
                    dl_type: Some(ARP),
                    dl_src: Some(m),
                    ..Default::default()
                },
            ),
            None,
        ));
    }
    for (m, a, l) in srcs {
        rules.push((
            rule(
                spoof,
                RuleType::Return,
                Condition {
                    dl_src: Some(m),
                    nw_src_address: Some(a),
                    nw_src_length: l,
                    ..Default::default()
                },
            ),
            None,
        ));
    }
    rules.push((rule(spoof, RuleType::Drop, Condition::default()), None));
    // From the VM: spoofing out, replies in, each group's egress rules.
    rules.push((rule(inc, RuleType::Jump, Condition::default()), Some(spoof)));
    let groups = groups_of(r);
    for (c, dir) in [(inc, Derived::InChain), (outc, Derived::OutChain)] {
        rules.push((
            rule(
                c,
                RuleType::Accept,
                Condition {
                    match_return_flow: true,
                    ..Default::default()
                },
            ),
            None,
        ));
        for g in &groups {
            rules.push((
                rule(c, RuleType::Jump, Condition::default()),
                Some(derived(*g, dir)),
            ));
        }
        rules.push((
            rule(
                c,
                RuleType::Drop,
                Condition {
                    dl_type: Some(ARP),
                    inv_dl_type: true,
                    ..Default::default()
                },
            ),
            None,
        ));
    }
    for (mut rl, jump) in rules {
        rl.jump_chain_id = jump;
        cluster::ops::add_rule(w, rl, None)?;
    }
    port.inbound_filter_id = Some(inc);
    port.outbound_filter_id = Some(outc);
    w.tx.put(&port);
    Ok(())
}

/// Checks a port's `security_groups` (each must exist) against its port
/// security; a filtered port that names none gets its project's default.
pub fn port_groups(
    app: &App,
    w: &mut Writer<'_>,
    f: &mut Map<String, Value>,
) -> Result<(), NeutronError> {
    let asked = f.contains_key("security_groups");
    let security = record::field(f, "port_security_enabled").as_bool() != Some(false);
    let owner = record::field(f, "device_owner")
        .as_str()
        .unwrap_or("")
        .to_string();
    let named = record::field(f, "security_groups")
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !security && !named.is_empty() {
        return Err(NeutronError::bad_request(
            "Port has security group associated. Cannot disable port security or IP address until security group is removed",
        ));
    }
    if !security || owner.starts_with("network:") {
        if !asked {
            f.insert("security_groups".into(), json!([]));
        }
        return Ok(());
    }
    if named.is_empty() && !asked {
        let p = record::field(f, "project_id")
            .as_str()
            .unwrap_or("admin")
            .to_string();
        let id = ensure_default(app, w, &p).map_err(NeutronError::from)?;
        f.insert("security_groups".into(), json!([id.to_string()]));
        return Ok(());
    }
    for g in &named {
        let id = g.as_str().unwrap_or("");
        let known = Uuid::parse_str(id)
            .ok()
            .map(|u| {
                Ok::<bool, ApiError>(
                    app.topo.get::<GroupRecord>(u)?.is_some()
                        || w.tx.get::<GroupRecord>(u)?.is_some(),
                )
            })
            .transpose()
            .map_err(NeutronError::from)?
            .unwrap_or(false);
        if !known {
            return Err(record::not_found::<GroupRecord>(id));
        }
    }
    Ok(())
}

pub(crate) const GROUP_FIELDS: &[&str] = &["name", "description", "stateful"];
const GROUP_CREATE_ONLY: &[&str] = &["tenant_id", "project_id"];

fn group_fields(body: &Value, creating: bool) -> Result<Map<String, Value>, NeutronError> {
    let m = body_of(body, "security_group")?;
    record::only_for(m, GROUP_FIELDS, GROUP_CREATE_ONLY, creating)?;
    for k in ["name", "description"] {
        if let Some(v) = m.get(k)
            && !v.is_string()
        {
            return Err(NeutronError::bad_request(format!(
                "Invalid input for {k}. Reason: '{v}' is not a valid string."
            )));
        }
    }
    Ok(m.clone())
}

pub async fn create_group(state: Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| group_fields(&b, true)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let p = project(&set, &headers);
        crate::quota::check::<GroupRecord>(&app, &p, "security_group", 1)?;
        if set.get("name").and_then(Value::as_str) == Some("default") {
            // Neutron makes the one `default` group itself.
            let id = default_group_id(&p);
            if app
                .topo
                .get::<GroupRecord>(id)
                .map_err(NeutronError::from)?
                .is_some()
            {
                return Err(NeutronError::conflict(
                    "SecurityGroupDefaultAlreadyExists",
                    "Default security group already exists.",
                ));
            }
        }
        let id = record::asked_id(&headers).unwrap_or_else(Uuid::new_v4);
        let mut g = new_group(id, &p, set.clone());
        let rules = default_rules(id, &p, false);
        app.topo
            .write(|w| {
                ensure_default(&app, w, &p)?;
                write_group(w, &mut g, &rules)
            })
            .map_err(NeutronError::from)?;
        Ok(g)
    })
    .await;
    record::answer(StatusCode::CREATED, done)
}

/// Lists groups, after making the caller's project's `default` group when
/// it has none (as Neutron does on a list).
pub async fn list_groups(state: Shared, headers: HeaderMap, raw: Raw) -> Response {
    let app: Arc<App> = state.0;
    let p = project(&Map::new(), &headers);
    let made = {
        let app = app.clone();
        blocking(move || {
            app.topo
                .write(|w| ensure_default(&app, w, &p).map(|_| ()))
                .map_err(NeutronError::from)
        })
        .await
    };
    if let Err(e) = made {
        return e.into_response();
    }
    record::list::<GroupRecord>(&app, &headers, raw.0)
}

pub async fn show_group(state: Shared, Path(id): Path<String>) -> Response {
    record::show::<GroupRecord>(&state.0, &id)
}

pub async fn update_group(
    state: Shared,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| group_fields(&b, false)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let mut g = find::<GroupRecord>(&app, &id)?;
        for (k, v) in set.clone() {
            g.fields.insert(k, v);
        }
        touched(&mut g);
        app.topo
            .write(|w| {
                w.tx.put(&g);
                Ok(())
            })
            .map_err(NeutronError::from)?;
        Ok(g)
    })
    .await;
    record::answer(StatusCode::OK, done)
}

/// Deleting a group a port still names refuses (409 `SecurityGroupInUse`):
/// a port's chains jump to the group's.
pub async fn delete_group(state: Shared, Path(id): Path<String>) -> Response {
    let app: Arc<App> = state.0;
    let done = blocking(move || {
        let g = find::<GroupRecord>(&app, &id)?;
        let jumps = app
            .topo
            .naming::<Rule>("jumpChainId", Kind::Chain, derived(g.id, Derived::InChain))
            .map_err(NeutronError::from)?;
        if !jumps.is_empty() {
            return Err(NeutronError::conflict(
                "SecurityGroupInUse",
                format!("Security Group {id} in use."),
            ));
        }
        let rules = rule_ids(&g);
        app.topo
            .write(|w| {
                for c in [Derived::InChain, Derived::OutChain] {
                    w.tx.delete(Kind::Chain, derived(g.id, c))?;
                }
                w.tx.delete(Kind::IpAddrGroup, g.id)?;
                for r in &rules {
                    record::remove(w, Kind::NeutronSecurityGroupRule, *r);
                }
                record::remove(w, Kind::NeutronSecurityGroup, g.id);
                Ok(())
            })
            .map_err(NeutronError::from)
    })
    .await;
    record::deleted(done)
}

fn rule_ids(g: &GroupRecord) -> Vec<Uuid> {
    g.f("security_group_rules")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str()?.parse().ok())
        .collect()
}

const RULE_FIELDS: &[&str] = &[
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "description",
    "tenant_id",
    "project_id",
];

/// Checks a rule's fields as Neutron does and canonicalises the prefix.
fn rule_fields(body: &Value) -> Result<Map<String, Value>, NeutronError> {
    let m = body_of(body, "security_group_rule")?;
    only(m, RULE_FIELDS)?;
    let mut m = m.clone();
    let bad = |k: &str, v: &Value, why: &str| {
        NeutronError::bad_request(format!("Invalid input for {k}. Reason: {v} {why}."))
    };
    match m.get("direction").and_then(Value::as_str) {
        Some("ingress" | "egress") => {}
        Some(_) | None => {
            let v = m.get("direction").cloned().unwrap_or(Value::Null);
            return Err(bad("direction", &v, "is not in [ingress, egress]"));
        }
    }
    if let Some(v) = m.get("ethertype")
        && !matches!(v.as_str(), Some("IPv4" | "IPv6"))
    {
        return Err(bad("ethertype", v, "is not in [IPv4, IPv6]"));
    }
    let proto = match m.get("protocol") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let s = n.to_string();
            m.insert("protocol".into(), json!(s));
            Some(s)
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(bad("protocol", v, "is not a protocol")),
    };
    if let Some(p) = &proto
        && p != "any"
        && protocol_number(p).is_none()
    {
        return Err(NeutronError::bad_request_kind(
            "SecurityGroupRuleInvalidProtocol",
            format!(
                "Security group rule protocol {p} not supported. Only protocol values [None, tcp, udp, icmp, icmpv6] and integer representations [0 to 255] are supported."
            ),
        ));
    }
    let icmp = matches!(proto.as_deref().and_then(protocol_number), Some(1 | 58));
    let mut ends = [None, None];
    for (i, k) in ["port_range_min", "port_range_max"].iter().enumerate() {
        match m.get(*k) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let n = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .filter(|n| *n <= if icmp { 255 } else { 65535 })
                    .ok_or_else(|| bad(k, v, "is not a valid port"))?;
                m.insert(k.to_string(), json!(n));
                ends[i] = Some(n);
            }
        }
    }
    if (ends[0].is_some() || ends[1].is_some()) && proto.is_none() {
        return Err(NeutronError::bad_request_kind(
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        ));
    }
    if !icmp
        && let [Some(a), Some(b)] = ends
        && a > b
    {
        return Err(NeutronError::bad_request_kind(
            "SecurityGroupInvalidPortRange",
            "For TCP/UDP protocols, port_range_min must be <= port_range_max",
        ));
    }
    if let Some(v) = m.get("remote_ip_prefix").filter(|v| !v.is_null()).cloned() {
        let s = v.as_str().unwrap_or("");
        let (a, l) = s.split_once('/').unwrap_or((s, ""));
        let canonical = match (a.parse::<IpAddr>(), l.parse::<u8>()) {
            (Ok(IpAddr::V4(a)), Ok(l)) if l <= 32 => {
                let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                format!("{}/{l}", Ipv4Addr::from(u32::from(a) & mask))
            }
            (Ok(IpAddr::V6(_)), Ok(l)) if l <= 128 => s.to_string(),
            _ => return Err(bad("remote_ip_prefix", &v, "is not a valid CIDR")),
        };
        m.insert("remote_ip_prefix".into(), json!(canonical));
    }
    if m.get("remote_ip_prefix").is_some_and(|v| !v.is_null())
        && m.get("remote_group_id").is_some_and(|v| !v.is_null())
    {
        return Err(NeutronError::bad_request_kind(
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
            "Only remote_ip_prefix or remote_group_id may be provided.",
        ));
    }
    Ok(m)
}

/// The fields that make two rules the same rule.
fn same_rule(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    [
        "direction",
        "ethertype",
        "protocol",
        "port_range_min",
        "port_range_max",
        "remote_ip_prefix",
        "remote_group_id",
    ]
    .iter()
    .all(|k| {
        let norm = |v: Option<&Value>| match v {
            Some(Value::Null) | None => Value::Null,
            Some(v) => v.clone(),
        };
        let (x, y) = (norm(a.get(*k)), norm(b.get(*k)));
        // A rule for 0.0.0.0/0 is the rule for any source.
        let any = |v: &Value| v.as_str().is_some_and(|s| s.ends_with("/0"));
        x == y || (*k == "remote_ip_prefix" && (any(&x) || x.is_null()) && (any(&y) || y.is_null()))
    })
}

pub async fn create_rule(state: Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| rule_fields(&b)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let sid = set
            .get("security_group_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut g = find::<GroupRecord>(&app, &sid)?;
        if let Some(rg) = set.get("remote_group_id").and_then(Value::as_str) {
            find::<GroupRecord>(&app, rg)?;
        }
        let p = project(&set, &headers);
        crate::quota::check::<RuleRecord>(&app, &p, "security_group_rule", 1)?;
        let mut fields = set.clone();
        fields.remove("tenant_id");
        fields.remove("project_id");
        let mut r = new_rule(g.id, &p, fields);
        if let Some(id) = record::asked_id(&headers) {
            r.id = id;
        }
        for existing in g.f("security_group_rules").as_array().into_iter().flatten() {
            if let Some(e) = existing.as_object()
                && same_rule(e, &r.fields)
            {
                return Err(NeutronError::conflict(
                    "SecurityGroupRuleExists",
                    format!(
                        "Security group rule already exists. Rule id is {}.",
                        e.get("id").and_then(Value::as_str).unwrap_or("")
                    ),
                ));
            }
        }
        touched(&mut g);
        app.topo
            .write(|w| {
                add_rule(w, &mut g, &r)?;
                w.tx.put(&g);
                Ok(())
            })
            .map_err(NeutronError::from)?;
        Ok(r)
    })
    .await;
    record::answer(StatusCode::CREATED, done)
}

pub async fn list_rules(state: Shared, headers: HeaderMap, raw: Raw) -> Response {
    record::list::<RuleRecord>(&state.0, &headers, raw.0)
}

pub async fn show_rule(state: Shared, Path(id): Path<String>) -> Response {
    record::show::<RuleRecord>(&state.0, &id)
}

pub async fn delete_rule(state: Shared, Path(id): Path<String>) -> Response {
    let app: Arc<App> = state.0;
    let done = blocking(move || {
        let r = find::<RuleRecord>(&app, &id)?;
        let sg = r.f("security_group_id").as_str().unwrap_or("").to_string();
        let mut g = find::<GroupRecord>(&app, &sg)?;
        if let Some(Value::Array(a)) = g.fields.get_mut("security_group_rules") {
            a.retain(|x| x["id"].as_str() != Some(id.as_str()));
        }
        touched(&mut g);
        app.topo
            .write(|w| {
                w.tx.delete(Kind::Rule, r.id)?;
                w.tx.delete(Kind::Rule, twin_id(r.id))?;
                record::remove(w, Kind::NeutronSecurityGroupRule, r.id);
                w.tx.put(&g);
                Ok(())
            })
            .map_err(NeutronError::from)
    })
    .await;
    record::deleted(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_group_ids_are_per_project() {
        assert_eq!(default_group_id("a"), default_group_id("a"));
        assert_ne!(default_group_id("a"), default_group_id("b"));
    }

    #[test]
    fn rules_translate_to_accepts_on_the_right_side() {
        let sg = Uuid::new_v4();
        let set = |v: Value| v.as_object().cloned().unwrap_or_default();
        let r = new_rule(
            sg,
            "p",
            set(
                json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 22,
                "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}),
            ),
        );
        let t = translated(&r);
        assert_eq!(t.chain_id, derived(sg, Derived::OutChain));
        assert_eq!(t.rule_type, RuleType::Accept);
        assert_eq!(t.condition.nw_proto, Some(6));
        assert_eq!(
            t.condition.tp_dst,
            Some(PortRange {
                start: Some(22),
                end: Some(22)
            })
        );
        assert_eq!(t.condition.nw_src_address, None, "/0 is any source");
        let twin = fragments_twin(&t).expect("a rule on ports has a twin");
        assert_eq!(twin.condition.tp_dst, None);
        assert_eq!(
            twin.condition.fragment_policy,
            Some(model::FragmentPolicy::Nonheader)
        );
        let e = new_rule(
            sg,
            "p",
            set(
                json!({"direction": "egress", "protocol": "icmp", "port_range_min": 8,
                "remote_group_id": sg.to_string()}),
            ),
        );
        let t = translated(&e);
        assert_eq!(t.chain_id, derived(sg, Derived::InChain));
        assert_eq!(t.condition.ip_addr_group_dst, Some(sg));
        assert_eq!(
            t.condition.tp_src.and_then(|r| r.start),
            Some(8),
            "ICMP type"
        );
    }

    #[test]
    fn rule_checks() {
        let b = |v: Value| rule_fields(&json!({ "security_group_rule": v }));
        assert!(b(json!({"security_group_id": "x", "direction": "up"})).is_err());
        assert!(
            b(json!({"security_group_id": "x", "direction": "ingress", "port_range_min": 22}))
                .is_err(),
            "ports need a protocol"
        );
        assert!(
            b(json!({"security_group_id": "x", "direction": "ingress", "protocol": "bogus"}))
                .is_err()
        );
        let m = b(
            json!({"security_group_id": "x", "direction": "ingress", "protocol": 6,
            "remote_ip_prefix": "10.1.2.3/8"}),
        )
        .expect("valid");
        assert_eq!(m["remote_ip_prefix"], json!("10.0.0.0/8"));
        assert_eq!(m["protocol"], json!("6"));
    }
}
