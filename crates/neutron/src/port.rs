//! Ports: a Neutron port is a bridge port of its network with the same id
//! (so `midonet port bind PORT_ID HOST IFACE` and `mm-ctl --bind-port
//! PORT_ID IFACE` bind it), its fixed IPs taken from the subnets' pools, and
//! a DHCP host entry per IP on a DHCP subnet.

use crate::error::NeutronError;
use crate::network::{NetworkRecord, is_uplink, project};
use crate::record::{self, Record, blocking, body_of, find, standard, touched};
use crate::subnet::{SubnetRecord, pools_of, within_subnet};
use crate::{Raw, Shared};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cluster::App;
use model::{DhcpHost, DhcpHostEntry, DhcpSubnet, Host, Kind, MacAddr, Port};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::Mutex;
use uuid::Uuid;

crate::record::record!(PortRecord, NeutronPort, "port", "ports", "PortNotFound");

pub(crate) const WRITABLE: &[&str] = &[
    "name",
    "admin_state_up",
    "description",
    "device_id",
    "device_owner",
    "binding:host_id",
    "binding:profile",
    "binding:vnic_type",
    "allowed_address_pairs",
    "security_groups",
    "port_security_enabled",
    "extra_dhcp_opts",
];
const CREATE_ONLY: &[&str] = &[
    "network_id",
    "mac_address",
    "fixed_ips",
    "tenant_id",
    "project_id",
];

/// The fixed IPs of a port record: (subnet, address).
pub fn fixed_ips(r: &PortRecord) -> Vec<(Uuid, Ipv4Addr)> {
    r.f("fixed_ips")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f["subnet_id"].as_str()?.parse().ok()?,
                f["ip_address"].as_str()?.parse().ok()?,
            ))
        })
        .collect()
}

/// The port's MAC.
pub fn mac_of(r: &PortRecord) -> MacAddr {
    r.f("mac_address")
        .as_str()
        .and_then(|m| m.parse().ok())
        .unwrap_or_default()
}

/// The Neutron ports of a network: its bridge's ports that have a record
/// (an uplink network has no bridge: every port record is read), and a
/// floating IP's ports, which have no bridge port.
pub fn ports_of(app: &App, net: &NetworkRecord) -> Result<Vec<PortRecord>, NeutronError> {
    let nid = net.id.to_string();
    if is_uplink(net) || net.f("router:external").as_bool() == Some(true) {
        // Floating IPs hold addresses of external networks without bridge
        // ports; uplink networks have no bridge at all.
        return Ok(app
            .topo
            .all::<PortRecord>()
            .map_err(NeutronError::from)?
            .into_iter()
            .filter(|p| p.f("network_id").as_str() == Some(nid.as_str()))
            .collect());
    }
    let ports = app
        .topo
        .naming::<Port>("deviceId", Kind::Bridge, net.id)
        .map_err(NeutronError::from)?;
    Ok(ports
        .iter()
        .filter_map(|p| app.topo.get::<PortRecord>(p.id).ok().flatten())
        .collect())
}

/// What a network's ports hold: addresses and MACs, as this server last
/// read them plus what its own writes took and gave back since.
#[derive(Clone, Default)]
pub struct Held {
    ips: HashSet<Ipv4Addr>,
    macs: HashSet<String>,
}

/// The claims a port's address and MAC take on its network: a port's write
/// commits only if nobody holds them, so two servers sharing a ZooKeeper
/// never hand out one address twice. A server whose [`Held`] missed
/// another's port gets a conflict, reads the network again and redoes the
/// create (see `record::blocking`); creates of different addresses never
/// conflict.
fn ip_claim(net: Uuid, ip: Ipv4Addr) -> String {
    format!("neutron-ip/{net}/{ip}")
}

fn mac_claim(net: Uuid, mac: &str) -> String {
    format!("neutron-mac/{net}/{mac}")
}

/// Each network's [`Held`], kept by this server's Neutron writes (one at a
/// time, see `record::blocking`) so IPAM does not read every port of the
/// network per create; dropped whole when a write fails, and read again.
static HELD: Mutex<Option<HashMap<Uuid, Held>>> = Mutex::new(None);

fn held_map() -> std::sync::MutexGuard<'static, Option<HashMap<Uuid, Held>>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets every network's held addresses (after a failed write).
pub fn forget_held() {
    *held_map() = None;
}

