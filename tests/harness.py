"""Start a private dbus-daemon, the real execd daemon and the real execd-bridge for tests.

Used by tests/bus, tests/http and tests/bench. Paths come from the environment that
`meson test` sets (EXECD_BUILD_ROOT, EXECD_SOURCE_ROOT); run under /usr/bin/python3.
"""
import contextlib
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time

SOURCE_ROOT = os.environ.get("EXECD_SOURCE_ROOT",
                             os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_ROOT = os.environ.get("EXECD_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build"))
DAEMON = os.path.join(BUILD_ROOT, "daemon", "execd")
BRIDGE = os.path.join(BUILD_ROOT, "bridge", "execd-bridge")
BUS_CONFIG = os.path.join(SOURCE_ROOT, "tests", "dbus-test.conf")
BUS_NAME = "org.execd.Execd1"


def _wait_for_line(proc, pattern, timeout):
    """Read proc.stdout until a line matches pattern; return the match."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
        m = re.search(pattern, buf.decode(errors="replace"))
        if m:
            return m
    raise RuntimeError(f"timed out waiting for {pattern!r}; got {buf!r}")


class Bus:
    """A private dbus-daemon listening on a socket in a fresh directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="execd-bus-")
        os.chmod(self.dir, 0o755)  # other uids connect in the ownership tests
        self.socket = os.path.join(self.dir, "bus")
        self.address = f"unix:path={self.socket}"
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--config-file", BUS_CONFIG, "--nofork", "--nopidfile",
             "--address", self.address, "--print-address=1"],
            stdout=subprocess.PIPE)
        _wait_for_line(self.proc, r"unix:", 10)
        os.chmod(self.socket, 0o777)

    def stop(self):
        _terminate(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Daemon:
    """The real execd on a given bus; ready once it owns org.execd.Execd1."""

    def __init__(self, bus, *args, env=None):
        self.bus = bus
        self.args = list(args)
        self.env = env
        self.log_path = os.path.join(bus.dir, "execd.log")
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        # A private state directory unless the test names one (the last --state-dir wins), so
        # test daemons never share the host's /var/lib/execd.
        state = os.path.join(self.bus.dir, "state")
        self.proc = subprocess.Popen([DAEMON, f"--bus-address={self.bus.address}", f"--state-dir={state}",
                                      *self.args],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)
        wait_for_name(self.bus.address, BUS_NAME, 10, self.proc)

    def stop(self, sig=signal.SIGTERM):
        _terminate(self.proc, sig)
        self.log.close()

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class Bridge:
    """The real execd-bridge on 127.0.0.1 with a fresh random port and token."""

    def __init__(self, bus, *args, token=None):
        self.bus = bus
        self.token = token or secrets.token_hex(16)
        self.token_file = os.path.join(bus.dir, f"token-{secrets.token_hex(4)}")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.args = list(args)
        self.proc = subprocess.Popen(
            [BRIDGE, f"--bus-address={bus.address}", "--listen=127.0.0.1:0",
             f"--token-file={self.token_file}", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        m = _wait_for_line(self.proc, r"listening on http://127\.0\.0\.1:(\d+)", 10)
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        # Keep draining the bridge's output so a chatty log cannot block it.
        self._drain = subprocess.Popen(["cat"], stdin=self.proc.stdout,
                                       stdout=subprocess.DEVNULL)

    @property
    def headers(self):
        return {"X-EXECD-ACCESS-TOKEN": self.token}

    def stop(self, sig=signal.SIGTERM):
        _terminate(self.proc, sig)
        _terminate(self._drain)


def all_procs():
    """[(pid, state, ppid, pgid, comm)] for every process, from /proc/*/stat."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.index("(") + 1:data.rindex(")")]
        rest = data[data.rindex(")") + 2:].split()
        out.append((int(name), rest[0], int(rest[1]), int(rest[2]), comm))
    return out


def wait_for_name(address, name, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before owning {name}")
        r = subprocess.run(["busctl", f"--address={address}", "status", name],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{name} did not appear on the bus")


def _terminate(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(pred, timeout, interval=0.02):
    """Poll pred() until truthy (return its value) or timeout (return last value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def read_line(stream, timeout):
    """One line from a text pipe, or "" at end of file; TimeoutError after timeout seconds."""
    r, _, _ = select.select([stream], [], [], timeout)
    if not r:
        raise TimeoutError(f"no line within {timeout} s")
    return stream.readline()


@contextlib.contextmanager
def temporary_user(groups=()):
    """A throwaway system user (pwd entry) in the given supplementary groups, each created
    when missing and removed again afterwards if created here. Needs root and useradd."""
    import grp
    import pwd
    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root (creates a user)")
    if not shutil.which("useradd"):
        pytest.skip("useradd is not installed")
    created = []
    for group in groups:
        try:
            grp.getgrnam(group)
        except KeyError:
            subprocess.run(["groupadd", "--system", group], check=True)
            created.append(group)
    name = "execd-t" + secrets.token_hex(3)
    subprocess.run(["useradd", "--system", "--no-create-home", "--no-user-group",
                    "--shell", "/usr/sbin/nologin"] + (["--groups", ",".join(groups)] if groups else [])
                   + [name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)
        for group in created:
            subprocess.run(["groupdel", group], check=False)
