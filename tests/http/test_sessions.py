"""Bash sessions over HTTP: POST /session, POST /session/{id}/run, DELETE /session/{id},
and DELETE /command?id= / DELETE /code?id= naming a session."""
import base64
import json
import re
import threading
import time

import pytest

import sse
from execd_http import assert_error, is_json, kill_group, pgroup_members, pid_exists, random_id

ID_RE = re.compile(r"^[0-9a-f]{32}$")


# --------------------------------------------------------------------------- helpers
def create(stack, body=None, **kw):
    """POST /session; return the session id."""
    if body is None:
        r = stack.post("/session", **kw)
    else:
        r = stack.post("/session", json=body, **kw)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert is_json(r), r.headers
    data = r.json()
    assert set(data) == {"session_id"}, data
    assert ID_RE.match(data["session_id"]), data
    return data["session_id"]


def delete(stack, sid):
    return stack.delete(f"/session/{sid}")


def sstream(stack, sid, body, timeout=30):
    if isinstance(body, str):
        body = {"command": body}
    h = dict(stack.headers)
    return sse.EventStream(stack.url, f"/session/{sid}/run", body, headers=h, timeout=timeout)


def check_session_events(events, sid):
    """The session-run event model on top of the command one; returns the sse.CommandRun."""
    run = sse.check_command_events(events)
    s = sse.summarize(events)
    assert run.id == sid, f"init text {run.id!r} is not the session id {sid}: {s}"
    assert run.stderr == [], f"session runs report stderr as stdout: {s}"
    for line in run.stdout:
        assert line and not line.endswith(("\n", "\r")) and line != "\n", \
            f"empty line or terminator in a stdout event {line!r}: {s}"
    if run.ok:
        assert isinstance(run.terminal.get("execution_time"), int), run.terminal
    return run


def srun(stack, sid, body, timeout=30):
    """Run to the end of the stream; return the checked run (with .elapsed)."""
    s = sstream(stack, sid, body, timeout=timeout).check_headers()
    events = s.read_all(timeout)
    run = check_session_events(events, sid)
    run.elapsed = s.elapsed()
    return run


def start(stack, sid, command, n_lines=1, timeout=10):
    """Open a run and read its first n_lines stdout lines (pids it prints); (stream, lines)."""
    s = sstream(stack, sid, command).check_headers()
    deadline = time.monotonic() + timeout
    init = s.next_event(deadline)
    assert init and init["type"] == "init" and init["text"] == sid, init
    lines = []
    while len(lines) < n_lines:
        e = s.next_event(deadline)
        assert e is not None and e["type"] not in sse.TERMINAL_TYPES, sse.summarize(s.events)
        if e["type"] == "stdout":
            lines.append(e["text"])
    return s, lines


def gone(pid):
    """True when pid no longer exists and no process is left in its group."""
    return not pid_exists(pid) and not pgroup_members(pid)


