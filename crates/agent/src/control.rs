//! The agent's local control socket (`<state-dir>/agent.sock`), HTTP over a
//! unix socket as MidoNet's midolman.sock: a hypervisor binds a VM's
//! interface to a port here (`mm-ctl --bind-port`, `midonet bind`), and the
//! agent asks the cluster to bind it to this host.
//!
//!   PUT    /binding/<portId>  {"interfaceName": "tap0"}  -> 200
//!   DELETE /binding/<portId>                            -> 204
//!   GET    /flows[?port=<portId>]                       -> 200, the installed flows
//!   POST   /trace  {"inPort", "ipSrc", "ipDst", ...}    -> 200, a what-if trace
//! Errors: 400, 404, 409 (the cluster's verdict) or 503 (no cluster), with
//! `{"message": ...}`.

use crate::servers::Servers;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

struct Ctl {
    servers: Servers,
    /// One channel per server, for every request: a bind does not wait for
    /// a new connection's handshake (each reconnects by itself).
    clients: Vec<Option<crate::channel::Client>>,
    me: Uuid,
    flows: FlowDumper,
    tracer: Tracer,
}

/// Runs a what-if trace on a packet worker (blocking; None: no answer).
pub type Tracer = Arc<dyn Fn(Uuid, sim::probe::Probe) -> Option<crate::trace::Reply> + Send + Sync>;

/// Asks every packet worker for its flows (blocking; at most a few seconds).
pub type FlowDumper = Arc<dyn Fn() -> Vec<crate::metrics::FlowDump> + Send + Sync>;

/// Serves the control socket at `path` (a stale socket file is replaced).
pub async fn serve(
    path: std::path::PathBuf,
    servers: Servers,
    me: Uuid,
    flows: FlowDumper,
    tracer: Tracer,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    let clients = servers
        .urls()
        .iter()
        .map(|u| crate::channel::lazy(u, &servers.tls).ok())
        .collect();
    let app = Router::new()
        .route("/binding/{port}", put(bind).delete(unbind))
        .route("/flows", axum::routing::get(list_flows))
        .route("/trace", axum::routing::post(trace))
        .with_state(Arc::new(Ctl {
            servers,
            clients,
            me,
            flows,
            tracer,
        }));
    axum::serve(listener, app).await
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    reply(status, json!({"message": message.into()}))
}

async fn bind(
    State(c): State<Arc<Ctl>>,
    Path(port): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let iface = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => match v.get("interfaceName").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => return error(StatusCode::BAD_REQUEST, "interfaceName: required"),
        },
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    match ask(&c, &port, &iface).await {
        Ok(()) => reply(
            StatusCode::OK,
            json!({"portId": port, "interfaceName": iface, "hostId": c.me}),
        ),
        Err(r) => r,
    }
}

async fn list_flows(
    State(c): State<Arc<Ctl>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let port = match q.get("port").map(|p| Uuid::parse_str(p)) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "port: not a UUID"),
    };
    let dump = c.flows.clone();
    let Ok(mut all) = tokio::task::spawn_blocking(move || dump()).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the flow dump failed");
    };
    if let Some(p) = port {
        all.retain(|f| f.in_port == Some(p));
    }
    // Busiest first, as an operator reads them.
    all.sort_by_key(|f| std::cmp::Reverse(f.packets));
    reply(
        StatusCode::OK,
        serde_json::to_value(all).unwrap_or_default(),
    )
}

async fn trace(State(c): State<Arc<Ctl>>, body: axum::body::Bytes) -> Response {
    let req: crate::trace::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("trace request: {e}")),
    };
    let probe = match req.probe() {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let t = c.tracer.clone();
    let port = req.in_port;
    match tokio::task::spawn_blocking(move || t(port, probe)).await {
        Ok(Some(r)) => reply(StatusCode::OK, serde_json::to_value(r).unwrap_or_default()),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the packet workers did not answer",
        ),
    }
}

async fn unbind(State(c): State<Arc<Ctl>>, Path(port): Path<String>) -> Response {
    match ask(&c, &port, "").await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

/// The cluster's Bind call for this host (`iface` empty: unbind).
async fn ask(c: &Ctl, port: &str, iface: &str) -> Result<(), Response> {
    if Uuid::parse_str(port).is_err() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("port: not a UUID: {port:?}"),
        ));
    }
    let unreachable = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the cluster at {} is not reachable", c.servers),
        )
    };
    let req = topology_proto::v1::BindRequest {
        host_id: c.me.to_string(),
        port_id: port.to_string(),
        interface_name: iface.to_string(),
    };
    // The server in use first, then each other one once.
    let mut answer = None;
    for _ in 0..c.servers.len() {
        let (at, _) = c.servers.current();
        let Some(mut client) = c.clients.get(at).cloned().flatten() else {
            c.servers.failed(at);
            continue;
        };
        match client.bind(req.clone()).await {
            Err(s) if s.code() == tonic::Code::Unavailable => c.servers.failed(at),
            r => {
                answer = Some(r);
                break;
            }
        }
    }
    let Some(answer) = answer else {
        return Err(unreachable());
    };
    match answer {
        Ok(_) => Ok(()),
        Err(s) => {
            let status = match s.code() {
                tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                tonic::Code::NotFound => StatusCode::NOT_FOUND,
                tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
                _ => StatusCode::BAD_GATEWAY,
            };
            Err(error(status, s.message()))
        }
    }
}
