"""polkit decides for callers who are neither root nor in group execd, and for everyone but
root on the sensitive verbs: run as another user, files beyond one's own rights, task
environments. polkitd is python3-dbusmock's polkitd template on the private bus; the daemon
runs with --polkit=yes (the default only on the system bus). Clients are "actor" processes
running as other uids, driven line by line so a test can hold a call parked at polkit while it
checks that the daemon goes on serving everybody else."""
import json
import os
import subprocess
import sys
import time

import pytest

import harness
from busclient import (ERR_ACCESS_DENIED, ERR_LIMITS, FILES_IFACE, FILES_PATH, MANAGER_IFACE,
                       MANAGER_PATH, Client)

HERE = os.path.dirname(os.path.abspath(__file__))
NOBODY = 65534
POLKIT = "org.freedesktop.PolicyKit1"
AUTHORITY = "/org/freedesktop/PolicyKit1/Authority"
MOCK_IFACE = "org.freedesktop.DBus.Mock"
ENV_IFACE = "org.execd.Execd1.Environment"
RUN = "org.execd.Execd1.run"
RUN_AS_USER = "org.execd.Execd1.run-as-user"
FILES = "org.execd.Execd1.files"
ENVIRONMENTS = "org.execd.Execd1.manage-environments"

ACTOR = r'''
import json, sys
from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call
c = Client(sys.argv[1])
burst = []
def plain(v):
    if isinstance(v, (bytes, bytearray)):
        return v.decode(errors="replace")
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v
for line in sys.stdin:
    req = json.loads(line)
    op = req["op"]
    try:
        if op == "run":
            p, outputs, exited = c.run_wait(req["command"], timeout=req.get("timeout", 30), cwd="/",
                                            **req.get("options", {}))
            res = {"ok": b"".join(d for _s, _st, d in outputs).decode(), "exited": list(exited)}
        elif op == "call":
            body = req.get("body", [])
            if req.get("bytes_arg") is not None:
                body[req["bytes_arg"]] = body[req["bytes_arg"]].encode()
            res = {"ok": plain(c.call(req["path"], req["iface"], req["member"], req.get("sig"), body,
                                      timeout=req.get("timeout", 30)))}
        elif op == "burst":
            addr = DBusAddress("/org/execd/Execd1", bus_name="org.execd.Execd1",
                               interface="org.execd.Execd1.Manager")
            for _ in range(req["n"]):
                s = next(c.conn.outgoing_serial)
                c.conn.send(new_method_call(addr, "RunCommand", "sa{sv}", ("true", {"cwd": ("s", "/")})), serial=s)
                burst.append(s)
            res = {"ok": len(burst)}
        elif op == "collect":
            import time
            got, deadline = {}, time.monotonic() + req["timeout"]
            while len(got) < req["n"] and time.monotonic() < deadline:
                try:
                    m = c._receive(deadline)
                except TimeoutError:
                    break
                rs = m.header.fields.get(HeaderFields.reply_serial)
                if rs in burst:
                    burst.remove(rs)
                    got[rs] = (m.header.fields.get(HeaderFields.error_name, "ok")
                               if m.header.message_type == MessageType.error else "ok")
            res = {"ok": sorted(got.values())}
        else:
            res = {"error": "bad op " + op}
    except DBusError as e:
        res = {"error": e.name, "message": e.message}
    print(json.dumps(res), flush=True)
'''


