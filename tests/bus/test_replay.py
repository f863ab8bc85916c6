"""ReadOutput / ReadLog replay, paging and ring truncation."""

import pytest

from conftest import wait_until


def seq_bytes(n):
    return b"".join(b"%d\n" % i for i in range(1, n + 1))


def wait_finished(client, path, timeout=20):
    assert wait_until(lambda: client.get(path, "Running") is False, timeout, 0.05), \
        "command still running"


def test_late_client_read_output(env):
    owner = env.connect()
    cmd = "for i in $(seq 1 3000); do echo out$i; if [ $((i % 100)) = 0 ]; then echo err$i >&2; fi; done"
    path, outputs, exited = owner.run_wait(cmd, timeout=20)
    assert exited == (0, 0, False)
    late = env.connect()
    chunks, next_seq = late.read_output_all(path, 0)
    assert [(s, st, bytes(d)) for s, st, d in chunks] == outputs
    assert [s for s, _st, _d in chunks] == list(range(len(chunks)))
    assert next_seq == len(chunks)
    stdout = b"".join(bytes(d) for _s, st, d in chunks if st == "stdout")
    stderr = b"".join(bytes(d) for _s, st, d in chunks if st == "stderr")
    assert stdout == b"".join(b"out%d\n" % i for i in range(1, 3001))
    assert stderr == b"".join(b"err%d\n" % i for i in range(100, 3001, 100))

    # ReadLog: the combined byte stream, in read order
    combined = b"".join(bytes(d) for _s, _st, d in chunks)
    data, end = late.read_log(path, 0, 0)
    assert data == combined
    assert end == len(combined) == late.get(path, "BytesOut")

    # from the middle, with and without a byte limit
    mid = len(combined) // 3
    data, end = late.read_log(path, mid, 0)
    assert data == combined[mid:] and end == len(combined)
    data, end = late.read_log(path, mid, 1000)
    assert data == combined[mid:mid + 1000] and end == mid + 1000
    # at and past the end
    data, end = late.read_log(path, len(combined), 0)
    assert data == b"" and end >= len(combined)
    data, _end = late.read_log(path, len(combined) + 1000, 0)
    assert data == b""

    # ReadOutput from the middle
    k = len(chunks) // 2
    tail, nxt = late.read_output_all(path, k)
    assert [c[0] for c in tail] == list(range(k, len(chunks)))
    assert nxt == len(chunks)
    past, _n = late.read_output(path, len(chunks) + 10)
    assert past == []


def test_replay_while_running(env):
    owner = env.connect()
    path = owner.run("echo first; sleep 30")
    try:
        reader = env.connect()
        assert wait_until(lambda: reader.read_output(path, 0)[0] != [], 5, 0.05)
        chunks, nxt = reader.read_output(path, 0)
        assert chunks[0][0] == 0 and chunks[0][1] == "stdout"
        assert b"".join(bytes(c[2]) for c in chunks) == b"first\n"
        data, end = reader.read_log(path, 0, 0)
        assert data == b"first\n" and end == 6
        assert reader.get(path, "Running") is True
    finally:
        owner.signal(path, 9)


def test_read_output_pages_of_4mib(env):
    owner = env.connect()
    expected = seq_bytes(800000)  # ~5.9 MB, fits the default 8 MiB ring
    path = owner.run("seq 1 800000", background=True)
    owner.close()  # nobody reads the signals; the background command finishes anyway
    reader = env.connect()
    wait_finished(reader, path, 30)
    assert reader.get(path, "ExitCode") == 0
    assert reader.get(path, "Truncated") is False
    seq = 0
    got = []
    replies = 0
    while True:
        chunks, nxt = reader.read_output(path, seq, timeout=20)
        if not chunks:
            break
        replies += 1
        size = sum(len(c[2]) for c in chunks)
        assert size <= 4 * 1024 * 1024, f"ReadOutput reply with {size} bytes"
        assert chunks[0][0] == seq
        got.extend(chunks)
        seq = nxt
    assert replies >= 2
    assert [c[0] for c in got] == list(range(len(got)))
    assert b"".join(bytes(c[2]) for c in got) == expected
    assert all(len(c[2]) <= 65536 for c in got)
    # ReadLog caps at 4 MiB per reply, next_offset continues
    offset, log = 0, b""
    for _ in range(100):
        data, end = reader.read_log(path, offset, 0, timeout=20)
        if not data:
            break
        assert len(data) <= 4 * 1024 * 1024, len(data)
        assert end == offset + len(data)
        log += data
        offset = end
    assert log == expected and offset == len(expected)
    # an explicit limit above 4 MiB is capped too
    data, end = reader.read_log(path, 0, 6 * 1024 * 1024, timeout=20)
    assert 0 < len(data) <= 4 * 1024 * 1024 and end == len(data)


@pytest.mark.parametrize("ring", [65536, 131072])
def test_ring_truncation(make_env, ring):
    e = make_env(f"--ring-size={ring}")
    owner = e.connect()
    n = 200000
    expected = seq_bytes(n)  # ~1.2 MiB, far more than the ring
    path, outputs, exited = owner.run_wait(f"seq 1 {n}", timeout=30)
    assert exited == (0, 0, False)
    assert b"".join(d for _s, _st, d in outputs) == expected  # live signals are complete
    last_seq = outputs[-1][0]
    p = owner.get_all(path)
    assert p["Truncated"] is True
    assert p["BytesOut"] == len(expected)

    reader = e.connect()
    chunks, nxt = reader.read_output_all(path, 0)
    assert chunks, "ReadOutput returned nothing"
    assert chunks[0][0] > 0, "oldest chunks should have been dropped"
    assert [c[0] for c in chunks] == list(range(chunks[0][0], last_seq + 1))
    assert nxt == last_seq + 1
    tail = b"".join(bytes(c[2]) for c in chunks)
    assert expected.endswith(tail)
    assert len(tail) <= ring

    data, end = reader.read_log(path, 0, 0)
    assert end == len(expected)
    assert 0 < len(data) <= ring, len(data)
    assert expected.endswith(data), "ReadLog must end with the last bytes written"
    start = end - len(data)
    assert start > 0
    # an offset before the oldest retained byte starts at the oldest one
    data2, end2 = reader.read_log(path, 1, 0)
    assert (data2, end2) == (data, end)
    # offsets inside the retained window work
    data3, end3 = reader.read_log(path, start + 10, 20)
    assert data3 == expected[start + 10:start + 30] and end3 == start + 30
