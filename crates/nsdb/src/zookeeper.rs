//! The NSDB on a ZooKeeper ensemble, for several cluster servers.
//!
//! ZooKeeper holds the truth and orders it; each server keeps a mirror in
//! memory (a [`LocalStore`]) that its readers and watchers use. The layout
//! under the chroot (default `/midonet`):
//!
//! - `log/c-<seq>`: one znode per commit, holding what it changed (objects
//!   and persistent table rows). The log is the store: a server's mirror
//!   is the latest snapshot and the log after it, applied in order. Entry
//!   numbers are dense, so a server follows the log by reading `c-<next>`
//!   until there is none, woken by a watch on `log` (and by its own
//!   commits). The data of `log` is its first entry (see compaction).
//! - `snapshots/s-<n>`: the mirror before entry `n` (objects with their
//!   versions, persistent rows), in chunks `s-<n>-<i>` of 512 KB.
//! - `servers/<session>`: how far each server has applied the log
//!   (ephemeral, every [`REPORT_EVERY`]).
//! - `pipes/p-<seq>`: one ephemeral znode per server session, whose
//!   version chains the commits that server has in flight (see [`Flight`]).
//! - `state/<key>` and `learned/<table>,<key>`: ephemeral state (host
//!   alive, port active, NAT block leases) and learned table entries, as
//!   ephemeral znodes of the owner's session. Every server watches both
//!   (persistent recursive watches) into its mirror.
//!
//! **Sessions.** Each store session (one per connected agent) is a
//! ZooKeeper session of its own, which the server opens for the agent.
//! Its ephemeral znodes go when the agent disconnects (the server closes
//! the session) or, when the server dies, once ZooKeeper expires the
//! session ([`SESSION_TIMEOUT`]): an agent's state outlives its server by
//! that long. The agent, reconnecting to another server, opens a new
//! session and writes its state again.
//!
//! **Commits.** A server checks a commit against its mirror, as the
//! embedded store would (versions, existence), once the mirror holds the
//! whole log, and then creates the next entry, `c-<next>`, in one `multi`.
//! If another server created that entry first, the create fails and the
//! commit is checked again on what that server did: compare-and-set on the
//! log's head, so ZooKeeper's work per commit is two znode writes however
//! many objects it changes (a Neutron port is 20). Up to
//! [`PIPELINE_DEPTH`] commits are in flight, taking the entries after.
//! A commit returns once this server's mirror has applied it, so a writer
//! reads its own writes. Revisions are the mirror's own, per server: a
//! watcher that moves to another server reloads from a snapshot.
//!
//! **Compaction.** One server, elected (`leaders/nsdb-compactor`), takes a
//! snapshot of its mirror once the log since the last one has grown past
//! both [`Compaction::min_bytes`] and the last snapshot's size (so the
//! work per logged byte stays constant however large the store), then
//! deletes the entries before it that every server reports applied, and
//! the older snapshots. A starting server says it needs the whole log
//! until it has loaded the latest snapshot. A server that was away so long
//! that entries it had not applied went (its session expired, its report
//! with it) sees the log start past its place and refuses writes, saying
//! to restart it.
//!
//! Not done yet: a session does not move between servers.

use crate::{
    Entry, LocalStore, Op, Pending, Result, Revision, SessionId, Store, StoreError, TableEntry,
    Watch,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zookeeper_client as zk;

/// How long a call may wait for the ensemble before it fails.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Reads are called stale once the ensemble has not answered for this long
/// (the log follower asks at least every second).
const STALE_AFTER: Duration = Duration::from_secs(3);
/// How long an agent's state outlives a server that died holding its session.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const EPHEMERAL: &zk::CreateOptions<'static> =
    &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
const OPEN: &zk::CreateOptions<'static> =
    &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
const EPHEMERAL_SEQUENTIAL: &zk::CreateOptions<'static> =
    &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
/// Commits a server may have in flight at once. Each is a round trip of
/// the ensemble's (about 10 ms on one disk); in flight together, they
/// share ZooKeeper's own log flushes.
const PIPELINE_DEPTH: usize = 4;

/// How often a commit is checked and sent again when other servers keep
/// logging first.
const COMMIT_ATTEMPTS: u32 = 20;

/// How many applied entries' revisions are remembered (several pipelines'
/// worth: a commit's answer may come after the follower applied it).
const MADE_KEPT: usize = 64;

/// A snapshot's chunk size: a znode holds at most 1 MB.
const CHUNK_BYTES: usize = 512 * 1024;
/// How often a server tells the compactor how far it has applied the log
/// (and checks that the log still starts at or before that).
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// Log entries deleted per `multi`.
const TRIM_BATCH: u64 = 500;

/// When the log is compacted: a snapshot of the mirror at some entry, after
/// which the entries before it (that every server has applied) go.
#[derive(Clone, Copy, Debug)]
pub struct Compaction {
    /// Log bytes since the last snapshot before the next one, at the least;
    /// and at least the last snapshot's size, so that the work per logged
    /// byte stays the same however large the store grows.
    pub min_bytes: u64,
    /// How often the compactor (one server, elected) looks.
    pub every: Duration,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            min_bytes: 16 << 20,
            every: Duration::from_secs(10),
        }
    }
}

/// The commits sent on the store's session and not yet applied. ZooKeeper
/// runs a session's requests in order; each commit's `multi` first bumps
/// the version of the server's pipe znode (`pipes/p-<seq>`, ephemeral),
/// expecting the version the commit before it left. So a commit that was
/// sent while an earlier one was in flight applies only if that one did.
#[derive(Default)]
struct Flight {
    /// Objects the commits in flight write: the version they leave (`None`:
    /// deleted) and the last send that writes it. What the next commit is
    /// checked against, over the mirror.
    objects: HashMap<(String, String), (Option<u64>, u64)>,
    /// The pipe znode, and the session it belongs to.
    pipe: Option<(String, zk::SessionId)>,
    /// The version the next commit expects the pipe at; `None` after a
    /// failure (read again before the next unchained send).
    expect: Option<i32>,
    /// The log entry the next send takes.
    slot: u64,
    /// Sends so far.
    sent: u64,
}

/// Where the mirror stands in the log.
#[derive(Default)]
struct Follow {
    /// The next log sequence number to apply.
    next: u64,
    /// Why applying the log failed; the store then refuses writes.
    failed: Option<String>,
    /// The mirror revision each recent entry made, newest last: what a
    /// pipelined commit answers when the follower applied it first.
    made: std::collections::VecDeque<(u64, Revision)>,
    /// Log bytes applied since this server started.
    logged: u64,
    /// `logged` at the last snapshot this server took or loaded.
    logged_at_snapshot: u64,
    /// That snapshot's size.
    snapshot_bytes: u64,
}

pub struct ZkStore {
    /// `None` only while dropping (shut down without blocking: a store may
    /// be dropped on another runtime's thread).
    rt: Option<tokio::runtime::Runtime>,
    /// The server's own session, renewed when it expires.
    link: Link,
    /// The log and state followers, stopped on drop.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// When the ensemble last answered the log follower (every second at
    /// least, when it is reachable).
    answered: Arc<Mutex<std::time::Instant>>,
    mirror: Arc<LocalStore>,
    follow: Arc<Mutex<Follow>>,
    /// Serializes catching up: one reader of the log at a time.
    reading: Arc<tokio::sync::Mutex<()>>,
    /// Keeps sends in the order they are planned (never held by the
    /// runtime's tasks).
    sending: Mutex<()>,
    flight: Arc<Mutex<Flight>>,
    /// How many sends have finished (they finish in the order sent).
    turn: Arc<tokio::sync::watch::Sender<u64>>,
    /// The ensemble's hosts and the chroot, for the sessions' own clients.
    hosts: String,
    chroot: String,
    sessions: Mutex<HashMap<SessionId, zk::Client>>,
    /// Ids for sessions that could not be opened: every use of one fails.
    dead_sessions: std::sync::atomic::AtomicU64,
}

