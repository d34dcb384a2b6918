//! The agent's copy of the topology, kept current by the topology service's
//! watch, and what it derives from it: the simulation's topology snapshot,
//! this host's port bindings, its tunnel address and its peers'.

use model::{Object, TunnelZone};
use rustc_hash::{FxHashMap, FxHashSet};
use sim::{Delta, StateWrite, Tag};
use std::net::{IpAddr, Ipv4Addr};
use topology_proto::v1::Update;
use uuid::Uuid;

/// A replicated table entry that changed: (table, key, value or removed).
pub type TableChange = (String, String, Option<String>);

/// What a batch of updates changed.
pub struct Changes {
    /// The simulation's topology for this host (what its bound ports
    /// reach): the entries compiled again, to apply to each worker's copy.
    pub delta: Delta,
    /// Flow tags made stale: each changed object's and its parents', per
    /// the model's reference table.
    pub tags: Vec<Tag>,
    pub tables: Vec<TableChange>,
    /// The kinds that changed.
    pub kinds: FxHashSet<String>,
}

pub struct Cache {
    pub revision: u64,
    /// Stored JSON of the kinds the engine does not hold (hosts, tunnel
    /// zones, port states).
    objects: FxHashMap<String, FxHashMap<String, Vec<u8>>>,
    pub tables: FxHashMap<String, FxHashMap<String, String>>,
    /// The topology objects, decoded, with this host's reach and the
    /// compiled topology kept current per change.
    engine: topology::Engine,
    /// Kinds changed since the last [`Cache::take_changes`].
    changed: FxHashSet<String>,
    /// Table entries changed since the last take.
    table_changes: Vec<TableChange>,
    /// A snapshot is arriving: replace everything at its end.
    in_snapshot: Option<Box<Snapshot>>,
    /// Objects held per kind, kept per change (`topology.json`).
    counts: std::collections::BTreeMap<String, usize>,
}

/// Up to this many objects `topology.json` lists their ids; beyond, only
/// how many of each kind (a gateway's list would be the whole cloud).
const SUMMARY_IDS_MAX: usize = 10_000;

/// A snapshot being received.
#[derive(Default)]
struct Snapshot {
    objects: FxHashMap<String, FxHashMap<String, Vec<u8>>>,
    tables: FxHashMap<String, FxHashMap<String, String>>,
}

/// A local port binding: this host serves `port` on `interface`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub port: Uuid,
    pub interface: String,
    pub tunnel_key: u32,
    /// Where the port was bound before (its connection state is there).
    pub previous_host: Option<Uuid>,
}

fn decode<T: Object>(b: &[u8]) -> Option<T> {
    serde_json::from_slice(b).ok()
}

impl Cache {
    /// The cache of host `me`'s agent.
    pub fn new(me: Uuid) -> Cache {
        Cache {
            revision: 0,
            objects: FxHashMap::default(),
            tables: FxHashMap::default(),
            engine: topology::Engine::new(me, true),
            changed: FxHashSet::default(),
            table_changes: Vec::new(),
            in_snapshot: None,
            counts: Default::default(),
        }
    }

    /// Applies one update; `true` when the cache is consistent (not mid-snapshot).
    pub fn apply(&mut self, u: Update) -> bool {
        if u.snapshot_begin {
            self.in_snapshot = Some(Box::default());
        }
        let end = u.snapshot_end;
        let rev = u.revision;
        if let Some(s) = self.in_snapshot.as_mut() {
            if !u.kind.is_empty() {
                if let Some(t) = u.kind.strip_prefix("table/") {
                    let v = String::from_utf8_lossy(&u.data).into_owned();
                    s.tables.entry(t.to_string()).or_default().insert(u.id, v);
                } else {
                    s.objects.entry(u.kind).or_default().insert(u.id, u.data);
                }
            }
            if end {
                let s = self.in_snapshot.take().expect("in a snapshot");
                self.replace(*s);
                self.revision = rev;
                return true;
            }
            return false;
        }
        self.revision = self.revision.max(rev);
        self.put(u);
        true
    }

