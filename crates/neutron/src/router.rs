//! Routers: a Neutron router is a MidoNet router with the same id and two
//! chains (pre- and post-routing, where NAT lives). An interface is a
//! Neutron port on the subnet's network (`network:router_interface`, the
//! subnet's gateway address) linked to a router port with the route to the
//! subnet; on an `uplink` network the router port is instead bound to the
//! host's NIC named by the port's `binding:host_id` and
//! `binding:profile.interface_name` (MidoNet's edge router). A gateway is
//! a port on an external network (`network:router_gateway`) linked to a
//! router port, a default route to the external subnet's gateway, and SNAT
//! of what leaves through it. Extra `routes` go out of the router port
//! whose network holds the next hop.

use crate::error::NeutronError;
use crate::ids::{Derived, derived, nth};
use crate::network::{NetworkRecord, is_uplink, project};
use crate::port::{PortRecord, fixed_ips, mac_of, new_port, ports_of, remove_port, write_port};
use crate::record::{self, Record, blocking, body_of, find, only, standard, touched};
use crate::subnet::{SubnetRecord, cidr_of};
use crate::{Raw, Shared, parse_bool};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cluster::App;
use cluster::error::ApiError;
use cluster::topo::Writer;
use model::{Chain, Condition, FlowAction, Host, Kind, NatTarget, Port, Router, Rule, RuleType};
use serde_json::{Map, Value, json};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use uuid::Uuid;

crate::record::record!(
    RouterRecord,
    NeutronRouter,
    "router",
    "routers",
    "RouterNotFound"
);

pub const INTERFACE: &str = "network:router_interface";
pub const GATEWAY: &str = "network:router_gateway";

/// The ports a router's extra routes may have (ids in a series).
const MAX_ROUTES: usize = 1024;

pub(crate) const WRITABLE: &[&str] = &[
    "name",
    "admin_state_up",
    "description",
    "external_gateway_info",
    "routes",
];
const CREATE_ONLY: &[&str] = &[
    "tenant_id",
    "project_id",
    "distributed",
    "ha",
    "availability_zone_hints",
    "flavor_id",
];

fn fields(body: &Value, creating: bool) -> Result<Map<String, Value>, NeutronError> {
    let m = body_of(body, "router")?;
    record::only_for(m, WRITABLE, CREATE_ONLY, creating)?;
    let mut out = m.clone();
    if let Some(v) = m.get("admin_state_up") {
        out.insert(
            "admin_state_up".into(),
            json!(record::boolean("admin_state_up", v)?),
        );
    }
    for k in ["distributed", "ha"] {
        if m.get(k).is_some_and(|v| v.as_bool() == Some(true)) {
            return Err(NeutronError::bad_request(format!(
                "Invalid input for {k}: MidoNet routers are distributed by design; the flag is not settable."
            )));
        }
    }
    Ok(out)
}

/// The router port a Neutron router port becomes.
fn router_port_of(port: Uuid) -> Uuid {
    derived(port, Derived::RouterPort)
}

/// The Neutron port of a router's gateway.
fn gateway_port_of(router: Uuid) -> Uuid {
    derived(router, Derived::GatewayPort)
}

fn ip(v: &Value) -> Option<Ipv4Addr> {
    v.as_str()?.parse().ok()
}

/// The subnet of a port's first fixed IP, and the IP.
fn first_ip(app: &App, p: &PortRecord) -> Result<(SubnetRecord, Ipv4Addr), NeutronError> {
    let (s, a) = fixed_ips(p).into_iter().next().ok_or_else(|| {
        NeutronError::bad_request(format!(
            "Bad router request: Port {} does not have any fixed IPs.",
            p.id
        ))
    })?;
    Ok((find::<SubnetRecord>(app, &s.to_string())?, a))
}

