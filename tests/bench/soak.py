#!/usr/bin/python3
"""execd soak test: a long, mixed, concurrent workload against the real bus, daemon and bridge.

    soak.py [--scale=full|short|FACTOR] [--workers=N] [--seed=N]

full (the meson benchmark `soak`): 10,000 commands, 1,000 uploads each followed by its
download, 200 Python code cells and 100 task-environment executes, shuffled together and run
by --workers keep-alive client threads at once. short (the CI test `soak-short`) is the same
at 1/20th. A warm-up phase of the same mix comes first; then, with every client connection
closed and the stack idle, the script samples the daemon's and the bridge's open descriptors
(/proc/PID/fd), VmRSS and child processes. After the main phase, once idle again, it checks:

  - every result was correct: command output and exit status exactly; uploaded bytes downloaded
    back unchanged and the target directories holding exactly the expected files; code cells'
    stdout, results, errors and the kernel's state; executes' output and exit code;
  - no descriptor growth: each process has exactly the descriptors it had after warm-up;
  - no zombies below the daemon or the bridge, and no stray processes below the daemon (only
    the kernels of the contexts that stay open);
  - no leftover temporary files: nothing in the daemon's and the bridge's private TMPDIR, no
    `.NAME.execd-*` (or any other) extra name in an upload directory, nothing in the
    environments' state directory but the store, only the open contexts' kernel directories in
    the daemon's runtime directory;
  - VmRSS of each process grew by less than 10 % over the post-warm-up sample (reported only,
    not checked, in a sanitizer build, whose quarantine grows by design).

Prints a summary (ops/s and latency per kind, descriptors and RSS before and after) and exits
1 on any violation, 0 otherwise. The daemon runs with --retain-count=128 so that the warm-up
fills its table of finished commands (kept by design, 1024 by default) and the comparison
measures leaks rather than that table filling up.
"""
import argparse
import collections
import http.client
import json
import os
import queue
import random
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "http"))
import harness  # noqa: E402
import sse  # noqa: E402
try:
    import benchline  # noqa: E402 -- the BENCH result lines read by scripts/bench-table.py
except ImportError:
    benchline = None

FULL = {"command": 10_000, "transfer": 1_000, "code": 200, "execute": 100}
SCALES = {"full": 1.0, "short": 0.05}
MIB = 1024 * 1024
RETAIN_COUNT = 128
RSS_LIMIT = 0.10
N_CONTEXTS = 3
N_ENVS = 3
FILES_PER_WORKER = 6
BOUNDARY = "soak-" + secrets.token_hex(8)
API_KEY = "soak-" + secrets.token_hex(16)
IDLE_TIMEOUT = 15


class Failure(Exception):
    """A wrong result of one operation."""


# --------------------------------------------------------------------------- /proc helpers
def fd_table(pid):
    """{fd: link target} of a process."""
    out = {}
    d = f"/proc/{pid}/fd"
    for name in os.listdir(d):
        try:
            out[int(name)] = os.readlink(os.path.join(d, name))
        except OSError:
            pass
    return out


def vm_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def proc_start(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19])


def zombies_of(pids):
    return [(p, ppid, comm) for p, state, ppid, _g, comm in harness.all_procs()
            if state == "Z" and ppid in pids]


def descendants(pid):
    """{(pid, start time, comm)} of every process below pid."""
    kids = {}
    for p, _state, ppid, _pgid, comm in harness.all_procs():
        kids.setdefault(ppid, []).append((p, comm))
    out, todo = set(), [pid]
    while todo:
        for child, comm in kids.get(todo.pop(), ()):
            out.add((child, proc_start(child), comm))
            todo.append(child)
    return out


