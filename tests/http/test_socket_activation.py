"""Socket activation: the bridge serves the listening sockets systemd passes (LISTEN_FDS,
LISTEN_PID) instead of binding --listen, refuses a passed descriptor that is not a listening
stream socket, and ignores variables meant for another process.

The sockets are handed over either by systemd-socket-activate (systemd's own tool, which
execs the bridge on the first connection) or by ACTIVATE, a small exec wrapper that does what
systemd does with descriptors the test opened itself.
"""
import concurrent.futures
import os
import re
import secrets
import socket
import subprocess
import sys
import time

import pytest
import requests

import harness
import sse
from execd_http import TIMEOUT

SOCKET_ACTIVATE = "/usr/bin/systemd-socket-activate"
DEFAULT_PORT = 44772  # the bridge's default --listen port
SYSTEMD_LINE = r"listening on http://127\.0\.0\.1:(\d+)/ \(socket from systemd\)"
LISTEN_LINE = r"listening on http://127\.0\.0\.1:(\d+)/\n"

# argv: PID FD... -- PROGRAM ARGS. Moves the FDs to 3, 4, ... and sets LISTEN_FDS and
# LISTEN_PID (PID "self": the program, since exec keeps the pid), as systemd does.
ACTIVATE = r'''
import fcntl, os, sys
sep = sys.argv.index("--")
pid, fds, argv = sys.argv[1], [int(f) for f in sys.argv[2:sep]], sys.argv[sep + 1:]
high = [fcntl.fcntl(f, fcntl.F_DUPFD, 100) for f in fds]  # out of the way of 3, 4, ...
for f in fds:
    os.close(f)
for i, f in enumerate(high):
    os.dup2(f, 3 + i)
    os.close(f)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid()) if pid == "self" else pid
os.execv(argv[0], argv)
'''


@pytest.fixture(scope="module")
def backend():
    """A private bus with the daemon; each test starts its own bridge on it."""
    bus = harness.Bus()
    daemon = None
    try:
        daemon = harness.Daemon(bus)
        yield bus
    finally:
        if daemon is not None:
            daemon.stop()
        bus.stop()


