//! Who calls, and what they may see: Neutron's policy in its simplest
//! form. Without tokens (`--os-auth-type none`) every caller is the admin,
//! working in the project its body or `X-Project-Id` names. With static
//! tokens (`--neutron-tokens TOKEN:PROJECT:ROLE,...`, what `--os-auth-type
//! admin_token --os-token TOKEN` sends) a token is a project and a role; an
//! admin sees and changes everything, any other role only its project's
//! resources (and reads shared and external networks). Someone else's
//! resource is not found, as Neutron answers.

use crate::error::NeutronError;
use crate::record::{Record, field};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cluster::App;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// A static token's project and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub project: String,
    pub admin: bool,
}

/// The static tokens, or none (every caller the admin).
#[derive(Clone, Debug, Default)]
pub struct Tokens(Option<HashMap<String, Caller>>);

impl Tokens {
    /// Parses `TOKEN:PROJECT:ROLE[,...]` (role `admin` or any other name
    /// for a member); an empty spec is no tokens.
    pub fn parse(spec: &str) -> Result<Tokens, String> {
        if spec.trim().is_empty() {
            return Ok(Tokens(None));
        }
        let mut m = HashMap::new();
        for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
            let mut it = item.trim().splitn(3, ':');
            match (it.next(), it.next(), it.next()) {
                (Some(t), Some(p), Some(r)) if !t.is_empty() && !p.is_empty() && !r.is_empty() => {
                    m.insert(
                        t.to_string(),
                        Caller {
                            project: p.to_string(),
                            admin: r == "admin",
                        },
                    );
                }
                _ => return Err(format!("\"{item}\" is not TOKEN:PROJECT:ROLE")),
            }
        }
        Ok(Tokens(Some(m)))
    }
}

pub type Guard = (Arc<App>, Arc<Tokens>);

/// The collections whose items belong to a project, by URL name.
fn owner(app: &App, coll: &str, id: &str) -> Option<Map<String, Value>> {
    use crate::{floatingip, network, port, router, security_group, subnet};
    let id: Uuid = id.parse().ok()?;
    fn get<R: Record>(app: &App, id: Uuid) -> Option<Map<String, Value>> {
        app.topo
            .get::<R>(id)
            .ok()
            .flatten()
            .map(|r| r.fields().clone())
    }
    match coll {
        "networks" => get::<network::NetworkRecord>(app, id),
        "subnets" => get::<subnet::SubnetRecord>(app, id),
        "ports" => get::<port::PortRecord>(app, id),
        "routers" => get::<router::RouterRecord>(app, id),
        "floatingips" => get::<floatingip::FloatingIpRecord>(app, id),
        "security-groups" => get::<security_group::GroupRecord>(app, id),
        "security-group-rules" => get::<security_group::RuleRecord>(app, id),
        _ => None,
    }
}

/// Whether `caller` may see (`read`) or change a resource with `fields`.
fn allowed(caller: &Caller, fields: &Map<String, Value>, read: bool) -> bool {
    caller.admin
        || field(fields, "project_id").as_str() == Some(caller.project.as_str())
        || (read
            && (field(fields, "shared").as_bool() == Some(true)
                || field(fields, "router:external").as_bool() == Some(true)))
}

fn not_found(coll: &str, id: &str) -> Response {
    NeutronError::not_found(
        "NotFound",
        format!("The resource {coll}/{id} could not be found."),
    )
    .into_response()
}

/// The references a body may carry, by field: (field, collection, whether
/// reading it is enough). A port may be made on a shared network; a
/// floating IP comes from an external one.
const REFERENCES: &[(&str, &str, bool)] = &[
    ("network_id", "networks", true),
    ("floating_network_id", "networks", true),
    ("subnet_id", "subnets", true),
    ("port_id", "ports", false),
    ("security_group_id", "security-groups", false),
    ("remote_group_id", "security-groups", false),
    ("router_id", "routers", false),
];

