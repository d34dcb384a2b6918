//! The incremental topology engine. It holds the decoded objects with their
//! reverse references (read from [`model::REFS`]), keeps what a host's ports
//! reach current per change, and keeps the simulation's [`Topology`]
//! compiled per changed entry. Changes are applied one by one and committed
//! in batches; a commit returns the flow tags the batch made stale and what
//! the host gained or lost sight of.
//!
//! The cost of a change is what it touches, with one exception: a change
//! that can shrink what the host reaches (a delete, a moved reference, an
//! unbound port) walks the host's reach again from its ports, once per
//! commit. [`Engine::recompute`] is the full-recompute fallback; tests hold
//! the two equal.

use model::schema::{refs_of, walk};
use model::{Kind, Obj, REFS};
use rustc_hash::{FxHashMap, FxHashSet};
use sim::topology::{Entry, Source};
use sim::{Tag, Topology};
use uuid::Uuid;

pub use model::schema::Key;

/// What a commit changed.
#[derive(Debug, Default)]
pub struct Commit {
    /// Flow tags made stale: each changed object's and its parents'.
    pub tags: Vec<Tag>,
    /// Objects that came into reach, and that went out of it.
    pub gained: Vec<Key>,
    pub lost: Vec<Key>,
    /// Compiled entries recompiled (none when the engine does not compile):
    /// what a copy of the topology needs from [`Topology::delta`].
    pub compiled: Vec<Entry>,
    /// Whether the host's reach was walked again from its ports.
    pub rewalked: bool,
}

/// What a walk from the host's ports found: reach, each object's depth, and
/// the object it was found from.
type Walked = (FxHashSet<Key>, FxHashMap<Key, u32>, FxHashMap<Key, Key>);

/// One host's view of the topology (see the crate docs).
pub struct Engine {
    host: Uuid,
    /// Compile the simulation's topology (the agent) or only track reach
    /// (the cluster's per-host filter).
    compiles: bool,
    objects: FxHashMap<Key, Obj>,
    /// (row of REFS, named id) -> ids of the objects naming it there.
    referrers: FxHashMap<(usize, Uuid), FxHashSet<Uuid>>,
    reached: FxHashSet<Key>,
    /// Per reached object, its depth in the walk that found it (a start's
    /// is 0; one found from `x`, `x`'s + 1). Every reached object has a path
    /// of ever smaller depths back to a start: a change that may shrink
    /// reach follows it to prove what stays reached, instead of walking
    /// everything again (see [`Engine::shrink_locally`]).
    depth: FxHashMap<Key, u32>,
    /// The object each was found from (a proof tries it first).
    parent: FxHashMap<Key, Key>,
    /// Ports bound to this host: where reach starts.
    starts: FxHashSet<Uuid>,
    topo: Topology,
    /// Since the last commit: each changed object's version before the batch.
    before: FxHashMap<Key, Option<Obj>>,
    gained: Vec<Key>,
    /// Left reach in this batch without a walk (see [`Engine::changed`]).
    lost: Vec<Key>,
    rewalk: bool,
}

fn row(from: Kind, field: &str, to: Kind) -> usize {
    REFS.iter()
        .position(|r| r.from == from && r.field == field && r.to == to)
        .unwrap_or_else(|| panic!("REFS has no {from:?}.{field} -> {to:?}"))
}

/// The rows the engine's joins read (looked up once).
struct Rows {
    bridge_ports: usize,
    router_ports: usize,
    route_router: usize,
    route_port: usize,
    dhcp_bridge: usize,
    dhcp_host_bridge: usize,
    group_member: usize,
    member_pool: usize,
    vip_lb: usize,
    group_ports: usize,
    peer: usize,
}

