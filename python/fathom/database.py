"""The embedded database: durable named collections in a local directory (RocksDB underneath)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

from . import _core
from ._common import (AliasMethods, PayloadMethods, Filter, Hit, Point, PointId, Vectors, as_matrix, check_ef, check_k,
                      filter_text, id_list, is_single_id, named_vectors, payload_texts,
                      simplify_vectors)
from .errors import InvalidArgumentError, NotFoundError

SearchResult = Union[List[Hit], List[List[Hit]]]


def _examples(examples: Sequence[Union[PointId, npt.ArrayLike]]) -> List[Any]:
    """Recommend examples for the core: ids as they are, anything else as a float32 vector."""
    if isinstance(examples, (str, bytes)) or not isinstance(examples, (list, tuple)):
        raise InvalidArgumentError("examples must be a list of ids or vectors, got " + type(examples).__name__)
    return [e if isinstance(e, (int, str)) and not isinstance(e, bool) else np.asarray(e, dtype=np.float32)
            for e in examples]


class Collection(PayloadMethods):
    """A named collection of records (id, vector(s), JSON payload) with its indexes.

    Get one from :meth:`Database.create_collection` or :meth:`Database.get_collection`. The
    methods are the same on :class:`fathom.Client`'s remote collections.
    """

    def __init__(self, core: _core.Collection) -> None:
        self._c = core

    @property
    def name(self) -> str:
        return self._c.name

    @property
    def spec(self) -> Dict[str, Any]:
        """``{"name", "vectors": [{"name", "dim", "metric", "index"}], "indexed_fields"}``."""
        return self._c.spec()

    @property
    def metadata(self) -> Dict[str, Any]:
        """The collection's metadata (Qdrant's collection metadata), e.g. which model made the
        vectors: ``{"model": {"name": "resnet50", "version": "2", "dimension": 2048}}``."""
        result: Dict[str, Any] = json.loads(self._c.metadata())
        return result

    def update_metadata(self, changes: Mapping[str, Any]) -> Dict[str, Any]:
        """Merges ``changes`` into the metadata key by key (``None`` removes a key), stores it in
        one durable write and returns the result (at most 64 KiB of JSON)."""
        merged: Dict[str, Any] = json.loads(self._c.update_metadata(json.dumps(dict(changes))))
        return merged

    @property
    def dim(self) -> int:
        """Dimension of the unnamed vector (or of the first named one)."""
        return self.spec["vectors"][0]["dim"]

    def upsert(self, ids: Sequence[PointId], vectors: Vectors,
               payloads: Optional[Sequence[Optional[Mapping[str, Any]]]] = None) -> int:
        """Inserts or replaces records: ``vectors`` is an (n, dim) array (or ``{name: array}`` for
        named vectors), ``payloads`` n dicts or None. One atomic, durable write; the whole batch
        is validated first and nothing is written on error. Returns n."""
        ids = id_list(ids)
        return self._c.upsert(ids, named_vectors(vectors), payload_texts(payloads, len(ids)))

    @overload
    def get(self, ids: PointId, with_vector: bool = True) -> Optional[Point]: ...  # type: ignore[misc]
    @overload
    def get(self, ids: Sequence[PointId], with_vector: bool = True) -> List[Optional[Point]]: ...

    def get(self, ids: Any, with_vector: bool = True) -> Any:
        """Records by id, None for ids that do not exist (one id gives one result)."""
        single = is_single_id(ids)
        rows = self._c.get([ids] if single else id_list(ids), with_vector)
        points = [None if r is None else Point(r[0], json.loads(r[1]), simplify_vectors(r[2]))
                  for r in rows]
        return points[0] if single else points

    def delete(self, ids: Optional[Sequence[PointId]] = None, filter: Optional[Filter] = None) -> int:
        """Deletes by ids or by filter (exactly one); returns how many records were deleted."""
        if (ids is None) == (filter is None):
            raise InvalidArgumentError("delete takes either ids or filter")
        if ids is not None:
            return self._c.delete([ids] if is_single_id(ids) else id_list(ids))
        return self._c.delete_by_filter(filter_text(filter))

    def _update_payload(self, op: str, payload: Optional[Mapping[str, Any]], keys: Sequence[str],
                        ids: Optional[Sequence[PointId]], filter: Optional[Filter]) -> int:
        if (ids is None) == (filter is None):
            raise InvalidArgumentError("a payload update takes either ids or filter")
        id_arg: List[Any] = [] if ids is None else ([ids] if is_single_id(ids) else id_list(ids))
        text = "" if filter is None else filter_text(filter)
        return self._c.update_payload(op, "" if payload is None else json.dumps(payload), list(keys), id_arg, text)

    def _set_payload_index(self, field: str, field_type: Optional[str]) -> None:
        if field_type is None:
            self._c.delete_payload_index(field)
        else:
            self._c.create_payload_index(field, field_type)

    def count(self, filter: Optional[Filter] = None) -> int:
        """Number of records, or of records matching the filter."""
        return self._c.count(filter_text(filter))

    def __len__(self) -> int:
        return self._c.count("")

    def search(self, queries: npt.ArrayLike, k: int = 10, *, filter: Optional[Filter] = None,
               ef: Optional[int] = None, with_payload: bool = True, with_vector: bool = False,
               vector: str = "", rerank: Optional[int] = None, nprobe: Optional[int] = None,
               upper_ef: Optional[int] = None, checks: Optional[int] = None) -> SearchResult:
        """k nearest records to each query, closest first.

        ``queries``: one vector (returns a list of :class:`Hit`) or an (n, dim) array (returns n
        lists). ``filter``: text form (``'label = 3 AND price < 50'``) or Qdrant-style JSON dict.
        ``ef``: HNSW beam width for this search. ``vector``: which named vector to search.
        ``rerank``: for ",SQ8" indexes, how many best candidates by code distance get exact
        distances (default 2k; more lifts the recall ceiling of the codes). ``nprobe``: for IVF
        indexes, how many inverted lists are scanned (default: the index's, 16). ``upper_ef``: HNSW
        beam width on level 1 (default greedy descent); for many separated clusters at scale.
        ``checks``: for KDForest and BallTree indexes, how many points a search examines (default:
        exact).
        """
        results, _ = self._search(queries, k, filter, ef, with_payload, with_vector, vector, rerank, nprobe,
                                  upper_ef, checks)
        return results

    def search_with_strategy(self, queries: npt.ArrayLike, k: int = 10, *,
                             filter: Optional[Filter] = None, ef: Optional[int] = None,
                             with_payload: bool = True, with_vector: bool = False,
                             vector: str = "", rerank: Optional[int] = None,
                             nprobe: Optional[int] = None,
                             upper_ef: Optional[int] = None,
                             checks: Optional[int] = None) -> Tuple[SearchResult, str]:
        """Like :meth:`search`, also returning the strategy the collection chose
        (``"graph"``, ``"exact-scan"`` or ``"graph+filter"``)."""
        return self._search(queries, k, filter, ef, with_payload, with_vector, vector, rerank, nprobe,
                            upper_ef, checks)

    def _search(self, queries: npt.ArrayLike, k: int, filter: Optional[Filter], ef: Optional[int],
                with_payload: bool, with_vector: bool, vector: str,
                rerank: Optional[int] = None, nprobe: Optional[int] = None,
                upper_ef: Optional[int] = None, checks: Optional[int] = None) -> Tuple[SearchResult, str]:
        single = np.ndim(queries) == 1
        for name, value in (("rerank", rerank), ("nprobe", nprobe), ("upper_ef", upper_ef), ("checks", checks)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 0):
                raise InvalidArgumentError(f"{name} must be a non-negative integer, got {value!r}")
        rows, strategy = self._c.search(queries, check_k(k), check_ef(ef), filter_text(filter),
                                        with_payload, with_vector, vector, int(rerank or 0),
                                        int(nprobe or 0), int(upper_ef or 0), int(checks or 0))
        loads = json.loads
        results: List[List[Hit]] = [[Hit(h[0], h[1], None if h[2] is None else loads(h[2]), simplify_vectors(h[3]))
                    for h in row] for row in rows]
        return (results[0] if single else results), strategy

    def recommend(self, positive: Sequence[Union[PointId, npt.ArrayLike]],
                  negative: Sequence[Union[PointId, npt.ArrayLike]] = (), k: int = 10, *,
                  strategy: str = "average_vector", filter: Optional[Filter] = None,
                  ef: Optional[int] = None, with_payload: bool = True, with_vector: bool = False,
                  vector: str = "") -> List[Hit]:
        """Records like the ``positive`` examples and unlike the ``negative`` ones ("more like
        this"), best first; the example records themselves are never returned.

        Examples are stored ids or vectors. ``strategy``: ``"average_vector"`` searches once for
        2 * mean(positives) - mean(negatives); ``"best_score"`` scores candidates near each
        positive by their best positive similarity when it beats their best negative one, else by
        minus the square of the best negative (``Hit.distance`` is minus that score). As Qdrant's
        recommend.
        """
        rows = self._c.recommend(_examples(positive), _examples(negative), check_k(k), strategy,
                                 filter_text(filter), check_ef(ef), with_payload, with_vector, vector)
        loads = json.loads
        return [Hit(h[0], h[1], None if h[2] is None else loads(h[2]), simplify_vectors(h[3])) for h in rows]

    def snapshot(self, path: "str | os.PathLike[str]") -> None:
        """Writes a consistent copy of this collection into ``path`` (which must not exist)."""
        self._c.snapshot(os.fspath(path))

    def checkpoint(self) -> None:
        """Writes index checkpoints now and trims the operation log (recovery gets faster).
        Writes and searches go on meanwhile; automatic checkpoints run in the background."""
        self._c.checkpoint()

    def tune(self, target_recall: float = 0.95, *, k: int = 10, sample: int = 500,
             queries: Optional[npt.ArrayLike] = None, vector: str = "",
             values: Optional[Sequence[int]] = None, store: bool = True) -> Dict[str, Any]:
        """Finds the cheapest setting of the index's speed knob (HNSW ``ef``, IVF ``nprobe``,
        tree ``checks``) whose recall@k against exact search reaches ``target_recall`` and makes
        it the default for searches that do not set it (kept across restarts). The queries are
        ``sample`` of the collection's own points, each moved off itself by its nearest-neighbour
        distance (so the setting holds for new queries), or ``queries`` as given. Returns
        ``{"knob", "value", "recall", "reached", "queries", "tried": [(value, recall), ...]}``.
        ``values`` tries these settings (ascending) instead of the built-in ladder; with
        ``store=False`` nothing is kept: ``tune(values=[64], store=False)["recall"]`` is the
        recall of ef 64 on the collection."""
        flat: List[float] = []
        if queries is not None:
            flat = as_matrix(queries, "queries").ravel().tolist()
        return self._c.tune(float(target_recall), int(k), int(sample), vector, flat,
                            [int(v) for v in values or []], bool(store))

    def reset_tuning(self, vector: str = "") -> bool:
        """Forgets what :meth:`tune` stored (durably): searches that do not set the knob use the
        index's own default again. Returns whether there was a tuned default."""
        return bool(self._c.reset_tuning(vector))

    def optimize(self) -> None:
        """Runs index housekeeping now (relinking around deleted points and freeing them), which
        otherwise runs in the background once deletions pass 10% of a graph."""
        self._c.optimize()

    @property
    def memory_bytes(self) -> int:
        """RAM held by the collection (indexes, id maps, payload indexes, cached payloads)."""
        return self._c.memory_bytes

    def usage(self) -> Dict[str, int]:
        """Where the collection's bytes are: ``ram_bytes``, ``disk_bytes`` and its parts
        ``vectors_disk_bytes`` (on-disk vectors), ``records_disk_bytes`` (records and log, an
        estimate) and ``index_files_bytes`` (checkpoints)."""
        return dict(self._c.usage())

    def __repr__(self) -> str:
        return f"fathom.Collection({self.name!r})"


def _vector_specs(dim: Optional[int], metric: str, index: str, on_disk: bool,
                  vectors: Optional[Mapping[str, Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """[{"name", "dim", "metric", "index", "on_disk"}] from create_collection's arguments."""
    if vectors is None:
        if dim is None:
            raise InvalidArgumentError("create_collection needs dim (or vectors={name: {'dim': ...}})")
        return [{"name": "", "dim": dim, "metric": metric, "index": index, "on_disk": on_disk}]
    if dim is not None:
        raise InvalidArgumentError("create_collection takes dim or vectors, not both")
    specs = []
    for name, v in vectors.items():
        unknown = set(v) - {"dim", "metric", "index", "on_disk"}
        if unknown or "dim" not in v:
            raise InvalidArgumentError(
                f"vectors[{name!r}] must be {{'dim': int, 'metric': str, 'index': str, 'on_disk': bool}}, "
                f"got keys {sorted(v)}")
        specs.append({"name": name, "dim": v["dim"], "metric": v.get("metric", metric),
                      "index": v.get("index", index), "on_disk": bool(v.get("on_disk", on_disk))})
    return specs


class Database(AliasMethods):
    """A durable database in a local directory (created if missing).

    >>> db = fathom.Database("data")
    >>> col = db.create_collection("images", dim=128, metric="cosine", index="HNSW32",
    ...                            indexed_fields={"label": "integer"})

    ``durability="fsync"`` (default) makes every acknowledged write survive power loss;
    ``"buffered"`` survives a process crash and ingests much faster. Use it as a context manager
    or call :meth:`close` (which checkpoints the indexes so the next open is fast).
    """

    def __init__(self, path: "str | os.PathLike[str]", *, durability: str = "fsync",
                 checkpoint_every: int = 50000) -> None:
        self.path = os.fspath(path)
        self._db = _core.Database(self.path, durability, checkpoint_every)

    def close(self) -> None:
        self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def list_collections(self) -> List[str]:
        return self._db.list_collections()

    def create_collection(self, name: str, dim: Optional[int] = None, metric: str = "l2",
                          index: str = "HNSW32", *,
                          indexed_fields: Optional[Mapping[str, str]] = None,
                          vectors: Optional[Mapping[str, Mapping[str, Any]]] = None,
                          on_disk: bool = False, on_disk_payload: bool = False,
                          metadata: Optional[Mapping[str, Any]] = None) -> Collection:
        """Creates a collection. ``metric``: "l2", "ip", "cosine" or "l1" (Manhattan; Flat or float32
        HNSW only); ``index``: a factory string
        ("HNSW32", "HNSW32,SQ8", "Flat"); ``indexed_fields``: payload fields to index for filters,
        {field: "keyword" | "integer" | "float" | "bool"}. For several vectors per record pass
        ``vectors={"image": {"dim": 512, "metric": "cosine"}, "text": {"dim": 384}}`` instead of dim.
        ``on_disk=True`` keeps float vectors in a file and only the index's codes in RAM (needs an
        index that walks codes: "HNSW32,SQ8" or "HNSW32,RBQ" with l2 or cosine, "HNSW32,FP16" or
        "HNSW32,SQ4", or IVF lists of codes such as "IVF1024,SQ8"); ``on_disk_payload=True`` keeps
        payloads only in the record store. ``metadata``: a JSON-able dict kept with the collection
        (:attr:`Collection.metadata`). Raises AlreadyExistsError if the name is taken."""
        specs = [_core.VectorSpec(s["name"], s["dim"], s["metric"], s["index"], s["on_disk"])
                 for s in _vector_specs(dim, metric, index, on_disk, vectors)]
        return Collection(self._db.create_collection(name, specs, dict(indexed_fields or {}),
                                                     on_disk_payload, json.dumps(dict(metadata or {}))))

    def get_collection(self, name: str) -> Collection:
        """The named collection; NotFoundError if there is none."""
        return Collection(self._db.get_collection(name))

    __getitem__ = get_collection

    def drop_collection(self, name: str) -> None:
        """Drops a collection (and its aliases)."""
        self._db.drop_collection(name)


    def update_aliases(self, actions: Sequence[Tuple[str, str, str]]) -> None:
        """Applies ``(kind, alias, other)`` actions in order, all or none: ``("create", alias,
        collection)``, ``("delete", alias, "")``, ``("rename", alias, new_alias)``."""
        self._db.update_aliases([(str(k), str(a), str(o)) for k, a, o in actions])

    def aliases(self) -> Dict[str, str]:
        """{alias: collection}."""
        return dict(self._db.aliases())

    def snapshot(self, path: "str | os.PathLike[str]") -> List[str]:
        """Writes a consistent snapshot of every collection into ``path/<collection>`` (``path``
        is created; the collection directories must not exist). Returns the collection names."""
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        names = self.list_collections()
        for name in names:
            self.get_collection(name).snapshot(os.path.join(path, name))
        return names

    def restore_snapshot(self, path: "str | os.PathLike[str]", name: str = "") -> Collection:
        """Restores one collection snapshot (a directory written by Collection.snapshot) into this
        database, under its own name or ``name``."""
        return Collection(self._db.restore_snapshot(os.fspath(path), name))

    def restore(self, path: "str | os.PathLike[str]") -> List[str]:
        """Restores every collection of a database snapshot written by :meth:`snapshot`."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise NotFoundError(f"database snapshot {path!r} does not exist or is not a directory")
        names = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
        return [self._db.restore_snapshot(os.path.join(path, d), "").name for d in names]

    def __repr__(self) -> str:
        return f"fathom.Database({self.path!r})"

