#!/usr/bin/python3
"""Print one closing line, 'N passed, N failed', counting the individual cases of every
suite in meson's test logs (TAP lines of the C unit tests, pytest's own summary), summed
over every testlog.json given."""
import json
import re
import sys

passed = failed = 0
for line in (line for path in sys.argv[1:] for line in open(path)):
    t = json.loads(line)
    out = t.get("stdout") or ""
    summary = re.findall(r"^=*\s*(?:(\d+) failed, )?(\d+) passed", out, re.M)
    if summary:
        f, p = summary[-1]
        passed += int(p)
        failed += int(f or 0)
    elif t.get("protocol") == "tap" or re.search(r"^(not )?ok \d+", out, re.M):
        passed += len(re.findall(r"^ok \d+", out, re.M))
        failed += len(re.findall(r"^not ok \d+", out, re.M))
    elif t["result"] == "OK":
        passed += 1
    elif t["result"] == "SKIP":
        pass
    else:
        failed += 1
    if t["result"] not in ("OK", "SKIP", "EXPECTEDFAIL") and not summary:
        failed = max(failed, 1)
print(f"{passed} passed, {failed} failed")
