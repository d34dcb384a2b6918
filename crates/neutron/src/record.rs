//! Neutron records: what the Neutron API shows of each resource, stored in
//! the NSDB beside the MidoNet objects it translates to (same id).

use crate::error::NeutronError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cluster::App;
use model::Object;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// A record type: the Neutron resource's fields under its id.
pub trait Record: Object {
    /// Singular name in bodies and errors (`network`).
    const NAME: &'static str;
    /// Plural name in lists (`networks`).
    const PLURAL: &'static str;
    /// Neutron's not-found class (`NetworkNotFound`).
    const NOT_FOUND: &'static str;
    fn fields(&self) -> &Map<String, Value>;
    fn fields_mut(&mut self) -> &mut Map<String, Value>;
    fn new(id: Uuid, fields: Map<String, Value>) -> Self;
}

/// Declares a record type stored as storage kind `$kind`.
macro_rules! record {
    ($t:ident, $kind:ident, $name:literal, $plural:literal, $nf:literal) => {
        #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
        pub struct $t {
            pub id: uuid::Uuid,
            #[serde(flatten)]
            pub fields: serde_json::Map<String, serde_json::Value>,
        }
        impl model::Object for $t {
            const KIND: model::Kind = model::Kind::$kind;
            fn id(&self) -> uuid::Uuid {
                self.id
            }
            fn set_id(&mut self, id: uuid::Uuid) {
                self.id = id;
            }
        }
        impl $t {
            /// Field `k`, null when absent (a record's map has no
            /// forgiving index).
            #[allow(dead_code)]
            pub fn f(&self, k: &str) -> &serde_json::Value {
                $crate::record::field(&self.fields, k)
            }
        }
        impl $crate::record::Record for $t {
            const NAME: &'static str = $name;
            const PLURAL: &'static str = $plural;
            const NOT_FOUND: &'static str = $nf;
            fn fields(&self) -> &serde_json::Map<String, serde_json::Value> {
                &self.fields
            }
            fn fields_mut(&mut self) -> &mut serde_json::Map<String, serde_json::Value> {
                &mut self.fields
            }
            fn new(id: uuid::Uuid, fields: serde_json::Map<String, serde_json::Value>) -> Self {
                $t { id, fields }
            }
        }
    };
}
pub(crate) use record;

static NULL: Value = Value::Null;

/// Field `k` of `m`, null when absent.
pub fn field<'a>(m: &'a Map<String, Value>, k: &str) -> &'a Value {
    m.get(k).unwrap_or(&NULL)
}

/// The record as the API returns it.
pub fn shown<R: Record>(r: &R) -> Value {
    let mut m = r.fields().clone();
    m.insert("id".into(), Value::String(r.id().to_string()));
    Value::Object(m)
}

pub fn not_found<R: Record>(id: &str) -> NeutronError {
    let name = R::NAME
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ");
    NeutronError::not_found(R::NOT_FOUND, format!("{name} {id} could not be found."))
}

pub fn find<R: Record>(app: &App, id: &str) -> Result<R, NeutronError> {
    let uid = Uuid::parse_str(id).map_err(|_| not_found::<R>(id))?;
    app.topo
        .get::<R>(uid)
        .map_err(NeutronError::from)?
        .ok_or_else(|| not_found::<R>(id))
}

/// Neutron's standard attributes of a new resource, under `fields`.
pub fn standard(project: &str, mut fields: Map<String, Value>) -> Map<String, Value> {
    let now = crate::time::now();
    for (k, v) in [
        ("description", json!("")),
        ("created_at", json!(now)),
        ("updated_at", json!(now)),
        ("revision_number", json!(1)),
        ("tags", json!([])),
    ] {
        fields.entry(k).or_insert(v);
    }
    fields.insert("tenant_id".into(), json!(project));
    fields.insert("project_id".into(), json!(project));
    fields
}

