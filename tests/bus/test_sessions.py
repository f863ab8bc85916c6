"""Bash sessions on the bus: Manager.CreateSession and org.execd.Execd1.Session."""
import base64
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time

import pytest

from busclient import (COMMAND_PREFIX, ERR_ACCESS_DENIED, ERR_INVALID_ARGUMENT, ERR_LIMITS,
                       ERR_NOT_OWNER, ERR_NOT_RUNNING, ERR_UNKNOWN_OBJECT, MANAGER_IFACE,
                       MANAGER_PATH, DBusError, hdr, stream_bytes)
from conftest import pid_alive, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION_PREFIX = "/org/execd/Execd1/session/"
SESSION_IFACE = "org.execd.Execd1.Session"
NOBODY = 65534
OPTION_TYPES = {"cwd": "s", "envs": "a{ss}", "timeout_ms": "t", "uid": "u", "gid": "u",
                "background": "b", "ack_window": "t"}


# --------------------------------------------------------------------------- helpers
def typed(options):
    return {k: (v if isinstance(v, tuple) else (OPTION_TYPES[k], v)) for k, v in options.items()}


def create(c, **options):
    (path,) = c.call(MANAGER_PATH, MANAGER_IFACE, "CreateSession", "a{sv}", (typed(options),))
    return path


def srun(c, spath, command, **options):
    """Session.Run; returns the command path."""
    (path,) = c.call(spath, SESSION_IFACE, "Run", "sa{sv}", (command, typed(options)))
    return path


def srun_wait(c, spath, command, timeout=10, **options):
    """Session.Run, then wait for Exited: (path, outputs, exited)."""
    path = srun(c, spath, command, **options)
    outputs, exited, _events = c.wait_exit(path, timeout=timeout)
    return path, outputs, exited


def out_of(outputs):
    assert {st for _s, st, _d in outputs} <= {"stdout"}, outputs
    return stream_bytes(outputs, "stdout")


def sprop(c, spath, name):
    return c.get(spath, name, iface=SESSION_IFACE)


def sprops(c, spath):
    return c.get_all(spath, iface=SESSION_IFACE)


def delete(c, spath):
    c.call(spath, SESSION_IFACE, "Delete")


def session_nodes(c):
    """Session ids listed by introspecting the session node (reads no property)."""
    (xml,) = c.call(SESSION_PREFIX.rstrip("/"), "org.freedesktop.DBus.Introspectable", "Introspect")
    return sorted(re.findall(r'<node name="([0-9a-f]{32})"', xml))


@pytest.fixture
def sess(env):
    """(client, session path) in the shared daemon; the session is deleted afterwards."""
    c = env.connect()
    spath = create(c)
    yield c, spath
    try:
        delete(c, spath)
    except DBusError:
        pass


def wait_pids(c, path, n, timeout=5):
    """Read Output of a running command until n lines arrived; return them as ints."""
    got = b""
    deadline = time.monotonic() + timeout
    while got.count(b"\n") < n:
        m = c.wait_signal(lambda m: hdr(m, "path") == path and hdr(m, "member") == "Output",
                          timeout=max(0.0, deadline - time.monotonic()))
        assert m.body[1] == "stdout", m.body
        got += bytes(m.body[2])
    return [int(x) for x in got.split()[:n]]


def wait_gone(pids, timeout=3):
    return wait_until(lambda: not any(pid_alive(p) for p in pids), timeout)


# --------------------------------------------------------------------------- CreateSession
def test_create_without_options(env):
    c = env.connect()
    spath = create(c)
    try:
        assert spath.startswith(SESSION_PREFIX), spath
        sid = spath[len(SESSION_PREFIX):]
        assert re.fullmatch(r"[0-9a-f]{32}", sid), sid
        assert sprop(c, spath, "OwnerUid") == 0
        assert sprop(c, spath, "Cwd") == ""
        assert sprop(c, spath, "Running") is False
        assert sid in session_nodes(c)
        # Without cwd, runs start in the daemon's working directory.
        _p, outputs, exited = srun_wait(c, spath, "pwd")
        assert exited == (0, 0, False)
        assert out_of(outputs) == (os.readlink(f"/proc/{env.pid}/cwd") + "\n").encode()
    finally:
        delete(c, spath)


def test_create_ids_unique(env):
    c = env.connect()
    paths = [create(c) for _ in range(3)]
    try:
        assert len(set(paths)) == 3
    finally:
        for p in paths:
            delete(c, p)