    /// A snapshot replaces everything: what differs from it is applied as
    /// changes (an unchanged object costs nothing).
    fn replace(&mut self, s: Snapshot) {
        let listed = |kind: &str, id: &str| s.objects.get(kind).is_some_and(|m| m.contains_key(id));
        let mut gone: Vec<(String, String)> = self
            .objects
            .iter()
            .flat_map(|(k, m)| m.keys().map(move |id| (k.clone(), id.clone())))
            .chain(
                self.engine
                    .keys()
                    .map(|(k, id)| (k.name().to_string(), id.to_string())),
            )
            .collect();
        gone.retain(|(k, id)| !listed(k, id));
        for (kind, id) in gone {
            self.set(&kind, &id, None);
        }
        for (kind, m) in s.objects {
            for (id, data) in m {
                if !self.holds(&kind, &id, &data) {
                    self.set(&kind, &id, Some(data));
                }
            }
        }
        for (t, m) in s.tables.iter() {
            self.table_changes.extend(
                m.iter()
                    .map(|(k, v)| (t.clone(), k.clone(), Some(v.clone()))),
            );
        }
        // Learned routes are routes to the engine: those the snapshot has
        // (the others went with the objects it does not list).
        for (t, m) in s.tables.iter() {
            if model::bgp::learned::routes_router(t).is_some() {
                for v in m.values() {
                    self.learned_route(t, None, Some(v));
                }
            }
        }
        self.tables = s.tables;
    }

    /// Whether the cache already holds this version of an object.
    fn holds(&self, kind: &str, id: &str, data: &[u8]) -> bool {
        match (model::Objects::kind_named(kind), Uuid::parse_str(id)) {
            (Some(k), Ok(uid)) => {
                let held = self.engine.get((k, uid));
                held.is_some() && held == model::Obj::decode(k, data).as_ref()
            }
            _ => {
                self.objects
                    .get(kind)
                    .and_then(|o| o.get(id))
                    .map(Vec::as_slice)
                    == Some(data)
            }
        }
    }

