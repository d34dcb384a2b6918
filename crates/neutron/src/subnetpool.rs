//! Subnet pools (extension `subnet_allocation`, which kuryr needs): address
//! prefixes that subnets are cut from. A subnet naming a pool either names
//! its CIDR (inside one of the pool's prefixes, as kuryr does) or gets the
//! first free block of `prefixlen` (else the pool's default).

use crate::error::NeutronError;
use crate::network::project;
use crate::record::{self, Record, blocking, body_of, find, standard, touched};
use crate::subnet::{SubnetRecord, cidr_of, parse_cidr};
use crate::{Raw, Shared};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cluster::App;
use model::Kind;
use serde_json::{Map, Value, json};
use std::net::Ipv4Addr;
use std::sync::Arc;
use uuid::Uuid;

crate::record::record!(
    SubnetPoolRecord,
    NeutronSubnetPool,
    "subnetpool",
    "subnetpools",
    "SubnetPoolNotFound"
);

pub(crate) const WRITABLE: &[&str] = &[
    "name",
    "description",
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "default_quota",
    "is_default",
];
const CREATE_ONLY: &[&str] = &[
    "tenant_id",
    "project_id",
    "shared",
    "address_scope_id",
    "ip_version",
];

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

/// The pool's prefixes.
fn prefixes(p: &SubnetPoolRecord) -> Vec<(Ipv4Addr, u8)> {
    p.f("prefixes")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| parse_cidr(v.as_str()?).ok())
        .collect()
}

fn len_of(p: &SubnetPoolRecord, k: &str, default: u8) -> u8 {
    p.f(k).as_u64().map_or(default, |v| v.min(32) as u8)
}

/// Checks and completes a pool's fields (prefixes canonical, the prefix
/// lengths in order).
fn complete(f: &mut Map<String, Value>) -> Result<(), NeutronError> {
    let list = record::field(f, "prefixes")
        .as_array()
        .cloned()
        .ok_or_else(|| {
            NeutronError::bad_request("Invalid input for prefixes: a list of CIDRs is required.")
        })?;
    if list.is_empty() {
        return Err(NeutronError::bad_request(
            "Invalid input for prefixes: at least one prefix is required.",
        ));
    }
    let mut canon = Vec::new();
    let mut shortest = 32;
    for v in &list {
        let (a, l) = parse_cidr(v.as_str().unwrap_or(""))?;
        shortest = shortest.min(l);
        canon.push(json!(format!("{a}/{l}")));
    }
    f.insert("prefixes".into(), Value::Array(canon));
    let num = |f: &Map<String, Value>, k: &str| -> Result<Option<u8>, NeutronError> {
        match f.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .filter(|n| *n <= 32)
                .map(|n| Some(n as u8))
                .ok_or_else(|| {
                    NeutronError::bad_request(format!(
                        "Invalid input for {k}. Reason: '{v}' is not a prefix length."
                    ))
                }),
        }
    };
    let min = num(f, "min_prefixlen")?.unwrap_or(shortest.max(8));
    let max = num(f, "max_prefixlen")?.unwrap_or(32);
    let def = num(f, "default_prefixlen")?.unwrap_or(min);
    if !(min <= def && def <= max) {
        return Err(NeutronError::bad_request(format!(
            "Illegal prefix bounds: min_prefixlen={min}, default_prefixlen={def}, max_prefixlen={max}."
        )));
    }
    for (k, v) in [
        ("min_prefixlen", min),
        ("max_prefixlen", max),
        ("default_prefixlen", def),
    ] {
        f.insert(k.into(), json!(v));
    }
    Ok(())
}

/// The subnets cut from pool `id` (and `also`, being made with them).
fn subnets_of(
    app: &App,
    id: Uuid,
    also: &[SubnetRecord],
) -> Result<Vec<(Ipv4Addr, u8)>, NeutronError> {
    let sid = id.to_string();
    let mut v: Vec<(Ipv4Addr, u8)> = app
        .topo
        .all::<SubnetRecord>()?
        .iter()
        .chain(also)
        .filter(|s| s.f("subnetpool_id").as_str() == Some(sid.as_str()) && s.f("cidr").is_string())
        .map(cidr_of)
        .collect();
    v.sort();
    Ok(v)
}

fn overlaps((a, al): (Ipv4Addr, u8), (b, bl): (Ipv4Addr, u8)) -> bool {
    let l = al.min(bl);
    u32::from(a) & mask(l) == u32::from(b) & mask(l)
}

