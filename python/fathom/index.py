"""A Faiss-style vector index: ``add``, ``search`` returning ``(D, I)``, ``remove``, ``save``."""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np
import numpy.typing as npt

from . import _core
from ._common import check_k
from .errors import InvalidArgumentError


def _int64_ids(ids: npt.ArrayLike) -> np.ndarray:
    """ids as int64 without silent truncation (floats) or wrap-around (huge unsigned)."""
    a = np.asarray(ids)
    if a.size == 0:
        return a.astype(np.int64).reshape(-1)
    if a.dtype.kind not in "iu":
        raise InvalidArgumentError(f"ids must be integers, got an array of dtype {a.dtype}")
    if a.dtype.kind == "u" and a.max() > np.uint64(np.iinfo(np.int64).max):
        raise InvalidArgumentError("ids must be below 2**63")
    return a.astype(np.int64, copy=False)


class Index:
    """An in-memory k-NN index built from a factory string, shaped like a Faiss index.

    >>> idx = fathom.Index(128, "HNSW32", metric="l2")
    >>> idx.add(xb)                    # ids 0..n-1, or idx.add(xb, ids=my_int64_ids)
    >>> D, I = idx.search(xq, 10)      # (nq, 10) float32 distances, (nq, 10) int64 ids

    Factory strings: ``"Flat"`` (exact), ``"HNSW<M>"``, ``"HNSW<M>,SQ8"`` with optional
    ``",efC=<n>"``, ``",efS=<n>"`` and ``",pca=<p>"`` (walk on the top p principal components), and inverted files ``"IVF<nlist>,Flat"``,
    ``"IVF<nlist>,SQ8"``, ``"IVF<nlist>,PQ<m>"``, ``"IVF<nlist>,PQ<m>x4fs"`` (4-bit fast scan),
    ``"IVF<nlist>,RBQ"`` (1-bit RaBitQ codes), ``"IVF<nlist>,FP16"`` (half precision), ``"IVF<nlist>,SQ4"``, ``"OPQ<m>,IVF<nlist>,PQ<m>"``,
    ``"IVF<nlist>_HNSW<M>,..."``, the exact trees for low dimensions ``"KDTree"`` and
    ``"BallTree"``, and the randomized k-d forest ``"KDForest<trees>"`` (see docs/format/factory.md). IVF indexes learn centroids with :meth:`train` (as in Faiss), or
    train themselves once they hold 39 vectors per list, searching exactly until then. Metrics: ``"l2"`` (squared
    Euclidean distance), ``"ip"`` (distance = negated inner product) and ``"cosine"``
    (distance = 1 - cosine similarity); smaller is always closer. Missing results (fewer than k
    vectors) have id -1 and distance +inf, as in Faiss.

    Vectors that are float32 and C-contiguous are read in place; other arrays are converted once.
    ``search`` and ``add`` release the GIL, so Python threads search one index in parallel, and may
    run alongside ``add`` and ``remove`` from other threads; ``save`` must not run during ``add``
    or ``remove``.
    """

    def __init__(self, dim: int, factory: str = "HNSW32", metric: str = "l2",
                 *, _core_index: Optional[_core.Index] = None) -> None:
        self._index = _core_index if _core_index is not None else _core.Index(dim, factory, metric)

    @classmethod
    def load(cls, path: "str | os.PathLike[str]") -> "Index":
        """Reads an index written by :meth:`save`; a truncated or corrupted file raises
        :class:`fathom.CorruptionError`."""
        return cls(0, _core_index=_core.Index.load(os.fspath(path)))

    def save(self, path: "str | os.PathLike[str]") -> None:
        """Writes the index atomically (temporary file, fsync, rename) with a checksum."""
        self._index.save(os.fspath(path))

    def add(self, x: npt.ArrayLike, ids: Optional[npt.ArrayLike] = None, *, threads: int = 0) -> None:
        """Adds the rows of ``x`` (shape (n, dim)). ``ids`` (n int64 >= 0) defaults to counting
        up from the largest id so far + 1; an id already present is replaced. ``threads``: 0 uses
        every core. The batch is validated first (shape, NaN, duplicate ids): on error nothing
        is added."""
        self._index.add(x, None if ids is None else _int64_ids(ids), threads)

    def train(self, x: npt.ArrayLike) -> None:
        """Learns centroids and codes (IVF) from the rows of ``x``; indexes that need no
        training accept and ignore it. An IVF index trains once, before vectors reach its lists."""
        self._index.train(x)

    @property
    def is_trained(self) -> bool:
        """Whether the index has what it needs to encode vectors (Faiss's name)."""
        return self._index.is_trained

    def search(self, q: npt.ArrayLike, k: int, *, ef: int = 0, rerank: int = 0, nprobe: int = 0,
               D: Optional[np.ndarray] = None, I: Optional[np.ndarray] = None, upper_ef: int = 0,
               checks: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """Returns ``(D, I)``: float32 distances and int64 ids, shape (nq, k), closest first.

        ``ef`` widens the HNSW beam (0: the index default); ``rerank`` is how many candidates an
        index with compressed codes (SQ8, PQ) re-ranks with exact distances (0: 2k for SQ8, 4k
        for IVF PQ); ``nprobe`` is how many IVF lists are scanned (0: the index default, 16);
        ``upper_ef`` is the HNSW beam on level 1 (0: greedy descent; for data of many separated
        clusters at large scale, see docs/python.md); ``checks`` is how many points a KDForest or
        BallTree search examines (0: exact; FLANN's knob).
        ``D`` and ``I`` may be preallocated (float32 / int64, C-contiguous, shape (nq, k)) to
        search without allocating."""
        return self._index.search(q, check_k(k), ef, rerank, nprobe, D, I, upper_ef, checks)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Removes the given ids (absent ones are ignored); returns how many were present."""
        return self._index.remove(_int64_ids(ids))

    def reconstruct(self, id: int) -> np.ndarray:
        """The stored vector for ``id`` (normalised for cosine); KeyError-like NotFoundError if absent."""
        return self._index.reconstruct(id)

    def __contains__(self, id: int) -> bool:
        return self._index.contains(int(id))

    def __len__(self) -> int:
        return len(self._index)

    @property
    def ntotal(self) -> int:
        """Number of vectors (Faiss's name for ``len(index)``)."""
        return len(self._index)

    @property
    def d(self) -> int:
        """Dimension (Faiss's name)."""
        return self._index.dim

    @property
    def dim(self) -> int:
        return self._index.dim

    @property
    def metric(self) -> str:
        return self._index.metric

    @property
    def factory(self) -> str:
        """The canonical factory string, e.g. ``"HNSW32,SQ8"``."""
        return self._index.factory

    @property
    def memory_bytes(self) -> int:
        return self._index.memory_bytes

    def __repr__(self) -> str:
        return f"fathom.Index(dim={self.dim}, factory={self.factory!r}, metric={self.metric!r}, ntotal={len(self)})"
