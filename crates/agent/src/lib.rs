//! `midonet agent` (midolman): registers its host with the cluster, keeps a
//! topology cache current through the topology service, binds the ports the
//! operator bound to this host, and runs the packet workflow on a worker
//! thread (simulate the first packet, install the flow, tunnel to peers).

pub mod bgp;
pub mod cache;
pub mod channel;
pub mod control;
pub mod flowstate;
pub mod health;
pub mod host;
pub mod metrics;
pub mod nat_leases;
pub mod servers;
pub mod trace;
mod worker;

use cache::Cache;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use topology_proto::v1::{
    HostInfo, HostMessage, PortState, TableEntry, WatchRequest, host_message::Msg,
};
use uuid::Uuid;
use worker::{Control, Event, Worker};

#[derive(Clone, Debug)]
pub struct Config {
    /// The topology service, `http://HOST:8088`, or several servers' as a
    /// comma-separated list: the agent moves to the next when one dies.
    pub cluster: String,
    pub host_name: String,
    pub state_dir: PathBuf,
    pub vxlan_port: u16,
    /// Packet workers; flows are spread over them by a symmetric hash.
    pub workers: usize,
    /// Receive through TPACKET_V3 rings with this block retire time (ms)
    /// instead of batched `recvmmsg`.
    pub rx_ring_ms: Option<u32>,
    /// Prefix of the network namespaces the agent creates (health checks).
    pub netns_prefix: String,
    /// TLS to the cluster (`https://` URLs): the CA and this host's certificate.
    pub tls: channel::Tls,
    /// Prefixes a BGP peer may send at most (bgpd cuts it off beyond).
    pub bgp_max_prefixes: u32,
    /// Where `GET /metrics` (Prometheus) is served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

pub const DEFAULT_NETNS_PREFIX: &str = "midonet-hm-";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("state directory {0}: {1}")]
    StateDir(PathBuf, std::io::Error),
    #[error("VXLAN socket on UDP port {0}: {1}")]
    Tunnel(u16, std::io::Error),
    #[error("datapath: {0}")]
    Datapath(std::io::Error),
    #[error("{0}")]
    Cluster(channel::ChannelError),
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let me = host::host_id(&cfg.state_dir)
        .map_err(|e| AgentError::StateDir(cfg.state_dir.clone(), e))?;
    tracing::info!(host = %me, name = %cfg.host_name, cluster = %cfg.cluster, workers = cfg.workers, "agent starting");
    let n = cfg.workers.max(1);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    // Channels first: each worker also gets its siblings', to hand them
    // connection state pushed by other hosts before the packets it concerns.
    let mut controls = Vec::with_capacity(n);
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let waker = Arc::new(datapath::Waker::new().map_err(AgentError::Datapath)?);
        let (ctl_tx, ctl_rx) = std::sync::mpsc::channel::<Control>();
        controls.push((ctl_tx, waker));
        receivers.push(ctl_rx);
    }
    let mut workers = Vec::with_capacity(n);
    for (i, ctl_rx) in receivers.into_iter().enumerate() {
        // Worker 0 receives on the tunnel port; the others only send.
        let tunnel = if i == 0 {
            datapath::Tunnel::bind(cfg.vxlan_port)
        } else {
            datapath::Tunnel::sender(cfg.vxlan_port)
        }
        .map_err(|e| AgentError::Tunnel(cfg.vxlan_port, e))?;
        let state_file = cfg.state_dir.join(format!("flowstate-{i}.bin"));
        let siblings: Vec<_> = controls
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| c.clone())
            .collect();
        let w = Worker::new(
            me,
            i,
            state_file,
            datapath::UserspaceDatapath::new(tunnel, i == 0),
            ctl_rx,
            controls[i].1.clone(),
            siblings,
            ev_tx.clone(),
        );
        let t = std::thread::Builder::new()
            .name(format!("datapath-{i}"))
            .spawn(move || w.run())
            .map_err(AgentError::Datapath)?;
        workers.push(t);
    }
    drop(ev_tx);
    let controls = Arc::new(controls);
    // Every worker gets every control message...
    let send = {
        let controls = controls.clone();
        move |c: Control| {
            for (tx, waker) in controls.iter() {
                let _ = tx.send(c.clone());
                waker.wake();
            }
        }
    };
    // Connection state saved by the previous run goes back to every worker
    // (whichever worker a connection hashes to now finds it).
    let imported = import_state(&cfg.state_dir);
    if !imported.is_empty() {
        tracing::info!(entries = imported.len(), "re-imported connection state");
        send(Control::State(imported));
    }
    // ...except its own port sockets.
    let send_to = move |i: usize, c: Control| {
        if let Some((tx, waker)) = controls.get(i) {
            let _ = tx.send(c);
            waker.wake();
        }
    };

    // Session messages: the host hello, then port states and learned entries.
    // Kept so that a new session (after a reconnect) can say it all again.
    let (sess_tx, sess_rx) = mpsc::unbounded_channel::<Msg>();
    let ifaces = host::interfaces();
    let hello = HostInfo {
        host_id: me.to_string(),
        name: cfg.host_name.clone(),
        addresses: ifaces.iter().flat_map(|i| i.addresses.clone()).collect(),
        interfaces: ifaces
            .into_iter()
            .map(|i| topology_proto::v1::Interface {
                name: i.name,
                mac: i.mac,
                mtu: i.mtu,
                up: i.up,
                addresses: i.addresses,
            })
            .collect(),
    };
    let servers = servers::Servers::parse(&cfg.cluster).with_tls(cfg.tls.clone());
    // A URL that cannot work with this TLS setting is a configuration error.
    for u in servers.urls() {
        channel::lazy(u, &servers.tls).map_err(AgentError::Cluster)?;
    }
    let (lease_tx, lease_rx) = mpsc::unbounded_channel::<nat_leases::LeaseEvent>();
    let session = tokio::spawn(session_loop(
        servers.clone(),
        hello,
        sess_rx,
        lease_tx.clone(),
    ));
    let leases = {
        let sess_tx = sess_tx.clone();
        tokio::spawn(nat_leases::run(
            nat_leases::Leases::new(
                cfg.state_dir.join("nat_blocks.json"),
                n,
                move |m| {
                    let _ = sess_tx.send(m);
                },
                send_to.clone(),
            ),
            lease_rx,
        ))
    };
    let stats_file = cfg.state_dir.join("stats.json");
    let metrics = metrics::Metrics::new(n);
    let metrics_server = cfg.metrics_listen.map(|addr| {
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, m).await {
                tracing::warn!(error = %e, %addr, "no metrics listener");
            }
        })
    });
    let events = {
        let sess_tx = sess_tx.clone();
        let send = send.clone();
        tokio::spawn(async move {
            let metrics = metrics.clone();
            while let Some(ev) = ev_rx.recv().await {
                let msg = match ev {
                    Event::Learned(w) => {
                        // Sibling workers learn it now; other hosts through the cluster.
                        if n > 1 {
                            send(Control::State(vec![w.clone()]));
                        }
                        match cache::write_entry(&w) {
                            Some((table, key, value)) => Msg::Table(TableEntry {
                                table,
                                key,
                                value,
                                remove: false,
                            }),
                            None => continue,
                        }
                    }
                    Event::Lease(e) => {
                        let _ = lease_tx.send(e);
                        continue;
                    }
                    Event::Stats(i, s) => {
                        metrics.set_stats(i, s);
                        write_stats(&stats_file, &metrics.stats());
                        continue;
                    }
                    Event::Metrics(i, m) => {
                        metrics.set(i, *m);
                        continue;
                    }
                    Event::Trace(request, record) => Msg::Trace(topology_proto::v1::TraceRecord {
                        request_id: request.to_string(),
                        data: record.to_string().into_bytes(),
                    }),
                };
                if sess_tx.send(msg).is_err() {
                    break;
                }
            }
        })
    };
    let (bgp_tx, bgp_rx) = mpsc::unbounded_channel::<bgp::frr::Input>();
    let bgp_stop = bgp_tx.clone();
    let speakers = {
        let sess_tx = sess_tx.clone();
        tokio::spawn(bgp::frr::run(
            bgp::frr::Settings {
                host: me,
                state_dir: cfg.state_dir.clone(),
                netns_prefix: cfg.netns_prefix.clone(),
                workers: n,
                rx_ring_ms: cfg.rx_ring_ms,
                // Every peer's cap, for the few peers of one uplink.
                max_routes: cfg.bgp_max_prefixes as usize * 4,
            },
            bgp_rx,
            bgp_tx.clone(),
            move |m| {
                let _ = sess_tx.send(m);
            },
            send_to.clone(),
        ))
    };
    let (bind_tx, bind_rx) = mpsc::unbounded_channel::<Vec<cache::Binding>>();
    let binder = tokio::spawn(binder_loop(
        n,
        cfg.rx_ring_ms,
        bind_rx,
        send_to.clone(),
        sess_tx.clone(),
    ));
    let monitors = {
        let sess_tx = sess_tx.clone();
        health::Monitors::new(cfg.netns_prefix.clone(), me, move |m| {
            let _ = sess_tx.send(m);
        })
    };
    let watch = tokio::spawn(watch_loop(
        servers.clone(),
        me,
        send.clone(),
        bind_tx,
        cfg.state_dir.join("topology.json"),
        monitors,
        (bgp_tx, cfg.bgp_max_prefixes),
    ));
    // SIGUSR1: drop flows and learned state, as a cold start would.
    let flush = {
        let send = send.clone();
        tokio::spawn(async move {
            let Ok(mut sig) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            else {
                return;
            };
            while sig.recv().await.is_some() {
                tracing::info!("SIGUSR1: flushing flows and learned state");
                send(Control::Flush);
            }
        })
    };
    let control = {
        let path = cfg.state_dir.join("agent.sock");
        let servers = servers.clone();
        let send = send.clone();
        let send_to = send_to.clone();
        let tracer: control::Tracer = Arc::new(move |port, probe| {
            let (tx, rx) = std::sync::mpsc::channel();
            send_to(0, Control::Trace(port, probe, tx));
            rx.recv_timeout(Duration::from_secs(2)).ok()
        });
        let dump: control::FlowDumper = Arc::new(move || {
            let (tx, rx) = std::sync::mpsc::channel();
            send(Control::DumpFlows(tx));
            let mut all = Vec::new();
            for _ in 0..n {
                match rx.recv_timeout(Duration::from_secs(2)) {
                    Ok(v) => all.extend(v),
                    Err(_) => break,
                }
            }
            all
        });
        tokio::spawn(async move {
            if let Err(e) = control::serve(path.clone(), servers, me, dump, tracer).await {
                tracing::warn!(error = %e, socket = %path.display(), "no control socket");
            }
        })
    };
    println!("midonet agent {me} ready");
    shutdown.await;
    watch.abort();
    // The speakers' daemons and namespaces go with a clean stop.
    let _ = bgp_stop.send(bgp::frr::Input::Stop);
    let _ = tokio::time::timeout(Duration::from_secs(5), speakers).await;
    control.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    binder.abort();
    flush.abort();
    leases.abort();
    session.abort();
    events.abort();
    send(Control::Shutdown);
    let _ =
        tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join()))).await;
    Ok(())
}

