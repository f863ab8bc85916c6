"""GET /metrics and GET /metrics/watch: the Metrics object, auth, 503 without the daemon, the
strict SSE framing of the watch stream, and one shared daemon watch for every HTTP watcher."""
import json
import os
import re
import sys
import time

import pytest

import sse
from execd_http import AUTH_ERROR, assert_error, is_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bus"))
from busclient import Client, PROPS_IFACE  # noqa: E402

METRICS_PATH = "/org/execd/Execd1/metrics"
METRICS_IFACE = "org.execd.Execd1.Metrics"
FIELDS = ("cpu_count", "cpu_used_pct", "mem_total_mib", "mem_used_mib", "timestamp")
INT_RE = re.compile(rb'"timestamp":-?\d+[,}]')


# --------------------------------------------------------------------------- helpers
def now_ms():
    return int(time.time() * 1000)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_metrics(m, where=""):
    """A Metrics object: exactly the five fields, numbers, timestamp an integer, sane."""
    assert isinstance(m, dict), f"{where}: not an object: {m!r}"
    assert set(m) == set(FIELDS), f"{where}: fields {sorted(m)}, expected {sorted(FIELDS)}"
    for k in FIELDS[:4]:
        assert is_number(m[k]), f"{where}: {k} is not a number: {m!r}"
    ts = m["timestamp"]
    assert isinstance(ts, int) and not isinstance(ts, bool), \
        f"{where}: timestamp is not an integer: {m!r}"
    assert m["cpu_count"] > 0, m
    assert 0 <= m["cpu_used_pct"] <= 100, m
    assert m["mem_total_mib"] > 0, m
    assert 0 < m["mem_used_mib"] <= m["mem_total_mib"], m
    assert abs(ts - now_ms()) <= 5000, f"{where}: timestamp {ts} not within 5 s of {now_ms()}"
    return m


