"""Security of the bridge, beyond test_auth.py and test_environments.py:

- every execd route of bridge/eb-server.c's route table (read from the source, so a new route
  is not forgotten) refuses a missing, empty, wrong, near-miss (one character changed, a
  prefix, the token plus more, another case) token, or the token in the wrong header, with 401
  and the execd envelope; the environments API refuses the same variants of an API key (both
  spellings) on every one of its routes with 401 in its envelope, and execute refuses the same
  variants of the environment token (and the other secrets) with 401/403;
- no secret (the access token, the API keys, the environment tokens, in any case) appears in
  any answer's body or headers, be it an error, a listing, a single environment, or the output
  of a command (the daemon's environment and an environment's own);
- the secrets are not interchangeable: the access token is no API key, an API key no access
  token, an environment token neither.

The comparisons themselves are constant-time (bridge/eb-server.c token_equal,
bridge/eb-routes-env.c secret_equal, daemon/environment.c digest_equal on SHA-256 digests);
timing is not measured here (too noisy).
"""
import os
import re
import secrets

import pytest
import requests

import harness
from execd_http import AUTH_ERROR
from test_environments import KEY, KEY_LIMITED, EnvStack, assert_envelope, base, check_exec

ROUTE_RE = re.compile(r'\{\s*"([A-Z]+)",\s*"(/[^"]*)",\s*(eb_route_\w+)\s*\}')
ID = "0123456789abcdef0123456789abcdef"


def execd_routes():
    with open(os.path.join(harness.SOURCE_ROOT, "bridge", "eb-server.c")) as f:
        src = f.read()
    table = src[src.index("static const EbRoute routes[]"):]
    table = table[:table.index("};")]
    routes = [(m, p.replace("*", ID)) for m, p, _h in ROUTE_RE.findall(table)]
    assert len(routes) >= 28, routes
    return routes


ROUTES = execd_routes()
# The environments API's routes (eb_route_environments): list, provision, get, delete, execute.
ENV_ROUTES = [("GET", ""), ("POST", ""), ("GET", "/{id}"), ("DELETE", "/{id}"),
              ("POST", "/{id}/execute")]


