//! ADD, DEL, CHECK, STATUS and GC: a container on a MidoNet bridge is a
//! port of that bridge, a static DHCP host of its subnet (the container's
//! MAC and address), a veth whose host end is bound to the port through
//! this host's agent, and a state file naming all of them (DEL and GC
//! find what to remove there; `<dataDir>/<network>/<container>-<ifname>`).

use crate::ipam::{self, Subnet};
use crate::link::{self, LinkError, Namespaces, Veth};
use crate::spec::{Added, CniError, Env, NetConf, code};
use cli::{CliError, Client};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Where attachments are remembered unless the configuration says.
pub const DATA_DIR: &str = "/var/lib/cni/midonet";
/// MTU of the container's interface when neither the configuration nor
/// the DHCP subnet gives one: a 1500 underlay less VXLAN's 50 bytes.
pub const DEFAULT_MTU: u32 = 1450;
/// Addresses tried when others win the race for them.
const PICKS: usize = 64;

/// One attachment, as its state file keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<String>,
    pub bridge: String,
    pub port: String,
    /// The DHCP subnet as its URI names it (`10.1.0.0_24`).
    pub subnet: Option<String>,
    pub mac: String,
    pub address: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub host_ifname: String,
    pub mtu: u32,
}

fn api_error(what: &str, e: CliError) -> CniError {
    match e {
        CliError::Unreachable { .. } | CliError::AgentUnreachable { .. } => {
            CniError::with(code::TRY_AGAIN, what, e)
        }
        _ => CniError::with(code::API, what, e),
    }
}

fn io_error(what: &str, e: impl ToString) -> CniError {
    CniError::with(code::IO, what, e)
}

fn link_error(what: &str, e: LinkError) -> CniError {
    match e {
        LinkError::Exists(_) => CniError::with(code::EXISTS, what, e),
        _ => CniError::with(code::IO, what, e),
    }
}

fn not_found(e: &CliError) -> bool {
    matches!(e, CliError::Api { status: 404, .. })
}

/// The host end's name: from the attachment, so DEL finds it without
/// state (15 bytes: `mc` and 13 hex digits of an FNV-1a hash).
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([b'/']).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("mc{:013x}", h & ((1 << 52) - 1))
}

pub struct Plugin {
    pub conf: NetConf,
    pub env: Env,
    api: Client,
    socket: PathBuf,
    dir: PathBuf,
}