/// A rule on the router's chains with a fixed id.
fn nat_rule(
    id: Uuid,
    chain: Uuid,
    ty: RuleType,
    c: Condition,
    to: Option<(Ipv4Addr, u32, u32)>,
) -> Rule {
    let mut r = Rule::new(id, chain, ty, c);
    r.flow_action = Some(FlowAction::Accept);
    if let Some((a, from, to)) = to {
        r.nat_targets = vec![NatTarget {
            address_from: Some(a),
            address_to: Some(a),
            port_from: from,
            port_to: to,
        }];
    }
    r
}

/// Translates Neutron port `p` (an interface or gateway of `router`, at
/// `addr` in subnet `s`) into a router port: linked to the port's bridge
/// port, or on an uplink network bound to the host NIC the port names.
fn attach(
    app: &App,
    w: &mut Writer<'_>,
    router: Uuid,
    p: &PortRecord,
    s: &SubnetRecord,
    net: &NetworkRecord,
    addr: Ipv4Addr,
) -> Result<Port, NeutronError> {
    let cidr = cidr_of(s);
    let rp =
        cluster::ops::router_port(w, router_port_of(p.id), router, addr, cidr, Some(mac_of(p)))?;
    if is_uplink(net) {
        let host_name = p.f("binding:host_id").as_str().unwrap_or("");
        let iface = p.f("binding:profile")["interface_name"]
            .as_str()
            .unwrap_or("");
        let host = app
            .topo
            .all::<Host>()?
            .into_iter()
            .find(|h| h.name.as_deref() == Some(host_name))
            .ok_or_else(|| {
                NeutronError::bad_request(format!(
                    "Bad router request: port {} on uplink network {} needs binding:host_id naming a host (got \"{host_name}\") and binding:profile {{\"interface_name\": ...}}.",
                    p.id, net.id
                ))
            })?;
        cluster::ops::bind_in(w, host.id, rp.id, iface)?;
    } else {
        cluster::ops::link(w, rp.id, p.id)?;
    }
    cluster::ops::route(
        w,
        derived(p.id, Derived::NetworkRoute),
        router,
        cidr,
        rp.id,
        None,
    );
    Ok(rp)
}

/// The chains of router `id`.
fn chains(id: Uuid) -> (Uuid, Uuid) {
    (
        derived(id, Derived::InChain),
        derived(id, Derived::OutChain),
    )
}

/// Sets the router's gateway from `info` (`network_id`, `enable_snat`,
/// `external_fixed_ips`), returning what the record shows.
fn set_gateway(
    app: &App,
    w: &mut Writer<'_>,
    r: &RouterRecord,
    info: &Map<String, Value>,
) -> Result<Value, NeutronError> {
    let nid = info
        .get("network_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            NeutronError::bad_request(
                "Invalid input for external_gateway_info. Reason: network_id is required.",
            )
        })?;
    let net = find::<NetworkRecord>(app, nid)?;
    if net.f("router:external").as_bool() != Some(true) {
        return Err(NeutronError::bad_request(format!(
            "Bad router request: Network {nid} is not a valid external network."
        )));
    }
    let snat = match info.get("enable_snat") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => parse_bool(s).unwrap_or(true),
        Some(v) => {
            return Err(NeutronError::bad_request(format!(
                "Invalid input for enable_snat. Reason: '{v}' is not a valid boolean value."
            )));
        }
    };
    let mut m = Map::new();
    m.insert("network_id".into(), json!(nid));
    m.insert("device_owner".into(), json!(GATEWAY));
    m.insert("device_id".into(), json!(r.id.to_string()));
    if let Some(ips) = info.get("external_fixed_ips").filter(|v| !v.is_null()) {
        m.insert("fixed_ips".into(), ips.clone());
    }
    let mut p = new_port(app, &m, "", &net)?;
    p.id = gateway_port_of(r.id);
    write_port(app, w, &mut p, &net)?;
    let (s, addr) = first_ip(app, &p)?;
    let rp = attach(app, w, r.id, &p, &s, &net, addr)?;
    if let Some(gw) = ip(s.f("gateway_ip")) {
        cluster::ops::route(
            w,
            derived(p.id, Derived::DefaultRoute),
            r.id,
            (Ipv4Addr::UNSPECIFIED, 0),
            rp.id,
            Some(gw),
        );
    }
    if snat {
        let (inc, outc) = chains(r.id);
        let me = Some(IpAddr::V4(addr));
        // What leaves through the gateway takes its address (but what the
        // router itself sends from it).
        cluster::ops::add_rule(
            w,
            nat_rule(
                derived(r.id, Derived::Snat),
                outc,
                RuleType::Snat,
                Condition {
                    out_ports: vec![rp.id],
                    nw_src_address: me,
                    nw_src_length: 32,
                    inv_nw_src: true,
                    ..Default::default()
                },
                Some((addr, 1024, 65535)),
            ),
            None,
        )?;
        let to_me = Condition {
            in_ports: vec![rp.id],
            nw_dst_address: me,
            nw_dst_length: 32,
            ..Default::default()
        };
        cluster::ops::add_rule(
            w,
            nat_rule(
                derived(r.id, Derived::RevSnat),
                inc,
                RuleType::RevSnat,
                to_me.clone(),
                None,
            ),
            None,
        )?;
        // Unmapped traffic to the gateway address, but ICMP (a ping of the
        // router), is for nobody.
        let mut drop = Rule::new(
            derived(r.id, Derived::SnatDrop),
            inc,
            RuleType::Drop,
            Condition {
                dl_type: Some(0x0800),
                nw_proto: Some(1),
                inv_nw_proto: true,
                ..to_me
            },
        );
        drop.flow_action = None;
        cluster::ops::add_rule(w, drop, None)?;
    }
    Ok(json!({
        "network_id": nid,
        "enable_snat": snat,
        "external_fixed_ips": [{"subnet_id": s.id.to_string(), "ip_address": addr.to_string()}],
    }))
}

