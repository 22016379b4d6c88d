#!/usr/bin/env bash
# Runs a local Fathom cluster: 3 nats-server processes clustered with JetStream on loopback and 3
# Fathom nodes (n1..n3) that use them, every process in the background.
#
#   scripts/cluster.sh up     [--dir DIR]   start everything, wait until healthy, print the REST URLs
#   scripts/cluster.sh down   [--dir DIR] [--wipe]
#                                           stop everything (SIGTERM, SIGKILL after 5 s); the data
#                                           stays in DIR unless --wipe, which deletes DIR
#   scripts/cluster.sh status [--dir DIR]   which processes run, then GET /cluster of node n1
#
# DIR (default /tmp/fathom-cluster) holds the NATS stores nats1..nats3, the Fathom data n1..n3 and
# a NAME.log and NAME.pid for every process. Environment:
#   FATHOM_BIN               the fathom binary (default: build/src/cli/fathom of this checkout)
#   NATS_SERVER              the nats-server binary (default: nats-server on PATH, else /usr/sbin)
#   FATHOM_CLUSTER_PORT_BASE REST port of n1 (default 6333; n2, n3 take the next two)
#   NATS_PORT_BASE           client port of nats1 (default 4222; nats2, nats3 take the next two);
#                            their cluster ports are NATS_PORT_BASE+2000.. (6222..) and their
#                            monitoring ports NATS_PORT_BASE+4000.. (8222..)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
FATHOM_BIN="${FATHOM_BIN:-$REPO/build/src/cli/fathom}"
NATS_SERVER="${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
FATHOM_PORT_BASE="${FATHOM_CLUSTER_PORT_BASE:-6333}"
NATS_PORT_BASE="${NATS_PORT_BASE:-4222}"
NATS_CLUSTER_PORT_BASE=$((NATS_PORT_BASE + 2000))
NATS_MONITOR_PORT_BASE=$((NATS_PORT_BASE + 4000))
NODES=(1 2 3)

usage() {
  awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" >&2
  exit 2
}

CMD="${1:-}"
[ $# -gt 0 ] && shift
DIR=/tmp/fathom-cluster
WIPE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) [ $# -ge 2 ] || usage; DIR="$2"; shift 2 ;;
    --dir=*) DIR="${1#--dir=}"; shift ;;
    --wipe) WIPE=1; shift ;;
    *) usage ;;
  esac
done
case "$CMD" in up|down|status) ;; *) usage ;; esac
[ "$WIPE" = 0 ] || [ "$CMD" = down ] || usage

nats_client_url() { echo "nats://127.0.0.1:$((NATS_PORT_BASE + $1 - 1))"; }
fathom_port() { echo $((FATHOM_PORT_BASE + $1 - 1)); }
CLUSTER_URLS="$(nats_client_url 1),$(nats_client_url 2),$(nats_client_url 3)"

# Exit status 0 when process PID runs (a zombie, whose parent has not reaped it, does not).
is_running() {
  local stat
  stat="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ "$stat" != Z* ]]
}

# The pid in DIR/NAME.pid when that process still runs, else nothing.
live_pid() {
  local f="$DIR/$1.pid" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if [ -n "$pid" ] && is_running "$pid"; then echo "$pid"; fi
}

# NAME ARGV...: starts a process in the background, immune to the terminal's SIGHUP and SIGINT,
# output appended to DIR/NAME.log, pid in DIR/NAME.pid.
start_bg() {
  local name="$1"
  shift
  echo "--- $(date '+%F %T') start: $*" >> "$DIR/$name.log"
  nohup "$@" >> "$DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$DIR/$name.pid"
}

# Prints the last lines of DIR/NAME.log, for a process that did not come up.
show_log() {
  echo "--- last lines of $DIR/$1.log:" >&2
  tail -n 30 "$DIR/$1.log" >&2 || true
}

# Exit status 0 when some running NATS server says it is the JetStream meta leader itself (a
# follower goes on naming a dead leader for a few seconds, so its word is not enough).
nats_has_meta_leader() {
  local i json
  for i in "${NODES[@]}"; do
    json="$(curl -s --max-time 2 "http://127.0.0.1:$((NATS_MONITOR_PORT_BASE + i - 1))/jsz")" || continue
    if printf '%s' "$json" | python3 -c '
import json, sys
meta = json.load(sys.stdin).get("meta_cluster") or {}
sys.exit(0 if meta.get("leader") == sys.argv[1] else 1)' "nats$i" 2>/dev/null; then
      echo "nats$i"
      return 0
    fi
  done
  return 1
}

# NAME PROBE SECONDS: waits until PROBE succeeds while process NAME still runs.
wait_for() {
  local name="$1" probe="$2" seconds="$3" t
  for ((t = 0; t < seconds * 5; t++)); do
    if [ -z "$(live_pid "$name")" ]; then
      echo "cluster: $name exited while starting" >&2
      show_log "$name"
      return 1
    fi
    if eval "$probe" > /dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "cluster: $name did not come up within ${seconds}s" >&2
  show_log "$name"
  return 1
}

