//! What the store tests share: a real ZooKeeper server started by PID on
//! loopback (Debian's `zookeeper` package; `scripts/test` and CI install
//! it), and small op builders.

#![allow(dead_code)] // each test binary uses its part

use nsdb::{Compaction, Op, ZkStore};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const JAR: &str = "/usr/share/java/zookeeper.jar";

pub struct ZooKeeper {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Whether the ZooKeeper tests run: without the jar they fail, unless
/// MIDONET_SKIP_ZOOKEEPER=1 (never set in CI).
pub fn zookeeper_wanted() -> bool {
    if std::env::var("MIDONET_SKIP_ZOOKEEPER").as_deref() == Ok("1") {
        eprintln!("skipped: MIDONET_SKIP_ZOOKEEPER=1 (never set in CI)");
        return false;
    }
    assert!(
        std::path::Path::new(JAR).exists(),
        "{JAR} is missing: apt-get install zookeeper (or MIDONET_SKIP_ZOOKEEPER=1)"
    );
    true
}

impl ZooKeeper {
    pub fn start() -> ZooKeeper {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("java")
            .args(["-Xmx256m", "-cp", JAR])
            .arg(format!("-Dzookeeper.log.dir={}", dir.path().display()))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("java runs ZooKeeper");
        let zk = ZooKeeper {
            child,
            port,
            _dir: dir,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "ZooKeeper did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        zk
    }

    pub fn connect(&self, chroot: &str) -> ZkStore {
        ZkStore::connect(&format!("127.0.0.1:{}{chroot}", self.port)).expect("connects")
    }

    pub fn connect_with(&self, chroot: &str, compaction: Compaction) -> ZkStore {
        ZkStore::connect_with(&format!("127.0.0.1:{}{chroot}", self.port), compaction)
            .expect("connects")
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn create(kind: &str, id: &str, data: &str) -> Op {
    Op::Create {
        kind: kind.into(),
        id: id.into(),
        data: data.as_bytes().to_vec(),
    }
}

pub fn put(kind: &str, id: &str, data: &str) -> Op {
    Op::Put {
        kind: kind.into(),
        id: id.into(),
        data: data.as_bytes().to_vec(),
    }
}

pub fn update(kind: &str, id: &str, data: &str, version: u64) -> Op {
    Op::Update {
        kind: kind.into(),
        id: id.into(),
        data: data.as_bytes().to_vec(),
        version: Some(version),
    }
}

/// Waits until `f` holds, for what another server wrote.
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(5), "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
