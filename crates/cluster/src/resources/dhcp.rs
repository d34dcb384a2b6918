//! DHCP subnets of a bridge (named `a.b.c.d_len` in URIs) and their static hosts.

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::rest::{Links, Resource, render};
use model::{Bridge, DhcpHost, DhcpHostEntry, DhcpSubnet, Ipv4Prefix, Kind, MacAddr, Object};
use serde_json::{Value, json};
use uuid::Uuid;

impl Resource for DhcpSubnet {
    const PATH: &'static str = "dhcp";
    fn uri(&self, base: &str) -> String {
        format!("{base}/bridges/{}/dhcp/{}", self.bridge_id, self.key())
    }
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        // `hosts` is a link on the wire; the stored host list is behind it.
        m.insert(
            "hosts".into(),
            Value::String(format!("{}/hosts", self.uri(base))),
        );
    }
    fn parent(&self) -> Option<Uuid> {
        Some(self.bridge_id)
    }
}

fn subnet_key(req: &Req) -> Result<String, ApiError> {
    let s = req.param("subnet");
    let p: Ipv4Prefix = s
        .parse()
        .map_err(|_| ApiError::not_found(format!("\"{s}\" does not name a DHCP subnet")))?;
    Ok(format!("{}_{}", p.network(), p.len))
}

fn find(app: &App, req: &Req) -> Result<DhcpSubnet, ApiError> {
    let bid = req.id("id")?;
    app.topo.must::<Bridge>(bid)?;
    let key = subnet_key(req)?;
    app.topo
        .naming::<DhcpSubnet>("bridgeId", Kind::Bridge, bid)?
        .into_iter()
        .find(|d| d.key() == key)
        .ok_or_else(|| ApiError::not_found(format!("bridge {bid} has no DHCP subnet {key}")))
}

pub fn list_subnets(app: &App, req: &Req) -> Result<Resp, ApiError> {
    crate::rest::list_under::<DhcpSubnet, Bridge>(app, req)
}

pub fn get_subnet(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let d = find(app, req)?;
    Ok(Resp::json(render(app, &req.base, &d)))
}

pub fn create_subnet(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let bid = req.id("id")?;
    let mut d: DhcpSubnet = req.json()?;
    d.id = Uuid::new_v4();
    d.bridge_id = bid;
    d.hosts.clear();
    d.normalize();
    d.validate()?;
    app.topo.write(|w| {
        w.tx.must::<Bridge>(bid, "id")?;
        if w.tx
            .naming::<DhcpSubnet>("bridgeId", Kind::Bridge, bid)?
            .iter()
            .any(|o| o.key() == d.key())
        {
            return Err(ApiError::conflict(format!(
                "bridge {bid} already has DHCP subnet {}",
                d.key()
            )));
        }
        w.tx.put(&d);
        Ok(())
    })?;
    Ok(Resp::created(d.uri(&req.base)))
}

/// Replaces the subnet's settings; its hosts stay.
pub fn update_subnet(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let old = find(app, req)?;
    let mut d: DhcpSubnet = req.json()?;
    d.id = old.id;
    d.bridge_id = old.bridge_id;
    d.hosts = old.hosts.clone();
    if d.subnet_prefix.is_none() {
        d.subnet_prefix = old.subnet_prefix;
        d.subnet_length = old.subnet_length;
    }
    d.normalize();
    d.validate()?;
    modify(app, req, |cur| {
        d.hosts = cur.hosts.clone();
        *cur = d.clone();
        Ok(())
    })?;
    Ok(Resp::no_content())
}

pub fn delete_subnet(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let d = find(app, req)?;
    let hosts = hosts_of(app, &d)?;
    app.topo.write(|w| {
        for ip in hosts.iter().filter_map(|h| h.ip_addr) {
            w.release(ip_claim(d.id, ip));
        }
        Ok(w.tx.delete(DhcpSubnet::KIND, d.id)?)
    })?;
    Ok(Resp::no_content())
}

fn host_json(base: &str, d: &DhcpSubnet, h: &DhcpHost) -> Value {
    let mut v = serde_json::to_value(h).unwrap_or_default();
    let mac = h.mac_addr.map(|m| m.to_string()).unwrap_or_default();
    v["uri"] = json!(format!("{}/hosts/{mac}", d.uri(base)));
    v
}

fn path_mac(req: &Req) -> Result<MacAddr, ApiError> {
    let s = req.param("mac");
    s.parse()
        .map_err(|_| ApiError::not_found(format!("\"{s}\" is not a MAC address")))
}

/// A subnet's hosts: its embedded ones and those stored on their own.
fn hosts_of(app: &App, d: &DhcpSubnet) -> Result<Vec<DhcpHost>, ApiError> {
    let mut v = d.hosts.clone();
    let mut own = app
        .topo
        .naming::<DhcpHostEntry>("subnetId", Kind::DhcpSubnet, d.id)?;
    own.sort_by_key(|e| e.id);
    v.extend(own.into_iter().map(|e| e.host));
    Ok(v)
}

pub fn list_hosts(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let d = find(app, req)?;
    Ok(Resp::json(Value::Array(
        hosts_of(app, &d)?
            .iter()
            .map(|h| host_json(&req.base, &d, h))
            .collect(),
    )))
}

pub fn get_host(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let d = find(app, req)?;
    let mac = path_mac(req)?;
    let h = hosts_of(app, &d)?
        .into_iter()
        .find(|h| h.mac_addr == Some(mac))
        .ok_or_else(|| ApiError::not_found(format!("DHCP subnet {} has no host {mac}", d.key())))?;
    Ok(Resp::json(host_json(&req.base, &d, &h)))
}

