//! The topology snapshot a simulation runs on: model objects compiled into
//! the shapes the packet path needs (port → device, bridge flood sets, router
//! tables by prefix length, chains with parsed masks).

pub use model::Objects;
use model::{FlowAction, FragmentPolicy, RouteType, RuleType};
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::{IpAddr, Ipv4Addr};
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

/// Everything the simulation reads about the virtual network.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub ports: FxHashMap<Id, Port>,
    pub bridges: FxHashMap<Id, Bridge>,
    pub routers: FxHashMap<Id, Router>,
    pub chains: FxHashMap<Id, Chain>,
    pub port_groups: FxHashMap<Id, FxHashSet<Id>>,
    /// Port groups whose members share connection state (flow state goes to
    /// every member's host).
    pub stateful_groups: FxHashSet<Id>,
    pub ip_addr_groups: FxHashMap<Id, FxHashSet<IpAddr>>,
    pub load_balancers: FxHashMap<Id, LoadBalancer>,
    pub pools: FxHashMap<Id, Pool>,
}

impl Topology {
    /// Compiles model objects into a topology (a full recompute).
    pub fn build(o: &Objects) -> Topology {
        let mut t = Topology::default();
        let mut groups_of: FxHashMap<Id, Vec<Id>> = FxHashMap::default();
        for g in &o.port_groups {
            t.port_groups
                .insert(g.id, g.port_ids.iter().copied().collect());
            if g.stateful {
                t.stateful_groups.insert(g.id);
            }
            for p in &g.port_ids {
                groups_of.entry(*p).or_default().push(g.id);
            }
        }
        for g in &o.ip_addr_groups {
            t.ip_addr_groups
                .insert(g.id, g.addrs.iter().copied().collect());
        }
        for p in &o.ports {
            let device = if p.is_router_port() {
                Device::Router(p.device_id)
            } else {
                Device::Bridge(p.device_id)
            };
            t.ports.insert(
                p.id,
                Port {
                    id: p.id,
                    device,
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
                    groups: groups_of.remove(&p.id).unwrap_or_default(),
                },
            );
        }
        for b in &o.bridges {
            let mut br = Bridge {
                id: b.id,
                admin_up: b.admin_state_up,
                in_filter: b.inbound_filter_id,
                out_filter: b.outbound_filter_id,
                exterior_ports: Vec::new(),
                router_macs: FxHashMap::default(),
                router_ips: FxHashMap::default(),
                dhcp: o
                    .dhcp
                    .iter()
                    .filter(|d| d.bridge_id == b.id)
                    .cloned()
                    .collect(),
                vlan_ports: FxHashMap::default(),
            };
            let mut ports: Vec<&Port> = t
                .ports
                .values()
                .filter(|p| p.device == Device::Bridge(b.id))
                .collect();
            ports.sort_by_key(|p| p.id);
            for p in ports {
                if p.is_exterior() {
                    br.exterior_ports.push(p.id);
                }
                if p.vlan != 0 && p.peer.is_some() {
                    br.vlan_ports.insert(p.vlan, p.id);
                }
                if let Some(peer) = p.peer.and_then(|q| t.ports.get(&q))
                    && matches!(peer.device, Device::Router(_))
                {
                    br.router_macs.insert(peer.mac, p.id);
                    if let Some(ip) = peer.ip {
                        br.router_ips.insert(ip, peer.mac);
                    }
                }
            }
            t.bridges.insert(b.id, br);
        }
        for r in &o.routers {
            let mut rt = Router {
                id: r.id,
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
                ports: t
                    .ports
                    .values()
                    .filter(|p| p.device == Device::Router(r.id))
                    .map(|p| p.id)
                    .collect(),
                load_balancer: r.load_balancer_id,
            };
            rt.ports.sort();
            for route in &o.routes {
                let port = route.next_hop_port.and_then(|p| t.ports.get(&p));
                let mine = route.router_id == Some(r.id)
                    || port.is_some_and(|p| p.device == Device::Router(r.id));
                // A port's routes count only while the port is up and plugged.
                let publishes =
                    port.is_none_or(|p| p.admin_up && (p.peer.is_some() || p.is_exterior()));
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
            // Every router port address is delivered locally, even without
            // the LOCAL route the API creates with the port.
            for pid in &rt.ports {
                let p = &t.ports[pid];
                if let Some(ip) = p.ip {
                    let has_local = o.routes.iter().any(|x| {
                        x.route_type == Some(RouteType::Local)
                            && x.dst_network_addr == Some(ip)
                            && x.dst_network_length == 32
                    });
                    if !has_local {
                        rt.routes.add(Route {
                            id: *pid,
                            src: Prefix::ANY,
                            dst: Prefix::new(ip, 32),
                            kind: RouteType::Local,
                            port: Some(*pid),
                            gateway: None,
                            weight: 0,
                        });
                    }
                }
            }
            t.routers.insert(r.id, rt);
        }
        let rules: FxHashMap<Id, &model::Rule> = o.rules.iter().map(|r| (r.id, r)).collect();
        for c in &o.chains {
            t.chains.insert(
                c.id,
                Chain {
                    id: c.id,
                    name: c.name.clone().unwrap_or_default(),
                    rules: c
                        .rule_ids
                        .iter()
                        .filter_map(|id| rules.get(id))
                        .map(|r| Rule::compile(r))
                        .collect(),
                },
            );
        }
        for p in &o.pools {
            t.pools.insert(
                p.id,
                Pool {
                    id: p.id,
                    admin_up: p.admin_state_up,
                    members: o
                        .members
                        .iter()
                        .filter(|m| m.pool_id == Some(p.id))
                        .map(|m| Member {
                            id: m.id,
                            ip: m.address.unwrap_or(Ipv4Addr::UNSPECIFIED),
                            port: m.protocol_port as u16,
                            weight: m.weight.unwrap_or(1).max(0) as u32,
                            admin_up: m.admin_state_up,
                            active: m.status.as_deref() != Some("INACTIVE"),
                        })
                        .collect(),
                },
            );
        }
        for lb in &o.load_balancers {
            t.load_balancers.insert(
                lb.id,
                LoadBalancer {
                    id: lb.id,
                    admin_up: lb.admin_state_up,
                    vips: o
                        .vips
                        .iter()
                        .filter(|v| v.load_balancer_id == Some(lb.id))
                        .map(|v| Vip {
                            id: v.id,
                            ip: v.address.unwrap_or(Ipv4Addr::UNSPECIFIED),
                            port: v.protocol_port as u16,
                            admin_up: v.admin_state_up,
                            pool: v.pool_id.unwrap_or_default(),
                            sticky: v.session_persistence.as_deref() == Some("SOURCE_IP"),
                        })
                        .collect(),
                },
            );
        }
        t
    }
}
