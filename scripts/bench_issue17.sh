#!/usr/bin/env bash
# Issue 17 figures (docs/PERFORMANCE.md "Issue 17"): one `pcache bench` run of the i17/*
# benchmarks on mem and shm-cacheline, REPS repetitions, then a table of min / median / max of
# each figure beside its target, with the load average before and after. No assertion: a table.
#   bash scripts/bench_issue17.sh [BUILD_DIR (build/release)] [REPS (3)]
set -euo pipefail
build=${1:-build/release}
reps=${2:-3}
out=${OUT:-/tmp/pcache-i17-$$.json}
cmake --build "$build" --target pcache pcache_bench >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)  cpus: $(nproc)"
PCACHE_BENCH_BINARY="$build/bench/pcache_bench" "$build/tools/pcache" bench --filter 'i17/' \
    --json "$out" -- --benchmark_repetitions="$reps" >/dev/null
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)  json: $out"
python3 - "$out" <<'EOF'
import json, statistics, sys, re
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("run_type") == "iteration"]
by = {}
for b in runs:
    by.setdefault(b["run_name"], []).append(b)
def mmm(vals):
    v = sorted(vals)
    return f"{v[0]:.3g} / {statistics.median(v):.3g} / {v[-1]:.3g}"
def row(what, vals, target):
    print(f"| {what} | {mmm(vals)} | {target} |")
print("| figure | min / median / max | target |")
print("|---|---|---|")
for k in ("one_stream", "three_streams"):
    row(f"CRC32C 4 KiB, {k}, CPU ns", [b["cpu_time"] for b in by.get(f"i17/crc32c_4k/{k}", [])], "")
for dev in ("mem", "shm-cacheline"):
    g = lambda name: by.get(name.replace("DEV", dev), [])
    row(f"{dev}: 4 KiB write hit / NT copy+fence (CPU)", [b["ratio_to_bound"] for b in g("i17/write_hit/DEV/4096")], ">= 0.80")
    row(f"{dev}: 4 KiB write hit, data_crc / NT copy+fence", [b["ratio_to_bound"] for b in g("i17/write_hit_crc/DEV/4096")], ">= 0.60")
    one = g("i17/write_hit_mt/DEV/4096/real_time/threads:1")
    cone = g("i17/copy_mt/DEV/4096/real_time/threads:1")
    for n in (1, 2, 4, 8):
        mt = g(f"i17/write_hit_mt/DEV/4096/real_time/threads:{n}")
        cp = g(f"i17/copy_mt/DEV/4096/real_time/threads:{n}")
        if mt and one:
            row(f"{dev}: {n} threads, aggregate ops/s (wall)", [b["items_per_second"] for b in mt], "")
            row(f"{dev}: {n} threads / 1 thread (rep by rep)", [m["items_per_second"] / o["items_per_second"] for m, o in zip(mt, one)], ">= 1.7 (2 thr); 4, 8 >= 2-thr")
        if cp and cone:
            row(f"{dev}: bound: copy+fence alone, {n} threads / 1 thread (rep by rep)", [c["items_per_second"] / o["items_per_second"] for c, o in zip(cp, cone)], "")
        if cp and mt:
            row(f"{dev}: {n} threads, write hits / copy+fence alone on {n} threads (wall)", [m["items_per_second"] / c["items_per_second"] for m, c in zip(mt, cp)], "")
    row(f"{dev}: 4 KiB read hit / memcpy from the mapping", [b["ratio_to_bound"] for b in g("i17/read_hit/DEV/4096")], ">= 0.90")
    # Floors (PERFORMANCE.md "Fourth session", Floors): the engine's ns over its bound with 16 keys in cache,
    # beside the ns a target allows over the cold bound of the target's own benchmark.
    for what, target, cold in (("write_hit", 0.80, "i17/write_hit/DEV/4096"), ("read_hit", 0.90, "i17/read_hit/DEV/4096")):
        f = g(f"i17/floor/{what}/DEV/4096")
        if f:
            row(f"{dev}: floor: {what}, 16 keys in cache, engine ns - bound ns (CPU)", [b["cpu_time"] - b["bound_ns"] for b in f], "")
            row(f"{dev}: floor: {what}, bound ns (copy alone, same run)", [b["bound_ns"] for b in f], "")
            row(f"{dev}: {what}: ns over the cold bound that {target} of it allows", [4096 / (b["bound_MBps"] * 1e6) * 1e9 * (1 / target - 1) for b in g(cold)], "")
    row(f"{dev}: writeback sequential 4 KiB keys / backing bound", [b["ratio_to_bound"] for b in g("i17/writeback_seq/DEV")], ">= 0.85")
    row(f"{dev}: writeback random 4 KiB keys / backing bound", [b["ratio_to_bound"] for b in g("i17/writeback_rand/DEV")], ">= 0.85")
    for k in ("seq", "rand"):  # the old bound: the same requests from one hot buffer (PERFORMANCE.md "seqwb")
        row(f"{dev}: writeback {k} / the old hot-buffer bound", [b["ratio_hot_buffer"] for b in g(f"i17/writeback_{k}/DEV")], "")
    u = g("i17/writeback_rand_uring_qd32/DEV/manual_time")
    row(f"{dev}: writeback random 4 KiB keys, io_uring qd 32 / the faster write_batch bound (wall)", [b["ratio_to_bound"] for b in u], ">= 0.85")
    row(f"{dev}: the same / one write_batch per flush (wall)", [b["ratio_window"] for b in u], "")
    row(f"{dev}: the same / write_batches of 32 (wall)", [b["ratio_b32"] for b in u], "")
    row(f"{dev}: the same / one write_batch per flush (process CPU)", [b["ratio_cpu"] for b in u], "")
    s = g("i17/sustained/DEV/iterations:1")
    for k, t in (("ops_per_s", ""), ("ratio_to_bound", ""), ("p50_ns", ""), ("p99_ns", ""), ("p999_ns", ""), ("p9999_ns", "<= 1e6 ns"), ("max_ns", "")):
        row(f"{dev}: sustained {k}", [b[k] for b in s], t)
    r = [b for name, bs in by.items() if re.match(f"i17/replay_fresh/{dev}/", name) for b in bs]
    row(f"{dev}: replay 1 M keys, fresh process, keys/s (median of 5 per rep)", [b["keys_per_s_median"] for b in r], ">= 3e6")
EOF
