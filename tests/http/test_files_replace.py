"""POST /files/replace?verbose=true : counts, validation before any change, no-op rewrites."""
import os
import time

import pytest

from execd_http import assert_error
from files_common import (  # noqa: F401 -- fixtures
    SUBST_VALUE, SUBST_VAR, UNDEFINED_VAR, assert_empty_ok, d, fs, fs_cwd, json_ok, read, write)


def replace(fs, body, verbose=True, query=None):
    url = "/files/replace"
    if query is not None:
        url += "?" + query
    elif verbose:
        url += "?verbose=true"
    return fs.post(url, json=body)


def test_replace_count_three(fs, d):
    p = write(f"{d}/a.txt", "foo bar foo baz foo")
    body = json_ok(replace(fs, {p: {"old": "foo", "new": "qux"}}))
    assert body == {p: {"replacedCount": 3}}
    assert read(p) == b"qux bar qux baz qux"


def test_replace_non_overlapping(fs, d):
    p = write(f"{d}/a.txt", "aaa")
    assert json_ok(replace(fs, {p: {"old": "aa", "new": "b"}})) == {p: {"replacedCount": 1}}
    assert read(p) == b"ba"


def test_replace_new_contains_old(fs, d):
    p = write(f"{d}/a.txt", "aaa")
    assert json_ok(replace(fs, {p: {"old": "a", "new": "aa"}})) == {p: {"replacedCount": 3}}
    assert read(p) == b"aaaaaa"


def test_replace_with_empty_new(fs, d):
    p = write(f"{d}/a.txt", "x-y-z-")
    assert json_ok(replace(fs, {p: {"old": "-", "new": ""}})) == {p: {"replacedCount": 3}}
    assert read(p) == b"xyz"


def test_replace_multiline_and_unicode(fs, d):
    p = write(f"{d}/a.txt", "línea 1\r\nlínea 2\n测试 línea\n")
    body = json_ok(replace(fs, {p: {"old": "línea", "new": "行"}}))
    assert body == {p: {"replacedCount": 3}}
    assert read(p) == "行 1\r\n行 2\n测试 行\n".encode()
    body = json_ok(replace(fs, {p: {"old": "\r\n", "new": "\n"}}))
    assert body == {p: {"replacedCount": 1}}


def test_replace_several_files_keys_as_sent(fs, d):
    a = write(f"{d}/a.txt", "one two one")
    b = write(f"{d}/{SUBST_VALUE}/b.txt", "two two")
    c = write(f"{d}/c c+&.txt", "nothing")
    ka = f"{d}//./a.txt"
    kb = f"{d}/${SUBST_VAR}/b.txt"
    body = json_ok(replace(fs, {ka: {"old": "one", "new": "1"}, kb: {"old": "two", "new": "2"},
                                c: {"old": "zzz", "new": "y"}}))
    assert body == {ka: {"replacedCount": 2}, kb: {"replacedCount": 2}, c: {"replacedCount": 0}}
    assert read(a) == b"1 two 1"
    assert read(b) == b"2 2"
    assert read(c) == b"nothing"


def test_replace_relative_key(fs, fs_cwd):
    name = "replace-rel-" + os.urandom(4).hex()
    p = write(f"{fs_cwd}/{name}.txt", "abc")
    body = json_ok(replace(fs, {f"{name}.txt": {"old": "b", "new": "B"}}))
    assert body == {f"{name}.txt": {"replacedCount": 1}}
    assert read(p) == b"aBc"


@pytest.mark.parametrize("query", [None, "verbose=false", "verbose=1", "verbose=TRUE",
                                   "verbose=True", "verbose=", "verbose", "verbose=yes"])
def test_replace_not_verbose(fs, d, query):
    p = write(f"{d}/a.txt", "foo foo")
    r = replace(fs, {p: {"old": "foo", "new": "x"}}, verbose=False, query=query)
    assert_empty_ok(r)
    assert read(p) == b"x x"


def test_replace_empty_map(fs):
    assert_empty_ok(replace(fs, {}, verbose=False))
    assert json_ok(replace(fs, {})) == {}


def test_replace_no_match_not_rewritten(fs, d):
    p = write(f"{d}/a.txt", "hello", 0o640)
    old_ns = 1_600_000_000_000_000_000
    os.utime(p, ns=(old_ns, old_ns))
    before = os.stat(p)
    time.sleep(0.01)
    assert json_ok(replace(fs, {p: {"old": "xyz", "new": "q"}})) == {p: {"replacedCount": 0}}
    after = os.stat(p)
    assert after.st_mtime_ns == old_ns, "a file without a match was rewritten"
    assert after.st_ctime_ns == before.st_ctime_ns, "a file without a match was touched"
    assert after.st_ino == before.st_ino
    assert os.listdir(d) == ["a.txt"]


