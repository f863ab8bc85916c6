"""GET /files/info, DELETE /files, POST /files/permissions, POST /files/mv."""
import datetime
import os
import socket

import pytest

from execd_http import assert_error, parse_rfc3339
from files_common import (  # noqa: F401 -- fixtures
    SUBST_VALUE, SUBST_VAR, UNDEFINED_VAR, assert_empty_ok, check_info, d,
    expected_info, fs, fs_cwd, json_ok, q, qpaths, read, start_stack, write)

NOBODY = 65534


def info(fs, *paths):
    return fs.get("/files/info?" + qpaths(*paths))


# =========================================================================== GET /files/info
def test_info_no_path_is_empty_object(fs):
    r = fs.get("/files/info")
    assert json_ok(r) == {}


def test_info_file_all_keys(fs, d):
    p = write(f"{d}/a.txt", b"hello world\n", 0o644)
    body = json_ok(info(fs, p))
    assert list(body) == [p]
    e = body[p]
    check_info(e, p)
    assert e["type"] == "file"
    assert e["size"] == 12
    assert e["mode"] == 644
    assert e["owner"] == "root" and e["group"] == "root"
    assert e["path"] == p


@pytest.mark.parametrize("mode,expected", [
    (0o644, 644), (0o755, 755), (0o600, 600), (0o7, 7), (0o70, 70), (0o0, 0), (0o777, 777),
    (0o4755, 755), (0o2750, 750), (0o1777, 777),
])
def test_info_mode_octal_digits(fs, d, mode, expected):
    p = write(f"{d}/m", b"x")
    os.chmod(p, mode)
    e = json_ok(info(fs, p))[p]
    assert e["mode"] == expected, e
    assert isinstance(e["mode"], int)
    check_info(e, p)


def test_info_owner_group_names_and_numbers(fs, d):
    a = write(f"{d}/nobody", b"x")
    os.chown(a, NOBODY, NOBODY)
    b = write(f"{d}/numeric", b"x")
    os.chown(b, 54321, 54322)  # no passwd/group entries
    body = json_ok(info(fs, a, b))
    assert body[a]["owner"] == "nobody" and body[a]["group"] == "nogroup", body[a]
    assert body[b]["owner"] == "54321" and body[b]["group"] == "54322", body[b]
    check_info(body[a], a)
    check_info(body[b], b)


def test_info_types(fs, d):
    f = write(f"{d}/file", b"abc")
    sub = f"{d}/dir"
    os.mkdir(sub)
    ln = f"{d}/link"
    os.symlink("file", ln)
    dangling = f"{d}/dangling"
    os.symlink(f"{d}/nowhere/at/all", dangling)
    dirlink = f"{d}/dirlink"
    os.symlink(sub, dirlink)
    fifo = f"{d}/fifo"
    os.mkfifo(fifo)
    sockp = f"{d}/sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(sockp)
    try:
        body = json_ok(info(fs, f, sub, ln, dangling, dirlink, fifo, sockp, "/dev/null"))
    finally:
        s.close()
    assert body[f]["type"] == "file"
    assert body[sub]["type"] == "directory"
    assert body[ln]["type"] == "symlink" and body[ln]["size"] == len("file")
    assert body[dangling]["type"] == "symlink"
    assert body[dangling]["size"] == len(f"{d}/nowhere/at/all")
    assert body[dirlink]["type"] == "symlink"
    assert body[fifo]["type"] == "other"
    assert body[sockp]["type"] == "other"
    assert body["/dev/null"]["type"] == "other"
    for p in (f, sub, ln, dangling, dirlink, fifo):
        check_info(body[p], p)


def test_info_times_exact_and_created_is_ctime(fs, d):
    p = write(f"{d}/t", b"data")
    e = json_ok(info(fs, p))[p]
    check_info(e, p)
    for k in ("modified_at", "created_at"):
        assert e[k].endswith("Z"), e
    mod = parse_rfc3339(e["modified_at"])
    cre = parse_rfc3339(e["created_at"])
    assert abs(cre - mod) < 1_000_000_000, e  # fresh file: ctime ~= mtime
    st = os.stat(p)
    assert mod == st.st_mtime_ns and cre == st.st_ctime_ns


