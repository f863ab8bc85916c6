"""File routes: authentication (nothing happens without the token), wrong methods (405),
and HTTP plumbing around uploads (keep-alive after an early error, Expect: 100-continue,
slow clients, concurrent writers)."""
import os
import socket
import threading
import time

import pytest
import requests

from execd_http import AUTH_ERROR, assert_error, is_json
from files_common import (  # noqa: F401 -- fixtures
    assert_empty_ok, d, fs, fs_cwd, multipart, pairs, q, read, upload_one, write)

ROUTES = [
    ("GET", "/files/info?path=/tmp"),
    ("DELETE", "/files?path=/tmp/x"),
    ("POST", "/files/permissions"),
    ("POST", "/files/mv"),
    ("GET", "/files/search?path=/tmp"),
    ("POST", "/files/replace"),
    ("POST", "/files/upload"),
    ("GET", "/files/download?path=/etc/hostname"),
    ("GET", "/directories/list?path=/tmp"),
    ("POST", "/directories"),
    ("DELETE", "/directories?path=/tmp/x"),
]


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_file_routes_need_token(fs, method, path):
    r = fs.request(method, path, auth=False, headers={"X-EXECD-ACCESS-TOKEN": "nope"})
    assert r.status_code == 401, (r.status_code, r.text)
    assert is_json(r) and r.json() == AUTH_ERROR


def test_unauthorized_writes_nothing(fs, d):
    victim = write(f"{d}/victim", b"keep")
    os.mkdir(f"{d}/dir")
    body, ctype = multipart(pairs(({"path": f"{d}/new"}, b"x"), ({"path": victim}, b"gone")))
    bad = {"X-EXECD-ACCESS-TOKEN": fs.bridge.token.upper()}
    assert fs.bridge.token.upper() != fs.bridge.token
    calls = [
        ("POST", "/files/upload", dict(data=body, headers=dict(bad, **{"Content-Type": ctype}))),
        ("DELETE", f"/files?path={q(victim)}", dict(headers=bad)),
        ("DELETE", f"/directories?path={q(d)}/dir", dict(headers=bad)),
        ("POST", "/directories", dict(json={f"{d}/made": {"mode": 755}}, headers=bad)),
        ("POST", "/files/mv", dict(json=[{"src": victim, "dest": f"{d}/moved"}], headers=bad)),
        ("POST", "/files/permissions", dict(json={victim: {"mode": 600}}, headers=bad)),
        ("POST", "/files/replace", dict(json={victim: {"old": "keep", "new": "x"}},
                                        headers=bad)),
    ]
    for method, path, kw in calls:
        r = fs.request(method, path, auth=False, **kw)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
    assert sorted(os.listdir(d)) == ["dir", "victim"]
    assert read(victim) == b"keep"
    assert os.stat(victim).st_mode & 0o777 == 0o644


@pytest.mark.parametrize("method,path,allowed", [
    ("POST", "/files/info", {"GET"}),
    ("PUT", "/files/upload", {"POST"}),
    ("GET", "/files/upload", {"POST"}),
    ("POST", "/files/download", {"GET"}),
    ("GET", "/files", {"DELETE"}),
    ("GET", "/files/mv", {"POST"}),
    ("DELETE", "/files/search", {"GET"}),
    ("GET", "/files/replace", {"POST"}),
    ("GET", "/files/permissions", {"POST"}),
    ("PUT", "/directories", {"POST", "DELETE"}),
    ("POST", "/directories/list", {"GET"}),
])
def test_file_routes_wrong_method(fs, method, path, allowed):
    r = fs.request(method, path)
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    assert allowed <= allow, r.headers.get("Allow")


