"""POST /command foreground: the strict SSE stream, output lines, exit status, options."""
import json
import os
import time

import pytest

import sse


def test_echo_hi(stack):
    run = stack.run("echo hi")
    types = [e["type"] for e in run.events if e["type"] != "ping"]
    assert types == ["init", "stdout", "execution_complete"], sse.summarize(run.events)
    assert run.stdout == ["hi"]
    assert run.stderr == []
    # Every frame on the wire is exactly "data: <json>" (the parser checked the rest).
    assert all(f.startswith(b"data: {") and f.endswith(b"}") for f in run.frames)


def test_init_ids_are_unique(stack):
    ids = {stack.run("true").id for _ in range(3)}
    assert len(ids) == 3


def test_event_timestamps_are_ordered(stack):
    run = stack.run("echo a; sleep 0.3; echo b")
    ts = [e["timestamp"] for e in run.events if e["type"] != "ping"]
    assert ts == sorted(ts), ts
    assert ts[-1] - ts[0] >= 250, ts


@pytest.mark.parametrize("command,expected", [
    (r"printf 'a\n\nb\n\n\nc\n'", ["a", "\n", "b", "\n", "\n", "c"]),
    (r"printf 'line1\nprog 10%%\rprog 20%%\r\nlast'", ["line1", "prog 10%", "prog 20%", "last"]),
    (r"printf 'x'", ["x"]),
    (r"printf '\n'", ["\n"]),
    (r"printf 'a\r\rb\r\n'", ["a", "\n", "b"]),
    (r"printf '  indented \t\n'", ["  indented \t"]),
    # \r\n split across two reads is still one terminator.
    (r"printf 'a\r'; sleep 0.3; printf '\nb\n'", ["a", "b"]),
    # A line written in two parts is one event.
    (r"printf 'hel'; sleep 0.3; printf 'lo\n'", ["hello"]),
])
def test_line_splitting(stack, command, expected):
    run = stack.run(command)
    assert run.ok, run.terminal
    assert run.stdout == expected


def test_stderr_events(stack):
    run = stack.run("echo err1 >&2; echo err2 >&2")
    assert run.ok
    assert run.stderr == ["err1", "err2"]
    assert run.stdout == []


def test_stdout_and_stderr(stack):
    run = stack.run("echo out; echo err >&2; echo out2")
    assert run.stdout == ["out", "out2"]
    assert run.stderr == ["err"]


def test_exit_status_3(stack):
    run = stack.run("echo before; exit 3")
    assert run.terminal["type"] == "error"
    assert run.error == {"ename": "CommandExecError", "evalue": "3",
                         "traceback": ["exit status 3"]}
    assert not [e for e in run.events if e["type"] == "execution_complete"]
    assert run.stdout == ["before"]


def test_command_not_found(stack):
    name = "execd_no_such_command_8c1f"
    run = stack.run(name)
    assert run.error == {"ename": "CommandExecError", "evalue": "127",
                         "traceback": ["exit status 127"]}
    assert any(name in line for line in run.stderr), run.stderr


def test_timeout(stack):
    t0 = time.monotonic()
    run = stack.run({"command": "sleep 30", "timeout": 300})
    elapsed = time.monotonic() - t0
    assert elapsed < 5, elapsed
    assert run.terminal["type"] == "error"
    assert run.error["evalue"] == "-1"
    assert "timed out" in run.error["traceback"][0]
    assert run.error["traceback"] == ["timed out after 300 ms"]
    st = stack.wait_finished(run.id)
    assert st["exit_code"] == -1, st
    assert st["error"] == "timed out after 300 ms", st


def test_timeout_zero_means_none(stack):
    run = stack.run({"command": "sleep 0.2; echo ok", "timeout": 0})
    assert run.ok and run.stdout == ["ok"]


def test_timeout_not_reached(stack):
    run = stack.run({"command": "echo ok", "timeout": 5000})
    assert run.ok and run.stdout == ["ok"]


def test_execution_time(stack):
    run = stack.run("sleep 0.3")
    assert run.ok
    et = run.terminal.get("execution_time")
    assert isinstance(et, int) and 250 <= et < 5000, run.terminal


def test_envs(stack):
    run = stack.run({"command": 'echo "$FOO|$BAR"', "envs": {"FOO": "bar baz", "BAR": "ü$x'\""}})
    assert run.stdout == ["bar baz|ü$x'\""]


def test_envs_override_daemon_env(stack):
    run = stack.run({"command": 'echo "$PATH"', "envs": {"PATH": "/bin:/usr/bin:/custom"}})
    assert run.stdout == ["/bin:/usr/bin:/custom"]


def test_cwd(stack, tmp):
    run = stack.run({"command": "pwd", "cwd": str(tmp)})
    assert run.stdout == [str(tmp)]