/// Takes the router's gateway away (its port, router port, routes, SNAT).
fn clear_gateway(app: &App, w: &mut Writer<'_>, r: &RouterRecord) -> Result<(), NeutronError> {
    if r.f("external_gateway_info").is_null() {
        return Ok(());
    }
    if crate::floatingip::router_has_floating_ips(app, r.id)? {
        return Err(NeutronError::conflict(
            "RouterExternalGatewayInUseByFloatingIp",
            format!(
                "Gateway cannot be updated for router {}, since a gateway to external network is required by one or more floating IPs.",
                r.id
            ),
        ));
    }
    for d in [Derived::Snat, Derived::RevSnat, Derived::SnatDrop] {
        w.tx.delete(Kind::Rule, derived(r.id, d))?;
    }
    let gp = gateway_port_of(r.id);
    w.tx.delete(Kind::Port, router_port_of(gp))?;
    if let Some(p) = app.topo.get::<PortRecord>(gp)? {
        remove_port(w, &p)?;
    }
    Ok(())
}

/// The router ports of `router`, each with its network.
fn router_ports(w: &Writer<'_>, router: Uuid) -> Result<Vec<Port>, ApiError> {
    Ok(w.tx.naming::<Port>("deviceId", Kind::Router, router)?)
}

/// Replaces the router's extra routes by `routes` (checked: each next hop
/// on the network of one of its ports).
fn set_routes(
    w: &mut Writer<'_>,
    r: &RouterRecord,
    old: &Value,
    routes: &Value,
) -> Result<(), NeutronError> {
    let old_n = old.as_array().map_or(0, Vec::len);
    for i in 0..old_n {
        w.tx.delete(Kind::Route, nth(r.id, Derived::ExtraRoute, i as u16))?;
    }
    let list = routes.as_array().ok_or_else(|| {
        NeutronError::bad_request(format!(
            "Invalid input for routes. Reason: '{routes}' is not a list."
        ))
    })?;
    if list.len() > MAX_ROUTES {
        return Err(NeutronError::bad_request(format!(
            "Invalid input for routes: more than {MAX_ROUTES} routes."
        )));
    }
    let ports = router_ports(w, r.id)?;
    for (i, route) in list.iter().enumerate() {
        let bad = |why: &str| {
            NeutronError::bad_request_kind(
                "InvalidRoutes",
                format!("Invalid format for routes: {route}, {why}"),
            )
        };
        let dst = route["destination"].as_str().unwrap_or("");
        let (a, l) = dst
            .split_once('/')
            .ok_or_else(|| bad("destination is not a CIDR"))?;
        let (a, l): (Ipv4Addr, u8) = match (a.parse(), l.parse()) {
            (Ok(a), Ok(l)) if l <= 32 => (a, l),
            _ => return Err(bad("destination is not a CIDR")),
        };
        let hop = ip(&route["nexthop"]).ok_or_else(|| bad("nexthop is not an IPv4 address"))?;
        let port = ports
            .iter()
            .find(|p| {
                let (Some(n), Some(len)) = (p.network_address, p.network_length) else {
                    return false;
                };
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(hop) & mask == u32::from(n) & mask
            })
            .ok_or_else(|| bad("the nexthop is not connected with router"))?;
        let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
        cluster::ops::route(
            w,
            nth(r.id, Derived::ExtraRoute, i as u16),
            r.id,
            (Ipv4Addr::from(u32::from(a) & mask), l),
            port.id,
            Some(hop),
        );
    }
    Ok(())
}