fn rows() -> &'static Rows {
    static ROWS: std::sync::OnceLock<Rows> = std::sync::OnceLock::new();
    ROWS.get_or_init(|| Rows {
        bridge_ports: row(Kind::Port, "deviceId", Kind::Bridge),
        router_ports: row(Kind::Port, "deviceId", Kind::Router),
        route_router: row(Kind::Route, "routerId", Kind::Router),
        route_port: row(Kind::Route, "nextHopPort", Kind::Port),
        dhcp_bridge: row(Kind::DhcpSubnet, "bridgeId", Kind::Bridge),
        dhcp_host_bridge: row(Kind::DhcpHostEntry, "bridgeId", Kind::Bridge),
        group_member: row(Kind::IpAddrGroupMember, "groupId", Kind::IpAddrGroup),
        member_pool: row(Kind::PoolMember, "poolId", Kind::Pool),
        vip_lb: row(Kind::Vip, "loadBalancerId", Kind::LoadBalancer),
        group_ports: row(Kind::PortGroup, "portIds", Kind::Port),
        peer: row(Kind::Port, "peerId", Kind::Port),
    })
}

/// The compiled entry an object is, if it is one.
fn entry_of(k: Key) -> Option<Entry> {
    let (kind, id) = k;
    Some(match kind {
        Kind::Port => Entry::Port(id),
        Kind::Bridge => Entry::Bridge(id),
        Kind::Router => Entry::Router(id),
        Kind::Chain => Entry::Chain(id),
        Kind::PortGroup => Entry::PortGroup(id),
        Kind::IpAddrGroup => Entry::IpAddrGroup(id),
        Kind::LoadBalancer => Entry::LoadBalancer(id),
        Kind::Pool => Entry::Pool(id),
        _ => return None,
    })
}

fn bound_here(o: &Obj, host: Uuid) -> bool {
    matches!(o, Obj::Port(p) if p.host_id == Some(host))
}

impl Engine {
    pub fn new(host: Uuid, compiles: bool) -> Engine {
        Engine {
            host,
            compiles,
            objects: FxHashMap::default(),
            referrers: FxHashMap::default(),
            reached: FxHashSet::default(),
            depth: FxHashMap::default(),
            parent: FxHashMap::default(),
            starts: FxHashSet::default(),
            topo: Topology::default(),
            before: FxHashMap::default(),
            gained: Vec::new(),
            lost: Vec::new(),
            rewalk: false,
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }
    pub fn reached(&self) -> &FxHashSet<Key> {
        &self.reached
    }
    pub fn get(&self, k: Key) -> Option<&Obj> {
        self.objects.get(&k)
    }
    /// Every object of one kind.
    pub fn all<T: model::schema::Variant>(&self) -> impl Iterator<Item = &T> {
        self.objects.values().filter_map(T::of)
    }
    /// Every object's key.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.objects.keys()
    }
    pub fn len(&self) -> usize {
        self.objects.len()
    }
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
    /// The ports bound to this host.
    pub fn local_ports(&self) -> impl Iterator<Item = &model::Port> {
        self.starts
            .iter()
            .filter_map(|id| match self.objects.get(&(Kind::Port, *id)) {
                Some(Obj::Port(p)) => Some(p),
                _ => None,
            })
    }

    /// Applies stored JSON of kind `kind` (`None`: deleted). Not a topology
    /// kind, or bytes that do not decode: `false`, nothing changes (an
    /// undecodable version counts as deleted).
    pub fn apply_stored(&mut self, kind: &str, id: Uuid, data: Option<&[u8]>) -> bool {
        let Some(kind) = model::Objects::kind_named(kind) else {
            return false;
        };
        match data.and_then(|d| Obj::decode(kind, d)) {
            Some(o) if o.id() == id => self.put(o),
            _ => self.delete(kind, id),
        }
        true
    }

    pub fn put(&mut self, o: Obj) {
        let k = (o.kind(), o.id());
        let old = self.objects.insert(k, o);
        self.changed(k, old);
    }

    pub fn delete(&mut self, kind: Kind, id: Uuid) {
        let old = self.objects.remove(&(kind, id));
        if old.is_some() {
            self.changed((kind, id), old);
        }
    }