@pytest.mark.parametrize("ns,text", [
    (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
    (1_700_000_000_120_000_000, "2023-11-14T22:13:20.12Z"),
    (1_700_000_000_000_000_001, "2023-11-14T22:13:20.000000001Z"),
    (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
    (946_684_799_999_999_000, "1999-12-31T23:59:59.999999Z"),
])
def test_info_time_format(fs, d, ns, text):
    p = write(f"{d}/t", b"x")
    os.utime(p, ns=(ns, ns))
    e = json_ok(info(fs, p))[p]
    assert e["modified_at"] == text, e
    assert parse_rfc3339(e["modified_at"]) == ns
    # created_at is the ctime, which utime just moved to "now"
    assert e["created_at"] == expected_info(p)["created_at"], e
    assert e["created_at"] != e["modified_at"]


def test_info_created_moves_after_chmod(fs, d):
    p = write(f"{d}/c", b"x")
    os.utime(p, ns=(1_600_000_000_000_000_000,) * 2)
    os.chmod(p, 0o600)
    e = json_ok(info(fs, p))[p]
    assert e["modified_at"] == "2020-09-13T12:26:40Z"
    assert parse_rfc3339(e["created_at"]) == os.stat(p).st_ctime_ns
    assert parse_rfc3339(e["created_at"]) > parse_rfc3339(e["modified_at"])


def test_info_local_time_zone(d, fs_cwd):
    """Times are in the daemon's local zone: with TZ=Asia/Kolkata they end in +05:30."""
    if not os.path.exists("/usr/share/zoneinfo/Asia/Kolkata"):
        pytest.skip("no tzdata")
    s = start_stack(fs_cwd, tz="Asia/Kolkata")
    try:
        p = write(f"{d}/tz", b"x")
        ns = 1_700_000_000_120_000_000
        os.utime(p, ns=(ns, ns))
        e = json_ok(s.get("/files/info?" + qpaths(p)))[p]
    finally:
        s.stop()
    assert e["modified_at"] == "2023-11-15T03:43:20.12+05:30", e
    assert parse_rfc3339(e["modified_at"]) == ns
    tz = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    ct = os.stat(p).st_ctime_ns
    want = datetime.datetime.fromtimestamp(ct // 10**9, tz).strftime("%Y-%m-%dT%H:%M:%S")
    assert e["created_at"].startswith(want), e
    assert e["created_at"].endswith("+05:30"), e


def test_info_two_paths(fs, d):
    a = write(f"{d}/a", b"1")
    b = write(f"{d}/b", b"22")
    body = json_ok(fs.get(f"/files/info?path={q(a)}&path={q(b)}"))
    assert set(body) == {a, b}
    check_info(body[a], a)
    check_info(body[b], b)


@pytest.mark.parametrize("spelling", [
    "{d}//sub///f.txt",
    "{d}/./sub/../sub/f.txt",
    "{d}/sub/./f.txt",
    "/{d}/sub/f.txt",
])
def test_info_keyed_by_path_as_sent(fs, d, spelling):
    p = write(f"{d}/sub/f.txt", b"x")
    sent = spelling.format(d=d)
    body = json_ok(info(fs, sent))
    assert list(body) == [sent], body
    check_info(body[sent], p)
    assert body[sent]["path"] == p


def test_info_directory_trailing_slash(fs, d):
    os.mkdir(f"{d}/sub")
    sent = f"{d}/sub/"
    body = json_ok(info(fs, sent))
    assert list(body) == [sent]
    check_info(body[sent], f"{d}/sub")
    assert body[sent]["path"] == f"{d}/sub"


def test_info_relative_path_against_daemon_cwd(fs, fs_cwd):
    name = "rel-" + os.urandom(4).hex()
    p = write(f"{fs_cwd}/{name}/x.txt", b"rel")
    for sent in (f"{name}/x.txt", f"./{name}/x.txt", f"{name}//x.txt"):
        body = json_ok(info(fs, sent))
        assert list(body) == [sent]
        check_info(body[sent], p)
        assert body[sent]["path"] == p


def test_info_same_path_twice(fs, d):
    p = write(f"{d}/a", b"1")
    body = json_ok(fs.get(f"/files/info?path={q(p)}&path={q(p)}"))
    assert list(body) == [p]
    check_info(body[p], p)


def test_info_env_expansion(fs, d):
    p = write(f"{d}/{SUBST_VALUE}/x", b"1")
    for sent in (f"{d}/${SUBST_VAR}/x", f"{d}/${{{SUBST_VAR}}}/x"):
        body = json_ok(info(fs, sent))
        assert list(body) == [sent]
        check_info(body[sent], p)


def test_info_home(fs):
    if not os.environ.get("HOME"):
        pytest.skip("HOME is not set")
    home = os.path.normpath(os.environ["HOME"])
    body = json_ok(info(fs, "~"))
    assert list(body) == ["~"]
    assert body["~"]["path"] == home
    check_info(body["~"], home)


def test_info_missing(fs, d):
    r = info(fs, f"{d}/nope")
    assert_error(r, 404, "FILE_NOT_FOUND")


def test_info_first_missing_among_several(fs, d):
    a = write(f"{d}/a", b"1")
    r = info(fs, a, f"{d}/nope", a)
    assert_error(r, 404, "FILE_NOT_FOUND", contains=f"{d}/nope")


@pytest.mark.parametrize("sent", [
    f"/tmp/${UNDEFINED_VAR}/x",
    f"/tmp/${{{UNDEFINED_VAR}}}",
    "",
    "/tmp/a\x00b",
    "/" + "a" * 4200,
])
def test_info_invalid_path(fs, sent):
    r = info(fs, sent)
    assert_error(r, 400, "INVALID_REQUEST_BODY")


def test_info_undefined_var_among_valid(fs, d):
    a = write(f"{d}/a", b"1")
    r = info(fs, a, f"${UNDEFINED_VAR}")
    assert_error(r, 400, "INVALID_REQUEST_BODY")


# ---------------------------------------------------------------- query decoding
def test_info_special_characters_encoded(fs, d):
    names = ["x+y.txt", "x y.txt", "p&q=r%20s.txt", "50%.txt", "a#b?c.txt", "测试文件.txt"]
    paths = [write(f"{d}/{n}", n.encode()) for n in names]
    body = json_ok(fs.get("/files/info?" + qpaths(*paths)))
    assert set(body) == set(paths), body
    for p in paths:
        check_info(body[p], p)


def test_info_plus_is_space(fs, d):
    p = write(f"{d}/x y.txt", b"space")
    write(f"{d}/x+y.txt", b"plus")
    raw = q(d) + "/x+y.txt"
    body = json_ok(fs.get("/files/info?path=" + raw))
    assert list(body) == [p], body
    check_info(body[p], p)
    body = json_ok(fs.get("/files/info?path=" + q(d) + "/x%20y.txt"))
    assert list(body) == [p], body


def test_info_ignores_other_parameters(fs, d):
    a = write(f"{d}/a", b"1")
    body = json_ok(fs.get(f"/files/info?x=1&path={q(a)}&paths={q(d)}/nope&y"))
    assert list(body) == [a]


# =========================================================================== DELETE /files
def test_delete_no_path(fs):
    assert_empty_ok(fs.delete("/files"))


def test_delete_two_paths(fs, d):
    a = write(f"{d}/a", b"1")
    b = write(f"{d}/b b+&.txt", b"2")
    keep = write(f"{d}/keep", b"3")
    assert_empty_ok(fs.delete(f"/files?path={q(a)}&path={q(b)}"))
    assert not os.path.lexists(a) and not os.path.lexists(b)
    assert read(keep) == b"3"


def test_delete_plus_is_space(fs, d):
    sp = write(f"{d}/x y", b"1")
    plus = write(f"{d}/x+y", b"2")
    assert_empty_ok(fs.delete("/files?path=" + q(d) + "/x+y"))
    assert not os.path.lexists(sp)
    assert os.path.exists(plus)


def test_delete_nonexistent_ignored(fs, d):
    a = write(f"{d}/a", b"1")
    assert_empty_ok(fs.delete(f"/files?path={q(d)}/nope&path={q(a)}&path={q(d)}/no/such/dir"))
    assert not os.path.lexists(a)


def test_delete_dangling_symlink(fs, d):
    ln = f"{d}/dangling"
    os.symlink(f"{d}/nowhere", ln)
    assert_empty_ok(fs.delete("/files?" + qpaths(ln)))
    assert not os.path.lexists(ln)


def test_delete_symlink_to_file_removes_link_only(fs, d):
    target = write(f"{d}/target", b"keep me")
    ln = f"{d}/link"
    os.symlink(target, ln)
    assert_empty_ok(fs.delete("/files?" + qpaths(ln)))
    assert not os.path.lexists(ln)
    assert read(target) == b"keep me"


def test_delete_symlink_to_directory_removes_link_only(fs, d):
    os.mkdir(f"{d}/dir")
    inner = write(f"{d}/dir/inner", b"x")
    ln = f"{d}/dirlink"
    os.symlink(f"{d}/dir", ln)
    assert_empty_ok(fs.delete("/files?" + qpaths(ln)))
    assert not os.path.lexists(ln)
    assert read(inner) == b"x"


def test_delete_fifo(fs, d):
    fifo = f"{d}/fifo"
    os.mkfifo(fifo)
    assert_empty_ok(fs.delete("/files?" + qpaths(fifo)))
    assert not os.path.lexists(fifo)


def test_delete_directory_refused_earlier_done(fs, d):
    a = write(f"{d}/a", b"1")
    sub = f"{d}/sub"
    inner = write(f"{sub}/inner", b"2")
    r = fs.delete("/files?" + qpaths(a, sub))
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert not os.path.lexists(a), "the deletion before the directory was not done"
    assert read(inner) == b"2"
    assert os.path.isdir(sub)


def test_delete_dot_spelling(fs, d):
    a = write(f"{d}/sub/a", b"1")
    assert_empty_ok(fs.delete("/files?" + qpaths(f"{d}//sub/./../sub/a")))
    assert not os.path.lexists(a)


@pytest.mark.parametrize("sent", [f"/tmp/${UNDEFINED_VAR}/x", "", "/" + "b" * 4200])
def test_delete_invalid_path(fs, sent):
    assert_error(fs.delete("/files?" + qpaths(sent)), 400, "INVALID_REQUEST_BODY")


# =========================================================================== permissions
def perms(fs, body, **kw):
    return fs.post("/files/permissions", json=body, **kw)


def test_permissions_mode_owner_group(fs, d):
    p = write(f"{d}/a", b"1", 0o600)
    assert_empty_ok(perms(fs, {p: {"mode": 755, "owner": "root", "group": "root"}}))
    st = os.stat(p)
    assert st.st_mode & 0o7777 == 0o755
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert json_ok(fs.get("/files/info?" + qpaths(p)))[p]["mode"] == 755


def test_permissions_change_owner(fs, d):
    p = write(f"{d}/a", b"1", 0o644)
    assert_empty_ok(perms(fs, {p: {"mode": 640, "owner": "nobody", "group": "nogroup"}}))
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (NOBODY, NOBODY, 0o640)
    e = json_ok(fs.get("/files/info?" + qpaths(p)))[p]
    assert (e["owner"], e["group"], e["mode"]) == ("nobody", "nogroup", 640)


def test_permissions_numeric_ids(fs, d):
    p = write(f"{d}/a", b"1", 0o644)
    assert_empty_ok(perms(fs, {p: {"mode": 644, "owner": "1234", "group": "4321"}}))
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 4321)


def test_permissions_owner_only(fs, d):
    p = write(f"{d}/a", b"1", 0o644)
    os.chown(p, 0, NOBODY)
    assert_empty_ok(perms(fs, {p: {"owner": "nobody"}}))
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (NOBODY, NOBODY, 0o644)


def test_permissions_mode_only_keeps_ownership(fs, d):
    p = write(f"{d}/a", b"1", 0o644)
    os.chown(p, NOBODY, NOBODY)
    assert_empty_ok(perms(fs, {p: {"mode": 600}}))
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), "ownership changed without owner/group"
    assert st.st_mode & 0o777 == 0o600


@pytest.mark.parametrize("entry", [
    {"mode": None, "owner": "nobody"},
    {"mode": 0, "owner": "nobody"},
    {"owner": "nobody"},
])
def test_permissions_mode_null_zero_absent_unchanged(fs, d, entry):
    p = write(f"{d}/a", b"1", 0o640)
    assert_empty_ok(perms(fs, {p: entry}))
    st = os.stat(p)
    assert st.st_mode & 0o777 == 0o640
    assert st.st_uid == NOBODY


def test_permissions_empty_entry_changes_nothing(fs, d):
    p = write(f"{d}/a", b"1", 0o640)
    os.chown(p, NOBODY, 0)
    before = os.stat(p)
    assert_empty_ok(perms(fs, {p: {}}))
    after = os.stat(p)
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid,
                                                           before.st_gid)


