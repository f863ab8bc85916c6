"""GET /directories/list, POST /directories, DELETE /directories."""
import os
import stat

import pytest

from execd_http import assert_error
from files_common import (  # noqa: F401 -- fixtures
    SUBST_VALUE, SUBST_VAR, UNDEFINED_VAR, ReadOnlyStack, assert_empty_ok, check_info,
    current_umask, d, fs, fs_cwd, json_ok, q, read, write)


def listing(fs, path, depth=None, raw_depth=None):
    url = f"/directories/list?path={q(path)}"
    if depth is not None:
        url += f"&depth={depth}"
    if raw_depth is not None:
        url += "&depth=" + raw_depth
    return fs.get(url)


def listed(fs, root, depth=None):
    body = json_ok(listing(fs, root, depth))
    assert isinstance(body, list), body
    for e in body:
        check_info(e, e["path"])
    return body


def rel(root, body):
    return [os.path.relpath(e["path"], root) for e in body]


def make_tree(d):
    """
    d/B.txt  d/Z/  d/Z/z1  d/_x  d/a/  d/a/b/  d/a/b/c/  d/a/b/c/deep.txt  d/a/b/f  d/a/e
    d/a-b  d/a.b  d/alink -> a  d/flink -> a/e  d/ä
    """
    for name in ["B.txt", "Z/z1", "_x", "a/b/c/deep.txt", "a/b/f", "a/e", "a-b", "a.b", "ä"]:
        write(f"{d}/{name}", name.encode())
    os.symlink(f"{d}/a", f"{d}/alink")
    os.symlink("a/e", f"{d}/flink")
    return d


DEPTH1 = ["B.txt", "Z", "_x", "a", "a-b", "a.b", "alink", "flink", "ä"]
DEPTH2 = ["B.txt", "Z", "Z/z1", "_x", "a", "a/b", "a/e", "a-b", "a.b", "alink", "flink", "ä"]
DEPTH3 = ["B.txt", "Z", "Z/z1", "_x", "a", "a/b", "a/b/c", "a/b/f", "a/e", "a-b", "a.b", "alink",
          "flink", "ä"]
DEPTH4 = ["B.txt", "Z", "Z/z1", "_x", "a", "a/b", "a/b/c", "a/b/c/deep.txt", "a/b/f", "a/e",
          "a-b", "a.b", "alink", "flink", "ä"]


# ------------------------------------------------------------------------------ list
def test_list_missing_query(fs):
    assert_error(fs.get("/directories/list"), 400, "MISSING_QUERY",
                 message="missing query parameter 'path'")
    assert_error(fs.get("/directories/list?depth=1"), 400, "MISSING_QUERY",
                 message="missing query parameter 'path'")


@pytest.mark.parametrize("depth,expected", [(None, DEPTH1), (1, DEPTH1), (2, DEPTH2),
                                            (3, DEPTH3), (4, DEPTH4), (100, DEPTH4), (0, [])])
def test_list_depth_order(fs, d, depth, expected):
    make_tree(d)
    body = listed(fs, d, depth)
    assert rel(d, body) == expected
    by = {os.path.relpath(e["path"], d): e for e in body}
    if by:
        assert by["alink"]["type"] == "symlink"
        assert by["flink"]["type"] == "symlink"
        assert by["a"]["type"] == "directory"
        assert by["B.txt"]["type"] == "file"


def test_list_byte_order(fs, d):
    names = ["b", "B", "_", "a-b", "a.b", "a", "Z", "ä", "aa", "0", "~", " lead"]
    for n in names:
        write(f"{d}/{n}", b"")
    assert rel(d, listed(fs, d)) == sorted(names, key=lambda n: n.encode())


def test_list_entries_are_full_fileinfo(fs, d):
    write(f"{d}/f", b"12345", 0o640)
    os.chown(f"{d}/f", 65534, 65534)
    os.mkdir(f"{d}/sub", 0o700)
    os.mkfifo(f"{d}/fifo")
    body = listed(fs, d)
    by = {os.path.basename(e["path"]): e for e in body}
    assert by["f"]["mode"] == 640 and by["f"]["size"] == 5
    assert (by["f"]["owner"], by["f"]["group"]) == ("nobody", "nogroup")
    assert by["sub"]["type"] == "directory" and by["sub"]["mode"] == 700
    assert by["fifo"]["type"] == "other"