/// Keeps a session open, reconnecting with backoff, replaying state on each
/// new session.
async fn session_loop(
    servers: servers::Servers,
    hello: HostInfo,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    leases: mpsc::UnboundedSender<nat_leases::LeaseEvent>,
) {
    let mut current: rustc_hash::FxHashMap<String, Msg> = rustc_hash::FxHashMap::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let (at, url) = servers.current();
        let Some(mut client) = servers.connect(url).await else {
            servers.failed(at);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            // Keep collecting what to say while disconnected.
            while let Ok(m) = rx.try_recv() {
                remember(&mut current, m);
            }
            continue;
        };
        backoff = Duration::from_millis(100);
        let (out_tx, out_rx) = mpsc::unbounded_channel::<HostMessage>();
        let _ = out_tx.send(HostMessage {
            msg: Some(Msg::Hello(hello.clone())),
        });
        for m in current.values() {
            let _ = out_tx.send(HostMessage {
                msg: Some(m.clone()),
            });
        }
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx);
        let mut replies = match client.session(stream).await {
            Ok(r) => r.into_inner(),
            Err(e) => {
                tracing::warn!(error = %e, server = url, "session refused");
                servers.failed(at);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let Some(m) = m else { return };
                    remember(&mut current, m.clone());
                    if out_tx.send(HostMessage { msg: Some(m) }).is_err() { break; }
                }
                r = replies.next() => match r {
                    Some(Ok(ev)) => {
                        if ev.registered {
                            tracing::info!("{}", ev.message);
                        }
                        if let Some(l) = ev.lease {
                            // Held blocks are claimed again on a new session.
                            if l.granted && l.request_id != 0 {
                                remember(&mut current, Msg::Lease(topology_proto::v1::NatLease {
                                    device_id: l.device_id.clone(),
                                    ip: l.ip.clone(),
                                    specific: true,
                                    block: l.block,
                                    ..Default::default()
                                }));
                            }
                            let _ = leases.send(nat_leases::LeaseEvent::Reply(l));
                        }
                    }
                    _ => {
                        tracing::warn!("session with the cluster lost; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

/// The conntrack and NAT entries the workers of a previous run saved.
fn import_state(dir: &std::path::Path) -> Vec<sim::StateWrite> {
    let mut writes = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return writes;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("flowstate-")
            && name.ends_with(".bin")
            && let Ok(bytes) = std::fs::read(e.path())
        {
            writes.extend(flowstate::decode_file(&bytes));
        }
    }
    writes
}

/// Opens the sockets of this host's bound ports, one per worker and in worker
/// order (so each interface's fanout group maps the same hash to the same
/// worker), hands them to the workers, reports ports active, and retries
/// interfaces that do not exist yet.
async fn binder_loop(
    workers: usize,
    rx_ring_ms: Option<u32>,
    mut rx: mpsc::UnboundedReceiver<Vec<cache::Binding>>,
    send_to: impl Fn(usize, Control),
    session: mpsc::UnboundedSender<Msg>,
) {
    let mut desired: Vec<cache::Binding> = Vec::new();
    let mut open: rustc_hash::FxHashMap<Uuid, (cache::Binding, Vec<Arc<datapath::PortSocket>>)> =
        Default::default();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(d) => desired = d,
                None => return,
            },
            _ = retry.tick() => {
                if desired.iter().all(|b| open.contains_key(&b.port)) {
                    continue;
                }
            }
        }
        let mut changed = false;
        let gone: Vec<Uuid> = open
            .iter()
            .filter(|(_, (b, _))| !desired.contains(b))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some((b, _)) = open.remove(&id) {
                changed = true;
                tracing::info!(port = %b.port, interface = %b.interface, "port unbound");
                let _ = session.send(port_state(&b, false));
            }
        }
        for b in &desired {
            if open.contains_key(&b.port) {
                continue;
            }
            let opening = std::time::Instant::now();
            let socks: Result<Vec<_>, _> = (0..workers)
                .map(|_| {
                    datapath::PortSocket::open(&b.interface, workers > 1, rx_ring_ms).map(Arc::new)
                })
                .collect();
            match socks {
                Ok(socks) => {
                    changed = true;
                    tracing::info!(port = %b.port, interface = %b.interface,
                        opened_us = opening.elapsed().as_micros() as u64, "port bound");
                    let _ = session.send(port_state(b, true));
                    open.insert(b.port, (b.clone(), socks));
                }
                Err(e) => {
                    tracing::debug!(interface = %b.interface, error = %e, "interface not ready")
                }
            }
        }
        if changed {
            for i in 0..workers {
                let list = open
                    .values()
                    .map(|(b, s)| (b.clone(), s[i].clone()))
                    .collect();
                send_to(i, Control::Bindings(list));
            }
        }
    }
}

