"""Task environments over HTTP: /api/v1/org/{org}/ws/{ws}/environments.

Provision (token shown once), list, get, delete, synchronous execute; the canonical error
envelope ({"code": int, "detail", "type"}, 422 with "errors"); API keys (Bearer or X-API-Key,
org restrictions) and environment tokens; isolation by uid (the suite runs as root);
durability across daemon and bridge restarts; rate and concurrency limits; output cap.

Every stack here is private (its own bus, --state-dir, api-keys file and uid range).
"""
import calendar
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time

import pytest
import requests

import harness
from harness import wait_until

TIMEOUT = 15 * harness.SLOWDOWN
HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
ENV_FIELDS = {"id", "org", "workspace", "name", "created_at", "state", "env"}
EXEC_FIELDS = {"exit_code", "output", "truncated", "timed_out"}

KEY = secrets.token_hex(16)              # valid for every org
KEY_LIMITED = secrets.token_hex(16)      # valid only for orgs "orgx" and "orgy"
LEAK_VAR = "EXECD_ENVTEST_DAEMON_ONLY"

_uid_base = [620000]


def next_uid_range(n=1000):
    """A private uid range per stack, so that two live daemons never hand out one uid."""
    lo = _uid_base[0]
    _uid_base[0] += n
    return lo, lo + n - 1


# --------------------------------------------------------------------------- helpers
class LoggedBridge(harness.Bridge):
    """harness.Bridge, but its output goes to a log file (G_MESSAGES_DEBUG=all) instead of
    /dev/null, so that the tests can look for tokens in it."""

    def __init__(self, bus, *args):
        self.bus = bus
        self.token = secrets.token_hex(16)
        self.token_file = os.path.join(bus.dir, f"token-{secrets.token_hex(4)}")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.args = list(args)
        self.log_path = os.path.join(bus.dir, f"bridge-{secrets.token_hex(4)}.log")
        env = dict(os.environ, G_MESSAGES_DEBUG="all")
        self.proc = subprocess.Popen(
            [harness.BRIDGE, f"--bus-address={bus.address}", "--listen=127.0.0.1:0",
             f"--token-file={self.token_file}", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        m = harness._wait_for_line(self.proc, r"listening on http://127\.0\.0\.1:(\d+)", 10)
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(self.log_path, "ab")
        self._drain = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=self._log)

    def stop(self, sig=signal.SIGTERM):
        super().stop(sig)
        self._log.close()

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class EnvStack:
    """bus + daemon (--state-dir, uid range) + bridge (--api-keys), with request helpers."""

    def __init__(self, daemon_args=(), bridge_args=(), daemon_env=None, uid_range=None):
        self.bus = harness.Bus()
        self.daemon = self.bridge = None
        self.bridges = []
        self.state_dir = tempfile.mkdtemp(prefix="execd-envstate-")
        # Environment uids must be able to reach STATE/environments/<id>.
        os.chmod(self.state_dir, 0o711)
        self.uid_min, self.uid_max = uid_range or next_uid_range()
        self.keys_file = os.path.join(self.bus.dir, "api-keys")
        with open(self.keys_file, "w") as f:
            f.write("# API keys of the environments tests\n\n")
            f.write(f"{KEY}\n")
            f.write("# a key limited to two orgs\n")
            f.write(f"{KEY_LIMITED} orgx,orgy\n")
        os.chmod(self.keys_file, 0o600)
        self.daemon_args = [f"--state-dir={self.state_dir}", f"--env-uid-min={self.uid_min}",
                            f"--env-uid-max={self.uid_max}", *daemon_args]
        self.bridge_args = [f"--api-keys={self.keys_file}", *bridge_args]
        try:
            self.daemon = harness.Daemon(self.bus, *self.daemon_args, env=daemon_env)
            self.start_bridge()
        except Exception:
            self.stop()
            raise

    def start_bridge(self):
        self.bridge = LoggedBridge(self.bus, *self.bridge_args)
        self.bridges.append(self.bridge)
        self.url = self.bridge.url

    def restart_bridge(self):
        self.bridge.stop()
        self.start_bridge()

    def restart_daemon(self):
        self.daemon.stop()
        self.daemon.start()

    def stop(self):
        for b in self.bridges:
            if b.proc.poll() is None:
                b.stop()
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.stop()
        self.bus.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def env_dir(self, eid):
        return os.path.join(self.state_dir, "environments", eid)

    # -- requests ----------------------------------------------------------------------------
    def request(self, method, path, key=KEY, key_style="bearer", headers=None,
                timeout=TIMEOUT, **kw):
        h = {}
        if key is not None:
            if key_style == "bearer":
                h["Authorization"] = f"Bearer {key}"
            else:
                h["X-API-Key"] = key
        h.update(headers or {})
        return requests.request(method, self.url + path, headers=h, timeout=timeout,
                                allow_redirects=False, **kw)

    def provision(self, org, ws, name=None, env=None, **kw):
        body = {"name": name or f"env-{secrets.token_hex(4)}"}
        if env is not None:
            body["env"] = env
        r = self.request("POST", base(org, ws), json=body, **kw)
        assert r.status_code == 201, (r.status_code, r.text[:500])
        assert is_json(r), r.headers
        return r.json()

    def execute_raw(self, org, ws, eid, token, body=None, token_header="X-Environment-Token",
                    timeout=TIMEOUT, **kw):
        headers = dict(kw.pop("headers", None) or {})
        if token is not None:
            headers[token_header] = token
        return self.request("POST", f"{base(org, ws)}/{eid}/execute", json=body,
                            headers=headers, timeout=timeout, **kw)

    def execute(self, e, command, timeout_sec=None, http_timeout=None, **kw):
        """Execute on the environment e (a provision answer); assert 200; return the body."""
        body = {"command": command}
        if timeout_sec is not None:
            body["timeout_sec"] = timeout_sec
        r = self.execute_raw(e["org"], e["workspace"], e["id"], e["token"], body,
                             timeout=http_timeout or (timeout_sec or 30) + 15, **kw)
        return check_exec(r)


def base(org, ws):
    return f"/api/v1/org/{org}/ws/{ws}/environments"


def is_json(r):
    return r.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/json"


def check_exec(r):
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert is_json(r), r.headers
    b = r.json()
    assert EXEC_FIELDS <= set(b), b
    assert isinstance(b["exit_code"], int) and not isinstance(b["exit_code"], bool), b
    assert isinstance(b["output"], str), b
    assert isinstance(b["truncated"], bool), b
    assert isinstance(b["timed_out"], bool), b
    return b


def assert_envelope(r, status, etype):
    """The canonical error envelope: {"code": status, "detail": str, "type": etype}."""
    assert r.status_code == status, (r.status_code, r.headers, r.text[:500])
    assert is_json(r), f"Content-Type {r.headers.get('Content-Type')!r}, body {r.text[:300]!r}"
    b = r.json()
    assert isinstance(b, dict), b
    assert b.get("code") == status and not isinstance(b.get("code"), bool), b
    assert isinstance(b.get("detail"), str) and b["detail"], b
    if etype is None:
        assert isinstance(b.get("type"), str) and b["type"], b
    else:
        assert b.get("type") == etype, b
    if status == 422:
        errs = b.get("errors")
        assert isinstance(errs, list) and errs, b
        for e in errs:
            assert isinstance(e, dict), b
            assert isinstance(e.get("loc"), list) and e["loc"], b
            assert all(isinstance(x, (str, int)) for x in e["loc"]), b
            assert isinstance(e.get("msg"), str) and e["msg"], b
            assert isinstance(e.get("type"), str) and e["type"], b
    return b


def parse_time(s):
    m = RFC3339.match(s)
    assert m, f"not RFC 3339: {s!r}"
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(sec)))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs + (int(frac) / 10 ** len(frac) if frac else 0)


