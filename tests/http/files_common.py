"""Shared helpers for the file-route tests (test_files_*.py).

Each test module that imports `fs` gets its own bus + execd + execd-bridge, started with TZ=UTC,
FILES_TEST_SUBST=subst in the environment (for $VAR expansion tests) and a private working
directory (for relative paths). `d` is a fresh, empty, 0755 directory under /tmp per test.
"""
import contextlib
import json
import os
import secrets
import stat
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import group_name, user_name  # noqa: E402,F401 (the files tests import them from here)
from execd_http import Stack, assert_error, is_json  # noqa: E402,F401

SUBST_VAR = "FILES_TEST_SUBST"
SUBST_VALUE = "subst"
UNDEFINED_VAR = "EXECD_FILES_TEST_UNDEFINED_VARIABLE"
INFO_KEYS = {"path", "type", "size", "modified_at", "created_at", "owner", "group", "mode"}
TYPES = {"file", "directory", "symlink", "other"}


def current_umask():
    old = os.umask(0)
    os.umask(old)
    return old


@contextlib.contextmanager
def patched_environ(**values):
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_stack(cwd, tz="UTC", daemon_args=()):
    """A Stack whose daemon and bridge run with TZ=tz, FILES_TEST_SUBST set and cwd `cwd`."""
    old_cwd = os.getcwd()
    os.chdir(cwd)
    try:
        with patched_environ(TZ=tz, **{SUBST_VAR: SUBST_VALUE}):
            os.environ.pop(UNDEFINED_VAR, None)
            return Stack(daemon_args=daemon_args)
    finally:
        os.chdir(old_cwd)


@pytest.fixture(scope="module")
def fs_cwd(tmp_path_factory):
    p = tmp_path_factory.mktemp("daemon-cwd")
    os.chmod(p, 0o755)
    return str(p)


@pytest.fixture(scope="module")
def fs(fs_cwd):
    s = start_stack(fs_cwd)
    yield s
    s.stop()


@pytest.fixture
def d(tmp_path):
    os.chmod(tmp_path, 0o755)
    p = tmp_path / "w"
    p.mkdir()
    os.chmod(p, 0o755)
    return str(p)


# -- answers ---------------------------------------------------------------------------------
def assert_empty_ok(r):
    """Empty success: 200, Content-Length: 0, no Content-Type, no body."""
    assert r.status_code == 200, (r.status_code, r.headers, r.text[:500])
    assert r.headers.get("Content-Length") == "0", r.headers
    assert "Content-Type" not in r.headers, r.headers
    assert "chunked" not in r.headers.get("Transfer-Encoding", ""), r.headers
    assert r.content == b""


def json_ok(r):
    assert r.status_code == 200, (r.status_code, r.headers, r.text[:500])
    assert is_json(r), r.headers
    return r.json()


# -- FileInfo --------------------------------------------------------------------------------
def rfc3339_utc(ns):
    """RFC 3339, nanoseconds, trailing fractional zeros trimmed, 'Z'."""
    sec, frac = divmod(ns, 1_000_000_000)
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        s += "." + f"{frac:09d}".rstrip("0")
    return s + "Z"


def octal_digits(mode):
    """0o644 -> 644, 0o7 -> 7 (low nine bits only)."""
    return int(oct(mode & 0o777)[2:])


def type_of(st):
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "other"


def expected_info(p, path=None):
    """The FileInfo the contract requires for p, from lstat (path field = the clean abs path)."""
    st = os.lstat(p)
    return {
        "path": path if path is not None else os.path.normpath(os.path.abspath(p)),
        "type": type_of(st),
        "size": st.st_size,
        "modified_at": rfc3339_utc(st.st_mtime_ns),
        "created_at": rfc3339_utc(st.st_ctime_ns),
        "owner": user_name(st.st_uid),
        "group": group_name(st.st_gid),
        "mode": octal_digits(st.st_mode),
    }


def check_info_shape(info):
    """All eight keys with the right JSON types."""
    assert isinstance(info, dict), info
    assert set(info) == INFO_KEYS, info
    assert isinstance(info["path"], str) and info["path"].startswith("/"), info
    assert info["type"] in TYPES, info
    for k in ("size", "mode"):
        assert isinstance(info[k], int) and not isinstance(info[k], bool), info
    assert set(str(info["mode"])) <= set("01234567") and 0 <= info["mode"] <= 777, info
    for k in ("modified_at", "created_at", "owner", "group"):
        assert isinstance(info[k], str) and info[k], info


