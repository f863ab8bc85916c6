"""org.execd.Execd1.Files: MakeDirectories, Move, RemoveFiles, RemoveDirectories,
SetPermissions and Replace."""
import os

import pytest

from busclient import (ERR_ALREADY_EXISTS, ERR_INVALID_ARGUMENT, ERR_INVALID_PATH,
                       ERR_IS_DIRECTORY, ERR_LIMITS, ERR_NOT_DIRECTORY, ERR_NOT_FOUND)
from filesutil import (MIB, NOBODY, call_err, daemon_umask, group_name, mkfile, read,
                       tree_snapshot, user_name)

NO_USER = "execd-no-such-user"
NO_GROUP = "execd-no-such-group"


def mode_of(p):
    return os.lstat(p).st_mode & 0o7777


def ids_of(p):
    st = os.lstat(p)
    return st.st_uid, st.st_gid


# =========================================================================== MakeDirectories
def test_mkdirs_creates_parents_mode_on_final_only(env, files, tdir):
    default = 0o777 & ~daemon_umask(env.pid)
    c = os.path.join(tdir, "a", "b", "c")
    files.mkdirs([(c, 0o700, "", "")])
    assert os.path.isdir(c) and not os.path.islink(c)
    assert mode_of(c) == 0o700
    assert mode_of(os.path.join(tdir, "a")) == default
    assert mode_of(os.path.join(tdir, "a", "b")) == default
    assert ids_of(c) == (0, 0)


def test_mkdirs_mode_zero_leaves_default(env, files, tdir):
    d = os.path.join(tdir, "d")
    files.mkdirs([(d, 0, "", "")])
    assert mode_of(d) == 0o777 & ~daemon_umask(env.pid)


def test_mkdirs_mode_644_on_directory_honoured(files, tdir):
    d = os.path.join(tdir, "d644")
    files.mkdirs([(d, 0o644, "", "")])
    assert mode_of(d) == 0o644
    assert files.stat1(d)["mode"] == 0o644


def test_mkdirs_existing_directory_reapplies(files, tdir):
    d = os.path.join(tdir, "exists")
    os.mkdir(d, 0o755)
    mkfile(os.path.join(d, "keep"), b"k")
    files.mkdirs([(d, 0o711, str(NOBODY), "")])
    assert mode_of(d) == 0o711
    assert ids_of(d) == (NOBODY, 0)
    assert read(os.path.join(d, "keep")) == b"k"
    files.mkdirs([(d, 0, "", "")])  # nothing given: nothing changes
    assert mode_of(d) == 0o711
    assert ids_of(d) == (NOBODY, 0)


def test_mkdirs_existing_file_is_not_directory(files, tdir):
    f = mkfile(os.path.join(tdir, "file"), b"data", 0o600)
    assert call_err(files.mkdirs, [(f, 0o755, "", "")]).name == ERR_NOT_DIRECTORY
    assert read(f) == b"data" and mode_of(f) == 0o600


def test_mkdirs_file_as_parent_is_not_directory(files, tdir):
    f = mkfile(os.path.join(tdir, "file"), b"data")
    assert call_err(files.mkdirs, [(os.path.join(f, "sub"), 0, "", "")]).name == \
        ERR_NOT_DIRECTORY
    assert read(f) == b"data"


@pytest.mark.parametrize("owner,group", [(NO_USER, ""), ("", NO_GROUP), ("root", NO_GROUP)])
def test_mkdirs_unknown_name_creates_nothing(files, tdir, owner, group):
    first = os.path.join(tdir, "first", "x")
    second = os.path.join(tdir, "second")
    e = call_err(files.mkdirs, [(first, 0o700, "", ""), (second, 0o700, owner, group)])
    assert e.name == ERR_INVALID_ARGUMENT
    assert os.listdir(tdir) == []