def test_create_with_cwd_creates_parents(env):
    c = env.connect()
    base = tempfile.mkdtemp(prefix="execd-sess-")
    target = os.path.join(base, "a", "b c", "d")
    spath = create(c, cwd=target)
    try:
        assert os.path.isdir(target)
        assert sprop(c, spath, "Cwd") == target
        _p, outputs, exited = srun_wait(c, spath, "pwd")
        assert exited == (0, 0, False)
        assert out_of(outputs) == (target + "\n").encode()
    finally:
        delete(c, spath)
        subprocess.run(["rm", "-rf", base])


def test_create_cwd_expands_like_file_paths(env):
    c = env.connect()
    spath = create(c, cwd="$HOME/sess-expand/x")
    try:
        target = os.path.join(env.home, "sess-expand", "x")
        assert os.path.isdir(target)
        assert sprop(c, spath, "Cwd") == target
    finally:
        delete(c, spath)


def test_create_existing_cwd(env):
    c = env.connect()
    spath = create(c, cwd=env.home)
    try:
        _p, outputs, _e = srun_wait(c, spath, "pwd")
        assert out_of(outputs) == (env.home + "\n").encode()
    finally:
        delete(c, spath)


@pytest.mark.parametrize("options", [
    {"timeout_ms": 1000},
    {"background": True},
    {"envs": {"A": "b"}},
    {"uid": 0},
    {"bogus": ("s", "x")},
    {"cwd": ("u", 5)},
])
def test_create_rejects_options(env, options):
    c = env.connect()
    before = session_nodes(c)
    with pytest.raises(DBusError) as ei:
        create(c, **options)
    assert ei.value.name == ERR_INVALID_ARGUMENT, ei.value
    assert session_nodes(c) == before, "a session was created anyway"


# Reading Id has crashed the daemon: these run in private daemons so that a crash fails only
# them.
def test_id_property(make_env):
    e = make_env()
    c = e.connect()
    spath = create(c)
    sid = spath[len(SESSION_PREFIX):]
    try:
        assert sprop(c, spath, "Id") == sid
    finally:
        assert e.daemon.proc.poll() is None, "execd died reading Session.Id:\n" + \
            e.daemon.read_log()[-2000:]


def test_get_all(make_env):
    e = make_env()
    c = e.connect()
    spath = create(c, cwd=e.home)
    try:
        assert sprops(c, spath) == {"Id": spath[len(SESSION_PREFIX):], "OwnerUid": 0,
                                    "Cwd": e.home, "Language": "", "Running": False}
    finally:
        assert e.daemon.proc.poll() is None, "execd died in Session GetAll"


def test_managed_objects_list_session(make_env):
    e = make_env()
    c = e.connect()
    spath = create(c)
    try:
        objs = c.managed_objects()
        assert spath in objs
        props = {k: v[1] for k, v in objs[spath][SESSION_IFACE].items()}
        assert props == {"Id": spath[len(SESSION_PREFIX):], "OwnerUid": 0, "Cwd": "",
                         "Language": "", "Running": False}
    finally:
        assert e.daemon.proc.poll() is None, "execd died in GetManagedObjects"


def test_introspection_lists_session(sess):
    c, spath = sess
    assert spath[len(SESSION_PREFIX):] in session_nodes(c)
    (xml,) = c.call(spath, "org.freedesktop.DBus.Introspectable", "Introspect")
    for member in ("Run", "Interrupt", "Delete", "Id", "OwnerUid", "Cwd", "Running"):
        assert f'name="{member}"' in xml, member


def test_unknown_session_object(env):
    c = env.connect()
    bogus = SESSION_PREFIX + "0" * 32
    with pytest.raises(DBusError) as ei:
        srun(c, bogus, "true")
    assert ei.value.name == ERR_UNKNOWN_OBJECT
    with pytest.raises(DBusError) as ei:
        sprop(c, bogus, "Running")
    assert ei.value.name == ERR_UNKNOWN_OBJECT


# --------------------------------------------------------------------------- Run as a command
def test_run_is_a_command(sess):
    c, spath = sess
    path = srun(c, spath, "echo out; echo err >&2; echo out2; exit 0")
    assert path.startswith(COMMAND_PREFIX), path
    assert re.fullmatch(r"[0-9a-f]{32}", path[len(COMMAND_PREFIX):])
    outputs, exited, events = c.wait_exit(path)
    assert exited == (0, 0, False)
    # stderr merged into stdout, in order
    assert [st for _s, st, _d in outputs] == ["stdout"] * len(outputs)
    assert out_of(outputs) == b"out\nerr\nout2\n"
    assert [s for s, _st, _d in outputs] == list(range(len(outputs)))
    assert [n for n, _b in events][-1] == "Exited"
    p = c.get_all(path)
    assert p["Running"] is False and p["ExitCode"] == 0 and p["Error"] == ""
    assert p["BytesOut"] == len(b"out\nerr\nout2\n")
    log, end = c.read_log(path, 0, 0)
    assert log == b"out\nerr\nout2\n" and end == len(log)
    chunks, _n = c.read_output_all(path)
    assert b"".join(bytes(ch[2]) for ch in chunks) == b"out\nerr\nout2\n"
    assert all(ch[1] == "stdout" for ch in chunks)


