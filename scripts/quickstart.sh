#!/usr/bin/env bash
# Installs dependencies, builds Fathom, and starts the REST server on ./fathom-data. A new data
# directory first gets the demo collection (Fashion-MNIST, 70k images, label and split as
# payload). Prints the URL and a curl that searches it; Ctrl-C stops the server cleanly.
#   FATHOM_DATA=DIR FATHOM_PORT=PORT scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_BUILD_TESTS=OFF
cmake --build build -j "$(nproc)" --target fathom_cli
DATA="${FATHOM_DATA:-./fathom-data}"
PORT="${FATHOM_PORT:-6333}"
echo
echo "Fathom is starting on http://127.0.0.1:${PORT} (data in ${DATA}). Once it listens, try:"
cat <<'MSG' | sed "s/PORT/${PORT}/g"

  # the 5 test-set sneakers (label 7) nearest to an all-black image
  curl -s -X POST http://127.0.0.1:PORT/collections/fashion-mnist/points/search \
    -H 'Content-Type: application/json' \
    -d "{\"vector\": [$(seq -s, 0 783 | sed 's/[0-9]\+/0/g')], \"limit\": 5,
         \"filter\": \"split = 'test' AND label = 7\", \"with_payload\": true}"

  curl -s http://127.0.0.1:PORT/collections      # list collections; docs/API.md has every endpoint

MSG
exec build/src/cli/fathom serve --demo --data "$DATA" --port "$PORT"
