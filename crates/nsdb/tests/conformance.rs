//! The store conformance suite: one set of checks, run on every backend
//! (memory, embedded, ZooKeeper). What a backend must do is what the
//! cluster relies on: versions and compare-and-set, all-or-nothing
//! commits, watches that resume from a revision with nothing missed and
//! nothing twice, session-owned state, first-wins claims, state tables.

mod support;

use nsdb::{Change, Event, LocalStore, Op, Store, StoreError, Watch};
use std::time::{Duration, Instant};
use support::{ZooKeeper, create, update};

/// The next event, waiting for a backend that delivers them from a log.
fn next(w: &mut Watch) -> Event {
    let t = Instant::now();
    loop {
        if let Some(e) = w.try_next() {
            return e;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "no event within 5 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// No further event arrives (within what a log follower takes).
fn quiet(w: &mut Watch) {
    std::thread::sleep(Duration::from_millis(200));
    let e = w.try_next();
    assert!(e.is_none(), "unexpected event {e:?}");
}

fn delete(kind: &str, id: &str, version: Option<u64>) -> Op {
    Op::Delete {
        kind: kind.into(),
        id: id.into(),
        version,
    }
}

fn check(kind: &str, id: &str, version: Option<u64>) -> Op {
    Op::Check {
        kind: kind.into(),
        id: id.into(),
        version,
    }
}

fn objects_are_versioned_and_commits_all_or_nothing(s: &dyn Store) {
    assert!(s.get("Bridge", "a").unwrap().is_none());
    let r1 = s
        .commit(vec![create("Bridge", "a", "1"), create("Bridge", "b", "2")])
        .unwrap();
    let a = s.get("Bridge", "a").unwrap().unwrap();
    assert_eq!((&*a.data, a.version, a.mod_revision), (&b"1"[..], 1, r1));
    assert!(s.revision() >= r1);
    // One stale version refuses the whole commit.
    let r = s.commit(vec![
        update("Bridge", "a", "x", 1),
        update("Bridge", "b", "y", 7),
    ]);
    assert!(
        matches!(r, Err(StoreError::VersionMismatch { ref id, expected: Some(7), found: Some(1), .. }) if id == "b"),
        "{r:?}"
    );
    assert_eq!(&*s.get("Bridge", "a").unwrap().unwrap().data, b"1");
    let r = s.commit(vec![create("Bridge", "c", "3"), create("Bridge", "a", "z")]);
    assert!(
        matches!(r, Err(StoreError::AlreadyExists { ref id, .. }) if id == "a"),
        "{r:?}"
    );
    assert!(s.get("Bridge", "c").unwrap().is_none(), "nothing applied");
    let r = s.commit(vec![update("Bridge", "nope", "x", 1)]);
    assert!(r.is_err(), "an update of nothing: {r:?}");
    // Versions count updates; revisions only grow.
    let r2 = s.commit(vec![update("Bridge", "a", "x", 1)]).unwrap();
    assert!(r2 > r1);
    let a = s.get("Bridge", "a").unwrap().unwrap();
    assert_eq!((&*a.data, a.version, a.mod_revision), (&b"x"[..], 2, r2));
    let r3 = s
        .commit(vec![Op::Put {
            kind: "Bridge".into(),
            id: "a".into(),
            data: b"p".to_vec(),
        }])
        .unwrap();
    assert!(r3 > r2);
    assert_eq!(s.get("Bridge", "a").unwrap().unwrap().version, 3);
    s.commit(vec![Op::Put {
        kind: "Bridge".into(),
        id: "new".into(),
        data: b"n".to_vec(),
    }])
    .unwrap();
    assert_eq!(s.get("Bridge", "new").unwrap().unwrap().version, 1);
    // Deletes: at a version, or whatever it is.
    let r = s.commit(vec![delete("Bridge", "a", Some(1))]);
    assert!(
        matches!(r, Err(StoreError::VersionMismatch { .. })),
        "{r:?}"
    );
    s.commit(vec![delete("Bridge", "a", Some(3))]).unwrap();
    s.commit(vec![delete("Bridge", "new", None)]).unwrap();
    assert!(s.get("Bridge", "a").unwrap().is_none());
    // Lists are of one kind exactly; ids may hold slashes.
    s.commit(vec![create("Port", "p/1", "x")]).unwrap();
    let mut ids: Vec<String> = s
        .list("Bridge")
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["b"]);
    assert!(s.list("Bridg").unwrap().is_empty());
    assert_eq!(s.kinds(), ["Bridge", "Port"]);
    assert_eq!(s.list("Port").unwrap()[0].0, "p/1");
    assert_eq!(s.get("Port", "p/1").unwrap().unwrap().version, 1);
}

fn checks_guard_a_commit(s: &dyn Store) {
    s.commit(vec![check("Chain", "c", None), create("Chain", "c", "{}")])
        .unwrap();
    let r = s.commit(vec![check("Chain", "c", None), create("Chain", "d", "{}")]);
    assert!(r.is_err(), "c exists: {r:?}");
    let r = s.commit(vec![
        check("Chain", "c", Some(2)),
        create("Chain", "d", "{}"),
    ]);
    assert!(
        matches!(r, Err(StoreError::VersionMismatch { .. })),
        "{r:?}"
    );
    assert!(s.get("Chain", "d").unwrap().is_none());
    s.commit(vec![
        check("Chain", "c", Some(1)),
        create("Chain", "d", "{}"),
    ])
    .unwrap();
    assert!(s.get("Chain", "d").unwrap().is_some());
}

fn watches_resume_from_a_revision(s: &dyn Store) {
    let r1 = s.commit(vec![create("Port", "1", "a")]).unwrap();
    let r2 = s.commit(vec![create("Port", "2", "b")]).unwrap();
    s.commit(vec![create("Router", "9", "r")]).unwrap();
    // From r1: what came after, of the kind asked for, once.
    let mut w = s.watch(Some("Port"), r1).unwrap();
    let e = next(&mut w);
    assert_eq!((e.id.as_str(), e.revision), ("2", r2));
    assert!(matches!(e.change, Change::Put(ref x) if x.version == 1 && &*x.data == b"b"));
    quiet(&mut w);
    let r4 = s.commit(vec![delete("Port", "1", None)]).unwrap();
    let e = next(&mut w);
    assert_eq!(
        (e.id.as_str(), e.revision, e.change),
        ("1", r4, Change::Deleted)
    );
    // Every kind, in revision order, from the start of this test.
    let mut all = s.watch(None, r1 - 1).unwrap();
    let seen: Vec<(String, String)> = (0..4)
        .map(|_| next(&mut all))
        .map(|e| (e.kind, e.id))
        .collect();
    let want = [("Port", "1"), ("Port", "2"), ("Router", "9"), ("Port", "1")];
    assert_eq!(
        seen,
        want.map(|(k, i)| (k.to_string(), i.to_string())),
        "in order"
    );
    quiet(&mut all);
    // A refused commit is seen by no watcher.
    let _ = s.commit(vec![create("Port", "3", "c"), create("Port", "2", "again")]);
    quiet(&mut all);
}

fn table_entries_commit_with_objects(s: &dyn Store) {
    let entry = |value: Option<&str>| Op::Table {
        table: "ip4mac/b".into(),
        key: "198.18.0.5".into(),
        value: value.map(str::to_string),
    };
    // A failed check takes the entry down with it.
    let r = s.commit(vec![
        entry(Some("aa:aa:aa:aa:aa:01")),
        check("Chain", "c", Some(1)),
    ]);
    assert!(r.is_err(), "{r:?}");
    assert!(s.table_entries("ip4mac/b").is_empty());
    let mut w = s.watch(None, s.revision()).unwrap();
    let rev = s
        .commit(vec![
            create("Chain", "c", "{}"),
            entry(Some("aa:aa:aa:aa:aa:01")),
        ])
        .unwrap();
    let mut seen = [next(&mut w), next(&mut w)];
    seen.sort_by(|a, b| a.kind.cmp(&b.kind));
    assert_eq!(
        seen.iter()
            .map(|e| (e.kind.as_str(), e.revision))
            .collect::<Vec<_>>(),
        [("Chain", rev), ("table/ip4mac/b", rev)],
        "one revision for the commit's object and entry"
    );
    let rows = s.table_entries("ip4mac/b");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].key.as_str(), rows[0].value.as_str(), rows[0].owner),
        ("198.18.0.5", "aa:aa:aa:aa:aa:01", None)
    );
    assert!(s.table_names().iter().any(|t| t == "ip4mac/b"));
    s.commit(vec![entry(None)]).unwrap();
    assert!(s.table_entries("ip4mac/b").is_empty());
    // Rows outside a commit.
    s.table_put("arp/r", "10.0.0.1", "aa:bb", None).unwrap();
    assert_eq!(s.table_entries("arp/r")[0].value, "aa:bb");
    s.table_remove("arp/r", "10.0.0.1").unwrap();
    assert!(s.table_entries("arp/r").is_empty());
}

