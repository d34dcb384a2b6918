//! The `midonet` command line: every resource over the REST API, with human
//! tables by default and `-o json`. Replaces `mm-ctl` for port binding.

mod client;
pub mod local;

pub use client::{CliError, Client};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value};
use std::process::ExitCode;

#[derive(Args, Clone)]
pub struct Global {
    /// REST API URL [env: MIDO_API_URL; ~/.midonetrc api_url]
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// User name [env: MIDO_USER; ~/.midonetrc username]
    #[arg(long, short = 'u', global = true)]
    pub user: Option<String>,
    /// Password [env: MIDO_PASSWORD; ~/.midonetrc password]
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// CA certificate (PEM) of an https:// API [env: MIDO_CA; ~/.midonetrc ca]
    #[arg(long, global = true)]
    pub ca: Option<String>,
    /// Tenant for lists and creates [env: MIDO_TENANT; ~/.midonetrc tenant]
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// Where a resource lives: its collection, vendor type, parent and columns.
struct Res {
    noun: &'static str,
    path: &'static str,
    ty: &'static str,
    /// (flag name, parent collection, child path) for resources created under a parent.
    parent: Option<(&'static str, &'static str, &'static str)>,
    columns: &'static [&'static str],
}

const RESOURCES: &[Res] = &[
    Res {
        noun: "router",
        path: "routers",
        ty: "Router-v3",
        parent: None,
        columns: &[
            "id",
            "name",
            "tenantId",
            "adminStateUp",
            "inboundFilterId",
            "outboundFilterId",
        ],
    },
    Res {
        noun: "bridge",
        path: "bridges",
        ty: "Bridge-v4",
        parent: None,
        columns: &[
            "id",
            "name",
            "tenantId",
            "adminStateUp",
            "inboundFilterId",
            "outboundFilterId",
        ],
    },
    Res {
        noun: "port",
        path: "ports",
        ty: "Port-v3",
        parent: None,
        columns: &[
            "id",
            "type",
            "deviceId",
            "portAddress",
            "networkLength",
            "peerId",
            "hostId",
            "interfaceName",
            "active",
        ],
    },
    Res {
        noun: "route",
        path: "routes",
        ty: "Route-v1",
        parent: Some(("router", "routers", "routes")),
        columns: &[
            "id",
            "type",
            "srcNetworkAddr",
            "srcNetworkLength",
            "dstNetworkAddr",
            "dstNetworkLength",
            "nextHopPort",
            "nextHopGateway",
            "weight",
            "learned",
        ],
    },
    Res {
        noun: "chain",
        path: "chains",
        ty: "Chain-v1",
        parent: None,
        columns: &["id", "name", "tenantId"],
    },
    Res {
        noun: "rule",
        path: "rules",
        ty: "Rule-v2",
        parent: Some(("chain", "chains", "rules")),
        columns: &[
            "id",
            "position",
            "type",
            "flowAction",
            "nwProto",
            "nwSrcAddress",
            "nwDstAddress",
            "tpDst",
        ],
    },
    Res {
        noun: "port-group",
        path: "port_groups",
        ty: "PortGroup-v1",
        parent: None,
        columns: &["id", "name", "tenantId", "stateful"],
    },
    Res {
        noun: "ip-addr-group",
        path: "ip_addr_groups",
        ty: "IpAddrGroup-v1",
        parent: None,
        columns: &["id", "name"],
    },
    Res {
        noun: "tunnel-zone",
        path: "tunnel_zones",
        ty: "TunnelZone-v1",
        parent: None,
        columns: &["id", "name", "type"],
    },
    Res {
        noun: "host",
        path: "hosts",
        ty: "Host-v3",
        parent: None,
        columns: &["id", "name", "alive", "floodingProxyWeight"],
    },
    Res {
        noun: "dhcp",
        path: "dhcp",
        ty: "DhcpSubnet-v2",
        parent: Some(("bridge", "bridges", "dhcp")),
        columns: &[
            "subnetPrefix",
            "subnetLength",
            "defaultGateway",
            "serverAddr",
            "dnsServerAddrs",
            "interfaceMTU",
            "enabled",
        ],
    },
    Res {
        noun: "load-balancer",
        path: "load_balancers",
        ty: "LoadBalancer-v1",
        parent: None,
        columns: &["id", "routerId", "adminStateUp"],
    },
    Res {
        noun: "pool",
        path: "pools",
        ty: "Pool-v1",
        parent: None,
        columns: &[
            "id",
            "loadBalancerId",
            "lbMethod",
            "healthMonitorId",
            "adminStateUp",
            "status",
        ],
    },
    Res {
        noun: "pool-member",
        path: "pool_members",
        ty: "PoolMember-v1",
        parent: None,
        columns: &[
            "id",
            "poolId",
            "address",
            "protocolPort",
            "weight",
            "adminStateUp",
            "status",
        ],
    },
    Res {
        noun: "vip",
        path: "vips",
        ty: "VIP-v1",
        parent: None,
        columns: &[
            "id",
            "poolId",
            "address",
            "protocolPort",
            "sessionPersistence",
        ],
    },
    Res {
        noun: "health-monitor",
        path: "health_monitors",
        ty: "HealthMonitor-v1",
        parent: None,
        columns: &["id", "type", "delay", "timeout", "maxRetries"],
    },
    Res {
        noun: "bgp-network",
        path: "bgp_networks",
        ty: "BgpNetwork-v1",
        parent: Some(("router", "routers", "bgp_networks")),
        columns: &["id", "subnetAddress", "subnetLength"],
    },
    Res {
        noun: "bgp-peer",
        path: "bgp_peers",
        ty: "BgpPeer-v1",
        parent: Some(("router", "routers", "bgp_peers")),
        columns: &[
            "id",
            "asNumber",
            "address",
            "holdTime",
            "bfdEnabled",
            "status.state",
            "status.bfd",
            "status.uptime",
            "status.prefixesReceived",
            "status.prefixesSent",
        ],
    },
    Res {
        noun: "trace-request",
        path: "traces",
        ty: "TraceRequest-v1",
        parent: None,
        columns: &["id", "name", "deviceType", "deviceId", "limit", "enabled"],
    },
    Res {
        noun: "mirror",
        path: "mirrors",
        ty: "Mirror-v1",
        parent: None,
        columns: &["id", "toPortId"],
    },
];

#[derive(Subcommand)]
pub enum Command {
    /// Routers.
    Router(Crud),
    /// Bridges (virtual L2 networks).
    Bridge(Crud),
    /// Ports of bridges and routers: create with --bridge or --router.
    Port(PortArgs),
    /// Routes of a router (--router).
    Route(Crud),
    /// Chains of rules.
    Chain(Crud),
    /// Rules of a chain (--chain); appended, or inserted at `position=N` (1-based).
    Rule(Crud),
    /// Port groups.
    PortGroup(GroupArgs),
    /// IP address groups.
    IpAddrGroup(GroupArgs),
    /// Tunnel zones and their members.
    TunnelZone(ZoneArgs),
    /// Hosts (hypervisors).
    Host(Crud),
    /// DHCP subnets of a bridge (--bridge); the id is `a.b.c.d_len`.
    Dhcp(Crud),
    /// L4 load balancers.
    LoadBalancer(Crud),
    /// Load-balancer pools.
    Pool(Crud),
    /// Pool members.
    PoolMember(Crud),
    /// Virtual IPs of pools.
    Vip(Crud),
    /// Health monitors.
    HealthMonitor(Crud),
    /// BGP networks a router advertises (--router).
    BgpNetwork(Crud),
    /// BGP peers of a router (--router).
    BgpPeer(Crud),
    /// Port mirrors.
    Mirror(Crud),
    /// Live trace requests: agents record the walk of each packet that
    /// matches `condition` on a device (deviceType PORT, BRIDGE or ROUTER),
    /// up to `limit` per host, while `enabled`.
    TraceRequest(TraceRequestArgs),
    /// The cluster's state.
    SystemState(Global),
    /// Binds a port to an interface of this host, through the local agent
    /// (what `mm-ctl --bind-port` does). kuryr-libnetwork runs it as its
    /// `midonet` binding: `bind PORT IFNAME ENDPOINT MAC NET PROJECT DETAILS`.
    Bind {
        port: String,
        interface: String,
        #[command(flatten)]
        socket: local::Socket,
        /// What kuryr adds after the interface (ignored).
        #[arg(hide = true, num_args = 0..)]
        kuryr: Vec<String>,
    },
    /// The flows this host's agent installed (as `ovs-appctl
    /// dpctl/dump-flows`): match, actions, packets, bytes, age.
    Flows {
        /// Only flows of packets from this port.
        #[arg(long)]
        port: Option<String>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        socket: local::Socket,
    },
    /// What-if: the walk of a probe packet from a port through the live
    /// topology and state, as this host's agent simulates it (nothing is
    /// applied): each port, bridge, router, route, rule (chain, position)
    /// and NAT binding, the verdict, the egress ports and hosts.
    Trace {
        /// The port the packet comes in on.
        #[arg(long)]
        in_port: String,
        #[arg(long, default_value = "02:00:00:00:00:01")]
        eth_src: String,
        #[arg(long, default_value = "ff:ff:ff:ff:ff:ff")]
        eth_dst: String,
        #[arg(long)]
        ip_src: String,
        #[arg(long)]
        ip_dst: String,
        /// tcp, udp or icmp.
        #[arg(long, default_value = "icmp")]
        proto: String,
        #[arg(long, default_value_t = 0)]
        src_port: u16,
        #[arg(long, default_value_t = 0)]
        dst_port: u16,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        socket: local::Socket,
    },
    /// Unbinds a port from this host, through the local agent (kuryr:
    /// `unbind PORT IFNAME ENDPOINT MAC DETAILS NET`).
    Unbind {
        port: String,
        #[command(flatten)]
        socket: local::Socket,
        /// What kuryr adds after the port (ignored).
        #[arg(hide = true, num_args = 0..)]
        kuryr: Vec<String>,
    },
}

#[derive(Args)]
pub struct Crud {
    #[command(subcommand)]
    pub verb: Verb,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Subcommand, Clone)]