class ActivatedBridge:
    """The real bridge behind a wrapper that passes it sockets; its output up to the address
    line is kept in startup_output."""

    def __init__(self, bus, wrapper, *args, pass_fds=(), pattern=SYSTEMD_LINE, trigger=None):
        self.token = secrets.token_hex(16)
        self.token_file = os.path.join(bus.dir, f"token-{secrets.token_hex(4)}")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.headers = {"X-EXECD-ACCESS-TOKEN": self.token}
        self.proc = subprocess.Popen(
            [*wrapper, harness.BRIDGE, f"--bus-address={bus.address}",
             f"--token-file={self.token_file}", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=pass_fds)
        self._drain = None
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                first = pool.submit(trigger, self) if trigger else None
                m = harness._wait_for_line(self.proc, pattern, 10)
                self.first_response = first.result() if first else None
        except BaseException:
            self.stop()
            raise
        self.where = m.group(1)  # the first announced port (or path)
        if self.where.isdigit():
            self.port = int(self.where)
            self.url = f"http://127.0.0.1:{self.port}"
        self.startup_output = m.string
        self._drain = subprocess.Popen(["cat"], stdin=self.proc.stdout,
                                       stdout=subprocess.DEVNULL)

    def stop(self):
        harness._terminate(self.proc)
        if self._drain is not None:
            harness._terminate(self._drain)


def activate(pid, *fds):
    return [sys.executable, "-c", ACTIVATE, pid, *map(str, fds), "--"]


def listener(family=socket.AF_INET, address=("127.0.0.1", 0)):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind(address)
    s.listen(16)
    return s


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_tcp_ports(pid):
    """The TCP ports the process's own descriptors listen on (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def check_serves(url, headers):
    """GET /ping (with and without the token) and a streamed POST /command."""
    r = requests.get(url + "/ping", headers=headers, timeout=TIMEOUT)
    assert r.status_code == 200, (r.status_code, r.text)
    r = requests.get(url + "/ping", timeout=TIMEOUT)
    assert r.status_code == 401, r.status_code
    stream = sse.EventStream(url, "/command", {"command": "echo activated; echo oops >&2"},
                             headers=headers, timeout=TIMEOUT).check_headers()
    run = sse.check_command_events(stream.read_all(TIMEOUT))
    assert run.ok and run.stdout == ["activated"] and run.stderr == ["oops"], run.events


def ping_until_up(port):
    """What starts a systemd-socket-activate bridge: the first connection, retried until the
    tool listens. It must be answered by the bridge that it started."""
    def run(bridge):
        deadline = time.monotonic() + 10
        while True:
            try:
                return requests.get(f"http://127.0.0.1:{port}/ping", headers=bridge.headers,
                                    timeout=TIMEOUT)
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    return run


def test_systemd_socket_activate(backend):
    if not os.access(SOCKET_ACTIVATE, os.X_OK):
        pytest.skip(f"{SOCKET_ACTIVATE} is not installed")
    port = free_port()
    # The tool passes on only the environment it is told to.
    wrapper = [SOCKET_ACTIVATE, f"--listen=127.0.0.1:{port}", "--setenv=G_DEBUG=fatal-criticals",
               "--setenv=LANG=C.UTF-8"]
    bridge = ActivatedBridge(backend, wrapper, trigger=ping_until_up(port))
    try:
        assert bridge.port == port, bridge.startup_output
        assert bridge.first_response.status_code == 200
        check_serves(bridge.url, bridge.headers)
        assert listening_tcp_ports(bridge.proc.pid) == {port}
        assert DEFAULT_PORT not in listening_tcp_ports(bridge.proc.pid)
        assert "is ignored" not in bridge.startup_output
    finally:
        bridge.stop()
    assert bridge.proc.returncode == 0


def test_inherited_sockets_win_over_listen(backend):
    """Two sockets from "systemd" and an explicit --listen: both sockets serve, --listen is
    ignored with a message, and its port is not bound."""
    a, b = listener(), listener()
    ignored = free_port()
    bridge = ActivatedBridge(backend, activate("self", a.fileno(), b.fileno()),
                             f"--listen=127.0.0.1:{ignored}",
                             pass_fds=(a.fileno(), b.fileno()))
    try:
        ports = {a.getsockname()[1], b.getsockname()[1]}
        announced = {int(p) for p in re.findall(SYSTEMD_LINE, bridge.startup_output + "\n")}
        # the second line may still be on its way when the first one matched
        assert bridge.port in ports and announced <= ports
        assert f"--listen=127.0.0.1:{ignored} is ignored" in bridge.startup_output
        for port in ports:
            check_serves(f"http://127.0.0.1:{port}", bridge.headers)
        assert listening_tcp_ports(bridge.proc.pid) == ports
    finally:
        a.close()
        b.close()
        bridge.stop()


def test_inherited_unix_socket(backend, tmp_path):
    """A ListenStream= path: AF_UNIX stream sockets are taken as well."""
    path = str(tmp_path / "bridge.sock")
    s = listener(socket.AF_UNIX, path)
    bridge = ActivatedBridge(backend, activate("self", s.fileno()), pass_fds=(s.fileno(),),
                             pattern=r"listening on unix:(\S+) \(socket from systemd\)")
    try:
        assert bridge.where == path
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(TIMEOUT)
            c.connect(path)
            c.sendall(f"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      f"X-EXECD-ACCESS-TOKEN: {bridge.token}\r\n\r\n".encode())
            answer = b""
            while chunk := c.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer
    finally:
        s.close()
        bridge.stop()


def not_listening(kind):
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        return s.fileno(), s.close
    if kind == "unlistened-tcp":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        return s.fileno(), s.close
    r, w = os.pipe()
    return r, lambda: (os.close(r), os.close(w))


@pytest.mark.parametrize("kind", ["udp", "unlistened-tcp", "pipe"])
def test_passed_fd_must_be_a_listening_stream_socket(backend, kind):
    fd, close = not_listening(kind)
    try:
        r = subprocess.run([*activate("self", fd), harness.BRIDGE, f"--bus-address={backend.address}",
                            "--listen=127.0.0.1:0"],
                           env=dict(os.environ, EXECD_ACCESS_TOKEN="x" * 32), pass_fds=(fd,),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    finally:
        close()
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 1, out
    assert ("execd-bridge: Descriptor 3 passed by systemd (LISTEN_FDS) is not a listening "
            "stream socket") in out
    assert "listening on" not in out


def test_listen_pid_of_another_process_is_ignored(backend):
    """LISTEN_FDS meant for another process (LISTEN_PID not ours): bind --listen as usual."""
    s = listener()
    bridge = ActivatedBridge(backend, activate("1", s.fileno()), "--listen=127.0.0.1:0",
                             pass_fds=(s.fileno(),), pattern=LISTEN_LINE)
    try:
        assert bridge.port != s.getsockname()[1]
        assert "systemd" not in bridge.startup_output and "is ignored" not in bridge.startup_output
        check_serves(bridge.url, bridge.headers)
    finally:
        s.close()
        bridge.stop()
