"""The `openstack` CLI and openstacksdk with real password auth through a real Keystone.

Run by glint/tests/keystone_access.rs against a glint in keystone mode. Env:
  GLINT_ENDPOINT            the glint under test (registered here as the catalog's image endpoint)
  GLINT_SCRATCH             scratch directory
  OS_AUTH_URL               the test Keystone, http://127.0.0.1:<port>/v3/
  GLINT_KEYSTONE_PASSWORD   the test users' password

The clients find glint only through the Keystone catalog (no endpoint override).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(["openstack"])
import openstack  # noqa: E402

SUITE = "keystone"
ENDPOINT, SCRATCH = cc.env_config()
AUTH_URL = os.environ["OS_AUTH_URL"]
PASSWORD = os.environ["GLINT_KEYSTONE_PASSWORD"]
OSC = os.path.join(os.path.dirname(sys.executable), "openstack")


def conn(user, project):
    return openstack.connection.Connection(
        auth={
            "auth_url": AUTH_URL,
            "username": user,
            "password": PASSWORD,
            "project_name": project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        region_name="RegionOne",
        identity_interface="public",
        image_api_version="2",
    )


def osc(user, project, *args, check=True):
    cmd = [
        OSC,
        "--os-auth-url", AUTH_URL,
        "--os-username", user,
        "--os-password", PASSWORD,
        "--os-project-name", project,
        "--os-user-domain-name", "Default",
        "--os-project-domain-name", "Default",
        "--os-region-name", "RegionOne",
        "--os-identity-api-version", "3",
        "--os-image-api-version", "2",
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check and r.returncode != 0:
        raise cc.CheckFailed(f"{' '.join(args)}: exit {r.returncode}: {r.stderr[-2000:]}")
    return r


def check(what, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        print(f"FAIL {SUITE}: {what}: {e}", flush=True)
        sys.exit(1)
    print(f"ok   {SUITE}: {what}", flush=True)


def register_catalog():
    admin = conn("admin", "admin")
    svc = admin.identity.find_service("image")
    if svc is None:
        svc = admin.identity.create_service(name="glance", type="image")
    for ep in list(admin.identity.endpoints(service_id=svc.id)):
        admin.identity.delete_endpoint(ep)
    for interface in ("public", "internal", "admin"):
        admin.identity.create_endpoint(
            service_id=svc.id, interface=interface, url=ENDPOINT, region_id="RegionOne"
        )


def main():
    check("image service registered in the catalog", register_catalog)

    disk = os.path.join(SCRATCH, "disk.img")
    data = os.urandom(3 * cc.MiB + 17)
    with open(disk, "wb") as f:
        f.write(data)
    state = {}

    def osc_create():
        r = osc("alice", "alpha", "image", "create", "--disk-format", "raw",
                "--container-format", "bare", "--file", disk, "-f", "value", "-c", "id",
                "ks-osc")
        state["id"] = r.stdout.strip()

    check("openstack image create --file (alice, password auth)", osc_create)

    def osc_list_and_save():
        r = osc("alice", "alpha", "image", "list", "-f", "value", "-c", "ID")
        assert state["id"] in r.stdout.split(), r.stdout
        out = os.path.join(SCRATCH, "out.img")
        osc("alice", "alpha", "image", "save", "--file", out, state["id"])
        with open(out, "rb") as f:
            assert f.read() == data, "downloaded bytes differ"

    check("openstack image list / image save", osc_list_and_save)

    def osc_other_project():
        r = osc("bob", "beta", "image", "show", state["id"], check=False)
        assert r.returncode != 0, "bob sees alice's private image"
        r = osc("bob", "beta", "image", "list", "-f", "value", "-c", "ID")
        assert state["id"] not in r.stdout.split()

    check("another project cannot see it (openstack)", osc_other_project)

    def osc_reader():
        r = osc("rita", "alpha", "image", "create", "--disk-format", "raw",
                "--container-format", "bare", "nope", check=False)
        assert r.returncode != 0, "a reader created an image"
        r = osc("rita", "alpha", "image", "show", "-f", "value", "-c", "name", state["id"])
        assert r.stdout.strip() == "ks-osc", r.stdout

    check("reader reads, cannot create (openstack)", osc_reader)

    def sdk_roundtrip():
        c = conn("carol", "gamma")
        img = c.image.create_image(name="ks-sdk", data=data[: cc.MiB], disk_format="raw",
                                   container_format="bare")
        state["sdk"] = img.id
        got = c.image.download_image(img)
        assert bytes(got.content if hasattr(got, "content") else got) == data[: cc.MiB]
        c.image.update_image(img, name="ks-sdk2")
        assert c.image.get_image(img).name == "ks-sdk2"
        assert img.id in [i.id for i in c.image.images()]
        assert alice_id() not in [i.id for i in c.image.images()]

    def alice_id():
        return state["id"]

    check("openstacksdk create/upload/download/update/list (carol)", sdk_roundtrip)

    def sdk_forbidden():
        c = conn("alice", "alpha")
        try:
            c.image.get_image(state["sdk"])
        except openstack.exceptions.NotFoundException:
            return
        raise AssertionError("alice sees carol's private image")

    check("openstacksdk: another project gets 404", sdk_forbidden)

    # Sharing with the CLI (GLANCE-API.md §1.6): these commands resolve the project through
    # Keystone, which is why they need a real one. Project ids are passed so that members need
    # no identity-lookup rights (osc falls back to the id when a lookup is forbidden).
    def project_id(name):
        return conn("admin", "admin").identity.find_project(name).id

    def osc_sharing():
        beta = project_id("beta")
        alpha = project_id("alpha")
        iid = state["id"]
        osc("alice", "alpha", "image", "set", "--shared", "--property", "os_distro=cirros", iid)
        r = osc("alice", "alpha", "image", "show", "-f", "value", "-c", "visibility", iid)
        assert r.stdout.strip() == "shared", r.stdout
        osc("alice", "alpha", "image", "unset", "--property", "os_distro", iid)
        r = osc("alice", "alpha", "image", "show", "-f", "json", iid)
        assert "os_distro" not in r.stdout, r.stdout
        osc("alice", "alpha", "image", "add", "project", iid, beta)
        r = osc("bob", "beta", "image", "list", "-f", "value", "-c", "ID")
        assert iid not in r.stdout.split(), "listed before the member accepted"
        osc("bob", "beta", "image", "set", "--accept", "--project", beta, iid)
        r = osc("bob", "beta", "image", "list", "-f", "value", "-c", "ID")
        assert iid in r.stdout.split(), "not listed after accepting: " + r.stdout
        r = osc("alice", "alpha", "image", "member", "list", "-f", "json", iid)
        members = {m["Member ID"]: m["Status"] for m in __import__("json").loads(r.stdout)}
        assert members == {beta: "accepted"}, members
        out = os.path.join(SCRATCH, "shared.img")
        osc("bob", "beta", "image", "save", "--file", out, iid)
        with open(out, "rb") as f:
            assert f.read() == data, "member downloaded different bytes"
        osc("alice", "alpha", "image", "remove", "project", iid, beta)
        r = osc("bob", "beta", "image", "show", iid, check=False)
        assert r.returncode != 0, "still visible after remove project"
        assert alpha != beta

    check("openstack image set --shared/unset, add project, set --accept, member list, "
          "remove project", osc_sharing)

    def cleanup():
        conn("carol", "gamma").image.delete_image(state["sdk"])
        osc("alice", "alpha", "image", "delete", state["id"])

    check("delete (sdk and openstack)", cleanup)


if __name__ == "__main__":
    main()
