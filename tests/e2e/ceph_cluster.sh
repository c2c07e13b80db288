#!/usr/bin/env bash
# A throw-away single-node Ceph cluster for tests: one monitor and one OSD (memstore: data in
# the OSD's RAM), no authentication, bound to 127.0.0.1 only, every file under DIR. An "rbd"
# pool is created and initialised. Ports are chosen per run (parallel runs do not collide).
#
#   ceph_cluster.sh start DIR   # writes DIR/ceph.conf; use CEPH_CONF=DIR/ceph.conf
#   ceph_cluster.sh stop DIR    # kills the daemons (by their pid files) and removes DIR
#
# No ceph-mgr is started: rbd I/O, rbd create/export and `ceph osd stat` do not need one.
# Start to a usable pool takes about 10-20 s here.
set -euo pipefail
CMD=${1:?usage: ceph_cluster.sh start|stop DIR}
DIR=${2:?usage: ceph_cluster.sh start|stop DIR}

say() { echo "ceph_cluster: $*" >&2; }

stop() {
    local f pid
    for f in "$DIR"/run/osd.0.pid "$DIR"/run/mon.a.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$DIR"
}

# A free TCP port on 127.0.0.1 in [lo, lo + span): the first one nothing listens on.
free_port() {
    local lo=$1 span=$2 p i
    for ((i = 0; i < 200; i++)); do
        p=$((lo + RANDOM % span))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}

start() {
    [ -e "$DIR" ] && { say "$DIR exists"; exit 1; }
    mkdir -p "$DIR"/{run,log,mon,osd}
    local mon_port osd_lo fsid uuid
    mon_port=$(free_port 20000 10000)
    osd_lo=$(( (30000 + RANDOM % 20000) / 100 * 100 ))
    fsid=$(cat /proc/sys/kernel/random/uuid)
    uuid=$(cat /proc/sys/kernel/random/uuid)
    cat > "$DIR/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind port min = $osd_lo
ms bind port max = $((osd_lo + 99))
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
osd objectstore = memstore
memstore device bytes = $((512 << 20))
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
osd crush chooseleaf type = 0
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
mon data = $DIR/mon/\$name
osd data = $DIR/osd/\$name
keyring = $DIR/keyring
EOF
    export CEPH_CONF=$DIR/ceph.conf
    # ceph-mon --mkfs wants a keyring for mon. even with auth none.
    ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
    ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
    ceph-mon -i a
    local osd_id
    osd_id=$(timeout 30 ceph osd new "$uuid") || { say "ceph osd new failed (monitor down?)"; exit 1; }
    mkdir -p "$DIR/osd/osd.$osd_id"
    ceph-osd -i "$osd_id" --mkfs --osd-uuid "$uuid" --osd-objectstore memstore 2>>"$DIR/log/mkfs.log"
    ceph-osd -i "$osd_id"
    local i up=0
    for ((i = 0; i < 120; i++)); do
        up=$(timeout 10 ceph osd stat -f json 2>/dev/null |
             sed -n 's/.*"num_up_osds":\([0-9]*\).*/\1/p')
        [ "${up:-0}" = 1 ] && break
        sleep 0.5
    done
    [ "${up:-0}" = 1 ] || { say "the OSD did not come up (see $DIR/log)"; exit 1; }
    timeout 60 ceph osd pool create rbd 8 8 >/dev/null 2>&1
    timeout 60 rbd pool init rbd
    say "up: monitor 127.0.0.1:$mon_port, conf $DIR/ceph.conf"
}

case "$CMD" in
start) start ;;
stop) stop ;;
*) say "usage: ceph_cluster.sh start|stop DIR"; exit 2 ;;
esac
