//! Bridges, routers, ports (with link/unlink) and routes.

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::rest::{Links, Resource, link, opt_link, render_all, tenant_matches};
use crate::topo::Writer;
use model::{Bridge, Kind, LoadBalancer, Object, Port, PortType, Route, Router};
use serde_json::Value;
use uuid::Uuid;

/// The two filter links every device and port has.
fn filter_links(m: &mut Links, base: &str, inbound: Option<Uuid>, outbound: Option<Uuid>) {
    m.insert("inboundFilter".into(), opt_link(base, "chains", inbound));
    m.insert("outboundFilter".into(), opt_link(base, "chains", outbound));
}

impl Resource for Bridge {
    const PATH: &'static str = "bridges";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        let me = format!("bridges/{}", self.id);
        filter_links(m, base, self.inbound_filter_id, self.outbound_filter_id);
        m.insert("ports".into(), link(base, format!("{me}/ports")));
        m.insert("peerPorts".into(), link(base, format!("{me}/peer_ports")));
        m.insert("vxLanPorts".into(), link(base, format!("{me}/vxlan_ports")));
        m.insert("macTable".into(), link(base, format!("{me}/mac_table")));
        m.insert("arpTable".into(), link(base, format!("{me}/arp_table")));
        m.insert("dhcpSubnets".into(), link(base, format!("{me}/dhcp")));
        m.insert("dhcpSubnet6s".into(), link(base, format!("{me}/dhcpV6")));
        m.insert(
            "vlanMacTableTemplate".into(),
            link(base, format!("{me}/vlans/{{vlanId}}/mac_table")),
        );
        m.insert(
            "macPortTemplate".into(),
            link(base, format!("{me}/mac_table/{{macAddress}}_{{portId}}")),
        );
        m.insert(
            "vlanMacPortTemplate".into(),
            link(
                base,
                format!("{me}/vlans/{{vlanId}}/mac_table/{{macAddress}}_{{portId}}"),
            ),
        );
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        if !self.vx_lan_port_ids.is_empty() {
            return Err(ApiError::bad_request(
                "vxLanPortIds is read-only: VTEP bindings create VXLAN ports",
            ));
        }
        Ok(())
    }
    fn on_update(&mut self, old: &Self, _w: &mut Writer<'_>) -> Result<(), ApiError> {
        if !self.vx_lan_port_ids.is_empty() && self.vx_lan_port_ids != old.vx_lan_port_ids {
            return Err(ApiError::bad_request(
                "vxLanPortIds is read-only: VTEP bindings create VXLAN ports",
            ));
        }
        self.vx_lan_port_ids = old.vx_lan_port_ids.clone();
        Ok(())
    }
    fn matches(&self, req: &Req) -> bool {
        tenant_matches(&self.tenant_id, req)
    }
}

/// Points load balancer `lb` at `router`; one router per load balancer.
fn bind_load_balancer(w: &mut Writer<'_>, lb: Uuid, router: Uuid) -> Result<(), ApiError> {
    let mut l: LoadBalancer = w.tx.must(lb, "loadBalancerId")?;
    match l.router_id {
        Some(r) if r != router => Err(ApiError::conflict(format!(
            "load balancer {lb} is already attached to router {r}"
        ))),
        _ => {
            l.router_id = Some(router);
            w.tx.put(&l);
            Ok(())
        }
    }
}

