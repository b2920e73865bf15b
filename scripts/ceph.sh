#!/usr/bin/env bash
# A single-node Ceph cluster with radosgw on loopback, for ferry's S3 tests and bench:
#   scripts/ceph.sh up       start it (about 20 s) and write the endpoint and keys to $DIR/s3.env
#   scripts/ceph.sh down     stop everything it started and remove $DIR
#   scripts/ceph.sh status   say whether it is up and answering S3
# One monitor, one manager and one OSD on BlueStore backed by a sparse file, one copy of each
# object, auth off (on loopback only), radosgw's beast frontend on 127.0.0.1. Everything lives
# in $DIR (FERRY_CEPH_DIR, default ${TMPDIR:-/tmp}/ferry-ceph); ports from FERRY_CEPH_MON_PORT
# (default 16789) and FERRY_CEPH_S3_PORT (default 17480). Needs the Debian packages ceph-mon
# ceph-osd ceph-mgr radosgw ceph-common, and root (the daemons' memory locking and ports).
set -euo pipefail

DIR=${FERRY_CEPH_DIR:-${TMPDIR:-/tmp}/ferry-ceph}
MON_PORT=${FERRY_CEPH_MON_PORT:-16789}
S3_PORT=${FERRY_CEPH_S3_PORT:-17480}
CONF=$DIR/ceph.conf
ENV_FILE=$DIR/s3.env
ENDPOINT=http://127.0.0.1:$S3_PORT
# Fixed keys: the store listens on loopback only and lives as long as a test run.
ACCESS_KEY=FERRYTESTACCESSKEY00
SECRET_KEY=ferry-test-secret-key-not-for-anything-real

log() { echo "ceph.sh: $*" >&2; }

# True when radosgw answers an S3 request (an anonymous ListBuckets is answered, even if refused).
answers() {
  curl -s -o /dev/null -m 2 "$ENDPOINT/" 2>/dev/null
}

write_conf() {
  local fsid=$1
  cat >"$CONF" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
# With auth off, clients must still offer the modes the monitor speaks, or radosgw waits 300 s.
ms mon client mode = crc secure
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
mon data = $DIR/mon/\$id
mgr data = $DIR/mgr/\$id
osd data = $DIR/osd/\$id
keyring = $DIR/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 21474836480
bluestore block db create = false
bluestore block wal create = false
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 134217728
mon data avail warn = 2
mon data avail crit = 1

[client.rgw.ferry]
rgw frontends = beast endpoint=127.0.0.1:$S3_PORT
rgw data = $DIR/rgw
rgw dns name = 127.0.0.1
rgw thread pool size = 64
# Deleted objects free their space within a minute, not hours: the OSD is a small sparse file that
# 1 GiB bench objects would otherwise fill.
rgw gc obj min wait = 30
rgw gc processor period = 30
CONF
}

pids() {
  local f
  for f in "$DIR"/run/*.pid; do
    [[ -f $f ]] && cat "$f"
  done
  return 0
}

up() {
  for tool in ceph-mon ceph-osd ceph-mgr radosgw radosgw-admin ceph monmaptool ceph-authtool curl; do
    command -v "$tool" >/dev/null || { log "$tool is not installed (apt-get install -y ceph-mon ceph-osd ceph-mgr radosgw ceph-common curl)"; exit 1; }
  done
  if [[ -f $ENV_FILE ]] && answers; then
    log "already up at $ENDPOINT ($ENV_FILE)"
    return 0
  fi
  if [[ -d $DIR ]]; then
    log "$DIR is left over from an earlier run: taking it down first"
    down
  fi
  mkdir -p "$DIR"/{run,log,mon/a,mgr/x,osd/0,rgw}
  local fsid osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$fsid"
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
  # The daemons fork into the background; what they say while starting goes to their logs.
  ceph-mon -c "$CONF" -i a 2>>"$DIR/log/start.log"
  ceph -c "$CONF" --connect-timeout 30 mon enable-msgr2 >/dev/null 2>&1 || true
  ceph-mgr -c "$CONF" -i x 2>>"$DIR/log/start.log"
  local id
  id=$(ceph -c "$CONF" --connect-timeout 30 osd new "$osd_uuid")
  [[ $id == 0 ]] || { log "expected OSD 0, the monitor gave $id"; exit 1; }
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/osd-mkfs.log" 2>&1 ||
    { log "OSD mkfs failed: see $DIR/log/osd-mkfs.log"; exit 1; }
  ceph-osd -c "$CONF" -i 0 2>>"$DIR/log/start.log"
  radosgw -c "$CONF" -n client.rgw.ferry 2>>"$DIR/log/start.log"
  log "waiting for radosgw on $ENDPOINT"
  local i
  for ((i = 0; i < 120; i++)); do
    answers && break
    sleep 1
  done
  answers || { log "radosgw did not answer within 120 s: see $DIR/log"; exit 1; }
  radosgw-admin -c "$CONF" -n client.rgw.ferry --admin-socket "" user create --uid ferry --display-name ferry \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >/dev/null
  cat >"$ENV_FILE" <<ENV
FERRY_S3_ENDPOINT=$ENDPOINT
FERRY_S3_REGION=us-east-1
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
ENV
  log "up: S3 at $ENDPOINT, endpoint and keys in $ENV_FILE"
  echo "$ENV_FILE"
}

down() {
  local list
  list=$(pids)
  if [[ -n $list ]]; then
    # shellcheck disable=SC2086
    kill $list 2>/dev/null || true
    local i
    for ((i = 0; i < 30; i++)); do
      local alive=0 p
      for p in $list; do kill -0 "$p" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.5
    done
    # shellcheck disable=SC2086
    kill -9 $list 2>/dev/null || true
  fi
  rm -rf "$DIR"
  log "down"
}

status() {
  if [[ -f $ENV_FILE ]] && answers; then
    log "up at $ENDPOINT ($ENV_FILE)"
    return 0
  fi
  log "not running"
  return 1
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*)
  echo "Usage: scripts/ceph.sh up|down|status" >&2
  exit 2
  ;;
esac