    fn changed(&mut self, k: Key, old: Option<Obj>) {
        let new = self.objects.get(&k);
        // Reverse references: the old version's out, the new one's in.
        let refs = |o: &Obj| refs_of(o, false);
        let old_refs = old.as_ref().map(refs).unwrap_or_default();
        let new_refs = new.map(refs).unwrap_or_default();
        let bound = new.is_some_and(|o| bound_here(o, self.host));
        let was_bound = old.as_ref().is_some_and(|o| bound_here(o, self.host));
        // Reach can only shrink when a reached object loses a reference it
        // walked (or goes, or is unbound): then the commit walks again.
        let shrinks = match (&old, new) {
            (Some(o), Some(n)) => {
                let now = refs_of(n, true);
                !refs_of(o, true).iter().all(|x| now.contains(x)) || (was_bound && !bound)
            }
            _ => true,
        };
        let exists = new.is_some();
        for (i, id) in &old_refs {
            if !new_refs.contains(&(*i, *id))
                && let Some(s) = self.referrers.get_mut(&(*i, *id))
            {
                s.remove(&k.1);
                if s.is_empty() {
                    self.referrers.remove(&(*i, *id));
                }
            }
        }
        for (i, id) in &new_refs {
            self.referrers.entry((*i, *id)).or_default().insert(k.1);
        }
        if bound {
            self.starts.insert(k.1);
        } else {
            self.starts.remove(&k.1);
        }
        if self.reached.contains(&k) {
            if !shrinks {
                // It may name more than before.
                self.walk(vec![k]);
            } else if old.as_ref().is_some_and(|o| self.reaches_nothing(o))
                && self.objects.get(&k).is_none_or(|n| self.reaches_nothing(n))
            {
                // Nothing is reached through it (a rule without jumps, a
                // route): only its own reach can change, no walk needed.
                let d = if bound {
                    Some((0, k))
                } else {
                    self.depth_via_neighbour(k)
                };
                match d.filter(|_| exists) {
                    Some(d) => self.place(k, d),
                    None => self.unreach(k),
                }
            } else if self.rewalk || !self.shrink_locally(k, old.as_ref(), bound) {
                self.rewalk = true;
            }
        } else if exists {
            let d = if bound {
                Some((0, k))
            } else {
                self.depth_via_neighbour(k)
            };
            if let Some(d) = d {
                self.reached.insert(k);
                self.place(k, d);
                self.gained.push(k);
                self.walk(vec![k]);
            }
        }
        self.before.entry(k).or_insert(old);
    }

    fn unreach(&mut self, k: Key) {
        self.reached.remove(&k);
        self.depth.remove(&k);
        self.parent.remove(&k);
        self.lost.push(k);
    }

    /// Records reached `k`'s depth and the object it was found from.
    fn place(&mut self, k: Key, (depth, parent): (u32, Key)) {
        self.depth.insert(k, depth);
        self.parent.insert(k, parent);
    }

    /// A change to reached `k` may shrink reach: proves, following ever
    /// smaller depths, that `k` (unless deleted) and each object it no
    /// longer reaches directly are still reached. `false` when a proof
    /// fails or grows too long: the commit walks everything again.
    fn shrink_locally(&mut self, k: Key, old: Option<&Obj>, bound: bool) -> bool {
        // Enough for a tenant far behind a provider router with thousands
        // of tenants; a failed proof costs only the walk it would have.
        let mut budget = 4096;
        let exists = self.objects.contains_key(&k);
        if bound {
            self.place(k, (0, k));
        } else if exists && !self.still_reached(k, &mut budget) {
            return false;
        }
        let before = old.map(|o| self.neighbours(o)).unwrap_or_default();
        let now = self
            .objects
            .get(&k)
            .map(|o| self.neighbours(o))
            .unwrap_or_default();
        if !exists {
            self.unreach(k);
        }
        for t in before {
            if t != k
                && !now.contains(&t)
                && self.reached.contains(&t)
                && !self.still_reached(t, &mut budget)
            {
                return false;
            }
        }
        if exists {
            // It may name more than before, too.
            self.walk(vec![k]);
        }
        true
    }

