"""Faults survived, nothing lost: the bridge or the daemon killed with SIGKILL mid-work, a full
disk during an upload, and edge cases of output and processes.

Covered elsewhere, not repeated here:
- daemon stopped/killed -> 503 on /command routes, recovery, an SSE stream cut by a daemon
  SIGKILL ending with a clean error event: test_daemon_restart.py;
- 502 on /api/ routes with the daemon stopped, environments and tokens surviving a daemon
  SIGKILL: test_environments.py (test_daemon_down_is_502, test_durability_across_restarts);
- a client (not the bridge) disconnecting mid-upload: test_files_upload.py;
- invalid UTF-8 (U+FFFD) and NUL/control bytes (\\u0000 escapes) in command output:
  test_command_stream.py (test_invalid_utf8_becomes_replacement,
  test_nul_and_control_characters_are_escaped); listing a directory with a non-UTF-8 name
  (shown with U+FFFD): test_files_directories.py::test_list_directory_with_non_utf8_name;
- a Jupyter kernel killed from outside mid-cell or killing itself (the /code stream ends with a
  KernelDied error and the context gets a new kernel): test_code.py
  (test_kernel_killed_from_outside, test_kernel_kills_itself); over the bus: test_contexts.py.

Every test here has its own stack (bus + daemon + bridge): they kill things.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(os.path.dirname(HERE), "bus"))

import harness  # noqa: E402
import sse  # noqa: E402
from execd_http import Stack, assert_error, kill_group, pgroup_members  # noqa: E402
from files_common import (  # noqa: E402 -- helpers only, not the module-scoped fixtures
    closing, file_part, metadata_part, new_boundary, part_head, q, upload_one)
from harness import wait_until  # noqa: E402
from test_environments import EnvStack, assert_envelope, base, pid_alive, proc_uid  # noqa: E402

MIB = 1 << 20


# --------------------------------------------------------------------------- helpers
def alive_members(pgid):
    """Live (non-zombie) processes of a process group."""
    return [pid for pid, state, _ppid, group, _comm in harness.all_procs()
            if group == pgid and state not in ("Z", "X")]


def ppid_of(pid):
    for p, _state, ppid, _group, _comm in harness.all_procs():
        if p == pid:
            return ppid
    return None


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fd_targets(pid):
    out = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for n in names:
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{n}"))
        except OSError:
            pass
    return out


def fds_into(pid, directory):
    """The daemon's descriptors on files in `directory` (an O_TMPFILE shows as 'dir/#ino')."""
    return [t for t in open_fd_targets(pid) if t.startswith(directory.rstrip("/") + "/")]


