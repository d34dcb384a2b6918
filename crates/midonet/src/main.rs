//! `midonet`: one binary for every role. `midonet server` runs the cluster
//! (REST API over the NSDB); every other subcommand is the CLI.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "midonet",
    version,
    about = "MidoNet network virtualization: server and command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cluster: MidoNet REST API v5 and the topology service on the NSDB.
    Server(ServerArgs),
    /// Run an agent (midolman) for this host.
    Agent(AgentArgs),
    /// Move the NSDB between backends: `export` and `import`.
    Nsdb(NsdbArgs),
    /// Users of `midonet server --auth static`: `add` to a users file.
    User(UserArgs),
    #[command(flatten)]
    Client(cli::Command),
}

/// Where the NSDB is: the server's options, also `midonet nsdb`'s.
#[derive(Args)]
struct StoreArgs {
    /// Where the embedded NSDB keeps its data.
    #[arg(long, default_value = "/var/lib/midonet", env = "MIDONET_DATA_DIR")]
    data_dir: PathBuf,
    /// NSDB backend: `embedded` (crash-safe, the default), `memory` (lost on
    /// exit) or `zookeeper` (an ensemble several servers share; see --zookeeper).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "memory", "zookeeper"])]
    store: String,
    /// The ensemble for `--store zookeeper`: `HOST:PORT[,HOST:PORT...][/chroot]`
    /// (chroot `/midonet` when none is given).
    #[arg(long, env = "MIDONET_ZOOKEEPER", default_value = "127.0.0.1:2181")]
    zookeeper: String,
    /// With `--store zookeeper`: the log written since the last snapshot,
    /// in MiB, before the elected server takes the next (at least; also
    /// at least the last snapshot's size).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    zookeeper_compact_mib: u64,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<Arc<dyn nsdb::Store>> {
        Ok(match self.store.as_str() {
            "memory" => Arc::new(nsdb::LocalStore::in_memory()),
            "zookeeper" => Arc::new(
                nsdb::ZkStore::connect_with(
                    &self.zookeeper,
                    nsdb::Compaction {
                        min_bytes: self.zookeeper_compact_mib << 20,
                        ..Default::default()
                    },
                )
                .with_context(|| format!("connecting to ZooKeeper at {}", self.zookeeper))?,
            ),
            _ => Arc::new(
                nsdb::LocalStore::open(&self.data_dir)
                    .with_context(|| format!("opening the NSDB in {}", self.data_dir.display()))?,
            ),
        })
    }
}

#[derive(Args)]
struct NsdbArgs {
    #[command(subcommand)]
    action: NsdbAction,
    #[command(flatten)]
    nsdb: StoreArgs,
}

#[derive(Subcommand)]
enum NsdbAction {
    /// Writes every object and persistent table row, as JSON lines, to FILE
    /// (`-`: standard output). Run it with the servers stopped for the
    /// embedded store; ZooKeeper may be exported live.
    Export { file: PathBuf },
    /// Commits an export into an empty store (FILE, or `-`: standard input),
    /// with its progress on stderr.
    Import { file: PathBuf },
}