fn new_record(set: Map<String, Value>, project: &str) -> RouterRecord {
    let mut f = json!({
        "name": "", "admin_state_up": true, "status": "ACTIVE", "external_gateway_info": null,
        "routes": [], "distributed": false, "ha": false, "availability_zone_hints": [],
        "availability_zones": [], "flavor_id": null,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    for (k, v) in set {
        if !matches!(k.as_str(), "external_gateway_info" | "routes") {
            f.insert(k, v);
        }
    }
    RouterRecord::new(Uuid::new_v4(), standard(project, f))
}

fn translated(r: &RouterRecord) -> Router {
    let (inc, outc) = chains(r.id);
    Router {
        id: r.id,
        tenant_id: r.f("project_id").as_str().map(str::to_string),
        name: r.f("name").as_str().map(str::to_string),
        admin_state_up: r.f("admin_state_up").as_bool().unwrap_or(true),
        inbound_filter_id: Some(inc),
        outbound_filter_id: Some(outc),
        ..Default::default()
    }
}

/// `{}` and `null` mean no gateway.
fn gateway_wanted(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object().filter(|m| !m.is_empty())
}

pub async fn create(state: Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| fields(&b, true)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let p = project(&set, &headers);
        crate::quota::check::<RouterRecord>(&app, &p, "router", 1)?;
        let mut r = new_record(set.clone(), &p);
        if let Some(id) = record::asked_id(&headers) {
            r.id = id;
        }
        record::write(&app, |w| {
            let mut r = r.clone();
            let t = translated(&r);
            let (inc, outc) = chains(r.id);
            for (c, n) in [(inc, "PRE_ROUTING"), (outc, "POST_ROUTING")] {
                w.tx.put(&Chain {
                    id: c,
                    tenant_id: t.tenant_id.clone(),
                    name: Some(format!("OS_{n}_{}", r.id)),
                    rule_ids: Vec::new(),
                });
            }
            w.tx.put(&t);
            if let Some(info) = set.get("external_gateway_info").and_then(gateway_wanted) {
                let shown = set_gateway(&app, w, &r, info)?;
                r.fields.insert("external_gateway_info".into(), shown);
            }
            if let Some(routes) = set.get("routes") {
                set_routes(w, &r, &json!([]), routes)?;
                r.fields.insert("routes".into(), routes.clone());
            }
            record::put_new(w, &r);
            Ok(r)
        })
    })
    .await;
    record::answer(StatusCode::CREATED, done)
}

pub async fn list(state: Shared, headers: HeaderMap, raw: Raw) -> Response {
    record::list::<RouterRecord>(&state.0, &headers, raw.0)
}

pub async fn show(state: Shared, Path(id): Path<String>) -> Response {
    record::show::<RouterRecord>(&state.0, &id)
}