def test_permissions_several_and_special_spellings(fs, d):
    a = write(f"{d}/a b+c&d", b"1", 0o600)
    b = write(f"{d}/{SUBST_VALUE}/b", b"2", 0o600)
    assert_empty_ok(perms(fs, {a: {"mode": 644}, f"{d}/${SUBST_VAR}/b": {"mode": 604},
                               f"{d}//a b+c&d": {"mode": 644}}))
    assert os.stat(a).st_mode & 0o777 == 0o644
    assert os.stat(b).st_mode & 0o777 == 0o604


def test_permissions_follow_symlinks(fs, d):
    target = write(f"{d}/target", b"1", 0o600)
    ln = f"{d}/link"
    os.symlink(target, ln)
    assert_empty_ok(perms(fs, {ln: {"mode": 644}}))
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert os.path.islink(ln)


def test_permissions_directory(fs, d):
    sub = f"{d}/sub"
    os.mkdir(sub, 0o755)
    assert_empty_ok(perms(fs, {sub: {"mode": 700}}))
    assert os.stat(sub).st_mode & 0o777 == 0o700


def test_permissions_empty_object(fs):
    assert_empty_ok(perms(fs, {}))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'["a"]', b'"x"', b"5", b'{"a":',
                                 b'{"/tmp/x": 755}', b'{"/tmp/x": "755"}', b'{"/tmp/x": []}'])
