//! Networks: a Neutron network is a MidoNet bridge with the same id; the
//! Neutron record keeps what only Neutron shows (`shared`, `mtu`,
//! `router:external`, timestamps, revision, its subnets).

use crate::error::NeutronError;
use crate::record::{self, Record, blocking, body_of, find, standard, touched};
use crate::{Raw, Shared};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cluster::App;
use model::{Bridge, Kind};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use uuid::Uuid;

crate::record::record!(
    NetworkRecord,
    NeutronNetwork,
    "network",
    "networks",
    "NetworkNotFound"
);

/// VXLAN's overhead off a 1500-byte underlay, as MidoNet's overlays use.
pub const MTU: u32 = 1450;

/// What a create or an update may set.
pub(crate) const WRITABLE: &[&str] = &[
    "name",
    "admin_state_up",
    "shared",
    "router:external",
    "description",
    "port_security_enabled",
];
/// Accepted on create only.
const CREATE_ONLY: &[&str] = &[
    "tenant_id",
    "project_id",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "availability_zone_hints",
    "mtu",
];
const BOOLEANS: &[&str] = &[
    "admin_state_up",
    "shared",
    "router:external",
    "port_security_enabled",
];

/// The body's `network` object, each field checked.
fn fields(body: &Value, creating: bool) -> Result<Map<String, Value>, NeutronError> {
    let m = body_of(body, "network")?;
    record::only_for(m, WRITABLE, CREATE_ONLY, creating)?;
    let mut out = Map::new();
    for (k, v) in m {
        let v = if BOOLEANS.contains(&k.as_str()) {
            Value::Bool(record::boolean(k, v)?)
        } else {
            v.clone()
        };
        match (k.as_str(), &v) {
            ("name" | "description", Value::String(s)) if s.len() > 255 => {
                return Err(NeutronError::bad_request(format!(
                    "Invalid input for {k}. Reason: '{s}' exceeds maximum length of 255."
                )));
            }
            ("name" | "description" | "tenant_id" | "project_id", v) if !v.is_string() => {
                return Err(NeutronError::bad_request(format!(
                    "Invalid input for {k}. Reason: '{v}' is not a valid string."
                )));
            }
            ("provider:network_type", v) if !matches!(v.as_str(), Some("midonet" | "uplink")) => {
                return Err(NeutronError::bad_request(format!(
                    "Invalid input for operation: network type {v} is not supported (midonet, uplink)."
                )));
            }
            _ => {}
        }
        out.insert(k.clone(), v);
    }
    Ok(out)
}

