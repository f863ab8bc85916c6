"""POST /files/upload (multipart/form-data): pairs, metadata, errors, atomicity, disconnects."""
import json
import os
import socket
import time

import pytest

from execd_http import assert_error
from files_common import (  # noqa: F401 -- fixtures
    SUBST_VALUE, SUBST_VAR, UNDEFINED_VAR, assert_empty_ok, closing, current_umask,
    d, file_part, fs, fs_cwd, json_ok, metadata_part, multipart, new_boundary, pairs, part_head,
    q, read, upload, upload_one, write)

PY_SDK_META = '{{"path":"{}","owner":null,"group":null,"mode":null}}'


def default_mode():
    return 0o777 & ~current_umask()


def test_upload_one(fs, d):
    p = f"{d}/a.txt"
    assert_empty_ok(upload_one(fs, p, b"hello"))
    assert read(p) == b"hello"
    st = os.stat(p)
    assert st.st_mode & 0o7777 == default_mode()
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert os.listdir(d) == ["a.txt"]


def test_upload_python_sdk_metadata_with_nulls(fs, d):
    p = f"{d}/py.txt"
    meta = PY_SDK_META.format(p)
    assert json.loads(meta) == {"path": p, "owner": None, "group": None, "mode": None}
    r = upload(fs, [("metadata", meta), ("file", b"from python", p)])
    assert_empty_ok(r)
    assert read(p) == b"from python"
    assert os.stat(p).st_mode & 0o7777 == default_mode()


def test_upload_two_pairs_interleaved(fs, d):
    a, b = f"{d}/a.txt", f"{d}/sub/b.bin"
    data_b = bytes(range(256)) * 100
    r = upload(fs, [("metadata", PY_SDK_META.format(a)), ("file", b"first", a),
                    ("metadata", {"path": b, "mode": 600}), ("file", data_b, b)])
    assert_empty_ok(r)
    assert read(a) == b"first"
    assert read(b) == data_b
    assert os.stat(b).st_mode & 0o777 == 0o600


def test_upload_pairs_grouped(fs, d):
    """The i-th metadata pairs with the i-th file even when all metadata parts come first."""
    paths = [f"{d}/{i}.txt" for i in range(3)]
    parts = [("metadata", {"path": p}) for p in paths]
    parts += [("file", f"content {i}".encode()) for i in range(3)]
    assert_empty_ok(upload(fs, parts))
    for i, p in enumerate(paths):
        assert read(p) == f"content {i}".encode()


def test_upload_many_pairs(fs, d):
    items = [({"path": f"{d}/many/{i:03d}"}, os.urandom(i * 37)) for i in range(50)]
    assert_empty_ok(upload(fs, pairs(*items)))
    for meta, content in items:
        assert read(meta["path"]) == content


@pytest.mark.parametrize("mode", [600, 644, 755, 700, 640, 444, 7])
def test_upload_mode_from_metadata(fs, d, mode):
    p = f"{d}/m"
    assert_empty_ok(upload_one(fs, p, b"x", mode=mode))
    assert os.stat(p).st_mode & 0o777 == int(str(mode), 8)
    assert json_ok(fs.get(f"/files/info?path={q(p)}"))[p]["mode"] == mode


def test_upload_owner_group_from_metadata(fs, d):
    p = f"{d}/o"
    assert_empty_ok(upload_one(fs, p, b"x", owner="nobody", group="nogroup", mode=640))
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o640)


def test_upload_parents_created(fs, d):
    p = f"{d}/x/y/z/deep.txt"
    assert_empty_ok(upload_one(fs, p, b"deep"))
    assert read(p) == b"deep"
    for sub in ("x", "x/y", "x/y/z"):
        assert os.path.isdir(f"{d}/{sub}")


def test_upload_replace_existing_keeps_mode_and_owner(fs, d):
    p = write(f"{d}/e.txt", b"old content that is longer", 0o640)
    os.chown(p, 65534, 65534)
    assert_empty_ok(upload_one(fs, p, b"new"))
    assert read(p) == b"new"
    st = os.stat(p)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 65534, 65534)
    assert os.listdir(d) == ["e.txt"]


