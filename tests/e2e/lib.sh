# Helpers for the end-to-end tests of `pcache serve` (sourced by the test scripts).
#
# Every resource a test creates (server process, FUSE mount, loop device, ext4 mount, temp
# directory) is registered with `on_exit` when it is created; the EXIT trap undoes them in
# reverse order whether the test passed, failed or was interrupted. A missing prerequisite
# (not root, no /dev/fuse, no loop devices, a missing program) ends the test with exit code 77,
# which ctest reports as skipped (SKIP_RETURN_CODE), after saying what is missing.
set -euo pipefail

E2E_SKIP=77
CLEANUPS=()

log() { echo "e2e: [$(date +%T)] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }
skip() { echo "e2e: SKIP: $*" >&2; exit "$E2E_SKIP"; }

on_exit() { CLEANUPS+=("$*"); }
run_cleanups() {
    local rc=$? i
    set +e
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[$i]}" >/dev/null 2>&1; done
    CLEANUPS=()
    return $rc
}
trap run_cleanups EXIT
trap 'exit 130' INT TERM

# Skips (exit 77, reason printed) unless root, FUSE and every program named are here.
require_root_fuse() {
    [ "$(id -u)" -eq 0 ] || skip "needs root (FUSE and loop devices, mount)"
    [ -c /dev/fuse ] || skip "/dev/fuse is missing (FUSE not available)"
    local p
    for p in fusermount3 "$@"; do
        command -v "$p" >/dev/null || skip "program '$p' is missing (bash scripts/setup.sh installs it)"
    done
}
# The same, and loop devices with the tools of the file system tests.
require_root_fuse_loop() {
    [ -c /dev/loop-control ] || skip "/dev/loop-control is missing (no loop devices)"
    require_root_fuse losetup mount umount mkfs.ext4 e2fsck md5sum "$@"
}

# A fresh directory under /dev/shm (the pmem file must be on tmpfs or DAX to be fast).
make_workdir() {
    WORK=$(mktemp -d /dev/shm/pcache-e2e.XXXXXX)
    on_exit "rm -rf '$WORK'"
    mkdir -p "$WORK/mnt" "$WORK/fs"
}

# wait_for <seconds> <command...>: polls until the command succeeds.
wait_for() {
    local t=$1 i
    shift
    for ((i = 0; i < t * 20; i++)); do "$@" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}

# Kills a process (if alive) and reaps it.
stop_pid() {
    local sig=$1 pid=$2
    kill -"$sig" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Unmounts even a mount whose FUSE server died (lazy as a last resort). Whether `m` is mounted
# is read from /proc/self/mounts: `mountpoint` stats the directory, which fails with ENOTCONN on
# a FUSE mount whose server died, so such mounts were left behind (and their work directory
# under /dev/shm could not be removed).
is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts; }
force_umount() {
    local m=$1
    is_mounted "$m" || return 0
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
}

# attach_loop <file>: sets LOOP to a new direct-I/O loop device over the file.
attach_loop() {
    LOOP=$(losetup --direct-io=on -f --show "$1") || die "losetup --direct-io=on $1 failed"
    on_exit "losetup -d '$LOOP'"
}
detach_loop() { losetup -d "$LOOP" 2>/dev/null || true; }

# Workload on the mounted file system $WORK/fs: files written then fsync'ed (file and
# directory) are listed with their md5 in $WORK/synced only after fsync returned; files written
# without fsync go along in between. Runs until killed or until an I/O error.
workload() {
    local dir=$WORK/fs/data i=0 f sum
    mkdir -p "$dir" && sync "$dir"
    while :; do
        f=$dir/synced_$i
        head -c $(( (i % 7 + 1) * 16384 )) /dev/urandom > "$f.tmp" || return 0
        mv "$f.tmp" "$f" || return 0
        sync "$f" && sync "$dir" || return 0
        sum=$(md5sum < "$f" | cut -d' ' -f1) || return 0
        echo "synced_$i $sum" >> "$WORK/synced"
        head -c 65536 /dev/urandom > "$dir/unsynced_$i" 2>/dev/null || return 0
        i=$((i + 1))
    done
}

# Checks every file listed in $WORK/synced on the mounted $WORK/fs.
verify_synced() {
    local n=0 name sum got
    while read -r name sum; do
        got=$(md5sum < "$WORK/fs/data/$name" | cut -d' ' -f1) || die "$name lost (it was fsync'ed)"
        [ "$got" = "$sum" ] || die "$name has md5 $got, expected $sum (it was fsync'ed)"
        n=$((n + 1))
    done < "$WORK/synced"
    log "all $n fsync'ed files survived"
}

# fsck_clean <device>: e2fsck -fn must find nothing.
fsck_clean() {
    e2fsck -fn "$1" > "$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log" >&2; die "e2fsck -fn $1 found problems"; }
    log "e2fsck -fn clean"
}
