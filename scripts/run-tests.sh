#!/usr/bin/env bash
# Run the whole test suite (unit, bus, http) against the real binaries on a private bus.
# Extra arguments go to `meson test` (e.g. --suite unit, or --benchmark).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${EXECD_BUILD_DIR:-$root/build}
"$root/scripts/bootstrap.sh"
cd "$build"
# Fresh records for the last checks: secrets-in-logs (tests/leaks/check_logs.py) and
# sanitizer-reports (tests/sanitizers/check_reports.py).
rm -rf meson-logs/secrets-check meson-logs/sanitizer-*
exec meson test --print-errorlogs "$@"
