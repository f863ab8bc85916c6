"""GET /files/download: headers, Content-Disposition, conditional requests, Range."""
import email.utils
import os

import pytest

from execd_http import assert_error, is_json
from files_common import (  # noqa: F401 -- fixtures
    SUBST_VALUE, SUBST_VAR, UNDEFINED_VAR, d, fs, fs_cwd, q, write)

TEN = b"0123456789"


def download(fs, path, headers=None, **kw):
    return fs.get(f"/files/download?path={q(path)}", headers=headers, **kw)


def http_date(p):
    return email.utils.formatdate(int(os.stat(p).st_mtime), usegmt=True)


def assert_file_headers(r, p, length):
    assert r.headers.get("Content-Type") == "application/octet-stream", r.headers
    assert r.headers.get("Content-Length") == str(length), r.headers
    assert r.headers.get("Accept-Ranges") == "bytes", r.headers
    assert r.headers.get("Last-Modified") == http_date(p), r.headers
    cd = r.headers.get("Content-Disposition", "")
    assert cd.startswith("attachment; filename="), r.headers


def assert_416(r, size):
    assert r.status_code == 416, (r.status_code, r.headers, r.content[:200])
    assert is_json(r), r.headers
    assert r.headers.get("Content-Range") == f"bytes */{size}", r.headers
    assert r.headers.get("Content-Length") == str(len(r.content)), r.headers
    body = r.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == "RANGE_NOT_SATISFIABLE", body
    assert isinstance(body["message"], str) and body["message"], body


# ------------------------------------------------------------------------------ basics
def test_download_missing_query(fs):
    assert_error(fs.get("/files/download"), 400, "MISSING_QUERY",
                 message="missing query parameter 'path'")
    assert_error(fs.get("/files/download?paths=/etc/hostname"), 400, "MISSING_QUERY",
                 message="missing query parameter 'path'")


def test_download_missing_file(fs, d):
    assert_error(download(fs, f"{d}/nope"), 404, "FILE_NOT_FOUND")
    assert_error(download(fs, f"{d}/no/such/dir/file"), 404, "FILE_NOT_FOUND")


def test_download_dangling_symlink(fs, d):
    os.symlink(f"{d}/nowhere", f"{d}/dangling")
    assert_error(download(fs, f"{d}/dangling"), 404, "FILE_NOT_FOUND")


def test_download_directory(fs, d):
    assert_error(download(fs, d), 400, "INVALID_REQUEST_BODY")
    os.symlink(d, f"{d}/dirlink")
    assert_error(download(fs, f"{d}/dirlink"), 400, "INVALID_REQUEST_BODY")


def test_download_invalid_path(fs):
    assert_error(download(fs, f"/tmp/${UNDEFINED_VAR}/x"), 400, "INVALID_REQUEST_BODY")


def test_download_full(fs, d):
    data = os.urandom(100_000)
    p = write(f"{d}/f.bin", data)
    r = download(fs, p)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.content == data
    assert_file_headers(r, p, len(data))
    assert r.headers["Content-Disposition"] == 'attachment; filename="f.bin"'
    assert "Content-Range" not in r.headers


def test_download_content_disposition_ascii_spaces(fs, d):
    p = write(f"{d}/a b.txt", b"ab")
    r = download(fs, p)
    assert r.status_code == 200 and r.content == b"ab"
    assert r.headers["Content-Disposition"] == 'attachment; filename="a b.txt"'


def test_download_content_disposition_non_ascii(fs, d):
    p = write(f"{d}/测试文件.txt", b"zh")
    r = download(fs, p)
    assert r.status_code == 200 and r.content == b"zh"
    pct = "%E6%B5%8B%E8%AF%95%E6%96%87%E4%BB%B6.txt"
    assert r.headers["Content-Disposition"] == \
        f"attachment; filename=\"{pct}\"; filename*=UTF-8''{pct}"


def test_download_content_disposition_mixed_non_ascii(fs, d):
    p = write(f"{d}/résumé 1.pdf", b"cv")
    r = download(fs, p)
    assert r.status_code == 200
    pct = "r%C3%A9sum%C3%A9%201.pdf"
    assert r.headers["Content-Disposition"] == \
        f"attachment; filename=\"{pct}\"; filename*=UTF-8''{pct}"


def test_download_special_characters_in_query(fs, d):
    for name in ["x+y.txt", "p&q=r%20s.txt", "a#b?c.txt"]:
        p = write(f"{d}/{name}", name.encode())
        r = download(fs, p)
        assert r.status_code == 200, (name, r.status_code, r.text)
        assert r.content == name.encode()
        assert r.headers["Content-Disposition"] == f'attachment; filename="{name}"'


