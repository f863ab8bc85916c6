"""Security on the bus, beyond test_ownership.py / test_unicast.py / test_files_identity.py:

- output signals (command Output/Exited, session runs, context Events, and anything else the
  daemon emits about a caller's objects) reach only their owner: neither another uid (65534)
  nor a second connection of the same uid, each subscribed to every signal (no eavesdropping),
  receives any of it; and those signals carry a destination (unicast);
- a non-root caller cannot run as another uid/gid, nor read root's contexts, sessions and
  environments (properties, introspection, GetManagedObjects) beyond what the module tests
  already check;
- Files: every operation on a root-only 0700 directory is refused to uid 65534, also when the
  path goes through a symlink of its own or through /proc magic links (/proc/PID/cwd, /fd,
  /root of a root process that sits inside that directory).

The private test bus allows eavesdropping; no match here uses eavesdrop=true, as the system
bus would refuse it.
"""
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from busclient import (BUS_NAME, COMMAND_IFACE, COMMAND_PREFIX, ERR_ACCESS_DENIED,
                       ERR_INVALID_ARGUMENT, ERR_NOT_OWNER, MANAGER_IFACE, MANAGER_PATH, Client,
                       DBusError, hdr, stream_bytes)
from conftest import _start_env, _stop_env
from filesutil import NOBODY, mkfile, read, run_ops

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION_IFACE = "org.execd.Execd1.Session"
SESSION_PREFIX = "/org/execd/Execd1/session/"
CONTEXT_IFACE = "org.execd.Execd1.Context"
CONTEXT_PREFIX = "/org/execd/Execd1/context/"
ENV_IFACE = "org.execd.Execd1.Environment"
ENV_PREFIX = "/org/execd/Execd1/environment/"
INTROSPECT = "org.freedesktop.DBus.Introspectable"
PROPS = "org.freedesktop.DBus.Properties"
REFUSED = (ERR_NOT_OWNER, ERR_ACCESS_DENIED, "org.freedesktop.DBus.Error.UnknownObject",
           "org.freedesktop.DBus.Error.UnknownMethod", "org.freedesktop.DBus.Error.UnknownInterface")


def load_helper_source():
    with open(os.path.join(HERE, "busclient.py")) as f:
        return f.read()


# --------------------------------------------------------------------------- the spy
# A bus client that subscribes to every signal (never with eavesdrop=true), then records
# what reaches it. Commands on stdin: "MATCH <rule>" adds a match (answers "OK"), "STOP"
# collects for a moment and prints RESULT with every signal received.
SPY = r'''
import json, sys, traceback
res = {"signals": []}
try:
    c = Client(sys.argv[1])
    for rule in json.loads(sys.argv[2]):
        c.add_match(rule)
    print("READY " + c.unique_name, flush=True)
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("MATCH "):
            c.add_match(line[6:])
            print("OK", flush=True)
        elif line == "STOP":
            break
    c.pump(1.0)
    for m in c.signals:
        res["signals"].append({k: hdr(m, k) for k in ("sender", "path", "interface", "member",
                                                       "destination")} | {"body": repr(m.body)})
except Exception:
    res["exception"] = traceback.format_exc()
print("RESULT " + json.dumps(res), flush=True)
'''


