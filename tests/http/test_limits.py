"""The bridge's limits, each configurable and each refused in the right envelope:
--max-json-body, --max-upload, --max-streams(-per-client), --max-connections(-per-client),
--header-timeout, --idle-timeout; and connections a client closes between requests leave no
descriptor behind (libsoup 3.2 kept them)."""
import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest

import harness
from execd_http import Stack, assert_error, is_json
from files_common import multipart, pairs, upload  # noqa: F401

CLIENT2, CLIENT3 = "127.0.0.2", "127.0.0.3"  # other clients: loopback source addresses


@pytest.fixture
def make_stack():
    stacks = []

    def make(*bridge_args):
        s = Stack(daemon_args=("--kill-grace-ms=500",), bridge_args=bridge_args)
        stacks.append(s)
        return s
    yield make
    for s in stacks:
        s.stop()


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def connect(stack, source=None, timeout=10):
    return socket.create_connection(("127.0.0.1", stack.bridge.port), timeout=timeout,
                                    source_address=(source, 0) if source else None)


def raw_get(stack, path="/ping", keepalive=True):
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nX-EXECD-ACCESS-TOKEN: {stack.bridge.token}\r\n"
            + ("" if keepalive else "Connection: close\r\n") + "\r\n").encode()


def read_response(sock):
    """One response (Content-Length bodies only): (status, headers text, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1]), head.decode(), rest[:length]


def closed_by_peer(sock, timeout):
    """Whether the bridge closes sock within timeout (whatever it may send first)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def post_raw(stack, path, body, chunked=False, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", stack.bridge.port, timeout=20)
    h = dict(stack.headers, **{"Content-Type": "application/json"}, **(headers or {}))
    try:
        if chunked:
            conn.putrequest("POST", path)
            for k, v in dict(h, **{"Transfer-Encoding": "chunked"}).items():
                conn.putheader(k, v)
            conn.endheaders()
            for i in range(0, len(body), 4096):
                piece = body[i:i + 4096]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        else:
            conn.request("POST", path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- --help
def test_every_limit_is_in_help():
    out = subprocess.run([harness.BRIDGE, "--help"], capture_output=True, text=True, timeout=10).stdout
    for opt in ("--max-json-body", "--max-upload", "--max-streams", "--max-streams-per-client",
                "--max-connections", "--max-connections-per-client", "--header-timeout", "--idle-timeout"):
        assert opt + "=" in out, (opt, out)


@pytest.mark.parametrize("arg", ["--max-streams=-1", "--max-json-body=0", "--header-timeout=-5"])
def test_negative_limit_is_refused(arg):
    r = subprocess.run([harness.BRIDGE, arg, "--listen=127.0.0.1:0"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)


# --------------------------------------------------------------------------- JSON bodies
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_json_body_cap_execd(make_stack, tmp_path, chunked):
    st = make_stack("--max-json-body=1000")
    marker = tmp_path / "ran"
    small = json.dumps({"command": f"touch {marker}"}).encode()
    big = json.dumps({"command": f"touch {marker}", "pad": "a" * 1000}).encode()
    status, headers, data = post_raw(st, "/command", big, chunked=chunked)
    assert status == 413, (status, data[:300])
    err = json.loads(data)
    assert err["code"] == "REQUEST_TOO_LARGE" and "1000 bytes" in err["message"], err
    assert not marker.exists()
    status, headers, data = post_raw(st, "/command", small, chunked=chunked)
    assert status == 200, (status, data[:300])
    assert wait_for(marker.exists, 5)
    assert st.get("/ping").status_code == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_json_body_cap_environments(make_stack, chunked):
    st = make_stack("--max-json-body=1000")
    status, headers, data = post_raw(st, "/api/v1/org/o/ws/w/environments", b"{" + b" " * 2000 + b"}",
                                     chunked=chunked)
    assert status == 413, (status, data[:300])
    err = json.loads(data)
    assert err["code"] == 413 and err["type"] == "payload_too_large" and err["detail"], err


def test_json_body_cap_can_be_raised(make_stack, tmp_path):
    st = make_stack("--max-json-body=4000000")
    marker = tmp_path / "ran"
    body = json.dumps({"command": f"touch {marker}", "pad": "a" * 2_000_000}).encode()
    status, _, data = post_raw(st, "/command", body)
    assert status == 200, (status, data[:300])
    assert wait_for(marker.exists, 5)


# --------------------------------------------------------------------------- uploads
def test_upload_cap(make_stack, tmp_path):
    os.chmod(tmp_path, 0o755)
    st = make_stack("--max-upload=100000")
    d = str(tmp_path)
    # One file too large: 413, nothing left behind.
    r = upload(st, pairs(({"path": f"{d}/big"}, b"x" * 100001)))
    assert_error(r, 413, "REQUEST_TOO_LARGE")
    # Two files, each under the cap, together over it: neither is written.
    r = upload(st, pairs(({"path": f"{d}/a"}, b"a" * 60000), ({"path": f"{d}/b"}, b"b" * 60000)))
    assert_error(r, 413, "REQUEST_TOO_LARGE")
    assert os.listdir(d) == []
    # At the cap: fine.
    r = upload(st, pairs(({"path": f"{d}/ok"}, b"o" * 100000)))
    assert r.status_code == 200, (r.status_code, r.text)
    assert os.listdir(d) == ["ok"] and os.path.getsize(f"{d}/ok") == 100000
    assert st.get("/ping").status_code == 200


# --------------------------------------------------------------------------- streams
def open_stream(st, source=None, path="/command", body=None, method="POST"):
    conn = http.client.HTTPConnection("127.0.0.1", st.bridge.port, timeout=20,
                                      source_address=(source, 0) if source else None)
    h = dict(st.headers, **{"Content-Type": "application/json"})
    if body is None and method == "POST":
        body = {"command": "sleep 30"}
    conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=h)
    return conn, conn.getresponse()


def assert_429(resp):
    assert resp.status == 429, resp.status
    assert resp.headers.get("Retry-After", "").isdigit(), dict(resp.headers)
    err = json.loads(resp.read())
    assert err["code"] == "LIMITS_EXCEEDED" and err["message"], err


def test_stream_limits(make_stack):
    st = make_stack("--max-streams=3", "--max-streams-per-client=2")
    held = []
    for _ in range(2):
        conn, resp = open_stream(st)
        assert resp.status == 200
        held.append((conn, resp))
    # A third stream from the same client: every kind of stream is refused.
    conn, resp = open_stream(st)
    assert_429(resp)
    conn, resp = open_stream(st, path="/code", body={"code": "echo hi"})
    assert_429(resp)
    conn, resp = open_stream(st, path="/metrics/watch", method="GET")
    assert_429(resp)
    # Not counted: background runs and plain requests.
    r = st.post("/command", json={"command": "true", "background": True})
    assert r.status_code == 200, r.text
    assert st.get("/ping").status_code == 200
    # Another client still gets one: the total is 3.
    conn, resp = open_stream(st, source=CLIENT2)
    assert resp.status == 200
    held.append((conn, resp))
    conn, resp = open_stream(st, source=CLIENT3)
    assert_429(resp)
    # Closed streams give their slots back.
    for c, r in held:
        r.close()
        c.close()
    held = []

    def ok():
        conn, resp = open_stream(st, body={"command": "echo again"})
        data = resp.read()
        conn.close()
        return resp.status == 200 and b"again" in data
    assert wait_for(ok, 10)


def test_many_refused_streams_do_not_hurt(make_stack):
    st = make_stack("--max-streams=2", "--max-streams-per-client=2")
    held = [open_stream(st) for _ in range(2)]
    pid = st.bridge.proc.pid
    before = nfds(pid)
    for _ in range(200):
        conn, resp = open_stream(st)
        assert resp.status == 429
        resp.read()
        conn.close()
    assert wait_for(lambda: nfds(pid) <= before, 5), (before, nfds(pid))
    for c, r in held:
        r.close()
        c.close()
    assert st.bridge.proc.poll() is None


# --------------------------------------------------------------------------- connections
def test_connections_per_client(make_stack):
    st = make_stack("--max-connections-per-client=3")
    held = [connect(st) for _ in range(3)]
    time.sleep(0.2)
    extra = connect(st)
    status, head, body = read_response(extra)
    assert status == 429 and "Retry-After:" in head, head
    assert json.loads(body)["code"] == "LIMITS_EXCEEDED"
    assert closed_by_peer(extra, 5)
    # Another client is served.
    c = connect(st, source=CLIENT2)
    c.sendall(raw_get(st))
    assert read_response(c)[0] == 200
    c.close()
    # The held ones still work, and closing one frees a slot.
    held[0].sendall(raw_get(st))
    assert read_response(held[0])[0] == 200
    held.pop().close()

    def served():
        c = connect(st)
        try:
            c.sendall(raw_get(st))
            return read_response(c)[0] == 200
        except ConnectionError:
            return False
        finally:
            c.close()
    assert wait_for(served, 5)
    for c in held:
        c.close()


def test_connections_total(make_stack):
    st = make_stack("--max-connections=4", "--max-connections-per-client=0")
    held = [connect(st, source=src) for src in ("127.0.0.1", CLIENT2, CLIENT3, CLIENT2)]
    time.sleep(0.2)
    extra = connect(st, source="127.0.0.4")
    status, head, body = read_response(extra)
    assert status == 429, head
    held[0].close()
    time.sleep(0.5)  # the bridge sees the close
    c = connect(st)
    c.sendall(raw_get(st))
    assert read_response(c)[0] == 200
    for c2 in held[1:] + [c]:
        c2.close()


def test_header_timeout(make_stack):
    st = make_stack("--header-timeout=2")
    c = connect(st)
    c.sendall(b"GET /ping HTTP/1.1\r\n")
    t0 = time.monotonic()
    stop = threading.Event()

    def trickle():  # one header byte every 0.3 s: never a complete head
        try:
            while not stop.is_set():
                c.sendall(b"X")
                time.sleep(0.3)
        except OSError:
            pass
    t = threading.Thread(target=trickle)
    t.start()
    try:
        assert closed_by_peer(c, 6)
        assert 1.5 <= time.monotonic() - t0 <= 6
    finally:
        stop.set()
        t.join()
        c.close()
    # A silent connection too.
    c = connect(st)
    assert closed_by_peer(c, 6)
    c.close()


def test_idle_timeout(make_stack):
    st = make_stack("--idle-timeout=2")
    pid = st.bridge.proc.pid
    assert st.get("/ping").status_code == 200  # the bridge's lazily made descriptors
    time.sleep(0.3)
    base = nfds(pid)
    c = connect(st)
    for _ in range(2):
        c.sendall(raw_get(st))
        assert read_response(c)[0] == 200
    t0 = time.monotonic()
    c.settimeout(6)
    assert c.recv(65536) == b"", "the idle connection is closed without a word"
    assert time.monotonic() - t0 >= 1.5
    c.close()
    assert wait_for(lambda: nfds(pid) <= base, 5), (base, nfds(pid))


def test_streams_are_not_cut_by_timeouts(make_stack):
    st = make_stack("--header-timeout=1", "--idle-timeout=1")
    run = st.run({"command": "sleep 3; echo done"}, timeout=20)
    assert run.stdout == ["done"]


def test_slowloris_does_not_starve_others(make_stack):
    st = make_stack("--max-connections-per-client=20", "--header-timeout=3")
    slow, stop = [], threading.Event()
    for _ in range(40):  # 20 taken, 20 refused at once
        try:
            s = connect(st, source=CLIENT2)
            s.sendall(b"GET /ping HTTP/1.1\r\n")
            slow.append(s)
        except OSError:
            pass

    def trickle():
        while not stop.is_set():
            for s in slow:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            time.sleep(1)
    t = threading.Thread(target=trickle)
    t.start()
    try:
        t0 = time.monotonic()
        assert st.get("/ping").status_code == 200
        run = st.run("echo prompt", timeout=10)
        assert run.stdout == ["prompt"]
        assert time.monotonic() - t0 < 2, time.monotonic() - t0
        # Every slow connection is closed by the header timeout (or was refused).
        deadline = time.monotonic() + 8
        for s in slow:
            assert closed_by_peer(s, max(0.1, deadline - time.monotonic()))
    finally:
        stop.set()
        t.join()
        for s in slow:
            s.close()
    assert st.get("/ping").status_code == 200


# --------------------------------------------------------------------------- no leaks
def test_closed_keepalive_connections_leave_nothing(make_stack):
    """libsoup 3.2.3 kept every keep-alive connection the client closed between requests
    (a CLOSE-WAIT socket and the connection object each)."""
    st = make_stack()
    pid = st.bridge.proc.pid

    def cycle(n_requests, tail=b""):
        c = connect(st)
        for _ in range(n_requests):
            c.sendall(raw_get(st))
            assert read_response(c)[0] == 200
        if tail:
            c.sendall(tail)
        c.close()

    for _ in range(20):  # warm up allocations
        cycle(3)
    time.sleep(0.3)
    base_fd, base_rss = nfds(pid), rss_kib(pid)
    for i in range(200):
        cycle(3)
    for i in range(50):  # closed in the middle of a head, and before any request
        cycle(1, b"GET /pi")
        cycle(0)
    assert wait_for(lambda: nfds(pid) <= base_fd, 5), (base_fd, nfds(pid))
    rss = rss_kib(pid)
    assert rss - base_rss < 2048 + harness.RSS_SLACK_KIB, (base_rss, rss)
