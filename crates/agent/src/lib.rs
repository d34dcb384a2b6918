//! `midonet agent` (midolman): registers its host with the cluster, keeps a
//! topology cache current through the topology service, binds the ports the
//! operator bound to this host, and runs the packet workflow on a worker
//! thread (simulate the first packet, install the flow, tunnel to peers).

pub mod cache;
pub mod host;
pub mod worker;

use cache::Cache;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use topology::v1::{HostInfo, HostMessage, PortState, TableEntry, WatchRequest, host_message::Msg};
use uuid::Uuid;
use worker::{Control, Event, Worker};

#[derive(Clone, Debug)]
pub struct Config {
    /// The topology service, `http://HOST:8088`.
    pub cluster: String,
    pub host_name: String,
    pub state_dir: PathBuf,
    pub vxlan_port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("state directory {0}: {1}")]
    StateDir(PathBuf, std::io::Error),
    #[error("VXLAN socket on UDP port {0}: {1}")]
    Tunnel(u16, std::io::Error),
    #[error("datapath: {0}")]
    Datapath(std::io::Error),
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let me = host::host_id(&cfg.state_dir)
        .map_err(|e| AgentError::StateDir(cfg.state_dir.clone(), e))?;
    tracing::info!(host = %me, name = %cfg.host_name, cluster = %cfg.cluster, "agent starting");
    let tunnel = datapath::Tunnel::bind(cfg.vxlan_port)
        .map_err(|e| AgentError::Tunnel(cfg.vxlan_port, e))?;
    let waker = Arc::new(datapath::Waker::new().map_err(AgentError::Datapath)?);
    let (ctl_tx, ctl_rx) = std::sync::mpsc::channel::<Control>();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let w = Worker::new(me, tunnel, ctl_rx, waker.clone(), ev_tx);
    let worker = std::thread::Builder::new()
        .name("datapath".into())
        .spawn(move || w.run())
        .map_err(AgentError::Datapath)?;
    let send = {
        let (tx, waker) = (ctl_tx.clone(), waker.clone());
        move |c: Control| {
            let _ = tx.send(c);
            waker.wake();
        }
    };

    // Session messages: the host hello, then port states and learned entries.
    // Kept so that a new session (after a reconnect) can say it all again.
    let (sess_tx, sess_rx) = mpsc::unbounded_channel::<Msg>();
    let hello = HostInfo {
        host_id: me.to_string(),
        name: cfg.host_name.clone(),
        addresses: host::interfaces()
            .into_iter()
            .flat_map(|i| i.addresses)
            .collect(),
        interfaces: host::interfaces()
            .into_iter()
            .map(|i| topology::v1::Interface {
                name: i.name,
                mac: i.mac,
                mtu: i.mtu,
                up: i.up,
                addresses: i.addresses,
            })
            .collect(),
    };
    let session = tokio::spawn(session_loop(cfg.cluster.clone(), hello, sess_rx));
    let stats_file = cfg.state_dir.join("stats.json");
    let events = {
        let sess_tx = sess_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                let msg = match ev {
                    Event::PortActive {
                        port,
                        tunnel_key,
                        active,
                    } => Msg::Port(PortState {
                        port_id: port.to_string(),
                        active,
                        tunnel_key,
                    }),
                    Event::Learned(w) => match cache::write_entry(&w) {
                        Some((table, key, value)) => Msg::Table(TableEntry {
                            table,
                            key,
                            value,
                            remove: false,
                        }),
                        None => continue,
                    },
                    Event::Stats(s) => {
                        write_stats(&stats_file, &s);
                        continue;
                    }
                };
                if sess_tx.send(msg).is_err() {
                    break;
                }
            }
        })
    };
    let watch = tokio::spawn(watch_loop(cfg.cluster.clone(), me, send.clone()));
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
    println!("midonet agent {me} ready");
    shutdown.await;
    watch.abort();
    flush.abort();
    session.abort();
    events.abort();
    send(Control::Shutdown);
    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    Ok(())
}

async fn connect(url: &str) -> Option<topology::TopologyClient<tonic::transport::Channel>> {
    match topology::TopologyClient::connect(url.to_string()).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(error = %e, "cluster not reachable yet");
            None
        }
    }
}

/// Keeps a session open, reconnecting with backoff, replaying state on each
/// new session.
async fn session_loop(url: String, hello: HostInfo, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut current: rustc_hash::FxHashMap<String, Msg> = rustc_hash::FxHashMap::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(mut client) = connect(&url).await else {
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
                tracing::warn!(error = %e, "session refused");
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

/// Datapath counters in `state_dir/stats.json`, for operators and tests.
fn write_stats(path: &std::path::Path, s: &datapath::Stats) {
    let json = format!(
        "{{\"rx\":{},\"tx\":{},\"malformed\":{},\"unknown_tunnel_key\":{},\"no_route_to_host\":{},\"tunnel_rx\":{},\"tunnel_tx\":{},\"send_errors\":{}}}\n",
        s.rx,
        s.tx,
        s.malformed,
        s.unknown_tunnel_key,
        s.no_route_to_host,
        s.tunnel_rx,
        s.tunnel_tx,
        s.send_errors
    );
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(tmp, path);
    }
}

fn remember(current: &mut rustc_hash::FxHashMap<String, Msg>, m: Msg) {
    let key = match &m {
        Msg::Port(p) => format!("port/{}", p.port_id),
        Msg::Table(t) => format!("table/{}/{}", t.table, t.key),
        Msg::Hello(_) => return,
    };
    current.insert(key, m);
}

/// Follows the topology, resuming from the last revision after a reconnect,
/// and feeds the worker.
async fn watch_loop(url: String, me: Uuid, send: impl Fn(Control)) {
    let mut cache = Cache::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(mut client) = connect(&url).await else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        backoff = Duration::from_millis(100);
        let mut stream = match client
            .watch(WatchRequest {
                after_revision: cache.revision,
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(e) => {
                tracing::warn!(error = %e, "watch refused");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        tracing::info!(after = cache.revision, "watching the topology");
        loop {
            let Some(first) = stream.next().await else {
                break;
            };
            let Ok(u) = first else { break };
            let mut consistent = cache.apply(u);
            // Take whatever else already arrived, then publish once.
            while let Ok(Some(Ok(u))) =
                tokio::time::timeout(Duration::from_millis(2), stream.next()).await
            {
                consistent = cache.apply(u);
                if !consistent {
                    continue;
                }
            }
            if consistent {
                publish(&mut cache, me, &send);
            }
        }
        tracing::warn!(
            "topology watch lost; reconnecting from revision {}",
            cache.revision
        );
    }
}

fn publish(cache: &mut Cache, me: Uuid, send: &impl Fn(Control)) {
    let (invalidate, tables) = cache.take_changes();
    if !invalidate.is_empty() {
        send(Control::Topology {
            topo: Arc::new(cache.topology(me)),
            invalidate,
        });
        send(Control::Peers(cache.tunnel_ips()));
        send(Control::Bindings(cache.bindings(me)));
    }
    let writes: Vec<_> = tables
        .iter()
        .filter_map(|(t, k, v)| cache::table_write(t, k, v.as_deref()?))
        .collect();
    if !writes.is_empty() {
        send(Control::State(writes));
    }
}
