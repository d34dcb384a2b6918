//! BGP, mirrors, L2 insertions, trace requests, service containers, VTEPs,
//! tenants and the system state.

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::rest::{Links, Resource, link, opt_link};
use crate::topo::Writer;
use model::{
    BgpNetwork, BgpPeer, Bridge, Chain, L2Insertion, Mirror, PortGroup, Router, ServiceContainer,
    ServiceContainerGroup, TraceRequest, Vtep,
};
use serde_json::{Value, json};
use uuid::Uuid;

impl Resource for BgpNetwork {
    const PATH: &'static str = "bgp_networks";
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
}

impl Resource for BgpPeer {
    const PATH: &'static str = "bgp_peers";
    fn links(&self, app: &App, base: &str, m: &mut Links) {
        m.insert("router".into(), opt_link(base, "routers", self.router_id));
        m.insert("status".into(), peer_status(app, self));
    }
    fn parent(&self) -> Option<Uuid> {
        self.router_id
    }
    fn set_parent(&mut self, _w: &mut Writer<'_>, parent: Uuid) -> Result<(), ApiError> {
        self.router_id = Some(parent);
        Ok(())
    }
    fn on_update(&mut self, old: &Self, _w: &mut Writer<'_>) -> Result<(), ApiError> {
        self.router_id = old.router_id;
        Ok(())
    }
}

impl Resource for Mirror {
    const PATH: &'static str = "mirrors";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert("toPort".into(), opt_link(base, "ports", self.to_port_id));
    }
}

impl Resource for L2Insertion {
    const PATH: &'static str = "l2insertions";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert("port".into(), opt_link(base, "ports", self.port_id));
        m.insert("srvPort".into(), opt_link(base, "ports", self.srv_port_id));
    }
    fn matches(&self, req: &Req) -> bool {
        let want = |k: &str| req.query.get(k).and_then(|s| Uuid::parse_str(s).ok());
        want("port").is_none_or(|p| self.port_id == Some(p))
            && want("srv_port").is_none_or(|p| self.srv_port_id == Some(p))
    }
}

impl Resource for TraceRequest {
    const PATH: &'static str = "traces";
}

impl Resource for ServiceContainerGroup {
    const PATH: &'static str = "service_container_groups";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert(
            "serviceContainers".into(),
            link(
                base,
                format!("service_container_groups/{}/service_containers", self.id),
            ),
        );
    }
}

impl Resource for ServiceContainer {
    const PATH: &'static str = "service_containers";
    fn parent(&self) -> Option<Uuid> {
        self.service_group_id
    }
    fn set_parent(&mut self, _w: &mut Writer<'_>, parent: Uuid) -> Result<(), ApiError> {
        self.service_group_id = Some(parent);
        Ok(())
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        // Status fields are reported by the container's host.
        self.status_code = None;
        self.status_message = None;
        self.host_id = None;
        self.namespace_name = None;
        self.interface_name = None;
        Ok(())
    }
}

impl Resource for Vtep {
    const PATH: &'static str = "vteps";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert(
            "bindings".into(),
            link(base, format!("vteps/{}/bindings", self.id)),
        );
        m.insert(
            "ports".into(),
            link(base, format!("vteps/{}/ports", self.id)),
        );
        m.insert(
            "vtepBindingTemplate".into(),
            link(
                base,
                format!("vteps/{}/bindings/{{portName}}/{{vlanId}}", self.id),
            ),
        );
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        // Without an OVSDB connection the switch is known by address only.
        self.connection_state = Some("DISCONNECTED".into());
        self.name = None;
        self.description = None;
        self.tunnel_ip_addrs.clear();
        Ok(())
    }
}

/// A VTEP's bindings and ports need its OVSDB server; without one both are empty.
pub fn vtep_empty(app: &App, req: &Req) -> Result<Resp, ApiError> {
    app.topo.must::<Vtep>(req.id("id")?)?;
    Ok(Resp::json(json!([])))
}

pub fn system_state(_app: &App, req: &Req) -> Result<Resp, ApiError> {
    Ok(Resp::json(json!({
        "state": "ACTIVE",
        "availability": "READWRITE",
        "version": "5.0.0",
        "information": null,
        "uri": format!("{}/system_state", req.base),
    })))
}

