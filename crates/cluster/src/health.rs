//! Load-balancer health monitoring, the cluster's part: one alive agent at
//! a time (the lowest host id; another takes over when its session ends)
//! runs every router's checks. For each router whose load balancer has a
//! pool with an active health monitor, the cluster keeps a router port on
//! 169.254.255.1/30 bound to that agent's host (interface `hm-<router>`);
//! the agent attaches a namespace to it and connects to the members from
//! there. The agent reports members up and down; their status lands here.
//! Of several servers on one ZooKeeper, the elected one does this.

use crate::App;
use crate::error::ApiError;
use model::lb::{HEALTH_NET, HEALTH_NET_LEN, HEALTH_PORT_ADDR, health_interface};
use model::{
    HealthMonitor, Kind, MacAddr, Pool, PoolMember, Port, PortType, Route, RouteType, Router,
};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The host that runs health checks: the alive host with the lowest id.
pub(crate) fn leader(app: &App) -> Option<Uuid> {
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

/// What a reconcile left in place: the health-check ports and their
/// routers, so that a change to anything else is known not to move checks.
#[derive(Default)]
pub struct Checked {
    ports: HashSet<Uuid>,
    routers: HashSet<Uuid>,
}

/// Brings health-check ports in line with the pools and the leader. One
/// pass over each kind (linear in the cloud), run only when something that
/// moves checks changed (see [`moves_checks`]).
pub fn reconcile(app: &App) -> Result<Checked, ApiError> {
    let leader = leader(app);
    let monitors: HashSet<Uuid> = app
        .topo
        .all::<HealthMonitor>()?
        .into_iter()
        .filter(|m| m.admin_state_up)
        .map(|m| m.id)
        .collect();
    let monitored: HashSet<Uuid> = app
        .topo
        .all::<Pool>()?
        .into_iter()
        .filter(|p| p.admin_state_up && p.health_monitor_id.is_some_and(|h| monitors.contains(&h)))
        .filter_map(|p| p.load_balancer_id)
        .collect();
    let mut existing: HashMap<Uuid, Port> = app
        .topo
        .all::<Port>()?
        .into_iter()
        .filter(is_health_port)
        .map(|p| (p.device_id, p))
        .collect();
    let mut checked = Checked::default();
    for r in app.topo.all::<Router>()? {
        let monitored = r.load_balancer_id.is_some_and(|lb| monitored.contains(&lb));
        let existing = existing.remove(&r.id);
        match (monitored, existing, leader) {
            (true, None, Some(h)) => {
                tracing::info!(router = %r.id, host = %h, "health-check port created");
                checked.ports.insert(create_port(app, r.id, h)?);
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
                checked.ports.insert(id);
            }
            (false, Some(p), _) => {
                tracing::info!(router = %r.id, "health-check port removed");
                let id = p.id;
                app.topo.write(|w| Ok(w.tx.delete(Kind::Port, id)?))?;
            }
            (_, p, _) => checked.ports.extend(p.map(|p| p.id)),
        }
        if monitored || r.load_balancer_id.is_some() {
            checked.routers.insert(r.id);
        }
    }
    Ok(checked)
}

fn is_health_port(p: &Port) -> bool {
    p.port_type == PortType::Router && p.port_address == Some(HEALTH_PORT_ADDR)
}

fn create_port(app: &App, router: Uuid, host: Uuid) -> Result<Uuid, ApiError> {
    app.topo.write(|w| {
        let port = Port {
            id: Uuid::new_v4(),
            port_type: PortType::Router,
            device_id: router,
            admin_state_up: true,
            tunnel_key: w.tunnel_key()?,
            host_id: Some(host),
            interface_name: Some(health_interface(router)),
            network_address: Some(HEALTH_NET),
            network_length: Some(HEALTH_NET_LEN),
            port_address: Some(HEALTH_PORT_ADDR),
            port_mac: Some(MacAddr::random_local(&mut rand::rng())),
            ..Default::default()
        };
        w.tx.put(&port);
        w.tx.put(&crate::ops::local_route(&port));
        w.tx.put(&Route {
            id: Uuid::new_v4(),
            route_type: Some(RouteType::Normal),
            src_network_addr: Some(Ipv4Addr::UNSPECIFIED),
            src_network_length: 0,
            dst_network_addr: Some(HEALTH_NET),
            dst_network_length: HEALTH_NET_LEN,
            next_hop_port: Some(port.id),
            next_hop_gateway: None,
            weight: 100,
            attributes: None,
            learned: false,
            router_id: Some(router),
        });
        Ok(port.id)
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

/// Whether a change can move health checks: a pool, monitor or load
/// balancer; a router with a load balancer (or that had checks); a
/// health-check port; a host's liveness. A tenant's VM port or a router
/// without a load balancer does not (a cloud's ordinary churn costs nothing
/// here).
fn moves_checks(ev: &nsdb::Event, checked: &Checked) -> bool {
    let id = ev.id.parse::<Uuid>().ok();
    let put = match &ev.change {
        nsdb::Change::Put(e) => Some(&e.data),
        nsdb::Change::Deleted => None,
    };
    match ev.kind.as_str() {
        "Pool" | "HealthMonitor" | "LoadBalancer" => true,
        "Router" => {
            id.is_some_and(|i| checked.routers.contains(&i))
                || put
                    .and_then(|d| serde_json::from_slice::<Router>(d).ok())
                    .is_some_and(|r| r.load_balancer_id.is_some())
        }
        "Port" => {
            id.is_some_and(|i| checked.ports.contains(&i))
                || put
                    .and_then(|d| serde_json::from_slice::<Port>(d).ok())
                    .is_some_and(|p| is_health_port(&p))
        }
        "state" => ev.id.starts_with("Host/") && ev.id.ends_with("/alive"),
        _ => false,
    }
}

fn reconcile_logged(app: &App) -> Option<Checked> {
    match reconcile(app) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e.message, "health monitor reconcile failed");
            None
        }
    }
}

/// How long a burst of changes is gathered before one reconcile.
const SETTLE: Duration = Duration::from_millis(50);
/// A full pass this often even when nothing was heard (a safety net: it
/// reads every router and port, so it is rare; a failed reconcile is retried
/// after a second).
const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles when something that moves checks changes (a burst once,
/// after it settles), instead of re-reading everything every second.
pub async fn run(app: Arc<App>) {
    'watching: loop {
        let from = app.topo.store.revision();
        let mut checked = reconcile_off_runtime(&app).await;
        let mut watch = match app.topo.store.watch(None, from) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "health monitor cannot watch the store");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let wait = if checked.is_some() {
                RESYNC
            } else {
                Duration::from_secs(1)
            };
            let due = tokio::time::Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(due, watch.next()).await {
                    Ok(None) => continue 'watching,
                    Ok(Some(ev)) if checked.as_ref().is_some_and(|c| !moves_checks(&ev, c)) => {}
                    Ok(Some(_)) => {
                        tokio::time::sleep(SETTLE).await;
                        while watch.try_next().is_some() {}
                        break;
                    }
                    Err(_) => break,
                }
            }
            checked = reconcile_off_runtime(&app).await;
        }
    }
}