def test_download_plus_is_space(fs, d):
    write(f"{d}/x y.txt", b"space")
    write(f"{d}/x+y.txt", b"plus")
    r = fs.get("/files/download?path=" + q(d) + "/x+y.txt")
    assert r.status_code == 200 and r.content == b"space"
    r = fs.get("/files/download?path=" + q(d) + "/x%2By.txt")
    assert r.status_code == 200 and r.content == b"plus"


def test_download_symlink_followed(fs, d):
    p = write(f"{d}/target.txt", b"target")
    os.symlink("target.txt", f"{d}/link.txt")
    r = download(fs, f"{d}/link.txt")
    assert r.status_code == 200 and r.content == b"target"
    assert r.headers.get("Content-Length") == "6"
    assert r.headers.get("Content-Disposition") in ('attachment; filename="link.txt"',
                                                    'attachment; filename="target.txt"')
    assert r.headers.get("Last-Modified") == http_date(p)


def test_download_env_and_relative(fs, d, fs_cwd):
    write(f"{d}/{SUBST_VALUE}/v.txt", b"v")
    r = download(fs, f"{d}/${SUBST_VAR}/v.txt")
    assert r.status_code == 200 and r.content == b"v"
    name = "download-rel-" + os.urandom(4).hex()
    write(f"{fs_cwd}/{name}/r.txt", b"rel")
    r = download(fs, f"{name}/r.txt")
    assert r.status_code == 200 and r.content == b"rel"
    r = download(fs, f"{d}//{SUBST_VALUE}/./v.txt")
    assert r.status_code == 200 and r.content == b"v"


def test_download_empty_file(fs, d):
    p = write(f"{d}/empty", b"")
    r = download(fs, p)
    assert r.status_code == 200
    assert r.content == b""
    assert_file_headers(r, p, 0)


# ------------------------------------------------------------------------------ conditional
def test_download_if_modified_since(fs, d):
    p = write(f"{d}/f", TEN)
    os.utime(p, (1_700_000_000, 1_700_000_000))
    lm = download(fs, p).headers["Last-Modified"]
    assert lm == "Tue, 14 Nov 2023 22:13:20 GMT"
    r = download(fs, p, headers={"If-Modified-Since": lm})
    assert r.status_code == 304, (r.status_code, r.headers)
    assert r.content == b""
    later = email.utils.formatdate(1_700_000_100, usegmt=True)
    assert download(fs, p, headers={"If-Modified-Since": later}).status_code == 304
    earlier = email.utils.formatdate(1_699_999_999, usegmt=True)
    r = download(fs, p, headers={"If-Modified-Since": earlier})
    assert r.status_code == 200 and r.content == TEN


