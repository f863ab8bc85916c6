"""A foreground command dies with its owner's connection; a background one lives on."""
import time

from conftest import all_procs, pid_alive, wait_until


def test_foreground_killed_when_owner_leaves(env):
    owner = env.connect()
    watcher = env.connect()
    path = owner.run("sleep 300")
    pid = watcher.get(path, "Pid")
    assert pid_alive(pid)
    owner.close()
    t0 = time.monotonic()
    assert wait_until(lambda: not pid_alive(pid), 2.0), "foreground command survived its owner"
    assert wait_until(lambda: watcher.get(path, "Running") is False, 2.0, 0.05)
    assert time.monotonic() - t0 <= 2.5
    p = watcher.get_all(path)
    assert p["Signal"] == 9
    assert p["ExitCode"] == -1
    assert p["TimedOut"] is False
    assert p["Error"] == "signal: killed"


def test_foreground_group_killed_when_owner_leaves(env):
    owner = env.connect()
    watcher = env.connect()
    path = owner.run("sleep 300 & sleep 300 & wait")
    leader = watcher.get(path, "Pid")
    time.sleep(0.3)
    kids = [p for p, st, ppid, comm in all_procs() if ppid == leader and comm == "sleep"]
    assert len(kids) == 2, kids
    owner.close()
    assert wait_until(lambda: not any(pid_alive(k) for k in kids + [leader]), 2.0)


def test_background_survives_owner(env):
    owner = env.connect()
    watcher = env.connect()
    path = owner.run("sleep 300", background=True)
    pid = watcher.get(path, "Pid")
    assert watcher.get(path, "Background") is True
    owner.close()
    time.sleep(1.0)
    try:
        assert pid_alive(pid), "background command died with its owner"
        assert watcher.get(path, "Running") is True
    finally:
        watcher.signal(path, 9)
    assert wait_until(lambda: watcher.get(path, "Running") is False, 3, 0.05)
    assert not pid_alive(pid)
    assert watcher.get(path, "Signal") == 9


def test_other_connection_leaving_does_not_kill(env):
    owner = env.connect()
    other = env.connect()
    path = owner.run("sleep 300")
    pid = owner.get(path, "Pid")
    other.get(path, "Running")  # the other connection touched the object
    other.close()
    time.sleep(0.7)
    try:
        assert pid_alive(pid)
        assert owner.get(path, "Running") is True
    finally:
        owner.signal(path, 9)
        owner.wait_exit(path)
