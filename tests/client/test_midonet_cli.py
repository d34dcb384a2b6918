"""The unmodified midonet-cli 5.2.0 (in -e mode) against `midonet server`."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def cli(server, command):
    env = dict(os.environ, MIDO_API_URL=server.url)
    p = subprocess.run([sys.executable, os.path.join(HERE, "midocli.py"), "-A", "-e", command],
                       env=env, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout.strip()


def ok(server, command):
    rc, out = cli(server, command)
    assert rc == 0, (command, out)
    return out


def test_cli_creates_lists_and_deletes(server):
    assert ok(server, "show system-state state") == "ACTIVE"
    r = ok(server, "router create name r1")
    b = ok(server, "bridge create name b1")
    c = ok(server, "chain create name c1")
    assert f"router {r} name r1 state up" in ok(server, "router list")
    assert f"bridge {b} name b1" in ok(server, "bridge list")
    ok(server, f"chain {c} add rule type accept proto 6 dst-port 22 pos 1")
    ok(server, f"chain {c} add rule type drop src 10.0.0.0/8 pos 2")
    ok(server, f"chain {c} add rule type dnat action accept dst 203.0.113.5 proto 6 dst-port 80 "
               f"target 10.0.0.10:8080 pos 1")
    rules = ok(server, f"chain {c} list rule").splitlines()
    assert len(rules) == 3
    assert "type dnat" in rules[0] and "pos 1" in rules[0] and "target 10.0.0.10:8080" in rules[0]
    assert "proto 6 dst-port 22" in rules[1] and "pos 2" in rules[1]
    assert "src 10.0.0.0/8" in rules[2] and "type drop" in rules[2]
    p = ok(server, f"router {r} add port address 10.0.0.1 net 10.0.0.0/24")
    assert "address 10.0.0.1 net 10.0.0.0/24" in ok(server, f"router {r} list port")
    ok(server, f"router {r} set infilter {c}")
    assert f"infilter {c}" in ok(server, f"router {r} show")
    bp = ok(server, f"bridge {b} add port")
    ok(server, f"router {r} port {p} set peer {bp}")
    assert f"peer {bp}" in ok(server, f"router {r} port {p} show")

    ok(server, f"delete chain {c}")
    ok(server, f"delete router {r}")
    ok(server, f"delete bridge {b}")
    assert ok(server, "router list") == ""
    assert ok(server, "bridge list") == ""
    assert ok(server, "chain list") == ""


def test_cli_unknown_object_fails(server):
    rc, out = cli(server, "router 00000000-0000-0000-0000-000000000001 show")
    assert rc == 1
    assert "Syntax error" in out
