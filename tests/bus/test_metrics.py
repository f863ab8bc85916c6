"""org.execd.Execd1.Metrics at /org/execd/Execd1/metrics: GetSample, the properties, Watch /
Unwatch and the once-a-second PropertiesChanged, the host view and the cgroup v2 view
(--cgroup-dir=DIR with fixture files, --cgroup-dir=none for the host)."""
import os
import select
import subprocess
import time

import pytest

from busclient import PROPS_IFACE, DBusError, hdr
from conftest import wait_until

METRICS_PATH = "/org/execd/Execd1/metrics"
METRICS_IFACE = "org.execd.Execd1.Metrics"
SAMPLE_PROPS = {"CpuCount": "d", "CpuUsedPercent": "d", "MemTotalMiB": "d", "MemUsedMiB": "d",
                "Timestamp": "t"}
ALL_PROPS = dict(SAMPLE_PROPS, View="s", Watchers="u")
MATCH_RULE = ("type='signal',sender='org.execd.Execd1',path='/org/execd/Execd1/metrics',"
              "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'")
MIB = 1 << 20
PYTHON = "/usr/bin/python3"


# --------------------------------------------------------------------------- helpers
def now_ms():
    return int(time.time() * 1000)


def host_count():
    return len(os.sched_getaffinity(0))


def meminfo_kib():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0])
    return out


def host_total_mib():
    return meminfo_kib()["MemTotal"] / 1024


def host_used_mib():
    m = meminfo_kib()
    return (m["MemTotal"] - m["MemAvailable"]) / 1024


def get_sample(c, timeout=5):
    body = c.call(METRICS_PATH, METRICS_IFACE, "GetSample", timeout=timeout)
    assert len(body) == 5, body
    count, pct, total, used, ts = body
    for v in (count, pct, total, used):
        assert isinstance(v, float), body  # jeepney decodes 'd' as float, 't' as int
    assert isinstance(ts, int), body
    return {"count": count, "pct": pct, "total": total, "used": used, "ts": ts}


def timed_sample(c):
    t0 = time.monotonic()
    s = get_sample(c)
    return s, t0, time.monotonic()


def get_all_typed(c):
    (d,) = c.call(METRICS_PATH, PROPS_IFACE, "GetAll", "s", (METRICS_IFACE,))
    return d


def props(c):
    d = get_all_typed(c)
    for name, sig in ALL_PROPS.items():
        assert name in d, f"property {name} missing from GetAll: {sorted(d)}"
        assert d[name][0] == sig, f"{name} has signature {d[name][0]!r}, expected {sig!r}"
    return {k: v[1] for k, v in d.items()}


def prop(c, name):
    (var,) = c.call(METRICS_PATH, PROPS_IFACE, "Get", "ss", (METRICS_IFACE, name))
    assert var[0] == ALL_PROPS[name], (name, var)
    return var[1]


def watchers(c):
    return prop(c, "Watchers")


def watch(c):
    assert c.call(METRICS_PATH, METRICS_IFACE, "Watch") == ()


def unwatch(c):
    assert c.call(METRICS_PATH, METRICS_IFACE, "Unwatch") == ()


def as_sample(p):
    """Properties (or a PropertiesChanged dict of plain values) in GetSample's shape."""
    return {"count": p["CpuCount"], "pct": p["CpuUsedPercent"], "total": p["MemTotalMiB"],
            "used": p["MemUsedMiB"], "ts": p["Timestamp"]}


def assert_sane(s, host=True, allow_zero_used=False):
    assert s["count"] > 0, s
    if host:
        assert s["count"] >= 1, s
    assert 0.0 <= s["pct"] <= 100.0, s
    assert s["total"] > 0, s
    if allow_zero_used:
        assert 0.0 <= s["used"] <= s["total"], s
    else:
        assert 0.0 < s["used"] <= s["total"], s
    assert abs(s["ts"] - now_ms()) <= 5000, f"timestamp {s['ts']} is not within 5 s of now " \
        f"({now_ms()}): {s}"


