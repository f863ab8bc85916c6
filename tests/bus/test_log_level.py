"""The LogLevel property: read, changed at run time, refused to others and for bad values."""
import pytest

from busclient import DBusError, MANAGER_IFACE, MANAGER_PATH
from conftest import wait_until

PROPS = "org.freedesktop.DBus.Properties"


def get_level(c):
    (value,) = c.call(MANAGER_PATH, PROPS, "Get", "ss", (MANAGER_IFACE, "LogLevel"))
    return value[1]


def set_level(c, level):
    c.call(MANAGER_PATH, PROPS, "Set", "ssv", (MANAGER_IFACE, "LogLevel", ("s", level)))


def test_log_level_changes_at_run_time(make_env):
    e = make_env()
    c = e.connect()
    assert get_level(c) == "info"
    c.run_wait("true")
    assert "command " not in e.daemon.read_log(), "debug lines at level info"
    set_level(c, "debug")
    assert get_level(c) == "debug"
    c.run_wait("true")
    assert wait_until(lambda: "finished: exit 0" in e.daemon.read_log(), 5), e.daemon.read_log()[-2000:]
    set_level(c, "warning")
    assert get_level(c) == "warning"
    with pytest.raises(DBusError) as ei:
        set_level(c, "chatty")
    assert "unknown log level" in ei.value.message
    assert get_level(c) == "warning"
