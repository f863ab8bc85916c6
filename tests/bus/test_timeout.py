"""timeout_ms kills the whole process group."""
import time

from busclient import hdr, stream_bytes
from conftest import pid_alive, wait_until


def test_timeout(env):
    c = env.connect()
    t0 = time.monotonic()
    path = c.run("sleep 30", timeout_ms=300)
    _o, exited, _ev = c.wait_exit(path, timeout=5)
    elapsed = time.monotonic() - t0
    assert exited == (-1, 9, True)
    p = c.get_all(path)
    assert p["TimedOut"] is True
    assert p["Signal"] == 9
    assert p["ExitCode"] == -1
    assert p["Running"] is False
    assert p["Error"].startswith("timed out")
    assert p["Error"] == "timed out after 300 ms"
    assert 0.25 <= elapsed < 3.0, elapsed


def test_no_timeout_when_fast(env):
    c = env.connect()
    path, _o, exited = c.run_wait("echo quick", timeout_ms=5000)
    assert exited == (0, 0, False)
    assert c.get(path, "TimedOut") is False
    assert c.get(path, "Error") == ""


def test_timeout_kills_grandchildren(env):
    c = env.connect()
    path = c.run("echo $$; sleep 100 & echo $!; wait", timeout_ms=1000)
    leader = c.get(path, "Pid")
    # read the two pids from the output as it arrives
    got = b""
    deadline = time.monotonic() + 5
    while got.count(b"\n") < 2 and time.monotonic() < deadline:
        m = c.wait_signal(lambda m: hdr(m, "path") == path and hdr(m, "member") == "Output",
                          timeout=max(0.0, deadline - time.monotonic()))
        got += bytes(m.body[2])
    lines = got.split()
    assert len(lines) == 2, got
    shell_pid, sleep_pid = int(lines[0]), int(lines[1])
    assert shell_pid == leader
    assert pid_alive(shell_pid) and pid_alive(sleep_pid), "both should run before the timeout"
    _o, exited, _ev = c.wait_exit(path, timeout=5)
    assert exited == (-1, 9, True)
    t_exit = time.monotonic()
    assert wait_until(lambda: not pid_alive(shell_pid) and not pid_alive(sleep_pid), 2), \
        "the command's group survived the timeout"
    assert time.monotonic() - t_exit <= 2.1


def test_timeout_with_output_before(env):
    c = env.connect()
    path = c.run("echo before; sleep 30; echo after", timeout_ms=400)
    outputs, exited, _ev = c.wait_exit(path, timeout=5)
    assert stream_bytes(outputs, "stdout") == b"before\n"
    assert exited == (-1, 9, True)
    assert c.get(path, "Error") == "timed out after 400 ms"
