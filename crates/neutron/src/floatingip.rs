//! Floating IPs: an address of an external network's subnet (held by a
//! `network:floatingip` port without a bridge port), and once associated
//! with a port, static NAT on the router between the port's subnet and the
//! external network: DNAT of what comes to the floating IP, SNAT of what
//! the port's address sends out of the gateway, both ahead of the router's
//! other NAT; and on the external network an ARP entry answering for the
//! address with the gateway port's MAC.

use crate::error::NeutronError;
use crate::ids::{Derived, derived};
use crate::network::{NetworkRecord, project};
use crate::port::{PortRecord, fixed_ips, new_port, remove_port, write_port};
use crate::record::{self, Record, blocking, body_of, find, only, standard, touched};
use crate::router::{RouterRecord, gateway_of, router_for};
use crate::subnet::SubnetRecord;
use crate::{Raw, Shared};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cluster::App;
use cluster::topo::Writer;
use model::{Condition, FlowAction, Kind, NatTarget, Rule, RuleType};
use serde_json::{Map, Value, json};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use uuid::Uuid;

crate::record::record!(
    FloatingIpRecord,
    NeutronFloatingIp,
    "floatingip",
    "floatingips",
    "FloatingIPNotFound"
);

const CREATE: &[&str] = &[
    "floating_network_id",
    "floating_ip_address",
    "subnet_id",
    "port_id",
    "fixed_ip_address",
    "description",
    "tenant_id",
    "project_id",
    "dns_domain",
    "dns_name",
];
pub(crate) const UPDATE: &[&str] = &["port_id", "fixed_ip_address", "description"];

fn uuid_of(v: &Value) -> Option<Uuid> {
    v.as_str()?.parse().ok()
}

/// The FIP's address.
fn address(f: &FloatingIpRecord) -> Option<Ipv4Addr> {
    f.f("floating_ip_address").as_str()?.parse().ok()
}

/// The table of the external network's IP-to-MAC entries (what its bridge
/// answers ARP from).
fn arp_table(f: &FloatingIpRecord) -> String {
    format!(
        "ip4mac/{}",
        f.f("floating_network_id").as_str().unwrap_or("")
    )
}

/// Whether any floating IP goes through `router`.
pub fn router_has_floating_ips(app: &App, router: Uuid) -> Result<bool, NeutronError> {
    let rid = router.to_string();
    Ok(app
        .topo
        .all::<FloatingIpRecord>()?
        .iter()
        .any(|f| f.f("router_id").as_str() == Some(rid.as_str())))
}

