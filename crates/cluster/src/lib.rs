//! `midonet server`: the MidoNet REST API v5 over the NSDB, wire-compatible
//! with the unmodified `midonetclient` 5.2.0 and its `midonet-cli`.

pub mod auth;
pub mod batch;
pub mod error;
pub mod health;
pub mod host_view;
pub mod http;
pub mod listen;
pub mod media;
pub mod metrics;
pub mod nat_leases;
pub mod openapi;
pub mod ops;
pub mod resources;
pub mod rest;
pub mod routes;
pub mod tenancy;
pub mod topo;
pub mod topology_service;
pub mod traces;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::AuthMode;
pub use topo::Topology;

/// Everything a request handler can reach.
pub struct App {
    pub topo: Topology,
    pub auth: auth::Auth,
    /// The API root path, `/midonet-api`.
    pub root: String,
    /// Per-host topology views whose agents disconnected, to resume.
    pub parked: Arc<host_view::Parked>,
}

impl App {
    pub fn new(store: Arc<dyn nsdb::Store>, auth: AuthMode) -> Self {
        App {
            topo: Topology::new(store),
            auth: auth::Auth::new(auth),
            root: "/midonet-api".into(),
            parked: Arc::default(),
        }
    }
}

/// The root collections and templates: (collection key, template key, path).
const ROOT: &[(Option<&str>, Option<&str>, &str)] = &[
    (Some("routers"), Some("routerTemplate"), "routers"),
    (Some("bridges"), Some("bridgeTemplate"), "bridges"),
    (Some("ports"), Some("portTemplate"), "ports"),
    (None, Some("routeTemplate"), "routes"),
    (Some("chains"), Some("chainTemplate"), "chains"),
    (None, Some("ruleTemplate"), "rules"),
    (Some("portGroups"), Some("portGroupTemplate"), "port_groups"),
    (
        Some("ipAddrGroups"),
        Some("ipAddrGroupTemplate"),
        "ip_addr_groups",
    ),
    (
        Some("tunnelZones"),
        Some("tunnelZoneTemplate"),
        "tunnel_zones",
    ),
    (Some("hosts"), Some("hostTemplate"), "hosts"),
    (
        Some("loadBalancers"),
        Some("loadBalancerTemplate"),
        "load_balancers",
    ),
    (Some("pools"), Some("poolTemplate"), "pools"),
    (
        Some("poolMembers"),
        Some("poolMemberTemplate"),
        "pool_members",
    ),
    (Some("vips"), Some("vipTemplate"), "vips"),
    (
        Some("healthMonitors"),
        Some("healthMonitorTemplate"),
        "health_monitors",
    ),
    (None, Some("bgpNetworkTemplate"), "bgp_networks"),
    (None, Some("bgpPeerTemplate"), "bgp_peers"),
    (Some("tenants"), Some("tenantTemplate"), "tenants"),
    (Some("systemState"), None, "system_state"),
    (Some("mirrors"), Some("mirrorTemplate"), "mirrors"),
    (
        Some("l2insertions"),
        Some("l2InsertionTemplate"),
        "l2insertions",
    ),
    (
        Some("serviceContainers"),
        Some("serviceContainerTemplate"),
        "service_containers",
    ),
    (
        Some("serviceContainerGroups"),
        Some("serviceContainerGroupTemplate"),
        "service_container_groups",
    ),
    (
        Some("traceRequests"),
        Some("traceRequestTemplate"),
        "traces",
    ),
    (Some("vteps"), Some("vtepTemplate"), "vteps"),
];

pub fn root_document(_app: &App, req: &http::Req) -> Result<http::Resp, error::ApiError> {
    let base = &req.base;
    let mut m = Map::new();
    m.insert("uri".into(), Value::String(format!("{base}/")));
    m.insert("version".into(), Value::String("v5.0".into()));
    for (coll, tmpl, path) in ROOT {
        if let Some(c) = coll {
            m.insert((*c).into(), Value::String(format!("{base}/{path}")));
        }
        if let Some(t) = tmpl {
            m.insert((*t).into(), Value::String(format!("{base}/{path}/{{id}}")));
        }
    }
    Ok(http::Resp::json(Value::Object(m)))
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let t0 = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let resp = http::serve(
        &app,
        parts.method,
        &path,
        parts.uri.query(),
        parts.headers,
        body,
    )
    .await;
    metrics::observe(
        method.as_str(),
        resp.extensions()
            .get::<http::RoutePattern>()
            .map_or("unmatched", |r| if r.0.is_empty() { "/" } else { r.0 }),
        resp.status().as_u16(),
        t0.elapsed().as_secs_f64(),
    );
    resp
}

/// `GET /metrics`: Prometheus scrapes it without credentials, as it does
/// every exporter; it says nothing about tenants' objects.
async fn prometheus(State(app): State<Arc<App>>) -> Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(app.topo.store.revision()),
    )
        .into_response()
}

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(prometheus))
        .fallback(handle)
        .with_state(app)
}

/// Serves the API on `addr` until `shutdown` resolves, with `extra`'s
/// routes beside it (the Neutron plugin's `/midonet-api/neutron`).
pub async fn serve(
    app: Arc<App>,
    addr: SocketAddr,
    extra: axum::Router,
    cfg: listen::Listener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "MidoNet REST API v5 listening at {scheme}://{addr}/midonet-api");
    listen::serve(
        listener,
        warn_if_stale(app.clone(), extra.merge(router(app))),
        cfg,
        shutdown,
    )
    .await
}

/// Marks every answer with `Warning: 110` (RFC 7234's "response is stale")
/// while the NSDB says its reads may be stale (ZooKeeper not answering).
pub fn warn_if_stale(app: Arc<App>, r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::map_response_with_state(
        app,
        |axum::extract::State(app): axum::extract::State<Arc<App>>,
         mut resp: axum::response::Response| async move {
            if let Some(why) = app.topo.store.stale()
                && let Ok(v) = axum::http::HeaderValue::from_str(&format!("110 - \"{why}\""))
            {
                resp.headers_mut().insert(axum::http::header::WARNING, v);
            }
            resp
        },
    ))
}
