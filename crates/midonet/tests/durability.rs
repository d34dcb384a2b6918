//! An acknowledged write survives `kill -9` of the server, and nothing
//! half-written is visible after the restart.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn start(port: u16, dir: &std::path::Path) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_midonet"))
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start midonet server");
    let server = Server { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("http://127.0.0.1:{port}/midonet-api/system_state");
    while Instant::now() < deadline {
        if agent().get(&url).call().is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server did not come up");
}

fn get(url: &str) -> Value {
    let mut r = agent().get(url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn acknowledged_writes_survive_kill_dash_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/midonet-api");
    let server = start(port, dir.path());

    let r = agent()
        .post(&format!("{base}/routers"))
        .header("Content-Type", "application/json")
        .send("{\"name\":\"r\"}")
        .unwrap();
    let router = r.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    // Writers create router ports (each also writes its LOCAL route, in one
    // transaction) until the server dies under them.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, stop, base, router) = (acked.clone(), stop.clone(), base.clone(), router.clone());
            std::thread::spawn(move || {
                let a = agent();
                for i in 0..100_000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = format!(
                        "{{\"type\":\"Router\",\"portAddress\":\"10.{w}.{}.{}\",\"networkAddress\":\"10.{w}.0.0\",\"networkLength\":16}}",
                        (i / 250) % 250,
                        i % 250 + 1
                    );
                    let res = a
                        .post(&format!("{base}/routers/{router}/ports"))
                        .header("Content-Type", "application/json")
                        .send(body.as_str());
                    match res {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let loc = r.headers()["location"].to_str().unwrap().to_string();
                            acked.lock().unwrap().push(loc.rsplit('/').next().unwrap().to_string());
                        }
                        _ => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    drop(server); // SIGKILL, mid-stream
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the writers got going ({} acknowledged)",
        acked.len()
    );

    let _server = start(port, dir.path());
    let ports = get(&format!("{base}/routers/{router}/ports"));
    let present: HashSet<String> = ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !present.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged ports lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );

    // Atomicity: every port has its LOCAL route and every LOCAL route its port.
    let routes = get(&format!("{base}/routers/{router}/routes"));
    let mut local: HashMap<String, usize> = HashMap::new();
    for r in routes.as_array().unwrap() {
        if r["type"] == "Local" {
            *local
                .entry(r["nextHopPort"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    for p in &present {
        assert_eq!(
            local.get(p),
            Some(&1),
            "port {p} has exactly one LOCAL route"
        );
    }
    assert_eq!(
        local.len(),
        present.len(),
        "no LOCAL route without its port"
    );
    // Tunnel keys were allocated durably: no key handed out twice.
    let keys: HashSet<u64> = ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tunnelKey"].as_u64().unwrap())
        .collect();
    assert_eq!(keys.len(), present.len());
    println!(
        "{} acknowledged, {} present after kill -9 and restart",
        acked.len(),
        present.len()
    );
}
