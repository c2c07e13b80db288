#!/usr/bin/env bash
# End-to-end test of `pcache serve` when the backing device fails and heals (issue 15 item 5):
# the backing file lives on a small tmpfs that another file fills, so writeback's pwrite fails
# with ENOSPC. serve must log one line when writeback starts failing (with the error) and one
# when it recovers (after the filler is removed), and a shutdown after the recovery exits 0
# (the healed error does not count); the data written through the FUSE file reads back.
#
#   usage: serve_backing_fault.sh PCACHE_BINARY
# Exit 0 pass, 1 fail, 77 skipped (not root, or no FUSE: the reason is printed).
set -euo pipefail
PCACHE=$(realpath "${1:?usage: serve_backing_fault.sh PCACHE_BINARY}")
source "$(dirname "$0")/lib.sh"

require_root_fuse
make_workdir
GEO=(--segment-size 256K)
P=$WORK/pmem B=$WORK/small/backing
mkdir "$WORK/small"
mount -t tmpfs -o size=24M pcache-e2e "$WORK/small" || skip "cannot mount a tmpfs"
on_exit "umount -l '$WORK/small'"
truncate -s 32M "$B"  # sparse: writeback allocates as it writes
"$PCACHE" format --pmem "$P" --backing "$B" --create-size-pmem 32M "${GEO[@]}" >/dev/null
head -c 23M /dev/zero >"$WORK/small/filler" 2>/dev/null || true  # about 1 MiB left

"$PCACHE" serve --pmem "$P" --backing "$B" "${GEO[@]}" --fuse "$WORK/mnt" 2>"$WORK/serve.log" &
SERVER=$!
on_exit "stop_pid KILL $SERVER"
on_exit "force_umount '$WORK/mnt'"
wait_for 20 test -s "$WORK/mnt/pcache" || { cat "$WORK/serve.log" >&2; die "the FUSE file did not appear"; }

head -c 8M /dev/urandom >"$WORK/data"
dd if="$WORK/data" of="$WORK/mnt/pcache" bs=1M conv=fsync,notrunc status=none || die "dd failed"
wait_for 20 grep -q "writeback to the backing device is failing: .*No space left on device" "$WORK/serve.log" ||
    { cat "$WORK/serve.log" >&2; die "no log line when writeback started failing"; }
[ "$(grep -c "is failing" "$WORK/serve.log")" -eq 1 ] || { cat "$WORK/serve.log" >&2; die "more than one 'failing' line"; }
log "failing logged: $(grep "is failing" "$WORK/serve.log")"

rm -f "$WORK/small/filler"
wait_for 30 grep -q "writeback recovered after" "$WORK/serve.log" ||
    { cat "$WORK/serve.log" >&2; die "no log line when writeback recovered"; }
log "recovery logged: $(grep "recovered" "$WORK/serve.log")"

kill -TERM "$SERVER"
rc=0
wait "$SERVER" || rc=$?
[ "$rc" -eq 0 ] || { cat "$WORK/serve.log" >&2; die "serve exited $rc after the backing healed (expected 0)"; }
grep -q "clean shutdown" "$WORK/serve.log" || die "no clean shutdown line"
"$PCACHE" flush --pmem "$P" --backing "$B" "${GEO[@]}" >/dev/null 2>&1 || die "flush after the recovery failed"
cmp -n $((8 << 20)) "$WORK/data" "$B" || die "the backing file does not hold the data after flush"
log "PASS"
