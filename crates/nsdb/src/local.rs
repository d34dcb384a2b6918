//! The single-node store: everything in memory for fast reads, with an
//! optional redb file underneath for crash safety.
//!
//! A commit is validated and applied in memory under one lock, then written
//! and fsynced before [`Store::commit`] returns (group commit: whoever writes
//! takes every commit staged so far, so concurrent writers share one fsync).
//! Watchers in this process see a commit once it is applied, at most one
//! fsync before it is durable: a crash in between loses it for all of them
//! alike, and agents reload from a snapshot when the server is back. A
//! failed disk write stops the store taking writes: memory may then hold
//! what the disk does not, and only a restart (which reads the disk) can
//! tell.

use crate::*;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const TABLES: TableDefinition<&str, &str> = TableDefinition::new("state_tables");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Events kept for watchers that resume; older ones force a reload.
const LOG_CAP: usize = 100_000;

type ObjKey = (String, String);
/// A table entry: the persistent value and the learned value with its owner.
type TableRow = (Option<String>, Option<(String, SessionId)>);

/// What one commit changes on disk: objects, and persistent table rows.
#[derive(Default)]
struct Staged {
    objects: Vec<(ObjKey, Option<Entry>)>,
    tables: Vec<(String, Option<String>)>,
}

struct Watcher {
    kind: Option<String>,
    tx: crate::WatchTx,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<ObjKey, Entry>,
    revision: Revision,
    log: VecDeque<Event>,
    /// The first revision of this process: older events are not in `log`.
    log_floor: Revision,
    watchers: Vec<Watcher>,
    next_session: SessionId,
    sessions: HashMap<SessionId, ()>,
    ephemeral: BTreeMap<String, (SessionId, Arc<[u8]>)>,
    /// table -> key -> (persistent value, learned value and owner)
    tables: HashMap<String, BTreeMap<String, TableRow>>,
    /// Applied in memory, not yet on disk, in revision order.
    pending: Vec<(Revision, Staged)>,
    /// Every commit up to here is on disk.
    durable: Revision,
    /// Why the disk refused a write; no commit is taken after that.
    failed: Option<String>,
}

pub struct LocalStore {
    inner: Mutex<Inner>,
    disk: Option<Database>,
    /// Held by the one thread writing staged commits to disk.
    writing: Mutex<()>,
}

fn storage<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Storage(e.to_string())
}

fn obj_path(kind: &str, id: &str) -> String {
    format!("{kind}/{id}")
}

fn encode(e: &Entry) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + e.data.len());
    v.extend_from_slice(&e.version.to_le_bytes());
    v.extend_from_slice(&e.mod_revision.to_le_bytes());
    v.extend_from_slice(&e.data);
    v
}

fn decode(b: &[u8]) -> Option<Entry> {
    if b.len() < 16 {
        return None;
    }
    Some(Entry {
        version: u64::from_le_bytes(b[0..8].try_into().ok()?),
        mod_revision: u64::from_le_bytes(b[8..16].try_into().ok()?),
        data: Arc::from(&b[16..]),
    })
}

impl LocalStore {
    pub fn in_memory() -> Self {
        LocalStore {
            inner: Mutex::new(Inner {
                next_session: 1,
                ..Default::default()
            }),
            disk: None,
            writing: Mutex::new(()),
        }
    }

