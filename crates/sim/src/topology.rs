//! The topology snapshot a simulation runs on: model objects compiled into
//! the shapes the packet path needs (port → device, bridge flood sets, router
//! tables by prefix length, chains with parsed masks).

pub use model::Objects;
use model::{FlowAction, FragmentPolicy, RouteType, RuleType};
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use uuid::Uuid;
use wire::Mac;

pub type Id = Uuid;

/// An IPv4 prefix as (network, mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub net: u32,
    pub len: u8,
}

impl Prefix {
    pub const ANY: Prefix = Prefix { net: 0, len: 0 };
    pub fn new(addr: Ipv4Addr, len: u8) -> Prefix {
        let len = len.min(32);
        Prefix {
            net: u32::from(addr) & Self::mask_of(len),
            len,
        }
    }
    pub fn mask_of(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len.min(32)))
        }
    }
    pub fn mask(&self) -> u32 {
        Self::mask_of(self.len)
    }
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.net
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.net | !self.mask())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Bridge(Id),
    Router(Id),
}

impl Device {
    pub fn id(&self) -> Id {
        match self {
            Device::Bridge(i) | Device::Router(i) => *i,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Port {
    pub id: Id,
    pub device: Device,
    pub admin_up: bool,
    pub in_filter: Option<Id>,
    pub out_filter: Option<Id>,
    pub peer: Option<Id>,
    pub host: Option<Id>,
    pub interface: Option<String>,
    pub tunnel_key: u32,
    /// Bridge ports: the VLAN of an interior port (0 = untagged).
    pub vlan: u16,
    /// Router ports: MAC, address and subnet.
    pub mac: Mac,
    pub ip: Option<Ipv4Addr>,
    pub subnet: Option<Prefix>,
    pub groups: Vec<Id>,
}

impl Port {
    pub fn is_exterior(&self) -> bool {
        self.host.is_some() && self.interface.is_some()
    }
}

#[derive(Clone, Debug)]
pub struct Bridge {
    pub id: Id,
    /// For traces (empty when unnamed).
    pub name: String,
    pub admin_up: bool,
    pub in_filter: Option<Id>,
    pub out_filter: Option<Id>,
    /// Flooding goes to these (and never back out the ingress port).
    pub exterior_ports: Vec<Id>,
    /// MACs of router ports peered with this bridge → the bridge port facing them.
    pub router_macs: FxHashMap<Mac, Id>,
    /// Router port addresses reachable on this bridge → their MAC (ARP suppression).
    pub router_ips: FxHashMap<Ipv4Addr, Mac>,
    pub dhcp: Vec<model::DhcpSubnet>,
    /// VLAN-aware bridging: the interior port (linked to another bridge)
    /// that stands for each VLAN of this bridge's trunks.
    pub vlan_ports: FxHashMap<u16, Id>,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub id: Id,
    pub src: Prefix,
    pub dst: Prefix,
    pub kind: RouteType,
    pub port: Option<Id>,
    pub gateway: Option<Ipv4Addr>,
    pub weight: i64,
}

/// Routes by prefix length (longest first), then by network.
#[derive(Clone, Debug, Default)]
pub struct RoutingTable {
    by_len: Vec<(u8, FxHashMap<u32, Vec<Route>>)>,
}

impl RoutingTable {
    pub fn add(&mut self, r: Route) {
        let len = r.dst.len;
        let pos = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(p) => p,
            Err(p) => {
                self.by_len.insert(p, (len, FxHashMap::default()));
                p
            }
        };
        self.by_len[pos].1.entry(r.dst.net).or_default().push(r);
    }

    /// Longest prefix containing `dst`, among routes whose source prefix
    /// contains `src`, lowest weight; ties go to `hash % n` (ECMP). A prefix
    /// whose routes all fail the source test falls through to shorter ones.
    /// `hash` is asked for only when several routes tie (it reads more fields).
    pub fn lookup(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        hash: impl FnOnce() -> u32,
    ) -> Option<&Route> {
        let d = u32::from(dst);
        for (len, nets) in &self.by_len {
            let Some(routes) = nets.get(&(d & Prefix::mask_of(*len))) else {
                continue;
            };
            let best = routes
                .iter()
                .filter(|r| r.src.contains(src))
                .map(|r| r.weight)
                .min();
            if let Some(w) = best {
                let n = routes
                    .iter()
                    .filter(|r| r.src.contains(src) && r.weight == w)
                    .count();
                let pick = if n > 1 { (hash() as usize) % n } else { 0 };
                return routes
                    .iter()
                    .filter(|r| r.src.contains(src) && r.weight == w)
                    .nth(pick);
            }
        }
        None
    }
}

#[derive(Clone, Debug)]
pub struct Router {
    pub id: Id,
    /// For traces (empty when unnamed).
    pub name: String,
    pub admin_up: bool,
    /// Pre-routing chains, in order: local redirect, inbound filter.
    pub in_chains: Vec<Id>,
    /// Post-routing chains, in order: forward chain, outbound filter.
    pub out_chains: Vec<Id>,
    pub routes: RoutingTable,
    pub ports: Vec<Id>,
    pub load_balancer: Option<Id>,
}

/// A condition with its masks and prefixes parsed once.
#[derive(Clone, Debug)]
pub struct Condition {
    pub c: model::Condition,
    pub dl_src_mask: u64,
    pub dl_dst_mask: u64,
    pub nw_src: Option<(IpAddr, u8)>,
    pub nw_dst: Option<(IpAddr, u8)>,
    pub icmp_src: Option<Prefix>,
    pub icmp_dst: Option<Prefix>,
    pub fragment_policy: FragmentPolicy,
}

impl Condition {
    pub fn compile(c: &model::Condition) -> Condition {
        let mask = |m: &Option<String>| {
            m.as_deref()
                .and_then(model::addr::parse_mac_mask)
                .unwrap_or(0xffff_ffff_ffff)
        };
        Condition {
            dl_src_mask: mask(&c.dl_src_mask),
            dl_dst_mask: mask(&c.dl_dst_mask),
            nw_src: c.nw_src_address.map(|a| (a, c.nw_src_length)),
            nw_dst: c.nw_dst_address.map(|a| (a, c.nw_dst_length)),
            icmp_src: c
                .icmp_data_src_ip_address
                .map(|a| Prefix::new(a, c.icmp_data_src_ip_length)),
            icmp_dst: c
                .icmp_data_dst_ip_address
                .map(|a| Prefix::new(a, c.icmp_data_dst_ip_length)),
            // Stored rules without a policy match unfragmented packets only.
            fragment_policy: c.fragment_policy.unwrap_or(FragmentPolicy::Unfragmented),
            c: c.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NatTarget {
    pub ip_from: Ipv4Addr,
    pub ip_to: Ipv4Addr,
    pub port_from: u16,
    pub port_to: u16,
}

#[derive(Clone, Debug)]
pub enum RuleKind {
    Accept,
    Drop,
    Reject,
    Return,
    Jump(Id),
    /// Forward NAT; `dnat` rewrites the destination. Static = one address,
    /// no ports: a stateless floating IP.
    Nat {
        dnat: bool,
        targets: Vec<NatTarget>,
        is_static: bool,
        action: FlowAction,
    },
    /// Reverse NAT: rewrite replies of a connection NATed forward.
    RevNat {
        dnat: bool,
        action: FlowAction,
    },
    L2Transform {
        pop_vlan: bool,
        push_vlan: Option<u16>,
        target: Option<Id>,
        ingress: bool,
        action: FlowAction,
    },
    Trace,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub id: Id,
    pub cond: Condition,
    pub kind: RuleKind,
}

impl Rule {
    pub fn compile(r: &model::Rule) -> Rule {
        let action = r.flow_action.unwrap_or(FlowAction::Accept);
        let targets: Vec<NatTarget> = r
            .nat_targets
            .iter()
            .map(|t| NatTarget {
                ip_from: t.address_from.unwrap_or(Ipv4Addr::UNSPECIFIED),
                ip_to: t
                    .address_to
                    .or(t.address_from)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
                port_from: t.port_from.min(65535) as u16,
                port_to: t.port_to.min(65535) as u16,
            })
            .collect();
        let is_static = targets.len() == 1
            && targets[0].ip_from == targets[0].ip_to
            && targets[0].port_from == 0
            && targets[0].port_to == 0;
        let kind = match r.rule_type {
            RuleType::Accept => RuleKind::Accept,
            RuleType::Drop => RuleKind::Drop,
            RuleType::Reject => RuleKind::Reject,
            RuleType::Return => RuleKind::Return,
            RuleType::Jump => r
                .jump_chain_id
                .map(RuleKind::Jump)
                .unwrap_or(RuleKind::Return),
            RuleType::Dnat => RuleKind::Nat {
                dnat: true,
                targets,
                is_static,
                action,
            },
            RuleType::Snat => RuleKind::Nat {
                dnat: false,
                targets,
                is_static,
                action,
            },
            RuleType::RevDnat => RuleKind::RevNat { dnat: true, action },
            RuleType::RevSnat => RuleKind::RevNat {
                dnat: false,
                action,
            },
            RuleType::L2Transform => RuleKind::L2Transform {
                pop_vlan: r.pop_vlan,
                push_vlan: r.push_vlan.map(|v| v as u16),
                target: r.target_port_id,
                ingress: r.ingress,
                action,
            },
            RuleType::Trace => RuleKind::Trace,
        };
        Rule {
            id: r.id,
            cond: Condition::compile(&r.condition),
            kind,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Chain {
    pub id: Id,
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub id: Id,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
    pub admin_up: bool,
    pub active: bool,
}

impl Member {
    /// Eligible for new connections.
    pub fn usable(&self) -> bool {
        self.admin_up && self.active && self.weight > 0
    }
}

#[derive(Clone, Debug)]
pub struct Pool {
    pub id: Id,
    pub admin_up: bool,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug)]
pub struct Vip {
    pub id: Id,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub admin_up: bool,
    pub pool: Id,
    pub sticky: bool,
}

#[derive(Clone, Debug)]
pub struct LoadBalancer {
    pub id: Id,
    pub admin_up: bool,
    pub vips: Vec<Vip>,
}

/// Everything the simulation reads about the virtual network. Entries are
/// shared (`Arc`): a new version of the topology copies pointers, not
/// devices, and only changed entries are compiled again.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub ports: FxHashMap<Id, Arc<Port>>,
    pub bridges: FxHashMap<Id, Arc<Bridge>>,
    pub routers: FxHashMap<Id, Arc<Router>>,
    pub chains: FxHashMap<Id, Arc<Chain>>,
    pub port_groups: FxHashMap<Id, Arc<FxHashSet<Id>>>,
    /// Port groups whose members share connection state (flow state goes to
    /// every member's host).
    pub stateful_groups: FxHashSet<Id>,
    pub ip_addr_groups: FxHashMap<Id, Arc<FxHashSet<IpAddr>>>,
    pub load_balancers: FxHashMap<Id, Arc<LoadBalancer>>,
    pub pools: FxHashMap<Id, Arc<Pool>>,
    /// Live trace requests, set by the agent (they are not compiled from
    /// the devices: a request comes and goes without recompiling one).
    pub traces: TraceRequests,
}

/// Live trace requests (REST v5 `traces`): per device (a port, bridge or
/// router), the requests whose condition a packet there is matched against,
/// as MidoNet's per-device trace chain. A packet that matches one is
/// simulated again with tracing on (see [`crate::simulate`]).
#[derive(Clone, Debug, Default)]
pub struct TraceRequests {
    by_device: FxHashMap<Id, Vec<(Id, Condition)>>,
}

impl TraceRequests {
    /// Request `request` on `device`, matching `cond` (unfragmented or not:
    /// a trace condition without a fragment policy matches every packet).
    pub fn add(&mut self, device: Id, request: Id, cond: &model::Condition) {
        let mut c = Condition::compile(cond);
        if cond.fragment_policy.is_none() {
            c.fragment_policy = FragmentPolicy::Any;
        }
        let at = self.by_device.entry(device).or_default();
        at.retain(|(r, _)| *r != request);
        at.push((request, c));
    }

    /// Takes request `request` off its device.
    pub fn remove(&mut self, request: Id) {
        self.by_device.retain(|_, v| {
            v.retain(|(r, _)| *r != request);
            !v.is_empty()
        });
    }

    /// The requests on `device`.
    pub fn at(&self, device: Id) -> &[(Id, Condition)] {
        self.by_device.get(&device).map_or(&[], Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.by_device.is_empty()
    }
}

impl Topology {
    /// A bridge's, router's or chain's name, for a trace (`None` for a port
    /// or one unnamed).
    pub fn name_of(&self, id: Id) -> Option<&str> {
        let n = if let Some(b) = self.bridges.get(&id) {
            &b.name
        } else if let Some(r) = self.routers.get(&id) {
            &r.name
        } else {
            &self.chains.get(&id)?.name
        };
        (!n.is_empty()).then_some(n.as_str())
    }
}

/// What compiling reads: the model objects in scope (what a host reaches),
/// by id and by what they belong to.
pub trait Source {
    fn port(&self, id: Id) -> Option<&model::Port>;
    fn bridge(&self, id: Id) -> Option<&model::Bridge>;
    fn router(&self, id: Id) -> Option<&model::Router>;
    fn chain(&self, id: Id) -> Option<&model::Chain>;
    fn rule(&self, id: Id) -> Option<&model::Rule>;
    fn port_group(&self, id: Id) -> Option<&model::PortGroup>;
    fn ip_addr_group(&self, id: Id) -> Option<&model::IpAddrGroup>;
    /// The addresses of a group stored on their own.
    fn ip_addr_members_of(&self, group: Id) -> Vec<&model::IpAddrGroupMember>;
    fn pool(&self, id: Id) -> Option<&model::Pool>;
    fn load_balancer(&self, id: Id) -> Option<&model::LoadBalancer>;
    /// The ports of a bridge or router.
    fn ports_of(&self, device: Id) -> Vec<&model::Port>;
    /// The routes naming `router`, or one of its ports as next hop.
    fn routes_of(&self, router: Id) -> Vec<&model::Route>;
    fn dhcp_of(&self, bridge: Id) -> Vec<&model::DhcpSubnet>;
    /// The DHCP hosts stored on their own for a bridge's subnets.
    fn dhcp_hosts_of(&self, bridge: Id) -> Vec<&model::DhcpHostEntry>;
    fn members_of(&self, pool: Id) -> Vec<&model::PoolMember>;
    fn vips_of(&self, lb: Id) -> Vec<&model::Vip>;
    /// The port groups holding `port`.
    fn groups_of(&self, port: Id) -> Vec<Id>;
}

/// An entry of the compiled topology, by what it is keyed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entry {
    Port(Id),
    Bridge(Id),
    Router(Id),
    Chain(Id),
    PortGroup(Id),
    IpAddrGroup(Id),
    LoadBalancer(Id),
    Pool(Id),
}

fn is_exterior(p: &model::Port) -> bool {
    p.host_id.is_some() && p.interface_name.is_some()
}

impl Topology {
    /// Compiles model objects into a topology (a full recompute).
    pub fn build(o: &Objects) -> Topology {
        let s = Indexed::new(o);
        let mut t = Topology::default();
        let entries = o
            .ports
            .iter()
            .map(|x| Entry::Port(x.id))
            .chain(o.bridges.iter().map(|x| Entry::Bridge(x.id)))
            .chain(o.routers.iter().map(|x| Entry::Router(x.id)))
            .chain(o.chains.iter().map(|x| Entry::Chain(x.id)))
            .chain(o.port_groups.iter().map(|x| Entry::PortGroup(x.id)))
            .chain(o.ip_addr_groups.iter().map(|x| Entry::IpAddrGroup(x.id)))
            .chain(o.load_balancers.iter().map(|x| Entry::LoadBalancer(x.id)))
            .chain(o.pools.iter().map(|x| Entry::Pool(x.id)));
        for e in entries {
            t.compile(&s, e);
        }
        t
    }

    /// Compiles one entry again from `s` (removing it if `s` no longer has
    /// its object).
    pub fn compile(&mut self, s: &impl Source, e: Entry) {
        fn set<T>(m: &mut FxHashMap<Id, Arc<T>>, id: Id, v: Option<T>) {
            match v {
                Some(v) => m.insert(id, Arc::new(v)),
                None => m.remove(&id),
            };
        }
        match e {
            Entry::Port(id) => set(&mut self.ports, id, s.port(id).map(|p| port(s, p))),
            Entry::Bridge(id) => set(&mut self.bridges, id, s.bridge(id).map(|b| bridge(s, b))),
            Entry::Router(id) => set(&mut self.routers, id, s.router(id).map(|r| router(s, r))),
            Entry::Chain(id) => set(&mut self.chains, id, s.chain(id).map(|c| chain(s, c))),
            Entry::PortGroup(id) => {
                let g = s.port_group(id);
                if g.is_some_and(|g| g.stateful) {
                    self.stateful_groups.insert(id);
                } else {
                    self.stateful_groups.remove(&id);
                }
                set(
                    &mut self.port_groups,
                    id,
                    g.map(|g| g.port_ids.iter().copied().collect()),
                );
            }
            Entry::IpAddrGroup(id) => set(
                &mut self.ip_addr_groups,
                id,
                s.ip_addr_group(id).map(|g| {
                    g.addrs
                        .iter()
                        .copied()
                        .chain(s.ip_addr_members_of(id).into_iter().map(|m| m.addr))
                        .collect()
                }),
            ),
            Entry::LoadBalancer(id) => set(
                &mut self.load_balancers,
                id,
                s.load_balancer(id).map(|l| load_balancer(s, l)),
            ),
            Entry::Pool(id) => set(&mut self.pools, id, s.pool(id).map(|p| pool(s, p))),
        }
    }
}

/// Compiled entries that changed (absent from `changed`: removed), to bring
/// another copy of the topology up to date: each packet worker keeps its own,
/// so a change costs what it changed, not the size of the topology.
#[derive(Clone, Debug, Default)]
pub struct Delta {
    entries: Vec<Entry>,
    changed: Topology,
}

impl Delta {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Copies one entry's version (or its absence) from one map to another.
fn copy_entry<T>(from: &FxHashMap<Id, Arc<T>>, to: &mut FxHashMap<Id, Arc<T>>, id: Id) {
    match from.get(&id) {
        Some(v) => to.insert(id, v.clone()),
        None => to.remove(&id),
    };
}

impl Topology {
    /// Every entry, in no particular order.
    pub fn entries(&self) -> Vec<Entry> {
        fn ids<T>(m: &FxHashMap<Id, T>, e: fn(Id) -> Entry) -> impl Iterator<Item = Entry> + '_ {
            m.keys().map(move |id| e(*id))
        }
        ids(&self.ports, Entry::Port)
            .chain(ids(&self.bridges, Entry::Bridge))
            .chain(ids(&self.routers, Entry::Router))
            .chain(ids(&self.chains, Entry::Chain))
            .chain(ids(&self.port_groups, Entry::PortGroup))
            .chain(ids(&self.ip_addr_groups, Entry::IpAddrGroup))
            .chain(ids(&self.load_balancers, Entry::LoadBalancer))
            .chain(ids(&self.pools, Entry::Pool))
            .collect()
    }

    /// The current versions of `entries` (shared, not copied).
    pub fn delta(&self, entries: impl IntoIterator<Item = Entry>) -> Delta {
        let mut d = Delta::default();
        for e in entries {
            d.changed.copy(self, e);
            d.entries.push(e);
        }
        d
    }

    /// Brings this copy to the versions in `d`.
    pub fn apply(&mut self, d: &Delta) {
        for e in &d.entries {
            self.copy(&d.changed, *e);
        }
    }

    /// Takes entry `e`'s version (or its absence) from `from`.
    fn copy(&mut self, from: &Topology, e: Entry) {
        match e {
            Entry::Port(id) => copy_entry(&from.ports, &mut self.ports, id),
            Entry::Bridge(id) => copy_entry(&from.bridges, &mut self.bridges, id),
            Entry::Router(id) => copy_entry(&from.routers, &mut self.routers, id),
            Entry::Chain(id) => copy_entry(&from.chains, &mut self.chains, id),
            Entry::PortGroup(id) => {
                copy_entry(&from.port_groups, &mut self.port_groups, id);
                if from.stateful_groups.contains(&id) {
                    self.stateful_groups.insert(id);
                } else {
                    self.stateful_groups.remove(&id);
                }
            }
            Entry::IpAddrGroup(id) => {
                copy_entry(&from.ip_addr_groups, &mut self.ip_addr_groups, id)
            }
            Entry::LoadBalancer(id) => {
                copy_entry(&from.load_balancers, &mut self.load_balancers, id)
            }
            Entry::Pool(id) => copy_entry(&from.pools, &mut self.pools, id),
        }
    }
}

fn port(s: &impl Source, p: &model::Port) -> Port {
    let mut groups = s.groups_of(p.id);
    groups.sort();
    groups.dedup();
    Port {
        id: p.id,
        device: if p.is_router_port() {
            Device::Router(p.device_id)
        } else {
            Device::Bridge(p.device_id)
        },
        admin_up: p.admin_state_up,
        in_filter: p.inbound_filter_id,
        out_filter: p.outbound_filter_id,
        peer: p.peer_id,
        host: p.host_id,
        interface: p.interface_name.clone(),
        tunnel_key: p.tunnel_key as u32,
        vlan: p.vlan_id.unwrap_or(0),
        mac: Mac(p.port_mac.map(|m| m.0).unwrap_or_default()),
        ip: p.port_address,
        subnet: p
            .network_address
            .map(|a| Prefix::new(a, p.network_length.unwrap_or(32))),
        groups,
    }
}

fn bridge(s: &impl Source, b: &model::Bridge) -> Bridge {
    let mut dhcp: Vec<model::DhcpSubnet> = s.dhcp_of(b.id).into_iter().cloned().collect();
    dhcp.sort_by_key(|d| d.id);
    let mut entries = s.dhcp_hosts_of(b.id);
    entries.sort_by_key(|e| e.id);
    for e in entries {
        if let Some(d) = dhcp.iter_mut().find(|d| d.id == e.subnet_id) {
            d.hosts.push(e.host.clone());
        }
    }
    let mut br = Bridge {
        id: b.id,
        name: b.name.clone().unwrap_or_default(),
        admin_up: b.admin_state_up,
        in_filter: b.inbound_filter_id,
        out_filter: b.outbound_filter_id,
        exterior_ports: Vec::new(),
        router_macs: FxHashMap::default(),
        router_ips: FxHashMap::default(),
        dhcp,
        vlan_ports: FxHashMap::default(),
    };
    let mut ports = s.ports_of(b.id);
    ports.retain(|p| !p.is_router_port());
    ports.sort_by_key(|p| p.id);
    for p in ports {
        if is_exterior(p) {
            br.exterior_ports.push(p.id);
        }
        let vlan = p.vlan_id.unwrap_or(0);
        if vlan != 0 && p.peer_id.is_some() {
            br.vlan_ports.insert(vlan, p.id);
        }
        if let Some(peer) = p.peer_id.and_then(|q| s.port(q))
            && peer.is_router_port()
        {
            let mac = Mac(peer.port_mac.map(|m| m.0).unwrap_or_default());
            br.router_macs.insert(mac, p.id);
            if let Some(ip) = peer.port_address {
                br.router_ips.insert(ip, mac);
            }
        }
    }
    br
}

fn router(s: &impl Source, r: &model::Router) -> Router {
    let mut ports: Vec<&model::Port> = s.ports_of(r.id);
    ports.retain(|p| p.is_router_port());
    ports.sort_by_key(|p| p.id);
    let mut rt = Router {
        id: r.id,
        name: r.name.clone().unwrap_or_default(),
        admin_up: r.admin_state_up,
        in_chains: [r.local_redirect_chain_id, r.inbound_filter_id]
            .into_iter()
            .flatten()
            .collect(),
        out_chains: [r.forward_chain_id, r.outbound_filter_id]
            .into_iter()
            .flatten()
            .collect(),
        routes: RoutingTable::default(),
        ports: ports.iter().map(|p| p.id).collect(),
        load_balancer: r.load_balancer_id,
    };
    let mut routes = s.routes_of(r.id);
    routes.sort_by_key(|x| x.id);
    routes.dedup_by_key(|x| x.id);
    for route in &routes {
        let port = route.next_hop_port.and_then(|p| s.port(p));
        let mine = route.router_id == Some(r.id)
            || port.is_some_and(|p| p.is_router_port() && p.device_id == r.id);
        // A port's routes count only while the port is up and plugged.
        let publishes =
            port.is_none_or(|p| p.admin_state_up && (p.peer_id.is_some() || is_exterior(p)));
        if !mine || !publishes {
            continue;
        }
        let gw = route
            .next_hop_gateway
            .filter(|g| !g.is_unspecified() && !g.is_broadcast());
        rt.routes.add(Route {
            id: route.id,
            src: Prefix::new(
                route.src_network_addr.unwrap_or(Ipv4Addr::UNSPECIFIED),
                route.src_network_length,
            ),
            dst: Prefix::new(
                route.dst_network_addr.unwrap_or(Ipv4Addr::UNSPECIFIED),
                route.dst_network_length,
            ),
            kind: route.route_type.unwrap_or(RouteType::Normal),
            port: route.next_hop_port,
            gateway: gw,
            weight: route.weight,
        });
    }
    // Every router port address is delivered locally, even without the
    // LOCAL route the API creates with the port.
    for p in &ports {
        if let Some(ip) = p.port_address {
            let has_local = routes.iter().any(|x| {
                x.route_type == Some(RouteType::Local)
                    && x.dst_network_addr == Some(ip)
                    && x.dst_network_length == 32
            });
            if !has_local {
                rt.routes.add(Route {
                    id: p.id,
                    src: Prefix::ANY,
                    dst: Prefix::new(ip, 32),
                    kind: RouteType::Local,
                    port: Some(p.id),
                    gateway: None,
                    weight: 0,
                });
            }
        }
    }
    rt
}

fn chain(s: &impl Source, c: &model::Chain) -> Chain {
    Chain {
        id: c.id,
        name: c.name.clone().unwrap_or_default(),
        rules: c
            .rule_ids
            .iter()
            .filter_map(|id| s.rule(*id))
            // A rule listed here but naming another chain is not this one's.
            .filter(|r| r.chain_id == c.id)
            .map(Rule::compile)
            .collect(),
    }
}

fn pool(s: &impl Source, p: &model::Pool) -> Pool {
    let mut members: Vec<Member> = s
        .members_of(p.id)
        .into_iter()
        .map(|m| Member {
            id: m.id,
            ip: m.address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            port: m.protocol_port as u16,
            weight: m.weight.unwrap_or(1).clamp(0, i64::from(u32::MAX)) as u32,
            admin_up: m.admin_state_up,
            active: m.status.as_deref() != Some("INACTIVE"),
        })
        .collect();
    members.sort_by_key(|m| m.id);
    Pool {
        id: p.id,
        admin_up: p.admin_state_up,
        members,
    }
}

fn load_balancer(s: &impl Source, lb: &model::LoadBalancer) -> LoadBalancer {
    let mut vips: Vec<Vip> = s
        .vips_of(lb.id)
        .into_iter()
        .map(|v| Vip {
            id: v.id,
            ip: v.address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            port: v.protocol_port as u16,
            admin_up: v.admin_state_up,
            pool: v.pool_id.unwrap_or_default(),
            sticky: v.session_persistence.as_deref() == Some("SOURCE_IP"),
        })
        .collect();
    vips.sort_by_key(|v| v.id);
    LoadBalancer {
        id: lb.id,
        admin_up: lb.admin_state_up,
        vips,
    }
}

/// A [`Source`] over a set of objects (every one of them in scope), indexed
/// once: a full recompute is linear in the objects.
struct Indexed<'a> {
    ports: FxHashMap<Id, &'a model::Port>,
    bridges: FxHashMap<Id, &'a model::Bridge>,
    routers: FxHashMap<Id, &'a model::Router>,
    chains: FxHashMap<Id, &'a model::Chain>,
    rules: FxHashMap<Id, &'a model::Rule>,
    port_groups: FxHashMap<Id, &'a model::PortGroup>,
    ip_addr_groups: FxHashMap<Id, &'a model::IpAddrGroup>,
    ip_addr_members_of: FxHashMap<Id, Vec<&'a model::IpAddrGroupMember>>,
    pools: FxHashMap<Id, &'a model::Pool>,
    load_balancers: FxHashMap<Id, &'a model::LoadBalancer>,
    ports_of: FxHashMap<Id, Vec<&'a model::Port>>,
    routes_of: FxHashMap<Id, Vec<&'a model::Route>>,
    dhcp_of: FxHashMap<Id, Vec<&'a model::DhcpSubnet>>,
    dhcp_hosts_of: FxHashMap<Id, Vec<&'a model::DhcpHostEntry>>,
    members_of: FxHashMap<Id, Vec<&'a model::PoolMember>>,
    vips_of: FxHashMap<Id, Vec<&'a model::Vip>>,
    groups_of: FxHashMap<Id, Vec<Id>>,
}

fn by_id<T: model::Object>(v: &[T]) -> FxHashMap<Id, &T> {
    v.iter().map(|o| (o.id(), o)).collect()
}

fn group<T>(v: &[T], key: impl Fn(&T) -> Vec<Id>) -> FxHashMap<Id, Vec<&T>> {
    let mut m: FxHashMap<Id, Vec<&T>> = FxHashMap::default();
    for o in v {
        for k in key(o) {
            m.entry(k).or_default().push(o);
        }
    }
    m
}

impl<'a> Indexed<'a> {
    fn new(o: &'a Objects) -> Self {
        let ports = by_id(&o.ports);
        let mut groups_of: FxHashMap<Id, Vec<Id>> = FxHashMap::default();
        for g in &o.port_groups {
            for p in &g.port_ids {
                groups_of.entry(*p).or_default().push(g.id);
            }
        }
        Indexed {
            ports_of: group(&o.ports, |p| vec![p.device_id]),
            routes_of: group(&o.routes, |r| {
                let via = r
                    .next_hop_port
                    .and_then(|p| ports.get(&p))
                    .map(|p| p.device_id);
                r.router_id.into_iter().chain(via).collect()
            }),
            ports,
            bridges: by_id(&o.bridges),
            routers: by_id(&o.routers),
            chains: by_id(&o.chains),
            rules: by_id(&o.rules),
            port_groups: by_id(&o.port_groups),
            ip_addr_groups: by_id(&o.ip_addr_groups),
            ip_addr_members_of: group(&o.ip_addr_members, |m| vec![m.group_id]),
            pools: by_id(&o.pools),
            load_balancers: by_id(&o.load_balancers),
            dhcp_of: group(&o.dhcp, |d| vec![d.bridge_id]),
            dhcp_hosts_of: group(&o.dhcp_hosts, |d| vec![d.bridge_id]),
            members_of: group(&o.members, |m| m.pool_id.into_iter().collect()),
            vips_of: group(&o.vips, |v| v.load_balancer_id.into_iter().collect()),
            groups_of,
        }
    }
}

fn list<'a, T>(m: &FxHashMap<Id, Vec<&'a T>>, id: Id) -> Vec<&'a T> {
    m.get(&id).cloned().unwrap_or_default()
}

impl Source for Indexed<'_> {
    fn port(&self, id: Id) -> Option<&model::Port> {
        self.ports.get(&id).copied()
    }
    fn bridge(&self, id: Id) -> Option<&model::Bridge> {
        self.bridges.get(&id).copied()
    }
    fn router(&self, id: Id) -> Option<&model::Router> {
        self.routers.get(&id).copied()
    }
    fn chain(&self, id: Id) -> Option<&model::Chain> {
        self.chains.get(&id).copied()
    }
    fn rule(&self, id: Id) -> Option<&model::Rule> {
        self.rules.get(&id).copied()
    }
    fn port_group(&self, id: Id) -> Option<&model::PortGroup> {
        self.port_groups.get(&id).copied()
    }
    fn ip_addr_group(&self, id: Id) -> Option<&model::IpAddrGroup> {
        self.ip_addr_groups.get(&id).copied()
    }
    fn ip_addr_members_of(&self, group: Id) -> Vec<&model::IpAddrGroupMember> {
        list(&self.ip_addr_members_of, group)
    }
    fn pool(&self, id: Id) -> Option<&model::Pool> {
        self.pools.get(&id).copied()
    }
    fn load_balancer(&self, id: Id) -> Option<&model::LoadBalancer> {
        self.load_balancers.get(&id).copied()
    }
    fn ports_of(&self, device: Id) -> Vec<&model::Port> {
        list(&self.ports_of, device)
    }
    fn routes_of(&self, router: Id) -> Vec<&model::Route> {
        list(&self.routes_of, router)
    }
    fn dhcp_of(&self, bridge: Id) -> Vec<&model::DhcpSubnet> {
        list(&self.dhcp_of, bridge)
    }
    fn dhcp_hosts_of(&self, bridge: Id) -> Vec<&model::DhcpHostEntry> {
        list(&self.dhcp_hosts_of, bridge)
    }
    fn members_of(&self, pool: Id) -> Vec<&model::PoolMember> {
        list(&self.members_of, pool)
    }
    fn vips_of(&self, lb: Id) -> Vec<&model::Vip> {
        list(&self.vips_of, lb)
    }
    fn groups_of(&self, port: Id) -> Vec<Id> {
        self.groups_of.get(&port).cloned().unwrap_or_default()
    }
}

impl RoutingTable {
    /// Every route, longest prefix first, then by network and id.
    pub fn routes(&self) -> Vec<&Route> {
        let mut v: Vec<&Route> = self
            .by_len
            .iter()
            .flat_map(|(_, m)| m.values().flatten())
            .collect();
        v.sort_by_key(|r| (std::cmp::Reverse(r.dst.len), r.dst.net, r.id));
        v
    }
}

impl Topology {
    /// A text form independent of how the topology was built (hash map
    /// order aside), to compare an incremental build with a full one.
    pub fn canonical(&self) -> String {
        use std::collections::BTreeMap;
        use std::fmt::Write;
        fn sorted<K: Ord + std::fmt::Debug, V: std::fmt::Debug>(
            m: impl IntoIterator<Item = (K, V)>,
        ) -> String {
            format!("{:?}", m.into_iter().collect::<BTreeMap<K, V>>())
        }
        let mut out = String::new();
        for (id, p) in self.ports.iter().collect::<BTreeMap<_, _>>() {
            let _ = writeln!(out, "port {id} {p:?}");
        }
        for (id, b) in self.bridges.iter().collect::<BTreeMap<_, _>>() {
            let _ = writeln!(
                out,
                "bridge {id} {} {} {:?} {:?} {:?} {} {} {}",
                b.admin_up,
                b.exterior_ports.len(),
                b.exterior_ports,
                (b.in_filter, b.out_filter),
                b.dhcp.iter().map(|d| d.id).collect::<Vec<_>>(),
                sorted(b.router_macs.iter().map(|(m, p)| (m.0, p))),
                sorted(b.router_ips.iter()),
                sorted(b.vlan_ports.iter()),
            );
        }
        for (id, r) in self.routers.iter().collect::<BTreeMap<_, _>>() {
            let _ = writeln!(
                out,
                "router {id} {} {:?} {:?} {:?} {:?} {:?}",
                r.admin_up,
                r.in_chains,
                r.out_chains,
                r.ports,
                r.load_balancer,
                r.routes.routes()
            );
        }
        for (id, c) in self.chains.iter().collect::<BTreeMap<_, _>>() {
            let _ = writeln!(out, "chain {id} {c:?}");
        }
        for (id, g) in self.port_groups.iter().collect::<BTreeMap<_, _>>() {
            let _ = writeln!(
                out,
                "group {id} {} {:?}",
                self.stateful_groups.contains(id),
                g.iter().collect::<std::collections::BTreeSet<_>>()
            );
        }
        for (id, g) in self.ip_addr_groups.iter().collect::<BTreeMap<_, _>>() {
            let _ = writeln!(
                out,
                "addrs {id} {:?}",
                g.iter().collect::<std::collections::BTreeSet<_>>()
            );
        }
        for (id, l) in self.load_balancers.iter().collect::<BTreeMap<_, _>>() {
            let _ = writeln!(out, "lb {id} {l:?}");
        }
        for (id, p) in self.pools.iter().collect::<BTreeMap<_, _>>() {
            let _ = writeln!(out, "pool {id} {p:?}");
        }
        out
    }
}