def assert_host_values(s):
    """The host view: affinity CPU count, MemTotal, MemTotal - MemAvailable."""
    assert s["count"] == host_count(), (s, host_count())
    assert s["total"] == pytest.approx(host_total_mib(), abs=0.01), s
    assert abs(s["used"] - host_used_mib()) <= 256, (s, host_used_mib())


def is_metrics_pc(m):
    """Any PropertiesChanged of the metrics object (a sample, or a change of Watchers)."""
    return hdr(m, "path") == METRICS_PATH and hdr(m, "interface") == PROPS_IFACE and \
        hdr(m, "member") == "PropertiesChanged"


def is_sample_pc(m):
    """A PropertiesChanged that announces a sample (not one that only carries Watchers)."""
    return is_metrics_pc(m) and len(m.body) == 3 and isinstance(m.body[1], dict) and \
        bool(set(m.body[1]) & set(SAMPLE_PROPS))


def wait_pc(c, timeout):
    """The next sample PropertiesChanged: (arrival monotonic time, {name: (sig, value)})."""
    m = c.wait_signal(is_sample_pc, timeout=timeout)
    t = time.monotonic()
    iface, changed, invalidated = m.body
    assert iface == METRICS_IFACE, m.body
    assert hdr(m, "destination") is None, f"PropertiesChanged is not a broadcast: " \
        f"destination {hdr(m, 'destination')!r}"
    for name, sig in SAMPLE_PROPS.items():
        assert name in changed, f"PropertiesChanged lacks {name}: {sorted(changed)}"
        assert changed[name][0] == sig, (name, changed[name])
    assert not set(invalidated) & set(SAMPLE_PROPS), invalidated
    return t, changed


def observer(e):
    c = e.connect()
    c.add_match(MATCH_RULE)
    return c


# --------------------------------------------------------------------------- basic values
def test_introspection_matches_xml(env):
    from test_introspect import compare, describe, introspect, read_xml
    c = env.connect()
    live = describe(introspect(c, METRICS_PATH))
    compare(describe(read_xml("org.execd.Execd1.Metrics.xml")), live)


def test_get_sample_sane(env):
    c = env.connect()
    s = get_sample(c)
    assert_sane(s)
    assert prop(c, "View") in ("host", "cgroup")


def test_properties_sane(env):
    c = env.connect()
    p = props(c)
    assert_sane(as_sample(p))
    assert p["View"] in ("host", "cgroup")
    # Single Gets are answered too, with fresh values.
    for name in SAMPLE_PROPS:
        prop(c, name)
    assert abs(prop(c, "Timestamp") - now_ms()) <= 5000


def test_host_view(make_env):
    e = make_env("--cgroup-dir=none")
    c = e.connect()
    assert prop(c, "View") == "host"
    s = get_sample(c)
    assert_sane(s)
    assert_host_values(s)
    p = props(c)
    assert p["View"] == "host"
    assert p["Watchers"] == 0
    assert_sane(as_sample(p))
    assert_host_values(as_sample(p))


def test_get_sample_answers_fast(make_env):
    e = make_env("--cgroup-dir=none")
    c = e.connect()
    times = []
    for _ in range(2):
        t0 = time.monotonic()
        s = get_sample(c)
        times.append(time.monotonic() - t0)
        assert_sane(s)
    assert all(t < 0.5 for t in times), f"GetSample took {times} s (expected < 0.5 s each)"
    # Many more in a row: answered from the recent sample, all quickly.
    t0 = time.monotonic()
    for _ in range(20):
        get_sample(c)
    assert time.monotonic() - t0 < 2.0


def test_sample_and_properties_agree(make_env):
    e = make_env("--cgroup-dir=none")
    c = e.connect()
    s = get_sample(c)
    p = as_sample(props(c))
    assert p["count"] == s["count"]
    assert p["total"] == s["total"]
    assert abs(p["used"] - s["used"]) <= 256, (p, s)
    assert p["ts"] >= s["ts"], (p, s)


