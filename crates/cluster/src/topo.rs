//! The topology over the NSDB: typed reads, and writes as one store
//! transaction built with the model's reference rules.

use crate::batch::{Batches, Staged, Ticket};
use crate::error::ApiError;
use model::refs::{Change, Tx, View};
use model::schema::{Obj, REFS, Referrers, Variant};
use model::{Kind, Object};
use nsdb::{Op, Store, StoreError, Watch};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A view of the store, with this server's staged writes over it, that
/// remembers the version of everything it read, so the commit can be
/// conditional on nothing having changed underneath.
struct TopoView<'a> {
    store: &'a dyn Store,
    batches: &'a Batches,
    seen: RefCell<HashMap<(Kind, Uuid), Option<u64>>>,
    index: RefCell<&'a mut RefIndex>,
}

/// The model's references reversed ([`Referrers`]), kept current from the
/// store's watches: a delete's cascade and a device's children are found
/// by what names them, not by reading every object of a kind, so their
/// cost does not grow with the cloud.
struct RefIndex {
    referrers: Referrers,
    watches: Vec<(Kind, Watch)>,
}

impl RefIndex {
    fn load(store: &dyn Store) -> RefIndex {
        let rev = store.revision();
        let mut referrers = Referrers::default();
        let mut watches = Vec::new();
        for kind in model::Objects::KINDS {
            // Watched from before the listing: a change in between is
            // applied again, in order, at the next catch-up.
            if let Ok(w) = store.watch(Some(kind.name()), rev) {
                watches.push((kind, w));
            }
            for (id, e) in store.list(kind.name()).unwrap_or_default() {
                if let (Ok(id), Some(o)) = (id.parse(), Obj::decode(kind, &e.data)) {
                    referrers.set((kind, id), Some(&o));
                }
            }
        }
        RefIndex { referrers, watches }
    }

    /// Applies the changes committed since the last call (by this server
    /// or another sharing the store).
    fn catch_up(&mut self) -> &Referrers {
        for (kind, w) in &mut self.watches {
            while let Some(ev) = w.try_next() {
                let Ok(id) = ev.id.parse() else { continue };
                let o = match &ev.change {
                    nsdb::Change::Put(e) => Obj::decode(*kind, &e.data),
                    nsdb::Change::Deleted => None,
                };
                self.referrers.set((*kind, id), o.as_ref());
            }
        }
        &self.referrers
    }
}

impl View for TopoView<'_> {
    fn read(&self, kind: Kind, id: Uuid) -> Option<Vec<u8>> {
        let e = self
            .batches
            .get(kind.name(), &id.to_string())
            .ok()
            .flatten();
        self.seen
            .borrow_mut()
            .insert((kind, id), e.as_ref().map(|e| e.1));
        e.map(|e| e.0.to_vec())
    }
    fn read_all(&self, kind: Kind) -> Vec<Vec<u8>> {
        // Staged first: a batch is in the store before its staged values go.
        let staged: HashMap<String, Staged> =
            self.batches.staged_of(kind.name()).into_iter().collect();
        let mut rows: std::collections::BTreeMap<String, Staged> = self
            .store
            .list(kind.name())
            .unwrap_or_default()
            .into_iter()
            .map(|(id, e)| (id, Some((e.data, e.version))))
            .collect();
        rows.extend(staged);
        let mut seen = self.seen.borrow_mut();
        rows.into_iter()
            .filter_map(|(id, e)| {
                let (data, version) = e?;
                if let Ok(id) = id.parse() {
                    seen.insert((kind, id), Some(version));
                }
                Some(data.to_vec())
            })
            .collect()
    }
    fn referrers(&self, row: usize, id: Uuid) -> Option<Vec<Uuid>> {
        // Staged objects of the referring kind may name it too (a superset
        // will do); read before the index catches up, for the same reason.
        let mut ids: Vec<Uuid> = self
            .batches
            .staged_of(REFS[row].from.name())
            .into_iter()
            .filter_map(|(i, _)| i.parse().ok())
            .collect();
        ids.extend(self.index.borrow_mut().catch_up().of(row, id));
        ids.sort_unstable();
        ids.dedup();
        Some(ids)
    }
}

