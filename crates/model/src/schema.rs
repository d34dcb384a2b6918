//! The references between topology objects, as one table: which kind names
//! which through which field, how reachability follows the reference, and
//! whether the referring object is part of what it names (a change to it
//! changes the named object's compiled form and its flows). Reachability,
//! the parents a change invalidates and the topology's joins all read this
//! table; nothing walks references by hand.

use crate::kind::{Kind, Object};
use crate::*;
use uuid::Uuid;

/// A decoded topology object.
#[derive(Clone, Debug, PartialEq)]
pub enum Obj {
    Bridge(Bridge),
    Router(Router),
    Port(Port),
    Route(Route),
    Chain(Chain),
    Rule(Rule),
    PortGroup(PortGroup),
    IpAddrGroup(IpAddrGroup),
    IpAddrGroupMember(IpAddrGroupMember),
    DhcpSubnet(DhcpSubnet),
    DhcpHostEntry(DhcpHostEntry),
    LoadBalancer(LoadBalancer),
    Pool(Pool),
    PoolMember(PoolMember),
    Vip(Vip),
    HealthMonitor(HealthMonitor),
}

/// A type that is one of [`Obj`]'s variants.
pub trait Variant: Object {
    fn of(o: &Obj) -> Option<&Self>;
}

macro_rules! objs {
    ($($v:ident),*) => {
        impl Obj {
            /// Decodes stored JSON of a topology kind; `None` for another
            /// kind or bytes that do not decode.
            pub fn decode(kind: Kind, data: &[u8]) -> Option<Obj> {
                match kind {
                    $(Kind::$v => serde_json::from_slice(data).ok().map(Obj::$v),)*
                    _ => None,
                }
            }
            pub fn kind(&self) -> Kind {
                match self { $(Obj::$v(_) => Kind::$v,)* }
            }
            /// The stored JSON.
            pub fn encode(&self) -> Vec<u8> {
                match self {
                    $(Obj::$v(o) => crate::stored::encode(o),)*
                }
            }
            fn from_value(kind: Kind, v: serde_json::Value) -> Option<Obj> {
                match kind {
                    $(Kind::$v => serde_json::from_value(v).ok().map(Obj::$v),)*
                    _ => None,
                }
            }
            pub fn id(&self) -> Uuid {
                match self { $(Obj::$v(o) => o.id(),)* }
            }
        }
        $(impl From<$v> for Obj {
            fn from(o: $v) -> Obj { Obj::$v(o) }
        }
        impl Variant for $v {
            fn of(o: &Obj) -> Option<&$v> {
                match o { Obj::$v(x) => Some(x), _ => None }
            }
        })*
    };
}
objs!(
    Bridge,
    Router,
    Port,
    Route,
    Chain,
    Rule,
    PortGroup,
    IpAddrGroup,
    IpAddrGroupMember,
    DhcpSubnet,
    DhcpHostEntry,
    LoadBalancer,
    Pool,
    PoolMember,
    Vip,
    HealthMonitor
);

/// How reachability follows a reference from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// A reached `from` reaches what it names (a port's filter).
    Forward,
    /// A reached `to` reaches what names it (a chain's rules).
    Backward,
    /// Both ways (a port and its device).
    Both,
    /// Not followed.
    No,
}

/// One reference: objects of kind `from` name objects of kind `to` in
/// `field`.
pub struct Ref {
    pub from: Kind,
    pub field: &'static str,
    pub to: Kind,
    /// The ids named (empty when the field is unset or names another kind).
    pub get: fn(&Obj) -> Vec<Uuid>,
    pub walk: Walk,
    /// `from` is part of what it names: compiled into it (a rule into its
    /// chain, a port into its bridge's flood set), so a change to `from`
    /// recompiles `to` and invalidates its flows.
    pub part_of: bool,
    /// What deleting the named object does to `from`.
    pub on_delete: OnDelete,
}

