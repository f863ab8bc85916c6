"""SIGTERM to the daemon ends every command and exits 0."""
import signal
import subprocess
import time

from conftest import pid_alive, wait_until


def test_sigterm_kills_commands_and_exits_0(make_env):
    e = make_env()
    c = e.connect()
    fg = c.run("sleep 300")
    bg = c.run("sleep 300", background=True)
    grand = c.run("sleep 300 & wait", background=True)
    pids = [c.get(p, "Pid") for p in (fg, bg, grand)]
    time.sleep(0.2)
    assert all(pid_alive(p) for p in pids)
    t0 = time.monotonic()
    e.daemon.proc.send_signal(signal.SIGTERM)
    try:
        rc = e.daemon.proc.wait(6)
    except subprocess.TimeoutExpired:
        rc = None
    elapsed = time.monotonic() - t0
    assert rc == 0, f"daemon exit status {rc} after {elapsed:.1f}s\n" + e.daemon.read_log()[-2000:]
    assert elapsed <= 5.0
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 2), \
        [p for p in pids if pid_alive(p)]


def test_sigterm_escalates_to_sigkill(make_env):
    e = make_env("--kill-grace-ms=500")
    c = e.connect()
    path = c.run("trap '' TERM; sleep 300")
    pid = c.get(path, "Pid")
    time.sleep(0.3)
    t0 = time.monotonic()
    e.daemon.proc.send_signal(signal.SIGTERM)
    try:
        rc = e.daemon.proc.wait(6)
    except subprocess.TimeoutExpired:
        rc = None
    assert rc == 0
    assert time.monotonic() - t0 <= 5.0
    assert wait_until(lambda: not pid_alive(pid), 2)