pub async fn update(state: Shared, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| fields(&b, false)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let old = find::<RouterRecord>(&app, &id)?;
        record::write(&app, |w| {
            let mut r = old.clone();
            for (k, v) in &set {
                if !matches!(k.as_str(), "external_gateway_info" | "routes") {
                    r.fields.insert(k.clone(), v.clone());
                }
            }
            if let Some(info) = set.get("external_gateway_info") {
                let have = &old.f("external_gateway_info");
                let same = match (gateway_wanted(info), have.as_object()) {
                    (Some(want), Some(have)) => {
                        want.get("network_id") == have.get("network_id")
                            && want.get("external_fixed_ips").is_none()
                            && want
                                .get("enable_snat")
                                .is_none_or(|s| Some(s) == have.get("enable_snat"))
                    }
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    clear_gateway(&app, w, &old)?;
                    let shown = match gateway_wanted(info) {
                        Some(info) => set_gateway(&app, w, &r, info)?,
                        None => Value::Null,
                    };
                    r.fields.insert("external_gateway_info".into(), shown);
                }
            }
            if let Some(routes) = set.get("routes") {
                let routes = if routes.is_null() {
                    json!([])
                } else {
                    routes.clone()
                };
                set_routes(w, &r, old.f("routes"), &routes)?;
                r.fields.insert("routes".into(), routes);
            }
            let mut t: Router = w.tx.must(r.id, "id")?;
            let n = translated(&r);
            t.name = n.name;
            t.admin_state_up = n.admin_state_up;
            w.tx.put(&t);
            touched(&mut r);
            w.tx.put(&r);
            Ok(r)
        })
    })
    .await;
    record::answer(StatusCode::OK, done)
}

/// Deleting a router with interfaces refuses (409 `RouterInUse`); its
/// gateway goes with it.
pub async fn delete(state: Shared, Path(id): Path<String>) -> Response {
    let app: Arc<App> = state.0;
    let done = blocking(move || {
        let r = find::<RouterRecord>(&app, &id)?;
        let gw = router_port_of(gateway_port_of(r.id));
        let interfaces = app
            .topo
            .naming::<Port>("deviceId", Kind::Router, r.id)?
            .into_iter()
            .filter(|p| p.id != gw)
            .count();
        if interfaces > 0 {
            return Err(NeutronError::conflict(
                "RouterInUse",
                format!("Router {id} still has ports"),
            ));
        }
        record::write(&app, |w| {
            clear_gateway(&app, w, &r)?;
            let (inc, outc) = chains(r.id);
            w.tx.delete(Kind::Router, r.id)?;
            w.tx.delete(Kind::Chain, inc)?;
            w.tx.delete(Kind::Chain, outc)?;
            record::remove(w, Kind::NeutronRouter, r.id);
            Ok(())
        })
    })
    .await;
    record::deleted(done)
}

/// What `add_router_interface` and `remove_router_interface` answer.
fn interface_info(r: &RouterRecord, p: &PortRecord, s: &SubnetRecord) -> Value {
    json!({
        "id": r.id.to_string(),
        "tenant_id": r.f("tenant_id"), "project_id": r.f("project_id"),
        "port_id": p.id.to_string(),
        "network_id": p.f("network_id"),
        "subnet_id": s.id.to_string(), "subnet_ids": [s.id.to_string()],
    })
}

