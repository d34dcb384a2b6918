//! The CNI contract (spec 1.0.0 and 1.1.0), without I/O: what a runtime
//! passes (environment, configuration on stdin), what the plugin answers
//! (a result, a version document, or an error with the spec's codes).

use serde::Deserialize;
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The versions this plugin speaks; results are shaped as 1.0.0 (1.1.0
/// adds no field we fill).
pub const SUPPORTED: [&str; 2] = ["1.0.0", "1.1.0"];

/// The spec's error codes (and ours from 100 on).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin cannot add containers now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// The MidoNet API refused or failed a request.
    pub const API: u32 = 100;
    /// ADD of an interface the container already has.
    pub const EXISTS: u32 = 101;
    /// CHECK found the attachment not as added.
    pub const MISMATCH: u32 = 102;
    /// The network has no address left.
    pub const NO_ADDRESS: u32 = 103;
}

/// An error as the runtime reads it: JSON on stdout, a non-zero exit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{msg}{}", if .details.is_empty() { String::new() } else { format!(": {}", .details) })]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with(code: u32, msg: impl Into<String>, details: impl ToString) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.to_string(),
        }
    }

    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// What the runtime put in the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
}

/// The spec's rule for container ids: letters, digits, `_ . -`, not
/// starting with one of the three.
fn valid_container_id(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || "_.-".contains(x))
}

/// The kernel's rule for interface names.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

impl Env {
    /// Reads the environment through `var` (a test passes a map).
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let bad = |m: String| CniError::new(code::INVALID_ENV, m);
        let command = match var("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(other) => return Err(bad(format!("unknown CNI_COMMAND {other:?}"))),
            None => return Err(bad("CNI_COMMAND is not set".into())),
        };
        let attach = matches!(command, Command::Add | Command::Del | Command::Check);
        let mut env = Env {
            command,
            container_id: String::new(),
            netns: var("CNI_NETNS")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            ifname: String::new(),
        };
        if !attach {
            return Ok(env);
        }
        env.container_id = var("CNI_CONTAINERID").unwrap_or_default();
        if !valid_container_id(&env.container_id) {
            return Err(bad(format!(
                "CNI_CONTAINERID {:?} is not a container id (letters, digits, _ . -)",
                env.container_id
            )));
        }
        env.ifname = var("CNI_IFNAME").unwrap_or_default();
        if !valid_ifname(&env.ifname) {
            return Err(bad(format!(
                "CNI_IFNAME {:?} is not an interface name",
                env.ifname
            )));
        }
        if command != Command::Del && env.netns.is_none() {
            return Err(bad("CNI_NETNS is not set".into()));
        }
        Ok(env)
    }
}

/// One attachment GC keeps.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The plugin's configuration, as the runtime passes it on stdin.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    /// The CNI network's name (state is kept per network).
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The MidoNet REST API (`http://host:8181/midonet-api`).
    pub api: String,
    /// The bridge containers attach to: its id or its name.
    pub network: String,
    /// This host's agent's control socket.
    pub agent_socket: Option<PathBuf>,
    /// Where attachments are remembered (for DEL and GC).
    pub data_dir: Option<PathBuf>,
    /// The container interface's MTU (default: the DHCP subnet's
    /// `interfaceMTU`, else 1450, room for VXLAN on a 1500 underlay).
    pub mtu: Option<u32>,
    /// An API token (`X-Auth-Token`), for `--auth static` servers.
    pub token: Option<String>,
    /// The PEM CA of an https:// API.
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    /// Parses stdin; a version this plugin does not speak is refused.
    pub fn parse(text: &str) -> Result<NetConf, CniError> {
        let c: NetConf = serde_json::from_str(text).map_err(|e| {
            CniError::with(
                code::DECODE,
                "the network configuration is not valid JSON for midonet-cni",
                e,
            )
        })?;
        if !SUPPORTED.contains(&c.cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {:?} is not supported (this plugin speaks {})",
                    c.cni_version,
                    SUPPORTED.join(", ")
                ),
            ));
        }
        if c.api.is_empty() || !(c.api.starts_with("http://") || c.api.starts_with("https://")) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "\"api\" must be an http:// or https:// URL, not {:?}",
                    c.api
                ),
            ));
        }
        if c.network.is_empty() {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                "\"network\" (a bridge id or name) is missing",
            ));
        }
        if c.mtu.is_some_and(|m| !(68..=65535).contains(&m)) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                "\"mtu\" must be within 68 and 65535",
            ));
        }
        Ok(c)
    }
}

/// The VERSION answer.
pub fn version_json(asked: Option<&str>) -> Value {
    let v = asked.filter(|v| SUPPORTED.contains(v)).unwrap_or("1.1.0");
    json!({"cniVersion": v, "supportedVersions": SUPPORTED})
}