/// Runs `f` over what `net`'s ports hold (read once, then kept). A cache
/// can hold what another server's ports gave back since: where `f` finds
/// something taken (a conflict), it runs again on the network read anew.
fn with_held<T>(
    app: &App,
    net: &NetworkRecord,
    mut f: impl FnMut(&Held) -> Result<T, NeutronError>,
) -> Result<T, NeutronError> {
    if let Some(h) = held_map().as_ref().and_then(|m| m.get(&net.id)) {
        match f(h) {
            Err(e) if e.status == StatusCode::CONFLICT => {}
            done => return done,
        }
    }
    // The ports are read from the store: once this server's staged writes
    // are in it.
    app.topo.settle();
    let mut h = Held::default();
    for p in ports_of(app, net)? {
        h.ips.extend(fixed_ips(&p).into_iter().map(|(_, a)| a));
        if let Some(m) = p.f("mac_address").as_str() {
            h.macs.insert(m.to_string());
        }
    }
    let out = f(&h);
    held_map().get_or_insert_default().insert(net.id, h);
    out
}

/// Takes (`add`) or gives back the claims of port `r`'s addresses and MAC,
/// and notes them in this server's [`Held`] of its network.
fn hold(
    w: &mut cluster::topo::Writer<'_>,
    r: &PortRecord,
    add: bool,
) -> Result<(), cluster::error::ApiError> {
    let Some(net) = r
        .f("network_id")
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok())
    else {
        return Ok(());
    };
    let mac = r.f("mac_address").as_str().unwrap_or("").to_string();
    let ips = fixed_ips(r);
    let mut claims: Vec<String> = ips.iter().map(|(_, a)| ip_claim(net, *a)).collect();
    claims.push(mac_claim(net, &mac));
    for c in claims {
        if add {
            w.claim(c, r.id.to_string());
        } else {
            w.release(c);
        }
    }
    let mut g = held_map();
    let Some(h) = g.as_mut().and_then(|m| m.get_mut(&net)) else {
        return Ok(());
    };
    for (_, a) in ips {
        if add {
            h.ips.insert(a);
        } else {
            h.ips.remove(&a);
        }
    }
    if add {
        h.macs.insert(mac);
    } else {
        h.macs.remove(&mac);
    }
    Ok(())
}

/// Whether a subnet still has ports holding its addresses.
pub fn subnet_in_use(app: &App, net: &NetworkRecord, subnet: Uuid) -> Result<bool, NeutronError> {
    Ok(ports_of(app, net)?
        .iter()
        .any(|p| fixed_ips(p).iter().any(|(s, _)| *s == subnet)))
}

/// Chooses the port's addresses: those asked for (checked against the
/// subnet and what is taken), or the first free one of the network's first
/// subnet's pools.
fn allocate(
    asked: Option<&Value>,
    subnets: &[SubnetRecord],
    taken: &HashSet<Ipv4Addr>,
) -> Result<Vec<(Uuid, Ipv4Addr)>, NeutronError> {
    let wants: Vec<(Option<Uuid>, Option<Ipv4Addr>)> = match asked {
        None => subnets.first().map(|s| vec![(Some(s.id), None)]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|f| {
                let sub = match f.get("subnet_id") {
                    Some(v) => Some(v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                        NeutronError::bad_request(format!("Invalid input for fixed_ips. Reason: subnet_id {v} is not a UUID."))
                    })?),
                    None => None,
                };
                let ip = match f.get("ip_address") {
                    Some(v) => Some(v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                        NeutronError::bad_request(format!("Invalid input for fixed_ips. Reason: '{v}' is not a valid IPv4 address."))
                    })?),
                    None => None,
                };
                Ok((sub, ip))
            })
            .collect::<Result<_, NeutronError>>()?,
        Some(v) => return Err(NeutronError::bad_request(format!("Invalid input for fixed_ips. Reason: '{v}' is not a list."))),
    };
    let mut out: Vec<(Uuid, Ipv4Addr)> = Vec::new();
    // What this port takes, beside what others hold.
    let mut mine: Vec<Ipv4Addr> = Vec::new();
    for (sub, ip) in wants {
        let s = match (sub, ip) {
            (Some(id), _) => subnets.iter().find(|s| s.id == id).ok_or_else(|| {
                NeutronError::bad_request(format!("Invalid input for operation: subnet {id} is not on the port's network."))
            })?,
            (None, Some(ip)) => subnets.iter().find(|s| within_subnet(s, ip)).ok_or_else(|| {
                NeutronError::bad_request(format!("Invalid input for operation: IP address {ip} is not a valid IP for any subnet on the network."))
            })?,
            (None, None) => return Err(NeutronError::bad_request("Invalid input for fixed_ips: a subnet_id or ip_address is needed.")),
        };
        let used = |a: Ipv4Addr| taken.contains(&a) || mine.contains(&a);
        let ip = match ip {
            Some(ip) => {
                if !within_subnet(s, ip) {
                    return Err(NeutronError::bad_request(format!(
                        "IP address {ip} is not a valid IP for the specified subnet."
                    )));
                }
                if used(ip) {
                    return Err(NeutronError::conflict(
                        "IpAddressAlreadyAllocated",
                        format!("IP address {ip} already allocated in subnet {}", s.id),
                    ));
                }
                ip
            }
            None => first_free(s, &used).ok_or_else(|| {
                NeutronError::conflict(
                    "IpAddressGenerationFailure",
                    format!(
                        "No more IP addresses available on network {}.",
                        s.f("network_id").as_str().unwrap_or("")
                    ),
                )
            })?,
        };
        mine.push(ip);
        out.push((s.id, ip));
    }
    Ok(out)
}