# ------------------------------------------------------------------------------ plumbing
def test_keep_alive_after_early_upload_error(fs, d):
    """A 400 decided on the first part must not leave the rest of the body on the connection
    to be read as the next request."""
    with requests.Session() as sess:
        sess.headers.update(fs.headers)
        body, ctype = multipart(pairs(({"path": f"{d}/a", "mode": 999}, os.urandom(3 << 20)),
                                      ({"path": f"{d}/b"}, b"b")))
        r = sess.post(fs.url + "/files/upload", data=body, headers={"Content-Type": ctype},
                      timeout=30)
        assert_error(r, 400, "INVALID_FILE_METADATA")
        for i in range(3):
            p = write(f"{d}/probe", b"probe")
            r = sess.get(fs.url + f"/files/info?path={q(p)}", timeout=10)
            assert r.status_code == 200, (r.status_code, r.text[:300])
            assert list(r.json()) == [p]
            body, ctype = multipart(pairs(({"path": f"{d}/ok"}, f"ok {i}".encode())))
            r = sess.post(fs.url + "/files/upload", data=body, headers={"Content-Type": ctype},
                          timeout=10)
            assert_empty_ok(r)
            assert read(f"{d}/ok") == f"ok {i}".encode()
    assert sorted(os.listdir(d)) == ["ok", "probe"]


def test_keep_alive_sequence_of_uploads(fs, d):
    with requests.Session() as sess:
        sess.headers.update(fs.headers)
        for i in range(20):
            body, ctype = multipart(pairs(({"path": f"{d}/f{i}"}, os.urandom(i * 1000))))
            r = sess.post(fs.url + "/files/upload", data=body, headers={"Content-Type": ctype},
                          timeout=10)
            assert_empty_ok(r)
            r = sess.get(fs.url + f"/files/download?path={q(d)}/f{i}", timeout=10)
            assert r.status_code == 200 and len(r.content) == i * 1000
    assert len(os.listdir(d)) == 20


def test_expect_100_continue(fs, d):
    p = f"{d}/continued"
    body, ctype = multipart(pairs(({"path": p}, b"after continue")))
    s = socket.create_connection(("127.0.0.1", fs.bridge.port), timeout=10)
    try:
        s.sendall((f"POST /files/upload HTTP/1.1\r\nHost: x\r\n"
                   f"X-EXECD-ACCESS-TOKEN: {fs.bridge.token}\r\nContent-Type: {ctype}\r\n"
                   f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"
                   f"Connection: close\r\n\r\n").encode())
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 100"), first
        s.sendall(body)
        resp = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
    finally:
        s.close()
    assert b"HTTP/1.1 200" in (first + resp), first + resp
    assert read(p) == b"after continue"


def test_slow_upload(fs, d):
    p = f"{d}/slow"
    data = os.urandom(64 * 1024)
    body, ctype = multipart(pairs(({"path": p}, data)))

    def gen():
        step = len(body) // 10 + 1
        for i in range(0, len(body), step):
            yield body[i:i + step]
            time.sleep(0.2)

    r = fs.post("/files/upload", data=gen(), headers={"Content-Type": ctype}, timeout=30)
    assert_empty_ok(r)
    assert read(p) == data


def test_concurrent_uploads_same_path_never_mixed(fs, d):
    p = f"{d}/contested"
    size = 4 << 20
    contents = [bytes([65 + i]) * size for i in range(4)]
    results = []

    def worker(c):
        try:
            r = upload_one(fs, p, c, timeout=60)
            results.append(r.status_code)
        except Exception as e:  # pragma: no cover -- reported below
            results.append(repr(e))

    threads = [threading.Thread(target=worker, args=(c,)) for c in contents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 4, results
    final = read(p)
    assert final in contents, "uploads to the same path were interleaved"
    assert os.listdir(d) == ["contested"]


def test_concurrent_download_during_replace(fs, d):
    """A reader sees the old or the new content, never a mix or a truncated file."""
    p = f"{d}/file"
    size = 4 << 20
    old, new = b"o" * size, b"n" * size
    write(p, old)
    seen = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            r = fs.get(f"/files/download?path={q(p)}", timeout=30)
            seen.append(r.content)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(4):
            assert_empty_ok(upload_one(fs, p, new if i % 2 == 0 else old, timeout=60))
    finally:
        stop.set()
        t.join(60)
    assert seen
    for c in seen:
        assert c in (old, new), (len(c), c[:1], c[-1:])
