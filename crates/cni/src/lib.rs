//! midonet-cni: a CNI plugin (spec 1.0.0 and 1.1.0) attaching containers
//! to MidoNet bridges (issue 14). `spec` is the contract, without I/O;
//! `ipam` picks addresses from a bridge's DHCP subnet; `link` makes the
//! veth over rtnetlink; `attach` is the workflow over the REST API and
//! this host's agent.

pub mod attach;
pub mod ipam;
pub mod link;
pub mod spec;

use spec::{CniError, Command, Env, NetConf, code};

/// What one invocation prints on stdout, and whether it succeeded.
pub fn run(env: Result<Env, CniError>, stdin: &str) -> (Option<serde_json::Value>, bool) {
    let asked = serde_json::from_str::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string));
    let version = asked.clone().unwrap_or_else(|| "1.1.0".into());
    let fail = |e: CniError| (Some(e.to_json(&version)), false);
    let env = match env {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    if env.command == Command::Version {
        return (Some(spec::version_json(asked.as_deref())), true);
    }
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if (env.command == Command::Status || env.command == Command::Gc) && conf.cni_version == "1.0.0"
    {
        return fail(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "STATUS and GC are CNI 1.1.0 commands",
        ));
    }
    let plugin = match attach::Plugin::new(conf, env) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(CniError::with(code::IO, "a runtime", e)),
    };
    let done = rt.block_on(async {
        match plugin.env.command {
            Command::Add => plugin.add().await.map(Some),
            Command::Del => plugin.del().await.map(|_| None),
            Command::Check => plugin.check().await.map(|_| None),
            Command::Status => plugin.status().map(|_| None),
            Command::Gc => plugin.gc().await.map(|_| None),
            Command::Version => Ok(None),
        }
    });
    match done {
        Ok(out) => (out, true),
        Err(e) => fail(e),
    }
}