/// The caller's project: the body's, else `X-Project-Id`, else `admin`
/// (without Keystone every caller is the admin).
pub fn project(set: &Map<String, Value>, headers: &HeaderMap) -> String {
    set.get("project_id")
        .or_else(|| set.get("tenant_id"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            headers
                .get("x-project-id")
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "admin".into())
}

/// A new network's record with Neutron's defaults under what was set.
fn new_record(set: Map<String, Value>, project: String) -> NetworkRecord {
    let mut f = json!({
        "name": "", "admin_state_up": true, "status": "ACTIVE", "subnets": [],
        "shared": false, "router:external": false, "mtu": MTU, "port_security_enabled": true,
        "provider:network_type": "midonet", "provider:physical_network": null,
        "provider:segmentation_id": null, "availability_zone_hints": [], "availability_zones": [],
        "ipv4_address_scope": null, "ipv6_address_scope": null, "qos_policy_id": null,
        "is_default": false, "l2_adjacency": true, "dns_domain": "",
    });
    let m = f.as_object_mut().expect("an object");
    for (k, v) in set {
        if k != "mtu" {
            m.insert(k, v);
        }
    }
    NetworkRecord::new(Uuid::new_v4(), standard(&project, std::mem::take(m)))
}

/// An uplink network (`provider:network_type` `uplink`): a physical
/// uplink, no bridge; its ports become an edge router's bound ports.
pub fn is_uplink(r: &NetworkRecord) -> bool {
    r.f("provider:network_type").as_str() == Some("uplink")
}

/// The ids in a network's `subnets`.
pub fn subnets_of(r: &NetworkRecord) -> Vec<Uuid> {
    r.fields
        .get("subnets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.parse().ok())
        .collect()
}

/// The bridge a network translates to.
fn bridge(r: &NetworkRecord) -> Bridge {
    Bridge {
        id: r.id,
        tenant_id: r
            .fields
            .get("project_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        name: r
            .fields
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string),
        admin_state_up: r
            .fields
            .get("admin_state_up")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        ..Default::default()
    }
}

pub async fn create(state: Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let body = match record::parse(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    // Bulk: {"networks": [{...}, ...]}, all in one transaction.
    let (bulk, items): (bool, Vec<Value>) = match body.get("networks") {
        Some(Value::Array(a)) => (true, a.iter().map(|n| json!({"network": n})).collect()),
        _ => (false, vec![body]),
    };
    let mut records = Vec::new();
    for item in &items {
        match fields(item, true) {
            Ok(set) => {
                let p = project(&set, &headers);
                let mut r = new_record(set, p);
                if let Some(id) = record::asked_id(&headers) {
                    r.id = id;
                }
                records.push(r);
            }
            Err(e) => return e.into_response(),
        }
    }
    let done = blocking(move || {
        crate::quota::check_each::<NetworkRecord>(&app, "network", &records)?;
        app.topo
            .write(|w| {
                for r in &records {
                    if !is_uplink(r) {
                        w.tx.put(&bridge(r));
                    }
                    record::put_new(w, r);
                }
                Ok(())
            })
            .map_err(NeutronError::from)?;
        Ok(records.clone())
    })
    .await;
    record::created(bulk, done)
}

pub async fn list(state: Shared, headers: HeaderMap, raw: Raw) -> Response {
    record::list::<NetworkRecord>(&state.0, &headers, raw.0)
}

pub async fn show(state: Shared, Path(id): Path<String>) -> Response {
    record::show::<NetworkRecord>(&state.0, &id)
}

pub async fn update(state: Shared, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| fields(&b, false)) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let mut r = find::<NetworkRecord>(&app, &id)?;
        for (k, v) in set.clone() {
            r.fields.insert(k, v);
        }
        touched(&mut r);
        app.topo
            .write(|w| {
                if let Some(mut b) = w.tx.get::<Bridge>(r.id)? {
                    let t = bridge(&r);
                    b.name = t.name;
                    b.admin_state_up = t.admin_state_up;
                    w.tx.put(&b);
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

/// Deleting a network deletes its subnets and its bridge (with the bridge
/// its DHCP subnets); a port still on it refuses (409 `NetworkInUse`).
pub async fn delete(state: Shared, Path(id): Path<String>) -> Response {
    let app: Arc<App> = state.0;
    let done = blocking(move || {
        let r = find::<NetworkRecord>(&app, &id)?;
        // Any port keeps it: a bridge port made through the MidoNet API too.
        let busy = if is_uplink(&r) {
            !crate::port::ports_of(&app, &r)?.is_empty()
        } else {
            !app.topo.naming::<model::Port>("deviceId", Kind::Bridge, r.id)?.is_empty()
        };
        if busy {
            return Err(NeutronError::conflict(
                "NetworkInUse",
                format!(
                    "Unable to complete operation on network {id}. There are one or more ports still in use on the network."
                ),
            ));
        }
        app.topo
            .write(|w| {
                for s in subnets_of(&r) {
                    record::remove(w, Kind::NeutronSubnet, s);
                }
                w.tx.delete(Kind::Bridge, r.id)?;
                record::remove(w, Kind::NeutronNetwork, r.id);
                Ok(())
            })
            .map_err(NeutronError::from)
    })
    .await;
    record::deleted(done)
}
