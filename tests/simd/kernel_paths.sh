#!/usr/bin/env bash
# Runs the kernel tests and a recall smoke test of every index (C++ and Python) under each SIMD
# path this CPU can run (FATHOM_SIMD=scalar, avx2, avx512), proves from the output which path
# each run used, and fails if a path the CPU supports was skipped or silently replaced.
#   tests/simd/kernel_paths.sh BUILD_DIR
set -euo pipefail
BUILD=${1:?usage: kernel_paths.sh BUILD_DIR}
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }
paths=(scalar)
if has avx2 && has fma; then paths+=(avx2); fi
if has avx512f && has avx512bw && has avx512vl && has avx512dq; then paths+=(avx512); fi
FILTER='AllIsas/KernelTest.*:DispatchTest.*:Configs/HnswRecallTest.*:*FlatMetricTest*:FlatTest.*:SearchAmongTest.*:HnswTest.Sq8*:DatabaseTest.FilteredRecallAtEverySelectivity'
ran=()
for p in "${paths[@]}"; do
  out=$(FATHOM_SIMD=$p "$BUILD/fathom_tests" --gtest_filter="$FILTER" 2>&1) || { echo "$out" | tail -40; echo "kernel paths: FAILED under $p" >&2; exit 1; }
  used=$(echo "$out" | sed -n 's/^kernel path: //p' | head -1)
  if [ "$used" != "$p" ]; then echo "$out" | tail -20; echo "kernel paths: asked for $p, ran $used" >&2; exit 1; fi
  if echo "$out" | grep -q "SKIPPED"; then
    echo "$out" | grep -B2 "SKIPPED" | head -20
    echo "kernel paths: tests skipped under $p although this CPU supports it" >&2; exit 1
  fi
  if [ -d "$BUILD/python/fathom" ]; then
    FATHOM_SIMD=$p PYTHONPATH="$BUILD/python" /usr/bin/python3 - <<'PY'
import numpy as np, fathom
rng = np.random.default_rng(1)
xb = rng.standard_normal((3000, 48)).astype(np.float32)
xq = rng.standard_normal((50, 48)).astype(np.float32)
for metric in ("l2", "ip", "cosine"):
    a, b = xb, xq
    if metric == "cosine":
        a = xb / np.linalg.norm(xb, axis=1, keepdims=True)
        b = xq / np.linalg.norm(xq, axis=1, keepdims=True)
    if metric == "l2":
        truth = np.argsort(((b[:, None, :] - a[None, :, :]) ** 2).sum(-1), axis=1)[:, :10]
    else:
        truth = np.argsort(-(b @ a.T), axis=1)[:, :10]
    for factory in ("Flat", "HNSW16", "HNSW16,SQ8"):
        index = fathom.Index(48, factory, metric=metric)
        index.add(xb)
        _, found = index.search(xq, 10, ef=200)
        recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
        floor = 1.0 if factory == "Flat" else 0.9
        assert recall >= floor, (factory, metric, recall)
PY
  fi
  ran+=("$p")
done
missing=""
for p in scalar avx2 avx512; do
  [[ " ${ran[*]} " == *" $p "* ]] || missing+=" $p"
done
echo "kernel paths: ran ${ran[*]}${missing:+ (this CPU cannot run:$missing)}"