/// What ADD made, as the result reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    pub host_ifname: String,
    pub host_mac: String,
    pub ifname: String,
    pub mac: String,
    pub mtu: u32,
    pub sandbox: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// The ADD result (spec 1.0.0's shape): the host end, the container end
/// (in its sandbox), its address on the container end, the default route.
pub fn result_json(version: &str, a: &Added) -> Value {
    let mut ip = json!({"address": format!("{}/{}", a.address, a.prefix_len), "interface": 1});
    if let Some(g) = a.gateway {
        ip["gateway"] = json!(g.to_string());
    }
    let routes: Vec<Value> = a
        .gateway
        .map(|g| json!({"dst": "0.0.0.0/0", "gw": g.to_string()}))
        .into_iter()
        .collect();
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": a.host_ifname, "mac": a.host_mac, "mtu": a.mtu},
            {"name": a.ifname, "mac": a.mac, "mtu": a.mtu, "sandbox": a.sandbox},
        ],
        "ips": [ip],
        "routes": routes,
        "dns": {},
    })
}

/// The container's address in a previous result, if it names one.
pub fn prev_address(prev: &Value) -> Option<String> {
    prev["ips"]
        .as_array()?
        .iter()
        .find_map(|i| i["address"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::read(|k| m.get(k).cloned())
    }

    #[test]
    fn environment_per_command() {
        let add = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(add.command, Command::Add);
        assert_eq!(add.netns, Some(PathBuf::from("/run/netns/x")));
        // DEL without a namespace (it may be gone) is fine; ADD is not.
        assert!(
            env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "eth0")
            ])
            .is_ok()
        );
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
        // VERSION needs nothing else.
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
        for (k, v) in [
            ("CNI_COMMAND", "FROB"),
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_IFNAME", "a/b"),
            ("CNI_IFNAME", "sixteen-chars-xx"),
        ] {
            let mut p = vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", "/run/netns/x"),
                ("CNI_IFNAME", "eth0"),
            ];
            p.retain(|(x, _)| *x != k);
            p.push((k, v));
            assert_eq!(env(&p).unwrap_err().code, code::INVALID_ENV, "{k}={v}");
        }
        assert_eq!(env(&[]).unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn configuration_errors_carry_the_spec_codes() {
        let ok = r#"{"cniVersion":"1.0.0","name":"n","type":"midonet-cni","api":"http://127.0.0.1:8181/midonet-api","network":"net-a"}"#;
        assert_eq!(NetConf::parse(ok).unwrap().network, "net-a");
        assert_eq!(NetConf::parse("{").unwrap_err().code, code::DECODE);
        let old = ok.replace("1.0.0", "0.3.1");
        assert_eq!(
            NetConf::parse(&old).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        let noapi = ok.replace("http://127.0.0.1:8181/midonet-api", "localhost");
        assert_eq!(
            NetConf::parse(&noapi).unwrap_err().code,
            code::INVALID_CONFIG
        );
        let nonet = ok.replace("net-a", "");
        assert_eq!(
            NetConf::parse(&nonet).unwrap_err().code,
            code::INVALID_CONFIG
        );
        let gc = r#"{"cniVersion":"1.1.0","name":"n","type":"midonet-cni","api":"http://a","network":"b",
            "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#;
        assert_eq!(
            NetConf::parse(gc).unwrap().valid_attachments.unwrap()[0].container_id,
            "c1"
        );
    }

    #[test]
    fn result_and_error_shapes() {
        let a = Added {
            host_ifname: "mc0123456789abc".into(),
            host_mac: "aa:bb:cc:dd:ee:ff".into(),
            ifname: "eth0".into(),
            mac: "02:00:00:00:00:01".into(),
            mtu: 1450,
            sandbox: "/run/netns/x".into(),
            address: "10.1.0.5".parse().unwrap(),
            prefix_len: 24,
            gateway: Some("10.1.0.1".parse().unwrap()),
        };
        let r = result_json("1.1.0", &a);
        assert_eq!(r["interfaces"][1]["sandbox"], "/run/netns/x");
        assert_eq!(r["ips"][0]["address"], "10.1.0.5/24");
        assert_eq!(r["ips"][0]["interface"], 1);
        assert_eq!(r["routes"][0]["gw"], "10.1.0.1");
        assert_eq!(prev_address(&r).as_deref(), Some("10.1.0.5/24"));
        let e = CniError::with(code::API, "no bridge", "HTTP 404");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 100, "msg": "no bridge", "details": "HTTP 404"})
        );
        assert_eq!(version_json(Some("1.0.0"))["cniVersion"], "1.0.0");
        assert_eq!(version_json(Some("9.9.9"))["cniVersion"], "1.1.0");
    }
}