/// What deleting an object does to an object naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDelete {
    /// The referrer goes too (a bridge's ports, a chain's rules).
    Cascade,
    /// The reference is cleared (a port's filter, a group's member).
    /// `field` is the referrer's JSON field: an id set to null, or an id
    /// removed from a list.
    Clear,
    /// The reference stays: a rule naming a deleted group or port matches
    /// nothing, as in MidoNet.
    Keep,
}

impl Ref {
    pub fn walks_forward(&self) -> bool {
        matches!(self.walk, Walk::Forward | Walk::Both)
    }
    pub fn walks_backward(&self) -> bool {
        matches!(self.walk, Walk::Backward | Walk::Both)
    }
}

macro_rules! get {
    ($v:ident, |$o:ident| $e:expr) => {{
        fn f(x: &Obj) -> Vec<Uuid> {
            match x {
                Obj::$v($o) => $e,
                _ => Vec::new(),
            }
        }
        f
    }};
}

fn one(id: Option<Uuid>) -> Vec<Uuid> {
    id.into_iter().collect()
}

const fn r(
    from: Kind,
    field: &'static str,
    to: Kind,
    get: fn(&Obj) -> Vec<Uuid>,
    walk: Walk,
    part_of: bool,
    on_delete: OnDelete,
) -> Ref {
    Ref {
        from,
        field,
        to,
        get,
        walk,
        part_of,
        on_delete,
    }
}

use Kind as K;
use OnDelete::*;
use Walk::*;

