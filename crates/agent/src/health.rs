//! Health checks of load-balancer pool members, on the host the cluster
//! picked (one at a time). The cluster binds a router port on
//! 169.254.255.1/30 to this host as `hm-<router>`; here a namespace gets the
//! other end of that veth (169.254.255.2, default route via the router) and
//! a thread inside it connects to each member every `delay` seconds. After
//! `max_retries` failed connects in a row a member is reported down, after
//! one success up again; the cluster records it and the simulation stops
//! (or resumes) sending new connections to it.

use crate::cache::Cache;
use model::lb::{HEALTH_NET_LEN, HEALTH_NS_ADDR, HEALTH_PORT_ADDR};
use model::{HealthMonitor, Pool, PoolMember, Port, Router};
use rustc_hash::FxHashMap;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use topology_proto::v1::{MemberStatus, host_message::Msg};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub member: Uuid,
    pub addr: SocketAddrV4,
    pub delay: Duration,
    pub timeout: Duration,
    /// Failed connects in a row before the member is down.
    pub retries: u32,
}

/// One router's checks on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub router: Uuid,
    pub interface: String,
    pub targets: Vec<Target>,
}

/// The kinds health-check plans are made from (a batch changing none of
/// them leaves the plans as they are).
pub const KINDS: [&str; 5] = ["Port", "Router", "Pool", "HealthMonitor", "PoolMember"];

/// The checks this host runs: one plan per health-check port bound here.
pub fn plans(cache: &Cache, host: Uuid) -> Vec<Plan> {
    let mut out = Vec::new();
    // Only this host's ports can be health-check ports here: the whole
    // topology is read only when one is.
    let local: Vec<Port> = cache
        .local_ports()
        .filter(|p| p.host_id == Some(host) && p.port_address == Some(HEALTH_PORT_ADDR))
        .cloned()
        .collect();
    if local.is_empty() {
        return out;
    }
    let routers = cache.all::<Router>();
    let pools = cache.all::<Pool>();
    let monitors = cache.all::<HealthMonitor>();
    let members = cache.all::<PoolMember>();
    for p in local {
        let Some(iface) = p.interface_name.clone() else {
            continue;
        };
        let Some(lb) = routers
            .iter()
            .find(|r| r.id == p.device_id)
            .and_then(|r| r.load_balancer_id)
        else {
            continue;
        };
        let mut targets = Vec::new();
        for pool in pools
            .iter()
            .filter(|x| x.load_balancer_id == Some(lb) && x.admin_state_up)
        {
            let Some(hm) = pool
                .health_monitor_id
                .and_then(|h| monitors.iter().find(|m| m.id == h && m.admin_state_up))
            else {
                continue;
            };
            for m in members
                .iter()
                .filter(|m| m.pool_id == Some(pool.id) && m.admin_state_up)
            {
                let Some(addr) = m.address else { continue };
                targets.push(Target {
                    member: m.id,
                    addr: SocketAddrV4::new(addr, m.protocol_port as u16),
                    delay: Duration::from_secs(hm.delay.max(1) as u64),
                    timeout: Duration::from_secs(hm.timeout.max(1) as u64),
                    retries: hm.max_retries.max(1) as u32,
                });
            }
        }
        out.push(Plan {
            router: p.device_id,
            interface: iface,
            targets,
        });
    }
    out
}

struct Running {
    interface: String,
    targets: Arc<Mutex<Vec<Target>>>,
    stop: Arc<AtomicBool>,
    netns: String,
}

/// The checks running on this host, kept in line with the plans.
pub struct Monitors<R> {
    prefix: String,
    host: Uuid,
    report: R,
    running: FxHashMap<Uuid, Running>,
}