/// The CIDR of a subnet made from pool `pool`: `asked` (checked to be in a
/// prefix and free), else the first free block of `prefixlen`.
pub fn place(
    app: &App,
    pool: &str,
    asked: Option<(Ipv4Addr, u8)>,
    prefixlen: Option<u8>,
    also: &[SubnetRecord],
) -> Result<(Ipv4Addr, u8), NeutronError> {
    let p = find::<SubnetPoolRecord>(app, pool)?;
    let taken = subnets_of(app, p.id, also)?;
    let (min, max) = (
        len_of(&p, "min_prefixlen", 8),
        len_of(&p, "max_prefixlen", 32),
    );
    let fail = |why: String| {
        NeutronError::bad_request_kind(
            "SubnetAllocationError",
            format!("Failed to allocate subnet: {why}."),
        )
    };
    if let Some(c) = asked {
        if !prefixes(&p)
            .iter()
            .any(|pre| pre.1 <= c.1 && overlaps(*pre, c))
        {
            return Err(fail(format!(
                "Cidr {}/{} is not within the pool's prefixes",
                c.0, c.1
            )));
        }
        if c.1 < min || c.1 > max {
            return Err(fail(format!(
                "prefix length {} is outside {min}..{max}",
                c.1
            )));
        }
        if taken.iter().any(|t| overlaps(*t, c)) {
            return Err(fail(format!(
                "Cidr {}/{} overlaps a subnet of the pool",
                c.0, c.1
            )));
        }
        return Ok(c);
    }
    let len = prefixlen.unwrap_or(len_of(&p, "default_prefixlen", min));
    if len < min || len > max {
        return Err(fail(format!("prefix length {len} is outside {min}..{max}")));
    }
    for (net, plen) in prefixes(&p) {
        if plen > len {
            continue;
        }
        let step = 1u64 << (32 - len);
        let start = u64::from(u32::from(net) & mask(plen));
        let end = start + (1u64 << (32 - plen));
        let mut at = start;
        while at < end {
            let c = (Ipv4Addr::from(at as u32), len);
            match taken.iter().find(|t| overlaps(**t, c)) {
                // Skip past the block in the way.
                Some(t) => {
                    let tend = u64::from(u32::from(t.0) & mask(t.1)) + (1u64 << (32 - t.1));
                    at = (tend.max(at + step)).div_ceil(step) * step;
                }
                None => return Ok(c),
            }
        }
    }
    Err(fail(format!("no free /{len} left in the pool")))
}

fn checked(body: &Value, creating: bool) -> Result<Map<String, Value>, NeutronError> {
    let m = body_of(body, "subnetpool")?;
    record::only_for(m, WRITABLE, CREATE_ONLY, creating)?;
    if creating
        && m.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(NeutronError::bad_request(
            "Failed to parse request. Required attribute 'name' not specified",
        ));
    }
    if m.get("ip_version").is_some_and(|v| v.as_u64() != Some(4)) {
        return Err(NeutronError::bad_request(
            "IPv6 subnet pools are not supported yet.",
        ));
    }
    Ok(m.clone())
}

pub async fn create(state: Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| checked(&b, true)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let mut f =
            json!({"default_quota": null, "ip_version": 4, "shared": false, "is_default": false,
            "address_scope_id": null})
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in &set {
            f.insert(k.clone(), v.clone());
        }
        complete(&mut f)?;
        let p = project(&set, &headers);
        crate::quota::check::<SubnetPoolRecord>(&app, &p, "subnetpool", 1)?;
        let r = SubnetPoolRecord::new(Uuid::new_v4(), standard(&p, f));
        record::write(&app, |w| {
            record::put_new(w, &r);
            Ok(())
        })?;
        Ok(r)
    })
    .await;
    record::answer(StatusCode::CREATED, done)
}

pub async fn list(state: Shared, headers: HeaderMap, raw: Raw) -> Response {
    record::list::<SubnetPoolRecord>(&state.0, &headers, raw.0)
}

pub async fn show(state: Shared, Path(id): Path<String>) -> Response {
    record::show::<SubnetPoolRecord>(&state.0, &id)
}

pub async fn update(state: Shared, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| checked(&b, false)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let mut r = find::<SubnetPoolRecord>(&app, &id)?;
        let before = prefixes(&r);
        for (k, v) in set.clone() {
            r.fields.insert(k, v);
        }
        complete(&mut r.fields)?;
        // Prefixes may grow, never shrink under a subnet.
        let after = prefixes(&r);
        if before
            .iter()
            .any(|b| !after.iter().any(|a| a.1 <= b.1 && overlaps(*a, *b)))
        {
            return Err(NeutronError::bad_request(
                "Invalid input for prefixes: a pool's prefixes can only be extended.",
            ));
        }
        touched(&mut r);
        record::write(&app, |w| {
            w.tx.put(&r);
            Ok(())
        })?;
        Ok(r)
    })
    .await;
    record::answer(StatusCode::OK, done)
}

/// A pool with subnets refuses to go (409 `SubnetPoolInUse`).
pub async fn delete(state: Shared, Path(id): Path<String>) -> Response {
    let app: Arc<App> = state.0;
    let done = blocking(move || {
        let r = find::<SubnetPoolRecord>(&app, &id)?;
        if !subnets_of(&app, r.id, &[])?.is_empty() {
            return Err(NeutronError::conflict(
                "SubnetPoolInUse",
                format!("Unable to complete operation on subnetpool {id}. Subnets are still allocated from it."),
            ));
        }
        record::write(&app, |w| {
            record::remove(w, Kind::NeutronSubnetPool, r.id);
            Ok(())
        })
    })
    .await;
    record::deleted(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_overlap_by_the_shorter_prefix() {
        let c = |s: &str| parse_cidr(s).expect("cidr");
        assert!(overlaps(c("10.0.0.0/16"), c("10.0.5.0/24")));
        assert!(!overlaps(c("10.1.0.0/16"), c("10.0.5.0/24")));
    }

    #[test]
    fn pools_complete_their_bounds() {
        let mut f = json!({"prefixes": ["10.10.0.5/16"]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        complete(&mut f).expect("valid");
        assert_eq!(f["prefixes"], json!(["10.10.0.0/16"]));
        assert_eq!(
            (f["min_prefixlen"].clone(), f["default_prefixlen"].clone()),
            (json!(16), json!(16))
        );
        let mut bad =
            json!({"prefixes": ["10.0.0.0/8"], "min_prefixlen": 24, "default_prefixlen": 16})
                .as_object()
                .cloned()
                .unwrap_or_default();
        assert!(complete(&mut bad).is_err());
    }
}
