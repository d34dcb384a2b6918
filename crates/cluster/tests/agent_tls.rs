//! The topology service with mutual TLS (`--agent-ca`): an agent without a
//! certificate, or with one of another CA, is refused; an agent acts only
//! as the host its certificate names and writes only that host's state.
//! And, TLS or not, a session writes only its own host's state.

mod common;
use common::put;

use cluster::{App, AuthMode};
use model::{Bridge, Port};
use rcgen::{CertificateParams, Issuer, KeyPair};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use topology_proto::v1::{
    HostInfo, HostMessage, NatLease, PortState, SessionEvent, TableEntry, WatchRequest,
    host_message::Msg,
};
use uuid::Uuid;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// A certificate for `names` signed by `ca`, written to `dir`: (cert, key).
fn leaf(ca: &Ca, names: &[&str], dir: &Path, file: &str) -> (PathBuf, PathBuf) {
    let p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

struct Bed {
    app: Arc<App>,
    url: String,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    ca: Ca,
}

async fn bed(with_tls: bool) -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("agents");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (sc, sk) = leaf(&ca, &["127.0.0.1"], dir.path(), "server");
    let store: Arc<dyn nsdb::Store> = Arc::new(nsdb::LocalStore::in_memory());
    let app = Arc::new(App::new(store, AuthMode::None));
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = with_tls.then(|| tls::server_config(&sc, &sk, Some(&ca_file), &[b"h2"]).unwrap());
    tokio::spawn(cluster::topology_service::serve(
        app.clone(),
        addr,
        cfg,
        std::future::pending(),
    ));
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let scheme = if with_tls { "https" } else { "http" };
    Bed {
        app,
        url: format!("{scheme}://{addr}"),
        dir,
        ca_file,
        ca,
    }
}

impl Bed {
    /// An agent's TLS configuration with a certificate for `name` by `ca`.
    fn agent_tls(&self, ca: &Ca, name: &str) -> agent::channel::Tls {
        let (c, k) = leaf(ca, &[name], self.dir.path(), name);
        Some(Arc::new(tls::client_config(&self.ca_file, &c, &k).unwrap()))
    }
}

/// A session: what it sends, and its events.
struct Session {
    tx: mpsc::Sender<HostMessage>,
    rx: tonic::Streaming<SessionEvent>,
}

impl Session {
    async fn send(&mut self, m: Msg) {
        self.tx.send(HostMessage { msg: Some(m) }).await.unwrap();
    }

    /// The next event, or the status that ended the session.
    async fn next(&mut self) -> Result<SessionEvent, tonic::Status> {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.rx.next())
            .await
            .expect("an answer in time")
            .unwrap_or_else(|| Err(tonic::Status::cancelled("ended")))
    }
}

async fn session(c: &mut agent::channel::Client) -> Result<Session, tonic::Status> {
    let (tx, rx) = mpsc::channel(16);
    let rx = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Session { tx, rx })
}

fn hello(id: Uuid, name: &str) -> Msg {
    Msg::Hello(HostInfo {
        host_id: id.to_string(),
        name: name.into(),
        ..Default::default()
    })
}

