"""Limits per caller uid and in total (issue 8): running commands, sessions, code contexts and
the callers waiting for a starting kernel. Beyond a cap the answer is LimitsExceeded, naming
the limit and its option, and nothing is created; freeing one admits the next; another uid is
unaffected by one uid's cap. Root counts like any caller. Also: bad values for the options
exit 2, and a session's state dump is bounded and not kept in finished records.

Code contexts use a fake kernelspec whose "kernel" never answers (sleep): a context exists
(and counts) from the moment CreateContext is called, while its reply waits for the kernel,
so the tests send CreateContext without waiting for the reply."""
import json
import os
import subprocess
import sys

import pytest
from jeepney import DBusAddress, new_method_call

from busclient import BUS_NAME, ERR_LIMITS, MANAGER_IFACE, MANAGER_PATH, DBusError
from conftest import vm_rss_kib, wait_until
import harness

HERE = os.path.dirname(os.path.abspath(__file__))
NOBODY = 65534
SESSION_IFACE = "org.execd.Execd1.Session"
CONTEXT_IFACE = "org.execd.Execd1.Context"

# Run as uid 65534 after busclient.py's source: ops from argv[2] (JSON), one result each:
# ["ok", value] or ["err", error name, message].
HELPER = r'''
import json, sys, time
from jeepney import DBusAddress, new_method_call
addr, ops = sys.argv[1], json.loads(sys.argv[2])
c = Client(addr)
res = []
for op in ops:
    try:
        if op[0] == "run":
            res.append(["ok", c.run(op[1], background=True, cwd="/")])
        elif op[0] == "session":
            res.append(["ok", c.call(MANAGER_PATH, MANAGER_IFACE, "CreateSession", "a{sv}",
                                     ({"cwd": ("s", op[1])} if len(op) > 1 else {},))[0]])
        elif op[0] == "context":
            res.append(["ok", c.call(MANAGER_PATH, MANAGER_IFACE, "CreateContext", "sa{sv}",
                                     (op[1], {}), timeout=op[2] if len(op) > 2 else 10)[0]])
        elif op[0] == "context_nowait":
            a = DBusAddress(MANAGER_PATH, bus_name=BUS_NAME, interface=MANAGER_IFACE)
            c.conn.send(new_method_call(a, "CreateContext", "sa{sv}", (op[1], {})))
            res.append(["ok", None])
        elif op[0] == "list_contexts":
            res.append(["ok", c.call(MANAGER_PATH, MANAGER_IFACE, "ListContexts", "s", ("",))[0]])
    except DBusError as e:
        res.append(["err", e.name, e.message])
# A round trip, so everything sent above reached the daemon before we leave.
c.call(MANAGER_PATH, "org.freedesktop.DBus.Peer", "Ping")
print("RESULT " + json.dumps(res))
'''