fn interface_body(body: &[u8]) -> Result<(Option<String>, Option<String>), NeutronError> {
    let b = record::parse(body)?;
    let m = b
        .as_object()
        .ok_or_else(|| NeutronError::bad_request("Body must be an object"))?;
    only(m, &["subnet_id", "port_id"])?;
    let s = m
        .get("subnet_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let p = m.get("port_id").and_then(Value::as_str).map(str::to_string);
    if s.is_some() == p.is_some() {
        return Err(NeutronError::bad_request(
            "Bad router request: Must specify either subnet_id or port_id (but not both).",
        ));
    }
    Ok((s, p))
}

/// The router's interface ports on `s`'s network holding an address of `s`.
fn interfaces_on(
    app: &App,
    router: Uuid,
    s: &SubnetRecord,
) -> Result<Vec<PortRecord>, NeutronError> {
    let net = find::<NetworkRecord>(app, s.f("network_id").as_str().unwrap_or(""))?;
    let rid = router.to_string();
    Ok(ports_of(app, &net)?
        .into_iter()
        .filter(|p| {
            p.f("device_id").as_str() == Some(rid.as_str())
                && p.f("device_owner").as_str() == Some(INTERFACE)
                && fixed_ips(p).iter().any(|(x, _)| *x == s.id)
        })
        .collect())
}

pub async fn add_interface(
    state: Shared,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let app: Arc<App> = state.0;
    let (subnet, port) = match interface_body(&body) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let r = find::<RouterRecord>(&app, &id)?;
        let project = r.f("project_id").as_str().unwrap_or("").to_string();
        let (mut p, s, net, old) = match (subnet.clone(), port.clone()) {
            (Some(sid), _) => {
                let s = find::<SubnetRecord>(&app, &sid)?;
                let gw = ip(s.f("gateway_ip")).ok_or_else(|| {
                    NeutronError::bad_request(format!(
                        "Bad router request: Subnet {sid} does not have a gateway IP."
                    ))
                })?;
                if !interfaces_on(&app, r.id, &s)?.is_empty() {
                    return Err(NeutronError::bad_request(format!(
                        "Bad router request: Router already has a port on subnet {sid}."
                    )));
                }
                let net = find::<NetworkRecord>(&app, s.f("network_id").as_str().unwrap_or(""))?;
                let mut m = Map::new();
                m.insert("network_id".into(), json!(net.id.to_string()));
                m.insert("fixed_ips".into(), json!([{"subnet_id": sid, "ip_address": gw.to_string()}]));
                m.insert("device_owner".into(), json!(INTERFACE));
                m.insert("device_id".into(), json!(r.id.to_string()));
                (new_port(&app, &m, &project, &net)?, s, net, None)
            }
            (None, Some(pid)) => {
                let p = find::<PortRecord>(&app, &pid)?;
                // Made for this router already (as networking-midonet
                // posts it): the port only needs its router port.
                let ours = p.f("device_id").as_str() == Some(id.as_str())
                    && p.f("device_owner").as_str() == Some(INTERFACE)
                    && app.topo.get::<Port>(router_port_of(p.id))?.is_none();
                if !ours
                    && (!p.f("device_id").as_str().unwrap_or("").is_empty()
                        || p.f("device_owner")
                            .as_str()
                            .is_some_and(|o| o.starts_with("network:")))
                {
                    return Err(NeutronError::conflict(
                        "PortInUse",
                        format!(
                            "Unable to complete operation on port {pid} for network {}. Port already has an attached device {}.",
                            p.f("network_id").as_str().unwrap_or(""),
                            p.f("device_id").as_str().unwrap_or("")
                        ),
                    ));
                }
                let (s, _) = first_ip(&app, &p)?;
                let net = find::<NetworkRecord>(&app, p.f("network_id").as_str().unwrap_or(""))?;
                let mut q = p.clone();
                q.fields.insert("device_owner".into(), json!(INTERFACE));
                q.fields.insert("device_id".into(), json!(r.id.to_string()));
                touched(&mut q);
                (q, s, net, Some(p))
            }
            (None, None) => {
                return Err(NeutronError::bad_request(
                    "Bad router request: Must specify either subnet_id or port_id.",
                ));
            }
        };
        record::write(&app, |w| {
            match &old {
                None => write_port(&app, w, &mut p, &net)?,
                Some(old) => crate::port::reowned(w, old, &p)?,
            }
            let addr = fixed_ips(&p)
                .into_iter()
                .find(|(x, _)| *x == s.id)
                .map(|(_, a)| a)
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            attach(&app, w, r.id, &p, &s, &net, addr)?;
            Ok(interface_info(&r, &p, &s))
        })
    })
    .await;
    match done {
        Ok(v) => crate::reply(StatusCode::OK, v),
        Err(e) => e.into_response(),
    }
}