fn sessions_own_ephemeral_keys_and_learned_entries(s: &dyn Store) {
    let sess = s.open_session();
    s.put_ephemeral(sess, "Host/h1/alive", b"1".to_vec())
        .unwrap();
    let (owner, data) = s.get_ephemeral("Host/h1/alive").unwrap();
    assert_eq!((owner, &*data), (sess, &b"1"[..]));
    assert!(
        s.ephemeral_entries()
            .iter()
            .any(|(k, d)| k == "Host/h1/alive" && &**d == b"1")
    );
    s.table_put("mac/b1", "aa:bb:cc:00:00:01", "persistent-port", None)
        .unwrap();
    s.table_put("mac/b1", "aa:bb:cc:00:00:01", "learned-port", Some(sess))
        .unwrap();
    s.table_put("mac/b1", "aa:bb:cc:00:00:02", "p2", Some(sess))
        .unwrap();
    let rows = s.table_entries("mac/b1");
    let row = |k: &str| rows.iter().find(|e| e.key == k).cloned();
    let learned = row("aa:bb:cc:00:00:01").unwrap();
    assert_eq!(
        (learned.value.as_str(), learned.owner),
        ("learned-port", Some(sess)),
        "learned overrides persistent"
    );
    assert_eq!(row("aa:bb:cc:00:00:02").unwrap().owner, Some(sess));
    assert_eq!(
        s.persistent_entries("mac/b1"),
        [(
            "aa:bb:cc:00:00:01".to_string(),
            "persistent-port".to_string()
        )],
        "the API's row stays under the learned one"
    );
    // A key deleted by its session is gone; the rest go with the session.
    s.put_ephemeral(sess, "Port/p1/active", b"h1".to_vec())
        .unwrap();
    s.delete_ephemeral(sess, "Port/p1/active").unwrap();
    assert!(s.get_ephemeral("Port/p1/active").is_none());
    let mut w = s.watch(None, s.revision()).unwrap();
    s.close_session(sess).unwrap();
    assert!(s.get_ephemeral("Host/h1/alive").is_none());
    let rows = s.table_entries("mac/b1");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].value.as_str(), rows[0].owner),
        ("persistent-port", None)
    );
    let e = next(&mut w);
    assert!(
        e.kind == "state" || e.kind == "table/mac/b1",
        "the closing is watched: {e:?}"
    );
    assert!(matches!(
        s.put_ephemeral(sess, "x", vec![]),
        Err(StoreError::NoSession(_))
    ));
}

