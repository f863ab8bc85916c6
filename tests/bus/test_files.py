"""org.execd.Execd1.Files: Stat, path expansion, List and Search."""
import os

import pytest

from busclient import (ERR_INVALID_ARGUMENT, ERR_INVALID_PATH, ERR_LIMITS, ERR_NOT_DIRECTORY,
                       ERR_NOT_FOUND)
from filesutil import (NOBODY, call_err, expected_info, group_name, mkfile, unused_id,
                       user_name)


# =========================================================================== Stat
def test_stat_file_all_fields(files, tdir):
    p = mkfile(os.path.join(tdir, "f.txt"), b"hello world", 0o640)
    os.utime(p, ns=(1_600_000_000_123_456_789, 1_700_000_000_987_654_321))
    i = files.stat1(p)
    st = os.lstat(p)
    assert i == expected_info(p, st)
    assert i["type"] == "file"
    assert i["size"] == 11
    assert i["mode"] == 0o640
    assert i["owner"] == "root" and i["group"] == "root"
    assert i["mtime"] == 1_700_000_000_987_654_321 == st.st_mtime_ns
    assert i["ctime"] == st.st_ctime_ns


def test_stat_keeps_order(files, tdir):
    a = mkfile(os.path.join(tdir, "a"), b"a")
    b = mkfile(os.path.join(tdir, "b"), b"bb")
    d = os.path.join(tdir, "d")
    os.mkdir(d)
    got = files.stat([b, d, a, b])
    assert [i["path"] for i in got] == [b, d, a, b]
    assert [i["size"] for i in got[:1] + got[2:]] == [2, 1, 2]
    assert got[1]["type"] == "directory"


def test_stat_empty_list(files):
    assert files.stat([]) == []


def test_stat_types(files, tdir):
    f = mkfile(os.path.join(tdir, "file"), b"x")
    d = os.path.join(tdir, "dir")
    os.mkdir(d, 0o750)
    os.chmod(d, 0o750)
    fifo = os.path.join(tdir, "fifo")
    os.mkfifo(fifo, 0o600)
    ln = os.path.join(tdir, "link")
    os.symlink("file", ln)
    got = files.stat([f, d, fifo, ln])
    assert [i["type"] for i in got] == ["file", "directory", "other", "symlink"]
    for path, i in zip([f, d, fifo, ln], got):
        assert i == expected_info(path)
    assert got[1]["mode"] == 0o750
    assert got[2]["mode"] == 0o600


def test_stat_symlink_is_not_followed(files, tdir):
    target = mkfile(os.path.join(tdir, "target-file"), b"x" * 1000, 0o600)
    ln = os.path.join(tdir, "ln")
    os.symlink(target, ln)  # absolute target text
    dangling = os.path.join(tdir, "dangling")
    os.symlink("does/not/exist", dangling)
    dirlink = os.path.join(tdir, "dirlink")
    os.symlink(".", dirlink)
    i, j, k = files.stat([ln, dangling, dirlink])
    assert i["type"] == "symlink"
    assert i["size"] == len(target.encode())  # length of the target text, not 1000
    assert i["mtime"] == os.lstat(ln).st_mtime_ns
    assert i["ctime"] == os.lstat(ln).st_ctime_ns
    assert i == expected_info(ln)
    assert j["type"] == "symlink" and j["size"] == len("does/not/exist")
    assert k["type"] == "symlink" and k["size"] == 1


def test_stat_special_mode_bits(files, tdir):
    f = mkfile(os.path.join(tdir, "suid"), b"#!/bin/sh\n")
    os.chmod(f, 0o4755)
    g = mkfile(os.path.join(tdir, "sgid"), b"")
    os.chmod(g, 0o2711)
    d = os.path.join(tdir, "sticky")
    os.mkdir(d)
    os.chmod(d, 0o1777)
    i, j, k = files.stat([f, g, d])
    assert i["mode"] == 0o4755
    assert j["mode"] == 0o2711
    assert k["mode"] == 0o1777
    assert k["type"] == "directory"


def test_stat_owner_group_names(files, tdir):
    f = mkfile(os.path.join(tdir, "nob"), b"")
    os.chown(f, NOBODY, NOBODY)
    i = files.stat1(f)
    assert i["owner"] == user_name(NOBODY)
    assert i["group"] == group_name(NOBODY)
    assert i["owner"] != str(NOBODY), "nobody has a passwd entry: a name is expected"


