//! The flow table: megaflows (one hash table per distinct mask, as OVS's
//! classifier) with an exact-match cache in front, hard expiry, and
//! invalidation by tag.

use rustc_hash::{FxHashMap, FxHashSet};
use sim::{Action, FieldSet, Fields, Tag};

pub type FlowId = u64;

#[derive(Clone, Debug)]
pub struct Flow {
    pub id: FlowId,
    pub mask: FieldSet,
    pub key: Fields,
    /// Shared so a hit can run them without copying.
    pub actions: std::sync::Arc<[Action]>,
    /// The tags' hashes, exactly sized: tags were most of a stateful flow's
    /// memory.
    pub tags: Box<[TagHash]>,
    pub expires: u64,
    pub packets: u64,
    pub bytes: u64,
    /// When it was installed (ms, the worker's clock).
    pub installed: u64,
    /// A drop flow's class (`sim::DROP_CLASSES`), counted on each hit.
    pub drop: Option<u8>,
}

/// A tag as the table keeps it: its 64-bit hash. Two tags with one hash
/// only make an invalidation remove more than it had to (or keep connection
/// state a little longer), never less.
pub type TagHash = u64;

fn tag_hash(t: &Tag) -> TagHash {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(t)
}

/// The distinct hashes of `tags`, sorted.
fn hashes<'t>(tags: impl Iterator<Item = &'t Tag>) -> Vec<TagHash> {
    let mut h: Vec<TagHash> = tags.map(tag_hash).collect();
    h.sort_unstable();
    h.dedup();
    h
}

/// The flows carrying a tag. Most tags of a stateful flow (its connection
/// and NAT keys) belong to that flow alone: no set is allocated for those.
enum TagFlows {
    One(FlowId),
    Many(Box<FxHashSet<FlowId>>),
}