def test_run_stderr_only_is_stdout(sess):
    c, spath = sess
    _p, outputs, exited = srun_wait(c, spath, "echo oops >&2; exit 2")
    assert exited == (2, 0, False)
    assert outputs and all(st == "stdout" for _s, st, _d in outputs)
    assert out_of(outputs) == b"oops\n"


def test_run_exit_status(sess):
    c, spath = sess
    path, outputs, exited = srun_wait(c, spath, "echo before; exit 3")
    assert exited == (3, 0, False)
    assert out_of(outputs) == b"before\n"
    assert c.get(path, "Error") == "exit status 3"
    assert c.get(path, "ExitCode") == 3


def test_run_rejects_empty_command(sess):
    c, spath = sess
    with pytest.raises(DBusError) as ei:
        srun(c, spath, "")
    assert ei.value.name == ERR_INVALID_ARGUMENT


@pytest.mark.parametrize("options", [
    {"envs": {"A": "b"}},
    {"uid": 0},
    {"gid": 0},
    {"uid": 0, "gid": 0},
    {"bogus": ("b", True)},
    {"cwd": ("t", 1)},
])
def test_run_rejects_options(sess, options):
    c, spath = sess
    with pytest.raises(DBusError) as ei:
        srun(c, spath, "echo should-not-run", **options)
    assert ei.value.name == ERR_INVALID_ARGUMENT, ei.value
    assert sprop(c, spath, "Running") is False


def test_run_cwd_must_exist(sess):
    c, spath = sess
    with pytest.raises(DBusError) as ei:
        srun(c, spath, "pwd", cwd="/nonexistent/execd-sess-" + secrets.token_hex(4))
    assert ei.value.name == ERR_INVALID_ARGUMENT
    assert "working directory does not exist" in ei.value.message
    with pytest.raises(DBusError) as ei:
        srun(c, spath, "pwd", cwd="/etc/hostname")
    assert ei.value.name == ERR_INVALID_ARGUMENT
    assert sprop(c, spath, "Cwd") == ""


def test_running_property(sess):
    c, spath = sess
    assert sprop(c, spath, "Running") is False
    path = srun(c, spath, "sleep 30")
    try:
        assert sprop(c, spath, "Running") is True
        assert c.get(path, "Running") is True
    finally:
        c.signal(path, 9)
    _o, exited, _e = c.wait_exit(path)
    assert exited == (-1, 9, False)
    assert wait_until(lambda: sprop(c, spath, "Running") is False, 2, 0.02)


# --------------------------------------------------------------------------- state
def test_cd_and_export_persist(sess, tmp_path):
    c, spath = sess
    d = tmp_path / "dir with space"
    d.mkdir()
    _p, _o, exited = srun_wait(c, spath, f"cd '{d}' && export SESS_A=one && SESS_PLAIN=p")
    assert exited == (0, 0, False)
    assert sprop(c, spath, "Cwd") == str(d)
    _p, outputs, exited = srun_wait(c, spath, 'pwd; echo "A=$SESS_A plain=${SESS_PLAIN-unset}"')
    assert exited == (0, 0, False)
    assert out_of(outputs) == f"{d}\nA=one plain=unset\n".encode()


def test_cwd_override_becomes_session_cwd(sess, tmp_path):
    c, spath = sess
    _p, outputs, _e = srun_wait(c, spath, "pwd", cwd=str(tmp_path))
    assert out_of(outputs) == f"{tmp_path}\n".encode()
    assert sprop(c, spath, "Cwd") == str(tmp_path)
    _p, outputs, _e = srun_wait(c, spath, "pwd")
    assert out_of(outputs) == f"{tmp_path}\n".encode()


def test_cwd_override_expands_session_env(sess, tmp_path):
    c, spath = sess
    srun_wait(c, spath, f"export SESS_DIR='{tmp_path}'")
    _p, outputs, exited = srun_wait(c, spath, "pwd", cwd="${SESS_DIR}")
    assert exited == (0, 0, False)
    assert out_of(outputs) == f"{tmp_path}\n".encode()