def first_stdout_int(s, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        e = s.next_event(deadline)
        assert e is not None, sse.summarize(s.events)
        if e["type"] == "stdout":
            return int(e["text"])


def init_id(s, timeout=10):
    e = s.next_event(time.monotonic() + timeout)
    assert e is not None and e["type"] == "init", sse.summarize(s.events)
    return e["text"]


def background(st, command):
    run = st.run({"command": command, "background": True})
    return run.id


def bg_logs(st, cid):
    r = st.get(f"/command/{cid}/logs?cursor=0")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.content


def restart_bridge(st):
    """kill -9 the bridge (its log drain is reaped) and start a new one on the same bus."""
    old = st.bridge
    old.proc.send_signal(signal.SIGKILL)
    old.proc.wait(10)
    old.stop()  # the process is gone already; this only ends its output drain
    st.bridge = harness.Bridge(st.bus)
    st.url = st.bridge.url
    st.headers = st.bridge.headers


def start_partial_upload(port, token, target, first_bytes=2 * MIB, claimed=200 * MIB):
    """A raw POST /files/upload whose body stops part way (the socket stays open)."""
    b = new_boundary()
    body = (metadata_part(b, {"path": target}) + part_head(b, "file", "big", "application/octet-stream")
            + os.urandom(first_bytes))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    hdr = (f"POST /files/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           f"X-EXECD-ACCESS-TOKEN: {token}\r\n"
           f"Content-Type: multipart/form-data; boundary={b}\r\n"
           f"Content-Length: {claimed}\r\n\r\n")
    s.sendall(hdr.encode() + body)
    return s


@pytest.fixture
def mdir():
    """A 0755 directory of its own (not under pytest's tmp_path, to keep listings exact)."""
    d = tempfile.mkdtemp(prefix="execd-faults-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- 1. bridge SIGKILL
def test_bridge_sigkill_mid_work(fresh_stack, mdir):
    """kill -9 of the bridge with two foreground streams, a background command and an upload in
    flight: the foreground groups die, the background one lives, the upload leaves nothing, and
    a new bridge on the same bus serves the background command's status and logs."""
    st = fresh_stack
    dpid = st.daemon.proc.pid
    target = os.path.join(mdir, "target.bin")
    with open(target, "wb") as f:
        f.write(b"old content")
    groups = []
    streams = []
    sock = None
    try:
        # foreground: one plain, one with a grandchild in the group
        for cmd in ("echo $$; sleep 300", "sleep 300 & echo $$; wait"):
            s = st.stream({"command": cmd}).check_headers()
            streams.append(s)
            fg_id = init_id(s)
            groups.append((fg_id, first_stdout_int(s)))
        bg = background(st, "echo pid $$; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done")
        assert wait_until(lambda: b"tick 2" in bg_logs(st, bg), 10)
        bg_pid = int(bg_logs(st, bg).split(b"\n")[0].split()[1])
        assert alive_members(bg_pid)
        for _id, pgid in groups:
            assert len(alive_members(pgid)) >= 1
        # the upload: wait until the daemon holds the new (unnamed) file open in mdir
        sock = start_partial_upload(st.bridge.port, st.bridge.token, target)
        assert wait_until(lambda: fds_into(dpid, mdir), 10), "the upload never reached the daemon"

        restart_bridge(st)
        t0 = time.monotonic()

        # (a) the foreground process groups are gone within a few seconds
        for _id, pgid in groups:
            assert wait_until(lambda: not pgroup_members(pgid), 5), \
                f"foreground group {pgid} survived the bridge: {pgroup_members(pgid)}"
        # (c) the pending write is dropped: no descriptor, no partial file, no temp file
        assert wait_until(lambda: not fds_into(dpid, mdir), 5), fds_into(dpid, mdir)
        assert sorted(os.listdir(mdir)) == ["target.bin"], os.listdir(mdir)
        with open(target, "rb") as f:
            assert f.read() == b"old content"
        # (b) the background command still runs, and its output keeps growing
        assert alive_members(bg_pid), "background command died with the bridge"
        assert time.monotonic() - t0 < 30

        # the new bridge serves the background command
        status = st.status(bg)
        assert status["running"] is True and status["exit_code"] is None, status
        n1 = len(bg_logs(st, bg))
        assert wait_until(lambda: len(bg_logs(st, bg)) > n1, 5), "background output stopped"
        logs = bg_logs(st, bg).decode()
        assert logs.startswith(f"pid {bg_pid}\ntick 0\ntick 1\n"), logs[:200]
        r = st.get(f"/command/{bg}/logs?cursor={n1}")
        assert r.status_code == 200 and int(r.headers["EXECD-COMMANDS-TAIL-CURSOR"]) >= n1
        # the foreground commands are known to the new bridge too, as killed
        for fg_id, _pgid in groups:
            s2 = st.status(fg_id)
            assert s2["running"] is False and s2.get("error") == "signal: killed", s2
        # and it can interrupt the background command
        assert st.delete(f"/command?id={bg}").status_code == 200
        assert wait_until(lambda: not alive_members(bg_pid), 10)
        assert st.wait_finished(bg)["running"] is False
        # uploads work again on the new bridge
        r = upload_one(st, target, b"new content")
        assert r.status_code == 200, (r.status_code, r.text)
        with open(target, "rb") as f:
            assert f.read() == b"new content"
    finally:
        if sock is not None:
            sock.close()
        for s in streams:
            s.close()
        for _id, pgid in groups:
            kill_group(pgid)


# --------------------------------------------------------------------------- 2. daemon SIGKILL
def test_daemon_sigkill_503_502_recovery_and_orphans():
    """kill -9 of the daemon: 503 (execd) / 502 (/api/) within a second in their envelopes,
    recovery without a bridge restart, environment tokens still valid; and what becomes of the
    processes that were running (see the ORPHANS notes below)."""
    s = EnvStack()
    leftovers = []
    try:
        st = Stack.__new__(Stack)  # execd-route helpers on the EnvStack's bridge
        st.bus, st.daemon, st.bridge = s.bus, s.daemon, s.bridge
        st.url, st.headers = s.bridge.url, s.bridge.headers
        e = s.provision("acme", "faults", env={"V": "kept"})
        assert s.execute(e, "echo $V")["output"] == "kept\n"
        env_uid = int(s.execute(e, "id -u")["output"])

        bg = background(st, "echo $$; sleep 300")
        assert wait_until(lambda: bg_logs(st, bg).strip(), 10)
        bg_pid = int(bg_logs(st, bg).split()[0])
        leftovers.append(bg_pid)
        fg = st.stream({"command": "echo $$; sleep 300"}).check_headers()
        init_id(fg)
        fg_pid = first_stdout_int(fg)
        leftovers.append(fg_pid)
        # an execute in flight, and a process it left behind out of its group (setsid)
        answers = []
        th = threading.Thread(target=lambda: answers.append(s.execute_raw(
            "acme", "faults", e["id"], e["token"],
            {"command": "setsid sleep 301 >/dev/null 2>&1 & sleep 302", "timeout_sec": 600},
            timeout=60)))
        th.start()

        def env_procs():
            return [pid for pid, state, _pp, _g, comm in harness.all_procs()
                    if comm == "sleep" and state != "Z" and proc_uid(pid) == env_uid]
        assert wait_until(lambda: len(env_procs()) == 2, 10), env_procs()
        env_pids = env_procs()

        s.daemon.stop(signal.SIGKILL)
        t0 = time.monotonic()

        def down():
            r1 = st.get(f"/command/status/{bg}", timeout=5)
            r2 = s.request("GET", base("acme", "faults"), timeout=5)
            return (r1, r2) if (r1.status_code, r2.status_code) == (503, 502) else None
        got = wait_until(down, 1.0, interval=0.02)
        assert got, "no 503/502 within a second of the daemon's SIGKILL"
        assert time.monotonic() - t0 < 1.5
        b1 = assert_error(got[0], 503, "SERVICE_UNAVAILABLE", contains="not available")
        assert set(b1) == {"code", "message"}, b1
        b2 = assert_envelope(got[1], 502, "bad_gateway")
        assert "not available" in b2["detail"], b2
        assert_error(st.post("/command", json={"command": "true"}), 503, "SERVICE_UNAVAILABLE")
        assert_error(st.get(f"/command/{bg}/logs"), 503, "SERVICE_UNAVAILABLE")
        assert_envelope(s.execute_raw("acme", "faults", e["id"], e["token"], {"command": "true"}),
                        502, "bad_gateway")
        # the execute in flight is answered 502 too, promptly
        th.join(10)
        assert not th.is_alive() and answers, "the execute in flight was not answered"
        assert_envelope(answers[0], 502, "bad_gateway")
        # the foreground stream ends with its terminal error (details in test_daemon_restart.py)
        run = sse.check_command_events(fg.read_all(10))
        assert run.terminal["type"] == "error", sse.summarize(run.events)

        # ORPHANS while the daemon is away: nothing kills them. Every group is still running,
        # re-parented away from the dead daemon (it was their subreaper; now the next one up).
        for pid in (bg_pid, fg_pid):
            assert alive_members(pid), f"group {pid} died with the daemon"
        assert all(pid_alive(p) for p in env_pids), env_pids

        # recovery: same bridge, daemon back on the same bus
        s.daemon.start()
        assert wait_until(lambda: s.request("GET", base("acme", "faults")).status_code == 200, 5)
        assert wait_until(lambda: st.get("/ping").status_code == 200, 5)
        assert st.run("echo up").stdout == ["up"]
        # environments and their tokens survive
        assert s.execute(e, "echo $V; id -u")["output"] == f"kept\n{env_uid}\n"

        # ORPHANS after the restart:
        # - environments: the new daemon kills whatever runs as an environment's uid
        #   (daemon/environment.c kill_uid at load), including the setsid'd escapee;
        assert wait_until(lambda: not any(pid_alive(p) for p in env_pids), 5), \
            [p for p in env_pids if pid_alive(p)]
        # - plain commands (background and foreground alike): the new daemon does not know them
        #   (404), so nobody could stop them: it kills their groups at start, from the markers
        #   the dead daemon left in its runtime directory (daemon/groups.c).
        assert_error(st.get(f"/command/status/{bg}"), 404, "INVALID_REQUEST_BODY")
        assert wait_until(lambda: not any(alive_members(p) for p in (bg_pid, fg_pid)), 5), \
            ([p for p in (bg_pid, fg_pid) if alive_members(p)], s.daemon.read_log())
        assert "left running by a daemon that is gone" in s.daemon.read_log()
    finally:
        for pid in leftovers:
            kill_group(pid)
        s.stop()


# --------------------------------------------------------------------------- 3. disk full
@pytest.fixture
def small_fs():
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts a tmpfs)")
    d = tempfile.mkdtemp(prefix="execd-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", d],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount a tmpfs: {r.stdout.decode(errors='replace').strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)
        os.rmdir(d)


def free_bytes(d):
    v = os.statvfs(d)
    return v.f_bavail * v.f_frsize


def test_upload_disk_full(fresh_stack, small_fs):
    st = fresh_stack
    old = os.urandom(512 * 1024)
    target = os.path.join(small_fs, "existing.bin")
    with open(target, "wb") as f:
        f.write(old)
    free_before = free_bytes(small_fs)
    r = upload_one(st, target, os.urandom(8 * MIB))
    body = assert_error(r, 500, "RUNTIME_ERROR")
    assert "No space left on device" in body["message"], body
    with open(target, "rb") as f:
        assert f.read() == old
    assert os.listdir(small_fs) == ["existing.bin"]
    # the unnamed temporary file is released: the space comes back
    assert wait_until(lambda: free_bytes(small_fs) >= free_before, 5), \
        (free_bytes(small_fs), free_before)
    # and the daemon holds nothing open there
    assert wait_until(lambda: not fds_into(st.daemon.proc.pid, small_fs), 5)
    r = upload_one(st, target, b"fits")
    assert r.status_code == 200, (r.status_code, r.text)
    with open(target, "rb") as f:
        assert f.read() == b"fits"
    assert os.listdir(small_fs) == ["existing.bin"]


def test_bus_write_bytes_disk_full(fresh_stack, small_fs):
    import busclient
    st = fresh_stack
    old = os.urandom(1 * MIB)
    target = os.path.join(small_fs, "existing.bin")
    with open(target, "wb") as f:
        f.write(old)
    c = busclient.Client(st.bus.address)
    try:
        with pytest.raises(busclient.DBusError) as ei:
            c.files("WriteBytes", "sayuss", (target, os.urandom(4 * MIB - 1024), 0, "", ""),
                    timeout=30)
        assert "No space left on device" in str(ei.value.args) or "space" in repr(ei.value), \
            repr(ei.value)
    finally:
        c.close()
    with open(target, "rb") as f:
        assert f.read() == old
    assert os.listdir(small_fs) == ["existing.bin"]
    assert wait_until(lambda: not fds_into(st.daemon.proc.pid, small_fs), 5)


# --------------------------------------------------------------------------- 4. edge output
def test_command_closes_stdout_keeps_running(fresh_stack):
    """EOF on both pipes is not the end: the stream waits for the exit."""
    st = fresh_stack
    for cmd in ("echo before; exec >&-; sleep 3; echo late >&2",
                "echo before; exec >&- 2>&-; sleep 3"):
        t0 = time.monotonic()
        run = st.run(cmd, timeout=30)
        assert time.monotonic() - t0 >= 2.5, (cmd, sse.summarize(run.events))
        assert run.ok, (cmd, sse.summarize(run.events))
        assert run.stdout == ["before"], cmd
        assert run.stderr == (["late"] if "late" in cmd else []), cmd
        assert st.status(run.id)["exit_code"] == 0


@pytest.mark.parametrize("cmd", [
    "setsid sleep 100 & echo $!",                               # holds the output pipe open
    "(setsid sleep 100 >/dev/null 2>&1 & echo $!); exit 0",     # double fork, pipe closed
], ids=["setsid-holding-pipe", "double-fork"])
def test_command_forks_daemon_and_exits(fresh_stack, cmd):
    """The stream ends soon after the command itself exits, even when an escaped child holds the
    pipe. The escapee (own session, so out of the command's group) is NOT killed: it runs on as
    a child of the daemon (its subreaper), which reaps it when it ends."""
    st = fresh_stack
    t0 = time.monotonic()
    run = st.run(cmd, timeout=30)
    elapsed = time.monotonic() - t0
    pid = int(run.stdout[0])
    try:
        assert run.ok, sse.summarize(run.events)
        assert elapsed < 10, elapsed
        assert st.status(run.id)["running"] is False
        assert pid_alive(pid), "the escaped daemon was killed"
        assert ppid_of(pid) == st.daemon.proc.pid
    finally:
        kill_group(pid)
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 5), "escapee not reaped"


