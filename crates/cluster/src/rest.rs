//! The generic REST behaviour every MidoNet resource shares: render with `uri`
//! and links, list, get, create (201 + Location), update (full replacement,
//! 204), delete (reference rules, 204).

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::topo::Writer;
use model::refs::Refs;
use model::{Kind, Object};
use serde_json::{Map, Value};
use uuid::Uuid;

pub type Links = Map<String, Value>;

/// A stored object exposed as a REST resource.
pub trait Resource: Object + Refs {
    /// The collection's path below the API root.
    const PATH: &'static str;

    fn uri(&self, base: &str) -> String {
        format!("{base}/{}/{}", Self::PATH, self.id())
    }

    /// Adds links and fields computed at read time (state, derived ids).
    fn links(&self, _app: &App, _base: &str, _out: &mut Links) {}

    /// The owning object, for resources created under a parent.
    fn parent(&self) -> Option<Uuid> {
        None
    }
    fn set_parent(&mut self, _w: &mut Writer<'_>, _parent: Uuid) -> Result<(), ApiError> {
        Ok(())
    }

    /// Defaults, derived fields and side effects of a create.
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        Ok(())
    }

    /// Restores what a PUT cannot change; may refuse the change.
    fn on_update(&mut self, _old: &Self, _w: &mut Writer<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    /// Query filters on lists (`?tenant_id=`).
    fn matches(&self, _req: &Req) -> bool {
        true
    }
}

pub fn link(base: &str, path: String) -> Value {
    Value::String(format!("{base}/{path}"))
}

pub fn opt_link(base: &str, coll: &str, id: Option<Uuid>) -> Value {
    id.map(|id| Value::String(format!("{base}/{coll}/{id}")))
        .unwrap_or(Value::Null)
}

pub fn render<T: Resource>(app: &App, base: &str, o: &T) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("uri".into(), Value::String(o.uri(base)));
        o.links(app, base, m);
    }
    v
}

pub fn render_all<T: Resource>(app: &App, req: &Req, items: impl IntoIterator<Item = T>) -> Resp {
    Resp::json(Value::Array(
        items
            .into_iter()
            .filter(|o| o.matches(req))
            .map(|o| render(app, &req.base, &o))
            .collect(),
    ))
}

/// A read-only sub-collection: the `C`s whose `owner` is the `P` named by
/// the path's id (404 when that `P` does not exist).
pub fn list_owned_by<P: Object, C: Resource>(
    app: &App,
    req: &Req,
    owner: impl Fn(&C) -> Option<Uuid>,
) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    app.topo.must::<P>(id)?;
    let items = app
        .topo
        .all::<C>()?
        .into_iter()
        .filter(|c| owner(c) == Some(id));
    Ok(render_all(app, req, items))
}

pub fn tenant_matches(tenant: &Option<String>, req: &Req) -> bool {
    match req.query.get("tenant_id") {
        Some(t) if !t.is_empty() => tenant.as_deref() == Some(t.as_str()),
        _ => true,
    }
}

pub fn list<T: Resource>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    Ok(render_all(app, req, app.topo.all::<T>()?))
}

pub fn get<T: Resource>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let o: T = app.topo.must(req.id("id")?)?;
    Ok(Resp::json(render(app, &req.base, &o)))
}

/// Lists the `T`s under parent `P` named by `{id}` in the path.
pub fn list_under<T: Resource, P: Object>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    list_owned_by::<P, T>(app, req, T::parent)
}

fn insert<T: Resource>(
    app: &App,
    req: &Req,
    parent: Option<(Kind, Uuid)>,
) -> Result<Resp, ApiError> {
    let mut o: T = req.json()?;
    if o.id().is_nil() {
        if T::KIND == Kind::Host {
            return Err(ApiError::bad_request("a host needs its id in the body"));
        }
        o.set_id(Uuid::new_v4());
    }
    let o = app.topo.write(|w| {
        let mut o = o.clone();
        if let Some((kind, pid)) = parent {
            if !w.tx.exists(kind, pid) {
                return Err(ApiError::not_found(format!("{kind} {pid} not found")));
            }
            o.set_parent(w, pid)?;
        }
        if w.tx.exists(T::KIND, o.id()) {
            return Err(ApiError::conflict(format!(
                "{} {} already exists",
                T::KIND,
                o.id()
            )));
        }
        o.on_create(w, req)?;
        o.validate()?;
        w.tx.check_refs(&o)?;
        w.tx.put(&o);
        Ok(o)
    })?;
    Ok(Resp::created(o.uri(&req.base)))
}

pub fn create<T: Resource>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    insert::<T>(app, req, None)
}

pub fn create_under<T: Resource, P: Object>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    insert::<T>(app, req, Some((P::KIND, req.id("id")?)))
}

pub fn update<T: Resource>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    let new: T = req.json()?;
    app.topo.write(|w| {
        let old: T =
            w.tx.get(id)?
                .ok_or_else(|| ApiError::not_found(format!("{} {id} not found", T::KIND)))?;
        let mut o = new.clone();
        o.set_id(id);
        o.on_update(&old, w)?;
        o.validate()?;
        w.tx.check_refs(&o)?;
        w.tx.put(&o);
        Ok(())
    })?;
    Ok(Resp::no_content())
}

pub fn delete<T: Resource>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    app.topo.write(|w| {
        if !w.tx.exists(T::KIND, id) {
            return Err(ApiError::not_found(format!("{} {id} not found", T::KIND)));
        }
        Ok(w.tx.delete(T::KIND, id)?)
    })?;
    Ok(Resp::no_content())
}

/// Delete that answers 204 for a missing object (MidoNet does for LB objects).
pub fn delete_idempotent<T: Resource>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    app.topo.write(|w| Ok(w.tx.delete(T::KIND, id)?))?;
    Ok(Resp::no_content())
}