def as_nobody(address, *ops):
    with open(os.path.join(HERE, "busclient.py")) as f:
        source = f.read()
    r = subprocess.run([sys.executable, "-c", source + "\n" + HELPER, address, json.dumps(ops)],
                       user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = r.stdout.decode()
    assert "RESULT " in out, f"helper failed: {out}\n{r.stderr.decode()}"
    return json.loads(out.split("RESULT ", 1)[1])


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root (runs a client as uid 65534)")


def refused(result, option):
    """A helper result that is LimitsExceeded naming option."""
    assert result[0] == "err" and result[1] == ERR_LIMITS, result
    assert f"--{option}=" in result[2], result
    return True


def raises_limit(option, f, *args, **kw):
    with pytest.raises(DBusError) as ei:
        f(*args, **kw)
    assert ei.value.name == ERR_LIMITS, ei.value
    assert f"--{option}=" in ei.value.message, ei.value.message
    return ei.value.message


def kill_all(c):
    for p in c.command_paths():
        try:
            if c.get(p, "Running"):
                c.signal(p, 9)
        except DBusError:
            pass


# --------------------------------------------------------------------------- running commands
def test_running_per_uid(make_env):
    e = make_env("--max-running-per-uid=2")
    c = e.connect()
    try:
        a = c.run("sleep 30")
        c.run("sleep 30")
        before = c.command_paths()
        msg = raises_limit("max-running-per-uid", c.run, "sleep 30")
        assert "uid 0" in msg and "2" in msg, msg
        # session runs count too, and nothing was created by the refusals
        (spath,) = c.call(MANAGER_PATH, MANAGER_IFACE, "CreateSession", "a{sv}", ({},))
        raises_limit("max-running-per-uid", c.call, spath, SESSION_IFACE, "Run", "sa{sv}",
                     ("echo no", {}))
        assert c.command_paths() == before
        # another uid is unaffected by root's cap, and has its own
        res = as_nobody(e.address, ["run", "sleep 30"], ["run", "sleep 30"], ["run", "sleep 30"])
        assert res[0][0] == "ok" and res[1][0] == "ok", res
        assert refused(res[2], "max-running-per-uid") and f"uid {NOBODY}" in res[2][2]
        assert c.get(res[0][1], "OwnerUid") == NOBODY
        # one of root's exits: root gets a slot again (one)
        c.signal(a, 9)
        c.wait_exit(a)
        c.run("sleep 30")
        raises_limit("max-running-per-uid", c.run, "sleep 30")
    finally:
        kill_all(c)


def test_running_total_across_uids(make_env):
    e = make_env("--max-running=3", "--max-running-per-uid=2")
    c = e.connect()
    try:
        c.run("sleep 30")
        c.run("sleep 30")
        res = as_nobody(e.address, ["run", "sleep 30"], ["run", "sleep 30"])
        assert res[0][0] == "ok", res
        # nobody is below its own cap but the total is reached
        assert refused(res[1], "max-running")
        assert "in all" in res[1][2]
        raises_limit("max-running", c.run, "sleep 30")
        c.signal(res[0][1], 9)  # root may signal nobody's command (its Exited goes to nobody)
        assert wait_until(lambda: c.get(res[0][1], "Running") is False, 5)
        assert as_nobody(e.address, ["run", "sleep 30"])[0][0] == "ok"
    finally:
        kill_all(c)


# --------------------------------------------------------------------------- sessions
def create_session(c, cwd=None):
    (path,) = c.call(MANAGER_PATH, MANAGER_IFACE, "CreateSession", "a{sv}",
                     ({"cwd": ("s", cwd)} if cwd else {},))
    return path


def test_sessions_per_uid_and_total(make_env, tmp_path):
    e = make_env("--max-sessions=3", "--max-sessions-per-uid=2")
    c = e.connect()
    s1 = create_session(c)
    create_session(c)
    # at the cap: refused, and the directory it names is not made
    missing = os.path.join(str(tmp_path), "not-made")
    msg = raises_limit("max-sessions-per-uid", create_session, c, missing)
    assert not os.path.exists(missing)
    assert "uid 0" in msg
    # a bash code context is a session and counts as one
    raises_limit("max-sessions-per-uid", c.call, MANAGER_PATH, MANAGER_IFACE, "CreateContext",
                 "sa{sv}", ("bash", {}))
    (paths,) = c.call(MANAGER_PATH, MANAGER_IFACE, "ListSessions")
    assert len(paths) == 2
    # nobody: one below the total, then the total refuses
    res = as_nobody(e.address, ["session"], ["session"])
    assert res[0][0] == "ok", res
    assert refused(res[1], "max-sessions") and "in all" in res[1][2]
    # one deleted: the next is admitted (the bash context this time)
    c.call(s1, SESSION_IFACE, "Delete")
    (ctx,) = c.call(MANAGER_PATH, MANAGER_IFACE, "CreateContext", "sa{sv}", ("bash", {}))
    assert ctx.startswith("/org/execd/Execd1/session/")
    raises_limit("max-sessions", create_session, c)


# --------------------------------------------------------------------------- code contexts
@pytest.fixture
def fake_kernel_env(make_env, tmp_path, monkeypatch):
    """make_env with a kernelspec for language "fake" whose kernel never becomes ready."""
    spec = tmp_path / "jupyter" / "kernels" / "fake"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["/bin/sh", "-c", "exec sleep 600", "fake", "{connection_file}"],
        "display_name": "never ready", "language": "fake"}))
    for d in (tmp_path, tmp_path / "jupyter", tmp_path / "jupyter" / "kernels", spec):
        os.chmod(d, 0o755)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return make_env