#[derive(Args)]
struct UserArgs {
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Subcommand)]
enum UserAction {
    /// Adds (or replaces) a user in a users file, created with mode 0600;
    /// the password is the first line of standard input, stored hashed.
    Add {
        /// The users file (`midonet server --users-file`).
        #[arg(long)]
        file: PathBuf,
        name: String,
        /// The project the user is confined to (none: every project).
        #[arg(long)]
        project: Option<String>,
        /// `admin`, `member` or `reader` (default: admin without a
        /// project, member with one).
        #[arg(long, value_parser = ["admin", "member", "reader"])]
        role: Option<String>,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// Address the REST API listens on.
    #[arg(long, default_value = "0.0.0.0:8181", env = "MIDONET_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    nsdb: StoreArgs,
    /// Authentication: `none` accepts everyone (MidoNet's default); `static`
    /// checks the users of --users-file.
    #[arg(long, default_value = "none", value_parser = ["none", "static"])]
    auth: String,
    /// Users for `--auth static`: a file only its owner may read (mode
    /// 0600) of `name:argon2-hash[:project[:role]]` lines, made with
    /// `midonet user add`. A user with a project (and a role other than
    /// `admin`) sees only its project's objects; role `reader` only reads.
    #[arg(long, env = "MIDONET_USERS_FILE")]
    users_file: Option<PathBuf>,
    /// TLS on the REST, Neutron and topology listeners: the server's
    /// certificate chain (PEM). Plain HTTP is then refused.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs agents' certificates: with it the topology
    /// service admits only agents with such a certificate, each as the host
    /// its certificate names.
    #[arg(long, requires = "tls_cert")]
    agent_ca: Option<PathBuf>,
    /// The URL clients reach the REST API by (`https://api.example:8181`),
    /// for the links of its answers; default: the address a request
    /// arrived on. The client's Host header is never used.
    #[arg(long, env = "MIDONET_EXTERNAL_URL", value_parser = parse_url)]
    external_url: Option<String>,
    /// The same for the Neutron API.
    #[arg(long, env = "MIDONET_NEUTRON_EXTERNAL_URL", value_parser = parse_url)]
    neutron_external_url: Option<String>,
    /// Connections each HTTP listener serves at once; more are closed.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send a request's head (and a TLS handshake).
    #[arg(long, default_value_t = 20)]
    header_timeout: u64,
    /// Seconds a client has to send a request's body.
    #[arg(long, default_value_t = 60)]
    body_timeout: u64,
    /// Lifetime of a login token, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl: u64,
    /// Address of the topology service agents connect to (gRPC).
    #[arg(long, default_value = "0.0.0.0:8088", env = "MIDONET_TOPOLOGY_LISTEN")]
    topology_listen: SocketAddr,
    /// Address the Neutron v2.0 API listens on (for the `openstack` CLI).
    #[arg(long, default_value = "0.0.0.0:9696", env = "MIDONET_NEUTRON_LISTEN")]
    neutron_listen: SocketAddr,
    /// Static tokens of the Neutron API, `TOKEN:PROJECT:ROLE[,...]` (role
    /// `admin`, or a member seeing only its project); none: every caller
    /// is the admin (`--os-auth-type none`).
    #[arg(long, env = "MIDONET_NEUTRON_TOKENS", default_value = "")]
    neutron_tokens: String,
    /// The same tokens from a file only its owner may read (mode 0600), one
    /// `TOKEN:PROJECT:ROLE` per line: they stay off the command line.
    #[arg(long, env = "MIDONET_NEUTRON_TOKENS_FILE")]
    neutron_tokens_file: Option<PathBuf>,
    /// Also run an agent in this process (an all-in-one host).
    #[arg(long)]
    agent: bool,
}

#[derive(Args)]
struct AgentArgs {
    /// The cluster's topology service; several servers' as `URL,URL,…` (the
    /// agent moves to the next when the one it uses dies).
    #[arg(long, default_value = "http://127.0.0.1:8088", env = "MIDONET_CLUSTER")]
    cluster: String,
    /// The CA (PEM) the cluster's certificate must chain to; with
    /// --tls-cert/--tls-key the agent reaches `https://` servers by mutual TLS.
    #[arg(long, env = "MIDONET_CA")]
    ca: Option<PathBuf>,
    /// This host's certificate (PEM), signed by the server's --agent-ca; it
    /// must name the host (--host-name).
    #[arg(long, env = "MIDONET_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "MIDONET_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// This host's name (default: the system host name).
    #[arg(long, env = "MIDONET_HOST_NAME")]
    host_name: Option<String>,
    /// Where the agent keeps its host id.
    #[arg(
        long,
        default_value = "/var/lib/midonet/agent",
        env = "MIDONET_STATE_DIR"
    )]
    state_dir: PathBuf,
    /// UDP port of the agent-to-agent VXLAN tunnels.
    #[arg(long, default_value_t = 6677)]
    vxlan_port: u16,
    /// Packet workers; flows are spread over them by a symmetric hash. On
    /// this 2-core class of machine one is fastest (see BENCHMARKS.md).
    #[arg(long, default_value_t = 1, env = "MIDONET_WORKERS")]
    workers: usize,
    /// Receive through TPACKET_V3 rings, handing blocks over after at most
    /// this many ms (default: batched recvmmsg, which has lower latency).
    #[arg(long, env = "MIDONET_RX_RING_MS")]
    rx_ring_ms: Option<u32>,
    /// Names of the network namespaces this agent creates (health checks of
    /// load-balancer members, BGP speakers) start with this.
    #[arg(long, default_value = agent::DEFAULT_NETNS_PREFIX)]
    netns_prefix: String,
    /// Prefixes a BGP peer of this host's uplinks may send at most: past
    /// it, bgpd cuts the session off and the peer's status says why.
    #[arg(long, default_value_t = agent::bgp::MAX_PREFIXES)]
    bgp_max_prefixes: u32,
    /// Serve Prometheus metrics (`GET /metrics`) on this address.
    #[arg(long, env = "MIDONET_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

