"""Start a private dbus-daemon, the real execd daemon and the real execd-bridge for tests.

Used by tests/bus, tests/http and tests/bench. Paths come from the environment that
`meson test` sets (EXECD_BUILD_ROOT, EXECD_SOURCE_ROOT); run under /usr/bin/python3.

With EXECD_SECRETS_DIR set (tests/meson.build sets it), the harness also keeps a copy of every
daemon and bridge log it produces in that directory and appends every secret it hands out or
sees come back (access tokens, API keys, environment tokens) to its `tokens` file; the
`secrets-in-logs` test (tests/leaks/check_logs.py) greps those logs for those tokens.
"""
import atexit
import contextlib
import itertools
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
SECRETS_DIR = os.environ.get("EXECD_SECRETS_DIR") or None
# Sanitizer builds (tests/meson.build sets ASAN_OPTIONS there) run the binaries several times
# slower: request and wait timeouts scale by this.
SLOWDOWN = 3 if os.environ.get("ASAN_OPTIONS") else 1
# ...and hold freed memory in ASan's quarantine (quarantine_size_mb=32 there) and shadow
# memory: RSS bounds get this much more room.
RSS_SLACK_KIB = 40 * 1024 if os.environ.get("ASAN_OPTIONS") else 0
SECRETS_TOKENS = "tokens"         # in SECRETS_DIR: one "KIND VALUE" line per recorded secret
SECRETS_MARKER = "harness-used"   # in SECRETS_DIR: one line per Bus the harness started
_secrets_seq = itertools.count()


# --------------------------------------------------------------------------- secrets record
def _secrets_file(name):
    os.makedirs(SECRETS_DIR, exist_ok=True)
    return os.path.join(SECRETS_DIR, name)


def secrets_log_path(kind):
    """A fresh, unique log file name in SECRETS_DIR (only when it is set)."""
    return _secrets_file(f"{kind}-{os.getpid()}-{next(_secrets_seq)}-{secrets.token_hex(3)}.log")


def record_secret(value, kind="token"):
    """Append a secret to SECRETS_DIR/tokens; a no-op without EXECD_SECRETS_DIR. Values that
    are too short to be a real secret (or contain whitespace) are ignored."""
    if not SECRETS_DIR or not isinstance(value, str):
        return
    value = value.strip()
    if len(value) < 8 or any(c.isspace() for c in value):
        return
    with open(_secrets_file(SECRETS_TOKENS), "a") as f:
        f.write(f"{kind} {value}\n")


def record_key_file(path, kind="api-key"):
    """Record every key of an --api-keys file (lines "KEY [orgs]", # comments)."""
    if not SECRETS_DIR:
        return
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            record_secret(fields[0], kind)


def _collect_secrets(directory):
    """Copy the logs of a test directory into SECRETS_DIR and record its secrets: *.log files,
    token-* (access token files) and api-keys* (API key files), top level only."""
    if not SECRETS_DIR:
        return
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        if name.endswith(".log"):
            try:
                shutil.copyfile(path, secrets_log_path("kept-" + name[:-4]))
            except OSError:
                pass
        elif name.startswith("token-"):
            record_key_file(path, "access-token")
        elif name.startswith("api-keys"):
            record_key_file(path, "api-key")


def _install_secret_hooks():
    """Record the environment tokens that come back to tests, however they asked: provision
    answers over HTTP (requests) and ProvisionEnvironment replies over D-Bus (jeepney)."""
    try:
        import requests
    except ImportError:
        requests = None
    if requests is not None and not getattr(requests.Session.send, "_execd_secrets", False):
        orig_send = requests.Session.send

        def send(self, request, **kw):
            r = orig_send(self, request, **kw)
            try:
                if ("/environments" in (request.url or "") and not kw.get("stream")
                        and r.headers.get("Content-Type", "").startswith("application/json")):
                    body = r.json()
                    if isinstance(body, dict):
                        record_secret(body.get("token"), "env-token")
            except Exception:  # noqa: BLE001 -- recording must never break a test
                pass
            return r
        send._execd_secrets = True
        requests.Session.send = send
    try:
        from jeepney import MessageType
        from jeepney.io.blocking import DBusConnection
    except ImportError:
        return
    if getattr(DBusConnection.receive, "_execd_secrets", False):
        return
    orig_receive = DBusConnection.receive

    def receive(self, *a, **kw):
        m = orig_receive(self, *a, **kw)
        try:
            b = m.body
            if (m.header.message_type == MessageType.method_return and len(b) == 3
                    and all(isinstance(x, str) for x in b)
                    and b[0].startswith("/org/execd/Execd1/environment")):
                record_secret(b[2], "env-token")
        except Exception:  # noqa: BLE001
            pass
        return m
    receive._execd_secrets = True
    DBusConnection.receive = receive


if SECRETS_DIR:
    _install_secret_hooks()


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
        if SECRETS_DIR:
            with open(_secrets_file(SECRETS_MARKER), "a") as f:
                f.write(f"{os.environ.get('MESON_TEST_ITERATION', '')} {os.getpid()} {self.dir}\n")
            atexit.register(self._collect)
        self._collected = False

    def _collect(self):
        if not self._collected:
            self._collected = True
            _collect_secrets(self.dir)

    def stop(self):
        _terminate(self.proc)
        self._collect()
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
    """The real execd-bridge on 127.0.0.1 with a fresh random port and token.

    Its output goes to log_path when given (else to a file in EXECD_SECRETS_DIR when that is
    set, else nowhere); env is the bridge's environment (default: ours)."""

    def __init__(self, bus, *args, token=None, env=None, log_path=None):
        self.bus = bus
        self.token = token or secrets.token_hex(16)
        record_secret(self.token, "access-token")
        self.token_file = os.path.join(bus.dir, f"token-{secrets.token_hex(4)}")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.args = list(args)
        for a in self.args:
            if a.startswith("--api-keys="):
                record_key_file(a[len("--api-keys="):])
        if log_path is None and SECRETS_DIR:
            log_path = secrets_log_path("bridge")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [BRIDGE, f"--bus-address={bus.address}", "--listen=127.0.0.1:0",
             f"--token-file={self.token_file}", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        m = _wait_for_line(self.proc, r"listening on http://127\.0\.0\.1:(\d+)", 10)
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        # Keep draining the bridge's output so a chatty log cannot block it.
        self._log_file = None
        if log_path:
            self._log_file = open(log_path, "ab")
            self._log_file.write(m.string.encode())  # what the startup wait already read
            self._log_file.flush()
        self._drain = subprocess.Popen(["cat"], stdin=self.proc.stdout,
                                       stdout=self._log_file or subprocess.DEVNULL)

    @property
    def headers(self):
        return {"X-EXECD-ACCESS-TOKEN": self.token}

    def stop(self, sig=signal.SIGTERM):
        _terminate(self.proc, sig)
        if getattr(self, "_log_file", None) is not None:
            try:  # let cat write out what is left in the pipe
                self._drain.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _terminate(self._drain)
        if getattr(self, "_log_file", None) is not None:
            self._log_file.close()
            self._log_file = None

    def read_log(self):
        """The bridge's output so far (only with a log_path or EXECD_SECRETS_DIR)."""
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


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


def user_name(uid):
    """The user's name, or the number when the user database has none."""
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid):
    """The group's name, or the number when the group database has none."""
    import grp
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


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