class Spy:
    def __init__(self, address, rules, user=None):
        kw = dict(user=user, group=user, extra_groups=[]) if user is not None else {}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", load_helper_source() + "\n" + SPY, address, json.dumps(rules)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd="/", **kw)
        line = self.proc.stdout.readline()
        assert line.startswith("READY "), line + self.proc.stderr.read()
        self.unique_name = line.split()[1]

    def match(self, rule):
        self.proc.stdin.write(f"MATCH {rule}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "OK"

    def stop(self):
        self.proc.stdin.write("STOP\n")
        self.proc.stdin.flush()
        out, err = self.proc.communicate(timeout=30)
        assert "RESULT " in out, out + err
        res = json.loads(out.split("RESULT ", 1)[1])
        assert "exception" not in res, res["exception"]
        return res["signals"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def name_owner(c, name=BUS_NAME):
    (owner,) = c.bus_call("GetNameOwner", "s", (name,))
    return owner


def spy_rules(daemon_name):
    return ["type='signal'",
            f"type='signal',sender='{BUS_NAME}'",
            f"type='signal',sender='{daemon_name}'",
            "type='signal',path_namespace='/org/execd/Execd1'",
            f"type='signal',interface='{COMMAND_IFACE}'",
            f"type='signal',interface='{SESSION_IFACE}'",
            f"type='signal',interface='{CONTEXT_IFACE}'",
            "type='signal',interface='org.freedesktop.DBus.Properties'",
            "type='signal',interface='org.freedesktop.DBus.ObjectManager'"]


@pytest.fixture(scope="module")
def senv():
    """A private daemon: no other test's traffic (metrics watchers, ...) on this bus."""
    e = _start_env()
    yield e
    _stop_env(e)


def _wait_context_event(c, path, timeout=60):
    """Collect a context's Event signals up to execution_complete: [msg]."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        m = c.wait_signal(lambda m: hdr(m, "path") == path and hdr(m, "member") == "Event",
                          timeout=max(0.0, deadline - time.monotonic()))
        out.append(m)
        if m.body[1] == "execution_complete":
            return out


@pytest.fixture(scope="module")
def traffic(senv):
    """The owner (root) runs a command, a session run and a context cell with secret output
    while a nobody spy and a second root connection listen to every signal."""
    owner = Client(senv.address)
    daemon = name_owner(owner)
    rules = spy_rules(daemon)
    nobody = Spy(senv.address, rules, user=NOBODY)
    same_uid = Spy(senv.address, rules)
    secret = "S3CRET-" + secrets.token_hex(8)
    got = {"secret": secret, "daemon": daemon, "owner": owner.unique_name}
    try:
        # A command: the spies also name its path before it prints anything.
        cmd = owner.run(f"sleep 0.5; echo {secret}-out; echo {secret}-err >&2; exit 3")
        for s in (nobody, same_uid):
            s.match(f"type='signal',path='{cmd}'")
            s.match(f"type='signal',sender='{daemon}',path='{cmd}'")
        outputs, exited, events = owner.wait_exit(cmd)
        assert stream_bytes(outputs, "stdout") == f"{secret}-out\n".encode()
        assert exited == (3, 0, False)
        got["command"] = cmd
        got["command_msgs"] = [m for m in owner.take_signals(path=cmd)]
        # wait_exit consumed the owner's Output/Exited signals; run another to keep messages
        cmd2 = owner.run(f"echo {secret}-again")
        msgs = []
        while not any(hdr(m, "member") == "Exited" for m in msgs):
            msgs.append(owner.wait_signal(lambda m: hdr(m, "path") == cmd2))
        got["command_msgs"] += msgs

        # A session run.
        (sp,) = owner.call(MANAGER_PATH, MANAGER_IFACE, "CreateSession", "a{sv}", ({},))
        for s in (nobody, same_uid):
            s.match(f"type='signal',path='{sp}'")
            s.match(f"type='signal',path_namespace='{sp}'")
        (run,) = owner.call(sp, SESSION_IFACE, "Run", "sa{sv}",
                            (f"sleep 0.3; echo {secret}-session", {}))
        msgs = []
        while not any(hdr(m, "member") == "Exited" for m in msgs):
            msgs.append(owner.wait_signal(lambda m: hdr(m, "path") == run))
        got["session"] = sp
        got["session_msgs"] = msgs

        # A code context (needs ipykernel; skipped when there is none).
        try:
            (cp,) = owner.call(MANAGER_PATH, MANAGER_IFACE, "CreateContext", "sa{sv}",
                               ("python", {}), timeout=60)
        except DBusError as e:
            got["context_error"] = f"{e.name}: {e.message}"
            cp = None
        if cp:
            for s in (nobody, same_uid):
                s.match(f"type='signal',path='{cp}'")
            owner.add_match(f"type='signal',interface='{CONTEXT_IFACE}',path='{cp}'")
            owner.call(cp, CONTEXT_IFACE, "Execute", "s", (f"print('{secret}-ctx')",))
            got["context"] = cp
            got["context_msgs"] = _wait_context_event(owner, cp)
            # Let any state change the run causes go out too.
            owner.pump(0.3)
            got["context_owner_other"] = owner.take_signals(path=cp)
        got["nobody"] = nobody.stop()
        got["same_uid"] = same_uid.stop()
        yield got
        if cp:
            try:
                owner.call(cp, CONTEXT_IFACE, "Delete")
            except DBusError:
                pass
        try:
            owner.call(sp, SESSION_IFACE, "Delete")
        except DBusError:
            pass
    finally:
        nobody.kill()
        same_uid.kill()
        owner.close()


def _from_daemon(signals, daemon):
    return [s for s in signals if s["sender"] == daemon or
            (s["path"] or "").startswith("/org/execd/Execd1")]


@pytest.mark.parametrize("who", ["nobody", "same_uid"])
def test_spies_receive_nothing_of_anothers_objects(traffic, who):
    """Subscribed to every signal (type='signal', the daemon's names, the object paths), a
    client other than the owner receives nothing from the daemon at all: no Output, Exited,
    Event, PropertiesChanged or InterfacesAdded of the owner's command, session or context."""
    sigs = traffic[who]
    leaked = _from_daemon(sigs, traffic["daemon"])
    assert leaked == [], leaked
    assert not [s for s in sigs if traffic["secret"] in s["body"]], sigs


def test_context_was_exercised(traffic):
    if "context" not in traffic:
        pytest.skip("no python kernel: " + traffic.get("context_error", "?"))
    events = [m.body for m in traffic["context_msgs"]]
    assert any(traffic["secret"] + "-ctx" in e[2] for e in events), events


def _assert_unicast(msgs, owner):
    assert msgs
    for m in msgs:
        assert hdr(m, "destination") == owner, \
            (hdr(m, "path"), hdr(m, "interface"), hdr(m, "member"), hdr(m, "destination"))


def test_command_signals_carry_a_destination(traffic):
    msgs = traffic["command_msgs"]
    assert {hdr(m, "member") for m in msgs} >= {"Output", "Exited"}
    _assert_unicast(msgs, traffic["owner"])


def test_session_run_signals_carry_a_destination(traffic):
    msgs = traffic["session_msgs"]
    assert any(hdr(m, "member") == "Output" and traffic["secret"].encode() in bytes(m.body[2])
               for m in msgs), [m.body for m in msgs]
    _assert_unicast(msgs, traffic["owner"])


def test_context_signals_carry_a_destination(traffic):
    if "context" not in traffic:
        pytest.skip("no python kernel: " + traffic.get("context_error", "?"))
    _assert_unicast(traffic["context_msgs"] + traffic["context_owner_other"], traffic["owner"])


# --------------------------------------------------------------------------- ownership
OWN_HELPER = r'''
import json, sys, traceback
addr = sys.argv[1]
a = json.loads(sys.argv[2])
res = {}
def err(f):
    try:
        r = f()
        return {"ok": repr(r)}
    except DBusError as e:
        return {"error": e.name, "message": e.message}
M, MI = "/org/execd/Execd1", "org.execd.Execd1.Manager"
I, P = "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Properties"
try:
    c = Client(addr)
    me = __import__("os").getuid()
    # Running as someone else.
    res["run_uid_root"] = err(lambda: c.run("id -u", uid=0))
    res["run_uid_other"] = err(lambda: c.run("id -u", uid=1))
    res["run_self_gid_root"] = err(lambda: c.run("id -u", uid=me, gid=0))
    res["run_gid_only"] = err(lambda: c.run("id -u", gid=0))
    res["session_uid"] = err(lambda: c.call(M, MI, "CreateSession", "a{sv}", ({"uid": ("u", 0)},)))
    res["context_uid"] = err(lambda: c.call(M, MI, "CreateContext", "sa{sv}",
                                            ("python", {"uid": ("u", 0)}), timeout=30))
    # Root's objects.
    for kind, path, iface in (("cmd", a["cmd"], "org.execd.Execd1.Command"),
                              ("sess", a["sess"], "org.execd.Execd1.Session"),
                              ("ctx", a.get("ctx"), "org.execd.Execd1.Context"),
                              ("env", a["env"], "org.execd.Execd1.Environment")):
        if not path:
            continue
        res[kind + "_introspect"] = err(lambda: c.call(path, I, "Introspect"))
        res[kind + "_getall"] = err(lambda: c.call(path, P, "GetAll", "s", (iface,)))
        res[kind + "_getall_any"] = err(lambda: c.call(path, P, "GetAll", "s", ("",)))
        res[kind + "_get_id"] = err(lambda: c.call(path, P, "Get", "ss", (iface, "Id")))
        res[kind + "_set"] = err(lambda: c.call(path, P, "Set", "ssv", (iface, "Id", ("s", "x"))))
        parent = path.rsplit("/", 1)[0]
        res[kind + "_parent_introspect"] = c.call(parent, I, "Introspect")[0]
    if a.get("ctx"):
        CI = "org.execd.Execd1.Context"
        res["ctx_read_events"] = err(lambda: c.call(a["ctx"], CI, "ReadEvents", "t", (0,)))
    res["env_execute_with_token"] = err(lambda: c.call(a["env"], "org.execd.Execd1.Environment",
        "Execute", "ssu", (a["env_token"], "touch pwned", 5)))
    res["env_list"] = err(lambda: c.call(M, MI, "ListEnvironments", "ss", ("sec", "ws")))
    res["managed"] = sorted(c.managed_objects())
    res["root_introspect"] = c.call(M, I, "Introspect")[0]
except Exception:
    res["exception"] = traceback.format_exc()
print("RESULT " + json.dumps(res))
'''


@pytest.fixture(scope="module")
def own(senv):
    from filesutil import run_helper
    root = Client(senv.address)
    cmd = root.run("sleep 60")
    (sess,) = root.call(MANAGER_PATH, MANAGER_IFACE, "CreateSession", "a{sv}", ({},))
    try:
        (ctx,) = root.call(MANAGER_PATH, MANAGER_IFACE, "CreateContext", "sa{sv}",
                           ("python", {}), timeout=60)
    except DBusError:
        ctx = None
    env, _eid, token = root.call(MANAGER_PATH, MANAGER_IFACE, "ProvisionEnvironment", "sssa{ss}",
                                 ("sec", "ws", "sec-" + secrets.token_hex(3), {}))
    args = {"cmd": cmd, "sess": sess, "ctx": ctx, "env": env, "env_token": token}
    res = run_helper(senv.address, OWN_HELPER, args, user=NOBODY)
    yield root, args, res
    for path, iface, member in ((cmd, COMMAND_IFACE, "Interrupt"), (sess, SESSION_IFACE, "Delete"),
                                (ctx, CONTEXT_IFACE, "Delete"), (env, ENV_IFACE, "Delete")):
        if path:
            try:
                root.call(path, iface, member)
            except DBusError:
                pass
    root.close()


def error(res, key):
    r = res[key]
    assert "error" in r, f"{key} succeeded for uid {NOBODY}: {r}"
    return r["error"]


def test_nobody_cannot_run_as_another_uid_or_gid(own):
    _root, _a, res = own
    assert error(res, "run_uid_root") == ERR_ACCESS_DENIED
    assert error(res, "run_uid_other") == ERR_ACCESS_DENIED
    assert error(res, "run_self_gid_root") == ERR_ACCESS_DENIED
    assert error(res, "run_gid_only") == ERR_INVALID_ARGUMENT
    # Sessions and contexts take no uid at all.
    assert error(res, "session_uid") == ERR_INVALID_ARGUMENT
    assert error(res, "context_uid") == ERR_INVALID_ARGUMENT


def test_nobody_sees_no_commands_of_root(own):
    """Nothing ran for nobody: it ran nothing that succeeded."""
    root, _a, _res = own
    assert [p for p in root.command_paths() if root.get(p, "OwnerUid") == NOBODY] == []


@pytest.mark.parametrize("kind", ["cmd", "sess", "ctx", "env"])
def test_nobody_cannot_read_roots_objects(own, kind):
    _root, a, res = own
    path = a[{"cmd": "cmd", "sess": "sess", "ctx": "ctx", "env": "env"}[kind]]
    if path is None:
        pytest.skip("no python kernel")
    for op in ("introspect", "getall", "getall_any", "get_id", "set"):
        assert error(res, f"{kind}_{op}") in REFUSED, (op, res[f"{kind}_{op}"])
    # The node tree does not list it, nor does GetManagedObjects.
    node = path.rsplit("/", 1)[1]
    assert node not in res[f"{kind}_parent_introspect"], res[f"{kind}_parent_introspect"]
    assert path not in res["managed"]
    assert not [p for p in res["managed"] if p.startswith((SESSION_PREFIX, CONTEXT_PREFIX,
                                                           ENV_PREFIX))], res["managed"]
    assert not [p for p in res["managed"] if p.startswith(COMMAND_PREFIX)], res["managed"]


def test_nobody_cannot_use_roots_context_events(own):
    _root, a, res = own
    if a["ctx"] is None:
        pytest.skip("no python kernel")
    assert error(res, "ctx_read_events") == ERR_NOT_OWNER


def test_nobody_cannot_use_environments_even_with_the_token(own, tmp_path):
    root, a, res = own
    assert error(res, "env_execute_with_token") in (ERR_ACCESS_DENIED, ERR_NOT_OWNER)
    assert error(res, "env_list") in (ERR_ACCESS_DENIED, ERR_NOT_OWNER)
    # nothing ran in the environment
    code, _out, _t, _to = root.call(a["env"], ENV_IFACE, "Execute", "ssu",
                                    (a["env_token"], "test -e pwned", 5), timeout=20)
    assert code == 1


def test_roots_objects_unchanged(own):
    root, a, _res = own
    assert root.get(a["cmd"], "Running") is True
    assert root.get(a["sess"], "OwnerUid", iface=SESSION_IFACE) == 0


# --------------------------------------------------------------------------- files
@pytest.fixture(scope="module")
def closed_layout():
    """
    D/                 root 0755
      closed/          root 0700
        inner          root 0644 "inner data"
        sub/           root 0755
          deep         root 0644 "deep data"
      nob/             nobody 0755
        link-file  -> ../closed/inner
        link-dir   -> ../closed
      drop             root 0644 "drop"
    """
    d = os.path.realpath(tempfile.mkdtemp(prefix="execd-sec-", dir="/tmp"))
    os.chmod(d, 0o755)
    closed = os.path.join(d, "closed")
    os.mkdir(closed)
    os.chmod(closed, 0o700)
    mkfile(os.path.join(closed, "inner"), b"inner data", 0o644)
    os.mkdir(os.path.join(closed, "sub"))
    os.chmod(os.path.join(closed, "sub"), 0o755)
    mkfile(os.path.join(closed, "sub", "deep"), b"deep data", 0o644)
    nob = os.path.join(d, "nob")
    os.mkdir(nob)
    os.chmod(nob, 0o755)
    os.symlink("../closed/inner", os.path.join(nob, "link-file"))
    os.symlink("../closed", os.path.join(nob, "link-dir"))
    os.lchown(os.path.join(nob, "link-file"), NOBODY, NOBODY)
    os.lchown(os.path.join(nob, "link-dir"), NOBODY, NOBODY)
    os.chown(nob, NOBODY, NOBODY)
    mkfile(os.path.join(d, "drop"), b"drop", 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def b(data):
    return {"b": data.decode("latin-1")}


def file_ops(prefix, base, nob):
    """Every Files operation aimed into the closed directory through base (the directory
    itself, or a way around it)."""
    j = lambda *p: os.path.join(base, *p)  # noqa: E731
    return [
        [prefix + "stat", "Stat", "as", [[j("inner")]]],
        [prefix + "stat_dir", "Stat", "as", [[base]]],
        [prefix + "list", "List", "su", [base, 1]],
        [prefix + "search", "Search", "ss", [base, "*"]],
        [prefix + "read_bytes", "ReadBytes", "stt", [j("inner"), 0, 100]],
        [prefix + "read_bytes_deep", "ReadBytes", "stt", [j("sub", "deep"), 0, 100]],
        [prefix + "open_read", "OpenRead", "s", [j("inner")]],
        [prefix + "write_bytes_new", "WriteBytes", "sayuss", [j("new"), b(b"x"), 0, "", ""]],
        [prefix + "write_bytes_over", "WriteBytes", "sayuss", [j("inner"), b(b"x"), 0, "", ""]],
        [prefix + "open_write", "OpenWrite", "suss", [j("new2"), 0, "", ""]],
        [prefix + "move_out", "Move", "a(ss)", [[[j("inner"), os.path.join(nob, "stolen")]]]],
        [prefix + "move_in", "Move", "a(ss)", [[[os.path.join(nob, "mine"), j("planted")]]]],
        [prefix + "remove_files", "RemoveFiles", "as", [[j("inner")]]],
        [prefix + "set_permissions", "SetPermissions", "a(suss)", [[[j("inner"), 0o666, "", ""]]]],
        [prefix + "set_permissions_dir", "SetPermissions", "a(suss)", [[[base, 0o777, "", ""]]]],
        [prefix + "replace", "Replace", "a(sss)", [[[j("inner"), "inner", "PWNED"]]]],
        [prefix + "mkdirs", "MakeDirectories", "a(suss)", [[[j("made"), 0o755, "", ""]]]],
        [prefix + "remove_dirs", "RemoveDirectories", "as", [[j("sub")]]],
    ]


@pytest.fixture(scope="module")
def closed_results(senv, closed_layout):
    d = closed_layout
    closed = os.path.join(d, "closed")
    nob = os.path.join(d, "nob")
    mkfile(os.path.join(nob, "mine"), b"mine", 0o644)
    os.chown(os.path.join(nob, "mine"), NOBODY, NOBODY)
    # A root command that sits in the closed directory with a file of it open on fd 3: its
    # /proc magic links lead into the directory without walking through it.
    root = Client(senv.address)
    cmd = root.run("exec 3<inner; exec sleep 60", cwd=closed)
    pid = root.get(cmd, "Pid")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not os.path.exists(f"/proc/{pid}/fd/3"):
        time.sleep(0.02)
    assert os.readlink(f"/proc/{pid}/cwd") == closed
    ops = (file_ops("direct_", closed, nob)
           + file_ops("symlink_", os.path.join(nob, "link-dir"), nob)
           + file_ops("proc_cwd_", f"/proc/{pid}/cwd", nob)
           + file_ops("proc_root_", f"/proc/{pid}/root{closed}", nob)
           + file_ops("proc_self_root_", f"/proc/self/root{closed}", nob)
           + file_ops("proc_thread_self_root_", f"/proc/thread-self/root{closed}", nob)
           + [["link_file_read", "ReadBytes", "stt", [os.path.join(nob, "link-file"), 0, 100]],
              ["link_file_open", "OpenRead", "s", [os.path.join(nob, "link-file")]],
              ["proc_fd_read", "ReadBytes", "stt", [f"/proc/{pid}/fd/3", 0, 100]],
              ["proc_fd_open", "OpenRead", "s", [f"/proc/{pid}/fd/3"]],
              ["proc_fd_stat", "Stat", "as", [[f"/proc/{pid}/fd/3"]]],
              ["proc_environ", "ReadBytes", "stt", [f"/proc/{pid}/environ", 0, 100]]])
    try:
        res = run_ops(senv.address, ops, user=NOBODY)
        yield d, pid, res
    finally:
        try:
            root.signal(cmd, 9)
        except DBusError:
            pass
        root.close()


def _denied(res, name):
    r = res[name]
    assert "error" in r, f"{name} succeeded for uid {NOBODY}: {str(r)[:300]}"
    return r["error"]


@pytest.mark.parametrize("via", ["direct_", "symlink_", "proc_cwd_", "proc_root_", "proc_self_root_",
                                 "proc_thread_self_root_"])
def test_files_in_root_only_directory_are_refused(closed_results, via):
    d, _pid, res = closed_results
    names = [n for n in res if n.startswith(via)]
    assert len(names) == 18, names
    # Stat of the directory itself (or of the magic link) is fine: its parent is public.
    names.remove(via + "stat_dir")
    # Search may answer, but must not name anything inside the directory.
    if "ok" in res[via + "search"]:
        found = str(res[via + "search"]["ok"])
        assert "inner" not in found and "sub" not in found and "deep" not in found, found
        names.remove(via + "search")
    ok = {n: str(res[n])[:200] for n in names if "error" not in res[n]}
    assert ok == {}, f"uid {NOBODY} got into a root-only 0700 directory: {ok}"
    for n in names:
        assert res[n]["error"] in (ERR_ACCESS_DENIED, ERR_INVALID_ARGUMENT,
                                   "org.execd.Execd1.Error.NotFound",
                                   "org.execd.Execd1.Error.NotDirectory",
                                   "org.execd.Execd1.Error.InvalidPath"), (n, res[n])
    assert read(os.path.join(d, "closed", "inner")) == b"inner data"
    assert sorted(os.listdir(os.path.join(d, "closed"))) == ["inner", "sub"]
    st = os.stat(os.path.join(d, "closed"))
    assert st.st_mode & 0o7777 == 0o700 and st.st_uid == 0
    st = os.stat(os.path.join(d, "closed", "inner"))
    assert st.st_mode & 0o7777 == 0o644 and st.st_uid == 0
    assert sorted(os.listdir(os.path.join(d, "nob"))) == ["link-dir", "link-file", "mine"]


def test_files_symlink_and_magic_links_to_files_are_refused(closed_results):
    _d, _pid, res = closed_results
    for n in ("link_file_read", "link_file_open", "proc_fd_read", "proc_fd_open",
              "proc_fd_stat", "proc_environ"):
        _denied(res, n)
