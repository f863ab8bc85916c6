"""No secret in a log: the daemon at its most verbose (-v) and the bridge with
G_MESSAGES_DEBUG=all, driven through every route family with known, unique tokens (the access
token, API keys, environment tokens) and with wrong ones; then neither log may hold any of them.

Also a negative self-test of the grep (check_logs.find_hits): a token injected into a log is
found, and the report names file:line without printing the token.
"""
import io
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.parse

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import check_logs  # noqa: E402
import harness  # noqa: E402

T = 15
ACCESS = "acc" + secrets.token_hex(16)       # the bridge's access token
KEY = "key" + secrets.token_hex(16)          # an API key valid for every org
KEY_LIMITED = "kyl" + secrets.token_hex(16)  # an API key limited to org "orgx"
WRONG = {                                    # wrong secrets: not to be logged either
    "wrong-access": "wac" + secrets.token_hex(16),
    "near-access": ACCESS[:-1] + ("0" if ACCESS[-1] != "0" else "1"),
    "wrong-key": "wky" + secrets.token_hex(16),
    "wrong-env-token": secrets.token_hex(32),
}


def q(s):
    return urllib.parse.quote(s, safe="")


class Deep:
    def __init__(self, root):
        self.bus = harness.Bus()
        self.daemon = self.bridge = None
        # Environment uids must reach STATE/environments/<id>: a fresh directory in /tmp.
        self.state = tempfile.mkdtemp(prefix="execd-secrets-state-")
        os.chmod(self.state, 0o711)
        self.keys_file = os.path.join(self.bus.dir, "api-keys")
        with open(self.keys_file, "w") as f:
            f.write(f"{KEY}\n{KEY_LIMITED} orgx\n")
        os.chmod(self.keys_file, 0o600)
        try:
            self.daemon = harness.Daemon(self.bus, "-v", f"--state-dir={self.state}",
                                         "--env-uid-min=690000", "--env-uid-max=690999",
                                         "--kill-grace-ms=500")
            self.bridge = harness.Bridge(
                self.bus, f"--api-keys={self.keys_file}", token=ACCESS,
                env=dict(os.environ, G_MESSAGES_DEBUG="all"),
                log_path=os.path.join(self.bus.dir, "bridge-deep.log"))
        except Exception:
            self.stop()
            raise
        self.url = self.bridge.url

    def stop(self):
        if self.bridge is not None and self.bridge.proc.poll() is None:
            self.bridge.stop()
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.stop()
        self.bus.stop()
        shutil.rmtree(self.state, ignore_errors=True)

    def req(self, method, path, token=ACCESS, headers=None, **kw):
        h = {} if token is None else {"X-EXECD-ACCESS-TOKEN": token}
        h.update(headers or {})
        kw.setdefault("timeout", T)
        return requests.request(method, self.url + path, headers=h, allow_redirects=False, **kw)

    def api(self, method, path, key=KEY, style="bearer", headers=None, **kw):
        h = {}
        if key is not None:
            h.update({"Authorization": f"Bearer {key}"} if style == "bearer" else {"X-API-Key": key})
        h.update(headers or {})
        kw.setdefault("timeout", T)
        return requests.request(method, self.url + path, headers=h, allow_redirects=False, **kw)