impl TagFlows {
    fn insert(&mut self, id: FlowId) {
        match self {
            TagFlows::One(o) if *o == id => {}
            TagFlows::One(o) => *self = TagFlows::Many(Box::new([*o, id].into_iter().collect())),
            TagFlows::Many(s) => {
                s.insert(id);
            }
        }
    }
    /// Removes `id`; true when no flow is left.
    fn remove(&mut self, id: FlowId) -> bool {
        match self {
            TagFlows::One(o) => *o == id,
            TagFlows::Many(s) => {
                s.remove(&id);
                s.is_empty()
            }
        }
    }
    fn ids(&self) -> impl Iterator<Item = FlowId> + '_ {
        let (one, many) = match self {
            TagFlows::One(o) => (Some(*o), None),
            TagFlows::Many(s) => (None, Some(s.iter().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[derive(Default)]
pub struct FlowTable {
    flows: FxHashMap<FlowId, Flow>,
    /// mask -> masked key -> flow
    megaflows: Vec<(FieldSet, FxHashMap<Fields, FlowId>)>,
    emc: FxHashMap<Fields, FlowId>,
    by_tag: FxHashMap<TagHash, TagFlows>,
    /// NAT'd connections' flows, kept compactly.
    pub(crate) conns: crate::conns::ConnFlows,
    next: FlowId,
    pub hits: u64,
    pub misses: u64,
    /// Packets drop flows dropped, by class (`sim::DROP_CLASSES`).
    pub drops: [u64; sim::DROP_CLASSES.len()],
}

/// Bounds the exact-match cache; it is refilled from the megaflows.
const EMC_MAX: usize = 8192;

impl FlowTable {
    pub fn len(&self) -> usize {
        self.flows.len() + self.conns.len()
    }

    /// Bytes the table holds (hash tables by capacity, actions and tags),
    /// for the memory gauges; the exact-match cache is bounded and left out.
    pub fn bytes(&self) -> usize {
        use std::mem::size_of;
        let per_flow: usize = self
            .flows
            .values()
            .map(|f| {
                16 + f.actions.len() * size_of::<Action>() + f.tags.len() * size_of::<TagHash>()
            })
            .sum();
        let megaflows: usize = self
            .megaflows
            .iter()
            .map(|(_, t)| sim::table_bytes(t.capacity(), size_of::<(Fields, FlowId)>()))
            .sum();
        let by_tag: usize = self
            .by_tag
            .values()
            .map(|f| match f {
                TagFlows::One(_) => 0,
                TagFlows::Many(s) => 32 + sim::table_bytes(s.capacity(), size_of::<FlowId>()),
            })
            .sum();
        self.conns.bytes()
            + per_flow
            + megaflows
            + by_tag
            + sim::table_bytes(self.flows.capacity(), size_of::<(FlowId, Flow)>())
            + sim::table_bytes(self.by_tag.capacity(), size_of::<(TagHash, TagFlows)>())
    }
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty() && self.conns.is_empty()
    }

    /// The actions of the flow matching a packet's fields (with `in_port`
    /// set), into `out`; `false` on a miss.
    /// `len` is the frame's, for the flow's byte count.
    pub fn lookup(&mut self, f: &Fields, now: u64, len: usize, out: &mut Vec<Action>) -> bool {
        if self.conns.lookup(f, now, out) {
            self.hits += 1;
            return true;
        }
        match self.lookup_flow(f, now) {
            Some(flow) => {
                flow.bytes += len as u64;
                out.clear();
                out.extend_from_slice(&flow.actions);
                if let Some(c) = flow.drop {
                    self.drops[usize::from(c).min(self.drops.len() - 1)] += 1;
                }
                true
            }
            None => false,
        }
    }

    /// The general flows.
    pub fn dump(&self) -> impl Iterator<Item = &Flow> {
        self.flows.values()
    }

    /// The NAT'd connections' compact flows.
    pub fn dump_connections(&self, now: u64) -> impl Iterator<Item = crate::conns::ConnFlow> + '_ {
        self.conns.dump(now)
    }

    /// The general flow matching a packet's fields, if any live.
    fn lookup_flow(&mut self, f: &Fields, now: u64) -> Option<&mut Flow> {
        let id = match self.emc.get(f) {
            Some(id) if self.flows.get(id).is_some_and(|fl| fl.expires > now) => Some(*id),
            _ => {
                let mut found = None;
                for (mask, table) in &self.megaflows {
                    if let Some(id) = table.get(&f.masked(*mask))
                        && self.flows.get(id).is_some_and(|fl| fl.expires > now)
                    {
                        found = Some(*id);
                        break;
                    }
                }
                if let Some(id) = found {
                    if self.emc.len() >= EMC_MAX {
                        self.emc.clear();
                    }
                    self.emc.insert(f.clone(), id);
                }
                found
            }
        };
        match id {
            Some(id) => {
                self.hits += 1;
                let fl = self.flows.get_mut(&id)?;
                fl.packets += 1;
                Some(fl)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub fn install(
        &mut self,
        mask: FieldSet,
        key: Fields,
        actions: Vec<Action>,
        tags: Vec<Tag>,
        expires: u64,
    ) -> FlowId {
        self.install_at(mask, key, actions, tags, expires, 0, None)
    }

    /// As [`FlowTable::install`], stamped with the time and, for a drop
    /// flow, its class (such flows are never compact: their hits count).
    #[allow(clippy::too_many_arguments)]
    pub fn install_at(
        &mut self,
        mask: FieldSet,
        key: Fields,
        actions: Vec<Action>,
        tags: Vec<Tag>,
        expires: u64,
        now: u64,
        drop: Option<u8>,
    ) -> FlowId {
        let key = key.masked(mask);
        // NAT'd connections' flows go to the compact table when they can:
        // their own state tags are left out (see `conns`), the rest shared.
        if drop.is_none()
            && !tags.iter().any(|t| matches!(t, Tag::ConnTrack(_)))
            && self.conns.install(mask, &key, &actions, expires, || {
                hashes(tags.iter().filter(|t| !matches!(t, Tag::Nat(_))))
            })
        {
            return 0;
        }
        // A flow for the same masked key replaces the old one.
        if let Some(old) = self
            .megaflows
            .iter()
            .find(|(m, _)| *m == mask)
            .and_then(|(_, t)| t.get(&key))
            .copied()
        {
            self.remove(old);
        }
        self.next += 1;
        let id = self.next;
        let hashes = hashes(tags.iter());
        for t in &hashes {
            match self.by_tag.get_mut(t) {
                Some(f) => f.insert(id),
                None => {
                    self.by_tag.insert(*t, TagFlows::One(id));
                }
            }
        }
        match self.megaflows.iter_mut().find(|(m, _)| *m == mask) {
            Some((_, t)) => {
                t.insert(key.clone(), id);
            }
            None => {
                let mut t = FxHashMap::default();
                t.insert(key.clone(), id);
                self.megaflows.push((mask, t));
            }
        }
        self.flows.insert(
            id,
            Flow {
                id,
                mask,
                key,
                actions: actions.into(),
                tags: hashes.into_boxed_slice(),
                expires,
                packets: 0,
                bytes: 0,
                installed: now,
                drop,
            },
        );
        id
    }

    pub fn remove(&mut self, id: FlowId) {
        let Some(f) = self.flows.remove(&id) else {
            return;
        };
        if let Some((_, t)) = self.megaflows.iter_mut().find(|(m, _)| *m == f.mask) {
            t.remove(&f.key);
        }
        for t in &f.tags {
            if let Some(s) = self.by_tag.get_mut(t)
                && s.remove(id)
            {
                self.by_tag.remove(t);
            }
        }
        // The exact-match cache is not scanned: ids are never reused, so an
        // entry naming a removed flow just misses at lookup.
    }

    /// Whether an installed flow carries `tag` (depends on what it names).
    pub fn has_tag(&self, tag: &Tag) -> bool {
        self.by_tag.contains_key(&tag_hash(tag))
    }

    /// NAT binding `k` was replaced by a new connection's: the connection
    /// flow whose 5-tuple is the key's goes (connection flows keep no NAT
    /// tags; flows carrying the tag go by [`FlowTable::invalidate`]).
    /// Returns whether there was one.
    pub fn forget_binding(&mut self, k: &sim::NatKey) -> bool {
        self.conns.forget(k)
    }

    /// Removes every flow carrying any of `tags`; returns how many (counting
    /// a retired connection-flow template as one).
    pub fn invalidate(&mut self, tags: &[Tag]) -> usize {
        let hashes: Vec<TagHash> = tags.iter().map(tag_hash).collect();
        let compact = self.conns.invalidate(&hashes);
        let ids: FxHashSet<FlowId> = tags
            .iter()
            .filter_map(|t| self.by_tag.get(&tag_hash(t)))
            .flat_map(|f| f.ids())
            .collect();
        let n = ids.len();
        for id in ids {
            self.remove(id);
        }
        n + compact
    }

    pub fn clear(&mut self) {
        self.flows.clear();
        self.megaflows.clear();
        self.emc.clear();
        self.by_tag.clear();
        self.conns.clear();
    }

    /// Drops flows past their hard expiry.
    pub fn expire(&mut self, now: u64) -> usize {
        let dead: Vec<FlowId> = self
            .flows
            .values()
            .filter(|f| f.expires <= now)
            .map(|f| f.id)
            .collect();
        let n = dead.len();
        for id in dead {
            self.remove(id);
        }
        n + self.conns.expire(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::flow::field;
    use std::net::Ipv4Addr;

    fn fields(port: u32, dst: [u8; 4]) -> Fields {
        Fields {
            in_port: port,
            nw_dst: Ipv4Addr::from(dst),
            eth_type: 0x0800,
            ..Default::default()
        }
    }

    fn hit(t: &mut FlowTable, f: &Fields, now: u64) -> bool {
        t.lookup(f, now, 64, &mut Vec::new())
    }

    #[test]
    fn megaflow_matches_under_its_mask_and_invalidates_by_tag() {
        let mut t = FlowTable::default();
        let mask = FieldSet(field::IN_PORT);
        let tag = Tag::Device(uuid::Uuid::new_v4());
        t.install(mask, fields(1, [10, 0, 0, 1]), vec![], vec![tag], 100);
        assert!(
            hit(&mut t, &fields(1, [10, 0, 0, 99]), 0),
            "nw_dst is wildcarded"
        );
        assert!(!hit(&mut t, &fields(2, [10, 0, 0, 1]), 0));
        assert!(!hit(&mut t, &fields(1, [10, 0, 0, 1]), 100), "expired");
        assert_eq!(t.invalidate(&[tag]), 1);
        assert!(!hit(&mut t, &fields(1, [10, 0, 0, 99]), 0));
        let exact = FieldSet(field::IN_PORT | field::NW_DST | field::ETH_TYPE);
        t.install(exact, fields(1, [10, 0, 0, 1]), vec![], vec![], 100);
        assert!(!hit(&mut t, &fields(1, [10, 0, 0, 2]), 0));
        assert!(hit(&mut t, &fields(1, [10, 0, 0, 1]), 0));
        assert_eq!((t.hits, t.misses), (2, 4));
        assert_eq!(t.expire(200), 1);
        assert!(t.is_empty());
    }
}