def sanitized(pid):
    """True when the process carries a sanitizer runtime (its RSS is not comparable)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
    except OSError:
        return False
    return "libasan" in maps or "asan_rt" in maps or "libclang_rt.asan" in maps


def kernels_runtime_dir(daemon_pid, daemon_env):
    """The daemon's kernels directory, computed as daemon/manager.c does."""
    base = daemon_env.get("RUNTIME_DIRECTORY")
    if base:
        parent = base
    elif os.geteuid() == 0:
        parent = "/run/execd"
    elif daemon_env.get("XDG_RUNTIME_DIR"):
        parent = os.path.join(daemon_env["XDG_RUNTIME_DIR"], "execd")
    else:
        parent = f"/tmp/execd-{os.geteuid()}"
    return os.path.join(parent, f"kernels-{daemon_pid}")


def listing(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------- the client
class Client:
    """One keep-alive connection to the bridge."""

    def __init__(self, port, token):
        self.port, self.token = port, token
        self.conn = None
        self.connects = 0

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None, timeout=120):
        """(status, headers, body bytes) of one request on the kept connection."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            self.connects += 1
        h = {"X-EXECD-ACCESS-TOKEN": self.token}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        try:
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
            data = r.read()
        except Exception:
            self.close()
            raise
        if r.will_close:
            self.close()
        return r.status, r.headers, data


def sse_events(status, headers, data, what):
    """The events of a complete SSE body, each frame checked strictly (tests/http/sse.py)."""
    if status != 200:
        raise Failure(f"{what}: status {status}, body {data[:300]!r}")
    ctype = headers.get("Content-Type", "").split(";")[0].strip()
    if ctype != "text/event-stream":
        raise Failure(f"{what}: Content-Type {ctype!r}")
    if not data.endswith(b"\n\n"):
        raise Failure(f"{what}: body does not end with a complete frame: {data[-200:]!r}")
    try:
        return [sse.parse_frame(f) for f in data[:-2].split(b"\n\n")]
    except sse.StreamError as e:
        raise Failure(f"{what}: {e}")


# --------------------------------------------------------------------------- operations
class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.base = tempfile.mkdtemp(prefix="execd-soak-")
        os.chmod(self.base, 0o711)  # environment uids walk through it to their directories
        self.tmpdir = os.path.join(self.base, "tmp")
        self.files_dir = os.path.join(self.base, "files")
        self.state_dir = os.path.join(self.base, "state")
        for d in (self.tmpdir, self.files_dir):
            os.mkdir(d, 0o700)
        os.mkdir(self.state_dir, 0o711)
        self.keys = os.path.join(self.base, "api-keys")
        with open(self.keys, "w") as f:
            f.write(f"{API_KEY}\n")
        os.chmod(self.keys, 0o600)
        self.env = dict(os.environ, TMPDIR=self.tmpdir)
        self.bus = self.daemon = self.bridge = None
        self.contexts = queue.Queue()      # (id, expected counter) pairs, one user at a time
        self.context_ids = []
        self.envs = queue.Queue()          # (id, token, variable value)
        self.env_ids = []
        self.expected_files = {}           # worker dir -> set of names
        self.lock = threading.Lock()
        self.failures = []
        self.rate_limited = 0
        self.code_enabled = True

    # -- stack --------------------------------------------------------------------------
    def start(self):
        self.bus = harness.Bus()
        self.daemon = harness.Daemon(
            self.bus, f"--state-dir={self.state_dir}", f"--retain-count={RETAIN_COUNT}",
            "--env-uid-min=681000", "--env-uid-max=681999", env=self.env)
        self.bridge = harness.Bridge(self.bus, f"--api-keys={self.keys}", env=self.env)
        self.runtime_dir = kernels_runtime_dir(self.daemon.proc.pid, self.env)

    def stop(self):
        if self.bridge is not None:
            self.bridge.stop()
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.stop()
        if self.bus is not None:
            self.bus.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def alive(self):
        for name, p in (("daemon", self.daemon.proc), ("bridge", self.bridge.proc)):
            if p.poll() is not None:
                raise SystemExit(f"FAIL: the {name} died (exit status {p.returncode})\n"
                                 + (self.daemon.read_log()[-3000:] if name == "daemon" else ""))

    def client(self):
        return Client(self.bridge.port, self.bridge.token)

    # -- set-up -------------------------------------------------------------------------
    def setup(self):
        c = self.client()
        for i in range(N_CONTEXTS):
            st, _h, body = c.request("POST", "/code/context", {"language": "python"})
            if st == 400 and b"python" not in body:
                print(f"  note: no Python kernel installed ({body[:200]!r}): no code cells",
                      flush=True)
                self.code_enabled = False
                break
            if st != 200:
                raise SystemExit(f"FAIL: POST /code/context answered {st}: {body[:300]!r}")
            cid = json.loads(body)["id"]
            self.context_ids.append(cid)
            self.contexts.put([cid, 0])
        base = "/api/v1/org/soak/ws/w/environments"
        for i in range(N_ENVS):
            value = f"value-{i}-{secrets.token_hex(4)}"
            st, _h, body = c.request("POST", base, {"name": f"soak{i}", "env": {"SOAK_VAR": value}},
                                     headers={"Authorization": f"Bearer {API_KEY}"})
            if st != 201:
                raise SystemExit(f"FAIL: provisioning answered {st}: {body[:300]!r}")
            d = json.loads(body)
            harness.record_secret(d["token"], "env-token")
            self.env_ids.append(d["id"])
            self.envs.put((d["id"], d["token"], value))
        c.close()

    def teardown(self):
        """Delete the contexts and environments (checked), once the figures are taken."""
        c = self.client()
        for cid in self.context_ids:
            st, _h, body = c.request("DELETE", f"/code/contexts/{cid}")
            if st != 200:
                self.fail("teardown", f"DELETE /code/contexts/{cid}: {st} {body[:200]!r}")
        for eid in self.env_ids:
            st, _h, body = c.request("DELETE", f"/api/v1/org/soak/ws/w/environments/{eid}",
                                     headers={"Authorization": f"Bearer {API_KEY}"})
            if st != 200:
                self.fail("teardown", f"DELETE environment {eid}: {st} {body[:200]!r}")
        c.close()

    def fail(self, kind, msg):
        with self.lock:
            self.failures.append((kind, msg))

    # -- the four kinds -----------------------------------------------------------------
    def op_command(self, c, rng):
        r = secrets.token_hex(6)
        v = rng.randrange(6)
        if v <= 2:
            body = {"command": f"echo {r}"}
            out, err, status = [r], [], None
        elif v == 3:
            body = {"command": f"printf 'a {r}\\n\\nb\\n'; echo 'err {r}' >&2; exit 3"}
            out, err, status = [f"a {r}", "\n", "b"], [f"err {r}"], "3"
        elif v == 4:
            body = {"command": "echo \"$SOAK_X\"; pwd", "cwd": "/tmp", "envs": {"SOAK_X": r},
                    "timeout": 60000}
            out, err, status = [r, "/tmp"], [], None
        else:
            n = rng.randrange(500, 3000)
            body = {"command": f"seq 1 {n}"}
            out, err, status = [str(i) for i in range(1, n + 1)], [], None
        st, h, data = c.request("POST", "/command", body)
        events = sse_events(st, h, data, f"POST /command {body['command'][:40]!r}")
        try:
            run = sse.check_command_events(events)
        except sse.StreamError as e:
            raise Failure(f"POST /command {body['command'][:40]!r}: {e}")
        if run.stdout != out or run.stderr != err:
            raise Failure(f"POST /command {body['command'][:40]!r}: stdout {run.stdout[:5]}... "
                          f"({len(run.stdout)} lines), stderr {run.stderr[:5]}; expected "
                          f"{out[:5]}... ({len(out)} lines), {err}")
        got = None if run.ok else run.error["evalue"]
        if got != status:
            raise Failure(f"POST /command {body['command'][:40]!r}: exit {got}, expected {status}")

    def op_transfer(self, c, rng, wdir, size=None):
        names = self.expected_files.setdefault(wdir, set())
        name = f"f{rng.randrange(FILES_PER_WORKER)}.bin"
        path = os.path.join(wdir, name)
        if size is None:
            p = rng.random()
            size = (rng.randrange(0, 4097) if p < 0.5 else rng.randrange(4097, 131073)
                    if p < 0.85 else rng.randrange(131073, MIB + 1))
        data = rng.randbytes(size)
        meta = json.dumps({"path": path, "mode": 644})
        body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"; "
                f"filename=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{meta}\r\n"
                f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()
        st, _h, resp = c.request("POST", "/files/upload", body,
                                 {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        if st != 200:
            raise Failure(f"upload {path} ({size} B): {st} {resp[:300]!r}")
        names.add(name)
        qp = quote(path, safe="/")
        st, h, got = c.request("GET", f"/files/download?path={qp}")
        if st != 200 or got != data or h.get("Content-Length") != str(size):
            raise Failure(f"download {path}: status {st}, {len(got)} bytes of {size}, "
                          f"Content-Length {h.get('Content-Length')}, content "
                          f"{'equal' if got == data else 'different'}")
        if rng.random() < 0.2:
            st, _h, resp = c.request("DELETE", f"/files?path={qp}")
            if st != 200:
                raise Failure(f"DELETE /files {path}: {st} {resp[:300]!r}")
            names.discard(name)
        return size

    def op_code(self, c, rng):
        if not self.code_enabled:
            return
        ctx = self.contexts.get()
        try:
            cid, n = ctx
            tok = secrets.token_hex(5)
            r = rng.randrange(1000)
            if rng.random() < 0.2:
                code = f"raise ValueError('soak {tok}')"
                want_out, want_res, want_err = "", [], [("ValueError", f"soak {tok}")]
            else:
                code = f"_soak_n = globals().get('_soak_n', 0) + 1\nprint('{tok}')\n_soak_n * 1000 + {r}"
                n += 1
                want_out, want_res, want_err = f"{tok}\n", [str(n * 1000 + r)], []
            st, h, data = c.request("POST", "/code", {"code": code, "context": {"id": cid}})
            events = sse_events(st, h, data, "POST /code")
            real = [e for e in events if e["type"] not in ("ping", "status")]
            types = [e["type"] for e in real]
            out = "".join(e.get("text", "") for e in real if e["type"] == "stdout")
            res = [e.get("results", {}).get("text") for e in real if e["type"] == "result"]
            errs = [(e["error"].get("ename"), e["error"].get("evalue")) for e in real
                    if e["type"] == "error"]
            if not types or types[0] != "init" or real[0].get("text") != cid or \
                    types[-1] != "execution_complete" or types.count("execution_complete") != 1 \
                    or "stderr" in types or out != want_out or res != want_res or errs != want_err:
                raise Failure(f"POST /code in {cid} (counter {n}): types {types}, stdout {out!r}, "
                              f"results {res}, errors {errs}; expected {want_out!r}, {want_res}, "
                              f"{want_err}")
            ctx[1] = n
        finally:
            self.contexts.put(ctx)

    def op_execute(self, c, rng):
        env = self.envs.get()
        try:
            eid, token, value = env
            r = secrets.token_hex(6)
            code = rng.choice((0, 0, 0, 7))
            cmd = f"echo \"$SOAK_VAR\"; echo {r}; [ \"$PWD\" = \"$HOME\" ] && echo home; exit {code}"
            path = f"/api/v1/org/soak/ws/w/environments/{eid}/execute"
            hdr = {"Authorization": f"Bearer {API_KEY}", "X-Environment-Token": token}
            for _attempt in range(20):
                st, h, data = c.request("POST", path, {"command": cmd, "timeout_sec": 60},
                                        headers=hdr)
                if st != 429:
                    break
                with self.lock:
                    self.rate_limited += 1
                time.sleep(float(h.get("Retry-After", "1")))
            want = {"exit_code": code, "output": f"{value}\n{r}\nhome\n", "truncated": False,
                    "timed_out": False}
            try:
                got = json.loads(data)
            except ValueError:
                got = None
            if st != 200 or got != want:
                raise Failure(f"execute in {eid}: {st} {data[:300]!r}; expected {want}")
        finally:
            self.envs.put(env)

    # -- phases -------------------------------------------------------------------------
    def run_phase(self, counts, label, big_first=False):
        ops = [k for k, n in counts.items() for _ in range(n)]
        self.rng.shuffle(ops)
        q = queue.Queue()
        for k in ops:
            q.put(k)
        stats = collections.defaultdict(list)   # kind -> latencies
        moved = [0]
        connects = [0]

        def worker(k):
            rng = random.Random(self.args.seed * 1000 + k + (0 if label == "warm-up" else 500))
            wdir = os.path.join(self.files_dir, f"w{k}")
            os.makedirs(wdir, exist_ok=True)
            c = self.client()
            first = big_first
            while True:
                try:
                    kind = q.get_nowait()
                except queue.Empty:
                    break
                if rng.random() < 0.03:      # connection churn
                    c.close()
                t0 = time.perf_counter()
                try:
                    if kind == "command":
                        self.op_command(c, rng)
                    elif kind == "transfer":
                        n = self.op_transfer(c, rng, wdir, MIB if first else None)
                        first = False
                        with self.lock:
                            moved[0] += 2 * n
                    elif kind == "code":
                        self.op_code(c, rng)
                    else:
                        self.op_execute(c, rng)
                except Exception as e:  # noqa: BLE001 -- every failure is counted
                    msg = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
                    self.fail(kind, f"{label}: {msg}")
                    c.close()
                    continue
                with self.lock:
                    stats[kind].append(time.perf_counter() - t0)
            with self.lock:
                connects[0] += c.connects
            c.close()

        threads = [threading.Thread(target=worker, args=(k,), daemon=True)
                   for k in range(self.args.workers)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        self.alive()
        return stats, wall, moved[0], connects[0]

    # -- measurements -------------------------------------------------------------------
    def snapshot(self):
        d, b = self.daemon.proc.pid, self.bridge.proc.pid
        return {"daemon_fds": fd_table(d), "bridge_fds": fd_table(b),
                "daemon_rss": vm_rss(d), "bridge_rss": vm_rss(b),
                "children": descendants(d), "bridge_children": descendants(b),
                "zombies": zombies_of({d, b})}

    def wait_idle(self, baseline=None):
        """Poll until the stack looks idle (no zombies; with a baseline: the same descriptors
        and children as then) or IDLE_TIMEOUT; the last snapshot."""
        deadline = time.monotonic() + IDLE_TIMEOUT
        while True:
            time.sleep(0.2)
            s = self.snapshot()
            idle = not s["zombies"]
            if baseline is not None:
                idle = idle and len(s["daemon_fds"]) <= len(baseline["daemon_fds"]) and \
                    len(s["bridge_fds"]) <= len(baseline["bridge_fds"]) and \
                    s["children"] == baseline["children"] and not s["bridge_children"]
            if idle or time.monotonic() >= deadline:
                time.sleep(0.5)  # let the last frees settle before RSS is read
                return self.snapshot()


TCP_STATES = {"01": "ESTABLISHED", "06": "TIME-WAIT", "07": "CLOSE", "08": "CLOSE-WAIT",
              "0A": "LISTEN"}


def tcp_states():
    """{socket inode: TCP state name} from /proc/net/tcp and tcp6."""
    out = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            out[fields[9]] = TCP_STATES.get(fields[3], fields[3])
    return out


def fd_kinds(table, states):
    """Descriptor targets with numbers folded, TCP sockets by state: "socket:tcp CLOSE-WAIT"."""
    out = collections.Counter()
    for t in table.values():
        m = re.fullmatch(r"socket:\[(\d+)\]", t)
        if m and m.group(1) in states:
            out[f"socket:tcp {states[m.group(1)]}"] += 1
        else:
            out[re.sub(r"\d+", "N", t)] += 1
    return out


def fd_diff(before, after):
    states = tcp_states()
    b, a = fd_kinds(before, states), fd_kinds(after, states)
    return {k: a[k] - b[k] for k in set(a) | set(b) if a[k] != b[k]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="short", help="full, short (1/20) or a factor")
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()
    scale = SCALES.get(args.scale)
    if scale is None:
        scale = float(args.scale)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    main_counts = {k: max(1, round(n * scale)) for k, n in FULL.items()}
    warm_counts = {"command": max(2 * RETAIN_COUNT, main_counts["command"] // 10),
                   "transfer": max(20, main_counts["transfer"] // 10),
                   "code": max(2 * N_CONTEXTS, main_counts["code"] // 10),
                   "execute": max(2 * N_ENVS, main_counts["execute"] // 10)}
    for exe in (harness.DAEMON, harness.BRIDGE):
        if not os.access(exe, os.X_OK):
            print(f"FAIL: {exe} is missing; build the tree first", flush=True)
            return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    print(f"=== execd soak ({args.scale}: {main_counts}, warm-up {warm_counts}, "
          f"{args.workers} workers, seed {args.seed}) ===", flush=True)
    print("load average before the run: %.2f %.2f %.2f on %d CPUs" % (*os.getloadavg(),
                                                                      os.cpu_count()), flush=True)
    s = Soak(args)
    violations = []
    bench = []   # (name, figure, unit, target, ok)
    try:
        s.start()
        s.setup()
        counts = dict(warm_counts, code=warm_counts["code"] if s.code_enabled else 0)
        _st, wall, _m, _c = s.run_phase(counts, "warm-up", big_first=True)
        print(f"warm-up: {sum(counts.values())} operations in {wall:.1f} s", flush=True)
        base = s.wait_idle()
        if base["zombies"]:
            violations.append(f"zombies after the warm-up: {base['zombies']}")

        counts = dict(main_counts, code=main_counts["code"] if s.code_enabled else 0)
        stats, wall, moved, connects = s.run_phase(counts, "main")
        end = s.wait_idle(base)

        # ---- results
        print(f"\nmain phase: {sum(counts.values())} operations in {wall:.1f} s by "
              f"{args.workers} workers ({connects} connections opened)")
        print(f"{'kind':<10}{'done':>8}{'ok':>8}{'ops/s':>10}{'median':>12}{'p99':>12}")
        for kind in ("command", "transfer", "code", "execute"):
            lat = sorted(stats.get(kind, []))
            fails = sum(1 for k, m in s.failures if k == kind and m.startswith("main"))
            med = f"{statistics.median(lat) * 1000:.1f} ms" if lat else "-"
            p99 = f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000:.1f} ms" if lat else "-"
            print(f"{kind:<10}{len(lat) + fails:>8}{len(lat):>8}{len(lat) / wall:>10.1f}"
                  f"{med:>12}{p99:>12}")
            bench.append((f"{kind}_rate", len(lat) / wall, "ops/s", None, None))
        print(f"  transfer = upload + download of one file (0 B - 1 MiB); {moved / MIB:.1f} MiB "
              f"moved in the main phase; {s.rate_limited} execute(s) retried after 429")

        # ---- correctness
        bench.append(("wrong_results", len(s.failures), "results", "= 0", not s.failures))
        if s.failures:
            violations.append(f"{len(s.failures)} wrong result(s); first: " +
                              " | ".join(f"[{k}] {m[:400]}" for k, m in s.failures[:5]))

        # ---- descriptors, processes
        print(f"\n{'process':<8}{'fds after warm-up':>20}{'fds at end':>12}"
              f"{'RSS after warm-up':>20}{'RSS at end':>14}{'growth':>9}")
        asan = sanitized(s.daemon.proc.pid) or sanitized(s.bridge.proc.pid)
        for who in ("daemon", "bridge"):
            fb, fe = base[f"{who}_fds"], end[f"{who}_fds"]
            rb, re_ = base[f"{who}_rss"], end[f"{who}_rss"]
            growth = (re_ - rb) / rb
            bench.append((f"{who}_fd_growth", len(fe) - len(fb), "fds", "= 0", len(fe) == len(fb)))
            bench.append((f"{who}_rss_growth", growth * 100, "%", "< 10 %",
                          None if asan else growth < RSS_LIMIT))
            print(f"{who:<8}{len(fb):>20}{len(fe):>12}{rb / MIB:>17.2f} MiB"
                  f"{re_ / MIB:>10.2f} MiB{growth * 100:>8.1f}%")
            if len(fe) != len(fb):
                diff = fd_diff(fb, fe)
                msg = (f"{who}: {len(fb)} descriptors after warm-up, {len(fe)} at the end "
                       f"(change by kind: {diff})")
                if diff.get("socket:tcp CLOSE-WAIT", 0) > 0:
                    msg += ("; CLOSE-WAIT sockets are client connections closed by the client "
                            "while idle between keep-alive requests that the server never closed")
                violations.append(msg)
            if growth >= RSS_LIMIT:
                msg = f"{who}: VmRSS grew {growth * 100:.1f}% ({rb} -> {re_} bytes)"
                if asan:
                    print(f"  note: {msg}; not checked in a sanitizer build")
                else:
                    violations.append(msg)
        if end["zombies"]:
            violations.append(f"zombies at the end: {end['zombies']}")
        if end["children"] != base["children"]:
            violations.append(f"processes below the daemon changed: after warm-up "
                              f"{sorted(base['children'])}, at the end {sorted(end['children'])}")
        if end["bridge_children"]:
            violations.append(f"processes below the bridge: {sorted(end['bridge_children'])}")

        # ---- temporary files
        left = listing(s.tmpdir)
        if left:
            violations.append(f"files left in the daemon's and bridge's TMPDIR: {left[:10]}")
        for wdir, names in s.expected_files.items():
            got = set(listing(wdir) or ())
            if got != names:
                violations.append(f"{wdir}: unexpected {sorted(got - names)[:10]}, missing "
                                  f"{sorted(names - got)[:10]}")
        state_all = listing(s.state_dir) or []
        if set(state_all) - {"environments", "environments.json"}:
            violations.append(f"unexpected (temporary?) files in the state directory: {state_all}")
        # The daemon's runtime directory: one kernel directory per open context, and a
        # `group-PGID-START` marker per live process group it started (daemon/groups.c).
        kdirs = listing(s.runtime_dir)
        nk = len(s.context_ids)
        kernels = [n for n in kdirs or () if not n.startswith("group-")]
        markers = [n for n in kdirs or () if n.startswith("group-")]
        stale = [m for m in markers if not re.fullmatch(r"group-(\d+)-(\d+)", m) or
                 proc_start(int(m.split("-")[1])) != int(m.split("-")[2])]
        if kdirs is not None and len(kernels) != nk:
            violations.append(f"{s.runtime_dir} holds {len(kernels)} kernel entries for {nk} "
                              f"contexts: {kernels[:10]}")
        if stale or len(markers) > nk:
            violations.append(f"{s.runtime_dir}: {len(markers)} process-group markers for {nk} "
                              f"contexts, {len(stale)} of dead groups: {stale[:10]}")
        print(f"\nstate directory: {state_all}; kernels directory: {len(kernels)} kernel entries "
              f"and {len(markers)} group markers for {nk} contexts; TMPDIR: {len(left or ())} entries")

        s.teardown()
        s.alive()
    except SystemExit as e:
        violations.append(str(e.code))
    finally:
        s.stop()

    print()
    if benchline is not None:
        for name, figure, unit, target, ok in bench:
            print(benchline.line(f"soak.{name}" if args.scale == "full" else
                                 f"soak_{args.scale}.{name}", figure, unit, target=target, ok=ok))
    if violations:
        print(f"soak {args.scale}: FAIL ({len(violations)} violation(s)):")
        for v in violations:
            print(f"  - {v}")
        return 1
    print(f"soak {args.scale}: PASS (every result correct; no descriptor growth, zombie, stray "
          "process or temporary file; RSS growth under 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