impl<R: Fn(Msg) + Clone + Send + 'static> Monitors<R> {
    pub fn new(prefix: String, host: Uuid, report: R) -> Self {
        Monitors {
            prefix,
            host,
            report,
            running: FxHashMap::default(),
        }
    }

    pub fn apply(&mut self, plans: Vec<Plan>) {
        let gone: Vec<Uuid> = self
            .running
            .iter()
            .filter(|(r, run)| {
                !plans
                    .iter()
                    .any(|p| p.router == **r && p.interface == run.interface)
            })
            .map(|(r, _)| *r)
            .collect();
        for r in gone {
            if let Some(run) = self.running.remove(&r) {
                tracing::info!(router = %r, "health checks stop here");
                stop(run);
            }
        }
        for p in plans {
            if let Some(run) = self.running.get(&p.router) {
                *run.targets.lock().unwrap_or_else(|e| e.into_inner()) = p.targets;
                continue;
            }
            let netns = format!(
                "{}{}-{}",
                self.prefix,
                &self.host.simple().to_string()[..8],
                &p.router.simple().to_string()[..8]
            );
            tracing::info!(router = %p.router, %netns, members = p.targets.len(), "health checks start here");
            let run = Running {
                interface: p.interface.clone(),
                targets: Arc::new(Mutex::new(p.targets)),
                stop: Arc::new(AtomicBool::new(false)),
                netns: netns.clone(),
            };
            let (targets, stop, report) =
                (run.targets.clone(), run.stop.clone(), self.report.clone());
            let iface = p.interface;
            let spawned = std::thread::Builder::new()
                .name("health-check".into())
                .spawn(move || check_loop(&netns, &iface, &targets, &stop, &report));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "health-check thread not started");
                continue;
            }
            self.running.insert(p.router, run);
        }
    }
}

impl<R> Drop for Monitors<R> {
    fn drop(&mut self) {
        for (_, run) in self.running.drain() {
            stop(run);
        }
    }
}

