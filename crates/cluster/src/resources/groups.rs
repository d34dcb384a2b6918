//! Port groups and IP address groups, with their memberships.

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::rest::{Links, Resource, link, tenant_matches};
use crate::topo::Writer;
use model::{IpAddrGroup, IpAddrGroupAddr, IpAddrGroupMember, Kind, Port, PortGroup};
use serde_json::{Value, json};
use std::net::IpAddr;
use uuid::Uuid;

impl Resource for PortGroup {
    const PATH: &'static str = "port_groups";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert(
            "ports".into(),
            link(base, format!("port_groups/{}/ports", self.id)),
        );
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.port_ids.clear();
        Ok(())
    }
    fn on_update(&mut self, old: &Self, _w: &mut Writer<'_>) -> Result<(), ApiError> {
        self.port_ids = old.port_ids.clone();
        Ok(())
    }
    fn matches(&self, req: &Req) -> bool {
        let port = req
            .query
            .get("port_id")
            .and_then(|p| Uuid::parse_str(p).ok());
        tenant_matches(&self.tenant_id, req) && port.is_none_or(|p| self.port_ids.contains(&p))
    }
}

fn membership(base: &str, group: Uuid, port: Uuid) -> Value {
    json!({
        "portGroupId": group,
        "portId": port,
        "uri": format!("{base}/port_groups/{group}/ports/{port}"),
        "port": format!("{base}/ports/{port}"),
        "portGroup": format!("{base}/port_groups/{group}"),
    })
}

pub fn group_ports(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let g: PortGroup = app.topo.must(req.id("id")?)?;
    Ok(Resp::json(Value::Array(
        g.port_ids
            .iter()
            .map(|p| membership(&req.base, g.id, *p))
            .collect(),
    )))
}

pub fn port_groups_of_port(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let port: Port = app.topo.must(req.id("id")?)?;
    let groups = app.topo.all::<PortGroup>()?;
    Ok(Resp::json(Value::Array(
        groups
            .iter()
            .filter(|g| g.port_ids.contains(&port.id))
            .map(|g| membership(&req.base, g.id, port.id))
            .collect(),
    )))
}

pub fn add_group_port(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let gid = req.id("id")?;
    let body = req.value()?;
    let pid = body
        .get("portId")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| ApiError::bad_request("portId: a port UUID is required"))?;
    app.topo.write(|w| {
        let mut g: PortGroup = w.tx.must(gid, "id")?;
        w.tx.must::<Port>(pid, "portId")?;
        if g.port_ids.contains(&pid) {
            return Err(ApiError::conflict(format!(
                "port {pid} is already a member of port group {gid}"
            )));
        }
        g.port_ids.push(pid);
        w.tx.put(&g);
        Ok(())
    })?;
    Ok(Resp::created(format!(
        "{}/port_groups/{gid}/ports/{pid}",
        req.base
    )))
}

pub fn get_group_port(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let g: PortGroup = app.topo.must(req.id("id")?)?;
    let pid = req.id("portId")?;
    if !g.port_ids.contains(&pid) {
        return Err(ApiError::not_found(format!(
            "port {pid} is not a member of port group {}",
            g.id
        )));
    }
    Ok(Resp::json(membership(&req.base, g.id, pid)))
}

pub fn remove_group_port(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let gid = req.id("id")?;
    let pid = req.id("portId")?;
    app.topo.write(|w| {
        let mut g: PortGroup = w.tx.must(gid, "id")?;
        if !g.port_ids.contains(&pid) {
            return Err(ApiError::not_found(format!(
                "port {pid} is not a member of port group {gid}"
            )));
        }
        g.port_ids.retain(|p| *p != pid);
        w.tx.put(&g);
        Ok(())
    })?;
    Ok(Resp::no_content())
}

impl Resource for IpAddrGroup {
    const PATH: &'static str = "ip_addr_groups";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert(
            "addrs".into(),
            link(base, format!("ip_addr_groups/{}/ip_addrs", self.id)),
        );
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.addrs.clear();
        Ok(())
    }
}

fn version(a: &IpAddr) -> u8 {
    if a.is_ipv4() { 4 } else { 6 }
}

fn addr_json(base: &str, group: Uuid, a: &IpAddr) -> Value {
    let v = version(a);
    let enc = a.to_string().replace(':', "%3A");
    json!({
        "addr": a.to_string(),
        "version": v,
        "ipAddrGroupId": group,
        "uri": format!("{base}/ip_addr_groups/{group}/versions/{v}/ip_addrs/{enc}"),
        "ipAddrGroup": format!("{base}/ip_addr_groups/{group}"),
    })
}

/// A group's addresses: its embedded ones and those stored on their own.
fn addrs_of(app: &App, g: &IpAddrGroup) -> Result<Vec<IpAddr>, ApiError> {
    let mut own = app
        .topo
        .naming::<IpAddrGroupMember>("groupId", Kind::IpAddrGroup, g.id)?;
    own.sort_by_key(|m| m.id);
    let mut v = g.addrs.clone();
    for m in own {
        if !v.contains(&m.addr) {
            v.push(m.addr);
        }
    }
    Ok(v)
}

pub fn group_addrs(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let g: IpAddrGroup = app.topo.must(req.id("id")?)?;
    Ok(Resp::json(Value::Array(
        addrs_of(app, &g)?
            .iter()
            .map(|a| addr_json(&req.base, g.id, a))
            .collect(),
    )))
}

pub fn add_group_addr(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let gid = req.id("id")?;
    let a: IpAddrGroupAddr = req.json()?;
    if let Some(v) = a.version
        && v != version(&a.addr)
    {
        return Err(ApiError::bad_request(format!(
            "version: {} is not an IPv{v} address",
            a.addr
        )));
    }
    // Stored on its own: adding an address rewrites nothing else.
    app.topo.write(|w| {
        let g: IpAddrGroup = w.tx.must(gid, "id")?;
        if !g.addrs.contains(&a.addr) {
            w.tx.put(&IpAddrGroupMember {
                id: IpAddrGroupMember::id_for(gid, a.addr),
                group_id: gid,
                addr: a.addr,
            });
        }
        Ok(())
    })?;
    let body = addr_json(&req.base, gid, &a.addr);
    Ok(Resp::created(
        body["uri"].as_str().unwrap_or_default().to_string(),
    ))
}

fn path_addr(req: &Req) -> Result<IpAddr, ApiError> {
    let s = req.param("addr");
    s.parse()
        .map_err(|_| ApiError::not_found(format!("\"{s}\" is not an IP address")))
}

pub fn get_group_addr(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let g: IpAddrGroup = app.topo.must(req.id("id")?)?;
    let a = path_addr(req)?;
    if !addrs_of(app, &g)?.contains(&a) {
        return Err(ApiError::not_found(format!(
            "{a} is not in IP address group {}",
            g.id
        )));
    }
    Ok(Resp::json(addr_json(&req.base, g.id, &a)))
}

pub fn remove_group_addr(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let gid = req.id("id")?;
    let Ok(a) = path_addr(req) else {
        return Ok(Resp::no_content());
    };
    app.topo.write(|w| {
        if let Some(mut g) = w.tx.get::<IpAddrGroup>(gid)?
            && g.addrs.contains(&a)
        {
            g.addrs.retain(|x| *x != a);
            w.tx.put(&g);
        }
        w.tx.delete(Kind::IpAddrGroupMember, IpAddrGroupMember::id_for(gid, a))?;
        Ok(())
    })?;
    Ok(Resp::no_content())
}
