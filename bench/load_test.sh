#!/usr/bin/env bash
# REST load run (a benchmark, not a test): the server with the Fashion-MNIST demo collection,
# searched by wrk at concurrency 32 while a client upserts batches of 100 points in a loop.
# Reports wrk's throughput and latency percentiles, upsert errors, and the server's RSS at start
# and end.   bench/load_test.sh [SECONDS=60] [CONNECTIONS=32]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
CONNECTIONS=${2:-32}
BIN=build/src/cli/fathom
[ -x "$BIN" ] || { echo "build first: scripts/test.sh" >&2; exit 1; }
WORK=$(mktemp -d)
PORT=${FATHOM_LOAD_PORT:-6391}
URL=http://127.0.0.1:$PORT
"$BIN" serve --demo --data "$WORK/data" --port "$PORT" > "$WORK/server.out" 2> "$WORK/server.err" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
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

rss() { awk '/VmRSS/ {print $2 / 1024 " MB"}' /proc/$SERVER/status; }
echo "server RSS at start: $(rss)"
# Concurrent writer: upsert batches of 100 until the run ends; count failures.
( fails=0; n=0; end=$((SECONDS + SECONDS_TO_RUN))
  while [ $SECONDS -lt $end ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$URL/collections/fashion-mnist/points" \
      -H 'Content-Type: application/json' --data-binary @"$WORK/upsert$((n % 20)).json")
    [ "$code" = 200 ] || fails=$((fails + 1)); n=$((n + 1))
  done
  echo "upserts: $n batches of 100 points, $fails failed" ) &
WRITER=$!
echo "== search, one query per request, $CONNECTIONS connections, ${SECONDS_TO_RUN}s =="
FATHOM_LOAD_BODY=$WORK/search.json FATHOM_LOAD_PATH=/collections/fashion-mnist/points/search \
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_TO_RUN}s" --latency -s bench/load_search.lua "$URL"
wait $WRITER
echo "== batch search, 64 queries per request, 4 connections, 20s =="
FATHOM_LOAD_BODY=$WORK/batch.json FATHOM_LOAD_PATH=/collections/fashion-mnist/points/search/batch \
  wrk -t2 -c4 -d20s --latency -s bench/load_search.lua "$URL"
echo "server RSS at end: $(rss)"