def test_permissions_bad_body(fs, raw):
    r = fs.post("/files/permissions", data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize("mode", [758, 800, 9, 1999, -1, -644, 7.5, "755", "0755", True,
                                  10000, 17777, [644], {"m": 1}])
def test_permissions_bad_mode_changes_nothing(fs, d, mode):
    good = write(f"{d}/good", b"1", 0o600)
    bad = write(f"{d}/bad", b"2", 0o600)
    r = perms(fs, {good: {"mode": 644, "owner": "nobody"}, bad: {"mode": mode}})
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    for p in (good, bad):
        st = os.stat(p)
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0), "changed despite the 400"


@pytest.mark.parametrize("field", ["owner", "group"])
def test_permissions_bad_owner_type(fs, d, field):
    p = write(f"{d}/p", b"1", 0o600)
    r = perms(fs, {p: {"mode": 644, field: 0}})
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert os.stat(p).st_mode & 0o777 == 0o600


def test_permissions_missing_path_changes_nothing(fs, d):
    good = write(f"{d}/good", b"1", 0o600)
    r = perms(fs, {good: {"mode": 644, "owner": "nobody"}, f"{d}/nope": {"mode": 644}})
    assert_error(r, 404, "FILE_NOT_FOUND")
    st = os.stat(good)
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0), "changed despite the 404"


