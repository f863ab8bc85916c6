"""Code contexts on the bus: Manager.CreateContext/DefaultContext/ListContexts and
org.execd.Execd1.Context (Execute, Event, ReadEvents, Interrupt, Delete, properties, ownership).

The kernels are real ipykernel processes (about a second to start): one module-scoped context
serves the tests that only run cells; tests that interrupt, kill or delete a kernel make their
own. Every context made here is deleted again."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from busclient import (ERR_INVALID_ARGUMENT, ERR_NOT_OWNER, ERR_NOT_RUNNING, ERR_UNKNOWN_OBJECT,
                       MANAGER_IFACE, MANAGER_PATH, DBusError, hdr)
from conftest import _start_env, _stop_env, pid_alive, proc_stat, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
CONTEXT_IFACE = "org.execd.Execd1.Context"
CONTEXT_PREFIX = "/org/execd/Execd1/context/"
ERR_BUSY = "org.execd.Execd1.Error.Busy"
NOBODY = 65534
START_TIMEOUT = 30


# --------------------------------------------------------------------------- helpers
def create(c, language="python", options=None, timeout=START_TIMEOUT):
    (path,) = c.call(MANAGER_PATH, MANAGER_IFACE, "CreateContext", "sa{sv}",
                     (language, options or {}), timeout=timeout)
    return path


def default(c, language="python", timeout=START_TIMEOUT):
    (path,) = c.call(MANAGER_PATH, MANAGER_IFACE, "DefaultContext", "s", (language,),
                     timeout=timeout)
    return path


def list_contexts(c, language=""):
    (items,) = c.call(MANAGER_PATH, MANAGER_IFACE, "ListContexts", "s", (language,))
    return sorted(tuple(i) for i in items)


def prop(c, path, name):
    return c.get(path, name, iface=CONTEXT_IFACE)


def props(c, path):
    return c.get_all(path, iface=CONTEXT_IFACE)


def delete(c, path):
    c.call(path, CONTEXT_IFACE, "Delete")


def quiet_delete(c, path):
    try:
        delete(c, path)
    except Exception:
        pass


def subscribe(c, path):
    c.add_match(f"type='signal',interface='{CONTEXT_IFACE}',member='Event',path='{path}'")


def execute(c, path, code):
    (first_seq,) = c.call(path, CONTEXT_IFACE, "Execute", "s", (code,))
    return first_seq


def is_event(path):
    return lambda m: hdr(m, "path") == path and hdr(m, "interface") == CONTEXT_IFACE and \
        hdr(m, "member") == "Event"


def collect(c, path, first_seq, timeout=20):
    """Event signals of one run, up to its execution_complete: [(seq, type, event dict)]."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        m = c.wait_signal(is_event(path), timeout=max(0.0, deadline - time.monotonic()))
        seq, typ, text = m.body
        if seq < first_seq:
            continue
        ev = json.loads(text)
        out.append((seq, typ, ev))
        if typ == "execution_complete":
            return out


def check_events(events, first_seq):
    """The shape of one run's events (the HTTP API's event objects)."""
    seqs = [s for s, _t, _e in events]
    assert seqs[0] == first_seq, (seqs, first_seq)
    assert seqs == list(range(first_seq, first_seq + len(seqs))), seqs
    types = [t for _s, t, _e in events]
    assert types[-1] == "execution_complete" and types.count("execution_complete") == 1, types
    assert set(types) <= {"stdout", "stderr", "execution_count", "result", "error",
                          "execution_complete"}, types
    for _s, t, e in events:
        assert e["type"] == t, (t, e)
        ts = e.get("timestamp")
        assert isinstance(ts, int) and not isinstance(ts, bool), e
        assert abs(ts - time.time() * 1000) < 60_000, e
        if t in ("stdout", "stderr"):
            assert set(e) == {"type", "text", "timestamp"} and e["text"], e
        elif t == "execution_count":
            assert set(e) == {"type", "execution_count", "timestamp"}, e
            assert isinstance(e["execution_count"], int) and e["execution_count"] > 0, e
        elif t == "result":
            assert set(e) == {"type", "results", "timestamp"} and e["results"], e
            assert "text/plain" not in e["results"], e
        elif t == "error":
            assert set(e) == {"type", "error", "timestamp"}, e
            assert set(e["error"]) == {"ename", "evalue", "traceback"}, e
            assert isinstance(e["error"]["traceback"], list), e
            assert all(isinstance(x, str) for x in e["error"]["traceback"]), e
        elif t == "execution_complete":
            assert set(e) <= {"type", "execution_time", "timestamp"}, e
    return types