impl Resource for Router {
    const PATH: &'static str = "routers";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        let me = format!("routers/{}", self.id);
        filter_links(m, base, self.inbound_filter_id, self.outbound_filter_id);
        m.insert(
            "localRedirectChain".into(),
            opt_link(base, "chains", self.local_redirect_chain_id),
        );
        m.insert(
            "forwardChain".into(),
            opt_link(base, "chains", self.forward_chain_id),
        );
        m.insert(
            "loadBalancer".into(),
            opt_link(base, "load_balancers", self.load_balancer_id),
        );
        m.insert("ports".into(), link(base, format!("{me}/ports")));
        m.insert("peerPorts".into(), link(base, format!("{me}/peer_ports")));
        m.insert("routes".into(), link(base, format!("{me}/routes")));
        m.insert(
            "bgpNetworks".into(),
            link(base, format!("{me}/bgp_networks")),
        );
        m.insert("bgpPeers".into(), link(base, format!("{me}/bgp_peers")));
    }
    fn on_create(&mut self, w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        if let Some(lb) = self.load_balancer_id {
            bind_load_balancer(w, lb, self.id)?;
        }
        Ok(())
    }
    fn on_update(&mut self, old: &Self, w: &mut Writer<'_>) -> Result<(), ApiError> {
        if self.load_balancer_id != old.load_balancer_id {
            if let Some(prev) = old.load_balancer_id
                && let Some(mut l) = w.tx.get::<LoadBalancer>(prev)?
            {
                l.router_id = None;
                w.tx.put(&l);
            }
            if let Some(lb) = self.load_balancer_id {
                bind_load_balancer(w, lb, self.id)?;
            }
        }
        Ok(())
    }
    fn matches(&self, req: &Req) -> bool {
        tenant_matches(&self.tenant_id, req)
    }
}

impl Resource for Port {
    const PATH: &'static str = "ports";
    fn links(&self, app: &App, base: &str, m: &mut Links) {
        let me = format!("ports/{}", self.id);
        let device = if self.is_router_port() {
            "routers"
        } else {
            "bridges"
        };
        m.insert(
            "device".into(),
            link(base, format!("{device}/{}", self.device_id)),
        );
        m.insert("host".into(), opt_link(base, "hosts", self.host_id));
        m.insert("peer".into(), opt_link(base, "ports", self.peer_id));
        m.insert("link".into(), link(base, format!("{me}/link")));
        m.insert("portGroups".into(), link(base, format!("{me}/port_groups")));
        m.insert(
            "hostInterfacePort".into(),
            match self.host_id {
                Some(h) => link(base, format!("hosts/{h}/ports/{}", self.id)),
                None => Value::Null,
            },
        );
        filter_links(m, base, self.inbound_filter_id, self.outbound_filter_id);
        if self.is_router_port() {
            m.insert(
                "peeringTable".into(),
                link(
                    base,
                    format!("routers/{}/{me}/peering_table", self.device_id),
                ),
            );
            m.insert(
                "serviceContainer".into(),
                opt_link(base, "service_containers", self.service_container_id),
            );
        }
        let active = app
            .topo
            .store
            .get_ephemeral(&format!("Port/{}/active", self.id))
            .is_some();
        m.insert("active".into(), Value::Bool(active));
        if self.is_router_port() {
            m.insert("bgpStatus".into(), bgp_status(app, self));
        }
    }
    fn parent(&self) -> Option<Uuid> {
        Some(self.device_id)
    }
    fn set_parent(&mut self, w: &mut Writer<'_>, parent: Uuid) -> Result<(), ApiError> {
        let want = if w.tx.exists(Kind::Bridge, parent) {
            PortType::Bridge
        } else {
            PortType::Router
        };
        if self.port_type != want {
            return Err(ApiError::bad_request(format!(
                "a {:?} port cannot be created on a {}",
                self.port_type,
                if want == PortType::Bridge {
                    "bridge"
                } else {
                    "router"
                }
            )));
        }
        self.device_id = parent;
        Ok(())
    }
    fn on_create(&mut self, w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        // Server-managed: set by binding, linking and agents.
        self.host_id = None;
        self.interface_name = None;
        self.peer_id = None;
        self.previous_host_id = None;
        self.active = false;
        self.insertion_ids.clear();
        self.tunnel_key = w.tunnel_key()?;
        match self.port_type {
            PortType::Bridge => {
                self.vlan_id.get_or_insert(0);
            }
            PortType::Router => {
                crate::ops::router_port_defaults(w, self)?;
            }
            PortType::Vxlan => {
                return Err(ApiError::bad_request(
                    "VXLAN ports are created by VTEP bindings only",
                ));
            }
        }
        Ok(())
    }
    fn on_update(&mut self, old: &Self, _w: &mut Writer<'_>) -> Result<(), ApiError> {
        self.tunnel_key = old.tunnel_key;
        self.device_id = old.device_id;
        self.port_type = old.port_type;
        self.peer_id = old.peer_id;
        self.host_id = old.host_id;
        self.interface_name = old.interface_name.clone();
        self.previous_host_id = old.previous_host_id;
        self.vtep_id = old.vtep_id;
        self.insertion_ids = old.insertion_ids.clone();
        self.active = false;
        if self.port_type == PortType::Router && self.port_mac.is_none() {
            self.port_mac = old.port_mac;
        }
        Ok(())
    }
}