def send_nowait(c, member, signature, body):
    a = DBusAddress(MANAGER_PATH, bus_name=BUS_NAME, interface=MANAGER_IFACE)
    c.conn.send(new_method_call(a, member, signature, body))


def contexts_of(c):
    (items,) = c.call(MANAGER_PATH, MANAGER_IFACE, "ListContexts", "s", ("fake",))
    return [i for i, _lang in items]


def test_contexts_per_uid_and_total(fake_kernel_env, tmp_path):
    e = fake_kernel_env("--max-contexts=3", "--max-contexts-per-uid=2")
    c = e.connect()
    send_nowait(c, "CreateContext", "sa{sv}", ("fake", {}))
    send_nowait(c, "CreateContext", "sa{sv}", ("fake", {}))
    assert wait_until(lambda: len(contexts_of(c)) == 2, 5), contexts_of(c)
    missing = os.path.join(str(tmp_path), "not-made")
    msg = raises_limit("max-contexts-per-uid", c.call, MANAGER_PATH, MANAGER_IFACE, "CreateContext",
                       "sa{sv}", ("fake", {"cwd": ("s", missing)}))
    assert "uid 0" in msg
    assert not os.path.exists(missing)
    raises_limit("max-contexts-per-uid", c.call, MANAGER_PATH, MANAGER_IFACE, "DefaultContext",
                 "s", ("fake",))
    assert len(contexts_of(c)) == 2
    # nobody has its own cap; the total stops its second
    res = as_nobody(e.address, ["context_nowait", "fake"], ["list_contexts"], ["context", "fake"])
    assert res[0][0] == "ok", res
    assert refused(res[2], "max-contexts") and "in all" in res[2][2]
    assert wait_until(lambda: len(contexts_of(c)) == 3, 5)
    # a deleted context admits the next (of either uid)
    root_ctx = [i for i in contexts_of(c)
                if c.get(f"/org/execd/Execd1/context/{i}", "OwnerUid", iface=CONTEXT_IFACE) == 0]
    c.call(f"/org/execd/Execd1/context/{root_ctx[0]}", CONTEXT_IFACE, "Delete")
    res = as_nobody(e.address, ["context_nowait", "fake"], ["context", "fake", 2])
    assert res[0][0] == "ok", res
    assert refused(res[1], "max-contexts")  # the total again
    assert wait_until(lambda: len(contexts_of(c)) == 3, 5)
    # below the total, nobody's own cap
    c.call(f"/org/execd/Execd1/context/{root_ctx[1]}", CONTEXT_IFACE, "Delete")
    res = as_nobody(e.address, ["context", "fake", 2])
    assert refused(res[0], "max-contexts-per-uid") and f"uid {NOBODY}" in res[0][2]
    assert len(contexts_of(c)) == 2
    for i in contexts_of(c):
        c.call(f"/org/execd/Execd1/context/{i}", CONTEXT_IFACE, "Delete")


def test_context_waiters_bounded(fake_kernel_env):
    e = fake_kernel_env("--max-context-waiters=2")
    c = e.connect()
    send_nowait(c, "DefaultContext", "s", ("fake",))
    send_nowait(c, "DefaultContext", "s", ("fake",))
    assert wait_until(lambda: len(contexts_of(c)) == 1, 5)
    msg = raises_limit("max-context-waiters", c.call, MANAGER_PATH, MANAGER_IFACE, "DefaultContext",
                       "s", ("fake",))
    assert "waiting" in msg
    assert len(contexts_of(c)) == 1
    # another caller's own default context has its own queue
    res = as_nobody(e.address, ["context_nowait", "fake"])
    assert res[0][0] == "ok"
    (cid,) = [i for i in contexts_of(c)
              if c.get(f"/org/execd/Execd1/context/{i}", "OwnerUid", iface=CONTEXT_IFACE) == 0]
    c.call(f"/org/execd/Execd1/context/{cid}", CONTEXT_IFACE, "Delete")
    # the waiters were answered (with the deletion) and the queue is empty again
    send_nowait(c, "DefaultContext", "s", ("fake",))
    send_nowait(c, "DefaultContext", "s", ("fake",))
    assert wait_until(lambda: len(contexts_of(c)) == 2, 5)
    raises_limit("max-context-waiters", c.call, MANAGER_PATH, MANAGER_IFACE, "DefaultContext",
                 "s", ("fake",))
    for i in contexts_of(c):
        c.call(f"/org/execd/Execd1/context/{i}", CONTEXT_IFACE, "Delete")
    assert e.daemon.proc.poll() is None