def run(c, path, code, timeout=20):
    """Execute and collect the run's events: (first_seq, [(seq, type, event)])."""
    first = execute(c, path, code)
    events = collect(c, path, first, timeout=timeout)
    check_events(events, first)
    return first, events


def stdout_of(events):
    return "".join(e["text"] for _s, t, e in events if t == "stdout")


def stderr_of(events):
    return "".join(e["text"] for _s, t, e in events if t == "stderr")


def types_of(events):
    return [t for _s, t, _e in events]


def errors_of(events):
    return [e["error"] for _s, t, e in events if t == "error"]


def results_of(events):
    return [e["results"] for _s, t, e in events if t == "result"]


def read_events_all(c, path, from_seq):
    out = []
    seq = from_seq
    while True:
        events, next_seq = c.call(path, CONTEXT_IFACE, "ReadEvents", "t", (seq,))
        if not events:
            return out, next_seq
        out.extend(tuple(e) for e in events)
        assert next_seq > seq, (seq, next_seq)
        seq = next_seq


def kernel_cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def connection_file(pid):
    argv = kernel_cmdline(pid)
    assert "-f" in argv, argv
    return argv[argv.index("-f") + 1]


def gone(pid):
    """Neither running nor an unreaped zombie."""
    return proc_stat(pid) is None


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cenv():
    """This module's own bus + daemon: a daemon crash here must not take the session's
    shared daemon (and every later module) down with it."""
    e = _start_env()
    yield e
    _stop_env(e)


@pytest.fixture(scope="module")
def root(cenv):
    from busclient import Client
    c = Client(cenv.address)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def daemon_alive(cenv):
    assert cenv.daemon.proc.poll() is None, \
        f"execd exited ({cenv.daemon.proc.returncode}) before this test:\n" + \
        cenv.daemon.read_log()[-3000:]
    yield
    assert cenv.daemon.proc.poll() is None, \
        f"execd exited ({cenv.daemon.proc.returncode}) during this test:\n" + \
        cenv.daemon.read_log()[-3000:]


@pytest.fixture(scope="module")
def ctx(root):
    """A shared context of root's, subscribed to."""
    path = create(root)
    subscribe(root, path)
    yield path
    quiet_delete(root, path)


@pytest.fixture
def own_ctx(root):
    made = []

    def make(options=None):
        path = create(root, options=options)
        subscribe(root, path)
        made.append(path)
        return path

    yield make
    for p in made:
        quiet_delete(root, p)


# --------------------------------------------------------------------------- creation
def test_id_property_and_getall(make_env):
    """Get(Id), GetAll and GetManagedObjects on a context, in a daemon of this test's own
    (they have crashed execd: the Id property is a char array read as a char pointer)."""
    e = make_env()
    c = e.connect()
    path = create(c)
    cid = path[len(CONTEXT_PREFIX):]
    try:
        failures = []
        for what, f in [("Get(Id)", lambda: prop(c, path, "Id")),
                        ("GetAll", lambda: props(c, path)),
                        ("GetManagedObjects", lambda: c.managed_objects())]:
            try:
                v = f()
            except DBusError as ex:
                failures.append(f"{what}: {ex.name}: {ex.message}; daemon exit status "
                                f"{e.daemon.proc.poll()}")
                if e.daemon.proc.poll() is not None:
                    break
                continue
            if what == "Get(Id)":
                assert v == cid
            elif what == "GetAll":
                assert set(v) == set(PROPS), v
                assert v["Id"] == cid and v["Language"] == "python", v
            else:
                assert path in v, sorted(v)
                assert v[path][CONTEXT_IFACE]["Id"][1] == cid, v[path]
        assert not failures, failures
        assert e.daemon.proc.poll() is None
    finally:
        if e.daemon.proc.poll() is None:
            quiet_delete(c, path)


