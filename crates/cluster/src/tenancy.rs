//! Projects in the MidoNet API: a caller whose token is scoped to a project
//! (a `--users-file` line `name:hash:project`) and is not its admin
//! sees and changes only that project's devices and what hangs off them
//! (a bridge's ports and DHCP, a router's ports and routes, a chain's
//! rules), as a tenant did through MidoNet's Keystone auth. Someone else's
//! object is forbidden (403); the infrastructure (hosts, tunnel zones,
//! VTEPs, load balancers, BGP) is for operators only.

use crate::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::Req;
use axum::http::Method;
use model::{Bridge, Chain, DhcpSubnet, Kind, Port, PortGroup, PortType, Route, Router, Rule};
use serde_json::Value;
use uuid::Uuid;

/// The collections a tenant reaches, by the API's path segment.
const SCOPED: &[(&str, Kind)] = &[
    ("bridges", Kind::Bridge),
    ("routers", Kind::Router),
    ("ports", Kind::Port),
    ("routes", Kind::Route),
    ("chains", Kind::Chain),
    ("rules", Kind::Rule),
    ("port_groups", Kind::PortGroup),
];

/// The root collections a tenant lists and creates in (those with a
/// `tenantId`).
const OWNING: &[&str] = &["bridges", "routers", "chains", "port_groups"];

/// The project object `id` of `kind` belongs to: `None` when there is no
/// such object, `Some(None)` when it belongs to no project.
pub fn owner(app: &App, kind: Kind, id: Uuid) -> Result<Option<Option<String>>, ApiError> {
    let up = |k: Kind, id: Uuid| -> Result<Option<Option<String>>, ApiError> {
        Ok(Some(owner(app, k, id)?.flatten()))
    };
    Ok(match kind {
        Kind::Bridge => app.topo.get::<Bridge>(id)?.map(|o| o.tenant_id),
        Kind::Router => app.topo.get::<Router>(id)?.map(|o| o.tenant_id),
        Kind::Chain => app.topo.get::<Chain>(id)?.map(|o| o.tenant_id),
        Kind::PortGroup => app.topo.get::<PortGroup>(id)?.map(|o| o.tenant_id),
        Kind::Port => match app.topo.get::<Port>(id)? {
            None => None,
            Some(p) if p.port_type == PortType::Router => up(Kind::Router, p.device_id)?,
            Some(p) => up(Kind::Bridge, p.device_id)?,
        },
        Kind::Route => match app.topo.get::<Route>(id)? {
            None => None,
            Some(r) => match r.router_id {
                Some(rt) => up(Kind::Router, rt)?,
                None => Some(None),
            },
        },
        Kind::Rule => match app.topo.get::<Rule>(id)? {
            None => None,
            Some(r) => up(Kind::Chain, r.chain_id)?,
        },
        Kind::DhcpSubnet => match app.topo.get::<DhcpSubnet>(id)? {
            None => None,
            Some(d) => up(Kind::Bridge, d.bridge_id)?,
        },
        k => app
            .topo
            .store
            .get(k.name(), &id.to_string())
            .map_err(ApiError::from)?
            .map(|_| None),
    })
}

/// The kind of the object `id` names, if any.
fn kind_of(app: &App, id: Uuid) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|k| !k.is_api_record())
        .find(|k| matches!(app.topo.store.get(k.name(), &id.to_string()), Ok(Some(_))))
}

fn not_yours(kind: Kind, id: Uuid) -> ApiError {
    ApiError::new(403, format!("{kind} {id} is not in the token's project"))
}

fn forbidden() -> ApiError {
    ApiError::new(403, "this needs an admin: the token is scoped to a project")
}

/// Refuses what `caller` may not do (a 404 for another project's object),
/// and keeps its lists and creates to its project.
pub fn guard(app: &App, caller: &Caller, path: &str, req: &mut Req) -> Result<(), ApiError> {
    let Some(project) = caller.scope() else {
        return Ok(());
    };
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(first) = parts.first() else {
        // The API's root document.
        return if req.method == Method::GET {
            Ok(())
        } else {
            Err(forbidden())
        };
    };
    let Some((_, kind)) = SCOPED.iter().find(|(p, _)| p == first) else {
        return Err(forbidden());
    };
    match parts.get(1).map(|s| s.parse::<Uuid>()) {
        Some(Ok(id)) => match owner(app, *kind, id)? {
            None => {}
            Some(Some(p)) if p == project => {}
            Some(_) => return Err(not_yours(*kind, id)),
        },
        Some(Err(_)) => {}
        None => {
            if !OWNING.contains(first) {
                return Err(forbidden());
            }
            if req.method == Method::GET {
                req.query.insert("tenant_id".into(), project.to_string());
            }
        }
    }
    if !matches!(req.method, Method::POST | Method::PUT) || req.body.is_empty() {
        return Ok(());
    }
    let Ok(mut body) = serde_json::from_slice::<Value>(&req.body) else {
        return Ok(());
    };
    if let Some(m) = body.as_object_mut() {
        if let Some(t) = m.get("tenantId").and_then(Value::as_str)
            && t != project
        {
            return Err(ApiError::new(
                403,
                format!("tenantId \"{t}\": the token is scoped to project \"{project}\""),
            ));
        }
        if parts.len() == 1 && OWNING.contains(first) {
            m.insert("tenantId".into(), Value::String(project.to_string()));
        }
        // What the body names must be the project's too.
        for (k, v) in m.iter() {
            let Some(id) = v.as_str().and_then(|s| s.parse::<Uuid>().ok()) else {
                continue;
            };
            if k == "id" {
                continue;
            }
            if let Some(kind) = kind_of(app, id)
                && owner(app, kind, id)?.flatten().as_deref() != Some(project)
            {
                let e = not_yours(kind, id);
                return Err(ApiError::new(403, format!("{k}: {}", e.message)));
            }
        }
    }
    req.body = body.to_string().into_bytes().into();
    Ok(())
}
