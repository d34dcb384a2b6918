//! A set of model objects, and the part of it a host's ports can reach: what
//! an agent needs to simulate the packets of those ports.

use crate::*;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The model objects a topology is built from.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub bridges: Vec<Bridge>,
    pub routers: Vec<Router>,
    pub ports: Vec<Port>,
    pub routes: Vec<Route>,
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
    pub port_groups: Vec<PortGroup>,
    pub ip_addr_groups: Vec<IpAddrGroup>,
    pub dhcp: Vec<DhcpSubnet>,
    pub load_balancers: Vec<LoadBalancer>,
    pub pools: Vec<Pool>,
    pub members: Vec<PoolMember>,
    pub vips: Vec<Vip>,
    pub health_monitors: Vec<HealthMonitor>,
}

impl Objects {
    /// Only what a packet entering by `start` can meet: the devices connected
    /// to those ports through links (and redirect targets), all their ports
    /// and routes, the chains they use (and jump targets), the groups those
    /// rules name, their load balancers, and their bridges' DHCP subnets. An
    /// agent compiles just this for its bound ports.
    pub fn reachable_from(&self, start: &[Uuid]) -> Objects {
        let port_by_id: HashMap<Uuid, &Port> = self.ports.iter().map(|p| (p.id, p)).collect();
        let rules_by_id: HashMap<Uuid, &Rule> = self.rules.iter().map(|r| (r.id, r)).collect();
        let chain_by_id: HashMap<Uuid, &Chain> = self.chains.iter().map(|c| (c.id, c)).collect();
        let mut devices: HashSet<Uuid> = HashSet::new();
        let mut chains: HashSet<Uuid> = HashSet::new();
        let mut queue: Vec<Uuid> = start
            .iter()
            .filter_map(|p| port_by_id.get(p))
            .map(|p| p.device_id)
            .collect();
        let mut chain_queue: Vec<Uuid> = Vec::new();
        loop {
            while let Some(d) = queue.pop() {
                if !devices.insert(d) {
                    continue;
                }
                for p in self.ports.iter().filter(|p| p.device_id == d) {
                    chain_queue.extend(
                        [p.inbound_filter_id, p.outbound_filter_id]
                            .into_iter()
                            .flatten(),
                    );
                    if let Some(peer) = p.peer_id.and_then(|q| port_by_id.get(&q)) {
                        queue.push(peer.device_id);
                    }
                }
                if let Some(b) = self.bridges.iter().find(|b| b.id == d) {
                    chain_queue.extend(
                        [b.inbound_filter_id, b.outbound_filter_id]
                            .into_iter()
                            .flatten(),
                    );
                }
                if let Some(r) = self.routers.iter().find(|r| r.id == d) {
                    chain_queue.extend(
                        [
                            r.inbound_filter_id,
                            r.outbound_filter_id,
                            r.local_redirect_chain_id,
                            r.forward_chain_id,
                        ]
                        .into_iter()
                        .flatten(),
                    );
                }
            }
            // Chains, their jump targets, and the ports their redirects reach.
            while let Some(c) = chain_queue.pop() {
                if !chains.insert(c) {
                    continue;
                }
                for r in chain_by_id
                    .get(&c)
                    .map(|c| c.rule_ids.as_slice())
                    .unwrap_or(&[])
                {
                    let Some(rule) = rules_by_id.get(r) else {
                        continue;
                    };
                    chain_queue.extend(rule.jump_chain_id);
                    if let Some(dev) = rule
                        .target_port_id
                        .and_then(|p| port_by_id.get(&p))
                        .map(|p| p.device_id)
                    {
                        queue.push(dev);
                    }
                }
            }
            if queue.is_empty() {
                break;
            }
        }
        let rules: Vec<Rule> = self
            .rules
            .iter()
            .filter(|r| chains.contains(&r.chain_id))
            .cloned()
            .collect();
        // Groups rules name, and groups holding a reachable port (their
        // members' hosts get the flow state of stateful groups).
        let pgs: HashSet<Uuid> = rules
            .iter()
            .flat_map(|r| r.condition.port_group_ids())
            .chain(
                self.port_groups
                    .iter()
                    .filter(|g| {
                        g.port_ids.iter().any(|p| {
                            port_by_id
                                .get(p)
                                .is_some_and(|p| devices.contains(&p.device_id))
                        })
                    })
                    .map(|g| g.id),
            )
            .collect();
        let ags: HashSet<Uuid> = rules
            .iter()
            .flat_map(|r| r.condition.ip_addr_group_ids())
            .collect();
        let routers: Vec<Router> = self
            .routers
            .iter()
            .filter(|r| devices.contains(&r.id))
            .cloned()
            .collect();
        let lbs: HashSet<Uuid> = routers.iter().filter_map(|r| r.load_balancer_id).collect();
        let pools: Vec<Pool> = self
            .pools
            .iter()
            .filter(|p| p.load_balancer_id.is_some_and(|l| lbs.contains(&l)))
            .cloned()
            .collect();
        let pool_ids: HashSet<Uuid> = pools.iter().map(|p| p.id).collect();
        let monitors: HashSet<Uuid> = pools.iter().filter_map(|p| p.health_monitor_id).collect();
        let ports: Vec<Port> = self
            .ports
            .iter()
            .filter(|p| devices.contains(&p.device_id))
            .cloned()
            .collect();
        let port_ids: HashSet<Uuid> = ports.iter().map(|p| p.id).collect();
        Objects {
            bridges: self
                .bridges
                .iter()
                .filter(|b| devices.contains(&b.id))
                .cloned()
                .collect(),
            routes: self
                .routes
                .iter()
                .filter(|r| {
                    r.router_id.is_some_and(|x| devices.contains(&x))
                        || r.next_hop_port.is_some_and(|p| port_ids.contains(&p))
                })
                .cloned()
                .collect(),
            routers,
            ports,
            chains: self
                .chains
                .iter()
                .filter(|c| chains.contains(&c.id))
                .cloned()
                .collect(),
            rules,
            port_groups: self
                .port_groups
                .iter()
                .filter(|g| pgs.contains(&g.id))
                .cloned()
                .collect(),
            ip_addr_groups: self
                .ip_addr_groups
                .iter()
                .filter(|g| ags.contains(&g.id))
                .cloned()
                .collect(),
            dhcp: self
                .dhcp
                .iter()
                .filter(|d| devices.contains(&d.bridge_id))
                .cloned()
                .collect(),
            load_balancers: self
                .load_balancers
                .iter()
                .filter(|l| lbs.contains(&l.id))
                .cloned()
                .collect(),
            members: self
                .members
                .iter()
                .filter(|m| m.pool_id.is_some_and(|p| pool_ids.contains(&p)))
                .cloned()
                .collect(),
            vips: self
                .vips
                .iter()
                .filter(|v| v.pool_id.is_some_and(|p| pool_ids.contains(&p)))
                .cloned()
                .collect(),
            health_monitors: self
                .health_monitors
                .iter()
                .filter(|h| monitors.contains(&h.id))
                .cloned()
                .collect(),
            pools,
        }
    }
}

