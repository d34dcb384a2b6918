//! The `midonet` command line: resources over the REST API.
pub fn run(_c: Command) -> std::process::ExitCode { std::process::ExitCode::SUCCESS }
#[derive(clap::Subcommand)]
pub enum Command { Version }
