//! Subnets: a Neutron subnet is the DHCP subnet of its network's bridge
//! (same id), kept in line with the subnet's gateway, DNS servers, host
//! routes and `enable_dhcp`. IPv4 only so far.

use crate::error::NeutronError;
use crate::network::{MTU, NetworkRecord, project};
use crate::record::{self, Record, blocking, body_of, find, only, standard, touched};
use crate::{Raw, Shared, parse_bool};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cluster::App;
use model::dhcp::Opt121Route;
use model::{DhcpSubnet, Kind};
use serde_json::{Map, Value, json};
use std::net::Ipv4Addr;
use std::sync::Arc;
use uuid::Uuid;

crate::record::record!(
    SubnetRecord,
    NeutronSubnet,
    "subnet",
    "subnets",
    "SubnetNotFound"
);

pub(crate) const WRITABLE: &[&str] = &[
    "name",
    "description",
    "gateway_ip",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "enable_dhcp",
];
const CREATE_ONLY: &[&str] = &[
    "network_id",
    "ip_version",
    "cidr",
    "tenant_id",
    "project_id",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "prefixlen",
    "service_types",
    "segment_id",
];

fn bad(field: &str, why: impl std::fmt::Display) -> NeutronError {
    NeutronError::bad_request(format!("Invalid input for {field}. Reason: {why}."))
}

/// `a.b.c.d/len`, canonicalised to its network address.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), NeutronError> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| bad("cidr", format!("'{s}' is not a valid IP subnet")))?;
    let (a, l): (Ipv4Addr, u8) = match (a.parse(), l.parse()) {
        (Ok(a), Ok(l)) if l <= 32 => (a, l),
        _ => return Err(bad("cidr", format!("'{s}' is not a valid IP subnet"))),
    };
    Ok((Ipv4Addr::from(u32::from(a) & mask(l)), l))
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

fn within(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    u32::from(ip) & mask(len) == u32::from(net)
}

fn ip(field: &str, v: &Value) -> Result<Ipv4Addr, NeutronError> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(field, format!("'{v}' is not a valid IPv4 address")))
}

/// The whole subnet but its network and broadcast addresses and the
/// gateway, as Neutron's default pools.
fn default_pools(cidr: (Ipv4Addr, u8), gw: Option<Ipv4Addr>) -> Vec<(u32, u32)> {
    let net = u32::from(cidr.0);
    if cidr.1 >= 31 {
        return Vec::new();
    }
    let (first, last) = (net + 1, (net | !mask(cidr.1)) - 1);
    match gw.map(u32::from) {
        Some(g) if (first..=last).contains(&g) => [(first, g.wrapping_sub(1)), (g + 1, last)]
            .into_iter()
            .filter(|(a, b)| a <= b && *a >= first)
            .collect(),
        _ => vec![(first, last)],
    }
}

fn pools_json(p: &[(u32, u32)]) -> Value {
    Value::Array(
        p.iter()
            .map(|(a, b)| json!({"start": Ipv4Addr::from(*a).to_string(), "end": Ipv4Addr::from(*b).to_string()}))
            .collect(),
    )
}

