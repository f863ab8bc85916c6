"""Signal() and Interrupt()."""
import time

import pytest

from busclient import ERR_INVALID_ARGS, ERR_INVALID_ARGUMENT, ERR_NOT_RUNNING, DBusError
from conftest import pid_alive, wait_until


def test_signal_term(env):
    c = env.connect()
    path = c.run("sleep 30")
    pid = c.get(path, "Pid")
    assert pid_alive(pid)
    c.signal(path, 15)
    outputs, exited, _ev = c.wait_exit(path, timeout=5)
    assert exited == (-1, 15, False)
    p = c.get_all(path)
    assert p["Running"] is False
    assert p["ExitCode"] == -1
    assert p["Signal"] == 15
    assert p["TimedOut"] is False
    assert p["Error"] == "signal: terminated"
    assert p["FinishedAt"] >= p["StartedAt"] > 0
    assert wait_until(lambda: not pid_alive(pid), 2)


def test_signal_kill_error_string(env):
    c = env.connect()
    path = c.run("sleep 30")
    c.signal(path, 9)
    _o, exited, _ev = c.wait_exit(path, timeout=5)
    assert exited == (-1, 9, False)
    assert c.get(path, "Error") == "signal: killed"


def test_signal_reaches_whole_group(env):
    c = env.connect()
    # the shell survives SIGUSR1 (trapped); its child sleep does not
    path = c.run("trap 'echo got-usr1' USR1; sleep 30 & wait; echo after; wait; exit 5")
    time.sleep(0.3)
    c.signal(path, 10)
    outputs, exited, _ev = c.wait_exit(path, timeout=5)
    out = b"".join(d for _s, _st, d in outputs)
    assert b"got-usr1" in out
    assert exited == (5, 0, False)


def test_interrupt_sends_term(env):
    c = env.connect()
    path = c.run("sleep 30")
    t0 = time.monotonic()
    c.interrupt(path)
    _o, exited, _ev = c.wait_exit(path, timeout=5)
    assert exited == (-1, 15, False)
    assert time.monotonic() - t0 < 2.0
    assert c.get(path, "Error") == "signal: terminated"


def test_interrupt_kills_after_grace(make_env):
    e = make_env("--kill-grace-ms=300")
    c = e.connect()
    path = c.run("trap '' TERM; sleep 30")
    pid = c.get(path, "Pid")
    time.sleep(0.3)  # let bash install the trap
    t0 = time.monotonic()
    c.interrupt(path)
    _o, exited, _ev = c.wait_exit(path, timeout=5)
    elapsed = time.monotonic() - t0
    assert exited == (-1, 9, False)
    assert c.get(path, "Error") == "signal: killed"
    assert c.get(path, "Signal") == 9
    assert elapsed >= 0.25, f"SIGKILL came before the grace: {elapsed:.3f}s"
    assert elapsed < 2.5, f"SIGKILL long after the 300 ms grace: {elapsed:.3f}s"
    assert wait_until(lambda: not pid_alive(pid), 2)


def test_signal_after_exit_not_running(env):
    c = env.connect()
    path, _o, exited = c.run_wait("true")
    assert exited == (0, 0, False)
    with pytest.raises(DBusError) as ei:
        c.signal(path, 15)
    assert ei.value.name == ERR_NOT_RUNNING
    with pytest.raises(DBusError) as ei:
        c.interrupt(path)
    assert ei.value.name == ERR_NOT_RUNNING


@pytest.mark.parametrize("signo", [0, 99, -1, 65])
def test_signal_invalid_number(env, signo):
    c = env.connect()
    path = c.run("sleep 30")
    try:
        with pytest.raises(DBusError) as ei:
            c.signal(path, signo)
        assert ei.value.name in (ERR_INVALID_ARGUMENT, ERR_INVALID_ARGS)
        assert c.get(path, "Running") is True
    finally:
        c.signal(path, 9)
        c.wait_exit(path)
