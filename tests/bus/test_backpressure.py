"""Backpressure: a client that does not read, and the ack_window flow control."""
import time

import pytest

from busclient import hdr
from conftest import all_procs, pid_alive, vm_rss_kib, wait_until

MIB = 1024 * 1024
BIG = 512 * MIB


def descendants(root_pid):
    procs = all_procs()
    kids = {}
    for pid, _st, ppid, _comm in procs:
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root_pid]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    comm = {pid: c for pid, _st, _pp, c in procs}
    return [(p, comm.get(p)) for p in out]


def wchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise AssertionError("no wchar")


def test_non_reading_client_bounds_memory(make_env):
    e = make_env()  # own daemon: the blocked client wedges its bus connection
    blocked = e.connect()
    path = blocked.run(f"head -c {BIG} /dev/zero")
    # from here on `blocked` never reads its socket
    heads = wait_until(lambda: [p for p, c in descendants(e.pid) if c == "head"], 5)
    assert len(heads) == 1, descendants(e.pid)
    head = heads[0]
    max_rss = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        max_rss = max(max_rss, vm_rss_kib(e.pid))
        assert pid_alive(head), "the command ended although its output was never consumed"
        time.sleep(0.25)
    written = wchar(head)
    assert max_rss < 64 * 1024, f"daemon VmRSS reached {max_rss} KiB"
    assert written < 128 * MIB, f"the command could write {written} bytes"
    assert pid_alive(head)
    assert e.daemon.proc.poll() is None

    # the owner leaves: its foreground command is killed and the daemon recovers
    blocked.close()
    assert wait_until(lambda: not pid_alive(head), 5), "command survived its blocked owner"
    watcher = e.connect()
    assert wait_until(lambda: watcher.get(path, "Running") is False, 5, 0.05)
    p = watcher.get_all(path)
    assert p["Signal"] == 9 and p["ExitCode"] == -1
    assert p["BytesOut"] < 128 * MIB
    assert vm_rss_kib(e.pid) < 64 * 1024


def test_other_clients_served_while_one_is_blocked(make_env):
    """While one owner does not read, another root connection still reads BytesOut.

    With tests/dbus-test.conf, dbus-daemon stops reading execd's socket once 16 MiB
    (max_incoming_bytes) of execd's messages wait in the blocked client's queue; any reply
    execd queues behind them (to anyone) then waits too, unless execd keeps its output for
    one owner from reaching that point."""
    e = make_env()
    blocked = e.connect()
    path = blocked.run(f"head -c {BIG} /dev/zero")
    time.sleep(2)
    watcher = e.connect()
    try:
        try:
            out = watcher.get(path, "BytesOut", timeout=5)
        except TimeoutError:
            pytest.fail("no reply to Get(BytesOut) within 5 s while another owner is blocked")
        assert out < 128 * MIB
        assert watcher.get(path, "Running", timeout=5) is True
    finally:
        blocked.close()


def output_seqs(client, path):
    return [m.body[0] for m in client.signals
            if hdr(m, "path") == path and hdr(m, "member") == "Output"]


def output_bytes(client, path):
    return sum(len(m.body[2]) for m in client.signals
               if hdr(m, "path") == path and hdr(m, "member") == "Output")


def plateau(c, path, timeout=6.0, quiet=0.5):
    """Read signals while polling BytesOut until it stays the same for `quiet` seconds;
    return the plateau value (or None when it kept growing until `timeout`)."""
    deadline = time.monotonic() + timeout
    last = c.get(path, "BytesOut")
    while time.monotonic() < deadline:
        c.pump(quiet)
        now = c.get(path, "BytesOut")
        if now == last:
            return now
        last = now
    return None


def test_ack_window(env):
    c = env.connect()
    window = MIB
    path = c.run(f"head -c {BIG} /dev/zero", ack_window=window)
    try:
        b2 = plateau(c, path)
        assert b2 is not None, "output kept flowing without Ack"
        assert window - 65536 <= b2 <= window + 2 * 65536, b2
        assert c.get(path, "Running") is True
        c.pump(0.2)
        seqs = output_seqs(c, path)
        assert seqs == list(range(len(seqs)))
        assert output_bytes(c, path) == b2, "every byte read was sent as Output"

        c.ack(path, seqs[-1])
        b3 = plateau(c, path)
        assert b3 is not None, "window not applied again after Ack"
        assert b3 >= b2 + window - 65536, f"too little progress after Ack: {b2} -> {b3}"
        assert b3 <= b2 + window + 2 * 65536, f"window not applied after Ack: {b2} -> {b3}"
        assert c.get(path, "Running") is True
    finally:
        c.signal(path, 9)
    # the owner keeps acknowledging what it reads until Exited arrives
    deadline = time.monotonic() + 5
    while not any(hdr(m, "path") == path and hdr(m, "member") == "Exited" for m in c.signals):
        assert time.monotonic() < deadline, "no Exited after SIGKILL"
        c.pump(0.1)
        seqs = output_seqs(c, path)
        if seqs:
            c.ack(path, seqs[-1])
    m = [m for m in c.signals if hdr(m, "path") == path and hdr(m, "member") == "Exited"][0]
    assert tuple(m.body) == (-1, 9, False)


def test_ack_without_window_is_harmless(env):
    c = env.connect()
    path = c.run("echo a; echo b")
    outputs, exited, _ev = c.wait_exit(path)
    assert exited == (0, 0, False)
    c.ack(path, outputs[-1][0])
    c.ack(path, 1000)


def test_held_back_output_survives_exit(env):
    """A command that exits while its output is held back by the ack window loses nothing:
    the daemon waits for the consumer however long it takes (longer than any drain timer)."""
    c = env.connect()
    total, window = 900000, 262144  # the rest fits in the daemon's 1 MiB pipe: head exits
    path = c.run(f"head -c {total} /dev/zero", ack_window=window)
    assert plateau(c, path) is not None, "output kept flowing without Ack"
    time.sleep(6)
    assert c.get(path, "Running") is True
    deadline = time.monotonic() + 20
    while not any(hdr(m, "path") == path and hdr(m, "member") == "Exited" for m in c.signals):
        assert time.monotonic() < deadline, "no Exited while acknowledging everything"
        c.pump(0.1)
        seqs = output_seqs(c, path)
        if seqs:
            c.ack(path, seqs[-1])
    assert output_bytes(c, path) == total
    m = [m for m in c.signals if hdr(m, "path") == path and hdr(m, "member") == "Exited"][0]
    assert tuple(m.body) == (0, 0, False)


def test_signal_ends_a_draining_command(env):
    """Once the shell is gone, a signal cannot reach a process group any more; it ends the
    drain of held-back output instead, so an abandoned stream never lingers."""
    c = env.connect()
    path = c.run("head -c 900000 /dev/zero", ack_window=262144)
    assert plateau(c, path) is not None
    time.sleep(0.5)  # head has exited, its output waits in the pipe
    c.signal(path, 9)
    _outputs, exited, _ev = c.wait_exit(path)
    assert exited == (0, 0, False)
    assert c.get(path, "Running") is False
