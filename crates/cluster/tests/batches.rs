//! The topology service marks where each batch of whole commits ends: an
//! agent applies everything up to the mark at once, never half a commit,
//! and does not wait for more once the mark is there.

use cluster::{App, AuthMode};
use model::{Bridge, Object, Port};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_stream::StreamExt;
use topology_proto::TopologyClient;
use topology_proto::v1::{Update, WatchRequest};
use uuid::Uuid;

async fn next(s: &mut tonic::Streaming<Update>) -> Update {
    tokio::time::timeout(std::time::Duration::from_secs(5), s.next())
        .await
        .expect("an update in time")
        .expect("the stream is open")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_end_on_commit_boundaries() {
    let store: Arc<dyn nsdb::Store> = Arc::new(nsdb::LocalStore::in_memory());
    let app = Arc::new(App::new(store, AuthMode::None));
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    tokio::spawn(cluster::topology_service::serve(
        app.clone(),
        addr,
        None,
        std::future::pending(),
    ));
    let me = Uuid::new_v4();
    let b = Bridge {
        id: Uuid::new_v4(),
        ..Default::default()
    };
    let bridge = b.id;
    let port = move || Port {
        id: Uuid::new_v4(),
        device_id: bridge,
        host_id: Some(me),
        interface_name: Some("tap0".into()),
        ..Default::default()
    };
    app.topo
        .write(|w| {
            w.tx.put(&b);
            w.tx.put(&port());
            Ok(())
        })
        .unwrap();
    let mut client = None;
    for _ in 0..50 {
        if let Ok(c) = TopologyClient::connect(format!("http://{addr}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut client = client.expect("the topology service answers");
    let mut s = client
        .watch(WatchRequest {
            after_revision: 0,
            host_id: me.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    loop {
        let u = next(&mut s).await;
        if u.snapshot_end {
            assert!(u.batch_end, "a snapshot is a whole batch");
            break;
        }
    }
    // Commits of five ports each, written while the stream is read.
    const COMMITS: usize = 200;
    const PER: usize = 5;
    let writer = {
        let app = app.clone();
        std::thread::spawn(move || {
            for _ in 0..COMMITS {
                app.topo
                    .write(|w| {
                        for _ in 0..PER {
                            w.tx.put(&port());
                        }
                        Ok(())
                    })
                    .unwrap();
            }
        })
    };
    let mut per_revision: HashMap<u64, usize> = HashMap::new();
    let mut in_batch: HashMap<u64, usize> = HashMap::new();
    let mut batches = 0;
    while per_revision.values().sum::<usize>() < COMMITS * PER {
        let u = next(&mut s).await;
        assert_eq!(u.kind, Port::KIND.name(), "only ports change: {u:?}");
        *per_revision.entry(u.revision).or_default() += 1;
        *in_batch.entry(u.revision).or_default() += 1;
        if u.batch_end {
            batches += 1;
            for (rev, n) in in_batch.drain() {
                assert_eq!(n, PER, "revision {rev}: a batch holds whole commits");
            }
        }
    }
    assert!(in_batch.is_empty(), "the last update ends a batch");
    assert_eq!(per_revision.len(), COMMITS);
    writer.join().unwrap();
    // Batches group what was waiting: never more than there were commits.
    assert!((1..=COMMITS).contains(&batches), "{batches} batches");
}