/// An update's bookkeeping: the revision and `updated_at`.
pub fn touched<R: Record>(r: &mut R) {
    let rev = r
        .fields()
        .get("revision_number")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    r.fields_mut()
        .insert("revision_number".into(), json!(rev + 1));
    r.fields_mut()
        .insert("updated_at".into(), json!(crate::time::now()));
}

/// Neutron's writes read what they change (a network's free addresses, its
/// subnet list) before the transaction that changes it: one at a time in
/// this server, so two port creates never take the same address. (Several
/// servers on one ZooKeeper ensemble need the reads inside the CAS'd
/// transaction; not yet.)
static WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a Neutron write off the async runtime (each commit is fsynced),
/// one at a time.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NeutronError> + Send + 'static,
) -> Result<T, NeutronError> {
    let serialized = move || {
        let _one = WRITES.lock().unwrap_or_else(|p| p.into_inner());
        let done = f();
        if done.is_err() {
            // What a failed write noted as held may not be.
            crate::port::forget_held();
        }
        done
    };
    tokio::task::spawn_blocking(serialized).await.map_err(|e| {
        NeutronError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "HTTPInternalServerError",
            e.to_string(),
        )
    })?
}

/// The body's `<name>` object.
pub fn body_of<'a>(body: &'a Value, name: &str) -> Result<&'a Map<String, Value>, NeutronError> {
    match body.get(name) {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(NeutronError::bad_request(format!(
            "Resource body required: {{\"{name}\": {{...}}}}"
        ))),
    }
}

/// Refuses attributes outside `allowed` (Neutron's "Unrecognized attribute").
pub fn only(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), NeutronError> {
    let mut unknown: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(NeutronError::bad_request(format!(
        "Unrecognized attribute(s) '{}'",
        unknown.join(", ")
    )))
}

/// A request body as JSON (400 when it is not).
pub fn parse(body: &[u8]) -> Result<Value, NeutronError> {
    serde_json::from_slice(body)
        .map_err(|e| NeutronError::bad_request(format!("Malformed request body: {e}")))
}

/// `GET /v2.0/<plural>`: every record passing the query's filters, oldest
/// first.
pub fn list<R: Record>(app: &App, raw: Option<String>) -> Response {
    let q = crate::Query::parse(raw);
    match app.topo.all::<R>() {
        Ok(all) => {
            let mut v: Vec<Value> = all.iter().map(shown).filter(|o| q.matches(o)).collect();
            v.sort_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
            crate::reply(StatusCode::OK, json!({ R::PLURAL: v }))
        }
        Err(e) => NeutronError::from(e).into_response(),
    }
}

/// `GET /v2.0/<plural>/<id>`.
pub fn show<R: Record>(app: &App, id: &str) -> Response {
    answer(StatusCode::OK, find::<R>(app, id))
}

/// One record (`{"<name>": ...}`) with `status`, or the error.
pub fn answer<R: Record>(status: StatusCode, done: Result<R, NeutronError>) -> Response {
    match done {
        Ok(r) => crate::reply(status, json!({ R::NAME: shown(&r) })),
        Err(e) => e.into_response(),
    }
}

/// A create's answer: one record, or a bulk create's list.
pub fn created<R: Record>(bulk: bool, done: Result<Vec<R>, NeutronError>) -> Response {
    match done {
        Ok(rs) if bulk => crate::reply(
            StatusCode::CREATED,
            json!({ R::PLURAL: rs.iter().map(shown).collect::<Vec<_>>() }),
        ),
        Ok(mut rs) if !rs.is_empty() => answer(StatusCode::CREATED, Ok(rs.swap_remove(0))),
        Ok(_) => NeutronError::bad_request("nothing to create").into_response(),
        Err(e) => e.into_response(),
    }
}

/// A delete's answer: 204, or the error.
pub fn deleted(done: Result<(), NeutronError>) -> Response {
    match done {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// One NSDB transaction of a Neutron call (the errors Neutron's).
pub fn write<R>(
    app: &App,
    f: impl FnMut(&mut cluster::topo::Writer<'_>) -> Result<R, NeutronError>,
) -> Result<R, NeutronError> {
    app.topo.write_as(f)
}