@pytest.mark.parametrize("entry", [
    {"mode": 644, "owner": "no-such-user-execd"},
    {"mode": 644, "group": "no-such-group-execd"},
    {"mode": 644, "owner": "nobody", "group": "no-such-group-execd"},
])
def test_permissions_unknown_name_changes_nothing(fs, d, entry):
    good = write(f"{d}/good", b"1", 0o600)
    p = write(f"{d}/p", b"2", 0o600)
    r = perms(fs, {good: {"mode": 644, "owner": "nobody"}, p: entry})
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    for x in (good, p):
        st = os.stat(x)
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, 0, 0), "changed despite 400"


def test_permissions_invalid_path(fs, d):
    good = write(f"{d}/good", b"1", 0o600)
    r = perms(fs, {good: {"mode": 644}, f"/tmp/${UNDEFINED_VAR}": {"mode": 644}})
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert os.stat(good).st_mode & 0o777 == 0o600


# =========================================================================== mv
def mv(fs, moves):
    return fs.post("/files/mv", json=[{"src": s, "dest": t} for s, t in moves])


def test_mv_rename(fs, d):
    a = write(f"{d}/a", b"content", 0o640)
    ino = os.stat(a).st_ino
    assert_empty_ok(mv(fs, [(a, f"{d}/b")]))
    assert not os.path.lexists(a)
    assert read(f"{d}/b") == b"content"
    st = os.stat(f"{d}/b")
    assert st.st_ino == ino and st.st_mode & 0o777 == 0o640


