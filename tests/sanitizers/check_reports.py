# SPDX-License-Identifier: Apache-2.0
"""sanitizer-reports: no AddressSanitizer, LeakSanitizer or UBSan report from any binary of
the run.

In a -Db_sanitize=… build tests/meson.build points every sanitizer's log_path at
<build>/meson-logs/sanitizer-{asan,ubsan}, so each process that finds something (a daemon or
bridge leaking at exit, a unit test reading out of bounds, a signed overflow) leaves a file
<prefix>.<pid> there instead of only a line on a stderr nobody reads. This test runs after all
the others (priority -1001) and fails if there is any such file, printing each report's
first lines; scripts/run-tests.sh clears them before a run.
"""
import glob
import os
import sys

SKIP = 77


def main():
    logs = os.path.join(os.environ["EXECD_BUILD_ROOT"], "meson-logs")
    if not os.environ.get("ASAN_OPTIONS") and not os.environ.get("UBSAN_OPTIONS"):
        print("not a sanitizer build: nothing to check")
        return SKIP
    reports = sorted(glob.glob(os.path.join(logs, "sanitizer-*.*")))
    for path in reports:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
        print(f"==== {path} ({len(lines)} lines)")
        print("\n".join(lines[:60]))
    if reports:
        print(f"{len(reports)} sanitizer report(s)")
        return 1
    print("no sanitizer reports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
