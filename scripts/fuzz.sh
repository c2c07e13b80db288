#!/usr/bin/env bash
# Builds the `fuzz` preset (clang 14, libFuzzer, ASan, UBSan) and runs every fuzz target for a
# fixed time, each starting from its committed corpus (fuzz/corpus/<target>, never modified:
# new inputs go to a scratch corpus under the build directory).
#
#   scripts/fuzz.sh [-t SECONDS] [-B BUILD_DIR] [-k] [TARGET...]
#     -t  seconds per target (default $PCACHE_FUZZ_SECONDS or 20; the issue's full run is 60)
#     -B  build directory (default build/fuzz, the preset's)
#     -k  keep going after a finding (default: stop at the first target that finds one)
#     TARGET  superblock meta kset replay replay_ops (default: all)
#
# Exit status: 0 no finding; 1 a target found a crash, leak, timeout (-timeout=5 s per input)
# or memory blow-up (-rss_limit_mb=2048); 2 usage or build error. Findings are written to
# BUILD_DIR/fuzz-out/artifacts/; to keep one as a regression input copy it into
# fuzz/corpus/<target>/crash-<what> and fix the bug (docs/fuzzing.md).
set -euo pipefail

seconds="${PCACHE_FUZZ_SECONDS:-20}"
build_dir="build/fuzz"
keep_going=0
all_targets=(superblock meta kset replay replay_ops)
while getopts "t:B:kh" opt; do
  case "$opt" in
    t) seconds="$OPTARG" ;;
    B) build_dir="$OPTARG" ;;
    k) keep_going=1 ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cmake --preset fuzz -B "$build_dir" >/dev/null || exit 2
cmake --build "$build_dir" -j "${PCACHE_FUZZ_BUILD_JOBS:-2}" \
  --target "${targets[@]/#/fuzz_}" || exit 2

out="$build_dir/fuzz-out"
mkdir -p "$out/artifacts"
status=0
summary=()
for t in "${targets[@]}"; do
  bin="$build_dir/fuzz/fuzz_$t"
  seeds="fuzz/corpus/$t"
  scratch="$out/corpus/$t"
  log="$out/$t.log"
  mkdir -p "$scratch"
  echo "== fuzz_$t for ${seconds}s (log: $log)"
  rc=0
  "$bin" "$scratch" "$seeds" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
    -artifact_prefix="$out/artifacts/$t-" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(awk -v r="${runs:-0}" -v s="$seconds" 'BEGIN { printf "%d", r / s }')
  summary+=("$(printf '%-11s %10s runs  %8s exec/s  rc=%s' "$t" "${runs:-?}" "$rate" "$rc")")
  if [ "$rc" -ne 0 ]; then
    status=1
    grep -E "ERROR|fuzz check failed|SUMMARY|Test unit written" "$log" | head -20 >&2 || true
    [ "$keep_going" -eq 1 ] || break
  fi
done
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$status"
