//! The NSDB on a ZooKeeper ensemble, for several cluster servers.
//!
//! ZooKeeper holds the truth and orders it; each server keeps a mirror in
//! memory (a [`LocalStore`]) that its readers and watchers use. The layout
//! under the chroot (default `/midonet`):
//!
//! - `log/c-<seq>`: one znode per commit, holding what it changed (objects
//!   and persistent table rows). The log is the store: a server's mirror
//!   is the log applied in order. Entry numbers are dense, so a server
//!   follows the log by reading `c-<next>` until there is none, woken by a
//!   watch on `log` (and by its own commits).
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
//! Not done yet: the log is never compacted (a server starting replays it
//! from the first commit), and a session does not move between servers.

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
    for dir in ["/log", "/state", "/learned", "/leaders", "/pipes"] {
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

/// What a logged commit changed, in the form the mirror applies
/// unconditionally: `P` put, `D` delete, `T` table row (value or none).
fn encode_log(ops: &[Op]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Create { kind, id, data }
            | Op::Put { kind, id, data }
            | Op::Update { kind, id, data, .. } => {
                out.push(b'P');
                field(&mut out, kind.as_bytes());
                field(&mut out, id.as_bytes());
                field(&mut out, data);
            }
            Op::Delete { kind, id, .. } => {
                out.push(b'D');
                field(&mut out, kind.as_bytes());
                field(&mut out, id.as_bytes());
            }
            Op::Table { table, key, value } => {
                out.push(b'T');
                field(&mut out, table.as_bytes());
                field(&mut out, key.as_bytes());
                match value {
                    Some(v) => {
                        out.push(1);
                        field(&mut out, v.as_bytes());
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
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    fn field<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = u32::from_be_bytes(take(b, 4)?.try_into().ok()?) as usize;
        take(b, n)
    }
    fn text(b: &mut &[u8]) -> Option<String> {
        String::from_utf8(field(b)?.to_vec()).ok()
    }
    let mut ops = Vec::new();
    while let Some(tag) = take(&mut b, 1) {
        ops.push(match tag[0] {
            b'P' => Op::Put {
                kind: text(&mut b)?,
                id: text(&mut b)?,
                data: field(&mut b)?.to_vec(),
            },
            b'D' => Op::Delete {
                kind: text(&mut b)?,
                id: text(&mut b)?,
                version: None,
            },
            b'T' => Op::Table {
                table: text(&mut b)?,
                key: text(&mut b)?,
                value: match take(&mut b, 1)?[0] {
                    1 => Some(text(&mut b)?),
                    _ => None,
                },
            },
            _ => return None,
        });
    }
    Some(ops)
}

impl ZkStore {
    /// Connects to `connect` (`HOST:PORT[,HOST:PORT…][/chroot]`, chroot
    /// `/midonet` when none is given), creates the layout if it is new and
    /// replays the log into the mirror.
    pub fn connect(connect: &str) -> Result<ZkStore> {
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
        store.catch_up()?;
        store.spawn_follower();
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
            let log = encode_log(&ops);
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
        let applied = decode_log(data)
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
        if g.made.len() == MADE_KEPT {
            g.made.pop_front();
        }
        g.made.push_back((seq, made));
        Ok(())
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
        let path = format!("/leaders/{}", name(role));
        let me = c.session_id().0;
        run(self.rt(), async move {
            match c.create(&path, &[], EPHEMERAL).await {
                Ok(_) => Ok(true),
                Err(zk::Error::NodeExists) => match c.get_data(&path).await {
                    Ok((_, stat)) => Ok(stat.ephemeral_owner == me),
                    Err(_) => Ok(false),
                },
                Err(e) => Err(unavailable(e)),
            }
        })
        .unwrap_or(false)
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
    fn names_escape_slashes() {
        assert_eq!(state_path("Port/a/b%c"), "/state/Port%2Fa%2Fb%25c");
        assert_eq!(unname("Port%2Fa%2Fb%25c"), "Port/a/b%c");
    }
}
