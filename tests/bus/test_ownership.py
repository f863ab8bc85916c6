"""Per-uid ownership: a non-root client (uid 65534) against root's commands."""
import json
import os
import subprocess
import sys

import pytest

from busclient import COMMAND_PREFIX, ERR_ACCESS_DENIED, ERR_NOT_OWNER
from conftest import pid_alive, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
NOBODY = 65534

HELPER = r'''
import json, sys, traceback
addr, root_path = sys.argv[1], sys.argv[2]
res = {}
def err(f):
    try:
        f()
        return None
    except DBusError as e:
        return e.name
try:
    c = Client(addr)
    res["get"] = err(lambda: c.get(root_path, "Running"))
    res["get_all"] = err(lambda: c.get_all(root_path))
    res["signal"] = err(lambda: c.signal(root_path, 9))
    res["interrupt"] = err(lambda: c.interrupt(root_path))
    res["read_output"] = err(lambda: c.read_output(root_path, 0))
    res["read_log"] = err(lambda: c.read_log(root_path, 0, 0))
    res["ack"] = err(lambda: c.ack(root_path, 0))
    res["run_uid0"] = err(lambda: c.run("id -u", uid=0))
    p, outputs, exited = c.run_wait("id -u; id -g", cwd="/")
    res["own_path"] = p
    res["own_out"] = b"".join(d for _s, _st, d in outputs).decode()
    res["own_exited"] = list(exited)
    res["own_props"] = {k: v for k, v in c.get_all(p).items()
                        if isinstance(v, (str, int, bool))}
    p2, outputs2, exited2 = c.run_wait("id -u", cwd="/", uid=%d)
    res["own_uid_out"] = b"".join(d for _s, _st, d in outputs2).decode()
    res["bg_path"] = c.run("sleep 30", cwd="/", background=True)
    res["managed"] = sorted(c.managed_objects())
    res["introspect_commands"] = c.call("/org/execd/Execd1/command",
        "org.freedesktop.DBus.Introspectable", "Introspect")[0]
except Exception:
    res["exception"] = traceback.format_exc()
print("RESULT " + json.dumps(res))
''' % NOBODY


def run_as_nobody(address, root_path):
    with open(os.path.join(HERE, "busclient.py")) as f:
        source = f.read()
    r = subprocess.run([sys.executable, "-c", source + "\n" + HELPER, address, root_path],
                       user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = r.stdout.decode()
    assert "RESULT " in out, f"helper failed: {out}\n{r.stderr.decode()}"
    res = json.loads(out.split("RESULT ", 1)[1])
    assert "exception" not in res, res["exception"]
    return res


@pytest.fixture(scope="module")
def nobody_result(shared_env):
    from busclient import Client
    root = Client(shared_env.address)
    root_path = root.run("sleep 30")
    res = run_as_nobody(shared_env.address, root_path)
    yield root, root_path, res
    try:
        root.signal(root_path, 9)
    except Exception:
        pass
    try:
        root.signal(res["bg_path"], 9)
    except Exception:
        pass
    root.close()


def test_nobody_cannot_read_properties(nobody_result):
    _root, _path, res = nobody_result
    assert res["get"] == ERR_NOT_OWNER
    assert res["get_all"] == ERR_NOT_OWNER


def test_nobody_cannot_call_methods(nobody_result):
    root, path, res = nobody_result
    assert res["signal"] == ERR_NOT_OWNER
    assert res["interrupt"] == ERR_NOT_OWNER
    assert res["read_output"] == ERR_NOT_OWNER
    assert res["read_log"] == ERR_NOT_OWNER
    assert res["ack"] == ERR_NOT_OWNER
    # and the signal really was not delivered
    assert root.get(path, "Running") is True
    assert pid_alive(root.get(path, "Pid"))


def test_nobody_does_not_see_root_objects(nobody_result):
    root, path, res = nobody_result
    assert path not in res["managed"]
    assert res["own_path"] in res["managed"]
    assert res["bg_path"] in res["managed"]
    # Besides its own commands, nobody sees only the public objects (the manager, metrics,
    # files).
    assert all(p in ("/org/execd/Execd1", "/org/execd/Execd1/metrics", "/org/execd/Execd1/files")
               or p.startswith(COMMAND_PREFIX) for p in res["managed"])
    root_ids = [p[len(COMMAND_PREFIX):] for p in root.command_paths()
                if root.get(p, "OwnerUid") == 0]
    assert root_ids
    for rid in root_ids:
        assert f'"{rid}"' not in res["introspect_commands"], "root's node listed to nobody"


def test_nobody_cannot_run_as_root(nobody_result):
    _root, _path, res = nobody_result
    assert res["run_uid0"] == ERR_ACCESS_DENIED


def test_nobody_runs_as_itself(nobody_result):
    root, _path, res = nobody_result
    assert res["own_out"].split() == [str(NOBODY), str(NOBODY)]
    assert res["own_exited"] == [0, 0, False]
    assert res["own_props"]["OwnerUid"] == NOBODY
    assert res["own_uid_out"].split() == [str(NOBODY)]  # naming its own uid is allowed


def test_root_reads_nobodys_command(nobody_result):
    root, _path, res = nobody_result
    p = root.get_all(res["own_path"])
    assert p["OwnerUid"] == NOBODY
    assert p["ExitCode"] == 0
    chunks, _n = root.read_output(res["own_path"], 0)
    assert b"".join(bytes(c[2]) for c in chunks).split() == [b"65534", b"65534"]
    assert res["own_path"] in root.managed_objects()
    # root may signal nobody's background command (left running by the helper)
    bg = res["bg_path"]
    assert root.get(bg, "Running") is True
    root.signal(bg, 15)
    assert wait_until(lambda: root.get(bg, "Running") is False, 5, 0.05)
    assert root.get(bg, "Signal") == 15
