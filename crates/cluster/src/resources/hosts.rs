//! Hosts, their interfaces and port bindings (the `mm-ctl` role), and tunnel zones.

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::rest::{Links, Resource, link};
use crate::topo::Writer;
use model::{Host, Kind, Port, TunnelZone, TunnelZoneHost};
use serde_json::{Value, json};
use uuid::Uuid;

pub fn host_alive(app: &App, id: Uuid) -> bool {
    app.topo
        .store
        .get_ephemeral(&format!("Host/{id}/alive"))
        .is_some()
}

impl Resource for Host {
    const PATH: &'static str = "hosts";
    fn links(&self, app: &App, base: &str, m: &mut Links) {
        m.insert(
            "interfaces".into(),
            link(base, format!("hosts/{}/interfaces", self.id)),
        );
        m.insert(
            "ports".into(),
            link(base, format!("hosts/{}/ports", self.id)),
        );
        m.insert("alive".into(), Value::Bool(host_alive(app, self.id)));
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.normalize();
        self.alive = false;
        Ok(())
    }
}

/// PUT changes only the four scheduling fields, all required; answers 200.
pub fn update_host(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    let new: Host = req.json()?;
    let mut missing = Vec::new();
    if new.flooding_proxy_weight.is_none() {
        missing.push("floodingProxyWeight");
    }
    if new.container_weight.is_none() {
        missing.push("containerWeight");
    }
    if new.container_limit.is_none() {
        missing.push("containerLimit");
    }
    if new.enforce_container_limit.is_none() {
        missing.push("enforceContainerLimit");
    }
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} may not be null",
            missing.join(", ")
        )));
    }
    app.topo.write(|w| {
        let mut h: Host = w.tx.must(id, "id")?;
        h.flooding_proxy_weight = new.flooding_proxy_weight;
        h.container_weight = new.container_weight;
        h.container_limit = new.container_limit;
        h.enforce_container_limit = new.enforce_container_limit;
        model::Object::validate(&h)?;
        w.tx.put(&h);
        Ok(())
    })?;
    Ok(Resp::ok_empty())
}

/// Refused while the host's agent is alive or ports are bound to it; answers 200.
pub fn delete_host(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    if host_alive(app, id) {
        return Err(ApiError::new(
            403,
            format!("host {id} is alive; stop its agent first"),
        ));
    }
    app.topo.write(|w| {
        w.tx.must::<Host>(id, "id")?;
        Ok(w.tx.delete(model::Kind::Host, id)?)
    })?;
    Ok(Resp::ok_empty())
}

pub fn host_interfaces(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let h: Host = app.topo.must(req.id("id")?)?;
    let base = &req.base;
    let list = h
        .host_interfaces
        .iter()
        .filter(|i| req.param("name").is_empty() || i.name == req.param("name"))
        .map(|i| {
            let mut v = serde_json::to_value(i).unwrap_or_default();
            v["hostId"] = json!(h.id);
            v["uri"] = json!(format!("{base}/hosts/{}/interfaces/{}", h.id, i.name));
            v
        })
        .collect::<Vec<_>>();
    if !req.param("name").is_empty() {
        return list.into_iter().next().map(Resp::json).ok_or_else(|| {
            ApiError::not_found(format!(
                "host {} has no interface {}",
                h.id,
                req.param("name")
            ))
        });
    }
    Ok(Resp::json(Value::Array(list)))
}

fn binding(base: &str, p: &Port) -> Value {
    let h = p.host_id.unwrap_or_default();
    json!({
        "hostId": h,
        "portId": p.id,
        "interfaceName": p.interface_name,
        "uri": format!("{base}/hosts/{h}/ports/{}", p.id),
        "host": format!("{base}/hosts/{h}"),
        "port": format!("{base}/ports/{}", p.id),
    })
}

pub fn host_ports(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let h: Host = app.topo.must(req.id("id")?)?;
    let ports = app.topo.naming::<Port>("hostId", Kind::Host, h.id)?;
    Ok(Resp::json(Value::Array(
        ports.iter().map(|p| binding(&req.base, p)).collect(),
    )))
}

pub fn get_host_port(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let hid = req.id("id")?;
    let p: Port = app.topo.must(req.id("portId")?)?;
    if p.host_id != Some(hid) {
        return Err(ApiError::not_found(format!(
            "port {} is not bound to host {hid}",
            p.id
        )));
    }
    Ok(Resp::json(binding(&req.base, &p)))
}

