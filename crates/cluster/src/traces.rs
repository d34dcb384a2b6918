//! Live trace requests' results (REST v5 `traces`): the agents send the walk
//! of each packet a request matched (up to its limit per host), the cluster
//! keeps them in the request's state table `traces/<id>` (persistent rows,
//! shared by every server on one NSDB, never sent to agents), at most
//! [`RESULTS_MAX`] per request, and serves them at
//! `GET /traces/{id}/results`, oldest first. They are deleted with the
//! request, however it goes (by itself, or with its device).

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use model::{Object, TraceRequest};
use serde_json::Value;
use uuid::Uuid;

/// Records kept per request; later ones are dropped (and logged once).
pub const RESULTS_MAX: usize = 1_000;
/// A record larger than this is refused (a walk is a few KB).
const RECORD_MAX_BYTES: usize = 256 << 10;

/// The state table holding request `id`'s results.
pub fn table(id: Uuid) -> String {
    format!("traces/{id}")
}

/// Why a record from an agent is not kept.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("trace request id {0:?} is not a UUID")]
    BadId(String),
    #[error("trace record for {0}: not a JSON object of at most 256 KB")]
    BadRecord(Uuid),
    #[error("trace request {0} does not exist (deleted meanwhile)")]
    NoRequest(Uuid),
    #[error("trace request {0} holds {RESULTS_MAX} results already")]
    Full(Uuid),
    #[error("trace record not stored: {0}")]
    Store(String),
}

/// Keeps one record `data` for `request`, sent by `host`'s agent.
pub fn record(app: &App, host: Uuid, request: &str, data: &[u8]) -> Result<(), Refused> {
    let id = Uuid::parse_str(request).map_err(|_| Refused::BadId(request.into()))?;
    let v: Value = (data.len() <= RECORD_MAX_BYTES)
        .then(|| serde_json::from_slice(data).ok())
        .flatten()
        .filter(Value::is_object)
        .ok_or(Refused::BadRecord(id))?;
    let store = &app.topo.store;
    match store.get(TraceRequest::KIND.name(), &id.to_string()) {
        Ok(Some(_)) => {}
        Ok(None) => return Err(Refused::NoRequest(id)),
        Err(e) => return Err(Refused::Store(e.to_string())),
    }
    let t = table(id);
    let n = store.persistent_entries(&t).len();
    if n >= RESULTS_MAX {
        return Err(Refused::Full(id));
    }
    // Ordered by time, then host; the count keeps one host's keys apart.
    let time = v.get("timeMs").and_then(Value::as_u64).unwrap_or(0);
    let key = format!("{time:013}-{host}-{n:04}");
    store
        .table_put(&t, &key, &v.to_string(), None)
        .map(|_| ())
        .map_err(|e| Refused::Store(e.to_string()))
}

fn request_of(app: &App, req: &Req) -> Result<Uuid, ApiError> {
    let id = req.id("id")?;
    match app
        .topo
        .store
        .get(TraceRequest::KIND.name(), &id.to_string())
    {
        Ok(Some(_)) => Ok(id),
        Ok(None) => Err(ApiError::not_found(format!("TraceRequest {id} not found"))),
        Err(e) => Err(e.into()),
    }
}

/// `GET /traces/{id}/results`: every kept record, oldest first.
pub fn results(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = request_of(app, req)?;
    let mut rows = app.topo.store.persistent_entries(&table(id));
    rows.sort();
    let out: Vec<Value> = rows
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_str(&v).ok())
        .collect();
    Ok(Resp::json(Value::Array(out)))
}

/// The removal of each deleted trace request's results, for the commit
/// that deletes it (by itself, or with its device).
pub fn results_of_deleted(store: &dyn nsdb::Store, ops: &[nsdb::Op]) -> Vec<nsdb::Op> {
    ops.iter()
        .filter_map(|o| match o {
            nsdb::Op::Delete { kind, id, .. } if kind == TraceRequest::KIND.name() => {
                Uuid::parse_str(id).ok()
            }
            _ => None,
        })
        .flat_map(|id| {
            let t = table(id);
            store
                .persistent_entries(&t)
                .into_iter()
                .map(move |(key, _)| nsdb::Op::Table {
                    table: t.clone(),
                    key,
                    value: None,
                })
        })
        .collect()
}