def public(e):
    """A provision answer without its token: what GET and list must show."""
    return {k: v for k, v in e.items() if k != "token"}


def proc_uid(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()[0]


def pid_alive(pid):
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X")


def pids_of_uid(uid):
    return [p for p, *_ in harness.all_procs() if proc_uid(p) == uid and pid_alive(p)]




class Call(threading.Thread):
    """Run f() in a thread; result or exception in .result / .error."""

    def __init__(self, f):
        super().__init__(daemon=True)
        self.f = f
        self.result = self.error = None
        self.t0 = self.t1 = None

    def run(self):
        self.t0 = time.monotonic()
        try:
            self.result = self.f()
        except Exception as e:  # noqa: BLE001
            self.error = e
        self.t1 = time.monotonic()


def files_under(root):
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            yield os.path.join(dirpath, n)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def es():
    s = EnvStack(daemon_env=dict(os.environ, **{LEAK_VAR: "leaked-value"}))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def env1(es):
    """One environment shared by the read-only tests."""
    return es.provision("acme", "main", f"shared-{secrets.token_hex(3)}", env={"FOO": "bar baz"})


@pytest.fixture
def new_env(es):
    def make(org="acme", ws="main", **kw):
        return es.provision(org, ws, **kw)
    return make


# --------------------------------------------------------------------------- provision
def test_provision_answer(es):
    name = f"p-{secrets.token_hex(4)}"
    t0 = time.time()
    r = es.request("POST", base("acme", "prov"), json={"name": name, "env": {"A": "1", "B": "x y"}})
    assert r.status_code == 201, (r.status_code, r.text)
    assert is_json(r), r.headers
    e = r.json()
    assert ENV_FIELDS | {"token"} <= set(e), e
    assert HEX32.match(e["id"]), e
    assert HEX64.match(e["token"]), e
    assert e["org"] == "acme" and e["workspace"] == "prov" and e["name"] == name, e
    assert e["state"] == "ready", e
    assert e["env"] == {"A": "1", "B": "x y"}, e
    assert abs(parse_time(e["created_at"]) - t0) < 10, e
    d = es.env_dir(e["id"])
    assert os.path.isdir(d), f"{d} was not created"


def test_provision_env_is_optional(es):
    e = es.provision("acme", "prov")
    assert e["env"] == {}, e


def test_provision_ids_and_tokens_differ(es):
    a, b = es.provision("acme", "prov"), es.provision("acme", "prov")
    assert a["id"] != b["id"]
    assert a["token"] != b["token"]


def test_provision_name_boundaries(es):
    for name in ("a", "A" * 64, "x.y_z-9"):
        e = es.provision("acme", f"names-{secrets.token_hex(3)}", name)
        assert e["name"] == name


def test_duplicate_name_is_409(es):
    name = f"dup-{secrets.token_hex(4)}"
    es.provision("acme", "dup", name)
    r = es.request("POST", base("acme", "dup"), json={"name": name})
    assert_envelope(r, 409, "conflict")
    # the same name in another workspace, or another org, is fine
    es.provision("acme", "dup2", name)
    es.provision("other", "dup", name)
    # and the list of the first workspace has it once
    r = es.request("GET", base("acme", "dup"))
    assert [x["name"] for x in r.json()["environments"]].count(name) == 1


# --------------------------------------------------------------------------- list / get
def test_list(es):
    ws = f"list-{secrets.token_hex(3)}"
    empty = es.request("GET", base("acme", ws))
    assert empty.status_code == 200, empty.text
    assert is_json(empty)
    assert empty.json() == {"environments": []}
    a = es.provision("acme", ws, "a", env={"K": "v"})
    b = es.provision("acme", ws, "b")
    es.provision("acme", ws + "x", "c")       # another workspace
    es.provision("other", ws, "d")            # another org
    r = es.request("GET", base("acme", ws))
    assert r.status_code == 200, r.text
    assert is_json(r)
    body = r.json()
    assert set(body) == {"environments"}, body
    envs = body["environments"]
    assert sorted(envs, key=lambda x: x["name"]) == [public(a), public(b)], envs
    for x in envs:
        assert set(x) == ENV_FIELDS, x
    assert a["token"] not in r.text and b["token"] not in r.text


def test_get(es, env1):
    r = es.request("GET", f"{base('acme', 'main')}/{env1['id']}")
    assert r.status_code == 200, r.text
    assert is_json(r)
    assert r.json() == public(env1)
    assert "token" not in r.json()
    assert env1["token"] not in r.text


def test_get_unknown_is_404(es, env1):
    assert_envelope(es.request("GET", f"{base('acme', 'main')}/{secrets.token_hex(16)}"),
                    404, "not_found")
    assert_envelope(es.request("GET", f"{base('acme', 'main')}/not-an-id"), 404, "not_found")
    # an environment is only visible under its own org and workspace
    assert_envelope(es.request("GET", f"{base('acme', 'other')}/{env1['id']}"), 404, "not_found")
    assert_envelope(es.request("GET", f"{base('other', 'main')}/{env1['id']}"), 404, "not_found")
    # nor can it be executed or deleted there
    r = es.execute_raw("other", "main", env1["id"], env1["token"], {"command": "true"})
    assert_envelope(r, 404, "not_found")
    r = es.request("DELETE", f"{base('acme', 'other')}/{env1['id']}")
    assert_envelope(r, 404, "not_found")
    assert es.request("GET", f"{base('acme', 'main')}/{env1['id']}").status_code == 200


# --------------------------------------------------------------------------- delete
def test_delete(es):
    e = es.provision("acme", "del", env={"X": "1"})
    assert es.execute(e, "echo hi > file")["exit_code"] == 0
    d = es.env_dir(e["id"])
    assert os.path.exists(os.path.join(d, "file"))
    url = f"{base('acme', 'del')}/{e['id']}"
    r = es.request("DELETE", url)
    assert r.status_code == 200, r.text
    assert is_json(r)
    assert r.json() == {"id": e["id"], "deleted": True}
    assert_envelope(es.request("GET", url), 404, "not_found")
    assert e["id"] not in [x["id"] for x in es.request("GET", base("acme", "del")).json()["environments"]]
    assert not os.path.exists(d), f"{d} still exists after delete"
    assert_envelope(es.request("DELETE", url), 404, "not_found")
    r = es.execute_raw("acme", "del", e["id"], e["token"], {"command": "true"})
    assert_envelope(r, 404, "not_found")


def test_delete_kills_running_execute(es):
    e = es.provision("acme", "del")
    uid = int(es.execute(e, "id -u")["output"].strip())
    c = Call(lambda: es.execute_raw("acme", "del", e["id"], e["token"],
                                    {"command": "sleep 30 & sleep 31; echo done", "timeout_sec": 60},
                                    timeout=60))
    c.start()
    assert wait_until(lambda: len(pids_of_uid(uid)) >= 2, 5), "the execute did not start"
    t0 = time.monotonic()
    r = es.request("DELETE", f"{base('acme', 'del')}/{e['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": e["id"], "deleted": True}
    c.join(10)
    assert not c.is_alive(), "the execute in flight did not end after DELETE"
    assert time.monotonic() - t0 < 10
    if c.error is None:
        assert "done" not in c.result.text, c.result.text
    assert wait_until(lambda: not pids_of_uid(uid), 3), \
        f"processes of the deleted environment survive: {pids_of_uid(uid)}"
    assert not os.path.exists(es.env_dir(e["id"]))


def test_no_tmp_files_left_in_state_dir(es):
    e = es.provision("acme", "tmpcheck")
    es.request("DELETE", f"{base('acme', 'tmpcheck')}/{e['id']}")
    es.provision("acme", "tmpcheck")
    left = [p for p in files_under(es.state_dir) if ".tmp" in os.path.basename(p)]
    assert not left, left


# --------------------------------------------------------------------------- auth
def test_api_key_both_spellings(es, env1):
    url = base("acme", "main")
    assert es.request("GET", url, key_style="bearer").status_code == 200
    assert es.request("GET", url, key_style="x-api-key").status_code == 200
    e = es.provision("acme", "keys", key_style="x-api-key")
    assert es.execute(e, "echo ok", key_style="x-api-key")["output"] == "ok\n"


def test_no_execd_access_token_needed(es, env1):
    # None of the requests here sends X-EXECD-ACCESS-TOKEN; a wrong one does not matter either.
    r = es.request("GET", base("acme", "main"), headers={"X-EXECD-ACCESS-TOKEN": "wrong"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("how", ["missing", "wrong-bearer", "wrong-x-api-key", "not-bearer"])
def test_bad_api_key_is_401(es, env1, how):
    if how == "missing":
        kw = {"key": None}
    elif how == "wrong-bearer":
        kw = {"key": secrets.token_hex(16)}
    elif how == "wrong-x-api-key":
        kw = {"key": secrets.token_hex(16), "key_style": "x-api-key"}
    else:
        kw = {"key": None, "headers": {"Authorization": f"Basic {KEY}"}}
    e = env1
    one = f"{base('acme', 'main')}/{e['id']}"
    for method, path, body, extra in [
            ("GET", base("acme", "main"), None, {}),
            ("POST", base("acme", "main"), {"name": f"n-{secrets.token_hex(3)}"}, {}),
            ("GET", one, None, {}),
            ("DELETE", one, None, {}),
            ("POST", one + "/execute", {"command": "true"}, {"X-Environment-Token": e["token"]})]:
        h = dict(kw.get("headers", {}), **extra)
        r = es.request(method, path, json=body, **dict(kw, headers=h))
        assert_envelope(r, 401, "authentication_error")
    # nothing happened
    assert es.request("GET", one).status_code == 200


def test_key_limited_to_other_orgs_is_403(es):
    r = es.request("GET", base("acme", "main"), key=KEY_LIMITED)
    assert_envelope(r, 403, "forbidden")
    r = es.request("POST", base("acme", "main"), key=KEY_LIMITED, json={"name": "limited"})
    assert_envelope(r, 403, "forbidden")
    # its own orgs work
    e = es.provision("orgy", "w", key=KEY_LIMITED)
    assert es.request("GET", base("orgx", "w"), key=KEY_LIMITED).status_code == 200
    assert es.execute(e, "echo y", key=KEY_LIMITED)["output"] == "y\n"
    # and an environment of acme cannot be reached with it
    a = es.provision("acme", "lim")
    r = es.execute_raw("acme", "lim", a["id"], a["token"], {"command": "true"}, key=KEY_LIMITED)
    assert_envelope(r, 403, "forbidden")
    r = es.request("DELETE", f"{base('acme', 'lim')}/{a['id']}", key=KEY_LIMITED)
    assert_envelope(r, 403, "forbidden")
    assert es.request("GET", f"{base('acme', 'lim')}/{a['id']}").status_code == 200


def test_environment_token(es, new_env):
    e = new_env(ws="tok")
    other = new_env(ws="tok")
    ex = lambda token, **kw: es.execute_raw("acme", "tok", e["id"], token,  # noqa: E731
                                            {"command": "echo ran"}, **kw)
    assert_envelope(ex(None), 401, "authentication_error")
    assert_envelope(ex(""), 401, "authentication_error")
    assert_envelope(ex(secrets.token_hex(32)), 403, "forbidden")
    assert_envelope(ex(other["token"]), 403, "forbidden")      # another environment's token
    assert_envelope(ex(e["token"][:-1]), 403, "forbidden")
    # the token is accepted bare or with a Bearer prefix
    assert check_exec(ex(e["token"]))["output"] == "ran\n"
    assert check_exec(ex("Bearer " + e["token"]))["output"] == "ran\n"


# --------------------------------------------------------------------------- execute
def test_execute_output_and_exit_codes(es, env1):
    b = es.execute(env1, "echo out; echo err >&2")
    assert b["exit_code"] == 0 and not b["truncated"] and not b["timed_out"], b
    assert "out\n" in b["output"] and "err\n" in b["output"], b
    assert es.execute(env1, "exit 3")["exit_code"] == 3
    assert es.execute(env1, "false")["exit_code"] == 1
    assert es.execute(env1, "kill -9 $$")["exit_code"] == 128 + 9
    assert es.execute(env1, "kill -TERM $$")["exit_code"] == 128 + 15
    assert es.execute(env1, "printf 'a\\nb'")["output"] == "a\nb"
    b = es.execute(env1, "echo héllo ✓")
    assert b["output"] == "héllo ✓\n", b


def test_execute_default_and_boundary_timeouts(es, new_env):
    e = new_env(ws="bounds")
    assert es.execute(e, "echo one", timeout_sec=1)["output"] == "one\n"
    assert es.execute(e, "echo max", timeout_sec=600)["output"] == "max\n"
    # default 30 s: a 2 s command is not cut
    b = es.execute(e, "sleep 2; echo slept")
    assert b["output"] == "slept\n" and not b["timed_out"], b


def test_execute_environment(es, env1):
    d = os.path.realpath(es.env_dir(env1["id"]))
    b = es.execute(env1, "pwd; echo \"HOME=$HOME\"; echo \"LANG=$LANG\"; echo \"FOO=$FOO\"")
    lines = b["output"].splitlines()
    assert os.path.realpath(lines[0]) == d, b
    assert os.path.realpath(lines[1][len("HOME="):]) == d, b
    assert lines[2] == "LANG=C.UTF-8", b
    assert lines[3] == "FOO=bar baz", b


def test_execute_clean_environment(es, env1):
    b = es.execute(env1, "env")
    names = {line.split("=", 1)[0] for line in b["output"].splitlines() if "=" in line}
    assert {"PATH", "HOME", "LANG", "FOO"} <= names, b
    assert LEAK_VAR not in names and "leaked-value" not in b["output"], b
    # only what the contract gives, plus what the shell itself sets
    extra = names - {"PATH", "HOME", "LANG", "FOO", "PWD", "SHLVL", "_", "OLDPWD"}
    assert not extra, f"unexpected variables in the environment: {sorted(extra)}"
    assert env1["token"] not in b["output"]
    assert KEY not in b["output"]


def test_state_persists_between_executes(es, new_env):
    e = new_env(ws="persist")
    assert es.execute(e, "echo kept > note.txt; mkdir -p sub && echo deep > sub/x")["exit_code"] == 0
    b = es.execute(e, "cat note.txt sub/x")
    assert b["output"] == "kept\ndeep\n", b
    assert es.execute(e, "test -f ~/note.txt")["exit_code"] == 0


def test_timeout_kills_grandchildren(es, new_env):
    e = new_env(ws="timeout")
    d = es.env_dir(e["id"])
    t0 = time.monotonic()
    b = es.execute(e, "echo start; sleep 100 & echo $! > bgpid; echo pid=$!; wait", timeout_sec=1)
    elapsed = time.monotonic() - t0
    assert b["exit_code"] == 124, b
    assert b["timed_out"] is True, b
    assert "start" in b["output"], b
    assert elapsed < 3.5, f"timeout_sec 1 answered after {elapsed:.2f} s"
    with open(os.path.join(d, "bgpid")) as f:
        pid = int(f.read().strip())
    m = re.search(r"pid=(\d+)", b["output"])
    if m:
        assert int(m.group(1)) == pid
    assert wait_until(lambda: not pid_alive(pid), 2), f"background sleep {pid} survived the timeout"
    # the environment still works afterwards
    assert es.execute(e, "echo after")["output"] == "after\n"


def test_default_output_cap(es, new_env):
    e = new_env(ws="cap")
    b = es.execute(e, "head -c 1100000 /dev/zero | tr '\\0' a; printf END", timeout_sec=30)
    assert b["truncated"] is True, {k: v for k, v in b.items() if k != "output"}
    assert len(b["output"].encode()) <= 1048576
    assert len(b["output"]) > 1000000
    assert b["output"].endswith("aaaEND")
    b = es.execute(e, "head -c 1000000 /dev/zero | tr '\\0' a")
    assert b["truncated"] is False and len(b["output"]) == 1000000


def test_output_cap_option():
    s = EnvStack(daemon_args=("--env-output-max=1000",))
    try:
        e = s.provision("acme", "cap")
        b = s.execute(e, "head -c 5000 /dev/zero | tr '\\0' x; printf TAIL")
        assert b["truncated"] is True, b
        assert len(b["output"].encode()) <= 1000, len(b["output"])
        assert len(b["output"]) >= 900, len(b["output"])
        assert b["output"].endswith("xxxTAIL"), b["output"][-20:]
        assert b["exit_code"] == 0
        # stderr counts too
        b = s.execute(e, "head -c 5000 /dev/zero | tr '\\0' y >&2; printf LAST >&2")
        assert b["truncated"] is True and len(b["output"].encode()) <= 1000
        assert b["output"].endswith("yyyLAST")
        # under the cap: whole and not truncated
        b = s.execute(e, "head -c 999 /dev/zero | tr '\\0' z")
        assert b["truncated"] is False and b["output"] == "z" * 999, b
    finally:
        s.stop()


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("body,field", [
    ({}, "command"),
    ({"command": ""}, "command"),
    ({"command": 5}, "command"),
    ({"command": None}, "command"),
    ({"command": ["echo"]}, "command"),
    ({"command": "true", "timeout_sec": 0}, "timeout_sec"),
    ({"command": "true", "timeout_sec": 601}, "timeout_sec"),
    ({"command": "true", "timeout_sec": -1}, "timeout_sec"),
    ({"command": "true", "timeout_sec": "30"}, "timeout_sec"),
    ({"command": "true", "timeout_sec": 1.5}, "timeout_sec"),
    ({"command": "true", "timeout_sec": True}, "timeout_sec"),
    # integers beyond 64 bits must not wrap around into the range
    ({"command": "true", "timeout_sec": -2**64 + 5}, "timeout_sec"),
    ({"command": "true", "timeout_sec": -2**64}, "timeout_sec"),
    ({"command": "true", "timeout_sec": 2**64 + 5}, "timeout_sec"),
], ids=["missing", "empty", "int", "null", "list", "t0", "t601", "t-1", "tstr", "tfloat",
        "tbool", "t-2^64+5", "t-2^64", "t2^64+5"])
def test_execute_validation_422(es, env1, body, field):
    r = es.execute_raw("acme", "main", env1["id"], env1["token"], body)
    b = assert_envelope(r, 422, "validation_error")
    assert any(field in e["loc"] for e in b["errors"]), b


def test_execute_unknown_field_422(es, env1):
    r = es.execute_raw("acme", "main", env1["id"], env1["token"], {"command": "x", "foo": 1})
    b = assert_envelope(r, 422, "validation_error")
    assert any(e["loc"] == ["body", "foo"] and e["type"] == "extra_forbidden"
               for e in b["errors"]), b


@pytest.mark.parametrize("body", [
    {},
    {"name": ""},
    {"name": "a" * 65},
    {"name": "has space"},
    {"name": "slash/y"},
    {"name": "ünï"},
    {"name": 7},
    {"name": None},
    {"name": "ok", "extra": 1},
], ids=["missing", "empty", "65", "space", "slash", "unicode", "int", "null", "extra"])
def test_provision_validation_422(es, body):
    r = es.request("POST", base("acme", "val"), json=body)
    b = assert_envelope(r, 422, "validation_error")
    if "extra" in body:
        assert any(e["loc"] == ["body", "extra"] and e["type"] == "extra_forbidden"
                   for e in b["errors"]), b
    assert es.request("GET", base("acme", "val")).json() == {"environments": []}


@pytest.mark.parametrize("env", [{"A": 1}, ["A=1"], "A=1", {"A=B": "1"}, {"": "1"}],
                         ids=["int-value", "list", "string", "eq-in-name", "empty-name"])
def test_provision_invalid_env_422(es, env):
    # a body that does not fit the schema is 422 validation_error, with errors under body.env
    r = es.request("POST", base("acme", "badenv"), json={"name": "e", "env": env})
    b = assert_envelope(r, 422, "validation_error")
    assert any(e["loc"][:2] == ["body", "env"] for e in b["errors"]), b
    assert es.request("GET", base("acme", "badenv")).json() == {"environments": []}


@pytest.mark.parametrize("data", [b"{not json", b"", b'{"command": "x"', b"\xff\xfe"],
                         ids=["garbage", "empty", "unterminated", "binary"])
def test_malformed_json_is_400(es, env1, data):
    h = {"Content-Type": "application/json", "X-Environment-Token": env1["token"]}
    r = es.request("POST", f"{base('acme', 'main')}/{env1['id']}/execute", data=data, headers=h)
    assert_envelope(r, 400, "invalid_request")
    r = es.request("POST", base("acme", "main"), data=data,
                   headers={"Content-Type": "application/json"})
    assert_envelope(r, 400, "invalid_request")


def test_api_version_426(es, env1):
    for v in ("2", "0", "v1", "1.1"):
        r = es.request("GET", base("acme", "main"), headers={"X-API-Version": v})
        assert_envelope(r, 426, "upgrade_required")
    r = es.execute_raw("acme", "main", env1["id"], env1["token"], {"command": "true"},
                       headers={"X-API-Version": "2"})
    assert_envelope(r, 426, "upgrade_required")
    r = es.request("GET", base("acme", "main"), headers={"X-API-Version": "1"})
    assert r.status_code == 200
    r = es.execute_raw("acme", "main", env1["id"], env1["token"], {"command": "true"},
                       headers={"X-API-Version": "1"})
    assert check_exec(r)["exit_code"] == 0


@pytest.mark.parametrize("path", [
    "/api/v1/org/a/ws/b/nothing",
    "/api/v1/nothing",
    "/api/v1/org/a/ws/b/environments/{id}/nothing",
    "/api/v1/org/a/ws/b/environments/{id}/execute/more",
])
def test_unknown_route_404_envelope(es, env1, path):
    r = es.request("GET", path.format(id=env1["id"]))
    # (the type of an unknown route is not fixed by the contract: any stable string)
    b = assert_envelope(r, 404, None)
    assert "message" not in b and b["code"] != "NOT_FOUND"


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "", {"GET", "POST"}),
    ("DELETE", "", {"GET", "POST"}),
    ("PATCH", "/{id}", {"GET", "DELETE"}),
    ("POST", "/{id}", {"GET", "DELETE"}),
    ("GET", "/{id}/execute", {"POST"}),
    ("DELETE", "/{id}/execute", {"POST"}),
])
def test_wrong_method_405(es, env1, method, path, allowed):
    r = es.request(method, base("acme", "main") + path.format(id=env1["id"]),
                   headers={"X-Environment-Token": env1["token"]})
    assert_envelope(r, 405, None)
    allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    assert allowed <= allow, r.headers.get("Allow")
    assert method not in allow
    assert es.request("GET", f"{base('acme', 'main')}/{env1['id']}").status_code == 200