def test_exotic_values_round_trip(sess):
    c, spath = sess
    value = ("line1\nline2 $HOME ${X} $(id) `date` \"dq\" 'sq' \\ back\\slash\n"
             "\tünïcødé € 😀 = a=b; rm -rf / #\n\n  trailing  \n")
    b64 = base64.b64encode(value.encode()).decode()
    _p, _o, exited = srun_wait(
        c, spath, f"export SESS_V=\"$(printf %s {b64} | base64 -d; echo x)\"; SESS_V=\"${{SESS_V%x}}\"")
    assert exited == (0, 0, False)
    _p, outputs, exited = srun_wait(c, spath, "printf '%s' \"$SESS_V\"")
    assert exited == (0, 0, False)
    assert out_of(outputs) == value.encode()
    # and again: a run that does not touch it hands it on unchanged
    srun_wait(c, spath, "true")
    _p, outputs, _e = srun_wait(c, spath, "printf '%s' \"$SESS_V\"")
    assert out_of(outputs) == value.encode()


def test_odd_directory_name_persists(sess, tmp_path):
    c, spath = sess
    d = tmp_path / "new\nline $x `y` ü"
    d.mkdir()
    b64 = base64.b64encode(str(d).encode()).decode()
    srun_wait(c, spath, f"cd \"$(printf %s {b64} | base64 -d)\"")
    assert sprop(c, spath, "Cwd") == str(d)
    _p, outputs, _e = srun_wait(c, spath, "printf '%s' \"$PWD\"; echo; /bin/pwd")
    assert out_of(outputs) == f"{d}\n{d}\n".encode()


def test_plain_variables_functions_aliases_do_not_persist(sess):
    c, spath = sess
    srun_wait(c, spath, "SESS_P=1; f() { echo f; }; alias ll=ls; shopt -s expand_aliases; "
                        "export SESS_E=1; set -o noglob")
    _p, outputs, exited = srun_wait(
        c, spath, 'echo "${SESS_P-unset} ${SESS_E-unset}"; type f >/dev/null 2>&1 && echo fn; '
                  'alias ll >/dev/null 2>&1 && echo alias; [[ $- == *f* ]] && echo noglob; true')
    assert exited == (0, 0, False)
    assert out_of(outputs) == b"unset 1\n"


def test_unset_and_export_n_persist(sess):
    c, spath = sess
    srun_wait(c, spath, "export SESS_U=1 SESS_N=2")
    srun_wait(c, spath, "unset SESS_U; export -n SESS_N")
    _p, outputs, _e = srun_wait(c, spath, 'echo "${SESS_U-unset} ${SESS_N-unset}"')
    assert out_of(outputs) == b"unset unset\n"


def test_exit_keeps_state_changes(sess, tmp_path):
    c, spath = sess
    _p, _o, exited = srun_wait(c, spath, f"export SESS_X=before-exit; cd '{tmp_path}'; exit 3")
    assert exited == (3, 0, False)
    assert sprop(c, spath, "Cwd") == str(tmp_path)
    _p, outputs, _e = srun_wait(c, spath, 'echo "$SESS_X"; pwd')
    assert out_of(outputs) == f"before-exit\n{tmp_path}\n".encode()


def test_failed_command_keeps_state_changes(sess):
    c, spath = sess
    _p, _o, exited = srun_wait(c, spath, "export SESS_F=yes; false")
    assert exited == (1, 0, False)
    _p, outputs, _e = srun_wait(c, spath, 'echo "$SESS_F"')
    assert out_of(outputs) == b"yes\n"


def test_timeout_leaves_state_unchanged(sess, tmp_path):
    c, spath = sess
    srun_wait(c, spath, "export SESS_T=old")
    cwd = sprop(c, spath, "Cwd")
    assert cwd and cwd != str(tmp_path)
    t0 = time.monotonic()
    path, _o, exited = srun_wait(c, spath, f"export SESS_T=new; cd '{tmp_path}'; sleep 30",
                                 timeout_ms=300)
    assert time.monotonic() - t0 < 3
    assert exited == (-1, 9, True)
    assert c.get(path, "Error") == "timed out after 300 ms"
    assert sprop(c, spath, "Cwd") == cwd
    _p, outputs, _e = srun_wait(c, spath, 'echo "$SESS_T"')
    assert out_of(outputs) == b"old\n"


