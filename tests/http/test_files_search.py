"""GET /files/search?path=&pattern= : base-name glob matching, walk order, symlinks, errors."""
import os

import pytest

from execd_http import assert_error
from files_common import (  # noqa: F401 -- fixtures
    UNDEFINED_VAR, check_info, d, fs, fs_cwd, json_ok, q, write)

ALL = [".hidden.txt", "A.TXT", "B.txt", "a*b", "a.txt", "aXb", "b.txt", "c.log", "link_to_a",
       "link_to_sub", "sub/d.txt", "sub/deeper/f.txt", "sub/deeper/g.md", "sub/e.md", "x1.txt",
       "xy.txt"]


def make_tree(d):
    for name in [".hidden.txt", "A.TXT", "B.txt", "a*b", "a.txt", "aXb", "b.txt", "c.log",
                 "sub/d.txt", "sub/deeper/f.txt", "sub/deeper/g.md", "sub/e.md", "x1.txt",
                 "xy.txt"]:
        write(f"{d}/{name}", name.encode())
    os.symlink("a.txt", f"{d}/link_to_a")
    os.symlink(f"{d}/sub", f"{d}/link_to_sub")
    os.mkdir(f"{d}/z")
    os.mkdir(f"{d}/sub/empty")
    return d


def search(fs, path, pattern=None, raw_pattern=None):
    url = f"/files/search?path={q(path)}"
    if pattern is not None:
        url += "&pattern=" + q(pattern).replace("/", "%2F")
    if raw_pattern is not None:
        url += "&pattern=" + raw_pattern
    return fs.get(url)


def found(fs, root, pattern=None, raw_pattern=None):
    body = json_ok(search(fs, root, pattern, raw_pattern))
    assert isinstance(body, list), body
    for e in body:
        check_info(e, e["path"])
        assert e["type"] != "directory", e
    return body


def rel(root, body):
    return [os.path.relpath(e["path"], root) for e in body]


def test_search_missing_path_query(fs):
    assert_error(fs.get("/files/search"), 400, "MISSING_QUERY",
                 message="missing query parameter 'path'")
    assert_error(fs.get("/files/search?pattern=*"), 400, "MISSING_QUERY",
                 message="missing query parameter 'path'")


def test_search_missing_root(fs, d):
    assert_error(search(fs, f"{d}/nope", "*"), 404, "FILE_NOT_FOUND")