def test_upload_replace_existing_with_mode(fs, d):
    p = write(f"{d}/e.txt", b"old", 0o640)
    assert_empty_ok(upload_one(fs, p, b"new", mode=604))
    assert read(p) == b"new"
    assert os.stat(p).st_mode & 0o777 == 0o604


def test_upload_empty_file(fs, d):
    p = f"{d}/empty"
    assert_empty_ok(upload_one(fs, p, b""))
    assert read(p) == b""
    p2 = write(f"{d}/was-full", b"full")
    assert_empty_ok(upload_one(fs, p2, b""))
    assert read(p2) == b""


def test_upload_boundary_like_content(fs, d):
    p = f"{d}/tricky"
    b = new_boundary()
    data = (b"\r\n--" + b.encode()[:-1] + b"\r\n--\r\n\r\n" + b"--" + b"\r\n" * 3 + b"\x00\xff")
    body = metadata_part(b, {"path": p}) + file_part(b, data) + closing(b)
    r = fs.post("/files/upload", data=body,
                headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    assert_empty_ok(r)
    assert read(p) == data


def test_upload_file_part_name_and_type_ignored(fs, d):
    p = f"{d}/ignored.txt"
    b = new_boundary()
    body = (metadata_part(b, {"path": p})
            + part_head(b, "file", "测试 other name.png", "image/png") + b"DATA\r\n" + closing(b))
    r = fs.post("/files/upload", data=body,
                headers={"Content-Type": f'multipart/form-data; boundary="{b}"'})
    assert_empty_ok(r)
    assert read(p) == b"DATA"
    assert os.listdir(d) == ["ignored.txt"]


def test_upload_metadata_without_content_type(fs, d):
    p = f"{d}/plain.txt"
    b = new_boundary()
    body = (part_head(b, "metadata", "metadata") + json.dumps({"path": p}).encode() + b"\r\n"
            + part_head(b, "file", "blob") + b"plain\r\n" + closing(b))
    r = fs.post("/files/upload", data=body,
                headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    assert_empty_ok(r)
    assert read(p) == b"plain"


def test_upload_chunked_request(fs, d):
    p = f"{d}/chunked.bin"
    data = os.urandom(300_000)
    body, ctype = multipart(pairs(({"path": p}, data)))

    def gen():
        for i in range(0, len(body), 7777):
            yield body[i:i + 7777]

    r = fs.post("/files/upload", data=gen(), headers={"Content-Type": ctype})
    assert_empty_ok(r)
    assert read(p) == data


def test_upload_non_ascii_and_download(fs, d):
    p = f"{d}/目录/测试文件.txt"
    assert_empty_ok(upload_one(fs, p, "你好".encode()))
    assert read(p) == "你好".encode()
    r = fs.get(f"/files/download?path={q(p)}")
    assert r.status_code == 200
    assert r.content == "你好".encode()
    pct = "%E6%B5%8B%E8%AF%95%E6%96%87%E4%BB%B6.txt"
    assert r.headers["Content-Disposition"] == f"attachment; filename=\"{pct}\"; filename*=UTF-8''{pct}"


def test_upload_name_with_spaces_and_download(fs, d):
    p = f"{d}/a b.txt"
    assert_empty_ok(upload_one(fs, p, b"ab"))
    r = fs.get(f"/files/download?path={q(p)}")
    assert r.status_code == 200 and r.content == b"ab"
    assert r.headers["Content-Disposition"] == 'attachment; filename="a b.txt"'


def test_upload_env_expansion(fs, d):
    assert_empty_ok(upload_one(fs, f"{d}/${SUBST_VAR}/${{{SUBST_VAR}}}.txt", b"v"))
    assert read(f"{d}/{SUBST_VALUE}/{SUBST_VALUE}.txt") == b"v"


def test_upload_relative_path(fs, fs_cwd):
    name = "upload-rel-" + os.urandom(4).hex()
    assert_empty_ok(upload_one(fs, f"{name}/r.txt", b"rel"))
    assert read(f"{fs_cwd}/{name}/r.txt") == b"rel"


# ------------------------------------------------------------------------------ errors
def assert_nothing_written(d, expected=()):
    assert sorted(os.listdir(d)) == sorted(expected), os.listdir(d)


def test_upload_not_multipart(fs, d):
    r = fs.post("/files/upload", json={"path": f"{d}/x"})
    assert_error(r, 400, "INVALID_FILE")
    r = fs.post("/files/upload", data=b"hello", headers={"Content-Type": "text/plain"})
    assert_error(r, 400, "INVALID_FILE")
    r = fs.post("/files/upload")
    assert_error(r, 400, "INVALID_FILE")
    assert_nothing_written(d)


def test_upload_multipart_without_boundary(fs, d):
    body, _ = multipart(pairs(({"path": f"{d}/x"}, b"x")))
    r = fs.post("/files/upload", data=body, headers={"Content-Type": "multipart/form-data"})
    assert_error(r, 400, "INVALID_FILE")
    assert_nothing_written(d)


def test_upload_unparsable_multipart(fs, d):
    p = f"{d}/x"
    b = new_boundary()
    good = metadata_part(b, {"path": p}) + file_part(b, b"x")
    cases = [
        b"garbage without any boundary",
        good,                                        # no closing delimiter
        good + f"--{b}\r\nContent-Disposition: form-data; name=\"file\"".encode(),  # cut header
        good[:-20],                                  # cut inside the file part
    ]
    for body in cases:
        r = fs.post("/files/upload", data=body,
                    headers={"Content-Type": f"multipart/form-data; boundary={b}"})
        assert_error(r, 400, "INVALID_FILE")
        assert_nothing_written(d)


def test_upload_wrong_boundary(fs, d):
    body, _ = multipart(pairs(({"path": f"{d}/x"}, b"x")))
    r = fs.post("/files/upload", data=body,
                headers={"Content-Type": "multipart/form-data; boundary=not-the-boundary"})
    assert_error(r, 400, "INVALID_FILE")
    assert_nothing_written(d)


def test_upload_no_metadata(fs, d):
    r = upload(fs, [("file", b"x")])
    assert_error(r, 400, "INVALID_FILE_METADATA")
    assert_nothing_written(d)


def test_upload_no_file(fs, d):
    r = upload(fs, [("metadata", {"path": f"{d}/x"})])
    assert_error(r, 400, "INVALID_FILE_CONTENT")
    assert_nothing_written(d)


def test_upload_count_mismatch_more_metadata(fs, d):
    a, b = f"{d}/a", f"{d}/b"
    r = upload(fs, [("metadata", {"path": a}), ("file", b"A"), ("metadata", {"path": b})])
    assert_error(r, 400, "INVALID_FILE", message="metadata and file count mismatch: 2 vs 1")
    assert not os.path.exists(a), "the first pair was written despite the mismatch"
    assert_nothing_written(d)


def test_upload_count_mismatch_more_files(fs, d):
    a = f"{d}/a"
    r = upload(fs, [("metadata", {"path": a}), ("file", b"A"), ("file", b"B"), ("file", b"C")])
    assert_error(r, 400, "INVALID_FILE", message="metadata and file count mismatch: 1 vs 3")
    assert not os.path.exists(a)


def test_upload_count_mismatch_existing_target_untouched(fs, d):
    a = write(f"{d}/a", b"old")
    r = upload(fs, [("metadata", {"path": a}), ("file", b"new"), ("metadata", {"path": a})])
    assert_error(r, 400, "INVALID_FILE")
    assert read(a) == b"old"
    assert_nothing_written(d, ["a"])


BAD_METADATA = {
    "not-json": b"not json",
    "truncated": b'{"path":"/tmp/x"',
    "array": b'["/tmp/x"]',
    "string": b'"/tmp/x"',
    "null": b"null",
    "empty-body": b"",
    "empty-object": b"{}",
    "path-empty": b'{"path":""}',
    "path-null": b'{"path":null}',
    "path-number": b'{"path":5}',
    "mode-8": b'{"path":"P","mode":758}',
    "mode-9": b'{"path":"P","mode":9}',
    "mode-negative": b'{"path":"P","mode":-1}',
    "mode-float": b'{"path":"P","mode":6.5}',
    "mode-string": b'{"path":"P","mode":"644"}',
    "mode-too-big": b'{"path":"P","mode":17777}',
    "owner-number": b'{"path":"P","owner":0}',
    "group-array": b'{"path":"P","group":["root"]}',
    "owner-unknown": b'{"path":"P","owner":"no-such-user-execd"}',
    "group-unknown": b'{"path":"P","group":"no-such-group-execd"}',
}


@pytest.mark.parametrize("name", list(BAD_METADATA))
def test_upload_bad_metadata_writes_nothing(fs, d, name):
    first = f"{d}/first"
    target = f"{d}/second"
    meta = BAD_METADATA[name].replace(b'"P"', json.dumps(target).encode())
    r = upload(fs, pairs(({"path": first}, b"first"), (meta, b"second")))
    assert_error(r, 400, "INVALID_FILE_METADATA")
    assert_nothing_written(d)


def test_upload_bad_first_metadata_existing_targets(fs, d):
    a = write(f"{d}/a", b"old a")
    b = write(f"{d}/b", b"old b")
    r = upload(fs, pairs(({"path": a, "mode": 888}, b"new a"), ({"path": b}, b"new b")))
    assert_error(r, 400, "INVALID_FILE_METADATA")
    assert read(a) == b"old a" and read(b) == b"old b"
    assert_nothing_written(d, ["a", "b"])


def test_upload_undefined_variable_writes_nothing(fs, d):
    r = upload(fs, pairs(({"path": f"{d}/first"}, b"1"),
                         ({"path": f"{d}/${UNDEFINED_VAR}/x"}, b"2")))
    assert r.status_code == 400, (r.status_code, r.text)
    # a path validation error (INVALID_REQUEST_BODY) or bad metadata (INVALID_FILE_METADATA)
    body = r.json()
    assert body.get("code") in ("INVALID_FILE_METADATA", "INVALID_REQUEST_BODY"), body
    assert isinstance(body.get("message"), str) and body["message"]
    assert_nothing_written(d)


# ------------------------------------------------------------------------------ disconnects
def raw_partial_upload(fs, head_parts, total_claimed, chunked=False, extra=b""):
    """Send headers + a partial multipart body over a raw socket, then close it."""
    b = new_boundary()
    body = b"".join(p(b) for p in head_parts) + extra
    s = socket.create_connection(("127.0.0.1", fs.bridge.port), timeout=10)
    try:
        hdr = (f"POST /files/upload HTTP/1.1\r\nHost: 127.0.0.1:{fs.bridge.port}\r\n"
               f"X-EXECD-ACCESS-TOKEN: {fs.bridge.token}\r\n"
               f"Content-Type: multipart/form-data; boundary={b}\r\n")
        if chunked:
            hdr += "Transfer-Encoding: chunked\r\n\r\n"
            payload = f"{len(body):x}\r\n".encode() + body + b"\r\n"
        else:
            hdr += f"Content-Length: {total_claimed}\r\n\r\n"
            payload = body
        s.sendall(hdr.encode() + payload)
        time.sleep(0.3)  # let the bridge start streaming the part into the daemon
    finally:
        s.close()


def wait_unchanged(d, names, check, seconds=3.0):
    """Poll for `seconds`: the directory must settle to exactly `names` and check() hold."""
    deadline = time.monotonic() + seconds
    while True:
        ok = sorted(os.listdir(d)) == sorted(names) and check()
        if time.monotonic() >= deadline:
            assert sorted(os.listdir(d)) == sorted(names), os.listdir(d)
            assert check()
            return
        time.sleep(0.1 if ok else 0.05)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_disconnect_existing_file_intact(fs, d, chunked):
    p = write(f"{d}/existing.txt", b"old content", 0o644)
    ino = os.stat(p).st_ino

    def meta(b):
        return metadata_part(b, {"path": p})

    def fhead(b):
        return part_head(b, "file", "blob", "application/octet-stream") + os.urandom(200_000)

    raw_partial_upload(fs, [meta, fhead], 50_000_000, chunked=chunked)
    wait_unchanged(d, ["existing.txt"],
                   lambda: read(p) == b"old content" and os.stat(p).st_ino == ino)
    # the bridge still works
    assert fs.get("/ping").status_code == 200
    assert_empty_ok(upload_one(fs, p, b"after"))
    assert read(p) == b"after"


def test_upload_disconnect_new_file_not_created(fs, d):
    p = f"{d}/sub/new.txt"

    def meta(b):
        return metadata_part(b, {"path": p})

    def fhead(b):
        return part_head(b, "file", "blob") + b"x" * 100_000

    raw_partial_upload(fs, [meta, fhead], 10_000_000)

    def non_dirs():
        return [os.path.join(r, f) for r, _dirs, files in os.walk(d) for f in files]

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        time.sleep(0.1)
    # the parent directory may have been created; no file, no temporary file
    assert non_dirs() == [], non_dirs()
    assert not os.path.lexists(p)


def test_upload_disconnect_after_complete_first_pair(fs, d):
    """Files are committed only after the whole body was read: a complete first pair followed
    by a cut second pair leaves both targets untouched."""
    a = write(f"{d}/a", b"old a")
    bpath = write(f"{d}/b", b"old b")

    def first(b):
        return metadata_part(b, {"path": a}) + file_part(b, b"new a" * 1000)

    def second(b):
        return metadata_part(b, {"path": bpath}) + part_head(b, "file", "blob") + b"new b" * 1000

    raw_partial_upload(fs, [first, second], 5_000_000)
    wait_unchanged(d, ["a", "b"], lambda: read(a) == b"old a" and read(bpath) == b"old b")


def test_upload_disconnect_many_leaves_no_temp(fs, d):
    p = write(f"{d}/t", b"keep")

    def meta(b):
        return metadata_part(b, {"path": p})

    def fhead(b):
        return part_head(b, "file", "blob") + os.urandom(64_000)

    for _ in range(10):
        raw_partial_upload(fs, [meta, fhead], 1_000_000)
    wait_unchanged(d, ["t"], lambda: read(p) == b"keep")


# ------------------------------------------------------------------------------ more forms
def test_upload_file_part_before_metadata(fs, d):
    p = f"{d}/reversed"
    assert_empty_ok(upload(fs, [("file", b"rev"), ("metadata", {"path": p})]))
    assert read(p) == b"rev"


def test_upload_other_fields_ignored(fs, d):
    p = f"{d}/x"
    b = new_boundary()
    body = (part_head(b, "comment") + b"just a field\r\n"
            + part_head(b, "extra", "extra.bin") + b"ignored\r\n"
            + metadata_part(b, {"path": p}) + file_part(b, b"X") + closing(b))
    r = fs.post("/files/upload", data=body,
                headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    assert_empty_ok(r)
    assert read(p) == b"X"
    assert os.listdir(d) == ["x"]


def test_upload_lowercase_part_headers_and_preamble(fs, d):
    p = f"{d}/lower"
    b = new_boundary()
    body = (b"preamble to be ignored\r\n"
            + f"--{b}\r\ncontent-disposition: form-data; name=\"metadata\"; filename=\"metadata\""
              f"\r\ncontent-type: application/json\r\n\r\n".encode()
            + json.dumps({"path": p}).encode() + b"\r\n"
            + f"--{b}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
              .encode() + b"low\r\n" + closing(b) + b"epilogue")
    r = fs.post("/files/upload", data=body,
                headers={"Content-Type": f"multipart/form-data; charset=utf-8; boundary={b}"})
    assert_empty_ok(r)
    assert read(p) == b"low"


def test_upload_with_requests_files_api(fs, d):
    """requests' own multipart encoder, two pairs, as an SDK built on it would send them."""
    a, b = f"{d}/r1.txt", f"{d}/r2.txt"
    files = [
        ("metadata", ("metadata", PY_SDK_META.format(a), "application/json")),
        ("file", (a, b"one", "application/octet-stream")),
        ("metadata", ("metadata", json.dumps({"path": b, "mode": 640}), "application/json")),
        ("file", (b, b"two", "application/octet-stream")),
    ]
    r = fs.post("/files/upload", files=files)
    assert_empty_ok(r)
    assert read(a) == b"one" and read(b) == b"two"
    assert os.stat(b).st_mode & 0o777 == 0o640


def test_upload_parent_is_a_file(fs, d):
    write(f"{d}/file", b"f")
    r = upload_one(fs, f"{d}/file/child", b"x")
    assert 400 <= r.status_code < 600, r.status_code
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body.get("code"), str) and isinstance(body.get("message"), str), body
    assert read(f"{d}/file") == b"f"
    assert os.listdir(d) == ["file"]


def test_upload_onto_directory(fs, d):
    os.mkdir(f"{d}/dir")
    write(f"{d}/dir/inner", b"i")
    r = upload(fs, pairs(({"path": f"{d}/first"}, b"1"), ({"path": f"{d}/dir"}, b"x")))
    assert 400 <= r.status_code < 600, r.status_code
    body = r.json()
    assert isinstance(body.get("code"), str) and isinstance(body.get("message"), str), body
    assert os.path.isdir(f"{d}/dir") and read(f"{d}/dir/inner") == b"i"
    assert sorted(os.listdir(d)) == ["dir"], "the first pair was written despite the error"


# ------------------------------------------------------------------------------ leaks
# The daemon allows 1024 uncommitted writes per caller (the bridge is one caller): failed and
# abandoned uploads must give theirs back, or uploads stop working after ~1024 failures.
LEAK_ROUNDS = 1100


def test_upload_failures_do_not_leak_writes(fs, d):
    import requests
    target = f"{d}/leak"
    b = new_boundary()
    # a complete pair (streamed into the daemon) followed by a lone metadata part: mismatch
    body = (metadata_part(b, {"path": target}) + file_part(b, b"z" * 20000)
            + metadata_part(b, {"path": f"{d}/other"}) + closing(b))
    with requests.Session() as sess:
        sess.headers.update(fs.headers)
        sess.headers["Content-Type"] = f"multipart/form-data; boundary={b}"
        for i in range(LEAK_ROUNDS):
            r = sess.post(fs.url + "/files/upload", data=body, timeout=10)
            assert r.status_code == 400, (i, r.status_code, r.text[:300])
    assert os.listdir(d) == []
    assert_empty_ok(upload_one(fs, target, b"still works"))
    assert read(target) == b"still works"


def test_upload_disconnects_do_not_leak_writes(fs, d):
    target = write(f"{d}/leak", b"old")
    b = new_boundary()
    head = (f"POST /files/upload HTTP/1.1\r\nHost: x\r\n"
            f"X-EXECD-ACCESS-TOKEN: {fs.bridge.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={b}\r\n"
            f"Content-Length: 10000000\r\n\r\n").encode()
    partial = head + metadata_part(b, {"path": target}) + part_head(b, "file", "f") + b"y" * 65536
    for _ in range(LEAK_ROUNDS):
        s = socket.create_connection(("127.0.0.1", fs.bridge.port), timeout=10)
        s.sendall(partial)
        s.close()
    deadline = time.monotonic() + 20
    while True:
        r = upload_one(fs, target, b"new")
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert_empty_ok(r)
    assert read(target) == b"new"
    assert os.listdir(d) == ["leak"]


def test_upload_all_files_before_metadata_large(fs, d):
    """File parts ahead of their metadata (spooled by the bridge) still pair by index."""
    a, b = f"{d}/first.bin", f"{d}/second.bin"
    da, db = os.urandom(5 << 20), os.urandom(3 << 20)
    assert_empty_ok(upload(fs, [("file", da), ("file", db), ("metadata", {"path": a}),
                                ("metadata", {"path": b, "mode": 600})]))
    assert read(a) == da and read(b) == db
    assert os.stat(b).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(d)) == ["first.bin", "second.bin"]


@pytest.mark.parametrize("boundary", [
    "x" * 70,
    "a'()+_,-./:=?z",
    "simple",
    "----WebKitFormBoundary7MA4YWxkTrZu0gW",
])
def test_upload_boundary_forms(fs, d, boundary):
    p = f"{d}/b.txt"
    body = (metadata_part(boundary, {"path": p}) + file_part(boundary, b"boundary ok")
            + closing(boundary))
    ctype = f'multipart/form-data; boundary="{boundary}"'
    assert_empty_ok(fs.post("/files/upload", data=body, headers={"Content-Type": ctype}))
    assert read(p) == b"boundary ok"


def test_upload_delimiter_transport_padding(fs, d):
    p = f"{d}/pad.txt"
    b = new_boundary()
    body = (metadata_part(b, {"path": p}).replace(f"--{b}\r\n".encode(), f"--{b} \t \r\n".encode())
            + file_part(b, b"padded").replace(f"--{b}\r\n".encode(), f"--{b}  \r\n".encode())
            + f"--{b}--  \r\n".encode())
    r = fs.post("/files/upload", data=body,
                headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    assert_empty_ok(r)
    assert read(p) == b"padded"


def test_upload_content_with_boundary_prefix(fs, d):
    p = f"{d}/prefix.bin"
    b = new_boundary()
    data = b"start\r\n--" + b.encode() + b"X not a delimiter\r\n--" + b.encode() + b"-\r\nend"
    body = metadata_part(b, {"path": p}) + file_part(b, data) + closing(b)
    r = fs.post("/files/upload", data=body,
                headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    assert_empty_ok(r)
    assert read(p) == data


def test_upload_metadata_unknown_fields_ignored(fs, d):
    p = f"{d}/u.txt"
    r = upload(fs, pairs(({"path": p, "size": 3, "extra": {"a": [1]}, "mode": 640}, b"abc")))
    assert_empty_ok(r)
    assert read(p) == b"abc" and os.stat(p).st_mode & 0o777 == 0o640


def test_upload_metadata_over_64_kib_is_refused(fs, d):
    """A metadata part is read whole, so it is capped: 64 KiB of JSON, then 400."""
    p = f"{d}/big-meta.txt"
    meta = json.dumps({"path": p, "padding": "x" * (64 * 1024)})
    r = upload(fs, [("metadata", meta), ("file", b"data", p)])
    assert_error(r, 400, "INVALID_FILE_METADATA")
    assert "64 KiB" in r.json()["message"]
    assert os.listdir(d) == []
    # just under the cap is fine
    meta = json.dumps({"path": p, "padding": "x" * (60 * 1024)})
    assert_empty_ok(upload(fs, [("metadata", meta), ("file", b"data", p)]))
    assert read(p) == b"data"


def test_upload_more_than_1000_files_is_refused(fs, d):
    """At most 1000 pairs in one request (each holds two descriptors until the commit);
    beyond that nothing at all is written."""
    parts = []
    for i in range(1001):
        parts += [("metadata", {"path": f"{d}/f{i}"}), ("file", b"x")]
    r = upload(fs, parts)
    assert_error(r, 400, "INVALID_FILE")
    assert "too many files" in r.json()["message"]
    assert os.listdir(d) == []
    parts = parts[:2000]
    assert_empty_ok(upload(fs, parts))
    assert len(os.listdir(d)) == 1000
