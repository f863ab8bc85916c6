"""Shared helpers and fixtures for the org.execd.Execd1.Files tests (test_files*.py)."""
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from busclient import Client, DBusError
from harness import group_name, user_name  # noqa: F401 (the Files tests import them from here)

HERE = os.path.dirname(os.path.abspath(__file__))
NOBODY = 65534
MIB = 1 << 20
FIELDS = ("path", "type", "size", "mtime", "ctime", "owner", "group", "mode")


def info(t):
    """A FileInfo (sstxxssu) as a dict."""
    assert len(t) == 8, t
    return dict(zip(FIELDS, t))


def unused_id(start=54321):
    """An id with neither a passwd nor a group entry."""
    i = start
    while True:
        try:
            pwd.getpwuid(i)
        except KeyError:
            try:
                grp.getgrgid(i)
            except KeyError:
                return i
        i += 1


def expected_info(path, st=None, shown_path=None):
    """The FileInfo the contract demands for path (lstat), as a dict."""
    if st is None:
        st = os.lstat(path)
    import stat as S
    if S.S_ISREG(st.st_mode):
        t = "file"
    elif S.S_ISDIR(st.st_mode):
        t = "directory"
    elif S.S_ISLNK(st.st_mode):
        t = "symlink"
    else:
        t = "other"
    return {"path": shown_path or path, "type": t, "size": st.st_size,
            "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns,
            "owner": user_name(st.st_uid), "group": group_name(st.st_gid),
            "mode": st.st_mode & 0o7777}


def err(f, *a, **kw):
    """The D-Bus error name f raises, or None."""
    try:
        f(*a, **kw)
    except DBusError as e:
        return e.name
    return None


def call_err(f, *a, **kw):
    """The DBusError f raises (fails the test when it succeeds)."""
    try:
        r = f(*a, **kw)
    except DBusError as e:
        return e
    pytest.fail(f"expected a D-Bus error, got {r!r}")


def daemon_umask(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    raise AssertionError("no Umask in /proc status")


def daemon_fds_under(pid, directory):
    """The daemon's open descriptors that point at or below directory (incl. unlinked
    O_TMPFILE files, shown as 'DIR/#ino (deleted)')."""
    out = []
    d = f"/proc/{pid}/fd"
    for n in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, n))
        except OSError:
            continue
        if target == directory or target.startswith(directory.rstrip("/") + "/"):
            out.append(target)
    return out