/// Lets the server apply what was sent.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_need_a_certificate_of_the_agent_ca() {
    let b = bed(true).await;
    let refused = |r: Result<agent::channel::Client, agent::channel::ChannelError>| async {
        match r {
            Err(_) => true,
            Ok(mut c) => session(&mut c).await.is_err(),
        }
    };
    // No client certificate at all: a TLS client trusting the CA, no auth.
    let roots = tls::roots(&b.ca_file).unwrap();
    let mut anonymous = tls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    anonymous.alpn_protocols = vec![b"h2".to_vec()];
    let anonymous = Some(Arc::new(anonymous));
    assert!(
        refused(agent::channel::connect(&b.url, &anonymous).await).await,
        "no certificate"
    );
    // A certificate of another CA.
    let other = b.agent_tls(&ca("someone else"), "host-a");
    assert!(
        refused(agent::channel::connect(&b.url, &other).await).await,
        "another CA"
    );
    // Plain HTTP/2 to the TLS port.
    let plain = format!("http{}", b.url.trim_start_matches("https"));
    assert!(
        refused(agent::channel::connect(&plain, &None).await).await,
        "plain"
    );
    // The agent CA's certificate: served.
    let good = b.agent_tls(&b.ca, "host-a");
    let mut c = agent::channel::connect(&b.url, &good).await.unwrap();
    let mut s = session(&mut c).await.unwrap();
    s.send(hello(Uuid::new_v4(), "host-a")).await;
    assert!(s.next().await.unwrap().registered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_acts_only_as_the_host_its_certificate_names() {
    let b = bed(true).await;
    let (a_id, b_id) = (Uuid::new_v4(), Uuid::new_v4());
    let mut ca_ = agent::channel::connect(&b.url, &b.agent_tls(&b.ca, "host-a"))
        .await
        .unwrap();
    let mut cb = agent::channel::connect(&b.url, &b.agent_tls(&b.ca, "host-b"))
        .await
        .unwrap();
    let mut sb = session(&mut cb).await.unwrap();
    sb.send(hello(b_id, "host-b")).await;
    assert!(sb.next().await.unwrap().registered);

    // host-a's certificate does not make it host-b, under either id.
    for (id, name) in [(a_id, "host-b"), (b_id, "host-a")] {
        let mut s = session(&mut ca_).await.unwrap();
        s.send(hello(id, name)).await;
        let e = s.next().await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{name}: {e:?}");
    }
    let hb: model::Host = b.app.topo.get(b_id).unwrap().unwrap();
    assert_eq!(hb.name.as_deref(), Some("host-b"), "host-b was not renamed");

    // No watch of everything, nor of host-b's view.
    for host in [String::new(), b_id.to_string()] {
        let w = ca_
            .watch(WatchRequest {
                after_revision: 0,
                host_id: host.clone(),
            })
            .await;
        let e = w.map(|_| ()).expect_err("refused");
        assert_eq!(
            e.code(),
            tonic::Code::PermissionDenied,
            "watch {host:?}: {e:?}"
        );
    }
    // Its own view: served.
    let mut s = session(&mut ca_).await.unwrap();
    s.send(hello(a_id, "host-a")).await;
    assert!(s.next().await.unwrap().registered);
    let w = ca_
        .watch(WatchRequest {
            after_revision: 0,
            host_id: a_id.to_string(),
        })
        .await;
    assert!(w.is_ok(), "{:?}", w.err());
}

/// TLS or not: a session writes only its own host's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_writes_only_its_own_hosts_state() {
    let b = bed(false).await;
    let (a_id, b_id) = (Uuid::new_v4(), Uuid::new_v4());
    let br = Bridge {
        id: Uuid::new_v4(),
        ..Default::default()
    };
    put(&b.app, &br);
    let port = |host| Port {
        id: Uuid::new_v4(),
        device_id: br.id,
        host_id: Some(host),
        interface_name: Some("tap0".into()),
        ..Default::default()
    };
    let (pa, pb) = (port(a_id), port(b_id));
    put(&b.app, &pa);
    put(&b.app, &pb);
    let mut c = agent::channel::connect(&b.url, &None).await.unwrap();
    let mut sa = session(&mut c).await.unwrap();
    let mut sb = session(&mut c).await.unwrap();

    // Before its hello a session writes nothing.
    sa.send(Msg::Port(PortState {
        port_id: pa.id.to_string(),
        active: true,
        tunnel_key: 1,
    }))
    .await;
    assert_eq!(
        sa.next().await.expect_err("ended").code(),
        tonic::Code::FailedPrecondition
    );
    let mut sa = session(&mut c).await.unwrap();

    sa.send(hello(a_id, "host-a")).await;
    sb.send(hello(b_id, "host-b")).await;
    assert!(sa.next().await.unwrap().registered && sb.next().await.unwrap().registered);
    // The nil id is not a host (it would lead health checks).
    let mut sn = session(&mut c).await.unwrap();
    sn.send(hello(Uuid::nil(), "nil")).await;
    assert_eq!(
        sn.next().await.expect_err("refused").code(),
        tonic::Code::InvalidArgument
    );

    let active = |p: &Port| {
        b.app
            .topo
            .store
            .get_ephemeral(&format!("Port/{}/active", p.id))
    };
    for p in [&pa, &pb] {
        sa.send(Msg::Port(PortState {
            port_id: p.id.to_string(),
            active: true,
            tunnel_key: 7,
        }))
        .await;
    }
    let mac = |port: &Port, m: &str| TableEntry {
        table: format!("mac/{}/0", br.id),
        key: m.into(),
        value: port.id.to_string(),
        remove: false,
    };
    sb.send(Msg::Table(mac(&pb, "02:00:00:00:00:0b"))).await;
    // host-a: a MAC on host-b's port, and the removal of host-b's entry.
    sa.send(Msg::Table(mac(&pb, "02:00:00:00:00:0c"))).await;
    sa.send(Msg::Table(TableEntry {
        remove: true,
        ..mac(&pb, "02:00:00:00:00:0b")
    }))
    .await;
    sa.send(Msg::Table(mac(&pa, "02:00:00:00:00:0a"))).await;
    settle().await;
    assert!(active(&pa).is_some(), "a port bound to host-a is active");
    assert!(
        active(&pb).is_none(),
        "host-a cannot activate host-b's port"
    );
    let keys: Vec<String> = b
        .app
        .topo
        .store
        .table_entries(&format!("mac/{}/0", br.id))
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert!(keys.contains(&"02:00:00:00:00:0a".to_string()), "{keys:?}");
    assert!(
        keys.contains(&"02:00:00:00:00:0b".to_string()),
        "host-b's entry stays: {keys:?}"
    );
    assert!(!keys.contains(&"02:00:00:00:00:0c".to_string()), "{keys:?}");
    // The refusals did not end host-a's session.
    sa.send(Msg::Port(PortState {
        port_id: pa.id.to_string(),
        active: false,
        tunnel_key: 7,
    }))
    .await;
    settle().await;
    assert!(active(&pa).is_none(), "host-a's session still works");
}

