"""Output signals, exit status and command properties."""
import re
import time

import pytest

from busclient import (COMMAND_IFACE, COMMAND_PREFIX, ERR_UNKNOWN_OBJECT, MANAGER_IFACE,
                       MANAGER_PATH, PROPS_IFACE, DBusError, hdr, stream_bytes)


def check_seq(outputs):
    seqs = [s for s, _st, _d in outputs]
    assert seqs == list(range(len(seqs))), f"Output seq not contiguous from 0: {seqs[:20]}"


def check_exited_last(events):
    names = [n for n, _b in events]
    assert names.count("Exited") == 1, names
    assert names[-1] == "Exited", f"Output after Exited: {names}"


def test_echo_stdout(env):
    c = env.connect()
    path = c.run("echo hi")
    assert path.startswith(COMMAND_PREFIX)
    assert re.fullmatch(r"[0-9a-f]{32}", path[len(COMMAND_PREFIX):]), path
    outputs, exited, events = c.wait_exit(path)
    assert stream_bytes(outputs, "stdout") == b"hi\n"
    assert stream_bytes(outputs, "stderr") == b""
    assert {st for _s, st, _d in outputs} == {"stdout"}
    check_seq(outputs)
    check_exited_last(events)
    assert exited == (0, 0, False)
    props = c.get_all(path)
    assert props["Running"] is False
    assert props["ExitCode"] == 0
    assert props["Signal"] == 0
    assert props["TimedOut"] is False
    assert props["Error"] == ""
    assert props["BytesOut"] == 3
    assert props["Truncated"] is False


def test_stderr_routed(env):
    c = env.connect()
    path, outputs, exited = c.run_wait("echo out; echo err >&2; echo out2; echo err2 1>&2")
    assert stream_bytes(outputs, "stdout") == b"out\nout2\n"
    assert stream_bytes(outputs, "stderr") == b"err\nerr2\n"
    assert all(st in ("stdout", "stderr") for _s, st, _d in outputs)
    check_seq(outputs)
    assert exited == (0, 0, False)


def test_exit_code_and_properties(env):
    c = env.connect()
    t0 = int(time.time() * 1e6)
    path, outputs, exited = c.run_wait("exit 3")
    t1 = int(time.time() * 1e6)
    assert exited == (3, 0, False)
    p = c.get_all(path)
    assert p["ExitCode"] == 3
    assert p["Signal"] == 0
    assert p["TimedOut"] is False
    assert p["Error"] == "exit status 3"
    assert p["Running"] is False
    assert p["StartedAt"] > 0
    assert p["FinishedAt"] >= p["StartedAt"]
    # microseconds since the epoch, taken around the call (1 s slack for clock granularity)
    assert t0 - 1_000_000 <= p["StartedAt"] <= t1 + 1_000_000, (t0, p["StartedAt"], t1)
    assert p["FinishedAt"] <= t1 + 1_000_000
    assert p["Id"] == path[len(COMMAND_PREFIX):]
    assert p["CommandLine"] == "exit 3"
    assert p["Background"] is False
    assert p["OwnerUid"] == 0
    assert p["Pid"] > 0
    assert p["BytesOut"] == 0
    assert outputs == []


def test_properties_while_running(env):
    c = env.connect()
    path = c.run("sleep 30")
    try:
        p = c.get_all(path)
        assert p["Running"] is True
        assert p["ExitCode"] == -1
        assert p["FinishedAt"] == 0
        assert p["Signal"] == 0
        assert p["Error"] == ""
        assert p["StartedAt"] > 0
        pid = p["Pid"]
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        pgrp, session = int(fields[2]), int(fields[3])
        assert pgrp == pid, "Pid must be the process group leader"
        assert session == pid, "command runs in its own session"
    finally:
        c.signal(path, 9)
        c.wait_exit(path)


def test_stdin_is_dev_null(env):
    c = env.connect()
    path, outputs, exited = c.run_wait("cat; echo done", timeout=5)
    assert stream_bytes(outputs, "stdout") == b"done\n"
    assert exited == (0, 0, False)


