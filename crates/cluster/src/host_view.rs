//! What one host's agent is sent: the objects its bound ports can reach (the
//! devices linked to them, their chains, groups, load balancers and DHCP
//! subnets), plus everything that is not a topology object (hosts, tunnel
//! zones, port states, learned tables). An agent on a host with two VMs of
//! one tenant never receives, parses or holds another tenant's topology.

use crate::topology_service::frame;
use model::{Objects, Port};
use std::collections::{HashMap, HashSet};
use topology::v1::Update;
use uuid::Uuid;

/// A host's filter over the watch: the full topology (as stored JSON) and
/// which of it the host has been sent.
pub struct HostView {
    host: Uuid,
    /// kind -> id -> stored JSON, topology kinds only.
    objects: HashMap<&'static str, HashMap<String, Vec<u8>>>,
    visible: HashSet<(&'static str, String)>,
}

fn topology_kind(kind: &str) -> Option<&'static str> {
    Objects::KINDS.iter().map(|k| k.name()).find(|k| *k == kind)
}

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

/// Cluster bookkeeping agents have no use for (SNAT block leases).
fn is_private(u: &Update) -> bool {
    u.kind == "state" && u.id.starts_with("NatBlock/")
}

impl HostView {
    pub fn new(host: Uuid) -> Self {
        HostView {
            host,
            objects: HashMap::new(),
            visible: HashSet::new(),
        }
    }

    /// A full snapshot (framed as the unfiltered one was), filtered.
    pub fn snapshot(&mut self, all: Vec<Update>) -> Vec<Update> {
        let revision = all.last().map(|u| u.revision).unwrap_or_default();
        let mut out = Vec::new();
        for u in all {
            if u.kind.is_empty() {
                continue;
            }
            if is_private(&u) {
                continue;
            }
            match topology_kind(&u.kind) {
                Some(k) => {
                    self.objects.entry(k).or_default().insert(u.id, u.data);
                }
                None => out.push(Update {
                    snapshot_begin: false,
                    snapshot_end: false,
                    ..u
                }),
            }
        }
        self.visible = self.reachable();
        for (k, id) in &self.visible {
            out.extend(self.stored(k, id).map(|d| put(revision, k, id, d)));
        }
        frame(&mut out, revision);
        out
    }

    /// One live change, as the updates this host must see: the change itself
    /// when the host sees (or saw) the object, and whatever it newly reaches
    /// or no longer reaches because of it.
    pub fn change(&mut self, u: Update) -> Vec<Update> {
        if is_private(&u) {
            return Vec::new();
        }
        let Some(kind) = topology_kind(&u.kind) else {
            return vec![u];
        };
        let objects = self.objects.entry(kind).or_default();
        if u.deleted {
            objects.remove(&u.id);
        } else {
            objects.insert(u.id.clone(), u.data.clone());
        }
        let now = self.reachable();
        let me = (kind, u.id.clone());
        let mut out = Vec::new();
        match (self.visible.contains(&me), now.contains(&me)) {
            (_, true) => out.push(u.clone()),
            (true, false) => out.push(deleted(u.revision, kind, &u.id)),
            (false, false) => {}
        }
        for (k, id) in now.difference(&self.visible).filter(|x| **x != me) {
            out.extend(self.stored(k, id).map(|d| put(u.revision, k, id, d)));
        }
        for (k, id) in self.visible.difference(&now).filter(|x| **x != me) {
            out.push(deleted(u.revision, k, id));
        }
        self.visible = now;
        out
    }

    /// The stored JSON of an object; `None` only if an object's id field
    /// disagrees with its key, which the API never writes.
    fn stored(&self, kind: &str, id: &str) -> Option<Vec<u8>> {
        self.objects.get(kind).and_then(|m| m.get(id)).cloned()
    }

    /// A full recompute: decode everything, walk from this host's ports.
    fn reachable(&self) -> HashSet<(&'static str, String)> {
        let all = Objects::decode(|kind| {
            self.objects
                .get(kind)
                .into_iter()
                .flat_map(|m| m.values().map(Vec::as_slice))
        });
        let local: Vec<Uuid> = all
            .ports
            .iter()
            .filter(|p: &&Port| p.host_id == Some(self.host))
            .map(|p| p.id)
            .collect();
        all.reachable_from(&local)
            .ids()
            .into_iter()
            .map(|(k, id)| (k, id.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Bridge, Host, Object};

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
}
