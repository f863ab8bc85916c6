"""X-EXECD-ACCESS-TOKEN is required on every route, /ping included, byte-exact."""
import time

import pytest

from execd_http import AUTH_ERROR, is_json, random_id

ROUTES = [
    ("GET", "/ping", None),
    ("POST", "/command", {"command": "true"}),
    ("DELETE", "/command?id=" + "0" * 32, None),
    ("GET", "/command/status/" + "0" * 32, None),
    ("GET", "/command/" + "0" * 32 + "/logs", None),
    ("GET", "/no/such/route", None),
]

# Optional white space around a header value is not part of it (RFC 9110 5.5), so "token "
# is the token; "inner-space" puts the space where it counts.
BAD_TOKENS = ["missing", "wrong", "swapcase", "inner-space", "prefix", "extended", "empty"]


def bad_headers(kind, token):
    if kind == "missing":
        return {}
    if kind == "wrong":
        return {"X-EXECD-ACCESS-TOKEN": random_id()}
    if kind == "swapcase":
        other = token.swapcase()
        assert other != token
        return {"X-EXECD-ACCESS-TOKEN": other}
    if kind == "inner-space":
        return {"X-EXECD-ACCESS-TOKEN": token[:4] + " " + token[4:]}
    if kind == "prefix":
        return {"X-EXECD-ACCESS-TOKEN": token[:-1]}
    if kind == "extended":
        return {"X-EXECD-ACCESS-TOKEN": token + "0"}
    if kind == "empty":
        return {"X-EXECD-ACCESS-TOKEN": ""}
    raise AssertionError(kind)


def assert_unauthorized(r):
    assert r.status_code == 401, (r.status_code, r.text[:300])
    assert is_json(r), r.headers.get("Content-Type")
    assert r.json() == AUTH_ERROR


@pytest.mark.parametrize("kind", BAD_TOKENS)
@pytest.mark.parametrize("method,path,body", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_bad_token_is_401(stack, method, path, body, kind):
    r = stack.request(method, path, auth=False, headers=bad_headers(kind, stack.bridge.token),
                      json=body)
    assert_unauthorized(r)


def test_unauthorized_command_does_not_run(stack, tmp):
    marker = tmp / "ran"
    assert stack.bridge.token.upper() != stack.bridge.token
    r = stack.post("/command", auth=False, json={"command": f"touch {marker}"},
                   headers={"X-EXECD-ACCESS-TOKEN": stack.bridge.token.upper()})
    assert_unauthorized(r)
    time.sleep(0.3)
    assert not marker.exists()


def test_header_name_is_case_insensitive(stack):
    r = stack.get("/ping", auth=False,
                  headers={"x-execd-access-token": stack.bridge.token})
    assert r.status_code == 200, r.text


EXPECTED_WITH_TOKEN = [200, 200, 404, 404, 404, 404]  # ROUTES order; unknown ids are 404


@pytest.mark.parametrize("method,path,body,expected",
                         [r + (e,) for r, e in zip(ROUTES, EXPECTED_WITH_TOKEN)],
                         ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_correct_token_is_accepted(stack, method, path, body, expected):
    r = stack.request(method, path, json=body)
    assert r.status_code == expected, (r.status_code, r.text[:300])