pub enum Verb {
    /// List (under --bridge/--router/--chain where the resource has a parent).
    List {
        #[command(flatten)]
        parent: Parent,
    },
    /// Show one.
    Show {
        id: String,
        #[command(flatten)]
        parent: Parent,
    },
    /// Create from `field=value` pairs (camelCase or kebab-case names; values are JSON or text).
    Create {
        fields: Vec<String>,
        #[command(flatten)]
        parent: Parent,
    },
    /// Change `field=value` pairs of one.
    Update {
        id: String,
        fields: Vec<String>,
        #[command(flatten)]
        parent: Parent,
    },
    /// Delete one.
    Delete {
        id: String,
        #[command(flatten)]
        parent: Parent,
    },
}

#[derive(Args, Clone, Default)]
pub struct Parent {
    #[arg(long)]
    pub bridge: Option<String>,
    #[arg(long)]
    pub router: Option<String>,
    #[arg(long)]
    pub chain: Option<String>,
}

#[derive(Args)]
pub struct PortArgs {
    #[command(subcommand)]
    pub verb: PortVerb,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Subcommand)]
pub enum PortVerb {
    #[command(flatten)]
    Crud(Verb),
    /// Link two ports (a router port to a bridge or router port).
    Link { port: String, peer: String },
    /// Unlink a port from its peer.
    Unlink { port: String },
    /// Bind a port to an interface on a host (the mm-ctl role).
    Bind {
        port: String,
        host: String,
        interface: String,
    },
    /// Remove a port's host binding.
    Unbind { port: String },
}