/// What the cluster hears of a binding: the port is (in)active here.
fn port_state(b: &cache::Binding, active: bool) -> Msg {
    Msg::Port(PortState {
        port_id: b.port.to_string(),
        active,
        tunnel_key: b.tunnel_key,
    })
}

/// Datapath counters in `state_dir/stats.json`, for operators and tests.
fn write_stats(path: &std::path::Path, all: &[datapath::Stats]) {
    let s = all
        .iter()
        .fold(datapath::Stats::default(), |a, b| a.plus(b));
    let fields = [
        ("rx", s.rx),
        ("tx", s.tx),
        ("malformed", s.malformed),
        ("unknown_tunnel_key", s.unknown_tunnel_key),
        ("no_route_to_host", s.no_route_to_host),
        ("tunnel_rx", s.tunnel_rx),
        ("tunnel_tx", s.tunnel_tx),
        ("tunnel_not_member", s.tunnel_not_member),
        ("worker_panics", s.worker_panics),
        ("send_errors", s.send_errors),
        ("bad_offload", s.bad_offload),
        ("gso_split", s.gso_split),
        ("gso_segments", s.gso_segments),
        ("gro_rx", s.gro_rx),
        ("gro_merged", s.gro_merged),
        ("frag_needed", s.frag_needed),
        ("fragmented", s.fragmented),
        ("flow_state_tx", s.flow_state_tx),
        ("flow_state_rx", s.flow_state_rx),
        ("nat_exhausted", s.nat_exhausted),
        ("flows", s.flows),
        ("conntrack", s.conntrack),
        ("nat", s.nat),
        ("state_bytes", s.state_bytes),
        ("flow_bytes", s.flow_bytes),
    ];
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let json = format!("{{{}}}\n", body.join(","));
    write_atomic(path, &json);
}