    /// Opens (or creates) the embedded store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(storage)?;
        let db = Database::create(dir.join("nsdb.redb")).map_err(storage)?;
        let mut inner = Inner {
            next_session: 1,
            ..Default::default()
        };
        {
            let w = db.begin_write().map_err(storage)?;
            w.open_table(OBJECTS).map_err(storage)?;
            w.open_table(TABLES).map_err(storage)?;
            w.open_table(META).map_err(storage)?;
            w.commit().map_err(storage)?;
        }
        let r = db.begin_read().map_err(storage)?;
        let meta = r.open_table(META).map_err(storage)?;
        inner.revision = meta
            .get("revision")
            .map_err(storage)?
            .map(|v| v.value())
            .unwrap_or(0);
        let objects = r.open_table(OBJECTS).map_err(storage)?;
        for row in objects.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            let (kind, id) = k
                .value()
                .split_once('/')
                .ok_or_else(|| storage("bad object key"))?;
            let e = decode(v.value())
                .ok_or_else(|| storage(format!("corrupt object {}", k.value())))?;
            inner.objects.insert((kind.to_string(), id.to_string()), e);
        }
        let tables = r.open_table(TABLES).map_err(storage)?;
        for row in tables.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            let (t, key) = k
                .value()
                .split_once('\0')
                .ok_or_else(|| storage("bad table key"))?;
            inner
                .tables
                .entry(t.to_string())
                .or_default()
                .insert(key.to_string(), (Some(v.value().to_string()), None));
        }
        inner.log_floor = inner.revision;
        inner.durable = inner.revision;
        drop(objects);
        drop(tables);
        drop(meta);
        drop(r);
        Ok(LocalStore {
            inner: Mutex::new(inner),
            disk: Some(db),
            writing: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied commit:
        // memory is changed only after validation and the disk write.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes staged commits to disk in one transaction, fsynced.
    fn persist(db: &Database, batch: &[(Revision, Staged)]) -> Result<()> {
        let Some((last, _)) = batch.last() else {
            return Ok(());
        };
        let w = db.begin_write().map_err(storage)?;
        {
            let mut t = w.open_table(OBJECTS).map_err(storage)?;
            let mut tt = w.open_table(TABLES).map_err(storage)?;
            for (_, staged) in batch {
                for ((kind, id), e) in &staged.objects {
                    let k = obj_path(kind, id);
                    match e {
                        Some(e) => {
                            t.insert(k.as_str(), encode(e).as_slice())
                                .map_err(storage)?;
                        }
                        None => {
                            t.remove(k.as_str()).map_err(storage)?;
                        }
                    }
                }
                for (k, v) in &staged.tables {
                    match v {
                        Some(v) => {
                            tt.insert(k.as_str(), v.as_str()).map_err(storage)?;
                        }
                        None => {
                            tt.remove(k.as_str()).map_err(storage)?;
                        }
                    }
                }
            }
            let mut m = w.open_table(META).map_err(storage)?;
            m.insert("revision", *last).map_err(storage)?;
        }
        w.commit().map_err(storage)
    }

    /// Queues a commit's disk side (nothing without a disk).
    /// Sets (or, `None`, removes) an ephemeral key whatever session owns it:
    /// a mirror's copy of state another store keeps. No event when nothing
    /// changes.
    pub(crate) fn mirror_ephemeral(&self, key: &str, v: Option<(SessionId, Arc<[u8]>)>) {
        let mut g = self.lock();
        if g.ephemeral.get(key) == v.as_ref() {
            return;
        }
        let change = match v {
            Some((s, data)) => {
                g.ephemeral.insert(key.to_string(), (s, data.clone()));
                Some(data)
            }
            None => {
                g.ephemeral.remove(key);
                None
            }
        };
        Self::state_event(&mut g, key, change);
    }

    /// Sets (or removes) the learned value of a table entry, as
    /// [`LocalStore::mirror_ephemeral`] does for ephemeral keys.
    pub(crate) fn mirror_learned(&self, table: &str, key: &str, v: Option<(String, SessionId)>) {
        let mut g = self.lock();
        let rows = g.tables.entry(table.to_string()).or_default();
        if rows.get(key).and_then(|r| r.1.as_ref()) == v.as_ref() {
            return;
        }
        let row = rows.entry(key.to_string()).or_default();
        row.1 = v;
        if row.0.is_none() && row.1.is_none() {
            rows.remove(key);
        }
        Self::table_event(&mut g, table, key);
    }

    /// Loads objects at their versions and persistent table rows: a mirror
    /// that starts from a snapshot rather than from an empty store. Before
    /// any watcher: those of earlier revisions are told to reload.
    pub(crate) fn restore(
        &self,
        objects: Vec<(String, String, u64, Vec<u8>)>,
        rows: Vec<(String, String, String)>,
    ) {
        let mut g = self.lock();
        g.revision += 1;
        let rev = g.revision;
        for (kind, id, version, data) in objects {
            let e = Entry {
                data: data.into(),
                version,
                mod_revision: rev,
            };
            g.objects.insert((kind, id), e);
        }
        for (table, key, value) in rows {
            g.tables.entry(table).or_default().entry(key).or_default().0 = Some(value);
        }
        g.log_floor = rev;
    }

    /// Publishes an ephemeral key's new value (`None`: gone) at the next
    /// revision, and returns that revision.
    fn state_event(g: &mut Inner, key: &str, data: Option<Arc<[u8]>>) -> Revision {
        g.revision += 1;
        let rev = g.revision;
        let ev = Event {
            revision: rev,
            kind: "state".into(),
            id: key.to_string(),
            change: match data {
                Some(data) => Change::Put(Entry {
                    data,
                    version: 1,
                    mod_revision: rev,
                }),
                None => Change::Deleted,
            },
        };
        Self::publish(g, ev);
        rev
    }

    /// Every learned table entry: (table, key, value, owner).
    pub(crate) fn learned_entries(&self) -> Vec<(String, String, String, SessionId)> {
        let g = self.lock();
        g.tables
            .iter()
            .flat_map(|(t, rows)| {
                rows.iter().filter_map(move |(k, (_, l))| {
                    l.as_ref()
                        .map(|(v, s)| (t.clone(), k.clone(), v.clone(), *s))
                })
            })
            .collect()
    }

    /// Writes an ephemeral key of `session`; with `vacant`, only if no
    /// session holds it (`None` then). The revision of the write.
    fn put_ephemeral_if(
        &self,
        session: SessionId,
        key: &str,
        data: Vec<u8>,
        vacant: bool,
    ) -> Result<Option<Revision>> {
        let mut g = self.lock();
        if !g.sessions.contains_key(&session) {
            return Err(StoreError::NoSession(session));
        }
        if vacant && g.ephemeral.contains_key(key) {
            return Ok(None);
        }
        let data: Arc<[u8]> = data.into();
        g.ephemeral.insert(key.to_string(), (session, data.clone()));
        Ok(Some(Self::state_event(&mut g, key, Some(data))))
    }

    fn stage(&self, g: &mut Inner, rev: Revision, staged: Staged) {
        if self.disk.is_some() {
            g.pending.push((rev, staged));
        }
    }

    fn refuse_if_failed(g: &Inner) -> Result<()> {
        match &g.failed {
            Some(why) => Err(StoreError::Storage(format!(
                "an earlier disk write failed ({why}); restart the server"
            ))),
            None => Ok(()),
        }
    }

    fn publish(inner: &mut Inner, ev: Event) {
        inner.watchers.retain(|w| {
            if w.kind.as_deref().is_some_and(|k| k != ev.kind) {
                return !w.tx.is_closed();
            }
            w.tx.send(ev.clone())
        });
        if inner.log.len() >= LOG_CAP
            && let Some(old) = inner.log.pop_front()
        {
            inner.log_floor = old.revision;
        }
        inner.log.push_back(ev);
    }

    fn table_event(inner: &mut Inner, table: &str, key: &str) -> Revision {
        inner.revision += 1;
        let rev = inner.revision;
        Self::table_event_at(inner, table, key, rev);
        rev
    }

    /// Publishes the current value of a table entry as changed at `rev`.
    fn table_event_at(inner: &mut Inner, table: &str, key: &str, rev: Revision) {
        let value = inner
            .tables
            .get(table)
            .and_then(|t| t.get(key))
            .and_then(|(p, l)| l.as_ref().map(|(v, _)| v.clone()).or_else(|| p.clone()));
        let change = match value {
            Some(v) => Change::Put(Entry {
                data: Arc::from(v.into_bytes()),
                version: 1,
                mod_revision: rev,
            }),
            None => Change::Deleted,
        };
        Self::publish(
            inner,
            Event {
                revision: rev,
                kind: format!("table/{table}"),
                id: key.to_string(),
                change,
            },
        );
    }
}

impl Store for LocalStore {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Entry>> {
        Ok(self
            .lock()
            .objects
            .get(&(kind.to_string(), id.to_string()))
            .cloned())
    }

    fn list(&self, kind: &str) -> Result<Vec<(String, Entry)>> {
        let g = self.lock();
        let lo = (kind.to_string(), String::new());
        Ok(g.objects
            .range(lo..)
            .take_while(|((k, _), _)| k == kind)
            .map(|((_, id), e)| (id.clone(), e.clone()))
            .collect())
    }

    fn commit(&self, ops: Vec<Op>) -> Result<Revision> {
        let rev = self.commit_staged(ops)?;
        self.sync(rev)?;
        Ok(rev)
    }

    fn commit_staged(&self, ops: Vec<Op>) -> Result<Revision> {
        let mut g = self.lock();
        Self::refuse_if_failed(&g)?;
        let rev = g.revision + 1;
        // Validate against the current state plus earlier ops of this commit.
        let mut staged: BTreeMap<ObjKey, Option<Entry>> = BTreeMap::new();
        let current =
            |g: &Inner, staged: &BTreeMap<ObjKey, Option<Entry>>, k: &ObjKey| -> Option<Entry> {
                match staged.get(k) {
                    Some(v) => v.clone(),
                    None => g.objects.get(k).cloned(),
                }
            };
        let check = |kind: &str, id: &str, cur: &Option<Entry>, want: Option<u64>| -> Result<()> {
            let found = cur.as_ref().map(|e| e.version);
            if want.is_some() && found != want {
                return Err(StoreError::VersionMismatch {
                    kind: kind.into(),
                    id: id.into(),
                    expected: want,
                    found,
                });
            }
            Ok(())
        };
        let mut tables: Vec<(String, String, Option<String>)> = Vec::new();
        for op in ops {
            match op {
                Op::Table { table, key, value } => tables.push((table, key, value)),
                Op::Create { kind, id, data } => {
                    let k = (kind, id);
                    if current(&g, &staged, &k).is_some() {
                        return Err(StoreError::AlreadyExists { kind: k.0, id: k.1 });
                    }
                    staged.insert(
                        k,
                        Some(Entry {
                            data: data.into(),
                            version: 1,
                            mod_revision: rev,
                        }),
                    );
                }
                Op::Update {
                    kind,
                    id,
                    data,
                    version,
                } => {
                    let k = (kind, id);
                    let cur = current(&g, &staged, &k);
                    let Some(c) = &cur else {
                        return Err(StoreError::NotFound { kind: k.0, id: k.1 });
                    };
                    check(&k.0, &k.1, &cur, version)?;
                    let e = Entry {
                        data: data.into(),
                        version: c.version + 1,
                        mod_revision: rev,
                    };
                    staged.insert(k, Some(e));
                }
                Op::Put { kind, id, data } => {
                    let k = (kind, id);
                    let v = current(&g, &staged, &k).map(|c| c.version + 1).unwrap_or(1);
                    staged.insert(
                        k,
                        Some(Entry {
                            data: data.into(),
                            version: v,
                            mod_revision: rev,
                        }),
                    );
                }
                Op::Delete { kind, id, version } => {
                    let k = (kind, id);
                    let cur = current(&g, &staged, &k);
                    if cur.is_none() {
                        return Err(StoreError::NotFound { kind: k.0, id: k.1 });
                    }
                    check(&k.0, &k.1, &cur, version)?;
                    staged.insert(k, None);
                }
                Op::Check { kind, id, version } => {
                    let k = (kind, id);
                    let found = current(&g, &staged, &k).map(|e| e.version);
                    if found != version {
                        return Err(StoreError::VersionMismatch {
                            kind: k.0,
                            id: k.1,
                            expected: version,
                            found,
                        });
                    }
                }
            }
        }
        let changes: Vec<(ObjKey, Option<Entry>)> = staged.into_iter().collect();
        g.revision = rev;
        for (k, e) in &changes {
            let change = match &e {
                Some(e) => Change::Put(e.clone()),
                None => Change::Deleted,
            };
            match e {
                Some(e) => g.objects.insert(k.clone(), e.clone()),
                None => g.objects.remove(k),
            };
            Self::publish(
                &mut g,
                Event {
                    revision: rev,
                    kind: k.0.clone(),
                    id: k.1.clone(),
                    change,
                },
            );
        }
        let mut rows = Vec::with_capacity(tables.len());
        for (table, key, value) in tables {
            let t = g.tables.entry(table.clone()).or_default();
            match &value {
                Some(v) => t.entry(key.clone()).or_default().0 = Some(v.clone()),
                None => {
                    if let Some(row) = t.get_mut(&key) {
                        row.0 = None;
                        if row.1.is_none() {
                            t.remove(&key);
                        }
                    }
                }
            }
            Self::table_event_at(&mut g, &table, &key, rev);
            rows.push((format!("{table}\0{key}"), value));
        }
        let staged = Staged {
            objects: changes,
            tables: rows,
        };
        self.stage(&mut g, rev, staged);
        Ok(rev)
    }

    fn sync(&self, rev: Revision) -> Result<()> {
        let Some(db) = &self.disk else { return Ok(()) };
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let batch = {
            let mut g = self.lock();
            if g.durable >= rev {
                return Ok(());
            }
            Self::refuse_if_failed(&g)?;
            std::mem::take(&mut g.pending)
        };
        let done = Self::persist(db, &batch);
        let mut g = self.lock();
        match done {
            Ok(()) => {
                g.durable = batch.last().map_or(g.durable, |(r, _)| *r).max(g.durable);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "NSDB disk write failed; refusing writes until restarted");
                g.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn revision(&self) -> Revision {
        self.lock().revision
    }

    fn watch(&self, kind: Option<&str>, after: Revision) -> Result<Watch> {
        let mut g = self.lock();
        if after < g.log_floor {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: g.log_floor,
            });
        }
        // The replay of the log is not counted against the backlog: it is
        // bounded by the log.
        let (tx, watch) = crate::watch_channel(crate::WATCH_BACKLOG + g.log.len());
        for ev in g.log.iter().filter(|e| e.revision > after) {
            if kind.is_none_or(|k| k == ev.kind) {
                tx.send(ev.clone());
            }
        }
        g.watchers.push(Watcher {
            kind: kind.map(str::to_string),
            tx,
        });
        Ok(watch)
    }

    fn open_session(&self) -> SessionId {
        let mut g = self.lock();
        let id = g.next_session;
        g.next_session += 1;
        g.sessions.insert(id, ());
        id
    }

    fn close_session(&self, session: SessionId) -> Result<()> {
        let mut g = self.lock();
        if g.sessions.remove(&session).is_none() {
            return Err(StoreError::NoSession(session));
        }
        let keys: Vec<String> = g
            .ephemeral
            .iter()
            .filter(|(_, (s, _))| *s == session)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            g.ephemeral.remove(&k);
            Self::state_event(&mut g, &k, None);
        }
        let mut learned = Vec::new();
        for (t, rows) in g.tables.iter_mut() {
            for (k, (_, l)) in rows.iter_mut() {
                if l.as_ref().is_some_and(|(_, s)| *s == session) {
                    *l = None;
                    learned.push((t.clone(), k.clone()));
                }
            }
        }
        for (t, k) in learned {
            if let Some(rows) = g.tables.get_mut(&t)
                && rows
                    .get(&k)
                    .is_some_and(|(p, l)| p.is_none() && l.is_none())
            {
                rows.remove(&k);
            }
            Self::table_event(&mut g, &t, &k);
        }
        Ok(())
    }

    fn put_ephemeral(&self, session: SessionId, key: &str, data: Vec<u8>) -> Result<Revision> {
        self.put_ephemeral_if(session, key, data, false)
            .map(|r| r.unwrap_or_default())
    }

    fn claim_ephemeral(&self, session: SessionId, key: &str, data: Vec<u8>) -> Result<bool> {
        self.put_ephemeral_if(session, key, data, true)
            .map(|r| r.is_some())
    }

    fn delete_ephemeral(&self, session: SessionId, key: &str) -> Result<Revision> {
        let mut g = self.lock();
        match g.ephemeral.get(key) {
            Some((s, _)) if *s == session => {
                g.ephemeral.remove(key);
            }
            _ => {
                return Err(StoreError::NotFound {
                    kind: "state".into(),
                    id: key.into(),
                });
            }
        }
        Ok(Self::state_event(&mut g, key, None))
    }

    fn get_ephemeral(&self, key: &str) -> Option<(SessionId, Arc<[u8]>)> {
        self.lock().ephemeral.get(key).cloned()
    }

    fn ephemeral_entries(&self) -> Vec<(String, Arc<[u8]>)> {
        self.lock()
            .ephemeral
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    fn table_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().tables.keys().cloned().collect();
        v.sort();
        v
    }

    fn table_put(
        &self,
        table: &str,
        key: &str,
        value: &str,
        owner: Option<SessionId>,
    ) -> Result<Revision> {
        let mut g = self.lock();
        let persistent = match owner {
            Some(s) if !g.sessions.contains_key(&s) => return Err(StoreError::NoSession(s)),
            Some(s) => {
                let row = g
                    .tables
                    .entry(table.into())
                    .or_default()
                    .entry(key.into())
                    .or_default();
                row.1 = Some((value.into(), s));
                false
            }
            None => {
                Self::refuse_if_failed(&g)?;
                let rev = g.revision + 1;
                let staged = Staged {
                    objects: Vec::new(),
                    tables: vec![(format!("{table}\0{key}"), Some(value.into()))],
                };
                self.stage(&mut g, rev, staged);
                let row = g
                    .tables
                    .entry(table.into())
                    .or_default()
                    .entry(key.into())
                    .or_default();
                row.0 = Some(value.into());
                true
            }
        };
        let rev = Self::table_event(&mut g, table, key);
        drop(g);
        if persistent {
            self.sync(rev)?;
        }
        Ok(rev)
    }

    fn table_remove(&self, table: &str, key: &str) -> Result<Revision> {
        let mut g = self.lock();
        let Some(row) = g.tables.get(table).and_then(|t| t.get(key)) else {
            return Err(StoreError::NotFound {
                kind: format!("table/{table}"),
                id: key.into(),
            });
        };
        let persistent = row.0.is_some();
        if persistent {
            Self::refuse_if_failed(&g)?;
            let rev = g.revision + 1;
            let staged = Staged {
                objects: Vec::new(),
                tables: vec![(format!("{table}\0{key}"), None)],
            };
            self.stage(&mut g, rev, staged);
        }
        if let Some(t) = g.tables.get_mut(table) {
            t.remove(key);
        }
        let rev = Self::table_event(&mut g, table, key);
        drop(g);
        if persistent {
            self.sync(rev)?;
        }
        Ok(rev)
    }

    fn persistent_entries(&self, table: &str) -> Vec<(String, String)> {
        let g = self.lock();
        g.tables
            .get(table)
            .into_iter()
            .flatten()
            .filter_map(|(k, (p, _))| Some((k.clone(), p.clone()?)))
            .collect()
    }

    fn kinds(&self) -> Vec<String> {
        let g = self.lock();
        let mut out: Vec<String> = Vec::new();
        // One step per kind: the map is ordered by (kind, id).
        let mut next = g.objects.keys().next().map(|(k, _)| k.clone());
        while let Some(kind) = next {
            next = g
                .objects
                .range((kind.clone() + "\0", String::new())..)
                .next()
                .map(|((k, _), _)| k.clone());
            out.push(kind);
        }
        out
    }

    fn table_entries(&self, table: &str) -> Vec<TableEntry> {
        let g = self.lock();
        let Some(rows) = g.tables.get(table) else {
            return Vec::new();
        };
        rows.iter()
            .filter_map(|(k, (p, l))| match (p, l) {
                (_, Some((v, s))) => Some(TableEntry {
                    key: k.clone(),
                    value: v.clone(),
                    owner: Some(*s),
                }),
                (Some(v), None) => Some(TableEntry {
                    key: k.clone(),
                    value: v.clone(),
                    owner: None,
                }),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! What only this backend does (durability, flushes); the behaviour
    //! every backend shares is in `tests/conformance.rs`.
    use super::*;

    fn put(kind: &str, id: &str, data: &str) -> Op {
        Op::Create {
            kind: kind.into(),
            id: id.into(),
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn table_entries_survive_reopen() {
        // Committed with an object, as the conformance suite checks; here,
        // that the row is on disk.
        let dir = tempfile::tempdir().unwrap();
        let entry = |value: Option<&str>| Op::Table {
            table: "ip4mac/b".into(),
            key: "198.18.0.5".into(),
            value: value.map(str::to_string),
        };
        {
            let s = LocalStore::open(dir.path()).unwrap();
            s.commit(vec![
                put("Chain", "c", "{}"),
                entry(Some("aa:aa:aa:aa:aa:01")),
            ])
            .unwrap();
        }
        let s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(s.table_entries("ip4mac/b")[0].value, "aa:aa:aa:aa:aa:01");
        s.commit(vec![entry(None)]).unwrap();
        assert!(s.table_entries("ip4mac/b").is_empty());
    }

    #[test]
    fn concurrent_commits_share_flushes_and_all_survive() {
        let dir = tempfile::tempdir().unwrap();
        let per = 50;
        {
            let s = Arc::new(LocalStore::open(dir.path()).unwrap());
            let writers: Vec<_> = (0..4)
                .map(|t| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        for i in 0..per {
                            let rev = s
                                .commit(vec![put("Chain", &format!("{t}-{i}"), "{}")])
                                .unwrap();
                            // Durable on return: nothing staged at or before it.
                            let g = s.lock();
                            assert!(g.durable >= rev);
                            assert!(g.pending.iter().all(|(r, _)| *r > rev));
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            // Staged: seen at once, written by the next sync.
            let rev = s.commit_staged(vec![put("Chain", "staged", "{}")]).unwrap();
            assert!(s.get("Chain", "staged").unwrap().is_some());
            assert_eq!(s.lock().pending.len(), 1);
            s.sync(rev).unwrap();
            assert!(s.lock().pending.is_empty());
        }
        let s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(s.list("Chain").unwrap().len(), 4 * per + 1);
        assert_eq!(s.revision(), 4 * per as u64 + 1);
    }

    #[test]
    fn embedded_store_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = LocalStore::open(dir.path()).unwrap();
            s.commit(vec![put("Chain", "c", "{}")]).unwrap();
            s.commit(vec![Op::Update {
                kind: "Chain".into(),
                id: "c".into(),
                data: b"v2".to_vec(),
                version: Some(1),
            }])
            .unwrap();
            s.table_put("arp/r", "10.0.0.1", "aa:aa:aa:aa:aa:aa", None)
                .unwrap();
        }
        let s = LocalStore::open(dir.path()).unwrap();
        let e = s.get("Chain", "c").unwrap().unwrap();
        assert_eq!((&*e.data, e.version), (&b"v2"[..], 2));
        assert!(s.revision() >= 2);
        assert_eq!(s.table_entries("arp/r").len(), 1);
        assert!(matches!(
            s.watch(None, 0),
            Err(StoreError::Compacted { .. })
        ));
    }
}