/// Whether a floating IP through `router` maps an address of `subnet`.
pub fn subnet_has_floating_ips(
    app: &App,
    router: Uuid,
    subnet: Uuid,
) -> Result<bool, NeutronError> {
    let rid = router.to_string();
    for f in app.topo.all::<FloatingIpRecord>()? {
        if f.f("router_id").as_str() != Some(rid.as_str()) {
            continue;
        }
        if let Some(p) = uuid_of(f.f("port_id"))
            .map(|p| app.topo.get::<PortRecord>(p))
            .transpose()?
            .flatten()
            && fixed_ips(&p).iter().any(|(s, _)| *s == subnet)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Associates `f` with port `port_id` (at `fixed`, else the port's first
/// IPv4 address): the router's NAT rules. Returns the ARP entry to write
/// (the gateway port's MAC).
fn associate(
    app: &App,
    w: &mut Writer<'_>,
    f: &mut FloatingIpRecord,
    port_id: &str,
    fixed: Option<&Value>,
) -> Result<String, NeutronError> {
    let p = find::<PortRecord>(app, port_id)?;
    let ips = fixed_ips(&p);
    let (sid, fixed) = match fixed.filter(|v| !v.is_null()) {
        Some(v) => {
            let a: Ipv4Addr = v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                NeutronError::bad_request(format!(
                    "Invalid input for fixed_ip_address. Reason: '{v}' is not a valid IP address."
                ))
            })?;
            ips.iter().copied().find(|(_, x)| *x == a).ok_or_else(|| {
                NeutronError::bad_request(format!(
                    "Bad floatingip request: Port {port_id} does not have fixed ip {a}."
                ))
            })?
        }
        None => ips.first().copied().ok_or_else(|| {
            NeutronError::bad_request(format!(
                "Bad floatingip request: Port {port_id} does not have any IPv4 address."
            ))
        })?,
    };
    for o in app.topo.all::<FloatingIpRecord>()? {
        if o.id != f.id
            && o.f("port_id").as_str() == Some(port_id)
            && o.f("fixed_ip_address").as_str() == Some(fixed.to_string().as_str())
        {
            return Err(NeutronError::conflict(
                "FloatingIPPortAlreadyAssociated",
                format!(
                    "Cannot associate floating IP {} with port {port_id} using fixed IP {fixed}, as that fixed IP already has a floating IP on external network {}.",
                    address(f).map(|a| a.to_string()).unwrap_or_default(),
                    f.f("floating_network_id").as_str().unwrap_or("")
                ),
            ));
        }
    }
    let subnet = find::<SubnetRecord>(app, &sid.to_string())?;
    let fip_net = f
        .f("floating_network_id")
        .as_str()
        .unwrap_or("")
        .to_string();
    let router: RouterRecord = router_for(app, &fip_net, &subnet)?.ok_or_else(|| {
        NeutronError::not_found(
            "ExternalGatewayForFloatingIPNotFound",
            format!(
                "External network {fip_net} is not reachable from subnet {sid}. Therefore, cannot associate Port {port_id} with a Floating IP."
            ),
        )
    })?;
    let gw = gateway_of(w, router.id)?.ok_or_else(|| {
        NeutronError::not_found(
            "ExternalGatewayForFloatingIPNotFound",
            format!("Router {} has no gateway port.", router.id),
        )
    })?;
    let fip = address(f).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let to = |a: Ipv4Addr| {
        vec![NatTarget {
            address_from: Some(a),
            address_to: Some(a),
            port_from: 0,
            port_to: 0,
        }]
    };
    let mut dnat = Rule::new(
        derived(f.id, Derived::FipDnat),
        derived(router.id, Derived::InChain),
        RuleType::Dnat,
        Condition {
            dl_type: Some(0x0800),
            nw_dst_address: Some(IpAddr::V4(fip)),
            nw_dst_length: 32,
            ..Default::default()
        },
    );
    dnat.flow_action = Some(FlowAction::Accept);
    dnat.nat_targets = to(fixed);
    let mut snat = Rule::new(
        derived(f.id, Derived::FipSnat),
        derived(router.id, Derived::OutChain),
        RuleType::Snat,
        Condition {
            dl_type: Some(0x0800),
            out_ports: vec![gw.id],
            nw_src_address: Some(IpAddr::V4(fixed)),
            nw_src_length: 32,
            ..Default::default()
        },
    );
    snat.flow_action = Some(FlowAction::Accept);
    snat.nat_targets = to(fip);
    // Ahead of the gateway's SNAT and reverse SNAT.
    cluster::ops::add_rule(w, dnat, Some(0))?;
    cluster::ops::add_rule(w, snat, Some(0))?;
    f.fields.insert("port_id".into(), json!(p.id.to_string()));
    f.fields
        .insert("fixed_ip_address".into(), json!(fixed.to_string()));
    f.fields
        .insert("router_id".into(), json!(router.id.to_string()));
    f.fields.insert("status".into(), json!("ACTIVE"));
    Ok(gw.port_mac.map(|m| m.to_string()).unwrap_or_default())
}

/// Takes `f`'s association away (its NAT rules).
fn disassociate(w: &mut Writer<'_>, f: &mut FloatingIpRecord) -> Result<(), NeutronError> {
    w.tx.delete(Kind::Rule, derived(f.id, Derived::FipDnat))?;
    w.tx.delete(Kind::Rule, derived(f.id, Derived::FipSnat))?;
    for k in ["port_id", "fixed_ip_address", "router_id"] {
        f.fields.insert(k.into(), Value::Null);
    }
    f.fields.insert("status".into(), json!("DOWN"));
    Ok(())
}

/// Writes (or, without a MAC, removes) the ARP entry of `f` on its
/// external network, in the same transaction.
fn arp_entry(w: &mut Writer<'_>, f: &FloatingIpRecord, mac: Option<&str>) {
    let Some(a) = address(f) else { return };
    let mac = mac.filter(|m| !m.is_empty()).map(str::to_string);
    w.table(arp_table(f), a.to_string(), mac);
}

pub async fn create(state: Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let m = match record::parse(&body).and_then(|b| {
        let m = body_of(&b, "floatingip")?.clone();
        only(&m, CREATE)?;
        Ok(m)
    }) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let nid = m
            .get("floating_network_id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                NeutronError::bad_request(
                    "Failed to parse request. Required attribute 'floating_network_id' not specified",
                )
            })?;
        let net = find::<NetworkRecord>(&app, nid)?;
        if net.f("router:external").as_bool() != Some(true) {
            return Err(NeutronError::bad_request(format!(
                "Bad floatingip request: Network {nid} is not a valid external network."
            )));
        }
        let p = project(&m, &headers);
        crate::quota::check::<FloatingIpRecord>(&app, &p, "floatingip", 1)?;
        let id = record::asked_id(&headers).unwrap_or_else(Uuid::new_v4);
        let mut pm = Map::new();
        pm.insert("network_id".into(), json!(nid));
        pm.insert("device_owner".into(), json!("network:floatingip"));
        pm.insert("device_id".into(), json!(id.to_string()));
        let mut want = Map::new();
        if let Some(s) = m.get("subnet_id") {
            want.insert("subnet_id".into(), s.clone());
        }
        if let Some(a) = m.get("floating_ip_address") {
            want.insert("ip_address".into(), a.clone());
        }
        if !want.is_empty() {
            pm.insert("fixed_ips".into(), json!([want]));
        }
        let mut port = new_port(&app, &pm, &p, &net)?;
        port.id = derived(id, Derived::FipPort);
        let (sid, addr) = fixed_ips(&port).into_iter().next().ok_or_else(|| {
            NeutronError::conflict(
                "IpAddressGenerationFailure",
                format!("No more IP addresses available on network {nid}."),
            )
        })?;
        let f = FloatingIpRecord::new(
            id,
            standard(
                &p,
                json!({
                    "floating_network_id": nid, "floating_ip_address": addr.to_string(),
                    "subnet_id": sid.to_string(), "port_id": null, "fixed_ip_address": null,
                    "router_id": null, "status": "DOWN", "dns_domain": "", "dns_name": "",
                    "port_details": null, "qos_policy_id": null, "port_forwardings": [],
                    "description": m.get("description").cloned().unwrap_or(json!("")),
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ),
        );
        let f = record::write(&app, |w| {
            let mut f = f.clone();
            let mut port = port.clone();
            write_port(&app, w, &mut port, &net)?;
            let mac = match m.get("port_id").and_then(Value::as_str) {
                Some(pid) => Some(associate(&app, w, &mut f, pid, m.get("fixed_ip_address"))?),
                None => None,
            };
            if let Some(mac) = &mac {
                arp_entry(w, &f, Some(mac));
            }
            record::put_new(w, &f);
            Ok(f)
        })?;
        Ok(f)
    })
    .await;
    record::answer(StatusCode::CREATED, done)
}