/// Neutron's policy over every call but version discovery.
pub async fn guard(State((app, tokens)): State<Guard>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let Some(map) = &tokens.0 else {
        return next.run(req).await;
    };
    if path == "/" {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(caller) = map.get(token).cloned() else {
        return NeutronError::new(
            StatusCode::UNAUTHORIZED,
            "HTTPUnauthorized",
            "Authentication required: send X-Auth-Token with a valid token.",
        )
        .into_response();
    };
    // The token says the project, whatever the caller claims.
    if let Ok(v) = HeaderValue::from_str(&caller.project) {
        req.headers_mut().insert("x-project-id", v);
    }
    if caller.admin {
        return next.run(req).await;
    }
    let parts: Vec<&str> = path.trim_start_matches("/v2.0/").split('/').collect();
    let method = req.method().clone();
    // Quotas: a member reads its own, only an admin sets them.
    if parts.first() == Some(&"quotas")
        && (method != Method::GET || parts.get(1).is_none_or(|p| *p != caller.project))
    {
        return NeutronError::new(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            "Only an admin may see or change other projects' quotas.",
        )
        .into_response();
    }
    if let [coll, id, ..] = parts.as_slice()
        && let Some(f) = owner(&app, coll, id)
        && !allowed(&caller, &f, method == Method::GET)
    {
        return not_found(coll, id);
    }
    let (head, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return NeutronError::bad_request("request body too large").into_response();
    };
    if !bytes.is_empty()
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
    {
        let mut objs: Vec<&Map<String, Value>> = Vec::new();
        if let Some(m) = v.as_object() {
            objs.push(m);
            for inner in m.values() {
                match inner {
                    Value::Object(o) => objs.push(o),
                    Value::Array(a) => objs.extend(a.iter().filter_map(Value::as_object)),
                    _ => {}
                }
            }
        }
        for o in objs {
            for k in ["project_id", "tenant_id"] {
                if let Some(p) = o.get(k).and_then(Value::as_str)
                    && p != caller.project
                {
                    return NeutronError::new(
                        StatusCode::FORBIDDEN,
                        "PolicyNotAuthorized",
                        format!("Only an admin may act for project {p}."),
                    )
                    .into_response();
                }
            }
            for (k, coll, read) in REFERENCES {
                if let Some(id) = o.get(*k).and_then(Value::as_str)
                    && let Some(f) = owner(&app, coll, id)
                    && !allowed(&caller, &f, *read)
                {
                    return not_found(coll, id);
                }
            }
        }
    }
    let req = Request::from_parts(head, Body::from(bytes));
    let listing = method == Method::GET && parts.len() == 1;
    let resp = next.run(req).await;
    if !listing || !resp.status().is_success() {
        return resp;
    }
    // A list: only what the caller may see.
    let (head, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 256 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(head, Body::from(bytes));
    };
    if let Some(m) = v.as_object_mut() {
        for list in m.values_mut() {
            if let Value::Array(a) = list {
                a.retain(|x| x.as_object().is_none_or(|o| allowed(&caller, o, true)));
            }
        }
    }
    let mut resp = Response::from_parts(head, Body::from(v.to_string()));
    resp.headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_parse() {
        let t = Tokens::parse("a:p1:admin, b:p2:member").expect("valid");
        let m = t.0.expect("tokens");
        assert!(m["a"].admin && m["a"].project == "p1");
        assert!(!m["b"].admin && m["b"].project == "p2");
        assert!(Tokens::parse("").expect("none").0.is_none());
        assert!(Tokens::parse("a:p1").is_err());
    }

    #[test]
    fn members_see_their_own_and_shared() {
        let b = Caller {
            project: "b".into(),
            admin: false,
        };
        let o = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(!allowed(&b, &o(json!({"project_id": "a"})), true));
        assert!(allowed(&b, &o(json!({"project_id": "b"})), false));
        assert!(allowed(
            &b,
            &o(json!({"project_id": "a", "shared": true})),
            true
        ));
        assert!(!allowed(
            &b,
            &o(json!({"project_id": "a", "shared": true})),
            false
        ));
        assert!(allowed(
            &b,
            &o(json!({"project_id": "a", "router:external": true})),
            true
        ));
    }
}
