//! Talking to this host's agent over its control socket (HTTP over a unix
//! socket): `midonet bind`, `midonet unbind`, and `mm-ctl`.

use crate::client::CliError;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Where the agent listens unless told (`--socket`, `MIDONET_AGENT_SOCKET`).
pub const DEFAULT_SOCKET: &str = "/var/lib/midonet/agent/agent.sock";

#[derive(clap::Args)]
pub struct Socket {
    /// The agent's control socket.
    #[arg(long, env = "MIDONET_AGENT_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// One request to the agent; the reply's JSON body on success.
fn call(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
    let unreachable = |e: std::io::Error| CliError::AgentUnreachable {
        socket: socket.display().to_string(),
        reason: e.to_string(),
    };
    let mut s = UnixStream::connect(socket).map_err(unreachable)?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(unreachable)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(unreachable)?;
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "the agent at {} answered garbage",
                socket.display()
            ))
        })?;
    let payload = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(v);
    }
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or(payload)
        .to_string();
    Err(CliError::Api { status, message })
}

/// Binds `port` to `iface` on this host.
pub fn bind(socket: &Path, port: &str, iface: &str) -> Result<(), CliError> {
    let body = serde_json::json!({"interfaceName": iface});
    call(socket, "PUT", &format!("/binding/{port}"), Some(&body)).map(|_| ())
}

/// Unbinds `port` from this host.
pub fn unbind(socket: &Path, port: &str) -> Result<(), CliError> {
    call(socket, "DELETE", &format!("/binding/{port}"), None).map(|_| ())
}

/// A what-if trace by the agent (`midonet trace`).
pub fn trace(socket: &Path, body: &Value) -> Result<Value, CliError> {
    call(socket, "POST", "/trace", Some(body))
}

/// The agent's installed flows (`port`: only those from that port).
pub fn flows(socket: &Path, port: Option<&str>) -> Result<Value, CliError> {
    let path = match port {
        Some(p) => format!("/flows?port={p}"),
        None => "/flows".into(),
    };
    call(socket, "GET", &path, None)
}

/// Whether the agent answers on its socket (any HTTP answer will do).
pub fn alive(socket: &Path) -> Result<(), CliError> {
    match call(socket, "GET", "/binding", None) {
        Err(e @ CliError::AgentUnreachable { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// `mm-ctl`, as Nova's os-vif `midonet` plug calls it:
/// `mm-ctl --bind-port PORT_ID IFACE` or `mm-ctl --unbind-port PORT_ID`.
pub fn mm_ctl(args: &[String]) -> std::process::ExitCode {
    let socket = std::env::var_os("MIDONET_AGENT_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let done = match args {
        [flag, port, iface] if flag == "--bind-port" => bind(&socket, port, iface),
        [flag, port] if flag == "--unbind-port" => unbind(&socket, port),
        _ => {
            eprintln!("usage: mm-ctl --bind-port PORT_ID INTERFACE | --unbind-port PORT_ID");
            return std::process::ExitCode::from(2);
        }
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mm-ctl: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
