"""Background commands, GET /command/status/ID and GET /command/ID/logs."""
import time

import pytest

from execd_http import assert_error, is_json, parse_rfc3339, random_id

CURSOR = "EXECD-COMMANDS-TAIL-CURSOR"


def logs(stack, cid, cursor=None):
    path = f"/command/{cid}/logs" + ("" if cursor is None else f"?cursor={cursor}")
    r = stack.get(path)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    ctype = r.headers.get("Content-Type", "").replace(" ", "").lower()
    assert ctype == "text/plain;charset=utf-8", r.headers.get("Content-Type")
    assert r.headers.get(CURSOR, "").isdigit(), r.headers
    return r.content, int(r.headers[CURSOR])


def test_background_lifecycle(stack):
    command = "sleep 3; echo done"
    t0 = time.time_ns()
    run = stack.run(command, background=True)
    assert run.elapsed < 2, run.elapsed
    st = stack.status(run.id)
    assert st["id"] == run.id
    assert st["content"] == command
    assert st["running"] is True
    assert "exit_code" in st and st["exit_code"] is None, st
    assert "finished_at" in st and st["finished_at"] is None, st
    assert "error" not in st, st
    started = parse_rfc3339(st["started_at"])
    assert t0 - 1_000_000_000 <= started <= time.time_ns(), st
    st = stack.wait_finished(run.id, timeout=10)
    assert st["running"] is False
    assert st["exit_code"] == 0, st
    assert "error" not in st, st
    assert st["content"] == command
    assert st["started_at"] == stack.status(run.id)["started_at"]
    finished = parse_rfc3339(st["finished_at"])
    assert started <= finished, st
    assert finished - started >= 2_500_000_000, st  # it slept 3 s
    assert finished <= time.time_ns()
    assert logs(stack, run.id) == (b"done\n", 5)


def test_background_output_not_streamed(stack):
    run = stack.run("echo hidden; echo hidden2 >&2", background=True)
    assert run.stdout == [] and run.stderr == []
    st = stack.wait_finished(run.id)
    assert st["exit_code"] == 0
    body, cur = logs(stack, run.id)
    assert sorted(body.decode().splitlines()) == ["hidden", "hidden2"]
    assert cur == len(body)


def test_background_exit_status(stack):
    run = stack.run("exit 3", background=True)
    st = stack.wait_finished(run.id)
    assert st["exit_code"] == 3
    assert st["error"] == "exit status 3"


def test_logs_cursor(stack):
    run = stack.run(r"printf 'line1\nline2\n'", background=True)
    stack.wait_finished(run.id)
    assert logs(stack, run.id) == (b"line1\nline2\n", 12)
    assert logs(stack, run.id, 0) == (b"line1\nline2\n", 12)
    assert logs(stack, run.id, 12) == (b"", 12)
    assert logs(stack, run.id, 6) == (b"line2\n", 12)
    body, cur = logs(stack, run.id, 100)
    assert body == b"" and cur in (12, 100), cur


def test_logs_are_raw_bytes(stack):
    run = stack.run(r"printf 'a\r\nb\0c\xff'", background=True)
    stack.wait_finished(run.id)
    assert logs(stack, run.id) == (b"a\r\nb\0c\xff", 7)


def test_logs_grow_while_running(stack):
    run = stack.run("for i in 1 2 3 4; do echo $i; sleep 0.4; done", background=True)
    seen_partial = False
    collected = b""
    cursor = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        running = stack.status(run.id)["running"]
        body, cursor_next = logs(stack, run.id, cursor)
        assert cursor_next == cursor + len(body)
        collected += body
        cursor = cursor_next
        if running and collected and collected != b"1\n2\n3\n4\n":
            seen_partial = True
        if not running:
            break
        time.sleep(0.1)
    body, cursor = logs(stack, run.id, cursor)
    collected += body
    assert collected == b"1\n2\n3\n4\n"
    assert seen_partial, "never saw partial logs while the command was running"
    assert logs(stack, run.id) == (b"1\n2\n3\n4\n", 8)


def test_logs_unknown_id(stack):
    assert_error(stack.get(f"/command/{random_id()}/logs"), 404, "INVALID_REQUEST_BODY")


def test_logs_foreground_command(stack):
    run = stack.run("echo fg")
    assert_error(stack.get(f"/command/{run.id}/logs"), 400, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize("cursor", ["-1", "abc", "1.5", "12abc"])
def test_logs_bad_cursor(stack, cursor):
    run = stack.run("echo x", background=True)
    stack.wait_finished(run.id)
    r = stack.get(f"/command/{run.id}/logs?cursor={cursor}")
    assert_error(r, 400, "INVALID_REQUEST_BODY")


# -- status --------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", [random_id(), "nope", "not-a-valid-id",
                                 "ABCDEF0123456789ABCDEF0123456789"])
def test_status_unknown_id(stack, cid):
    r = stack.get(f"/command/status/{cid}")
    assert_error(r, 404, "INVALID_REQUEST_BODY", message=f"command not found: {cid}")


def test_status_foreground_success(stack):
    t0 = time.time_ns()
    run = stack.run("echo hi")
    st = stack.status(run.id)
    assert is_json(stack.get(f"/command/status/{run.id}"))
    assert st["id"] == run.id
    assert st["content"] == "echo hi"
    assert st["running"] is False
    assert st["exit_code"] == 0
    assert "error" not in st, st
    started = parse_rfc3339(st["started_at"])
    finished = parse_rfc3339(st["finished_at"])
    assert t0 - 1_000_000_000 <= started <= finished <= time.time_ns() + 1_000_000_000, st
    assert set(st) <= {"id", "content", "running", "exit_code", "error", "started_at",
                       "finished_at"}, st


def test_status_exit_3(stack):
    run = stack.run("exit 3")
    st = stack.status(run.id)
    assert st["running"] is False
    assert st["exit_code"] == 3
    assert st["error"] == "exit status 3"


def test_status_content_is_exact(stack):
    command = "echo 'a  b'\t# comment ü \\ \"q\""
    run = stack.run(command)
    assert stack.status(run.id)["content"] == command


def test_status_foreground_running(stack):
    s = stack.stream({"command": "sleep 2; echo x"}).check_headers()
    try:
        init = s.next_event(time.monotonic() + 5)
        assert init["type"] == "init"
        st = stack.status(init["text"])
        assert st["running"] is True
        assert st["exit_code"] is None and st["finished_at"] is None, st
    finally:
        s.close()


def test_background_large_output_logs(stack):
    run = stack.run("seq 1 200000", background=True)
    stack.wait_finished(run.id, timeout=20)
    expected = "".join(f"{i}\n" for i in range(1, 200001)).encode()
    body, cur = logs(stack, run.id)
    assert cur == len(expected), cur
    assert body == expected