    /// Topology kinds go to the engine (decoded once, held once); the rest
    /// are kept as stored.
    fn set(&mut self, kind: &str, id: &str, data: Option<Vec<u8>>) {
        self.changed.insert(kind.to_string());
        let (held, holds) = if let Some(k) = model::Objects::kind_named(kind) {
            let Ok(uid) = Uuid::parse_str(id) else { return };
            let held = self.engine.get((k, uid)).is_some();
            self.engine.apply_stored(kind, uid, data.as_deref());
            (held, self.engine.get((k, uid)).is_some())
        } else {
            let m = self.objects.entry(kind.to_string()).or_default();
            let held = match data {
                Some(d) => m.insert(id.to_string(), d).is_some(),
                None => m.remove(id).is_some(),
            };
            (held, m.contains_key(id))
        };
        if held != holds {
            let n = self.counts.entry(kind.to_string()).or_default();
            if holds {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn put(&mut self, u: Update) {
        if let Some(table) = u.kind.strip_prefix("table/") {
            let t = self.tables.entry(table.to_string()).or_default();
            let (old, new) = if u.deleted {
                let old = t.remove(&u.id);
                self.table_changes.push((table.to_string(), u.id, None));
                (old, None)
            } else {
                let v = String::from_utf8_lossy(&u.data).into_owned();
                let old = t.insert(u.id.clone(), v.clone());
                self.table_changes
                    .push((table.to_string(), u.id, Some(v.clone())));
                (old, Some(v))
            };
            if model::bgp::learned::routes_router(table).is_some() {
                self.learned_route(table, old.as_deref(), new.as_deref());
            }
            return;
        }
        let data = (!u.deleted).then_some(u.data);
        self.set(&u.kind, &u.id, data);
    }

    /// A learned route's entry changed from `old` to `new`: the engine
    /// holds it as a route of its router (routed with, and its flows
    /// invalidated, like any other).
    fn learned_route(&mut self, table: &str, old: Option<&str>, new: Option<&str>) {
        let decode = |v: Option<&str>| v.and_then(|v| model::bgp::learned::decode_route(table, v));
        let (old, new) = (decode(old), decode(new));
        if let Some(o) = &old
            && new.as_ref().is_none_or(|n| n.id != o.id)
        {
            self.set("Route", &o.id.to_string(), None);
        }
        if let Some(n) = new
            && let Ok(data) = serde_json::to_vec(&n)
        {
            self.set("Route", &n.id.to_string(), Some(data));
        }
    }

    /// The ports bound to this host.
    pub fn local_ports(&self) -> impl Iterator<Item = &model::Port> {
        self.engine.local_ports()
    }

    /// Every topology object of one kind.
    pub fn all<T: model::schema::Variant + Clone>(&self) -> Vec<T> {
        self.engine.all::<T>().cloned().collect()
    }

    /// Every stored object of a kind the engine does not hold.
    pub fn stored<T: Object>(&self) -> Vec<T> {
        self.objects
            .get(T::KIND.name())
            .map(|m| m.values().filter_map(|b| decode(b)).collect())
            .unwrap_or_default()
    }

    /// What this agent holds, for operators and tests (`topology.json` in
    /// the state directory): the revision, how many objects of each kind,
    /// and their ids while there are at most [`SUMMARY_IDS_MAX`].
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let total: usize = self.counts.values().sum();
        let counts = serde_json::to_string(&self.counts).unwrap_or_default();
        if total > SUMMARY_IDS_MAX {
            return format!(
                "{{\"revision\":{},\"counts\":{counts},\"ids_omitted\":true}}",
                self.revision
            );
        }
        let mut objects: std::collections::BTreeMap<&str, Vec<Uuid>> = Default::default();
        for (k, m) in &self.objects {
            let ids = m.keys().filter_map(|id| Uuid::parse_str(id).ok());
            objects.entry(k.as_str()).or_default().extend(ids);
        }
        for (k, id) in self.engine.keys() {
            objects.entry(k.name()).or_default().push(*id);
        }
        // Written by hand: a gateway's summary lists every object of the
        // cloud, and ids need no escaping.
        let mut out = String::with_capacity(40 * self.engine.len() + 64);
        let _ = write!(
            out,
            "{{\"revision\":{},\"counts\":{counts},\"objects\":{{",
            self.revision
        );
        for (i, (kind, ids)) in objects.iter_mut().enumerate() {
            ids.sort_unstable();
            let _ = write!(out, "{}\"{kind}\":[", if i > 0 { "," } else { "" });
            for (j, id) in ids.iter().enumerate() {
                let _ = write!(out, "{}\"{id}\"", if j > 0 { "," } else { "" });
            }
            out.push(']');
        }
        out.push_str("}}");
        out
    }

    /// Ends a batch: what changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        let c = self.engine.commit();
        if c.rewalked || c.compiled.len() > 1000 {
            tracing::debug!(
                recompiled = c.compiled.len(),
                gained = c.gained.len(),
                lost = c.lost.len(),
                rewalked = c.rewalked,
                "topology committed"
            );
        }
        Changes {
            delta: self.engine.topology().delta(c.compiled),
            tags: c.tags,
            tables: std::mem::take(&mut self.table_changes),
            kinds: std::mem::take(&mut self.changed),
        }
    }

    /// Ports bound to `host`.
    pub fn bindings(&self) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .engine
            .local_ports()
            .filter(|p| p.admin_state_up)
            .filter_map(|p| {
                Some(Binding {
                    port: p.id,
                    interface: p.interface_name.clone()?,
                    tunnel_key: p.tunnel_key as u32,
                    previous_host: p.previous_host_id,
                })
            })
            .collect();
        v.sort_by_key(|b| b.port);
        v
    }

    /// Tunnel addresses of every host in a tunnel zone.
    pub fn tunnel_ips(&self) -> FxHashMap<Uuid, Ipv4Addr> {
        let mut m = FxHashMap::default();
        for z in self.stored::<TunnelZone>() {
            for member in &z.members {
                if let (Some(h), Some(IpAddr::V4(ip))) = (member.host_id, member.ip_address) {
                    m.insert(h, ip);
                }
            }
        }
        m
    }
}