def test_timeout_kills_process_group(sess):
    c, spath = sess
    t0 = time.monotonic()
    path = srun(c, spath, "echo $$; sleep 100 & echo $!; sleep 5; echo late", timeout_ms=500)
    leader, child = wait_pids(c, path, 2)
    assert c.get(path, "Pid") == leader
    outputs, exited, _e = c.wait_exit(path, timeout=5)
    assert exited == (-1, 9, True)
    assert time.monotonic() - t0 < 2.5
    assert b"late" not in out_of(outputs)
    assert wait_gone([leader, child]), "the run's process group survived its timeout"


def test_exec_leaves_state_unchanged(sess, tmp_path):
    c, spath = sess
    srun_wait(c, spath, "export SESS_EX=old")
    cwd = sprop(c, spath, "Cwd")
    assert cwd and cwd != str(tmp_path)
    _p, _o, exited = srun_wait(c, spath, f"export SESS_EX=new; cd '{tmp_path}'; exec true")
    assert exited == (0, 0, False)
    assert sprop(c, spath, "Cwd") == cwd
    _p, outputs, _e = srun_wait(c, spath, 'echo "$SESS_EX"')
    assert out_of(outputs) == b"old\n"


def test_huge_value_does_not_wipe_state(sess, tmp_path):
    """A value too big for execve (over 128 KiB) cannot be handed to the next shell; the rest
    of the session's state must survive the run that exported it."""
    c, spath = sess
    _p, outputs, _e = srun_wait(c, spath, f"export SESS_K=keep; cd '{tmp_path}'; echo \"$PATH\"")
    path_before = out_of(outputs)
    _p, outputs, exited = srun_wait(
        c, spath, "export SESS_BIG=$(head -c 200000 /dev/zero | tr '\\0' a); echo ok")
    assert exited == (0, 0, False) and out_of(outputs) == b"ok\n"
    _p, outputs, exited = srun_wait(c, spath, 'echo "$SESS_K"; echo "$PATH"; pwd')
    assert exited == (0, 0, False)
    assert out_of(outputs) == b"keep\n" + path_before + f"{tmp_path}\n".encode()


def test_bash_bookkeeping_not_carried(sess):
    c, spath = sess
    srun_wait(c, spath, "cd /tmp")
    _p, outputs, _e = srun_wait(c, spath, 'echo "$SHLVL|$PWD"')
    # a fresh shell each run: SHLVL does not climb from run to run
    first = out_of(outputs)
    _p, outputs, _e = srun_wait(c, spath, 'echo "$SHLVL|$PWD"')
    assert out_of(outputs) == first
    assert first.endswith(b"|/tmp\n"), first


def test_sessions_are_independent(env):
    c = env.connect()
    a, b = create(c), create(c)
    try:
        srun_wait(c, a, "export SESS_IND=a; cd /tmp")
        _p, outputs, _e = srun_wait(c, b, 'echo "${SESS_IND-unset}"; pwd')
        assert out_of(outputs) == (b"unset\n" + os.readlink(f"/proc/{env.pid}/cwd").encode() + b"\n")
    finally:
        delete(c, a)
        delete(c, b)


def test_concurrent_runs(sess):
    c, spath = sess
    t0 = time.monotonic()
    p1 = srun(c, spath, "sleep 0.8; echo one")
    p2 = srun(c, spath, "sleep 0.4; echo two")
    assert p1 != p2
    assert sprop(c, spath, "Running") is True
    o2, e2, _ = c.wait_exit(p2)
    assert sprop(c, spath, "Running") is True  # the first is still going
    o1, e1, _ = c.wait_exit(p1)
    assert time.monotonic() - t0 < 2.0, "runs of one session were serialised"
    assert (e1, e2) == ((0, 0, False), (0, 0, False))
    assert out_of(o1) == b"one\n" and out_of(o2) == b"two\n"
    assert sprop(c, spath, "Running") is False


def test_concurrent_runs_last_finisher_wins(sess):
    c, spath = sess
    slow = srun(c, spath, "export SESS_W=slow; sleep 0.6")
    fast = srun(c, spath, "export SESS_W=fast; sleep 0.1")
    c.wait_exit(fast)
    c.wait_exit(slow)
    _p, outputs, _e = srun_wait(c, spath, 'echo "$SESS_W"')
    assert out_of(outputs) == b"slow\n"


# --------------------------------------------------------------------------- Interrupt / Delete
def test_interrupt_nothing_running(sess):
    c, spath = sess
    with pytest.raises(DBusError) as ei:
        c.call(spath, SESSION_IFACE, "Interrupt")
    assert ei.value.name == ERR_NOT_RUNNING
    srun_wait(c, spath, "true")
    with pytest.raises(DBusError) as ei:
        c.call(spath, SESSION_IFACE, "Interrupt")
    assert ei.value.name == ERR_NOT_RUNNING


