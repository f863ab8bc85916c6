"""Fixtures for the execd D-Bus suite: a private bus, the real daemon, jeepney clients."""
import os
import shutil
import signal
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)
sys.path.insert(0, HERE)

import harness  # noqa: E402
from busclient import Client  # noqa: E402
from filesutil import fc, files, tdir  # noqa: E402,F401  (fixtures of the Files tests)
from harness import wait_until  # noqa: F401 (tests import it from here)


# --------------------------------------------------------------------------- /proc helpers
def proc_stat(pid):
    """(state, ppid, starttime) of pid, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def pid_alive(pid):
    """True when pid exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def all_procs():
    """[(pid, state, ppid, comm)] for every process."""
    return [(pid, state, ppid, comm) for pid, state, ppid, _pgid, comm in harness.all_procs()]


def zombie_children(ppid):
    return [p for p in all_procs() if p[2] == ppid and p[1] == "Z"]


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")




# --------------------------------------------------------------------------- fixtures
class Env:
    """A bus + daemon pair with a client factory."""

    def __init__(self, bus, daemon, home):
        self.bus = bus
        self.daemon = daemon
        self.home = home
        self.clients = []

    @property
    def address(self):
        return self.bus.address

    @property
    def pid(self):
        return self.daemon.proc.pid

    def connect(self):
        c = Client(self.bus.address)
        self.clients.append(c)
        return c

    def close_clients(self):
        for c in self.clients:
            c.close()
        self.clients = []


def _start_env(*args):
    bus = harness.Bus()
    home = tempfile.mkdtemp(prefix="execd-home-")
    os.makedirs(os.path.join(home, "sub"))
    env = dict(os.environ, HOME=home)
    try:
        daemon = harness.Daemon(bus, *args, env=env)
    except Exception:
        bus.stop()
        shutil.rmtree(home, ignore_errors=True)
        raise
    return Env(bus, daemon, home)


def _stop_env(e):
    e.close_clients()
    if e.daemon.proc.poll() is None:
        e.daemon.stop(signal.SIGTERM)
    else:
        e.daemon.log.close()
    e.bus.stop()
    shutil.rmtree(e.home, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_env():
    e = _start_env()
    yield e
    _stop_env(e)


@pytest.fixture
def env(shared_env):
    """The shared daemon; clients opened through it are closed after the test."""
    assert shared_env.daemon.proc.poll() is None, "shared execd died:\n" + \
        shared_env.daemon.read_log()[-4000:]
    yield shared_env
    shared_env.close_clients()


@pytest.fixture
def make_env():
    """Start a private bus + daemon with extra command-line arguments."""
    envs = []

    def start(*args):
        e = _start_env(*args)
        envs.append(e)
        return e

    yield start
    for e in envs:
        _stop_env(e)