do_up() {
  local i j routes running=""
  for name in nats1 nats2 nats3 n1 n2 n3; do
    if [ -n "$(live_pid "$name")" ]; then running="$running $name"; fi
  done
  if [ -n "$running" ]; then
    echo "cluster: already running in $DIR:$running (run '$0 down --dir $DIR' first)" >&2
    exit 1
  fi
  [ -x "$FATHOM_BIN" ] || { echo "cluster: no fathom binary at $FATHOM_BIN (build it, or set FATHOM_BIN)" >&2; exit 1; }
  [ -x "$NATS_SERVER" ] || { echo "cluster: no nats-server at $NATS_SERVER (set NATS_SERVER)" >&2; exit 1; }
  mkdir -p "$DIR"

  # NATS: each server routes to the other two; JetStream clustering needs the server and
  # cluster names.
  for i in "${NODES[@]}"; do
    routes=""
    for j in "${NODES[@]}"; do
      [ "$j" = "$i" ] || routes="$routes${routes:+,}nats://127.0.0.1:$((NATS_CLUSTER_PORT_BASE + j - 1))"
    done
    start_bg "nats$i" "$NATS_SERVER" -a 127.0.0.1 -p $((NATS_PORT_BASE + i - 1)) -js -sd "$DIR/nats$i" \
      -n "nats$i" --cluster "nats://127.0.0.1:$((NATS_CLUSTER_PORT_BASE + i - 1))" --cluster_name fathom \
      --routes "$routes" -m $((NATS_MONITOR_PORT_BASE + i - 1))
  done
  echo "cluster: waiting for a JetStream meta leader ..."
  for ((t = 0; ; t++)); do
    for i in "${NODES[@]}"; do
      if [ -z "$(live_pid "nats$i")" ]; then
        echo "cluster: nats$i exited while starting" >&2
        show_log "nats$i"
        do_down
        exit 1
      fi
    done
    if leader="$(nats_has_meta_leader)"; then break; fi
    if [ "$t" -ge 150 ]; then
      echo "cluster: no JetStream meta leader after 30s" >&2
      for i in "${NODES[@]}"; do show_log "nats$i"; done
      do_down
      exit 1
    fi
    sleep 0.2
  done
  echo "cluster: NATS is up ($CLUSTER_URLS), meta leader $leader"

  for i in "${NODES[@]}"; do
    mkdir -p "$DIR/n$i"
    start_bg "n$i" "$FATHOM_BIN" serve --data "$DIR/n$i" --port "$(fathom_port "$i")" \
      --cluster "$CLUSTER_URLS" --node-id "n$i"
  done
  for i in "${NODES[@]}"; do
    if ! wait_for "n$i" "curl -sf --max-time 2 -o /dev/null http://127.0.0.1:$(fathom_port "$i")/healthz" 60; then
      do_down
      exit 1
    fi
  done
  echo "cluster: Fathom is up (logs and data in $DIR):"
  for i in "${NODES[@]}"; do echo "  n$i  http://127.0.0.1:$(fathom_port "$i")"; done
}

# Drops from the array PIDS the processes that have exited, waiting up to SECONDS for all to.
PIDS=()
wait_exit() {
  local deadline=$((${EPOCHREALTIME/./} + $1 * 1000000)) pid still
  while [ ${#PIDS[@]} -gt 0 ]; do
    still=()
    for pid in "${PIDS[@]}"; do is_running "$pid" && still+=("$pid"); done
    PIDS=(${still[@]+"${still[@]}"})
    if [ ${#PIDS[@]} -eq 0 ] || [ "${EPOCHREALTIME/./}" -ge "$deadline" ]; then break; fi
    sleep 0.1
  done
}

# SIGTERM to every process (Fathom first, so the nodes can still reach NATS while they stop),
# SIGKILL to whatever still runs 5 s later.
do_down() {
  local name pid names=()
  PIDS=()
  for name in n1 n2 n3 nats1 nats2 nats3; do
    pid="$(live_pid "$name")"
    if [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      kill -CONT "$pid" 2>/dev/null || true  # a stopped process would not act on SIGTERM
      PIDS+=("$pid")
      names+=("$name")
    fi
    rm -f "$DIR/$name.pid"
  done
  wait_exit 5
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    echo "cluster: pid $pid ignored SIGTERM for 5s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait_exit 2  # SIGKILL is quick, but let it finish before a --wipe
  if [ ${#names[@]} -gt 0 ]; then echo "cluster: stopped ${names[*]}"; else echo "cluster: nothing was running"; fi
}

do_wipe() {
  [ -d "$DIR" ] || return 0
  # Refuse directories that are not ours: the path must be a cluster directory this script made.
  if [ "$(cd "$DIR" && pwd)" = / ] || { [ ! -d "$DIR/nats1" ] && [ ! -e "$DIR/nats1.log" ]; }; then
    echo "cluster: $DIR does not look like a cluster directory; not deleting it" >&2
    exit 1
  fi
  rm -rf "$DIR"
  echo "cluster: deleted $DIR"
}

do_status() {
  local name pid
  for name in nats1 nats2 nats3 n1 n2 n3; do
    pid="$(live_pid "$name")"
    if [ -n "$pid" ]; then echo "$name: running (pid $pid)" >&2; else echo "$name: not running" >&2; fi
  done
  curl -s "localhost:$(fathom_port 1)/cluster" || { echo "cluster: n1 does not answer" >&2; exit 1; }
  echo
}

case "$CMD" in
  up) do_up ;;
  down)
    do_down
    [ "$WIPE" = 0 ] || do_wipe
    ;;
  status) do_status ;;
esac
