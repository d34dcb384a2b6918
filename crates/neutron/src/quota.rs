//! Quotas: each project's limit per resource (Neutron's defaults until an
//! admin sets others; -1 is unlimited), checked when a project creates.

use crate::Shared;
use crate::error::NeutronError;
use crate::record::{self, Record, blocking, used};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cluster::App;
use model::Kind;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use uuid::Uuid;

crate::record::record!(
    QuotaRecord,
    NeutronQuota,
    "quota",
    "quotas",
    "QuotaNotFound"
);

/// Neutron's default limits.
pub const DEFAULTS: &[(&str, i64)] = &[
    ("network", 100),
    ("subnet", 100),
    ("subnetpool", -1),
    ("port", 500),
    ("router", 10),
    ("floatingip", 50),
    ("security_group", 10),
    ("security_group_rule", 100),
];

/// The id a project's quota record is stored under.
fn id_of(project: &str) -> Uuid {
    crate::ids::named(project, crate::ids::Derived::Quota)
}

/// Project `p`'s limits.
pub fn limits(app: &App, p: &str) -> Result<Map<String, Value>, NeutronError> {
    let set = app.topo.get::<QuotaRecord>(id_of(p))?;
    Ok(DEFAULTS
        .iter()
        .map(|(k, d)| {
            let v = set
                .as_ref()
                .and_then(|q| q.fields.get(*k))
                .and_then(Value::as_i64)
                .unwrap_or(*d);
            (k.to_string(), json!(v))
        })
        .collect())
}

/// Refuses (409 `OverQuota`) when project `p` adding `n` more `R`s would
/// pass its limit for `resource`.
pub fn check<R: Record>(app: &App, p: &str, resource: &str, n: usize) -> Result<(), NeutronError> {
    let limit = limits(app, p)?
        .get(resource)
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    if limit < 0 {
        return Ok(());
    }
    if (used::<R>(app, p)? + n) as i64 > limit {
        return Err(NeutronError::conflict(
            "OverQuota",
            format!("Quota exceeded for resources: ['{resource}']."),
        ));
    }
    Ok(())
}

/// [`check`] for a bulk create, per project.
pub fn check_each<R: Record>(app: &App, resource: &str, new: &[R]) -> Result<(), NeutronError> {
    let mut per: std::collections::HashMap<&str, usize> = Default::default();
    for r in new {
        *per.entry(
            record::field(r.fields(), "project_id")
                .as_str()
                .unwrap_or(""),
        )
        .or_default() += 1;
    }
    for (p, n) in per {
        check::<R>(app, p, resource, n)?;
    }
    Ok(())
}

/// What each resource's use is counted over.
fn usage(app: &App, p: &str, resource: &str) -> Result<usize, NeutronError> {
    use crate::{floatingip, network, port, router, security_group, subnet, subnetpool};
    match resource {
        "network" => used::<network::NetworkRecord>(app, p),
        "subnet" => used::<subnet::SubnetRecord>(app, p),
        "subnetpool" => used::<subnetpool::SubnetPoolRecord>(app, p),
        "port" => used::<port::PortRecord>(app, p),
        "router" => used::<router::RouterRecord>(app, p),
        "floatingip" => used::<floatingip::FloatingIpRecord>(app, p),
        "security_group" => used::<security_group::GroupRecord>(app, p),
        "security_group_rule" => used::<security_group::RuleRecord>(app, p),
        _ => Ok(0),
    }
}

fn shown(p: &str, mut m: Map<String, Value>) -> Value {
    m.insert("project_id".into(), json!(p));
    m.insert("tenant_id".into(), json!(p));
    Value::Object(m)
}

/// `GET /v2.0/quotas`: the projects with limits of their own.
pub async fn list(state: Shared) -> Response {
    let app = state.0;
    let done = (|| -> Result<Value, NeutronError> {
        let mut v = Vec::new();
        for q in app.topo.all::<QuotaRecord>()? {
            let p = q.f("project_id").as_str().unwrap_or("").to_string();
            v.push(shown(&p, limits(&app, &p)?));
        }
        Ok(json!({ "quotas": v }))
    })();
    match done {
        Ok(v) => crate::reply(StatusCode::OK, v),
        Err(e) => e.into_response(),
    }
}

pub async fn show(state: Shared, Path(p): Path<String>) -> Response {
    match limits(&state.0, &p) {
        Ok(m) => crate::reply(StatusCode::OK, json!({ "quota": m })),
        Err(e) => e.into_response(),
    }
}

pub async fn defaults(Path(_p): Path<String>) -> Response {
    let m: Map<String, Value> = DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    crate::reply(StatusCode::OK, json!({ "quota": m }))
}

/// `GET /v2.0/quotas/P/details`: limit, use and reservations per resource.
pub async fn details(state: Shared, Path(p): Path<String>) -> Response {
    let app = state.0;
    let done = (|| -> Result<Value, NeutronError> {
        let mut out = Map::new();
        for (k, limit) in limits(&app, &p)? {
            out.insert(
                k.clone(),
                json!({"limit": limit, "used": usage(&app, &p, &k)?, "reserved": 0}),
            );
        }
        Ok(json!({ "quota": out }))
    })();
    match done {
        Ok(v) => crate::reply(StatusCode::OK, v),
        Err(e) => e.into_response(),
    }
}

pub async fn update(state: Shared, Path(p): Path<String>, body: axum::body::Bytes) -> Response {
    let app: Arc<App> = state.0;
    let set = match record::parse(&body).and_then(|b| {
        let m = record::body_of(&b, "quota")?.clone();
        for (k, v) in &m {
            if !DEFAULTS.iter().any(|(d, _)| d == k) {
                return Err(NeutronError::bad_request(format!(
                    "Unrecognized attribute(s) '{k}'"
                )));
            }
            if v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .is_none_or(|n| n < -1)
            {
                return Err(NeutronError::bad_request(format!(
                    "Invalid input for {k}. Reason: '{v}' is not an integer of -1 or more."
                )));
            }
        }
        Ok(m)
    }) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let done = blocking(move || {
        let id = id_of(&p);
        let mut q = app.topo.get::<QuotaRecord>(id)?.unwrap_or_else(|| {
            QuotaRecord::new(id, Map::from_iter([("project_id".to_string(), json!(p))]))
        });
        for (k, v) in set.clone() {
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(-1);
            q.fields.insert(k, json!(n));
        }
        record::write(&app, |w| {
            w.tx.put(&q);
            Ok(())
        })?;
        limits(&app, &p)
    })
    .await;
    match done {
        Ok(m) => crate::reply(StatusCode::OK, json!({ "quota": m })),
        Err(e) => e.into_response(),
    }
}

/// Back to the defaults.
pub async fn reset(state: Shared, Path(p): Path<String>) -> Response {
    let app: Arc<App> = state.0;
    let done = blocking(move || {
        record::write(&app, |w| {
            w.tx.remove(Kind::NeutronQuota, id_of(&p));
            Ok(())
        })
    })
    .await;
    record::deleted(done)
}
