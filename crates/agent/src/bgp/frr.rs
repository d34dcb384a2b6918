//! The speakers this host runs, kept in line with the model: per uplink a
//! namespace holding bgpd and zebra (FRR), wired to the datapath by a veth
//! whose far end has the port's address and MAC; zebra streams the routes
//! bgpd selects to the agent over FPM (a socket the agent listens on inside
//! that namespace); every few seconds the sessions' state is read with
//! vtysh. Learned routes and session status go to the cluster as entries
//! of this host's session, so they vanish with it.

use super::fpm::{Reader, RouteEvent};
use super::{Link, Plan, Speaker, frr_config, plan};
use model::bgp::learned;
use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use topology_proto::v1::{TableEntry, host_message::Msg};
use uuid::Uuid;

/// Where FRR's daemons are (Debian's `frr`).
const FRR_DIR: &str = "/usr/lib/frr";
/// A speaker's daemons, in the order they start: zebra first (the others
/// connect to it), bfdd before bgpd (which asks it for BFD sessions).
const DAEMONS: [&str; 3] = ["zebra", "bfdd", "bgpd"];
/// How often the sessions' state is read.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// What the controller is told.
pub enum Input {
    /// The speakers this host should run now.
    Wanted(Vec<Speaker>),
    /// Routes zebra selected (or dropped) for one speaker.
    Routes(Uuid, Vec<RouteEvent>),
    /// Stop every speaker and return.
    Stop,
}

struct Running {
    speaker: Speaker,
    netns: String,
    dir: PathBuf,
    daemons: Vec<Child>,
    socks: Vec<Arc<datapath::PortSocket>>,
    fpm: tokio::task::JoinHandle<()>,
    /// Learned routes by prefix: each gateway's entry key.
    routes: FxHashMap<(Ipv4Addr, u8), Vec<String>>,
    learned: usize,
    status: FxHashMap<Uuid, learned::PeerStatus>,
}

/// The controller's settings.
pub struct Settings {
    pub host: Uuid,
    pub state_dir: PathBuf,
    pub netns_prefix: String,
    pub workers: usize,
    pub rx_ring_ms: Option<u32>,
    /// Learned routes kept per speaker at most (beyond, they are dropped
    /// and the status says so); bgpd also cuts off a peer sending more
    /// than its `maximum-prefix`.
    pub max_routes: usize,
}

/// Runs the speakers until the input ends (then stops them all).
pub async fn run<S, W>(
    cfg: Settings,
    mut rx: mpsc::UnboundedReceiver<Input>,
    tx: mpsc::UnboundedSender<Input>,
    session: S,
    send_to: W,
) where
    S: Fn(Msg),
    W: Fn(usize, crate::worker::Control),
{
    let mut running: FxHashMap<Uuid, Running> = FxHashMap::default();
    let mut tick = tokio::time::interval(STATUS_EVERY);
    cleanup_stale(&cfg).await;
    loop {
        tokio::select! {
            i = rx.recv() => match i {
                Some(Input::Wanted(w)) => {
                    let have: Vec<Speaker> = running.values().map(|r| r.speaker.clone()).collect();
                    let p = plan(&have, &w);
                    if p != Plan::default() {
                        apply(&cfg, &mut running, p, &tx, &session).await;
                        for s in w {
                            if let Some(r) = running.get_mut(&s.port) {
                                r.speaker = s;
                            }
                        }
                        links_to_workers(&cfg, &running, &send_to);
                    }
                }
                Some(Input::Routes(port, events)) => {
                    if let Some(r) = running.get_mut(&port) {
                        learn(&cfg, r, events, &session);
                    }
                }
                Some(Input::Stop) | None => break,
            },
            _ = tick.tick() => {
                for r in running.values_mut() {
                    report_status(&cfg, r, &session).await;
                }
            }
        }
    }
    for (_, r) in running.drain() {
        stop(r, &session).await;
    }
}

fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

fn netns_of(cfg: &Settings, port: Uuid) -> String {
    format!(
        "{}{}-bgp-{}",
        cfg.netns_prefix,
        short(cfg.host),
        short(port)
    )
}

/// The near end of the veth, in the agent's namespace.
fn veth_of(port: Uuid) -> String {
    format!("bgp{}", short(port))
}

fn bgp_dir(cfg: &Settings) -> PathBuf {
    cfg.state_dir.join("bgp")
}