def test_cwd_expands_envs(stack, tmp):
    run = stack.run({"command": "pwd", "cwd": "${MYDIR}", "envs": {"MYDIR": str(tmp)}})
    assert run.stdout == [str(tmp)]


def test_uid_gid(stack):
    run = stack.run({"command": "id -u; id -g", "uid": 65534, "gid": 65533, "cwd": "/"})
    assert run.ok, run.terminal
    assert run.stdout == ["65534", "65533"]


def test_stdin_is_empty(stack):
    run = stack.run("cat; echo done")
    assert run.ok and run.stdout == ["done"]


def test_invalid_utf8_becomes_replacement(stack):
    run = stack.run(r"printf '\xff\xfe\n'; printf 'a\xffb\n'")
    assert run.stdout == ["\ufffd\ufffd", "a\ufffdb"]


def test_utf8_split_across_reads(stack):
    run = stack.run(r"printf '\xe2\x82'; sleep 0.3; printf '\xac\n'")
    assert run.stdout == ["\u20ac"]


def test_nul_and_control_characters_are_escaped(stack):
    run = stack.run(r"printf 'a\0b\001c\033d\n'")
    assert run.stdout == ["a\x00b\x01c\x1bd"]
    frame = [f for f in run.frames if b'"stdout"' in f][0]
    assert b"\\u0000" in frame and b"\x00" not in frame, frame
    assert b"\x01" not in frame and b"\x1b" not in frame, frame


def test_long_line_intact(stack):
    run = stack.run("head -c 100000 /dev/zero | tr '\\0' a; echo")
    assert run.ok
    assert len(run.stdout) == 1, [len(x) for x in run.stdout]
    assert run.stdout[0] == "a" * 100000


def test_many_lines_in_order(stack):
    run = stack.run("seq 1 5000")
    assert run.ok
    assert run.stdout == [str(i) for i in range(1, 5001)]


def test_large_output_in_order(stack):
    # ~1.3 MB written faster than it is read: many 64 KiB chunks, a full pipe at exit.
    # Repeated because losing the tail at exit is timing dependent.
    expected = [str(i) for i in range(1, 200001)]
    for attempt in range(2):
        run = stack.run("seq 1 200000")
        assert run.ok
        assert len(run.stdout) == 200000, (attempt, len(run.stdout), run.stdout[-1])
        assert run.stdout == expected


def test_ping_events_while_idle(stack):
    run = stack.run("sleep 4; echo x", timeout=20)
    assert run.stdout == ["x"]
    types = [e["type"] for e in run.events]
    first_out = types.index("stdout")
    assert "ping" in types[:first_out], sse.summarize(run.events)
    assert all(p["text"] == "pong" for p in run.pings)


def test_case_insensitive_field_names(stack):
    run = stack.run({"Command": 'echo "x$A"', "ENVS": {"A": "y"}})
    assert run.ok and run.stdout == ["xy"]


def test_unknown_fields_ignored(stack):
    run = stack.run({"command": "echo x", "foo": 1, "bar": {"z": [1, None]}, "language": "py"})
    assert run.ok and run.stdout == ["x"]


def test_null_fields_are_defaults(stack):
    run = stack.run({"command": "echo x", "cwd": None, "background": None, "timeout": None,
                     "uid": None, "gid": None, "envs": None})
    assert run.ok and run.stdout == ["x"]


def test_background_false_is_foreground(stack):
    run = stack.run({"command": "echo x", "background": False})
    assert run.ok and run.stdout == ["x"]


def test_body_just_under_limit_accepted(stack):
    body = {"command": "echo x", "pad": ""}
    base = len(json.dumps(body, separators=(",", ":")).encode())
    body["pad"] = "a" * (1024 * 1024 - base)
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert len(raw) == 1024 * 1024
    s = stack.stream(raw).check_headers()
    run = sse.check_command_events(s.read_all(30))
    assert run.ok and run.stdout == ["x"]


def test_daemon_does_not_leak_fds_into_command(stack):
    # Only stdin/stdout/stderr (and the fd ls itself opens) are inherited.
    run = stack.run("ls /proc/self/fd | wc -l")
    assert run.ok
    assert int(run.stdout[0]) <= 4, run.stdout


def test_command_runs_in_own_process_group(stack):
    run = stack.run("echo $$; ps -o pgid= -p $$")
    pid, pgid = run.stdout
    assert int(pid) == int(pgid)
    assert int(pgid) != os.getpgid(0)


def test_slow_reader_gets_all_output(stack):
    s = stack.stream({"command": "seq 1 100000; echo end"}).check_headers()
    try:
        assert s.next_event(time.monotonic() + 5)["type"] == "init"
        time.sleep(2)  # the bridge must hold or throttle, never drop
        run = sse.check_command_events(s.read_all(60))
    finally:
        s.close()
    assert run.ok
    assert run.stdout == [str(i) for i in range(1, 100001)] + ["end"]