    /// Whether reached `x` has a path of ever smaller depths back to a start
    /// (within `budget` objects visited).
    fn still_reached(&self, x: Key, budget: &mut usize) -> bool {
        let mut stack = vec![x];
        let mut seen: FxHashSet<Key> = FxHashSet::default();
        while let Some(y) = stack.pop() {
            if y.0 == Kind::Port && self.starts.contains(&y.1) {
                return true;
            }
            let dy = self.depth.get(&y).copied().unwrap_or(u32::MAX);
            // The object it was found from, if that still holds, saves
            // reading every predecessor (a provider router has thousands).
            if let Some(&p) = self.parent.get(&y)
                && p != y
                && self.reached.contains(&p)
                && self.depth.get(&p).is_some_and(|d| *d < dy)
                && self.walks_to(p, y)
            {
                if seen.insert(p) {
                    stack.push(p);
                }
                continue;
            }
            for p in self.predecessors(y) {
                if self.depth.get(&p).is_some_and(|d| *d < dy)
                    && self.reached.contains(&p)
                    && seen.insert(p)
                {
                    if *budget == 0 {
                        return false;
                    }
                    *budget -= 1;
                    stack.push(p);
                }
            }
        }
        false
    }

    /// The objects that reach `k` through one reference (existing or not).
    fn predecessors(&self, k: Key) -> Vec<Key> {
        let Some(o) = self.objects.get(&k) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in REFS.iter().enumerate() {
            if r.from == k.0 && r.walks_backward() {
                out.extend((r.get)(o).into_iter().map(|id| (r.to, id)));
            }
            if r.to == k.0 && r.walks_forward() {
                let from = self.referrers.get(&(i, k.1)).into_iter().flatten();
                out.extend(from.map(|id| (r.from, *id)));
            }
        }
        out
    }

    /// Whether no object is reached through `o`: it names nothing over a
    /// reference walked forward, and nothing names it over one walked back.
    fn reaches_nothing(&self, o: &Obj) -> bool {
        self.neighbours(o).is_empty()
    }

    /// What `o` reaches through one reference (existing or not).
    fn neighbours(&self, o: &Obj) -> Vec<Key> {
        model::schema::neighbours(o, |row, id| {
            self.referrers
                .get(&(row, id))
                .into_iter()
                .flatten()
                .copied()
        })
    }

    /// When a reached object reaches `k` through one reference: the depth
    /// `k` has through the shallowest such.
    fn depth_via_neighbour(&self, k: Key) -> Option<(u32, Key)> {
        self.predecessors(k)
            .into_iter()
            .filter(|p| self.reached.contains(p))
            .filter_map(|p| Some((self.depth.get(&p)? + 1, p)))
            .min()
    }

    /// Whether reached `p` reaches `y` through one reference.
    fn walks_to(&self, p: Key, y: Key) -> bool {
        let (Some(po), Some(yo)) = (self.objects.get(&p), self.objects.get(&y)) else {
            return false;
        };
        REFS.iter().any(|r| {
            (r.from == p.0 && r.to == y.0 && r.walks_forward() && (r.get)(po).contains(&y.1))
                || (r.from == y.0
                    && r.to == p.0
                    && r.walks_backward()
                    && (r.get)(yo).contains(&p.1))
        })
    }

    /// Extends reach from `stack` (reached objects) to what they reach
    /// that is not reached yet.
    fn walk(&mut self, stack: Vec<Key>) {
        let (objects, referrers) = (&self.objects, &self.referrers);
        let (reached, gained) = (&mut self.reached, &mut self.gained);
        let (depth, parent) = (&mut self.depth, &mut self.parent);
        walk(
            stack,
            |k| objects.get(k),
            |row, id| referrers.get(&(row, id)).into_iter().flatten().copied(),
            |from, k| {
                let new = reached.insert(k);
                if new {
                    gained.push(k);
                    let d = depth.get(&from).map_or(0, |d| d + 1);
                    depth.insert(k, d);
                    parent.insert(k, from);
                }
                new
            },
        );
    }

    /// Reach from this host's ports, from scratch, with each object's depth
    /// and the object it was found from.
    fn walk_all(&self) -> Walked {
        let stack: Vec<Key> = self
            .starts
            .iter()
            .map(|id| (Kind::Port, *id))
            .filter(|k| self.objects.contains_key(k))
            .collect();
        let mut reached: FxHashSet<Key> = stack.iter().copied().collect();
        let mut depth: FxHashMap<Key, u32> = stack.iter().map(|k| (*k, 0)).collect();
        let mut parent: FxHashMap<Key, Key> = FxHashMap::default();
        walk(
            stack,
            |k| self.objects.get(k),
            |row, id| {
                self.referrers
                    .get(&(row, id))
                    .into_iter()
                    .flatten()
                    .copied()
            },
            |from, k| {
                let new = reached.insert(k);
                if new {
                    let d = depth.get(&from).map_or(0, |d| d + 1);
                    depth.insert(k, d);
                    parent.insert(k, from);
                }
                new
            },
        );
        (reached, depth, parent)
    }