def check_info(info, p, path=None):
    check_info_shape(info)
    assert info == expected_info(p, path), (info, expected_info(p, path))


# -- files on disk ---------------------------------------------------------------------------
def write(p, data=b"", mode=None):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(p, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(p, mode)
    return p


def read(p):
    with open(p, "rb") as f:
        return f.read()


def q(s):
    """Percent-encode a query value completely (only '/' left as is)."""
    return quote(s, safe="/")


def qpaths(*paths, name="path"):
    return "&".join(f"{name}={q(p)}" for p in paths)


# -- multipart -------------------------------------------------------------------------------
def new_boundary():
    return "----execdtest" + secrets.token_hex(12)


def part_head(boundary, name, filename=None, content_type=None):
    disp = f'form-data; name="{name}"'
    if filename is not None:
        disp += f'; filename="{filename}"'
    h = f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
    if content_type:
        h += f"Content-Type: {content_type}\r\n"
    return (h + "\r\n").encode()


def meta_bytes(meta):
    if isinstance(meta, (bytes, bytearray)):
        return bytes(meta)
    if isinstance(meta, str):
        return meta.encode()
    return json.dumps(meta).encode()


def metadata_part(boundary, meta):
    return (part_head(boundary, "metadata", "metadata", "application/json")
            + meta_bytes(meta) + b"\r\n")


def file_part(boundary, content, filename="blob", content_type="application/octet-stream"):
    if isinstance(content, str):
        content = content.encode()
    return part_head(boundary, "file", filename, content_type) + content + b"\r\n"


def closing(boundary):
    return f"--{boundary}--\r\n".encode()


def multipart(parts, boundary=None):
    """parts: list of ("metadata", meta) / ("file", content) / (raw bytes); -> (body, ctype)."""
    boundary = boundary or new_boundary()
    body = b""
    for p in parts:
        if isinstance(p, (bytes, bytearray)):
            body += p
        elif p[0] == "metadata":
            body += metadata_part(boundary, p[1])
        elif p[0] == "file":
            body += file_part(boundary, p[1], *p[2:])
        else:
            raise ValueError(p)
    body += closing(boundary)
    return body, f"multipart/form-data; boundary={boundary}"


def pairs(*items):
    """pairs((meta, content), ...) -> interleaved parts as the Python SDK sends them."""
    out = []
    for meta, content in items:
        out.append(("metadata", meta))
        out.append(("file", content))
    return out


def upload(stack, parts, **kw):
    body, ctype = multipart(parts)
    return stack.post("/files/upload", data=body, headers={"Content-Type": ctype}, **kw)


def upload_one(stack, path, content, **meta):
    m = {"path": path}
    m.update(meta)
    return upload(stack, pairs((m, content)))


# -- a daemon that cannot write anywhere (for tests that could be destructive when wrong) ----
_RO_WRAPPER = r"""
import os, subprocess, sys
def unescape(s):
    out, i = "", 0
    while i < len(s):
        if s[i] == "\\" and s[i+1:i+4].isdigit():
            out += chr(int(s[i+1:i+4], 8)); i += 4
        else:
            out += s[i]; i += 1
    return out
points = []
with open("/proc/self/mounts") as f:
    for line in f:
        points.append(unescape(line.split()[1]))
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
for p in points:
    r = subprocess.run(["mount", "-o", "remount,bind,ro", p],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if p == "/" and r.returncode != 0:
        sys.exit("cannot make / read-only")
probe = "/tmp/.execd-ro-probe-%d" % os.getpid()
try:
    open(probe, "w").close()
except OSError:
    pass
else:
    os.unlink(probe)
    sys.exit("/tmp is still writable")
os.execv(sys.argv[1], sys.argv[1:])
"""


class ReadOnlyDaemon(harness.Daemon):
    """execd in a private mount namespace where every mount is read-only."""

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
             _RO_WRAPPER, harness.DAEMON, f"--bus-address={self.bus.address}", *self.args],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        harness.wait_for_name(self.bus.address, harness.BUS_NAME, 10, self.proc)


class ReadOnlyStack(Stack):
    def __init__(self):  # noqa: D107 -- same attributes as Stack
        self.bus = harness.Bus()
        self.daemon = self.bridge = None
        try:
            self.daemon = ReadOnlyDaemon(self.bus)
            self.bridge = harness.Bridge(self.bus)
        except Exception:
            self.stop()
            raise
        self.url = self.bridge.url
        self.headers = self.bridge.headers
