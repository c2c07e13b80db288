#!/usr/bin/env bash
# End-to-end test of `pcache serve` against operating mistakes (issue 15 items 1, 4, 6):
#   1. serve started in the background from this script (bash then ignores SIGINT for it): a
#      second serve, flush and message are refused naming its pid; status says the cache is
#      live; data written with dd conv=fsync reads back through `pcache export` afterwards.
#   6. SIGINT stops it even so, repeated SIGINTs during the stop do not kill it: exit 0, one
#      "clean shutdown" line, and `pcache check` finds nothing. The NBD front end (when the
#      plugin is built) prints the same serving / clean shutdown lines and removes its socket;
#      it restarts over the socket a SIGKILLed server left, refuses a live socket and a path
#      that is not a socket, and exits 1 (not SIGSEGV) when nbdkit cannot listen.
#   4. a sparse pmem file larger than its (small, tmpfs) file system is refused at start with
#      the reason, instead of dying of SIGBUS once tmpfs runs out of room.
#
#   usage: serve_safety.sh PCACHE_BINARY
# Exit 0 pass, 1 fail, 77 skipped (not root, or no FUSE: the reason is printed).
set -euo pipefail
PCACHE=$(realpath "${1:?usage: serve_safety.sh PCACHE_BINARY}")
source "$(dirname "$0")/lib.sh"

require_root_fuse
make_workdir
GEO=(--segment-size 256K)
P=$WORK/pmem B=$WORK/backing
truncate -s 64M "$B"
"$PCACHE" format --pmem "$P" --backing "$B" --create-size-pmem 16M "${GEO[@]}" >/dev/null

# --- 1: a second opener is refused while serve runs ---------------------------------------
"$PCACHE" serve --pmem "$P" --backing "$B" "${GEO[@]}" --fuse "$WORK/mnt" 2>"$WORK/serve.log" &
SERVER=$!
on_exit "stop_pid KILL $SERVER"
on_exit "force_umount '$WORK/mnt'"
wait_for 20 test -s "$WORK/mnt/pcache" || { cat "$WORK/serve.log" >&2; die "the FUSE file did not appear"; }

expect_refused() {  # expect_refused NAME ARGS...: exit 1 naming the server's pid
    local name=$1 rc=0
    shift
    timeout 20 "$PCACHE" "$@" >"$WORK/out" 2>"$WORK/err" </dev/null || rc=$?
    [ "$rc" -eq 1 ] || { cat "$WORK/err" >&2; die "$name while serving: exit $rc, expected 1"; }
    grep -q "in use by pid $SERVER" "$WORK/err" || { cat "$WORK/err" >&2; die "$name: no holder pid"; }
}
expect_refused "second serve" serve --pmem "$P" --backing "$B" "${GEO[@]}" --fuse "$WORK/fs"
expect_refused flush flush --pmem "$P" --backing "$B" "${GEO[@]}"
expect_refused message message --pmem "$P" --backing "$B" "${GEO[@]}" gc_percent 10
"$PCACHE" status --pmem "$P" "${GEO[@]}" >/dev/null 2>"$WORK/err" || die "status on a live cache failed"
grep -q "is live (in use by pid $SERVER" "$WORK/err" || { cat "$WORK/err" >&2; die "status did not say live"; }
log "second serve, flush and message refused naming pid $SERVER; status says live"

head -c 8M /dev/urandom >"$WORK/data"
dd if="$WORK/data" of="$WORK/mnt/pcache" bs=1M conv=fsync,notrunc status=none || die "dd failed"

# --- 6: SIGINT from a script stops it; more SIGINTs during the stop do not kill it --------
for ((i = 0; i < 200; i++)); do
    kill -INT "$SERVER" 2>/dev/null || break
    sleep 0.05
done
rc=0
wait "$SERVER" || rc=$?
[ "$rc" -eq 0 ] || { cat "$WORK/serve.log" >&2; die "serve exited $rc after SIGINT (expected 0)"; }
grep -q "clean shutdown" "$WORK/serve.log" || { cat "$WORK/serve.log" >&2; die "no clean shutdown line"; }
! grep -q "already stopping" "$WORK/serve.log" || log "(a later SIGINT was answered with 'already stopping')"
is_mounted "$WORK/mnt" && die "the FUSE mount is still there (live or dead)"
"$PCACHE" check --pmem "$P" --backing "$B" "${GEO[@]}" >"$WORK/check" || { cat "$WORK/check" >&2; die "check after SIGINT"; }
"$PCACHE" export --pmem "$P" --backing "$B" "${GEO[@]}" --output "$WORK/exported" 2>/dev/null
cmp -n $((8 << 20)) "$WORK/data" "$WORK/exported" || die "the data written before SIGINT differs"
log "SIGINT (repeated) from a script: clean shutdown, check clean, data intact"