impl Plugin {
    pub fn new(conf: NetConf, env: Env) -> Result<Plugin, CniError> {
        let mut api = Client::new(&conf.api, conf.ca.as_deref())
            .map_err(|e| CniError::with(code::INVALID_CONFIG, "the API", e))?;
        if let Some(t) = &conf.token {
            api.set_token(t.clone());
        }
        let socket = conf
            .agent_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(cli::local::DEFAULT_SOCKET));
        let dir = conf
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DATA_DIR))
            .join(&conf.name);
        Ok(Plugin {
            conf,
            env,
            api,
            socket,
            dir,
        })
    }

    fn state_path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}-{ifname}.json"))
    }

    fn read_state(&self, container_id: &str, ifname: &str) -> Option<State> {
        let text = std::fs::read_to_string(self.state_path(container_id, ifname)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written whole then renamed: a crash leaves the old or the new.
    fn write_state(&self, s: &State) -> Result<(), CniError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error("the state directory", e))?;
        let path = self.state_path(&s.container_id, &s.ifname);
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string(s).unwrap_or_default();
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| io_error("the attachment's state file", e))
    }

    /// The bridge named by `network`: by id, else by name.
    fn bridge(&self) -> Result<String, CniError> {
        let n = &self.conf.network;
        let is_uuid = n.len() == 36 && n.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if is_uuid {
            return match self.api.get(&format!("bridges/{n}")) {
                Ok(_) => Ok(n.clone()),
                Err(e) if not_found(&e) => Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!("no bridge {n} (\"network\")"),
                )),
                Err(e) => Err(api_error("reading the bridge", e)),
            };
        }
        let all = self
            .api
            .get("bridges")
            .map_err(|e| api_error("listing bridges", e))?;
        let found: Vec<&str> = all
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["name"].as_str() == Some(n))
            .filter_map(|b| b["id"].as_str())
            .collect();
        match found[..] {
            [id] => Ok(id.to_string()),
            [] => Err(CniError::new(
                code::INVALID_CONFIG,
                format!("no bridge named {n:?} (\"network\")"),
            )),
            _ => Err(CniError::new(
                code::INVALID_CONFIG,
                format!("{} bridges are named {n:?}: give its id", found.len()),
            )),
        }
    }

    /// The bridge's first DHCP subnet, with its URI key.
    fn subnet(&self, bridge: &str) -> Result<(String, Subnet), CniError> {
        let list = self
            .api
            .get(&format!("bridges/{bridge}/dhcp"))
            .map_err(|e| api_error("listing the bridge's DHCP subnets", e))?;
        let d = list.as_array().and_then(|l| l.first()).ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("bridge {bridge} has no DHCP subnet to take addresses from"),
            )
        })?;
        let prefix: Ipv4Addr = d["subnetPrefix"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| CniError::new(code::API, "a DHCP subnet without subnetPrefix"))?;
        let len = d["subnetLength"].as_u64().unwrap_or(24).min(32) as u8;
        let gateway = d["defaultGateway"].as_str().and_then(|s| s.parse().ok());
        let mtu = d["interfaceMTU"]
            .as_u64()
            .filter(|m| (68..=65535).contains(m))
            .map(|m| m as u32);
        Ok((
            format!("{prefix}_{len}"),
            Subnet {
                prefix,
                len,
                gateway,
                mtu,
            },
        ))
    }

    /// A free address of the subnet, claimed as a DHCP host with `mac`.
    fn claim_address(
        &self,
        bridge: &str,
        key: &str,
        subnet: &Subnet,
        mac: &str,
        name: &str,
    ) -> Result<Ipv4Addr, CniError> {
        let url = format!("bridges/{bridge}/dhcp/{key}/hosts");
        let hosts = self
            .api
            .get(&url)
            .map_err(|e| api_error("listing the subnet's hosts", e))?;
        let mut used: HashSet<Ipv4Addr> = hosts
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["ipAddr"].as_str()?.parse().ok())
            .collect();
        for _ in 0..PICKS {
            let Some(ip) = ipam::pick(subnet, &used) else {
                break;
            };
            let body = json!({"macAddr": mac, "ipAddr": ip.to_string(), "name": name});
            match self
                .api
                .call("POST", &url, Some("DhcpHost-v2"), Some(&body))
            {
                Ok(_) => return Ok(ip),
                // Taken meanwhile (another host's ADD won it): the next.
                Err(CliError::Api { status: 409, .. }) => {
                    used.insert(ip);
                }
                Err(e) => return Err(api_error("adding the DHCP host", e)),
            }
        }
        Err(CniError::new(
            code::NO_ADDRESS,
            format!("DHCP subnet {key} of bridge {bridge} has no free address"),
        ))
    }

    /// Removes what `s` names; what is already gone is fine.
    async fn remove(&self, ns: &Namespaces, s: &State) -> Result<(), CniError> {
        link::delete(ns, &s.host_ifname)
            .await
            .map_err(|e| link_error("deleting the veth", e))?;
        if !s.port.is_empty() {
            match self
                .api
                .call("DELETE", &format!("ports/{}", s.port), None, None)
            {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(api_error("deleting the port", e)),
            }
        }
        if let (Some(key), Some(_)) = (&s.subnet, s.address) {
            let url = format!("bridges/{}/dhcp/{key}/hosts/{}", s.bridge, s.mac);
            match self.api.call("DELETE", &url, None, None) {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(api_error("deleting the DHCP host", e)),
            }
        }
        let _ = std::fs::remove_file(self.state_path(&s.container_id, &s.ifname));
        Ok(())
    }

    pub async fn add(&self) -> Result<Value, CniError> {
        let env = &self.env;
        let ns = Namespaces::open(env.netns.as_deref(), true)
            .map_err(|e| io_error("the container's network namespace", e))?;
        if link::exists_inside(&ns, &env.ifname)
            .await
            .map_err(|e| link_error("reading the container's interfaces", e))?
        {
            return Err(CniError::new(
                code::EXISTS,
                format!("the container already has an interface {}", env.ifname),
            ));
        }
        // What an interrupted ADD left goes first.
        if let Some(old) = self.read_state(&env.container_id, &env.ifname) {
            self.remove(&ns, &old).await?;
        }
        let bridge = self.bridge()?;
        let (key, subnet) = self.subnet(&bridge)?;
        let port = self
            .api
            .create(&format!("bridges/{bridge}/ports"), "Port-v3", &json!({}))
            .map_err(|e| api_error("creating the port", e))?;
        let port_id = port["id"].as_str().unwrap_or_default().to_string();
        let uuid_bytes = parse_uuid(&port_id)
            .ok_or_else(|| CniError::new(code::API, "the API returned a port without an id"))?;
        let mac = ipam::mac_of(&uuid_bytes);
        let mut st = State {
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
            netns: env.netns.as_ref().map(|p| p.display().to_string()),
            bridge: bridge.clone(),
            port: port_id.clone(),
            mac: ipam::mac_string(&mac),
            prefix_len: subnet.len,
            gateway: subnet.gateway,
            host_ifname: host_ifname(&env.container_id, &env.ifname),
            mtu: self.conf.mtu.or(subnet.mtu).unwrap_or(DEFAULT_MTU),
            ..Default::default()
        };
        self.write_state(&st)?;
        match self.attach(&ns, &mut st, &key, &subnet, mac).await {
            Ok(a) => Ok(crate::spec::result_json(&self.conf.cni_version, &a)),
            Err(e) => {
                // Nothing half-made stays.
                if let Err(r) = self.remove(&ns, &st).await {
                    eprintln!("midonet-cni: rolling back: {r}");
                }
                Err(e)
            }
        }
    }

    async fn attach(
        &self,
        ns: &Namespaces,
        st: &mut State,
        key: &str,
        subnet: &Subnet,
        mac: [u8; 6],
    ) -> Result<Added, CniError> {
        let ip = self.claim_address(&st.bridge, key, subnet, &st.mac, &st.host_ifname)?;
        st.subnet = Some(key.to_string());
        st.address = Some(ip);
        self.write_state(st)?;
        let v = Veth {
            host: &st.host_ifname,
            ifname: &st.ifname,
            mac,
            mtu: st.mtu,
            address: ip,
            prefix_len: subnet.len,
            gateway: subnet.gateway,
        };
        let host_mac = link::create(ns, &v)
            .await
            .map_err(|e| link_error("creating the veth", e))?;
        cli::local::bind(&self.socket, &st.port, &st.host_ifname)
            .map_err(|e| api_error("binding the port through this host's agent", e))?;
        Ok(Added {
            host_ifname: st.host_ifname.clone(),
            host_mac,
            ifname: st.ifname.clone(),
            mac: st.mac.clone(),
            mtu: st.mtu,
            sandbox: st.netns.clone().unwrap_or_default(),
            address: ip,
            prefix_len: subnet.len,
            gateway: subnet.gateway,
        })
    }

    pub async fn del(&self) -> Result<(), CniError> {
        let env = &self.env;
        let ns = Namespaces::open(env.netns.as_deref(), false)
            .map_err(|e| io_error("network namespaces", e))?;
        match self.read_state(&env.container_id, &env.ifname) {
            Some(s) => self.remove(&ns, &s).await,
            // Nothing remembered: at most a veth of ours is left.
            None => link::delete(&ns, &host_ifname(&env.container_id, &env.ifname))
                .await
                .map(|_| ())
                .map_err(|e| link_error("deleting the veth", e)),
        }
    }

    pub async fn check(&self) -> Result<(), CniError> {
        let env = &self.env;
        let mismatch = |m: String| CniError::new(code::MISMATCH, m);
        let s = self
            .read_state(&env.container_id, &env.ifname)
            .ok_or_else(|| {
                CniError::new(
                    code::UNKNOWN_CONTAINER,
                    format!(
                        "no attachment of container {} on {}",
                        env.container_id, env.ifname
                    ),
                )
            })?;
        let ns = Namespaces::open(env.netns.as_deref(), true)
            .map_err(|e| io_error("the container's network namespace", e))?;
        let want = format!(
            "{}/{}",
            s.address.map(|a| a.to_string()).unwrap_or_default(),
            s.prefix_len
        );
        if let Some(prev) = self
            .conf
            .prev_result
            .as_ref()
            .and_then(crate::spec::prev_address)
            && prev != want
        {
            return Err(mismatch(format!(
                "prevResult says {prev}, the attachment has {want}"
            )));
        }
        let Some((mac, addrs)) = link::inspect_inside(&ns, &env.ifname)
            .await
            .map_err(|e| link_error("reading the container's interface", e))?
        else {
            return Err(mismatch(format!(
                "the container has no interface {}",
                env.ifname
            )));
        };
        if mac != s.mac {
            return Err(mismatch(format!(
                "{} has MAC {mac}, not {}",
                env.ifname, s.mac
            )));
        }
        if !addrs.contains(&want) {
            return Err(mismatch(format!(
                "{} has {addrs:?}, not {want}",
                env.ifname
            )));
        }
        if !link::host_exists(&ns, &s.host_ifname)
            .await
            .map_err(|e| link_error("reading the host's interfaces", e))?
        {
            return Err(mismatch(format!("the host end {} is gone", s.host_ifname)));
        }
        let port = match self.api.get(&format!("ports/{}", s.port)) {
            Ok(p) => p,
            Err(e) if not_found(&e) => {
                return Err(mismatch(format!("port {} is gone", s.port)));
            }
            Err(e) => return Err(api_error("reading the port", e)),
        };
        if port["interfaceName"].as_str() != Some(&s.host_ifname) || port["hostId"].is_null() {
            return Err(mismatch(format!(
                "port {} is not bound to {} (hostId {}, interfaceName {})",
                s.port, s.host_ifname, port["hostId"], port["interfaceName"]
            )));
        }
        Ok(())
    }

    /// Ready when the API answers and this host's agent does.
    pub fn status(&self) -> Result<(), CniError> {
        let down = |what: &str, e: CliError| CniError::with(code::NOT_AVAILABLE, what, e);
        self.api
            .get("")
            .map_err(|e| down("the MidoNet API does not answer", e))?;
        cli::local::alive(&self.socket)
            .map_err(|e| down("this host's MidoNet agent does not answer", e))?;
        Ok(())
    }

    /// Removes every attachment of this network not in the runtime's list.
    pub async fn gc(&self) -> Result<(), CniError> {
        let keep: HashSet<(String, String)> = self
            .conf
            .valid_attachments
            .iter()
            .flatten()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        let ns = Namespaces::open(None, false).map_err(|e| io_error("netlink", e))?;
        let mut first_error = None;
        for f in dir.flatten() {
            let Some(s) = std::fs::read_to_string(f.path())
                .ok()
                .and_then(|t| serde_json::from_str::<State>(&t).ok())
            else {
                continue;
            };
            if keep.contains(&(s.container_id.clone(), s.ifname.clone())) {
                continue;
            }
            if let Err(e) = self.remove(&ns, &s).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_end_name_fits_and_is_stable() {
        let a = host_ifname("abc", "eth0");
        assert_eq!(a.len(), 15);
        assert!(crate::spec::valid_ifname(&a));
        assert_eq!(a, host_ifname("abc", "eth0"));
        assert_ne!(a, host_ifname("abc", "eth1"));
        assert_ne!(a, host_ifname("abd", "eth0"));
    }

    #[test]
    fn uuid_bytes() {
        let b = parse_uuid("01234567-89ab-cdef-0123-456789abcdef").unwrap();
        assert_eq!(b[0], 0x01);
        assert_eq!(b[15], 0xef);
        assert!(parse_uuid("nope").is_none());
    }
}
