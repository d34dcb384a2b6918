//! What one host's agent is sent: the objects its bound ports can reach (the
//! devices linked to them, their chains, groups, load balancers and DHCP
//! subnets), plus everything that is not a topology object (hosts, tunnel
//! zones, port states, learned tables). An agent on a host with two VMs of
//! one tenant never receives, parses or holds another tenant's topology.

use crate::topology_service::frame;
use model::{Kind, Objects};
use std::collections::{HashMap, HashSet, VecDeque};
use topology_proto::v1::Update;
use uuid::Uuid;

/// A host's filter over the watch: the full topology (decoded, once), what
/// the host's ports reach (kept current per change by the topology engine),
/// and which of it the host has been sent.
pub struct HostView {
    host: Uuid,
    reach: topology::Engine,
    /// The last store revision this view has applied.
    revision: u64,
    /// What was sent since the snapshot, newest last, for a reconnecting
    /// agent to be sent again what it may have missed (bounded in bytes).
    sent: VecDeque<Update>,
    sent_bytes: usize,
    /// A resume needs the agent to hold everything up to here: the
    /// snapshot, and updates dropped from `sent`.
    complete_upto: u64,
    dropped_upto: Option<u64>,
}

/// The views of hosts whose watch ended, kept for them to resume.
#[derive(Default)]
pub struct Parked(std::sync::Mutex<HashMap<Uuid, HostView>>);

impl Parked {
    pub fn put(&self, v: HostView) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(v.host, v);
        }
    }
    pub fn take(&self, host: Uuid) -> Option<HostView> {
        self.0.lock().ok()?.remove(&host)
    }
}

/// How much of what a view sent is kept for a resume.
const RESUME_BYTES: usize = 8 << 20;

fn put(revision: u64, kind: &str, id: &str, data: Vec<u8>) -> Update {
    Update {
        revision,
        kind: kind.into(),
        id: id.into(),
        data,
        ..Default::default()
    }
}

fn deleted(revision: u64, kind: &str, id: &str) -> Update {
    Update {
        revision,
        kind: kind.into(),
        id: id.into(),
        deleted: true,
        ..Default::default()
    }
}

/// Cluster bookkeeping agents have no use for: SNAT block leases, trace
/// results, and an API's own records (Neutron's view of the topology it
/// translated).
fn is_private(u: &Update) -> bool {
    (u.kind == "state" && u.id.starts_with("NatBlock/"))
        || u.kind.starts_with("table/traces/")
        || model::Kind::ALL
            .iter()
            .any(|k| k.is_api_record() && k.name() == u.kind)
}

impl HostView {
    pub fn new(host: Uuid) -> Self {
        HostView {
            host,
            reach: topology::Engine::new(host, false),
            revision: 0,
            sent: VecDeque::new(),
            sent_bytes: 0,
            complete_upto: 0,
            dropped_upto: None,
        }
    }

    pub fn host(&self) -> Uuid {
        self.host
    }

    /// The last store revision applied: a resumed view watches from here.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Keeps live updates for a resume, dropping the oldest past the bound.
    fn keep(&mut self, out: &[Update]) {
        for u in out {
            self.sent_bytes += u.data.len() + u.id.len() + 64;
            self.sent.push_back(u.clone());
        }
        while self.sent_bytes > RESUME_BYTES
            && let Some(u) = self.sent.pop_front()
        {
            self.sent_bytes -= u.data.len() + u.id.len() + 64;
            self.dropped_upto = Some(u.revision);
        }
    }

    /// An agent that held this view's updates up to revision `after`
    /// reconnects: what it may have missed (every update of `after` and
    /// later; one sent twice is harmless), or `None` when this view no
    /// longer has all of it (a snapshot is needed).
    pub fn resume(&self, after: u64) -> Option<Vec<Update>> {
        if after < self.complete_upto || self.dropped_upto.is_some_and(|d| d >= after) {
            return None;
        }
        Some(
            self.sent
                .iter()
                .filter(|u| u.revision >= after)
                .cloned()
                .collect(),
        )
    }

    fn store(&mut self, kind: Kind, u: &Update) {
        if let Ok(id) = Uuid::parse_str(&u.id) {
            self.reach
                .apply_stored(kind.name(), id, (!u.deleted).then_some(&u.data[..]));
        }
    }

