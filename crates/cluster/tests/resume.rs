//! An agent that reconnects to the topology service resumes its filtered
//! watch from its revision: it is sent what changed, not a snapshot.

mod common;
use common::put;

use cluster::{App, AuthMode};
use model::{Bridge, Port};
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
async fn a_reconnecting_agent_resumes_without_a_snapshot() {
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
    put(&app, &b);
    let port = |id| Port {
        id,
        device_id: b.id,
        host_id: Some(me),
        interface_name: Some("tap0".into()),
        ..Default::default()
    };
    put(&app, &port(Uuid::new_v4()));
    let mut client = None;
    for _ in 0..50 {
        if let Ok(c) = TopologyClient::connect(format!("http://{addr}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut client = client.expect("the topology service answers");
    let watch = |after| WatchRequest {
        after_revision: after,
        host_id: me.to_string(),
    };
    // First connection: a snapshot.
    let mut s = client.watch(watch(0)).await.unwrap().into_inner();
    let first = next(&mut s).await;
    assert!(first.snapshot_begin);
    let mut revision = first.revision;
    loop {
        let u = next(&mut s).await;
        revision = revision.max(u.revision);
        if u.snapshot_end {
            break;
        }
    }
    drop(s);
    // Gone while nothing changes: its view is parked all the same.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // While it is away: a new port on its bridge.
    let added = Uuid::new_v4();
    put(&app, &port(added));
    // Back: the change, no snapshot.
    let mut s = client.watch(watch(revision)).await.unwrap().into_inner();
    let u = next(&mut s).await;
    assert!(!u.snapshot_begin, "resumed, not a snapshot: {u:?}");
    assert_eq!((u.kind.as_str(), u.id.clone()), ("Port", added.to_string()));
    // From a revision the view cannot vouch for: a snapshot again.
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut s = client.watch(watch(1)).await.unwrap().into_inner();
    assert!(next(&mut s).await.snapshot_begin);
}