def test_list_symlinks_not_traversed(fs, d):
    make_tree(d)
    os.symlink(d, f"{d}/a/loop")
    body = listed(fs, d, 50)
    paths = rel(d, body)
    assert not any(p.startswith("alink/") for p in paths), paths
    assert "a/loop" in paths and not any(p.startswith("a/loop/") for p in paths), paths


def test_list_empty_directory(fs, d):
    assert listed(fs, d) == []
    assert listed(fs, d, 5) == []


def test_list_root_spellings(fs, d, fs_cwd):
    make_tree(d)
    for root in (f"{d}/", f"{d}//", f"{d}/a/..", f"/{d}"):
        body = listed(fs, root)
        assert [e["path"] for e in body] == [f"{d}/{n}" for n in DEPTH1], root
    name = "list-rel-" + os.urandom(4).hex()
    write(f"{fs_cwd}/{name}/x", b"")
    assert [e["path"] for e in listed(fs, name)] == [f"{fs_cwd}/{name}/x"]
    os.mkdir(f"{d}/{SUBST_VALUE}")
    write(f"{d}/{SUBST_VALUE}/y", b"")
    assert [e["path"] for e in listed(fs, f"{d}/${SUBST_VAR}")] == [f"{d}/{SUBST_VALUE}/y"]


def test_list_missing(fs, d):
    assert_error(listing(fs, f"{d}/nope"), 404, "FILE_NOT_FOUND")


def test_list_root_symlink(fs, d):
    make_tree(d)
    r = listing(fs, f"{d}/alink")
    body = assert_error(r, 400, "INVALID_REQUEST_BODY")
    for leaked in ("deep.txt", "a/e", "/b"):
        assert leaked not in body["message"], body
    os.symlink(f"{d}/nowhere", f"{d}/dangling")
    assert_error(listing(fs, f"{d}/dangling"), 400, "INVALID_REQUEST_BODY")


def test_list_root_not_directory(fs, d):
    make_tree(d)
    assert_error(listing(fs, f"{d}/B.txt"), 400, "INVALID_REQUEST_BODY")
    assert_error(listing(fs, f"{d}/flink"), 400, "INVALID_REQUEST_BODY")


def test_list_invalid_path(fs):
    assert_error(listing(fs, f"/tmp/${UNDEFINED_VAR}"), 400, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize("raw,shown", [
    ("-1", "-1"), ("abc", "abc"), ("1.5", "1.5"), ("1e2", "1e2"), ("0x10", "0x10"),
    ("1%20", "1 "), ("1a", "1a"), ("%20", " "), ("-5", "-5"),
])
def test_list_invalid_depth(fs, d, raw, shown):
    r = listing(fs, d, raw_depth=raw)
    assert_error(r, 400, "INVALID_REQUEST_BODY", message=f"invalid query parameter 'depth': {shown}")


# ------------------------------------------------------------------------------ mkdir
def mkdirs(fs, body):
    return fs.post("/directories", json=body)


def mode_of(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_mkdir_p(fs, d):
    target = f"{d}/x/y/z"
    assert_empty_ok(mkdirs(fs, {target: {"mode": 700}}))
    assert os.path.isdir(target)
    assert mode_of(target) & 0o777 == 0o700
    default = 0o777 & ~current_umask()
    assert mode_of(f"{d}/x") == default and mode_of(f"{d}/x/y") == default


def test_mkdir_mode_644_honoured(fs, d):
    target = f"{d}/m644"
    assert_empty_ok(mkdirs(fs, {target: {"mode": 644}}))
    assert mode_of(target) & 0o777 == 0o644
    info = json_ok(fs.get(f"/files/info?path={q(target)}"))[target]
    assert info["mode"] == 644 and info["type"] == "directory"


def test_mkdir_several_and_owner(fs, d):
    a, b = f"{d}/a/b", f"{d}/c d+e&f"
    assert_empty_ok(mkdirs(fs, {a: {"mode": 750, "owner": "nobody", "group": "nogroup"},
                                b: {"mode": 755}}))
    st = os.stat(a)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode) & 0o777) == (65534, 65534, 0o750)
    pst = os.stat(f"{d}/a")
    assert (pst.st_uid, pst.st_gid) == (0, 0), "owner applied to an intermediate parent"
    assert os.path.isdir(b) and mode_of(b) & 0o777 == 0o755