class Actor:
    """A bus client running as another uid, one request per line."""

    def __init__(self, address, uid, gid):
        with open(os.path.join(HERE, "busclient.py")) as f:
            source = f.read()
        self.proc = subprocess.Popen([sys.executable, "-c", source + "\n" + ACTOR, address],
                                     user=uid, group=gid, extra_groups=[], cwd="/",
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()

    def reply(self, timeout=40):
        line = harness.read_line(self.proc.stdout, timeout)
        assert line, "the actor died"
        return json.loads(line)

    def ask(self, **req):
        self.send(**req)
        return self.reply()

    def close(self):
        self.proc.stdin.close()
        harness._terminate(self.proc)


def run(actor, command, **options):
    return actor.ask(op="run", command=command, options=options)


class Polkitd:
    """python3-dbusmock's polkitd template on the private bus."""

    def __init__(self, bus):
        self.bus = bus
        self.proc = None

    def start(self):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        self.proc = subprocess.Popen([sys.executable, "-m", "dbusmock", "--system", "--template", "polkitd"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_for_name(self.bus.address, POLKIT, 20, self.proc)

    def stop(self):
        if self.proc is not None:
            harness._terminate(self.proc)
            self.proc = None


@pytest.fixture(scope="module")
def world():
    """A private bus with the mock polkitd, the daemon asking it, a root client."""
    if os.geteuid() != 0:
        pytest.skip("needs root (clients run as other uids)")
    try:
        import dbusmock  # noqa: F401
    except ImportError:
        pytest.fail("python3-dbusmock is missing: scripts/bootstrap.sh installs it")
    bus = harness.Bus()
    polkitd = Polkitd(bus)
    daemon = None
    try:
        polkitd.start()
        daemon = harness.Daemon(bus, "--polkit=yes")
        root = Client(bus.address)
        yield bus, daemon, polkitd, root
        root.close()
    finally:
        if daemon is not None:
            daemon.stop()
        polkitd.stop()
        bus.stop()


def polkit(root, member, sig=None, body=()):
    return root.call(AUTHORITY, MOCK_IFACE, member, sig, body, dest=POLKIT)


@pytest.fixture
def allow(world):
    """allow(*actions): what the mock polkitd says yes to; everything is refused again after."""
    root = world[3]

    def set_allowed(*actions):
        polkit(root, "SetAllowed", "as", (list(actions),))
    set_allowed()
    yield set_allowed
    polkit(root, "SimulateHangActions", "as", ([],))
    polkit(root, "ReleaseHangingCalls")
    set_allowed()


@pytest.fixture
def nobody(world):
    actor = Actor(world[0].address, NOBODY, NOBODY)
    yield actor
    actor.close()


@pytest.fixture(scope="module")
def member(world):
    """A throwaway user in group execd."""
    with harness.temporary_user(groups=("execd",)) as pw:
        yield pw


# ------------------------------------------------------------------------- run as yourself
def test_outsider_is_refused_when_polkit_says_no(allow, nobody):
    res = run(nobody, "id -u")
    assert res.get("error") == ERR_ACCESS_DENIED, res
    assert RUN in res["message"]


def test_outsider_runs_as_itself_when_polkit_says_yes(allow, nobody):
    allow(RUN)
    res = run(nobody, "id -u")
    assert res.get("ok") == f"{NOBODY}\n", res
    session = nobody.ask(op="call", path=MANAGER_PATH, iface=MANAGER_IFACE, member="CreateSession",
                         sig="a{sv}", body=[{}])
    assert session.get("ok", [""])[0].startswith("/org/execd/Execd1/session/"), session


def test_outsider_cannot_create_sessions_or_contexts_without_polkit(allow, nobody):
    res = nobody.ask(op="call", path=MANAGER_PATH, iface=MANAGER_IFACE, member="CreateSession",
                     sig="a{sv}", body=[{}])
    assert res.get("error") == ERR_ACCESS_DENIED, res
    res = nobody.ask(op="call", path=MANAGER_PATH, iface=MANAGER_IFACE, member="CreateContext",
                     sig="sa{sv}", body=["bash", {}])
    assert res.get("error") == ERR_ACCESS_DENIED, res


def test_member_runs_without_asking(world, allow, member):
    actor = Actor(world[0].address, member.pw_uid, member.pw_gid)
    try:
        res = run(actor, "id -u")
        assert res.get("ok") == f"{member.pw_uid}\n", res
        # Another uid still needs polkit, even for a member.
        res = run(actor, "id -u", uid=0)
        assert res.get("error") == ERR_ACCESS_DENIED and RUN_AS_USER in res["message"], res
        allow(RUN_AS_USER)
        res = run(actor, "id -u", uid=0)
        assert res.get("ok") == "0\n", res
    finally:
        actor.close()


# ------------------------------------------------------------------------- another user
def test_run_as_another_user(allow, nobody):
    allow(RUN)
    res = run(nobody, "id -u", uid=0)
    assert res.get("error") == ERR_ACCESS_DENIED and RUN_AS_USER in res["message"], res
    allow(RUN, RUN_AS_USER)
    res = run(nobody, "id -u; id -g", uid=0, gid=0)
    assert res.get("ok") == "0\n0\n", res
    # Both actions are asked; one refusal is enough.
    allow(RUN_AS_USER)
    res = run(nobody, "id -u", uid=0)
    assert res.get("error") == ERR_ACCESS_DENIED and RUN in res["message"], res


# ------------------------------------------------------------------------- files
@pytest.fixture
def private_dir(tmp_path):
    d = tmp_path / "root-only"
    d.mkdir()
    (d / "secret").write_text("for root\n")
    os.chmod(d, 0o700)
    os.chmod(tmp_path, 0o755)
    return d


def test_files_within_own_rights_need_no_polkit(allow, nobody):
    res = nobody.ask(op="call", path=FILES_PATH, iface=FILES_IFACE, member="Stat", sig="as", body=[["/etc/hostname"]])
    assert "ok" in res, res


def test_files_beyond_own_rights(allow, nobody, private_dir):
    secret = str(private_dir / "secret")
    res = nobody.ask(op="call", path=FILES_PATH, iface=FILES_IFACE, member="ReadBytes", sig="stt",
                     body=[secret, 0, 4096])
    assert res.get("error") == ERR_ACCESS_DENIED and FILES in res["message"], res
    assert sorted(os.listdir(private_dir)) == ["secret"]

    allow(FILES)
    res = nobody.ask(op="call", path=FILES_PATH, iface=FILES_IFACE, member="ReadBytes", sig="stt",
                     body=[secret, 0, 4096])
    assert res.get("ok") == ["for root\n"], res
    new = str(private_dir / "written")
    res = nobody.ask(op="call", path=FILES_PATH, iface=FILES_IFACE, member="WriteBytes", sig="sayuss",
                     body=[new, "by nobody\n", 0o600, "", ""], bytes_arg=1)
    assert "ok" in res, res
    with open(new) as f:
        assert f.read() == "by nobody\n"
    # Written with the daemon's rights: the file is root's, as if root had written it.
    assert os.stat(new).st_uid == 0


def test_files_refused_by_polkit_change_nothing(allow, nobody, private_dir):
    new = str(private_dir / "nope")
    res = nobody.ask(op="call", path=FILES_PATH, iface=FILES_IFACE, member="WriteBytes", sig="sayuss",
                     body=[new, "x", 0o600, "", ""], bytes_arg=1)
    assert res.get("error") == ERR_ACCESS_DENIED, res
    res = nobody.ask(op="call", path=FILES_PATH, iface=FILES_IFACE, member="RemoveFiles", sig="as",
                     body=[[str(private_dir / "secret")]])
    assert res.get("error") == ERR_ACCESS_DENIED, res
    assert sorted(os.listdir(private_dir)) == ["secret"]


# ------------------------------------------------------------------------- environments
def test_environments_need_polkit(allow, nobody):
    res = nobody.ask(op="call", path=MANAGER_PATH, iface=MANAGER_IFACE, member="ProvisionEnvironment",
                     sig="sssa{ss}", body=["org", "ws", "pk-denied", {}])
    assert res.get("error") == ERR_ACCESS_DENIED and ENVIRONMENTS in res["message"], res
    res = nobody.ask(op="call", path=MANAGER_PATH, iface=MANAGER_IFACE, member="ListEnvironments",
                     sig="ss", body=["", ""])
    assert res.get("error") == ERR_ACCESS_DENIED, res

    allow(ENVIRONMENTS)
    res = nobody.ask(op="call", path=MANAGER_PATH, iface=MANAGER_IFACE, member="ProvisionEnvironment",
                     sig="sssa{ss}", body=["org", "ws", "pk-allowed", {}])
    assert "ok" in res, res
    path, _id, token = res["ok"]
    res = nobody.ask(op="call", path=path, iface=ENV_IFACE, member="Execute", sig="ssu",
                     body=[token, "echo hello", 10])
    assert res.get("ok", [None])[0] == 0 and res["ok"][1] == "hello\n", res
    allow()
    res = nobody.ask(op="call", path=path, iface=ENV_IFACE, member="Delete")
    assert res.get("error") == ERR_ACCESS_DENIED, res
    allow(ENVIRONMENTS)
    res = nobody.ask(op="call", path=path, iface=ENV_IFACE, member="Delete")
    assert "ok" in res, res


# ------------------------------------------------------------------------- never blocking
def test_daemon_serves_others_while_a_check_is_pending(world, allow, nobody):
    _bus, _daemon, _mock, root = world
    allow(RUN)
    polkit(root, "SimulateHangActions", "as", ([RUN],))
    nobody.send(op="run", command="echo parked")
    assert harness.wait_until(lambda: polkit(root, "HaveHangingCalls")[0], 10)

    # Root, and the same outsider on another connection, are served meanwhile.
    started = time.monotonic()
    path, outputs, exited = root.run_wait("echo root", cwd="/")
    assert b"".join(d for _s, _st, d in outputs) == b"root\n"
    other = Actor(world[0].address, NOBODY, NOBODY)
    try:
        res = other.ask(op="call", path=FILES_PATH, iface=FILES_IFACE, member="Stat", sig="as",
                        body=[["/etc/hostname"]])
        assert "ok" in res, res
    finally:
        other.close()
    assert time.monotonic() - started < 5

    polkit(root, "ReleaseHangingCalls")
    res = nobody.reply()
    assert res.get("ok") == "parked\n", res


def test_checks_in_flight_are_capped_per_caller(world, allow, nobody):
    _bus, _daemon, _mock, root = world
    allow(RUN)
    polkit(root, "SimulateHangActions", "as", ([RUN],))
    assert nobody.ask(op="burst", n=17) == {"ok": 17}
    # Sixteen are parked; the seventeenth is refused at once.
    assert nobody.ask(op="collect", n=17, timeout=3) == {"ok": [ERR_LIMITS]}
    polkit(root, "ReleaseHangingCalls")
    assert nobody.ask(op="collect", n=16, timeout=20) == {"ok": ["ok"] * 16}


def test_caller_leaving_while_parked(world, allow):
    _bus, daemon, _mock, root = world
    allow(RUN)
    polkit(root, "SimulateHangActions", "as", ([RUN],))
    actor = Actor(world[0].address, NOBODY, NOBODY)
    actor.send(op="run", command="touch /tmp/execd-polkit-should-not-exist")
    assert harness.wait_until(lambda: polkit(root, "HaveHangingCalls")[0], 10)
    actor.close()
    polkit(root, "ReleaseHangingCalls")
    time.sleep(0.3)
    assert not os.path.exists("/tmp/execd-polkit-should-not-exist")
    assert daemon.proc.poll() is None
    path, outputs, _ = root.run_wait("echo alive", cwd="/")
    assert b"".join(d for _s, _st, d in outputs) == b"alive\n"


def test_polkit_gone_means_refused(world, nobody):
    _bus, _daemon, polkitd, _root = world
    polkitd.stop()
    try:
        res = run(nobody, "id -u")
        assert res.get("error") == ERR_ACCESS_DENIED and "polkit could not be asked" in res["message"], res
    finally:
        polkitd.start()


@pytest.mark.parametrize("value", ["", "maybe", "YES", "1"])
def test_polkit_option_takes_only_yes_or_no(value):
    r = subprocess.run([harness.DAEMON, f"--polkit={value}", "--bus-address=unix:path=/nonexistent"],
                       capture_output=True, text=True, timeout=10, env=dict(os.environ, LANGUAGE="C"))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"invalid value '{value}' for --polkit" in r.stderr