# --------------------------------------------------------------------------- limits
def retry_after(r):
    v = r.headers.get("Retry-After")
    assert v is not None and re.fullmatch(r"\d+", v.strip()), r.headers
    assert int(v) >= 1, v
    return int(v)


def test_rate_limit(es, new_env):
    e = new_env(ws="rate")
    other = new_env(ws="rate")
    answers = []
    lock = threading.Lock()

    def worker():
        # 3 at a time: under the concurrency limit (4), so every 429 is the rate limit
        for _ in range(15):
            r = es.execute_raw("acme", "rate", e["id"], e["token"], {"command": "true"})
            with lock:
                answers.append(r)

    workers = [threading.Thread(target=worker) for _ in range(3)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    elapsed = time.monotonic() - t0
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429}, [(r.status_code, r.text) for r in answers if r.status_code not in (200, 429)]
    assert 429 in codes, f"no 429 in {len(codes)} executes in {elapsed:.2f} s"
    # burst 20, refilling 10/s
    assert codes.count(200) >= 20, codes
    assert codes.count(200) <= 20 + 10 * elapsed + 2, (codes.count(200), elapsed)
    limited = next(r for r in answers if r.status_code == 429)
    assert_envelope(limited, 429, "rate_limited")
    wait = retry_after(limited)
    # per environment: another one is not limited
    r = es.execute_raw("acme", "rate", other["id"], other["token"], {"command": "true"})
    assert check_exec(r)["exit_code"] == 0
    time.sleep(min(wait, 2) + 0.1)
    r = es.execute_raw("acme", "rate", e["id"], e["token"], {"command": "true"})
    assert check_exec(r)["exit_code"] == 0