def test_stat_unknown_ids_are_numbers(files, tdir):
    n = unused_id()
    f = mkfile(os.path.join(tdir, "orphan"), b"")
    os.chown(f, n, n)
    i = files.stat1(f)
    assert i["owner"] == str(n)
    assert i["group"] == str(n)


def test_stat_times_in_ns(files, tdir):
    d = os.path.join(tdir, "d")
    os.mkdir(d)
    os.utime(d, ns=(5, 1_234_567_891_234_567_891))
    ln = os.path.join(tdir, "l")
    os.symlink("d", ln)
    os.utime(ln, ns=(7, 987_654_321_000_000_001), follow_symlinks=False)
    i, j = files.stat([d, ln])
    assert i["mtime"] == 1_234_567_891_234_567_891
    assert j["mtime"] == 987_654_321_000_000_001
    assert i["ctime"] == os.lstat(d).st_ctime_ns
    assert j["ctime"] == os.lstat(ln).st_ctime_ns


def test_stat_not_found_names_first_missing(files, tdir):
    a = mkfile(os.path.join(tdir, "present"), b"")
    m1 = os.path.join(tdir, "missing-first")
    m2 = os.path.join(tdir, "missing-second")
    e = call_err(files.stat, [a, m1, m2])
    assert e.name == ERR_NOT_FOUND
    assert "missing-first" in e.message
    assert "missing-second" not in e.message


def test_stat_missing_below_file(files, tdir):
    a = mkfile(os.path.join(tdir, "plain"), b"")
    e = call_err(files.stat, [os.path.join(a, "child")])
    # ENOTDIR on lookup: the path does not exist
    assert e.name in (ERR_NOT_FOUND, ERR_NOT_DIRECTORY)


@pytest.mark.parametrize("bad", ["", "$EXECD_TEST_UNDEFINED_VAR/x", "${EXECD_TEST_UNDEFINED_VAR}",
                                 "/tmp/$EXECD_TEST_UNDEFINED_VAR", "/" + "a" * 4999,
                                 "/" + "b" * 4096])
def test_stat_invalid_path(files, bad):
    assert call_err(files.stat, [bad]).name == ERR_INVALID_PATH


def test_stat_invalid_path_after_valid(files, tdir):
    assert call_err(files.stat, [tdir, ""]).name == ERR_INVALID_PATH


def test_stat_path_is_cleaned(files, tdir):
    os.mkdir(os.path.join(tdir, "sub"))
    f = mkfile(os.path.join(tdir, "y"), b"1")
    got = files.stat([os.path.join(tdir, "sub", "..", "y"),
                      tdir + "//sub/",
                      tdir + "/./sub/./../y",
                      tdir + "//y"])
    assert [i["path"] for i in got] == [f, os.path.join(tdir, "sub"), f, f]


def test_stat_relative_path_is_absolute_against_daemon_cwd(env, files, tdir):
    cwd = os.readlink(f"/proc/{env.pid}/cwd")
    i = files.stat1(".")
    assert i["path"] == cwd
    assert i["type"] == "directory"
    # Enough ".." to climb from the daemon's cwd to "/", then down into tdir.
    f = mkfile(os.path.join(tdir, "rel"), b"r")
    os.mkdir(os.path.join(tdir, "sub"))
    rel = "../" * (cwd.count("/") + 2) + tdir.lstrip("/") + "/sub/../rel"
    assert not rel.startswith("/")
    assert files.stat1(rel)["path"] == f


def test_stat_home_expansion(env, files):
    home = os.path.realpath(env.home)
    assert files.stat1("~")["path"] == home
    assert files.stat1("~/sub")["path"] == os.path.join(home, "sub")
    assert files.stat1("$HOME/sub")["path"] == os.path.join(home, "sub")
    assert files.stat1("${HOME}/sub/")["path"] == os.path.join(home, "sub")
    assert files.stat1("~")["type"] == "directory"


def test_stat_special_parameters_expand_to_nothing(files, tdir):
    f = mkfile(os.path.join(tdir, "f"), b"")
    assert files.stat1(tdir + "/$1f")["path"] == f
    assert files.stat1(tdir + "/$#$?f")["path"] == f