/// A reconcile reads whole kinds: off the runtime's threads. Only the
/// server that leads `health` reconciles (servers sharing a ZooKeeper
/// elect one); the others ask again every second, so one takes over when
/// the leader dies.
async fn reconcile_off_runtime(app: &Arc<App>) -> Option<Checked> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        if !app.topo.store.lead("health") {
            return None;
        }
        reconcile_logged(&app)
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMode;
    use model::LoadBalancer;

    fn put<T: model::Object>(app: &App, o: &T) {
        app.topo
            .write(|w| {
                w.tx.put(o);
                Ok(())
            })
            .unwrap();
    }

    fn health_port(app: &App, router: Uuid) -> Option<Port> {
        app.topo
            .all::<Port>()
            .unwrap()
            .into_iter()
            .find(|p| p.device_id == router && p.port_address == Some(HEALTH_PORT_ADDR))
    }

    #[test]
    fn only_what_moves_checks_wakes_the_reconciler() {
        let ev = |kind: &str, id: Uuid, data: Option<serde_json::Value>| nsdb::Event {
            revision: 1,
            kind: kind.into(),
            id: id.to_string(),
            change: match data {
                Some(d) => nsdb::Change::Put(nsdb::Entry {
                    data: d.to_string().into_bytes().into(),
                    version: 1,
                    mod_revision: 1,
                }),
                None => nsdb::Change::Deleted,
            },
        };
        let (vm, hp, r) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut checked = Checked::default();
        checked.ports.insert(hp);
        let bridge_port =
            serde_json::json!({"id": vm, "type": "Bridge", "deviceId": Uuid::new_v4()});
        assert!(!moves_checks(&ev("Port", vm, Some(bridge_port)), &checked));
        assert!(!moves_checks(&ev("Port", vm, None), &checked));
        assert!(!moves_checks(
            &ev("Router", r, Some(serde_json::json!({"id": r}))),
            &checked
        ));
        assert!(!moves_checks(&ev("Rule", vm, None), &checked));
        let health = serde_json::json!({"id": Uuid::new_v4(), "type": "Router", "deviceId": r,
            "portAddress": HEALTH_PORT_ADDR.to_string()});
        assert!(moves_checks(
            &ev("Port", Uuid::new_v4(), Some(health)),
            &checked
        ));
        assert!(
            moves_checks(&ev("Port", hp, None), &checked),
            "a health port deleted"
        );
        let with_lb = serde_json::json!({"id": r, "loadBalancerId": Uuid::new_v4()});
        assert!(moves_checks(&ev("Router", r, Some(with_lb)), &checked));
        assert!(moves_checks(&ev("Pool", vm, None), &checked));
    }

    #[test]
    fn the_lowest_alive_host_gets_the_checks_and_keeps_them_until_it_dies() {
        let store: Arc<dyn nsdb::Store> = Arc::new(nsdb::LocalStore::in_memory());
        let app = App::new(store.clone(), AuthMode::None);
        let (r, lb, hm) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        put(
            &app,
            &Router {
                id: r,
                load_balancer_id: Some(lb),
                ..Default::default()
            },
        );
        put(
            &app,
            &LoadBalancer {
                id: lb,
                admin_state_up: true,
                router_id: Some(r),
            },
        );
        let pool = Pool {
            id: Uuid::new_v4(),
            load_balancer_id: Some(lb),
            lb_method: Some("ROUND_ROBIN".into()),
            admin_state_up: true,
            ..Default::default()
        };
        put(&app, &pool);
        // No monitor yet: no port.
        reconcile(&app).unwrap();
        assert!(health_port(&app, r).is_none());
        put(
            &app,
            &HealthMonitor {
                id: hm,
                monitor_type: Some("TCP".into()),
                delay: 1,
                timeout: 1,
                max_retries: 2,
                admin_state_up: true,
            },
        );
        put(
            &app,
            &Pool {
                health_monitor_id: Some(hm),
                ..pool.clone()
            },
        );
        // A monitor but no alive host: still nothing.
        reconcile(&app).unwrap();
        assert!(health_port(&app, r).is_none());
        let mut hosts = [Uuid::new_v4(), Uuid::new_v4()];
        hosts.sort();
        let sessions: Vec<_> = hosts
            .iter()
            .map(|h| {
                let s = store.open_session();
                store
                    .put_ephemeral(s, &format!("Host/{h}/alive"), b"1".to_vec())
                    .unwrap();
                s
            })
            .collect();
        reconcile(&app).unwrap();
        let p = health_port(&app, r).expect("a health-check port");
        assert_eq!(p.host_id, Some(hosts[0]));
        assert_eq!(
            p.interface_name.as_deref(),
            Some(health_interface(r).as_str())
        );
        let routes = app.topo.all::<Route>().unwrap();
        assert!(
            routes
                .iter()
                .any(|x| x.next_hop_port == Some(p.id) && x.dst_network_addr == Some(HEALTH_NET))
        );
        // Steady: reconciling again changes nothing.
        reconcile(&app).unwrap();
        assert_eq!(health_port(&app, r).unwrap().id, p.id);
        // The checking host dies: the next one takes over the same port.
        store.close_session(sessions[0]).unwrap();
        reconcile(&app).unwrap();
        let moved = health_port(&app, r).unwrap();
        assert_eq!(
            (moved.id, moved.host_id, moved.previous_host_id),
            (p.id, Some(hosts[1]), Some(hosts[0]))
        );
        // Members' health lands in their status.
        let m = PoolMember {
            id: Uuid::new_v4(),
            pool_id: Some(pool.id),
            address: Some(Ipv4Addr::new(10, 0, 0, 5)),
            protocol_port: 80,
            admin_state_up: true,
            ..Default::default()
        };
        put(&app, &m);
        set_member_status(&app, m.id, false).unwrap();
        assert_eq!(
            app.topo.must::<PoolMember>(m.id).unwrap().status.as_deref(),
            Some("INACTIVE")
        );
        set_member_status(&app, m.id, true).unwrap();
        assert_eq!(
            app.topo.must::<PoolMember>(m.id).unwrap().status.as_deref(),
            Some("ACTIVE")
        );
        // The monitor goes: so does the port (and its routes).
        put(
            &app,
            &Pool {
                health_monitor_id: None,
                ..pool
            },
        );
        reconcile(&app).unwrap();
        assert!(health_port(&app, r).is_none());
        assert!(
            !app.topo
                .all::<Route>()
                .unwrap()
                .iter()
                .any(|x| x.next_hop_port == Some(p.id))
        );
    }
}