    /// Ends a batch of changes: reach made whole, the changed entries
    /// compiled again, the stale flow tags.
    pub fn commit(&mut self) -> Commit {
        let mut c = Commit {
            rewalked: self.rewalk,
            ..Default::default()
        };
        c.lost = std::mem::take(&mut self.lost);
        c.gained = std::mem::take(&mut self.gained);
        if self.rewalk {
            let (now, depth, parent) = self.walk_all();
            c.lost.extend(self.reached.difference(&now).copied());
            c.gained.extend(now.difference(&self.reached).copied());
            self.reached = now;
            self.depth = depth;
            self.parent = parent;
        }
        // What left and came back (or came and left) in the batch is
        // reported once, as it ends.
        c.gained.retain(|k| self.reached.contains(k));
        c.lost.retain(|k| !self.reached.contains(k));
        c.gained.sort();
        c.gained.dedup();
        c.lost.sort();
        c.lost.dedup();
        self.rewalk = false;
        let before = std::mem::take(&mut self.before);
        let mut touched: Vec<(Key, Option<Obj>)> = before.into_iter().collect();
        for k in c.gained.iter().chain(c.lost.iter()) {
            touched.push((*k, None));
        }
        let mut entries: FxHashSet<Entry> = FxHashSet::default();
        let mut tags: FxHashSet<Tag> = FxHashSet::default();
        for (k, old) in &touched {
            tags.insert(Tag::Device(k.1));
            tags.insert(Tag::Route(k.1));
            let versions = old.iter().chain(self.objects.get(k));
            let mut keys = vec![*k];
            for o in versions {
                keys.extend(model::schema::parents(o));
            }
            for p in keys {
                if p != *k {
                    tags.insert(Tag::Device(p.1));
                }
                self.affect(p, old.as_ref().filter(|_| p == *k), &mut entries);
            }
        }
        if self.compiles {
            let mut topo = std::mem::take(&mut self.topo);
            let view = View { e: self };
            for e in &entries {
                topo.compile(&view, *e);
            }
            self.topo = topo;
        }
        if self.compiles {
            c.compiled = entries.into_iter().collect();
        }
        // In no particular order: invalidation reads them as a set.
        c.tags = tags.into_iter().collect();
        c
    }

    /// The entries a change to `k` recompiles: its own; for a port, its
    /// device's (old and new), which compiles its ports in, the devices of
    /// the ports naming it as peer, which compile their peers in, and the
    /// routers of routes through it.
    fn affect(&self, k: Key, old: Option<&Obj>, out: &mut FxHashSet<Entry>) {
        out.extend(entry_of(k));
        if k.0 != Kind::Port {
            return;
        }
        let device = |o: &Obj| match o {
            Obj::Port(p) if p.is_router_port() => Some(Entry::Router(p.device_id)),
            Obj::Port(p) => Some(Entry::Bridge(p.device_id)),
            _ => None,
        };
        out.extend(
            old.into_iter()
                .chain(self.objects.get(&k))
                .filter_map(device),
        );
        let peers = self
            .referrers
            .get(&(rows().peer, k.1))
            .into_iter()
            .flatten();
        out.extend(
            peers
                .filter_map(|q| self.objects.get(&(Kind::Port, *q)))
                .filter_map(device),
        );
        // A route through the port counts for its router only while the
        // port is up and plugged.
        let routes = self.referrers.get(&(rows().route_port, k.1));
        out.extend(routes.into_iter().flatten().filter_map(|r| {
            match self.objects.get(&(Kind::Route, *r)) {
                Some(Obj::Route(r)) => r.router_id.map(Entry::Router),
                _ => None,
            }
        }));
    }