/// Checks what a subnet holds against its CIDR and fills the derived
/// defaults (gateway, pools) into `f`.
fn complete(f: &mut Map<String, Value>, creating: bool) -> Result<(), NeutronError> {
    let cidr = parse_cidr(f.get("cidr").and_then(Value::as_str).unwrap_or_default())?;
    f.insert("cidr".into(), json!(format!("{}/{}", cidr.0, cidr.1)));
    let gw = match f.get("gateway_ip") {
        Some(Value::Null) => None,
        Some(v) => Some(ip("gateway_ip", v)?),
        None if creating && cidr.1 < 31 => Some(Ipv4Addr::from(u32::from(cidr.0) + 1)),
        None => None,
    };
    if let Some(g) = gw
        && !within(g, cidr)
    {
        return Err(bad(
            "gateway_ip",
            format!("gateway {g} is not in subnet {}/{}", cidr.0, cidr.1),
        ));
    }
    f.insert(
        "gateway_ip".into(),
        gw.map_or(Value::Null, |g| json!(g.to_string())),
    );
    let pools = match f.get("allocation_pools") {
        Some(Value::Array(ps)) if !ps.is_empty() || !creating => {
            let mut out = Vec::new();
            for p in ps {
                let (a, b) = (
                    ip("allocation_pools", &p["start"])?,
                    ip("allocation_pools", &p["end"])?,
                );
                if !within(a, cidr) || !within(b, cidr) || u32::from(a) > u32::from(b) {
                    return Err(NeutronError::bad_request(format!(
                        "The allocation pool {a}-{b} spans beyond the subnet cidr {}/{}.",
                        cidr.0, cidr.1
                    )));
                }
                if gw.is_some_and(|g| (u32::from(a)..=u32::from(b)).contains(&u32::from(g))) {
                    return Err(NeutronError::conflict(
                        "GatewayConflictWithAllocationPools",
                        format!(
                            "Gateway ip {} conflicts with allocation pool {a}-{b}.",
                            gw.expect("checked")
                        ),
                    ));
                }
                out.push((u32::from(a), u32::from(b)));
            }
            out
        }
        _ => default_pools(cidr, gw),
    };
    f.insert("allocation_pools".into(), pools_json(&pools));
    for (k, field) in [
        ("dns_nameservers", "dns_nameservers"),
        ("host_routes", "host_routes"),
    ] {
        match f.get(k) {
            None | Some(Value::Null) => {
                f.insert(k.into(), json!([]));
            }
            Some(Value::Array(_)) => {}
            Some(v) => return Err(bad(field, format!("'{v}' is not a list"))),
        }
    }
    for d in crate::record::field(f, "dns_nameservers")
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        ip("dns_nameservers", &d)?;
    }
    for r in crate::record::field(f, "host_routes")
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        parse_cidr(r["destination"].as_str().unwrap_or_default())?;
        ip("host_routes", &r["nexthop"])?;
    }
    let dhcp = match f.get("enable_dhcp") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => parse_bool(s)
            .ok_or_else(|| bad("enable_dhcp", format!("'{s}' is not a valid boolean value")))?,
        Some(v) => {
            return Err(bad(
                "enable_dhcp",
                format!("'{v}' is not a valid boolean value"),
            ));
        }
    };
    f.insert("enable_dhcp".into(), json!(dhcp));
    Ok(())
}

/// Whether `ip` is in the subnet.
pub fn within_subnet(r: &SubnetRecord, ip: Ipv4Addr) -> bool {
    within(ip, cidr_of(r))
}

/// The subnet's allocation pools, as address ranges.
pub fn pools_of(r: &SubnetRecord) -> Vec<(u32, u32)> {
    r.f("allocation_pools")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let a: Ipv4Addr = p["start"].as_str()?.parse().ok()?;
            let b: Ipv4Addr = p["end"].as_str()?.parse().ok()?;
            Some((u32::from(a), u32::from(b)))
        })
        .collect()
}

pub fn cidr_of(r: &SubnetRecord) -> (Ipv4Addr, u8) {
    parse_cidr(r.f("cidr").as_str().unwrap_or_default()).unwrap_or((Ipv4Addr::UNSPECIFIED, 32))
}

/// The DHCP subnet a subnet translates to, on its network's bridge. It
/// answers from the gateway's address (or the first host's without one).
fn dhcp(r: &SubnetRecord, network: Uuid) -> DhcpSubnet {
    let (net, len) = cidr_of(r);
    let gw: Option<Ipv4Addr> = r.f("gateway_ip").as_str().and_then(|s| s.parse().ok());
    let ips = |k: &str| -> Vec<Ipv4Addr> {
        r.fields[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect()
    };
    let routes = r
        .f("host_routes")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| {
            let (d, l) = parse_cidr(h["destination"].as_str()?).ok()?;
            Some(Opt121Route {
                destination_prefix: Some(d),
                destination_length: l,
                gateway_addr: h["nexthop"].as_str()?.parse().ok(),
            })
        })
        .collect();
    DhcpSubnet {
        id: r.id,
        bridge_id: network,
        subnet_prefix: Some(net),
        subnet_length: len,
        default_gateway: gw,
        server_addr: Some(gw.unwrap_or(Ipv4Addr::from(u32::from(net) + 1))),
        dns_server_addrs: Some(ips("dns_nameservers")),
        interface_mtu: MTU,
        opt121_routes: routes,
        enabled: r.f("enable_dhcp").as_bool().unwrap_or(true),
        hosts: Vec::new(),
    }
}