def test_100_mib_without_newline(fresh_stack):
    """100 MiB on one line: events of at most 4 MiB (512 KiB pieces), every byte delivered, and
    neither process's memory grows by more than 200 MiB."""
    st = fresh_stack
    total = 100 * MIB
    dpid, bpid = st.daemon.proc.pid, st.bridge.proc.pid
    base_d, base_b = vm_rss_kib(dpid), vm_rss_kib(bpid)
    peak_d, peak_b = base_d, base_b
    s = st.stream({"command": f"head -c {total} /dev/zero | tr '\\0' x"}, timeout=60).check_headers()
    got = 0
    biggest = 0
    n = 0
    terminal = None
    deadline = time.monotonic() + 300
    try:
        while True:
            e = s.next_event(deadline)
            if e is None:
                break
            frame = s.frames.pop()
            s.events.pop()
            biggest = max(biggest, len(frame) + 2)
            if e["type"] == "stdout":
                assert set(e["text"]) == {"x"}, e["text"][:50]
                got += len(e["text"])
            elif e["type"] in sse.TERMINAL_TYPES:
                terminal = e
            n += 1
            if n % 16 == 0:
                peak_d = max(peak_d, vm_rss_kib(dpid))
                peak_b = max(peak_b, vm_rss_kib(bpid))
    finally:
        s.close()
    assert terminal is not None and terminal["type"] == "execution_complete", terminal
    assert got == total, got
    assert biggest <= 4 * MIB, biggest
    print(f"RSS growth: daemon {(peak_d - base_d) // 1024} MiB, bridge {(peak_b - base_b) // 1024} MiB, biggest frame {biggest}")
    assert (peak_d - base_d) < 200 * 1024, f"daemon grew by {(peak_d - base_d) // 1024} MiB"
    assert (peak_b - base_b) < 200 * 1024, f"bridge grew by {(peak_b - base_b) // 1024} MiB"