PROPS = ["Id", "Language", "Kernel", "OwnerUid", "Default", "Cwd", "State", "ExecutionCount",
         "KernelPid"]


def props_each(c, path, names=PROPS):
    """Properties read one Get at a time (all but Id: see test_id_property_and_getall)."""
    return {n: prop(c, path, n) for n in names if n != "Id"}


def test_create_context_properties(root, ctx):
    assert ctx.startswith(CONTEXT_PREFIX), ctx
    p = props_each(root, ctx)
    cid = ctx[len(CONTEXT_PREFIX):]
    assert len(cid) == 32 and all(ch in "0123456789abcdef" for ch in cid), cid
    assert p["Language"] == "python"
    assert p["Kernel"] == "python3"
    assert p["OwnerUid"] == 0
    assert p["Default"] is False
    assert p["Cwd"] == ""
    assert p["State"] == "idle", p  # returned once the kernel answers
    assert isinstance(p["ExecutionCount"], int)
    pid = p["KernelPid"]
    assert pid > 0 and pid_alive(pid), p
    argv = kernel_cmdline(pid)
    assert "python" in os.path.basename(argv[0]), argv
    assert "ipykernel_launcher" in argv, argv


def test_create_context_unknown_language(root):
    before = list_contexts(root)
    t0 = time.monotonic()
    with pytest.raises(DBusError) as ei:
        create(root, "cobol")
    assert time.monotonic() - t0 < 2
    assert ei.value.name == ERR_INVALID_ARGUMENT, ei.value
    assert "python" in ei.value.message and "cobol" in ei.value.message, ei.value.message
    assert list_contexts(root) == before


@pytest.mark.parametrize("language,options", [
    ("", {}),
    ("python", {"bogus": ("s", "x")}),
    ("python", {"cwd": ("u", 5)}),
    ("python", {"cwd": ("s", "/tmp"), "env": ("s", "x")}),
])
def test_create_context_invalid(root, language, options):
    before = list_contexts(root)
    with pytest.raises(DBusError) as ei:
        create(root, language, options)
    assert ei.value.name == ERR_INVALID_ARGUMENT, ei.value
    assert list_contexts(root) == before


def test_create_context_cwd(root, own_ctx):
    base = tempfile.mkdtemp(prefix="execd-ctx-cwd-")
    try:
        cwd = os.path.join(base, "a", "b")
        path = own_ctx({"cwd": ("s", cwd)})
        assert prop(root, path, "Cwd") == cwd
        assert os.path.isdir(cwd)
        _first, events = run(root, path, "import os; print(os.getcwd())")
        assert stdout_of(events) == cwd + "\n", events
    finally:
        subprocess.run(["rm", "-rf", base])


def test_default_context(root, ctx):
    p1 = default(root)
    try:
        p2 = default(root)
        assert p1 == p2
        assert p1 != ctx
        assert prop(root, p1, "Default") is True
        assert prop(root, ctx, "Default") is False
        assert prop(root, p1, "Language") == "python"
        ids = {ctx[len(CONTEXT_PREFIX):], p1[len(CONTEXT_PREFIX):]}
        all_ = list_contexts(root)
        assert {(i, "python") for i in ids} <= set(all_), all_
        assert {(i, "python") for i in ids} <= set(list_contexts(root, "python"))
        assert list_contexts(root, "cobol") == []
        # Deleted, the next DefaultContext makes a new one.
        delete(root, p1)
        p3 = default(root)
        p1 = p3
        assert p3 != p2 and prop(root, p3, "Default") is True
    finally:
        quiet_delete(root, p1)