def multipart(path, content):
    b = "b" + secrets.token_hex(8)
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"metadata\"\r\n"
            f"Content-Type: application/json\r\n\r\n{json.dumps({'path': path})}\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + \
        f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def drive_execd_api(d, work):
    """Every execd route family, with the right token and with wrong ones."""
    codes = {}

    def hit(name, r, *ok):
        codes[name] = r.status_code
        assert r.status_code in ok, (name, r.status_code, r.text[:300])
        return r

    # -- authentication failures: wrong, near-miss, missing, in the query, as a Bearer
    hit("ping", d.req("GET", "/ping"), 200)
    hit("ping wrong", d.req("GET", "/ping", token=WRONG["wrong-access"]), 401)
    hit("ping near", d.req("GET", "/ping", token=WRONG["near-access"]), 401)
    hit("ping none", d.req("GET", "/ping", token=None), 401)
    for name in ("token", "access_token", "X-EXECD-ACCESS-TOKEN"):
        hit(f"query {name}", d.req("GET", f"/ping?{name}={ACCESS}", token=None), 401)
    hit("bearer", d.req("GET", "/ping", token=None, headers={"Authorization": f"Bearer {ACCESS}"}),
        401)
    hit("wrong on command", d.req("POST", "/command", token=WRONG["wrong-access"],
                                  json={"command": "echo no"}), 401)
    hit("wrong on upload", d.req("POST", "/files/upload", token=WRONG["wrong-access"],
                                 data=b"x", headers={"Content-Type": "multipart/form-data; boundary=x"}),
        401)
    hit("unknown route", d.req("GET", f"/nope?token={ACCESS}"), 404, 405)

    # -- commands: success, failure, env, background + status + logs, interrupt, bad bodies
    r = hit("command", d.req("POST", "/command", json={
        "command": "echo hello; echo oops >&2; echo $GREETING", "cwd": work,
        "envs": {"GREETING": "hi there"}, "timeout": 10000}), 200)
    assert "hello" in r.text and "hi there" in r.text, r.text
    hit("command fails", d.req("POST", "/command", json={"command": "exit 3"}), 200)
    hit("command times out", d.req("POST", "/command", json={"command": "sleep 5", "timeout": 200}), 200)
    hit("command bad cwd", d.req("POST", "/command", json={"command": "true", "cwd": "$NOPE_UNSET"}),
        400, 500)
    hit("command bad json", d.req("POST", "/command", data=b"{nope"), 400)
    r = hit("background", d.req("POST", "/command", json={"command": "echo bg; sleep 0.2",
                                                            "background": True}), 200)
    cid = json.loads(r.text.split("data: ", 1)[1].split("\n", 1)[0])["text"]
    assert harness.wait_until(
        lambda: not d.req("GET", f"/command/status/{cid}").json()["running"], 10)
    hit("logs", d.req("GET", f"/command/{cid}/logs?cursor=0"), 200)
    hit("logs bad cursor", d.req("GET", f"/command/{cid}/logs?cursor=-1"), 400)
    hit("status unknown", d.req("GET", "/command/status/" + secrets.token_hex(16)), 404)
    hit("interrupt unknown", d.req("DELETE", "/command?id=" + secrets.token_hex(16)), 404)
    hit("interrupt finished", d.req("DELETE", f"/command?id={cid}"), 500, 200)

    # -- sessions
    r = hit("session", d.req("POST", "/session", json={"cwd": work}), 200)
    sid = r.json()["session_id"]
    hit("session run", d.req("POST", f"/session/{sid}/run", json={"command": "export A=1; pwd"}), 200)
    hit("session run fails", d.req("POST", f"/session/{sid}/run", json={"command": "exit 4"}), 200)
    hit("session delete", d.req("DELETE", f"/session/{sid}"), 200)
    hit("session unknown", d.req("POST", f"/session/{sid}/run", json={"command": "true"}), 404)

    # -- metrics
    hit("metrics", d.req("GET", "/metrics"), 200)
    with d.req("GET", "/metrics/watch", stream=True, timeout=5) as r:
        assert r.status_code == 200
        next(r.iter_content(64))

    # -- files and directories, including failures
    f = os.path.join(work, "up.txt")
    body, ctype = multipart(f, b"uploaded content\n")
    hit("upload", d.req("POST", "/files/upload", data=body, headers={"Content-Type": ctype}), 200)
    body, ctype = multipart("/proc/nope/x", b"x")
    hit("upload fails", d.req("POST", "/files/upload", data=body, headers={"Content-Type": ctype}),
        400, 403, 404, 500)
    r = hit("download", d.req("GET", f"/files/download?path={q(f)}"), 200)
    assert r.content == b"uploaded content\n"
    hit("download missing", d.req("GET", f"/files/download?path={q(f + '.no')}"), 404)
    hit("download range", d.req("GET", f"/files/download?path={q(f)}", headers={"Range": "bytes=0-3"}), 206)
    hit("info", d.req("GET", f"/files/info?path={q(f)}"), 200)
    hit("search", d.req("GET", f"/files/search?path={q(work)}&pattern=*.txt"), 200)
    hit("replace", d.req("POST", "/files/replace", json={f: {"old": "content", "new": "words"}}),
        200)
    hit("permissions", d.req("POST", "/files/permissions", json={f: {"mode": 644}}), 200)
    hit("mv", d.req("POST", "/files/mv", json=[{"src": f, "dest": f + ".moved"}]), 200)
    hit("dir create", d.req("POST", "/directories", json={os.path.join(work, "sub"): {"mode": 755}}),
        200)
    hit("dir list", d.req("GET", f"/directories/list?path={q(work)}"), 200)
    hit("dir delete", d.req("DELETE", f"/directories?path={q(os.path.join(work, 'sub'))}"), 200)
    hit("file delete", d.req("DELETE", f"/files?path={q(f + '.moved')}"), 200)
    hit("file delete missing", d.req("DELETE", f"/files?path={q(f + '.gone')}"), 200, 404)

    # -- code contexts (cheap ones: a list, a bad language, an unknown id, a bash context)
    hit("contexts", d.req("GET", "/code/contexts"), 200)
    hit("context bad", d.req("POST", "/code/context", json={"language": "cobol-nope"}), 400, 404, 500)
    hit("context unknown", d.req("GET", "/code/contexts/" + secrets.token_hex(8)), 404)
    hit("code no context", d.req("POST", "/code", json={"code": "print(1)",
                                                        "context": {"id": secrets.token_hex(8)}}),
        400, 404)
    return codes


