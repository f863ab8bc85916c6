"""Code contexts over HTTP: POST /code/context, GET/DELETE /code/contexts[/{id}], POST /code
(Jupyter runs, default contexts, stateless shell runs) and DELETE /code?id= (interrupt).

The kernels are real ipykernel processes (about a second to start), so contexts are shared by
the tests that only read and write variables of their own names; tests that kill, interrupt or
delete a kernel use their own context. Every context created here is deleted again."""
import json
import os
import re
import secrets
import signal
import time

import pytest

import sse
from execd_http import Stack, assert_error, is_json, pid_exists, random_id
from harness import wait_until

ID_RE = re.compile(r"^[0-9a-f]{32}$")
CODE_TYPES = {"init", "ping", "status", "stdout", "stderr", "execution_count", "result", "error",
              "execution_complete"}


# --------------------------------------------------------------------------- helpers


def open_code(stack, body, timeout=30):
    """POST /code; the answer's status/headers are known, nothing of the body is read."""
    return sse.EventStream(stack.url, "/code", body, headers=stack.headers, timeout=timeout)


class CodeRun:
    """The checked events of one /code stream (pings dropped from .events)."""

    def __init__(self, events):
        self.all = events
        self.events = [e for e in events if e["type"] != "ping"]
        self.types = [e["type"] for e in self.events]
        self.id = self.events[0]["text"]
        self.stdout = "".join(e["text"] for e in self.events if e["type"] == "stdout")
        self.stderr = "".join(e["text"] for e in self.events if e["type"] == "stderr")
        self.stderr_events = [e["text"] for e in self.events if e["type"] == "stderr"]
        self.results = [e["results"] for e in self.events if e["type"] == "result"]
        self.counts = [e["execution_count"] for e in self.events
                       if e["type"] == "execution_count"]
        self.errors = [e["error"] for e in self.events if e["type"] == "error"]
        self.complete = self.events[-1]

    def summary(self):
        return sse.summarize(self.all, limit=40)


def check_code_events(events, context_id=None):
    """Assert the Jupyter /code event model (§4.2, §4.4, §5.8) and return a CodeRun."""
    s = sse.summarize(events, limit=40)
    assert events, "stream has no events"
    unknown = {e["type"] for e in events} - CODE_TYPES
    assert not unknown, f"unexpected event types {unknown}: {s}"
    real = [e for e in events if e["type"] != "ping"]
    assert real and real[0]["type"] == "init", f"first event is not init: {s}"
    init = real[0]
    assert set(init) == {"type", "text", "timestamp"} and ID_RE.match(init["text"]), init
    if context_id is not None:
        assert init["text"] == context_id, (init, context_id)
    types = [e["type"] for e in real]
    assert types.count("init") == 1, s
    assert types.count("execution_complete") == 1, f"not exactly one execution_complete: {s}"
    assert types[-1] == "execution_complete", f"execution_complete is not the last event: {s}"
    ts = [e["timestamp"] for e in real]
    assert ts == sorted(ts), f"timestamps go backwards: {ts}"
    for e in events:
        t = e["type"]
        if t == "ping":
            assert e == {"type": "ping", "text": "pong", "timestamp": e["timestamp"]}, e
        elif t in ("stdout", "stderr", "status"):
            assert set(e) == {"type", "text", "timestamp"}, e
            assert isinstance(e["text"], str) and e["text"], e
        elif t == "execution_count":
            assert set(e) == {"type", "execution_count", "timestamp"}, e
            n = e["execution_count"]
            assert isinstance(n, int) and not isinstance(n, bool) and n > 0, e
        elif t == "result":
            assert set(e) == {"type", "results", "timestamp"}, e
            assert isinstance(e["results"], dict) and e["results"], e
            assert "text/plain" not in e["results"], f"text/plain not renamed to text: {e}"
        elif t == "error":
            assert set(e) == {"type", "error", "timestamp"}, e
            err = e["error"]
            assert isinstance(err, dict) and set(err) == {"ename", "evalue", "traceback"}, e
            assert isinstance(err["ename"], str) and err["ename"], e
            assert isinstance(err["evalue"], str), e
            assert isinstance(err["traceback"], list), e
            assert all(isinstance(x, str) for x in err["traceback"]), e
        elif t == "execution_complete":
            assert set(e) <= {"type", "execution_time", "timestamp"}, e
            if "execution_time" in e:
                et = e["execution_time"]
                assert isinstance(et, int) and not isinstance(et, bool) and et > 0, e
    return CodeRun(events)


