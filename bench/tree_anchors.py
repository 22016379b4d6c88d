#!/usr/bin/python3
"""Exact trees beside scikit-learn (issue 11): Fathom's KDTree and BallTree against scikit-learn's
KDTree and BallTree (Debian python3-sklearn), same data, same process, one thread each.

  PYTHONPATH=build/python /usr/bin/python3 bench/tree_anchors.py [--nq 10000] [--json FILE]

Data sets: Fashion-MNIST reduced to 16 dimensions by PCA (fitted on the 60,000 training images;
the test images are the queries), and 1M uniform points in 3-D and 8-D (queries drawn the same
way). Both libraries answer a batch of queries with k = 10 in one call (scikit-learn's query
is single-threaded Cython; Fathom's batch search runs on the calling thread), so per-call
overhead is not measured. Recall is checked against brute force (numpy, float64) on the first
200 queries: both must be exact. QPS is the median of --repeats passes; build seconds and the
first pass are reported too.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")


def idx_images(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32)


def fashion_pca16():
    base = idx_images(FASHION / "train-images-idx3-ubyte.gz")
    queries = idx_images(FASHION / "t10k-images-idx3-ubyte.gz")
    mean = base.mean(axis=0)
    _, _, vt = np.linalg.svd(base - mean, full_matrices=False)
    proj = vt[:16].T.astype(np.float32)
    return ((base - mean) @ proj).astype(np.float32), ((queries - mean) @ proj).astype(np.float32)


def uniform(n, nq, dim, seed):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (n, dim)).astype(np.float32), rng.uniform(-1, 1, (nq, dim)).astype(np.float32))


def exact_top(base, queries, k):
    b = base.astype(np.float64)
    out = []
    for q in queries.astype(np.float64):
        d = ((b - q) ** 2).sum(axis=1)
        part = np.argpartition(d, k)[:k]
        out.append((part[np.argsort(d[part])], np.sort(d[part])[k - 1]))
    return out


def recall(found_ids, base, queries, truth):
    """Fraction of returned ids within the true k-th distance (ties count as hits)."""
    hits = total = 0
    for ids, q, (_, kth) in zip(found_ids, queries, truth):
        d = ((base[ids].astype(np.float64) - q) ** 2).sum(axis=1)
        hits += int((d <= kth * (1 + 1e-5) + 1e-9).sum())
        total += len(ids)
    return hits / total


def timed(fn, repeats):
    times = []
    result = None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nq", type=int, default=10000)
    ap.add_argument("--n", type=int, default=1_000_000, help="points of the uniform sets")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    import fathom
    from sklearn.neighbors import BallTree, KDTree
    import sklearn

    sets = []
    if FASHION.exists():
        b, q = fashion_pca16()
        sets.append(("fashion-mnist PCA-16", b, q[: args.nq]))
    for dim in (3, 8):
        b, q = uniform(args.n, args.nq, dim, seed=dim)
        sets.append((f"uniform {dim}-D", b, q))

    rows = []
    print(f"# scikit-learn {sklearn.__version__}, k = {args.k}, one thread, batch queries; "
          f"QPS = median of {args.repeats} passes", flush=True)
    print(f"{'data':22} {'n':>8} {'library':8} {'index':10} {'build s':>8} {'QPS':>10} {'recall':>7}")
    for name, base, queries in sets:
        truth = exact_top(base, queries[:200], args.k)
        candidates = [
            ("fathom", "KDTree", lambda b: _fathom(fathom, b, "KDTree"), lambda t, q: t.search(q, args.k)[1]),
            ("fathom", "BallTree", lambda b: _fathom(fathom, b, "BallTree"), lambda t, q: t.search(q, args.k)[1]),
            ("sklearn", "KDTree", lambda b: KDTree(b), lambda t, q: t.query(q, k=args.k, return_distance=False)),
            ("sklearn", "BallTree", lambda b: BallTree(b), lambda t, q: t.query(q, k=args.k, return_distance=False)),
        ]
        for library, index, build, search in candidates:
            t = time.perf_counter()
            tree = build(base)
            build_s = time.perf_counter() - t
            found, times = timed(lambda: search(tree, queries), args.repeats)
            qps = len(queries) / float(np.median(times))
            r = recall(np.asarray(found)[:200], base, queries[:200], truth)
            rows.append({"data": name, "n": len(base), "dim": base.shape[1], "library": library, "index": index,
                         "build_s": round(build_s, 3), "qps": round(qps, 1), "recall": round(r, 4)})
            print(f"{name:22} {len(base):8d} {library:8} {index:10} {build_s:8.2f} {qps:10.1f} {r:7.4f}", flush=True)
            del tree
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def _fathom(fathom, base, factory):
    index = fathom.Index(base.shape[1], factory, "l2")
    index.add(base)
    index.search(base[:1], 1)  # (the tree is built on the first search after adds: count it as build)
    return index


if __name__ == "__main__":
    sys.exit(main())
