"""Installing execd as a system service.

`meson install --destdir` into a temporary directory, then:
  * the exact set of installed files (locale .mo files matched by a glob: translations come
    and go);
  * the configured unit and activation files (no @...@ left, the real install paths);
  * `systemd-analyze verify` of the installed units, execd-bridge.socket included (paths
    rewritten into the destdir so the "is the binary executable" check sees the installed
    binaries);
  * the installed D-Bus policy, on a private dbus-daemon with a system-bus style default
    policy that includes the installed system.d directory, with the installed execd: root
    may call it, uid 65534 may only introspect and ping it, a user in the group execd may
    call it.

Install directories come from tests/meson.build (EXECD_INSTALL_*). Runs as root for the
policy part (it creates a throwaway user and, when missing, the group execd).
"""
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(TESTS, "bus"))

import harness  # noqa: E402
from busclient import ERR_ACCESS_DENIED, Client  # noqa: E402

BUILD_ROOT = harness.BUILD_ROOT
NOBODY = 65534


def _dir(name):
    v = os.environ.get("EXECD_INSTALL_" + name)
    if not v:
        pytest.skip(f"EXECD_INSTALL_{name} not set (run through meson test)")
    return v


@pytest.fixture(scope="module")
def dirs():
    return {k: _dir(k) for k in ("PREFIX", "BINDIR", "LIBEXECDIR", "LOCALEDIR", "DBUSDATADIR",
                                 "UNITDIR", "SYSUSERSDIR", "TMPFILESDIR", "DOCDIR", "POLKITDIR")}