#[derive(Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub verb: GroupVerb,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Subcommand)]
pub enum GroupVerb {
    #[command(flatten)]
    Crud(Verb),
    /// Add a member: a port id (port groups) or an address (IP address groups).
    Add { group: String, member: String },
    /// Remove a member.
    Remove { group: String, member: String },
    /// List the members.
    Members { group: String },
}

#[derive(Args)]
pub struct TraceRequestArgs {
    #[command(subcommand)]
    pub verb: TraceRequestVerb,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Subcommand)]
pub enum TraceRequestVerb {
    #[command(flatten)]
    Crud(Verb),
    /// The walks the agents recorded, oldest first.
    Results { id: String },
}

#[derive(Args)]
pub struct ZoneArgs {
    #[command(subcommand)]
    pub verb: ZoneVerb,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Subcommand)]
pub enum ZoneVerb {
    #[command(flatten)]
    Crud(Verb),
    /// Add a host with its tunnel address.
    AddMember {
        zone: String,
        host: String,
        address: String,
    },
    /// Remove a host.
    RemoveMember { zone: String, host: String },
    /// List the members.
    Members { zone: String },
}

/// Settings from ~/.midonetrc ([cli] api_url, username, password, tenant).
fn rc_file() -> Map<String, Value> {
    let mut m = Map::new();
    let Some(home) = std::env::var_os("HOME") else {
        return m;
    };
    let Ok(text) = std::fs::read_to_string(std::path::Path::new(&home).join(".midonetrc")) else {
        return m;
    };
    let mut in_cli = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_cli = line == "[cli]";
        } else if in_cli && let Some((k, v)) = line.split_once('=') {
            m.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
        }
    }
    m
}

