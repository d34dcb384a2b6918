//! The network state database (NSDB).
//!
//! One [`Store`] trait, shaped after what ZooKeeper offers MidoNet: versioned
//! objects (znode versions), multi-object transactions with compare-and-set
//! (`multi` with version checks), watches that resume from a revision (zxid),
//! ephemeral state keys bound to a session (ephemeral znodes), and replicated
//! state tables whose learned entries die with their writer's session.
//!
//! Backends: [`LocalStore::in_memory`] for tests, [`LocalStore::open`], the
//! embedded crash-safe store (redb) that `midonet server` uses by default,
//! and [`ZkStore`], a ZooKeeper ensemble shared by several servers.

mod local;
pub mod transfer;
mod zookeeper;

pub use local::LocalStore;
pub use zookeeper::{Compaction, ZkStore};

use std::sync::Arc;
use tokio::sync::mpsc;

/// A store-wide, monotonically increasing change counter.
pub type Revision = u64;

/// A session id: ephemeral keys and learned table entries belong to one.
pub type SessionId = u64;

/// A stored object: its bytes, its version (1 on create, +1 per update) and
/// the revision of its last change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub data: Arc<[u8]>,
    pub version: u64,
    pub mod_revision: Revision,
}

/// One operation of a transaction. `version: Some(v)` makes it conditional on
/// the stored version (compare-and-set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Create {
        kind: String,
        id: String,
        data: Vec<u8>,
    },
    Update {
        kind: String,
        id: String,
        data: Vec<u8>,
        version: Option<u64>,
    },
    /// Create or replace, unconditionally.
    Put {
        kind: String,
        id: String,
        data: Vec<u8>,
    },
    Delete {
        kind: String,
        id: String,
        version: Option<u64>,
    },
    /// Asserts the object exists at this version (or does not exist, for `None`).
    Check {
        kind: String,
        id: String,
        version: Option<u64>,
    },
    /// Writes a persistent table entry (`value: None` removes it, if there).
    Table {
        table: String,
        key: String,
        value: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put(Entry),
    Deleted,
}

