//! The Neutron v2.0 API (`midonet server`, `:9696`), as the unmodified
//! `openstack` CLI and openstacksdk use it without Keystone
//! (`--os-auth-type none --os-endpoint http://HOST:9696`). Each call is one
//! NSDB transaction that writes the Neutron record and the MidoNet objects
//! it translates to, as networking-midonet did: a network is a bridge with
//! the same id.
//!
//! Served: version discovery, the resource and extension lists, networks
//! (`uplink` ones too), (IPv4) subnets and subnet pools, ports, routers
//! (interfaces, gateway with SNAT, extra routes), floating IPs, security
//! groups and rules, tags, quotas, sorting and pages; projects under static
//! tokens (`project.rs`).

mod error;
mod floatingip;
mod ids;
mod network;
mod plugin;
mod port;
mod project;
mod quota;
mod record;
mod router;
mod security_group;
mod subnet;
mod subnetpool;
mod tags;
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

pub use plugin::plugin_router;
pub use project::Tokens;

/// Serves the Neutron API on `addr` until `shutdown` resolves.
pub async fn serve(
    app: Arc<App>,
    addr: std::net::SocketAddr,
    tokens: Tokens,
    cfg: cluster::listen::Listener,
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
    // Only MidoNet's own endpoints (`plugin.rs`) choose ids.
    let outside = cluster::warn_if_stale(app.clone(), router(app, tokens)).layer(
        axum::middleware::map_request(|mut r: axum::extract::Request| async move {
            r.headers_mut().remove(record::ASKED_ID);
            r
        }),
    );
    if let Err(e) = cluster::listen::serve(listener, outside, cfg, shutdown).await {
        tracing::error!(error = %e, "Neutron API stopped");
    }
}

