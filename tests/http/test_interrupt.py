"""DELETE /command?id=ID, and a client disconnect killing a foreground command."""
import json
import os
import socket
import time

import pytest

import sse
from execd_http import assert_error, kill_group, pgroup_members, pid_exists, random_id


def start(stack, command, want_pid=False):
    """Open a foreground stream; return (stream, id, pid-or-None) once it is running."""
    s = stack.stream({"command": command}).check_headers()
    deadline = time.monotonic() + 10
    init = s.next_event(deadline)
    assert init and init["type"] == "init", init
    pid = None
    if want_pid:
        while True:
            e = s.next_event(deadline)
            assert e is not None, sse.summarize(s.events)
            if e["type"] == "stdout":
                pid = int(e["text"])
                break
    return s, init["text"], pid


def assert_empty_200(r):
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers.get("Content-Length") == "0", r.headers
    assert r.content == b""


def wait_group_gone(pgid, timeout):
    deadline = time.monotonic() + timeout
    while pgroup_members(pgid) or pid_exists(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_delete_without_id(stack):
    assert_error(stack.delete("/command"), 400, "MISSING_QUERY")


def test_delete_with_empty_id(stack):
    assert_error(stack.delete("/command?id="), 400, "MISSING_QUERY")


@pytest.mark.parametrize("cid", [random_id(), "nope"])
def test_delete_unknown_id(stack, cid):
    assert_error(stack.delete(f"/command?id={cid}"), 404, "CONTEXT_NOT_FOUND")


def test_delete_running_foreground(stack):
    s, cid, pid = start(stack, "echo $$; sleep 30", want_pid=True)
    try:
        t0 = time.monotonic()
        assert_empty_200(stack.delete(f"/command?id={cid}"))
        events = s.read_all(timeout=10)
        assert time.monotonic() - t0 < 3
        run = sse.check_command_events(events)
        assert run.error == {"ename": "CommandExecError", "evalue": "-1",
                             "traceback": ["signal: terminated"]}
        assert wait_group_gone(pid, 3), pgroup_members(pid)
        st = stack.wait_finished(cid)
        assert st["exit_code"] == -1, st
        assert st["error"] == "signal: terminated", st
    finally:
        s.close()
        kill_group(pid)


def test_delete_ignoring_sigterm_gets_sigkill(stack):
    # The shared daemon runs with --kill-grace-ms=1000.
    s, cid, pid = start(stack, "trap '' TERM; echo $$; sleep 30", want_pid=True)
    try:
        t0 = time.monotonic()
        assert_empty_200(stack.delete(f"/command?id={cid}"))
        events = s.read_all(timeout=10)
        elapsed = time.monotonic() - t0
        assert 0.8 <= elapsed < 4, elapsed
        run = sse.check_command_events(events)
        assert run.error == {"ename": "CommandExecError", "evalue": "-1",
                             "traceback": ["signal: killed"]}
        assert wait_group_gone(pid, 3), pgroup_members(pid)
    finally:
        s.close()
        kill_group(pid)


def test_delete_background(stack):
    run = stack.run("sleep 30", background=True)
    assert stack.status(run.id)["running"] is True
    assert_empty_200(stack.delete(f"/command?id={run.id}"))
    st = stack.wait_finished(run.id, timeout=5)
    assert st["exit_code"] == -1, st
    assert st["error"] == "signal: terminated", st


def test_delete_finished(stack):
    run = stack.run("true")
    assert_error(stack.delete(f"/command?id={run.id}"), 500, "RUNTIME_ERROR")


def test_disconnect_kills_foreground(stack):
    s, cid, pid = start(stack, "echo $$; sleep 300", want_pid=True)
    try:
        assert pid_exists(pid)
        s.close()
        assert wait_group_gone(pid, 3), f"group {pid} still alive: {pgroup_members(pid)}"
        st = stack.wait_finished(cid, timeout=3)
        assert st["running"] is False
        assert st["exit_code"] == -1, st
        assert st["error"] == "signal: killed", st
    finally:
        kill_group(pid)


def test_disconnect_kills_whole_group(stack):
    # A grandchild in the background of the shell dies with it.
    s, cid, pid = start(stack, "sleep 300 & echo $$; wait", want_pid=True)
    try:
        members = pgroup_members(pid)
        assert len(members) >= 2, members
        s.close()
        assert wait_group_gone(pid, 3), f"group {pid} still alive: {pgroup_members(pid)}"
    finally:
        kill_group(pid)


def test_disconnect_does_not_kill_background(stack):
    s = stack.stream({"command": "sleep 3", "background": True}).check_headers()
    init = s.next_event(time.monotonic() + 5)
    s.close()
    time.sleep(0.5)
    st = stack.status(init["text"])
    assert st["running"] is True, st
    stack.delete(f"/command?id={init['text']}")


def _procs_named(marker):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if f.read().split(b"\0", 1)[0] == marker.encode():
                    found.append(int(name))
        except OSError:
            continue
    return found


def test_client_gone_before_the_stream_starts_leaves_nothing_running(stack):
    """Clients that hang up right after sending, before the command's stream begins: however
    the race falls (before the call, during it, after init), no command may keep running."""
    marker = "execd-orphan-" + random_id()[:12]
    body = json.dumps({"command": f"exec -a {marker} sleep 30"}).encode()
    request = (f"POST /command HTTP/1.1\r\nHost: x\r\nX-EXECD-ACCESS-TOKEN: {stack.bridge.token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", stack.bridge.port), timeout=5)
        s.sendall(request)
        s.close()
    time.sleep(0.5)  # let every started command show up before the check settles
    deadline = time.monotonic() + 5
    while _procs_named(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _procs_named(marker) == []