def test_interrupt_running(sess):
    c, spath = sess
    srun_wait(c, spath, "export SESS_I=kept")
    path = srun(c, spath, "echo $$; sleep 100 & echo $!; wait")
    leader, child = wait_pids(c, path, 2)
    c.call(spath, SESSION_IFACE, "Interrupt")
    _o, exited, _e = c.wait_exit(path, timeout=5)
    assert exited == (-1, 15, False)
    assert wait_gone([leader, child])
    # the session stays, state intact
    assert sprop(c, spath, "Running") is False
    _p, outputs, exited = srun_wait(c, spath, 'echo "$SESS_I"')
    assert exited == (0, 0, False)
    assert out_of(outputs) == b"kept\n"


def test_interrupt_reports_signal(sess):
    """SIGTERM ends the run as a signal (the HTTP bridge maps it to evalue -1)."""
    c, spath = sess
    path = srun(c, spath, "echo $$; sleep 100")
    wait_pids(c, path, 1)
    c.call(spath, SESSION_IFACE, "Interrupt")
    _o, exited, _e = c.wait_exit(path, timeout=5)
    # SIGTERM ends it; on a loaded machine the shell's EXIT trap (the state dump) can still be
    # running when the grace period sends SIGKILL. Either way it ends as a signal, not an exit.
    assert exited in ((-1, 15, False), (-1, 9, False)), exited
    assert c.get(path, "Error") == ("signal: terminated" if exited[1] == 15 else "signal: killed")


def test_interrupt_every_running_command(sess):
    c, spath = sess
    p1 = srun(c, spath, "sleep 100")
    p2 = srun(c, spath, "sleep 100")
    c.call(spath, SESSION_IFACE, "Interrupt")
    _o, e1, _ = c.wait_exit(p1, timeout=5)
    _o, e2, _ = c.wait_exit(p2, timeout=5)
    assert e1[1] == 15 and e2[1] == 15, (e1, e2)


def test_delete_idle(env):
    c = env.connect()
    spath = create(c)
    delete(c, spath)
    for call in (lambda: delete(c, spath), lambda: srun(c, spath, "true"),
                 lambda: sprop(c, spath, "Cwd"),
                 lambda: c.call(spath, SESSION_IFACE, "Interrupt")):
        with pytest.raises(DBusError) as ei:
            call()
        assert ei.value.name == ERR_UNKNOWN_OBJECT
    assert spath[len(SESSION_PREFIX):] not in session_nodes(c)


def test_delete_kills_running_runs(env):
    c = env.connect()
    spath = create(c)
    p1 = srun(c, spath, "echo $$; sleep 100 & echo $!; wait")
    p2 = srun(c, spath, "trap '' TERM; echo $$; sleep 100")
    pids = wait_pids(c, p1, 2) + wait_pids(c, p2, 1)
    t0 = time.monotonic()
    delete(c, spath)
    _o, e1, _ = c.wait_exit(p1, timeout=5)
    _o, e2, _ = c.wait_exit(p2, timeout=5)
    assert time.monotonic() - t0 < 2, "Delete must SIGKILL, not wait for a grace period"
    assert e1 == (-1, 9, False) and e2 == (-1, 9, False)
    assert wait_gone(pids)
    # the commands' records stay
    assert c.get(p1, "Error") == "signal: killed"
    assert c.get(p2, "Running") is False
    with pytest.raises(DBusError) as ei:
        sprop(c, spath, "Running")
    assert ei.value.name == ERR_UNKNOWN_OBJECT


# --------------------------------------------------------------------------- caller leaving
def test_run_dies_with_caller(env):
    owner = env.connect()
    watcher = env.connect()
    spath = create(owner)
    try:
        srun_wait(owner, spath, "export SESS_L=kept")
        path = srun(owner, spath, "echo $$; sleep 100 & echo $!; wait")
        pids = wait_pids(owner, path, 2)
        owner.close()
        assert wait_gone(pids, 2), "a foreground session run survived its caller"
        assert wait_until(lambda: watcher.get(path, "Running") is False, 2, 0.05)
        assert watcher.get(path, "Signal") == 9
        # the session survives, with its state
        _p, outputs, exited = srun_wait(watcher, spath, 'echo "$SESS_L"')
        assert exited == (0, 0, False)
        assert out_of(outputs) == b"kept\n"
    finally:
        delete(watcher, spath)


