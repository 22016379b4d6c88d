#!/usr/bin/env bash
# Installs dependencies, builds Fathom, and runs its main job: the benchmark beside hnswlib and
# Faiss on Fashion-MNIST, printing the recall/QPS table and the speed ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_BUILD_BENCH=ON
cmake --build build -j "$(nproc)" --target ann_bench
mkdir -p bench/results
exec build/bench/ann_bench --json bench/results/fashion-mnist.json "$@"
