"""Many concurrent foreground streams through one bridge."""
import threading
import time

import sse


def test_20_concurrent_foreground_commands(stack):
    n = 20
    results = [None] * n
    errors = []

    def worker(i):
        try:
            results[i] = stack.run(f"echo start-{i}; sleep 0.5; seq {i} {i + 99}; echo end-{i}",
                                   timeout=30)
        except BaseException as e:  # noqa: B902 (reported below)
            errors.append((i, repr(e)))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    ids = set()
    for i, run in enumerate(results):
        assert run.ok, (i, run.terminal)
        assert run.stdout == [f"start-{i}"] + [str(k) for k in range(i, i + 100)] + [f"end-{i}"]
        assert run.stderr == []
        ids.add(run.id)
    assert len(ids) == n
    # They ran in parallel, not one after another.
    assert time.monotonic() - t0 < 8


def test_concurrent_plain_requests_during_streams(stack):
    s = stack.stream({"command": "sleep 1; echo x"}).check_headers()
    try:
        for _ in range(20):
            r = stack.get("/ping")
            assert r.status_code == 200
        run = sse.check_command_events(s.read_all(10))
        assert run.stdout == ["x"]
    finally:
        s.close()