def test_replace_keeps_mode_and_owner(fs, d):
    p = write(f"{d}/a.txt", "hello", 0o640)
    os.chown(p, 65534, 65534)
    assert json_ok(replace(fs, {p: {"old": "ll", "new": "LL"}})) == {p: {"replacedCount": 1}}
    st = os.stat(p)
    assert read(p) == b"heLLo"
    assert st.st_mode & 0o7777 == 0o640
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert sorted(os.listdir(d)) == ["a.txt"], "temporary file left behind"


def test_replace_follows_symlink(fs, d):
    target = write(f"{d}/target.txt", "abc")
    ln = f"{d}/link"
    os.symlink("target.txt", ln)
    assert json_ok(replace(fs, {ln: {"old": "b", "new": "B"}})) == {ln: {"replacedCount": 1}}
    assert os.path.islink(ln) and os.readlink(ln) == "target.txt"
    assert read(target) == b"aBc"


def test_replace_binary_content(fs, d):
    data = bytes(range(256)) * 4
    p = write(f"{d}/bin", data)
    body = json_ok(replace(fs, {p: {"old": "ABC", "new": "xyz"}}))
    assert body == {p: {"replacedCount": 4}}
    assert read(p) == data.replace(b"ABC", b"xyz")


def test_replace_missing_file(fs, d):
    good = write(f"{d}/good.txt", "foo")
    r = replace(fs, {good: {"old": "foo", "new": "bar"}, f"{d}/nope": {"old": "a", "new": "b"}})
    assert_error(r, 404, "FILE_NOT_FOUND")
    assert read(good) == b"foo", "a file was changed before the missing one was noticed"


@pytest.mark.parametrize("entry", [{"old": "", "new": "x"}, {"new": "x"}, {"old": None, "new": "x"}])
def test_replace_empty_old_touches_nothing(fs, d, entry):
    good = write(f"{d}/good.txt", "foo")
    bad = write(f"{d}/bad.txt", "foo")
    old_ns = 1_600_000_000_000_000_000
    for p in (good, bad):
        os.utime(p, ns=(old_ns, old_ns))
    r = replace(fs, {good: {"old": "foo", "new": "bar"}, bad: entry})
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    for p in (good, bad):
        assert read(p) == b"foo"
        assert os.stat(p).st_mtime_ns == old_ns


def test_replace_directory(fs, d):
    good = write(f"{d}/good.txt", "foo")
    os.mkdir(f"{d}/dir")
    r = replace(fs, {good: {"old": "foo", "new": "bar"}, f"{d}/dir": {"old": "a", "new": "b"}})
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert read(good) == b"foo"


def test_replace_invalid_path(fs, d):
    good = write(f"{d}/good.txt", "foo")
    r = replace(fs, {good: {"old": "foo", "new": "bar"},
                     f"/tmp/${UNDEFINED_VAR}/x": {"old": "a", "new": "b"}})
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert read(good) == b"foo"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'"x"', b"7", b'{"/tmp/x":',
                                 b'{"/tmp/x": "foo"}', b'{"/tmp/x": {"old": 1, "new": "b"}}',
                                 b'{"/tmp/x": {"old": "a", "new": 2}}'])
def test_replace_bad_body(fs, raw):
    r = fs.post("/files/replace?verbose=true", data=raw,
                headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


def test_replace_on_fifo_does_not_block_the_daemon(d, fs_cwd):
    """A FIFO is not a regular file: replace must refuse it promptly (a 4xx JSON error), not
    block the daemon in open() until some writer turns up. Private stack: a wedged daemon
    must not take the module's stack with it."""
    import requests
    from files_common import start_stack
    fifo = f"{d}/fifo"
    os.mkfifo(fifo)
    other = write(f"{d}/other.txt", "x")
    s = start_stack(fs_cwd)
    try:
        try:
            r = s.post("/files/replace?verbose=true", json={fifo: {"old": "a", "new": "b"}},
                       timeout=5)
        except requests.exceptions.Timeout:
            r = None
        try:
            info = s.get(f"/files/info?path={other}", timeout=5).status_code
        except requests.exceptions.Timeout:
            info = "timeout"
    finally:
        # release a daemon stuck opening the FIFO for reading, then stop the stack
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
        s.stop()
    assert r is not None, "POST /files/replace on a FIFO did not answer within 5 s"
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers.get("Content-Type", "").startswith("application/json")
    assert isinstance(r.json().get("code"), str)
    assert info == 200, f"the daemon stopped answering: info -> {info}"
