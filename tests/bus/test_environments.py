"""Task environments on the bus: Manager.ProvisionEnvironment / ListEnvironments and the
org.execd.Execd1.Environment objects (properties, Execute, Delete); ownership (root only)."""
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from busclient import (ERR_ACCESS_DENIED, ERR_NOT_OWNER, MANAGER_IFACE, MANAGER_PATH, Client,
                       DBusError)
from conftest import pid_alive, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ENV_IFACE = "org.execd.Execd1.Environment"
NOBODY = 65534
UID_MIN, UID_MAX = 640000, 640049
HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


# --------------------------------------------------------------------------- helpers
def provision(c, org, ws, name=None, env=None):
    path, eid, token = c.call(MANAGER_PATH, MANAGER_IFACE, "ProvisionEnvironment", "sssa{ss}",
                              (org, ws, name or f"e-{secrets.token_hex(4)}", env or {}))
    return path, eid, token


def list_envs(c, org, ws):
    (envs,) = c.call(MANAGER_PATH, MANAGER_IFACE, "ListEnvironments", "ss", (org, ws))
    return [tuple(e) for e in envs]


def execute(c, path, token, command, timeout_sec=10, call_timeout=None):
    code, output, truncated, timed_out = c.call(
        path, ENV_IFACE, "Execute", "ssu", (token, command, timeout_sec),
        timeout=call_timeout or timeout_sec + 15)
    return code, bytes(output), truncated, timed_out


def delete(c, path):
    return c.call(path, ENV_IFACE, "Delete")


def env_path_of(c, eid):
    for path, ifaces in c.managed_objects().items():
        if ENV_IFACE in ifaces and ifaces[ENV_IFACE].get("Id", (None, None))[1] == eid:
            return path
    return None


