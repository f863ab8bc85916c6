"""A strict reader for the bridge's SSE streams, plus checks of the command event model.

The contract: a stream is 200, Content-Type text/event-stream, Cache-Control no-cache,
X-Accel-Buffering no, chunked; its body is nothing but frames `data: <compact JSON>\\n\\n`, each
JSON an object with a string "type" and an integer "timestamp" (Unix ms), and the chunked body
ends cleanly (a final zero-size chunk). Everything else is an assertion failure.

http.client is used instead of requests so that the exact body bytes are seen: it decodes the
chunked framing itself and raises IncompleteRead when the body is cut short.
"""
import http.client
import json
import re
import socket
import time
import urllib.parse

ID_RE = re.compile(r"^[0-9a-f]{32}$")
EVENT_TYPES = {"init", "stdout", "stderr", "ping", "execution_complete", "error"}
TERMINAL_TYPES = {"execution_complete", "error"}
PREFIX = b"data: "


class StreamError(AssertionError):
    pass


def now_ms():
    return int(time.time() * 1000)


STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')


def check_compact(text):
    """Fail when JSON text has whitespace outside strings (not compact)."""
    outside = STRING_RE.sub('""', text)
    for ws in (" ", "\t", "\r", "\n"):
        if ws in outside:
            raise StreamError(f"JSON is not compact (whitespace outside strings): {text[:200]!r}")


