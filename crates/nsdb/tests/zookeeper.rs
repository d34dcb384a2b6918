//! The ZooKeeper backend against a real ZooKeeper server, started here by
//! PID on loopback (Debian's `zookeeper` package: `scripts/test` and CI
//! install it). Without it the test fails, unless MIDONET_SKIP_ZOOKEEPER=1.

mod support;

use nsdb::{Change, Compaction, Op, Store, StoreError};
use std::time::{Duration, Instant};
use support::{ZooKeeper, create, eventually, put, update};

#[test]
fn two_servers_share_one_ensemble() {
    if !support::zookeeper_wanted() {
        return;
    }
    let zk = ZooKeeper::start();
    let a = zk.connect("/t1");
    let b = zk.connect("/t1");

    // A commit through one server is read, and watched, through the other.
    let mut watch = b.watch(Some("Bridge"), b.revision()).unwrap();
    a.commit(vec![
        create("Bridge", "b1", "one"),
        create("Port", "p/1", "x"),
    ])
    .unwrap();
    assert_eq!(
        &*a.get("Bridge", "b1").unwrap().unwrap().data,
        b"one",
        "reads its own write"
    );
    eventually("b sees b1", || b.get("Bridge", "b1").unwrap().is_some());
    let ev = watch.try_next().expect("b's watcher saw the commit");
    assert_eq!((ev.kind.as_str(), ev.id.as_str()), ("Bridge", "b1"));
    assert!(matches!(ev.change, Change::Put(ref e) if e.version == 1));
    assert_eq!(
        b.get("Port", "p/1").unwrap().unwrap().version,
        1,
        "ids with / survive"
    );

    // Compare-and-set is ZooKeeper's: of two updates at version 1, one wins.
    let ra = a.commit(vec![update("Bridge", "b1", "from a", 1)]);
    let rb = b.commit(vec![update("Bridge", "b1", "from b", 1)]);
    assert!(ra.is_ok(), "{ra:?}");
    assert!(
        matches!(rb, Err(StoreError::VersionMismatch { .. })),
        "{rb:?}"
    );
    // The loser caught up: it now sees the winner's write at version 2.
    let e = b.get("Bridge", "b1").unwrap().unwrap();
    assert_eq!((&*e.data, e.version), (&b"from a"[..], 2));
    b.commit(vec![update("Bridge", "b1", "from b", 2)]).unwrap();
    eventually("a sees b's update", || {
        a.get("Bridge", "b1")
            .unwrap()
            .is_some_and(|e| e.version == 3)
    });

    // A create of what exists, through either server, is refused whole.
    let r = b.commit(vec![
        create("Bridge", "b2", "two"),
        create("Bridge", "b1", "again"),
    ]);
    assert!(
        matches!(r, Err(StoreError::AlreadyExists { ref id, .. }) if id == "b1"),
        "{r:?}"
    );
    assert!(a.get("Bridge", "b2").unwrap().is_none() && b.get("Bridge", "b2").unwrap().is_none());

    // Checks: at a version, and of absence.
    let absent = Op::Check {
        kind: "Bridge".into(),
        id: "b9".into(),
        version: None,
    };
    a.commit(vec![absent.clone(), create("Bridge", "b3", "three")])
        .unwrap();
    let r = a.commit(vec![
        Op::Check {
            kind: "Bridge".into(),
            id: "b3".into(),
            version: None,
        },
        create("Bridge", "b4", "four"),
    ]);
    assert!(r.is_err(), "b3 exists: {r:?}");
    assert!(a.get("Bridge", "b4").unwrap().is_none());

    // Unconditional puts and deletes, and persistent table rows.
    a.commit(vec![Op::Put {
        kind: "Bridge".into(),
        id: "b3".into(),
        data: b"3".to_vec(),
    }])
    .unwrap();
    b.table_put("Router/r1/arp", "10.0.0.1", "aa:bb", None)
        .unwrap();
    eventually("a sees the table row", || {
        a.table_entries("Router/r1/arp")
            .iter()
            .any(|e| e.key == "10.0.0.1" && e.value == "aa:bb" && e.owner.is_none())
    });
    a.commit(vec![Op::Delete {
        kind: "Port".into(),
        id: "p/1".into(),
        version: Some(1),
    }])
    .unwrap();
    eventually("b sees the delete", || {
        b.get("Port", "p/1").unwrap().is_none()
    });

    // Ephemeral state and learned entries of an agent's session on one
    // server are seen by the other; they go when the session closes.
    let s = a.open_session();
    a.put_ephemeral(s, "Host/h1/alive", b"1".to_vec()).unwrap();
    a.table_put("Bridge/b1/mac", "aa:aa", "p1", Some(s))
        .unwrap();
    eventually("b sees h1 alive", || {
        b.get_ephemeral("Host/h1/alive")
            .is_some_and(|(o, d)| o == s && &*d == b"1")
    });
    eventually("b sees the learned entry", || {
        b.table_entries("Bridge/b1/mac")
            .iter()
            .any(|e| e.key == "aa:aa" && e.value == "p1" && e.owner == Some(s))
    });
    // The last writer wins, also from another session on another server.
    let s2 = b.open_session();
    b.put_ephemeral(s2, "Port/p9/active", b"h2".to_vec())
        .unwrap();
    a.put_ephemeral(s, "Port/p9/active", b"h1".to_vec())
        .unwrap();
    eventually("b sees p9 moved to h1", || {
        b.get_ephemeral("Port/p9/active")
            .is_some_and(|(o, _)| o == s)
    });
    a.close_session(s).unwrap();
    assert!(
        a.get_ephemeral("Host/h1/alive").is_none(),
        "gone at once where it closed"
    );
    eventually("b sees h1's state go", || {
        b.get_ephemeral("Host/h1/alive").is_none()
            && b.get_ephemeral("Port/p9/active").is_none()
            && b.table_entries("Bridge/b1/mac").is_empty()
    });
    assert!(matches!(
        a.put_ephemeral(s, "Host/h1/alive", b"1".to_vec()),
        Err(StoreError::NoSession(_))
    ));
    b.close_session(s2).unwrap();

    // A claim is first-writer-wins across servers (SNAT port blocks).
    let (sa, sb) = (a.open_session(), b.open_session());
    assert_eq!(
        a.claim_ephemeral(sa, "NatBlock/r/1.2.3.4/7", b"h1".to_vec()),
        Ok(true)
    );
    assert_eq!(
        b.claim_ephemeral(sb, "NatBlock/r/1.2.3.4/7", b"h2".to_vec()),
        Ok(false)
    );
    eventually("b sees a's claim", || {
        b.get_ephemeral("NatBlock/r/1.2.3.4/7")
            .is_some_and(|(o, _)| o == sa)
    });
    a.close_session(sa).unwrap();
    b.close_session(sb).unwrap();

    // One server leads a role; another takes over when it goes.
    assert!(a.lead("health"), "the first to ask leads");
    assert!(a.lead("health"), "and goes on leading");
    assert!(!b.lead("health"), "one leader at a time");

    // A server started later replays the log to the same state.
    drop(a);
    eventually("b leads once a is gone", || b.lead("health"));
    let c = zk.connect("/t1");
    for (kind, id) in [("Bridge", "b1"), ("Bridge", "b3")] {
        let (x, y) = (
            b.get(kind, id).unwrap().unwrap(),
            c.get(kind, id).unwrap().unwrap(),
        );
        assert_eq!((x.data, x.version), (y.data, y.version), "{kind} {id}");
    }
    assert!(c.get("Port", "p/1").unwrap().is_none());
    assert_eq!(c.table_entries("Router/r1/arp").len(), 1);
    // Another chroot is another cloud.
    let other = zk.connect("/t2");
    assert!(other.get("Bridge", "b1").unwrap().is_none());

    // With the ensemble gone, a write fails within 15 s with a clear error,
    // and reads go on from the mirror.
    drop(zk);
    let t = Instant::now();
    let r = c.commit(vec![create("Bridge", "late", "x")]);
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert!(c.get("Bridge", "b1").unwrap().is_some());
}

