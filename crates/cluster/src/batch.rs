//! Group commit: this server's concurrent topology writes share one store
//! commit. A write is translated under the server's write lock against the
//! store plus the writes still on their way to it (staged), joins the open
//! batch, and waits outside the lock; whoever waits first while no batch
//! is in flight commits the open one. On ZooKeeper a commit is a round
//! trip of a few milliseconds, so writes one at a time could not pass a
//! few hundred per second; batched, one round trip carries every write
//! that arrived during the last.
//!
//! A batch commits whole or not at all. Up to the store's pipeline depth
//! of batches are in flight at once (ZooKeeper: several round trips
//! overlapping); one sent while others are in flight is sent chained, so
//! the store applies it only if they apply, and a write translated against
//! another's staged state commits only if that state did. Batches finish
//! in the order sent. When a batch fails (a conflict with another server
//! sharing the store), the open batch built on it fails too, everything
//! staged is dropped, nothing is sent until the batches in flight are
//! done, and the writers redo their work on what the store holds.

use nsdb::{Op, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A batch is closed to new writes past this many bytes of data (under
/// ZooKeeper's 1 MiB request limit, with the log entry's copy).
const BATCH_BYTES: usize = 256 * 1024;
/// Failed batches remembered for their waiters.
const FAILURES_KEPT: usize = 4096;

/// An object as staged: its bytes and version, or `None` when deleted.
pub type Staged = Option<(Arc<[u8]>, u64)>;

/// A key of the store: kind and id.
type Key = (String, String);

#[derive(Default)]
struct State {
    /// Each staged object's newest value, and the batch that writes it.
    staged: HashMap<Key, (u64, Staged)>,
    /// Moves on each time staged writes are dropped: a write translated
    /// against an older epoch must be translated again.
    epoch: u64,
    /// The open batch: its id and ops.
    open: u64,
    ops: Vec<Op>,
    bytes: usize,
    writes: usize,
    /// The last batch sent (or failed unsent); those after `done` are in
    /// flight.
    sent: u64,
    /// Every batch up to this one has finished.
    done: u64,
    /// A batch failed while others were in flight: nothing is sent until
    /// they are done.
    broken: bool,
    /// Batches failed without being sent, finished once those before are.
    unsent: BTreeSet<u64>,
    failed: BTreeMap<u64, StoreError>,
}

pub struct Batches {
    store: Arc<dyn Store>,
    depth: u64,
    st: Mutex<State>,
    /// Keeps batches reaching the store in the order they were closed.
    order: Mutex<()>,
    finished: Condvar,
}

/// Where a staged write went: its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

impl Batches {
    pub fn new(store: Arc<dyn Store>) -> Batches {
        Batches {
            depth: store.pipeline_depth().max(1) as u64,
            store,
            st: Mutex::new(State {
                open: 1,
                ..State::default()
            }),
            order: Mutex::new(()),
            finished: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// An object as this server's staged writes leave it, if any writes it.
    pub fn staged(&self, kind: &str, id: &str) -> Option<Staged> {
        self.lock()
            .staged
            .get(&(kind.to_string(), id.to_string()))
            .map(|(_, v)| v.clone())
    }

    /// Every staged object of a kind, by id.
    pub fn staged_of(&self, kind: &str) -> Vec<(String, Staged)> {
        self.lock()
            .staged
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, id), (_, v))| (id.clone(), v.clone()))
            .collect()
    }

    /// An object as a write sees it: staged, else stored. Staged first: a
    /// batch is in the store before its staged values go.
    pub fn get(&self, kind: &str, id: &str) -> Result<Staged, StoreError> {
        if let Some(s) = self.staged(kind, id) {
            return Ok(s);
        }
        Ok(self.store.get(kind, id)?.map(|e| (e.data, e.version)))
    }

    /// Adds a translated write to the open batch, if nothing it read was
    /// dropped since `epoch` and the batch has room: its ticket, or `None`
    /// (translate again; a full batch was committed meanwhile).
    pub fn stage(&self, epoch: u64, ops: Vec<Op>) -> Result<Option<Ticket>, StoreError> {
        let mut g = self.lock();
        if g.epoch != epoch {
            return Ok(None);
        }
        let bytes: usize = ops.iter().map(op_bytes).sum();
        if !g.ops.is_empty() && g.bytes + bytes > BATCH_BYTES {
            let full = Ticket(g.open);
            drop(g);
            // Commits it here if nobody is; its outcome is its writers'.
            let _ = self.wait(full);
            return Ok(None);
        }
        let batch = g.open;
        for op in &ops {
            let (key, value) = match op {
                Op::Create { kind, id, data } => ((kind, id), Some(data)),
                Op::Update { kind, id, data, .. } | Op::Put { kind, id, data } => {
                    ((kind, id), Some(data))
                }
                Op::Delete { kind, id, .. } => ((kind, id), None),
                Op::Check { .. } | Op::Table { .. } => continue,
            };
            let key = (key.0.clone(), key.1.clone());
            let before = match g.staged.get(&key) {
                Some((_, v)) => v.as_ref().map(|(_, ver)| *ver),
                None => self.store.get(&key.0, &key.1)?.map(|e| e.version),
            };
            let value = value.map(|d| (Arc::from(d.as_slice()), before.map_or(1, |v| v + 1)));
            g.staged.insert(key, (batch, value));
        }
        g.ops.extend(ops);
        g.bytes += bytes;
        g.writes += 1;
        Ok(Some(Ticket(batch)))
    }

    /// Waits until every batch so far has finished, committing the open
    /// one if nobody else does: the store then holds every staged write.
    pub fn settle(&self) {
        let last = {
            let g = self.lock();
            if g.ops.is_empty() { g.open - 1 } else { g.open }
        };
        let _ = self.wait(Ticket(last));
    }

    /// Waits for a write's batch to commit, sending it from here when the
    /// pipeline has room; the batch's error if it failed.
    pub fn wait(&self, t: Ticket) -> Result<(), StoreError> {
        let mut g = self.lock();
        loop {
            if g.done >= t.0 {
                return g.failed.get(&t.0).cloned().map_or(Ok(()), Err);
            }
            if g.open == t.0 && !g.broken && g.sent - g.done < self.depth {
                g = self.commit_open(g);
                continue;
            }
            g = self.finished.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Commits the open batch, the lock released meanwhile.
    fn commit_open<'a>(&'a self, mut g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let batch = g.open;
        let ops = std::mem::take(&mut g.ops);
        let writes = std::mem::take(&mut g.writes);
        g.bytes = 0;
        g.open += 1;
        // Built on the staged writes of those in flight, maybe.
        let chained = g.sent > g.done;
        g.sent = batch;
        let t = std::time::Instant::now();
        let order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        drop(g);
        let pending = self.store.send(ops, chained);
        drop(order);
        let r = pending();
        crate::metrics::commit(t.elapsed().as_secs_f64(), writes, r.is_ok());
        tracing::debug!(
            batch,
            writes,
            chained,
            ms = t.elapsed().as_secs_f64() * 1e3,
            "NSDB batch"
        );
        let mut g = self.lock();
        // Finished in the order sent.
        while g.done + 1 < batch {
            g = self.finished.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.done = batch;
        match r {
            Ok(_) => g.staged.retain(|_, (b, _)| *b != batch),
            Err(e) => {
                tracing::debug!(batch, error = %e, "NSDB batch refused; its writers redo theirs");
                g.failed.insert(batch, e.clone());
                // After the first failure, what is staged was built on
                // what the store holds, not on the batches still failing.
                if !g.broken {
                    if !g.ops.is_empty() {
                        // Built on what just failed: it fails too.
                        let next = g.open;
                        g.failed.insert(next, e);
                        g.ops.clear();
                        g.bytes = 0;
                        g.writes = 0;
                        g.open += 1;
                        g.sent = next;
                        g.unsent.insert(next);
                    }
                    g.staged.clear();
                    g.epoch += 1;
                    g.broken = g.sent > g.done;
                }
                while g.failed.len() > FAILURES_KEPT {
                    g.failed.pop_first();
                }
            }
        }
        while g.unsent.first() == Some(&(g.done + 1)) {
            g.unsent.pop_first();
            g.done += 1;
        }
        if g.done == g.sent {
            g.broken = false;
        }
        self.finished.notify_all();
        g
    }
}

fn op_bytes(op: &Op) -> usize {
    64 + match op {
        Op::Create { data, .. } | Op::Update { data, .. } | Op::Put { data, .. } => data.len(),
        Op::Table { value, .. } => value.as_ref().map_or(0, String::len),
        Op::Delete { .. } | Op::Check { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(kind: &str, id: &str, data: &str) -> Op {
        Op::Put {
            kind: kind.into(),
            id: id.into(),
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn staged_writes_are_seen_until_committed() {
        let store: Arc<dyn Store> = Arc::new(nsdb::LocalStore::in_memory());
        let b = Batches::new(store.clone());
        let e = b.epoch();
        let t1 = b.stage(e, vec![put("Chain", "a", "1")]).unwrap().unwrap();
        let t2 = b
            .stage(
                e,
                vec![Op::Update {
                    kind: "Chain".into(),
                    id: "a".into(),
                    data: b"2".to_vec(),
                    version: Some(1),
                }],
            )
            .unwrap()
            .unwrap();
        assert_eq!(t1, t2, "one batch");
        assert!(store.get("Chain", "a").unwrap().is_none(), "not yet stored");
        let (d, v) = b.get("Chain", "a").unwrap().unwrap();
        assert_eq!((&*d, v), (&b"2"[..], 2));
        b.wait(t1).unwrap();
        let e = store.get("Chain", "a").unwrap().unwrap();
        assert_eq!((&*e.data, e.version), (&b"2"[..], 2));
        assert!(
            b.staged("Chain", "a").is_none(),
            "staged values go once stored"
        );
    }

    #[test]
    fn a_refused_batch_fails_its_writers_and_drops_what_was_staged() {
        let store: Arc<dyn Store> = Arc::new(nsdb::LocalStore::in_memory());
        store.commit(vec![put("Chain", "a", "0")]).unwrap();
        let b = Batches::new(store.clone());
        let e = b.epoch();
        // Translated against version 1; another server moves it first.
        let t = b
            .stage(
                e,
                vec![
                    put("Chain", "b", "x"),
                    Op::Update {
                        kind: "Chain".into(),
                        id: "a".into(),
                        data: b"1".to_vec(),
                        version: Some(1),
                    },
                ],
            )
            .unwrap()
            .unwrap();
        store.commit(vec![put("Chain", "a", "other")]).unwrap();
        assert!(matches!(b.wait(t), Err(StoreError::VersionMismatch { .. })));
        assert!(store.get("Chain", "b").unwrap().is_none(), "all or nothing");
        assert!(b.staged("Chain", "b").is_none());
        assert_ne!(b.epoch(), e, "translations from before must be redone");
        assert!(b.stage(e, vec![put("Chain", "c", "1")]).unwrap().is_none());
    }

    #[test]
    fn concurrent_writers_share_batches() {
        let store: Arc<dyn Store> = Arc::new(nsdb::LocalStore::in_memory());
        let b = Arc::new(Batches::new(store.clone()));
        let lock = Arc::new(Mutex::new(()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (b, lock) = (b.clone(), lock.clone());
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let ticket = {
                            let _one = lock.lock().unwrap();
                            // A shared counter, chained through the staged value.
                            let (ver, n) = match b.get("Counter", "n").unwrap() {
                                Some((d, v)) => {
                                    (Some(v), std::str::from_utf8(&d).unwrap().parse().unwrap())
                                }
                                None => (None, 0u64),
                            };
                            let data = (n + 1).to_string().into_bytes();
                            let bump = match ver {
                                Some(v) => Op::Update {
                                    kind: "Counter".into(),
                                    id: "n".into(),
                                    data,
                                    version: Some(v),
                                },
                                None => Op::Create {
                                    kind: "Counter".into(),
                                    id: "n".into(),
                                    data,
                                },
                            };
                            let mine = put("Chain", &format!("{t}-{i}"), "{}");
                            b.stage(b.epoch(), vec![bump, mine]).unwrap().unwrap()
                        };
                        b.wait(ticket).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = store.get("Counter", "n").unwrap().unwrap();
        assert_eq!(&*n.data, b"1600");
        assert_eq!(store.list("Chain").unwrap().len(), 1600);
    }
}
