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
    /// Only what a packet entering by `start` can meet, walking the model's
    /// reference table ([`crate::REFS`]) from those ports. An agent compiles
    /// just this for its bound ports (the topology engine keeps the same
    /// walk current per change).
    pub fn reachable_from(&self, start: &[Uuid]) -> Objects {
        use crate::schema::{Obj, REFS};
        let all: Vec<Obj> = self.clone().into_objs();
        let by_key: HashMap<(Kind, Uuid), &Obj> =
            all.iter().map(|o| ((o.kind(), o.id()), o)).collect();
        let mut referrers: HashMap<(usize, Uuid), Vec<Uuid>> = HashMap::new();
        for o in &all {
            for (i, r) in REFS.iter().enumerate().filter(|(_, r)| r.from == o.kind()) {
                for id in (r.get)(o) {
                    referrers.entry((i, id)).or_default().push(o.id());
                }
            }
        }
        let mut reached: HashSet<(Kind, Uuid)> = HashSet::new();
        let mut stack: Vec<(Kind, Uuid)> = start
            .iter()
            .map(|p| (Kind::Port, *p))
            .filter(|k| by_key.contains_key(k))
            .collect();
        reached.extend(stack.iter().copied());
        while let Some(k) = stack.pop() {
            let o = by_key[&k];
            for (i, r) in REFS.iter().enumerate() {
                let mut next = Vec::new();
                if r.from == k.0 && r.walks_forward() {
                    next.extend((r.get)(o).into_iter().map(|id| (r.to, id)));
                }
                if r.to == k.0 && r.walks_backward() {
                    next.extend(
                        referrers
                            .get(&(i, k.1))
                            .into_iter()
                            .flatten()
                            .map(|id| (r.from, *id)),
                    );
                }
                for n in next {
                    if by_key.contains_key(&n) && reached.insert(n) {
                        stack.push(n);
                    }
                }
            }
        }
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
        v.extend(self.dhcp.into_iter().map(Obj::from));
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
                Obj::DhcpSubnet(x) => o.dhcp.push(x),
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
