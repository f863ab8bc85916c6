"""secrets-in-logs: no secret used by the test run appears in a daemon or bridge log.

tests/harness.py, with EXECD_SECRETS_DIR set (tests/meson.build sets it), copies every daemon
and bridge log of the bus, http and sdk suites into that directory and appends every access
token, API key and environment token it hands out or sees come back to its `tokens` file.
This test runs last (priority -1000) and greps every collected log for every recorded token.
A hit is reported as file:line with a redacted token prefix; the token itself is never printed.

Outcomes:
  - no harness use recorded in the directory (the test runs alone, `--suite secrets`, or the
    directory was cleared): skip, exit 77, with the reason;
  - the harness was used but the directory holds no logs, only empty logs or no tokens: fail
    (the record is broken and the check could not find anything);
  - a token in a log: fail.
Afterwards the directory is renamed to <dir>.last, so a later run starts empty and a stale
record can never satisfy this check (scripts/run-tests.sh also clears it before meson test).
"""
import os
import shutil
import sys

SKIP = 77
TOKENS = "tokens"
MARKER = "harness-used"


def redact(token):
    return f"{token[:4]}… ({len(token)} chars)"


def read_tokens(path):
    """{token: kind} from a tokens file ("KIND VALUE" lines)."""
    out = {}
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and len(parts[1]) >= 8:
                out.setdefault(parts[1], parts[0])
    return out


def needles(token):
    """What to look for: the token, and its first half (a truncated token is still a leak)."""
    n = [token.lower()]
    if len(token) >= 32:
        n.append(token[:len(token) // 2].lower())
    return n


def find_hits(log_paths, tokens):
    """[(path, line number, token, kind, whole)] for every log line holding a token (or its
    first half, whole=False); case-insensitive, since hex may be printed in either case."""
    hits = []
    for path in log_paths:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", errors="replace").lower()
        for token, kind in tokens.items():
            for i, needle in enumerate(needles(token)):
                start = data.find(needle)
                found = False
                while start >= 0:
                    found = True
                    hits.append((path, data.count("\n", 0, start) + 1, token, kind, i == 0))
                    start = data.find(needle, start + 1)
                if found:
                    break  # the whole token matched; its half would only repeat the hits
    return hits


def report(hits, out=sys.stdout):
    for path, line, token, kind, whole in hits:
        what = "token" if whole else "first half of token"
        print(f"LEAK {path}:{line}: {what} {kind} {redact(token)}", file=out)


def rotate(d):
    last = d.rstrip("/") + ".last"
    shutil.rmtree(last, ignore_errors=True)
    try:
        os.rename(d, last)
        print(f"(the record was moved to {last})")
    except OSError as e:
        print(f"warning: could not move {d} aside: {e}")


def check(d):
    marker = os.path.join(d, MARKER)
    if not os.path.isdir(d) or not os.path.exists(marker):
        print(f"SKIP: no test in this run used tests/harness.py with EXECD_SECRETS_DIR={d}\n"
              "(this check greps the logs of the bus, http and sdk suites for the tokens they\n"
              "used; run it together with them: ./scripts/run-tests.sh or plain `meson test`)")
        return SKIP
    logs = sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".log"))
    tokens_path = os.path.join(d, TOKENS)
    tokens = read_tokens(tokens_path) if os.path.exists(tokens_path) else {}
    with open(marker) as f:
        stacks = sum(1 for _ in f)
    size = sum(os.path.getsize(p) for p in logs)
    kinds = {}
    for kind in tokens.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"{stacks} harness buses, {len(logs)} logs ({size} bytes), {len(tokens)} distinct "
          f"tokens: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    problems = []
    if not logs:
        problems.append("the harness ran but no daemon or bridge log was collected")
    elif size == 0:
        problems.append("every collected log is empty")
    if not tokens:
        problems.append("the harness ran but no token was recorded")
    if problems:
        for p in problems:
            print(f"FAIL: {p}; the check cannot find anything, so it fails")
        return 1
    hits = find_hits(logs, tokens)
    if hits:
        report(hits)
        print(f"FAIL: {len(hits)} log lines hold a secret")
        return 1
    print("OK: no recorded token appears in any collected log")
    return 0


def main():
    d = os.environ.get("EXECD_SECRETS_DIR")
    if not d:
        print("FAIL: EXECD_SECRETS_DIR is not set (tests/meson.build sets it)")
        return 1
    rc = check(d)
    if rc != SKIP:
        rotate(d)
    return rc


if __name__ == "__main__":
    sys.exit(main())