fn setting(flag: &Option<String>, env: &str, rc: &Map<String, Value>, key: &str) -> Option<String> {
    flag.clone()
        .or_else(|| std::env::var(env).ok().filter(|s| !s.is_empty()))
        .or_else(|| rc.get(key).and_then(Value::as_str).map(str::to_string))
}

fn connect(g: &Global) -> Result<Client, CliError> {
    let rc = rc_file();
    let url = setting(&g.url, "MIDO_API_URL", &rc, "api_url")
        .unwrap_or_else(|| "http://127.0.0.1:8181/midonet-api".into());
    let ca = setting(&g.ca, "MIDO_CA", &rc, "ca");
    let mut c = Client::new(&url, ca.as_deref().map(std::path::Path::new))?;
    if let Some(user) = setting(&g.user, "MIDO_USER", &rc, "username") {
        let pw = setting(&g.password, "MIDO_PASSWORD", &rc, "password").unwrap_or_default();
        c.login(&user, &pw)?;
    }
    Ok(c)
}

fn tenant(g: &Global) -> Option<String> {
    setting(&g.tenant, "MIDO_TENANT", &rc_file(), "tenant")
}

/// `port-address` -> `portAddress`.
fn camel(key: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for ch in key.chars() {
        if ch == '-' || ch == '_' {
            up = true;
        } else if up {
            out.extend(ch.to_uppercase());
            up = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// `field=value` pairs into a JSON object; values that parse as JSON stay JSON.
pub fn parse_fields(fields: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut m = Map::new();
    for f in fields {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("\"{f}\" is not field=value")))?;
        if k.is_empty() {
            return Err(CliError::Usage(format!("\"{f}\" has an empty field name")));
        }
        let value =
            serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_string()));
        m.insert(camel(k), value);
    }
    Ok(m)
}

fn render(out: Output, columns: &[&str], v: &Value) {
    if out == Output::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let cell = |x: Option<&Value>| match x {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(o) => o.to_string(),
    };
    match v {
        Value::Array(rows) => {
            let mut table: Vec<Vec<String>> = vec![columns.iter().map(|c| c.to_string()).collect()];
            for r in rows {
                // A dotted column reads a nested field ("status.state").
                let at = |c: &str| c.split('.').try_fold(r, |v, k| v.get(k));
                table.push(columns.iter().map(|c| cell(at(c))).collect());
            }
            let widths: Vec<usize> = (0..columns.len())
                .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for r in table {
                let line: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", line.join("  ").trim_end());
            }
        }
        Value::Object(m) => {
            let w = m.keys().map(String::len).max().unwrap_or(0);
            for (k, val) in m {
                // Links are for clients that navigate; people read the fields.
                if val
                    .as_str()
                    .is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
                {
                    continue;
                }
                println!("{k:<w$}  {}", cell(Some(val)));
            }
        }
        other => println!("{}", cell(Some(other))),
    }
}

fn collection(res: &Res, parent: &Parent) -> Result<String, CliError> {
    match res.parent {
        None => Ok(res.path.to_string()),
        Some((flag, coll, child)) => {
            let id = match flag {
                "bridge" => &parent.bridge,
                "router" => &parent.router,
                _ => &parent.chain,
            };
            let id = id
                .as_ref()
                .ok_or_else(|| CliError::Usage(format!("{} needs --{flag} ID", res.noun)))?;
            Ok(format!("{coll}/{id}/{child}"))
        }
    }
}

fn item(res: &Res, id: &str, parent: &Parent) -> Result<String, CliError> {
    if res.noun == "dhcp" {
        let id = id.replace('/', "_");
        return Ok(format!("{}/{id}", collection(res, parent)?));
    }
    Ok(format!("{}/{id}", res.path))
}