def drive_environments(d):
    """Provision / list / get / execute / delete, with right and wrong keys and tokens."""
    env_tokens = []
    b = "/api/v1/org/acme/ws/deep/environments"
    bx = "/api/v1/org/orgx/ws/deep/environments"

    assert d.api("GET", b, key=None).status_code == 401
    assert d.api("GET", b, key=WRONG["wrong-key"]).status_code == 401
    assert d.api("GET", b, key=WRONG["wrong-key"], style="x-api-key").status_code == 401
    assert d.api("GET", f"{b}?api_key={KEY}", key=None).status_code == 401
    assert d.api("GET", f"{b}?token={KEY}", key=None).status_code == 401
    assert d.api("GET", b, key=ACCESS).status_code == 401  # the access token is not an API key
    assert d.api("GET", b, key=KEY_LIMITED).status_code in (401, 403)

    envs = []
    for key, style, base in ((KEY, "bearer", b), (KEY, "x-api-key", b), (KEY_LIMITED, "bearer", bx)):
        r = d.api("POST", base, key=key, style=style,
                  json={"name": f"deep-{secrets.token_hex(3)}", "env": {"GREETING": "hi"}})
        assert r.status_code == 201, (r.status_code, r.text[:300])
        e = r.json()
        env_tokens.append(e["token"])
        envs.append((base, key, e))
    assert d.api("POST", b, json={"nope": 1}).status_code in (400, 422)
    assert d.api("POST", b, data=b"{bad json").status_code in (400, 422)

    base, key, e = envs[0]
    ex = f"{base}/{e['id']}/execute"
    r = d.api("POST", ex, headers={"X-Environment-Token": e["token"]},
              json={"command": "echo $GREETING; id -u", "timeout_sec": 20}, timeout=40)
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text[:300]
    r = d.api("POST", ex, headers={"X-Environment-Token": f"Bearer {e['token']}"},
              json={"command": "exit 5"}, timeout=40)
    assert r.status_code == 200 and r.json()["exit_code"] == 5, r.text[:300]
    r = d.api("POST", ex, headers={"X-Environment-Token": e["token"]},
              json={"command": "sleep 5", "timeout_sec": 1}, timeout=40)
    assert r.status_code == 200 and r.json()["timed_out"], r.text[:300]
    # wrong, missing, foreign and upper-cased tokens; wrong key with the right token
    for bad in (WRONG["wrong-env-token"], envs[1][2]["token"], e["token"].upper()):
        r = d.api("POST", ex, headers={"X-Environment-Token": bad}, json={"command": "true"})
        assert r.status_code in (401, 403), (r.status_code, r.text[:300])
    assert d.api("POST", ex, json={"command": "true"}).status_code in (400, 401, 403)
    assert d.api("POST", f"{ex}?token={e['token']}", json={"command": "true"}).status_code in (400, 401, 403)
    assert d.api("POST", ex, key=WRONG["wrong-key"], headers={"X-Environment-Token": e["token"]},
                 json={"command": "true"}).status_code == 401
    r = d.api("POST", f"{base}/{secrets.token_hex(16)}/execute",
              headers={"X-Environment-Token": e["token"]}, json={"command": "true"})
    assert r.status_code in (403, 404), r.text[:300]

    assert d.api("GET", b).status_code == 200
    assert d.api("GET", f"{b}/{e['id']}").status_code == 200
    for base, key, e in envs:
        assert d.api("DELETE", f"{base}/{e['id']}", key=key).status_code in (200, 204)
    base, key, e = envs[0]
    r = d.api("POST", f"{base}/{e['id']}/execute", headers={"X-Environment-Token": e["token"]},
              json={"command": "true"})
    assert r.status_code in (403, 404), r.text[:300]
    assert d.api("DELETE", f"{base}/{e['id']}").status_code == 404
    return env_tokens


@pytest.fixture
def deep(tmp_path):
    d = Deep(str(tmp_path))
    yield d
    d.stop()