def test_concurrency_limit(es, new_env):
    e = new_env(ws="conc")
    body = {"command": "sleep 2; echo done"}
    calls = [Call(lambda: es.execute_raw("acme", "conc", e["id"], e["token"], body))
             for _ in range(4)]
    t0 = time.monotonic()
    for c in calls:
        c.start()
    time.sleep(0.8)
    r = es.execute_raw("acme", "conc", e["id"], e["token"], {"command": "echo fifth"})
    assert_envelope(r, 429, "rate_limited")
    retry_after(r)
    for c in calls:
        c.join(15)
        assert c.error is None, c.error
        b = check_exec(c.result)
        assert b["output"] == "done\n", b
    assert time.monotonic() - t0 < 3.8, "4 executes on one environment did not run at once"
    # free again
    r = es.execute_raw("acme", "conc", e["id"], e["token"], {"command": "echo again"})
    assert check_exec(r)["output"] == "again\n"


def test_environments_run_concurrently(es):
    envs = [es.provision("acme", "par") for _ in range(4)]
    calls = [Call(lambda e=e: es.execute(e, "sleep 1; echo $PWD")) for e in envs]
    t0 = time.monotonic()
    for c in calls:
        c.start()
    for c in calls:
        c.join(15)
    elapsed = time.monotonic() - t0
    for c, e in zip(calls, envs):
        assert c.error is None, c.error
        assert os.path.realpath(c.result["output"].strip()) == os.path.realpath(es.env_dir(e["id"]))
    assert elapsed < 3, f"4 x sleep 1 on 4 environments took {elapsed:.2f} s"