/// How many of a subnet's first free addresses a create that lost a race
/// chooses from at random (as Neutron's own IPAM does), so that it does
/// not race the other server for the next one again.
const SPREAD: usize = 32;

/// The subnet's first free address; or, redoing a create that lost a race
/// with another server, one of its first [`SPREAD`] free ones.
fn first_free(s: &SubnetRecord, used: &impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
    let mut free = pools_of(s)
        .into_iter()
        .flat_map(|(a, b)| a..=b)
        .map(Ipv4Addr::from)
        .filter(|a| !used(*a));
    if !record::redoing() {
        return free.next();
    }
    let window: Vec<Ipv4Addr> = free.take(SPREAD).collect();
    (!window.is_empty()).then(|| window[rand::random_range(0..window.len())])
}

/// A MAC in Neutron's range, `fa:16:3e:xx:xx:xx`.
fn new_mac(taken: &HashSet<String>) -> String {
    loop {
        let b: [u8; 3] = rand::random();
        let m = format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2]);
        if !taken.contains(&m) {
            return m;
        }
    }
}

/// What the binding fields say: the host's id when `binding:host_id` names
/// a host (by the name its agent registered), and the resulting VIF type.
fn binding(app: &App, f: &mut Map<String, Value>) -> Result<(), NeutronError> {
    let host = f
        .get("binding:host_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let bound = !host.is_empty()
        && app
            .topo
            .all::<Host>()
            .map_err(NeutronError::from)?
            .iter()
            .any(|h| h.name.as_deref() == Some(host.as_str()));
    let (vif, status) = match (host.is_empty(), bound) {
        (true, _) => ("unbound", "DOWN"),
        (false, true) => ("midonet", "ACTIVE"),
        (false, false) => ("binding_failed", "DOWN"),
    };
    f.insert("binding:vif_type".into(), json!(vif));
    f.insert("status".into(), json!(status));
    let details = if bound {
        json!({"port_filter": true, "connectivity": "l2"})
    } else {
        json!({})
    };
    f.insert("binding:vif_details".into(), details);
    Ok(())
}

fn checked(m: &Map<String, Value>, creating: bool) -> Result<Map<String, Value>, NeutronError> {
    record::only_for(m, WRITABLE, CREATE_ONLY, creating)?;
    let mut out = m.clone();
    for k in ["admin_state_up", "port_security_enabled"] {
        if let Some(v) = m.get(k) {
            out.insert(k.into(), json!(record::boolean(k, v)?));
        }
    }
    for k in ["security_groups", "allowed_address_pairs"] {
        if let Some(v) = m.get(k)
            && !v.is_array()
        {
            return Err(NeutronError::bad_request(format!(
                "Invalid input for {k}. Reason: '{v}' is not a list."
            )));
        }
    }
    Ok(out)
}

fn ips_json(ips: &[(Uuid, Ipv4Addr)]) -> Value {
    Value::Array(
        ips.iter()
            .map(|(s, a)| json!({"subnet_id": s.to_string(), "ip_address": a.to_string()}))
            .collect(),
    )
}

/// A VM's port `old` becoming Neutron's own `new` (a router interface):
/// its DHCP entries and filters go.
pub fn reowned(
    w: &mut cluster::topo::Writer<'_>,
    old: &PortRecord,
    new: &PortRecord,
) -> Result<(), cluster::error::ApiError> {
    dhcp_hosts(w, old, true)?;
    crate::security_group::port_filters(w, Some(new), Some(old))?;
    w.tx.put(new);
    Ok(())
}

/// Takes a port away with all it was translated to.
pub fn remove_port(
    w: &mut cluster::topo::Writer<'_>,
    r: &PortRecord,
) -> Result<(), cluster::error::ApiError> {
    dhcp_hosts(w, r, true)?;
    crate::security_group::port_filters(w, None, Some(r))?;
    w.tx.delete(Kind::Port, r.id)?;
    record::remove(w, Kind::NeutronPort, r.id);
    hold(w, r, false)?;
    Ok(())
}

/// Adds (or with `remove`, takes away) a port's DHCP host entries: one
/// object each, so a create rewrites nothing of the network's other ports.
fn dhcp_hosts(
    w: &mut cluster::topo::Writer<'_>,
    r: &PortRecord,
    remove: bool,
) -> Result<(), cluster::error::ApiError> {
    let mac = mac_of(r);
    for (s, ip) in fixed_ips(r) {
        let id = DhcpHostEntry::id_for(s, mac);
        if remove {
            w.tx.delete(Kind::DhcpHostEntry, id)?;
            continue;
        }
        let Some(d) = w.tx.get::<DhcpSubnet>(s)? else {
            continue;
        };
        w.tx.put(&DhcpHostEntry {
            id,
            bridge_id: d.bridge_id,
            subnet_id: s,
            host: DhcpHost {
                mac_addr: Some(mac),
                ip_addr: Some(ip),
                name: Some(format!("host-{}", ip.to_string().replace('.', "-"))),
                extra_dhcp_opts: Vec::new(),
            },
        });
    }
    Ok(())
}

/// A new port record on `net` from the request's fields `m`: addresses
/// allocated, a MAC made, Neutron's defaults under what was asked.
pub fn new_port(
    app: &App,
    m: &Map<String, Value>,
    project: &str,
    net: &NetworkRecord,
) -> Result<PortRecord, NeutronError> {
    let subnets: Vec<SubnetRecord> = crate::network::subnets_of(net)
        .into_iter()
        .filter_map(|s| app.topo.get::<SubnetRecord>(s).ok().flatten())
        .collect();
    let (ips, mac) = with_held(app, net, |held| {
        let ips = allocate(m.get("fixed_ips"), &subnets, &held.ips)?;
        let mac = match m.get("mac_address") {
            Some(v) => {
                let mac: MacAddr = v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    NeutronError::bad_request(format!(
                        "Invalid input for mac_address. Reason: '{v}' is not a valid MAC address."
                    ))
                })?;
                let mac = mac.to_string().to_lowercase();
                if held.macs.contains(&mac) {
                    return Err(NeutronError::conflict(
                        "MacAddressInUse",
                        format!(
                            "Unable to complete operation for network {}. The mac address {mac} is in use.",
                            net.id
                        ),
                    ));
                }
                mac
            }
            None => new_mac(&held.macs),
        };
        Ok((ips, mac))
    })?;
    let security = m.get("port_security_enabled").cloned().unwrap_or_else(|| {
        net.fields
            .get("port_security_enabled")
            .cloned()
            .unwrap_or(json!(true))
    });
    let mut f = json!({
        "name": "", "admin_state_up": true, "device_id": "", "device_owner": "",
        "allowed_address_pairs": [], "extra_dhcp_opts": [],
        "binding:host_id": "", "binding:profile": {}, "binding:vnic_type": "normal",
        "dns_name": "", "dns_assignment": [], "qos_policy_id": null, "ip_allocation": "immediate",
        "data_plane_status": null, "propagate_uplink_status": false, "resource_request": null,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    for (k, v) in m {
        f.insert(k.clone(), v.clone());
    }
    f.insert("network_id".into(), json!(net.id.to_string()));
    f.insert("mac_address".into(), json!(mac));
    f.insert("fixed_ips".into(), ips_json(&ips));
    f.insert("port_security_enabled".into(), security);
    binding(app, &mut f)?;
    Ok(PortRecord::new(Uuid::new_v4(), standard(project, f)))
}

/// Whether a port is Neutron's own (a router's, a floating IP's).
fn owned_by_neutron(r: &PortRecord) -> bool {
    r.f("device_owner")
        .as_str()
        .is_some_and(|o| o.starts_with("network:"))
}

/// Writes a new port: its bridge port (none on an uplink network, none for
/// a floating IP), DHCP host entries (a VM's), security groups and filters.
pub fn write_port(
    app: &App,
    w: &mut cluster::topo::Writer<'_>,
    r: &mut PortRecord,
    net: &NetworkRecord,
) -> Result<(), NeutronError> {
    let fip = r.f("device_owner").as_str() == Some("network:floatingip");
    if !is_uplink(net) && !fip {
        let up = r.f("admin_state_up").as_bool().unwrap_or(true);
        cluster::ops::bridge_port(w, r.id, net.id, up)?;
    }
    if !owned_by_neutron(r) {
        dhcp_hosts(w, r, false)?;
    }
    crate::security_group::port_groups(app, w, &mut r.fields)?;
    crate::security_group::port_filters(w, Some(r), None)?;
    record::put_new(w, r);
    hold(w, r, true)?;
    Ok(())
}

pub async fn create(state: Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let body = match record::parse(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let m = match body_of(&body, "port").and_then(|m| checked(m, true)) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    // Another server taking an address of this network (or a tunnel key)
    // meanwhile makes `blocking` choose again, on what the store holds now.
    let done = blocking(move || {
        let nid = m.get("network_id").and_then(Value::as_str).ok_or_else(|| {
            NeutronError::bad_request(
                "Failed to parse request. Required attribute 'network_id' not specified",
            )
        })?;
        let net = find::<NetworkRecord>(&app, nid)?;
        let p = project(&m, &headers);
        crate::quota::check::<PortRecord>(&app, &p, "port", 1)?;
        let mut r = new_port(&app, &m, &p, &net)?;
        if let Some(id) = record::asked_id(&headers) {
            r.id = id;
        }
        record::write(&app, |w| {
            let mut r = r.clone();
            write_port(&app, w, &mut r, &net)?;
            Ok(r)
        })
    })
    .await;
    record::answer(StatusCode::CREATED, done)
}

pub async fn list(state: Shared, headers: HeaderMap, raw: Raw) -> Response {
    record::list::<PortRecord>(&state.0, &headers, raw.0)
}

pub async fn show(state: Shared, Path(id): Path<String>) -> Response {
    record::show::<PortRecord>(&state.0, &id)
}

pub async fn update(state: Shared, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| checked(body_of(&b, "port")?, false)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let old = find::<PortRecord>(&app, &id)?;
        let mut r = old.clone();
        for (k, v) in set.clone() {
            r.fields.insert(k, v);
        }
        binding(&app, &mut r.fields)?;
        touched(&mut r);
        record::write(&app, |w| {
            let mut r = r.clone();
            if let Some(mut p) = w.tx.get::<Port>(r.id)? {
                p.admin_state_up = r.f("admin_state_up").as_bool().unwrap_or(true);
                w.tx.put(&p);
            }
            crate::security_group::port_groups(&app, w, &mut r.fields)?;
            crate::security_group::port_filters(w, Some(&r), Some(&old))?;
            w.tx.put(&r);
            Ok(r)
        })
    })
    .await;
    record::answer(StatusCode::OK, done)
}

/// Deleting a port deletes its bridge port (and so cuts its traffic) and
/// its DHCP host entries.
pub async fn delete(state: Shared, Path(id): Path<String>) -> Response {
    let app: Arc<App> = state.0;
    let done = blocking(move || {
        let r = find::<PortRecord>(&app, &id)?;
        if owned_by_neutron(&r) {
            return Err(NeutronError::conflict(
                "L3PortInUse",
                format!(
                    "Port {id} cannot be deleted directly via the port API: has device owner {}.",
                    r.f("device_owner").as_str().unwrap_or("")
                ),
            ));
        }
        record::write(&app, |w| {
            crate::floatingip::port_gone(&app, w, r.id)?;
            Ok(remove_port(w, &r)?)
        })
    })
    .await;
    record::deleted(done)
}