def tree_snapshot(root):
    """{relative path: (type, content or link target)} of everything below root."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                snap[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                snap[rel] = ("d", None)
            else:
                with open(p, "rb") as f:
                    snap[rel] = ("f", f.read())
    return snap


# --------------------------------------------------------------------------- wrappers
class Files:
    """Typed wrappers around the Files methods of one (fd-enabled) connection."""

    def __init__(self, client):
        self.c = client

    def stat(self, paths):
        (infos,) = self.c.files("Stat", "as", (list(paths),))
        return [info(i) for i in infos]

    def stat1(self, path):
        return self.stat([path])[0]

    def list(self, path, depth):
        (entries,) = self.c.files("List", "su", (path, depth))
        return [info(i) for i in entries]

    def search(self, path, pattern):
        (matches,) = self.c.files("Search", "ss", (path, pattern))
        return [info(i) for i in matches]

    def mkdirs(self, entries):
        self.c.files("MakeDirectories", "a(suss)", (list(entries),))

    def move(self, pairs):
        self.c.files("Move", "a(ss)", (list(pairs),))

    def remove_files(self, paths):
        self.c.files("RemoveFiles", "as", (list(paths),))

    def remove_dirs(self, paths):
        self.c.files("RemoveDirectories", "as", (list(paths),))

    def set_perms(self, entries):
        self.c.files("SetPermissions", "a(suss)", (list(entries),))

    def replace(self, entries):
        (counts,) = self.c.files("Replace", "a(sss)", (list(entries),))
        return list(counts)

    def open_read(self, path):
        """(raw fd, info dict); the caller closes the fd."""
        fd, i = self.c.files("OpenRead", "s", (path,))
        return fd.to_raw_fd(), info(i)

    def open_write(self, path, mode=0, owner="", group=""):
        """(raw fd, token); the caller closes the fd."""
        fd, token = self.c.files("OpenWrite", "suss", (path, mode, owner, group))
        return fd.to_raw_fd(), token

    def commit(self, token):
        (i,) = self.c.files("CommitWrite", "s", (token,))
        return info(i)

    def abort(self, token):
        self.c.files("AbortWrite", "s", (token,))

    def read_bytes(self, path, offset, length, timeout=30):
        (data,) = self.c.files("ReadBytes", "stt", (path, offset, length), timeout=timeout)
        return bytes(data)

    def write_bytes(self, path, data, mode=0, owner="", group="", timeout=30):
        (i,) = self.c.files("WriteBytes", "sayuss", (path, data, mode, owner, group),
                            timeout=timeout)
        return info(i)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_fd_all(fd):
    chunks = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def mkfile(path, data=b"", mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- helper process
def run_helper(address, script, args, user=None, timeout=60):
    """Run busclient.py + script in a separate python process (as user when given) and
    return the JSON it prints after 'RESULT '. args is passed as JSON in argv[2]."""
    with open(os.path.join(HERE, "busclient.py")) as f:
        source = f.read()
    kw = {}
    if user is not None:
        kw = dict(user=user, group=user, extra_groups=[])
    r = subprocess.run([sys.executable, "-c", source + "\n" + script, address,
                        json.dumps(args)], cwd="/", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, **kw)
    out = r.stdout.decode()
    assert "RESULT " in out, f"helper failed: {out}\n{r.stderr.decode()}"
    res = json.loads(out.split("RESULT ", 1)[1])
    assert "exception" not in res, res["exception"]
    return res


# A generic operation runner for helper processes: args = [[name, member, signature,
# body], ...]; bytes in bodies are given as {"b": "latin-1 text"}, lists inside an
# array are structs. Each result is
# {"error": name} or {"ok": reply} (fds read to the end and returned as {"fd": text}).
# The pseudo member "OpenWrite+CommitWrite" takes [path, data, mode, owner, group].
OPS_HELPER = r'''
import json, os, sys, traceback
def dec(v):
    if isinstance(v, dict) and "b" in v:
        return v["b"].encode("latin-1")
    if isinstance(v, list):  # an array; list elements are structs
        return [tuple(dec(y) for y in x) if isinstance(x, list) else dec(x) for x in v]
    return v
def enc(v):
    from jeepney.fds import FileDescriptor
    if isinstance(v, FileDescriptor):
        fd = v.to_raw_fd()
        data = b""
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            data += b
        os.close(fd)
        return {"fd": data.decode("latin-1")}
    if isinstance(v, (bytes, bytearray)):
        return {"b": bytes(v).decode("latin-1")}
    if isinstance(v, (list, tuple)):
        return [enc(x) for x in v]
    return v
res = {"ops": {}}
try:
    c = Client(sys.argv[1], enable_fds=True)
    res["uid"] = os.getuid()
    for name, member, sig, body in json.loads(sys.argv[2]):
        try:
            if member == "OpenWrite+CommitWrite":
                path, data, mode, owner, group = [dec(x) for x in body]
                fdo, token = c.files("OpenWrite", "suss", (path, mode, owner, group))
                fd = fdo.to_raw_fd()
                os.write(fd, data)
                os.close(fd)
                r = c.files("CommitWrite", "s", (token,))
            else:
                r = c.files(member, sig or None, tuple(dec(b) for b in body))
            res["ops"][name] = {"ok": enc(list(r))}
        except DBusError as e:
            res["ops"][name] = {"error": e.name, "message": e.message}
except Exception:
    res["exception"] = traceback.format_exc()
print("RESULT " + json.dumps(res))
'''


def run_ops(address, ops, user=None):
    """Run Files calls in a helper process; {name: {"ok": body} | {"error": name}}."""
    res = run_helper(address, OPS_HELPER, ops, user=user)
    return res["ops"]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def fc(env):
    """An fd-enabled client, closed after the test."""
    c = Client(env.address, enable_fds=True)
    env.clients.append(c)
    return c


@pytest.fixture
def files(fc):
    return Files(fc)


@pytest.fixture
def tdir():
    """A fresh real directory under /tmp, 0755 (other uids may traverse it)."""
    d = os.path.realpath(tempfile.mkdtemp(prefix="execd-files-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
