"""Test data and reference answers (numpy brute force)."""
from __future__ import annotations

import numpy as np


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 32) -> np.ndarray:
    """Gaussian clusters: a realistic, non-trivial neighbourhood structure."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32) * 4
    points = centres[rng.integers(0, clusters, size=n)] + rng.normal(size=(n, dim)).astype(np.float32)
    return np.ascontiguousarray(points, dtype=np.float32)


def brute_force(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "l2"):
    """(distances, ids) of the exact k nearest rows of `base`, with the library's distances."""
    base = base.astype(np.float64)
    queries = queries.astype(np.float64)
    if metric == "l2":
        d = (queries ** 2).sum(1)[:, None] - 2 * queries @ base.T + (base ** 2).sum(1)[None, :]
    elif metric == "ip":
        d = -(queries @ base.T)
    elif metric == "cosine":
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        d = 1 - q @ b.T
    else:
        raise ValueError(metric)
    ids = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, ids, axis=1), ids


def recall(found_ids, true_ids) -> float:
    """Mean fraction of the true k nearest that were found."""
    hits = sum(len(set(map(int, f)) & set(map(int, t))) for f, t in zip(found_ids, true_ids))
    return hits / float(np.size(true_ids))