def test_no_secret_in_verbose_logs(deep, tmp_path):
    work = os.path.join(deep.bus.dir, "work")
    os.makedirs(work)
    codes = drive_execd_api(deep, work)
    env_tokens = drive_environments(deep)
    # The daemon must be idle before we look: let interrupted commands finish logging.
    time.sleep(0.7)
    deep.bridge.stop()
    deep.daemon.stop()
    daemon_log = deep.daemon.log_path
    bridge_log = deep.bridge.log_path
    tokens = {ACCESS: "access-token", KEY: "api-key", KEY_LIMITED: "api-key"}
    tokens.update({t: "env-token" for t in env_tokens})
    tokens.update({v: k for k, v in WRONG.items()})
    for path in (daemon_log, bridge_log):
        assert os.path.getsize(path) > 0, f"{path} is empty: the check could not fail"
    # Logs that really are at their most verbose: debug lines from both processes.
    with open(daemon_log, errors="replace") as f:
        dlog = f.read()
    with open(bridge_log, errors="replace") as f:
        blog = f.read()
    assert "command " in dlog or "debug" in dlog.lower(), dlog[-2000:]
    assert "listening on" in blog, blog[-2000:]
    hits = check_logs.find_hits([daemon_log, bridge_log], tokens)
    out = io.StringIO()
    check_logs.report(hits, out)
    assert not hits, f"secrets in the logs ({len(codes)} requests checked):\n" + out.getvalue()


def test_grep_finds_an_injected_token(tmp_path):
    """Negative self-test: the grep must see a token (whole, half, other case) in a log, and
    its report must not print the token."""
    token = secrets.token_hex(32)
    other = secrets.token_hex(32)
    log = tmp_path / "fake.log"
    log.write_text("execd: started\n"
                   f"bridge: request with header X-Environment-Token: {token}\n"
                   "nothing here\n"
                   f"truncated {other[:32].upper()}…\n")
    hits = check_logs.find_hits([str(log)], {token: "env-token", other: "api-key"})
    assert [(h[1], h[2], h[4]) for h in hits] == [(2, token, True), (4, other, False)], hits
    out = io.StringIO()
    check_logs.report(hits, out)
    text = out.getvalue()
    assert f"{log}:2:" in text and f"{log}:4:" in text, text
    assert token not in text and token[:16] not in text and other[:16] not in text, text
    assert check_logs.find_hits([str(log)], {secrets.token_hex(32): "x"}) == []


def test_check_fails_without_logs_or_tokens_and_skips_unused(tmp_path):
    """The harness-wide check: skip when the harness never ran, fail when it ran but recorded
    nothing (a check that cannot fail), fail on a leak, pass on clean logs."""
    d = str(tmp_path / "rec")
    assert check_logs.check(d) == check_logs.SKIP
    os.makedirs(d)
    assert check_logs.check(d) == check_logs.SKIP
    with open(os.path.join(d, check_logs.MARKER), "w") as f:
        f.write("1 1 /tmp/x\n")
    assert check_logs.check(d) == 1                    # harness used, nothing recorded
    token = secrets.token_hex(16)
    with open(os.path.join(d, check_logs.TOKENS), "w") as f:
        f.write(f"access-token {token}\n")
    assert check_logs.check(d) == 1                    # tokens but no logs
    with open(os.path.join(d, "bridge-1.log"), "w") as f:
        f.write("")
    assert check_logs.check(d) == 1                    # only empty logs
    with open(os.path.join(d, "bridge-1.log"), "w") as f:
        f.write("listening on http://127.0.0.1:1\n")
    assert check_logs.check(d) == 0
    with open(os.path.join(d, "execd-2.log"), "w") as f:
        f.write(f"a line\ntoken={token}\n")
    assert check_logs.check(d) == 1                    # a leak


def test_check_moves_the_record_aside(tmp_path, monkeypatch):
    """After a run the record is renamed to <dir>.last, so a stale one cannot satisfy a later
    run; a second check right after then skips."""
    d = str(tmp_path / "rec")
    os.makedirs(d)
    for name, text in ((check_logs.MARKER, "1 1 /tmp/x\n"),
                       (check_logs.TOKENS, f"api-key {secrets.token_hex(16)}\n"),
                       ("execd-1.log", "started\n")):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    monkeypatch.setenv("EXECD_SECRETS_DIR", d)
    assert check_logs.main() == 0
    assert not os.path.exists(d) and os.path.isdir(d + ".last")
    assert check_logs.main() == check_logs.SKIP