def test_mkdirs_numeric_owner_and_group(files, tdir):
    d = os.path.join(tdir, "p", "num")
    files.mkdirs([(d, 0, "65534", "65534")])
    assert ids_of(d) == (NOBODY, NOBODY)
    assert ids_of(os.path.join(tdir, "p")) == (0, 0)  # parents keep the caller's ids
    i = files.stat1(d)
    assert i["owner"] == user_name(NOBODY) and i["group"] == group_name(NOBODY)


def test_mkdirs_owner_and_group_names(files, tdir):
    d = os.path.join(tdir, "named")
    files.mkdirs([(d, 0o750, user_name(NOBODY), group_name(NOBODY))])
    assert ids_of(d) == (NOBODY, NOBODY)
    assert mode_of(d) == 0o750


def test_mkdirs_several_in_order(files, tdir):
    x = os.path.join(tdir, "x")
    y = os.path.join(x, "y")
    files.mkdirs([(x, 0o711, "", ""), (y, 0o700, "", ""), (x, 0o751, "", "")])
    assert mode_of(x) == 0o751
    assert mode_of(y) == 0o700


def test_mkdirs_empty_and_invalid(files, tdir):
    files.mkdirs([])
    assert call_err(files.mkdirs, [("", 0, "", "")]).name == ERR_INVALID_PATH
    assert call_err(files.mkdirs, [("$EXECD_TEST_UNDEFINED_VAR/d", 0, "", "")]).name == \
        ERR_INVALID_PATH


# =========================================================================== Move
def test_move_file(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"content", 0o640)
    ino = os.lstat(a).st_ino
    b = os.path.join(tdir, "b")
    files.move([(a, b)])
    assert not os.path.lexists(a)
    assert read(b) == b"content"
    assert os.lstat(b).st_ino == ino
    assert mode_of(b) == 0o640


def test_move_creates_destination_parents(env, files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"x")
    dest = os.path.join(tdir, "new", "deeper", "a2")
    files.move([(a, dest)])
    assert read(dest) == b"x"
    for p in (os.path.join(tdir, "new"), os.path.join(tdir, "new", "deeper")):
        assert os.path.isdir(p)
        assert mode_of(p) == 0o755 & ~daemon_umask(env.pid)


def test_move_existing_destination(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"AAA")
    b = mkfile(os.path.join(tdir, "b"), b"BBB")
    assert call_err(files.move, [(a, b)]).name == ERR_ALREADY_EXISTS
    assert read(a) == b"AAA" and read(b) == b"BBB"


def test_move_onto_existing_directory(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"AAA")
    d = os.path.join(tdir, "d")
    os.mkdir(d)
    assert call_err(files.move, [(a, d)]).name == ERR_ALREADY_EXISTS
    assert read(a) == b"AAA" and os.listdir(d) == []


def test_move_existing_destination_dangling_symlink(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"AAA")
    ln = os.path.join(tdir, "ln")
    os.symlink("nowhere", ln)
    assert call_err(files.move, [(a, ln)]).name == ERR_ALREADY_EXISTS
    assert read(a) == b"AAA" and os.readlink(ln) == "nowhere"


def test_move_missing_source(files, tdir):
    e = call_err(files.move, [(os.path.join(tdir, "nope"), os.path.join(tdir, "x"))])
    assert e.name == ERR_NOT_FOUND
    assert os.listdir(tdir) == []


def test_move_directory(files, tdir):
    src = os.path.join(tdir, "src")
    mkfile(os.path.join(src, "f"), b"f")
    mkfile(os.path.join(src, "s", "g"), b"g")
    before = tree_snapshot(src)
    dst = os.path.join(tdir, "moved", "dst")
    files.move([(src, dst)])
    assert not os.path.exists(src)
    assert tree_snapshot(dst) == before


def test_move_symlink_moves_the_link(files, tdir):
    t = mkfile(os.path.join(tdir, "target"), b"t")
    ln = os.path.join(tdir, "ln")
    os.symlink("target", ln)
    files.move([(ln, os.path.join(tdir, "ln2"))])
    assert os.readlink(os.path.join(tdir, "ln2")) == "target"
    assert not os.path.lexists(ln)
    assert read(t) == b"t"


