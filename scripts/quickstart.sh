#!/usr/bin/env bash
# Installs dependencies, builds Fathom, and starts the REST server on ./fathom-data. A new data
# directory first gets the demo collection (Fashion-MNIST, 70k images, label and split as
# payload). Once the server listens it prints the URL and a curl that searches it; Ctrl-C stops
# the server cleanly.
#   FATHOM_DATA=DIR FATHOM_PORT=PORT scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
mkdir -p build
LOG=build/quickstart-build.log
echo "fathom: building (compiler output in $LOG) ..."
if ! { cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_BUILD_TESTS=OFF &&
       cmake --build build -j "$(nproc)" --target fathom_cli; } > "$LOG" 2>&1; then
  tail -n 40 "$LOG"
  echo "fathom: the build failed; the whole output is in $LOG" >&2
  exit 1
fi
echo "fathom: built build/src/cli/fathom (put it on PATH: export PATH=\"$PWD/build/src/cli:\$PATH\")"
DATA="${FATHOM_DATA:-./fathom-data}"
PORT="${FATHOM_PORT:-6333}"
hint() {
  cat <<'MSG' | sed "s/PORT/${PORT}/g"

Fathom is ready at http://127.0.0.1:PORT

  Web console: http://127.0.0.1:PORT/console   (open it in a browser)

Or from a shell:

  # the 5 test-set sneakers (label 7) nearest to an all-black image
  curl -s -X POST http://127.0.0.1:PORT/collections/fashion-mnist/points/search \
    -H 'Content-Type: application/json' \
    -d "{\"vector\": [$(seq -s, 0 783 | sed 's/[0-9]\+/0/g')], \"limit\": 5,
         \"filter\": \"split = 'test' AND label = 7\", \"with_payload\": true}"

  curl -s http://127.0.0.1:PORT/collections      # list collections; docs/API.md has every endpoint

MSG
}
echo "fathom: starting the server on ${DATA} (the first start loads the demo collection) ..."
# The hint is printed when the server says it listens, not before. Ctrl-C reaches the server
# directly (same process group); a SIGTERM to this script is passed on to it.
build/src/cli/fathom serve --demo --data "$DATA" --port "$PORT" |
  while IFS= read -r line; do
    echo "$line"
    case "$line" in *"listening on"*) hint ;; esac
  done &
PIPELINE=$!
trap '' INT
trap 'pkill -TERM -f "fathom serve --demo --data $DATA --port $PORT" || true' TERM
wait "$PIPELINE"