thread_local! {
    /// This thread is inside [`Topology::write`] (and holds the index).
    static IN_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Writes staged and not yet waited for: their batches.
type Owed = Vec<(Ticket, Arc<Batches>)>;

thread_local! {
    /// Inside [`durably`]: the batches of this thread's staged writes.
    static DURABLY: RefCell<Option<Owed>> = const { RefCell::new(None) };
}

/// Runs `f`, whose topology writes return once staged rather than once
/// committed, then waits for all of them together. A caller that serializes
/// its writes under a lock of its own takes that lock inside `f`, so the
/// next caller's write is translated while this one's commit is on its way,
/// and concurrent writes share one commit.
pub fn durably<T>(f: impl FnOnce() -> T) -> (T, Result<(), Unsynced>) {
    let outer = DURABLY.replace(Some(Vec::new()));
    let out = f();
    let owed = DURABLY.replace(outer).unwrap_or_default();
    let mut first = None;
    let mut committed = false;
    for (t, b) in &owed {
        match b.wait(*t) {
            Ok(()) => committed = true,
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    let synced = match first {
        None => Ok(()),
        Some(error) => Err(Unsynced {
            redo: !committed && lost_race(&error),
            error,
        }),
    };
    (out, synced)
}

/// Whether a refused commit lost to another write sharing the store (it
/// wrote first what this one read or creates): done again on what the store
/// now holds, it can succeed.
pub fn lost_race(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::VersionMismatch { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::Unchained
    )
}

/// Why the writes of a [`durably`] did not all commit.
#[derive(Debug)]
pub struct Unsynced {
    /// The first refusal.
    pub error: StoreError,
    /// Every write was refused for a conflict with a write sharing the
    /// store: none of them is there, and doing the work again on what the
    /// store now holds is how the conflict is resolved.
    pub redo: bool,
}

/// Marks the thread as writing while it lives.
struct InWrite;

impl InWrite {
    fn enter() -> InWrite {
        IN_WRITE.set(true);
        InWrite
    }
}

impl Drop for InWrite {
    fn drop(&mut self) {
        IN_WRITE.set(false);
    }
}

/// Values of a durable counter this server reserves at once: a create takes
/// one from its server's block, and only every `COUNTER_BLOCK`th moves the
/// stored counter, so servers sharing one store do not all contend for it.
const COUNTER_BLOCK: u64 = 64;

/// Tunnel keys go on the wire as 24-bit VXLAN VNIs: 1 ..= 0xFFFFFE (0 is
/// never handed out; 0xFFFFFF carries flow state between agents).
pub const TUNNEL_KEYS: u64 = 0xFF_FFFE;

/// Per tunnel-key cycle past the first (the counter wrapped the key space),
/// the keys in use by ports when the cycle began: skipped, so a key is
/// reused only once its port is gone.
type UsedKeys = Mutex<Option<(u64, std::collections::HashSet<u64>)>>;

/// Per counter, this server's reserved values still free: next, end; and
/// the staging epoch they were reserved in (a refused batch's go).
type Blocks = Mutex<(u64, HashMap<&'static str, (u64, u64)>)>;

/// A write in progress: the model transaction plus store-level counters.
pub struct Writer<'a> {
    pub tx: Tx<'a>,
    batches: &'a Batches,
    epoch: u64,
    blocks: &'a Blocks,
    used_keys: &'a UsedKeys,
    /// Counters this write moves on: version read, value written.
    counters: HashMap<&'static str, (Option<u64>, u64)>,
    /// Blocks the counters' moves reserve, this server's once committed.
    reserved: Vec<(&'static str, u64, u64)>,
    tables: Vec<(String, String, Option<String>)>,
    /// Claims this write takes (`Some(owner)`) or gives back (`None`).
    claims: Vec<(String, Option<String>)>,
}

impl Writer<'_> {
    /// Writes (`Some`) or removes a persistent state-table entry in the
    /// same commit (a floating IP's ARP entry).
    pub fn table(&mut self, table: String, key: String, value: Option<String>) {
        self.tables.push((table, key, value));
    }

    /// Claims `id` for `owner` (a network's address for a port): the
    /// commit fails as a conflict if another write, of this server or of
    /// one sharing the store, holds it. Two writes conflict only when they
    /// take the same thing, so servers sharing one network's addresses do
    /// not contend on one key.
    pub fn claim(&mut self, id: String, owner: String) {
        self.claims.push((id, Some(owner)));
    }

    /// Gives claim `id` back (nothing if nobody holds it).
    pub fn release(&mut self, id: String) {
        self.claims.push((id, None));
    }

    /// A new port's tunnel key, within the 24 bits of a VNI. The counter
    /// runs on past the key space; from its second cycle on, keys still held
    /// by ports are skipped (read once per cycle: the keys of the previous
    /// cycles are all held by ports made before it began, and this cycle's
    /// come from blocks no other server has).
    pub fn tunnel_key(&mut self) -> Result<u64, ApiError> {
        for _ in 0..=TUNNEL_KEYS {
            let v = self.next("tunnel_key")?;
            let cycle = (v - 1) / TUNNEL_KEYS;
            let key = (v - 1) % TUNNEL_KEYS + 1;
            if cycle == 0 {
                return Ok(key);
            }
            let mut used = self.used_keys.lock().unwrap_or_else(|p| p.into_inner());
            if used.as_ref().is_none_or(|(c, _)| *c != cycle) {
                let held = self
                    .tx
                    .all::<model::Port>()?
                    .iter()
                    .map(|p| p.tunnel_key)
                    .collect();
                *used = Some((cycle, held));
            }
            if !used.as_ref().is_some_and(|(_, held)| held.contains(&key)) {
                return Ok(key);
            }
        }
        Err(ApiError::conflict("every tunnel key is held by a port"))
    }

    /// The next value of a durable counter (tunnel keys): from this
    /// server's block, else from a new block the write reserves (the stored
    /// counter moved on by [`COUNTER_BLOCK`], committed with the write).
    /// Values are unique, not dense: a failed write's, or a restarted
    /// server's unused ones, are skipped.
    pub fn next(&mut self, name: &'static str) -> Result<u64, ApiError> {
        // A block this write reserved comes first (the server's is not
        // its own until the write commits).
        let taken = match self.reserved.iter_mut().find(|(n, ..)| *n == name) {
            Some((_, next, end)) => take(next, *end),
            None => {
                let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
                if blocks.0 != self.epoch {
                    // Reserved by a batch that may have been refused.
                    *blocks = (self.epoch, HashMap::new());
                }
                blocks
                    .1
                    .get_mut(name)
                    .and_then(|(next, end)| take(next, *end))
            }
        };
        if let Some(v) = taken {
            return Ok(v);
        }
        if !self.counters.contains_key(name) {
            let cur = self.batches.get("Counter", name)?;
            let (ver, val) = match cur {
                Some((data, version)) => {
                    let s = std::str::from_utf8(&data).unwrap_or("0");
                    (Some(version), s.parse::<u64>().unwrap_or(0))
                }
                None => (None, 0),
            };
            self.counters.insert(name, (ver, val));
        }
        let c = self.counters.get_mut(name).expect("inserted above");
        // The block is (c + 1 ..= c + COUNTER_BLOCK): this takes the first.
        let first = c.1 + 1;
        c.1 += COUNTER_BLOCK;
        self.reserved.retain(|(n, ..)| *n != name);
        self.reserved.push((name, first + 1, c.1 + 1));
        Ok(first)
    }
}

/// The next free value of a block `next..end`, if any.
fn take(next: &mut u64, end: u64) -> Option<u64> {
    (*next < end).then(|| {
        *next += 1;
        *next - 1
    })
}

pub struct Topology {
    pub store: Arc<dyn Store>,
    /// One writer translating at a time in this server; the CAS checks
    /// guard against writers in other servers sharing the store.
    write_lock: Mutex<()>,
    index: Mutex<RefIndex>,
    blocks: Blocks,
    used_keys: UsedKeys,
    batches: Arc<Batches>,
}

impl Topology {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Topology {
            index: Mutex::new(RefIndex::load(&*store)),
            batches: Arc::new(Batches::new(store.clone())),
            store,
            write_lock: Mutex::new(()),
            blocks: Mutex::new((0, HashMap::new())),
            used_keys: Mutex::new(None),
        }
    }

    /// Returns once every write staged so far is in the store (or
    /// refused), for a read that must see them (a cache rebuilt).
    pub fn settle(&self) {
        self.batches.settle();
    }

    /// The objects of kind `T` naming `id` in their field `field` (a
    /// device's ports, a router's routes), found through the reference
    /// index.
    pub fn naming<T: Variant + Clone>(
        &self,
        field: &str,
        to: Kind,
        id: Uuid,
    ) -> Result<Vec<T>, ApiError> {
        let row = model::schema::row(T::KIND, field, to);
        let names = |o: &Obj| (REFS[row].get)(o).contains(&id);
        let mut out = Vec::new();
        if IN_WRITE.get() {
            // Inside this thread's own write the index is held: read the
            // kind (a hook's rare path), with every staged write in it.
            self.batches.settle();
            for (_, e) in self.store.list(T::KIND.name())? {
                if let Some(o) = Obj::decode(T::KIND, &e.data).filter(names) {
                    out.extend(T::of(&o).cloned());
                }
            }
        } else {
            let ids: Vec<Uuid> = {
                let mut g = self.index.lock().unwrap_or_else(|p| p.into_inner());
                g.catch_up().of(row, id).collect()
            };
            for i in ids {
                // The index may hold a superset: each is read and checked.
                if let Some(e) = self.store.get(T::KIND.name(), &i.to_string())?
                    && let Some(o) = Obj::decode(T::KIND, &e.data).filter(names)
                {
                    out.extend(T::of(&o).cloned());
                }
            }
        }
        out.sort_by_key(Object::id);
        Ok(out)
    }

    pub fn get<T: Object>(&self, id: Uuid) -> Result<Option<T>, ApiError> {
        match self.store.get(T::KIND.name(), &id.to_string())? {
            None => Ok(None),
            Some(e) => serde_json::from_slice(&e.data).map(Some).map_err(|e| {
                ApiError::new(500, format!("stored {} {id} is corrupt: {e}", T::KIND))
            }),
        }
    }

    pub fn must<T: Object>(&self, id: Uuid) -> Result<T, ApiError> {
        self.get(id)?
            .ok_or_else(|| ApiError::not_found(format!("{} {id} not found", T::KIND)))
    }

    pub fn all<T: Object>(&self) -> Result<Vec<T>, ApiError> {
        self.store
            .list(T::KIND.name())?
            .into_iter()
            .map(|(id, e)| {
                serde_json::from_slice(&e.data).map_err(|e| {
                    ApiError::new(500, format!("stored {} {id} is corrupt: {e}", T::KIND))
                })
            })
            .collect()
    }

    /// Runs `f` over a fresh transaction and commits what it wrote, atomically
    /// and conditionally on the versions it read. Retried on a lost race.
    pub fn write<R>(
        &self,
        f: impl FnMut(&mut Writer<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        self.write_as(f)
    }

    /// [`Topology::write`] for a caller with its own error type (an API
    /// whose refusals the store's errors do not spell).
    pub fn write_as<R, E: From<ApiError>>(
        &self,
        mut f: impl FnMut(&mut Writer<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (out, ticket) = self.stage(&mut f)?;
            let Some(t) = ticket else { return Ok(out) };
            let owed = DURABLY
                .with_borrow_mut(|d| d.as_mut().map(|owed| owed.push((t, self.batches.clone()))));
            if owed.is_some() {
                return Ok(out);
            }
            match self.batches.wait(t) {
                Ok(()) => return Ok(out),
                // Another server sharing the store wrote first (the tunnel
                // key counter is every create's), or a batch this one was
                // built on did: read again and redo, after a short random
                // pause so the two do not collide again.
                Err(e) if lost_race(&e) && attempt < 8 => {
                    let pause = rand::random_range(0..=attempt * 500);
                    std::thread::sleep(std::time::Duration::from_micros(pause));
                }
                Err(e) => return Err(ApiError::from(e).into()),
            }
        }
    }

    /// The write itself, translated under this server's write lock against
    /// the store and the writes staged before it, and staged in the open
    /// batch: the batch to wait for, if it wrote.
    fn stage<R, E: From<ApiError>>(
        &self,
        mut f: impl FnMut(&mut Writer<'_>) -> Result<R, E>,
    ) -> Result<(R, Option<Ticket>), E> {
        let _g = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let _w = InWrite::enter();
        loop {
            let epoch = self.batches.epoch();
            index.catch_up();
            let view = TopoView {
                store: &*self.store,
                batches: &self.batches,
                seen: RefCell::new(HashMap::new()),
                index: RefCell::new(&mut *index),
            };
            let mut w = Writer {
                tx: Tx::new(&view),
                batches: &self.batches,
                epoch,
                blocks: &self.blocks,
                used_keys: &self.used_keys,
                counters: HashMap::new(),
                reserved: Vec::new(),
                tables: Vec::new(),
                claims: Vec::new(),
            };
            let out = f(&mut w)?;
            let counters = std::mem::take(&mut w.counters);
            let reserved = std::mem::take(&mut w.reserved);
            let tables = std::mem::take(&mut w.tables);
            let claims = std::mem::take(&mut w.claims);
            let changes = w.tx.into_changes();
            let seen = view.seen.into_inner();
            let mut ops = Vec::with_capacity(changes.len() + counters.len());
            for c in changes {
                ops.push(match c {
                    Change::Put { kind, id, data } => match seen.get(&(kind, id)) {
                        Some(Some(v)) => Op::Update {
                            kind: kind.name().into(),
                            id: id.to_string(),
                            data,
                            version: Some(*v),
                        },
                        Some(None) => Op::Create {
                            kind: kind.name().into(),
                            id: id.to_string(),
                            data,
                        },
                        None => Op::Put {
                            kind: kind.name().into(),
                            id: id.to_string(),
                            data,
                        },
                    },
                    Change::Delete { kind, id } => {
                        let version = match seen.get(&(kind, id)) {
                            Some(v) => *v,
                            // Removed without being read (a cascade by id): skip it if already gone.
                            None => match self
                                .batches
                                .get(kind.name(), &id.to_string())
                                .map_err(ApiError::from)?
                            {
                                Some((_, version)) => Some(version),
                                None => continue,
                            },
                        };
                        if version.is_none() {
                            continue;
                        }
                        Op::Delete {
                            kind: kind.name().into(),
                            id: id.to_string(),
                            version,
                        }
                    }
                });
            }
            for (name, (ver, val)) in counters {
                let data = val.to_string().into_bytes();
                ops.push(match ver {
                    Some(v) => Op::Update {
                        kind: "Counter".into(),
                        id: name.into(),
                        data,
                        version: Some(v),
                    },
                    None => Op::Create {
                        kind: "Counter".into(),
                        id: name.into(),
                        data,
                    },
                });
            }
            for (id, owner) in claims {
                match owner {
                    Some(owner) => ops.push(Op::Create {
                        kind: "Claim".into(),
                        id,
                        data: owner.into_bytes(),
                    }),
                    None => {
                        let held = self.batches.get("Claim", &id).map_err(ApiError::from)?;
                        if let Some((_, version)) = held {
                            ops.push(Op::Delete {
                                kind: "Claim".into(),
                                id,
                                version: Some(version),
                            });
                        }
                    }
                }
            }
            ops.extend(tables.into_iter().map(|(table, key, value)| Op::Table {
                table,
                key,
                value,
            }));
            let results = crate::traces::results_of_deleted(&*self.store, &ops);
            ops.extend(results);
            if ops.is_empty() {
                return Ok((out, None));
            }
            match self.batches.stage(epoch, ops).map_err(ApiError::from)? {
                Some(t) => {
                    let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
                    if blocks.0 != epoch {
                        *blocks = (epoch, HashMap::new());
                    }
                    for (name, next, end) in reserved {
                        blocks.1.insert(name, (next, end));
                    }
                    return Ok((out, Some(t)));
                }
                // What it read was dropped (a refused batch), or the batch
                // was full: translate again.
                None => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two servers on one store take tunnel keys from blocks of their own:
    /// never one key twice, and the stored counter moves once a block.
    #[test]
    fn counter_blocks_are_unique_across_servers() {
        let store: Arc<dyn Store> = Arc::new(nsdb::LocalStore::in_memory());
        let (a, b) = (Topology::new(store.clone()), Topology::new(store.clone()));
        let mut seen = std::collections::HashSet::new();
        for i in 0..300 {
            let t = if i % 3 == 0 { &a } else { &b };
            let k = t.write(|w| w.next("tunnel_key")).unwrap();
            assert!(seen.insert(k), "tunnel key {k} twice");
        }
        let counter = store.get("Counter", "tunnel_key").unwrap().unwrap();
        let stored: u64 = std::str::from_utf8(&counter.data).unwrap().parse().unwrap();
        assert_eq!(stored % COUNTER_BLOCK, 0);
        assert!(seen.iter().all(|k| *k <= stored));
        // 100 from a, 200 from b: 2 and 4 blocks.
        assert_eq!(counter.version, 6, "one counter write per block");
        // A write that fails keeps nothing of a block it reserved.
        let c = Topology::new(store.clone());
        let r: Result<u64, ApiError> = c.write(|w| {
            w.next("tunnel_key")?;
            Err(ApiError::new(400, "refused"))
        });
        assert!(r.is_err());
        let k = c.write(|w| w.next("tunnel_key")).unwrap();
        assert!(seen.insert(k) && k > stored);
    }

    /// Tunnel keys stay within a VNI's 24 bits and never take the flow
    /// state's 0xFFFFFF; past the end of the key space they start again
    /// from 1, skipping keys ports still hold.
    #[test]
    fn tunnel_keys_wrap_within_24_bits_around_held_ones() {
        let store: Arc<dyn Store> = Arc::new(nsdb::LocalStore::in_memory());
        let t = Topology::new(store.clone());
        t.write(|w| {
            for (key, id) in [(1u64, 1u128), (3, 2)] {
                w.tx.put(&model::Port {
                    id: Uuid::from_u128(id),
                    tunnel_key: key,
                    ..model::Port::default()
                });
            }
            Ok::<_, ApiError>(())
        })
        .unwrap();
        // Three keys from the end of the space.
        let near = (TUNNEL_KEYS - 3).to_string().into_bytes();
        store
            .commit(vec![Op::Put {
                kind: "Counter".into(),
                id: "tunnel_key".into(),
                data: near,
            }])
            .unwrap();
        let keys: Vec<u64> = (0..6)
            .map(|_| t.write(|w| w.tunnel_key()).unwrap())
            .collect();
        assert_eq!(
            keys,
            [TUNNEL_KEYS - 2, TUNNEL_KEYS - 1, TUNNEL_KEYS, 2, 4, 5]
        );
        // 0xFFFFFF is the agents' flow-state VNI.
        assert!(keys.iter().all(|k| *k < 0xFF_FFFF));
    }
}