fn tenant_json(base: &str, id: &str) -> Value {
    json!({
        "id": id, "name": id, "description": id, "enabled": true,
        "uri": format!("{base}/tenants/{id}"),
        "routers": format!("{base}/routers?tenant_id={id}"),
        "bridges": format!("{base}/bridges?tenant_id={id}"),
        "chains": format!("{base}/chains?tenant_id={id}"),
        "portGroups": format!("{base}/port_groups?tenant_id={id}"),
    })
}

/// Tenants are the distinct tenant ids of the tenant-owned objects.
pub fn tenants(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let mut ids: Vec<String> = Vec::new();
    ids.extend(
        app.topo
            .all::<Router>()?
            .into_iter()
            .filter_map(|o| o.tenant_id),
    );
    ids.extend(
        app.topo
            .all::<Bridge>()?
            .into_iter()
            .filter_map(|o| o.tenant_id),
    );
    ids.extend(
        app.topo
            .all::<Chain>()?
            .into_iter()
            .filter_map(|o| o.tenant_id),
    );
    ids.extend(
        app.topo
            .all::<PortGroup>()?
            .into_iter()
            .filter_map(|o| o.tenant_id),
    );
    ids.sort();
    ids.dedup();
    Ok(Resp::json(Value::Array(
        ids.iter()
            .filter(|t| !t.is_empty())
            .map(|t| tenant_json(&req.base, t))
            .collect(),
    )))
}

pub fn tenant(_app: &App, req: &Req) -> Result<Resp, ApiError> {
    Ok(Resp::json(tenant_json(&req.base, req.param("id"))))
}

pub fn group_containers(app: &App, req: &Req) -> Result<Resp, ApiError> {
    crate::rest::list_under::<ServiceContainer, ServiceContainerGroup>(app, req)
}

/// A peer's session as its gateway reports it; without a report, why
/// none runs when the model says (no uplink of the router holds the
/// peer's address, or the router has no AS number).
fn peer_status(app: &App, peer: &BgpPeer) -> Value {
    use model::bgp::learned::{PeerStatus, status_table};
    let Some(router) = peer.router_id else {
        return Value::Null;
    };
    let reported = app
        .topo
        .store
        .table_entries(&status_table(router))
        .into_iter()
        .find(|e| e.key == peer.id.to_string())
        .and_then(|e| serde_json::from_str::<PeerStatus>(&e.value).ok());
    if let Some(s) = reported {
        return status_json(&peer.id.to_string(), &s);
    }
    let why = match app.topo.get::<Router>(router) {
        Ok(Some(r)) if r.as_number <= 0 => Some(format!("router {router} has no asNumber")),
        Ok(Some(_)) => {
            let in_uplink = peer.address.is_some_and(|a| {
                app.topo
                    .naming::<model::Port>("deviceId", model::Kind::Router, router)
                    .unwrap_or_default()
                    .iter()
                    .any(|p| match (p.network_address, p.network_length) {
                        (Some(n), Some(l)) => {
                            model::Ipv4Prefix::new(n, l).is_some_and(|x| x.contains(a))
                        }
                        _ => false,
                    })
            });
            (!in_uplink).then(|| {
                format!(
                    "address {} is in the subnet of no port of router {router}",
                    peer.address.map(|a| a.to_string()).unwrap_or_default()
                )
            })
        }
        _ => None,
    };
    json!({
        "state": if why.is_some() { "Invalid" } else { "NotRunning" },
        "message": why,
    })
}

/// A reported session, as the API shows it: its uptime in seconds while
/// it is up.
pub fn status_json(peer: &str, s: &model::bgp::learned::PeerStatus) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "peerId": peer,
        "portId": s.port_id,
        "hostId": s.host_id,
        "state": s.state,
        "uptime": s.established_at.map(|t| now.saturating_sub(t)),
        "prefixesReceived": s.prefixes_received,
        "prefixesSent": s.prefixes_sent,
        "message": s.message,
        "bfd": s.bfd,
    })
}