/// Commits in flight together: they apply in the order sent, and one sent
/// chained to a commit that fails does not apply.
#[test]
fn pipelined_commits_apply_in_order_and_fail_together() {
    if !support::zookeeper_wanted() {
        return;
    }
    let zk = ZooKeeper::start();
    let (a, b) = (zk.connect("/p"), zk.connect("/p"));
    assert!(a.pipeline_depth() > 1);

    // Three in flight, each built on the one before.
    let sent = [
        a.send(vec![create("Chain", "c1", "one")], false),
        a.send(vec![update("Chain", "c1", "two", 1)], true),
        a.send(
            vec![
                update("Chain", "c1", "three", 2),
                put("Rule", "r1", "in c1"),
            ],
            true,
        ),
    ];
    let revisions: Vec<_> = sent.into_iter().map(|p| p().unwrap()).collect();
    assert!(
        revisions.is_sorted() && revisions[0] < revisions[2],
        "{revisions:?}"
    );
    let c1 = a.get("Chain", "c1").unwrap().unwrap();
    assert_eq!((&*c1.data, c1.version), (&b"three"[..], 3));
    eventually("b applies them in order", || {
        b.get("Rule", "r1").unwrap().is_some()
            && b.get("Chain", "c1")
                .unwrap()
                .is_some_and(|e| e.version == 3)
    });

    // Another server takes c2 first. a's create of it fails, and so does
    // the unconditional put sent chained to it (it refers to c2).
    b.commit(vec![create("Chain", "c2", "b's")]).unwrap();
    let first = a.send(vec![create("Chain", "c2", "a's")], false);
    let second = a.send(vec![put("Rule", "r2", "in c2")], true);
    assert!(
        matches!(first(), Err(StoreError::AlreadyExists { .. })),
        "the create lost"
    );
    let r = second();
    assert!(matches!(r, Err(StoreError::Unchained)), "{r:?}");
    assert!(a.get("Rule", "r2").unwrap().is_none());
    // The failed one was caught up on; an unchained send goes through.
    assert_eq!(&*a.get("Chain", "c2").unwrap().unwrap().data, b"b's");
    a.send(vec![put("Rule", "r2", "in c2")], false)().unwrap();
    eventually("b sees r2 once", || b.get("Rule", "r2").unwrap().is_some());
    assert!(b.get("Rule", "r2").unwrap().unwrap().version == 1);
}

