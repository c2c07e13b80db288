#!/usr/bin/env bash
# Seeded-bug validation of the crash suite (crash-model.md, "Proving the harness works").
#
# Table-driven: scripts/mutants.table lists each mutant with its test target, gtest filter and
# description. The script builds every target of the table once without a mutant and once per
# mutant (-DPCACHE_MUTANT=<id>, one build directory), and requires:
#   * no mutant: every filter of the table and the controls (CrashControl.*) pass;
#   * every mutant: its filter fails with a verdict of the oracle in the log ("ORACLE VIOLATION: "
#     from a campaign, "DETECTED: " from CrashDetect). A non-zero exit without such a verdict
#     (an assert, a signal, a setup failure) is CRASHED, the time budget is TIMEOUT, a pass is
#     MISSED: each one fails this script (a harness bug, never a catch);
#   * control "eADR without flushes": the M1 build (data never flushed) passes under eadr.
# Usage: bash scripts/mutants.sh [M1 M5 ...]      (default: every line of the table)
# Environment: PCACHE_MUTANT_BUILD_DIR (default build/mutants), PCACHE_MUTANT_BUDGET_S (240).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${PCACHE_MUTANT_BUILD_DIR:-build/mutants}
budget_s=${PCACHE_MUTANT_BUDGET_S:-240}
table=scripts/mutants.table
log_dir="$dir/mutant-logs"
mkdir -p "$log_dir"
start_s=$SECONDS
verdict_re='ORACLE VIOLATION: |DETECTED: '

declare -A target filter desc
ids=()
trim() { sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' <<<"$1"; }
while IFS='|' read -r id tgt flt dsc; do
    case "$id" in \#* | '') continue ;; esac
    id=$(trim "$id")
    target[$id]=$(trim "$tgt")
    filter[$id]=$(trim "$flt")
    desc[$id]=$(trim "$dsc")
    ids+=("$id")
done <"$table"
if [ $# -gt 0 ]; then mutants=("$@"); else mutants=("${ids[@]}"); fi
for m in "${mutants[@]}"; do
    [ -n "${target[$m]:-}" ] || { echo "mutants: $m is not in $table" >&2; exit 2; }
done

build() {  # build <mutant or empty> <targets...>
    local m=$1
    shift
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS=-O1 \
        -DPCACHE_WERROR=ON -DPCACHE_BUILD_BENCH=OFF -DPCACHE_BUILD_TOOLS=OFF -DPCACHE_INSTALL=OFF \
        -DPCACHE_MUTANT="$m" >/dev/null
    cmake --build "$dir" --target "$@" >"$log_dir/build-${m:-none}.log" 2>&1 || {
        echo "mutants: build of '${m:-no mutant}' failed, see $log_dir/build-${m:-none}.log" >&2
        exit 1
    }
}

run() {  # run <target> <filter> <log>: exit status of the test binary (124 = budget exceeded)
    local rc=0
    local bin
    bin=$(find "$dir/tests" -type f -name "$1" -perm -u+x | head -n1)
    [ -n "$bin" ] || { echo "mutants: no test binary $1 under $dir/tests" >"$3"; return 2; }
    timeout "$budget_s" "$bin" --gtest_filter="$2" --gtest_brief=1 >"$3" 2>&1 || rc=$?
    return $rc
}

failed=0
printf '%-8s %-8s %5s  %s\n' mutant verdict secs "first verdict / description"

# No mutant: every (target, filter) of the table passes, and the controls.
declare -A filters_of
for m in "${ids[@]}"; do  # positive patterns only: a negative part (after '-') narrows one mutant's run
    filters_of[${target[$m]}]="${filters_of[${target[$m]}]:-}:${filter[$m]%%-*}"
done
build "" "${!filters_of[@]}"
for t in "${!filters_of[@]}"; do
    f=$(echo "${filters_of[$t]#:}" | tr ':' '\n' | sort -u | paste -sd: -)
    [ "$t" = crash_campaign_test ] && f="$f:CrashControl.*"
    s=$SECONDS
    if run "$t" "$f" "$log_dir/none-$t.log"; then
        printf '%-8s %-8s %5s  %s\n' none pass $((SECONDS - s)) "$t $f (required: zero failures)"
    else
        printf '%-8s %-8s %5s  %s\n' none FAIL $((SECONDS - s)) "see $log_dir/none-$t.log"
        failed=1
    fi
done

for m in "${mutants[@]}"; do
    build "$m" "${target[$m]}"
    s=$SECONDS
    rc=0
    run "${target[$m]}" "${filter[$m]}" "$log_dir/$m.log" || rc=$?
    first=$(grep -m1 -oE "($verdict_re).*" "$log_dir/$m.log" | sed -e 's/ | REPRODUCE.*//' | cut -c1-110 || true)
    if [ "$rc" -eq 0 ]; then
        verdict=MISSED note="the suite passed: ${desc[$m]}"
        failed=1
    elif [ "$rc" -eq 124 ]; then
        verdict=TIMEOUT note="no verdict within ${budget_s}s: ${desc[$m]}"
        failed=1
    elif [ "$rc" -ge 128 ] || [ -z "$first" ]; then
        verdict=CRASHED note="exit $rc without an oracle verdict, see $log_dir/$m.log"
        failed=1
    else
        verdict=caught note="$first"
    fi
    printf '%-8s %-8s %5s  %s\n' "$m" "$verdict" $((SECONDS - s)) "$note"
    if [ "$m" = M1 ]; then  # control: eADR needs no flushes, so M1 must pass there
        s=$SECONDS
        if run crash_campaign_test 'CrashSuite.Eadr' "$log_dir/M1-eadr.log"; then
            printf '%-8s %-8s %5s  %s\n' M1/eadr pass $((SECONDS - s)) "(control: eADR without flushes)"
        else
            printf '%-8s %-8s %5s  %s\n' M1/eadr FAIL $((SECONDS - s)) "false alarm, see $log_dir/M1-eadr.log"
            failed=1
        fi
    fi
done

echo "mutants: $((SECONDS - start_s)) s in total" >&2
exit $failed