# --------------------------------------------------------------------------- 4. file names
@pytest.fixture(scope="module")
def fstack():
    s = Stack()
    yield s
    s.stop()


def test_nul_in_path_parameters_is_400(fstack):
    for method, path in (("GET", "/files/download?path=/tmp/a%00b"),
                         ("GET", "/files/info?path=/tmp/a%00b"),
                         ("GET", "/directories/list?path=/tmp/a%00b"),
                         ("GET", "/files/search?path=/tmp/a%00b&pattern=x"),
                         ("GET", "/files/search?path=/tmp&pattern=a%00b"),
                         ("DELETE", "/files?path=/tmp/a%00b"),
                         ("DELETE", "/directories?path=/tmp/a%00b")):
        r = fstack.request(method, path)
        assert_error(r, 400, "INVALID_REQUEST_BODY", contains="NUL")


def test_non_utf8_file_name_over_http(fstack, mdir):
    """A name that is not UTF-8 cannot be addressed over HTTP: the query layer refuses it (400)
    for download and info, and an upload's metadata must be UTF-8 JSON (400). Listing shows it
    with U+FFFD (test_files_directories.py). Nothing is created or changed."""
    raw = os.fsencode(mdir) + b"/bad-\xff.bin"
    with open(raw, "wb") as f:
        f.write(b"ff")
    for route in ("/files/download", "/files/info"):
        assert_error(fstack.get(f"{route}?path={q(mdir)}/bad-%FF.bin"), 400, "INVALID_REQUEST_BODY")
    listing = fstack.get(f"/directories/list?path={q(mdir)}")
    assert listing.status_code == 200
    assert [x["path"] for x in listing.json()] == [f"{mdir}/bad-\ufffd.bin"]
    b = new_boundary()
    for meta in (b'{"path":"' + os.fsencode(mdir) + b'/up-\xfe.bin"}',
                 b'{"path":"' + os.fsencode(mdir) + b'/up-\\udcfe.bin"}'):
        body = (part_head(b, "metadata", "metadata", "application/json") + meta + b"\r\n"
                + file_part(b, b"data") + closing(b))
        r = fstack.post("/files/upload", data=body,
                        headers={"Content-Type": f"multipart/form-data; boundary={b}"})
        assert_error(r, 400, "INVALID_FILE_METADATA")
    assert os.listdir(os.fsencode(mdir)) == [b"bad-\xff.bin"]
    with open(raw, "rb") as f:
        assert f.read() == b"ff"


