"""What the Python test suites share: the binary under test and free ports."""
import os
import socket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("MIDONET_BIN", os.path.join(ROOT, "target", "debug", "midonet"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