fn network_of(r: &SubnetRecord) -> Uuid {
    r.f("network_id")
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

fn new_record(item: &Value, headers: &HeaderMap) -> Result<SubnetRecord, NeutronError> {
    let m = body_of(item, "subnet")?;
    let allowed: Vec<&str> = WRITABLE.iter().chain(CREATE_ONLY).copied().collect();
    only(m, &allowed)?;
    let pooled = m.get("subnetpool_id").is_some_and(|v| !v.is_null());
    for req in ["network_id", "cidr"] {
        let needed = !(req == "cidr" && pooled);
        if needed && !m.contains_key(req) {
            return Err(NeutronError::bad_request(format!(
                "Failed to parse request. Required attribute '{req}' not specified"
            )));
        }
    }
    match m
        .get("ip_version")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    {
        Some(4) => {}
        Some(6) => {
            return Err(NeutronError::bad_request(
                "IPv6 subnets are not supported yet.",
            ));
        }
        _ => return Err(bad("ip_version", "must be 4")),
    }
    for k in ["ipv6_ra_mode", "ipv6_address_mode", "segment_id"] {
        if m.get(k).is_some_and(|v| !v.is_null()) {
            return Err(NeutronError::bad_request(format!(
                "{k} is not supported yet."
            )));
        }
    }
    let mut f = json!({
        "name": "", "ip_version": 4, "subnetpool_id": null, "ipv6_ra_mode": null,
        "ipv6_address_mode": null, "service_types": [], "segment_id": null,
        "dns_publish_fixed_ip": false, "shared": false,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    for (k, v) in m {
        if k != "ip_version" {
            f.insert(k.clone(), v.clone());
        }
    }
    // A pooled subnet without a CIDR gets one from its pool (`place`).
    if f.contains_key("cidr") {
        complete(&mut f, true)?;
    }
    let p = project(m, headers);
    let id = crate::record::asked_id(headers).unwrap_or_else(Uuid::new_v4);
    Ok(SubnetRecord::new(id, standard(&p, f)))
}

/// Cuts a pooled subnet's CIDR from its pool (or checks the one it asked
/// for), `made` being made in the same call.
fn place(app: &App, r: &mut SubnetRecord, made: &[SubnetRecord]) -> Result<(), NeutronError> {
    let Some(pool) = r.f("subnetpool_id").as_str().map(str::to_string) else {
        r.fields.remove("prefixlen");
        return Ok(());
    };
    let asked = r.f("cidr").as_str().map(parse_cidr).transpose()?;
    let len = match r.fields.remove("prefixlen") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .filter(|n| *n <= 32)
                .ok_or_else(|| bad("prefixlen", format!("'{v}' is not a prefix length")))?
                as u8,
        ),
    };
    let c = crate::subnetpool::place(app, &pool, asked, len, made)?;
    if asked.is_none() {
        r.fields
            .insert("cidr".into(), json!(format!("{}/{}", c.0, c.1)));
        complete(&mut r.fields, true)?;
    }
    Ok(())
}

/// Refuses a subnet overlapping another of its network.
fn check_overlap(
    app: &App,
    net: &NetworkRecord,
    r: &SubnetRecord,
    also: &[SubnetRecord],
) -> Result<(), NeutronError> {
    let (a, al) = cidr_of(r);
    let others: Vec<SubnetRecord> = crate::network::subnets_of(net)
        .into_iter()
        .filter_map(|s| app.topo.get::<SubnetRecord>(s).ok().flatten())
        .chain(also.iter().cloned())
        .collect();
    for o in others.iter().filter(|o| o.id != r.id) {
        let (b, bl) = cidr_of(o);
        let l = al.min(bl);
        if u32::from(a) & mask(l) == u32::from(b) & mask(l) {
            return Err(NeutronError::bad_request(format!(
                "Invalid input for operation: Requested subnet with cidr: {}/{al} for network: {} overlaps with another subnet.",
                a, net.id
            )));
        }
    }
    Ok(())
}

pub async fn create(state: Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let body = match record::parse(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    // Bulk, as kuryr creates them: {"subnets": [{...}]}, one transaction.
    let (bulk, items): (bool, Vec<Value>) = match body.get("subnets") {
        Some(Value::Array(a)) => (true, a.iter().map(|s| json!({"subnet": s})).collect()),
        _ => (false, vec![body]),
    };
    let mut records = Vec::new();
    for item in &items {
        match new_record(item, &headers) {
            Ok(r) => records.push(r),
            Err(e) => return e.into_response(),
        }
    }
    let done = blocking(move || {
        let mut records = records.clone();
        crate::quota::check_each::<SubnetRecord>(&app, "subnet", &records)?;
        let mut nets: Vec<NetworkRecord> = Vec::new();
        for i in 0..records.len() {
            let (made, rest) = records.split_at_mut(i);
            place(&app, &mut rest[0], made)?;
        }
        for (i, r) in records.iter().enumerate() {
            let nid = r.f("network_id").as_str().unwrap_or_default().to_string();
            let pos = match nets.iter().position(|n| n.id.to_string() == nid) {
                Some(p) => p,
                None => {
                    nets.push(find::<NetworkRecord>(&app, &nid)?);
                    nets.len() - 1
                }
            };
            check_overlap(&app, &nets[pos], r, &records[..i])?;
            let subnets = nets[pos].fields.entry("subnets").or_insert(json!([]));
            if let Value::Array(a) = subnets {
                a.push(json!(r.id.to_string()));
            }
        }
        app.topo
            .write(|w| {
                for n in &mut nets {
                    touched(n);
                    w.tx.put(n);
                }
                for r in &records {
                    let net = network_of(r);
                    if !nets
                        .iter()
                        .any(|n| n.id == net && crate::network::is_uplink(n))
                    {
                        w.tx.put(&dhcp(r, net));
                    }
                    record::put_new(w, r);
                }
                Ok(())
            })
            .map_err(NeutronError::from)?;
        Ok(records)
    })
    .await;
    record::created(bulk, done)
}

pub async fn list(state: Shared, headers: HeaderMap, raw: Raw) -> Response {
    record::list::<SubnetRecord>(&state.0, &headers, raw.0)
}

pub async fn show(state: Shared, Path(id): Path<String>) -> Response {
    record::show::<SubnetRecord>(&state.0, &id)
}

pub async fn update(state: Shared, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| {
        let m = body_of(&b, "subnet")?.clone();
        only(&m, WRITABLE)?;
        Ok(m)
    }) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let mut r = find::<SubnetRecord>(&app, &id)?;
        let pools_given = set.contains_key("allocation_pools");
        for (k, v) in set.clone() {
            r.fields.insert(k, v);
        }
        if !pools_given {
            // A new gateway keeps the pools unless they now hold it.
            r.fields.remove("allocation_pools");
        }
        complete(&mut r.fields, !pools_given)?;
        touched(&mut r);
        app.topo
            .write(|w| {
                // The ports' host entries stay; an uplink's subnet has none.
                if let Some(old) = w.tx.get::<DhcpSubnet>(r.id)? {
                    let mut d = dhcp(&r, network_of(&r));
                    d.hosts = old.hosts;
                    w.tx.put(&d);
                }
                w.tx.put(&r);
                Ok(())
            })
            .map_err(NeutronError::from)?;
        Ok(r)
    })
    .await;
    record::answer(StatusCode::OK, done)
}