def test_mkdir_without_mode(fs, d):
    target = f"{d}/nomode"
    assert_empty_ok(mkdirs(fs, {target: {}}))
    assert mode_of(target) == 0o777 & ~current_umask()
    t2 = f"{d}/nullmode"
    assert_empty_ok(mkdirs(fs, {t2: {"mode": None, "owner": None, "group": None}}))
    assert os.path.isdir(t2)


def test_mkdir_existing_directory(fs, d):
    target = f"{d}/exists"
    os.mkdir(target, 0o700)
    write(f"{target}/keep", b"k")
    assert_empty_ok(mkdirs(fs, {target: {"mode": 755}}))
    assert mode_of(target) & 0o777 == 0o755
    assert read(f"{target}/keep") == b"k"


def test_mkdir_existing_file(fs, d):
    p = write(f"{d}/file", b"f")
    assert_error(mkdirs(fs, {p: {"mode": 755}}), 400, "INVALID_REQUEST_BODY")
    assert read(p) == b"f"
    assert_error(mkdirs(fs, {f"{p}/sub": {"mode": 755}}), 400, "INVALID_REQUEST_BODY")


def test_mkdir_env_and_relative(fs, d, fs_cwd):
    assert_empty_ok(mkdirs(fs, {f"{d}/${SUBST_VAR}/x": {"mode": 755}}))
    assert os.path.isdir(f"{d}/{SUBST_VALUE}/x")
    name = "mkdir-rel-" + os.urandom(4).hex()
    assert_empty_ok(mkdirs(fs, {f"{name}/y": {"mode": 755}}))
    assert os.path.isdir(f"{fs_cwd}/{name}/y")


def test_mkdir_empty_object(fs):
    assert_empty_ok(mkdirs(fs, {}))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'["/tmp/x"]', b'"x"', b"1",
                                 b'{"/tmp/x":', b'{"/tmp/x": 755}', b'{"/tmp/x": {"mode": "755"}}'])