def parse_metrics_frame(frame):
    """One frame (the bytes before its blank line): exactly `data: <compact JSON>`."""
    if not frame.startswith(sse.PREFIX):
        raise sse.StreamError(f"frame does not start with 'data: ': {frame[:200]!r}")
    payload = frame[len(sse.PREFIX):]
    if b"\n" in payload or b"\r" in payload:
        raise sse.StreamError(f"frame has more than one line: {frame[:200]!r}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise sse.StreamError(f"frame is not UTF-8: {e}: {frame[:200]!r}")
    sse.check_compact(text)
    try:
        m = json.loads(text)
    except ValueError as e:
        raise sse.StreamError(f"frame is not JSON: {e}: {text[:200]!r}")
    if not INT_RE.search(payload):
        raise sse.StreamError(f"timestamp is not written as an integer: {text!r}")
    check_metrics(m, "watch frame")
    return m


class MetricsStream(sse.EventStream):
    """GET /metrics/watch read with sse.EventStream's strict reader; frames are Metrics
    objects (no "type"), each stamped with its arrival time in self.arrivals."""

    def __init__(self, stack, timeout=10, headers=None):
        h = dict(stack.headers)
        h.update(headers or {})
        super().__init__(stack.url, "/metrics/watch", None, headers=h, method="GET",
                         timeout=timeout)
        self.arrivals = []

    def parse_frame(self, frame):
        self.arrivals.append(time.monotonic())
        return parse_metrics_frame(frame)

    def take(self, n, timeout):
        """Read until n frames arrived in total; fail at the deadline or at the end."""
        deadline = time.monotonic() + timeout
        while len(self.events) < n:
            if self.next_event(deadline) is None:
                raise sse.StreamError(f"stream ended after {len(self.events)} frames")
        return self.events[:n]


def watch_stream(stack):
    s = MetricsStream(stack)
    try:
        s.check_headers()
    except Exception:
        s.close()
        raise
    return s


@pytest.fixture
def bus(stack):
    c = Client(stack.bus.address)
    yield c
    c.close()


def watchers(c):
    (var,) = c.call(METRICS_PATH, PROPS_IFACE, "Get", "ss", (METRICS_IFACE, "Watchers"))
    assert var[0] == "u", var
    return var[1]


def wait_watchers(c, n, timeout):
    deadline = time.monotonic() + timeout
    while True:
        w = watchers(c)
        if w == n:
            return
        assert time.monotonic() < deadline, f"Watchers is {w}, expected {n} within {timeout} s"
        time.sleep(0.05)


def get_sample(c):
    return c.call(METRICS_PATH, METRICS_IFACE, "GetSample")


# --------------------------------------------------------------------------- GET /metrics
def test_metrics_shape(stack):
    r = stack.get("/metrics")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert is_json(r), r.headers.get("Content-Type")
    check_metrics(r.json(), "GET /metrics")
    assert INT_RE.search(r.content), f"timestamp not written as an integer: {r.text!r}"


def test_metrics_agree_with_daemon(stack, bus):
    count, _pct, total, _used, _ts = get_sample(bus)
    m = stack.get("/metrics").json()
    check_metrics(m)
    assert m["cpu_count"] == pytest.approx(count, abs=1e-9), (m, count)
    assert m["mem_total_mib"] == pytest.approx(total, abs=1e-6), (m, total)


def test_metrics_is_fast(stack):
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        r = stack.get("/metrics")
        times.append(time.monotonic() - t0)
        assert r.status_code == 200
        check_metrics(r.json())
    # The reference samples for a whole second per request; execd answers from its sample.
    assert max(times) < 0.5, f"GET /metrics took {times} s"


def test_metrics_timestamps_move(stack):
    a = stack.get("/metrics").json()
    time.sleep(1.2)
    b = stack.get("/metrics").json()
    assert b["timestamp"] > a["timestamp"], (a, b)


@pytest.mark.parametrize("path", ["/metrics", "/metrics/watch"])
def test_metrics_needs_token(stack, path):
    for headers in ({}, {"X-EXECD-ACCESS-TOKEN": stack.bridge.token + "0"}):
        t0 = time.monotonic()
        r = stack.get(path, auth=False, headers=headers, timeout=5)
        assert r.status_code == 401, (r.status_code, r.text[:300])
        assert is_json(r), r.headers.get("Content-Type")
        assert r.json() == AUTH_ERROR
        assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT"])
def test_metrics_other_methods_are_not_metrics(stack, method):
    r = stack.request(method, "/metrics", timeout=5)
    assert r.status_code != 200 and 400 <= r.status_code < 500, (r.status_code, r.text[:200])


def test_metrics_503_without_daemon_and_recovery(fresh_stack):
    st = fresh_stack
    assert st.get("/metrics").status_code == 200
    st.daemon.stop()
    assert_error(st.get("/metrics"), 503, "SERVICE_UNAVAILABLE")
    assert_error(st.get("/metrics", timeout=5), 503, "SERVICE_UNAVAILABLE")
    # The watch stream cannot start either: a JSON error, not a stream.
    r = st.get("/metrics/watch", timeout=5, stream=True)
    try:
        assert_error(r, 503, "SERVICE_UNAVAILABLE")
    finally:
        r.close()
    # Auth still comes first.
    r = st.get("/metrics", auth=False)
    assert r.status_code == 401
    st.daemon.start()
    deadline = time.monotonic() + 3
    while True:
        r = st.get("/metrics")
        if r.status_code == 200:
            break
        assert r.status_code == 503, (r.status_code, r.text[:300])
        assert time.monotonic() < deadline, "GET /metrics did not recover within 3 s"
        time.sleep(0.1)
    check_metrics(r.json())


# --------------------------------------------------------------------------- /metrics/watch
def test_watch_stream(stack, bus):
    s = watch_stream(stack)
    try:
        s.take(1, timeout=5)
        first = s.arrivals[0] - s.t_start
        s.take(3, timeout=5)
    finally:
        s.close()
    assert first <= 2.0, f"first frame after {first:.2f} s (expected about 1 s at most)"
    intervals = [b - a for a, b in zip(s.arrivals, s.arrivals[1:])]
    assert all(0.5 <= i <= 2.0 for i in intervals), f"frame intervals {intervals}"
    stamps = [m["timestamp"] for m in s.events[:3]]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), stamps
    assert all(400 <= b - a <= 2000 for a, b in zip(stamps, stamps[1:])), stamps
    # The daemon's watch ends with the stream.
    wait_watchers(bus, 0, 3)


def test_watch_stream_values_match_daemon(stack, bus):
    count, _pct, total, _used, _ts = get_sample(bus)
    s = watch_stream(stack)
    try:
        for m in s.take(2, timeout=5):
            assert m["cpu_count"] == pytest.approx(count, abs=1e-9), (m, count)
            assert m["mem_total_mib"] == pytest.approx(total, abs=1e-6), (m, total)
    finally:
        s.close()
    wait_watchers(bus, 0, 3)


