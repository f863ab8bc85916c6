"""org.execd.Execd1.Files: OpenRead, ReadBytes, OpenWrite/CommitWrite/AbortWrite (fd
passing, atomicity, tokens, limits) and WriteBytes."""
import fcntl
import json
import os
import signal
import subprocess
import sys

import pytest

from busclient import (Client, DBusError, ERR_INVALID_ARGUMENT, ERR_INVALID_PATH, ERR_IS_DIRECTORY,
                       ERR_LIMITS, ERR_NOT_FOUND)
from conftest import wait_until
from filesutil import (HERE, MIB, NOBODY, Files, call_err, daemon_fds_under, daemon_umask,
                       expected_info, group_name, mkfile, read, read_fd_all, user_name,
                       write_all)

MAX_INLINE = 4 * MIB


def mode_of(p):
    return os.lstat(p).st_mode & 0o7777


def ids_of(p):
    st = os.lstat(p)
    return st.st_uid, st.st_gid


def no_daemon_fds(env, d, timeout=5):
    """Wait until the daemon holds no descriptor below d; return what is left."""
    wait_until(lambda: not daemon_fds_under(env.pid, d), timeout, 0.05)
    return daemon_fds_under(env.pid, d)


# =========================================================================== OpenRead
def test_open_read(files, tdir):
    data = os.urandom(300 * 1024)
    p = mkfile(os.path.join(tdir, "r.bin"), data, 0o640)
    fd, i = files.open_read(p)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        assert read_fd_all(fd) == data
        with pytest.raises(OSError):
            os.write(fd, b"x")
    finally:
        os.close(fd)
    assert i == expected_info(p)
    assert i["type"] == "file" and i["size"] == len(data) and i["mode"] == 0o640
    assert i["owner"] == "root" and i["group"] == "root"


def test_open_read_empty_file(files, tdir):
    p = mkfile(os.path.join(tdir, "empty"), b"")
    fd, i = files.open_read(p)
    try:
        assert read_fd_all(fd) == b""
    finally:
        os.close(fd)
    assert i["size"] == 0


def test_open_read_follows_symlink(files, tdir):
    t = mkfile(os.path.join(tdir, "target"), b"through the link", 0o604)
    ln = os.path.join(tdir, "ln")
    os.symlink("target", ln)
    fd, i = files.open_read(ln)
    try:
        assert read_fd_all(fd) == b"through the link"
    finally:
        os.close(fd)
    assert i["path"] == ln  # as given, not resolved
    assert i["type"] == "file"
    assert i["size"] == len(b"through the link")
    assert i["mode"] == 0o604
    assert i["mtime"] == os.stat(t).st_mtime_ns


def test_open_read_fd_is_a_snapshot_of_the_opened_file(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"first")
    fd, _i = files.open_read(p)
    try:
        mkfile(p + ".new", b"second")
        os.rename(p + ".new", p)
        assert read_fd_all(fd) == b"first"
    finally:
        os.close(fd)


def test_open_read_errors(files, tdir):
    assert call_err(files.open_read, tdir).name == ERR_IS_DIRECTORY
    assert call_err(files.open_read, os.path.join(tdir, "missing")).name == ERR_NOT_FOUND
    dangling = os.path.join(tdir, "dangling")
    os.symlink("nowhere", dangling)
    assert call_err(files.open_read, dangling).name == ERR_NOT_FOUND
    assert call_err(files.open_read, "").name == ERR_INVALID_PATH
    assert call_err(files.open_read, "$EXECD_TEST_UNDEFINED_VAR").name == ERR_INVALID_PATH


# =========================================================================== ReadBytes
def test_read_bytes_offset_length(files, tdir):
    data = bytes(range(256)) * 40
    p = mkfile(os.path.join(tdir, "f"), data)
    assert files.read_bytes(p, 0, 10) == data[:10]
    assert files.read_bytes(p, 10, 20) == data[10:30]
    assert files.read_bytes(p, 0, len(data)) == data
    assert files.read_bytes(p, 10000, 1000) == data[10000:]
    assert files.read_bytes(p, 5, 0) == b""