fn claims_are_first_wins(s: &dyn Store) {
    let (a, b) = (s.open_session(), s.open_session());
    assert_ne!(a, b);
    let key = "NatBlock/r/1.2.3.4/7";
    assert_eq!(s.claim_ephemeral(a, key, b"h1".to_vec()), Ok(true));
    assert_eq!(s.claim_ephemeral(b, key, b"h2".to_vec()), Ok(false));
    assert_eq!(s.get_ephemeral(key).unwrap().0, a);
    // The owner's session gone, the claim is free again.
    s.close_session(a).unwrap();
    assert!(s.get_ephemeral(key).is_none());
    assert_eq!(s.claim_ephemeral(b, key, b"h2".to_vec()), Ok(true));
    assert_eq!(s.get_ephemeral(key).unwrap().0, b);
    s.close_session(b).unwrap();
    assert!(s.lead("health"), "a lone server leads");
}
/// One commit may write a key several times, each op on what the ones
/// before left (a batch of several writers' transactions is one commit).
fn ops_of_one_commit_build_on_each_other(s: &dyn Store) {
    s.commit(vec![create("Port", "p", "0")]).unwrap();
    s.table_put("arp/r", "10.0.0.9", "aa:01", None).unwrap();
    let entry = |value: Option<&str>| Op::Table {
        table: "arp/r".into(),
        key: "10.0.0.9".into(),
        value: value.map(str::to_string),
    };
    let put = |id: &str, data: &str| Op::Put {
        kind: "Port".into(),
        id: id.into(),
        data: data.as_bytes().to_vec(),
    };
    s.commit(vec![
        create("Port", "q", "1"),
        update("Port", "q", "2", 1),
        delete("Port", "p", Some(1)),
        put("p", "again"),
        entry(None),
        entry(Some("aa:02")),
    ])
    .unwrap();
    let q = s.get("Port", "q").unwrap().unwrap();
    assert_eq!((&*q.data, q.version), (&b"2"[..], 2));
    let p = s.get("Port", "p").unwrap().unwrap();
    assert_eq!((&*p.data, p.version), (&b"again"[..], 1), "made anew");
    assert_eq!(s.table_entries("arp/r")[0].value, "aa:02");
    s.commit(vec![
        entry(None),
        delete("Port", "q", Some(2)),
        put("q", "3"),
    ])
    .unwrap();
    assert!(s.table_entries("arp/r").is_empty());
    assert_eq!(s.get("Port", "q").unwrap().unwrap().version, 1);
}

