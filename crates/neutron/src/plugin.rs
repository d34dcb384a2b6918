//! MidoNet's own Neutron endpoints, `/midonet-api/neutron/...` on the
//! MidoNet API's port: what the networking-midonet plugin posts after
//! Neutron's database has the object. Bodies come without the
//! `{"network": ...}` envelope and carry everything Neutron computed (ids,
//! MACs, addresses); the same translation as `:9696` serves them, with the
//! plugin's ids. Deletes are idempotent (the plugin repeats what Neutron
//! already took away with a router interface or gateway).

use crate::error::NeutronError;
use crate::record::ASKED_ID;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use cluster::App;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tower::ServiceExt;

/// The plugin's collection names, with the v2.0 path and the body key.
const COLLECTIONS: &[(&str, &str, &str)] = &[
    ("networks", "networks", "network"),
    ("subnets", "subnets", "subnet"),
    ("ports", "ports", "port"),
    ("routers", "routers", "router"),
    ("floating_ips", "floatingips", "floatingip"),
    ("security_groups", "security-groups", "security_group"),
    (
        "security_group_rules",
        "security-group-rules",
        "security_group_rule",
    ),
    ("subnetpools", "subnetpools", "subnetpool"),
];

/// What Neutron computes and a create or update here does not take.
const COMPUTED: &[&str] = &[
    "id",
    "status",
    "created_at",
    "updated_at",
    "revision_number",
    "tags",
    "subnets",
    "standard_attr_id",
    "availability_zones",
    "ipv4_address_scope",
    "ipv6_address_scope",
    "l2_adjacency",
    "is_default",
    "binding:vif_type",
    "binding:vif_details",
    "dns_assignment",
    "ip_allocation",
    "data_plane_status",
    "resource_request",
    "port_details",
    "router_id",
    "security_group_rules",
    "belongs_to_default_sg",
    "normalized_cidr",
    "gw_port_id",
    "floating_port_id",
    "qos_network_policy_id",
    "dns_publish_fixed_ip",
    "tenant_id",
];

/// What an update may carry, per body key: the v2.0 update's own list.
fn updatable(key: &str) -> &'static [&'static str] {
    match key {
        "network" => crate::network::WRITABLE,
        "subnet" => crate::subnet::WRITABLE,
        "port" => crate::port::WRITABLE,
        "router" => crate::router::WRITABLE,
        "floatingip" => crate::floatingip::UPDATE,
        "security_group" => crate::security_group::GROUP_FIELDS,
        "subnetpool" => crate::subnetpool::WRITABLE,
        _ => &[],
    }
}

type PluginState = (Arc<App>, Router);

/// The plugin's routes, for the MidoNet API's listener.
pub fn plugin_router(app: Arc<App>) -> Router {
    let inner = crate::router(app.clone(), crate::Tokens::default());
    Router::new()
        .route("/midonet-api/neutron", get(index))
        .route("/midonet-api/neutron/", get(index))
        .route("/midonet-api/neutron/{*rest}", any(forward))
        .with_state((app, inner))
}

/// The index document: each collection's URL and item template.
async fn index(State((app, _)): State<PluginState>, headers: HeaderMap) -> Response {
    if let Err(e) = admitted(&app, &headers) {
        return e.into_response();
    }
    let base = format!("{}/midonet-api/neutron", cluster::listen::origin(&headers));
    let mut m = Map::new();
    m.insert("uri".into(), json!(base));
    for (coll, _, key) in COLLECTIONS {
        m.insert((*coll).into(), json!(format!("{base}/{coll}")));
        m.insert(
            format!("{key}_template"),
            json!(format!("{base}/{coll}/{{id}}")),
        );
    }
    for op in ["add_router_interface", "remove_router_interface"] {
        m.insert(
            format!("{op}_template"),
            json!(format!("{base}/routers/{{id}}/{op}")),
        );
    }
    let mut r = crate::reply(StatusCode::OK, Value::Object(m));
    if let Ok(v) = HeaderValue::from_str("application/vnd.org.midonet.neutron.Neutron-v3+json") {
        r.headers_mut().insert(axum::http::header::CONTENT_TYPE, v);
    }
    r
}

/// The MidoNet API's authentication: the plugin logs in as an operator.
fn admitted(app: &App, headers: &HeaderMap) -> Result<(), NeutronError> {
    match cluster::auth::token_caller(app, headers) {
        Ok(None) => Ok(()),
        Ok(Some(c)) if c.role == cluster::auth::Role::Admin => Ok(()),
        Ok(Some(_)) => Err(NeutronError::new(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            "the Neutron endpoints are for the plugin: log in as an operator",
        )),
        Err(e) => Err(NeutronError::new(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNAUTHORIZED),
            "HTTPUnauthorized",
            e.message,
        )),
    }
}

