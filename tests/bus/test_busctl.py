"""The README's busctl commands work as written (against a private bus: --address)."""
import os
import re
import shutil
import subprocess
import time

import pytest

BUSCTL = shutil.which("busctl")
pytestmark = pytest.mark.skipif(BUSCTL is None, reason="busctl is not installed")
D = "org.execd.Execd1"


def busctl(env, *args, check=True):
    p = subprocess.run([BUSCTL, f"--address={env.bus.address}", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


def quoted(out, n=0):
    return re.findall(r'"([^"]*)"', out)[n]


def test_commands_from_busctl(env):
    out = busctl(env, "call", D, "/org/execd/Execd1", "org.execd.Execd1.Manager", "RunCommand", "sa{sv}",
                 "echo hello; uname -r", "1", "background", "b", "true")
    path = quoted(out)
    assert path.startswith("/org/execd/Execd1/command/")
    deadline = time.monotonic() + 10
    while busctl(env, "get-property", D, path, "org.execd.Execd1.Command", "Running").strip() != "b false":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert busctl(env, "get-property", D, path, "org.execd.Execd1.Command", "ExitCode").strip() == "i 0"
    log = busctl(env, "call", D, path, "org.execd.Execd1.Command", "ReadLog", "tu", "0", "0")
    # ay N b1 b2 ... next: the first bytes spell "hello\n"
    data = [int(x) for x in log.split()[2:8]]
    assert bytes(data) == b"hello\n", log
    assert path in busctl(env, "tree", D)
    assert "ExitCode" in busctl(env, "introspect", D, path)
    busctl(env, "call", D, path, "org.execd.Execd1.Command", "ReadOutput", "t", "0")


def test_metrics_from_busctl(env):
    out = busctl(env, "call", D, "/org/execd/Execd1/metrics", "org.execd.Execd1.Metrics", "GetSample")
    assert out.strip()
    assert "CpuCount" in busctl(env, "introspect", D, "/org/execd/Execd1/metrics")


def test_files_from_busctl(env, tmp_path):
    d = str(tmp_path)
    F = [D, "/org/execd/Execd1/files", "org.execd.Execd1.Files"]
    busctl(env, "call", *F, "WriteBytes", "sayuss", f"{d}/hello.txt", "6", "104", "101", "108", "108", "111", "10",
           "0644", "", "")
    assert open(f"{d}/hello.txt", "rb").read() == b"hello\n"
    assert oct(os.stat(f"{d}/hello.txt").st_mode & 0o777) == "0o644"
    assert busctl(env, "call", *F, "ReadBytes", "stt", f"{d}/hello.txt", "0", "4096").split() == \
        ["ay", "6", "104", "101", "108", "108", "111", "10"]
    assert f'"{d}/hello.txt" "file" 6' in busctl(env, "call", *F, "Stat", "as", "2", d, f"{d}/hello.txt")
    assert f'"{d}/hello.txt"' in busctl(env, "call", *F, "List", "su", d, "2")
    assert f'"{d}/hello.txt"' in busctl(env, "call", *F, "Search", "ss", d, "*.txt")
    busctl(env, "call", *F, "MakeDirectories", "a(suss)", "1", f"{d}/x/y", "0755", "", "")
    busctl(env, "call", *F, "Move", "a(ss)", "1", f"{d}/hello.txt", f"{d}/x/hello.txt")
    assert busctl(env, "call", *F, "Replace", "a(sss)", "1", f"{d}/x/hello.txt", "hello", "bye").split() == \
        ["au", "1", "1"]
    assert open(f"{d}/x/hello.txt", "rb").read() == b"bye\n"
    busctl(env, "call", *F, "RemoveDirectories", "as", "1", f"{d}/x")
    assert not os.path.exists(f"{d}/x")


def test_sessions_from_busctl(env, tmp_path):
    d = str(tmp_path)
    out = busctl(env, "call", D, "/org/execd/Execd1", "org.execd.Execd1.Manager", "CreateSession", "a{sv}",
                 "1", "cwd", "s", d)
    s = quoted(out)
    busctl(env, "call", D, s, "org.execd.Execd1.Session", "Run", "sa{sv}", "cd /var && export X=1", "1",
           "background", "b", "true")
    deadline = time.monotonic() + 10
    while busctl(env, "get-property", D, s, "org.execd.Execd1.Session", "Cwd").strip() != 's "/var"':
        assert time.monotonic() < deadline
        time.sleep(0.05)
    busctl(env, "call", D, s, "org.execd.Execd1.Session", "Delete")


def test_log_level_from_busctl(env):
    busctl(env, "set-property", D, "/org/execd/Execd1", "org.execd.Execd1.Manager", "LogLevel", "s", "debug")
    assert busctl(env, "get-property", D, "/org/execd/Execd1", "org.execd.Execd1.Manager",
                  "LogLevel").strip() == 's "debug"'
    busctl(env, "set-property", D, "/org/execd/Execd1", "org.execd.Execd1.Manager", "LogLevel", "s", "info")
