"""The machine-readable result line every execd benchmark prints, one per figure.

    BENCH name=<bench>.<figure> figure=<number> unit=<unit> baseline=<number|n/a>
          baseline_name=<what|n/a> ratio=<figure/baseline|n/a> target=<text|n/a>
          ok=<yes|no|n/a> issue=<number|n/a>

(one line; the fields always in this order.)  Values containing spaces or quotes are
quoted as a POSIX shell would (shlex), so `shlex.split()` reads a line back; parse() does
that.  The baseline, when there is one, is a figure measured in the same run and in the
figure's unit; a figure without a natural baseline says baseline=n/a (nothing is
invented).  ratio is figure / baseline.  target is the target of the issue named by
issue=, as text ("<= 2.0x" compares the ratio, "<= 4 MiB" the figure itself), and ok
says whether this run met it (n/a when there is no target, or no baseline to judge a
ratio target by).  A missed target never fails a benchmark; only functional errors do.

The benchmarks written in Python (tests/bench/bench.py) use line(); a C benchmark would
print the same with printf, e.g.

    printf("BENCH name=x.y figure=%.6g unit=ms baseline=n/a baseline_name=n/a "
           "ratio=n/a target=n/a ok=n/a issue=n/a\\n", v);

scripts/bench-table.py collects these lines from meson's benchmark log into one table.
"""
import math
import shlex

PREFIX = "BENCH"
FIELDS = ("name", "figure", "unit", "baseline", "baseline_name", "ratio", "target", "ok",
          "issue")
NA = "n/a"


def number(x):
    """A number as short, exact-enough text (6 significant digits, no exponent for big ones)."""
    if x is None:
        return NA
    x = float(x)
    if not math.isfinite(x):
        return NA
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    s = f"{x:.6g}"
    if "e+" in s:
        s = f"{x:.1f}"
    return s


def _quote(v):
    v = str(v)
    return v if v and all(c.isalnum() or c in "._-+/%<>=:()*,~^@" for c in v) else \
        shlex.quote(v)


def line(name, figure, unit, baseline=None, baseline_name=None, target=None, ok=None,
         issue=None):
    """The BENCH line for one figure (figure and baseline are numbers, or None)."""
    ratio = None
    if figure is not None and baseline is not None and float(baseline) != 0:
        ratio = float(figure) / float(baseline)
    if target is None:
        ok = None
    values = {
        "name": name,
        "figure": number(figure),
        "unit": unit or NA,
        "baseline": number(baseline),
        "baseline_name": (baseline_name or NA) if baseline is not None else NA,
        "ratio": NA if ratio is None else f"{ratio:.3g}",
        "target": target or NA,
        "ok": NA if ok is None else ("yes" if ok else "no"),
        "issue": NA if issue is None else str(issue),
    }
    return " ".join([PREFIX] + [f"{k}={_quote(values[k])}" for k in FIELDS])


def parse(text):
    """Every BENCH line in text, as dicts of strings (the fields above), in order."""
    out = []
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw.startswith(PREFIX + " "):
            continue
        try:
            words = shlex.split(raw)[1:]
        except ValueError:
            continue
        d = {}
        for w in words:
            k, sep, v = w.partition("=")
            if sep:
                d[k] = v
        if "name" in d and "figure" in d:
            for k in FIELDS:
                d.setdefault(k, NA)
            out.append(d)
    return out
