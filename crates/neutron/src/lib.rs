//! The Neutron v2.0 API (`midonet server`, `:9696`), as the unmodified
//! `openstack` CLI and openstacksdk use it without Keystone
//! (`--os-auth-type none --os-endpoint http://HOST:9696`). Each call is one
//! NSDB transaction that writes the Neutron record and the MidoNet objects
//! it translates to, as networking-midonet did: a network is a bridge with
//! the same id.
//!
//! So far: version discovery, the resource and extension lists, networks
//! (`uplink` ones too), (IPv4) subnets, ports, routers (interfaces, gateway
//! with SNAT, extra routes), floating IPs, security groups and rules.

mod error;
mod floatingip;
mod ids;
mod network;
mod port;
mod project;
mod record;
mod router;
mod security_group;
mod subnet;
mod time;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cluster::App;
use error::NeutronError;
use serde_json::{Value, json};
use std::sync::Arc;

pub use project::Tokens;

/// Serves the Neutron API on `addr` until `shutdown` resolves.
pub async fn serve(
    app: Arc<App>,
    addr: std::net::SocketAddr,
    tokens: Tokens,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "Neutron API cannot listen");
            return;
        }
    };
    tracing::info!(%addr, "Neutron API listening");
    if let Err(e) = axum::serve(listener, router(app, tokens))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "Neutron API stopped");
    }
}

/// The API's routes over `app`, under Neutron's policy for `tokens`.
pub fn router(app: Arc<App>, tokens: Tokens) -> Router {
    let guard: project::Guard = (app.clone(), Arc::new(tokens));
    Router::new()
        .route("/", get(versions))
        .route("/v2.0", get(resources))
        .route("/v2.0/", get(resources))
        .route("/v2.0/extensions", get(extensions))
        .route("/v2.0/extensions/{alias}", get(extension))
        .route("/v2.0/ports", get(port::list).post(port::create))
        .route(
            "/v2.0/ports/{id}",
            get(port::show).put(port::update).delete(port::delete),
        )
        .route(
            "/v2.0/security-groups",
            get(security_group::list_groups).post(security_group::create_group),
        )
        .route(
            "/v2.0/security-groups/{id}",
            get(security_group::show_group)
                .put(security_group::update_group)
                .delete(security_group::delete_group),
        )
        .route(
            "/v2.0/security-group-rules",
            get(security_group::list_rules).post(security_group::create_rule),
        )
        .route(
            "/v2.0/security-group-rules/{id}",
            get(security_group::show_rule).delete(security_group::delete_rule),
        )
        .route("/v2.0/routers", get(router::list).post(router::create))
        .route(
            "/v2.0/routers/{id}",
            get(router::show).put(router::update).delete(router::delete),
        )
        .route(
            "/v2.0/routers/{id}/add_router_interface",
            axum::routing::put(router::add_interface),
        )
        .route(
            "/v2.0/routers/{id}/remove_router_interface",
            axum::routing::put(router::remove_interface),
        )
        .route(
            "/v2.0/floatingips",
            get(floatingip::list).post(floatingip::create),
        )
        .route(
            "/v2.0/floatingips/{id}",
            get(floatingip::show)
                .put(floatingip::update)
                .delete(floatingip::delete),
        )
        .route("/v2.0/subnets", get(subnet::list).post(subnet::create))
        .route(
            "/v2.0/subnets/{id}",
            get(subnet::show).put(subnet::update).delete(subnet::delete),
        )
        .route("/v2.0/networks", get(network::list).post(network::create))
        .route(
            "/v2.0/networks/{id}",
            get(network::show)
                .put(network::update)
                .delete(network::delete),
        )
        .fallback(|| async {
            NeutronError::not_found("HTTPNotFound", "The resource could not be found.")
        })
        .layer(axum::middleware::from_fn_with_state(guard, project::guard))
        .with_state(app)
}

pub(crate) type Shared = State<Arc<App>>;

pub(crate) fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The version document the SDK reads first: its `self` link's path is
/// where every later call goes.
async fn versions(headers: HeaderMap) -> Response {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:9696");
    reply(
        StatusCode::OK,
        json!({"versions": [{"id": "v2.0", "status": "CURRENT",
            "links": [{"href": format!("http://{host}/v2.0/"), "rel": "self"}]}]}),
    )
}

async fn resources() -> Response {
    let r = |name: &str, coll: &str| json!({"name": name, "collection": coll, "links": []});
    reply(
        StatusCode::OK,
        json!({"resources": [r("network", "networks"), r("subnet", "subnets"), r("port", "ports"),
            r("router", "routers"), r("floatingip", "floatingips"),
            r("security_group", "security-groups"), r("security_group_rule", "security-group-rules")]}),
    )
}