def test_default_context_unknown_language(root):
    with pytest.raises(DBusError) as ei:
        default(root, "cobol")
    assert ei.value.name == ERR_INVALID_ARGUMENT, ei.value


# --------------------------------------------------------------------------- runs
def test_execute_events_and_replay(root, ctx):
    first, events = run(root, ctx, 'print("hi")\n2+2')
    assert types_of(events) == ["stdout", "execution_count", "result", "execution_complete"], \
        events
    assert stdout_of(events) == "hi\n"
    assert results_of(events) == [{"text": "4"}]
    count = [e["execution_count"] for _s, t, e in events if t == "execution_count"][0]
    assert prop(root, ctx, "ExecutionCount") == count
    assert prop(root, ctx, "State") == "idle"
    complete = events[-1][2]
    assert isinstance(complete.get("execution_time"), int), complete
    # ReadEvents(first_seq) returns the same events (seq, type, JSON text).
    replay, next_seq = read_events_all(root, ctx, first)
    assert [(s, t, json.loads(j)) for s, t, j in replay] == events
    assert next_seq == events[-1][0] + 1
    # The next run continues the numbering and the count.
    first2, events2 = run(root, ctx, "x_bus = 20\nx_bus + 1")
    assert first2 == next_seq
    assert results_of(events2) == [{"text": "21"}]
    count2 = [e["execution_count"] for _s, t, e in events2 if t == "execution_count"][0]
    assert count2 > count
    # Replay from the first run's start holds both runs.
    replay, _n = read_events_all(root, ctx, first)
    assert [s for s, _t, _j in replay] == list(range(first, events2[-1][0] + 1))


def test_execute_error(root, ctx):
    _first, events = run(root, ctx, "undefined_bus_name")
    errs = errors_of(events)
    assert [e["ename"] for e in errs] == ["NameError"], events
    assert "undefined_bus_name" in errs[0]["evalue"]
    assert errs[0]["traceback"], errs
    assert types_of(events)[-2:] == ["error", "execution_complete"], events


def test_execute_empty_code(root, ctx):
    with pytest.raises(DBusError) as ei:
        execute(root, ctx, "")
    assert ei.value.name == ERR_INVALID_ARGUMENT


def test_events_are_unicast(cenv, root, ctx):
    from busclient import Client
    spy = Client(cenv.address)
    try:
        spy.add_match(f"type='signal',interface='{CONTEXT_IFACE}'")
        spy.add_match("type='signal',member='Event'")
        _first, events = run(root, ctx, "print('secret-ctx-output')")
        assert stdout_of(events) == "secret-ctx-output\n"
        spy.pump(0.3)
        leaked = [m for m in spy.signals if hdr(m, "member") == "Event"]
        assert not leaked, [m.body for m in leaked]
    finally:
        spy.close()


def test_busy_and_interrupt(root, own_ctx):
    path = own_ctx()
    run(root, path, "kept_bus = 'kept'")
    with pytest.raises(DBusError) as ei:
        root.call(path, CONTEXT_IFACE, "Interrupt")
    assert ei.value.name == ERR_NOT_RUNNING, ei.value
    first = execute(root, path, "print('spinning', flush=True)\nwhile True: pass")
    # Wait for the cell to really run.
    m = root.wait_signal(is_event(path), timeout=15)
    assert m.body[1] == "stdout" and json.loads(m.body[2])["text"] == "spinning\n", m.body
    assert prop(root, path, "State") == "busy"
    with pytest.raises(DBusError) as ei:
        execute(root, path, "1")
    assert ei.value.name == ERR_BUSY, ei.value
    root.call(path, CONTEXT_IFACE, "Interrupt")
    events = [(m.body[0], m.body[1], json.loads(m.body[2]))] + collect(root, path, first + 1,
                                                                       timeout=10)
    check_events(events, first)
    assert [e["ename"] for e in errors_of(events)] == ["KeyboardInterrupt"], events
    assert types_of(events)[-2:] == ["error", "execution_complete"], events
    assert prop(root, path, "State") == "idle"
    _f, after = run(root, path, "kept_bus")
    assert results_of(after) == [{"text": "'kept'"}], after