fn system_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

fn run_agent(a: AgentArgs) -> anyhow::Result<()> {
    init_logging();
    let cfg = agent::Config {
        cluster: a.cluster,
        host_name: a.host_name.unwrap_or_else(system_host_name),
        state_dir: a.state_dir,
        vxlan_port: a.vxlan_port,
        workers: a.workers,
        rx_ring_ms: a.rx_ring_ms,
        netns_prefix: a.netns_prefix,
        bgp_max_prefixes: a.bgp_max_prefixes,
        metrics_listen: a.metrics_listen,
        tls: match (&a.ca, &a.tls_cert, &a.tls_key) {
            (Some(ca), Some(c), Some(k)) => Some(Arc::new(tls::client_config(ca, c, k)?)),
            (None, None, None) => None,
            _ => anyhow::bail!("TLS to the cluster needs all of --ca, --tls-cert and --tls-key"),
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(agent::run(cfg, stop_signal()))?;
    Ok(())
}

/// Ctrl-C or SIGTERM (what service managers send): stop cleanly, so the
/// agent removes what it created (health-check namespaces) and saves state.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn main() -> std::process::ExitCode {
    // Installed as a link named mm-ctl, it is Nova's binding tool.
    let argv: Vec<String> = std::env::args().collect();
    if argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "mm-ctl")
    {
        return cli::local::mm_ctl(&argv[1..]);
    }
    let args = Cli::parse();
    match args.command {
        Command::Server(s) => match run_server(s) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("midonet server: {e:#}");
                std::process::ExitCode::from(1)
            }
        },
        Command::Agent(a) => match run_agent(a) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("midonet agent: {e:#}");
                std::process::ExitCode::from(1)
            }
        },
        Command::User(u) => match run_user(u) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("midonet user: {e:#}");
                std::process::ExitCode::from(1)
            }
        },
        Command::Nsdb(n) => match run_nsdb(n) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("midonet nsdb: {e:#}");
                std::process::ExitCode::from(1)
            }
        },
        Command::Client(c) => cli::run(c),
    }
}

fn run_nsdb(n: NsdbArgs) -> anyhow::Result<()> {
    use std::io::{BufReader, BufWriter};
    let store = n.nsdb.open()?;
    let dash = |f: &PathBuf| f.as_os_str() == "-";
    match n.action {
        NsdbAction::Export { file } => {
            let mut out: Box<dyn std::io::Write> = if dash(&file) {
                Box::new(BufWriter::new(std::io::stdout().lock()))
            } else {
                Box::new(BufWriter::new(
                    std::fs::File::create(&file)
                        .with_context(|| format!("creating {}", file.display()))?,
                ))
            };
            let sum = nsdb::transfer::export(&*store, &mut out)?;
            eprintln!(
                "exported {} objects and {} table rows at revision {}",
                sum.objects, sum.rows, sum.revision
            );
        }
        NsdbAction::Import { file } => {
            let mut input: Box<dyn std::io::BufRead> = if dash(&file) {
                Box::new(BufReader::new(std::io::stdin().lock()))
            } else {
                Box::new(BufReader::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("opening {}", file.display()))?,
                ))
            };
            // Progress on stderr: in place on a terminal, else a line a second.
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let mut last = std::time::Instant::now();
            let mut progress = |done: usize, total: usize| {
                if tty {
                    eprint!("\rimported {done} of {total} objects and table rows");
                    if done == total {
                        eprintln!();
                    }
                } else if last.elapsed() >= std::time::Duration::from_secs(1) || done == total {
                    eprintln!("imported {done} of {total} objects and table rows");
                    last = std::time::Instant::now();
                }
            };
            let sum = nsdb::transfer::import_with_progress(&*store, &mut input, &mut progress)?;
            eprintln!(
                "imported {} objects and {} table rows; the store is at revision {}",
                sum.objects, sum.rows, sum.revision
            );
        }
    }
    Ok(())
}

