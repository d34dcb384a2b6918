"""Starts a real `midonet server` (REST, topology service and Neutron API on
free loopback ports) for the `openstack` CLI tests, and stops it by PID."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pyutil import BIN, free_port  # noqa: E402


class Server:
    def __init__(self, *extra):
        self.data = tempfile.mkdtemp(prefix="midonet-neutron-")
        self.rest, self.topo, self.neutron = free_port(), free_port(), free_port()
        self.api = "http://127.0.0.1:%d/midonet-api" % self.rest
        self.endpoint = "http://127.0.0.1:%d" % self.neutron
        self.log = open(os.path.join(self.data, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [BIN, "server", "--listen", "127.0.0.1:%d" % self.rest,
             "--topology-listen", "127.0.0.1:%d" % self.topo,
             "--neutron-listen", "127.0.0.1:%d" % self.neutron, "--data-dir", self.data, *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("midonet server exited with %s" % self.proc.returncode)
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the Neutron API did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


TOKENS = "adm-token:admin:admin,tok-a:project-a:member,tok-b:project-b:member"


@pytest.fixture(scope="module")
def tokened_server():
    s = Server("--neutron-tokens", TOKENS)
    yield s
    s.stop()


def openstack_exe():
    exe = os.path.join(os.path.dirname(sys.executable), "openstack")
    if not os.path.exists(exe):
        exe = shutil.which("openstack")
    assert exe, "the openstack CLI is not installed (tests/neutron/requirements.txt)"
    return exe


@pytest.fixture
def openstack_as(tokened_server):
    """The `openstack` CLI with a static token (`--os-auth-type
    admin_token`): run(token, *args) -> (exit status, stdout, stderr)."""
    exe = openstack_exe()
    env = dict(os.environ)
    for k in ("OS_CLOUD", "OS_AUTH_URL", "OS_TOKEN", "OS_AUTH_TYPE", "OS_ENDPOINT"):
        env.pop(k, None)

    def run(token, *args):
        p = subprocess.run([exe, "--os-auth-type", "admin_token", "--os-endpoint", tokened_server.endpoint,
                            "--os-token", token, *args], env=env, capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr

    return run


@pytest.fixture
def openstack(server):
    """Runs the unmodified `openstack` CLI against the server without
    Keystone, as an operator would: returns (exit status, stdout, stderr)."""
    exe = openstack_exe()
    env = dict(os.environ, OS_AUTH_TYPE="none", OS_ENDPOINT=server.endpoint)
    for k in ("OS_CLOUD", "OS_AUTH_URL", "OS_TOKEN"):
        env.pop(k, None)

    def run(*args):
        p = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr

    return run
