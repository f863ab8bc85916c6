"""Fixtures for the HTTP suite: a private bus, the real execd and the real execd-bridge."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from execd_http import Stack  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _binaries():
    for path in (harness.DAEMON, harness.BRIDGE):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is not built (set EXECD_BUILD_ROOT)")


@pytest.fixture(scope="session")
def stack():
    """Shared stack for tests that do not disturb the processes."""
    s = Stack(daemon_args=("--kill-grace-ms=1000",))
    yield s
    s.stop()


@pytest.fixture
def fresh_stack():
    """A private stack for tests that stop or kill the daemon."""
    s = Stack()
    yield s
    s.stop()


@pytest.fixture
def tmp(tmp_path):
    os.chmod(tmp_path, 0o755)
    return tmp_path

