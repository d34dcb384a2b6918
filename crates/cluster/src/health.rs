//! Load-balancer health monitoring, the cluster's part: one alive agent at
//! a time (the lowest host id; another takes over when its session ends)
//! runs every router's checks. For each router whose load balancer has a
//! pool with an active health monitor, the cluster keeps a router port on
//! 169.254.255.1/30 bound to that agent's host (interface `hm-<router>`);
//! the agent attaches a namespace to it and connects to the members from
//! there. The agent reports members up and down; their status lands here.

use crate::App;
use crate::error::ApiError;
use model::lb::{HEALTH_NET, HEALTH_NET_LEN, HEALTH_PORT_ADDR, health_interface};
use model::{
    HealthMonitor, Kind, MacAddr, Pool, PoolMember, Port, PortType, Route, RouteType, Router,
};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The host that runs health checks: the alive host with the lowest id.
fn leader(app: &App) -> Option<Uuid> {
    app.topo
        .store
        .ephemeral_entries()
        .into_iter()
        .filter_map(|(k, _)| {
            k.strip_prefix("Host/")?
                .strip_suffix("/alive")?
                .parse::<Uuid>()
                .ok()
        })
        .min()
}

/// Brings health-check ports in line with the pools and the leader.
pub fn reconcile(app: &App) -> Result<(), ApiError> {
    let leader = leader(app);
    let routers: Vec<Router> = app.topo.all()?;
    let pools: Vec<Pool> = app.topo.all()?;
    let monitors: Vec<HealthMonitor> = app.topo.all()?;
    let ports: Vec<Port> = app.topo.all()?;
    for r in &routers {
        let monitored = r.load_balancer_id.is_some_and(|lb| {
            pools.iter().any(|p| {
                p.load_balancer_id == Some(lb)
                    && p.admin_state_up
                    && p.health_monitor_id
                        .is_some_and(|h| monitors.iter().any(|m| m.id == h && m.admin_state_up))
            })
        });
        let existing = ports
            .iter()
            .find(|p| p.device_id == r.id && p.port_address == Some(HEALTH_PORT_ADDR));
        match (monitored, existing, leader) {
            (true, None, Some(h)) => {
                tracing::info!(router = %r.id, host = %h, "health-check port created");
                create_port(app, r.id, h)?;
            }
            (true, Some(p), Some(h)) if p.host_id != Some(h) => {
                tracing::info!(router = %r.id, host = %h, "health checks move to another host");
                let id = p.id;
                app.topo.write(|w| {
                    let mut p: Port = w.tx.must(id, "port")?;
                    p.previous_host_id = p.host_id;
                    p.host_id = Some(h);
                    p.interface_name = Some(health_interface(r.id));
                    w.tx.put(&p);
                    Ok(())
                })?;
            }
            (false, Some(p), _) => {
                tracing::info!(router = %r.id, "health-check port removed");
                let id = p.id;
                app.topo.write(|w| Ok(w.tx.delete(Kind::Port, id)?))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn create_port(app: &App, router: Uuid, host: Uuid) -> Result<(), ApiError> {
    app.topo.write(|w| {
        let port = Port {
            id: Uuid::new_v4(),
            port_type: PortType::Router,
            device_id: router,
            admin_state_up: true,
            tunnel_key: w.next("tunnel_key")?,
            host_id: Some(host),
            interface_name: Some(health_interface(router)),
            network_address: Some(HEALTH_NET),
            network_length: Some(HEALTH_NET_LEN),
            port_address: Some(HEALTH_PORT_ADDR),
            port_mac: Some(MacAddr::random_local(&mut rand::rng())),
            ..Default::default()
        };
        w.tx.put(&port);
        let route = |kind, dst, len, gw| Route {
            id: Uuid::new_v4(),
            route_type: Some(kind),
            src_network_addr: Some(Ipv4Addr::UNSPECIFIED),
            src_network_length: 0,
            dst_network_addr: Some(dst),
            dst_network_length: len,
            next_hop_port: Some(port.id),
            next_hop_gateway: gw,
            weight: if kind == RouteType::Local { 0 } else { 100 },
            attributes: None,
            learned: false,
            router_id: Some(router),
        };
        w.tx.put(&route(
            RouteType::Local,
            HEALTH_PORT_ADDR,
            32,
            Some(Ipv4Addr::BROADCAST),
        ));
        w.tx.put(&route(RouteType::Normal, HEALTH_NET, HEALTH_NET_LEN, None));
        Ok(())
    })
}

/// A member's health, as the checking agent saw it.
pub fn set_member_status(app: &App, member: Uuid, up: bool) -> Result<(), ApiError> {
    let status = if up { "ACTIVE" } else { "INACTIVE" };
    app.topo.write(|w| {
        let Some(mut m) = w.tx.get::<PoolMember>(member)? else {
            return Ok(());
        };
        if m.status.as_deref() != Some(status) {
            tracing::info!(%member, status, "pool member health changed");
            m.status = Some(status.into());
            w.tx.put(&m);
        }
        Ok(())
    })
}

/// Reconciles once a second until the process ends.
pub async fn run(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = reconcile(&app) {
            tracing::warn!(error = %e.message, "health monitor reconcile failed");
        }
    }
}