# --------------------------------------------------------------------------- Watch
def test_watch_emits_properties_changed_every_second(make_env):
    e = make_env("--cgroup-dir=none")
    obs = observer(e)
    w = e.connect()  # the watcher adds no match rule: the observer sees the broadcast
    assert watchers(obs) == 0
    watch(w)
    assert watchers(obs) == 1
    arrivals, stamps = [], []
    for _ in range(3):
        t, changed = wait_pc(obs, timeout=3)
        arrivals.append(t)
        stamps.append(changed["Timestamp"][1])
        assert_sane(as_sample({k: v[1] for k, v in changed.items()}))
    intervals = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert all(0.5 <= i <= 2.0 for i in intervals), f"intervals {intervals}"
    assert stamps == sorted(stamps) and len(set(stamps)) == 3, stamps
    deltas = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(500 <= d <= 2000 for d in deltas), f"timestamp deltas {deltas} ms"
    # The properties now carry the last announced sample (or a newer one).
    assert prop(obs, "Timestamp") >= stamps[-1]


def test_watchers_count(make_env):
    e = make_env("--cgroup-dir=none")
    obs = e.connect()
    a, b, never = e.connect(), e.connect(), e.connect()
    assert watchers(obs) == 0
    watch(a)
    assert watchers(obs) == 1
    watch(a)  # idempotent per unique name
    assert watchers(obs) == 1
    watch(b)
    assert watchers(obs) == 2
    unwatch(b)
    assert watchers(obs) == 1
    unwatch(b)  # not watching any more: harmless
    unwatch(never)
    assert watchers(obs) == 1
    unwatch(a)
    assert watchers(obs) == 0
    unwatch(a)
    assert watchers(obs) == 0
    watch(a)
    assert watchers(obs) == 1


def test_watcher_leaving_the_bus_is_unwatched(make_env):
    e = make_env("--cgroup-dir=none")
    obs = e.connect()
    a, b = e.connect(), e.connect()
    watch(a)
    watch(b)
    assert watchers(obs) == 2
    b.close()
    assert wait_until(lambda: watchers(obs) == 1, 2.0, 0.05), watchers(obs)
    t0 = time.monotonic()
    a.close()
    assert wait_until(lambda: watchers(obs) == 0, 2.0, 0.05), watchers(obs)
    assert time.monotonic() - t0 <= 2.5
    assert e.daemon.proc.poll() is None


@pytest.mark.parametrize("how", ["unwatch", "close"])
def test_no_signals_without_watchers(make_env, how):
    e = make_env("--cgroup-dir=none")
    obs = observer(e)
    w = e.connect()
    watch(w)
    wait_pc(obs, timeout=3)  # the match rule works: the silence below means something
    if how == "unwatch":
        unwatch(w)
    else:
        w.close()
    assert wait_until(lambda: watchers(obs) == 0, 2.0, 0.05)
    # Anything sent before the reply that said 0 arrived before it; drop it.
    obs.signals = []
    obs.pump(2.5)
    late = [m for m in obs.signals if is_metrics_pc(m)]
    assert not late, f"{len(late)} PropertiesChanged after Watchers dropped to 0: " \
        f"{[m.body for m in late]}"
    # And a new Watch starts them again.
    watch(obs)
    wait_pc(obs, timeout=3)


def test_watch_from_many_clients_is_one_timer(make_env):
    """Ten watchers: still about one PropertiesChanged a second, not ten."""
    e = make_env("--cgroup-dir=none")
    obs = observer(e)
    ws = [e.connect() for _ in range(10)]
    for w in ws:
        watch(w)
    assert watchers(obs) == 10
    wait_pc(obs, timeout=3)
    obs.signals = []
    obs.pump(3.0)
    n = len([m for m in obs.signals if is_sample_pc(m)])
    assert 2 <= n <= 5, f"{n} PropertiesChanged in 3 s with 10 watchers"