def test_read_bytes_past_end(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"0123456789")
    assert files.read_bytes(p, 10, 5) == b""
    assert files.read_bytes(p, 11, 5) == b""
    assert files.read_bytes(p, 1 << 40, 5) == b""


def test_read_bytes_huge_offset(files, tdir):
    """Any offset past the end reads nothing ("fewer at the end of the file"), even one
    that does not fit an off_t."""
    p = mkfile(os.path.join(tdir, "f"), b"0123456789")
    assert files.read_bytes(p, 2**63 - 1, 5) == b""
    assert files.read_bytes(p, 2**63, 5) == b""
    assert files.read_bytes(p, 2**64 - 1, 2**64 - 1) == b""


def test_read_bytes_clamps_to_4mib(files, tdir):
    data = os.urandom(5 * MIB)
    p = mkfile(os.path.join(tdir, "big"), data)
    got = files.read_bytes(p, 0, 5 * MIB)
    assert len(got) == MAX_INLINE
    assert got == data[:MAX_INLINE]
    got = files.read_bytes(p, 0, 2**64 - 1)
    assert got == data[:MAX_INLINE]
    assert files.read_bytes(p, MAX_INLINE, MAX_INLINE) == data[MAX_INLINE:]
    assert files.read_bytes(p, 100, 5 * MIB) == data[100:100 + MAX_INLINE]


def test_read_bytes_follows_symlink(files, tdir):
    mkfile(os.path.join(tdir, "t"), b"target data")
    os.symlink("t", os.path.join(tdir, "ln"))
    assert files.read_bytes(os.path.join(tdir, "ln"), 7, 100) == b"data"


def test_read_bytes_errors(files, tdir):
    assert call_err(files.read_bytes, os.path.join(tdir, "missing"), 0, 1).name == ERR_NOT_FOUND
    assert call_err(files.read_bytes, tdir, 0, 1).name == ERR_IS_DIRECTORY
    assert call_err(files.read_bytes, "", 0, 1).name == ERR_INVALID_PATH


# =========================================================================== OpenWrite
def test_open_write_commit_new_file(env, files, tdir):
    mkfile(os.path.join(tdir, "other"), b"o")
    before = sorted(os.listdir(tdir))
    p = os.path.join(tdir, "new.bin")
    data = os.urandom(MIB + 17)
    fd, token = files.open_write(p, 0o640)
    try:
        assert isinstance(token, str) and token
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
        assert not os.path.lexists(p), "nothing may be visible before CommitWrite"
        assert sorted(os.listdir(tdir)) == before
        write_all(fd, data[:1000])
        assert not os.path.lexists(p)
        assert sorted(os.listdir(tdir)) == before, "no temp entry while writing"
        write_all(fd, data[1000:])
        assert not os.path.lexists(p)
        assert sorted(os.listdir(tdir)) == before
    finally:
        os.close(fd)
    assert not os.path.lexists(p)
    i = files.commit(token)
    assert read(p) == data
    assert mode_of(p) == 0o640
    assert ids_of(p) == (0, 0)
    assert i == expected_info(p)
    assert sorted(os.listdir(tdir)) == sorted(before + ["new.bin"])
    assert no_daemon_fds(env, tdir) == []


def test_open_write_commit_with_fd_still_open(files, tdir):
    p = os.path.join(tdir, "f")
    fd, token = files.open_write(p)
    try:
        write_all(fd, b"written before commit")
        i = files.commit(token)
    finally:
        os.close(fd)
    assert read(p) == b"written before commit"
    assert i["size"] == len(b"written before commit")