# --- 6: the NBD front end ----------------------------------------------------------------
if [ -e "$(dirname "$PCACHE")/nbdkit-pcache-plugin.so" ] && command -v nbdkit >/dev/null; then
    "$PCACHE" serve --pmem "$P" --backing "$B" "${GEO[@]}" --nbd "$WORK/sock" 2>"$WORK/nbd.log" &
    NBD=$!
    on_exit "stop_pid KILL $NBD"
    wait_for 20 grep -q "pcache serve: serving" "$WORK/nbd.log" || { cat "$WORK/nbd.log" >&2; die "NBD: no serving line"; }
    test -S "$WORK/sock" || die "NBD: no socket"
    kill -TERM "$NBD"
    rc=0
    wait "$NBD" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$WORK/nbd.log" >&2; die "NBD: exit $rc after SIGTERM"; }
    grep -q "pcache serve: clean shutdown" "$WORK/nbd.log" || { cat "$WORK/nbd.log" >&2; die "NBD: no clean shutdown line"; }
    [ ! -e "$WORK/sock" ] || die "NBD: the Unix socket was left behind"
    log "NBD: serving and clean shutdown lines, socket removed"

    # A socket left by a server that died (SIGKILL) does not stop a restart (it stopped every
    # restart with "Address already in use"); a live socket, or a path that is not a socket, is
    # refused and left alone.
    "$PCACHE" serve --pmem "$P" --backing "$B" "${GEO[@]}" --nbd "$WORK/sock" 2>"$WORK/nbd-killed.log" &
    NBD=$!
    on_exit "stop_pid KILL $NBD"
    wait_for 20 grep -q "pcache serve: serving" "$WORK/nbd-killed.log" || { cat "$WORK/nbd-killed.log" >&2; die "NBD: no serving line"; }
    kill -KILL "$NBD"
    wait "$NBD" 2>/dev/null || true
    test -S "$WORK/sock" || die "NBD: no socket left after SIGKILL (the case under test)"
    "$PCACHE" serve --pmem "$P" --backing "$B" "${GEO[@]}" --nbd "$WORK/sock" 2>"$WORK/nbd-restart.log" &
    NBD=$!
    on_exit "stop_pid KILL $NBD"
    wait_for 20 grep -q "pcache serve: serving" "$WORK/nbd-restart.log" || { cat "$WORK/nbd-restart.log" >&2; die "NBD: no restart over a stale socket"; }
    grep -q "removed the stale socket" "$WORK/nbd-restart.log" || { cat "$WORK/nbd-restart.log" >&2; die "NBD: the stale socket's removal was not reported"; }
    rc=0
    "$PCACHE" serve --pmem "$P" --backing "$B" "${GEO[@]}" --nbd "$WORK/sock" >/dev/null 2>"$WORK/err" || rc=$?
    [ "$rc" -eq 1 ] || { cat "$WORK/err" >&2; die "NBD: serve on a live socket: exit $rc, expected 1"; }
    grep -q "a server is listening on it already" "$WORK/err" || { cat "$WORK/err" >&2; die "NBD: live socket not named"; }
    test -S "$WORK/sock" || die "NBD: the live server's socket was removed"
    echo keep >"$WORK/not-a-socket"
    rc=0
    "$PCACHE" serve --pmem "$P" --backing "$B" "${GEO[@]}" --nbd "$WORK/not-a-socket" >/dev/null 2>"$WORK/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "is not a socket" "$WORK/err" || { cat "$WORK/err" >&2; die "NBD: a regular file as the socket: exit $rc"; }
    [ "$(cat "$WORK/not-a-socket")" = keep ] || die "NBD: the regular file was replaced"
    kill -TERM "$NBD"
    rc=0
    wait "$NBD" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$WORK/nbd-restart.log" >&2; die "NBD: exit $rc after SIGTERM (restarted server)"; }
    log "NBD: restart over a stale socket; live socket and regular file refused"

    # nbdkit that cannot listen (here: the socket's directory does not exist) exits 1 after
    # the plugin opened the cache; its teardown died of SIGSEGV (exit 139) before.
    rc=0
    "$PCACHE" serve --pmem "$P" --backing "$B" "${GEO[@]}" --nbd "$WORK/no-such-dir/sock" >/dev/null 2>"$WORK/err" || rc=$?
    [ "$rc" -eq 1 ] || { cat "$WORK/err" >&2; die "NBD: nbdkit unable to listen: exit $rc, expected 1 (139 = SIGSEGV)"; }
    "$PCACHE" check --pmem "$P" --backing "$B" "${GEO[@]}" >"$WORK/check" || { cat "$WORK/check" >&2; die "NBD: check after nbdkit could not listen"; }
    log "NBD: nbdkit unable to listen exits 1, cache clean"
else
    log "NBD part not run: the nbdkit plugin is not built or nbdkit is missing"
fi

# --- 4: a sparse pmem file on a tmpfs too small for it ------------------------------------
mkdir "$WORK/small"
mount -t tmpfs -o size=8M pcache-e2e "$WORK/small" || skip "cannot mount a tmpfs"
on_exit "umount -l '$WORK/small'"
truncate -s 32M "$WORK/small/pmem"
"$PCACHE" serve --pmem "$WORK/small/pmem" --backing "$B" --force-backing "${GEO[@]}" --format \
    --fuse "$WORK/mnt" 2>"$WORK/small.log" &
SMALL=$!
on_exit "stop_pid KILL $SMALL"
on_exit "force_umount '$WORK/mnt'"
wait_for 10 bash -c "test -s '$WORK/mnt/pcache' || ! kill -0 $SMALL" || true
if kill -0 "$SMALL" 2>/dev/null; then  # it serves: fill it as a client would
    dd if=/dev/urandom of="$WORK/mnt/pcache" bs=1M count=32 conv=fsync,notrunc status=none 2>/dev/null || true
fi
rc=0
wait_for 10 bash -c "! kill -0 $SMALL" || die "serve on a sparse pmem larger than its tmpfs is still running"
wait "$SMALL" || rc=$?
[ "$rc" -eq 3 ] || [ "$rc" -eq 1 ] || { cat "$WORK/small.log" >&2; die "serve on a sparse pmem on a full tmpfs: exit $rc (135 = SIGBUS)"; }
grep -q "is a sparse file" "$WORK/small.log" || { cat "$WORK/small.log" >&2; die "no reason given for the sparse pmem"; }
log "sparse pmem on a small tmpfs refused at start: $(cat "$WORK/small.log")"
log "PASS"