fn crud(res: &Res, verb: Verb, g: &Global) -> Result<(), CliError> {
    let c = connect(g)?;
    match verb {
        Verb::List { parent } => {
            let mut url = collection(res, &parent)?;
            if let Some(t) = tenant(g) {
                url = format!("{url}?tenant_id={t}");
            }
            render(g.output, res.columns, &c.get(&url)?);
        }
        Verb::Show { id, parent } => {
            render(g.output, res.columns, &c.get(&item(res, &id, &parent)?)?)
        }
        Verb::Create { fields, parent } => {
            let mut body = parse_fields(&fields)?;
            if let Some(t) = tenant(g) {
                body.entry("tenantId").or_insert(Value::String(t));
            }
            if res.noun == "port" {
                let (ty, coll) = match (&parent.bridge, &parent.router) {
                    (Some(b), None) => ("Bridge", format!("bridges/{b}/ports")),
                    (None, Some(r)) => ("Router", format!("routers/{r}/ports")),
                    _ => {
                        return Err(CliError::Usage(
                            "port create needs exactly one of --bridge ID or --router ID".into(),
                        ));
                    }
                };
                body.insert("type".into(), Value::String(ty.into()));
                let v = c.create(&coll, res.ty, &Value::Object(body))?;
                return print_created(g, res, &v);
            }
            let coll = collection(res, &parent)?;
            if res.noun == "rule" && !body.contains_key("position") {
                // The API inserts at the head by default; a command line
                // appends, so rules read in the order they were typed.
                let n = c.get(&coll)?.as_array().map(Vec::len).unwrap_or(0);
                body.insert("position".into(), Value::from(n + 1));
            }
            let v = c.create(&coll, res.ty, &Value::Object(body))?;
            print_created(g, res, &v)?;
        }
        Verb::Update { id, fields, parent } => {
            let url = item(res, &id, &parent)?;
            let mut doc = c.get(&url)?;
            let Value::Object(m) = &mut doc else {
                return Err(CliError::Usage(format!("{url} did not return an object")));
            };
            m.extend(parse_fields(&fields)?);
            c.call("PUT", &url, Some(res.ty), Some(&doc))?;
            render(g.output, res.columns, &c.get(&url)?);
        }
        Verb::Delete { id, parent } => {
            c.call("DELETE", &item(res, &id, &parent)?, None, None)?;
        }
    }
    Ok(())
}

fn print_created(g: &Global, res: &Res, v: &Value) -> Result<(), CliError> {
    match (g.output, v.get("id").and_then(Value::as_str)) {
        (Output::Table, Some(id)) => println!("{id}"),
        _ => render(g.output, res.columns, v),
    }
    Ok(())
}

fn res(noun: &str) -> &'static Res {
    RESOURCES
        .iter()
        .find(|r| r.noun == noun)
        .expect("every subcommand has a resource")
}

fn port(args: PortArgs) -> Result<(), CliError> {
    let g = &args.global;
    let c = connect(g)?;
    match args.verb {
        PortVerb::Crud(v) => return crud(res("port"), v, g),
        PortVerb::Link { port, peer } => {
            let body = serde_json::json!({"peerId": peer});
            c.call(
                "POST",
                &format!("ports/{port}/link"),
                Some("PortLink-v1"),
                Some(&body),
            )?;
        }
        PortVerb::Unlink { port } => {
            c.call("DELETE", &format!("ports/{port}/link"), None, None)?;
        }
        PortVerb::Bind {
            port,
            host,
            interface,
        } => {
            let body = serde_json::json!({"portId": port, "interfaceName": interface});
            c.call(
                "POST",
                &format!("hosts/{host}/ports"),
                Some("HostInterfacePort-v1"),
                Some(&body),
            )?;
        }
        PortVerb::Unbind { port } => {
            let p = c.get(&format!("ports/{port}"))?;
            let host = p
                .get("hostId")
                .and_then(Value::as_str)
                .ok_or_else(|| CliError::Usage(format!("port {port} is not bound")))?;
            c.call("DELETE", &format!("hosts/{host}/ports/{port}"), None, None)?;
        }
    }
    Ok(())
}