def parse_frame(frame):
    """Validate one frame (the bytes before its blank line) and return the event object."""
    if not frame.startswith(PREFIX):
        raise StreamError(f"frame does not start with 'data: ': {frame[:200]!r}")
    payload = frame[len(PREFIX):]
    if b"\n" in payload or b"\r" in payload:
        raise StreamError(f"frame has more than one line (other fields?): {frame[:200]!r}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StreamError(f"frame is not valid UTF-8: {e}: {frame[:200]!r}")
    check_compact(text)
    try:
        # strict=True (the default) rejects raw control characters inside strings.
        event = json.loads(text)
    except ValueError as e:
        raise StreamError(f"frame is not JSON: {e}: {text[:200]!r}")
    if not isinstance(event, dict):
        raise StreamError(f"event is not an object: {text[:200]!r}")
    if not isinstance(event.get("type"), str):
        raise StreamError(f"event has no string type: {text[:200]!r}")
    ts = event.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise StreamError(f"event has no integer timestamp: {text[:200]!r}")
    if abs(ts - now_ms()) > 60_000:
        raise StreamError(f"timestamp {ts} is not within a minute of now ({now_ms()})")
    return event


class EventStream:
    """One SSE request read incrementally with strict framing checks.

    After construction the status and headers are known (self.status, self.headers). For a
    non-200 answer use self.read_body(). For a stream use next_event() / read_all().
    """

    def __init__(self, url, path, body, headers=None, method="POST", timeout=30):
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        hdrs = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        hdrs.update(headers or {})
        self.t_start = time.monotonic()
        self.conn.request(method, path, body=body, headers=hdrs)
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = self.resp.headers
        self.buf = b""
        self.pos = 0  # start of the unparsed part of buf
        self.frames = []  # raw frame bytes, prefix included
        self.events = []
        self.ended = False
        self.t_end = None

    # -- headers -----------------------------------------------------------------------------
    def check_headers(self):
        h = self.headers
        ctype = h.get("Content-Type", "")
        if self.status != 200:
            body = self.read_body()
            raise StreamError(f"status {self.status} (expected 200), Content-Type {ctype!r}, "
                              f"body {body[:500]!r}")
        if ctype.split(";")[0].strip().lower() != "text/event-stream":
            raise StreamError(f"Content-Type {ctype!r}, expected text/event-stream")
        if h.get("Cache-Control", "").strip().lower() != "no-cache":
            raise StreamError(f"Cache-Control {h.get('Cache-Control')!r}, expected no-cache")
        if h.get("X-Accel-Buffering", "").strip().lower() != "no":
            raise StreamError(f"X-Accel-Buffering {h.get('X-Accel-Buffering')!r}, expected no")
        if h.get("Transfer-Encoding", "").strip().lower() != "chunked":
            raise StreamError(f"Transfer-Encoding {h.get('Transfer-Encoding')!r}, "
                              "expected chunked")
        if h.get("Content-Length") is not None:
            raise StreamError(f"stream has Content-Length {h.get('Content-Length')!r}")
        return self

    def read_body(self):
        """The whole body of a non-stream answer."""
        try:
            return self.resp.read()
        finally:
            self.close()

    # -- events ------------------------------------------------------------------------------
    def parse_frame(self, frame):
        """One frame's event; streams whose frames are not events override this."""
        return parse_frame(frame)

    def _pop_frame(self):
        idx = self.buf.find(b"\n\n", self.pos)
        if idx < 0:
            return None
        frame = self.buf[self.pos:idx]
        self.pos = idx + 2
        self.frames.append(frame)
        event = self.parse_frame(frame)
        self.events.append(event)
        return event

    def next_event(self, deadline=None):
        """The next event, or None at a clean end of the body."""
        while True:
            event = self._pop_frame()
            if event is not None:
                return event
            if self.ended:
                return None
            if deadline is not None and time.monotonic() > deadline:
                raise StreamError(f"stream still open at the deadline; events so far: "
                                  f"{summarize(self.events)}")
            try:
                chunk = self.resp.read1(65536)
            except http.client.IncompleteRead as e:
                raise StreamError(f"body did not end cleanly (IncompleteRead {e!r}); events "
                                  f"so far: {summarize(self.events)}")
            except socket.timeout:
                raise StreamError(f"no data for the socket timeout; events so far: "
                                  f"{summarize(self.events)}")
            if not chunk:
                self.ended = True
                self.t_end = time.monotonic()
                if self.pos < len(self.buf):
                    raise StreamError(f"body ends with an incomplete frame: "
                                      f"{self.buf[self.pos:self.pos + 300]!r}")
                self.close()
                return None
            self.buf = self.buf[self.pos:] + chunk
            self.pos = 0

    def read_all(self, timeout=30):
        deadline = time.monotonic() + timeout
        while self.next_event(deadline) is not None:
            pass
        return self.events

    def elapsed(self):
        return (self.t_end or time.monotonic()) - self.t_start

    def close(self):
        """Close the connection abruptly (a client going away)."""
        try:
            if self.sock is not None:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.resp.close()
        self.conn.close()


def summarize(events, limit=20):
    out = []
    for e in events[:limit]:
        t = e.get("type")
        if t in ("stdout", "stderr", "init"):
            out.append(f"{t}:{e.get('text', '')[:40]!r}")
        elif t == "error":
            out.append(f"error:{e.get('error')!r}")
        else:
            out.append(t)
    if len(events) > limit:
        out.append(f"... {len(events) - limit} more")
    return out


class CommandRun:
    """The checked outcome of one /command stream."""

    def __init__(self, events):
        self.events = events
        self.id = events[0]["text"]
        self.stdout = [e["text"] for e in events if e["type"] == "stdout"]
        self.stderr = [e["text"] for e in events if e["type"] == "stderr"]
        self.pings = [e for e in events if e["type"] == "ping"]
        self.terminal = [e for e in events if e["type"] in TERMINAL_TYPES][0]
        self.error = self.terminal.get("error")

    @property
    def ok(self):
        return self.terminal["type"] == "execution_complete"


def check_command_events(events, background=False):
    """Assert the /command event model and return a CommandRun."""
    if not events:
        raise StreamError("stream has no events")
    s = summarize(events)
    first = events[0]
    if first["type"] != "init":
        raise StreamError(f"first event is not init: {s}")
    if set(first) != {"type", "text", "timestamp"} or not isinstance(first["text"], str) \
            or not ID_RE.match(first["text"]):
        raise StreamError(f"bad init event {first!r}")
    types = [e["type"] for e in events]
    unknown = set(types) - EVENT_TYPES
    if unknown:
        raise StreamError(f"unexpected event types {unknown}: {s}")
    if types.count("init") != 1:
        raise StreamError(f"{types.count('init')} init events: {s}")
    terminals = [i for i, t in enumerate(types) if t in TERMINAL_TYPES]
    if len(terminals) != 1:
        raise StreamError(f"{len(terminals)} terminal events (expected exactly one): {s}")
    after = [t for t in types[terminals[0] + 1:] if t != "ping"]
    if after:
        raise StreamError(f"events after the terminal event: {after}: {s}")
    for e in events:
        t = e["type"]
        if t == "ping":
            if e != {"type": "ping", "text": "pong", "timestamp": e["timestamp"]}:
                raise StreamError(f"bad ping event {e!r}")
        elif t in ("stdout", "stderr"):
            if set(e) != {"type", "text", "timestamp"} or not isinstance(e["text"], str) \
                    or e["text"] == "":
                raise StreamError(f"bad output event {e!r}")
        elif t == "execution_complete":
            if not set(e) <= {"type", "execution_time", "timestamp"}:
                raise StreamError(f"bad execution_complete event {e!r}")
            if "execution_time" in e:
                et = e["execution_time"]
                if not isinstance(et, int) or isinstance(et, bool) or et <= 0:
                    raise StreamError(f"bad execution_time in {e!r} (omitted when 0)")
        elif t == "error":
            err = e.get("error")
            if set(e) != {"type", "error", "timestamp"} or not isinstance(err, dict) \
                    or set(err) != {"ename", "evalue", "traceback"}:
                raise StreamError(f"bad error event {e!r}")
            if err["ename"] != "CommandExecError" or not isinstance(err["evalue"], str) \
                    or not re.match(r"^-?\d+$", err["evalue"]):
                raise StreamError(f"bad error object {err!r}")
            tb = err["traceback"]
            if not isinstance(tb, list) or len(tb) != 1 or not isinstance(tb[0], str):
                raise StreamError(f"traceback is not a one-string array: {err!r}")
    run = CommandRun(events)
    if background:
        if run.stdout or run.stderr:
            raise StreamError(f"background stream has output events: {s}")
        if not run.ok:
            raise StreamError(f"background stream did not end with execution_complete: {s}")
    return run