pub async fn delete(state: Shared, Path(id): Path<String>) -> Response {
    let app: Arc<App> = state.0;
    let done = blocking(move || {
        let r = find::<SubnetRecord>(&app, &id)?;
        let net = find::<NetworkRecord>(&app, &network_of(&r).to_string())?;
        if crate::port::subnet_in_use(&app, &net, r.id)? {
            return Err(NeutronError::conflict(
                "SubnetInUse",
                format!(
                    "Unable to complete operation on subnet {id}: one or more ports have an IP allocation from this subnet."
                ),
            ));
        }
        let mut net = Some(net);
        app.topo
            .write(|w| {
                if let Some(n) = net.as_mut() {
                    if let Some(Value::Array(a)) = n.fields.get_mut("subnets") {
                        a.retain(|s| s.as_str() != Some(&r.id.to_string()));
                    }
                    touched(n);
                    w.tx.put(n);
                }
                w.tx.delete(Kind::DhcpSubnet, r.id)?;
                record::remove(w, Kind::NeutronSubnet, r.id);
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
    fn defaults_follow_neutron() {
        let mut f = json!({"cidr": "10.0.0.5/24"}).as_object().cloned().unwrap();
        complete(&mut f, true).unwrap();
        assert_eq!(f["cidr"], "10.0.0.0/24");
        assert_eq!(f["gateway_ip"], "10.0.0.1");
        assert_eq!(
            f["allocation_pools"],
            json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
        );
        assert_eq!(f["dns_nameservers"], json!([]));
        assert_eq!(f["enable_dhcp"], true);
        let mut g =
            json!({"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.100", "enable_dhcp": "False"})
                .as_object()
                .cloned()
                .unwrap();
        complete(&mut g, true).unwrap();
        assert_eq!(
            g["allocation_pools"],
            json!([{"start": "10.0.0.1", "end": "10.0.0.99"}, {"start": "10.0.0.101", "end": "10.0.0.254"}])
        );
        assert_eq!(g["enable_dhcp"], false);
        let mut h = json!({"cidr": "10.0.0.0/24", "gateway_ip": "10.9.0.1"})
            .as_object()
            .cloned()
            .unwrap();
        assert!(
            complete(&mut h, true).is_err(),
            "a gateway outside the subnet"
        );
        let mut p = json!({"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.1.2", "end": "10.0.1.9"}]})
            .as_object()
            .cloned()
            .unwrap();
        assert!(complete(&mut p, true).is_err(), "a pool outside the subnet");
        assert!(parse_cidr("10.0.0.0/33").is_err() && parse_cidr("nope").is_err());
    }
}
