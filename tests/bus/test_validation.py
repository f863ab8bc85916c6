"""RunCommand option validation, cwd expansion, envs, uid/gid."""
import os
import pwd

import pytest

from busclient import ERR_INVALID_ARGUMENT, ERR_START_FAILED, DBusError, stream_bytes
from conftest import zombie_children


def count_commands(c):
    return len(c.command_paths())


BAD_OPTIONS = {
    "empty-command": ("", {}),
    "unknown-key": ("true", {"bogus": ("s", "x")}),
    "timeout-as-string": ("true", {"timeout_ms": ("s", "300")}),
    "timeout-as-int32": ("true", {"timeout_ms": ("i", 300)}),
    "background-as-string": ("true", {"background": ("s", "true")}),
    "uid-as-string": ("true", {"uid": ("s", "0")}),
    "envs-wrong-type": ("true", {"envs": ("as", ["A=B"])}),
    "cwd-missing": ("true", {"cwd": ("s", "/nonexistent/execd-test-dir")}),
    "cwd-is-file": ("true", {"cwd": ("s", "/etc/passwd")}),
    "gid-without-uid": ("true", {"gid": ("u", 0)}),
    "env-name-with-equals": ("true", {"envs": ("a{ss}", {"A=B": "x"})}),
    "env-name-empty": ("true", {"envs": ("a{ss}", {"": "x"})}),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_invalid_argument(env, case):
    command, opts = BAD_OPTIONS[case]
    c = env.connect()
    before = count_commands(c)
    with pytest.raises(DBusError) as ei:
        c.run_raw(command, opts)
    assert ei.value.name == ERR_INVALID_ARGUMENT, ei.value
    assert count_commands(c) == before, "a command object appeared for a rejected call"


def test_cwd_undefined_variable(env):
    c = env.connect()
    before = count_commands(c)
    with pytest.raises(DBusError) as ei:
        c.run("true", cwd="$NOPE_XYZ/sub")
    assert ei.value.name == ERR_INVALID_ARGUMENT
    assert "NOPE_XYZ" in ei.value.message
    with pytest.raises(DBusError) as ei:
        c.run("true", cwd="/tmp/${NOPE_XYZ}")
    assert ei.value.name == ERR_INVALID_ARGUMENT
    assert "NOPE_XYZ" in ei.value.message
    assert count_commands(c) == before


def pwd_in(c, **opts):
    path, outputs, exited = c.run_wait("pwd -P", **opts)
    assert exited == (0, 0, False), (opts, outputs)
    return stream_bytes(outputs, "stdout").decode().rstrip("\n")


@pytest.mark.parametrize("cwd,rel", [
    ("$HOME", ""), ("${HOME}", ""), ("$HOME/sub", "sub"), ("${HOME}/sub", "sub"),
    ("~", ""), ("~/sub", "sub"),
])
def test_cwd_expansion(env, cwd, rel):
    c = env.connect()
    expected = os.path.realpath(os.path.join(env.home, rel))
    assert pwd_in(c, cwd=cwd) == expected


def test_cwd_from_envs(env):
    c = env.connect()
    target = os.path.join(env.home, "sub")
    assert pwd_in(c, cwd="$MYDIR", envs={"MYDIR": target}) == os.path.realpath(target)
    assert pwd_in(c, cwd="${MYROOT}/sub", envs={"MYROOT": env.home}) == os.path.realpath(target)


def test_cwd_relative_to_daemon_cwd(env):
    c = env.connect()
    daemon_cwd = os.readlink(f"/proc/{env.pid}/cwd")
    target = os.path.join(env.home, "sub")
    rel = os.path.relpath(target, daemon_cwd)
    assert not rel.startswith("/")
    assert pwd_in(c, cwd=rel) == os.path.realpath(target)


def test_default_cwd_is_daemon_cwd(env):
    c = env.connect()
    assert pwd_in(c) == os.path.realpath(os.readlink(f"/proc/{env.pid}/cwd"))


def test_envs_visible(env):
    c = env.connect()
    path, outputs, exited = c.run_wait(
        'printf "%s|%s|%s|%s" "$FOO" "${EMPTY-unset}" "$HOME" "$SPACED"',
        envs={"FOO": "bar", "EMPTY": "", "SPACED": "a b  c"})
    assert exited == (0, 0, False)
    assert stream_bytes(outputs, "stdout") == f"bar||{env.home}|a b  c".encode()


def test_envs_override_daemon_env(env):
    c = env.connect()
    path, outputs, exited = c.run_wait('echo "$HOME"', envs={"HOME": "/override"})
    assert stream_bytes(outputs, "stdout") == b"/override\n"


def ids(c, **opts):
    path, outputs, exited = c.run_wait('id -u; id -g; id -G', cwd="/", **opts)
    assert exited == (0, 0, False), stream_bytes(outputs, "stderr")
    u, g, groups = stream_bytes(outputs, "stdout").decode().splitlines()
    return path, int(u), int(g), {int(x) for x in groups.split()}


def test_uid_nobody(env):
    c = env.connect()
    path, u, g, groups = ids(c, uid=65534)
    pw = pwd.getpwuid(65534)
    assert u == 65534
    assert g == pw.pw_gid
    assert groups == set(os.getgrouplist(pw.pw_name, pw.pw_gid)), "root's groups leaked"
    assert c.get(path, "OwnerUid") == 0


def test_uid_takes_primary_group(env):
    # a user whose primary gid differs from its uid (Debian: sync = 4:65534)
    users = [p for p in pwd.getpwall() if p.pw_uid != p.pw_gid and p.pw_uid != 0]
    if not users:
        pytest.skip("no user with uid != gid in /etc/passwd")
    pw = users[0]
    c = env.connect()
    _p, u, g, groups = ids(c, uid=pw.pw_uid)
    assert (u, g) == (pw.pw_uid, pw.pw_gid)
    assert groups == set(os.getgrouplist(pw.pw_name, pw.pw_gid))


def test_uid_takes_supplementary_groups(env):
    import grp
    members = [(m, g.gr_gid) for g in grp.getgrall() for m in g.gr_mem]
    cands = []
    for name, _gid in members:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        if pw.pw_uid != 0:
            cands.append(pw)
    if not cands:
        pytest.skip("no user with supplementary groups")
    pw = cands[0]
    c = env.connect()
    _p, u, g, groups = ids(c, uid=pw.pw_uid)
    assert (u, g) == (pw.pw_uid, pw.pw_gid)
    assert groups == set(os.getgrouplist(pw.pw_name, pw.pw_gid))


def test_uid_with_gid(env):
    c = env.connect()
    _p, u, g, groups = ids(c, uid=65534, gid=100)
    assert (u, g) == (65534, 100)
    assert 0 not in groups


def test_uid_without_passwd_entry(env):
    uid = 54321
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    c = env.connect()
    _p, u, g, groups = ids(c, uid=uid)
    assert (u, g) == (uid, uid)
    assert groups == {uid}, "no supplementary groups for an unknown user"


def test_cwd_is_entered_with_the_commands_rights(env, tmp_path):
    """A directory the target user may not enter is a start failure (errno from the child),
    not a command running as nobody inside root's 0700 directory."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    c = env.connect()
    before = len(c.command_paths())
    with pytest.raises(DBusError) as ei:
        c.run("pwd", uid=65534, cwd=str(private))
    assert ei.value.name == ERR_START_FAILED
    assert "Permission denied" in ei.value.message
    assert len(c.command_paths()) == before
    assert zombie_children(env.daemon.proc.pid) == []
    # The same directory as root is fine.
    _p, out, exited = c.run_wait("pwd", cwd=str(private))
    assert exited == (0, 0, False)
    assert stream_bytes(out, "stdout") == str(private).encode() + b"\n"