# --------------------------------------------------------------------------- real load
def spin(n):
    return [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(n)]


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def pct_over(c, seconds):
    """CpuUsedPercent over about `seconds`: prime a reading, wait, read again."""
    get_sample(c)
    time.sleep(seconds)
    return get_sample(c)["pct"]


def test_busy_loop_raises_cpu(make_env):
    e = make_env("--cgroup-dir=none")
    c = e.connect()
    get_sample(c)
    time.sleep(1.1)
    idle = pct_over(c, 1.5)
    procs = spin(2)
    try:
        time.sleep(0.5)
        busy = pct_over(c, 1.5)
        s = get_sample(c)
    finally:
        stop(procs)
    assert_sane(s)
    assert busy > idle + 20 or busy >= 60, f"idle {idle:.1f} %, busy {busy:.1f} %"
    assert busy <= 100.0


def test_memory_allocation_raises_used(make_env):
    e = make_env("--cgroup-dir=none")
    c = e.connect()
    get_sample(c)
    time.sleep(1.1)
    before = get_sample(c)["used"]
    script = ("import sys\n"
              "b = bytearray(800 << 20)\n"
              "for i in range(0, len(b), 4096):\n"
              "    b[i] = 1\n"
              "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
              "sys.stdin.read()\n")
    hog = subprocess.Popen([PYTHON, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        r, _, _ = select.select([hog.stdout], [], [], 20)
        assert r and hog.stdout.readline() == b"ready\n", "the allocating child did not start"
        samples = []

        def raised():
            time.sleep(0.3)
            s = get_sample(c)
            samples.append(s["used"])
            return s["used"] - before >= 400

        ok = wait_until(raised, 5.0, 0)
        assert ok, f"MemUsedMiB before {before:.1f}, while holding 800 MiB: {samples}"
        assert_sane(get_sample(c))
    finally:
        hog.kill()
        hog.wait()


# --------------------------------------------------------------------------- cgroup view
CPU_STAT = """usage_usec {usage}
user_usec {user}
system_usec {system}
nr_periods 1234
nr_throttled 17
throttled_usec 999999999
nr_bursts 0
burst_usec 0
"""

MEMORY_STAT = """anon 300000000
file 200000000
kernel 8388608
kernel_stack 1048576
pagetables 2097152
sock 0
shmem 4096
file_mapped 1000000
file_dirty 0
file_writeback 0
anon_thp 0
inactive_anon 7777777
active_anon 8888888
inactive_file {inactive}
active_file 66666666
unevictable 0
slab_reclaimable 555555
slab_unreclaimable 444444
workingset_refault_file 3
"""


class Cgroup:
    """A directory with the five cgroup v2 files execd reads."""

    def __init__(self, path, cpu_max="50000 100000\n", usage=1_000_000,
                 memory_max="1073741824\n", current=512 * MIB, inactive=128 * MIB):
        self.path = str(path)
        os.makedirs(self.path, exist_ok=True)
        self.usage = usage
        self.write("cpu.max", cpu_max)
        self.set_usage(usage)
        self.write("memory.max", memory_max)
        self.set_memory(current, inactive)

    def write(self, name, text):
        # In place (no rename), so a daemon that keeps the file open and re-reads it sees the
        # change too; one write() then a truncate, so a concurrent reader never sees an empty
        # file (usage counters only grow, so the old tail is normally overwritten whole).
        fd = os.open(os.path.join(self.path, name), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            data = text.encode()
            assert os.pwrite(fd, data, 0) == len(data)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def set_usage(self, usage):
        self.usage = usage
        user = usage * 6 // 10
        self.write("cpu.stat", CPU_STAT.format(usage=usage, user=user, system=usage - user))

    def set_memory(self, current, inactive):
        self.write("memory.current", f"{current}\n")
        self.write("memory.stat", MEMORY_STAT.format(inactive=inactive))


def cgroup_env(make_env, cg):
    e = make_env(f"--cgroup-dir={cg.path}")
    return e, e.connect()


def expected_pct(delta_usec, t_prev, t_next, quota=0.5):
    """(low, high) of the expected CpuUsedPercent, from the widest and narrowest windows."""
    (a0, a1), (b0, b1) = t_prev, t_next
    longest, shortest = b1 - a0, max(0.05, b0 - a1)
    lo = delta_usec / (longest * 1e6 * quota) * 100
    hi = delta_usec / (shortest * 1e6 * quota) * 100
    return min(lo, 100.0), min(hi, 100.0)


def test_cgroup_view_values(make_env, tmp_path):
    assert host_total_mib() > 1024, "the host has less than 1 GiB: the fixture needs more"
    cg = Cgroup(tmp_path / "cg")
    e, c = cgroup_env(make_env, cg)
    assert prop(c, "View") == "cgroup"
    s = get_sample(c)
    assert s["count"] == 0.5, s
    assert s["total"] == pytest.approx(1024.0, abs=1e-6), s
    assert s["used"] == pytest.approx(384.0, abs=1e-6), s  # (512 - 128) MiB
    assert 0.0 <= s["pct"] <= 100.0, s
    assert abs(s["ts"] - now_ms()) <= 5000, s
    p = props(c)
    assert p["View"] == "cgroup"
    assert p["CpuCount"] == 0.5
    assert p["MemTotalMiB"] == pytest.approx(1024.0, abs=1e-6)
    assert p["MemUsedMiB"] == pytest.approx(384.0, abs=1e-6)


def test_cgroup_cpu_percent(make_env, tmp_path):
    cg = Cgroup(tmp_path / "cg", usage=5_000_000)
    e, c = cgroup_env(make_env, cg)
    s0, *t0 = timed_sample(c)
    # usage_usec did not move since the daemon started: nothing used.
    assert s0["pct"] == pytest.approx(0.0, abs=1e-6), s0
    time.sleep(1.1)
    s0, *t0 = timed_sample(c)
    assert s0["pct"] == pytest.approx(0.0, abs=1e-6), s0

    cg.set_usage(cg.usage + 250_000)
    time.sleep(1.2)
    s1, *t1 = timed_sample(c)
    lo, hi = expected_pct(250_000, t0, t1)
    assert lo - 15 <= s1["pct"] <= hi + 15, \
        f"CpuUsedPercent {s1['pct']:.1f}, expected {lo:.1f}..{hi:.1f} (+-15)"
    assert s1["ts"] > s0["ts"], (s0, s1)
    assert s1["count"] == 0.5

    # Ten times as much: far above the quota, clamped to 100.
    cg.set_usage(cg.usage + 2_500_000)
    time.sleep(1.2)
    s2, *t2 = timed_sample(c)
    assert s2["pct"] <= 100.0, s2
    assert s2["pct"] == pytest.approx(100.0, abs=1e-6), s2

    # Idle again.
    time.sleep(1.2)
    s3 = get_sample(c)
    assert s3["pct"] == pytest.approx(0.0, abs=1e-6), s3

    # A counter that goes backwards (a new cgroup) never gives a value out of range.
    cg.set_usage(1000)
    time.sleep(1.2)
    s4 = get_sample(c)
    assert 0.0 <= s4["pct"] <= 100.0, s4
    assert e.daemon.proc.poll() is None


def test_cgroup_cpu_percent_while_watched(make_env, tmp_path):
    """The once-a-second samples use the same formula: 0.25 s used per second of a 0.5 quota."""
    cg = Cgroup(tmp_path / "cg", usage=1_000_000)
    e, c = cgroup_env(make_env, cg)
    c.add_match(MATCH_RULE)
    watch(c)
    wait_pc(c, timeout=3)
    pcts = []
    stop_at = time.monotonic() + 4.5
    while time.monotonic() < stop_at:
        cg.set_usage(cg.usage + 25_000)  # 0.25 s per second in steps of 0.1 s
        c.pump(0.1)
        for m in c.take_signals(path=METRICS_PATH, member="PropertiesChanged"):
            if is_sample_pc(m):
                pcts.append(m.body[1]["CpuUsedPercent"][1])
    assert len(pcts) >= 3, pcts
    assert all(0.0 <= p <= 100.0 for p in pcts), pcts
    inner = sorted(pcts[1:])[len(pcts[1:]) // 2]  # median, the first interval may be partial
    assert 35 <= inner <= 65, f"CpuUsedPercent while watched: {pcts} (expected ~50)"


def test_cgroup_memory_changes_and_clamps(make_env, tmp_path):
    cg = Cgroup(tmp_path / "cg")
    e, c = cgroup_env(make_env, cg)
    assert get_sample(c)["used"] == pytest.approx(384.0, abs=1e-6)

    cg.set_memory(900 * MIB, 100 * MIB)
    time.sleep(1.2)
    s = get_sample(c)
    assert s["used"] == pytest.approx(800.0, abs=1e-6), s

    cg.set_memory(2048 * MIB, 0)  # above memory.max: clamped to the total
    time.sleep(1.2)
    s = get_sample(c)
    assert s["total"] == pytest.approx(1024.0, abs=1e-6), s
    assert s["used"] == pytest.approx(1024.0, abs=1e-6), s

    cg.set_memory(100 * MIB, 200 * MIB)  # more inactive file cache than usage: clamped to 0
    time.sleep(1.2)
    s = get_sample(c)
    assert s["used"] == pytest.approx(0.0, abs=1e-6), s
    assert e.daemon.proc.poll() is None


def test_cgroup_memory_unlimited_is_host(make_env, tmp_path):
    cg = Cgroup(tmp_path / "cg", memory_max="max\n")
    e, c = cgroup_env(make_env, cg)
    assert prop(c, "View") == "cgroup"
    s = get_sample(c)
    assert s["count"] == 0.5, s
    assert s["total"] == pytest.approx(host_total_mib(), abs=0.01), s
    assert abs(s["used"] - host_used_mib()) <= 256, (s, host_used_mib())
    assert_sane(s, host=False)


def test_cgroup_memory_limit_above_host_is_host_total(make_env, tmp_path):
    cg = Cgroup(tmp_path / "cg", memory_max=f"{1 << 60}\n")
    e, c = cgroup_env(make_env, cg)
    s = get_sample(c)
    assert s["total"] == pytest.approx(host_total_mib(), abs=0.01), s
    assert 0.0 <= s["used"] <= s["total"], s


def test_cgroup_cpu_unlimited_is_host(make_env, tmp_path):
    cg = Cgroup(tmp_path / "cg", cpu_max="max 100000\n")
    e, c = cgroup_env(make_env, cg)
    assert prop(c, "View") == "cgroup"
    s = get_sample(c)
    assert s["count"] == host_count(), s
    assert s["total"] == pytest.approx(1024.0, abs=1e-6), s
    assert s["used"] == pytest.approx(384.0, abs=1e-6), s
    time.sleep(1.1)
    assert 0.0 <= get_sample(c)["pct"] <= 100.0


def test_cgroup_no_limits_is_host_view(make_env, tmp_path):
    cg = Cgroup(tmp_path / "cg", cpu_max="max 100000\n", memory_max="max\n")
    e, c = cgroup_env(make_env, cg)
    assert prop(c, "View") == "host"
    s = get_sample(c)
    assert_sane(s)
    assert_host_values(s)


def test_cgroup_dir_without_files_is_host_view(make_env, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    e = make_env(f"--cgroup-dir={d}")
    c = e.connect()
    assert prop(c, "View") == "host"
    s = get_sample(c)
    assert_sane(s)
    assert_host_values(s)


@pytest.mark.parametrize("cpu_max", ["garbage\n", "\n", "", "50000 0\n", "abc 100000\n",
                                     "50000 abc\n", "-50000 100000\n"],
                         ids=["garbage", "newline", "empty", "zero-period", "bad-quota",
                              "bad-period", "negative"])
def test_malformed_cpu_max_falls_back_to_host(make_env, tmp_path, cpu_max):
    cg = Cgroup(tmp_path / "cg", cpu_max=cpu_max)
    e, c = cgroup_env(make_env, cg)
    s = get_sample(c)
    assert s["count"] == host_count(), s
    assert 0.0 <= s["pct"] <= 100.0, s
    # memory.max is still valid: memory keeps the cgroup view.
    assert s["total"] == pytest.approx(1024.0, abs=1e-6), s
    assert prop(c, "View") == "cgroup"
    time.sleep(1.1)
    s = get_sample(c)
    assert 0.0 <= s["pct"] <= 100.0 and s["count"] == host_count(), s
    assert e.daemon.proc.poll() is None


@pytest.mark.parametrize("memory_max", ["garbage\n", "\n", "", "12abc\n", "-5\n"],
                         ids=["garbage", "newline", "empty", "trailing-garbage", "negative"])
def test_malformed_memory_max_falls_back_to_host(make_env, tmp_path, memory_max):
    cg = Cgroup(tmp_path / "cg", memory_max=memory_max)
    e, c = cgroup_env(make_env, cg)
    s = get_sample(c)
    assert s["total"] == pytest.approx(host_total_mib(), abs=0.01), s
    assert 0.0 < s["used"] <= s["total"], s
    assert s["count"] == 0.5, s  # cpu.max is still valid
    assert prop(c, "View") == "cgroup"
    assert e.daemon.proc.poll() is None


@pytest.mark.parametrize("name,text", [
    ("cpu.stat", "garbage\n"),
    ("cpu.stat", ""),
    ("cpu.stat", "user_usec 5\n"),
    ("memory.current", "garbage\n"),
    ("memory.current", ""),
    ("memory.stat", "garbage\n"),
    ("memory.stat", ""),
], ids=["cpu.stat-garbage", "cpu.stat-empty", "cpu.stat-no-usage", "memory.current-garbage",
        "memory.current-empty", "memory.stat-garbage", "memory.stat-empty"])
def test_malformed_usage_files_stay_sane(make_env, tmp_path, name, text):
    cg = Cgroup(tmp_path / "cg")
    cg.write(name, text)
    e, c = cgroup_env(make_env, cg)
    for i in range(2):
        s = get_sample(c)
        assert s["count"] > 0, s
        assert 0.0 <= s["pct"] <= 100.0, s
        assert s["total"] > 0 and 0.0 <= s["used"] <= s["total"], s
        if i == 0:
            time.sleep(1.1)
    p = props(c)
    assert p["View"] in ("host", "cgroup")
    assert e.daemon.proc.poll() is None


def test_cgroup_files_disappearing_stay_sane(make_env, tmp_path):
    cg = Cgroup(tmp_path / "cg")
    e, c = cgroup_env(make_env, cg)
    get_sample(c)
    for name in ("cpu.stat", "memory.current", "memory.stat"):
        os.unlink(os.path.join(cg.path, name))
    time.sleep(1.1)
    s = get_sample(c)
    assert s["count"] > 0 and 0.0 <= s["pct"] <= 100.0, s
    assert s["total"] > 0 and 0.0 <= s["used"] <= s["total"], s
    assert e.daemon.proc.poll() is None


def test_default_daemon_cgroup_view_sane(env):
    """The shared daemon reads its real cgroup (or the host): whatever it is, it is sane."""
    c = env.connect()
    s = get_sample(c)
    assert_sane(s, host=False, allow_zero_used=prop(c, "View") == "cgroup")
    assert s["total"] <= host_total_mib() + 0.01, s


def test_unknown_method_is_an_error(env):
    c = env.connect()
    with pytest.raises(DBusError) as ei:
        c.call(METRICS_PATH, METRICS_IFACE, "NoSuchMethod")
    assert ei.value.name == "org.freedesktop.DBus.Error.UnknownMethod", ei.value
    with pytest.raises(DBusError):
        c.call(METRICS_PATH, METRICS_IFACE, "GetSample", "s", ("x",))
    get_sample(c)