/// Decodes a replicated table entry into a state write.
pub fn table_write(table: &str, key: &str, value: &str) -> Option<StateWrite> {
    let mut parts = table.split('/');
    match (parts.next()?, parts.next(), parts.next()) {
        ("mac", Some(b), Some(vlan)) => Some(StateWrite::MacLearned {
            bridge: b.parse().ok()?,
            vlan: vlan.parse().ok()?,
            mac: wire::Mac(key.parse::<model::MacAddr>().ok()?.0),
            port: value.parse().ok()?,
        }),
        ("arp", Some(r), None) => Some(StateWrite::ArpLearned {
            router: r.parse().ok()?,
            ip: key.parse().ok()?,
            mac: wire::Mac(value.parse::<model::MacAddr>().ok()?.0),
        }),
        ("ip4mac", Some(b), None) => Some(StateWrite::Ip4Mac {
            bridge: b.parse().ok()?,
            ip: key.parse().ok()?,
            mac: wire::Mac(value.parse::<model::MacAddr>().ok()?.0),
        }),
        _ => None,
    }
}

/// The table entry that shares a learned write with other hosts.
pub fn write_entry(w: &StateWrite) -> Option<(String, String, String)> {
    match w {
        StateWrite::MacLearned {
            bridge,
            vlan,
            mac,
            port,
        } => Some((
            format!("mac/{bridge}/{vlan}"),
            mac.to_string(),
            port.to_string(),
        )),
        StateWrite::ArpLearned { router, ip, mac } => {
            Some((format!("arp/{router}"), ip.to_string(), mac.to_string()))
        }
        StateWrite::Ip4Mac { bridge, ip, mac } => {
            Some((format!("ip4mac/{bridge}"), ip.to_string(), mac.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Port;

    #[test]
    fn learned_entries_round_trip_through_tables() {
        let w = StateWrite::MacLearned {
            bridge: Uuid::new_v4(),
            vlan: 0,
            mac: wire::Mac([2, 0, 0, 0, 0, 1]),
            port: Uuid::new_v4(),
        };
        let (t, k, v) = write_entry(&w).unwrap();
        assert_eq!(table_write(&t, &k, &v), Some(w));
        let a = StateWrite::ArpLearned {
            router: Uuid::new_v4(),
            ip: "10.0.0.1".parse().unwrap(),
            mac: wire::Mac([2, 0, 0, 0, 0, 9]),
        };
        let (t, k, v) = write_entry(&a).unwrap();
        assert_eq!(table_write(&t, &k, &v), Some(a));
        assert_eq!(table_write("bogus/x", "k", "v"), None);
    }

    #[test]
    fn learned_routes_are_routes_of_their_router_until_withdrawn() {
        use model::bgp::learned;
        let mut c = Cache::new(Uuid::new_v4());
        let (router, port) = (Uuid::new_v4(), Uuid::new_v4());
        let table = learned::routes_table(router);
        let gw = "203.0.113.9".parse().unwrap();
        let dst = "172.16.50.0".parse().unwrap();
        let key = learned::route_key(dst, 24, gw, port);
        let r = learned::route(Uuid::new_v4(), router, port, dst, 24, gw);
        let entry = |value: Option<&model::Route>| Update {
            revision: 1,
            kind: format!("table/{table}"),
            id: key.clone(),
            data: value
                .map(|v| serde_json::to_vec(v).unwrap())
                .unwrap_or_default(),
            deleted: value.is_none(),
            ..Default::default()
        };
        let u = entry(Some(&r));
        c.apply(u);
        assert_eq!(c.all::<model::Route>(), vec![r.clone()]);
        // A value that is no learned route of that router is not routed with.
        let forged = model::Route {
            learned: false,
            ..r.clone()
        };
        let u = entry(Some(&forged));
        c.apply(u);
        assert!(c.all::<model::Route>().is_empty(), "not marked learned");
        let u = entry(Some(&r));
        c.apply(u);
        let u = entry(None);
        c.apply(u);
        assert!(c.all::<model::Route>().is_empty(), "withdrawn");
    }

    #[test]
    fn snapshots_replace_and_report_changes() {
        let mut c = Cache::new(Uuid::new_v4());
        let id = Uuid::new_v4().to_string();
        let up = |kind: &str, id: &str, b: bool, e: bool| Update {
            revision: 5,
            kind: kind.into(),
            id: id.into(),
            data: format!("{{\"id\": \"{id}\"}}").into_bytes(),
            deleted: false,
            snapshot_begin: b,
            snapshot_end: e,
            batch_end: false,
        };
        assert!(!c.apply(up("Bridge", &id, true, false)));
        assert!(c.apply(Update {
            revision: 5,
            snapshot_end: true,
            ..Default::default()
        }));
        assert_eq!(c.revision, 5);
        let sum: serde_json::Value = serde_json::from_str(&c.summary()).expect("summary is JSON");
        assert_eq!(sum["revision"], 5);
        assert_eq!(sum["objects"]["Bridge"][0], id.as_str());
        assert_eq!(sum["counts"]["Bridge"], 1);
        let tags = c.take_changes().tags;
        assert!(tags.contains(&Tag::Device(id.parse().unwrap())));
        assert!(c.apply(up("Bridge", &id, false, false)));
    }

    /// Past SUMMARY_IDS_MAX objects, `topology.json` says how many, not which.
    #[test]
    fn a_large_summary_counts_instead_of_listing() {
        let mut c = Cache::new(Uuid::new_v4());
        let ids: Vec<Uuid> = (0..=SUMMARY_IDS_MAX).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            c.apply(Update {
                revision: 1,
                kind: "Bridge".into(),
                id: id.to_string(),
                data: format!("{{\"id\": \"{id}\"}}").into_bytes(),
                ..Default::default()
            });
        }
        let sum: serde_json::Value = serde_json::from_str(&c.summary()).unwrap();
        assert_eq!(sum["counts"]["Bridge"], SUMMARY_IDS_MAX + 1);
        assert_eq!(sum["ids_omitted"], true);
        assert!(sum.get("objects").is_none());
        c.apply(Update {
            revision: 2,
            kind: "Bridge".into(),
            id: ids[0].to_string(),
            deleted: true,
            ..Default::default()
        });
        let sum: serde_json::Value = serde_json::from_str(&c.summary()).unwrap();
        assert_eq!(sum["counts"]["Bridge"], SUMMARY_IDS_MAX);
        assert_eq!(
            sum["objects"]["Bridge"].as_array().unwrap().len(),
            SUMMARY_IDS_MAX
        );
    }

    /// A deleted pool member, rule or port still invalidates the flows of
    /// its parent (read from the version that was deleted), and a moved
    /// port those of both its old and its new device.
    #[test]
    fn deletes_and_moves_invalidate_the_parent() {
        let mut c = Cache::new(Uuid::new_v4());
        let (pool, member) = (Uuid::new_v4(), Uuid::new_v4());
        let obj = |kind: &str, id: Uuid, v: serde_json::Value, deleted: bool| Update {
            revision: 1,
            kind: kind.into(),
            id: id.to_string(),
            data: v.to_string().into_bytes(),
            deleted,
            ..Default::default()
        };
        let m = serde_json::json!({"id": member, "poolId": pool, "address": "10.0.0.5", "protocolPort": 80});
        assert!(
            decode::<model::PoolMember>(m.to_string().as_bytes()).is_some(),
            "fixture decodes"
        );
        c.apply(obj("PoolMember", member, m.clone(), false));
        c.take_changes();
        c.apply(obj("PoolMember", member, serde_json::json!(null), true));
        let tags = c.take_changes().tags;
        assert!(
            tags.contains(&Tag::Device(pool)),
            "the pool's flows go with its member"
        );
        assert!(tags.contains(&Tag::Device(member)));

        let (b1, b2, port) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let p = |dev: Uuid| serde_json::json!({"id": port, "type": "Bridge", "deviceId": dev});
        c.apply(obj("Port", port, p(b1), false));
        assert!(
            decode::<Port>(p(b1).to_string().as_bytes()).is_some(),
            "port fixture decodes"
        );
        c.take_changes();
        c.apply(obj("Port", port, p(b2), false));
        let tags = c.take_changes().tags;
        assert!(tags.contains(&Tag::Device(b1)) && tags.contains(&Tag::Device(b2)));
    }
}
