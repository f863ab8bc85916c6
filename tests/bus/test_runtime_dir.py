"""The kernels' runtime directory: one per daemon, and what dead daemons left is removed."""
import os

import pytest


def free_pid():
    for pid in range(3999999, 3000000, -7919):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("no free pid found")


def test_stale_runtime_dirs_are_removed(make_env):
    if os.geteuid() != 0:
        pytest.skip("the runtime directory is /run/execd only for root")
    os.makedirs("/run/execd", mode=0o711, exist_ok=True)
    stale = f"/run/execd/kernels-{free_pid()}"
    os.makedirs(os.path.join(stale, "kXYZ", "ipython"), exist_ok=True)
    with open(os.path.join(stale, "kXYZ", "connection.json"), "w") as f:
        f.write("{}")
    keep = "/run/execd/not-ours"
    os.makedirs(keep, exist_ok=True)
    try:
        e = make_env()
        assert not os.path.exists(stale)
        assert os.path.isdir(keep), "only kernels-PID directories of dead daemons are touched"
        mine = f"/run/execd/kernels-{e.daemon.proc.pid}"
        assert os.path.isdir(mine)
        assert os.stat(mine).st_mode & 0o777 == 0o711
    finally:
        os.rmdir(keep)
