#!/usr/bin/env bash
# End-to-end over a network backing device (issue 16 item 5): a real server on loopback only,
# a cache formatted over it, a file system written through `pcache serve`, a SIGKILL, a restart,
# then everything flushed back and the backing device read directly and compared.
#
#   nbd         nbdkit file plugin on a Unix socket
#   nbd-errors  the same behind nbdkit's error filter: every write fails with EIO while the
#               filter is on. It is on in bursts (0.5 s on, 0.5 s off) during the workload and
#               the final pcache flush, and all the time in between (so the flush has dirty data
#               to write back): background writeback and pcache flush retry with backoff, and
#               nothing is lost. Servers are stopped by SIGKILL only (a clean stop while
#               writeback is failing is an error by design)
#   rbd         a single-node Ceph cluster on 127.0.0.1 (ceph_cluster.sh), an RBD image
#
# Steps: serve --format --fuse over the backing, losetup, mkfs.ext4, mount, workload (files
# fsync'ed and not); SIGKILL the server; restart (replay), every fsync'ed file intact, e2fsck
# clean; clean stop; the whole device read through the cache (md5); pcache flush until clean;
# the backing read directly (nbdcopy / rbd export) must have that md5, pass e2fsck and hold
# every fsync'ed file.
#
#   usage: backing_roundtrip.sh nbd|nbd-errors|rbd PCACHE_BINARY
# Exit 0 pass, 1 fail, 77 skipped (only: not root, or the kernel lacks FUSE or loop devices).
set -euo pipefail
MODE=${1:?usage: backing_roundtrip.sh nbd|nbd-errors|rbd PCACHE_BINARY}
PCACHE=$(realpath "${2:?usage: backing_roundtrip.sh MODE PCACHE_BINARY}")
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root (losetup, mount)"
[ -c /dev/fuse ] || skip "/dev/fuse is missing (the kernel has no FUSE)"
[ -c /dev/loop-control ] || skip "/dev/loop-control is missing (the kernel has no loop devices)"
need=(losetup mount umount mkfs.ext4 e2fsck fusermount3 md5sum)
[ "$MODE" = nbd-errors ] && need+=(fio)
case "$MODE" in
nbd | nbd-errors) need+=(nbdkit nbdcopy) ;;
rbd) need+=(ceph-mon ceph-osd ceph rbd monmaptool) ;;
*) die "unknown mode '$MODE' (expected nbd, nbd-errors or rbd)" ;;
esac
for p in "${need[@]}"; do
    command -v "$p" >/dev/null || die "program '$p' is missing (bash scripts/setup.sh installs it)"
done
make_workdir
truncate -s 1G "$WORK/pmem"
DEV=$WORK/mnt/pcache
BACKING_BYTES=$((128 << 20))

case "$MODE" in
nbd | nbd-errors)
    truncate -s "$BACKING_BYTES" "$WORK/backing.img"
    filter=()
    if [ "$MODE" = nbd-errors ]; then
        # Errors only while $WORK/errors-on exists (nbdkit 1.32's error filter cannot fail
        # flushes).
        filter=(--filter=error error-pwrite=EIO error-pwrite-rate=100%
                error-pwrite-file="$WORK/errors-on")
    fi
    nbdkit --foreground --exit-with-parent --unix "$WORK/nbd.sock" "${filter[@]:0:1}" \
        file "$WORK/backing.img" "${filter[@]:1}" 2>>"$WORK/nbdkit.log" &
    NBDKIT=$!
    on_exit "stop_pid KILL $NBDKIT"
    wait_for 20 test -S "$WORK/nbd.sock" || { cat "$WORK/nbdkit.log" >&2; die "nbdkit did not start"; }
    BACKING="nbd+unix:///?socket=$WORK/nbd.sock"
    read_backing() { nbdcopy "$BACKING" "$1"; }
    ;;
rbd)
    CEPH_DIR=$WORK/ceph
    bash "$HERE/ceph_cluster.sh" start "$CEPH_DIR" || die "the Ceph cluster did not start"
    on_exit "bash '$HERE/ceph_cluster.sh' stop '$CEPH_DIR'"
    export CEPH_CONF=$CEPH_DIR/ceph.conf
    rbd create rbd/pcache-e2e --size $((BACKING_BYTES >> 20))M || die "rbd create failed"
    BACKING="rbd:rbd/pcache-e2e:conf=$CEPH_CONF"
    read_backing() { rbd export --no-progress rbd/pcache-e2e "$1" >/dev/null; }
    ;;