def test_move_in_order_and_earlier_moves_stay(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"A")
    b = os.path.join(tdir, "b")
    c = os.path.join(tdir, "c")
    files.move([(a, b), (b, c)])
    assert read(c) == b"A" and not os.path.exists(a) and not os.path.exists(b)
    d = mkfile(os.path.join(tdir, "d"), b"D")
    e = call_err(files.move, [(d, os.path.join(tdir, "d2")),
                              (os.path.join(tdir, "missing"), os.path.join(tdir, "m2")),
                              (c, os.path.join(tdir, "c2"))])
    assert e.name == ERR_NOT_FOUND
    assert read(os.path.join(tdir, "d2")) == b"D"
    assert not os.path.exists(d)


def test_move_empty_and_invalid(files, tdir):
    files.move([])
    a = mkfile(os.path.join(tdir, "a"), b"A")
    assert call_err(files.move, [(a, "")]).name == ERR_INVALID_PATH
    assert call_err(files.move, [("", a)]).name == ERR_INVALID_PATH
    assert read(a) == b"A"


# =========================================================================== RemoveFiles
def test_remove_files(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"a")
    b = mkfile(os.path.join(tdir, "sub", "b"), b"b")
    keep = mkfile(os.path.join(tdir, "keep"), b"k")
    files.remove_files([a, b])
    assert not os.path.exists(a) and not os.path.exists(b)
    assert read(keep) == b"k"
    assert os.path.isdir(os.path.join(tdir, "sub"))


def test_remove_files_symlinks(files, tdir):
    target = mkfile(os.path.join(tdir, "target"), b"t")
    tdir2 = os.path.join(tdir, "targetdir")
    mkfile(os.path.join(tdir2, "inside"), b"i")
    ln = os.path.join(tdir, "ln")
    os.symlink("target", ln)
    dangling = os.path.join(tdir, "dangling")
    os.symlink("nowhere", dangling)
    dirln = os.path.join(tdir, "dirln")
    os.symlink("targetdir", dirln)
    files.remove_files([ln, dangling, dirln])
    assert not os.path.lexists(ln)
    assert not os.path.lexists(dangling), "a dangling symlink must be removed"
    assert not os.path.lexists(dirln)
    assert read(target) == b"t"
    assert read(os.path.join(tdir2, "inside")) == b"i"


def test_remove_files_fifo(files, tdir):
    p = os.path.join(tdir, "fifo")
    os.mkfifo(p)
    files.remove_files([p])
    assert not os.path.lexists(p)


def test_remove_files_missing_ignored(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"a")
    files.remove_files([os.path.join(tdir, "nope"), a, os.path.join(tdir, "x", "y")])
    assert not os.path.exists(a)


def test_remove_files_directory(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"a")
    d = os.path.join(tdir, "d")
    mkfile(os.path.join(d, "inner"), b"i")
    e = call_err(files.remove_files, [a, d])
    assert e.name == ERR_IS_DIRECTORY
    assert not os.path.exists(a), "removals before the failure stay done"
    assert read(os.path.join(d, "inner")) == b"i"


def test_remove_files_empty_and_invalid(files, tdir):
    files.remove_files([])
    assert call_err(files.remove_files, [""]).name == ERR_INVALID_PATH


# =========================================================================== RemoveDirectories
def test_remove_dirs_recursive(files, tdir):
    d = os.path.join(tdir, "d")
    mkfile(os.path.join(d, "a", "b", "c"), b"c")
    mkfile(os.path.join(d, "f"), b"f")
    os.mkdir(os.path.join(d, "empty"))
    os.mkfifo(os.path.join(d, "a", "fifo"))
    ro = os.path.join(d, "ro")
    mkfile(os.path.join(ro, "x"), b"x")
    os.chmod(ro, 0o500)
    keep = mkfile(os.path.join(tdir, "keep"), b"k")
    files.remove_dirs([d])
    assert not os.path.lexists(d)
    assert read(keep) == b"k"