# --------------------------------------------------------------------------- options
LIMIT_OPTIONS = ("max-running", "max-running-per-uid", "max-sessions", "max-sessions-per-uid",
                 "max-contexts", "max-contexts-per-uid", "max-context-waiters")


@pytest.mark.parametrize("option", LIMIT_OPTIONS)
@pytest.mark.parametrize("value", ["0", "-1", "abc", "", "1.5", "1000001", "99999999999999999999"])
def test_invalid_limit_values(option, value):
    r = subprocess.run([harness.DAEMON, f"--{option}={value}", "--bus-address=unix:path=/nonexistent"],
                       capture_output=True, text=True, timeout=10, env=dict(os.environ, LANGUAGE="C"))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"invalid value '{value}' for --{option}" in r.stderr


@pytest.mark.parametrize("option", LIMIT_OPTIONS)
def test_limit_options_in_help(option):
    r = subprocess.run([harness.DAEMON, "--help"], capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, LANGUAGE="C"))
    assert r.returncode == 0
    assert f"--{option}=N" in r.stdout


def test_unknown_option_exits_2():
    r = subprocess.run([harness.DAEMON, "--max-everything=3"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2


# --------------------------------------------------------------------------- bounded memory
def test_session_state_dump_bounded(make_env, tmp_path):
    """A run that writes more than the 1 MiB bound to the state descriptor leaves the session's
    state as it was; the daemon does not hold what it wrote."""
    e = make_env()
    c = e.connect()
    spath = create_session(c)
    d = str(tmp_path)
    p = c.call(spath, SESSION_IFACE, "Run", "sa{sv}", (f"cd {d}; export KEEP=1", {}))[0]
    assert c.wait_exit(p)[1][0] == 0
    rss0 = vm_rss_kib(e.pid)
    p = c.call(spath, SESSION_IFACE, "Run", "sa{sv}",
               ("head -c 50000000 /dev/zero >&4; cd /; export LOST=1", {}))[0]
    assert c.wait_exit(p, timeout=30)[1][0] == 0
    assert vm_rss_kib(e.pid) - rss0 < 16 * 1024
    p = c.call(spath, SESSION_IFACE, "Run", "sa{sv}", ('pwd; echo "$KEEP-$LOST"', {}))[0]
    outputs, exited, _ev = c.wait_exit(p)
    assert exited[0] == 0
    assert b"".join(o[2] for o in outputs) == f"{d}\n1-\n".encode()


def test_finished_session_runs_do_not_keep_state(make_env):
    """Each session run's state dump (here 600 KB of environment,
    each variable below the kernel's 128 KiB per string) is dropped once the
    session took it: 60 retained records must not hold 60 dumps."""
    e = make_env("--ring-size=65536")
    c = e.connect()
    spath = create_session(c)
    p = c.call(spath, SESSION_IFACE, "Run", "sa{sv}",
               ("for i in 1 2 3 4 5 6; do export BIG$i=$(head -c 100000 /dev/zero | tr '\\0' x); done",
                {}))[0]
    assert c.wait_exit(p)[1][0] == 0
    rss0 = vm_rss_kib(e.pid)
    for _ in range(60):
        p = c.call(spath, SESSION_IFACE, "Run", "sa{sv}", ("true", {}))[0]
        assert c.wait_exit(p)[1][0] == 0
    grown = vm_rss_kib(e.pid) - rss0
    assert grown < 12 * 1024 + harness.RSS_SLACK_KIB, f"daemon grew by {grown} KiB over 60 runs"
    p = c.call(spath, SESSION_IFACE, "Run", "sa{sv}", ("echo $((${#BIG1} + ${#BIG6}))", {}))[0]
    outputs, exited, _ev = c.wait_exit(p)
    assert b"".join(o[2] for o in outputs) == b"200000\n"
