#!/usr/bin/python3
"""Run the execd benchmarks and print one table of every figure.

    scripts/bench-table.py [-C BUILDDIR] [--markdown] [MESON TEST ARGS...]
    scripts/bench-table.py --log BUILDDIR/meson-logs/benchmarklog.json [--markdown]

The first form runs `meson test -C BUILDDIR --benchmark --logbase benchmarklog` plus any
further arguments (benchmark names, --suite, --no-rebuild, ...), whose output (each
benchmark's own table) goes to the terminal as usual; the second only reads a log.  Then
it reads the JSON log (meson 1.0 writes meson-logs/<logbase>.json, one JSON object per
benchmark and line, whose "stdout" holds the benchmark's output with stderr merged; plain
`meson test --benchmark` uses the logbase testlog, `ninja benchmark` benchmarklog) and
prints every "BENCH ..." line (tests/bench/benchline.py) as one row: the figure, its
baseline measured in the same run, the ratio, the target and the issue that set it, and
whether it was met.  A missed target is marked MISSED and does not change the exit
status; a benchmark that failed or timed out makes it 1 (as does a failing `meson test`);
one that passed without printing a BENCH line is listed with a warning.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))
import benchline  # noqa: E402

NA = benchline.NA


def show(v):
    """A figure for people: about 3-4 significant digits."""
    try:
        x = float(v)
    except ValueError:
        return v
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if x == int(x):
        return str(int(x))
    if a >= 100:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def rows_from_log(path):
    """(rows, problems, warnings): one row per BENCH line, and one per benchmark that failed,
    was skipped or printed no BENCH line."""
    rows, problems, warnings = [], [], []
    entries = []
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            if raw.strip():
                try:
                    entries.append(json.loads(raw))
                except ValueError as e:
                    problems.append(f"{path}:{n}: not JSON ({e})")
    if not entries:
        problems.append(f"{path}: no benchmark in the log")
    for e in entries:
        name, result = e.get("name", "?"), e.get("result", "?")
        results = benchline.parse(e.get("stdout") or "")
        for r in results:
            unit = "" if r["unit"] == NA else " " + r["unit"]
            figure = show(r["figure"]) + unit
            if r["baseline"] == NA:
                baseline = NA
            else:
                baseline = show(r["baseline"]) + unit
                if r["baseline_name"] != NA:
                    baseline += f" ({r['baseline_name']})"
            target = r["target"]
            if target != NA and r["issue"] != NA:
                target += f" (#{r['issue']})"
            met = {"yes": "yes", "no": "MISSED"}.get(r["ok"], NA)
            rows.append([r["name"], figure, baseline, r["ratio"], target, met])
        if result in ("OK", "EXPECTEDFAIL") and results:
            continue
        if result == "SKIP":
            rows.append([name, "-", "", "", "", "SKIPPED"])
            continue
        if result in ("OK", "EXPECTEDFAIL"):
            rows.append([name, "-", "", "", "", "ran OK, no BENCH line"])
            warnings.append(f"benchmark {name} passed but printed no BENCH line "
                            "(tests/bench/benchline.py): its figures are only in its own output")
            continue
        what = f"{result} (exit status {e.get('returncode')})"
        rows.append([name, "-", "", "", "", "FAILED: " + what])
        problems.append(f"benchmark {name}: {what}")
    return rows, problems, warnings


HEAD = ["benchmark", "figure", "baseline (same run)", "ratio", "target (issue)", "met?"]


def print_table(rows, markdown):
    if markdown:
        print("| " + " | ".join(HEAD) + " |")
        print("|" + "|".join(" --- " for _ in HEAD) + "|")
        for r in rows:
            print("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        return
    widths = [max(len(str(r[i])) for r in rows + [HEAD]) for i in range(len(HEAD))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    print(line(HEAD))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def main():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], allow_abbrev=False,
        epilog="Other arguments go to `meson test` (e.g. a benchmark name, --suite bench, "
               "--no-rebuild).")
    p.add_argument("-C", dest="builddir", default=os.path.join(ROOT, "build"),
                   help="the meson build directory (default: build/ of this tree)")
    p.add_argument("--log", help="only read this JSON log; run nothing")
    p.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    args, extra = p.parse_known_args()

    status = 0
    if args.log:
        log = args.log
    else:
        logbase = "benchmarklog"
        for i, a in enumerate(extra):
            if a.startswith("--logbase="):
                logbase = a.split("=", 1)[1]
            elif a == "--logbase" and i + 1 < len(extra):
                logbase = extra[i + 1]
        argv = ["meson", "test", "-C", args.builddir, "--benchmark"]
        if not any(a.startswith("--logbase") for a in extra):
            argv += ["--logbase", logbase]
        argv += extra
        log = os.path.join(args.builddir, "meson-logs", logbase + ".json")
        before = os.stat(log).st_mtime_ns if os.path.exists(log) else None
        print("+ " + " ".join(argv), flush=True)
        rc = subprocess.call(argv)
        after = os.stat(log).st_mtime_ns if os.path.exists(log) else None
        if after is None or after == before:
            print(f"\nbench-table: meson test exited with status {rc} and wrote no new {log}"
                  " (a build or set-up error?)", file=sys.stderr)
            return rc or 1
        status = 1 if rc else 0

    try:
        rows, problems, warnings = rows_from_log(log)
    except OSError as e:
        print(f"bench-table: cannot read {log}: {e}", file=sys.stderr)
        return 1
    print(f"\n=== execd benchmarks: every figure ({log}) ===")
    if rows:
        print_table(rows, args.markdown)
    met = sum(1 for r in rows if r[5] == "yes")
    missed = [r[0] for r in rows if r[5] == "MISSED"]
    judged = sum(1 for r in rows if r[5] in ("yes", "MISSED"))
    print(f"\n{judged} targets: {met} met, {len(missed)} MISSED"
          + (f" ({', '.join(missed)})" if missed else "")
          + "; a missed target is reported only and does not fail the run.")
    for w in warnings:
        print(f"warning: {w}")
    if problems:
        print("benchmarks that did not run properly:\n  " + "\n  ".join(problems))
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