# --------------------------------------------------------------------------- isolation
def test_isolation_between_environments():
    lo, hi = next_uid_range(10)
    s = EnvStack(uid_range=(lo, hi))
    try:
        a = s.provision("acme", "iso", "a")
        b = s.provision("acme", "iso", "b")
        ua = int(s.execute(a, "id -u")["output"])
        ub = int(s.execute(b, "id -u")["output"])
        assert lo <= ua <= hi and lo <= ub <= hi, (ua, ub)
        assert ua != ub
        # lowest free uids
        assert sorted([ua, ub]) == [lo, lo + 1], (ua, ub)
        assert int(s.execute(a, "id -g")["output"]) != 0
        for e, u in ((a, ua), (b, ub)):
            st = os.stat(s.env_dir(e["id"]))
            assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
            assert st.st_uid == u, (st.st_uid, u)
        # files
        bdir = s.env_dir(b["id"])
        assert s.execute(b, "echo topsecret > secret; chmod 644 secret")["exit_code"] == 0
        r = s.execute(a, f"cat {bdir}/secret")
        assert r["exit_code"] != 0, r
        assert "Permission denied" in r["output"] and "topsecret" not in r["output"], r
        r = s.execute(a, f"ls {bdir}")
        assert r["exit_code"] != 0 and "secret" not in r["output"].replace(bdir, ""), r
        r = s.execute(a, f"echo evil > {bdir}/evil")
        assert r["exit_code"] != 0 and not os.path.exists(os.path.join(bdir, "evil")), r
        # processes
        bg = Call(lambda: s.execute(b, "sleep 30 & echo $! > pid; wait", timeout_sec=4))
        bg.start()
        pidfile = os.path.join(bdir, "pid")
        assert wait_until(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 5)
        pid = int(open(pidfile).read())
        assert proc_uid(pid) == ub
        r = s.execute(a, f"kill {pid}")
        assert r["exit_code"] != 0, r
        assert "not permitted" in r["output"], r
        r = s.execute(a, f"kill -9 {pid}")
        assert r["exit_code"] != 0, r
        assert pid_alive(pid), "A killed B's process"
        bg.join(15)
        assert bg.error is None, bg.error
        assert bg.result["timed_out"] is True and bg.result["exit_code"] == 124, bg.result
        assert wait_until(lambda: not pid_alive(pid), 2)
        # the uid range: full, then the lowest free uid is reused
        filler = [s.provision("acme", "iso", f"f{i}") for i in range(hi - lo - 1)]
        assert len({int(s.execute(f, "id -u")["output"]) for f in filler}) == len(filler)
        r = s.request("POST", base("acme", "iso"), json={"name": "one-too-many"})
        assert r.status_code >= 400, (r.status_code, r.text)
        body = r.json()
        assert body["code"] == r.status_code and isinstance(body["type"], str), body
        assert s.request("DELETE", f"{base('acme', 'iso')}/{a['id']}").status_code == 200
        c = s.provision("acme", "iso", "c")
        assert int(s.execute(c, "id -u")["output"]) == ua
    finally:
        s.stop()