def near_misses(token):
    """Variants of a secret that must all be refused."""
    flip = lambda s, i: s[:i] + ("0" if s[i] != "0" else "1") + s[i + 1:]  # noqa: E731
    out = {
        "empty": "",
        "wrong": secrets.token_hex(len(token) // 2),
        "first-char": flip(token, 0),
        "middle-char": flip(token, len(token) // 2),
        "last-char": flip(token, len(token) - 1),
        "prefix": token[:-1],
        "half": token[:len(token) // 2],
        "extra": token + "0",
        "doubled": token + token,
        "upper": token.upper(),
        "inner-space": token[:4] + " " + token[4:],
        "nul-suffix": token + "%00",
    }
    if token.upper() == token:
        out["lower"] = token.lower()
    return out


@pytest.fixture(scope="module")
def st():
    s = EnvStack()
    s.token = s.bridge.token
    s.env_tokens = []
    yield s
    s.stop()


def secrets_of(st):
    vals = [st.token, KEY, KEY_LIMITED, *st.env_tokens]
    return {v2 for v in vals for v2 in (v, v.upper(), v.lower())}


def assert_no_secret(st, r, allowed=()):
    """Neither the body nor any header of r holds a secret (other than `allowed`)."""
    hay = r.content.decode("latin-1") + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
    for s in secrets_of(st) - set(allowed):
        assert s not in hay, f"a secret appears in the answer to {r.request.method} {r.request.url}"


def raw(st, method, path, headers=None, whole=False, **kw):
    kw.setdefault("timeout", 15)
    r = requests.request(method, st.url + path, headers=headers or {}, allow_redirects=False,
                         stream=True, **kw)
    # Streams (SSE) are read for a moment only, unless the whole answer is wanted.
    if r.headers.get("Content-Type", "").startswith("text/event-stream") and not whole:
        r._content = next(r.iter_content(4096), b"")
        r.close()
    else:
        r.content  # noqa: B018
    return r


def body_for(method, path):
    if method != "POST":
        return None
    if path == "/command" or path == "/code":
        return {"command": "true", "code": "1"}
    return {}


def assert_execd_401(st, r):
    assert r.status_code == 401, (r.request.method, r.request.url, r.status_code, r.text[:300])
    assert r.headers.get("Content-Type", "").split(";")[0] == "application/json", r.headers
    b = r.json()
    assert b == AUTH_ERROR, b
    assert isinstance(b["code"], str) and isinstance(b["message"], str)
    assert_no_secret(st, r)


# --------------------------------------------------------------------------- execd routes
def test_route_table_is_read(st):
    paths = {p for _m, p in ROUTES}
    assert "/ping" in paths and "/command" in paths and "/files/upload" in paths
    assert f"/command/status/{ID}" in paths and f"/session/{ID}/run" in paths


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_execd_route_refuses_bad_tokens(st, method, path):
    body = body_for(method, path)
    cases = {"missing": {}}
    cases.update({k: {"X-EXECD-ACCESS-TOKEN": v} for k, v in near_misses(st.token).items()})
    cases["bearer-header"] = {"Authorization": f"Bearer {st.token}"}
    cases["api-key-header"] = {"X-API-Key": st.token}
    cases["api-key-as-token"] = {"X-EXECD-ACCESS-TOKEN": KEY}
    cases["other-header-name"] = {"X-EXECD-ACCESS-TOKENS": st.token}
    for kind, headers in cases.items():
        r = raw(st, method, path, headers=headers, json=body)
        try:
            assert_execd_401(st, r)
        except AssertionError as e:
            raise AssertionError(f"{kind}: {e}") from None


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_execd_route_exists_with_the_token(st, method, path):
    """The table entries are real routes: with the token, none is 401 or 'no route'."""
    r = raw(st, method, path, headers={"X-EXECD-ACCESS-TOKEN": st.token}, json=body_for(method, path))
    assert r.status_code != 401, r.text[:300]
    assert "no route" not in r.text, r.text[:300]
    assert r.status_code != 405, r.text[:300]
    assert_no_secret(st, r)


def test_unknown_routes_refuse_bad_tokens_too(st):
    for path in ("/", "/nope", "/command/x/y/z", "/ping/", "//ping", "/API/v1/org/a/ws/b/environments"):
        r = raw(st, "GET", path, headers={"X-EXECD-ACCESS-TOKEN": st.token[:-1]})
        assert_execd_401(st, r)


def test_a_refused_upload_writes_nothing(st, tmp_path):
    os.chmod(tmp_path, 0o755)
    target = tmp_path / "up"
    r = raw(st, "POST", "/files/upload", headers={"X-EXECD-ACCESS-TOKEN": st.token.upper()},
            files={"metadata": (None, '{"path": "%s"}' % target), "file": ("f", b"data")})
    assert_execd_401(st, r)
    assert not target.exists()


def test_command_output_holds_no_secret(st):
    """The daemon's environment (what commands see) holds no secret of the bridge."""
    r = raw(st, "POST", "/command", headers={"X-EXECD-ACCESS-TOKEN": st.token},
            json={"command": "env; cat /proc/$PPID/environ 2>/dev/null | tr '\\0' '\\n'"},
            timeout=30, whole=True)
    assert r.status_code == 200, r.text[:300]
    assert "execution_complete" in r.text or "PATH=" in r.text, r.text[:300]
    assert_no_secret(st, r)


# --------------------------------------------------------------------------- environments
def env_url(e, suffix):
    return base(e["org"], e["workspace"]) + suffix.replace("{id}", e["id"])


@pytest.fixture(scope="module")
def envs(st):
    made = []
    for i in range(2):
        r = requests.post(st.url + base("sec", "ws"), headers={"Authorization": f"Bearer {KEY}"},
                          json={"name": f"sec{i}-{secrets.token_hex(3)}"}, timeout=15)
        assert r.status_code == 201, r.text
        e = r.json()
        st.env_tokens.append(e["token"])
        # the provision answer shows the environment's own token once, and nothing else secret
        assert_no_secret(st, r, allowed={e["token"], e["token"].upper(), e["token"].lower()})
        made.append(e)
    return made


@pytest.mark.parametrize("method,suffix", ENV_ROUTES, ids=[f"{m} {s}" for m, s in ENV_ROUTES])
def test_every_environment_route_refuses_bad_api_keys(st, envs, method, suffix):
    e = envs[0]
    path = env_url(e, suffix)
    body = {"command": "touch pwned"} if suffix.endswith("execute") else \
        ({"name": "never-" + secrets.token_hex(3)} if method == "POST" else None)
    variants = {f"{style}-{k}": (style, v) for k, v in near_misses(KEY).items()
                for style in ("bearer", "x-api-key")}
    variants["access-token"] = ("bearer", st.token)
    variants["env-token"] = ("bearer", e["token"])
    cases = {"missing": {}, "basic-scheme": {"Authorization": f"Basic {KEY}"},
             "no-scheme": {"Authorization": KEY}}
    for kind, (style, v) in variants.items():
        cases[kind] = {"Authorization": f"Bearer {v}"} if style == "bearer" else {"X-API-Key": v}
    for kind, headers in cases.items():
        headers = dict(headers, **{"X-Environment-Token": e["token"]}) \
            if suffix.endswith("execute") else headers
        r = raw(st, method, path, headers=headers, json=body)
        try:
            b = assert_envelope(r, 401, "authentication_error")
            assert set(b) <= {"code", "detail", "type", "errors"}, b
            assert_no_secret(st, r)
        except AssertionError as err:
            raise AssertionError(f"{kind}: {err}") from None
    # nothing was made, deleted or run
    r = raw(st, "GET", base("sec", "ws"), headers={"Authorization": f"Bearer {KEY}"})
    names = sorted(x["name"] for x in r.json()["environments"])
    assert not [n for n in names if n.startswith("never-")], names
    assert len(names) >= 2


def test_execute_refuses_bad_environment_tokens(st, envs):
    e, other = envs
    path = env_url(e, "/{id}/execute")
    key = {"Authorization": f"Bearer {KEY}"}
    cases = {k: v for k, v in near_misses(e["token"]).items() if k != "empty"}
    cases.update({"other-env": other["token"], "api-key": KEY, "access-token": st.token,
                  "bearer-other": "Bearer " + other["token"],
                  "bearer-near": "Bearer " + e["token"][:-1]})
    for kind, tok in cases.items():
        r = raw(st, "POST", path, headers=dict(key, **{"X-Environment-Token": tok}),
                json={"command": f"touch pwned-{kind}"})
        try:
            b = assert_envelope(r, 403, "forbidden")
            assert set(b) <= {"code", "detail", "type", "errors"}, b
            assert_no_secret(st, r)
            assert tok not in r.text or len(tok) < 8, f"the given token is echoed: {r.text}"
        except AssertionError as err:
            raise AssertionError(f"{kind}: {err}") from None
    for kind, headers in {"missing": {}, "empty": {"X-Environment-Token": ""},
                          "wrong-header": {"X-Environment-Tokens": e["token"]},
                          "authorization-only": {}}.items():
        r = raw(st, "POST", path, headers=dict(key, **headers), json={"command": "touch pwned"})
        assert_envelope(r, 401, "authentication_error")
        assert_no_secret(st, r)
    # none of them ran anything
    r = raw(st, "POST", path, headers=dict(key, **{"X-Environment-Token": e["token"]}),
            json={"command": "ls -A"})
    out = check_exec(r)["output"]
    assert "pwned" not in out, out
    assert_no_secret(st, r)


def test_listings_and_errors_hold_no_token(st, envs):
    key = {"Authorization": f"Bearer {KEY}"}
    answers = [
        raw(st, "GET", base("sec", "ws"), headers=key),
        raw(st, "GET", base("sec", "ws"), headers={"X-API-Key": KEY}),
        *[raw(st, "GET", env_url(e, "/{id}"), headers=key) for e in envs],
        raw(st, "GET", base("other", "ws"), headers=key),
        raw(st, "GET", base("sec", "ws") + "/" + ID, headers=key),                 # 404
        raw(st, "GET", base("sec", "ws") + "/" + envs[0]["token"], headers=key),   # 404
        raw(st, "POST", base("sec", "ws"), headers=key, json={"name": envs[0]["name"]}),  # 409
        raw(st, "POST", env_url(envs[0], "/{id}/execute"),
            headers=dict(key, **{"X-Environment-Token": envs[0]["token"]}), json={"command": ""}),
        raw(st, "POST", env_url(envs[0], "/{id}/execute"),
            headers=dict(key, **{"X-Environment-Token": envs[0]["token"]}), data=b"{bad"),
        raw(st, "PUT", env_url(envs[0], "/{id}"), headers=key),                   # 405
        raw(st, "GET", base("sec", "ws"), headers=dict(key, **{"X-API-Version": "2"})),  # 426
    ]
    for r in answers:
        # the 404 for an id that happens to be a token echoes the path: that is what was sent
        allowed = {envs[0]["token"]} if envs[0]["token"] in r.request.url else set()
        assert_no_secret(st, r, allowed=allowed)
    listing = answers[0].json()["environments"]
    assert listing and all("token" not in x for x in listing), listing
    for r in answers[2:4]:
        assert "token" not in r.json(), r.json()


def test_environment_output_holds_no_secret(st, envs):
    """What runs in an environment sees none of the secrets (not its own token either)."""
    e = envs[0]
    r = raw(st, "POST", env_url(e, "/{id}/execute"),
            headers={"Authorization": f"Bearer {KEY}", "X-Environment-Token": e["token"]},
            json={"command": "env; cat /proc/$$/environ | tr '\\0' '\\n'; ls -la ~"})
    out = check_exec(r)["output"]
    assert "PATH=" in out or "HOME=" in out, out
    assert_no_secret(st, r)


def test_api_keys_are_not_access_tokens(st):
    for k in (KEY, KEY_LIMITED):
        r = raw(st, "GET", "/ping", headers={"X-EXECD-ACCESS-TOKEN": k})
        assert_execd_401(st, r)
