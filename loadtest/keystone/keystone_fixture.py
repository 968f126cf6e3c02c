"""A real OpenStack Keystone on loopback for glint's Keystone tests (no fake).

Two commands, both run with the python of the venv made by scripts/keystone-venv.sh:

  keystone_fixture.py prepare TEMPLATE_DIR
      Writes keystone.conf (SQLite, fernet tokens), runs `keystone-manage db_sync`,
      `fernet_setup`, `credential_setup` and `bootstrap` (admin user, RegionOne, identity
      endpoint). Slow (migrations), so the venv script does it once and keeps the result.

  keystone_fixture.py serve TEMPLATE_DIR WORK_DIR
      Copies the prepared database and keys into WORK_DIR, serves Keystone's public WSGI app
      with waitress on 127.0.0.1:<free port>, points the identity endpoints at that port,
      creates the test identities below, prints ONE line of JSON describing them on stdout,
      then serves until stdin reaches EOF (the test process that started it exited), removes
      WORK_DIR (unless GLINT_KEEP_KEYSTONE=1) and exits.

Identities (domain Default, every password is PASSWORD):
  admin    admin on project admin (bootstrap)
  glint    service on project service    glint's own service user (validates tokens)
  nova     service on project service    sends X-Service-Token
  alice    member on alpha               bob    member on beta
  rita     reader on alpha               carol  member on gamma
Projects: admin, service, alpha, beta, gamma. Roles: admin, member, reader, service.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

PASSWORD = "secret-Pa55"
BOOTSTRAP_URL = "http://127.0.0.1:5000/v3/"

CONF = """[DEFAULT]
log_file = {work}/keystone.log
use_stderr = false
[database]
connection = sqlite:///{work}/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = {work}/fernet-keys
[credential]
key_repository = {work}/credential-keys
[identity]
# bcrypt at its lowest cost: test passwords, fast password auth
password_hash_rounds = 4
[cache]
enabled = false
[oslo_policy]
enforce_new_defaults = true
enforce_scope = true
"""


def write_conf(work):
    path = os.path.join(work, "keystone.conf")
    with open(path, "w") as f:
        f.write(CONF.format(work=work))
    return path


def manage(conf, *args):
    exe = os.path.join(os.path.dirname(sys.executable), "keystone-manage")
    subprocess.run(
        [exe, "--config-file", conf, *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def prepare(template):
    os.makedirs(template, exist_ok=True)
    conf = write_conf(template)
    user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    manage(conf, "db_sync")
    manage(conf, "fernet_setup", *user)
    manage(conf, "credential_setup", *user)
    manage(
        conf,
        "bootstrap",
        "--bootstrap-password", PASSWORD,
        "--bootstrap-admin-url", BOOTSTRAP_URL,
        "--bootstrap-internal-url", BOOTSTRAP_URL,
        "--bootstrap-public-url", BOOTSTRAP_URL,
        "--bootstrap-region-id", "RegionOne",
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """Just enough of Keystone's v3 API, with the admin's project-scoped token."""

    def __init__(self, base):
        self.base = base
        self.token = None

    def call(self, method, path, body=None, token=None, expect=(200, 201, 204)):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token or self.token:
            req.add_header("X-Auth-Token", token or self.token)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, r.headers, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            if e.code in expect:
                return e.code, e.headers, None
            raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:500]!r}") from e

    def login(self, user, project):
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "domain": {"id": "default"}, "password": PASSWORD}
                    },
                },
                "scope": {"project": {"name": project, "domain": {"id": "default"}}},
            }
        }
        _, headers, _ = self.call("POST", "/v3/auth/tokens", body, token="-")
        return headers["X-Subject-Token"]

    def find(self, kind, name):
        _, _, body = self.call("GET", f"/v3/{kind}?name={name}")
        items = body[kind]
        return items[0]["id"] if items else None

    def ensure(self, kind, singular, body):
        found = self.find(kind, body["name"])
        if found:
            return found
        _, _, created = self.call("POST", f"/v3/{kind}", {singular: body})
        return created[singular]["id"]


def wait_up(base, deadline):
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/v3", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("keystone did not answer within the deadline")


def serve(template, work):
    os.makedirs(work, exist_ok=True)
    for item in ("keystone.db", "fernet-keys", "credential-keys"):
        src = os.path.join(template, item)
        dst = os.path.join(work, item)
        (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, dst)
    conf = write_conf(work)
    os.environ["OS_KEYSTONE_CONFIG_FILES"] = conf
    sys.argv = sys.argv[:1]  # oslo.config parses the command line

    import waitress
    from keystone.server import wsgi

    app = wsgi.initialize_public_application()
    # Keystone on SQLite is not safe with concurrent requests: SQLite refuses (does not wait
    # for) a reader that turns writer, as a login does (it updates last_active_at), and
    # concurrent sessions have made role-assignment checks fail. Serve one request at a time
    # (each takes milliseconds); waitress's threads still accept and queue connections.
    lock = threading.Lock()
    keystone_app = app

    def app(environ, start_response):
        with lock:
            return list(keystone_app(environ, start_response))

    port = free_port()
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    wait_up(base, time.time() + 60)

    api = Api(base)
    api.token = api.login("admin", "admin")
    url = base + "/v3/"
    _, _, eps = api.call("GET", "/v3/endpoints")
    for ep in eps["endpoints"]:
        if ep["url"] == BOOTSTRAP_URL:
            api.call("PATCH", f"/v3/endpoints/{ep['id']}", {"endpoint": {"url": url}})

    roles = {r: api.ensure("roles", "role", {"name": r}) for r in ("admin", "member", "reader", "service")}
    projects = {}
    for p in ("admin", "service", "alpha", "beta", "gamma"):
        projects[p] = api.ensure("projects", "project", {"name": p, "domain_id": "default"})
    grants = {
        "glint": ("service", "service"),
        "nova": ("service", "service"),
        "alice": ("alpha", "member"),
        "bob": ("beta", "member"),
        "rita": ("alpha", "reader"),
        "carol": ("gamma", "member"),
    }
    users = {"admin": {"id": api.find("users", "admin"), "project": "admin", "role": "admin"}}
    for name, (project, role) in grants.items():
        uid = api.ensure(
            "users", "user", {"name": name, "domain_id": "default", "password": PASSWORD}
        )
        api.call("PUT", f"/v3/projects/{projects[project]}/users/{uid}/roles/{roles[role]}")
        users[name] = {"id": uid, "project": project, "role": role}

    print(
        json.dumps(
            {
                "auth_url": url,
                "base": base,
                "password": PASSWORD,
                "projects": projects,
                "users": users,
                "roles": roles,
                "pid": os.getpid(),
                "log": os.path.join(work, "keystone.log"),
            }
        ),
        flush=True,
    )
    # serve until whoever started us goes away
    try:
        while sys.stdin.read(4096):
            pass
    finally:
        if os.environ.get("GLINT_KEEP_KEYSTONE") != "1":
            shutil.rmtree(work, ignore_errors=True)
        os._exit(0)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "prepare":
        prepare(os.path.abspath(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