/// Two servers increment one counter with compare-and-set, at once: every
/// increment that either acknowledged is counted once, none is lost.
#[test]
fn concurrent_compare_and_set_across_servers_loses_nothing() {
    if !support::zookeeper_wanted() {
        return;
    }
    let zk = ZooKeeper::start();
    let (a, b) = (zk.connect("/cas"), zk.connect("/cas"));
    a.commit(vec![create("Counter", "n", "0")]).unwrap();
    eventually("b sees the counter", || {
        b.get("Counter", "n").unwrap().is_some()
    });
    let acked = std::thread::scope(|s| {
        let runs: Vec<_> = [&a, &b]
            .into_iter()
            .map(|store| {
                s.spawn(move || {
                    let mut acked = 0;
                    for _ in 0..60 {
                        let e = store.get("Counter", "n").unwrap().unwrap();
                        let n: u64 = std::str::from_utf8(&e.data).unwrap().parse().unwrap();
                        match store.commit(vec![update(
                            "Counter",
                            "n",
                            &(n + 1).to_string(),
                            e.version,
                        )]) {
                            Ok(_) => acked += 1,
                            Err(StoreError::VersionMismatch { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    acked
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).sum::<u64>()
    });
    assert!(
        acked >= 60,
        "at least one server's increments go through: {acked}"
    );
    let n = |s: &dyn Store| {
        let e = s.get("Counter", "n").unwrap().unwrap();
        (std::str::from_utf8(&e.data).unwrap().to_string(), e.version)
    };
    eventually("both agree", || n(&a) == n(&b));
    assert_eq!(n(&a), (acked.to_string(), acked + 1));
    // A server started now replays the same.
    assert_eq!(n(&zk.connect("/cas")), (acked.to_string(), acked + 1));
}

#[test]
fn the_log_is_compacted_and_a_new_server_starts_from_its_snapshot() {
    if !support::zookeeper_wanted() {
        return;
    }
    let zk = ZooKeeper::start();
    // Compacting at every look, several times a second.
    let eager = Compaction {
        min_bytes: 1,
        every: Duration::from_millis(100),
    };
    let a = zk.connect_with("/t5", eager);
    let b = zk.connect_with("/t5", eager);
    for i in 0..300 {
        a.commit(vec![create("Port", &format!("p{i}"), "x")])
            .unwrap();
    }
    for i in 0..100 {
        b.commit(vec![update("Port", &format!("p{i}"), "y", 1)])
            .unwrap();
    }
    a.commit(vec![
        Op::Delete {
            kind: "Port".into(),
            id: "p299".into(),
            version: Some(1),
        },
        Op::Table {
            table: "routes".into(),
            key: "10.0.0.0/8".into(),
            value: Some("r1".into()),
        },
    ])
    .unwrap();
    let (_, head) = a.log_span().unwrap();
    assert_eq!(head, 401, "one entry per commit");
    // Entries go once a snapshot covers them; the log kept after the last
    // one is up to the snapshot's own size.
    let t = Instant::now();
    while a.log_span().unwrap().0 == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the log was never trimmed: {:?}",
            a.log_span()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A server starting now has no log from the start to replay: it loads
    // the snapshot, versions and rows as they were, and follows from there.
    let c = zk.connect("/t5");
    let (start, next) = c.log_span().unwrap();
    assert!(start > 0 && next == 401, "{start} {next}");
    assert_eq!(c.list("Port").unwrap().len(), 299);
    assert_eq!(c.get("Port", "p5").unwrap().unwrap().version, 2);
    assert_eq!(c.get("Port", "p200").unwrap().unwrap().version, 1);
    assert!(c.get("Port", "p299").unwrap().is_none());
    assert_eq!(
        c.persistent_entries("routes"),
        vec![("10.0.0.0/8".to_string(), "r1".to_string())]
    );
    // Compare-and-set goes on at the versions it loaded, on every server.
    c.commit(vec![update("Port", "p5", "z", 2)]).unwrap();
    let stale = a.commit(vec![update("Port", "p5", "w", 2)]);
    assert!(
        matches!(stale, Err(StoreError::VersionMismatch { .. })),
        "{stale:?}"
    );
    eventually("b sees c's write", || {
        b.get("Port", "p5").unwrap().is_some_and(|e| e.version == 3)
    });
    assert!(a.stale().is_none() && b.stale().is_none() && c.stale().is_none());
}
