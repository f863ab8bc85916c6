"""The bridge without a daemon: 503, recovery on restart, streams cut by a daemon crash."""
import signal
import time

import pytest

import sse
from execd_http import Stack, assert_error, kill_group, random_id

HEXID = random_id()


@pytest.fixture(scope="module")
def down_stack():
    """A stack whose daemon has been stopped (SIGTERM) after one successful command."""
    s = Stack()
    try:
        assert s.run("echo before").stdout == ["before"]
        s.daemon.stop()
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/command", {"command": "echo x"}),
    ("POST", "/command", {"command": "echo x", "background": True}),
    ("GET", f"/command/status/{HEXID}", None),
    ("GET", f"/command/{HEXID}/logs", None),
    ("DELETE", f"/command?id={HEXID}", None),
], ids=["run", "run-background", "status", "logs", "delete"])
def test_daemon_down_is_503(down_stack, method, path, body):
    # (An id that is not 32 hex digits cannot name a command: 404 without asking the daemon.)
    r = down_stack.request(method, path, json=body)
    assert_error(r, 503, "SERVICE_UNAVAILABLE")


def test_daemon_down_bad_json_is_still_400(down_stack):
    # Bad JSON is rejected by the bridge itself, before any bus call.
    assert_error(down_stack.post("/command", data=b"not json"), 400, "INVALID_REQUEST_BODY")


def wait_recovered(st, timeout=2):
    deadline = time.monotonic() + timeout
    while True:
        r = st.post("/command", json={"command": "echo again"}, stream=True, timeout=10)
        code = r.status_code
        r.close()
        if code == 200:
            return
        assert code == 503, code
        assert time.monotonic() < deadline, f"bridge did not recover within {timeout} s"
        time.sleep(0.1)


def test_daemon_restart_recovers(fresh_stack):
    st = fresh_stack
    assert st.run("echo before").stdout == ["before"]
    st.daemon.stop()
    assert_error(st.post("/command", json={"command": "echo x"}), 503, "SERVICE_UNAVAILABLE")
    st.daemon.start()
    wait_recovered(st)
    run = st.run("echo again")
    assert run.stdout == ["again"]
    assert st.status(run.id)["exit_code"] == 0
    assert_error(st.get(f"/command/status/{random_id()}"), 404, "INVALID_REQUEST_BODY")


def test_stream_in_flight_when_daemon_killed(fresh_stack):
    st = fresh_stack
    s = st.stream({"command": "echo $$; sleep 30"}).check_headers()
    pid = None
    try:
        deadline = time.monotonic() + 10
        while pid is None:
            e = s.next_event(deadline)
            assert e is not None, sse.summarize(s.events)
            if e["type"] == "stdout":
                pid = int(e["text"])
        t0 = time.monotonic()
        st.daemon.stop(signal.SIGKILL)
        events = s.read_all(timeout=10)  # fails unless the chunked body ends cleanly
        assert time.monotonic() - t0 < 5
        run = sse.check_command_events(events)
        assert run.terminal["type"] == "error", sse.summarize(events)
        assert run.error["ename"] == "CommandExecError"
        assert run.error["evalue"] == "-1"
    finally:
        s.close()
        if pid:
            kill_group(pid)  # the SIGKILLed daemon could not clean up its children
    st.daemon.start()
    wait_recovered(st)
    assert st.run("echo up").stdout == ["up"]