pub async fn list(state: Shared, headers: HeaderMap, raw: Raw) -> Response {
    record::list::<FloatingIpRecord>(&state.0, &headers, raw.0)
}

pub async fn show(state: Shared, Path(id): Path<String>) -> Response {
    record::show::<FloatingIpRecord>(&state.0, &id)
}

/// Associates (`port_id`), moves, or with `port_id: null` disassociates.
pub async fn update(state: Shared, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| {
        let m = body_of(&b, "floatingip")?.clone();
        only(&m, UPDATE)?;
        Ok(m)
    }) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let old = find::<FloatingIpRecord>(&app, &id)?;
        let f = record::write(&app, |w| {
            let mut f = old.clone();
            if let Some(d) = set.get("description") {
                f.fields.insert("description".into(), d.clone());
            }
            let mut mac = None;
            if let Some(p) = set.get("port_id") {
                disassociate(w, &mut f)?;
                mac = Some(String::new());
                if let Some(pid) = p.as_str() {
                    mac = Some(associate(
                        &app,
                        w,
                        &mut f,
                        pid,
                        set.get("fixed_ip_address"),
                    )?);
                }
            }
            if let Some(mac) = &mac {
                arp_entry(w, &f, Some(mac));
            }
            touched(&mut f);
            w.tx.put(&f);
            Ok(f)
        })?;
        Ok(f)
    })
    .await;
    record::answer(StatusCode::OK, done)
}

pub async fn delete(state: Shared, Path(id): Path<String>) -> Response {
    let app: Arc<App> = state.0;
    let done = blocking(move || {
        let f = find::<FloatingIpRecord>(&app, &id)?;
        record::write(&app, |w| {
            let mut g = f.clone();
            disassociate(w, &mut g)?;
            if let Some(p) = app
                .topo
                .get::<PortRecord>(derived(f.id, Derived::FipPort))?
            {
                remove_port(w, &p)?;
            }
            arp_entry(w, &f, None);
            record::remove(w, Kind::NeutronFloatingIp, f.id);
            Ok(())
        })
    })
    .await;
    record::deleted(done)
}

/// Disassociates the floating IPs of a port being deleted (Neutron does).
pub fn port_gone(app: &App, w: &mut Writer<'_>, port: Uuid) -> Result<(), NeutronError> {
    let pid = port.to_string();
    for mut f in app.topo.all::<FloatingIpRecord>()? {
        if f.f("port_id").as_str() == Some(pid.as_str()) {
            disassociate(w, &mut f)?;
            arp_entry(w, &f, None);
            touched(&mut f);
            w.tx.put(&f);
        }
    }
    Ok(())
}