/// The API's routes over `app`, under Neutron's policy for `tokens`.
pub fn router(app: Arc<App>, tokens: Tokens) -> Router {
    let guard: project::Guard = (app.clone(), Arc::new(tokens));
    let r = Router::new()
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
        .route("/v2.0/quotas", get(quota::list))
        .route(
            "/v2.0/quotas/{project}",
            get(quota::show).put(quota::update).delete(quota::reset),
        )
        .route("/v2.0/quotas/{project}/default", get(quota::defaults))
        .route("/v2.0/quotas/{project}/details", get(quota::details))
        .route(
            "/v2.0/subnetpools",
            get(subnetpool::list).post(subnetpool::create),
        )
        .route(
            "/v2.0/subnetpools/{id}",
            get(subnetpool::show)
                .put(subnetpool::update)
                .delete(subnetpool::delete),
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
        );
    let r = tags::routes::<network::NetworkRecord>(r, "networks");
    let r = tags::routes::<subnet::SubnetRecord>(r, "subnets");
    let r = tags::routes::<port::PortRecord>(r, "ports");
    let r = tags::routes::<router::RouterRecord>(r, "routers");
    let r = tags::routes::<floatingip::FloatingIpRecord>(r, "floatingips");
    let r = tags::routes::<security_group::GroupRecord>(r, "security-groups");
    let r = tags::routes::<subnetpool::SubnetPoolRecord>(r, "subnetpools");
    r.fallback(|| async {
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
    let origin = cluster::listen::origin(&headers);
    reply(
        StatusCode::OK,
        json!({"versions": [{"id": "v2.0", "status": "CURRENT",
            "links": [{"href": format!("{origin}/v2.0/"), "rel": "self"}]}]}),
    )
}

async fn resources() -> Response {
    let r = |name: &str, coll: &str| json!({"name": name, "collection": coll, "links": []});
    reply(
        StatusCode::OK,
        json!({"resources": [r("network", "networks"), r("subnet", "subnets"), r("port", "ports"),
            r("router", "routers"), r("floatingip", "floatingips"), r("subnetpool", "subnetpools"),
            r("quota", "quotas"),
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
    ("quotas", "Quota management support"),
    ("security-group", "security-group"),
    (
        "standard-attr-tag",
        "Tag support for resources with standard attribute",
    ),
    ("subnet_allocation", "Subnet Allocation"),
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

/// A list request: the filters (each key with the values it may take, a
/// key repeated is an OR), the sort keys, and the page asked for.
pub(crate) struct Query {
    filters: Vec<(String, Vec<String>)>,
    /// (key, ascending), most significant first.
    pub sort: Vec<(String, bool)>,
    pub limit: Option<usize>,
    pub marker: Option<String>,
    pub page_reverse: bool,
    /// The query as sent, less `marker` (a next page's link adds its own).
    pub rest: Vec<(String, String)>,
}

/// Tag filters: every tag (`tags`), any (`tags-any`), and their negations.
const TAG_FILTERS: &[&str] = &["tags", "tags-any", "not-tags", "not-tags-any"];

impl Query {
    pub(crate) fn parse(raw: Option<String>) -> Query {
        let mut q = Query {
            filters: Vec::new(),
            sort: Vec::new(),
            limit: None,
            marker: None,
            page_reverse: false,
            rest: Vec::new(),
        };
        let mut keys = Vec::new();
        let mut dirs = Vec::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k), decode(v));
            if k != "marker" {
                q.rest.push((k.clone(), v.clone()));
            }
            match k.as_str() {
                "fields" => {}
                "limit" => q.limit = v.parse().ok().filter(|n| *n > 0),
                "marker" => q.marker = Some(v),
                "page_reverse" => q.page_reverse = parse_bool(&v) == Some(true),
                "sort_key" => keys.push(v),
                "sort_dir" => dirs.push(v != "desc"),
                _ => match q.filters.iter_mut().find(|(x, _)| *x == k) {
                    Some((_, vs)) => vs.push(v),
                    None => q.filters.push((k, vec![v])),
                },
            }
        }
        q.sort = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, dirs.get(i).copied().unwrap_or(true)))
            .collect();
        q
    }

    /// Whether `o` passes every filter (booleans as `True`/`true`/`1`).
    pub(crate) fn matches(&self, o: &Value) -> bool {
        self.filters.iter().all(|(k, vs)| {
            let have = o.get(k.as_str());
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
            if TAG_FILTERS.contains(&k.as_str()) {
                let tags: Vec<&str> = o
                    .get("tags")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let asked: Vec<&str> = vs.iter().flat_map(|v| v.split(',')).collect();
                let all = asked.iter().all(|t| tags.contains(t));
                let any = asked.iter().any(|t| tags.contains(t));
                return match k.as_str() {
                    "tags" => all,
                    "tags-any" => any,
                    "not-tags" => !all,
                    _ => !any,
                };
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

    /// Orders `items` by the sort keys (ties keep their order).
    pub(crate) fn sorted(&self, items: &mut [Value]) {
        for (k, asc) in self.sort.iter().rev() {
            items.sort_by(|a, b| {
                let o = compare(&a[k.as_str()], &b[k.as_str()]);
                if *asc { o } else { o.reverse() }
            });
        }
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// `s` escaped for a query string.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
        let t = json!({"tags": ["a", "b"]});
        assert!(q("tags=a,b").matches(&t) && !q("tags=a,c").matches(&t));
        assert!(q("tags-any=c,b").matches(&t) && !q("tags-any=c").matches(&t));
        assert!(q("not-tags=a,c").matches(&t) && !q("not-tags=a,b").matches(&t));
        assert!(q("not-tags-any=c").matches(&t) && !q("not-tags-any=a").matches(&t));
    }

    #[test]
    fn sorting_and_pages() {
        let q = Query::parse(Some(
            "sort_key=mtu&sort_dir=desc&sort_key=name&limit=2&marker=x&page_reverse=True".into(),
        ));
        assert_eq!(q.sort, vec![("mtu".into(), false), ("name".into(), true)]);
        assert_eq!(
            (q.limit, q.marker.as_deref(), q.page_reverse),
            (Some(2), Some("x"), true)
        );
        let mut v = vec![
            json!({"mtu": 1, "name": "b"}),
            json!({"mtu": 2, "name": "z"}),
            json!({"mtu": 1, "name": "a"}),
        ];
        q.sorted(&mut v);
        assert_eq!(v[0]["name"], "z");
        assert_eq!(v[1]["name"], "a");
        assert!(!q.rest.iter().any(|(k, _)| k == "marker"));
        assert_eq!(encode("a b:c"), "a%20b%3Ac");
    }
}