# =========================================================================== List
@pytest.fixture
def ltree(tdir):
    """
    B/            (empty dir)
    a/x.txt
    a/y/deep/w
    a/y/z.txt
    b.txt
    c.txt
    link -> a     (symlink to a directory)
    """
    os.mkdir(os.path.join(tdir, "B"))
    mkfile(os.path.join(tdir, "a", "x.txt"), b"x")
    mkfile(os.path.join(tdir, "a", "y", "deep", "w"), b"w")
    mkfile(os.path.join(tdir, "a", "y", "z.txt"), b"z")
    mkfile(os.path.join(tdir, "b.txt"), b"bb")
    mkfile(os.path.join(tdir, "c.txt"), b"ccc")
    os.symlink("a", os.path.join(tdir, "link"))
    return tdir


def rels(root, infos):
    return [os.path.relpath(i["path"], root) for i in infos]


def test_list_depth_0(files, ltree):
    assert files.list(ltree, 0) == []


def test_list_depth_1(files, ltree):
    got = files.list(ltree, 1)
    assert rels(ltree, got) == ["B", "a", "b.txt", "c.txt", "link"]
    for i in got:
        assert i == expected_info(i["path"])
    assert got[-1]["type"] == "symlink"


def test_list_depth_2(files, ltree):
    assert rels(ltree, files.list(ltree, 2)) == [
        "B", "a", "a/x.txt", "a/y", "b.txt", "c.txt", "link"]


def test_list_depth_3_and_more(files, ltree):
    want = ["B", "a", "a/x.txt", "a/y", "a/y/deep", "a/y/z.txt", "b.txt", "c.txt", "link"]
    assert rels(ltree, files.list(ltree, 3)) == want
    full = want[:5] + ["a/y/deep/w"] + want[5:]
    assert rels(ltree, files.list(ltree, 4)) == full
    assert rels(ltree, files.list(ltree, 100)) == full


def test_list_entry_fields(files, ltree):
    got = {os.path.relpath(i["path"], ltree): i for i in files.list(ltree, 9)}
    assert got["a/y"]["type"] == "directory"
    assert got["c.txt"]["size"] == 3 and got["c.txt"]["type"] == "file"
    assert got["link"]["size"] == 1
    for i in got.values():
        assert i == expected_info(i["path"])


def test_list_bytewise_order(files, tdir):
    names = ["é", "a_", "a.", "Z", "A", "_", "a", "10", "9", "a b"]
    for n in names:
        mkfile(os.path.join(tdir, n), b"")
    want = sorted(names, key=lambda n: n.encode())
    assert want[:4] == ["10", "9", "A", "Z"]
    assert rels(tdir, files.list(tdir, 1)) == want


def test_list_symlink_to_dir_not_traversed(files, tdir):
    outside = os.path.join(tdir, "outside")
    mkfile(os.path.join(outside, "secret"), b"s")
    root = os.path.join(tdir, "root")
    os.mkdir(root)
    os.symlink(outside, os.path.join(root, "l"))
    got = files.list(root, 5)
    assert rels(root, got) == ["l"]
    assert got[0]["type"] == "symlink"


def test_list_root_symlink_is_invalid(files, ltree):
    assert call_err(files.list, os.path.join(ltree, "link"), 1).name == ERR_INVALID_ARGUMENT


def test_list_root_file_is_not_directory(files, ltree):
    assert call_err(files.list, os.path.join(ltree, "b.txt"), 1).name == ERR_NOT_DIRECTORY


def test_list_root_missing(files, ltree):
    assert call_err(files.list, os.path.join(ltree, "nope"), 1).name == ERR_NOT_FOUND


def test_list_invalid_path(files):
    assert call_err(files.list, "", 1).name == ERR_INVALID_PATH
    assert call_err(files.list, "$EXECD_TEST_UNDEFINED_VAR", 1).name == ERR_INVALID_PATH


def test_list_empty_dir(files, tdir):
    assert files.list(tdir, 3) == []


def test_list_cleans_root(files, ltree):
    got = files.list(ltree + "/a/../a/", 1)
    assert [i["path"] for i in got] == [os.path.join(ltree, "a", "x.txt"),
                                        os.path.join(ltree, "a", "y")]