/// The store's own ZooKeeper session, shared by its tasks. When it expires
/// (the ensemble unreachable or without a quorum for longer than the
/// session timeout), [`renew`] opens a new one; every user reads the
/// current one. `None` once the store is dropping.
#[derive(Clone, Default)]
struct Link(Arc<Mutex<Option<zk::Client>>>);

impl Link {
    fn get(&self) -> Option<zk::Client> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Opens the store's session on `hosts` and makes its layout under `chroot`.
async fn open_main(hosts: &str, chroot: &str) -> Result<zk::Client> {
    let root = zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .connect(hosts)
        .await
        .map_err(unavailable)?;
    match root.mkdir(chroot, OPEN).await {
        Ok(()) | Err(zk::Error::NodeExists) => {}
        Err(e) => return Err(unavailable(e)),
    }
    let c = root
        .chroot(chroot.to_string())
        .map_err(|_| StoreError::Storage(format!("bad chroot {chroot}")))?;
    for dir in [
        "/log",
        "/snapshots",
        "/servers",
        "/state",
        "/learned",
        "/leaders",
        "/pipes",
    ] {
        match c.create(dir, &[], OPEN).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(c)
}

/// Replaces the store's session whenever it ends, until the store drops.
async fn renew(link: Link, hosts: String, chroot: String) {
    loop {
        let Some(c) = link.get() else { return };
        let mut state = c.state_watcher();
        // No clone kept while waiting: the store's drop closes the session.
        drop(c);
        while !state.peek_state().is_terminated() {
            state.changed().await;
        }
        if link.get().is_none() {
            return;
        }
        tracing::warn!(state = ?state.peek_state(), "the NSDB's ZooKeeper session ended; opening a new one");
        loop {
            match open_main(&hosts, &chroot).await {
                Ok(c) => {
                    let mut g = link.0.lock().unwrap_or_else(|p| p.into_inner());
                    if g.is_none() {
                        return;
                    }
                    tracing::info!(session = ?c.session_id(), "new NSDB ZooKeeper session");
                    *g = Some(c);
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "opening a ZooKeeper session");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("ZooKeeper: {e}"))
}

/// A znode name for an id or key, which may hold `/`.
fn name(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn state_path(key: &str) -> String {
    format!("/state/{}", name(key))
}

fn learned_path(table: &str, key: &str) -> String {
    format!(
        "/learned/{},{}",
        name(table).replace(',', "%2C"),
        name(key).replace(',', "%2C")
    )
}

fn unname(s: &str) -> String {
    s.replace("%2C", ",")
        .replace("%2F", "/")
        .replace("%25", "%")
}

fn log_path(seq: u64) -> String {
    format!("/log/c-{seq:010}")
}

/// Log entries and snapshot chunks from this size on are stored compressed
/// (LZ4): the JSON of a Neutron port's 20 objects shrinks severalfold, and
/// that is what each ZooKeeper member holds in memory, logs and sends to
/// the others.
const PACK_FROM: usize = 512;
/// The most a packed znode may claim to hold: a broken one is refused, not
/// allocated.
const UNPACKED_MAX: usize = 64 << 20;

/// `Z`, the length, the LZ4 block; or the bytes as they are when short
/// (an entry's own first byte is never `Z`).
fn pack(raw: Vec<u8>) -> Vec<u8> {
    if raw.len() < PACK_FROM {
        return raw;
    }
    let mut out = Vec::with_capacity(5 + raw.len() / 2);
    out.push(b'Z');
    out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
    out.extend_from_slice(&lz4_flex::block::compress(&raw));
    out
}

fn unpack(b: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let Some((b'Z', rest)) = b.split_first() else {
        return Some(std::borrow::Cow::Borrowed(b));
    };
    let n = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if n > UNPACKED_MAX {
        return None;
    }
    let mut out = vec![0; n];
    let got = lz4_flex::block::decompress_into(&rest[4..], &mut out).ok()?;
    (got == n).then_some(std::borrow::Cow::Owned(out))
}

/// A length-prefixed field of a log entry or snapshot.
fn put_field(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Some(h)
}

fn take_field<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = u32::from_be_bytes(take(b, 4)?.try_into().ok()?) as usize;
    take(b, n)
}

fn take_text(b: &mut &[u8]) -> Option<String> {
    String::from_utf8(take_field(b)?.to_vec()).ok()
}

/// What a logged commit changed, in the form the mirror applies
/// unconditionally: `P` put, `D` delete, `T` table row (value or none).
fn encode_log(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Create { kind, id, data }
            | Op::Put { kind, id, data }
            | Op::Update { kind, id, data, .. } => {
                out.push(b'P');
                put_field(&mut out, kind.as_bytes());
                put_field(&mut out, id.as_bytes());
                put_field(&mut out, data);
            }
            Op::Delete { kind, id, .. } => {
                out.push(b'D');
                put_field(&mut out, kind.as_bytes());
                put_field(&mut out, id.as_bytes());
            }
            Op::Table { table, key, value } => {
                out.push(b'T');
                put_field(&mut out, table.as_bytes());
                put_field(&mut out, key.as_bytes());
                match value {
                    Some(v) => {
                        out.push(1);
                        put_field(&mut out, v.as_bytes());
                    }
                    None => out.push(0),
                }
            }
            Op::Check { .. } => {}
        }
    }
    out
}

fn decode_log(mut b: &[u8]) -> Option<Vec<Op>> {
    let b = &mut b;
    let mut ops = Vec::new();
    while let Some(tag) = take(b, 1) {
        ops.push(match tag[0] {
            b'P' => Op::Put {
                kind: take_text(b)?,
                id: take_text(b)?,
                data: take_field(b)?.to_vec(),
            },
            b'D' => Op::Delete {
                kind: take_text(b)?,
                id: take_text(b)?,
                version: None,
            },
            b'T' => Op::Table {
                table: take_text(b)?,
                key: take_text(b)?,
                value: match take(b, 1)?[0] {
                    1 => Some(take_text(b)?),
                    _ => None,
                },
            },
            _ => return None,
        });
    }
    Some(ops)
}

/// The mirror at a log position: objects at their versions, and persistent
/// table rows. Session state is not in it (it lives in `state` and
/// `learned`, outside the log).
#[derive(Debug, Default, PartialEq)]
struct Snapshot {
    objects: Vec<(String, String, u64, Vec<u8>)>,
    rows: Vec<(String, String, String)>,
}

impl Snapshot {
    /// In the mirror's own order (by kind and id, by table and key), so two
    /// servers writing the snapshot at one position write the same bytes.
    fn of(mirror: &LocalStore) -> Result<Snapshot> {
        let mut s = Snapshot::default();
        for kind in mirror.kinds() {
            for (id, e) in mirror.list(&kind)? {
                s.objects
                    .push((kind.clone(), id, e.version, e.data.to_vec()));
            }
        }
        for table in mirror.table_names() {
            for (key, value) in mirror.persistent_entries(&table) {
                s.rows.push((table.clone(), key, value));
            }
        }
        Ok(s)
    }

    /// Chunks of about [`CHUNK_BYTES`], well under ZooKeeper's 1 MB znode
    /// limit: `V` object (kind, id, version, data), `R` table row.
    fn encode(&self) -> Vec<Vec<u8>> {
        let mut chunks = vec![Vec::new()];
        let room = |chunks: &mut Vec<Vec<u8>>| {
            if chunks.last().is_some_and(|c| c.len() >= CHUNK_BYTES) {
                chunks.push(Vec::new());
            }
            chunks.len() - 1
        };
        for (kind, id, version, data) in &self.objects {
            let i = room(&mut chunks);
            let out = &mut chunks[i];
            out.push(b'V');
            put_field(out, kind.as_bytes());
            put_field(out, id.as_bytes());
            out.extend_from_slice(&version.to_be_bytes());
            put_field(out, data);
        }
        for (table, key, value) in &self.rows {
            let i = room(&mut chunks);
            let out = &mut chunks[i];
            out.push(b'R');
            put_field(out, table.as_bytes());
            put_field(out, key.as_bytes());
            put_field(out, value.as_bytes());
        }
        chunks
    }

    /// Adds one chunk's content; `None` if it does not decode.
    fn decode(&mut self, mut b: &[u8]) -> Option<()> {
        let b = &mut b;
        while let Some(tag) = take(b, 1) {
            match tag[0] {
                b'V' => self.objects.push((
                    take_text(b)?,
                    take_text(b)?,
                    u64::from_be_bytes(take(b, 8)?.try_into().ok()?),
                    take_field(b)?.to_vec(),
                )),
                b'R' => self
                    .rows
                    .push((take_text(b)?, take_text(b)?, take_text(b)?)),
                _ => return None,
            }
        }
        Some(())
    }
}

/// `snapshots/s-<n>`: the mirror before log entry `n`, complete once this
/// marker exists (its data: the chunk count and bytes); its chunks are
/// `s-<n>-<i>`, written first.
fn snapshot_path(n: u64) -> String {
    format!("/snapshots/s-{n:010}")
}

fn chunk_path(n: u64, i: usize) -> String {
    format!("/snapshots/s-{n:010}-{i:05}")
}

/// A `snapshots` child's position, and whether it is a marker.
fn snapshot_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("s-")?;
    match rest.split_once('-') {
        Some((n, _)) => Some((n.parse().ok()?, false)),
        None => Some((rest.parse().ok()?, true)),
    }
}

/// The newest complete snapshot among `snapshots`' children.
fn latest_snapshot(names: &[String]) -> Option<u64> {
    names
        .iter()
        .filter_map(|n| snapshot_name(n))
        .filter(|(_, marker)| *marker)
        .map(|(n, _)| n)
        .max()
}

/// A decimal number in a znode (the log's first entry, a server's place);
/// empty is 0.
fn number(d: &[u8]) -> u64 {
    std::str::from_utf8(d)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

impl ZkStore {
    /// Connects to `connect` (`HOST:PORT[,HOST:PORT…][/chroot]`, chroot
    /// `/midonet` when none is given), creates the layout if it is new,
    /// loads the latest snapshot and applies the log after it.
    pub fn connect(connect: &str) -> Result<ZkStore> {
        Self::connect_with(connect, Compaction::default())
    }

    /// As [`ZkStore::connect`], compacting the log as `compaction` says
    /// when this server is the one elected to.
    pub fn connect_with(connect: &str, compaction: Compaction) -> Result<ZkStore> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nsdb-zookeeper")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let (hosts, chroot) = match connect.find('/') {
            Some(i) => (&connect[..i], connect[i..].to_string()),
            None => (connect, "/midonet".to_string()),
        };
        let (hosts, chroot) = (hosts.to_string(), chroot);
        let (h, root_path) = (hosts.clone(), chroot.clone());
        let client = run(&rt, async move { open_main(&h, &root_path).await })?;
        let link = Link(Arc::new(Mutex::new(Some(client))));
        let renewal = rt.spawn(renew(link.clone(), hosts.clone(), chroot.clone()));
        let store = ZkStore {
            rt: Some(rt),
            link,
            tasks: Mutex::new(vec![renewal]),
            answered: Arc::new(Mutex::new(std::time::Instant::now())),
            mirror: Arc::new(LocalStore::in_memory()),
            follow: Arc::new(Mutex::new(Follow::default())),
            reading: Arc::new(tokio::sync::Mutex::new(())),
            sending: Mutex::new(()),
            flight: Arc::new(Mutex::new(Flight::default())),
            turn: Arc::new(tokio::sync::watch::Sender::new(0)),
            hosts,
            chroot,
            sessions: Mutex::new(HashMap::new()),
            dead_sessions: std::sync::atomic::AtomicU64::new(u64::MAX / 2),
        };
        let f = store.follower();
        run(store.rt(), async move { f.load().await })?;
        store.catch_up()?;
        store.spawn_follower();
        let compactor = store.rt().spawn(store.follower().compactor(compaction));
        store
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(compactor);
        let states = store.states();
        run(store.rt(), async move {
            states.relist().await;
            Ok(())
        })?;
        let states = store.rt().spawn(store.states().follow());
        store
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(states);
        Ok(store)
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("open until dropped")
    }

