//! The domain's operations, as every API asks for them: binding a port to
//! a host's interface, linking two ports, a router port's LOCAL route. The
//! REST API's hooks, the topology service (an agent's `mm-ctl` binding) and
//! the Neutron translation call these; each works inside the caller's
//! transaction, so one API call stays one NSDB write.

use crate::App;
use crate::error::ApiError;
use crate::topo::Writer;
use model::{
    Chain, Host, Kind, MacAddr, Object, Port, PortType, Route, RouteType, Rule, TunnelZone,
};
use std::net::Ipv4Addr;
use uuid::Uuid;

/// The LOCAL /32 route every router port address gets: packets to the
/// address are for the router itself.
pub fn local_route(port: &Port) -> Route {
    Route {
        id: Uuid::new_v4(),
        route_type: Some(RouteType::Local),
        src_network_addr: Some(Ipv4Addr::UNSPECIFIED),
        src_network_length: 0,
        dst_network_addr: Some(port.port_address.unwrap_or(Ipv4Addr::UNSPECIFIED)),
        dst_network_length: 32,
        next_hop_port: Some(port.id),
        next_hop_gateway: Some(Ipv4Addr::BROADCAST),
        weight: 0,
        attributes: None,
        learned: false,
        router_id: Some(port.device_id),
    }
}

/// Completes a new router port (a MAC when it has none, a /32 network
/// when it names none), checks it, and writes its LOCAL route; the caller
/// writes the port.
pub fn router_port_defaults(w: &mut Writer<'_>, p: &mut Port) -> Result<(), ApiError> {
    p.vlan_id = None;
    if p.port_mac.is_none() {
        p.port_mac = Some(MacAddr::random_local(&mut rand::rng()));
    }
    p.network_length.get_or_insert(32);
    p.validate()?;
    w.tx.put(&local_route(p));
    Ok(())
}

/// A new port `id` on router `router` at `addr` in `net/len`, with its
/// tunnel key and LOCAL route.
pub fn router_port(
    w: &mut Writer<'_>,
    id: Uuid,
    router: Uuid,
    addr: Ipv4Addr,
    (net, len): (Ipv4Addr, u8),
    mac: Option<MacAddr>,
) -> Result<Port, ApiError> {
    w.tx.must::<model::Router>(router, "deviceId")?;
    let mut p = Port {
        id,
        port_type: PortType::Router,
        device_id: router,
        admin_state_up: true,
        tunnel_key: w.tunnel_key()?,
        port_address: Some(addr),
        network_address: Some(net),
        network_length: Some(len),
        port_mac: mac,
        ..Default::default()
    };
    router_port_defaults(w, &mut p)?;
    w.tx.put(&p);
    Ok(p)
}

/// A normal route on `router` to `dst/len` out of `port`, through
/// `gateway` when the destination is not on the port's own network.
pub fn route(
    w: &mut Writer<'_>,
    id: Uuid,
    router: Uuid,
    (dst, len): (Ipv4Addr, u8),
    port: Uuid,
    gateway: Option<Ipv4Addr>,
) {
    w.tx.put(&Route {
        id,
        route_type: Some(RouteType::Normal),
        src_network_addr: Some(Ipv4Addr::UNSPECIFIED),
        src_network_length: 0,
        dst_network_addr: Some(dst),
        dst_network_length: len,
        next_hop_port: Some(port),
        next_hop_gateway: gateway,
        weight: 100,
        attributes: None,
        learned: false,
        router_id: Some(router),
    });
}

/// Puts `rule` into its chain at index `at` (the end when `None` or past
/// it).
pub fn add_rule(w: &mut Writer<'_>, mut rule: Rule, at: Option<usize>) -> Result<(), ApiError> {
    rule.normalize();
    let mut chain: Chain = w.tx.must(rule.chain_id, "chainId")?;
    chain.rule_ids.retain(|r| *r != rule.id);
    let at = at.unwrap_or(usize::MAX).min(chain.rule_ids.len());
    chain.rule_ids.insert(at, rule.id);
    rule.position = at as u32 + 1;
    rule.validate()?;
    w.tx.put(&chain);
    w.tx.put(&rule);
    Ok(())
}

/// A new port `id` on bridge `bridge`, with its tunnel key (what the REST
/// API's port create does for a bridge port).
pub fn bridge_port(
    w: &mut Writer<'_>,
    id: Uuid,
    bridge: Uuid,
    admin_state_up: bool,
) -> Result<Port, ApiError> {
    w.tx.must::<model::Bridge>(bridge, "deviceId")?;
    let p = Port {
        id,
        port_type: PortType::Bridge,
        device_id: bridge,
        admin_state_up,
        tunnel_key: w.tunnel_key()?,
        vlan_id: Some(0),
        ..Default::default()
    };
    w.tx.put(&p);
    Ok(p)
}