# =========================================================================== Search
@pytest.fixture
def stree(tdir):
    """
    B.txt a.txt ab b.txt ba c.log dirlink->sub flink->a.txt p.fifo
    sub/d.txt sub/e.md sub/sub2/f.txt  x
    emptydir/
    """
    for n in ["B.txt", "a.txt", "ab", "b.txt", "ba", "c.log", "x"]:
        mkfile(os.path.join(tdir, n), n.encode())
    mkfile(os.path.join(tdir, "sub", "d.txt"), b"d")
    mkfile(os.path.join(tdir, "sub", "e.md"), b"e")
    mkfile(os.path.join(tdir, "sub", "sub2", "f.txt"), b"f")
    os.mkdir(os.path.join(tdir, "emptydir"))
    os.symlink("sub", os.path.join(tdir, "dirlink"))
    os.symlink("a.txt", os.path.join(tdir, "flink"))
    os.mkfifo(os.path.join(tdir, "p.fifo"))
    return tdir


ALL = ["B.txt", "a.txt", "ab", "b.txt", "ba", "c.log", "dirlink", "flink", "p.fifo",
       "sub/d.txt", "sub/e.md", "sub/sub2/f.txt", "x"]


@pytest.mark.parametrize("pattern,want", [
    ("*", ALL),
    ("**", ALL),
    ("", ALL),
    ("*.txt", ["B.txt", "a.txt", "b.txt", "sub/d.txt", "sub/sub2/f.txt"]),
    ("**/*.txt", ["B.txt", "a.txt", "b.txt", "sub/d.txt", "sub/sub2/f.txt"]),
    ("sub/*.txt", []),
    ("*/*", []),
    ("?", ["x"]),
    ("??", ["ab", "ba"]),
    ("?b", ["ab"]),
    ("[a-z].txt", ["a.txt", "b.txt", "sub/d.txt", "sub/sub2/f.txt"]),
    ("[A-Z].txt", ["B.txt"]),
    ("[!a].txt", ["B.txt", "b.txt", "sub/d.txt", "sub/sub2/f.txt"]),
    ("[^a].txt", ["B.txt", "b.txt", "sub/d.txt", "sub/sub2/f.txt"]),
    ("[ab]", []),
    ("[ab][ab]", ["ab", "ba"]),
    ("{a,b}.txt", ["a.txt", "b.txt"]),
    ("{a,{b,c}}.*", ["a.txt", "b.txt", "c.log"]),
    ("{x,ab}", ["ab", "x"]),
    ("*.{md,log}", ["c.log", "sub/e.md"]),
    ("!(*.txt)", ["ab", "ba", "c.log", "dirlink", "flink", "p.fifo", "sub/e.md", "x"]),
    ("sub", []),            # directories are never returned
    ("*sub*", []),
    ("emptydir", []),
    ("dirlink", ["dirlink"]),
    ("*link", ["dirlink", "flink"]),
    ("A.TXT", []),          # case-sensitive
    ("nothing*", []),
    ("*{.txt,.log}", ["B.txt", "a.txt", "b.txt", "c.log", "sub/d.txt", "sub/sub2/f.txt"]),
    ("[a-c]?", ["ab", "ba"]),
    ("a*", ["a.txt", "ab"]),
    ("*.*.*", []),
    ("**.md", ["sub/e.md"]),
])
def test_search_patterns(files, stree, pattern, want):
    got = files.search(stree, pattern)
    assert rels(stree, got) == want


def test_search_result_fields(files, stree):
    got = {os.path.relpath(i["path"], stree): i for i in files.search(stree, "*")}
    assert got["dirlink"]["type"] == "symlink"
    assert got["flink"]["type"] == "symlink"
    assert got["flink"]["size"] == len("a.txt")
    assert got["p.fifo"]["type"] == "other"
    for i in got.values():
        assert i == expected_info(i["path"])


def test_search_does_not_follow_symlinked_dirs(files, stree):
    got = rels(stree, files.search(stree, "d.txt"))
    assert got == ["sub/d.txt"]  # not dirlink/d.txt


def test_search_escapes(files, tdir):
    for n in ["q*", "qz", "q?", "[x]", "x", "a{b", "\\"]:
        mkfile(os.path.join(tdir, n), b"")
    assert rels(tdir, files.search(tdir, "q*")) == ["q*", "q?", "qz"]
    assert rels(tdir, files.search(tdir, "q\\*")) == ["q*"]
    assert rels(tdir, files.search(tdir, "q\\?")) == ["q?"]
    assert rels(tdir, files.search(tdir, "\\[x\\]")) == ["[x]"]
    assert rels(tdir, files.search(tdir, "a\\{b")) == ["a{b"]
    assert rels(tdir, files.search(tdir, "\\\\")) == ["\\"]
    assert rels(tdir, files.search(tdir, "\\q\\z")) == ["qz"]