/// The whole suite on stores from `fresh` (each check gets its own).
fn suite(fresh: &mut dyn FnMut() -> Box<dyn Store>) {
    objects_are_versioned_and_commits_all_or_nothing(&*fresh());
    checks_guard_a_commit(&*fresh());
    watches_resume_from_a_revision(&*fresh());
    table_entries_commit_with_objects(&*fresh());
    sessions_own_ephemeral_keys_and_learned_entries(&*fresh());
    claims_are_first_wins(&*fresh());
    ops_of_one_commit_build_on_each_other(&*fresh());
}

#[test]
fn memory() {
    suite(&mut || Box::new(LocalStore::in_memory()));
}

#[test]
fn embedded() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    suite(&mut || {
        n += 1;
        Box::new(LocalStore::open(&dir.path().join(n.to_string())).unwrap())
    });
}

#[test]
fn zookeeper() {
    if !support::zookeeper_wanted() {
        return;
    }
    let zk = ZooKeeper::start();
    let mut n = 0;
    suite(&mut || {
        n += 1;
        Box::new(zk.connect(&format!("/conformance-{n}")))
    });

    // `midonet nsdb export` / `import`: embedded to ZooKeeper and back.
    let dir = tempfile::tempdir().unwrap();
    let embedded = LocalStore::open(dir.path()).unwrap();
    let ops: Vec<Op> = (0..500)
        .map(|i| {
            create(
                "Port",
                &format!("p{i}"),
                &format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(4000)),
            )
        })
        .collect();
    embedded.commit(ops).unwrap();
    embedded
        .table_put("arp/r", "10.0.0.1", "aa:bb", None)
        .unwrap();
    let mut file = Vec::new();
    nsdb::transfer::export(&embedded, &mut file).unwrap();
    let cloud = zk.connect("/moved");
    let got = nsdb::transfer::import(&cloud, &mut &file[..]).unwrap();
    assert_eq!(
        (got.objects, got.rows),
        (500, 1),
        "2 MB in commits under 1 MB"
    );
    let fresh = zk.connect("/moved");
    assert_eq!(fresh.list("Port").unwrap().len(), 500);
    assert_eq!(fresh.persistent_entries("arp/r").len(), 1);
    let mut back = Vec::new();
    nsdb::transfer::export(&fresh, &mut back).unwrap();
    let again = LocalStore::in_memory();
    nsdb::transfer::import(&again, &mut &back[..]).unwrap();
    assert_eq!(
        again.get("Port", "p7").unwrap().unwrap().data,
        embedded.get("Port", "p7").unwrap().unwrap().data
    );
}