def test_mv_into_new_directory(fs, d):
    a = write(f"{d}/a", b"content")
    dest = f"{d}/new/deeper/still/a.txt"
    assert_empty_ok(mv(fs, [(a, dest)]))
    assert read(dest) == b"content"
    assert not os.path.lexists(a)
    for sub in ("new", "new/deeper", "new/deeper/still"):
        assert os.stat(f"{d}/{sub}").st_mode & 0o777 == 0o755


def test_mv_onto_existing_file(fs, d):
    a = write(f"{d}/a", b"A")
    b = write(f"{d}/b", b"B")
    r = mv(fs, [(a, b)])
    assert_error(r, 409, "ALREADY_EXISTS")
    assert read(a) == b"A" and read(b) == b"B"


def test_mv_onto_existing_directory(fs, d):
    a = write(f"{d}/a", b"A")
    os.mkdir(f"{d}/dir")
    r = mv(fs, [(a, f"{d}/dir")])
    assert_error(r, 409, "ALREADY_EXISTS")
    assert read(a) == b"A" and os.listdir(f"{d}/dir") == []


def test_mv_missing_src(fs, d):
    r = mv(fs, [(f"{d}/nope", f"{d}/x")])
    assert_error(r, 404, "FILE_NOT_FOUND")
    assert not os.path.lexists(f"{d}/x")


def test_mv_in_order_and_earlier_moves_stay(fs, d):
    a = write(f"{d}/a", b"A")
    assert_empty_ok(mv(fs, [(a, f"{d}/b"), (f"{d}/b", f"{d}/c")]))
    assert read(f"{d}/c") == b"A"
    assert not os.path.lexists(f"{d}/b")
    x = write(f"{d}/x", b"X")
    r = mv(fs, [(x, f"{d}/y"), (f"{d}/nope", f"{d}/z")])
    assert_error(r, 404, "FILE_NOT_FOUND")
    assert read(f"{d}/y") == b"X"


def test_mv_directory(fs, d):
    write(f"{d}/src/inner/f", b"F")
    assert_empty_ok(mv(fs, [(f"{d}/src", f"{d}/moved/dst")]))
    assert read(f"{d}/moved/dst/inner/f") == b"F"
    assert not os.path.lexists(f"{d}/src")