/// The topology's references. What a host reaches: from its bound ports,
/// their devices and every port of those, the peers of those ports (and so
/// the linked devices), the chains all of them use (with their rules, jump
/// targets and redirect targets), the groups the rules name and the groups
/// holding a reached port, routes, DHCP subnets, load balancers with their
/// pools, members, VIPs and health monitors.
pub static REFS: &[Ref] = &[
    r(
        K::Port,
        "deviceId",
        K::Bridge,
        get!(Port, |p| if p.is_router_port() {
            vec![]
        } else {
            vec![p.device_id]
        }),
        Both,
        true,
        Cascade,
    ),
    r(
        K::Port,
        "deviceId",
        K::Router,
        get!(Port, |p| if p.is_router_port() {
            vec![p.device_id]
        } else {
            vec![]
        }),
        Both,
        true,
        Cascade,
    ),
    // A bridge compiles its ports' peers in (router MACs and addresses).
    r(
        K::Port,
        "peerId",
        K::Port,
        get!(Port, |p| one(p.peer_id)),
        Both,
        true,
        Clear,
    ),
    // Where a port is bound: not walked (reach starts at this host's ports
    // by the engine's own test), indexed for a host's bindings.
    r(
        K::Port,
        "hostId",
        K::Host,
        get!(Port, |p| one(p.host_id)),
        No,
        false,
        Keep,
    ),
    r(
        K::Port,
        "inboundFilterId",
        K::Chain,
        get!(Port, |p| one(p.inbound_filter_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::Port,
        "outboundFilterId",
        K::Chain,
        get!(Port, |p| one(p.outbound_filter_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::Bridge,
        "inboundFilterId",
        K::Chain,
        get!(Bridge, |b| one(b.inbound_filter_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::Bridge,
        "outboundFilterId",
        K::Chain,
        get!(Bridge, |b| one(b.outbound_filter_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::Router,
        "inboundFilterId",
        K::Chain,
        get!(Router, |x| one(x.inbound_filter_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::Router,
        "outboundFilterId",
        K::Chain,
        get!(Router, |x| one(x.outbound_filter_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::Router,
        "localRedirectChainId",
        K::Chain,
        get!(Router, |x| one(x.local_redirect_chain_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::Router,
        "forwardChainId",
        K::Chain,
        get!(Router, |x| one(x.forward_chain_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::Router,
        "loadBalancerId",
        K::LoadBalancer,
        get!(Router, |x| one(x.load_balancer_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::Route,
        "routerId",
        K::Router,
        get!(Route, |x| one(x.router_id)),
        Backward,
        true,
        Cascade,
    ),
    r(
        K::Route,
        "nextHopPort",
        K::Port,
        get!(Route, |x| one(x.next_hop_port)),
        Backward,
        true,
        Cascade,
    ),
    r(
        K::Rule,
        "chainId",
        K::Chain,
        get!(Rule, |x| vec![x.chain_id]),
        Backward,
        true,
        Cascade,
    ),
    r(
        K::Rule,
        "jumpChainId",
        K::Chain,
        get!(Rule, |x| one(x.jump_chain_id)),
        Forward,
        false,
        Cascade,
    ),
    r(
        K::Rule,
        "targetPortId",
        K::Port,
        get!(Rule, |x| one(x.target_port_id)),
        Forward,
        false,
        Keep,
    ),
    r(
        K::Rule,
        "portGroup",
        K::PortGroup,
        get!(Rule, |x| x.condition.port_group_ids().collect()),
        Forward,
        false,
        Keep,
    ),
    r(
        K::Rule,
        "ipAddrGroup",
        K::IpAddrGroup,
        get!(Rule, |x| x.condition.ip_addr_group_ids().collect()),
        Forward,
        false,
        Keep,
    ),
    // A group holding a reached port is reached (its members' hosts share
    // flow state); the port compiles its groups in.
    r(
        K::PortGroup,
        "portIds",
        K::Port,
        get!(PortGroup, |g| g.port_ids.clone()),
        Backward,
        true,
        Clear,
    ),
    r(
        K::DhcpSubnet,
        "bridgeId",
        K::Bridge,
        get!(DhcpSubnet, |d| vec![d.bridge_id]),
        Backward,
        true,
        Cascade,
    ),
    r(
        K::IpAddrGroupMember,
        "groupId",
        K::IpAddrGroup,
        get!(IpAddrGroupMember, |m| vec![m.group_id]),
        Backward,
        true,
        Cascade,
    ),
    r(
        K::DhcpHostEntry,
        "bridgeId",
        K::Bridge,
        get!(DhcpHostEntry, |d| vec![d.bridge_id]),
        Backward,
        true,
        Cascade,
    ),
    r(
        K::DhcpHostEntry,
        "subnetId",
        K::DhcpSubnet,
        get!(DhcpHostEntry, |d| vec![d.subnet_id]),
        No,
        false,
        Cascade,
    ),
    r(
        K::Pool,
        "loadBalancerId",
        K::LoadBalancer,
        get!(Pool, |p| one(p.load_balancer_id)),
        Backward,
        false,
        Cascade,
    ),
    r(
        K::Pool,
        "healthMonitorId",
        K::HealthMonitor,
        get!(Pool, |p| one(p.health_monitor_id)),
        Forward,
        false,
        Clear,
    ),
    r(
        K::PoolMember,
        "poolId",
        K::Pool,
        get!(PoolMember, |m| one(m.pool_id)),
        Backward,
        true,
        Cascade,
    ),
    r(
        K::Vip,
        "poolId",
        K::Pool,
        get!(Vip, |v| one(v.pool_id)),
        Backward,
        false,
        Cascade,
    ),
    r(
        K::Vip,
        "loadBalancerId",
        K::LoadBalancer,
        get!(Vip, |v| one(v.load_balancer_id)),
        No,
        true,
        Keep,
    ),
];

/// An object, by kind and id.
pub type Key = (Kind, Uuid);

/// The row of [`REFS`] where `from` names `to` in `field`.
///
/// # Panics
/// When there is none: a caller names a reference the table lacks.
pub fn row(from: Kind, field: &str, to: Kind) -> usize {
    REFS.iter()
        .position(|r| r.from == from && r.field == field && r.to == to)
        .unwrap_or_else(|| panic!("no reference {from:?}.{field} -> {to:?} in the table"))
}

/// What `o` reaches through one reference: what it names over rows walked
/// forward, and (`referrers(row, id)`: the ids naming `id` in that row)
/// what names it over rows walked backward. Existing or not.
pub fn neighbours<I: IntoIterator<Item = Uuid>>(
    o: &Obj,
    mut referrers: impl FnMut(usize, Uuid) -> I,
) -> Vec<Key> {
    let (kind, id) = (o.kind(), o.id());
    let mut out = Vec::new();
    for (i, r) in REFS.iter().enumerate() {
        if r.from == kind && r.walks_forward() {
            out.extend((r.get)(o).into_iter().map(|id| (r.to, id)));
        }
        if r.to == kind && r.walks_backward() {
            out.extend(referrers(i, id).into_iter().map(|id| (r.from, id)));
        }
    }
    out
}

/// Walks from `stack` (objects already reached) to everything they reach:
/// `get` finds an object, `referrers` is as for [`neighbours`], `insert`
/// records a newly found object and the one it was found from (`false`: it
/// was reached already).
pub fn walk<'a, I: IntoIterator<Item = Uuid>>(
    mut stack: Vec<Key>,
    get: impl Fn(&Key) -> Option<&'a Obj>,
    mut referrers: impl FnMut(usize, Uuid) -> I,
    mut insert: impl FnMut(Key, Key) -> bool,
) {
    while let Some(k) = stack.pop() {
        let Some(o) = get(&k) else { continue };
        for n in neighbours(o, &mut referrers) {
            if get(&n).is_some() && insert(k, n) {
                stack.push(n);
            }
        }
    }
}

/// Every reference `o` makes, per row of [`REFS`]; with `walked`, only over
/// rows reach follows.
pub fn refs_of(o: &Obj, walked: bool) -> Vec<(usize, Uuid)> {
    REFS.iter()
        .enumerate()
        .filter(|(_, r)| r.from == o.kind() && (!walked || r.walk != Walk::No))
        .flat_map(|(i, r)| (r.get)(o).into_iter().map(move |id| (i, id)))
        .collect()
}

/// The objects `o` is part of (see [`Ref::part_of`]): its parents.
pub fn parents(o: &Obj) -> impl Iterator<Item = (Kind, Uuid)> + '_ {
    REFS.iter()
        .filter(move |r| r.part_of && r.from == o.kind())
        .flat_map(move |r| (r.get)(o).into_iter().map(move |id| (r.to, id)))
}

impl Obj {
    /// This object without its reference to `id` in row `row`'s field (see
    /// [`OnDelete::Clear`]); `None` when it holds none there.
    pub fn cleared(&self, row: usize, id: Uuid) -> Option<Obj> {
        let r = &REFS[row];
        if r.from != self.kind() || !(r.get)(self).contains(&id) {
            return None;
        }
        let mut v = self.value_of();
        let named = serde_json::Value::String(id.to_string());
        match v.get_mut(r.field)? {
            serde_json::Value::Array(ids) => ids.retain(|x| *x != named),
            f if *f == named => *f = serde_json::Value::Null,
            _ => return None,
        }
        Obj::from_value(r.from, v)
    }

    fn value_of(&self) -> serde_json::Value {
        serde_json::from_slice(&self.encode()).unwrap_or_default()
    }
}

/// The reverse of [`REFS`]: per row and named id, the ids of the objects
/// naming it there; with each object's references, to update it by id.
#[derive(Default)]
pub struct Referrers {
    by_named: rustc_hash::FxHashMap<(usize, Uuid), rustc_hash::FxHashSet<Uuid>>,
    refs: rustc_hash::FxHashMap<Key, Vec<(usize, Uuid)>>,
}

impl Referrers {
    /// Object `k` is now `o` (`None`: deleted).
    pub fn set(&mut self, k: Key, o: Option<&Obj>) {
        let new = o.map(|o| refs_of(o, false)).unwrap_or_default();
        for named in self.refs.remove(&k).unwrap_or_default() {
            if let Some(s) = self.by_named.get_mut(&named) {
                s.remove(&k.1);
                if s.is_empty() {
                    self.by_named.remove(&named);
                }
            }
        }
        for named in &new {
            self.by_named.entry(*named).or_default().insert(k.1);
        }
        if !new.is_empty() {
            self.refs.insert(k, new);
        }
    }

    /// The ids of the objects naming `id` in row `row`.
    pub fn of(&self, row: usize, id: Uuid) -> impl Iterator<Item = Uuid> + '_ {
        self.by_named.get(&(row, id)).into_iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_names_its_own_kind() {
        // Each row's extractor answers only for objects of its `from` kind.
        let p = Obj::Port(Port {
            id: Uuid::new_v4(),
            device_id: Uuid::new_v4(),
            peer_id: Some(Uuid::new_v4()),
            ..Default::default()
        });
        for r in REFS.iter().filter(|r| r.from != Kind::Port) {
            assert!((r.get)(&p).is_empty(), "{:?}.{}", r.from, r.field);
        }
        let parents: Vec<_> = parents(&p).collect();
        assert!(parents.contains(&(Kind::Bridge, p_device(&p))));
        assert_eq!(parents.len(), 2, "its bridge and its peer: {parents:?}");
    }

    fn p_device(o: &Obj) -> Uuid {
        match o {
            Obj::Port(p) => p.device_id,
            _ => unreachable!(),
        }
    }

    #[test]
    fn clearing_a_reference_unsets_the_field_or_drops_the_list_entry() {
        let (c, p) = (Uuid::new_v4(), Uuid::new_v4());
        let row = |from: Kind, field: &str| {
            REFS.iter()
                .position(|r| r.from == from && r.field == field)
                .unwrap()
        };
        let port = Obj::Port(Port {
            id: Uuid::new_v4(),
            inbound_filter_id: Some(c),
            outbound_filter_id: Some(c),
            ..Default::default()
        });
        let Some(Obj::Port(x)) = port.cleared(row(Kind::Port, "inboundFilterId"), c) else {
            panic!("cleared")
        };
        assert_eq!((x.inbound_filter_id, x.outbound_filter_id), (None, Some(c)));
        assert!(port.cleared(row(Kind::Port, "peerId"), c).is_none());
        let g = Obj::PortGroup(PortGroup {
            id: Uuid::new_v4(),
            port_ids: vec![p, c],
            ..Default::default()
        });
        let Some(Obj::PortGroup(x)) = g.cleared(row(Kind::PortGroup, "portIds"), p) else {
            panic!("cleared")
        };
        assert_eq!(x.port_ids, vec![c]);
        // Every row that clears names a field the referrer's JSON has.
        for r in REFS.iter().filter(|r| r.on_delete == OnDelete::Clear) {
            let o = Obj::decode(
                r.from,
                format!("{{\"id\": \"{}\"}}", Uuid::nil()).as_bytes(),
            )
            .expect("decodes from an id alone");
            assert!(
                o.value_of().get(r.field).is_some(),
                "{:?}.{}",
                r.from,
                r.field
            );
        }
    }

    #[test]
    fn referrers_follow_updates_and_deletes() {
        let (b1, b2) = (Uuid::new_v4(), Uuid::new_v4());
        let p = |dev| {
            Obj::Port(Port {
                id: Uuid::from_u128(1),
                device_id: dev,
                ..Default::default()
            })
        };
        let row = REFS
            .iter()
            .position(|r| r.from == Kind::Port && r.to == Kind::Bridge)
            .unwrap();
        let mut x = Referrers::default();
        x.set((Kind::Port, Uuid::from_u128(1)), Some(&p(b1)));
        assert_eq!(x.of(row, b1).collect::<Vec<_>>(), vec![Uuid::from_u128(1)]);
        x.set((Kind::Port, Uuid::from_u128(1)), Some(&p(b2)));
        assert_eq!(x.of(row, b1).count(), 0);
        assert_eq!(x.of(row, b2).count(), 1);
        x.set((Kind::Port, Uuid::from_u128(1)), None);
        assert_eq!(x.of(row, b2).count(), 0);
        assert!(x.refs.is_empty() && x.by_named.is_empty());
    }

    #[test]
    fn a_deleted_pool_member_names_its_pool_as_parent() {
        let pool = Uuid::new_v4();
        let m = Obj::PoolMember(PoolMember {
            id: Uuid::new_v4(),
            pool_id: Some(pool),
            ..Default::default()
        });
        assert_eq!(parents(&m).collect::<Vec<_>>(), vec![(Kind::Pool, pool)]);
    }
}