/// Replaces `path` whole, so a reader never sees half a file.
fn write_atomic(path: &std::path::Path, body: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, body).is_ok() {
        let _ = std::fs::rename(tmp, path);
    }
}

/// Keeps what a new session must be told again: port states, learned
/// entries, held SNAT blocks (granted ones; a release forgets its block).
fn remember(current: &mut rustc_hash::FxHashMap<String, Msg>, m: Msg) {
    let key = match &m {
        Msg::Port(p) => format!("port/{}", p.port_id),
        Msg::Table(t) => format!("table/{}/{}", t.table, t.key),
        Msg::Lease(l) if l.specific || l.release => {
            format!("lease/{}/{}/{}", l.device_id, l.ip, l.block)
        }
        // Health is stored by the cluster; saying it again is harmless.
        Msg::Member(m) => format!("member/{}", m.member_id),
        // A trace record is said once: one lost with a session is lost.
        Msg::Lease(_) | Msg::Hello(_) | Msg::Trace(_) => return,
    };
    match m {
        Msg::Lease(l) if l.release => {
            current.remove(&key);
        }
        // A new session starts without the old one's entries.
        Msg::Table(t) if t.remove => {
            current.remove(&key);
        }
        // Replayed claims carry no request id: their replies concern no waiter.
        Msg::Lease(l) => {
            current.insert(
                key,
                Msg::Lease(topology_proto::v1::NatLease { request_id: 0, ..l }),
            );
        }
        m => {
            current.insert(key, m);
        }
    }
}

