"""An idle bridge and daemon sleep: no busy main loop, no timer wake-ups that burn CPU."""
import os
import time


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_processes_use_no_cpu(stack):
    # Exercise the stack first: the bridge once spun after its first bus traffic.
    run = stack.run("echo warm")
    assert run.stdout == ["warm"]
    time.sleep(0.5)
    pids = {"bridge": stack.bridge.proc.pid, "daemon": stack.daemon.proc.pid}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(3)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    for name, seconds in used.items():
        assert seconds <= 0.05, f"idle {name} used {seconds:.2f} s of CPU in 3 s"
