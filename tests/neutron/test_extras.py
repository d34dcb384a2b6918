"""Tags, subnet pools, quotas, sorting and pages: the `openstack` CLI where
it can (tags, subnet pools), the unmodified openstacksdk where the CLI needs
Keystone (its quota commands look the project up in Keystone first)."""
import json
import urllib.error
import urllib.request

import openstack as sdk
import pytest

from test_networks import ok


@pytest.fixture
def conn(server):
    return sdk.connect(auth_type="none", auth={"endpoint": server.endpoint})


def test_tags(openstack):
    ok(openstack, "network", "create", "--tag", "red", "--tag", "kuryr.net.uuid.lh:01", "t-net1")
    ok(openstack, "network", "create", "--tag", "blue", "t-net2")
    shown = json.loads(ok(openstack, "network", "show", "t-net1", "-f", "json"))
    assert sorted(shown["tags"]) == ["kuryr.net.uuid.lh:01", "red"]
    names = lambda *a: {n["Name"] for n in json.loads(ok(openstack, "network", "list", *a, "-f", "json"))}
    assert names("--tags", "red") == {"t-net1"}
    assert names("--any-tags", "red,blue") >= {"t-net1", "t-net2"}
    assert "t-net1" not in names("--not-tags", "red")
    ok(openstack, "network", "set", "--tag", "green", "t-net2")
    ok(openstack, "network", "unset", "--tag", "blue", "t-net2")
    assert json.loads(ok(openstack, "network", "show", "t-net2", "-f", "json"))["tags"] == ["green"]


def test_tags_one_at_a_time_as_kuryr_sends_them(conn, server):
    net = conn.network.create_network(name="t-net3")
    base = server.endpoint + "/v2.0/networks/%s/tags" % net.id
    req = urllib.request.Request(base + "/kuryr.net.uuid.lh:0123", method="PUT")
    assert urllib.request.urlopen(req, timeout=5).status == 201
    req = urllib.request.Request(base + "/kuryr.net.uuid.lh:0123", method="GET")
    assert urllib.request.urlopen(req, timeout=5).status == 204
    req = urllib.request.Request(base + "/absent", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 404


def test_subnet_pools(openstack):
    pool = json.loads(ok(openstack, "subnet", "pool", "create", "--pool-prefix", "10.90.0.0/16",
                         "--default-prefix-length", "24", "pool1", "-f", "json"))
    assert pool["prefixes"] == ["10.90.0.0/16"] and pool["default_prefixlen"] == 24
    ok(openstack, "network", "create", "sp-net")
    s1 = json.loads(ok(openstack, "subnet", "create", "--network", "sp-net", "--subnet-pool", "pool1", "sp1", "-f", "json"))
    s2 = json.loads(ok(openstack, "subnet", "create", "--network", "sp-net", "--subnet-pool", "pool1", "sp2", "-f", "json"))
    assert (s1["cidr"], s2["cidr"]) == ("10.90.0.0/24", "10.90.1.0/24")
    assert s1["subnetpool_id"] == pool["id"]
    # As kuryr: a CIDR of its own within the pool.
    s3 = json.loads(ok(openstack, "subnet", "create", "--network", "sp-net", "--subnet-pool", "pool1",
                       "--subnet-range", "10.90.7.0/24", "sp3", "-f", "json"))
    assert s3["cidr"] == "10.90.7.0/24"
    code, _, err = openstack("subnet", "create", "--network", "sp-net", "--subnet-pool", "pool1",
                             "--subnet-range", "10.91.0.0/24", "sp4")
    assert code != 0 and "400" in err and "not within" in err
    code, _, err = openstack("subnet", "pool", "delete", "pool1")
    assert code != 0 and "409" in err
    for s in ("sp1", "sp2", "sp3"):
        ok(openstack, "subnet", "delete", s)
    ok(openstack, "subnet", "pool", "delete", "pool1")


def test_quotas(conn):
    q = conn.network.get_quota("proj-q")
    assert q.networks == 100 and q.ports == 500, "Neutron's defaults"
    conn.network.update_quota("proj-q", networks=1)
    assert conn.network.get_quota("proj-q").networks == 1
    conn.network.create_network(name="q1", project_id="proj-q")
    with pytest.raises(sdk.exceptions.ConflictException) as e:
        conn.network.create_network(name="q2", project_id="proj-q")
    assert "Quota exceeded" in str(e.value)
    d = conn.network.get_quota("proj-q", details=True)
    assert d.networks["used"] == 1 and d.networks["limit"] == 1
    assert "proj-q" in [x.project_id for x in conn.network.quotas()]
    conn.network.delete_quota("proj-q")
    assert conn.network.get_quota("proj-q").networks == 100
    conn.network.create_network(name="q2", project_id="proj-q")


def test_pages_and_sorting(conn, server):
    for i in range(5):
        conn.network.create_network(name="page-%d" % i)
    names = [n.name for n in conn.network.networks(limit=2) if n.name.startswith("page-")]
    # Each exactly once: the SDK follows the next links page by page.
    assert sorted(names) == ["page-%d" % i for i in range(5)], names
    with urllib.request.urlopen(server.endpoint + "/v2.0/networks?limit=2&sort_key=name&sort_dir=desc", timeout=5) as r:
        body = json.load(r)
    assert len(body["networks"]) == 2 and body["networks_links"][0]["rel"] == "next"
    assert body["networks"][0]["name"] >= body["networks"][1]["name"]