    /// The full recompute: reach walked from the ports and every entry
    /// compiled, from the objects alone. The fallback, and the tests' oracle.
    pub fn recompute(&mut self) {
        (self.reached, self.depth, self.parent) = self.walk_all();
        self.before.clear();
        self.gained.clear();
        self.lost.clear();
        self.rewalk = false;
        if self.compiles {
            self.topo = Topology::build(&self.reached_objects());
        }
    }

    /// The reached objects, as a set to compile.
    pub fn reached_objects(&self) -> model::Objects {
        let mut keys: Vec<&Key> = self.reached.iter().collect();
        keys.sort();
        model::Objects::from_objs(
            keys.into_iter()
                .filter_map(|k| self.objects.get(k).cloned()),
        )
    }

    /// The reached objects a reference row names `id` from.
    fn referring(&self, row: usize, id: Uuid) -> impl Iterator<Item = &Obj> {
        let kind = REFS[row].from;
        self.referrers
            .get(&(row, id))
            .into_iter()
            .flatten()
            .filter_map(move |from| {
                let k = (kind, *from);
                self.reached
                    .contains(&k)
                    .then(|| self.objects.get(&k))
                    .flatten()
            })
    }
}

/// The engine's objects in reach, as the compiler reads them.
struct View<'a> {
    e: &'a Engine,
}

macro_rules! lookup {
    ($name:ident, $kind:ident, $t:ty) => {
        fn $name(&self, id: Uuid) -> Option<&$t> {
            let k = (Kind::$kind, id);
            if !self.e.reached.contains(&k) {
                return None;
            }
            match self.e.objects.get(&k) {
                Some(Obj::$kind(x)) => Some(x),
                _ => None,
            }
        }
    };
}

macro_rules! children {
    ($name:ident, $row:ident, $kind:ident, $t:ty) => {
        fn $name(&self, id: Uuid) -> Vec<&$t> {
            self.e
                .referring(rows().$row, id)
                .filter_map(|o| match o {
                    Obj::$kind(x) => Some(x),
                    _ => None,
                })
                .collect()
        }
    };
}

impl Source for View<'_> {
    lookup!(port, Port, model::Port);
    lookup!(bridge, Bridge, model::Bridge);
    lookup!(router, Router, model::Router);
    lookup!(chain, Chain, model::Chain);
    lookup!(rule, Rule, model::Rule);
    lookup!(port_group, PortGroup, model::PortGroup);
    lookup!(ip_addr_group, IpAddrGroup, model::IpAddrGroup);
    lookup!(pool, Pool, model::Pool);
    lookup!(load_balancer, LoadBalancer, model::LoadBalancer);
    children!(dhcp_of, dhcp_bridge, DhcpSubnet, model::DhcpSubnet);
    children!(
        ip_addr_members_of,
        group_member,
        IpAddrGroupMember,
        model::IpAddrGroupMember
    );
    children!(
        dhcp_hosts_of,
        dhcp_host_bridge,
        DhcpHostEntry,
        model::DhcpHostEntry
    );
    children!(members_of, member_pool, PoolMember, model::PoolMember);
    children!(vips_of, vip_lb, Vip, model::Vip);

    fn ports_of(&self, device: Uuid) -> Vec<&model::Port> {
        let r = rows();
        [r.bridge_ports, r.router_ports]
            .into_iter()
            .flat_map(|row| self.e.referring(row, device))
            .filter_map(|o| match o {
                Obj::Port(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn routes_of(&self, router: Uuid) -> Vec<&model::Route> {
        let r = rows();
        let via_ports: Vec<Uuid> = self.ports_of(router).iter().map(|p| p.id).collect();
        std::iter::once(router)
            .map(|id| (r.route_router, id))
            .chain(via_ports.into_iter().map(|p| (r.route_port, p)))
            .flat_map(|(row, id)| self.e.referring(row, id))
            .filter_map(|o| match o {
                Obj::Route(x) => Some(x),
                _ => None,
            })
            .collect()
    }

    fn groups_of(&self, port: Uuid) -> Vec<Uuid> {
        self.e
            .referring(rows().group_ports, port)
            .map(Obj::id)
            .collect()
    }
}
