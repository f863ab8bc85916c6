"""1 GiB through POST /files/upload and GET /files/download, streamed both ways, sha256 checked.

The data is never held in memory: a pseudo-random 1 MiB block whose first 16 bytes carry a
seed and a counter, so no two MiB are alike. One upload is chunked (a generator body), the
other has an explicit Content-Length; each is downloaded in 1 MiB chunks and hashed on the fly.
"""
import hashlib
import os
import random
import time

import pytest

from files_common import (  # noqa: F401 -- fixtures
    closing, fs, fs_cwd, metadata_part, new_boundary, part_head, q)

MIB = 1 << 20
BLOCKS = 1024  # 1 GiB
BLOCK = random.Random(20240105).randbytes(MIB)
TIMEOUT = (10, 120)


def blocks(seed):
    for i in range(BLOCKS):
        yield seed.to_bytes(8, "little") + i.to_bytes(8, "little") + BLOCK[16:]


class MultipartStream:
    """A multipart body around the generated data: iterable, with a known length."""

    def __init__(self, path, seed, mode=None):
        self.boundary = new_boundary()
        meta = {"path": path, "owner": None, "group": None, "mode": mode}
        self.head = (metadata_part(self.boundary, meta)
                     + part_head(self.boundary, "file", os.path.basename(path),
                                 "application/octet-stream"))
        self.tail = b"\r\n" + closing(self.boundary)
        self.seed = seed
        self.sha = hashlib.sha256()
        self.sent = 0

    @property
    def content_type(self):
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self):
        return len(self.head) + BLOCKS * MIB + len(self.tail)

    def __iter__(self):
        yield self.head
        for b in blocks(self.seed):
            self.sha.update(b)
            self.sent += len(b)
            yield b
        yield self.tail


def chunked(stream):
    """A plain generator: requests sends it with Transfer-Encoding: chunked."""
    yield from stream


def download_sha(fs, path):
    sha = hashlib.sha256()
    n = 0
    with fs.get(f"/files/download?path={q(path)}", stream=True, timeout=TIMEOUT) as r:
        assert r.status_code == 200, (r.status_code, r.text[:300])
        assert r.headers.get("Content-Length") == str(BLOCKS * MIB), r.headers
        assert r.headers.get("Content-Type") == "application/octet-stream"
        for chunk in r.iter_content(MIB):
            sha.update(chunk)
            n += len(chunk)
    assert n == BLOCKS * MIB
    return sha.hexdigest()


@pytest.fixture
def bigdir(tmp_path):
    """A directory on the same disk as /tmp; the big file is removed afterwards."""
    os.chmod(tmp_path, 0o755)
    p = tmp_path / "big"
    p.mkdir()
    yield str(p)
    for name in os.listdir(p):
        os.unlink(p / name)


def test_one_gib_upload_and_download(fs, bigdir):
    path = f"{bigdir}/one-gib.bin"
    started = time.monotonic()
    timings = {}

    # 1. chunked transfer encoding
    s1 = MultipartStream(path, seed=1, mode=600)
    t = time.monotonic()
    r = fs.post("/files/upload", data=chunked(s1), timeout=TIMEOUT,
                headers={"Content-Type": s1.content_type})
    timings["upload chunked"] = time.monotonic() - t
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in r.request.headers
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers.get("Content-Length") == "0" and r.content == b""
    assert s1.sent == BLOCKS * MIB
    st = os.stat(path)
    assert st.st_size == BLOCKS * MIB
    assert st.st_mode & 0o777 == 0o600
    assert os.listdir(bigdir) == ["one-gib.bin"]

    t = time.monotonic()
    assert download_sha(fs, path) == s1.sha.hexdigest()
    timings["download 1"] = time.monotonic() - t

    # a range near the end of the big file
    r = fs.get(f"/files/download?path={q(path)}", headers={"Range": "bytes=-20"},
               timeout=TIMEOUT)
    assert r.status_code == 206
    assert r.content == BLOCK[-20:]
    assert r.headers["Content-Range"] == f"bytes {BLOCKS * MIB - 20}-{BLOCKS * MIB - 1}/{BLOCKS * MIB}"
    off = 1000 * MIB + 3
    r = fs.get(f"/files/download?path={q(path)}", headers={"Range": f"bytes={off}-{off + 20}"},
               timeout=TIMEOUT)
    assert r.status_code == 206
    assert r.content == (1).to_bytes(8, "little")[3:] + (1000).to_bytes(8, "little") + BLOCK[16:24]

    # 2. explicit Content-Length, replacing the first file (keeps its mode)
    s2 = MultipartStream(path, seed=2)
    t = time.monotonic()
    r = fs.post("/files/upload", data=s2, timeout=TIMEOUT,
                headers={"Content-Type": s2.content_type})
    timings["upload content-length"] = time.monotonic() - t
    assert r.request.headers.get("Content-Length") == str(len(s2))
    assert "Transfer-Encoding" not in r.request.headers
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers.get("Content-Length") == "0" and r.content == b""
    assert s2.sha.hexdigest() != s1.sha.hexdigest()
    assert os.stat(path).st_size == BLOCKS * MIB
    assert os.stat(path).st_mode & 0o777 == 0o600

    t = time.monotonic()
    assert download_sha(fs, path) == s2.sha.hexdigest()
    timings["download 2"] = time.monotonic() - t
    assert os.listdir(bigdir) == ["one-gib.bin"]

    total = time.monotonic() - started
    print("timings:", {k: round(v, 1) for k, v in timings.items()}, "total", round(total, 1))
    assert total < 60, f"1 GiB round trips took {total:.1f}s: {timings}"
