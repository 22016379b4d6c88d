#!/usr/bin/env bash
# Installs dependencies, builds Fathom with its tests, and runs every test.
#   FATHOM_TSAN=0 scripts/test.sh   skips the ThreadSanitizer build of the concurrency tests.
#   FATHOM_FUZZ_SECONDS=600 scripts/test.sh   fuzzes requests and filters longer (default 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
JOBS=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_BUILD_TESTS=ON -DFATHOM_BUILD_BENCH=ON \
  -DFATHOM_BUILD_PYTHON=ON
cmake --build build -j "$JOBS"
# The Python package, installed the way users install it (offline, Debian's Python and numpy),
# into .venv; the build reuses build/. The pytest suite in ctest imports it from build/python.
/usr/bin/python3 -m venv --system-site-packages .venv
FATHOM_BUILD_DIR="$PWD/build" .venv/bin/pip install -q --no-build-isolation --no-deps ./python
(cd /tmp && "$OLDPWD/.venv/bin/python" -c 'import fathom, numpy as np
i = fathom.Index(8, "HNSW16"); i.add(np.eye(8, dtype=np.float32)); assert i.search(np.eye(8)[:1], 1)[1][0, 0] == 0
print("python package installed:", fathom.__file__)')
# Qdrant's JavaScript client for the compatibility tests, at the versions package-lock.json pins.
npm ci --prefix tests/qdrant-js --no-audit --no-fund --loglevel=error
# puppeteer-core for the web console's browser tests (Debian's chromium; nothing downloaded).
npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
ctest --test-dir build --output-on-failure -j "$JOBS"
# What the durability and SIMD tests exercised (ctest keeps passing tests' output in its log).
grep -hE "^(crash-test|power-loss|kernel paths|snippets|cluster-test|cluster-api)( \(maintenance\))?:" build/Testing/Temporary/LastTest.log || true
# libFuzzer (clang, ASan + UBSan) on request bodies and both filter syntaxes, for a bounded time.
CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFATHOM_BUILD_FUZZERS=ON -DFATHOM_BUILD_TESTS=OFF
cmake --build build-fuzz -j "$JOBS" --target request_fuzz
FUZZ_CORPUS=$(mktemp -d)
cp tests/fuzz/corpus/* "$FUZZ_CORPUS"/
if ! build-fuzz/request_fuzz -max_total_time="${FATHOM_FUZZ_SECONDS:-30}" -rss_limit_mb=4096 \
    "$FUZZ_CORPUS" > "$FUZZ_CORPUS.log" 2>&1; then
  cat "$FUZZ_CORPUS.log"
  echo "request_fuzz found a failure (reproducer above)" >&2
  exit 1
fi
echo "request_fuzz: $(grep -E '^Done [0-9]+ runs' "$FUZZ_CORPUS.log")"
rm -rf "$FUZZ_CORPUS" "$FUZZ_CORPUS.log"
# ThreadSanitizer over the tests where threads overlap on purpose (concurrent searches and writes,
# drops and closes under running calls, shared scratch and evaluation, the recall monitor's thread).
if [ "${FATHOM_TSAN:-1}" = 1 ]; then
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFATHOM_SANITIZE=thread \
    -DFATHOM_BUILD_TESTS=ON
  cmake --build build-tsan -j "$JOBS" --target fathom_tests
  # OpenBLAS on one thread: its worker threads synchronise inside the uninstrumented library, so
  # TSAN reports k-means' reads of an sgemm result as races with the worker that wrote it.
  OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp" build-tsan/fathom_tests \
    --gtest_filter='*Concurrent*:*Drop*While*:*Threads*:*Stress*:*Handles*:*During*:*RecallEstimate*:*RecallMonitor*'
  echo "tsan: concurrency tests clean"
fi