def test_remove_dirs_does_not_follow_symlinks(files, tdir):
    outside = os.path.join(tdir, "outside")
    secret = mkfile(os.path.join(outside, "secret"), b"s")
    d = os.path.join(tdir, "d")
    mkfile(os.path.join(d, "f"), b"f")
    os.symlink(outside, os.path.join(d, "to-outside"))
    os.symlink(secret, os.path.join(d, "to-secret"))
    files.remove_dirs([d])
    assert not os.path.lexists(d)
    assert read(secret) == b"s"
    assert os.listdir(outside) == ["secret"]


def test_remove_dirs_path_is_symlink(files, tdir):
    outside = os.path.join(tdir, "outside")
    secret = mkfile(os.path.join(outside, "secret"), b"s")
    ln = os.path.join(tdir, "ln")
    os.symlink(outside, ln)
    files.remove_dirs([ln])
    assert not os.path.lexists(ln)
    assert read(secret) == b"s"


def test_remove_dirs_plain_file_and_missing(files, tdir):
    f = mkfile(os.path.join(tdir, "f"), b"f")
    files.remove_dirs([os.path.join(tdir, "missing"), f, os.path.join(tdir, "missing2", "x")])
    assert not os.path.exists(f)


def test_remove_dirs_several(files, tdir):
    ps = []
    for n in "abc":
        ps.append(os.path.join(tdir, n))
        mkfile(os.path.join(tdir, n, "f"), b"")
    files.remove_dirs(ps)
    assert os.listdir(tdir) == []


@pytest.mark.parametrize("suffix", ["/.", "/./", "/sub/..", "/sub/../"])
def test_remove_dirs_dot_paths_refused(files, tdir, suffix):
    x = os.path.join(tdir, "x")
    mkfile(os.path.join(x, "sub", "f"), b"f")
    before = tree_snapshot(tdir)
    e = call_err(files.remove_dirs, [x + suffix])
    assert e.name == ERR_INVALID_PATH
    assert tree_snapshot(tdir) == before


def test_remove_dirs_empty_and_invalid(files, tdir):
    files.remove_dirs([])
    assert call_err(files.remove_dirs, [""]).name == ERR_INVALID_PATH
    assert call_err(files.remove_dirs, ["$EXECD_TEST_UNDEFINED_VAR"]).name == ERR_INVALID_PATH
    # "/" and friends are checked as uid 65534 in test_files_identity.py (safer when broken).


# =========================================================================== SetPermissions
def test_set_perms_mode(files, tdir):
    f = mkfile(os.path.join(tdir, "f"), b"", 0o644)
    d = os.path.join(tdir, "d")
    os.mkdir(d)
    files.set_perms([(f, 0o640, "", ""), (d, 0o700, "", "")])
    assert mode_of(f) == 0o640
    assert mode_of(d) == 0o700
    assert ids_of(f) == (0, 0)


def test_set_perms_special_bits(files, tdir):
    f = mkfile(os.path.join(tdir, "f"), b"", 0o644)
    d = os.path.join(tdir, "d")
    os.mkdir(d)
    files.set_perms([(f, 0o4750, "", ""), (d, 0o1777, "", "")])
    assert mode_of(f) == 0o4750
    assert mode_of(d) == 0o1777


def test_set_perms_owner_group_by_name(files, tdir):
    f = mkfile(os.path.join(tdir, "f"), b"", 0o644)
    files.set_perms([(f, 0, user_name(NOBODY), group_name(NOBODY))])
    assert ids_of(f) == (NOBODY, NOBODY)
    assert mode_of(f) == 0o644  # mode 0: unchanged
    files.set_perms([(f, 0, "root", "root")])
    assert ids_of(f) == (0, 0)