@pytest.fixture(scope="module")
def destdir():
    d = tempfile.mkdtemp(prefix="execd-install-")
    os.chmod(d, 0o755)  # the policy test's other uids connect to a socket below it
    r = subprocess.run(["meson", "install", "--destdir", d, "-C", BUILD_ROOT, "--no-rebuild",
                        "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def inst(destdir, path):
    """The installed location of absolute path inside destdir."""
    return os.path.join(destdir, path.lstrip("/"))


UNITS = ("execd.service", "execd-bridge.service", "execd-bridge.socket")


def expected_files(dirs):
    d = dirs
    dbus = d["DBUSDATADIR"]
    units = set() if d["UNITDIR"] == "no" else {f"{d['UNITDIR']}/{u}" for u in UNITS}
    return units | {
        f"{d['BINDIR']}/execd-bridge",
        f"{d['LIBEXECDIR']}/execd",
        f"{dbus}/interfaces/org.execd.Execd1.Manager.xml",
        f"{dbus}/interfaces/org.execd.Execd1.Command.xml",
        f"{dbus}/interfaces/org.execd.Execd1.Metrics.xml",
        f"{dbus}/interfaces/org.execd.Execd1.Files.xml",
        f"{dbus}/interfaces/org.execd.Execd1.Session.xml",
        f"{dbus}/interfaces/org.execd.Execd1.Context.xml",
        f"{dbus}/interfaces/org.execd.Execd1.Environment.xml",
        f"{dbus}/system.d/org.execd.Execd1.conf",
        f"{dbus}/system-services/org.execd.Execd1.service",
        f"{d['SYSUSERSDIR']}/execd.conf",
        f"{d['TMPFILESDIR']}/execd.conf",
        f"{d['DOCDIR']}/execd.conf.example",
        f"{d['POLKITDIR']}/actions/org.execd.Execd1.policy",
        f"{d['POLKITDIR']}/rules.d/50-execd-bridge.rules",
    } | man_pages()


def man_pages():
    """The manual pages, when scdoc was there to build them (meson says where)."""
    mandir = os.environ.get("EXECD_INSTALL_MANDIR", "")
    return {f"{mandir}/man8/execd.8", f"{mandir}/man8/execd-bridge.8"} if mandir else set()


def test_installed_files(destdir, dirs):
    found = set()
    for root, _subdirs, files in os.walk(destdir):
        for name in files:
            found.add("/" + os.path.relpath(os.path.join(root, name), destdir))
    mo = re.compile(re.escape(dirs["LOCALEDIR"]) + r"/[A-Za-z_@.]+/LC_MESSAGES/execd\.mo$")
    locale_files = {f for f in found if mo.match(f)}
    assert found - locale_files == expected_files(dirs)
    for exe in (f"{dirs['BINDIR']}/execd-bridge", f"{dirs['LIBEXECDIR']}/execd"):
        assert os.access(inst(destdir, exe), os.X_OK), exe


def read(destdir, path):
    with open(inst(destdir, path)) as f:
        return f.read()


def unit_values(text, key):
    return [line.split("=", 1)[1] for line in text.splitlines()
            if line.startswith(key + "=")]


def test_configured_files(destdir, dirs):
    unitdir, dbus = dirs["UNITDIR"], dirs["DBUSDATADIR"]
    if unitdir == "no":
        pytest.skip("built with -Dsystemdsystemunitdir=no")
    daemon = read(destdir, f"{unitdir}/execd.service")
    bridge = read(destdir, f"{unitdir}/execd-bridge.service")
    socket = read(destdir, f"{unitdir}/execd-bridge.socket")
    activation = read(destdir, f"{dbus}/system-services/org.execd.Execd1.service")
    example = read(destdir, f"{dirs['DOCDIR']}/execd.conf.example")
    for text in (daemon, bridge, socket, activation, example):
        assert not re.search(r"@[a-z_]+@", text)
    assert unit_values(daemon, "ExecStart") == [f"{dirs['LIBEXECDIR']}/execd --system"]
    assert unit_values(daemon, "Type") == ["dbus"]
    assert unit_values(daemon, "BusName") == ["org.execd.Execd1"]
    assert unit_values(daemon, "KillMode") == ["mixed"]
    assert unit_values(daemon, "Delegate") == ["yes"]
    assert unit_values(bridge, "ExecStart")[0].startswith(f"{dirs['BINDIR']}/execd-bridge --system ")
    assert unit_values(bridge, "User") == ["execd-bridge"]
    assert unit_values(bridge, "SupplementaryGroups") == ["execd"]
    # The socket of the same name is handed to the service; the service must still start
    # without it, so it neither requires it nor names it.
    assert unit_values(socket, "ListenStream") == ["127.0.0.1:44772"]
    assert unit_values(socket, "WantedBy") == ["sockets.target"]
    assert unit_values(socket, "Documentation") == ["man:execd-bridge(8)"]
    assert not unit_values(bridge, "Sockets") and not unit_values(bridge, "Requires")
    assert set(unit_values(bridge, "RestrictAddressFamilies")[0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert unit_values(activation, "Name") == ["org.execd.Execd1"]
    assert unit_values(activation, "SystemdService") == ["execd.service"]
    assert unit_values(activation, "User") == ["root"]
    sysusers = read(destdir, f"{dirs['SYSUSERSDIR']}/execd.conf").split("\n")
    assert "g execd -" in sysusers and "m execd-bridge execd" in sysusers
    tmpfiles = read(destdir, f"{dirs['TMPFILESDIR']}/execd.conf")
    assert re.search(r"^d /etc/execd +0750 root execd", tmpfiles, re.M)
    assert re.search(r"^d /var/lib/execd +0711 root root", tmpfiles, re.M)


def test_systemd_analyze_verify(destdir, dirs, tmp_path):
    """The units parse cleanly. systemd-analyze verify also checks that ExecStart= binaries
    exist, so the copies verified here name the binaries inside the destdir, and that the
    Documentation= manual pages exist, so man looks in the destdir (when scdoc built them)."""
    if dirs["UNITDIR"] == "no":
        pytest.skip("built with -Dsystemdsystemunitdir=no")
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    prefix = dirs["PREFIX"].rstrip("/") + "/"
    units = []
    for name in UNITS:
        text = read(destdir, f"{dirs['UNITDIR']}/{name}")
        out = tmp_path / name
        out.write_text(text.replace(prefix, inst(destdir, prefix)))
        units.append(str(out))
    mandir = os.environ.get("EXECD_INSTALL_MANDIR", "")
    man = ["--man=no"] if not mandir or not shutil.which("man") else []
    env = dict(os.environ, MANPATH=inst(destdir, mandir)) if mandir else None
    r = subprocess.run(["systemd-analyze", "verify", *man, *units], cwd="/", env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = r.stdout.decode()
    assert r.returncode == 0 and out.strip() == "", out


def test_sysusers_and_tmpfiles_apply(destdir, dirs, tmp_path):
    """systemd-sysusers and systemd-tmpfiles accept the installed files (applied to a
    scratch root, never the host)."""
    for tool in ("systemd-sysusers", "systemd-tmpfiles"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    r = subprocess.run(["systemd-sysusers", f"--root={root}",
                        inst(destdir, dirs["SYSUSERSDIR"] + "/execd.conf")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    groups = {l.split(":")[0]: l.split(":") for l in (root / "etc" / "group").read_text().split()}
    assert groups["execd"][3] == "execd-bridge"
    assert "execd-bridge:" in (root / "etc" / "passwd").read_text()
    r = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create",
                        inst(destdir, dirs["TMPFILESDIR"] + "/execd.conf")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    st = os.stat(root / "etc" / "execd")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, 0, int(groups["execd"][2]))
    st = os.stat(root / "var" / "lib" / "execd")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o711, 0, 0)


# -- the D-Bus policy -------------------------------------------------------------------------

# The default policy of dbus's own system.conf (deny owning and method calls), and the
# installed system.d directory, as the real system bus includes it.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <includedir>{systemd_dir}</includedir>
</busconfig>
"""

HELPER = r'''
import json, sys, traceback
addr = sys.argv[1]
res = {}
def err(f):
    try:
        return ["ok", f()]
    except DBusError as e:
        return ["error", e.name]
try:
    c = Client(addr)
    res["run"] = err(lambda: c.run_wait("id -u", cwd="/")[1])
    if res["run"][0] == "ok":
        res["run"] = ["ok", b"".join(d for _s, _st, d in res["run"][1]).decode()]
    res["managed"] = err(lambda: len(c.managed_objects()))
    res["introspect"] = err(lambda: len(c.call("/org/execd/Execd1",
        "org.freedesktop.DBus.Introspectable", "Introspect")[0]) > 0)
    res["ping"] = err(lambda: c.call("/org/execd/Execd1", "org.freedesktop.DBus.Peer", "Ping"))
    res["own"] = err(lambda: c.bus_call("RequestName", "su", ("org.execd.Execd1", 4)))
except Exception:
    res["exception"] = traceback.format_exc()
print("RESULT " + json.dumps(res))
'''


def run_client_as(address, uid, gid, groups):
    with open(os.path.join(TESTS, "bus", "busclient.py")) as f:
        source = f.read()
    r = subprocess.run([sys.executable, "-c", source + "\n" + HELPER, address],
                       user=uid, group=gid, extra_groups=groups, cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = r.stdout.decode()
    assert "RESULT " in out, f"helper failed: {out}\n{r.stderr.decode()}"
    res = json.loads(out.split("RESULT ", 1)[1])
    assert "exception" not in res, res["exception"]
    return res


@pytest.fixture(scope="module")
def execd_member():
    """A throwaway user whose supplementary group is execd; the group is created when
    missing and removed again if this test created it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (creates a user; runs clients as other uids)")
    if not shutil.which("useradd"):
        pytest.skip("useradd is not installed")
    created_group = False
    try:
        grp.getgrnam("execd")
    except KeyError:
        subprocess.run(["groupadd", "--system", "execd"], check=True)
        created_group = True
    name = "execd-t" + secrets.token_hex(3)
    subprocess.run(["useradd", "--system", "--no-create-home", "--no-user-group",
                    "--shell", "/usr/sbin/nologin", "--groups", "execd", name], check=True)
    try:
        pw = pwd.getpwnam(name)
        yield pw.pw_uid, pw.pw_gid, grp.getgrnam("execd").gr_gid
    finally:
        subprocess.run(["userdel", name], check=False)
        if created_group:
            subprocess.run(["groupdel", "execd"], check=False)


@pytest.fixture(scope="module")
def system_bus(destdir, dirs, execd_member):
    """A system-style dbus-daemon with the installed policy, and the installed execd on it."""
    d = tempfile.mkdtemp(prefix="execd-sysbus-", dir=destdir)
    os.chmod(d, 0o755)
    socket = os.path.join(d, "bus")
    config = os.path.join(d, "system.conf")
    with open(config, "w") as f:
        f.write(BUS_CONFIG.format(socket=socket,
                                  systemd_dir=inst(destdir, dirs["DBUSDATADIR"] + "/system.d")))
    bus = subprocess.Popen(["dbus-daemon", "--config-file", config, "--nofork", "--nopidfile",
                            "--print-address=1"], stdout=subprocess.PIPE)
    daemon = log = None
    try:
        harness._wait_for_line(bus, r"unix:", 10)
        os.chmod(socket, 0o777)
        address = f"unix:path={socket}"
        log = open(os.path.join(d, "execd.log"), "wb")
        daemon = subprocess.Popen([inst(destdir, dirs["LIBEXECDIR"] + "/execd"),
                                   f"--bus-address={address}",
                                   f"--state-dir={os.path.join(d, 'state')}"],
                                  stdout=log, stderr=subprocess.STDOUT)
        harness.wait_for_name(address, "org.execd.Execd1", 10, daemon)
        yield address
    finally:
        if daemon is not None:
            harness._terminate(daemon)
        if log is not None:
            log.close()
        harness._terminate(bus)


def test_root_may_call(system_bus):
    c = Client(system_bus)
    try:
        _path, outputs, exited = c.run_wait("id -u", cwd="/")
        assert b"".join(d for _s, _st, d in outputs).decode().split() == ["0"]
        c.managed_objects()
    finally:
        c.close()


def test_others_may_only_introspect_and_ping(system_bus):
    res = run_client_as(system_bus, NOBODY, NOBODY, [])
    assert res["run"] == ["error", ERR_ACCESS_DENIED]
    assert res["managed"] == ["error", ERR_ACCESS_DENIED]
    assert res["introspect"] == ["ok", True]
    assert res["ping"] == ["ok", []]
    assert res["own"] == ["error", ERR_ACCESS_DENIED]


def test_group_execd_may_call(system_bus, execd_member):
    uid, gid, execd_gid = execd_member
    res = run_client_as(system_bus, uid, gid, [execd_gid])
    assert res["run"] == ["ok", f"{uid}\n"], res
    assert res["managed"][0] == "ok"
    assert res["own"] == ["error", ERR_ACCESS_DENIED]


@pytest.mark.parametrize("page,binary", [("execd.8", "LIBEXECDIR"), ("execd-bridge.8", "BINDIR")])
def test_man_pages_cover_every_option(destdir, dirs, page, binary):
    """Every option the program's --help lists is described in its manual page."""
    mandir = os.environ.get("EXECD_INSTALL_MANDIR", "")
    if not mandir:
        pytest.skip("scdoc is not installed: no manual pages were built")
    text = read(destdir, f"{mandir}/man8/{page}")
    exe = os.path.join(destdir + dirs[binary], page[:-2])
    out = subprocess.run([exe, "--help"], stdout=subprocess.PIPE, text=True, env=dict(os.environ, LANGUAGE="")).stdout
    options = set(re.findall(r"--[a-z][a-z-]+", out))
    assert options, out
    # roff escapes hyphens as \- in the rendered page
    missing = [o for o in options if o not in text and o.replace("-", "\\-") not in text]
    assert not missing, f"{page} lacks {missing}"