esac
log "$MODE: backing $BACKING"
# Bursts of errors: $WORK/errors-on exists half of the time, until errors_off.
TOGGLER=
errors_on() {
    [ "$MODE" = nbd-errors ] || return 0
    (while :; do touch "$WORK/errors-on"; sleep 0.5; rm -f "$WORK/errors-on"; sleep 0.5; done) &
    TOGGLER=$!
    on_exit "stop_pid KILL $TOGGLER"
}
errors_always() {
    [ "$MODE" = nbd-errors ] || return 0
    errors_off
    touch "$WORK/errors-on"
}
errors_off() {
    [ -n "$TOGGLER" ] || return 0
    stop_pid KILL "$TOGGLER"
    TOGGLER=
    rm -f "$WORK/errors-on"
}
# A clean stop (SIGTERM, exit 0), or with bursts of errors a SIGKILL.
stop_front() {
    if [ "$MODE" = nbd-errors ]; then
        kill -KILL "$SERVER"
        wait "$SERVER" 2>/dev/null || true
        teardown_front
    else
        stop_front_clean
    fi
}

SERVER=
start_front() {
    "$PCACHE" serve --pmem "${PMEM:-$WORK/pmem}" --backing "$BACKING" --fuse "$WORK/mnt" "$@" \
        2>>"$WORK/server.log" &
    SERVER=$!
    on_exit "stop_pid KILL $SERVER"
    on_exit "force_umount '$WORK/mnt'"
    wait_for 30 test -s "$DEV" || { cat "$WORK/server.log" >&2; die "$DEV did not appear"; }
    attach_loop "$DEV"
}
teardown_front() {
    force_umount "$WORK/fs"
    detach_loop
    force_umount "$WORK/mnt"
}
stop_front_clean() {
    local rc=0
    force_umount "$WORK/fs"
    detach_loop
    kill -TERM "$SERVER" 2>/dev/null || die "the server died before its clean shutdown"
    wait "$SERVER" || rc=$?
    [ "$rc" -eq 0 ] || { tail -20 "$WORK/server.log" >&2; die "server exited with $rc after SIGTERM"; }
    force_umount "$WORK/mnt"
}
mount_fs() {
    mount "$1" "$WORK/fs" || die "mount $1 failed"
    on_exit "force_umount '$WORK/fs'"
}

log "$MODE: format over the backing, mkfs.ext4, mount"
start_front --format --segment-size 4M
mkfs.ext4 -q -F -E nodiscard "$LOOP" || die "mkfs.ext4 failed"
mount_fs "$LOOP"

log "$MODE: workload, then SIGKILL of the server mid-workload"
errors_on
workload &
WL=$!
on_exit "stop_pid KILL $WL"
wait_for 90 bash -c "[ \$(wc -l < '$WORK/synced' 2>/dev/null || echo 0) -ge 40 ]" ||
    { tail -20 "$WORK/server.log" >&2; die "workload made no progress"; }
kill -KILL "$SERVER"
wait "$SERVER" 2>/dev/null || true
stop_pid KILL "$WL"
log "$MODE: server killed after $(wc -l < "$WORK/synced") fsync'ed files"
teardown_front

log "$MODE: restart (replay), verify, write, e2fsck"
errors_always
start_front --segment-size 4M
mount_fs "$LOOP"
verify_synced
head -c 4194304 /dev/urandom > "$WORK/fs/data/after_restart" && sync "$WORK/fs/data/after_restart" ||
    die "writing after the restart failed"
md5sum < "$WORK/fs/data/after_restart" | sed 's/ .*//; s/^/after_restart /' >> "$WORK/synced"
force_umount "$WORK/fs"
fsck_clean "$LOOP"
stop_front

log "$MODE: the whole device through the cache"
start_front --segment-size 4M
WANT=$(md5sum < "$LOOP" | cut -d' ' -f1)
stop_front