def test_set_perms_owner_group_by_number(files, tdir):
    f = mkfile(os.path.join(tdir, "f"), b"", 0o600)
    files.set_perms([(f, 0, "65534", "")])
    assert ids_of(f) == (NOBODY, 0)  # empty group: unchanged
    files.set_perms([(f, 0, "", "65534")])
    assert ids_of(f) == (NOBODY, NOBODY)
    files.set_perms([(f, 0o604, "0", "0")])
    assert ids_of(f) == (0, 0) and mode_of(f) == 0o604


def test_set_perms_follows_symlinks(files, tdir):
    t = mkfile(os.path.join(tdir, "t"), b"", 0o644)
    ln = os.path.join(tdir, "ln")
    os.symlink("t", ln)
    link_uid = os.lstat(ln).st_uid
    files.set_perms([(ln, 0o600, str(NOBODY), "")])
    assert mode_of(t) == 0o600
    assert ids_of(t)[0] == NOBODY
    assert os.path.islink(ln) and os.lstat(ln).st_uid == link_uid


def test_set_perms_missing_changes_nothing(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"", 0o644)
    b = mkfile(os.path.join(tdir, "b"), b"", 0o644)
    e = call_err(files.set_perms, [(a, 0o600, "65534", "65534"),
                                   (os.path.join(tdir, "missing"), 0o600, "", ""),
                                   (b, 0o600, "65534", "")])
    assert e.name == ERR_NOT_FOUND
    for p in (a, b):
        assert mode_of(p) == 0o644 and ids_of(p) == (0, 0)


@pytest.mark.parametrize("owner,group", [(NO_USER, ""), ("", NO_GROUP), ("65534", NO_GROUP)])
def test_set_perms_unknown_name_changes_nothing(files, tdir, owner, group):
    a = mkfile(os.path.join(tdir, "a"), b"", 0o644)
    b = mkfile(os.path.join(tdir, "b"), b"", 0o644)
    e = call_err(files.set_perms, [(a, 0o600, "65534", "65534"), (b, 0o600, owner, group)])
    assert e.name == ERR_INVALID_ARGUMENT
    for p in (a, b):
        assert mode_of(p) == 0o644 and ids_of(p) == (0, 0)


def test_set_perms_empty_and_invalid(files, tdir):
    files.set_perms([])
    assert call_err(files.set_perms, [("", 0o644, "", "")]).name == ERR_INVALID_PATH


# =========================================================================== Replace
def test_replace_counts_and_content(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"foo bar foo baz foo")
    assert files.replace([(a, "foo", "qux")]) == [3]
    assert read(a) == b"qux bar qux baz qux"


def test_replace_non_overlapping(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"aaa")
    assert files.replace([(a, "aa", "b")]) == [1]
    assert read(a) == b"ba"
    b = mkfile(os.path.join(tdir, "b"), b"aaaa")
    assert files.replace([(b, "aa", "X")]) == [2]
    assert read(b) == b"XX"


def test_replace_new_contains_old(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"aaa")
    assert files.replace([(a, "a", "aa")]) == [3]
    assert read(a) == b"aaaaaa"


def test_replace_several_in_order(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"x x x")
    b = mkfile(os.path.join(tdir, "b"), b"nothing here")
    c = mkfile(os.path.join(tdir, "c"), "héllo wörld".encode())
    d = mkfile(os.path.join(tdir, "d"), b"del-del-")
    assert files.replace([(a, "x", "yy"), (b, "zzz", "q"), (c, "ö", "oe"), (d, "del", "")]) \
        == [3, 0, 1, 2]
    assert read(a) == b"yy yy yy"
    assert read(b) == b"nothing here"
    assert read(c) == "héllo woerld".encode()
    assert read(d) == b"--"


def test_replace_binary_content(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"\x00foo\x00\xff\xfefoo")
    assert files.replace([(a, "foo", "bar!")]) == [2]
    assert read(a) == b"\x00bar!\x00\xff\xfebar!"