/// The extensions whose behaviour is implemented (the CLI changes its
/// requests by what is advertised).
const EXTENSIONS: &[(&str, &str)] = &[
    ("allowed-address-pairs", "Allowed Address Pairs"),
    ("binding", "Port Binding"),
    ("external-net", "Neutron external network"),
    (
        "ext-gw-mode",
        "Neutron L3 Configurable external gateway mode",
    ),
    ("extraroute", "Neutron Extra Route"),
    ("port-security", "Port Security"),
    ("provider", "Provider Network"),
    ("router", "Neutron L3 Router"),
    ("security-group", "security-group"),
    ("net-mtu", "Network MTU"),
    ("project-id", "project_id field enabled"),
    ("standard-attr-description", "standard-attr-description"),
    ("standard-attr-timestamp", "Resource timestamps"),
    ("standard-attr-revisions", "Resource revision numbers"),
];

fn extension_json(alias: &str, name: &str) -> Value {
    json!({"alias": alias, "name": name, "description": name,
        "updated": "2024-01-01T00:00:00Z", "links": []})
}

async fn extensions() -> Response {
    let all: Vec<Value> = EXTENSIONS
        .iter()
        .map(|(a, n)| extension_json(a, n))
        .collect();
    reply(StatusCode::OK, json!({"extensions": all}))
}

async fn extension(Path(alias): Path<String>) -> Response {
    match EXTENSIONS.iter().find(|(a, _)| *a == alias) {
        Some((a, n)) => reply(StatusCode::OK, json!({"extension": extension_json(a, n)})),
        None => NeutronError::not_found(
            "ExtensionNotFound",
            format!("Extension with alias {alias} does not exist"),
        )
        .into_response(),
    }
}

/// A list request's filters: each key with the values it may take (a key
/// repeated is an OR), `fields` set aside.
pub(crate) struct Query {
    filters: Vec<(String, Vec<String>)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<String>) -> Query {
        let mut filters: Vec<(String, Vec<String>)> = Vec::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k), decode(v));
            if matches!(
                k.as_str(),
                "fields" | "limit" | "marker" | "page_reverse" | "sort_key" | "sort_dir"
            ) {
                continue;
            }
            match filters.iter_mut().find(|(x, _)| *x == k) {
                Some((_, vs)) => vs.push(v),
                None => filters.push((k, vec![v])),
            }
        }
        Query { filters }
    }

    /// Whether `o` passes every filter (booleans as `True`/`true`/`1`).
    pub(crate) fn matches(&self, o: &Value) -> bool {
        self.filters.iter().all(|(k, vs)| {
            let have = o.get(k);
            // `fixed_ips=ip_address=10.0.0.5`: one entry must match.
            if k == "fixed_ips" {
                return vs.iter().any(|v| {
                    let (fk, fv) = v.split_once('=').unwrap_or((v, ""));
                    have.and_then(Value::as_array).is_some_and(|a| {
                        a.iter()
                            .any(|e| e.get(fk).and_then(Value::as_str) == Some(fv))
                    })
                });
            }
            vs.iter().any(|v| match have {
                Some(Value::Bool(b)) => parse_bool(v) == Some(*b),
                Some(Value::String(s)) => s == v,
                Some(Value::Number(n)) => n.to_string() == *v,
                Some(Value::Null) | None => v.is_empty(),
                Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(v)),
                Some(Value::Object(_)) => false,
            })
        })
    }
}

pub(crate) type Raw = RawQuery;

/// Neutron's boolean forms (neutron-lib `convert_to_boolean`).
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "True" | "true" | "1" => Some(true),
        "False" | "false" | "0" => Some(false),
        _ => None,
    }
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_the_sdk_sends_them() {
        let n = json!({"name": "a b", "router:external": true, "shared": false, "mtu": 1450});
        let q = |s: &str| Query::parse(Some(s.to_string()));
        assert!(q("router%3Aexternal=True").matches(&n));
        assert!(!q("router%3Aexternal=False").matches(&n));
        assert!(
            q("name=a+b&fields=id&fields=name").matches(&n),
            "fields is not a filter"
        );
        assert!(
            q("name=x&name=a%20b").matches(&n),
            "a repeated key is an OR"
        );
        assert!(!q("name=x").matches(&n));
        assert!(q("mtu=1450&shared=false").matches(&n));
        assert!(
            !q("status=ACTIVE").matches(&n),
            "a missing field matches only empty"
        );
        assert_eq!(decode("%zz%4"), "%zz%4", "bad escapes stay as they are");
    }
}