/// Follows the topology, resuming from the last revision after a reconnect,
/// and feeds the worker.
async fn watch_loop(
    servers: servers::Servers,
    me: Uuid,
    send: impl Fn(Control),
    bind: mpsc::UnboundedSender<Vec<cache::Binding>>,
    summary: std::path::PathBuf,
    mut monitors: health::Monitors<impl Fn(Msg) + Clone + Send + 'static>,
    (speakers, max_prefixes): (mpsc::UnboundedSender<bgp::frr::Input>, u32),
) {
    let mut cache = Cache::new(me);
    let mut live = trace::Live::default();
    let mut backoff = Duration::from_millis(100);
    // Revisions are each server's own: a watch resumes only where it was.
    let mut watched: Option<usize> = None;
    loop {
        let (at, url) = servers.current();
        let Some(mut client) = servers.connect(url).await else {
            servers.failed(at);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        backoff = Duration::from_millis(100);
        let after = if watched == Some(at) {
            cache.revision
        } else {
            0
        };
        let mut stream = match client
            .watch(WatchRequest {
                after_revision: after,
                host_id: me.to_string(),
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(e) => {
                tracing::warn!(error = %e, server = url, "watch refused");
                servers.failed(at);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        watched = Some(at);
        tracing::info!(after, server = url, "watching the topology");
        // topology.json lists every object: written a while after the first
        // change it lacks, not per batch. The while is a second, or a
        // hundred times what the last write took (a gateway's lists the
        // whole cloud): at most 1% of a core however large the cloud.
        let mut summary_due: Option<tokio::time::Instant> = None;
        let mut summary_cost = Duration::ZERO;
        loop {
            let next = match summary_due {
                Some(at) => match tokio::time::timeout_at(at, stream.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        let t = std::time::Instant::now();
                        write_atomic(&summary, &cache.summary());
                        summary_cost = t.elapsed();
                        summary_due = None;
                        continue;
                    }
                },
                None => stream.next().await,
            };
            let Some(first) = next else {
                break;
            };
            let Ok(u) = first else { break };
            // The server marks where each batch of whole commits ends:
            // everything up to there is applied, then published once.
            let mut whole = u.batch_end || u.snapshot_end;
            let mut consistent = cache.apply(u);
            while !(whole && consistent) {
                // Unmarked (a server that does not mark): what arrives
                // within a while belongs together.
                let Ok(Some(Ok(u))) =
                    tokio::time::timeout(Duration::from_millis(50), stream.next()).await
                else {
                    break;
                };
                whole = u.batch_end || u.snapshot_end;
                consistent = cache.apply(u);
            }
            if consistent {
                let kinds = publish(&mut cache, &send, &bind);
                if kinds.contains(model::Kind::TraceRequest.name())
                    && let Some((set, devices)) = live.update(cache.stored())
                {
                    tracing::info!(requests = set.budgets.len(), "live trace requests changed");
                    send(Control::Traces(
                        Arc::new(set),
                        devices.into_iter().map(sim::Tag::Device).collect(),
                    ));
                }
                summary_due.get_or_insert_with(|| {
                    tokio::time::Instant::now() + (summary_cost * 100).max(Duration::from_secs(1))
                });
                if kinds.iter().any(|k| health::KINDS.contains(&k.as_str())) {
                    monitors.apply(health::plans(&cache, me));
                }
                if kinds.iter().any(|k| bgp::KINDS.contains(&k.as_str())) {
                    let local: Vec<model::Port> = cache.local_ports().cloned().collect();
                    let wanted = bgp::speakers(
                        me,
                        max_prefixes,
                        &cache.all::<model::Router>(),
                        &local,
                        &cache.stored::<model::BgpPeer>(),
                        &cache.stored::<model::BgpNetwork>(),
                    );
                    let _ = speakers.send(bgp::frr::Input::Wanted(wanted));
                }
            }
        }
        tracing::warn!(
            "topology watch lost; reconnecting from revision {}",
            cache.revision
        );
    }
}

/// Ends a batch of topology updates: the new topology, peers and bindings
/// to the workers. Returns the kinds that changed.
fn publish(
    cache: &mut Cache,
    send: &impl Fn(Control),
    bind: &mpsc::UnboundedSender<Vec<cache::Binding>>,
) -> rustc_hash::FxHashSet<String> {
    let cache::Changes {
        delta,
        tags: invalidate,
        tables,
        kinds,
    } = cache.take_changes();
    if !kinds.is_empty() {
        send(Control::Topology {
            delta: Arc::new(delta),
            invalidate,
        });
        send(Control::Peers(cache.tunnel_ips()));
        let _ = bind.send(cache.bindings());
    }
    let writes: Vec<_> = tables
        .iter()
        .filter_map(|(t, k, v)| cache::table_write(t, k, v.as_deref()?))
        .collect();
    if !writes.is_empty() {
        send(Control::State(writes));
    }
    kinds
}