/// A base URL: `http://` or `https://` and an authority.
fn parse_url(s: &str) -> Result<String, String> {
    let s = s.trim_end_matches('/');
    match s.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() && !rest.contains('/') => {
            Ok(s.to_string())
        }
        _ => Err(format!(
            "\"{s}\" is not http(s)://host[:port] (no path: the API's paths follow)"
        )),
    }
}

/// The text of a file of credentials (`flag` names it in errors), which
/// only its owner may read.
fn read_secret(flag: &str, path: &std::path::Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("{flag} {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{flag} {}: mode {mode:o} lets others read it; chmod 600 it",
            path.display()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The users of a users file that only its owner may read.
fn read_users(
    path: &std::path::Path,
) -> anyhow::Result<std::collections::HashMap<String, cluster::auth::User>> {
    let text = read_secret("--users-file", path)?;
    let users = cluster::auth::parse_users(&text)
        .map_err(|e| anyhow::anyhow!("--users-file {}: {e}", path.display()))?;
    if users.is_empty() {
        anyhow::bail!(
            "--users-file {} lists no user; add one with `midonet user add`",
            path.display()
        );
    }
    Ok(users)
}

fn run_user(u: UserArgs) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let UserAction::Add {
        file,
        name,
        project,
        role,
    } = u.action;
    if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
        anyhow::bail!("user name \"{name}\": it may hold no ':' or white space");
    }
    if project.as_deref().is_some_and(|p| p.contains(':')) {
        anyhow::bail!("a project may hold no ':'");
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        anyhow::bail!("no password on standard input (e.g. `echo \"$PW\" | midonet user add ...`)");
    }
    let old = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let mut line = format!("{name}:{}", cluster::auth::hash_password(password));
    match (&project, &role) {
        (None, None) => {}
        (p, r) => {
            line += &format!(
                ":{}:{}",
                p.as_deref().unwrap_or(""),
                r.as_deref()
                    .unwrap_or(if p.is_some() { "member" } else { "admin" })
            )
        }
    }
    let mut text: String = old
        .lines()
        .filter(|l| l.split(':').next() != Some(name.as_str()))
        .map(|l| format!("{l}\n"))
        .collect();
    text += &line;
    text.push('\n');
    cluster::auth::parse_users(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    // Written beside it and renamed: a crash leaves the old file or the new.
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &file).with_context(|| format!("replacing {}", file.display()))?;
    eprintln!("{}: user \"{name}\" added", file.display());
    Ok(())
}