    fn states(&self) -> States {
        States {
            link: self.link.clone(),
            mirror: self.mirror.clone(),
        }
    }

    fn session(&self, s: SessionId) -> Result<zk::Client> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&s)
            .cloned()
            .ok_or(StoreError::NoSession(s))
    }

    /// Writes an ephemeral znode of session `s`, replacing one another
    /// session holds (the last writer wins, as in the embedded store).
    fn put_owned(&self, s: SessionId, path: String, data: Vec<u8>) -> Result<()> {
        let c = self.session(s)?;
        run(self.rt(), async move {
            match c.create(&path, &data, EPHEMERAL).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(unavailable(e)),
            }
            let stat = match c.get_data(&path).await {
                Ok((_, stat)) => stat,
                // Gone in between: create it after all.
                Err(zk::Error::NoNode) => {
                    return c
                        .create(&path, &data, EPHEMERAL)
                        .await
                        .map(|_| ())
                        .map_err(unavailable);
                }
                Err(e) => return Err(unavailable(e)),
            };
            if stat.ephemeral_owner as u64 == s {
                return c
                    .set_data(&path, &data, None)
                    .await
                    .map(|_| ())
                    .map_err(unavailable);
            }
            let mut m = c.new_multi_writer();
            m.add_delete(&path, Some(stat.version))
                .map_err(unavailable)?;
            m.add_create(&path, &data, EPHEMERAL).map_err(unavailable)?;
            m.commit()
                .await
                .map(|_| ())
                .map_err(|e| unavailable(zk::Error::from(e)))
        })
    }

    fn delete_path(&self, path: String) -> Result<()> {
        let c = self.zk();
        run(self.rt(), async move {
            match c.delete(&path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn zk(&self) -> zk::Client {
        self.link.get().expect("open until dropped")
    }

    fn follower(&self) -> Follower {
        Follower {
            answered: self.answered.clone(),
            link: self.link.clone(),
            mirror: self.mirror.clone(),
            follow: self.follow.clone(),
            reading: self.reading.clone(),
        }
    }

    /// Where the log now starts, and the entry this server applies next:
    /// how much of it compaction has removed, and how much is kept.
    pub fn log_span(&self) -> Result<(u64, u64)> {
        let c = self.zk();
        let start = run(self.rt(), async move { log_start(&c).await })?;
        Ok((
            start,
            self.follow.lock().unwrap_or_else(|p| p.into_inner()).next,
        ))
    }

    /// Applies every commit in the log so far.
    fn catch_up(&self) -> Result<()> {
        let f = self.follower();
        run(self.rt(), async move { f.drain().await })
    }

    /// Follows the log: a persistent watch on `log` wakes the follower for
    /// each new commit, and a slow tick covers events lost in a reconnect.
    fn spawn_follower(&self) {
        let f = self.follower();
        let task = self.rt().spawn(async move {
            // The watch, and the session it was set on.
            let mut watch: Option<(zk::PersistentWatcher, zk::SessionId)> = None;
            let mut reported = std::time::Instant::now() - REPORT_EVERY;
            loop {
                let Some(client) = f.link.get() else { return };
                if watch
                    .as_ref()
                    .is_none_or(|(_, on)| *on != client.session_id())
                {
                    watch = client
                        .watch("/log", zk::AddWatchMode::Persistent)
                        .await
                        .ok()
                        .map(|w| (w, client.session_id()));
                }
                drop(client);
                match &mut watch {
                    Some((w, _)) => {
                        if let Ok(ev) =
                            tokio::time::timeout(Duration::from_secs(1), w.changed()).await
                            && ev.session_state.is_terminated()
                        {
                            // Its last event: the next session watches anew.
                            watch = None;
                        }
                    }
                    None => tokio::time::sleep(Duration::from_millis(200)).await,
                }
                if let Err(e) = f.drain().await {
                    tracing::warn!(error = %e, "following the NSDB log");
                }
                if reported.elapsed() >= REPORT_EVERY {
                    reported = std::time::Instant::now();
                    if let Err(e) = f.report().await {
                        tracing::debug!(error = %e, "reporting the NSDB log position");
                    }
                }
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// Checks a commit against the mirror as the commits in flight leave
    /// it, as the embedded store checks one against its state: the
    /// version each object it writes ends at (`None`: deleted). ZooKeeper
    /// then only has to agree that nothing was logged in between.
    fn check(
        &self,
        ops: &[Op],
        flying: &HashMap<(String, String), (Option<u64>, u64)>,
    ) -> Result<HashMap<(String, String), Option<u64>>> {
        let mut here: HashMap<(String, String), Option<u64>> = HashMap::new();
        for op in ops {
            let (kind, id) = match op {
                Op::Create { kind, id, .. }
                | Op::Update { kind, id, .. }
                | Op::Put { kind, id, .. }
                | Op::Delete { kind, id, .. }
                | Op::Check { kind, id, .. } => (kind, id),
                Op::Table { .. } => continue,
            };
            let key = (kind.clone(), id.clone());
            let found = match here.get(&key).or_else(|| flying.get(&key).map(|(v, _)| v)) {
                Some(v) => *v,
                None => self.mirror.get(kind, id)?.map(|e| e.version),
            };
            let mismatch = |expected: Option<u64>| StoreError::VersionMismatch {
                kind: kind.clone(),
                id: id.clone(),
                expected,
                found,
            };
            let missing = || StoreError::NotFound {
                kind: kind.clone(),
                id: id.clone(),
            };
            let after = match op {
                Op::Create { .. } if found.is_some() => {
                    return Err(StoreError::AlreadyExists {
                        kind: kind.clone(),
                        id: id.clone(),
                    });
                }
                Op::Create { .. } => Some(1),
                Op::Update { version, .. } => match found {
                    None => return Err(missing()),
                    Some(_) if version.is_some() && *version != found => {
                        return Err(mismatch(*version));
                    }
                    Some(v) => Some(v + 1),
                },
                Op::Put { .. } => Some(found.map_or(1, |v| v + 1)),
                Op::Delete { version, .. } => match found {
                    None => return Err(missing()),
                    Some(_) if version.is_some() && *version != found => {
                        return Err(mismatch(*version));
                    }
                    Some(_) => None,
                },
                Op::Check { version, .. } if *version != found => return Err(mismatch(*version)),
                Op::Check { .. } | Op::Table { .. } => continue,
            };
            here.insert(key, after);
        }
        Ok(here)
    }

    /// Makes sure the pipe is this session's and its version known, once
    /// nothing is in flight (an unchained send).
    fn fresh_pipe(&self, client: &zk::Client) -> Result<()> {
        let target = self.lock_flight().sent;
        let mut turn = self.turn.subscribe();
        run(self.rt(), async move {
            turn.wait_for(|n| *n >= target)
                .await
                .map(|_| ())
                .map_err(|_| unavailable("the store is closing"))
        })?;
        let (pipe, expect) = {
            let f = self.lock_flight();
            (f.pipe.clone(), f.expect)
        };
        let session = client.session_id();
        let recovering = expect.is_none() || !matches!(&pipe, Some((_, on)) if *on == session);
        let c = client.clone();
        let (path, version) = match pipe {
            Some((path, on)) if on == session => match expect {
                Some(v) => (path, v),
                None => run(self.rt(), async move {
                    let (_, stat) = c.get_data(&path).await.map_err(unavailable)?;
                    Ok((path, stat.version))
                })?,
            },
            // New, or its session ended (and the pipe with it).
            _ => run(self.rt(), async move {
                let (stat, seq) = c
                    .create("/pipes/p-", &[], EPHEMERAL_SEQUENTIAL)
                    .await
                    .map_err(unavailable)?;
                Ok((format!("/pipes/p-{seq}"), stat.version))
            })?,
        };
        // After a failure (an answer lost, a member gone), the member this
        // session now talks to may lag the ensemble's leader: a commit of
        // ours it has not yet seen would take the entry this one is about
        // to, again and again. `sync` brings it up to date first.
        if recovering {
            let c = client.clone();
            run(self.rt(), async move {
                c.sync("/log").await.map_err(unavailable)
            })?;
        }
        // Checked against everything logged so far: the next entry is ours
        // unless another server logs one first.
        self.catch_up()?;
        let slot = self.follow.lock().unwrap_or_else(|p| p.into_inner()).next;
        let mut f = self.lock_flight();
        f.pipe = Some((path, session));
        f.expect = Some(version);
        f.slot = slot;
        Ok(())
    }

    fn lock_flight(&self) -> std::sync::MutexGuard<'_, Flight> {
        self.flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a commit on the store's session (see [`Store::send`]): checked
    /// here, then one `multi` of the pipe's version check and the commit's
    /// log entry, created under the entry number it must have. Returns once
    /// ZooKeeper has it queued.
    fn start(&self, ops: Vec<Op>, chained: bool) -> Result<Pending> {
        if let Some(e) = &self.follow.lock().unwrap_or_else(|p| p.into_inner()).failed {
            return Err(StoreError::Storage(e.clone()));
        }
        let _order = self.sending.lock().unwrap_or_else(|p| p.into_inner());
        let client = self.zk();
        if !chained {
            self.fresh_pipe(&client)?;
        }
        let mut f = self.lock_flight();
        let (pipe, expect) = match (&f.pipe, f.expect) {
            (Some((p, on)), Some(v)) if *on == client.session_id() => (p.clone(), v),
            // A commit before this one failed (or its session ended).
            _ => return Err(StoreError::Unchained),
        };
        let after = match self.check(&ops, &f.objects) {
            Ok(a) => a,
            Err(e) => {
                // Those sent after it were built on it.
                f.expect = None;
                // Chained, it was checked against commits still in flight,
                // which may yet fail: only a check on what is logged counts.
                return Err(if chained { StoreError::Unchained } else { e });
            }
        };
        f.sent += 1;
        let (sent, seq) = (f.sent, f.slot);
        f.slot += 1;
        for (k, v) in after {
            f.objects.insert(k, (v, sent));
        }
        f.expect = Some(expect + 1);
        drop(f);
        let (queued_tx, queued) = std::sync::mpsc::sync_channel(1);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let (flight, turn, follower) = (self.flight.clone(), self.turn.clone(), self.follower());
        self.rt().spawn(async move {
            let log = pack(encode_log(&ops));
            let entry = log_path(seq);
            let mut m = client.new_multi_writer();
            let built = m
                .add_set_data(&pipe, &[], Some(expect))
                .and_then(|_| m.add_create(&entry, &log, OPEN));
            let answer = match built {
                Ok(()) => {
                    let answer = m.commit();
                    let _ = queued_tx.send(());
                    tokio::time::timeout(ANSWER_WITHIN, answer).await
                }
                Err(e) => {
                    let _ = queued_tx.send(());
                    Ok(Err(zk::MultiWriteError::RequestFailed { source: e }))
                }
            };
            // Applied in the order sent: after every earlier send.
            let mut mine = turn.subscribe();
            let _ = mine.wait_for(|n| *n + 1 >= sent).await;
            let out = match answer {
                Ok(Ok(_)) => tokio::time::timeout(ANSWER_WITHIN, follower.apply_own(seq, &log))
                    .await
                    .unwrap_or_else(|_| Err(unavailable("applying the log timed out"))),
                // The pipe's check (a commit sent before this one failed),
                // or another server logged entry `seq` first: this one was
                // checked against a state that is no longer the latest.
                Ok(Err(zk::MultiWriteError::OperationFailed { index: 0 | 1, .. })) => {
                    Err(StoreError::Unchained)
                }
                Ok(Err(zk::MultiWriteError::OperationFailed { source, .. }))
                | Ok(Err(zk::MultiWriteError::RequestFailed { source })) => {
                    Err(unavailable(source))
                }
                Err(_) => Err(unavailable(format!(
                    "no answer within {} s",
                    ANSWER_WITHIN.as_secs()
                ))),
            };
            {
                let mut f = flight.lock().unwrap_or_else(|p| p.into_inner());
                f.objects.retain(|_, (_, by)| *by != sent);
                if out.is_err() {
                    f.expect = None;
                }
            }
            turn.send_replace(sent);
            let _ = done_tx.send(out);
        });
        queued
            .recv()
            .map_err(|_| StoreError::Storage("the ZooKeeper runtime stopped".into()))?;
        Ok(Box::new(move || {
            done.recv().unwrap_or_else(|_| {
                Err(StoreError::Storage("the ZooKeeper runtime stopped".into()))
            })
        }))
    }
}

impl Drop for ZkStore {
    /// Closes the server's sessions, so that what they hold (leadership,
    /// agents' state) goes at once rather than when ZooKeeper expires them.
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        drop(self.link.0.lock().unwrap_or_else(|p| p.into_inner()).take());
        // The runtime sends the close requests; give it a moment.
        std::thread::sleep(Duration::from_millis(100));
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on the store's runtime and waits for it, from any thread
/// (also one of another runtime's workers), within [`ANSWER_WITHIN`].
fn run<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    f: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let r = match tokio::time::timeout(ANSWER_WITHIN, f).await {
            Ok(r) => r,
            Err(_) => Err(unavailable(format!(
                "no answer within {} s",
                ANSWER_WITHIN.as_secs()
            ))),
        };
        let _ = tx.send(r);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(StoreError::Storage("the ZooKeeper runtime stopped".into())))
}

/// What applies the log to the mirror.
struct Follower {
    /// When the ensemble last answered the follower.
    answered: Arc<Mutex<std::time::Instant>>,
    link: Link,
    mirror: Arc<LocalStore>,
    follow: Arc<Mutex<Follow>>,
    reading: Arc<tokio::sync::Mutex<()>>,
}

impl Follower {
    /// Reads and applies log entries from the next one until there is none.
    async fn drain(&self) -> Result<()> {
        let _one = self.reading.lock().await;
        let client = self.client()?;
        loop {
            let next = self.next();
            match self.read(&client, next).await? {
                Some(data) => self.apply(next, &data)?,
                None => return Ok(()),
            }
        }
    }

    /// Applies entry `seq`, which this server wrote (`data`), once every
    /// entry before it is applied (nothing if the follower was quicker), and
    /// answers the mirror revision it made.
    async fn apply_own(&self, seq: u64, data: &[u8]) -> Result<Revision> {
        let _one = self.reading.lock().await;
        let client = self.client()?;
        loop {
            let next = self.next();
            if next == seq {
                self.apply(seq, data)?;
            }
            if next >= seq {
                let g = self.follow.lock().unwrap_or_else(|p| p.into_inner());
                let made = g.made.iter().rev().find(|(s, _)| *s == seq);
                // Older than the record: a later revision is still one at
                // which the commit is visible.
                return Ok(made.map_or_else(|| self.mirror.revision(), |(_, r)| *r));
            }
            match self.read(&client, next).await? {
                Some(d) => self.apply(next, &d)?,
                // Before ours, so it exists: not visible here yet.
                None => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    /// Starts the mirror from the latest snapshot, if there is one; the log
    /// then applies from the entry after it. Says first that this server
    /// needs the log from its start, so that no compaction removes entries
    /// while it loads.
    async fn load(&self) -> Result<()> {
        let client = self.client()?;
        report(&client, 0).await?;
        for _ in 0..10 {
            let names = client
                .list_children("/snapshots")
                .await
                .map_err(unavailable)?;
            let Some(n) = latest_snapshot(&names) else {
                if log_start(&client).await? == 0 {
                    return Ok(());
                }
                // Taken between the listing and the check: list again.
                continue;
            };
            let Some((snap, bytes)) = read_snapshot(&client, n).await? else {
                // Replaced by a newer one while reading it.
                continue;
            };
            if log_start(&client).await? > n {
                continue;
            }
            let objects = snap.objects.len();
            self.mirror.restore(snap.objects, snap.rows);
            let mut g = self.follow.lock().unwrap_or_else(|p| p.into_inner());
            g.next = n;
            g.snapshot_bytes = bytes;
            tracing::info!(
                entry = n,
                objects,
                bytes,
                "NSDB mirror loaded from a snapshot"
            );
            return Ok(());
        }
        Err(unavailable(
            "the log's snapshot kept changing while loading it",
        ))
    }

    /// Tells the compactor how far this server has applied the log, and
    /// checks that the log still starts at or before that: a server whose
    /// session lapsed long enough may have missed a compaction, and then
    /// refuses writes rather than serve a store with a hole in it.
    async fn report(&self) -> Result<()> {
        let client = self.client()?;
        let next = self.next();
        report(&client, next).await?;
        let start = log_start(&client).await?;
        if start > next {
            let why = format!(
                "this server applied the NSDB log up to entry {next}, but the log now starts at \
                 {start} (compacted while it was away); restart it to load the latest snapshot"
            );
            tracing::error!("{why}");
            self.follow
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .failed
                .get_or_insert(why);
        }
        Ok(())
    }

    /// Compacts the log while this server leads the role, every
    /// `c.every`: a snapshot once enough has been logged since the last,
    /// then the entries before it that every server has applied.
    async fn compactor(self, c: Compaction) {
        loop {
            tokio::time::sleep(c.every).await;
            let Ok(client) = self.client() else { return };
            if !lead(&client, "nsdb-compactor").await.unwrap_or(false) {
                continue;
            }
            let due = {
                let g = self.follow.lock().unwrap_or_else(|p| p.into_inner());
                g.failed.is_none()
                    && g.logged - g.logged_at_snapshot >= c.min_bytes.max(g.snapshot_bytes)
            };
            if due && let Err(e) = self.snapshot(&client).await {
                tracing::warn!(error = %e, "taking a snapshot of the NSDB");
            }
            if let Err(e) = trim(&client).await {
                tracing::warn!(error = %e, "trimming the NSDB log");
            }
        }
    }

    /// Writes the mirror as it is between two log entries: chunks first,
    /// then the marker that makes the snapshot complete.
    async fn snapshot(&self, client: &zk::Client) -> Result<()> {
        let (n, snap, logged) = {
            // Nothing is applied meanwhile; writers may still check theirs.
            let _one = self.reading.lock().await;
            let (next, logged) = {
                let g = self.follow.lock().unwrap_or_else(|p| p.into_inner());
                (g.next, g.logged)
            };
            (next, Snapshot::of(&self.mirror)?, logged)
        };
        let chunks: Vec<Vec<u8>> = snap.encode().into_iter().map(pack).collect();
        let bytes: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        for (i, c) in chunks.iter().enumerate() {
            let path = chunk_path(n, i);
            match client.create(&path, c, OPEN).await {
                Ok(_) => {}
                // Left by an attempt that stopped before its marker.
                Err(zk::Error::NodeExists) => {
                    client.set_data(&path, c, None).await.map_err(unavailable)?;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        let marker = format!("{} {bytes}", chunks.len());
        match client
            .create(&snapshot_path(n), marker.as_bytes(), OPEN)
            .await
        {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(unavailable(e)),
        }
        let mut g = self.follow.lock().unwrap_or_else(|p| p.into_inner());
        g.logged_at_snapshot = logged;
        g.snapshot_bytes = bytes;
        tracing::info!(
            entry = n,
            objects = snap.objects.len(),
            bytes,
            "NSDB snapshot taken"
        );
        Ok(())
    }

    fn client(&self) -> Result<zk::Client> {
        self.link
            .get()
            .ok_or_else(|| unavailable("the store is closing"))
    }

    fn next(&self) -> u64 {
        self.follow.lock().unwrap_or_else(|p| p.into_inner()).next
    }

    /// Log entry `seq`, or `None` when there is none (yet).
    async fn read(&self, client: &zk::Client, seq: u64) -> Result<Option<Vec<u8>>> {
        match client.get_data(&log_path(seq)).await {
            Ok((d, _)) => {
                self.answered();
                Ok(Some(d))
            }
            Err(zk::Error::NoNode) => {
                self.answered();
                Ok(None)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    fn answered(&self) {
        *self.answered.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
    }

    /// Applies log entry `seq` to the mirror; the next is `seq + 1`.
    fn apply(&self, seq: u64, data: &[u8]) -> Result<()> {
        let applied = unpack(data)
            .and_then(|d| decode_log(&d))
            .ok_or_else(|| StoreError::Storage(format!("log entry {seq} does not decode")))
            .and_then(|ops| {
                if ops.is_empty() {
                    Ok(self.mirror.revision())
                } else {
                    self.mirror.commit(ops)
                }
            });
        let mut g = self.follow.lock().unwrap_or_else(|p| p.into_inner());
        let made = match applied {
            Ok(r) => r,
            Err(e) => {
                // The mirror no longer matches the log: stop taking writes.
                tracing::error!(entry = seq, error = %e, "NSDB log entry does not apply");
                g.failed = Some(format!(
                    "log entry {seq} does not apply: {e}; restart the server"
                ));
                return Err(e);
            }
        };
        g.next = seq + 1;
        g.logged += data.len() as u64;
        if g.made.len() == MADE_KEPT {
            g.made.pop_front();
        }
        g.made.push_back((seq, made));
        Ok(())
    }
}

/// Records in `servers/<session>` (ephemeral) that this server has applied
/// the log before entry `next`.
async fn report(client: &zk::Client, next: u64) -> Result<()> {
    let path = format!("/servers/{}", client.session_id().0);
    let data = next.to_string();
    match client.set_data(&path, data.as_bytes(), None).await {
        Ok(_) => Ok(()),
        Err(zk::Error::NoNode) => match client.create(&path, data.as_bytes(), EPHEMERAL).await {
            Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
            Err(e) => Err(unavailable(e)),
        },
        Err(e) => Err(unavailable(e)),
    }
}

/// The log's first entry (the data of `log`; entries before it are gone).
async fn log_start(client: &zk::Client) -> Result<u64> {
    let (d, _) = client.get_data("/log").await.map_err(unavailable)?;
    Ok(number(&d))
}

/// Snapshot `n` and its size, or `None` if it went while being read.
async fn read_snapshot(client: &zk::Client, n: u64) -> Result<Option<(Snapshot, u64)>> {
    let marker = match client.get_data(&snapshot_path(n)).await {
        Ok((d, _)) => String::from_utf8_lossy(&d).into_owned(),
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(unavailable(e)),
    };
    let mut parts = marker.split(' ').map(|p| p.parse::<u64>().ok());
    let (Some(Some(count)), Some(Some(bytes))) = (parts.next(), parts.next()) else {
        return Err(StoreError::Storage(format!(
            "NSDB snapshot {n}: a bad marker {marker:?}"
        )));
    };
    let mut snap = Snapshot::default();
    for i in 0..count as usize {
        let data = match client.get_data(&chunk_path(n, i)).await {
            Ok((d, _)) => d,
            Err(zk::Error::NoNode) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        unpack(&data).and_then(|d| snap.decode(&d)).ok_or_else(|| {
            StoreError::Storage(format!("NSDB snapshot {n}: chunk {i} does not decode"))
        })?;
    }
    Ok(Some((snap, bytes)))
}

/// Deletes the log entries before the latest snapshot that every server
/// has applied, and the older snapshots. The log's start moves first, so a
/// server that missed them knows.
async fn trim(client: &zk::Client) -> Result<()> {
    let names = client
        .list_children("/snapshots")
        .await
        .map_err(unavailable)?;
    let Some(latest) = latest_snapshot(&names) else {
        return Ok(());
    };
    // Every server's report, as the leader of the ensemble has it.
    client.sync("/servers").await.map_err(unavailable)?;
    let mut keep = latest;
    for s in client
        .list_children("/servers")
        .await
        .map_err(unavailable)?
    {
        match client.get_data(&format!("/servers/{s}")).await {
            Ok((d, _)) => keep = keep.min(number(&d)),
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(unavailable(e)),
        }
    }
    let start = log_start(client).await?;
    if keep > start {
        client
            .set_data("/log", keep.to_string().as_bytes(), None)
            .await
            .map_err(unavailable)?;
        let mut from = start;
        while from < keep {
            let to = keep.min(from + TRIM_BATCH);
            let mut m = client.new_multi_writer();
            for seq in from..to {
                m.add_delete(&log_path(seq), None).map_err(unavailable)?;
            }
            if m.commit().await.is_err() {
                // Some already gone (an earlier leader's trim): one by one.
                for seq in from..to {
                    match client.delete(&log_path(seq), None).await {
                        Ok(()) | Err(zk::Error::NoNode) => {}
                        Err(e) => return Err(unavailable(e)),
                    }
                }
            }
            from = to;
        }
        tracing::info!(from = start, to = keep, "NSDB log trimmed");
    }
    // Older snapshots, markers before their chunks.
    let mut old: Vec<(u64, bool, &String)> = names
        .iter()
        .filter_map(|name| snapshot_name(name).map(|(n, m)| (n, m, name)))
        .filter(|(n, _, _)| *n < latest)
        .collect();
    old.sort_by_key(|(n, marker, _)| (*n, !*marker));
    for (_, _, name) in old {
        match client.delete(&format!("/snapshots/{name}"), None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(())
}

/// Whether this session holds `leaders/<role>`, taking it if it is free.
async fn lead(c: &zk::Client, role: &str) -> Result<bool> {
    let path = format!("/leaders/{}", name(role));
    match c.create(&path, &[], EPHEMERAL).await {
        Ok(_) => Ok(true),
        Err(zk::Error::NodeExists) => match c.get_data(&path).await {
            Ok((_, stat)) => Ok(stat.ephemeral_owner == c.session_id().0),
            Err(_) => Ok(false),
        },
        Err(e) => Err(unavailable(e)),
    }
}

/// What copies `state` and `learned` into the mirror.
struct States {
    link: Link,
    mirror: Arc<LocalStore>,
}

impl States {
    /// Applies one znode of `state` or `learned` as it now is.
    async fn apply(&self, path: &str) {
        let Some(client) = self.link.get() else {
            return;
        };
        let got = match client.get_data(path).await {
            Ok((d, stat)) => Some((d, stat.ephemeral_owner as u64)),
            Err(zk::Error::NoNode) => None,
            Err(e) => {
                tracing::warn!(path, error = %e, "reading NSDB state");
                return;
            }
        };
        self.set(path, got);
    }

    fn set(&self, path: &str, got: Option<(Vec<u8>, SessionId)>) {
        if let Some(k) = path.strip_prefix("/state/") {
            let key = unname(k);
            self.mirror
                .mirror_ephemeral(&key, got.map(|(d, s)| (s, Arc::from(d))));
        } else if let Some(tk) = path.strip_prefix("/learned/")
            && let Some((t, k)) = tk.split_once(',')
        {
            let v = got.map(|(d, s)| (String::from_utf8_lossy(&d).into_owned(), s));
            self.mirror.mirror_learned(&unname(t), &unname(k), v);
        }
    }

    /// Makes the mirror's state and learned entries what ZooKeeper holds.
    async fn relist(&self) {
        let Some(client) = self.link.get() else {
            return;
        };
        let mut seen = HashSet::new();
        for dir in ["/state", "/learned"] {
            let Ok(children) = client.list_children(dir).await else {
                return;
            };
            for c in children {
                let path = format!("{dir}/{c}");
                self.apply(&path).await;
                seen.insert(path);
            }
        }
        for (k, _) in self.mirror.ephemeral_entries() {
            if !seen.contains(&state_path(&k)) {
                self.mirror.mirror_ephemeral(&k, None);
            }
        }
        for (t, k, _, _) in self.mirror.learned_entries() {
            if !seen.contains(&learned_path(&t, &k)) {
                self.mirror.mirror_learned(&t, &k, None);
            }
        }
    }

    /// Follows both directories; relists after a reconnect (events in
    /// between are lost) and every 30 s.
    async fn follow(self) {
        loop {
            let Some(client) = self.link.get() else {
                return;
            };
            let (Ok(mut ws), Ok(mut wl)) = (
                client
                    .watch("/state", zk::AddWatchMode::PersistentRecursive)
                    .await,
                client
                    .watch("/learned", zk::AddWatchMode::PersistentRecursive)
                    .await,
            ) else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            self.relist().await;
            let tick = tokio::time::sleep(Duration::from_secs(30));
            tokio::pin!(tick);
            loop {
                let ev = tokio::select! {
                    ev = ws.changed() => ev,
                    ev = wl.changed() => ev,
                    _ = &mut tick => break,
                };
                match ev.event_type {
                    zk::EventType::Session => break,
                    zk::EventType::NodeDeleted => self.set(&ev.path, None),
                    _ => self.apply(&ev.path).await,
                }
            }
        }
    }
}

impl Store for ZkStore {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Entry>> {
        self.mirror.get(kind, id)
    }

    fn list(&self, kind: &str) -> Result<Vec<(String, Entry)>> {
        self.mirror.list(kind)
    }

    fn commit(&self, ops: Vec<Op>) -> Result<Revision> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send(ops.clone(), false)() {
                // Another server logged first: check again on what it did.
                Err(StoreError::Unchained) if attempt < COMMIT_ATTEMPTS => {}
                r => return r,
            }
        }
    }

    fn send(&self, ops: Vec<Op>, chained: bool) -> Pending {
        match self.start(ops, chained) {
            Ok(p) => p,
            Err(e) => Box::new(move || Err(e)),
        }
    }

    fn pipeline_depth(&self) -> usize {
        PIPELINE_DEPTH
    }

    fn revision(&self) -> Revision {
        self.mirror.revision()
    }

    fn stale(&self) -> Option<String> {
        if let Some(why) = &self.follow.lock().unwrap_or_else(|p| p.into_inner()).failed {
            return Some(why.clone());
        }
        let quiet = self
            .answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        (quiet > STALE_AFTER).then(|| {
            format!(
                "ZooKeeper has not answered for {} s: reads may be stale",
                quiet.as_secs()
            )
        })
    }

    fn watch(&self, kind: Option<&str>, after: Revision) -> Result<Watch> {
        self.mirror.watch(kind, after)
    }

    fn open_session(&self) -> SessionId {
        let (hosts, chroot) = (self.hosts.clone(), self.chroot.clone());
        let opened = run(self.rt(), async move {
            let c = zk::Client::connector()
                .with_session_timeout(SESSION_TIMEOUT)
                .connect(&format!("{hosts}{chroot}"))
                .await
                .map_err(unavailable)?;
            Ok(c)
        });
        match opened {
            Ok(c) => {
                let id = c.session_id().0 as u64;
                self.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, c);
                id
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not open a ZooKeeper session");
                self.dead_sessions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            }
        }
    }

    fn close_session(&self, session: SessionId) -> Result<()> {
        // Dropping the session's last client closes it: ZooKeeper removes
        // its znodes, and every server's watch removes them from its mirror.
        let Some(c) = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session)
        else {
            return Err(StoreError::NoSession(session));
        };
        drop(c);
        let mut owned = Vec::new();
        for (k, _) in self.mirror.ephemeral_entries() {
            if self
                .mirror
                .get_ephemeral(&k)
                .is_some_and(|(s, _)| s == session)
            {
                self.mirror.mirror_ephemeral(&k, None);
                owned.push(state_path(&k));
            }
        }
        for (t, k, _, s) in self.mirror.learned_entries() {
            if s == session {
                self.mirror.mirror_learned(&t, &k, None);
                owned.push(learned_path(&t, &k));
            }
        }
        // The close goes out in the background: once this returns, the
        // session's znodes are gone in ZooKeeper too (a claim of a freed
        // key must not find it still held).
        let main = self.zk();
        run(self.rt(), async move {
            for path in owned {
                loop {
                    match main.check_stat(&path).await {
                        Ok(Some(st)) if st.ephemeral_owner as u64 == session => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Ok(_) => break,
                        Err(e) => return Err(unavailable(e)),
                    }
                }
            }
            Ok(())
        })
    }

    fn session_ended(&self, session: SessionId) -> bool {
        self.session(session)
            .map(|c| c.state().is_terminated())
            .unwrap_or(false)
    }

    fn put_ephemeral(&self, session: SessionId, key: &str, data: Vec<u8>) -> Result<Revision> {
        self.put_owned(session, state_path(key), data.clone())?;
        self.mirror
            .mirror_ephemeral(key, Some((session, Arc::from(data))));
        Ok(self.mirror.revision())
    }

    fn delete_ephemeral(&self, session: SessionId, key: &str) -> Result<Revision> {
        if self
            .mirror
            .get_ephemeral(key)
            .is_none_or(|(s, _)| s != session)
        {
            return Err(StoreError::NotFound {
                kind: "state".into(),
                id: key.into(),
            });
        }
        self.delete_path(state_path(key))?;
        self.mirror.mirror_ephemeral(key, None);
        Ok(self.mirror.revision())
    }

    fn claim_ephemeral(&self, session: SessionId, key: &str, data: Vec<u8>) -> Result<bool> {
        let c = self.session(session)?;
        let (path, bytes) = (state_path(key), data.clone());
        let created = run(self.rt(), async move {
            match c.create(&path, &bytes, EPHEMERAL).await {
                Ok(_) => Ok(true),
                Err(zk::Error::NodeExists) => Ok(false),
                Err(e) => Err(unavailable(e)),
            }
        })?;
        if created {
            self.mirror
                .mirror_ephemeral(key, Some((session, Arc::from(data))));
        }
        Ok(created)
    }

    fn get_ephemeral(&self, key: &str) -> Option<(SessionId, Arc<[u8]>)> {
        self.mirror.get_ephemeral(key)
    }

    /// An ephemeral znode `leaders/<role>` of this server's own session:
    /// whoever creates it leads until its session ends.
    fn lead(&self, role: &str) -> bool {
        let c = self.zk();
        let role = role.to_string();
        run(self.rt(), async move { lead(&c, &role).await }).unwrap_or(false)
    }

    fn ephemeral_entries(&self) -> Vec<(String, Arc<[u8]>)> {
        self.mirror.ephemeral_entries()
    }

    fn table_put(
        &self,
        table: &str,
        key: &str,
        value: &str,
        owner: Option<SessionId>,
    ) -> Result<Revision> {
        match owner {
            Some(s) => {
                self.put_owned(s, learned_path(table, key), value.as_bytes().to_vec())?;
                self.mirror
                    .mirror_learned(table, key, Some((value.into(), s)));
                Ok(self.mirror.revision())
            }
            None => self.commit(vec![Op::Table {
                table: table.into(),
                key: key.into(),
                value: Some(value.into()),
            }]),
        }
    }

    fn table_remove(&self, table: &str, key: &str) -> Result<Revision> {
        let entries = self.mirror.table_entries(table);
        let Some(e) = entries.iter().find(|e| e.key == key) else {
            return Err(StoreError::NotFound {
                kind: format!("table/{table}"),
                id: key.into(),
            });
        };
        if e.owner.is_some() {
            self.delete_path(learned_path(table, key))?;
            self.mirror.mirror_learned(table, key, None);
        }
        if entries.iter().any(|e| e.key == key && e.owner.is_none())
            || self
                .mirror
                .table_entries(table)
                .iter()
                .any(|e| e.key == key)
        {
            return self.commit(vec![Op::Table {
                table: table.into(),
                key: key.into(),
                value: None,
            }]);
        }
        Ok(self.mirror.revision())
    }

    fn table_entries(&self, table: &str) -> Vec<TableEntry> {
        self.mirror.table_entries(table)
    }

    fn table_names(&self) -> Vec<String> {
        self.mirror.table_names()
    }

    fn persistent_entries(&self, table: &str) -> Vec<(String, String)> {
        self.mirror.persistent_entries(table)
    }

    fn kinds(&self) -> Vec<String> {
        self.mirror.kinds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_round_trip() {
        let ops = vec![
            Op::Create {
                kind: "Port".into(),
                id: "a/b".into(),
                data: b"{}".to_vec(),
            },
            Op::Delete {
                kind: "Port".into(),
                id: "c".into(),
                version: Some(3),
            },
            Op::Table {
                table: "t".into(),
                key: "k".into(),
                value: Some("v".into()),
            },
            Op::Table {
                table: "t".into(),
                key: "k2".into(),
                value: None,
            },
        ];
        let back = decode_log(&encode_log(&ops)).unwrap();
        assert_eq!(back.len(), 4);
        assert!(matches!(&back[0], Op::Put { id, .. } if id == "a/b"));
        assert!(matches!(&back[1], Op::Delete { version: None, .. }));
        assert_eq!(back[2], ops[2]);
        assert_eq!(back[3], ops[3]);
        assert!(
            decode_log(b"P\0\0\0\x09ab").is_none(),
            "a cut entry is refused"
        );
    }

    #[test]
    fn snapshots_round_trip_in_chunks() {
        let big = vec![7u8; 300 * 1024];
        let snap = Snapshot {
            objects: vec![
                ("Port".into(), "a/b".into(), 3, big.clone()),
                ("Port".into(), "c".into(), 1, big.clone()),
                ("Router".into(), "r".into(), u64::MAX, vec![]),
            ],
            rows: vec![("t".into(), "k".into(), "v".into())],
        };
        let chunks = snap.encode();
        assert_eq!(chunks.len(), 2, "a new chunk once one passes 512 KB");
        assert!(chunks.iter().all(|c| c.len() < 1024 * 1024));
        let mut back = Snapshot::default();
        for c in &chunks {
            back.decode(c).unwrap();
        }
        assert_eq!(back, snap);
        assert!(Snapshot::default().decode(&chunks[1][..20]).is_none());
        assert_eq!(snapshot_name("s-0000000042"), Some((42, true)));
        assert_eq!(snapshot_name("s-0000000042-00001"), Some((42, false)));
        let names = ["s-0000000009", "s-0000000042-00000", "s-0000000007"].map(String::from);
        assert_eq!(
            latest_snapshot(&names),
            Some(9),
            "a chunk without its marker is not a snapshot"
        );
    }

    #[test]
    fn large_entries_are_packed_and_broken_ones_refused() {
        let raw = b"{\"name\": \"port\", \"admin_state_up\": true} ".repeat(100);
        let packed = pack(raw.clone());
        assert!(
            packed[0] == b'Z' && packed.len() < raw.len() / 4,
            "{}",
            packed.len()
        );
        assert_eq!(&*unpack(&packed).unwrap(), &raw[..]);
        let short = b"P\0\0\0\x01a".to_vec();
        assert_eq!(pack(short.clone()), short, "short entries stay as they are");
        assert_eq!(&*unpack(&short).unwrap(), &short[..]);
        let mut cut = packed.clone();
        cut.truncate(packed.len() / 2);
        assert!(unpack(&cut).is_none());
        let mut huge = packed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(unpack(&huge).is_none(), "a claimed size past the cap");
        let mut lying = packed;
        lying[1..5].copy_from_slice(&((raw.len() + 1) as u32).to_be_bytes());
        assert!(unpack(&lying).is_none(), "a size the block does not fill");
    }

    #[test]
    fn names_escape_slashes() {
        assert_eq!(state_path("Port/a/b%c"), "/state/Port%2Fa%2Fb%25c");
        assert_eq!(unname("Port%2Fa%2Fb%25c"), "Port/a/b%c");
    }
}