def test_one_mib_chunks(env):
    c = env.connect()
    path, outputs, exited = c.run_wait("head -c 1048576 /dev/urandom | od -An -v -tx1 | head -c 1048576",
                                       timeout=30)
    data = stream_bytes(outputs, "stdout")
    assert len(data) == 1048576
    assert all(len(d) <= 65536 for _s, _st, d in outputs), max(len(d) for _s, _st, d in outputs)
    assert all(len(d) > 0 for _s, _st, d in outputs)
    check_seq(outputs)
    assert exited == (0, 0, False)
    assert c.get(path, "BytesOut") == 1048576
    # the retained log is the same byte stream
    log, end = c.read_log(path, 0, 0)
    assert log == data and end == 1048576


def test_exited_after_last_output(env):
    c = env.connect()
    path = c.run("for i in $(seq 1 200); do echo line$i; echo err$i >&2; done; exit 7")
    outputs, exited, events = c.wait_exit(path, timeout=20)
    check_exited_last(events)
    check_seq(outputs)
    assert exited == (7, 0, False)
    assert stream_bytes(outputs, "stdout") == b"".join(b"line%d\n" % i for i in range(1, 201))
    assert stream_bytes(outputs, "stderr") == b"".join(b"err%d\n" % i for i in range(1, 201))


def test_signals_are_addressed_to_owner(env):
    c = env.connect()
    path = c.run("echo x")
    m = c.wait_signal(lambda m: hdr(m, "path") == path and hdr(m, "member") == "Output")
    assert hdr(m, "destination") == c.unique_name
    assert hdr(m, "interface") == COMMAND_IFACE
    m = c.wait_signal(lambda m: hdr(m, "path") == path and hdr(m, "member") == "Exited")
    assert hdr(m, "destination") == c.unique_name


def test_properties_changed_running(env):
    c = env.connect()
    c.add_match("type='signal',interface='org.freedesktop.DBus.Properties',"
                "member='PropertiesChanged',path_namespace='/org/execd/Execd1'")
    path = c.run("sleep 0.2; exit 4")

    def pc_running_false(m):
        if hdr(m, "path") != path or hdr(m, "member") != "PropertiesChanged":
            return False
        iface, changed, invalidated = m.body
        if iface != COMMAND_IFACE:
            return False
        if "Running" in changed:
            return changed["Running"][1] is False
        return "Running" in invalidated

    c.wait_signal(pc_running_false, timeout=10)
    assert c.get(path, "Running") is False
    assert c.get(path, "ExitCode") == 4


def test_manager_version(env):
    c = env.connect()
    v = c.get(MANAGER_PATH, "Version", iface=MANAGER_IFACE)
    assert isinstance(v, str) and v
    assert "0.1.0" in v


def test_managed_objects_lists_command(env):
    c = env.connect()
    path, _o, _e = c.run_wait("true")
    objs = c.managed_objects()
    assert path in objs
    props = {k: v[1] for k, v in objs[path][COMMAND_IFACE].items()}
    assert props["Id"] == path[len(COMMAND_PREFIX):]
    assert props["CommandLine"] == "true"
    assert props["Running"] is False


def test_no_object_manager_broadcast_of_command_lines(env):
    """Commands are not announced with InterfacesAdded: that broadcast would carry every
    command line to every client on the bus (documented in the Command interface XML)."""
    owner = env.connect()
    watcher = env.connect()
    watcher.add_match("type='signal',interface='org.freedesktop.DBus.ObjectManager'")
    path, _out, _exited = owner.run_wait("echo secret-marker-42")
    watcher.pump(0.5)
    leaked = [m for m in watcher.signals
              if hdr(m, "member") in ("InterfacesAdded", "InterfacesRemoved")]
    assert leaked == []
    # The owner still finds its object through the ObjectManager.
    assert path in owner.command_paths()


def test_unknown_command_object(env):
    c = env.connect()
    bogus = COMMAND_PREFIX + "0" * 32
    with pytest.raises(DBusError) as ei:
        c.read_output(bogus, 0)
    assert ei.value.name == ERR_UNKNOWN_OBJECT
    with pytest.raises(DBusError) as ei:
        c.call(bogus, PROPS_IFACE, "Get", "ss", (COMMAND_IFACE, "Running"))
    assert ei.value.name == ERR_UNKNOWN_OBJECT
