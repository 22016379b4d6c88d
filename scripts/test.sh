#!/usr/bin/env bash
# Installs dependencies, builds Fathom with its tests, and runs every test.
#   FATHOM_TSAN=1 scripts/test.sh   also builds with ThreadSanitizer and runs the concurrency tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
JOBS=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_BUILD_TESTS=ON -DFATHOM_BUILD_BENCH=ON
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS"
if [ "${FATHOM_TSAN:-0}" = 1 ]; then
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFATHOM_SANITIZE=thread \
    -DFATHOM_BUILD_TESTS=ON
  cmake --build build-tsan -j "$JOBS" --target fathom_tests
  TSAN_OPTIONS="halt_on_error=1" build-tsan/fathom_tests --gtest_filter='*Concurrent*'
fi
