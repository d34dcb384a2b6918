"""Starts a real `midonet server` for the client tests and stops it by PID.

MIDONET_TEST_STORE=zookeeper runs every server on ZooKeeper instead of the
embedded store: one ZooKeeper (Debian's package) started here by PID for the
session, a chroot of its own per server (the same across its restarts)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from pyutil import BIN, free_port  # noqa: E402


ZK_JAR = "/usr/share/java/zookeeper.jar"
_zookeeper = {}


def zookeeper():
    """The session's ZooKeeper (host:port), started on first use."""
    if "addr" not in _zookeeper:
        if not os.path.exists(ZK_JAR):
            raise RuntimeError("MIDONET_TEST_STORE=zookeeper needs %s (apt-get install zookeeper)" % ZK_JAR)
        d = tempfile.mkdtemp(prefix="midonet-zk-")
        port = free_port()
        cfg = os.path.join(d, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write("tickTime=500\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
                    "admin.enableServer=false\n" % (d, port))
        log = open(os.path.join(d, "zk.log"), "ab")
        proc = subprocess.Popen(["java", "-Xmx256m", "-cp", ZK_JAR, "-Dzookeeper.log.dir=" + d,
                                 "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg],
                                stdout=log, stderr=subprocess.STDOUT)
        _zookeeper.update(proc=proc, dir=d, addr="127.0.0.1:%d" % port)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("ZooKeeper did not start")
                time.sleep(0.1)
    return _zookeeper["addr"]


@pytest.fixture(scope="session", autouse=True)
def _stop_zookeeper():
    yield
    if "proc" in _zookeeper:
        _zookeeper["proc"].kill()
        _zookeeper["proc"].wait()
        shutil.rmtree(_zookeeper["dir"], ignore_errors=True)


class Server:
    def __init__(self, *extra):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="midonet-test-")
        self.extra = list(extra)
        if os.environ.get("MIDONET_TEST_STORE") == "zookeeper":
            chroot = "/" + os.path.basename(self.data)
            self.extra += ["--store", "zookeeper", "--zookeeper", zookeeper() + chroot]
        self.proc = None
        self.url = "http://127.0.0.1:%d/midonet-api" % self.port

    def start(self):
        args = [BIN, "server", "--listen", "127.0.0.1:%d" % self.port, "--data-dir", self.data] + self.extra
        self.log = open(os.path.join(self.data, "server.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("midonet server exited with %s" % self.proc.returncode)
            try:
                urllib.request.urlopen(self.url + "/system_state", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # it answers (e.g. 401 in static mode)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("midonet server did not start")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def server():
    s = Server().start()
    yield s
    s.cleanup()


@pytest.fixture
def make_server():
    made = []

    def make(*extra):
        s = Server(*extra)
        made.append(s)
        return s

    yield make
    for s in made:
        s.cleanup()