log "$MODE: pcache flush until clean"
errors_on
"$PCACHE" flush --pmem "$WORK/pmem" --backing "$BACKING" --segment-size 4M \
    2>"$WORK/flush.log" >"$WORK/flush.out" || { cat "$WORK/flush.log" >&2; die "pcache flush failed"; }
errors_off
log "$(tail -1 "$WORK/flush.log")"
"$PCACHE" status --pmem "$WORK/pmem" --backing "$BACKING" --segment-size 4M --format json \
    > "$WORK/status.json" || die "pcache status failed"
grep -q '"dirty_bytes": 0' "$WORK/status.json" || { cat "$WORK/status.json" >&2; die "not clean after flush"; }
if [ "$MODE" = nbd-errors ]; then
    n=$(grep -c "injecting" "$WORK/nbdkit.log") || die "no error was injected"
    wrote=$(sed -n 's/.*wrote back \([0-9]*\) B.*/\1/p' "$WORK/flush.log")
    [ "${wrote:-0}" -gt 0 ] || die "pcache flush had nothing to write back: its retries went untested"
    log "$n transient errors injected; pcache flush wrote back $wrote B through them"
fi

log "$MODE: read the backing device directly and compare"
read_backing "$WORK/direct.img"
GOT=$(md5sum < "$WORK/direct.img" | cut -d' ' -f1)
[ "$GOT" = "$WANT" ] || die "backing md5 $GOT, expected $WANT (the device as the cache served it)"
log "backing md5 $GOT matches the device read through the cache"
e2fsck -fn "$WORK/direct.img" > "$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log" >&2; die "e2fsck of the backing copy failed"; }
attach_loop "$WORK/direct.img"
mount -o ro "$LOOP" "$WORK/fs" || die "mounting the backing copy failed"
on_exit "force_umount '$WORK/fs'"
verify_synced
force_umount "$WORK/fs"
if [ "$MODE" = nbd-errors ]; then
    # fio with verification straight on the device, through a cache half the size of what fio
    # writes, while the backing fails every write half of the time: writes must block (never
    # fail) until writeback gets through, every block must read back as written, writeback must
    # have failed and recovered (the serve log says both), and after recovery the backing device
    # must hold exactly what the cache served.
    log "$MODE: fio (verified) through a 64 MiB cache while the backing fails in bursts"
    PMEM=$WORK/pmem-small
    truncate -s 64M "$PMEM"
    : > "$WORK/server.log"
    start_front --format --force-backing --segment-size 4M
    errors_on
    fio --name=eio --filename="$LOOP" --rw=randwrite --bs=64k --direct=1 --ioengine=libaio \
        --iodepth=16 --size="$BACKING_BYTES" --verify=crc32c --verify_fatal=1 --randrepeat=1 \
        --output="$WORK/fio-eio.log" ||
        { tail -20 "$WORK/fio-eio.log" >&2; tail -20 "$WORK/server.log" >&2; die "fio saw an error"; }
    errors_off
    grep -q "err= 0" "$WORK/fio-eio.log" || { cat "$WORK/fio-eio.log" >&2; die "fio reported errors"; }
    WANT=$(md5sum < "$LOOP" | cut -d' ' -f1)
    stop_front_clean
    grep -q "writeback to the backing device is failing" "$WORK/server.log" ||
        { cat "$WORK/server.log" >&2; die "writeback never failed: the bursts were not exercised"; }
    grep -q "writeback recovered" "$WORK/server.log" ||
        { cat "$WORK/server.log" >&2; die "no recovery line after the bursts"; }
    "$PCACHE" flush --pmem "$PMEM" --backing "$BACKING" --segment-size 4M 2>>"$WORK/flush.log" \
        >/dev/null || { cat "$WORK/flush.log" >&2; die "pcache flush after fio failed"; }
    read_backing "$WORK/direct2.img"
    GOT=$(md5sum < "$WORK/direct2.img" | cut -d' ' -f1)
    [ "$GOT" = "$WANT" ] || die "after fio: backing md5 $GOT, expected $WANT"
    log "$MODE: fio verified every block through the bursts; backing md5 $GOT matches"
fi
log "$MODE: PASS"
