#!/usr/bin/env bash
# End-to-end crash test of `pcache serve` with real clients (issue 11 item 3):
#   format a cache (1 GiB sparse pmem file under /dev/shm, 256 MiB backing file), serve it
#   (FUSE file, or NBD through nbdkit + nbdfuse), losetup --direct-io=on, mkfs.ext4, mount;
#   write files, fsync some (file and directory); SIGKILL the server mid-workload; restart it
#   (the key log is replayed), mount again: every fsync'ed file must be intact and, after an
#   unmount, e2fsck -fn clean. Then a clean shutdown (SIGTERM) and restart must keep it so.
#
#   usage: serve_crash.sh fuse|nbd PCACHE_BINARY
# Exit 0 pass, 1 fail, 77 skipped (prerequisite missing; the reason is printed).
set -euo pipefail
MODE=${1:?usage: serve_crash.sh fuse|nbd PCACHE_BINARY}
PCACHE=$(realpath "${2:?usage: serve_crash.sh fuse|nbd PCACHE_BINARY}")
source "$(dirname "$0")/lib.sh"

case "$MODE" in
fuse) require_root_fuse_loop ;;
nbd) require_root_fuse_loop nbdkit nbdfuse ;;
*) die "unknown mode '$MODE' (expected fuse or nbd)" ;;
esac
make_workdir
truncate -s 1G "$WORK/pmem"
truncate -s 256M "$WORK/backing"
DEV=$WORK/mnt/pcache   # the file the front end exposes
SERVER= NBDFUSE=

# Starts the server (and for NBD the nbdfuse client) and waits for $DEV.
start_front() {
    local extra=("$@")
    case "$MODE" in
    fuse)
        "$PCACHE" serve --pmem "$WORK/pmem" --backing "$WORK/backing" --fuse "$WORK/mnt" \
            "${extra[@]}" 2>>"$WORK/server.log" &
        SERVER=$!
        on_exit "stop_pid KILL $SERVER"
        on_exit "force_umount '$WORK/mnt'"
        ;;
    nbd)
        rm -f "$WORK/sock"
        "$PCACHE" serve --pmem "$WORK/pmem" --backing "$WORK/backing" --nbd "$WORK/sock" \
            "${extra[@]}" 2>>"$WORK/server.log" &
        SERVER=$!  # pcache execs nbdkit: this is nbdkit's pid
        on_exit "stop_pid KILL $SERVER"
        wait_for 20 test -S "$WORK/sock" || { cat "$WORK/server.log" >&2; die "nbdkit did not start"; }
        nbdfuse "$DEV" --unix "$WORK/sock" 2>>"$WORK/nbdfuse.log" &
        NBDFUSE=$!
        on_exit "stop_pid KILL $NBDFUSE"
        on_exit "force_umount '$WORK/mnt'"
        ;;
    esac
    wait_for 20 test -s "$DEV" || {
        cat "$WORK/server.log" >&2
        [ "$MODE" = nbd ] && { echo "--- nbdfuse:" >&2; cat "$WORK/nbdfuse.log" >&2; grep " $WORK/mnt " /proc/mounts >&2; }
        die "$DEV did not appear"
    }
    attach_loop "$DEV"
}

# Undoes start_front after the server died or was stopped: fs, loop, FUSE mount, client.
teardown_front() {
    force_umount "$WORK/fs"
    detach_loop
    if [ "$MODE" = nbd ]; then
        fusermount3 -u "$WORK/mnt" 2>/dev/null || true
        stop_pid TERM "$NBDFUSE"
    fi
    force_umount "$WORK/mnt"
}

# A clean stop: the client lets go of the device, then SIGTERM; the server must exit 0.
stop_front_clean() {
    local rc=0
    force_umount "$WORK/fs"
    detach_loop
    if [ "$MODE" = nbd ]; then
        fusermount3 -u "$WORK/mnt" 2>/dev/null || true
        stop_pid TERM "$NBDFUSE"
    fi
    kill -TERM "$SERVER" 2>/dev/null || die "the server died before its clean shutdown"
    wait "$SERVER" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$WORK/server.log" >&2; die "server exited with $rc after SIGTERM"; }
    force_umount "$WORK/mnt"
}

mount_fs() {
    mount "$LOOP" "$WORK/fs" || die "mount $LOOP failed"
    on_exit "force_umount '$WORK/fs'"
}

log "$MODE: format, mkfs.ext4, mount"
start_front --format
mkfs.ext4 -q -F -E nodiscard "$LOOP" || die "mkfs.ext4 failed"
mount_fs

log "$MODE: workload, then SIGKILL of the server mid-workload"
workload &
WL=$!
on_exit "stop_pid KILL $WL"
wait_for 90 bash -c "[ \$(wc -l < '$WORK/synced') -ge 40 ]" || die "workload made no progress"
kill -KILL "$SERVER"
wait "$SERVER" 2>/dev/null || true
stop_pid KILL "$WL"
log "$MODE: server killed after $(wc -l < "$WORK/synced") fsync'ed files"
teardown_front

log "$MODE: restart (replay), mount, verify"
start_front
mount_fs
verify_synced
echo "after restart" > "$WORK/fs/data/after" && sync "$WORK/fs/data/after"
force_umount "$WORK/fs"
fsck_clean "$LOOP"

log "$MODE: clean shutdown (SIGTERM) and restart"
stop_front_clean
start_front
fsck_clean "$LOOP"
mount_fs
verify_synced
grep -q "after restart" "$WORK/fs/data/after" || die "file written after the restart is lost"
force_umount "$WORK/fs"
stop_front_clean
log "$MODE: PASS"