def test_background_run_survives_caller(env):
    owner = env.connect()
    watcher = env.connect()
    spath = create(owner)
    try:
        path = srun(owner, spath, "sleep 1; export SESS_BG=done", background=True)
        pid = watcher.get(path, "Pid")
        assert watcher.get(path, "Background") is True
        owner.close()
        time.sleep(0.3)
        assert pid_alive(pid), "background session run died with its caller"
        assert watcher.get(path, "Running") is True
        assert wait_until(lambda: watcher.get(path, "Running") is False, 5, 0.05)
        assert watcher.get(path, "ExitCode") == 0
        # its state was taken into the session
        _p, outputs, _e = srun_wait(watcher, spath, 'echo "$SESS_BG"')
        assert out_of(outputs) == b"done\n"
    finally:
        delete(watcher, spath)


# --------------------------------------------------------------------------- ownership
HELPER = r'''
import json, os, sys, traceback
addr, root_sess, forbidden, own_cwd = sys.argv[1:5]
SIFACE = "org.execd.Execd1.Session"
res = {}
def err(f):
    try:
        f()
        return None
    except DBusError as e:
        return e.name
def run_wait(c, sp, cmd):
    (p,) = c.call(sp, SIFACE, "Run", "sa{sv}", (cmd, {}))
    outputs, exited, _ = c.wait_exit(p)
    return p, b"".join(d for _s, _st, d in outputs).decode(), list(exited)
try:
    c = Client(addr)
    res["get"] = err(lambda: c.get(root_sess, "Id", iface=SIFACE))
    res["get_all"] = err(lambda: c.get_all(root_sess, iface=SIFACE))
    res["run"] = err(lambda: c.call(root_sess, SIFACE, "Run", "sa{sv}", ("true", {})))
    res["interrupt"] = err(lambda: c.call(root_sess, SIFACE, "Interrupt"))
    res["delete"] = err(lambda: c.call(root_sess, SIFACE, "Delete"))
    res["managed"] = sorted(c.managed_objects())
    res["introspect"] = c.call("/org/execd/Execd1/session",
        "org.freedesktop.DBus.Introspectable", "Introspect")[0]
    res["forbidden"] = err(lambda: c.call("/org/execd/Execd1", "org.execd.Execd1.Manager",
        "CreateSession", "a{sv}", ({"cwd": ("s", forbidden)},)))
    (sp,) = c.call("/org/execd/Execd1", "org.execd.Execd1.Manager", "CreateSession", "a{sv}",
                   ({"cwd": ("s", own_cwd)},))
    res["own"] = sp
    res["own_props"] = {k: c.get(sp, k, iface=SIFACE) for k in ("OwnerUid", "Cwd")}
    p, out, exited = run_wait(c, sp, "id -u; id -g; pwd; export OWN=1; cd /tmp")
    res["own_run"] = [p, out, exited]
    res["own_cmd_owner"] = c.get(p, "OwnerUid")
    res["own_cwd_after"] = c.get(sp, "Cwd", iface=SIFACE)
    res["own_run_opts"] = err(lambda: c.call(sp, SIFACE, "Run", "sa{sv}", ("true", {"uid": ("u", 0)})))
    res["introspect_after"] = c.call("/org/execd/Execd1/session",
        "org.freedesktop.DBus.Introspectable", "Introspect")[0]
except Exception:
    res["exception"] = traceback.format_exc()
print("RESULT " + json.dumps(res))
'''