fn group(args: GroupArgs, noun: &str) -> Result<(), CliError> {
    let g = &args.global;
    let r = res(noun);
    let c = connect(g)?;
    let ip = noun == "ip-addr-group";
    match args.verb {
        GroupVerb::Crud(v) => return crud(r, v, g),
        GroupVerb::Add { group, member } => {
            if ip {
                let body = serde_json::json!({"addr": member, "version": if member.contains(':') { 6 } else { 4 }});
                c.call(
                    "POST",
                    &format!("ip_addr_groups/{group}/ip_addrs"),
                    Some("IpAddrGroupAddr-v1"),
                    Some(&body),
                )?;
            } else {
                let body = serde_json::json!({"portId": member});
                c.call(
                    "POST",
                    &format!("port_groups/{group}/ports"),
                    Some("PortGroupPort-v1"),
                    Some(&body),
                )?;
            }
        }
        GroupVerb::Remove { group, member } => {
            let url = if ip {
                let v = if member.contains(':') { 6 } else { 4 };
                format!(
                    "ip_addr_groups/{group}/versions/{v}/ip_addrs/{}",
                    member.replace(':', "%3A")
                )
            } else {
                format!("port_groups/{group}/ports/{member}")
            };
            c.call("DELETE", &url, None, None)?;
        }
        GroupVerb::Members { group } => {
            let (url, cols): (String, &[&str]) = if ip {
                (
                    format!("ip_addr_groups/{group}/ip_addrs"),
                    &["addr", "version"],
                )
            } else {
                (format!("port_groups/{group}/ports"), &["portId"])
            };
            render(g.output, cols, &c.get(&url)?);
        }
    }
    Ok(())
}

fn zone(args: ZoneArgs) -> Result<(), CliError> {
    let g = &args.global;
    let c = connect(g)?;
    match args.verb {
        ZoneVerb::Crud(v) => return crud(res("tunnel-zone"), v, g),
        ZoneVerb::AddMember {
            zone,
            host,
            address,
        } => {
            let body = serde_json::json!({"hostId": host, "ipAddress": address});
            c.call(
                "POST",
                &format!("tunnel_zones/{zone}/hosts"),
                Some("TunnelZoneHost-v1"),
                Some(&body),
            )?;
        }
        ZoneVerb::RemoveMember { zone, host } => {
            c.call(
                "DELETE",
                &format!("tunnel_zones/{zone}/hosts/{host}"),
                None,
                None,
            )?;
        }
        ZoneVerb::Members { zone } => {
            render(
                g.output,
                &["hostId", "ipAddress"],
                &c.get(&format!("tunnel_zones/{zone}/hosts"))?,
            );
        }
    }
    Ok(())
}

/// A walk (`midonet trace`'s answer, or a trace record) for a person:
/// numbered steps, the verdict, where the packet leaves.
fn print_walk(v: &Value) {
    let mut steps = v["steps"].clone();
    if let Value::Array(rows) = &mut steps {
        for (i, r) in rows.iter_mut().enumerate() {
            r["n"] = Value::from(i + 1);
        }
    }
    render(
        Output::Table,
        &["n", "kind", "device", "deviceName", "what"],
        &steps,
    );
    println!("verdict: {}", v["verdict"].as_str().unwrap_or("?"));
    for o in v["outputs"].as_array().into_iter().flatten() {
        println!("egress: port {} on host {}", o["port"], o["host"]);
    }
}

