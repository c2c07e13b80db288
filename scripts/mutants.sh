#!/usr/bin/env bash
# Seeded-bug validation of the crash suite (crash-model.md, "Proving the harness works").
#
# Builds tests/crash/crash_campaign_test (the only target built per mutant) once without a
# mutant and once per PCACHE_MUTANT=M1..M16, reusing one build directory, and requires:
#   * no mutant: the suite (CrashSuite.*, CrashDetect.*) and the controls pass;
#   * every mutant: the suite fails within the budget (a hang counts as caught only through
#     the suite's own bounded child process, never through the timeout);
#   * control "eADR without flushes": the M1 build (data never flushed) passes under eadr.
# Usage: bash scripts/mutants.sh [M1 M5 ...]      (default: all sixteen)
# Environment: PCACHE_MUTANT_BUILD_DIR (default build/mutants), PCACHE_MUTANT_BUDGET_S (120).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${PCACHE_MUTANT_BUILD_DIR:-build/mutants}
budget_s=${PCACHE_MUTANT_BUDGET_S:-120}
suite='CrashSuite.*:CrashDetect.*'
if [ $# -gt 0 ]; then mutants=("$@"); else mutants=(M1 M2 M3 M4 M5 M6 M7 M8 M9 M10 M11 M12 M13 M14 M15 M16); fi
test_bin="$dir/tests/crash/crash_campaign_test"
log_dir="$dir/mutant-logs"
mkdir -p "$log_dir"
start_s=$SECONDS

build() {  # build <mutant or empty>
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS=-O1 \
        -DPCACHE_WERROR=ON -DPCACHE_BUILD_BENCH=OFF -DPCACHE_BUILD_TOOLS=OFF -DPCACHE_INSTALL=OFF \
        -DPCACHE_MUTANT="$1" >/dev/null
    cmake --build "$dir" --target crash_campaign_test >"$log_dir/build-${1:-none}.log" 2>&1 || {
        echo "mutants: build of '${1:-no mutant}' failed, see $log_dir/build-${1:-none}.log" >&2
        exit 1
    }
}

run() {  # run <filter> <log>: exit status of the suite (124 = budget exceeded)
    local rc=0
    timeout "$budget_s" "$test_bin" --gtest_filter="$1" --gtest_brief=1 >"$2" 2>&1 || rc=$?
    return $rc
}

failed=0
printf '%-6s %-8s %5s  %s\n' mutant verdict secs "first failure"

build ""
t=$SECONDS
if run "$suite:CrashControl.*" "$log_dir/none.log"; then
    printf '%-6s %-8s %5s  %s\n' none pass $((SECONDS - t)) "(required: zero failures)"
else
    printf '%-6s %-8s %5s  %s\n' none FAIL $((SECONDS - t)) "see $log_dir/none.log"
    failed=1
fi

for m in "${mutants[@]}"; do
    build "$m"
    t=$SECONDS
    rc=0
    run "$suite" "$log_dir/$m.log" || rc=$?
    first=$(grep -m1 -E ' \| REPRODUCE|ACCEPTED|CRASHED|HUNG|wrong error' "$log_dir/$m.log" | sed -e 's/ | REPRODUCE.*//' -e 's/^ *//' | cut -c1-120 || true)
    if [ "$rc" -eq 0 ]; then
        printf '%-6s %-8s %5s  %s\n' "$m" MISSED $((SECONDS - t)) "the suite passed: harness bug"
        failed=1
    elif [ "$rc" -eq 124 ]; then
        printf '%-6s %-8s %5s  %s\n' "$m" TIMEOUT $((SECONDS - t)) "not caught within ${budget_s}s"
        failed=1
    else
        printf '%-6s %-8s %5s  %s\n' "$m" caught $((SECONDS - t)) "$first"
    fi
    if [ "$m" = M1 ]; then  # control: eADR needs no flushes, so M1 must pass there
        t=$SECONDS
        if run 'CrashSuite.Eadr' "$log_dir/M1-eadr.log"; then
            printf '%-6s %-8s %5s  %s\n' M1/eadr pass $((SECONDS - t)) "(control: eADR without flushes)"
        else
            printf '%-6s %-8s %5s  %s\n' M1/eadr FAIL $((SECONDS - t)) "false alarm, see $log_dir/M1-eadr.log"
            failed=1
        fi
    fi
done

echo "mutants: $((SECONDS - start_s)) s in total" >&2
exit $failed