/// Binds a port to an interface of a host.
pub fn bind_port(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let hid = req.id("id")?;
    let body = req.value()?;
    let pid = body
        .get("portId")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| ApiError::bad_request("portId: a port UUID is required"))?;
    let iface = body
        .get("interfaceName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("interfaceName: may not be null"))?;
    crate::ops::bind(app, hid, pid, iface)?;
    Ok(Resp::created(format!(
        "{}/hosts/{hid}/ports/{pid}",
        req.base
    )))
}

pub fn unbind_port(app: &App, req: &Req) -> Result<Resp, ApiError> {
    crate::ops::unbind(app, req.id("id")?, req.id("portId")?)?;
    Ok(Resp::no_content())
}

impl Resource for TunnelZone {
    const PATH: &'static str = "tunnel_zones";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert(
            "hosts".into(),
            link(base, format!("tunnel_zones/{}/hosts", self.id)),
        );
    }
    fn on_create(&mut self, w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.members.clear();
        unique_zone_name(w, self)
    }
    fn on_update(&mut self, old: &Self, w: &mut Writer<'_>) -> Result<(), ApiError> {
        self.members = old.members.clone();
        unique_zone_name(w, self)
    }
}

fn unique_zone_name(w: &Writer<'_>, z: &TunnelZone) -> Result<(), ApiError> {
    if w.tx
        .all::<TunnelZone>()?
        .iter()
        .any(|o| o.id != z.id && o.name == z.name)
    {
        return Err(ApiError::conflict(format!(
            "a tunnel zone named {:?} already exists",
            z.name.as_deref().unwrap_or("")
        )));
    }
    Ok(())
}

fn member_json(base: &str, z: &TunnelZone, m: &TunnelZoneHost) -> Value {
    let h = m.host_id.unwrap_or_default();
    json!({
        "tunnelZoneId": z.id,
        "hostId": h,
        "ipAddress": m.ip_address,
        "uri": format!("{base}/tunnel_zones/{}/hosts/{h}", z.id),
        "host": format!("{base}/hosts/{h}"),
        "tunnelZone": format!("{base}/tunnel_zones/{}", z.id),
    })
}

pub fn zone_members(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let z: TunnelZone = app.topo.must(req.id("id")?)?;
    Ok(Resp::json(Value::Array(
        z.members
            .iter()
            .map(|m| member_json(&req.base, &z, m))
            .collect(),
    )))
}

pub fn get_zone_member(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let z: TunnelZone = app.topo.must(req.id("id")?)?;
    let h = req.id("hostId")?;
    let m = z
        .member(h)
        .ok_or_else(|| ApiError::not_found(format!("host {h} is not in tunnel zone {}", z.id)))?;
    Ok(Resp::json(member_json(&req.base, &z, m)))
}

pub fn add_zone_member(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let zid = req.id("id")?;
    let m: TunnelZoneHost = req.json()?;
    let (Some(h), Some(_)) = (m.host_id, m.ip_address) else {
        return Err(ApiError::bad_request(
            "hostId and ipAddress may not be null",
        ));
    };
    app.topo.write(|w| {
        let mut z: TunnelZone = w.tx.must(zid, "id")?;
        w.tx.must::<Host>(h, "hostId")?;
        if z.member(h).is_some() {
            return Err(ApiError::conflict(format!(
                "host {h} is already in tunnel zone {zid}"
            )));
        }
        z.members.push(m.clone());
        w.tx.put(&z);
        Ok(())
    })?;
    Ok(Resp::created(format!(
        "{}/tunnel_zones/{zid}/hosts/{h}",
        req.base
    )))
}

pub fn remove_zone_member(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let zid = req.id("id")?;
    let h = req.id("hostId")?;
    app.topo.write(|w| {
        let mut z: TunnelZone = w.tx.must(zid, "id")?;
        if z.member(h).is_none() {
            return Err(ApiError::not_found(format!(
                "host {h} is not in tunnel zone {zid}"
            )));
        }
        z.members.retain(|m| m.host_id != Some(h));
        w.tx.put(&z);
        Ok(())
    })?;
    Ok(Resp::no_content())
}
