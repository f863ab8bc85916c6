"""The daemon reaps every child, including orphans it inherits as subreaper."""
import time

from busclient import hdr, stream_bytes
from conftest import pid_alive, proc_stat, wait_until, zombie_children


def test_many_short_commands_leave_no_zombies(env):
    c = env.connect()
    pending = set()
    done = 0
    total = 300
    batch = 15
    deadline = time.monotonic() + 60
    started = 0
    while done < total:
        assert time.monotonic() < deadline, f"only {done}/{total} commands finished"
        while started < total and len(pending) < batch:
            pending.add(c.run("true"))
            started += 1
        m = c.wait_signal(lambda m: hdr(m, "member") == "Exited" and hdr(m, "path") in pending,
                          timeout=10)
        assert tuple(m.body) == (0, 0, False)
        pending.discard(hdr(m, "path"))
        done += 1
    # the daemon may reap a moment after sending Exited; give it a short while
    assert wait_until(lambda: zombie_children(env.pid) == [], 1.0), \
        f"zombie children of the daemon: {zombie_children(env.pid)}"


def test_orphan_is_reaped(env):
    c = env.connect()
    # the subshell exits at once; its sleep is orphaned and reparented
    path, outputs, exited = c.run_wait("(sleep 0.2 >/dev/null 2>&1 & echo $!); exit 0")
    assert exited == (0, 0, False)
    orphan = int(stream_bytes(outputs, "stdout"))
    st = proc_stat(orphan)
    if st is not None and st[0] != "Z":
        # still running: the daemon (a child subreaper) must have inherited it
        assert st[1] == env.pid, f"orphan reparented to {st[1]}, not the daemon {env.pid}"
    time.sleep(1.0)
    assert zombie_children(env.pid) == []
    st = proc_stat(orphan)
    assert st is None or st[1] != env.pid, f"orphan {orphan} left as {st}"


def test_orphan_is_subreaped(env):
    c = env.connect()
    # setsid: out of the command's process group, so only the reaping matters here
    path, outputs, exited = c.run_wait("(setsid sleep 1.5 >/dev/null 2>&1 & echo $!); exit 0")
    assert exited == (0, 0, False)
    orphan = int(stream_bytes(outputs, "stdout"))
    st = proc_stat(orphan)
    assert st is not None and st[0] != "Z", f"the orphan should still be sleeping: {st}"
    assert st[1] == env.pid, f"orphan reparented to {st[1]}, not to the subreaper daemon"
    assert wait_until(lambda: proc_stat(orphan) is None, 3.0), \
        f"orphan not reaped: {proc_stat(orphan)}"
    assert zombie_children(env.pid) == []
    assert not pid_alive(orphan)
