"""GET /ping, unknown routes (404) and wrong methods (405)."""
import pytest

from execd_http import assert_error


def test_ping(stack):
    r = stack.get("/ping")
    assert r.status_code == 200
    assert r.headers.get("Content-Length") == "0", r.headers
    assert "chunked" not in r.headers.get("Transfer-Encoding", "")
    assert r.content == b""


@pytest.mark.parametrize("method,path", [
    ("GET", "/"),
    ("GET", "/nope"),
    ("POST", "/commands"),
    ("GET", "/command/status"),
    ("GET", "/command/abc/logs/extra"),
    ("GET", "/pingx"),
])
def test_unknown_route_is_404(stack, method, path):
    r = stack.request(method, path)
    assert_error(r, 404, "NOT_FOUND")


@pytest.mark.parametrize("method,path,allowed", [
    ("GET", "/command", {"POST", "DELETE"}),
    ("PUT", "/command", {"POST", "DELETE"}),
    ("POST", "/ping", {"GET"}),
    ("DELETE", "/ping", {"GET"}),
    ("POST", "/command/status/" + "0" * 32, {"GET"}),
    ("DELETE", "/command/" + "0" * 32 + "/logs", {"GET"}),
])
def test_wrong_method_is_405(stack, method, path, allowed):
    r = stack.request(method, path)
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    assert allowed <= allow, r.headers.get("Allow")
    assert method not in allow, r.headers.get("Allow")
