#!/usr/bin/env bash
# fio through both front ends of `pcache serve`, each against its ceiling in the same run:
#   FUSE: pcache serve --fuse + loop (direct I/O)  vs  pcache serve --memory (same FUSE code)
#   NBD:  pcache nbdkit plugin (fio's nbd engine)  vs  nbdkit's memory plugin
# Workloads: 4 KiB random writes at queue depth 1 and 32, 4 KiB random reads at depth 32,
# SECONDS_PER_JOB each (default 4). Prints a Markdown table of IOPS and ratios (also written to
# REPORT_FILE if given). As a ctest this is a functional test: it fails when a front end fails to
# start, fio reports an I/O error, or a job completes no I/O at all. No speed is asserted (speed
# belongs in benchmarks: a loaded machine would make any floor flaky); the ratios are reported.
#
#   usage: serve_fio.sh PCACHE_BINARY [REPORT_FILE]
# Exit 0 pass, 1 fail, 77 skipped.
set -euo pipefail
PCACHE=$(realpath "${1:?usage: serve_fio.sh PCACHE_BINARY [REPORT_FILE]}")
REPORT=${2:-}
SECS=${SECONDS_PER_JOB:-4}
source "$(dirname "$0")/lib.sh"
require_root_fuse_loop fio nbdkit python3
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"
make_workdir
truncate -s 1G "$WORK/pmem"
truncate -s 256M "$WORK/backing"

JOBS=("randwrite 1" "randwrite 32" "randread 32")
declare -A IOPS

# run_fio <key> <rw> <depth> <fio target options...>: stores the IOPS in IOPS[key].
run_fio() {
    local key=$1 rw=$2 qd=$3
    shift 3
    fio --name=j --rw="$rw" --bs=4k --iodepth="$qd" --runtime="$SECS" --time_based \
        --size=192M --randrepeat=1 --norandommap --output-format=json "$@" > "$WORK/fio.json" \
        2>"$WORK/fio.err" || { cat "$WORK/fio.err" >&2; die "fio $key failed"; }
    # (fio's nbd engine prints a line before the JSON)
    IOPS[$key]=$(python3 -c 'import json,sys; s=open(sys.argv[1]).read(); j=json.loads(s[s.index("{"):])["jobs"][0]
print(int(j["read"]["iops"] + j["write"]["iops"]))' "$WORK/fio.json")
    log "$key: ${IOPS[$key]} IOPS"
}

# FUSE: serve, attach a direct-I/O loop device, run the jobs on it, stop cleanly.
fuse_round() {
    local tag=$1 pid
    shift
    "$PCACHE" serve --fuse "$WORK/mnt" "$@" 2>>"$WORK/server.log" &
    pid=$!
    on_exit "stop_pid KILL $pid"
    on_exit "force_umount '$WORK/mnt'"
    wait_for 20 test -s "$WORK/mnt/pcache" || { cat "$WORK/server.log" >&2; die "FUSE file did not appear"; }
    attach_loop "$WORK/mnt/pcache"
    local j
    for j in "${JOBS[@]}"; do
        set -- $j
        run_fio "fuse $tag $1 $2" "$1" "$2" --ioengine=libaio --direct=1 --filename="$LOOP"
    done
    detach_loop
    stop_pid TERM "$pid"
    force_umount "$WORK/mnt"
}

# NBD: start nbdkit (pcache plugin or memory), run the jobs with fio's nbd engine, stop it.
nbd_round() {
    local tag=$1 pid
    shift
    rm -f "$WORK/sock"
    "$@" 2>>"$WORK/server.log" &
    pid=$!
    on_exit "stop_pid KILL $pid"
    wait_for 20 test -S "$WORK/sock" || { cat "$WORK/server.log" >&2; die "nbdkit did not start"; }
    local j
    for j in "${JOBS[@]}"; do
        set -- $j
        run_fio "nbd $tag $1 $2" "$1" "$2" --ioengine=nbd --uri="nbd+unix:///?socket=$WORK/sock"
    done
    stop_pid TERM "$pid"
}

fuse_round ceiling --memory 256M
fuse_round pcache --pmem "$WORK/pmem" --backing "$WORK/backing" --format
nbd_round ceiling nbdkit --foreground --unix "$WORK/sock" memory 256M
nbd_round pcache "$PCACHE" serve --pmem "$WORK/pmem" --backing "$WORK/backing" --nbd "$WORK/sock"

table="| front end | workload | ceiling IOPS | pcache IOPS | ratio |
|---|---|---|---|---|"
idle=""
for fe in fuse nbd; do
    for j in "${JOBS[@]}"; do
        set -- $j
        c=${IOPS["$fe ceiling $1 $2"]} p=${IOPS["$fe pcache $1 $2"]}
        r=$(python3 -c "print(f'{$p / max($c, 1):.2f}')")
        table+=$'\n'"| $fe | 4 KiB $1, QD $2 | $c | $p | $r |"
        [ "$p" -gt 0 ] && [ "$c" -gt 0 ] || idle+=" $fe/$1/$2"
    done
done
echo "$table"
[ -n "$REPORT" ] && echo "$table" > "$REPORT"
[ -z "$idle" ] || die "no I/O completed for:$idle"
log "PASS"