def wait_gone(pids, timeout=3):
    deadline = time.monotonic() + timeout
    while not all(gone(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def assert_empty_200(r):
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers.get("Content-Length") == "0", r.headers
    assert r.content == b""


@pytest.fixture
def sid(stack):
    s = create(stack)
    yield s
    delete(stack, s)


# --------------------------------------------------------------------------- POST /session
def test_create_empty_body_with_json_content_type(stack):
    r = stack.post("/session", data=b"", headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    assert ID_RE.match(sid)
    assert_empty_200(delete(stack, sid))


def test_create_without_body(stack):
    sid = create(stack)
    assert_empty_200(delete(stack, sid))


def test_create_empty_object(stack):
    sid = create(stack, {})
    assert_empty_200(delete(stack, sid))


def test_create_ids_unique(stack):
    ids = [create(stack) for _ in range(3)]
    assert len(set(ids)) == 3
    for s in ids:
        delete(stack, s)


def test_create_null_cwd(stack):
    sid = create(stack, {"cwd": None})
    assert_empty_200(delete(stack, sid))


def test_create_cwd_created_with_parents(stack, tmp):
    target = tmp / "a" / "b c" / "d"
    sid = create(stack, {"cwd": str(target)})
    try:
        assert target.is_dir()
        run = srun(stack, sid, "pwd")
        assert run.ok and run.stdout == [str(target)]
    finally:
        delete(stack, sid)


def test_create_existing_cwd(stack, tmp):
    sid = create(stack, {"cwd": str(tmp)})
    try:
        run = srun(stack, sid, "pwd")
        assert run.stdout == [str(tmp)]
    finally:
        delete(stack, sid)


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"cwd": }', b"[]", b'"x"'])
def test_create_bad_json(stack, raw):
    r = stack.post("/session", data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize("cwd", [5, ["/tmp"], True, {"a": 1}])
def test_create_cwd_not_a_string(stack, cwd):
    assert_error(stack.post("/session", json={"cwd": cwd}), 400, "INVALID_REQUEST_BODY")


# --------------------------------------------------------------------------- run: events
def test_run_events(stack, sid):
    run = srun(stack, sid, r"echo out; echo err >&2; printf '\n\nx\n\n\n'; echo last")
    types = [e["type"] for e in run.events if e["type"] != "ping"]
    assert types == ["init"] + ["stdout"] * 4 + ["execution_complete"], sse.summarize(run.events)
    assert run.stdout == ["out", "err", "x", "last"]
    assert run.terminal["execution_time"] >= 1
    ts = [e["timestamp"] for e in run.events]
    assert ts == sorted(ts)


def test_init_is_session_id_every_run(stack, sid):
    for _ in range(3):
        assert srun(stack, sid, "true").id == sid


@pytest.mark.parametrize("command,expected", [
    (r"printf 'a\r\nb\r\n'", ["a", "b"]),
    (r"printf 'a\rb\n\r\n\nc'", ["a", "b", "c"]),
    (r"printf 'no newline'", ["no newline"]),
    (r"printf '\n\n\n'", []),
    (r"printf '  spaced \t\n'", ["  spaced \t"]),
    (r"printf 'hel'; sleep 0.2; printf 'lo\n'", ["hello"]),
    (r"printf 'x\n'; printf 'y\n' >&2; printf 'z\n'", ["x", "y", "z"]),
])
def test_run_lines(stack, sid, command, expected):
    run = srun(stack, sid, command)
    assert run.ok, run.terminal
    assert run.stdout == expected


def test_run_many_lines(stack, sid):
    run = srun(stack, sid, "seq 1 20000")
    assert run.ok
    assert run.stdout == [str(i) for i in range(1, 20001)]


def test_run_exit_status(stack, sid):
    run = srun(stack, sid, "echo before; exit 3")
    assert run.error == {"ename": "CommandExecError", "evalue": "3",
                         "traceback": ["exit status 3"]}
    assert not [e for e in run.events if e["type"] == "execution_complete"]
    assert run.stdout == ["before"]


def test_run_false(stack, sid):
    run = srun(stack, sid, "false")
    assert run.error == {"ename": "CommandExecError", "evalue": "1",
                         "traceback": ["exit status 1"]}


def test_run_command_not_found(stack, sid):
    name = "execd_no_such_command_5e2a"
    run = srun(stack, sid, name)
    assert run.error == {"ename": "CommandExecError", "evalue": "127",
                         "traceback": ["exit status 127"]}
    assert any(name in line for line in run.stdout), run.stdout


# --------------------------------------------------------------------------- run: validation
@pytest.mark.parametrize("body", [
    {},
    {"command": ""},
    {"command": None},
    {"command": 5},
    {"command": ["echo"]},
    {"command": "echo x", "timeout": -1},
    {"command": "echo x", "timeout": "100"},
    {"command": "echo x", "timeout": 1.5},
    {"command": "echo x", "cwd": 7},
])
def test_run_invalid_body(stack, sid, body):
    s = sstream(stack, sid, body)
    assert s.status == 400, (s.status, s.read_body())
    assert s.headers.get("Content-Type", "").startswith("application/json")
    data = json.loads(s.read_body())
    assert data["code"] == "INVALID_REQUEST_BODY", data


@pytest.mark.parametrize("raw", [b"", b"{", b"nope"])
def test_run_bad_json(stack, sid, raw):
    s = sstream(stack, sid, raw)
    assert s.status == 400, s.status
    assert json.loads(s.read_body())["code"] == "INVALID_REQUEST_BODY"


def test_run_cwd_does_not_exist(stack, sid):
    s = sstream(stack, sid, {"command": "pwd", "cwd": "/nonexistent/execd-" + random_id()})
    assert s.status == 400
    data = json.loads(s.read_body())
    assert data["code"] == "INVALID_REQUEST_BODY", data
    assert "working directory does not exist" in data["message"], data


def test_run_unknown_session(stack):
    bogus = random_id()
    s = sstream(stack, bogus, "echo x")
    assert s.status == 404, s.status
    assert s.headers.get("Content-Type", "").startswith("application/json"), s.headers
    data = json.loads(s.read_body())
    assert data == {"code": "CONTEXT_NOT_FOUND", "message": f"session {bogus} not found"}


@pytest.mark.parametrize("bad", ["nope", "ABCDEF" + "0" * 26, "0" * 31, "0" * 33])
def test_run_non_hex_session(stack, bad):
    s = sstream(stack, bad, "echo x")
    assert s.status == 404, s.status
    data = json.loads(s.read_body())
    assert data["code"] == "CONTEXT_NOT_FOUND", data
    assert data["message"] == f"session {bad} not found", data


# --------------------------------------------------------------------------- state
def test_cd_and_export_persist(stack, sid, tmp):
    run = srun(stack, sid, f"cd '{tmp}' && export SESS_A='one two' && SESS_PLAIN=p")
    assert run.ok, run.terminal
    run = srun(stack, sid, 'pwd; echo "$SESS_A|${SESS_PLAIN-unset}"')
    assert run.stdout == [str(tmp), "one two|unset"]


def test_cwd_override_becomes_session_directory(stack, sid, tmp):
    (tmp / "sub").mkdir()
    run = srun(stack, sid, {"command": "pwd", "cwd": str(tmp / "sub")})
    assert run.stdout == [str(tmp / "sub")]
    run = srun(stack, sid, "pwd")
    assert run.stdout == [str(tmp / "sub")]


def test_cwd_override_then_cd(stack, sid, tmp):
    (tmp / "sub").mkdir()
    srun(stack, sid, {"command": "cd ..", "cwd": str(tmp / "sub")})
    assert srun(stack, sid, "pwd").stdout == [str(tmp)]


def test_exotic_values_round_trip(stack, sid):
    value = ("line1\nline2 $HOME ${X} $(id) `date` \"dq\" 'sq' \\ back\\slash\n"
             "\tünïcødé € 😀 = a=b; rm -rf / #\n  trailing  ")
    b64 = base64.b64encode(value.encode()).decode()
    run = srun(stack, sid, f"export SESS_V=\"$(printf %s {b64} | base64 -d)\"")
    assert run.ok, run.terminal
    run = srun(stack, sid, "printf '%s\\n' \"$SESS_V\"; printf '%s' \"$SESS_V\" | base64 -w0; echo")
    assert run.ok, run.terminal
    assert run.stdout == value.split("\n") + [b64]


def test_exotic_values_with_empty_and_trailing_newlines(stack, sid):
    value = "\n\na\n\n$b\n\n"
    b64 = base64.b64encode(value.encode()).decode()
    srun(stack, sid, f"export SESS_N=\"$(printf %s {b64} | base64 -d; echo x)\"; "
                     "SESS_N=\"${SESS_N%x}\"")
    run = srun(stack, sid, "printf '%s' \"$SESS_N\" | base64 -w0; echo")
    assert run.stdout == [b64]


def test_plain_variables_and_functions_do_not_persist(stack, sid):
    srun(stack, sid, "SESS_P=1; f() { echo fn; }; export SESS_E=1")
    run = srun(stack, sid, 'echo "${SESS_P-unset} ${SESS_E-unset}"; '
                           'type f >/dev/null 2>&1 && echo fn-defined; true')
    assert run.stdout == ["unset 1"]


def test_exit_keeps_state_changes(stack, sid, tmp):
    run = srun(stack, sid, f"export SESS_X=set-before-exit; cd '{tmp}'; exit 3")
    assert run.error["evalue"] == "3"
    run = srun(stack, sid, 'echo "$SESS_X"; pwd')
    assert run.stdout == ["set-before-exit", str(tmp)]


def test_timeout_leaves_state_unchanged(stack, sid, tmp):
    srun(stack, sid, "export SESS_T=old")
    before = srun(stack, sid, "pwd").stdout
    run = srun(stack, sid, {"command": f"export SESS_T=new; cd '{tmp}'; sleep 30",
                            "timeout": 300})
    assert run.error["evalue"] == "-1"
    run = srun(stack, sid, 'echo "$SESS_T"; pwd')
    assert run.stdout == ["old"] + before


def test_exec_leaves_state_unchanged(stack, sid, tmp):
    srun(stack, sid, "export SESS_EX=old")
    before = srun(stack, sid, "pwd").stdout
    run = srun(stack, sid, f"export SESS_EX=new; cd '{tmp}'; exec true")
    assert run.ok, run.terminal
    run = srun(stack, sid, 'echo "$SESS_EX"; pwd')
    assert run.stdout == ["old"] + before


def test_huge_value_does_not_wipe_state(stack, sid, tmp):
    """A value too big for execve (over 128 KiB) cannot be handed to the next shell; the rest
    of the session's state must survive the run that exported it."""
    path_before = srun(stack, sid, f"export SESS_K=keep; cd '{tmp}'; echo \"$PATH\"").stdout
    run = srun(stack, sid, "export SESS_BIG=$(head -c 200000 /dev/zero | tr '\\0' a); echo ok")
    assert run.ok and run.stdout == ["ok"]
    run = srun(stack, sid, 'echo "$SESS_K"; echo "$PATH"; pwd')
    assert run.ok, run.terminal
    assert run.stdout == ["keep"] + path_before + [str(tmp)]


def test_sessions_are_independent(stack):
    a, b = create(stack), create(stack)
    try:
        srun(stack, a, "export SESS_IND=a")
        assert srun(stack, b, 'echo "${SESS_IND-unset}"').stdout == ["unset"]
        assert srun(stack, a, 'echo "${SESS_IND-unset}"').stdout == ["a"]
    finally:
        delete(stack, a)
        delete(stack, b)


# --------------------------------------------------------------------------- timeout
def test_timeout(stack, sid):
    s, (leader, child) = start(stack, sid, {"command": "echo $$; sleep 100 & echo $!; sleep 5; echo late",
                                            "timeout": 300}, n_lines=2)
    leader, child = int(leader), int(child)
    try:
        events = s.read_all(timeout=10)
        assert s.elapsed() < 2.0, s.elapsed()
        run = check_session_events(events, sid)
        assert run.error == {"ename": "CommandExecError", "evalue": "-1",
                             "traceback": ["timed out after 300 ms"]}
        assert "late" not in run.stdout
        assert wait_gone([leader, child], 3), "the run's process group survived the timeout"
    finally:
        s.close()
        kill_group(leader)


def test_timeout_not_reached(stack, sid):
    run = srun(stack, sid, {"command": "echo ok", "timeout": 5000})
    assert run.ok and run.stdout == ["ok"]


def test_timeout_zero_means_none(stack, sid):
    run = srun(stack, sid, {"command": "sleep 0.2; echo ok", "timeout": 0})
    assert run.ok and run.stdout == ["ok"]


# --------------------------------------------------------------------------- concurrency
def test_concurrent_runs(stack, sid):
    t0 = time.monotonic()
    s1 = sstream(stack, sid, "sleep 0.8; echo one").check_headers()
    s2 = sstream(stack, sid, "sleep 0.4; echo two").check_headers()
    try:
        results = {}

        def read(name, s):
            results[name] = s.read_all(10)

        threads = [threading.Thread(target=read, args=(n, s)) for n, s in (("1", s1), ("2", s2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert time.monotonic() - t0 < 2.0, "runs of one session were serialised"
        r1 = check_session_events(results["1"], sid)
        r2 = check_session_events(results["2"], sid)
        assert r1.ok and r1.stdout == ["one"]
        assert r2.ok and r2.stdout == ["two"]
    finally:
        s1.close()
        s2.close()


# --------------------------------------------------------------------------- DELETE /session
def test_delete_session(stack):
    sid = create(stack)
    assert_empty_200(delete(stack, sid))
    assert_error(delete(stack, sid), 404, "CONTEXT_NOT_FOUND", message=f"session {sid} not found")
    s = sstream(stack, sid, "echo x")
    assert s.status == 404
    assert json.loads(s.read_body()) == {"code": "CONTEXT_NOT_FOUND",
                                         "message": f"session {sid} not found"}


@pytest.mark.parametrize("bad", [random_id(), "nope"])
def test_delete_unknown_session(stack, bad):
    assert_error(delete(stack, bad), 404, "CONTEXT_NOT_FOUND", message=f"session {bad} not found")


def test_delete_during_run(stack):
    sid = create(stack)
    s, (leader, child) = start(stack, sid, "trap '' TERM; echo $$; sleep 100 & echo $!; wait",
                               n_lines=2)
    leader, child = int(leader), int(child)
    try:
        t0 = time.monotonic()
        assert_empty_200(delete(stack, sid))
        run = check_session_events(s.read_all(timeout=10), sid)
        assert time.monotonic() - t0 < 2.0
        assert run.error == {"ename": "CommandExecError", "evalue": "-1",
                             "traceback": ["signal: killed"]}
        assert wait_gone([leader, child], 3), "the run outlived its session"
        assert_error(delete(stack, sid), 404, "CONTEXT_NOT_FOUND")
    finally:
        s.close()
        kill_group(leader)


# --------------------------------------------------------------------------- interrupt
@pytest.mark.parametrize("route", ["/code", "/command"])
def test_interrupt_running_run(stack, sid, route):
    srun(stack, sid, "export SESS_I=kept")
    before = srun(stack, sid, "pwd").stdout
    s, (leader, child) = start(stack, sid, "echo $$; sleep 100 & echo $!; wait", n_lines=2)
    leader, child = int(leader), int(child)
    try:
        t0 = time.monotonic()
        assert_empty_200(stack.delete(f"{route}?id={sid}"))
        run = check_session_events(s.read_all(timeout=10), sid)
        assert time.monotonic() - t0 < 3.0
        assert run.error == {"ename": "CommandExecError", "evalue": "-1",
                             "traceback": ["signal: terminated"]}
        assert wait_gone([leader, child], 3)
    finally:
        s.close()
        kill_group(leader)
    # the session stays, with its state
    run = srun(stack, sid, 'echo "$SESS_I"; pwd')
    assert run.ok and run.stdout == ["kept"] + before


@pytest.mark.parametrize("route", ["/code", "/command"])
def test_interrupt_nothing_running(stack, sid, route):
    # Session.Interrupt answers NotRunning, which the bridge reports as 500 RUNTIME_ERROR (as
    # for a finished command).
    assert_error(stack.delete(f"{route}?id={sid}"), 500, "RUNTIME_ERROR")
    srun(stack, sid, "true")
    assert_error(stack.delete(f"{route}?id={sid}"), 500, "RUNTIME_ERROR")
    assert srun(stack, sid, "echo still").stdout == ["still"]


@pytest.mark.parametrize("route", ["/code", "/command"])
def test_interrupt_unknown_id(stack, route):
    assert_error(stack.delete(f"{route}?id={random_id()}"), 404, "CONTEXT_NOT_FOUND")


def test_interrupt_deleted_session(stack):
    sid = create(stack)
    delete(stack, sid)
    assert_error(stack.delete(f"/command?id={sid}"), 404, "CONTEXT_NOT_FOUND")


# --------------------------------------------------------------------------- disconnect
def test_client_disconnect_kills_run_not_session(stack, sid):
    srun(stack, sid, "export SESS_D=kept")
    s, (leader, child) = start(stack, sid, "echo $$; sleep 100 & echo $!; wait", n_lines=2)
    leader, child = int(leader), int(child)
    try:
        assert pid_exists(leader) and pid_exists(child)
        s.close()
        assert wait_gone([leader, child], 3), \
            f"group {leader} still alive: {pgroup_members(leader)}"
    finally:
        kill_group(leader)
    run = srun(stack, sid, 'echo "$SESS_D"')
    assert run.ok and run.stdout == ["kept"]
