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
    /// Run the cluster: MidoNet REST API v5 on the NSDB.
    Server(ServerArgs),
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(Args)]
struct ServerArgs {
    /// Address the REST API listens on.
    #[arg(long, default_value = "0.0.0.0:8181", env = "MIDONET_LISTEN")]
    listen: SocketAddr,
    /// Where the embedded NSDB keeps its data.
    #[arg(long, default_value = "/var/lib/midonet", env = "MIDONET_DATA_DIR")]
    data_dir: PathBuf,
    /// NSDB backend: `embedded` (crash-safe, the default) or `memory` (lost on exit).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "memory"])]
    store: String,
    /// Authentication: `none` accepts everyone (MidoNet's default); `static` checks --users.
    #[arg(long, default_value = "none", value_parser = ["none", "static"])]
    auth: String,
    /// Users for `--auth static`, as `user:password[,user:password...]`.
    #[arg(long, env = "MIDONET_USERS", default_value = "")]
    users: String,
    /// Lifetime of a login token, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl: u64,
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    match args.command {
        Command::Server(s) => match run_server(s) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("midonet server: {e:#}");
                std::process::ExitCode::from(1)
            }
        },
        Command::Client(c) => cli::run(c),
    }
}

fn run_server(s: ServerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let auth = match s.auth.as_str() {
        "static" => {
            let users = cluster::auth::parse_users(&s.users).map_err(anyhow::Error::msg)?;
            if users.is_empty() {
                anyhow::bail!("--auth static needs --users user:password[,...]");
            }
            cluster::AuthMode::Static {
                users,
                ttl: Duration::from_secs(s.token_ttl),
            }
        }
        _ => cluster::AuthMode::None,
    };
    let store: Arc<dyn nsdb::Store> = match s.store.as_str() {
        "memory" => Arc::new(nsdb::LocalStore::in_memory()),
        _ => Arc::new(
            nsdb::LocalStore::open(&s.data_dir)
                .with_context(|| format!("opening the NSDB in {}", s.data_dir.display()))?,
        ),
    };
    tracing::info!(store = %s.store, data_dir = %s.data_dir.display(), revision = store.revision(), "NSDB open");
    let app = Arc::new(cluster::App::new(store, auth, s.listen.to_string()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        };
        cluster::serve(app, s.listen, shutdown).await
    })
    .with_context(|| format!("serving on {}", s.listen))
}
