//! An in-process `midonet server` on a loopback port, and a raw HTTP helper.

#![allow(dead_code)]

use cluster::{App, AuthMode};
use serde_json::Value;
use std::sync::Arc;

pub struct TestServer {
    pub base: String,
    _rt: tokio::runtime::Runtime,
}

pub fn start(auth: AuthMode) -> TestServer {
    start_with(auth, cluster::listen::Listener::default())
}

/// A server whose listener has `cfg`'s limits, TLS and external URL.
pub fn start_with(auth: AuthMode, cfg: cluster::listen::Listener) -> TestServer {
    let store: Arc<dyn nsdb::Store> = Arc::new(nsdb::LocalStore::in_memory());
    serve(Arc::new(App::new(store, auth)), cfg)
}

/// A server of `app`, for a test that also calls the app itself.
pub fn serve(app: Arc<App>, cfg: cluster::listen::Listener) -> TestServer {
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(cluster::listen::serve(
        listener,
        cluster::router(app),
        cfg,
        std::future::pending(),
    ));
    TestServer {
        base: format!("{scheme}://{addr}/midonet-api"),
        _rt: rt,
    }
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    pub body: Value,
    pub raw: String,
}

pub fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = match method {
        "GET" | "DELETE" => {
            let mut b = if method == "GET" {
                agent.get(url)
            } else {
                agent.delete(url)
            };
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.call().unwrap()
        }
        _ => {
            let mut b = if method == "POST" {
                agent.post(url)
            } else {
                agent.put(url)
            };
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.send(body.unwrap_or("{}")).unwrap()
        }
    };
    let status = resp.status().as_u16();
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = h("content-type").unwrap_or_default();
    let location = h("location");
    let mut resp = resp;
    let raw = resp.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        content_type,
        location,
        body,
        raw,
    }
}

pub const JSON: (&str, &str) = ("Content-Type", "application/json");

pub fn post(url: &str, body: &str) -> Reply {
    call("POST", url, &[JSON], Some(body))
}

pub fn get(url: &str) -> Reply {
    call("GET", url, &[], None)
}

/// Creates an object and returns its id.
pub fn create(url: &str, body: &str) -> String {
    let r = post(url, body);
    assert_eq!(r.status, 201, "POST {url} {body}: {}", r.raw);
    let loc = r.location.expect("Location header");
    let g = get(&loc);
    assert_eq!(g.status, 200);
    g.body["id"].as_str().unwrap_or_default().to_string()
}

/// Users from `name:password[:project[:role]],…`, as a users file with
/// their passwords hashed would give them.
pub fn users(spec: &str) -> std::collections::HashMap<String, cluster::auth::User> {
    let file: String = spec
        .split(',')
        .map(|u| {
            let mut f: Vec<&str> = u.split(':').collect();
            let hash = cluster::auth::hash_password(f[1]);
            f[1] = &hash;
            f.join(":") + "\n"
        })
        .collect();
    cluster::auth::parse_users(&file).unwrap()
}

/// Writes `o` through the topology, as an API call would.
pub fn put<T: model::Object>(app: &App, o: &T) {
    app.topo
        .write(|w| {
            w.tx.put(o);
            Ok(())
        })
        .unwrap();
}