/// A plugin body, cleaned for a v2.0 create or update of `key`.
fn cleaned(body: &Value, key: &str, update: bool) -> Map<String, Value> {
    let mut m = body.as_object().cloned().unwrap_or_default();
    if update {
        let keep = updatable(key);
        m.retain(|k, _| keep.contains(&k.as_str()));
    } else {
        // Nulls are Neutron's unset (but a null gateway means none).
        m.retain(|k, v| !(COMPUTED.contains(&k.as_str()) || v.is_null() && k != "gateway_ip"));
    }
    m
}

/// One call to the v2.0 API in this process.
async fn call(
    inner: &Router,
    method: Method,
    path: String,
    id: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(id) = id {
        req = req.header(ASKED_ID, id);
    }
    let Ok(req) = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))) else {
        return (StatusCode::BAD_REQUEST, json!({}));
    };
    let Ok(resp) = inner.clone().oneshot(req).await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The v2.0 answer, without its envelope (errors as they are).
fn unwrapped(status: StatusCode, v: Value, key: &str) -> Response {
    let body = if status.is_success() {
        v.get(key).cloned().unwrap_or(v)
    } else {
        v
    };
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    crate::reply(status, body)
}

async fn forward(
    State((app, inner)): State<PluginState>,
    method: Method,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = admitted(&app, &headers) {
        return e.into_response();
    }
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let Some(&(_, v2, key)) = parts
        .first()
        .and_then(|c| COLLECTIONS.iter().find(|(p, _, _)| p == c))
    else {
        return NeutronError::not_found(
            "HTTPNotFound",
            format!("/midonet-api/neutron/{rest} is not served"),
        )
        .into_response();
    };
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return NeutronError::bad_request(format!("Malformed request body: {e}"))
                    .into_response();
            }
        }
    };
    match (method.clone(), parts.as_slice()) {
        (Method::GET, [_]) => {
            let (s, v) = call(&inner, Method::GET, format!("/v2.0/{v2}"), None, None).await;
            let plural = v2.replace('-', "_");
            unwrapped(s, v, &plural)
        }
        (Method::POST, [_]) => {
            // A list is a bulk create: one call each, in order.
            let items: Vec<Value> = match &parsed {
                Value::Array(a) => a.clone(),
                v => vec![v.clone()],
            };
            let mut made = Vec::new();
            for item in &items {
                let id = item.get("id").and_then(Value::as_str);
                let (s, v) = call(
                    &inner,
                    Method::POST,
                    format!("/v2.0/{v2}"),
                    id,
                    Some(json!({ key: cleaned(item, key, false) })),
                )
                .await;
                if !s.is_success() {
                    return unwrapped(s, v, key);
                }
                made.push(v.get(key).cloned().unwrap_or(Value::Null));
            }
            if parsed.is_array() {
                crate::reply(StatusCode::CREATED, Value::Array(made))
            } else {
                crate::reply(StatusCode::CREATED, made.pop().unwrap_or(Value::Null))
            }
        }
        (Method::GET, [_, id]) => {
            let (s, v) = call(&inner, Method::GET, format!("/v2.0/{v2}/{id}"), None, None).await;
            unwrapped(s, v, key)
        }
        (Method::PUT, [_, id]) => {
            let (s, v) = call(
                &inner,
                Method::PUT,
                format!("/v2.0/{v2}/{id}"),
                None,
                Some(json!({ key: cleaned(&parsed, key, true) })),
            )
            .await;
            unwrapped(s, v, key)
        }
        (Method::DELETE, [_, id]) => {
            let (s, v) = call(
                &inner,
                Method::DELETE,
                format!("/v2.0/{v2}/{id}"),
                None,
                None,
            )
            .await;
            // Already gone (with its router interface or gateway): done.
            if s == StatusCode::NOT_FOUND {
                return StatusCode::NO_CONTENT.into_response();
            }
            unwrapped(s, v, key)
        }
        (
            Method::PUT,
            [
                "routers",
                id,
                op @ ("add_router_interface" | "remove_router_interface"),
            ],
        ) => {
            // A RouterInterface: Neutron made the interface port already.
            let m = parsed.as_object().cloned().unwrap_or_default();
            let b = match (m.get("port_id"), m.get("subnet_id")) {
                (Some(p), _) if !p.is_null() => json!({ "port_id": p }),
                (_, Some(s)) => json!({ "subnet_id": s }),
                _ => json!({}),
            };
            let (s, v) = call(
                &inner,
                Method::PUT,
                format!("/v2.0/routers/{id}/{op}"),
                None,
                Some(b),
            )
            .await;
            unwrapped(s, v, "")
        }
        _ => NeutronError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "HTTPMethodNotAllowed",
            format!("{method} /midonet-api/neutron/{rest}"),
        )
        .into_response(),
    }
}