def test_mv_symlink_moves_the_link(fs, d):
    target = write(f"{d}/target", b"T")
    os.symlink(target, f"{d}/link")
    assert_empty_ok(mv(fs, [(f"{d}/link", f"{d}/link2")]))
    assert os.path.islink(f"{d}/link2") and os.readlink(f"{d}/link2") == target
    assert read(target) == b"T"


def test_mv_special_names(fs, d):
    a = write(f"{d}/测试 a+b&c.txt", b"A")
    assert_empty_ok(mv(fs, [(a, f"{d}/${SUBST_VAR}/x y+z")]))
    assert read(f"{d}/{SUBST_VALUE}/x y+z") == b"A"


def test_mv_empty_array(fs):
    assert_empty_ok(fs.post("/files/mv", json=[]))


@pytest.mark.parametrize("raw", [b"", b"not json", b"{}", b'{"src":"/a","dest":"/b"}', b'"x"',
                                 b"[", b"[5]", b'[{"src":5,"dest":"/tmp/x"}]',
                                 b'[{"src":"/tmp/x","dest":["/tmp/y"]}]'])
def test_mv_bad_body(fs, raw):
    r = fs.post("/files/mv", data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize("item", [{"src": "A"}, {"dest": "B"}, {"src": "A", "dest": ""},
                                  {"src": "A", "dest": f"/tmp/${UNDEFINED_VAR}/b"}])
def test_mv_bad_item(fs, d, item):
    a = write(f"{d}/a", b"A")
    item = {k: (a if v == "A" else f"{d}/b" if v == "B" else v) for k, v in item.items()}
    r = fs.post("/files/mv", json=[item])
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert read(a) == b"A"


# ---------------------------------------------------------------- more path forms
def test_info_dollar_special_forms(fs, d):
    ab = write(f"{d}/ab", b"1")
    lit = write(f"{d}/cost$", b"2")
    lit2 = write(f"{d}/a$.b", b"3")
    for sent, target in [(f"{d}/a$1b", ab), (f"{d}/a$?b", ab), (f"{d}/a$$b", ab),
                         (f"{d}/cost$", lit), (f"{d}/a$.b", lit2)]:
        body = json_ok(info(fs, sent))
        assert list(body) == [sent], body
        check_info(body[sent], target)


def test_info_tilde_only_at_start(fs, fs_cwd):
    name = "~execd-no-such-user-" + os.urandom(3).hex()
    p = write(f"{fs_cwd}/{name}", b"t")
    body = json_ok(info(fs, name))
    assert body[name]["path"] == p
    check_info(body[name], p)


def test_info_file_with_trailing_slash_is_cleaned(fs, d):
    p = write(f"{d}/f.txt", b"x")
    body = json_ok(info(fs, f"{d}/f.txt/"))
    check_info(body[f"{d}/f.txt/"], p)


def test_info_and_delete_many_paths(fs, d):
    paths = [write(f"{d}/many-{i:03d} +&=.txt", b"x") for i in range(200)]
    body = json_ok(fs.get("/files/info?" + qpaths(*paths)))
    assert set(body) == set(paths)
    assert_empty_ok(fs.delete("/files?" + qpaths(*paths)))
    assert os.listdir(d) == []


def test_mv_onto_itself(fs, d):
    a = write(f"{d}/a", b"A")
    assert_error(mv(fs, [(a, a)]), 409, "ALREADY_EXISTS")
    assert read(a) == b"A"


def test_info_non_utf8_query_path(fs, d):
    """A path that is not UTF-8: served (reference) or refused as a bad path (400), but the
    daemon is there, so never 503/5xx."""
    with open(os.fsencode(d) + b"/\xff.bin", "wb") as f:
        f.write(b"ff")
    for route in ("/files/info", "/files/download"):
        r = fs.get(f"{route}?path={q(d)}/%FF.bin")
        assert r.status_code in (200, 400), (route, r.status_code, r.text[:300])
        if r.status_code == 400:
            assert_error(r, 400, "INVALID_REQUEST_BODY")
        elif route == "/files/download":
            assert r.content == b"ff"