def run_code(stack, code, context=None, timeout=30, context_id=None):
    """POST /code to the end of its stream; return the checked CodeRun."""
    body = {"code": code}
    if context is not None:
        body["context"] = context
    s = open_code(stack, body, timeout=timeout).check_headers()
    events = s.read_all(timeout)
    if context_id is None and context is not None:
        context_id = context.get("id") or None
    run = check_code_events(events, context_id)
    run.elapsed = s.elapsed()
    return run


def run_in(stack, cid, code, timeout=30):
    return run_code(stack, code, {"id": cid, "language": "python"}, timeout=timeout)


def create_context(stack, language="python", **extra):
    r = stack.post("/code/context", json=dict(extra, language=language), timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    assert is_json(r), r.headers
    body = r.json()
    assert ID_RE.match(body.get("id", "")), body
    return body


def delete_context(stack, cid):
    try:
        stack.delete(f"/code/contexts/{cid}")
    except Exception:
        pass


def kernel_pid(stack, cid):
    run = run_in(stack, cid, "import os; print(os.getpid())")
    assert not run.errors, run.summary()
    return int(run.stdout.strip())


def proc_gone(pid):
    """True when pid no longer exists (a zombie still counts as existing: not reaped)."""
    return not pid_exists(pid)


def list_contexts(stack, query=""):
    r = stack.get("/code/contexts" + query)
    assert r.status_code == 200, (r.status_code, r.text)
    assert is_json(r), r.headers
    body = r.json()
    assert isinstance(body, list), body
    for item in body:
        assert set(item) == {"id", "language"}, item
    return body


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cs():
    """A private stack for this module (contexts stay out of other modules' listings)."""
    s = Stack()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def ctx(cs):
    """A shared context for tests that only use variables of their own."""
    cid = create_context(cs)["id"]
    yield cid
    delete_context(cs, cid)


@pytest.fixture(scope="module")
def ctx2(cs):
    cid = create_context(cs)["id"]
    yield cid
    delete_context(cs, cid)


@pytest.fixture
def own_ctx(cs):
    """A context of the test's own (for interrupting, killing, deleting its kernel)."""
    made = []

    def make(**extra):
        body = create_context(cs, **extra)
        made.append(body["id"])
        return body["id"]

    yield make
    for cid in made:
        delete_context(cs, cid)


# --------------------------------------------------------------------------- POST /code/context
def test_create_context(cs):
    t0 = time.monotonic()
    r = cs.post("/code/context", json={"language": "python"}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    assert time.monotonic() - t0 < 20
    assert is_json(r), r.headers
    body = r.json()
    try:
        assert set(body) == {"id", "language"}, body
        assert ID_RE.match(body["id"]), body
        assert body["language"] == "python"
        # Ready when answered: the first run needs no further start-up.
        run = run_in(cs, body["id"], "1 + 1")
        assert run.results == [{"text": "2"}], run.summary()
        assert run.elapsed < 5, run.elapsed
    finally:
        delete_context(cs, body.get("id", "x"))


def test_create_context_cwd(cs, tmp):
    cwd = os.path.join(str(tmp), "new", "kernel dir")
    assert not os.path.exists(cwd)
    r = cs.post("/code/context", json={"language": "python", "cwd": cwd}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    try:
        assert body == {"id": body["id"], "language": "python", "cwd": cwd}, body
        assert os.path.isdir(cwd)
        run = run_in(cs, body["id"], "import os; print(os.getcwd())")
        assert not run.errors, run.summary()
        assert run.stdout == cwd + "\n"
    finally:
        delete_context(cs, body["id"])


@pytest.mark.parametrize("body", [
    {},
    {"language": ""},
    {"language": 5},
    {"language": ["python"]},
    {"language": {"name": "python"}},
    {"language": True},
    {"language": "python", "cwd": 7},
    [],
    "python",
])
def test_create_context_invalid_body(cs, body):
    r = cs.post("/code/context", data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize("raw", [b"", b"{", b"{\"language\": python}", b"not json"])
def test_create_context_bad_json(cs, raw):
    r = cs.post("/code/context", data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST_BODY")


def test_create_context_unknown_language(cs):
    before = list_contexts(cs)
    t0 = time.monotonic()
    r = cs.post("/code/context", json={"language": "cobol"}, timeout=30)
    elapsed = time.monotonic() - t0
    body = assert_error(r, 400, "INVALID_REQUEST_BODY")
    assert elapsed < 2, f"took {elapsed:.2f} s"
    assert "python" in body["message"], body
    assert "cobol" in body["message"], body
    assert list_contexts(cs) == before


# --------------------------------------------------------------------------- listing / get
def test_list_contexts(cs, ctx, ctx2):
    all_ = list_contexts(cs)
    assert {"id": ctx, "language": "python"} in all_
    assert {"id": ctx2, "language": "python"} in all_
    assert len({c["id"] for c in all_}) == len(all_), all_
    py = list_contexts(cs, "?language=python")
    assert {"id": ctx, "language": "python"} in py
    assert {"id": ctx2, "language": "python"} in py
    assert all(c["language"] == "python" for c in py), py
    key = lambda c: c["id"]  # noqa: E731
    assert sorted(list_contexts(cs, "?language="), key=key) == sorted(all_, key=key)


def test_list_contexts_unknown_language(cs, ctx):
    assert list_contexts(cs, "?language=cobol") == []


@pytest.mark.parametrize("language", ["command", "background-command", "sql"])
def test_list_contexts_unsupported_language(cs, language):
    assert_error(cs.get(f"/code/contexts?language={language}"), 500, "RUNTIME_ERROR",
                 message=f"unsupported language context operation: {language}")


def test_get_context(cs, ctx):
    r = cs.get(f"/code/contexts/{ctx}")
    assert r.status_code == 200, (r.status_code, r.text)
    assert is_json(r)
    assert r.json() == {"id": ctx, "language": "python"}


@pytest.mark.parametrize("cid", [random_id(), "not-a-context", "0" * 31, "A" * 32])
def test_get_unknown_context(cs, cid):
    assert_error(cs.get(f"/code/contexts/{cid}"), 404, "CONTEXT_NOT_FOUND",
                 message=f"context {cid} not found")


@pytest.mark.parametrize("cid", [random_id(), "not-a-context"])
def test_delete_unknown_context(cs, cid):
    assert_error(cs.delete(f"/code/contexts/{cid}"), 404, "CONTEXT_NOT_FOUND",
                 message=f"context {cid} not found")


def test_delete_context(cs):
    cid = create_context(cs)["id"]
    try:
        pid = kernel_pid(cs, cid)
        assert pid_exists(pid)
        r = cs.delete(f"/code/contexts/{cid}")
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.headers.get("Content-Length") == "0", r.headers
        assert r.content == b""
        assert_error(cs.get(f"/code/contexts/{cid}"), 404, "CONTEXT_NOT_FOUND",
                     message=f"context {cid} not found")
        assert cid not in [c["id"] for c in list_contexts(cs)]
        assert wait_until(lambda: proc_gone(pid), 5), f"kernel pid {pid} still exists"
        # Gone for runs too, and a second delete is a 404.
        s = open_code(cs, {"code": "1", "context": {"id": cid, "language": "python"}})
        assert s.status == 404, (s.status, s.read_body())
        assert_error(cs.delete(f"/code/contexts/{cid}"), 404, "CONTEXT_NOT_FOUND")
    finally:
        delete_context(cs, cid)


def test_delete_contexts_by_language():
    s = Stack()
    try:
        a = create_context(s)["id"]
        b = create_context(s)["id"]
        d = run_code(s, "import os; print(os.getpid())", {"language": "python"})
        default_id = d.id
        pids = [kernel_pid(s, a), kernel_pid(s, b), int(d.stdout.strip())]
        listed = {c["id"] for c in list_contexts(s, "?language=python")}
        assert listed == {a, b, default_id}, listed
        assert_error(s.delete("/code/contexts"), 400, "MISSING_QUERY",
                     message="missing query parameter 'language'")
        assert_error(s.delete("/code/contexts?language="), 400, "MISSING_QUERY")
        assert list_contexts(s, "?language=python") != []
        r = s.delete("/code/contexts?language=python")
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.headers.get("Content-Length") == "0" and r.content == b"", r.headers
        assert wait_until(lambda: list_contexts(s) == [], 5), list_contexts(s)
        for cid in (a, b, default_id):
            assert_error(s.get(f"/code/contexts/{cid}"), 404, "CONTEXT_NOT_FOUND")
        for pid in pids:
            assert wait_until(lambda: proc_gone(pid), 5), f"kernel pid {pid} still exists"
        # Nothing left: still 200.
        r = s.delete("/code/contexts?language=python")
        assert r.status_code == 200 and r.content == b"", (r.status_code, r.text)
        # The default context is recreated on the next run, with a new id.
        d2 = run_code(s, "1 + 2", {"language": "python"})
        assert d2.results == [{"text": "3"}], d2.summary()
        assert d2.id != default_id
        assert list_contexts(s) == [{"id": d2.id, "language": "python"}]
    finally:
        s.stop()


# --------------------------------------------------------------------------- POST /code: validation
@pytest.mark.parametrize("body", [
    {},
    {"code": ""},
    {"code": 5},
    {"code": None, "context": {"language": "python"}},
    {"code": ["1"], "context": {"language": "python"}},
    {"context": {"language": "python"}},
    {"code": "", "context": {"language": "python"}},
    {"code": "1", "context": "python"},
    {"code": "1", "context": {"language": 5}},
    {"code": "1", "context": {"id": 5}},
])
def test_code_invalid_body(cs, body):
    s = open_code(cs, body)
    r_body = s.read_body()
    assert s.status == 400, (s.status, r_body)
    assert s.headers.get("Content-Type", "").startswith("application/json"), s.headers
    err = json.loads(r_body)
    assert err.get("code") == "INVALID_REQUEST_BODY", err
    assert isinstance(err.get("message"), str) and err["message"], err


@pytest.mark.parametrize("raw", [b"", b"{", b"code", b"{\"code\": 1+}"])
def test_code_bad_json(cs, raw):
    s = open_code(cs, raw)
    body = s.read_body()
    assert s.status == 400, (s.status, body)
    err = json.loads(body)
    assert err.get("code") == "INVALID_REQUEST_BODY", err


def test_code_unknown_context_id(cs):
    cid = random_id()
    s = open_code(cs, {"code": "1 + 1", "context": {"id": cid, "language": "python"}})
    body = s.read_body()
    assert s.status == 404, (s.status, body)
    assert s.headers.get("Content-Type", "").startswith("application/json"), s.headers
    assert json.loads(body) == {"code": "CONTEXT_NOT_FOUND", "message": f"context {cid} not found"}
    # Without a language too; and a non-hex id.
    s = open_code(cs, {"code": "1 + 1", "context": {"id": cid}})
    assert s.status == 404, (s.status, s.read_body())
    s = open_code(cs, {"code": "1 + 1", "context": {"id": "nope"}})
    body = s.read_body()
    assert s.status == 404, (s.status, body)
    assert json.loads(body)["code"] == "CONTEXT_NOT_FOUND"


# --------------------------------------------------------------------------- stateless shell runs
@pytest.mark.parametrize("context", [None, {}, {"language": ""}, {"id": "", "language": ""}])
def test_shell_run_echo(cs, context):
    body = {"code": "echo hi"}
    if context is not None:
        body["context"] = context
    s = open_code(cs, body).check_headers()
    run = sse.check_command_events(s.read_all(15))
    types = [e["type"] for e in run.events if e["type"] != "ping"]
    assert types == ["init", "stdout", "execution_complete"], sse.summarize(run.events)
    assert run.stdout == ["hi"]


def test_shell_run_exit_status(cs):
    s = open_code(cs, {"code": "echo before; exit 3"}).check_headers()
    run = sse.check_command_events(s.read_all(15))
    assert run.stdout == ["before"]
    assert run.terminal["type"] == "error"
    assert run.error["ename"] == "CommandExecError"
    assert run.error["evalue"] == "3"


def test_shell_run_is_not_python(cs):
    # No language: bash, not the Python kernel.
    s = open_code(cs, {"code": "echo $((6 * 7))"}).check_headers()
    run = sse.check_command_events(s.read_all(15))
    assert run.stdout == ["42"], sse.summarize(run.events)


# --------------------------------------------------------------------------- Jupyter runs
def test_print_and_expression(cs, ctx):
    run = run_in(cs, ctx, 'print("hi")\n2+2')
    assert run.types == ["init", "stdout", "execution_count", "result", "execution_complete"], \
        run.summary()
    assert run.stdout == "hi\n"
    assert run.results == [{"text": "4"}]
    assert not run.errors
    assert "execution_time" in run.complete, run.complete
    assert isinstance(run.complete["execution_time"], int)
    # The stream ends right after execution_complete (read_all saw the clean end of the body).
    assert run.elapsed < 10, run.elapsed
    n1 = run.counts[0]
    run2 = run_in(cs, ctx, "3 * 3")
    assert run2.results == [{"text": "9"}], run2.summary()
    assert len(run2.counts) == 1 and run2.counts[0] > n1, (n1, run2.counts)


def test_stream_framing(cs, ctx):
    s = open_code(cs, {"code": "print('frame')", "context": {"id": ctx}}).check_headers()
    s.read_all(20)
    check_code_events(s.events, ctx)
    assert all(f.startswith(b"data: {") and f.endswith(b"}") for f in s.frames), s.frames
    assert s.ended


def test_sdk_result_contract(cs, ctx):
    run = run_in(cs, ctx, "result = 2 + 2\nresult")
    assert [r.get("text") for r in run.results] == ["4"], run.summary()
    assert not run.errors


def test_name_error(cs, ctx):
    run = run_in(cs, ctx, "undefined_name_zq9")
    errs = run.errors
    assert len(errs) == 1, run.summary()
    assert errs[0]["ename"] == "NameError"
    assert "undefined_name_zq9" in errs[0]["evalue"], errs[0]
    assert errs[0]["traceback"] and all(isinstance(x, str) for x in errs[0]["traceback"])
    assert any("NameError" in x for x in errs[0]["traceback"]), errs[0]
    assert run.types.index("error") < run.types.index("execution_complete")
    assert run.types[-1] == "execution_complete"
    assert not run.results
    # The context is fine afterwards.
    assert run_in(cs, ctx, "7 - 2").results == [{"text": "5"}]


def test_unicode_output(cs, ctx):
    run = run_in(cs, ctx, 'print("héllo ✓ 测试")\n"ünï ✓ 测试"')
    assert run.stdout == "héllo ✓ 测试\n", run.summary()
    assert run.results == [{"text": "'ünï ✓ 测试'"}], run.summary()


def test_stderr_output(cs, ctx):
    run = run_in(cs, ctx, 'import sys; print("to-err", file=sys.stderr)')
    assert run.stderr == "to-err\n", run.summary()
    assert run.stdout == ""


def test_display_html(cs, ctx):
    run = run_in(cs, ctx, 'from IPython.display import HTML, display; display(HTML("<b>x</b>"))')
    assert not run.errors, run.summary()
    html = [r for r in run.results if "text/html" in r]
    assert len(html) == 1, run.summary()
    assert html[0]["text/html"] == "<b>x</b>"


def test_rich_result_mime_bundle(cs, ctx):
    run = run_in(cs, ctx, 'from IPython.display import HTML\nHTML("<i>y</i>")')
    assert len(run.results) == 1 and len(run.counts) == 1, run.summary()
    assert run.results[0]["text/html"] == "<i>y</i>"
    assert isinstance(run.results[0].get("text"), str), run.results


def test_silent_cell(cs, ctx):
    run = run_in(cs, ctx, "silent_var_k2 = 1")
    assert run.types == ["init", "execution_complete"], run.summary()
    assert not run.counts and not run.results


def test_state_persists(cs, ctx):
    assert run_in(cs, ctx, "x = 5").types == ["init", "execution_complete"]
    run = run_in(cs, ctx, "x * 2")
    assert run.results == [{"text": "10"}], run.summary()
    assert run_in(cs, ctx, "def f(a):\n    return a + x\n").types == ["init", "execution_complete"]
    assert run_in(cs, ctx, "f(1)").results == [{"text": "6"}]


def test_contexts_are_isolated(cs, ctx, ctx2):
    assert run_in(cs, ctx, "iso_only_in_first = 1").types == ["init", "execution_complete"]
    run = run_in(cs, ctx2, "iso_only_in_first")
    assert [e["ename"] for e in run.errors] == ["NameError"], run.summary()
    assert run_in(cs, ctx, "iso_only_in_first").results == [{"text": "1"}]
    # Different kernel processes.
    assert kernel_pid(cs, ctx) != kernel_pid(cs, ctx2)


def test_concurrent_runs_in_two_contexts(cs, ctx, ctx2):
    a = open_code(cs, {"code": "import time; time.sleep(1); print('A')", "context": {"id": ctx}})
    b = open_code(cs, {"code": "import time; time.sleep(1); print('B')", "context": {"id": ctx2}})
    try:
        ra = check_code_events(a.check_headers().read_all(10), ctx)
        rb = check_code_events(b.check_headers().read_all(10), ctx2)
    finally:
        a.close()
        b.close()
    assert ra.stdout == "A\n" and not ra.errors, ra.summary()
    assert rb.stdout == "B\n" and not rb.errors, rb.summary()


def test_default_context(cs):
    run = run_code(cs, "default_var_q = 41", {"language": "python"})
    did = run.id
    try:
        assert run.types == ["init", "execution_complete"], run.summary()
        run2 = run_code(cs, "default_var_q + 1", {"language": "python"})
        assert run2.id == did
        assert run2.results == [{"text": "42"}], run2.summary()
        # Language names are case-insensitive and name the same default context.
        run3 = run_code(cs, "default_var_q", {"language": "Python"})
        assert run3.id == did and run3.results == [{"text": "41"}], run3.summary()
        assert {"id": did, "language": "python"} in list_contexts(cs)
        assert {"id": did, "language": "python"} in list_contexts(cs, "?language=python")
        r = cs.get(f"/code/contexts/{did}")
        assert r.status_code == 200 and r.json() == {"id": did, "language": "python"}, r.text
        # An explicit id for the default context works too.
        assert run_in(cs, did, "default_var_q * 2").results == [{"text": "82"}]
    finally:
        delete_context(cs, did)


def test_default_context_unknown_language(cs):
    s = open_code(cs, {"code": "1", "context": {"language": "cobol"}})
    body = s.read_body()
    assert 400 <= s.status < 600, (s.status, body)
    err = json.loads(body)
    assert isinstance(err.get("code"), str) and isinstance(err.get("message"), str), err
    assert "cobol" not in {c["language"] for c in list_contexts(cs)}


# --------------------------------------------------------------------------- busy / interrupt
def test_busy_context(cs, own_ctx):
    cid = own_ctx()
    s = open_code(cs, {"code": "import time; time.sleep(3); print('slept')",
                       "context": {"id": cid}}).check_headers()
    try:
        busy_check(cs, cid, s)
    finally:
        s.close()
    # And the context is free again.
    assert run_in(cs, cid, "'free'").results == [{"text": "'free'"}]


def busy_check(cs, cid, s):
    first = s.next_event(time.monotonic() + 10)
    assert first["type"] == "init" and first["text"] == cid, first
    t0 = time.monotonic()
    s2 = open_code(cs, {"code": "print('second')", "context": {"id": cid, "language": "python"}})
    body = s2.read_body()
    assert time.monotonic() - t0 < 2
    assert s2.status == 409, (s2.status, body)
    assert s2.headers.get("Content-Type", "").startswith("application/json"), s2.headers
    err = json.loads(body)
    assert err.get("code") == "BUSY" and err.get("message"), err
    # The first run is unaffected.
    run = check_code_events(s.read_all(8), cid)
    assert run.stdout == "slept\n" and not run.errors, run.summary()
    assert run.complete.get("execution_time", 0) >= 2900, run.complete


def test_interrupt_running_cell(cs, own_ctx):
    cid = own_ctx()
    run_in(cs, cid, "kept = 'still here'")
    s = open_code(cs, {"code": "print('spinning', flush=True)\nwhile True: pass",
                       "context": {"id": cid}}).check_headers()
    deadline = time.monotonic() + 15
    while True:
        e = s.next_event(deadline)
        assert e is not None, sse.summarize(s.events)
        if e["type"] == "stdout":
            assert e["text"] == "spinning\n", e
            break
    r = cs.delete(f"/code?id={cid}")
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.content == b""
    run = check_code_events(s.read_all(10), cid)
    assert [x["ename"] for x in run.errors] == ["KeyboardInterrupt"], run.summary()
    assert run.types[-2:] == ["error", "execution_complete"], run.summary()
    # The kernel survived with its state.
    after = run_in(cs, cid, "kept")
    assert after.results == [{"text": "'still here'"}], after.summary()


def test_interrupt_unknown_id(cs):
    fake = random_id()
    r = cs.delete(f"/code?id={fake}")
    assert_error(r, 404, "CONTEXT_NOT_FOUND")


def test_interrupt_missing_id(cs):
    assert_error(cs.delete("/code"), 400, "MISSING_QUERY")
    assert_error(cs.delete("/code?id="), 400, "MISSING_QUERY")


def test_interrupt_idle_context(cs, ctx):
    r = cs.delete(f"/code?id={ctx}")
    assert not 200 <= r.status_code < 300, (r.status_code, r.text)
    assert is_json(r), r.headers
    err = r.json()
    assert isinstance(err.get("code"), str) and isinstance(err.get("message"), str), err
    # And nothing happened to it.
    assert run_in(cs, ctx, "'alive'").results == [{"text": "'alive'"}]


# --------------------------------------------------------------------------- kernel death
def assert_died_then_recovers(cs, cid, run, old_pid):
    errs = run.errors
    assert errs and errs[-1]["ename"] == "KernelDied", run.summary()
    assert run.types[-2:] == ["error", "execution_complete"], run.summary()
    assert wait_until(lambda: proc_gone(old_pid), 5), f"dead kernel {old_pid} not reaped"
    # The context still exists and the next run gets a new kernel without the old state.
    r = cs.get(f"/code/contexts/{cid}")
    assert r.status_code == 200, (r.status_code, r.text)
    nxt = run_in(cs, cid, "doomed_var", timeout=40)
    assert nxt.stderr_events, f"no stderr event about the lost state: {nxt.summary()}"
    assert "lost" in nxt.stderr_events[0], nxt.stderr_events
    assert nxt.types[1] == "stderr", nxt.summary()
    assert [e["ename"] for e in nxt.errors] == ["NameError"], nxt.summary()
    new_pid = kernel_pid(cs, cid)
    assert new_pid != old_pid
    # The restart notice is said once only.
    again = run_in(cs, cid, "1 + 1")
    assert again.types == ["init", "execution_count", "result", "execution_complete"], \
        again.summary()


def test_kernel_kills_itself(cs, own_ctx):
    cid = own_ctx()
    assert run_in(cs, cid, "doomed_var = 1").types == ["init", "execution_complete"]
    pid = kernel_pid(cs, cid)
    t0 = time.monotonic()
    run = run_in(cs, cid, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", timeout=30)
    assert time.monotonic() - t0 < 15
    assert_died_then_recovers(cs, cid, run, pid)


def kernel_busy_in_a_cell(cs, own_ctx, value):
    """A context whose kernel holds state (doomed_var) and is in the middle of a long cell
    that has printed: (context id, kernel pid, the cell's open stream)."""
    cid = own_ctx()
    assert run_in(cs, cid, f"doomed_var = {value}").types == ["init", "execution_complete"]
    pid = kernel_pid(cs, cid)
    s = open_code(cs, {"code": "print('in the cell', flush=True)\nimport time; time.sleep(60)",
                       "context": {"id": cid}}).check_headers()
    deadline = time.monotonic() + 10
    while True:
        e = s.next_event(deadline)
        assert e is not None, sse.summarize(s.events)
        if e["type"] == "stdout":
            return cid, pid, s


def test_kernel_killed_from_outside(cs, own_ctx):
    cid, pid, s = kernel_busy_in_a_cell(cs, own_ctx, 2)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    run = check_code_events(s.read_all(20), cid)
    assert time.monotonic() - t0 < 15
    assert_died_then_recovers(cs, cid, run, pid)


def test_kernel_hangs(cs, own_ctx):
    """A kernel that stops answering (SIGSTOP: no heartbeat, no messages) is declared dead
    after three missed heartbeats (3 s apart), killed, and replaced on the next run."""
    cid, pid, s = kernel_busy_in_a_cell(cs, own_ctx, 3)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        run = check_code_events(s.read_all(30), cid)
        assert 6 < time.monotonic() - t0 < 25, time.monotonic() - t0
        assert_died_then_recovers(cs, cid, run, pid)
    finally:
        if not proc_gone(pid):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- disconnect
def test_client_disconnect_does_not_interrupt(cs, ctx):
    path = f"/tmp/execd-ctxtest-{secrets.token_hex(8)}"
    try:
        s = open_code(cs, {"code": f'import time; time.sleep(1); open("{path}", "w").write("done")',
                           "context": {"id": ctx}}).check_headers()
        first = s.next_event(time.monotonic() + 10)
        assert first["type"] == "init", first
        s.close()
        assert wait_until(lambda: os.path.exists(path), 6), "the cell did not run to its end"
        assert wait_until(lambda: open(path).read() == "done", 2)

        # The context becomes free again (not stuck busy after the stream went away).
        def free():
            r = open_code(cs, {"code": "'after'", "context": {"id": ctx}})
            if r.status == 409:
                r.read_body()
                return None
            return check_code_events(r.check_headers().read_all(15), ctx)
        run = wait_until(free, 5, interval=0.1)
        assert run is not None, "context still busy 5 s after the cell ended"
        assert run.results == [{"text": "'after'"}], run.summary()
    finally:
        if os.path.exists(path):
            os.unlink(path)
