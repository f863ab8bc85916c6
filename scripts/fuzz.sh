#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan into $EXECD_FUZZ_BUILD_DIR
# (default: build-fuzz/), then run each for $FUZZ_SECONDS (default 30) over a copy of its
# committed seed corpus. One line per target; exits non-zero on any crash, leak or timeout.
#
#   scripts/fuzz.sh                 every target
#   scripts/fuzz.sh glob multipart  only these
#   FUZZ_SECONDS=300 scripts/fuzz.sh
#
# A failing input is kept as <build>/fuzz-out/<target>/crash-* (or leak-*, timeout-*); replay it
# with <build>/tests/fuzz/fuzz-<target> FILE.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${EXECD_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-30}
all_targets=(route-json env-request multipart range glob path lines jupyter)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

# The build's own packages (as scripts/bootstrap.sh) plus clang and its runtime (libFuzzer).
packages=(
        meson ninja-build pkg-config gettext
        libsystemd-dev libglib2.0-dev libsoup-3.0-dev libjson-glib-dev libzmq3-dev
        clang libclang-rt-14-dev
)
"$root/scripts/install-packages.sh" fuzz "${packages[@]}" || { echo "fuzz: cannot install ${packages[*]}" >&2; exit 1; }

set -e
if [ ! -f "$build/build.ninja" ]; then
        CC=clang meson setup "$build" "$root" -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false \
                --buildtype=debugoptimized >/dev/null
fi
ninja_targets=()
for t in "${targets[@]}"; do
        [ -d "$root/tests/fuzz/corpus/$t" ] || { echo "fuzz: unknown target $t" >&2; exit 2; }
        ninja_targets+=("tests/fuzz/fuzz-$t")
done
ninja -C "$build" "${ninja_targets[@]}" >/dev/null
set +e

export G_SLICE=always-malloc
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
out="$build/fuzz-out"
failed=0
for t in "${targets[@]}"; do
        work="$out/$t"
        rm -rf "$work"
        mkdir -p "$work/corpus"
        # A copy: what a run finds does not grow the committed corpus.
        cp "$root/tests/fuzz/corpus/$t/"* "$work/corpus/"
        log="$work/fuzz.log"
        # A target may name leaks of system libraries it cannot avoid (tests/fuzz/lsan-<target>.supp).
        supp="$root/tests/fuzz/lsan-$t.supp"
        lsan=${LSAN_OPTIONS:-}
        asan=$ASAN_OPTIONS
        if [ -f "$supp" ]; then
                lsan="${lsan:+$lsan:}suppressions=$supp:print_suppressions=0"
                # Suppressions match functions deep in system libraries built without frame
                # pointers: full (slower) malloc stacks.
                asan="$asan:fast_unwind_on_malloc=0"
        fi
        (cd "$work" && ASAN_OPTIONS="$asan" LSAN_OPTIONS="$lsan" "$build/tests/fuzz/fuzz-$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
                -detect_leaks=1 -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" >"$log" 2>&1)
        status=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
        ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
        if [ $status -eq 0 ]; then
                echo "fuzz: ok   $t: ${execs:-?} runs, ${rate:-?} exec/s, cov ${cov:-?}, ft ${ft:-?} (${seconds}s)"
        else
                failed=1
                artifact=$(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null | head -1)
                echo "fuzz: FAIL $t (exit $status): ${artifact:-no artifact}; log $log"
                grep -m1 -E 'ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/fuzz:        /'
        fi
done
exit $failed