/// Links ports `a` and `b` (a router port to a bridge or router port).
pub fn link(w: &mut Writer<'_>, a: Uuid, b: Uuid) -> Result<(), ApiError> {
    if a == b {
        return Err(ApiError::bad_request("a port cannot be linked to itself"));
    }
    let mut pa: Port = w.tx.must(a, "id")?;
    let mut pb: Port = w.tx.must(b, "peerId")?;
    if pa.port_type == PortType::Bridge && pb.port_type == PortType::Bridge {
        return Err(ApiError::bad_request(
            "two bridge ports cannot be linked; link a bridge port to a router port",
        ));
    }
    for p in [&pa, &pb] {
        if let Some(q) = p.peer_id {
            return Err(ApiError::conflict(format!(
                "port {} is already linked to port {q}",
                p.id
            )));
        }
        if p.is_exterior() {
            return Err(ApiError::conflict(format!(
                "port {} is bound to a host interface",
                p.id
            )));
        }
    }
    pa.peer_id = Some(b);
    pb.peer_id = Some(a);
    w.tx.put(&pa);
    w.tx.put(&pb);
    Ok(())
}

/// Unlinks port `a` from its peer (nothing when it has none).
pub fn unlink(w: &mut Writer<'_>, a: Uuid) -> Result<(), ApiError> {
    let mut pa: Port = w.tx.must(a, "id")?;
    if let Some(peer) = pa.peer_id.take() {
        if let Some(mut pb) = w.tx.get::<Port>(peer)? {
            pb.peer_id = None;
            w.tx.put(&pb);
        }
        w.tx.put(&pa);
    }
    Ok(())
}

/// Binds `port` to interface `iface` of `host`, in its own write.
pub fn bind(app: &App, host: Uuid, port: Uuid, iface: &str) -> Result<(), ApiError> {
    app.topo.write(|w| bind_in(w, host, port, iface))
}

/// Unbinds `port` from `host`, in its own write.
pub fn unbind(app: &App, host: Uuid, port: Uuid) -> Result<(), ApiError> {
    app.topo.write(|w| unbind_in(w, host, port))
}

/// Binds `port` to interface `iface` of `host`.
pub fn bind_in(w: &mut Writer<'_>, host: Uuid, port: Uuid, iface: &str) -> Result<(), ApiError> {
    if iface.is_empty() || iface.len() > 15 {
        return Err(ApiError::bad_request(format!(
            "interfaceName: \"{iface}\" must be 1 to 15 characters"
        )));
    }
    w.tx.must::<Host>(host, "id")?;
    let mut p: Port = w.tx.must(port, "portId")?;
    if !w
        .tx
        .all::<TunnelZone>()?
        .iter()
        .any(|z| z.member(host).is_some())
    {
        return Err(ApiError::conflict(format!(
            "host {host} is in no tunnel zone; add it to one first"
        )));
    }
    if let Some(h) = p.host_id {
        return Err(ApiError::conflict(format!(
            "port {port} is already bound to host {h}"
        )));
    }
    if p.peer_id.is_some() {
        return Err(ApiError::conflict(format!(
            "port {port} is linked to another port; only unlinked ports bind"
        )));
    }
    let ports = w.tx.naming::<Port>("hostId", Kind::Host, host)?;
    if let Some(o) = ports
        .iter()
        .find(|o| o.interface_name.as_deref() == Some(iface))
    {
        return Err(ApiError::conflict(format!(
            "interface {iface} on host {host} is already bound to port {}",
            o.id
        )));
    }
    p.host_id = Some(host);
    p.interface_name = Some(iface.to_string());
    w.tx.put(&p);
    Ok(())
}

/// Unbinds `port` from `host` (its connection state stays reachable there:
/// the host is remembered as the previous one).
pub fn unbind_in(w: &mut Writer<'_>, host: Uuid, port: Uuid) -> Result<(), ApiError> {
    let mut p: Port = w.tx.must(port, "portId")?;
    if p.host_id != Some(host) {
        return Err(ApiError::not_found(format!(
            "port {port} is not bound to host {host}"
        )));
    }
    p.previous_host_id = p.host_id.take();
    p.interface_name = None;
    w.tx.put(&p);
    Ok(())
}