/// A killed agent leaves its daemons and namespaces behind: those named in
/// its pid files are stopped (by PID), its namespaces deleted.
async fn cleanup_stale(cfg: &Settings) {
    let Ok(dirs) = std::fs::read_dir(bgp_dir(cfg)) else {
        return;
    };
    for d in dirs.flatten() {
        for daemon in DAEMONS {
            if let Some(pid) = std::fs::read_to_string(d.path().join(format!("{daemon}.pid")))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                && is_daemon(pid, daemon)
            {
                // SAFETY: a plain kill(2) of a PID our previous run started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Some(port) = d.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()) {
            let _ = ip(&["netns", "del", &netns_of(cfg, port)]).await;
        }
        let _ = std::fs::remove_dir_all(d.path());
    }
}

/// Whether PID `pid` still runs `daemon` (a PID reused since is left alone).
fn is_daemon(pid: i32, daemon: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == daemon)
}

async fn apply<S: Fn(Msg)>(
    cfg: &Settings,
    running: &mut FxHashMap<Uuid, Running>,
    p: Plan,
    tx: &mpsc::UnboundedSender<Input>,
    session: &S,
) {
    for port in &p.stop {
        if let Some(r) = running.remove(port) {
            tracing::info!(port = %port, "BGP speaker stops");
            stop(r, session).await;
        }
    }
    for (port, lines) in p.reconfigure {
        let Some(r) = running.get_mut(&port) else {
            continue;
        };
        let mut args = vec!["configure terminal".to_string()];
        args.extend(lines);
        match vtysh(&r.dir, &args).await {
            Ok(_) => tracing::info!(port = %port, "BGP speaker reconfigured"),
            Err(e) => tracing::warn!(port = %port, error = %e, "BGP speaker not reconfigured"),
        }
    }
    for s in p.start {
        if running.contains_key(&s.port) {
            continue;
        }
        match start(cfg, &s, tx).await {
            Ok(r) => {
                tracing::info!(port = %s.port, netns = %r.netns, neighbors = s.neighbors.len(), "BGP speaker started");
                running.insert(s.port, r);
            }
            Err(e) => {
                tracing::warn!(port = %s.port, error = %e, "BGP speaker not started");
                let _ = ip(&["netns", "del", &netns_of(cfg, s.port)]).await;
            }
        }
    }
}

/// One `ip` command, awaited (the agent's runtime thread does not block
/// on it).
async fn ip(args: &[&str]) -> Result<(), String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
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

/// The uid and gid FRR's daemons run as (they read their files as it).
fn frr_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"frr") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