def run_as_nobody(*args):
    with open(os.path.join(HERE, "busclient.py")) as f:
        source = f.read()
    r = subprocess.run([sys.executable, "-c", source + "\n" + HELPER, *args],
                       user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = r.stdout.decode()
    assert "RESULT " in out, f"helper failed: {out}\n{r.stderr.decode()}"
    res = json.loads(out.split("RESULT ", 1)[1])
    assert "exception" not in res, res["exception"]
    return res


@pytest.fixture(scope="module")
def nobody():
    from busclient import Client
    from conftest import _start_env, _stop_env
    e = _start_env()  # a daemon of its own: the helper reads every property
    root = Client(e.address)
    root_sess = create(root)
    base = tempfile.mkdtemp(prefix="execd-sess-own-")
    os.chmod(base, 0o755)  # root's, not writable by nobody
    shared = tempfile.mkdtemp(prefix="execd-sess-nobody-")
    os.chmod(shared, 0o1777)
    forbidden = os.path.join(base, "nobody-may-not")
    own_cwd = os.path.join(shared, "made", "by-nobody")
    try:
        res = run_as_nobody(e.address, root_sess, forbidden, own_cwd)
        yield root, root_sess, res, forbidden, own_cwd
    finally:
        root.close()
        _stop_env(e)
        subprocess.run(["rm", "-rf", base, shared])


def test_nobody_gets_not_owner(nobody):
    root, root_sess, res, _f, _o = nobody
    for k in ("get", "get_all", "run", "interrupt", "delete"):
        assert res[k] == ERR_NOT_OWNER, (k, res[k])
    # root's session is still there
    assert sprop(root, root_sess, "OwnerUid") == 0


def test_nobody_does_not_see_root_session(nobody):
    _root, root_sess, res, _f, _o = nobody
    assert root_sess not in res["managed"]
    assert root_sess[len(SESSION_PREFIX):] not in res["introspect"]
    assert f'"{res["own"][len(SESSION_PREFIX):]}"' in res["introspect_after"]
    assert root_sess[len(SESSION_PREFIX):] not in res["introspect_after"]


def test_nobody_session_runs_as_nobody(nobody):
    root, _rs, res, _f, own_cwd = nobody
    assert res["own_props"]["OwnerUid"] == NOBODY
    assert res["own_props"]["Cwd"] == own_cwd
    path, out, exited = res["own_run"]
    assert exited == [0, 0, False]
    assert out.split("\n") == [str(NOBODY), str(NOBODY), own_cwd, ""]
    assert res["own_cmd_owner"] == NOBODY
    assert res["own_cwd_after"] == "/tmp"
    assert res["own_run_opts"] == ERR_INVALID_ARGUMENT


def test_nobody_cwd_created_with_callers_rights(nobody):
    _root, _rs, res, forbidden, own_cwd = nobody
    assert os.path.isdir(own_cwd)
    assert os.stat(own_cwd).st_uid == NOBODY
    assert os.stat(os.path.dirname(own_cwd)).st_uid == NOBODY
    assert res["forbidden"] == ERR_ACCESS_DENIED, res["forbidden"]
    assert not os.path.exists(forbidden)


def test_root_sees_and_uses_nobodys_session(nobody):
    root, _rs, res, _f, _o = nobody
    own = res["own"]
    assert own[len(SESSION_PREFIX):] in session_nodes(root)
    assert sprop(root, own, "OwnerUid") == NOBODY
    _p, outputs, exited = srun_wait(root, own, 'echo "$OWN"; pwd')
    assert exited == (0, 0, False)
    assert out_of(outputs) == b"1\n/tmp\n"


# --------------------------------------------------------------------------- limits
def test_session_limit(make_env):
    e = make_env()
    c = e.connect()
    paths = []
    try:
        for _ in range(1024):
            paths.append(create(c))
        assert len(set(paths)) == 1024
        with pytest.raises(DBusError) as ei:
            create(c)
        assert ei.value.name == ERR_LIMITS
        with pytest.raises(DBusError) as ei:
            create(c, cwd=e.home)
        assert ei.value.name == ERR_LIMITS
        # the sessions still work, and one slot freed is one session more
        _p, outputs, exited = srun_wait(c, paths[500], "echo alive")
        assert out_of(outputs) == b"alive\n"
        delete(c, paths.pop())
        paths.append(create(c))
        with pytest.raises(DBusError) as ei:
            create(c)
        assert ei.value.name == ERR_LIMITS
    finally:
        for p in paths:
            delete(c, p)
    assert session_nodes(c) == []
    create(c)  # room again
    assert e.daemon.proc.poll() is None


def test_junk_on_the_state_fd_is_not_believed(sess, tmp_path):
    """The state dump's descriptor is visible to the command; what it writes there must not
    become the session's directory."""
    c, spath = sess
    d = str(tmp_path)
    _p, _o, exited = srun_wait(c, spath, f"cd {d}")
    assert exited[0] == 0
    _p, _o, exited = srun_wait(c, spath, "printf 'junk\\0' >&4; printf 'also-junk\\0' >&4")
    assert exited[0] == 0
    assert sprop(c, spath, "Cwd") == d
    _p, outputs, exited = srun_wait(c, spath, "pwd")
    assert exited[0] == 0 and out_of(outputs) == (d + "\n").encode()


def test_removed_session_directory_falls_back(sess, tmp_path):
    """A session whose directory was removed still runs (in the daemon's directory), as a
    failing `cd` would leave a shell."""
    c, spath = sess
    gone = os.path.join(str(tmp_path), "gone")
    os.mkdir(gone)
    _p, _o, exited = srun_wait(c, spath, f"cd {gone}")
    assert exited[0] == 0
    os.rmdir(gone)
    _p, outputs, exited = srun_wait(c, spath, "echo still-here")
    assert exited[0] == 0 and out_of(outputs) == b"still-here\n"