@pytest.fixture(scope="module")
def state_dir():
    d = tempfile.mkdtemp(prefix="execd-envstate-")
    os.chmod(d, 0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def envd(state_dir):
    """A private daemon with --state-dir (module scope; make_env is per test)."""
    import conftest
    e = conftest._start_env(f"--state-dir={state_dir}", f"--env-uid-min={UID_MIN}",
                            f"--env-uid-max={UID_MAX}")
    e.state_dir = state_dir
    yield e
    conftest._stop_env(e)


@pytest.fixture
def c(envd):
    assert envd.daemon.proc.poll() is None, envd.daemon.read_log()[-4000:]
    client = envd.connect()
    yield client
    envd.close_clients()


# --------------------------------------------------------------------------- tests
def test_provision_and_properties(envd, c):
    t0 = time.time()
    path, eid, token = provision(c, "acme", "bus", "props", {"A": "1"})
    assert path.startswith("/org/execd/Execd1/"), path
    assert HEX32.match(eid), eid
    assert HEX64.match(token), token
    props = c.get_all(path, iface=ENV_IFACE)
    assert {"Id", "Org", "Workspace", "Name", "CreatedAt", "Uid", "Directory", "Running"} <= set(props)
    assert props["Id"] == eid
    assert props["Org"] == "acme" and props["Workspace"] == "bus" and props["Name"] == "props"
    assert abs(props["CreatedAt"] / 1000 - t0) < 10, props["CreatedAt"]
    assert UID_MIN <= props["Uid"] <= UID_MAX, props["Uid"]
    assert os.path.realpath(props["Directory"]) == \
        os.path.realpath(os.path.join(envd.state_dir, "environments", eid)), props["Directory"]
    st = os.stat(props["Directory"])
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == props["Uid"], (oct(st.st_mode), st.st_uid)
    assert props["Running"] in (0, False), props["Running"]
    assert token not in json.dumps({k: v for k, v in props.items()}, default=str)
    assert env_path_of(c, eid) == path


def test_list(c):
    ws = f"list-{secrets.token_hex(3)}"
    assert list_envs(c, "acme", ws) == []
    t0 = time.time()
    _pa, a, _ta = provision(c, "acme", ws, "a")
    _pb, b, _tb = provision(c, "acme", ws, "b")
    provision(c, "acme", ws + "x", "a")
    provision(c, "other", ws, "a")
    envs = sorted(list_envs(c, "acme", ws), key=lambda e: e[3])
    assert [(e[0], e[1], e[2], e[3]) for e in envs] == [(a, "acme", ws, "a"), (b, "acme", ws, "b")]
    for e in envs:
        assert isinstance(e[4], int) and abs(e[4] / 1000 - t0) < 10, e


def test_list_signature_is_as_documented(c):
    """ListEnvironments -> a(ssssxasu): (id, org, ws, name, created_at_ms, env, running)."""
    ws = f"sig-{secrets.token_hex(3)}"
    (path, env_id, _token) = c.call(MANAGER_PATH, "org.execd.Execd1.Manager", "ProvisionEnvironment", "sssa{ss}",
                                    ("acme", ws, "a", {"K": "v=1"}))
    envs = list_envs(c, "acme", ws)
    assert len(envs) == 1
    assert len(envs[0]) == 7, f"ListEnvironments entries are not (ssssxasu): {envs[0]!r}"
    assert envs[0][0] == env_id and envs[0][5] == ["K=v=1"] and envs[0][6] == 0, envs[0]


def test_duplicate_name_fails(c):
    provision(c, "acme", "dup", "same")
    with pytest.raises(DBusError):
        provision(c, "acme", "dup", "same")
    provision(c, "acme", "dup2", "same")


def test_execute(c):
    path, _eid, token = provision(c, "acme", "bus", env={"GREETING": "hello there"})
    code, out, truncated, timed_out = execute(c, path, token, "echo $GREETING; echo err >&2; exit 3")
    assert code == 3, out
    assert b"hello there\n" in out and b"err\n" in out, out
    assert truncated is False and timed_out is False
    props = c.get_all(path, iface=ENV_IFACE)
    code, out, _t, _to = execute(c, path, token, "pwd; id -u; echo $HOME")
    lines = out.decode().splitlines()
    assert code == 0
    assert os.path.realpath(lines[0]) == os.path.realpath(props["Directory"])
    assert int(lines[1]) == props["Uid"]
    assert os.path.realpath(lines[2]) == os.path.realpath(props["Directory"])
    assert execute(c, path, token, "kill -9 $$")[0] == 137
    # files persist between executes
    assert execute(c, path, token, "echo kept > f")[0] == 0
    assert execute(c, path, token, "cat f")[1] == b"kept\n"


def test_execute_timeout(c):
    path, _eid, token = provision(c, "acme", "bus")
    t0 = time.monotonic()
    code, out, truncated, timed_out = execute(c, path, token,
                                              "echo start; sleep 100 & echo $!; wait", 1)
    assert time.monotonic() - t0 < 3.5
    assert code == 124 and timed_out is True, (code, out, timed_out)
    assert out.startswith(b"start\n"), out
    pid = int(out.split()[1])
    assert wait_until(lambda: not pid_alive(pid), 2), "the background sleep survived"


def test_wrong_token_is_access_denied(c):
    path, _eid, token = provision(c, "acme", "bus")
    path2, _eid2, token2 = provision(c, "acme", "bus")
    for bad in ("", secrets.token_hex(32), token2, token.upper() if token != token.upper() else token.lower()):
        with pytest.raises(DBusError) as ei:
            execute(c, path, bad, "touch pwned")
        assert ei.value.name == ERR_ACCESS_DENIED, ei.value
    assert execute(c, path, token, "test -e pwned")[0] == 1


def test_running_property(envd, c):
    path, _eid, token = provision(c, "acme", "bus")
    c2 = envd.connect()
    res = {}
    th = threading.Thread(target=lambda: res.update(r=execute(c2, path, token, "sleep 1.5")))
    th.start()
    assert wait_until(lambda: c.get(path, "Running", iface=ENV_IFACE) in (1, True), 2)
    th.join(10)
    assert res["r"][0] == 0
    assert c.get(path, "Running", iface=ENV_IFACE) in (0, False)


def test_delete(envd, c):
    name = f"reuse-{secrets.token_hex(3)}"
    path, eid, token = provision(c, "acme", "del", name)
    d = c.get(path, "Directory", iface=ENV_IFACE)
    assert execute(c, path, token, "echo x > f")[0] == 0
    delete(c, path)
    assert list_envs(c, "acme", "del") == []
    assert env_path_of(c, eid) is None
    assert not os.path.exists(d)
    with pytest.raises(DBusError):
        c.get(path, "Id", iface=ENV_IFACE)
    with pytest.raises(DBusError):
        execute(c, path, token, "true")
    # the name is free again
    provision(c, "acme", "del", name)


def test_delete_kills_running_execute(envd, c):
    path, _eid, token = provision(c, "acme", "del")
    uid = c.get(path, "Uid", iface=ENV_IFACE)
    c2 = envd.connect()
    res = {}

    def run():
        try:
            res["r"] = execute(c2, path, token, "sleep 30 & sleep 31; echo done", 60)
        except Exception as e:  # noqa: BLE001
            res["e"] = e
    th = threading.Thread(target=run)
    th.start()
    assert wait_until(lambda: c.get(path, "Running", iface=ENV_IFACE) in (1, True), 3)
    time.sleep(0.3)
    t0 = time.monotonic()
    delete(c, path)
    th.join(10)
    assert not th.is_alive(), "Execute did not answer after Delete"
    assert time.monotonic() - t0 < 10
    if "r" in res:
        assert b"done" not in res["r"][1]

    def uid_procs():
        out = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/status") as f:
                        for line in f:
                            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                                out.append(int(name))
                except OSError:
                    pass
        return [p for p in out if pid_alive(p)]
    assert wait_until(lambda: not uid_procs(), 3), uid_procs()


def test_restart_keeps_environments(envd, c):
    path, eid, token = provision(c, "acme", "restart", "keep", {"V": "1"})
    assert execute(c, path, token, "echo before > f")[0] == 0
    uid = c.get(path, "Uid", iface=ENV_IFACE)
    envd.close_clients()
    envd.daemon.stop()
    envd.daemon.start()
    c = envd.connect()
    envs = list_envs(c, "acme", "restart")
    assert [(e[0], e[3]) for e in envs] == [(eid, "keep")], envs
    p = env_path_of(c, eid)
    assert p is not None
    assert c.get(p, "Uid", iface=ENV_IFACE) == uid
    assert execute(c, p, token, "cat f; echo $V") == (0, b"before\n1\n", False, False)
    with pytest.raises(DBusError) as ei:
        execute(c, p, secrets.token_hex(32), "true")
    assert ei.value.name == ERR_ACCESS_DENIED
    with pytest.raises(DBusError):
        provision(c, "acme", "restart", "keep")
    tmp = [f for _d, _s, fs in os.walk(envd.state_dir) for f in fs if ".tmp" in f]
    assert not tmp, tmp


def test_token_not_stored_or_logged(envd, c):
    path, eid, token = provision(c, "acme", "secret")
    execute(c, path, token, "true")
    for dirpath, _dirs, names in os.walk(envd.state_dir):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    data = f.read()
                assert token.encode() not in data and token.upper().encode() not in data, p
    assert token not in envd.daemon.read_log()


HELPER = r'''
import json, sys, traceback
addr, path, token = sys.argv[1], sys.argv[2], sys.argv[3]
MI = "org.execd.Execd1.Manager"
EI = "org.execd.Execd1.Environment"
res = {}
def err(f):
    try:
        return ["ok", repr(f())]
    except DBusError as e:
        return [e.name, e.message]
try:
    c = Client(addr)
    res["provision"] = err(lambda: c.call("/org/execd/Execd1", MI, "ProvisionEnvironment",
                                          "sssa{ss}", ("acme", "nobody", "n", {})))
    res["list"] = err(lambda: c.call("/org/execd/Execd1", MI, "ListEnvironments", "ss",
                                     ("acme", "owned")))
    res["execute"] = err(lambda: c.call(path, EI, "Execute", "ssu", (token, "touch pwned", 5)))
    res["delete"] = err(lambda: c.call(path, EI, "Delete"))
except Exception:
    res["exception"] = traceback.format_exc()
print("RESULT " + json.dumps(res))
'''


def test_non_root_caller_is_refused(envd, c):
    path, eid, token = provision(c, "acme", "owned", "mine")
    with open(os.path.join(HERE, "busclient.py")) as f:
        source = f.read()
    r = subprocess.run([sys.executable, "-c", source + "\n" + HELPER, envd.address, path, token],
                       user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = r.stdout.decode()
    assert "RESULT " in out, f"helper failed: {out}\n{r.stderr.decode()}"
    res = json.loads(out.split("RESULT ", 1)[1])
    assert "exception" not in res, res["exception"]
    for k in ("provision", "list", "execute", "delete"):
        assert res[k][0] in (ERR_ACCESS_DENIED, ERR_NOT_OWNER), (k, res[k])
    # nothing happened
    assert [e[0] for e in list_envs(c, "acme", "owned")] == [eid]
    assert list_envs(c, "acme", "nobody") == []
    assert execute(c, path, token, "test -e pwned")[0] == 1


def test_environment_count_is_capped(make_env):
    """At most 1024 environments: the next provision fails with LimitsExceeded, and deleting
    one makes room again."""
    e = make_env("--env-uid-min=700000", "--env-uid-max=709999")
    c = e.connect()
    paths = []
    for i in range(1024):
        (path, _eid, _tok) = c.call(MANAGER_PATH, MANAGER_IFACE, "ProvisionEnvironment", "sssa{ss}",
                                    ("cap", "ws", f"e{i}", {}))
        paths.append(path)
    with pytest.raises(DBusError) as ei:
        c.call(MANAGER_PATH, MANAGER_IFACE, "ProvisionEnvironment", "sssa{ss}", ("cap", "ws", "one-more", {}))
    assert ei.value.name == "org.execd.Execd1.Error.LimitsExceeded", ei.value
    c.call(paths[0], "org.execd.Execd1.Environment", "Delete")
    c.call(MANAGER_PATH, MANAGER_IFACE, "ProvisionEnvironment", "sssa{ss}", ("cap", "ws", "one-more", {}))