    fn visible(&self, kind: Kind, id: &str) -> bool {
        Uuid::parse_str(id).is_ok_and(|id| self.reach.reached().contains(&(kind, id)))
    }

    /// A full snapshot (framed as the unfiltered one was), filtered.
    pub fn snapshot(&mut self, all: Vec<Update>) -> Vec<Update> {
        let revision = all.last().map(|u| u.revision).unwrap_or_default();
        let mut out = Vec::new();
        for u in all {
            if u.kind.is_empty() || is_private(&u) {
                continue;
            }
            match Objects::kind_named(&u.kind) {
                Some(k) => self.store(k, &u),
                None => out.push(Update {
                    snapshot_begin: false,
                    snapshot_end: false,
                    ..u
                }),
            }
        }
        self.reach.commit();
        let mut seen: Vec<(Kind, Uuid)> = self.reach.reached().iter().copied().collect();
        seen.sort();
        for (k, id) in seen {
            let id = id.to_string();
            out.extend(self.stored(k, &id).map(|d| put(revision, k.name(), &id, d)));
        }
        frame(&mut out, revision);
        self.revision = revision;
        self.complete_upto = revision;
        self.sent.clear();
        self.sent_bytes = 0;
        self.dropped_upto = None;
        out
    }

    /// Live changes, as the updates this host must see: each change itself
    /// when the host sees (or saw) the object, and whatever it newly reaches
    /// or no longer reaches because of them. One commit for the batch.
    pub fn changes(&mut self, batch: Vec<Update>) -> Vec<Update> {
        let mut out = Vec::new();
        let mut mine = Vec::new();
        let revision = batch.last().map(|u| u.revision).unwrap_or_default();
        self.revision = self.revision.max(revision);
        for u in batch {
            if is_private(&u) {
                continue;
            }
            let Some(kind) = Objects::kind_named(&u.kind) else {
                out.push(u);
                continue;
            };
            let was = self.visible(kind, &u.id);
            self.store(kind, &u);
            mine.push((was, kind, u));
        }
        let mut c = self.reach.commit();
        let mut sent: HashSet<(Kind, String)> = HashSet::new();
        for (was, kind, u) in mine {
            let now = self.visible(kind, &u.id);
            if now && !u.deleted {
                sent.insert((kind, u.id.clone()));
                out.push(u);
            } else if was || now {
                sent.insert((kind, u.id.clone()));
                out.push(deleted(u.revision, kind.name(), &u.id));
            }
        }
        c.gained.sort();
        c.lost.sort();
        for (gone, (k, id)) in c
            .gained
            .iter()
            .map(|k| (false, k))
            .chain(c.lost.iter().map(|k| (true, k)))
        {
            let id = id.to_string();
            if sent.insert((*k, id.clone())) {
                if gone {
                    out.push(deleted(revision, k.name(), &id));
                } else {
                    out.extend(
                        self.stored(*k, &id)
                            .map(|d| put(revision, k.name(), &id, d)),
                    );
                }
            }
        }
        self.keep(&out);
        out
    }

    /// One live change (see [`HostView::changes`]).
    pub fn change(&mut self, u: Update) -> Vec<Update> {
        self.changes(vec![u])
    }

