#!/usr/bin/env bash
# End-to-end test of `pcache serve`'s exit status when its clean shutdown fails (docs/serve.md:
# "1 if it is still failing"), for both front ends. The backing device is an nbdkit server
# behind the error filter, failing every write while $WORK/errors-on exists. Per front end:
# data is written through it (and flushed: it is durable in the cache), writeback logs that it
# is failing, then SIGTERM: the server must say why the shutdown failed and exit 1. Then the
# errors stop and `pcache flush` must write everything back: the backing holds the data, so
# the failed shutdown lost nothing. Before this test the NBD front end exited 0 there (nbdkit
# ignores what its plugin's cleanup found).
#
#   usage: serve_exit_status.sh PCACHE_BINARY
# Exit 0 pass, 1 fail, 77 skipped (not root, or no FUSE: the reason is printed).
set -euo pipefail
PCACHE=$(realpath "${1:?usage: serve_exit_status.sh PCACHE_BINARY}")
source "$(dirname "$0")/lib.sh"

require_root_fuse nbdkit nbdcopy cmp
make_workdir
GEO=(--segment-size 256K)
truncate -s 64M "$WORK/backing.img"
nbdkit --foreground --exit-with-parent --unix "$WORK/nbd.sock" --filter=error \
    file "$WORK/backing.img" error-pwrite=EIO error-pwrite-rate=100% \
    error-pwrite-file="$WORK/errors-on" 2>>"$WORK/nbdkit.log" &
NBDKIT=$!
on_exit "stop_pid KILL $NBDKIT"
wait_for 20 test -S "$WORK/nbd.sock" || { cat "$WORK/nbdkit.log" >&2; die "nbdkit did not start"; }
BACKING="nbd+unix:///?socket=$WORK/nbd.sock"
"$PCACHE" format --pmem "$WORK/pmem" --create-size-pmem 64M --backing "$BACKING" "${GEO[@]}" \
    >/dev/null || die "format failed"

for front in fuse nbd; do
    head -c 4M /dev/urandom >"$WORK/data"
    : >"$WORK/serve.log"
    touch "$WORK/errors-on"
    case "$front" in
    fuse)
        "$PCACHE" serve --pmem "$WORK/pmem" --backing "$BACKING" "${GEO[@]}" --fuse "$WORK/mnt" \
            2>>"$WORK/serve.log" &
        SERVER=$!
        on_exit "stop_pid KILL $SERVER"
        on_exit "force_umount '$WORK/mnt'"
        wait_for 20 test -s "$WORK/mnt/pcache" || { cat "$WORK/serve.log" >&2; die "the FUSE file did not appear"; }
        dd if="$WORK/data" of="$WORK/mnt/pcache" bs=1M conv=fsync,notrunc status=none ||
            die "dd through the FUSE file failed"
        ;;
    nbd)
        rm -f "$WORK/serve.sock"
        "$PCACHE" serve --pmem "$WORK/pmem" --backing "$BACKING" "${GEO[@]}" \
            --nbd "$WORK/serve.sock" 2>>"$WORK/serve.log" &
        SERVER=$!  # pcache execs nbdkit: this is nbdkit's pid
        on_exit "stop_pid KILL $SERVER"
        wait_for 20 test -S "$WORK/serve.sock" || { cat "$WORK/serve.log" >&2; die "the NBD server did not start"; }
        nbdcopy --flush "$WORK/data" "nbd+unix:///?socket=$WORK/serve.sock" ||
            die "nbdcopy through the NBD server failed"
        ;;
    esac
    wait_for 30 grep -q "writeback to the backing device is failing" "$WORK/serve.log" ||
        { cat "$WORK/serve.log" >&2; die "$front: writeback never reported failing"; }
    kill -TERM "$SERVER"
    rc=0
    wait "$SERVER" || rc=$?
    grep -q "still failing at shutdown" "$WORK/serve.log" ||
        { cat "$WORK/serve.log" >&2; die "$front: no 'still failing at shutdown' line"; }
    [ "$rc" -eq 1 ] || { cat "$WORK/serve.log" >&2; die "$front: serve exited $rc after a failed shutdown (expected 1)"; }
    log "$front: exit 1 after: $(grep -o "writeback to the backing device was still failing at shutdown" "$WORK/serve.log")"
    force_umount "$WORK/mnt"

    rm -f "$WORK/errors-on"
    "$PCACHE" flush --pmem "$WORK/pmem" --backing "$BACKING" "${GEO[@]}" >/dev/null 2>"$WORK/flush.log" ||
        { cat "$WORK/flush.log" >&2; die "$front: flush after the errors stopped failed"; }
    cmp -n $((4 << 20)) "$WORK/data" "$WORK/backing.img" ||
        die "$front: the backing does not hold the data written before the failed shutdown"
    log "$front: flush wrote everything back"
done
log "PASS"