fn stop(run: Running) {
    run.stop.store(true, Ordering::Relaxed);
    // Deleting the namespace removes both ends of its veth.
    let _ = ip(&["netns", "del", &run.netns]);
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A fresh namespace holding the far end of `iface` (the near end stays in
/// the agent's namespace, where the datapath binds it).
fn attach(netns: &str, iface: &str) -> Result<(), String> {
    let _ = ip(&["netns", "del", netns]); // left over by a killed agent
    ip(&["netns", "add", netns])?;
    ip(&[
        "link", "add", iface, "type", "veth", "peer", "name", "eth0", "netns", netns,
    ])?;
    ip(&["link", "set", iface, "up"])?;
    let addr = format!("{HEALTH_NS_ADDR}/{HEALTH_NET_LEN}");
    let gw = HEALTH_PORT_ADDR.to_string();
    for args in [
        vec!["-n", netns, "link", "set", "lo", "up"],
        vec!["-n", netns, "link", "set", "eth0", "up"],
        vec!["-n", netns, "addr", "add", &addr, "dev", "eth0"],
        vec!["-n", netns, "route", "add", "default", "via", &gw],
    ] {
        ip(&args)?;
    }
    Ok(())
}

/// Moves this thread into `netns`.
fn enter(netns: &str) -> Result<(), String> {
    let f = std::fs::File::open(format!("/var/run/netns/{netns}")).map_err(|e| e.to_string())?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}

#[derive(Default)]
struct Health {
    up: Option<bool>,
    fails: u32,
    next: Option<Instant>,
}

impl Health {
    /// One check's result; `Some(up)` when the member's health changes: up
    /// on a success, down after `retries` failures in a row.
    fn judge(&mut self, ok: bool, retries: u32) -> Option<bool> {
        self.fails = if ok { 0 } else { self.fails + 1 };
        let now = if ok {
            true
        } else if self.fails >= retries {
            false
        } else {
            return None;
        };
        (self.up != Some(now)).then(|| {
            self.up = Some(now);
            now
        })
    }
}

fn check_loop(
    netns: &str,
    iface: &str,
    targets: &Mutex<Vec<Target>>,
    stop: &AtomicBool,
    report: &impl Fn(Msg),
) {
    if let Err(e) = attach(netns, iface).and_then(|_| enter(netns)) {
        tracing::warn!(%netns, error = %e, "health-check namespace not set up");
        return;
    }
    let mut health: FxHashMap<Uuid, Health> = FxHashMap::default();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let due: Vec<Target> = targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|t| {
                health
                    .get(&t.member)
                    .and_then(|h| h.next)
                    .is_none_or(|n| n <= now)
            })
            .cloned()
            .collect();
        for t in due {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let ok = TcpStream::connect_timeout(&SocketAddr::V4(t.addr), t.timeout).is_ok();
            let h = health.entry(t.member).or_default();
            h.next = Some(Instant::now() + t.delay);
            if let Some(up) = h.judge(ok, t.retries) {
                tracing::info!(member = %t.member, addr = %t.addr, up, "pool member health");
                report(Msg::Member(MemberStatus {
                    member_id: t.member.to_string(),
                    up,
                }));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topology_proto::v1::Update;

    #[test]
    fn down_after_retries_failures_up_after_one_success() {
        let mut h = Health::default();
        assert_eq!(h.judge(true, 3), Some(true));
        assert_eq!(h.judge(true, 3), None, "no change, no report");
        assert_eq!(h.judge(false, 3), None);
        assert_eq!(h.judge(false, 3), None);
        assert_eq!(h.judge(false, 3), Some(false));
        assert_eq!(h.judge(false, 3), None);
        assert_eq!(h.judge(true, 3), Some(true));
        // A flap shorter than the retries is not reported.
        assert_eq!(h.judge(false, 3), None);
        assert_eq!(h.judge(true, 3), None);
    }

    fn put(c: &mut Cache, kind: &str, id: Uuid, v: serde_json::Value) {
        c.apply(Update {
            revision: c.revision + 1,
            kind: kind.into(),
            id: id.to_string(),
            data: v.to_string().into_bytes(),
            ..Default::default()
        });
    }

    #[test]
    fn a_health_port_bound_here_yields_its_routers_monitored_members() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        let (r, lb, hm, pool, port) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let mut c = Cache::new(me);
        put(
            &mut c,
            "Router",
            r,
            serde_json::json!({"id": r, "loadBalancerId": lb}),
        );
        put(
            &mut c,
            "HealthMonitor",
            hm,
            serde_json::json!({"id": hm, "type": "TCP", "delay": 2, "timeout": 1, "maxRetries": 3}),
        );
        put(
            &mut c,
            "Pool",
            pool,
            serde_json::json!({"id": pool, "loadBalancerId": lb, "healthMonitorId": hm, "lbMethod": "ROUND_ROBIN"}),
        );
        let (m1, m2) = (Uuid::new_v4(), Uuid::new_v4());
        put(
            &mut c,
            "PoolMember",
            m1,
            serde_json::json!({"id": m1, "poolId": pool, "address": "10.0.0.5", "protocolPort": 80}),
        );
        put(
            &mut c,
            "PoolMember",
            m2,
            serde_json::json!({"id": m2, "poolId": pool, "address": "10.0.0.6", "protocolPort": 80, "adminStateUp": false}),
        );
        let hport = |host| {
            serde_json::json!({"id": port, "type": "Router", "deviceId": r, "portAddress": "169.254.255.1",
            "networkAddress": "169.254.255.0", "networkLength": 30, "hostId": host, "interfaceName": "hm-x"})
        };
        put(&mut c, "Port", port, hport(other));
        assert!(plans(&c, me).is_empty(), "another host runs the checks");
        put(&mut c, "Port", port, hport(me));
        let p = plans(&c, me);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].router, p[0].interface.as_str()), (r, "hm-x"));
        assert_eq!(
            p[0].targets,
            vec![Target {
                member: m1,
                addr: "10.0.0.5:80".parse().unwrap(),
                delay: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                retries: 3,
            }],
            "admin-down members are not checked"
        );
    }
}
