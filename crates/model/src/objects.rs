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
    pub ip_addr_members: Vec<IpAddrGroupMember>,
    pub dhcp: Vec<DhcpSubnet>,
    pub dhcp_hosts: Vec<DhcpHostEntry>,
    pub load_balancers: Vec<LoadBalancer>,
    pub pools: Vec<Pool>,
    pub members: Vec<PoolMember>,
    pub vips: Vec<Vip>,
    pub health_monitors: Vec<HealthMonitor>,
}

impl Objects {
    /// Only what a packet entering by `start` can meet, walking the model's
    /// reference table ([`crate::REFS`]) from those ports. An agent compiles
    /// just this for its bound ports (the topology engine keeps the same
    /// walk current per change).
    pub fn reachable_from(&self, start: &[Uuid]) -> Objects {
        use crate::schema::{Obj, refs_of, walk};
        let all: Vec<Obj> = self.clone().into_objs();
        let by_key: HashMap<(Kind, Uuid), &Obj> =
            all.iter().map(|o| ((o.kind(), o.id()), o)).collect();
        let mut referrers: HashMap<(usize, Uuid), Vec<Uuid>> = HashMap::new();
        for o in &all {
            for (row, id) in refs_of(o, true) {
                referrers.entry((row, id)).or_default().push(o.id());
            }
        }
        let stack: Vec<(Kind, Uuid)> = start
            .iter()
            .map(|p| (Kind::Port, *p))
            .filter(|k| by_key.contains_key(k))
            .collect();
        let mut reached: HashSet<(Kind, Uuid)> = stack.iter().copied().collect();
        walk(
            stack,
            |k| by_key.get(k).copied(),
            |row, id| referrers.get(&(row, id)).cloned().unwrap_or_default(),
            |_, k| reached.insert(k),
        );
        Objects::from_objs(
            all.into_iter()
                .filter(|o| reached.contains(&(o.kind(), o.id()))),
        )
    }

    /// Every object, decoded as one enum.
    pub fn into_objs(self) -> Vec<crate::Obj> {
        use crate::Obj;
        let mut v: Vec<Obj> = Vec::new();
        v.extend(self.bridges.into_iter().map(Obj::from));
        v.extend(self.routers.into_iter().map(Obj::from));
        v.extend(self.ports.into_iter().map(Obj::from));
        v.extend(self.routes.into_iter().map(Obj::from));
        v.extend(self.chains.into_iter().map(Obj::from));
        v.extend(self.rules.into_iter().map(Obj::from));
        v.extend(self.port_groups.into_iter().map(Obj::from));
        v.extend(self.ip_addr_groups.into_iter().map(Obj::from));
        v.extend(self.ip_addr_members.into_iter().map(Obj::from));
        v.extend(self.dhcp.into_iter().map(Obj::from));
        v.extend(self.dhcp_hosts.into_iter().map(Obj::from));
        v.extend(self.load_balancers.into_iter().map(Obj::from));
        v.extend(self.pools.into_iter().map(Obj::from));
        v.extend(self.members.into_iter().map(Obj::from));
        v.extend(self.vips.into_iter().map(Obj::from));
        v.extend(self.health_monitors.into_iter().map(Obj::from));
        v
    }

    /// The objects, sorted into their kinds.
    pub fn from_objs(objs: impl IntoIterator<Item = crate::Obj>) -> Objects {
        use crate::Obj;
        let mut o = Objects::default();
        for x in objs {
            match x {
                Obj::Bridge(x) => o.bridges.push(x),
                Obj::Router(x) => o.routers.push(x),
                Obj::Port(x) => o.ports.push(x),
                Obj::Route(x) => o.routes.push(x),
                Obj::Chain(x) => o.chains.push(x),
                Obj::Rule(x) => o.rules.push(x),
                Obj::PortGroup(x) => o.port_groups.push(x),
                Obj::IpAddrGroup(x) => o.ip_addr_groups.push(x),
                Obj::IpAddrGroupMember(x) => o.ip_addr_members.push(x),
                Obj::DhcpSubnet(x) => o.dhcp.push(x),
                Obj::DhcpHostEntry(x) => o.dhcp_hosts.push(x),
                Obj::LoadBalancer(x) => o.load_balancers.push(x),
                Obj::Pool(x) => o.pools.push(x),
                Obj::PoolMember(x) => o.members.push(x),
                Obj::Vip(x) => o.vips.push(x),
                Obj::HealthMonitor(x) => o.health_monitors.push(x),
            }
        }
        o
    }
}

impl Objects {
    /// The kinds a topology is built from; any other kind (hosts, tunnel
    /// zones, BGP) is not filtered by reachability.
    pub const KINDS: [Kind; 16] = [
        Bridge::KIND,
        Router::KIND,
        Port::KIND,
        Route::KIND,
        Chain::KIND,
        Rule::KIND,
        PortGroup::KIND,
        IpAddrGroup::KIND,
        IpAddrGroupMember::KIND,
        DhcpSubnet::KIND,
        DhcpHostEntry::KIND,
        LoadBalancer::KIND,
        Pool::KIND,
        PoolMember::KIND,
        Vip::KIND,
        HealthMonitor::KIND,
    ];

    /// The topology kind stored under `name`, if it is one.
    pub fn kind_named(name: &str) -> Option<Kind> {
        Self::KINDS.iter().copied().find(|k| k.name() == name)
    }
}
