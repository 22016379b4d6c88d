#!/usr/bin/env bash
# REST load run (a benchmark, not a test): the server with the Fashion-MNIST demo collection,
# searched by wrk at concurrency 32 while a client upserts batches of 100 points in a loop.
# Reports wrk's throughput and latency percentiles, upsert batches/s with their latency (as the
# client saw it and as the server measured it), and the server's RSS every FATHOM_RSS_EVERY
# seconds (default 10).
#   bench/load_test.sh [SECONDS=60] [CONNECTIONS=32]
# FATHOM_BIN picks the binary (default build/src/cli/fathom), FATHOM_LOAD_PORT the port.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
CONNECTIONS=${2:-32}
BIN=${FATHOM_BIN:-build/src/cli/fathom}
RSS_EVERY=${FATHOM_RSS_EVERY:-10}
[ -x "$BIN" ] || { echo "build first: scripts/test.sh (or set FATHOM_BIN)" >&2; exit 1; }
WORK=$(mktemp -d)
PORT=${FATHOM_LOAD_PORT:-6391}
URL=http://127.0.0.1:$PORT
"$BIN" serve --demo --data "$WORK/data" --port "$PORT" > "$WORK/server.out" 2> "$WORK/server.err" &
SERVER=$!
SAMPLER=
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  kill -TERM $SERVER 2>/dev/null || true
  wait $SERVER 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
until curl -sf "$URL/healthz" > /dev/null; do sleep 1; done

# Request bodies from real test images: one search, a batch of 64, an upsert of 100 points.
/usr/bin/python3 - "$WORK" <<'PY'
import gzip, json, random, sys
work = sys.argv[1]
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:]
image = lambda i: list(raw[i * 784:(i + 1) * 784])
search = lambda i: {"vector": image(i), "limit": 10, "params": {"ef": 64}}
json.dump(search(0), open(f"{work}/search.json", "w"))
json.dump({"searches": [search(i) for i in range(64)]}, open(f"{work}/batch.json", "w"))
for b in range(20):
    points = [{"id": 1_000_000 + b * 100 + j, "vector": image(random.randrange(10000)),
               "payload": {"label": -1, "split": "load"}} for j in range(100)]
    json.dump({"points": points}, open(f"{work}/upsert{b}.json", "w"))
PY

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' /proc/$SERVER/status; }
points() { curl -s "$URL/metrics" | awk -F' ' '/^fathom_collection_points\{collection="fashion-mnist"\}/ {print $2}'; }
echo "server RSS at start: $(rss_mb) MB"
# RSS sampler: one line per interval, "seconds RSS_MB points".
( start=$SECONDS
  while sleep "$RSS_EVERY"; do echo "$((SECONDS - start)) $(rss_mb) $(points)"; done ) > "$WORK/rss.txt" &
SAMPLER=$!
# Concurrent writer: upsert batches of 100 until the run ends; count failures, keep latencies.
( fails=0; n=0; end=$((SECONDS + SECONDS_TO_RUN))
  while [ $SECONDS -lt $end ]; do
    out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X PUT "$URL/collections/fashion-mnist/points" \
      -H 'Content-Type: application/json' --data-binary @"$WORK/upsert$((n % 20)).json")
    [ "${out%% *}" = 200 ] || fails=$((fails + 1)); n=$((n + 1))
    echo "${out#* }" >> "$WORK/upsert_times.txt"
  done
  sort -n "$WORK/upsert_times.txt" | awk -v n=$n -v f=$fails -v s=$SECONDS_TO_RUN \
    '{t[NR]=$1} END {printf "upserts: %d batches of 100 points in %d s = %.2f batches/s, %d failed; client latency p50 %.0f ms, p90 %.0f ms, max %.0f ms\n",
      n, s, n / s, f, t[int(NR*0.5)+0]*1000, t[int(NR*0.9)+0]*1000, t[NR]*1000}' ) &
WRITER=$!
echo "== search, one query per request, $CONNECTIONS connections, ${SECONDS_TO_RUN}s =="
FATHOM_LOAD_BODY=$WORK/search.json FATHOM_LOAD_PATH=/collections/fashion-mnist/points/search \
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_TO_RUN}s" --latency -s bench/load_search.lua "$URL"
wait $WRITER
# Server-side time of the upserts (routing to response ready): excludes connection set-up and
# waiting for a worker thread.
curl -s "$URL/metrics" | awk '/^fathom_http_request_duration_seconds_(sum|count)\{route="\/collections\/\{name\}\/points",method="PUT",code="200"\}/ {
    if ($0 ~ /_sum/) s = $2; else c = $2 }
  END { if (c > 0) printf "upserts, server-side: mean %.0f ms per batch\n", s / c * 1000 }'
echo "== batch search, 64 queries per request, 4 connections, 20s =="
FATHOM_LOAD_BODY=$WORK/batch.json FATHOM_LOAD_PATH=/collections/fashion-mnist/points/search/batch \
  wrk -t2 -c4 -d20s --latency -s bench/load_search.lua "$URL"
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=
echo "server RSS over time (seconds since start, MB, points):"
cat "$WORK/rss.txt"
echo "server RSS at end: $(rss_mb) MB"
