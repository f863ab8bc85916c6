"""POST /command bodies rejected before any event: plain JSON 400 (or 413), no stream, no run."""
import http.client
import json
import os
import time

import pytest

from execd_http import assert_error


def marker_cmd(tmp):
    return f"touch {tmp}/ran"


def assert_not_run(tmp):
    time.sleep(0.3)
    assert not os.path.exists(f"{tmp}/ran"), "the rejected command ran"


RAW_BODIES = {
    "empty": b"",
    "not-json": b"not json",
    "truncated": b'{"command":"echo x"',
    "array": b"[]",
    "array-of-object": b'[{"command":"echo x"}]',
    "string": b'"echo x"',
    "number": b"42",
    "null": b"null",
    "empty-object": b"{}",
}


@pytest.mark.parametrize("name", list(RAW_BODIES))
def test_invalid_raw_body(stack, name):
    r = stack.post("/command", data=RAW_BODIES[name],
                   headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


BAD_FIELDS = {
    "command-empty": {"command": ""},
    "command-null": {"command": None},
    "command-number": {"command": 5},
    "command-array": {"command": ["echo", "x"]},
    "timeout-string": {"timeout": "5"},
    "timeout-negative": {"timeout": -1},
    "timeout-float": {"timeout": 1.5},
    "uid-negative": {"uid": -1},
    "uid-float": {"uid": 1.5},
    "uid-too-big": {"uid": 4294967296},
    "uid-string": {"uid": "0"},
    "gid-negative": {"uid": 0, "gid": -1},
    "gid-too-big": {"uid": 0, "gid": 4294967296},
    "envs-number-value": {"envs": {"A": 1}},
    "envs-null-value": {"envs": {"A": None}},
    "envs-array": {"envs": ["A=1"]},
    "envs-string": {"envs": "A=1"},
    "background-string": {"background": "yes"},
    "background-number": {"background": 1},
    "cwd-number": {"cwd": 5},
}


@pytest.mark.parametrize("name", list(BAD_FIELDS))
def test_invalid_field(stack, tmp, name):
    body = {"command": marker_cmd(tmp)}
    body.update(BAD_FIELDS[name])
    r = stack.post("/command", json=body)
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert_not_run(tmp)


def test_missing_command(stack):
    r = stack.post("/command", json={"cwd": "/", "envs": {"A": "b"}})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


def test_gid_without_uid(stack, tmp):
    r = stack.post("/command", json={"command": marker_cmd(tmp), "gid": 100})
    assert_error(r, 400, "INVALID_REQUEST_BODY", contains="uid is required when gid is provided")
    assert_not_run(tmp)


def test_cwd_nonexistent(stack, tmp):
    cwd = str(tmp / "does-not-exist")
    r = stack.post("/command", json={"command": marker_cmd(tmp), "cwd": cwd})
    assert_error(r, 400, "INVALID_REQUEST_BODY", contains=cwd)
    assert_not_run(tmp)


def test_cwd_is_a_file(stack, tmp):
    path = tmp / "afile"
    path.write_text("x")
    r = stack.post("/command", json={"command": marker_cmd(tmp), "cwd": str(path)})
    assert_error(r, 400, "INVALID_REQUEST_BODY", contains=str(path))
    assert_not_run(tmp)


def test_cwd_undefined_variable(stack, tmp):
    r = stack.post("/command", json={"command": marker_cmd(tmp),
                                     "cwd": "/$EXECD_TEST_UNDEFINED_VAR_X"})
    assert_error(r, 400, "INVALID_REQUEST_BODY", contains="EXECD_TEST_UNDEFINED_VAR_X")
    assert_not_run(tmp)


def test_background_validation_is_plain_json(stack, tmp):
    r = stack.post("/command", json={"command": marker_cmd(tmp), "background": True,
                                     "cwd": str(tmp / "nope")})
    assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert_not_run(tmp)


def _post_raw(stack, body, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", stack.bridge.port, timeout=timeout)
    try:
        conn.putrequest("POST", "/command")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        for k, v in stack.headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer before reading everything; read the answer anyway
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("size", [1024 * 1024 + 1, 3 * 1024 * 1024])
def test_body_over_1mib_is_413(stack, tmp, size):
    body = {"command": marker_cmd(tmp), "pad": ""}
    base = len(json.dumps(body, separators=(",", ":")).encode())
    body["pad"] = "a" * (size - base)
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert len(raw) == size
    status, headers, data = _post_raw(stack, raw)
    assert status == 413, (status, data[:300])
    assert headers.get("Content-Type", "").split(";")[0] == "application/json", headers
    err = json.loads(data)
    assert err.get("code") == "REQUEST_TOO_LARGE", err
    assert isinstance(err.get("message"), str) and err["message"]
    assert_not_run(tmp)


def test_bridge_still_works_after_413(stack):
    _post_raw(stack, b"{" + b" " * (2 * 1024 * 1024) + b"}")
    r = stack.get("/ping")
    assert r.status_code == 200


def test_nul_in_a_string_is_refused_not_truncated(stack, tmp_path):
    """json-glib would cut "a\\u0000b" to "a": running a prefix of the command is refused."""
    marker = tmp_path / "ran"
    r = stack.post("/command", data=('{"command":"true\\u0000; touch ' + str(marker) + '"}').encode())
    assert_error(r, 400, "INVALID_REQUEST_BODY", contains="NUL")
    r = stack.post("/command", data=('{"command":"touch ' + str(marker) + '","cwd":"/tmp\\u0000/x"}').encode())
    assert_error(r, 400, "INVALID_REQUEST_BODY", contains="NUL")
    assert not marker.exists()
    # An escaped backslash before u0000 is ordinary text.
    run = stack.run('printf "%s\\n" "\\\\u0000"')
    assert run.stdout == ["\\u0000"]


def test_start_failure_is_a_json_500_before_any_event(stack, tmp_path):
    """The command cannot start (uid 65534 may not enter a 0700 root directory): a plain JSON
    RUNTIME_ERROR naming the cause, no stream, no command."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    r = stack.post("/command", json={"command": "pwd", "uid": 65534, "cwd": str(private)})
    assert_error(r, 500, "RUNTIME_ERROR", contains="Permission denied")