impl Objects {
    /// The kinds a topology is built from; any other kind (hosts, tunnel
    /// zones, BGP) is not filtered by reachability.
    pub const KINDS: [Kind; 14] = [
        Bridge::KIND,
        Router::KIND,
        Port::KIND,
        Route::KIND,
        Chain::KIND,
        Rule::KIND,
        PortGroup::KIND,
        IpAddrGroup::KIND,
        DhcpSubnet::KIND,
        LoadBalancer::KIND,
        Pool::KIND,
        PoolMember::KIND,
        Vip::KIND,
        HealthMonitor::KIND,
    ];

    /// Decodes stored JSON: `stored(kind name)` yields that kind's stored
    /// values. A value that does not decode is skipped (and logged by the
    /// caller's store, which validated it on write).
    pub fn decode<'a, I>(mut stored: impl FnMut(&'static str) -> I) -> Objects
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        fn all<'a, T: Object>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<T> {
            values
                .into_iter()
                .filter_map(|b| serde_json::from_slice(b).ok())
                .collect()
        }
        Objects {
            bridges: all(stored(Bridge::KIND.name())),
            routers: all(stored(Router::KIND.name())),
            ports: all(stored(Port::KIND.name())),
            routes: all(stored(Route::KIND.name())),
            chains: all(stored(Chain::KIND.name())),
            rules: all(stored(Rule::KIND.name())),
            port_groups: all(stored(PortGroup::KIND.name())),
            ip_addr_groups: all(stored(IpAddrGroup::KIND.name())),
            dhcp: all(stored(DhcpSubnet::KIND.name())),
            load_balancers: all(stored(LoadBalancer::KIND.name())),
            pools: all(stored(Pool::KIND.name())),
            members: all(stored(PoolMember::KIND.name())),
            vips: all(stored(Vip::KIND.name())),
            health_monitors: all(stored(HealthMonitor::KIND.name())),
        }
    }

    /// Every object as (kind name, id).
    pub fn ids(&self) -> HashSet<(&'static str, Uuid)> {
        fn of<T: Object>(v: &[T]) -> impl Iterator<Item = (&'static str, Uuid)> + '_ {
            v.iter().map(|o| (T::KIND.name(), o.id()))
        }
        of(&self.bridges)
            .chain(of(&self.routers))
            .chain(of(&self.ports))
            .chain(of(&self.routes))
            .chain(of(&self.chains))
            .chain(of(&self.rules))
            .chain(of(&self.port_groups))
            .chain(of(&self.ip_addr_groups))
            .chain(of(&self.dhcp))
            .chain(of(&self.load_balancers))
            .chain(of(&self.pools))
            .chain(of(&self.members))
            .chain(of(&self.vips))
            .chain(of(&self.health_monitors))
            .collect()
    }
}