LONE = '"x\\udcfey"'   # a lone low surrogate: json-glib makes bytes that are not UTF-8 of it


@pytest.mark.parametrize("path,body", [
    ("/command", '{"command":%s}' % LONE),
    ("/command", '{"command":"true","envs":{"A":%s}}' % LONE),
    ("/command", '{"command":"true","cwd":"/tmp/\\ud800"}'),      # a lone high surrogate
    ("/files/mv", '[{"src":%s,"dest":"/tmp/zz"}]' % LONE),
    ("/files/permissions", '{%s:{"mode":644}}' % LONE),
    ("/directories", '{%s:{"mode":755}}' % LONE),
    ("/files/replace", '{%s:{"old":"a","new":"b"}}' % LONE),
    ("/session", '{"cwd":%s}' % LONE),
    ("/code/context", '{"language":%s}' % LONE),
    ("/code", '{"code":%s,"context":{"language":"bash"}}' % LONE),
])
def test_unpaired_surrogate_escape_is_400(fstack, path, body):
    """Regression: these were 503 "daemon not available: Invalid argument" (sd-bus refused the
    string), or a 500 with an empty body for /command."""
    r = fstack.post(path, data=body.encode(), headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST_BODY", contains="surrogate")


def test_surrogate_pair_escape_is_fine(fstack, mdir):
    r = fstack.post("/directories", data=('{"%s/ok-\\ud83d\\ude00":{"mode":755}}' % mdir).encode(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, (r.status_code, r.text)
    assert os.listdir(mdir) == ["ok-\U0001F600"]


def test_unpaired_surrogate_on_environment_routes_is_400():
    s = EnvStack()
    try:
        e = s.provision("acme", "sur")
        r = s.request("POST", base("acme", "sur"), data=('{"name":"n","env":{"A":%s}}' % LONE).encode(),
                      headers={"Content-Type": "application/json"})
        assert_envelope(r, 400, "invalid_request")
        r = s.execute_raw("acme", "sur", e["id"], e["token"], data=('{"command":%s}' % LONE).encode(),
                          headers={"Content-Type": "application/json"})
        assert_envelope(r, 400, "invalid_request")
        assert s.execute(e, "echo fine")["output"] == "fine\n"
    finally:
        s.stop()