def test_delete_running_context(root, own_ctx):
    path = own_ctx()
    pid = prop(root, path, "KernelPid")
    assert pid_alive(pid)
    conn = connection_file(pid)
    rundir = os.path.dirname(conn)
    assert os.path.exists(conn), conn
    first = execute(root, path, "print('sleeping', flush=True)\nimport time; time.sleep(30)")
    m = root.wait_signal(is_event(path), timeout=15)
    assert m.body[1] == "stdout", m.body
    t0 = time.monotonic()
    delete(root, path)
    events = [(m.body[0], m.body[1], json.loads(m.body[2]))] + collect(root, path, first + 1,
                                                                       timeout=5)
    check_events(events, first)
    assert [e["ename"] for e in errors_of(events)] == ["ContextDeleted"], events
    assert types_of(events)[-2:] == ["error", "execution_complete"], events
    assert wait_until(lambda: gone(pid), 5), f"kernel {pid} still exists: {proc_stat(pid)}"
    assert time.monotonic() - t0 < 5
    assert wait_until(lambda: not os.path.exists(rundir), 5), \
        f"runtime dir {rundir} left behind: {os.listdir(rundir)}"
    with pytest.raises(DBusError) as ei:
        prop(root, path, "State")
    assert ei.value.name == ERR_UNKNOWN_OBJECT, ei.value
    cid = path[len(CONTEXT_PREFIX):]
    assert cid not in [i for i, _l in list_contexts(root)]


def test_delete_idle_context_removes_files(root):
    path = create(root)
    try:
        pid = prop(root, path, "KernelPid")
        rundir = os.path.dirname(connection_file(pid))
        assert os.path.isdir(rundir)
    finally:
        delete(root, path)
    assert wait_until(lambda: gone(pid), 5), f"kernel {pid} still exists: {proc_stat(pid)}"
    assert not os.path.exists(rundir), os.listdir(rundir)


def test_kernel_death_and_restart(root, own_ctx):
    path = own_ctx()
    run(root, path, "lost_bus = 1")
    pid = prop(root, path, "KernelPid")
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: prop(root, path, "State") == "dead", 10), prop(root, path, "State")
    assert prop(root, path, "KernelPid") == 0
    assert wait_until(lambda: gone(pid), 5), f"dead kernel {pid} not reaped: {proc_stat(pid)}"
    _first, events = run(root, path, "lost_bus", timeout=40)
    assert types_of(events)[0] == "stderr", events
    assert "lost" in events[0][2]["text"], events[0]
    assert [e["ename"] for e in errors_of(events)] == ["NameError"], events
    new_pid = prop(root, path, "KernelPid")
    assert new_pid not in (0, pid) and pid_alive(new_pid)
    assert prop(root, path, "State") == "idle"
    _first, events = run(root, path, "1 + 1")
    assert types_of(events) == ["execution_count", "result", "execution_complete"], events