    /// An object's JSON, encoded again from the one decoded copy (the
    /// view keeps no second copy of the stored bytes).
    fn stored(&self, kind: Kind, id: &str) -> Option<Vec<u8>> {
        let id = Uuid::parse_str(id).ok()?;
        self.reach.get((kind, id)).map(model::schema::Obj::encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Bridge, Host, Object, Port};

    fn obj<T: Object>(rev: u64, o: &T) -> Update {
        put(
            rev,
            T::KIND.name(),
            &o.id().to_string(),
            serde_json::to_vec(o).unwrap(),
        )
    }

    fn names(v: &[Update]) -> Vec<(String, String, bool)> {
        let mut n: Vec<_> = v
            .iter()
            .filter(|u| !u.kind.is_empty())
            .map(|u| (u.kind.clone(), u.id.clone(), u.deleted))
            .collect();
        n.sort();
        n
    }

    fn bridge() -> Bridge {
        Bridge {
            id: Uuid::new_v4(),
            ..Default::default()
        }
    }

    fn port(on: &Bridge, host: Option<Uuid>) -> Port {
        Port {
            id: Uuid::new_v4(),
            device_id: on.id,
            host_id: host,
            interface_name: host.map(|_| "tap0".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_host_sees_what_its_ports_reach_and_follows_bindings() {
        let me = Uuid::new_v4();
        let (b1, b2) = (bridge(), bridge());
        let (p1, p1b) = (port(&b1, Some(me)), port(&b1, None));
        let mut p2 = port(&b2, None);
        let host = Host {
            id: me,
            ..Default::default()
        };
        let mut v = HostView::new(me);
        let snap = v.snapshot(vec![
            obj(5, &b1),
            obj(5, &b2),
            obj(5, &p1),
            obj(5, &p1b),
            obj(5, &p2),
            obj(5, &host),
            put(
                5,
                "state",
                &format!("Port/{}/active", p2.id),
                b"{}".to_vec(),
            ),
        ]);
        assert!(snap.first().unwrap().snapshot_begin);
        assert!(snap.last().unwrap().snapshot_end);
        let want = |v: &[(&str, Uuid, bool)]| {
            let mut v: Vec<_> = v
                .iter()
                .map(|(k, id, d)| (k.to_string(), id.to_string(), *d))
                .collect();
            v.sort();
            v
        };
        // Not bridge 2 nor its port; but every host and port state.
        let mut expected = want(&[
            ("Bridge", b1.id, false),
            ("Port", p1.id, false),
            ("Port", p1b.id, false),
            ("Host", me, false),
        ]);
        expected.push(("state".into(), format!("Port/{}/active", p2.id), false));
        expected.sort();
        assert_eq!(names(&snap), expected);

        // An unrelated change is not sent.
        assert!(v.change(obj(6, &bridge())).is_empty());
        // Binding a port of bridge 2 here brings bridge 2 and its port.
        p2.host_id = Some(me);
        p2.interface_name = Some("tap1".into());
        assert_eq!(
            names(&v.change(obj(7, &p2))),
            want(&[("Bridge", b2.id, false), ("Port", p2.id, false)])
        );
        // Unbinding it takes them away again.
        p2.host_id = None;
        assert_eq!(
            names(&v.change(obj(8, &p2))),
            want(&[("Bridge", b2.id, true), ("Port", p2.id, true)])
        );
        // A deleted visible object is sent as deleted.
        assert_eq!(
            names(&v.change(deleted(9, "Port", &p1b.id.to_string()))),
            want(&[("Port", p1b.id, true)])
        );
    }

    /// A reconnecting agent is sent again what the view sent from its
    /// revision on; what the view no longer has means a snapshot.
    #[test]
    fn a_view_resumes_from_the_agents_revision() {
        let me = Uuid::new_v4();
        let b = bridge();
        let mut v = HostView::new(me);
        v.snapshot(vec![obj(5, &b), obj(5, &port(&b, Some(me)))]);
        assert_eq!(v.revision(), 5);
        assert_eq!(v.resume(5), Some(vec![]), "nothing since the snapshot");
        assert_eq!(v.resume(4), None, "the agent lacks part of the snapshot");
        let p6 = port(&b, None);
        let p7 = port(&b, None);
        v.change(obj(6, &p6));
        v.change(obj(7, &p7));
        v.change(obj(8, &bridge())); // not reached: not sent
        assert_eq!(v.revision(), 8);
        let again = v.resume(7).unwrap();
        assert_eq!(
            names(&again),
            vec![("Port".into(), p7.id.to_string(), false)]
        );
        assert_eq!(v.resume(6).unwrap().len(), 2);
        // Past the bound, the oldest updates are dropped: no resume from them.
        let big = Bridge {
            id: b.id,
            name: Some("x".repeat(RESUME_BYTES / 4)),
            ..Default::default()
        };
        for r in 9..15 {
            v.change(obj(r, &big));
        }
        assert_eq!(v.resume(7), None);
        assert!(v.resume(14).is_some());
    }
}