# --------------------------------------------------------------------------- bridge / daemon
def test_api_keys_file_must_be_private(tmp_path):
    bus = harness.Bus()
    try:
        tok = os.path.join(bus.dir, "tok")
        with open(tok, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
        os.chmod(tok, 0o600)
        for mode in (0o644, 0o640, 0o604):
            keys = os.path.join(bus.dir, f"keys-{mode:o}")
            with open(keys, "w") as f:
                f.write(KEY + "\n")
            os.chmod(keys, mode)
            r = subprocess.run([harness.BRIDGE, f"--bus-address={bus.address}",
                                "--listen=127.0.0.1:0", f"--token-file={tok}",
                                f"--api-keys={keys}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
            assert r.returncode != 0, (oct(mode), r.stdout, r.stderr)
            assert r.stderr.strip(), oct(mode)
            assert KEY.encode() not in r.stderr + r.stdout
    finally:
        bus.stop()


def test_daemon_down_is_502():
    s = EnvStack()
    try:
        e = s.provision("acme", "down")
        s.daemon.stop()
        assert_envelope(s.request("GET", base("acme", "down")), 502, "bad_gateway")
        assert_envelope(s.request("GET", f"{base('acme', 'down')}/{e['id']}"), 502, "bad_gateway")
        assert_envelope(s.request("POST", base("acme", "down"), json={"name": "x"}),
                        502, "bad_gateway")
        assert_envelope(s.execute_raw("acme", "down", e["id"], e["token"], {"command": "true"}),
                        502, "bad_gateway")
        assert_envelope(s.request("DELETE", f"{base('acme', 'down')}/{e['id']}"),
                        502, "bad_gateway")
        # the bridge's own checks still answer without the daemon
        assert_envelope(s.request("GET", base("acme", "down"), key=None), 401,
                        "authentication_error")
        s.daemon.start()
        assert wait_until(lambda: s.request("GET", base("acme", "down")).status_code == 200, 5)
        assert s.execute(e, "echo back")["output"] == "back\n"
    finally:
        s.stop()


def test_durability_across_restarts():
    s = EnvStack()
    try:
        a = s.provision("acme", "dur", "a", env={"V": "1"})
        b = s.provision("acme", "dur", "b")
        gone = s.provision("acme", "dur", "gone")
        ua = int(s.execute(a, "id -u")["output"])
        assert s.execute(a, "echo before > f")["exit_code"] == 0
        assert s.request("DELETE", f"{base('acme', 'dur')}/{gone['id']}").status_code == 200

        def check(label):
            r = s.request("GET", base("acme", "dur"))
            assert r.status_code == 200, (label, r.text)
            envs = sorted(r.json()["environments"], key=lambda x: x["name"])
            assert envs == [public(a), public(b)], (label, envs)
            x = s.execute(a, "cat f; echo $V; id -u")
            assert x["output"] == f"before\n1\n{ua}\n", (label, x)
            r = s.execute_raw("acme", "dur", a["id"], b["token"], {"command": "true"})
            assert_envelope(r, 403, "forbidden")
            assert s.execute(b, "echo b")["output"] == "b\n"
            r = s.request("POST", base("acme", "dur"), json={"name": "a"})
            assert_envelope(r, 409, "conflict")

        s.restart_daemon()
        wait_until(lambda: s.request("GET", base("acme", "dur")).status_code == 200, 5)
        check("after daemon restart")
        s.restart_bridge()
        check("after bridge restart")
        s.daemon.stop(signal.SIGKILL)
        s.daemon.start()
        wait_until(lambda: s.request("GET", base("acme", "dur")).status_code == 200, 5)
        check("after daemon SIGKILL")
        tmp = [p for p in files_under(s.state_dir) if ".tmp" in os.path.basename(p)]
        assert not tmp, tmp
    finally:
        s.stop()


def test_tokens_never_logged_or_stored():
    s = EnvStack(daemon_args=("--verbose",))
    try:
        envs = [s.provision("acme", "secret", env={"N": str(i)}) for i in range(3)]
        for e in envs:
            s.execute(e, "echo hi")
            s.execute(e, "echo hi", key_style="x-api-key")
            r = s.execute_raw("acme", "secret", e["id"], "Bearer " + e["token"],
                              {"command": "echo bearer"})
            check_exec(r)
            s.execute_raw("acme", "secret", e["id"], e["token"], {"command": ""})   # 422
            s.execute_raw("acme", "secret", e["id"], e["token"], data=b"{bad")      # 400
            s.execute_raw("other", "secret", e["id"], e["token"], {"command": "x"})  # 404
        s.execute_raw("acme", "secret", envs[0]["id"], envs[1]["token"], {"command": "x"})
        r = s.request("GET", base("acme", "secret"))
        for e in envs:
            assert e["token"] not in r.text
            assert e["token"] not in s.request("GET", f"{base('acme', 'secret')}/{e['id']}").text
        s.restart_daemon()
        s.request("GET", base("acme", "secret"))
        s.request("DELETE", f"{base('acme', 'secret')}/{envs[2]['id']}")
        s.daemon.stop()
        for b in s.bridges:
            b.stop()
        logs = {"daemon": s.daemon.read_log()}
        for i, b in enumerate(s.bridges):
            logs[f"bridge{i}"] = b.read_log()
        assert any(logs.values())
        stored = {}
        for p in files_under(s.state_dir):
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    stored[p] = f.read()
        assert stored, "nothing stored in the state dir"
        for e in envs:
            for variant in (e["token"], e["token"].lower(), e["token"].upper()):
                for name, text in logs.items():
                    assert variant not in text, f"token in the {name} log"
                for p, data in stored.items():
                    assert variant.encode() not in data, f"token stored in {p}"
            # ids are there, though (the store is not empty of environments)
        assert any(envs[0]["id"].encode() in d for d in stored.values())
    finally:
        s.stop()


def test_background_leftovers_end_with_the_execute(es, env1):
    """A synchronous execute owns what it started: a background job of its process group does
    not outlive the answer."""
    b = es.execute(env1, "sleep 100 >/dev/null 2>&1 & echo $!")
    assert b["exit_code"] == 0, b
    pid = int(b["output"].split()[0])
    assert wait_until(lambda: not pid_alive(pid), 3), f"background job {pid} survived the execute"


def test_home_stays_the_environment_directory(es, new_env):
    e = new_env(ws="home", env={"HOME": "/root", "PATH": "/usr/bin:/bin", "OTHER": "x"})
    b = es.execute(e, 'echo "$HOME|$PATH|$OTHER|$(pwd)"')
    home, path, other, cwd = b["output"].strip().split("|")
    assert home == cwd and home != "/root", b
    assert path == "/usr/bin:/bin" and other == "x", b


def test_invalid_variable_names_are_422(es):
    for bad in ("A=B", "", "1X", "a b"):
        r = es.request("POST", base("acme", "badvars"), json={"name": f"v{secrets.token_hex(2)}", "env": {bad: "1"}})
        assert_envelope(r, 422, "validation_error")
        assert any(e["loc"][:2] == ["body", "env"] for e in r.json()["errors"]), r.json()


def test_huge_timeouts_are_422(es, env1):
    for raw in ("-18446744073709551611", "-18446744073709551616", "18446744073709551616", "9223372036854775808"):
        r = es.request("POST", base(env1["org"], env1["workspace"]) + f"/{env1['id']}/execute",
                       headers={"X-Environment-Token": env1["token"], "Content-Type": "application/json"},
                       data='{"command":"true","timeout_sec":%s}' % raw)
        assert_envelope(r, 422, "validation_error")
        want = "greater_than_equal" if raw.startswith("-") else "less_than_equal"
        assert [e["type"] for e in r.json()["errors"]] == [want], (raw, r.json())