def test_mkdir_bad_body(fs, raw):
    r = fs.post("/directories", data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize("entry", [{"mode": 758}, {"mode": -1}, {"mode": 1.5}, {"mode": 10000},
                                   {"mode": 755, "owner": "no-such-user-execd"},
                                   {"mode": 755, "group": "no-such-group-execd"}])
def test_mkdir_bad_entry_creates_nothing(fs, d, entry):
    r = mkdirs(fs, {f"{d}/first": {"mode": 755}, f"{d}/second/x": entry})
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert os.listdir(d) == [], "created despite the 400"


def test_mkdir_invalid_path(fs, d):
    r = mkdirs(fs, {f"{d}/first": {"mode": 755}, f"/tmp/${UNDEFINED_VAR}/x": {"mode": 755}})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


# ------------------------------------------------------------------------------ rmdir
def rmdirs(fs, *paths):
    return fs.delete("/directories?" + "&".join(f"path={q(p)}" for p in paths))


def test_rmdir_no_path(fs):
    assert_empty_ok(fs.delete("/directories"))


def test_rmdir_recursive(fs, d):
    make_tree(d)
    os.chmod(f"{d}/a/b/c", 0o500)
    assert_empty_ok(rmdirs(fs, f"{d}/a"))
    assert not os.path.lexists(f"{d}/a")
    assert os.path.islink(f"{d}/alink")  # dangling now, untouched
    assert read(f"{d}/B.txt") == b"B.txt"


def test_rmdir_several_nonexistent_and_files(fs, d):
    make_tree(d)
    assert_empty_ok(rmdirs(fs, f"{d}/Z", f"{d}/nope", f"{d}/B.txt", f"{d}/no/such/thing"))
    assert not os.path.lexists(f"{d}/Z")
    assert not os.path.lexists(f"{d}/B.txt")
    assert os.path.isdir(f"{d}/a")


def test_rmdir_symlink_not_followed(fs, d):
    make_tree(d)
    assert_empty_ok(rmdirs(fs, f"{d}/alink"))
    assert not os.path.lexists(f"{d}/alink")
    assert read(f"{d}/a/b/c/deep.txt") == b"a/b/c/deep.txt"


def test_rmdir_symlinks_inside_not_followed(fs, d):
    outside = write(f"{d}/outside/keep", b"keep")
    write(f"{d}/victim/x", b"x")
    os.symlink(f"{d}/outside", f"{d}/victim/link")
    assert_empty_ok(rmdirs(fs, f"{d}/victim"))
    assert not os.path.lexists(f"{d}/victim")
    assert read(outside) == b"keep"


def test_rmdir_special_names(fs, d):
    write(f"{d}/a b+c&d/x", b"")
    write(f"{d}/{SUBST_VALUE}/y", b"")
    assert_empty_ok(rmdirs(fs, f"{d}/a b+c&d", f"{d}/${SUBST_VAR}"))
    assert os.listdir(d) == []


def test_rmdir_plus_is_space(fs, d):
    write(f"{d}/x y/f", b"")
    write(f"{d}/x+y/f", b"")
    assert_empty_ok(fs.delete("/directories?path=" + q(d) + "/x+y"))
    assert os.listdir(d) == ["x+y"]


@pytest.mark.parametrize("suffix", ["/.", "/..", "/sub/.."])
def test_rmdir_dot_refused(fs, d, suffix):
    write(f"{d}/sub/f", b"f")
    write(f"{d}/other", b"o")
    r = rmdirs(fs, d + suffix)
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert read(f"{d}/sub/f") == b"f" and read(f"{d}/other") == b"o"


def test_rmdir_invalid_path(fs):
    assert_error(rmdirs(fs, f"/tmp/${UNDEFINED_VAR}"), 400, "INVALID_REQUEST_BODY")


@pytest.fixture(scope="module")
def ro_stack():
    """A stack whose daemon cannot write anywhere: a wrong answer to "/" deletes nothing."""
    try:
        s = ReadOnlyStack()
    except Exception as e:  # no mount namespaces here
        pytest.skip(f"cannot start a read-only daemon: {e}")
    yield s
    s.stop()


@pytest.mark.parametrize("path", ["/", "//", "/.", "/tmp/..", "/tmp/../", ""])
def test_rmdir_root_refused(ro_stack, path):
    r = rmdirs(ro_stack, path)
    assert_error(r, 400, "INVALID_REQUEST_BODY")


def test_ro_stack_is_read_only(ro_stack, d):
    """Sanity check of the safety net used above: the daemon's writes fail."""
    write(f"{d}/f", b"f")
    r = rmdirs(ro_stack, f"{d}/f")
    assert r.status_code >= 400, (r.status_code, r.text)
    assert read(f"{d}/f") == b"f"


def test_list_directory_with_non_utf8_name(fs, d):
    """An entry whose name is not UTF-8 must not break the listing of the directory (the
    reference replaces invalid bytes with U+FFFD in the JSON)."""
    write(f"{d}/good.txt", b"g")
    with open(os.fsencode(d) + b"/bad-\xff.bin", "wb") as f:
        f.write(b"b")
    r = listing(fs, d)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    body = r.json()
    assert len(body) == 2, body
    assert body[1]["path"] == f"{d}/good.txt"
    assert body[0]["path"].startswith(f"{d}/bad-") and body[0]["path"].endswith(".bin"), body
    assert body[0]["size"] == 1 and body[0]["type"] == "file"