pub async fn remove_interface(
    state: Shared,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let app: Arc<App> = state.0;
    let (subnet, port) = match interface_body(&body) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let r = find::<RouterRecord>(&app, &id)?;
        let (p, s) = match (subnet.clone(), port.clone()) {
            (Some(sid), _) => {
                let s = find::<SubnetRecord>(&app, &sid)?;
                let p = interfaces_on(&app, r.id, &s)?.into_iter().next().ok_or_else(|| {
                    NeutronError::not_found(
                        "RouterInterfaceNotFoundForSubnet",
                        format!("Router {id} has no interface on subnet {sid}"),
                    )
                })?;
                (p, s)
            }
            (None, Some(pid)) => {
                let p = find::<PortRecord>(&app, &pid)?;
                if p.f("device_id").as_str() != Some(id.as_str())
                    || p.f("device_owner").as_str() != Some(INTERFACE)
                {
                    return Err(NeutronError::not_found(
                        "RouterInterfaceNotFound",
                        format!("Router {id} does not have an interface with id {pid}"),
                    ));
                }
                let (s, _) = first_ip(&app, &p)?;
                (p, s)
            }
            (None, None) => {
                return Err(NeutronError::bad_request(
                    "Bad router request: Must specify either subnet_id or port_id.",
                ));
            }
        };
        if crate::floatingip::subnet_has_floating_ips(&app, r.id, s.id)? {
            return Err(NeutronError::conflict(
                "RouterInterfaceInUseByFloatingIP",
                format!(
                    "Router interface for subnet {} on router {id} cannot be deleted, as it is required by one or more floating IPs.",
                    s.id
                ),
            ));
        }
        record::write(&app, |w| {
            w.tx.delete(Kind::Port, router_port_of(p.id))?;
            remove_port(w, &p)?;
            Ok(interface_info(&r, &p, &s))
        })
    })
    .await;
    match done {
        Ok(v) => crate::reply(StatusCode::OK, v),
        Err(e) => e.into_response(),
    }
}

/// The router a floating IP of network `fip_net` for a port on subnet
/// `subnet` goes through: one with its gateway on `fip_net` and an
/// interface on `subnet`.
pub fn router_for(
    app: &App,
    fip_net: &str,
    subnet: &SubnetRecord,
) -> Result<Option<RouterRecord>, NeutronError> {
    let net = find::<NetworkRecord>(app, subnet.f("network_id").as_str().unwrap_or(""))?;
    for p in ports_of(app, &net)? {
        if p.f("device_owner").as_str() != Some(INTERFACE)
            || !fixed_ips(&p).iter().any(|(s, _)| *s == subnet.id)
        {
            continue;
        }
        let Some(r) = p
            .f("device_id")
            .as_str()
            .and_then(|d| d.parse().ok())
            .map(|d| app.topo.get::<RouterRecord>(d))
            .transpose()?
            .flatten()
        else {
            continue;
        };
        if r.f("external_gateway_info")["network_id"].as_str() == Some(fip_net) {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// A router's gateway: its router port's id, MAC and address.
pub fn gateway_of(w: &Writer<'_>, router: Uuid) -> Result<Option<Port>, ApiError> {
    Ok(w.tx.get::<Port>(router_port_of(gateway_port_of(router)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_gateway_info_means_none() {
        assert!(gateway_wanted(&json!({})).is_none());
        assert!(gateway_wanted(&Value::Null).is_none());
        assert!(gateway_wanted(&json!({"network_id": "x"})).is_some());
    }

    #[test]
    fn interface_bodies_name_one_thing() {
        assert!(interface_body(br#"{"subnet_id": "a"}"#).is_ok());
        assert!(interface_body(br#"{"port_id": "a"}"#).is_ok());
        assert!(interface_body(br#"{"subnet_id": "a", "port_id": "b"}"#).is_err());
        assert!(interface_body(br#"{}"#).is_err());
        assert!(interface_body(br#"[]"#).is_err());
    }
}