/// Applies `f` to the subnet named by the path, read and written in one transaction.
fn modify(
    app: &App,
    req: &Req,
    mut f: impl FnMut(&mut DhcpSubnet) -> Result<(), ApiError>,
) -> Result<DhcpSubnet, ApiError> {
    let id = find(app, req)?.id;
    app.topo.write(|w| {
        let mut d: DhcpSubnet = w.tx.must(id, "subnet")?;
        f(&mut d)?;
        w.tx.put(&d);
        Ok(d)
    })
}

/// The claim a host's address takes in its subnet: two hosts never get one
/// address, also across servers sharing a ZooKeeper (first wins; CNI's
/// IPAM picks again on the conflict).
fn ip_claim(subnet: Uuid, ip: std::net::Ipv4Addr) -> String {
    format!("dhcp-ip/{subnet}/{ip}")
}

fn in_use(d: &DhcpSubnet, ip: std::net::Ipv4Addr) -> ApiError {
    in_use_key(&d.key(), ip)
}

fn in_use_key(key: &str, ip: std::net::Ipv4Addr) -> ApiError {
    ApiError::conflict(format!("address {ip} is in use in DHCP subnet {key}"))
}

/// A lost claim said as the API says it (the store names the claim).
fn claim_lost(e: ApiError, req: &Req, ip: Option<std::net::Ipv4Addr>) -> ApiError {
    match ip {
        Some(ip) if e.status == 409 && e.message.contains("dhcp-ip/") => {
            in_use_key(&subnet_key(req).unwrap_or_default(), ip)
        }
        _ => e,
    }
}

/// A new host is stored on its own (adding it rewrites nothing else);
/// hosts embedded in a subnet by earlier versions stay where they are.
pub fn create_host(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let h: DhcpHost = req.json()?;
    h.validate()?;
    let mac = h.mac_addr.unwrap_or_default();
    let id = find(app, req)?.id;
    let d = app.topo.write(|w| {
        let d: DhcpSubnet = w.tx.must(id, "subnet")?;
        let e = DhcpHostEntry {
            id: DhcpHostEntry::id_for(d.id, mac),
            bridge_id: d.bridge_id,
            subnet_id: d.id,
            host: h.clone(),
        };
        if d.hosts.iter().any(|o| o.mac_addr == h.mac_addr)
            || w.tx.exists(Kind::DhcpHostEntry, e.id)
        {
            return Err(ApiError::conflict(format!(
                "DHCP subnet {} already has host {mac}",
                d.key()
            )));
        }
        if let Some(ip) = h.ip_addr {
            if d.hosts.iter().any(|o| o.ip_addr == Some(ip)) {
                return Err(in_use(&d, ip));
            }
            w.claim(ip_claim(d.id, ip), mac.to_string());
        }
        w.tx.put(&e);
        Ok(d)
    });
    let d = d.map_err(|e| claim_lost(e, req, h.ip_addr))?;
    Ok(Resp::created(format!("{}/hosts/{mac}", d.uri(&req.base))))
}

pub fn update_host(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let mac = path_mac(req)?;
    let mut h: DhcpHost = req.json()?;
    h.mac_addr = Some(mac);
    h.validate()?;
    let id = find(app, req)?.id;
    app.topo
        .write(|w| {
            let mut d: DhcpSubnet = w.tx.must(id, "subnet")?;
            // A new address is claimed, the old one given back.
            let moved = |w: &mut crate::topo::Writer<'_>, d: &DhcpSubnet, old: Option<_>| {
                if old != h.ip_addr {
                    if let Some(o) = old {
                        w.release(ip_claim(d.id, o));
                    }
                    if let Some(n) = h.ip_addr {
                        w.claim(ip_claim(d.id, n), mac.to_string());
                    }
                }
            };
            if let Some(i) = d.hosts.iter().position(|o| o.mac_addr == Some(mac)) {
                if let Some(ip) = h.ip_addr
                    && d.hosts
                        .iter()
                        .any(|o| o.mac_addr != Some(mac) && o.ip_addr == Some(ip))
                {
                    return Err(in_use(&d, ip));
                }
                let old = d.hosts[i].ip_addr;
                d.hosts[i] = h.clone();
                moved(w, &d, old);
                w.tx.put(&d);
                return Ok(());
            }
            let mut e: DhcpHostEntry =
                w.tx.get(DhcpHostEntry::id_for(d.id, mac))?
                    .ok_or_else(|| ApiError::not_found(format!("DHCP subnet has no host {mac}")))?;
            let old = e.host.ip_addr;
            e.host = h.clone();
            moved(w, &d, old);
            w.tx.put(&e);
            Ok(())
        })
        .map_err(|e| claim_lost(e, req, h.ip_addr))?;
    Ok(Resp::no_content())
}

pub fn delete_host(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let mac = path_mac(req)?;
    let id = find(app, req)?.id;
    app.topo.write(|w| {
        let mut d: DhcpSubnet = w.tx.must(id, "subnet")?;
        if let Some(i) = d.hosts.iter().position(|o| o.mac_addr == Some(mac)) {
            if let Some(ip) = d.hosts.remove(i).ip_addr {
                w.release(ip_claim(d.id, ip));
            }
            w.tx.put(&d);
            return Ok(());
        }
        let id = DhcpHostEntry::id_for(d.id, mac);
        let Some(e) = w.tx.get::<DhcpHostEntry>(id)? else {
            return Err(ApiError::not_found(format!(
                "DHCP subnet {} has no host {mac}",
                d.key()
            )));
        };
        if let Some(ip) = e.host.ip_addr {
            w.release(ip_claim(d.id, ip));
        }
        Ok(w.tx.delete(Kind::DhcpHostEntry, id)?)
    })?;
    Ok(Resp::no_content())
}