def test_replace_no_match_not_rewritten(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"abc")
    os.utime(a, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = os.lstat(a)
    assert files.replace([(a, "zzz", "y")]) == [0]
    after = os.lstat(a)
    assert read(a) == b"abc"
    assert after.st_ino == before.st_ino
    assert after.st_mtime_ns == before.st_mtime_ns
    assert after.st_ctime_ns == before.st_ctime_ns


def test_replace_keeps_mode_and_owner(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"one two", 0o640)
    os.chown(a, NOBODY, NOBODY)
    s = mkfile(os.path.join(tdir, "s"), b"one", 0o4711)
    os.chmod(s, 0o4711)
    assert files.replace([(a, "two", "three"), (s, "one", "1")]) == [1, 1]
    assert read(a) == b"one three"
    assert mode_of(a) == 0o640 and ids_of(a) == (NOBODY, NOBODY)
    assert read(s) == b"1"
    assert mode_of(s) == 0o4711


def test_replace_follows_symlink(files, tdir):
    t = mkfile(os.path.join(tdir, "t"), b"old text", 0o600)
    ln = os.path.join(tdir, "ln")
    os.symlink("t", ln)
    assert files.replace([(ln, "old", "new")]) == [1]
    assert os.path.islink(ln) and os.readlink(ln) == "t"
    assert read(t) == b"new text"
    assert mode_of(t) == 0o600


def test_replace_no_temp_left(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"abc" * 1000)
    files.replace([(a, "b", "BB")])
    assert os.listdir(tdir) == ["a"]


def _untouched(paths):
    return {p: (read(p), os.lstat(p).st_ino, os.lstat(p).st_mtime_ns) for p in paths}


def test_replace_empty_old_touches_nothing(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"foo foo")
    b = mkfile(os.path.join(tdir, "b"), b"bar")
    before = _untouched([a, b])
    e = call_err(files.replace, [(a, "foo", "x"), (b, "", "y")])
    assert e.name == ERR_INVALID_ARGUMENT
    assert _untouched([a, b]) == before
    assert sorted(os.listdir(tdir)) == ["a", "b"]


def test_replace_missing_touches_nothing(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"foo foo")
    before = _untouched([a])
    e = call_err(files.replace, [(a, "foo", "x"), (os.path.join(tdir, "missing"), "a", "b")])
    assert e.name == ERR_NOT_FOUND
    assert _untouched([a]) == before


def test_replace_directory_touches_nothing(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"foo foo")
    d = os.path.join(tdir, "d")
    os.mkdir(d)
    before = _untouched([a])
    e = call_err(files.replace, [(a, "foo", "x"), (d, "a", "b")])
    assert e.name == ERR_IS_DIRECTORY
    assert _untouched([a]) == before


def test_replace_too_big(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"foo")
    before = _untouched([a])
    big = os.path.join(tdir, "big")
    with open(big, "wb") as f:
        f.truncate(64 * MIB + 1)  # sparse
    e = call_err(files.replace, [(a, "foo", "x"), (big, "a", "b")])
    assert e.name == ERR_LIMITS
    assert _untouched([a]) == before
    assert os.path.getsize(big) == 64 * MIB + 1


def test_replace_empty_and_invalid(files, tdir):
    assert files.replace([]) == []
    assert call_err(files.replace, [("", "a", "b")]).name == ERR_INVALID_PATH


def test_move_across_filesystems(files, tdir):
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tdir).st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    a = mkfile(os.path.join(tdir, "a"), b"A")
    dest = os.path.join("/dev/shm", f"execd-files-test-{os.getpid()}-{os.path.basename(tdir)}")
    try:
        e = call_err(files.move, [(a, dest)])
        assert e.name == "System.Error.EXDEV", f"{e.name}: {e.message}"
        assert read(a) == b"A"
        assert not os.path.lexists(dest)
    finally:
        if os.path.lexists(dest):
            os.unlink(dest)
