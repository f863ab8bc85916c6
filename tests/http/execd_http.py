"""Helpers for the HTTP suite: the Stack (bus + execd + execd-bridge) and common assertions."""
import calendar
import os
import re
import secrets
import signal
import sys
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import sse  # noqa: E402

TIMEOUT = 10 * harness.SLOWDOWN  # default seconds for every plain request
AUTH_ERROR = {
    "error": "Unauthorized: invalid or missing header X-EXECD-ACCESS-TOKEN",
    "code": "UNAUTHORIZED",
    "message": "invalid or missing header X-EXECD-ACCESS-TOKEN",
}
RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


class Stack:
    """bus + daemon + bridge, with small request helpers."""

    def __init__(self, daemon_args=(), bridge_args=()):
        self.bus = harness.Bus()
        self.daemon = self.bridge = None
        try:
            self.daemon = harness.Daemon(self.bus, *daemon_args)
            self.bridge = harness.Bridge(self.bus, *bridge_args)
        except Exception:
            self.stop()
            raise
        self.url = self.bridge.url
        self.headers = self.bridge.headers

    def stop(self):
        if self.bridge is not None:
            self.bridge.stop()
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.stop()
        self.bus.stop()

    # -- plain requests ----------------------------------------------------------------------
    def request(self, method, path, auth=True, headers=None, timeout=TIMEOUT, **kw):
        h = dict(self.headers) if auth else {}
        h.update(headers or {})
        return requests.request(method, self.url + path, headers=h, timeout=timeout,
                                allow_redirects=False, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def status(self, cid):
        r = self.get(f"/command/status/{cid}")
        assert r.status_code == 200, (r.status_code, r.text)
        assert is_json(r), r.headers
        return r.json()

    def wait_finished(self, cid, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(cid)
            if not st["running"]:
                return st
            assert time.monotonic() < deadline, f"command {cid} still running: {st}"
            time.sleep(0.05)

    # -- streams -----------------------------------------------------------------------------
    def stream(self, body, headers=None, timeout=30):
        """Open POST /command; headers are not checked yet (see EventStream.check_headers)."""
        h = dict(self.headers)
        h.update(headers or {})
        return sse.EventStream(self.url, "/command", body, headers=h, timeout=timeout)

    def run(self, body, timeout=30, background=False):
        """Run a command to the end of its stream; return the checked sse.CommandRun."""
        if isinstance(body, str):
            body = {"command": body}
        if background:
            body = dict(body, background=True)
        s = self.stream(body, timeout=timeout).check_headers()
        events = s.read_all(timeout)
        run = sse.check_command_events(events, background=body.get("background") is True)
        run.elapsed = s.elapsed()
        run.frames = s.frames
        return run


def is_json(r):
    return r.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/json"


def assert_error(r, status, code, message=None, contains=None):
    """An error answer: status, application/json, {"code","message"} (message a string)."""
    assert r.status_code == status, (r.status_code, r.headers, r.text[:500])
    assert is_json(r), f"Content-Type {r.headers.get('Content-Type')!r}, body {r.text[:300]!r}"
    body = r.json()
    assert isinstance(body, dict), body
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    if message is not None:
        assert body["message"] == message, body
    if contains is not None:
        assert contains in body["message"], body
    return body


def parse_rfc3339(s):
    """Nanoseconds since the epoch for an RFC 3339 string as the contract formats it."""
    assert isinstance(s, str), s
    m = RFC3339_RE.match(s)
    assert m, f"not RFC 3339: {s!r}"
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    if frac is not None:
        assert not frac.endswith("0"), f"fraction has trailing zeros: {s!r}"
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(sec)))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    ns = int((frac or "").ljust(9, "0"))
    return secs * 1_000_000_000 + ns


def random_id():
    return secrets.token_hex(16)


def pgroup_members(pgid):
    """Pids (zombies included) whose process group is pgid."""
    return [pid for pid, _state, _ppid, group, _comm in harness.all_procs() if group == pgid]


def pid_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
