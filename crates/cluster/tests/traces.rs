//! Live trace requests' results: what agents send is kept per request (and
//! bounded), served oldest first, and deleted with the request.

mod common;
use common::{call, create, get};

use cluster::traces::{RESULTS_MAX, Refused, record, table};
use cluster::{App, AuthMode};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

#[test]
fn trace_results_are_kept_bounded_served_in_order_and_deleted_with_their_request() {
    let store: Arc<dyn nsdb::Store> = Arc::new(nsdb::LocalStore::in_memory());
    let app = Arc::new(App::new(store.clone(), AuthMode::None));
    let srv = common::serve(app.clone(), Default::default());
    let bridge = create(&format!("{}/bridges", srv.base), r#"{"name": "b"}"#);
    let body = json!({"name": "pings", "deviceType": "BRIDGE", "deviceId": bridge,
        "condition": {"nwProto": 1}, "limit": 5, "enabled": true});
    let id = create(&format!("{}/traces", srv.base), &body.to_string());
    let host = Uuid::new_v4();
    let rec = |t: u64| json!({"timeMs": t, "verdict": "Forward", "steps": []}).to_string();

    record(&app, host, &id, rec(2_000).as_bytes()).unwrap();
    record(&app, host, &id, rec(1_000).as_bytes()).unwrap();
    let results = format!("{}/traces/{id}/results", srv.base);
    let r = get(&results);
    assert_eq!(r.status, 200, "{}", r.raw);
    let times: Vec<u64> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["timeMs"].as_u64().unwrap())
        .collect();
    assert_eq!(times, vec![1_000, 2_000]);

    // What is not kept, and why.
    assert!(matches!(
        record(&app, host, "nope", b"{}"),
        Err(Refused::BadId(_))
    ));
    assert!(matches!(
        record(&app, host, &id, b"[1]"),
        Err(Refused::BadRecord(_))
    ));
    let other = Uuid::new_v4().to_string();
    assert!(matches!(
        record(&app, host, &other, b"{}"),
        Err(Refused::NoRequest(_))
    ));
    for t in 2..RESULTS_MAX as u64 {
        record(&app, host, &id, rec(1_000 + t).as_bytes()).unwrap();
    }
    assert!(matches!(
        record(&app, host, &id, rec(9_999).as_bytes()),
        Err(Refused::Full(_))
    ));
    assert_eq!(get(&results).body.as_array().unwrap().len(), RESULTS_MAX);

    // An unknown request's results: 404. Deleting a request deletes its results.
    assert_eq!(
        get(&format!("{}/traces/{other}/results", srv.base)).status,
        404
    );
    let d = call("DELETE", &format!("{}/traces/{id}", srv.base), &[], None);
    assert_eq!(d.status, 204, "{}", d.raw);
    assert!(
        store
            .persistent_entries(&table(id.parse().unwrap()))
            .is_empty()
    );
    assert_eq!(get(&results).status, 404);

    // A request deleted with its device: its results go too.
    let id = create(&format!("{}/traces", srv.base), &body.to_string());
    record(&app, host, &id, rec(1).as_bytes()).unwrap();
    assert_eq!(
        store.persistent_entries(&table(id.parse().unwrap())).len(),
        1
    );
    let d = call(
        "DELETE",
        &format!("{}/bridges/{bridge}", srv.base),
        &[],
        None,
    );
    assert_eq!(d.status, 204, "{}", d.raw);
    assert_eq!(get(&format!("{}/traces/{id}", srv.base)).status, 404);
    assert!(
        store
            .persistent_entries(&table(id.parse().unwrap()))
            .is_empty()
    );
}
