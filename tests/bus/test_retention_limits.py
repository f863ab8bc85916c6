"""--retain-count, --retain-seconds and --max-running."""
import time

import pytest

from busclient import ERR_LIMITS, ERR_UNKNOWN_OBJECT, DBusError, hdr
from conftest import wait_until


def test_retain_count(make_env):
    e = make_env("--retain-count=3")
    c = e.connect()
    paths = []
    for i in range(5):
        p, outputs, exited = c.run_wait(f"echo {i}")
        assert exited == (0, 0, False)
        paths.append(p)
    assert wait_until(lambda: c.command_paths() == sorted(paths[2:]), 2, 0.05), \
        f"expected the last 3 of {paths}, got {c.command_paths()}"
    for p in paths[:2]:
        with pytest.raises(DBusError) as ei:
            c.read_output(p, 0)
        assert ei.value.name == ERR_UNKNOWN_OBJECT
    for i, p in enumerate(paths[2:], start=2):
        chunks, _n = c.read_output(p, 0)
        assert b"".join(bytes(ch[2]) for ch in chunks) == b"%d\n" % i


def test_retain_count_keeps_running(make_env):
    """Running commands are never dropped; only finished ones count for retention."""
    e = make_env("--retain-count=1")
    c = e.connect()
    running = c.run("sleep 30")
    try:
        for i in range(3):
            c.run_wait(f"echo {i}")
        assert c.get(running, "Running") is True
        assert running in c.command_paths()
    finally:
        c.signal(running, 9)


def test_retain_seconds(make_env):
    e = make_env("--retain-seconds=1")
    c = e.connect()
    path, _o, exited = c.run_wait("echo bye")
    t_exit = time.monotonic()
    assert exited == (0, 0, False)
    time.sleep(0.3)
    assert path in c.command_paths(), "removed long before --retain-seconds"
    assert wait_until(lambda: path not in c.command_paths(), 2.7, 0.05), \
        "finished command kept beyond --retain-seconds=1"
    assert time.monotonic() - t_exit <= 3.0
    with pytest.raises(DBusError) as ei:
        c.get(path, "Running")
    assert ei.value.name == ERR_UNKNOWN_OBJECT


def test_expired_object_leaves_the_tree(make_env):
    e = make_env("--retain-seconds=1")
    c = e.connect()
    path, _o, _exited = c.run_wait("echo bye")
    assert path in c.command_paths()
    deadline = time.monotonic() + 4
    while path in c.command_paths() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert path not in c.command_paths()
    with pytest.raises(DBusError) as ei:
        c.read_output(path, 0)
    assert ei.value.name == ERR_UNKNOWN_OBJECT


def test_max_running(make_env):
    e = make_env("--max-running=2")
    c = e.connect()
    a = c.run("sleep 5")
    b = c.run("sleep 5")
    before = len(c.command_paths())
    with pytest.raises(DBusError) as ei:
        c.run("sleep 5")
    assert ei.value.name == ERR_LIMITS
    assert len(c.command_paths()) == before
    c.signal(a, 9)
    c.wait_exit(a)
    # a slot is free again
    d = c.run("sleep 5")
    with pytest.raises(DBusError) as ei:
        c.run("sleep 5")
    assert ei.value.name == ERR_LIMITS
    for p in (b, d):
        c.signal(p, 9)
        c.wait_exit(p)