def test_two_watchers_share_one_daemon_watch(stack, bus):
    assert watchers(bus) == 0
    a = watch_stream(stack)
    b = None
    try:
        a.take(1, timeout=5)
        assert watchers(bus) == 1
        b = watch_stream(stack)
        b.take(1, timeout=5)
        for _ in range(3):
            assert watchers(bus) == 1, "two HTTP watchers must share one daemon watch"
            time.sleep(0.3)
        # Both keep receiving.
        a.take(len(a.events) + 1, timeout=3)
        b.take(len(b.events) + 1, timeout=3)
    finally:
        a.close()
        if b is not None:
            b.close()
    t0 = time.monotonic()
    wait_watchers(bus, 0, 3)
    assert time.monotonic() - t0 <= 3


def test_one_watcher_leaving_keeps_the_watch(stack, bus):
    a = watch_stream(stack)
    b = watch_stream(stack)
    try:
        a.take(1, timeout=5)
        b.take(1, timeout=5)
        wait_watchers(bus, 1, 3)
        a.close()
        # The other watcher still has its frames and the daemon still one watcher.
        n = len(b.events)
        b.take(n + 3, timeout=6)
        intervals = [y - x for x, y in zip(b.arrivals[n:], b.arrivals[n + 1:])]
        assert all(i <= 2.0 for i in intervals), intervals
        assert watchers(bus) == 1
    finally:
        a.close()
        b.close()
    wait_watchers(bus, 0, 3)


def test_watch_after_watchers_left(stack, bus):
    """Start, stop, start again: the bridge watches again for the new stream."""
    for _ in range(2):
        s = watch_stream(stack)
        try:
            s.take(2, timeout=5)
            assert watchers(bus) == 1
        finally:
            s.close()
        wait_watchers(bus, 0, 3)


def test_many_watchers_one_daemon_watch(stack, bus):
    streams = []
    try:
        for _ in range(20):
            streams.append(watch_stream(stack))
        for s in streams:
            s.take(1, timeout=8)
        assert watchers(bus) == 1
        for s in streams:
            s.take(2, timeout=5)
        stamps = {tuple(m["timestamp"] for m in s.events[:2]) for s in streams}
        assert all(b > a for a, b in stamps), stamps
    finally:
        for s in streams:
            s.close()
    wait_watchers(bus, 0, 3)
    assert stack.bridge.proc.poll() is None


def test_half_closed_watcher_is_dropped(stack, bus):
    """A client that goes away without reading is noticed (the next frame cannot be written
    or the socket reports the close), and the daemon watch ends."""
    s = watch_stream(stack)
    s.take(1, timeout=5)
    s.sock.close()  # no shutdown: just the fd goes away
    s.resp.close()
    s.conn.close()
    wait_watchers(bus, 0, 3)
    r = stack.get("/metrics")
    assert r.status_code == 200


def test_watch_across_daemon_restart(fresh_stack):
    """Not a stated contract, robustness: after a daemon restart a new watch stream gets
    samples (the bridge watches the new daemon), and an old stream is not left silent."""
    st = fresh_stack
    a = watch_stream(st)
    b = None
    c = Client(st.bus.address)
    try:
        a.take(1, timeout=5)
        st.daemon.stop()
        st.daemon.start()
        c.close()
        c = Client(st.bus.address)
        deadline = time.monotonic() + 3
        while True:
            r = st.get("/metrics")
            if r.status_code == 200:
                break
            assert time.monotonic() < deadline, r.status_code
            time.sleep(0.1)
        b = watch_stream(st)
        b.take(2, timeout=6)
        wait_watchers(c, 1, 3)
        # The old stream either ended cleanly or goes on with frames; silence is a bug.
        a.sock.settimeout(3)
        n = len(a.events)
        deadline = time.monotonic() + 3
        try:
            while a.next_event(deadline) is not None:
                pass
            ended = True
        except sse.StreamError as e:
            assert "still open at the deadline" in str(e), \
                f"the old watch stream went silent after the daemon restart: {e}"
            ended = False
        assert ended or len(a.events) > n
    finally:
        c.close()
        a.close()
        if b is not None:
            b.close()