/// A committed change, as a watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub revision: Revision,
    /// Object kind, `state` for ephemeral keys, `table/<name>` for table entries.
    pub kind: String,
    pub id: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: String, id: String },
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: String, id: String },
    #[error("{kind} {id} changed concurrently (expected version {expected:?}, found {found:?})")]
    VersionMismatch {
        kind: String,
        id: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
    #[error("revision {requested} is no longer in the change log (oldest kept: {oldest}); reload")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("session {0} is not open")]
    NoSession(SessionId),
    #[error("storage failure: {0}")]
    Storage(String),
    /// A commit sent chained to one before it was not applied, because that
    /// one was not.
    #[error("a commit this one was built on failed; redo it on what the store holds")]
    Unchained,
    /// The store's servers did not answer (no quorum, unreachable).
    #[error("NSDB unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A commit sent and not yet answered: calling it waits for the answer.
pub type Pending = Box<dyn FnOnce() -> Result<Revision> + Send>;

/// Events a watch may leave unread: past it the store drops the watch,
/// which then ends once its reader has drained it (a slow reader is cut
/// off and resumes from its revision, instead of being buffered forever).
pub const WATCH_BACKLOG: usize = 65_536;

/// A subscription to committed changes, in revision order.
pub struct Watch {
    rx: mpsc::UnboundedReceiver<Event>,
    unread: Arc<std::sync::atomic::AtomicUsize>,
}

/// The store's end of a [`Watch`].
pub(crate) struct WatchTx {
    tx: mpsc::UnboundedSender<Event>,
    unread: Arc<std::sync::atomic::AtomicUsize>,
    backlog: usize,
}

impl WatchTx {
    /// Queues `ev`; false once the reader is gone or too far behind.
    pub(crate) fn send(&self, ev: Event) -> bool {
        use std::sync::atomic::Ordering;
        if self.unread.fetch_add(1, Ordering::Relaxed) >= self.backlog {
            tracing::warn!(
                backlog = self.backlog,
                "a watcher left too many changes unread: its watch is cut off"
            );
            return false;
        }
        self.tx.send(ev).is_ok()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A watch and its sending end, cut off past `backlog` unread events.
pub(crate) fn watch_channel(backlog: usize) -> (WatchTx, Watch) {
    let (tx, rx) = mpsc::unbounded_channel();
    let unread = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (
        WatchTx {
            tx,
            unread: unread.clone(),
            backlog,
        },
        Watch { rx, unread },
    )
}

impl Watch {
    fn took(&self, ev: Option<Event>) -> Option<Event> {
        if ev.is_some() {
            self.unread
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        ev
    }
    pub async fn next(&mut self) -> Option<Event> {
        let ev = self.rx.recv().await;
        self.took(ev)
    }
    pub fn try_next(&mut self) -> Option<Event> {
        let ev = self.rx.try_recv().ok();
        self.took(ev)
    }
}

/// A state table entry: a learned entry (owned by a session) overrides a
/// persistent one written by the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    pub key: String,
    pub value: String,
    pub owner: Option<SessionId>,
}

pub trait Store: Send + Sync + 'static {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Entry>>;
    /// Every object of a kind, ordered by id.
    fn list(&self, kind: &str) -> Result<Vec<(String, Entry)>>;
    /// Applies every op or none; returns the revision of the commit. Once this
    /// returns, the write is durable (for persistent backends).
    fn commit(&self, ops: Vec<Op>) -> Result<Revision>;
    /// Sends a commit and returns before it is answered, for a writer that
    /// keeps several in flight ([`Store::pipeline_depth`]). Commits apply
    /// in the order sent. A `chained` one (built on what the commits in
    /// flight write) applies only if every one sent before it does, and
    /// fails with [`StoreError::Unchained`] otherwise.
    fn send(&self, ops: Vec<Op>, chained: bool) -> Pending {
        let _ = chained;
        let r = self.commit(ops);
        Box::new(move || r)
    }
    /// How many sent commits a writer may keep in flight: more than one
    /// only where a commit is a round trip to other machines.
    fn pipeline_depth(&self) -> usize {
        1
    }
    /// [`Store::commit`] up to the point where readers and watchers see it,
    /// but not yet durable: [`Store::sync`] waits for that. A writer that
    /// holds a lock of its own releases it in between, so concurrent
    /// writers share one disk flush.
    fn commit_staged(&self, ops: Vec<Op>) -> Result<Revision> {
        self.commit(ops)
    }
    /// Returns once every commit up to `revision` is durable.
    fn sync(&self, revision: Revision) -> Result<()> {
        let _ = revision;
        Ok(())
    }
    fn revision(&self) -> Revision;
    /// Changes after `after`, then live ones. `kind: None` watches everything.
    fn watch(&self, kind: Option<&str>, after: Revision) -> Result<Watch>;

    fn open_session(&self) -> SessionId;
    /// Ends a session: its ephemeral keys and learned table entries disappear.
    fn close_session(&self, session: SessionId) -> Result<()>;
    fn put_ephemeral(&self, session: SessionId, key: &str, data: Vec<u8>) -> Result<Revision>;
    fn delete_ephemeral(&self, session: SessionId, key: &str) -> Result<Revision>;
    /// Writes an ephemeral key only if no session holds it (first writer
    /// wins): `Ok(false)` when another holds it.
    fn claim_ephemeral(&self, session: SessionId, key: &str, data: Vec<u8>) -> Result<bool>;
    fn get_ephemeral(&self, key: &str) -> Option<(SessionId, Arc<[u8]>)>;
    /// Whether this process leads `role` (work one server does for the
    /// cluster, such as a reconciler), becoming its leader when it has
    /// none. Asked again before each round of that work: leadership moves
    /// when its holder dies.
    fn lead(&self, role: &str) -> bool {
        let _ = role;
        true
    }
    /// Whether the store ended `session` by itself (ZooKeeper expired it
    /// in an outage longer than its timeout): its ephemeral state is gone,
    /// and whoever holds it opens a new one and states it again.
    fn session_ended(&self, session: SessionId) -> bool {
        let _ = session;
        false
    }
    /// Why reads may be stale (the store's servers not answering), or
    /// `None` when they are current.
    fn stale(&self) -> Option<String> {
        None
    }
    /// Every ephemeral key, for a subscriber's snapshot.
    fn ephemeral_entries(&self) -> Vec<(String, Arc<[u8]>)>;

    /// Writes a table entry; `owner: None` is persistent.
    fn table_put(
        &self,
        table: &str,
        key: &str,
        value: &str,
        owner: Option<SessionId>,
    ) -> Result<Revision>;
    fn table_remove(&self, table: &str, key: &str) -> Result<Revision>;
    fn table_entries(&self, table: &str) -> Vec<TableEntry>;
    fn table_names(&self) -> Vec<String>;
    /// A table's persistent rows (the API's, learned ones left out), by key.
    fn persistent_entries(&self, table: &str) -> Vec<(String, String)>;
    /// The kinds that hold objects, sorted (for a whole-store export).
    fn kinds(&self) -> Vec<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_left_unread_past_its_backlog_is_cut_off() {
        let ev = |revision| Event {
            revision,
            kind: "Bridge".into(),
            id: "b".into(),
            change: Change::Deleted,
        };
        let (tx, mut w) = watch_channel(3);
        assert!(tx.send(ev(1)) && tx.send(ev(2)));
        assert_eq!(w.try_next().map(|e| e.revision), Some(1));
        // Reading frees room: three unread fit again, a fourth does not.
        assert!(tx.send(ev(3)) && tx.send(ev(4)));
        assert!(
            !tx.send(ev(5)),
            "the fourth unread event cuts the watch off"
        );
        drop(tx); // what the store does with a watcher refused an event
        let rest: Vec<_> = std::iter::from_fn(|| w.try_next().map(|e| e.revision)).collect();
        assert_eq!(
            rest,
            vec![2, 3, 4],
            "what was queued is still read, then the watch ends"
        );
        assert!(w.rx.is_closed());
    }
}
