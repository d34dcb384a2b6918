"""Projects under static tokens (`--neutron-tokens`), through the unmodified
`openstack` CLI with `--os-auth-type admin_token`: a member sees and changes
only its project's resources, an admin sees everything, and a call without
a valid token is refused."""
import json


def ok(run, *args):
    code, out, err = run(*args)
    assert code == 0, "openstack %s: %s" % (" ".join(args[1:]), err)
    return out


def test_project_b_cannot_see_or_change_project_a(openstack_as):
    a = json.loads(ok(openstack_as, "tok-a", "network", "create", "net-a", "-f", "json"))
    assert a["project_id"] == "project-a", "the token's project"
    ok(openstack_as, "tok-a", "subnet", "create", "--network", "net-a", "--subnet-range", "10.80.0.0/24", "sub-a")
    ok(openstack_as, "tok-b", "network", "create", "net-b")
    names = {n["Name"] for n in json.loads(ok(openstack_as, "tok-b", "network", "list", "-f", "json"))}
    assert "net-a" not in names and "net-b" in names
    code, _, err = openstack_as("tok-b", "network", "show", a["id"])
    assert code != 0 and ("404" in err or "No Network found" in err)
    code, _, err = openstack_as("tok-b", "network", "delete", a["id"])
    assert code != 0
    code, _, err = openstack_as("tok-b", "network", "set", "--name", "mine", a["id"])
    assert code != 0
    code, _, err = openstack_as("tok-b", "port", "create", "--network", a["id"], "sneaky")
    assert code != 0 and ("404" in err or "No Network found" in err)
    code, _, err = openstack_as("tok-b", "network", "create", "--project", "project-a", "x")
    assert code != 0, "only an admin acts for another project"
    # Still there, unchanged, for its owner; the admin sees both.
    assert json.loads(ok(openstack_as, "tok-a", "network", "show", a["id"], "-f", "json"))["name"] == "net-a"
    every = {n["Name"] for n in json.loads(ok(openstack_as, "adm-token", "network", "list", "-f", "json"))}
    assert {"net-a", "net-b"} <= every
    # Each project its own default security group.
    ga = json.loads(ok(openstack_as, "tok-a", "security", "group", "list", "-f", "json"))
    gb = json.loads(ok(openstack_as, "tok-b", "security", "group", "list", "-f", "json"))
    assert [g["Name"] for g in ga] == ["default"] and [g["Name"] for g in gb] == ["default"]
    assert ga[0]["ID"] != gb[0]["ID"]


def test_a_bad_token_is_refused(openstack_as):
    code, _, err = openstack_as("wrong", "network", "list")
    assert code != 0 and "401" in err
