#!/usr/bin/env python3
"""The Python door, measured: fathom.Index beside hnswlib's and Faiss's Python packages, in one
process, on Fashion-MNIST (60k train vectors, 784-d; test images as queries).

Each library builds with the same number of threads, then answers the same batch of queries on
one thread, sweeping ef. Recall@10 is against exact ground truth (exact integer distances; a result tied
with the true 10th distance counts as a hit). The summary gives QPS at the first ef reaching
recall 0.95 and 0.99, relative to hnswlib M=16 — the same comparison bench/ann_bench makes in C++,
here including each library's Python binding overhead.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py [--queries 2000] [--threads 2]
"""
from __future__ import annotations

import argparse
import gzip
import os
import time

import faiss
import hnswlib
import numpy as np

import fathom

DATA = "/usr/share/datasets/fashion-mnist"
EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256]


def load(name: str, count: int) -> np.ndarray:
    raw = gzip.open(os.path.join(DATA, name)).read()
    return np.frombuffer(raw, dtype=np.uint8, offset=16)[:count * 784].reshape(-1, 784).astype(np.float32)


def exact_sq_l2(base: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Exact squared distances (pixels are integers: int64 arithmetic has no rounding)."""
    diff = base[np.where(ids < 0, 0, ids)].astype(np.int64) - queries[:, None, :].astype(np.int64)
    return (diff * diff).sum(-1)


def recall_at_10(ids: np.ndarray, base: np.ndarray, queries: np.ndarray, kth: np.ndarray) -> float:
    hits = (exact_sq_l2(base, queries, ids) <= kth[:, None]) & (ids >= 0)
    return float(hits.sum()) / ids.size


def timed(fn, repeats: int = 3):
    """Median wall time of fn() over repeats, and its last result."""
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="build threads")
    p.add_argument("--repeats", type=int, default=3, help="searches per point (median)")
    a = p.parse_args()

    base = load("train-images-idx3-ubyte.gz", 60000)
    queries = load("t10k-images-idx3-ubyte.gz", a.queries)
    flat = faiss.IndexFlatL2(784)
    flat.add(base)
    # Faiss's float32 GEMM distances round at these magnitudes (~1e7): take its top 100 and
    # find the exact 10th distance among them.
    _, candidates = flat.search(queries, 100)
    kth = np.sort(exact_sq_l2(base, queries, candidates), axis=1)[:, 9]
    print(f"Fashion-MNIST: {len(base)} x 784 base, {len(queries)} queries, k=10; "
          f"build threads {a.threads}, search 1 thread, batch of all queries")

    runners = {}

    def build_fathom(factory):
        def build():
            idx = fathom.Index(784, factory, metric="l2")
            idx.add(base, threads=a.threads)
            return idx
        seconds, idx = timed(build, 1)
        runners[f"fathom {factory}"] = (seconds, lambda ef: idx.search(queries, 10, ef=ef)[1])

    def build_hnswlib(m):
        def build():
            idx = hnswlib.Index(space="l2", dim=784)
            idx.init_index(max_elements=len(base), M=m, ef_construction=200)
            idx.add_items(base, num_threads=a.threads)
            return idx
        seconds, idx = timed(build, 1)

        def search(ef):
            idx.set_ef(max(ef, 10))
            return idx.knn_query(queries, k=10, num_threads=1)[0].astype(np.int64)
        runners[f"hnswlib M={m}"] = (seconds, search)

    def build_faiss(m):
        def build():
            faiss.omp_set_num_threads(a.threads)
            idx = faiss.IndexHNSWFlat(784, m)
            idx.hnsw.efConstruction = 200
            idx.add(base)
            return idx
        seconds, idx = timed(build, 1)

        def search(ef):
            faiss.omp_set_num_threads(1)
            idx.hnsw.efSearch = max(ef, 10)
            return idx.search(queries, 10)[1]
        runners[f"faiss HNSW{m}"] = (seconds, search)

    build_hnswlib(16)
    build_faiss(32)
    build_fathom("HNSW16")
    build_fathom("HNSW32,SQ8")

    curves = {}
    print(f"\n{'index':<20} {'build s':>8} {'ef':>5} {'recall@10':>10} {'QPS':>9}")
    for name, (build_s, search) in runners.items():
        curves[name] = []
        for ef in EFS:
            seconds, ids = timed(lambda: search(ef), a.repeats)
            r = recall_at_10(ids, base, queries, kth)
            qps = len(queries) / seconds
            curves[name].append((ef, r, qps))
            print(f"{name:<20} {build_s:>8.1f} {ef:>5} {r:>10.4f} {qps:>9.0f}")

    def qps_at(name, target):
        for ef, r, qps in curves[name]:
            if r >= target:
                return qps
        return None

    print(f"\nQPS relative to hnswlib M=16 at the first ef reaching the recall (one thread):")
    print(f"{'index':<20} {'@0.95':>8} {'@0.99':>8}")
    for name in runners:
        cells = []
        for target in (0.95, 0.99):
            ours, ref = qps_at(name, target), qps_at("hnswlib M=16", target)
            cells.append(f"{ours / ref:>7.2f}x" if ours and ref else f"{'-':>8}")
        print(f"{name:<20} {cells[0]} {cells[1]}")


if __name__ == "__main__":
    main()
