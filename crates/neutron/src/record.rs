//! Neutron records: what the Neutron API shows of each resource, stored in
//! the NSDB beside the MidoNet objects it translates to (same id).

use crate::error::NeutronError;
use axum::http::{HeaderMap, StatusCode};
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

/// The header by which MidoNet's own Neutron endpoints (`plugin.rs`) pass
/// the id the plugin chose; stripped from what `:9696` receives.
pub const ASKED_ID: &str = "x-midonet-object-id";

/// The id a create was asked to use, if any.
pub fn asked_id(headers: &HeaderMap) -> Option<Uuid> {
    headers.get(ASKED_ID)?.to_str().ok()?.parse().ok()
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

fn forget_noted() {
    crate::port::forget_held();
    forget_owned();
}

thread_local! {
    /// Whether this thread is doing a write again that lost a race.
    static REDOING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the write in progress is being done again after it lost a race
/// with another server (IPAM then spreads its choice).
pub fn redoing() -> bool {
    REDOING.get()
}

/// Times a Neutron write is done again after it lost a race with another
/// server sharing the store.
const REDOS: u32 = 12;

/// Runs a Neutron write off the async runtime (each commit is fsynced),
/// one at a time. A write whose commit lost to another server's (both
/// moved a network's address sequence) is done again on what the store
/// now holds, as the topology layer does for a write of its own.
pub async fn blocking<T: Send + 'static>(
    mut f: impl FnMut() -> Result<T, NeutronError> + Send + 'static,
) -> Result<T, NeutronError> {
    let serialized = move || {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The commit is waited for outside the one-at-a-time lock: the
            // next call translates while this one's is on its way.
            REDOING.set(attempt > 1);
            let (done, synced) = cluster::topo::durably(|| {
                let _one = WRITES.lock().unwrap_or_else(|p| p.into_inner());
                let done = f();
                if done.is_err() {
                    // What a failed write noted as held or counted may not be.
                    forget_noted();
                }
                done
            });
            REDOING.set(false);
            match synced {
                Ok(()) => return done,
                Err(u) => {
                    forget_noted();
                    tracing::debug!(attempt, redo = u.redo, error = %u.error, "Neutron write refused");
                    if !(u.redo && attempt < REDOS) {
                        return Err(cluster::error::ApiError::from(u.error).into());
                    }
                    let pause = rand::random_range(0..=attempt * 1000);
                    std::thread::sleep(std::time::Duration::from_micros(pause.into()));
                }
            }
        }
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

/// Refuses attributes outside `writable`, and outside `create_only` too
/// when `creating`.
pub fn only_for(
    m: &Map<String, Value>,
    writable: &[&str],
    create_only: &[&str],
    creating: bool,
) -> Result<(), NeutronError> {
    let allowed: Vec<&str> = writable
        .iter()
        .chain(if creating { create_only } else { &[] })
        .copied()
        .collect();
    only(m, &allowed)
}

/// Field `k` as Neutron's boolean: JSON, or `True`/`false`/`1` as kuryr
/// sends them.
pub fn boolean(k: &str, v: &Value) -> Result<bool, NeutronError> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => crate::parse_bool(s),
        _ => None,
    }
    .ok_or_else(|| {
        NeutronError::bad_request(format!(
            "Invalid input for {k}. Reason: '{v}' is not a valid boolean value."
        ))
    })
}

/// A request body as JSON (400 when it is not).
pub fn parse(body: &[u8]) -> Result<Value, NeutronError> {
    serde_json::from_slice(body)
        .map_err(|e| NeutronError::bad_request(format!("Malformed request body: {e}")))
}