def test_download_if_modified_since_subsecond_mtime(fs, d):
    """Last-Modified has whole seconds; a file modified within that second is not newer."""
    p = write(f"{d}/f", TEN)
    os.utime(p, ns=(1_700_000_000_900_000_000,) * 2)
    r = download(fs, p)
    assert r.headers["Last-Modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    r = download(fs, p, headers={"If-Modified-Since": r.headers["Last-Modified"]})
    assert r.status_code == 304


def test_download_if_modified_since_garbage_ignored(fs, d):
    p = write(f"{d}/f", TEN)
    r = download(fs, p, headers={"If-Modified-Since": "not a date"})
    assert r.status_code == 200 and r.content == TEN


# ------------------------------------------------------------------------------ Range
@pytest.mark.parametrize("rng,start,end", [
    ("bytes=0-9", 0, 9),
    ("bytes=0-0", 0, 0),
    ("bytes=2-5", 2, 5),
    ("bytes=5-", 5, 99),
    ("bytes=99-", 99, 99),
    ("bytes=-3", 97, 99),
    ("bytes=-100", 0, 99),
    ("bytes=-999", 0, 99),
    ("bytes=90-150", 90, 99),
    ("bytes=0-99999999999999", 0, 99),
    ("bytes=0-1,4-5", 0, 1),
    ("bytes=200-300,2-3", 2, 3),
    ("bytes=100-,150-,-2", 98, 99),
    ("bytes= 3-4", 3, 4),
    ("bytes=3-4 , 6-7", 3, 4),
])
def test_download_range(fs, d, rng, start, end):
    data = bytes(range(100))
    p = write(f"{d}/r.bin", data)
    r = download(fs, p, headers={"Range": rng})
    assert r.status_code == 206, (rng, r.status_code, r.headers, r.content[:100])
    assert r.content == data[start:end + 1], rng
    assert r.headers.get("Content-Range") == f"bytes {start}-{end}/100", r.headers
    assert r.headers.get("Content-Length") == str(end - start + 1), r.headers
    assert r.headers.get("Content-Type") == "application/octet-stream", r.headers
    assert r.headers.get("Accept-Ranges") == "bytes", r.headers


def test_download_range_first_ten(fs, d):
    p = write(f"{d}/ten", TEN * 3)
    r = download(fs, p, headers={"Range": "bytes=0-9"})
    assert r.status_code == 206
    assert r.content == TEN
    assert r.headers["Content-Range"] == "bytes 0-9/30"


@pytest.mark.parametrize("rng", ["bytes=", "bytes=,", "bytes= ,"])
def test_download_range_empty_is_full(fs, d, rng):
    p = write(f"{d}/ten", TEN)
    r = download(fs, p, headers={"Range": rng})
    if rng != "bytes=":
        # only "bytes=" is decided; other empty spellings may be 200 or 416
        assert r.status_code in (200, 416), (rng, r.status_code)
        if r.status_code == 416:
            assert_416(r, 10)
            return
    assert r.status_code == 200, (rng, r.status_code, r.headers)
    assert r.content == TEN
    assert "Content-Range" not in r.headers


@pytest.mark.parametrize("rng", ["items=0-1", "bytes=abc", "bytes=5-2", "bytes=5", "bytes=a-b",
                                 "bytes=1-x", "bytes=--1", "0-1", "bytes 0-1", "bytes=-",
                                 "bytes=0-1,junk"])
def test_download_range_malformed(fs, d, rng):
    p = write(f"{d}/ten", TEN)
    r = download(fs, p, headers={"Range": rng})
    assert_416(r, 10)


@pytest.mark.parametrize("rng", ["bytes=99-", "bytes=10-", "bytes=10-20", "bytes=50-60,10-"])
def test_download_range_beyond_end(fs, d, rng):
    p = write(f"{d}/ten", TEN)
    r = download(fs, p, headers={"Range": rng})
    assert_416(r, 10)


@pytest.mark.parametrize("rng", ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=-5", "bytes=0-9",
                                 "bytes=3-"])
def test_download_range_empty_file(fs, d, rng):
    p = write(f"{d}/empty", b"")
    r = download(fs, p, headers={"Range": rng})
    assert_416(r, 0)


def test_download_range_large_offsets(fs, d):
    size = 5 * 1024 * 1024 + 17
    block = os.urandom(65536)
    data = (block * (size // len(block) + 1))[:size]
    p = write(f"{d}/big", data)
    r = download(fs, p, headers={"Range": f"bytes={size - 100}-"})
    assert r.status_code == 206 and r.content == data[-100:]
    assert r.headers["Content-Range"] == f"bytes {size - 100}-{size - 1}/{size}"
    r = download(fs, p, headers={"Range": "bytes=4194300-4194400"})
    assert r.status_code == 206 and r.content == data[4194300:4194401]
    r = download(fs, p)
    assert r.status_code == 200 and r.content == data


def test_download_empty_path_value(fs):
    r = fs.get("/files/download?path=")
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json().get("code") in ("MISSING_QUERY", "INVALID_REQUEST_BODY"), r.text


def test_download_304_has_no_body_and_range_ignored_when_not_modified(fs, d):
    p = write(f"{d}/f", TEN)
    lm = download(fs, p).headers["Last-Modified"]
    r = download(fs, p, headers={"If-Modified-Since": lm, "Range": "bytes=0-1"})
    assert r.status_code == 304, (r.status_code, r.headers)
    assert r.content == b""


def test_download_control_characters_in_name_no_header_injection(fs, d):
    name = "evil\r\nX-Injected: 1.txt"
    p = write(f"{d}/{name}", b"evil")
    r = download(fs, p)
    assert r.status_code == 200 and r.content == b"evil"
    assert "X-Injected" not in r.headers, r.headers
    cd = r.headers["Content-Disposition"]
    assert "\r" not in cd and "\n" not in cd and cd.startswith("attachment; filename="), cd
    assert fs.get("/ping").status_code == 200


def test_download_quote_in_name_header_well_formed(fs, d):
    p = write(f'{d}/q"uote\\.txt', b"q")
    r = download(fs, p)
    assert r.status_code == 200 and r.content == b"q"
    cd = r.headers["Content-Disposition"]
    # the quoted filename parameter must not be closed early by the name's own quote
    inner = cd[len('attachment; filename="'):]
    assert '"' in inner
    value = inner[:inner.index('"')]
    assert value in ('q\\"uote\\\\.txt', "q%22uote%5C.txt") or '"' not in value, cd