async fn start(
    cfg: &Settings,
    s: &Speaker,
    tx: &mpsc::UnboundedSender<Input>,
) -> Result<Running, String> {
    let netns = netns_of(cfg, s.port);
    let veth = veth_of(s.port);
    let dir = bgp_dir(cfg).join(s.port.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = ip(&["netns", "del", &netns]).await;
    let _ = ip(&["link", "del", &veth]).await;
    ip(&["netns", "add", &netns]).await?;
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
    ])
    .await?;
    ip(&["link", "set", &veth, "up"]).await?;
    let addr = format!("{}/{}", s.address, s.prefix_len);
    let mut steps = vec![
        vec!["-n", &netns, "link", "set", "lo", "up"],
        vec!["-n", &netns, "addr", "add", &addr, "dev", "eth0"],
    ];
    let mac = s.mac.map(|m| m.to_string());
    if let Some(m) = mac.as_deref() {
        steps.push(vec!["-n", &netns, "link", "set", "eth0", "address", m]);
    }
    steps.push(vec!["-n", &netns, "link", "set", "eth0", "up"]);
    for a in steps {
        ip(&a).await?;
    }
    // The datapath's end: one socket per worker, as a bound port's.
    let socks = (0..cfg.workers)
        .map(|_| datapath::PortSocket::open(&veth, cfg.workers > 1, cfg.rx_ring_ms).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{veth}: {e}"))?;
    // zebra connects to its FPM address inside the namespace: the agent
    // listens there before zebra starts.
    let listener = listen_in(&netns).map_err(|e| format!("FPM listener in {netns}: {e}"))?;
    let fpm = tokio::spawn(fpm_loop(listener, s.port, tx.clone()));
    std::fs::write(dir.join("zebra.conf"), super::ZEBRA_CONFIG)
        .and_then(|_| std::fs::write(dir.join("bfdd.conf"), super::bfd_config(s)))
        .and_then(|_| std::fs::write(dir.join("bgpd.conf"), frr_config(s)))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some((uid, gid)) = frr_ids() {
        for f in ["", "zebra.conf", "bfdd.conf", "bgpd.conf"] {
            let _ = std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid));
        }
        let _ = std::os::unix::fs::chown(bgp_dir(cfg), None, None);
    }
    let mut daemons = Vec::new();
    let d = dir.display().to_string();
    for daemon in DAEMONS {
        let extra = match daemon {
            "zebra" => vec!["-M".to_string(), "dplane_fpm_nl".into()],
            // bfdd's control socket in the speaker's own directory.
            "bfdd" => vec!["--bfdctl".to_string(), format!("{d}/bfdd.sock")],
            _ => vec!["-p".to_string(), "179".into()],
        };
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &netns, &format!("{FRR_DIR}/{daemon}")])
            .args(["-N", &format!("mn{}", short(s.port))])
            .args(["--vty_socket", &d])
            .args(["-f", &format!("{d}/{daemon}.conf")])
            .args(["-i", &format!("{d}/{daemon}.pid")])
            .args(["-z", &format!("{d}/zserv.api")])
            .args(["--log", &format!("file:{d}/{daemon}.log")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c.spawn().map_err(|e| format!("{daemon}: {e}"))?;
        daemons.push(child);
        if daemon == "zebra" {
            // bgpd needs zebra's socket.
            let sock = dir.join("zserv.api");
            for _ in 0..50 {
                if sock.exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    Ok(Running {
        speaker: s.clone(),
        netns,
        dir,
        daemons,
        socks,
        fpm,
        routes: FxHashMap::default(),
        learned: 0,
        status: FxHashMap::default(),
    })
}

/// A TCP listener on 127.0.0.1:2620 inside `netns` (a socket stays in the
/// namespace it was made in; the thread that makes it enters and exits).
fn listen_in(netns: &str) -> std::io::Result<tokio::net::TcpListener> {
    let path = format!("/var/run/netns/{netns}");
    let l = std::thread::scope(|sc| {
        sc.spawn(|| -> std::io::Result<std::net::TcpListener> {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&path)?;
            // SAFETY: setns on a valid namespace fd; only this short-lived
            // thread moves.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::net::TcpListener::bind("127.0.0.1:2620")
        })
        .join()
        .map_err(|_| std::io::Error::other("FPM listener thread panicked"))?
    })?;
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}

/// zebra's FPM connections, one at a time (it reconnects after a break and
/// sends every route again).
async fn fpm_loop(l: tokio::net::TcpListener, port: Uuid, tx: mpsc::UnboundedSender<Input>) {
    use tokio::io::AsyncReadExt;
    loop {
        let Ok((mut conn, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tracing::debug!(%port, "zebra connected over FPM");
        let mut reader = Reader::default();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match reader.push(&buf[..n]) {
                Ok(ev) if ev.is_empty() => {}
                Ok(ev) => {
                    if tx.send(Input::Routes(port, ev)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(%port, error = %e, "FPM stream broken; closing it");
                    break;
                }
            }
        }
    }
}

fn entry(table: String, key: String, value: String, remove: bool) -> Msg {
    Msg::Table(TableEntry {
        table,
        key,
        value,
        remove,
    })
}

/// Route events of one speaker into its router's learned routes: one
/// entry per gateway in the uplink's subnet, at most `max_routes`.
fn learn<S: Fn(Msg)>(cfg: &Settings, r: &mut Running, events: Vec<RouteEvent>, session: &S) {
    let s = &r.speaker;
    let table = learned::routes_table(s.router);
    let in_subnet = |g: &Ipv4Addr| super::in_subnet(*g, s.address, s.prefix_len);
    for ev in events {
        let (prefix, len, gateways) = match ev {
            RouteEvent::Learned {
                prefix,
                len,
                gateways,
            } => (prefix, len, gateways),
            RouteEvent::Withdrawn { prefix, len } => (prefix, len, Vec::new()),
        };
        let keys: Vec<(String, Ipv4Addr)> = gateways
            .iter()
            .filter(|g| in_subnet(g))
            .map(|g| (learned::route_key(prefix, len, *g, s.port), *g))
            .collect();
        let old = r.routes.remove(&(prefix, len)).unwrap_or_default();
        for k in &old {
            if !keys.iter().any(|(n, _)| n == k) {
                session(entry(table.clone(), k.clone(), String::new(), true));
                r.learned -= 1;
            }
        }
        let mut kept = Vec::new();
        for (k, g) in keys {
            if old.contains(&k) {
                kept.push(k);
                continue;
            }
            if r.learned >= cfg.max_routes {
                tracing::warn!(port = %s.port, max = cfg.max_routes, route = %format!("{prefix}/{len}"), "learned route dropped: the speaker's cap is reached");
                continue;
            }
            let route = learned::route(Uuid::new_v4(), s.router, s.port, prefix, len, g);
            let Ok(v) = serde_json::to_string(&route) else {
                continue;
            };
            session(entry(table.clone(), k.clone(), v, false));
            r.learned += 1;
            kept.push(k);
        }
        if !kept.is_empty() {
            r.routes.insert((prefix, len), kept);
        }
    }
}

async fn stop<S: Fn(Msg)>(mut r: Running, session: &S) {
    r.fpm.abort();
    for c in r.daemons.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    // Deleting the namespace removes both ends of its veth.
    let _ = ip(&["netns", "del", &r.netns]).await;
    let table = learned::routes_table(r.speaker.router);
    for k in r.routes.values().flatten() {
        session(entry(table.clone(), k.clone(), String::new(), true));
    }
    let status = learned::status_table(r.speaker.router);
    for peer in r.status.keys() {
        session(entry(status.clone(), peer.to_string(), String::new(), true));
    }
    let _ = std::fs::remove_dir_all(&r.dir);
}

/// Every worker gets the links of every speaker, with its own socket.
fn links_to_workers(
    cfg: &Settings,
    running: &FxHashMap<Uuid, Running>,
    send_to: &impl Fn(usize, crate::worker::Control),
) {
    for i in 0..cfg.workers {
        let links = running
            .values()
            .filter_map(|r| {
                Some(Link {
                    uplink: r.speaker.port,
                    address: r.speaker.address,
                    peers: r.speaker.neighbors.iter().map(|n| n.address).collect(),
                    sock: r.socks.get(i)?.clone(),
                })
            })
            .collect();
        send_to(i, crate::worker::Control::Speakers(links));
    }
}

async fn vtysh(dir: &Path, commands: &[String]) -> Result<String, String> {
    let mut c = tokio::process::Command::new("vtysh");
    c.arg("--vty_socket").arg(dir);
    for cmd in commands {
        c.arg("-c").arg(cmd);
    }
    let out = tokio::time::timeout(Duration::from_secs(10), c.output())
        .await
        .map_err(|_| "vtysh timed out".to_string())?
        .map_err(|e| format!("vtysh: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "vtysh: {} {}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Reads the sessions' state and reports what changed.
async fn report_status<S: Fn(Msg)>(cfg: &Settings, r: &mut Running, session: &S) {
    let Ok(text) = vtysh(&r.dir, &["show bgp ipv4 unicast summary json".to_string()]).await else {
        return;
    };
    let bfd = if r.speaker.neighbors.iter().any(|n| n.bfd.is_some()) {
        vtysh(&r.dir, &["show bfd peers json".to_string()])
            .await
            .ok()
    } else {
        None
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let table = learned::status_table(r.speaker.router);
    for (peer, mut st) in super::status_of(&r.speaker, &text, bfd.as_deref(), now) {
        st.host_id = Some(cfg.host);
        if r.learned >= cfg.max_routes {
            st.message = Some(format!(
                "this speaker holds {} learned routes, its cap: more are dropped",
                cfg.max_routes
            ));
        }
        let changed = match r.status.get(&peer) {
            None => true,
            // An uptime read a little later is not a change.
            Some(o) => {
                let moved = match (o.established_at, st.established_at) {
                    (Some(a), Some(b)) => a.abs_diff(b) > 2,
                    (a, b) => a != b,
                };
                moved
                    || learned::PeerStatus {
                        established_at: st.established_at,
                        ..o.clone()
                    } != st
            }
        };
        if changed && let Ok(v) = serde_json::to_string(&st) {
            session(entry(table.clone(), peer.to_string(), v, false));
            r.status.insert(peer, st);
        }
    }
}