/// `GET /v2.0/<plural>`: every record passing the query's filters, oldest
/// first or as sorted, one page of them when a `limit` is asked (with the
/// next page's link, which the SDK follows).
pub fn list<R: Record>(app: &App, headers: &HeaderMap, raw: Option<String>) -> Response {
    let q = crate::Query::parse(raw);
    let all = match app.topo.all::<R>() {
        Ok(all) => all,
        Err(e) => return NeutronError::from(e).into_response(),
    };
    let mut v: Vec<Value> = all.iter().map(shown).filter(|o| q.matches(o)).collect();
    v.sort_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
    q.sorted(&mut v);
    if q.page_reverse {
        v.reverse();
    }
    if let Some(m) = &q.marker
        && let Some(i) = v.iter().position(|o| o["id"].as_str() == Some(m.as_str()))
    {
        v.drain(..=i);
    }
    let mut body = Map::new();
    if let Some(limit) = q.limit
        && v.len() > limit
    {
        v.truncate(limit);
        let origin = cluster::listen::origin(headers);
        let mut query: Vec<String> = q
            .rest
            .iter()
            .map(|(k, x)| format!("{}={}", crate::encode(k), crate::encode(x)))
            .collect();
        if let Some(last) = v.last().and_then(|o| o["id"].as_str()) {
            query.push(format!("marker={last}"));
        }
        let path = R::PLURAL.replace('_', "-");
        body.insert(
            format!("{}_links", R::PLURAL),
            json!([{"rel": "next", "href": format!("{origin}/v2.0/{path}?{}", query.join("&"))}]),
        );
    }
    if q.page_reverse {
        v.reverse();
    }
    body.insert(R::PLURAL.into(), Value::Array(v));
    crate::reply(StatusCode::OK, Value::Object(body))
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

/// The ids of each kind's records per project, for quotas: read once per
/// kind, then kept current from a store watch of that kind (every server's
/// writes, so quotas count what other servers on one ZooKeeper ensemble
/// made) and by this server's own writes at once (idempotent, so a retried
/// transaction or the watch's copy counts once). Dropped whole when a
/// write fails.
struct Counted {
    per: std::collections::HashMap<String, std::collections::HashSet<Uuid>>,
    watch: nsdb::Watch,
}

type Owned = std::collections::HashMap<model::Kind, Counted>;
static OWNED: std::sync::Mutex<Option<Owned>> = std::sync::Mutex::new(None);

fn owned() -> std::sync::MutexGuard<'static, Option<Owned>> {
    OWNED.lock().unwrap_or_else(|p| p.into_inner())
}

fn project_of<R: Record>(r: &R) -> String {
    field(r.fields(), "project_id")
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Forgets every count (after a failed write).
pub fn forget_owned() {
    *owned() = None;
}

/// Applies what the watch saw since the last count.
fn follow<R: Record>(c: &mut Counted) {
    while let Some(ev) = c.watch.try_next() {
        let Ok(id) = ev.id.parse::<Uuid>() else {
            continue;
        };
        for s in c.per.values_mut() {
            s.remove(&id);
        }
        if let nsdb::Change::Put(e) = &ev.change
            && let Ok(r) = serde_json::from_slice::<R>(&e.data)
        {
            c.per.entry(project_of(&r)).or_default().insert(id);
        }
    }
}

/// How many `R`s project `p` has.
pub fn used<R: Record>(app: &App, p: &str) -> Result<usize, NeutronError> {
    if let Some(c) = owned().as_mut().and_then(|o| o.get_mut(&R::KIND)) {
        follow::<R>(c);
        return Ok(c.per.get(p).map_or(0, |s| s.len()));
    }
    // Watched from before the listing: what changes in between is applied
    // again, in order, at the next count.
    let store = &app.topo.store;
    let watch = store
        .watch(Some(R::KIND.name()), store.revision())
        .map_err(|e| NeutronError::from(cluster::error::ApiError::from(e)))?;
    let mut per: std::collections::HashMap<String, std::collections::HashSet<Uuid>> =
        Default::default();
    for r in app.topo.all::<R>()? {
        per.entry(project_of(&r)).or_default().insert(r.id());
    }
    let n = per.get(p).map_or(0, |s| s.len());
    owned()
        .get_or_insert_default()
        .insert(R::KIND, Counted { per, watch });
    Ok(n)
}

/// Writes a new record (and counts it).
pub fn put_new<R: Record>(w: &mut cluster::topo::Writer<'_>, r: &R) {
    w.tx.put(r);
    if let Some(c) = owned().as_mut().and_then(|o| o.get_mut(&R::KIND)) {
        c.per.entry(project_of(r)).or_default().insert(r.id());
    }
}

/// Removes a record (and its count).
pub fn remove(w: &mut cluster::topo::Writer<'_>, kind: model::Kind, id: Uuid) {
    w.tx.remove(kind, id);
    if let Some(c) = owned().as_mut().and_then(|o| o.get_mut(&kind)) {
        for s in c.per.values_mut() {
            s.remove(&id);
        }
    }
}