def test_open_write_replaces_existing_atomically(env, files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old content", 0o644)
    ino = os.lstat(p).st_ino
    before = sorted(os.listdir(tdir))
    fd, token = files.open_write(p, 0)
    try:
        write_all(fd, b"new content, longer than the old one")
        assert read(p) == b"old content"
        assert os.lstat(p).st_ino == ino
        assert sorted(os.listdir(tdir)) == before
    finally:
        os.close(fd)
    assert read(p) == b"old content"
    files.commit(token)
    assert read(p) == b"new content, longer than the old one"
    assert sorted(os.listdir(tdir)) == before
    assert no_daemon_fds(env, tdir) == []


def test_open_write_shorter_content_truncates(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"a long old content")
    fd, token = files.open_write(p)
    try:
        write_all(fd, b"short")
    finally:
        os.close(fd)
    files.commit(token)
    assert read(p) == b"short"


def test_open_write_empty_file(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old")
    fd, token = files.open_write(p)
    os.close(fd)
    i = files.commit(token)
    assert read(p) == b"" and i["size"] == 0


def test_abort_write(env, files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old content", 0o600)
    n = os.path.join(tdir, "sub", "new")
    before = sorted(os.listdir(tdir))
    fd1, t1 = files.open_write(p, 0o644)
    fd2, t2 = files.open_write(n)
    before2 = sorted(os.listdir(tdir))  # sub/ was created by OpenWrite
    try:
        write_all(fd1, b"discard me")
        write_all(fd2, b"discard me too")
    finally:
        os.close(fd1)
        os.close(fd2)
    files.abort(t1)
    files.abort(t2)
    assert read(p) == b"old content" and mode_of(p) == 0o600
    assert not os.path.lexists(n)
    assert os.listdir(os.path.join(tdir, "sub")) == []
    assert sorted(os.listdir(tdir)) == before2 == sorted(before + ["sub"])
    # the tokens are spent
    assert call_err(files.abort, t1).name == ERR_NOT_FOUND
    assert call_err(files.commit, t2).name == ERR_NOT_FOUND
    assert read(p) == b"old content" and not os.path.lexists(n)
    assert no_daemon_fds(env, tdir) == []


def test_spent_token(files, tdir):
    p = os.path.join(tdir, "f")
    fd, token = files.open_write(p)
    write_all(fd, b"one")
    os.close(fd)
    files.commit(token)
    assert call_err(files.commit, token).name == ERR_NOT_FOUND
    assert call_err(files.abort, token).name == ERR_NOT_FOUND
    assert read(p) == b"one"


@pytest.mark.parametrize("token", ["", "nonsense", "0", "../../etc/passwd", "x" * 300])
def test_unknown_token(files, token):
    assert call_err(files.commit, token).name == ERR_NOT_FOUND
    assert call_err(files.abort, token).name == ERR_NOT_FOUND


def test_token_of_another_connection(env, files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old")
    fd, token = files.open_write(p)
    write_all(fd, b"mine")
    os.close(fd)
    other = Files(Client(env.address, enable_fds=True))
    env.clients.append(other.c)
    assert call_err(other.commit, token).name == ERR_NOT_FOUND
    assert read(p) == b"old"
    assert call_err(other.abort, token).name == ERR_NOT_FOUND
    assert read(p) == b"old"
    # Someone else's attempt is an unknown token to them: ours still works.
    files.commit(token)
    assert read(p) == b"mine"


def test_open_write_creates_parents(env, files, tdir):
    p = os.path.join(tdir, "a", "b", "c", "f")
    default = 0o777 & ~daemon_umask(env.pid)
    fd, token = files.open_write(p, 0o600)
    try:
        for d in ("a", "a/b", "a/b/c"):
            assert os.path.isdir(os.path.join(tdir, d)), "parents are created by OpenWrite"
            assert mode_of(os.path.join(tdir, d)) == default
        assert os.listdir(os.path.join(tdir, "a", "b", "c")) == []
        write_all(fd, b"deep")
    finally:
        os.close(fd)
    files.commit(token)
    assert read(p) == b"deep" and mode_of(p) == 0o600


def test_open_write_directory(files, tdir):
    d = os.path.join(tdir, "d")
    os.mkdir(d)
    assert call_err(files.open_write, d).name == ERR_IS_DIRECTORY
    assert os.listdir(d) == []


def test_open_write_invalid_path(files):
    assert call_err(files.open_write, "").name == ERR_INVALID_PATH
    assert call_err(files.open_write, "$EXECD_TEST_UNDEFINED_VAR/f").name == ERR_INVALID_PATH


def test_open_write_default_mode_new_file(env, files, tdir):
    um = daemon_umask(env.pid)
    p = os.path.join(tdir, "new")
    fd, token = files.open_write(p, 0)
    os.close(fd)
    i = files.commit(token)
    assert mode_of(p) == 0o777 & ~um
    assert i["mode"] == 0o777 & ~um
    if um == 0o022:
        assert mode_of(p) == 0o755
    assert ids_of(p) == (0, 0)  # the caller's ids


def test_open_write_keeps_mode_and_owner_of_replaced_file(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old", 0o600)
    os.chown(p, NOBODY, NOBODY)
    fd, token = files.open_write(p, 0, "", "")
    write_all(fd, b"new")
    os.close(fd)
    i = files.commit(token)
    assert read(p) == b"new"
    assert mode_of(p) == 0o600
    assert ids_of(p) == (NOBODY, NOBODY)
    assert i["owner"] == user_name(NOBODY) and i["mode"] == 0o600


def test_open_write_keeps_special_bits_of_replaced_file(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old")
    os.chmod(p, 0o4755)
    fd, token = files.open_write(p)
    os.close(fd)
    files.commit(token)
    assert mode_of(p) == 0o4755


def test_open_write_mode_owner_group_given(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old", 0o600)
    fd, token = files.open_write(p, 0o644, user_name(NOBODY), group_name(NOBODY))
    os.close(fd)
    files.commit(token)
    assert mode_of(p) == 0o644 and ids_of(p) == (NOBODY, NOBODY)
    q = os.path.join(tdir, "g")
    fd, token = files.open_write(q, 0o600, "65534", "")
    os.close(fd)
    i = files.commit(token)
    assert mode_of(q) == 0o600 and ids_of(q) == (NOBODY, 0)
    assert i == expected_info(q)


@pytest.mark.parametrize("owner,group", [("execd-no-such-user", ""), ("", "execd-no-such-group")])
def test_open_write_unknown_name(files, tdir, owner, group):
    p = os.path.join(tdir, "newdir", "f")
    e = call_err(files.open_write, p, 0, owner, group)
    assert e.name == ERR_INVALID_ARGUMENT
    assert os.listdir(tdir) == [], "nothing may be created"


def test_open_write_through_symlink(files, tdir):
    t = mkfile(os.path.join(tdir, "target"), b"old", 0o640)
    l1 = os.path.join(tdir, "l1")
    l2 = os.path.join(tdir, "l2")
    os.symlink("target", l1)
    os.symlink("l1", l2)
    fd, token = files.open_write(l2)
    write_all(fd, b"via links")
    os.close(fd)
    files.commit(token)
    assert read(t) == b"via links"
    assert mode_of(t) == 0o640
    assert os.readlink(l2) == "l1" and os.readlink(l1) == "target"
    assert sorted(os.listdir(tdir)) == ["l1", "l2", "target"]


def test_concurrent_writes_same_path_last_commit_wins(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old")
    fd1, t1 = files.open_write(p)
    fd2, t2 = files.open_write(p)
    write_all(fd1, b"first")
    write_all(fd2, b"second")
    os.close(fd1)
    os.close(fd2)
    files.commit(t2)
    assert read(p) == b"second"
    files.commit(t1)
    assert read(p) == b"first"
    assert os.listdir(tdir) == ["f"]


def test_disconnect_discards_write(env, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old")
    before = sorted(os.listdir(tdir))
    c = Client(env.address, enable_fds=True)
    f = Files(c)
    fd, _token = f.open_write(p)
    fd2, _t2 = f.open_write(os.path.join(tdir, "brand-new"))
    write_all(fd, b"never")
    os.close(fd)
    os.close(fd2)
    c.close()
    assert no_daemon_fds(env, tdir) == [], "the daemon must drop writes of a caller that left"
    assert read(p) == b"old"
    assert sorted(os.listdir(tdir)) == before


KILLED_WRITER = r'''
import json, os, sys, time
args = json.loads(sys.argv[2])
c = Client(sys.argv[1], enable_fds=True)
fdo, token = c.files("OpenWrite", "suss", (args["path"], 0, "", ""))
fd = fdo.to_raw_fd()
os.write(fd, b"PARTIAL" * 10000)
print("READY " + c.unique_name, flush=True)
time.sleep(120)
'''


def test_killed_writer_leaves_old_content(env, fc, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"the old content", 0o640)
    ino = os.lstat(p).st_ino
    before = sorted(os.listdir(tdir))
    with open(os.path.join(HERE, "busclient.py")) as f:
        source = f.read()
    proc = subprocess.Popen([sys.executable, "-c", source + "\n" + KILLED_WRITER,
                             env.address, json.dumps({"path": p})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("READY "), line + proc.stderr.read().decode()
        unique = line.split()[1]
        assert read(p) == b"the old content"
        assert sorted(os.listdir(tdir)) == before
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    # The writer has left the bus ...
    assert wait_until(lambda: not fc.bus_call("NameHasOwner", "s", (unique,))[0], 5, 0.05)
    # ... and the daemon discards its write (on NameOwnerChanged).
    assert no_daemon_fds(env, tdir) == []
    assert read(p) == b"the old content"
    assert os.lstat(p).st_ino == ino
    assert mode_of(p) == 0o640
    assert sorted(os.listdir(tdir)) == before


def _open_many(f, d, n):
    tokens = []
    for k in range(n):
        fd, token = f.open_write(os.path.join(d, f"f{k:04d}"))
        os.close(fd)
        tokens.append(token)
    return tokens


def test_uncommitted_write_limit_per_caller(env, files, tdir):
    d = os.path.join(tdir, "lim")
    tokens = _open_many(files, d, 1024)
    try:
        assert len(set(tokens)) == 1024
        e = call_err(files.open_write, os.path.join(d, "one-too-many"))
        assert e.name == ERR_LIMITS
        # another caller is not affected by this caller's count
        other = Files(Client(env.address, enable_fds=True))
        env.clients.append(other.c)
        fd, t = other.open_write(os.path.join(d, "other"))
        os.close(fd)
        other.abort(t)
        # freeing one slot lets this caller open one more
        files.abort(tokens.pop())
        fd, t = files.open_write(os.path.join(d, "again"))
        os.close(fd)
        tokens.append(t)
        assert call_err(files.open_write, os.path.join(d, "over-again")).name == ERR_LIMITS
    finally:
        for t in tokens:
            files.abort(t)
    assert os.listdir(d) == []
    assert no_daemon_fds(env, tdir, timeout=10) == []


def test_uncommitted_write_limit_global(make_env, tdir):
    e = make_env()
    clients = [Files(Client(e.address, enable_fds=True)) for _ in range(5)]
    for f in clients:
        e.clients.append(f.c)
    for k, f in enumerate(clients[:4]):
        _open_many(f, os.path.join(tdir, f"c{k}"), 1024)
    assert call_err(clients[4].open_write, os.path.join(tdir, "c4", "x")).name == ERR_LIMITS
    held = len(daemon_fds_under(e.pid, tdir))
    assert held >= 4096
    clients[0].c.close()  # leaving frees its 1024 writes
    assert wait_until(lambda: len(daemon_fds_under(e.pid, tdir)) <= held * 3 // 4, 10, 0.05)
    fd, t = clients[4].open_write(os.path.join(tdir, "c4", "x"))
    os.close(fd)
    clients[4].abort(t)


# =========================================================================== WriteBytes
def test_write_bytes_new_file(env, files, tdir):
    p = os.path.join(tdir, "d1", "d2", "f")
    data = os.urandom(100000)
    i = files.write_bytes(p, data, 0o604)
    assert read(p) == data
    assert mode_of(p) == 0o604
    assert i == expected_info(p)
    assert i["size"] == len(data)
    assert os.listdir(os.path.dirname(p)) == ["f"]
    assert mode_of(os.path.join(tdir, "d1")) == 0o777 & ~daemon_umask(env.pid)


def test_write_bytes_default_mode(env, files, tdir):
    p = os.path.join(tdir, "f")
    files.write_bytes(p, b"x")
    assert mode_of(p) == 0o777 & ~daemon_umask(env.pid)


def test_write_bytes_replaces_keeping_mode_and_owner(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old old old", 0o600)
    os.chown(p, NOBODY, NOBODY)
    i = files.write_bytes(p, b"new")
    assert read(p) == b"new"
    assert mode_of(p) == 0o600 and ids_of(p) == (NOBODY, NOBODY)
    assert i["mode"] == 0o600 and i["size"] == 3
    assert os.listdir(tdir) == ["f"]


def test_write_bytes_owner_group(files, tdir):
    p = os.path.join(tdir, "f")
    files.write_bytes(p, b"x", 0o640, "65534", group_name(NOBODY))
    assert ids_of(p) == (NOBODY, NOBODY) and mode_of(p) == 0o640
    assert call_err(files.write_bytes, os.path.join(tdir, "g"), b"x", 0,
                    "execd-no-such-user").name == ERR_INVALID_ARGUMENT
    assert not os.path.lexists(os.path.join(tdir, "g"))


def test_write_bytes_empty(files, tdir):
    p = mkfile(os.path.join(tdir, "f"), b"old")
    assert files.write_bytes(p, b"")["size"] == 0
    assert read(p) == b""


def test_write_bytes_4mib_limit(files, tdir):
    p = os.path.join(tdir, "exact")
    data = os.urandom(MAX_INLINE)
    files.write_bytes(p, data)
    assert read(p) == data
    q = mkfile(os.path.join(tdir, "q"), b"keep")
    before = sorted(os.listdir(tdir))
    assert call_err(files.write_bytes, q, data + b"!").name == ERR_INVALID_ARGUMENT
    assert call_err(files.write_bytes, os.path.join(tdir, "new"), data + b"!").name == \
        ERR_INVALID_ARGUMENT
    assert read(q) == b"keep"
    assert sorted(os.listdir(tdir)) == before


def test_write_bytes_through_symlink(files, tdir):
    t = mkfile(os.path.join(tdir, "t"), b"old", 0o640)
    os.symlink("t", os.path.join(tdir, "ln"))
    files.write_bytes(os.path.join(tdir, "ln"), b"new")
    assert read(t) == b"new" and mode_of(t) == 0o640
    assert os.path.islink(os.path.join(tdir, "ln"))


def test_write_bytes_errors(files, tdir):
    assert call_err(files.write_bytes, tdir, b"x").name == ERR_IS_DIRECTORY
    assert call_err(files.write_bytes, "", b"x").name == ERR_INVALID_PATH
    assert call_err(files.write_bytes, "$EXECD_TEST_UNDEFINED_VAR/f", b"x").name == \
        ERR_INVALID_PATH


def test_write_then_read_roundtrip(files, tdir):
    p = os.path.join(tdir, "rt")
    data = bytes(range(256)) * 1000
    files.write_bytes(p, data)
    assert files.read_bytes(p, 0, len(data)) == data
    fd, _i = files.open_read(p)
    try:
        assert read_fd_all(fd) == data
    finally:
        os.close(fd)


def test_write_bytes_relative_path(env, files, tdir):
    cwd = os.readlink(f"/proc/{env.pid}/cwd")
    rel = "../" * (cwd.count("/") + 2) + tdir.lstrip("/") + "/x/../rel.txt"
    i = files.write_bytes(rel, b"relative")
    p = os.path.join(tdir, "rel.txt")
    assert i["path"] == p
    assert read(p) == b"relative"
    assert os.listdir(tdir) == ["rel.txt"]


@pytest.mark.parametrize("member,sig,args", [
    ("OpenRead", "s", ()),
    ("ReadBytes", "stt", (0, 10)),
    ("Replace", None, None),
    ("OpenWrite", "suss", (0, "", "")),
    ("WriteBytes", "sayuss", (b"x", 0, "", "")),
])
def test_fifo_never_blocks_the_daemon(files, tdir, member, sig, args):
    """A fifo without a peer must not hang the (single-threaded) daemon: the call answers
    (an error or a result) and the daemon keeps serving."""
    p = os.path.join(tdir, "fifo")
    os.mkfifo(p, 0o666)
    if member == "Replace":
        sig, body = "a(sss)", ([(p, "a", "b")],)
    else:
        body = (p,) + args
    try:
        r = files.c.files(member, sig, body, timeout=5)
        for v in r:
            if hasattr(v, "close"):
                v.close()
    except DBusError:
        pass
    assert files.stat1(tdir)["type"] == "directory"
    assert os.path.exists(p)
