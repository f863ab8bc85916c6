"""The daemon raises its descriptor limit for itself; commands get the one it started with."""
import resource

from busclient import stream_bytes


def soft_nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no Max open files line")


def test_daemon_raises_nofile_and_commands_keep_the_original(make_env):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(512, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        e = make_env()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert soft_nofile(e.daemon.proc.pid) == hard
    c = e.connect()
    _path, outputs, exited = c.run_wait("ulimit -Sn")
    assert exited[0] == 0
    assert stream_bytes(outputs, "stdout").strip() == str(low).encode()
