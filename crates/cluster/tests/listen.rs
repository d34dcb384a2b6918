//! The HTTP listener's hygiene: a slowloris client is cut off, a body not
//! sent in time is answered 408, connections past the cap are closed, links
//! come from the configured external URL (never the client's Host), and
//! with TLS on, plain HTTP is refused.

mod common;
use cluster::listen::{Limits, Listener};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn addr_of(base: &str) -> String {
    base.split("://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn limits(header: u64, body: u64, conns: usize) -> Listener {
    Listener {
        limits: Limits {
            max_connections: conns,
            header_timeout: Duration::from_secs(header),
            body_timeout: Duration::from_secs(body),
        },
        ..Listener::default()
    }
}

/// Whether the server closed `s` (a read returns end of stream or reset)
/// within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

/// A whole answer to a request written on a fresh connection to `addr`.
fn raw(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn a_slowloris_client_is_cut_off() {
    let s = start_with(cluster::AuthMode::None, limits(1, 60, 64));
    let addr = addr_of(&s.base);
    let mut c = TcpStream::connect(&addr).unwrap();
    let t = Instant::now();
    c.write_all(b"GET /midonet-api HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // One header byte every 200 ms: it never finishes its head.
    let mut cut = false;
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(200));
        if c.write_all(b"X").is_err() || closed_within(&mut c, Duration::from_millis(1)) {
            cut = true;
            break;
        }
    }
    assert!(cut, "still connected after {:?}", t.elapsed());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "cut after {took:?}"
    );
    // Meanwhile a normal client is served.
    assert!(
        raw(
            &addr,
            "GET /midonet-api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .starts_with("HTTP/1.1 200")
    );
}

#[test]
fn a_body_not_sent_in_time_is_408() {
    let s = start_with(cluster::AuthMode::None, limits(20, 1, 64));
    let addr = addr_of(&s.base);
    let mut c = TcpStream::connect(&addr).unwrap();
    c.write_all(
        b"POST /midonet-api/bridges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = vec![0u8; 4096];
    let n = c.read(&mut b).unwrap_or(0);
    let answer = String::from_utf8_lossy(&b[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let r = get(&format!("{}/bridges", s.base));
    assert_eq!(r.body.as_array().map(Vec::len), Some(0), "nothing was made");
}

#[test]
fn connections_past_the_cap_are_closed() {
    let s = start_with(cluster::AuthMode::None, limits(20, 60, 3));
    let addr = addr_of(&s.base);
    let mut held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(&addr).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)),
        "a fourth connection is closed"
    );
    assert!(
        !closed_within(&mut held[0], Duration::from_millis(300)),
        "the three held stay open"
    );
    held.pop();
    std::thread::sleep(Duration::from_millis(200));
    let r = raw(
        &addr,
        "GET /midonet-api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.1 200"),
        "a freed slot serves again: {r}"
    );
}

#[test]
fn links_come_from_the_external_url_not_from_host() {
    let s = start(cluster::AuthMode::None);
    let addr = addr_of(&s.base);
    let r = raw(
        &addr,
        "GET /midonet-api HTTP/1.1\r\nHost: evil.example\r\nX-Midonet-Origin: http://evil.example\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.contains(&format!("\"http://{addr}/midonet-api/bridges\"")),
        "{r}"
    );
    assert!(!r.contains("evil"), "{r}");

    let cfg = Listener {
        external_url: Some("https://api.example:8443".into()),
        ..Listener::default()
    };
    let s = start_with(cluster::AuthMode::None, cfg);
    let r = raw(
        &addr_of(&s.base),
        "GET /midonet-api HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.contains("\"https://api.example:8443/midonet-api/bridges\""),
        "{r}"
    );
}

/// A self-signed certificate for `127.0.0.1` in `dir`: (cert, key) paths.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[test]
fn with_tls_the_api_speaks_https_only() {
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let cfg = Listener {
        tls: Some(tls::acceptor(&cert, &key).unwrap()),
        ..Listener::default()
    };
    let s = start_with(cluster::AuthMode::None, cfg);
    let addr = addr_of(&s.base);

    let plain = raw(
        &addr,
        "GET /midonet-api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        !plain.starts_with("HTTP/"),
        "plain HTTP is refused: {plain}"
    );

    let roots = tls::roots(&cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(&addr).unwrap());
    tls.write_all(b"GET /midonet-api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains(&format!("\"https://{addr}/midonet-api/bridges\"")),
        "{out}"
    );
}