def test_search_bracket_close_first_is_literal(files, tdir):
    for n in ["]", "a", "b"]:
        mkfile(os.path.join(tdir, n), b"")
    assert rels(tdir, files.search(tdir, "[]a]")) == ["]", "a"]


@pytest.mark.parametrize("pattern", ["[", "[abc", "{a,b", "a\\", "!", "!("])
def test_search_malformed_pattern(files, stree, pattern):
    assert call_err(files.search, stree, pattern).name == ERR_INVALID_ARGUMENT


@pytest.mark.parametrize("pattern", ["[", "{a,b", "a\\"])
def test_search_malformed_pattern_on_empty_tree(files, tdir, pattern):
    assert call_err(files.search, tdir, pattern).name == ERR_INVALID_ARGUMENT


def test_search_root_is_file(files, stree):
    a = os.path.join(stree, "a.txt")
    assert [i["path"] for i in files.search(a, "*.txt")] == [a]
    assert [i["path"] for i in files.search(a, "a.*")] == [a]
    assert files.search(a, "*.log") == []


def test_search_root_is_symlink(files, stree):
    dl = os.path.join(stree, "dirlink")
    got = files.search(dl, "*")
    assert [i["path"] for i in got] == [dl]
    assert got[0]["type"] == "symlink"
    assert files.search(dl, "*.txt") == []
    fl = os.path.join(stree, "flink")
    assert [i["path"] for i in files.search(fl, "flink")] == [fl]


def test_search_root_missing(files, tdir):
    assert call_err(files.search, os.path.join(tdir, "nope"), "*").name == ERR_NOT_FOUND


def test_search_invalid_path(files):
    assert call_err(files.search, "", "*").name == ERR_INVALID_PATH
    assert call_err(files.search, "$EXECD_TEST_UNDEFINED_VAR/x", "*").name == ERR_INVALID_PATH


def test_search_empty_tree(files, tdir):
    os.mkdir(os.path.join(tdir, "d"))
    assert files.search(tdir, "*") == []


def test_search_walk_order_bytewise(files, tdir):
    for n in ["b/1", "a/2", "A/3", "_/4", "é/5", "a.txt", "Z"]:
        mkfile(os.path.join(tdir, n), b"")
    assert rels(tdir, files.search(tdir, "*")) == ["A/3", "Z", "_/4", "a/2", "a.txt",
                                                   "b/1", "é/5"]


# =========================================================================== result limits
@pytest.fixture(scope="module")
def huge_tree():
    """A directory with 100001 empty files (f000000 ... f100000)."""
    import shutil
    import tempfile
    base = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"  # tmpfs: fast to fill
    d = os.path.realpath(tempfile.mkdtemp(prefix="execd-files-huge-", dir=base))
    for k in range(100001):
        os.close(os.open(os.path.join(d, f"f{k:06d}"), os.O_CREAT | os.O_WRONLY, 0o644))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_list_and_search_result_limits(files, huge_tree):
    assert call_err(files.list, huge_tree, 1).name == ERR_LIMITS
    assert call_err(files.search, huge_tree, "*").name == ERR_LIMITS
    assert len(files.search(huge_tree, "f09*")) == 10000
    os.unlink(os.path.join(huge_tree, "f100000"))
    got = files.c.files("List", "su", (huge_tree, 1), timeout=60)[0]
    assert len(got) == 100000
    assert got[0][0] == os.path.join(huge_tree, "f000000")
    assert got[-1][0] == os.path.join(huge_tree, "f099999")
    got = files.c.files("Search", "ss", (huge_tree, "f*"), timeout=60)[0]
    assert len(got) == 100000


def test_list_and_search_non_utf8_names(env, files, tdir):
    """D-Bus strings are UTF-8: a non-UTF-8 file name must not break the listing (or the
    daemon)."""
    with open(os.path.join(tdir.encode(), b"bad-\xff\xfe.txt"), "wb"):
        pass
    mkfile(os.path.join(tdir, "good.txt"), b"")
    got = files.list(tdir, 1)
    assert len(got) == 2
    assert got[1]["path"] == os.path.join(tdir, "good.txt")
    assert got[0]["path"].startswith(tdir + "/bad-") and got[0]["type"] == "file"
    got = files.search(tdir, "*.txt")
    assert len(got) == 2 and got[1]["path"] == os.path.join(tdir, "good.txt")
    assert env.daemon.proc.poll() is None