/// NAT blocks are leased only of an address a NAT rule of the device
/// translates to (here one in a chain a router jumps to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_only_for_addresses_a_nat_rule_translates_to() {
    let b = bed(false).await;
    let (chain, jumped) = (Uuid::new_v4(), Uuid::new_v4());
    let rule = |id, chain_id, v: serde_json::Value| {
        let mut v = v;
        v["id"] = serde_json::json!(id);
        v["chainId"] = serde_json::json!(chain_id);
        let mut r: model::Rule = serde_json::from_value(v).unwrap();
        r.normalize();
        r
    };
    let (jump, snat) = (Uuid::new_v4(), Uuid::new_v4());
    put(
        &b.app,
        &rule(
            jump,
            chain,
            serde_json::json!({"type": "jump", "jumpChainId": jumped}),
        ),
    );
    put(
        &b.app,
        &rule(
            snat,
            jumped,
            serde_json::json!({"type": "snat", "flowAction": "accept",
        "natTargets": [{"addressFrom": "198.51.100.1", "addressTo": "198.51.100.4", "portFrom": 1024, "portTo": 65535}]}),
        ),
    );
    for (id, rules) in [(chain, vec![jump]), (jumped, vec![snat])] {
        put(
            &b.app,
            &model::Chain {
                id,
                rule_ids: rules,
                ..Default::default()
            },
        );
    }
    let router = model::Router {
        id: Uuid::new_v4(),
        outbound_filter_id: Some(chain),
        ..Default::default()
    };
    put(&b.app, &router);
    let mut c = agent::channel::connect(&b.url, &None).await.unwrap();
    let mut s = session(&mut c).await.unwrap();
    s.send(hello(Uuid::new_v4(), "host-a")).await;
    assert!(s.next().await.unwrap().registered);
    let mut n = 0;
    let mut ask = async |device: Uuid, ip: &str| {
        n += 1;
        s.send(Msg::Lease(NatLease {
            request_id: n,
            device_id: device.to_string(),
            ip: ip.into(),
            port_lo: 1024,
            port_hi: 65535,
            ..Default::default()
        }))
        .await;
        s.next().await.unwrap().lease.expect("a lease reply")
    };
    let r = ask(router.id, "198.51.100.3").await;
    assert!(r.granted, "a target of the router's SNAT rule: {r:?}");
    let r = ask(router.id, "198.51.100.9").await;
    assert!(!r.granted && r.message.contains("no NAT target"), "{r:?}");
    let r = ask(Uuid::new_v4(), "198.51.100.3").await;
    assert!(!r.granted && r.message.contains("does not exist"), "{r:?}");
}