fn run_server(s: ServerArgs) -> anyhow::Result<()> {
    init_logging();
    let auth = match s.auth.as_str() {
        "static" => {
            let Some(path) = &s.users_file else {
                anyhow::bail!(
                    "--auth static needs --users-file (make one with `midonet user add`)"
                );
            };
            let users = read_users(path)?;
            cluster::AuthMode::Static {
                users,
                ttl: Duration::from_secs(s.token_ttl),
            }
        }
        _ => cluster::AuthMode::None,
    };
    let store = s.nsdb.open()?;
    tracing::info!(store = %s.nsdb.store, data_dir = %s.nsdb.data_dir.display(), revision = store.revision(), "NSDB open");
    let tokens = match &s.neutron_tokens_file {
        Some(f) => {
            let text = read_secret("--neutron-tokens-file", f)?;
            let list: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            neutron::Tokens::parse(&list.join(","))
                .map_err(|e| anyhow::anyhow!("--neutron-tokens-file {}: {e}", f.display()))?
        }
        None => neutron::Tokens::parse(&s.neutron_tokens)
            .map_err(|e| anyhow::anyhow!("--neutron-tokens: {e}"))?,
    };
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(c), Some(k)) => Some(tls::acceptor(c, k)?),
        _ => {
            tracing::warn!(
                "TLS is off (no --tls-cert): the APIs and the topology service speak plain HTTP; fine on loopback, not across a network"
            );
            None
        }
    };
    if matches!(auth, cluster::AuthMode::None) {
        tracing::warn!("--auth none: every caller is an administrator");
    }
    let limits = cluster::listen::Limits {
        max_connections: s.max_connections,
        header_timeout: Duration::from_secs(s.header_timeout),
        body_timeout: Duration::from_secs(s.body_timeout),
    };
    let agent_tls = match (&s.agent_ca, &s.tls_cert, &s.tls_key) {
        (Some(ca), Some(c), Some(k)) => {
            if s.agent {
                anyhow::bail!(
                    "--agent with --agent-ca: run the agent as its own `midonet agent` with its certificate"
                );
            }
            Some(tls::server_config(c, k, Some(ca), &[b"h2"])?)
        }
        _ => {
            tracing::warn!(
                "no --agent-ca: the topology service admits any agent, as any host (a trusted underlay only)"
            );
            None
        }
    };
    let rest_cfg = cluster::listen::Listener {
        limits: limits.clone(),
        tls: tls.clone(),
        external_url: s.external_url.clone(),
    };
    let neutron_cfg = cluster::listen::Listener {
        limits,
        tls,
        external_url: s.neutron_external_url.clone(),
    };
    let app = Arc::new(cluster::App::new(store, auth));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let topo_addr = s.topology_listen;
        let topo = tokio::spawn(cluster::topology_service::serve(app.clone(), topo_addr, agent_tls, stopped(stop_rx.clone())));
        let health = tokio::spawn(cluster::health::run(app.clone()));
        let neutron = tokio::spawn(neutron::serve(app.clone(), s.neutron_listen, tokens, neutron_cfg, stopped(stop_rx.clone())));
        let agent = s.agent.then(|| {
            let cfg = agent::Config {
                // Reach our own topology service where it listens.
                cluster: if topo_addr.ip().is_unspecified() {
                    format!("http://127.0.0.1:{}", topo_addr.port())
                } else {
                    format!("http://{topo_addr}")
                },
                host_name: system_host_name(),
                state_dir: s.nsdb.data_dir.join("agent"),
                vxlan_port: 6677,
                workers: std::env::var("MIDONET_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1),
                rx_ring_ms: std::env::var("MIDONET_RX_RING_MS").ok().and_then(|v| v.parse().ok()),
                netns_prefix: agent::DEFAULT_NETNS_PREFIX.into(),
                bgp_max_prefixes: agent::bgp::MAX_PREFIXES,
                metrics_listen: None,
                tls: None,
            };
            tokio::spawn(agent::run(cfg, stopped(stop_rx.clone())))
        });
        let plugin = neutron::plugin_router(app.clone());
        let mut rest = tokio::spawn(cluster::serve(app, s.listen, plugin, rest_cfg, stopped(stop_rx.clone())));
        let mut topo = topo;
        // Stop on Ctrl-C, or when a listener fails (its error is the result).
        let failed: Option<anyhow::Error> = tokio::select! {
            _ = stop_signal() => None,
            r = &mut rest => Some(match r { Ok(Ok(())) => anyhow::anyhow!("REST API stopped"), Ok(Err(e)) => e.into(), Err(e) => e.into() }),
            r = &mut topo => Some(match r {
                Ok(Ok(())) => anyhow::anyhow!("topology service stopped"),
                Ok(Err(e)) => anyhow::Error::from(e).context(format!("topology service on {topo_addr}")),
                Err(e) => e.into(),
            }),
        };
        tracing::info!("shutting down");
        health.abort();
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), neutron).await;
        if let Some(a) = agent {
            let _ = a.await;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
    .with_context(|| format!("serving on {}", s.listen))
}
