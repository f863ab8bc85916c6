"""What a daemon killed with SIGKILL leaves running (commands, background or not, and Jupyter
kernels) is killed by the next daemon at start: it cannot be reached any more, so nothing may
keep running without an owner. The marks live in the runtime directory (daemon/groups.c);
processes that merely reuse a marked pid are left alone."""
import os
import signal
import time

import harness
from busclient import Client
from conftest import pid_alive, wait_until
from test_contexts import create, prop


def group_alive(pgid):
    return any(g == pgid and state not in ("Z", "X") for _pid, state, _pp, g, _c in harness.all_procs())


def test_next_daemon_kills_what_a_dead_one_left():
    bus = harness.Bus()
    daemon = harness.Daemon(bus)
    try:
        c = Client(bus.address)
        bg = c.run("echo $$; exec sleep 300", background=True)
        fg = c.run("sleep 300 & sleep 301; wait")
        ctx = create(c)
        kernel = prop(c, ctx, "KernelPid")
        assert kernel > 0
        assert wait_until(lambda: c.get(bg, "Pid") > 0 and c.get(fg, "Pid") > 0, 10)
        groups = [c.get(bg, "Pid"), c.get(fg, "Pid")]
        # A process the dead daemon never started, which must survive the cleanup.
        bystander = harness.subprocess.Popen(["sleep", "300"], start_new_session=True)
        try:
            daemon.stop(signal.SIGKILL)
            time.sleep(0.2)
            # Commands live on; a kernel may already be gone (PR_SET_PDEATHSIG), else it is
            # marked like a command.
            assert all(group_alive(g) for g in groups)

            daemon.start()
            assert wait_until(lambda: not any(group_alive(g) for g in groups) and not pid_alive(kernel), 10), \
                daemon.read_log()
            assert "left running by a daemon that is gone" in daemon.read_log()
            assert bystander.poll() is None
            # The new daemon works, and its own commands are marked only while they run.
            c.close()
            c = Client(bus.address)
            _p, outputs, _e = c.run_wait("echo fine")
            assert b"".join(d for _s, _st, d in outputs) == b"fine\n"
            run_dir = f"/run/execd/kernels-{daemon.proc.pid}"
            if os.path.isdir(run_dir):
                assert wait_until(lambda: not [n for n in os.listdir(run_dir) if n.startswith("group-")], 5)
        finally:
            bystander.kill()
            bystander.wait()
    finally:
        daemon.stop()
        bus.stop()