pub fn link_ports(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    let body = req.value()?;
    let peer = match body.get("peerId") {
        Some(Value::String(s)) => Uuid::parse_str(s)
            .map_err(|_| ApiError::bad_request(format!("peerId: \"{s}\" is not a UUID")))?,
        _ => return Err(ApiError::bad_request("peerId: may not be null")),
    };
    app.topo.write(|w| crate::ops::link(w, id, peer))?;
    Ok(Resp::created(format!("{}/ports/{id}/link", req.base)))
}

pub fn unlink_ports(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    app.topo.write(|w| crate::ops::unlink(w, id))?;
    Ok(Resp::no_content())
}

/// The ports linked to this device's ports.
pub fn peer_ports<P: Object>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    app.topo.must::<P>(id)?;
    let mut peers = Vec::new();
    for p in app.topo.naming::<Port>("deviceId", P::KIND, id)? {
        if let Some(q) = p.peer_id.map(|q| app.topo.get::<Port>(q)).transpose()? {
            peers.extend(q);
        }
    }
    Ok(render_all(app, req, peers))
}

pub fn create_port_under<P: Object>(app: &App, req: &Req) -> Result<Resp, ApiError> {
    crate::rest::create_under::<Port, P>(app, req)
}

impl Resource for Route {
    const PATH: &'static str = "routes";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert("router".into(), opt_link(base, "routers", self.router_id));
    }
    fn parent(&self) -> Option<Uuid> {
        self.router_id
    }
    fn set_parent(&mut self, _w: &mut Writer<'_>, parent: Uuid) -> Result<(), ApiError> {
        self.router_id = Some(parent);
        Ok(())
    }
    fn on_create(&mut self, w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.learned = false;
        self.validate()?;
        if let Some(p) = self.next_hop_port {
            let port: Port = w.tx.get(p)?.ok_or_else(|| {
                ApiError::bad_request(format!("nextHopPort: port {p} does not exist"))
            })?;
            if Some(port.device_id) != self.router_id {
                return Err(ApiError::bad_request(format!(
                    "nextHopPort: port {p} is not a port of this router"
                )));
            }
        }
        Ok(())
    }
}

/// A router's routes: its own plus those of its ports (including LOCAL ones).
pub fn router_routes(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let id = req.id("id")?;
    app.topo.must::<Router>(id)?;
    let mut routes = app.topo.naming::<Route>("routerId", Kind::Router, id)?;
    for p in app.topo.naming::<Port>("deviceId", Kind::Router, id)? {
        routes.extend(app.topo.naming::<Route>("nextHopPort", Kind::Port, p.id)?);
    }
    // And those its gateways' bgpd learned (marked `learned`).
    let table = model::bgp::learned::routes_table(id);
    routes.extend(
        app.topo
            .store
            .table_entries(&table)
            .iter()
            .filter_map(|e| model::bgp::learned::decode_route(&table, &e.value)),
    );
    routes.sort_by_key(|r| r.id);
    routes.dedup_by_key(|r| r.id);
    Ok(render_all(app, req, routes))
}

/// The BGP sessions of an uplink port as its gateway reports them (null
/// when it holds none).
fn bgp_status(app: &App, p: &Port) -> Value {
    let table = model::bgp::learned::status_table(p.device_id);
    let peers: Vec<Value> = app
        .topo
        .store
        .table_entries(&table)
        .iter()
        .filter_map(|e| {
            let s: model::bgp::learned::PeerStatus = serde_json::from_str(&e.value).ok()?;
            (s.port_id == Some(p.id)).then(|| crate::resources::misc::status_json(&e.key, &s))
        })
        .collect();
    if peers.is_empty() {
        Value::Null
    } else {
        serde_json::json!({ "peers": peers })
    }
}