def test_search_invalid_root_path(fs):
    assert_error(search(fs, f"/tmp/${UNDEFINED_VAR}", "*"), 400, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize("pattern", [None, "", "**", "*", "**/*", "**/**"])
def test_search_everything_in_walk_order(fs, d, pattern):
    make_tree(d)
    body = found(fs, d, pattern)
    assert rel(d, body) == ALL
    for e in body:
        check_info(e, e["path"])
    by = {os.path.relpath(e["path"], d): e for e in body}
    assert by["link_to_sub"]["type"] == "symlink"
    assert by["link_to_a"]["type"] == "symlink"
    assert by["a.txt"]["type"] == "file"


@pytest.mark.parametrize("pattern,expected", [
    ("*.txt", [".hidden.txt", "B.txt", "a.txt", "b.txt", "sub/d.txt", "sub/deeper/f.txt",
               "x1.txt", "xy.txt"]),
    ("**/*.txt", [".hidden.txt", "B.txt", "a.txt", "b.txt", "sub/d.txt", "sub/deeper/f.txt",
                  "x1.txt", "xy.txt"]),
    ("sub/*.txt", []),
    ("sub/d.txt", []),
    ("*/d.txt", []),
    ("{a,b}.txt", ["a.txt", "b.txt"]),
    ("{a,{b,x1}}.txt", ["a.txt", "b.txt", "x1.txt"]),
    ("*.{md,log}", ["c.log", "sub/deeper/g.md", "sub/e.md"]),
    ("[a-c].*", ["a.txt", "b.txt", "c.log"]),
    ("[A-Z].*", ["A.TXT", "B.txt"]),
    ("[!a-c].txt", ["B.txt", "sub/d.txt", "sub/deeper/f.txt"]),
    ("[^a-c].txt", ["B.txt", "sub/d.txt", "sub/deeper/f.txt"]),
    ("[]a].txt", ["a.txt"]),
    ("?.txt", ["B.txt", "a.txt", "b.txt", "sub/d.txt", "sub/deeper/f.txt"]),
    ("??.txt", ["x1.txt", "xy.txt"]),
    ("a?b", ["a*b", "aXb"]),
    ("a*b", ["a*b", "aXb"]),
    ("a\\*b", ["a*b"]),
    ("a[*]b", ["a*b"]),
    ("\\a.txt", ["a.txt"]),
    ("!(*.txt)", ["A.TXT", "a*b", "aXb", "c.log", "link_to_a", "link_to_sub", "sub/deeper/g.md",
                  "sub/e.md"]),
    ("link_*", ["link_to_a", "link_to_sub"]),
    ("sub", []),
    ("deeper", []),
    ("z", []),
    ("A.TXT", ["A.TXT"]),
    ("a.TXT", []),
    ("f.txt", ["sub/deeper/f.txt"]),
    ("*.md", ["sub/deeper/g.md", "sub/e.md"]),
    (".*", [".hidden.txt"]),
])
def test_search_pattern(fs, d, pattern, expected):
    make_tree(d)
    assert rel(d, found(fs, d, pattern)) == expected


def test_search_escaped_star_raw_encoding(fs, d):
    make_tree(d)
    # a\*b with the backslash and the star percent-encoded, as a browser would send it
    assert rel(d, found(fs, d, raw_pattern="a%5C%2Ab")) == ["a*b"]
    # the star itself needs no encoding in a query
    assert rel(d, found(fs, d, raw_pattern="a%5C*b")) == ["a*b"]


def test_search_plus_and_space(fs, d):
    write(f"{d}/x y.txt", b"1")
    write(f"{d}/x+y.txt", b"2")
    write(f"{d}/x&y.txt", b"3")
    assert rel(d, found(fs, d, raw_pattern="x+y.txt")) == ["x y.txt"]
    assert rel(d, found(fs, d, raw_pattern="x%20y.txt")) == ["x y.txt"]
    assert rel(d, found(fs, d, raw_pattern="x%2By.txt")) == ["x+y.txt"]
    assert rel(d, found(fs, d, raw_pattern="x%26y.txt")) == ["x&y.txt"]
    assert rel(d, found(fs, d, "x{+,&}y.txt")) == ["x&y.txt", "x+y.txt"]


def test_search_non_ascii(fs, d):
    write(f"{d}/测试文件.txt", b"1")
    write(f"{d}/测试.md", b"2")
    assert rel(d, found(fs, d, "测试*.txt")) == ["测试文件.txt"]
    assert rel(d, found(fs, d, "测试??.txt")) == ["测试文件.txt"]


@pytest.mark.parametrize("pattern", ["[", "[abc", "{a,b", "a\\", "!", "!(", "*.{txt", "x["])
def test_search_malformed_pattern(fs, d, pattern):
    make_tree(d)
    assert_error(search(fs, d, pattern), 400, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize("pattern", ["[", "[abc", "{a,b", "a\\", "!", "!("])
def test_search_malformed_pattern_empty_tree(fs, d, pattern):
    assert_error(search(fs, d, pattern), 400, "INVALID_REQUEST_BODY")


def test_search_empty_directory(fs, d):
    os.mkdir(f"{d}/only-dirs")
    os.mkdir(f"{d}/only-dirs/sub")
    assert found(fs, f"{d}/only-dirs") == []
    assert found(fs, f"{d}/only-dirs", "*.txt") == []


def test_search_symlinks_not_followed(fs, d):
    make_tree(d)
    body = found(fs, d, "d.txt")
    assert rel(d, body) == ["sub/d.txt"], "a symlinked directory was walked"
    # even a loop is harmless
    os.symlink(d, f"{d}/sub/loop")
    assert rel(d, found(fs, d, "loop")) == ["sub/loop"]


def test_search_root_is_a_file(fs, d):
    p = write(f"{d}/a.txt", b"x")
    body = found(fs, p, "*.txt")
    assert [e["path"] for e in body] == [p]
    check_info(body[0], p)
    assert found(fs, p, "*.log") == []
    assert [e["path"] for e in found(fs, p)] == [p]


def test_search_root_is_a_symlink(fs, d):
    make_tree(d)
    body = found(fs, f"{d}/link_to_sub")
    assert [e["path"] for e in body] == [f"{d}/link_to_sub"], "the symlink root was followed"
    assert body[0]["type"] == "symlink"
    assert found(fs, f"{d}/link_to_sub", "*.txt") == []
    body = found(fs, f"{d}/link_to_a", "link_*")
    assert [e["path"] for e in body] == [f"{d}/link_to_a"]


def test_search_root_spellings(fs, d):
    make_tree(d)
    for root in (f"{d}/", f"{d}//", f"{d}/./sub/..", f"/{d}"):
        body = found(fs, root, "*.md")
        assert [e["path"] for e in body] == [f"{d}/sub/deeper/g.md", f"{d}/sub/e.md"], root


def test_search_relative_root(fs, fs_cwd):
    name = "search-rel-" + os.urandom(4).hex()
    write(f"{fs_cwd}/{name}/x.txt", b"1")
    body = found(fs, name, "*.txt")
    assert [e["path"] for e in body] == [f"{fs_cwd}/{name}/x.txt"]


def test_search_byte_order(fs, d):
    names = ["b", "B", "_", "a-b", "a.b", "a", "Z", "ä", "aa", "0"]
    for n in names:
        write(f"{d}/{n}", b"")
    want = sorted(names, key=lambda n: n.encode())
    assert rel(d, found(fs, d)) == want


def test_search_other_types(fs, d):
    os.mkfifo(f"{d}/fifo")
    write(f"{d}/file", b"")
    body = found(fs, d)
    assert [(os.path.basename(e["path"]), e["type"]) for e in body] == [("fifo", "other"),
                                                                         ("file", "file")]


def test_search_tree_with_non_utf8_name(fs, d):
    write(f"{d}/sub/good.txt", b"g")
    with open(os.fsencode(d) + b"/sub/bad-\xff.txt", "wb") as f:
        f.write(b"b")
    r = search(fs, d, "good.txt")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert [e["path"] for e in r.json()] == [f"{d}/sub/good.txt"]
    r = search(fs, d, "*.txt")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    paths = [e["path"] for e in r.json()]
    assert len(paths) == 2 and paths[1] == f"{d}/sub/good.txt", paths