/// Milliseconds since the epoch as `2026-12-04 17:59:01.234 UTC`.
fn utc(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn trace_request(args: TraceRequestArgs) -> Result<(), CliError> {
    let g = &args.global;
    match args.verb {
        TraceRequestVerb::Crud(v) => crud(res("trace-request"), v, g),
        TraceRequestVerb::Results { id } => {
            let c = connect(g)?;
            let v = c.get(&format!("traces/{id}/results"))?;
            if g.output == Output::Json {
                render(g.output, &[], &v);
                return Ok(());
            }
            let rows = v.as_array().map(Vec::as_slice).unwrap_or_default();
            println!("{} packets traced", rows.len());
            for (i, r) in rows.iter().enumerate() {
                println!(
                    "\n#{} at {} on host {} from port {}: {}",
                    i + 1,
                    utc(r["timeMs"].as_u64().unwrap_or(0)),
                    r["hostId"].as_str().unwrap_or("?"),
                    r["inPort"].as_str().unwrap_or("?"),
                    r["packet"].as_str().unwrap_or("")
                );
                print_walk(r);
            }
            Ok(())
        }
    }
}

fn dispatch(cmd: Command) -> Result<(), CliError> {
    let (noun, args) = match cmd {
        Command::TraceRequest(a) => return trace_request(a),
        Command::Port(a) => return port(a),
        Command::PortGroup(a) => return group(a, "port-group"),
        Command::IpAddrGroup(a) => return group(a, "ip-addr-group"),
        Command::TunnelZone(a) => return zone(a),
        Command::Bind {
            port,
            interface,
            socket,
            ..
        } => return local::bind(&socket.socket, &port, &interface),
        Command::Unbind { port, socket, .. } => return local::unbind(&socket.socket, &port),
        Command::Trace {
            in_port,
            eth_src,
            eth_dst,
            ip_src,
            ip_dst,
            proto,
            src_port,
            dst_port,
            output,
            socket,
        } => {
            let body = serde_json::json!({"inPort": in_port, "ethSrc": eth_src, "ethDst": eth_dst,
                "ipSrc": ip_src, "ipDst": ip_dst, "proto": proto, "srcPort": src_port, "dstPort": dst_port});
            let v = local::trace(&socket.socket, &body)?;
            if output == Output::Json {
                render(output, &[], &v);
            } else {
                print_walk(&v);
            }
            return Ok(());
        }
        Command::Flows {
            port,
            output,
            socket,
        } => {
            let mut v = local::flows(&socket.socket, port.as_deref())?;
            if output == Output::Table
                && let Value::Array(rows) = &mut v
            {
                // One readable cell each for the match and the actions.
                for r in rows.iter_mut() {
                    let m: Vec<String> = r["matches"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|kv| Some(format!("{}={}", kv[0].as_str()?, kv[1].as_str()?)))
                        .collect();
                    r["match"] = Value::String(m.join(","));
                    let a: Vec<&str> = r["actions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    r["do"] = Value::String(match r["drop"].as_str() {
                        Some(why) => format!("drop ({why})"),
                        None if a.is_empty() => "drop".into(),
                        None => a.join("; "),
                    });
                }
            }
            render(
                output,
                &["inPort", "match", "do", "packets", "bytes", "ageMs"],
                &v,
            );
            return Ok(());
        }
        Command::SystemState(g) => {
            let c = connect(&g)?;
            render(g.output, &[], &c.get("system_state")?);
            return Ok(());
        }
        Command::Router(a) => ("router", a),
        Command::Bridge(a) => ("bridge", a),
        Command::Route(a) => ("route", a),
        Command::Chain(a) => ("chain", a),
        Command::Rule(a) => ("rule", a),
        Command::Host(a) => ("host", a),
        Command::Dhcp(a) => ("dhcp", a),
        Command::LoadBalancer(a) => ("load-balancer", a),
        Command::Pool(a) => ("pool", a),
        Command::PoolMember(a) => ("pool-member", a),
        Command::Vip(a) => ("vip", a),
        Command::HealthMonitor(a) => ("health-monitor", a),
        Command::BgpNetwork(a) => ("bgp-network", a),
        Command::BgpPeer(a) => ("bgp-peer", a),
        Command::Mirror(a) => ("mirror", a),
    };
    crud(res(noun), args.verb, &args.global)
}

/// Runs one CLI command; errors print a message and exit non-zero
/// (1 for API errors, 2 for usage and connection errors).
pub fn run(cmd: Command) -> ExitCode {
    // A reader that stops early (`| head`) ends the command quietly, as it
    // does any Unix tool, not with a panic at the next line printed.
    // SAFETY: at the start of a single-threaded command, before any output.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match dispatch(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("midonet: {e}");
            match e {
                CliError::Api { .. } => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(1_796_406_464_813), "2026-12-04 17:47:44.813 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
    }

    #[test]
    fn fields_become_camel_case_json() {
        let m = parse_fields(&[
            "port-address=10.0.0.1".into(),
            "networkLength=24".into(),
            "stateful=true".into(),
        ])
        .unwrap();
        assert_eq!(m["portAddress"], "10.0.0.1");
        assert_eq!(m["networkLength"], 24);
        assert_eq!(m["stateful"], true);
        assert!(parse_fields(&["oops".into()]).is_err());
        assert!(parse_fields(&["=1".into()]).is_err());
    }
}