# --------------------------------------------------------------------------- ownership
HELPER = r'''
import json, sys, time, traceback
addr, root_path = sys.argv[1], sys.argv[2]
IFACE = "org.execd.Execd1.Context"
res = {}
def err(f):
    try:
        f()
        return None
    except DBusError as e:
        return e.name
try:
    c = Client(addr)
    res["get"] = err(lambda: c.get(root_path, "Language", iface=IFACE))
    res["execute"] = err(lambda: c.call(root_path, IFACE, "Execute", "s", ("1",)))
    res["read_events"] = err(lambda: c.call(root_path, IFACE, "ReadEvents", "t", (0,)))
    res["interrupt"] = err(lambda: c.call(root_path, IFACE, "Interrupt"))
    res["delete"] = err(lambda: c.call(root_path, IFACE, "Delete"))
    res["list_before"] = c.call("/org/execd/Execd1", "org.execd.Execd1.Manager", "ListContexts",
                                "s", ("",))[0]
    t0 = time.monotonic()
    try:
        (p,) = c.call("/org/execd/Execd1", "org.execd.Execd1.Manager", "CreateContext", "sa{sv}",
                      ("python", {}), timeout=60)
    except DBusError as e:
        res["create_error"] = [e.name, e.message]
        p = None
    res["create_seconds"] = time.monotonic() - t0
    if p:
        res["path"] = p
        res["props"] = {k: c.get(p, k, iface=IFACE) for k in ("OwnerUid", "State", "Language")}
        c.add_match("type='signal',interface='%s',path='%s'" % (IFACE, p))
        (first,) = c.call(p, IFACE, "Execute", "s",
                          ("import os; print(os.getuid(), os.getgid(), os.environ.get('HOME'))",))
        events = []
        deadline = time.monotonic() + 30
        while True:
            m = c.wait_signal(lambda m: hdr(m, "path") == p and hdr(m, "member") == "Event",
                              timeout=max(0.0, deadline - time.monotonic()))
            events.append(list(m.body))
            if m.body[1] == "execution_complete":
                break
        res["first"] = first
        res["events"] = events
        res["list_after"] = c.call("/org/execd/Execd1", "org.execd.Execd1.Manager",
                                   "ListContexts", "s", ("",))[0]
except Exception:
    res["exception"] = traceback.format_exc()
print("RESULT " + json.dumps(res))
'''


@pytest.fixture(scope="module")
def nobody(cenv, root, ctx):
    with open(os.path.join(HERE, "busclient.py")) as f:
        source = f.read()
    r = subprocess.run([sys.executable, "-c", source + "\n" + HELPER, cenv.address, ctx],
                       user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
    out = r.stdout.decode()
    assert "RESULT " in out, f"helper failed: {out}\n{r.stderr.decode()}"
    res = json.loads(out.split("RESULT ", 1)[1])
    yield res
    if res.get("path"):
        quiet_delete(root, res["path"])


def test_nobody_cannot_use_roots_context(root, ctx, nobody):
    assert "exception" not in nobody, nobody["exception"]
    for key in ("get", "execute", "read_events", "interrupt", "delete"):
        assert nobody[key] == ERR_NOT_OWNER, (key, nobody[key])
    # Root's context is untouched.
    assert prop(root, ctx, "State") == "idle"
    cid = ctx[len(CONTEXT_PREFIX):]
    assert cid not in [i for i, _l in nobody["list_before"]], nobody["list_before"]


def test_nobody_context_runs_as_nobody(root, nobody, cenv):
    assert "exception" not in nobody, nobody["exception"]
    assert "create_error" not in nobody, \
        f"uid {NOBODY} could not create a context: {nobody['create_error']} " \
        f"(after {nobody['create_seconds']:.1f} s); daemon log:\n" + \
        cenv.daemon.read_log()[-3000:]
    p = nobody["path"]
    assert nobody["props"]["OwnerUid"] == NOBODY
    assert nobody["props"]["State"] == "idle"
    events = [(s, t, json.loads(j)) for s, t, j in nobody["events"]]
    check_events(events, nobody["first"])
    assert not errors_of(events), events
    uid, gid, _home = stdout_of(events).split()
    assert (int(uid), int(gid)) == (NOBODY, NOBODY), stdout_of(events)
    # The kernel process itself runs as nobody.
    pid = prop(root, p, "KernelPid")
    with open(f"/proc/{pid}/status") as f:
        uids = [line.split()[1:] for line in f if line.startswith("Uid:")][0]
    assert set(uids) == {str(NOBODY)}, uids
    # nobody lists its own context; root sees it too.
    assert [p[len(CONTEXT_PREFIX):], "python"] in nobody["list_after"]
    assert (p[len(CONTEXT_PREFIX):], "python") in list_contexts(root)
    assert prop(root, p, "OwnerUid") == NOBODY
