"""Starts a real `midonet server` for the client tests and stops it by PID."""
import os
import shutil
import signal
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


class Server:
    def __init__(self, *extra):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="midonet-test-")
        self.extra = list(extra)
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
