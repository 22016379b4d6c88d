"""Types and argument checks shared by the embedded Database and the HTTP Client."""
from __future__ import annotations

import json

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from .errors import InvalidArgumentError

PointId = Union[int, str]
Filter = Union[str, Mapping[str, Any]]
# One vector array, or named vectors {"image": array, "text": array}.
Vectors = Union[npt.ArrayLike, Mapping[str, npt.ArrayLike]]


@dataclass(frozen=True)
class Hit:
    """One search result: ``distance`` is the library's (smaller is closer; see fathom.Index)."""

    id: PointId
    distance: float
    payload: Optional[Dict[str, Any]] = None
    vector: Optional[Union[np.ndarray, Dict[str, np.ndarray]]] = None


@dataclass(frozen=True)
class Point:
    """A stored record: its vector (or named vectors) and payload."""

    id: PointId
    payload: Dict[str, Any]
    vector: Optional[Union[np.ndarray, Dict[str, np.ndarray]]] = None


def is_single_id(ids: Any) -> bool:
    return isinstance(ids, (str, int, np.integer)) and not isinstance(ids, bool)


def id_list(ids: Any, what: str = "ids") -> List[PointId]:
    """A list of ints and strings from a sequence or an integer array."""
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise InvalidArgumentError(f"{what} must be 1-D, got shape {ids.shape}")
        return ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) and not hasattr(ids, "__iter__"):
        raise InvalidArgumentError(f"{what} must be a sequence of ints or strings, got {type(ids).__name__}")
    return list(ids)


def named_vectors(vectors: Vectors) -> Dict[str, Any]:
    """{name: array}; a bare array is the unnamed vector ''."""
    if isinstance(vectors, Mapping):
        return dict(vectors)
    return {"": vectors}


def as_matrix(x: npt.ArrayLike, what: str = "vectors") -> np.ndarray:
    """A C-contiguous float32 (n, d) array (a 1-D vector becomes one row); no copy if possible."""
    try:
        a = np.ascontiguousarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{what} must be a numeric array: {e}") from None
    if a.ndim == 1:
        return a.reshape(1, -1)
    if a.ndim != 2:
        raise InvalidArgumentError(f"{what} must be a 2-D array (n, dim) or one 1-D vector, got shape {a.shape}")
    return a


def _numpy_to_json(value: Any) -> Any:
    """numpy scalars and arrays in payloads (labels[i], embeddings' metadata) as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def payload_texts(payloads: Optional[Sequence[Optional[Mapping[str, Any]]]], n: int) -> Optional[List[Optional[str]]]:
    """JSON texts for the payloads (None entries mean an empty payload)."""
    if payloads is None:
        return None
    if isinstance(payloads, Mapping):
        raise InvalidArgumentError("payloads must be a sequence with one dict per id, got one dict")
    out: List[Optional[str]] = []
    for i, p in enumerate(payloads):
        if p is None:
            out.append(None)
            continue
        if not isinstance(p, Mapping):
            raise InvalidArgumentError(f"payloads[{i}] must be a dict, got {type(p).__name__}")
        try:
            out.append(json.dumps(p, allow_nan=False, separators=(",", ":"), default=_numpy_to_json))
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"payloads[{i}] is not JSON-serialisable: {e}") from None
    if len(out) != n:
        raise InvalidArgumentError(f"payloads has {len(out)} entries for {n} ids")
    return out


def filter_text(filter: Optional[Filter]) -> str:
    """The filter as the library takes it: the text form as is, the JSON form serialised."""
    if filter is None:
        return ""
    if isinstance(filter, str):
        return filter
    if isinstance(filter, Mapping):
        return json.dumps(filter)
    raise InvalidArgumentError(f"filter must be a string or a dict, got {type(filter).__name__}")


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidArgumentError(f"k must be an integer, got {type(k).__name__}")
    return int(k)


def check_ef(ef: Optional[int]) -> int:
    if ef is None:
        return 0
    if isinstance(ef, bool) or not isinstance(ef, (int, np.integer)) or ef < 0:
        raise InvalidArgumentError(f"ef must be a non-negative integer, got {ef!r}")
    return int(ef)


def simplify_vectors(vectors: Optional[Dict[str, np.ndarray]]) -> Optional[Union[np.ndarray, Dict[str, np.ndarray]]]:
    """The unnamed vector alone as an array; named vectors as a dict."""
    if vectors is None:
        return None
    if set(vectors) == {""}:
        return vectors[""]
    return vectors


class PayloadMethods:
    """Qdrant's payload operations over a collection's ``_update_payload`` (embedded and remote
    collections): by ``ids`` or by ``filter``, exactly one; atomic (an unknown id changes no
    point); vectors untouched. Each returns how many points changed."""

    def _update_payload(self, op: str, payload: Optional[Mapping[str, Any]], keys: Sequence[str],
                        ids: Optional[Sequence[PointId]], filter: Optional[Filter]) -> int:
        raise NotImplementedError

    def set_payload(self, payload: Mapping[str, Any], ids: Optional[Sequence[PointId]] = None,
                    filter: Optional[Filter] = None) -> int:
        """Merges ``payload``'s top-level keys into each point's payload."""
        return self._update_payload("set", payload, [], ids, filter)

    def overwrite_payload(self, payload: Mapping[str, Any], ids: Optional[Sequence[PointId]] = None,
                          filter: Optional[Filter] = None) -> int:
        """Replaces each point's payload with ``payload``."""
        return self._update_payload("overwrite", payload, [], ids, filter)

    def delete_payload(self, keys: Sequence[str], ids: Optional[Sequence[PointId]] = None,
                       filter: Optional[Filter] = None) -> int:
        """Removes ``keys`` from each point's payload."""
        return self._update_payload("delete", None, list(keys), ids, filter)

    def clear_payload(self, ids: Optional[Sequence[PointId]] = None, filter: Optional[Filter] = None) -> int:
        """Empties each point's payload."""
        return self._update_payload("clear", None, [], ids, filter)

    def _set_payload_index(self, field: str, field_type: Optional[str]) -> None:
        raise NotImplementedError

    def create_payload_index(self, field: str, field_type: str) -> None:
        """Indexes payload field ``field`` ("keyword", "integer", "float", "bool" or "datetime")
        on the live collection, so filters on it are answered from the index; built from every
        stored payload while writes wait. Later upserts must fit the type. The same type again
        changes nothing."""
        self._set_payload_index(field, field_type)

    def delete_payload_index(self, field: str) -> None:
        """Drops the payload index on ``field`` (NotFoundError if there is none)."""
        self._set_payload_index(field, None)


class AliasMethods:
    """create_alias / delete_alias / switch_alias over a class's update_aliases and aliases
    (fathom.Database and fathom.Client)."""

    def update_aliases(self, actions: Sequence[Tuple[str, str, str]]) -> None:
        raise NotImplementedError

    def aliases(self) -> Dict[str, str]:
        raise NotImplementedError

    def create_alias(self, alias: str, collection: str) -> None:
        """A second name for ``collection``: every call that takes a collection name takes it."""
        self.update_aliases([("create", alias, collection)])

    def delete_alias(self, alias: str) -> None:
        self.update_aliases([("delete", alias, "")])

    def switch_alias(self, alias: str, collection: str) -> None:
        """Points ``alias`` at ``collection`` in one durable step (creating it if missing): the
        re-embedding switch. A search through the alias sees the old collection or the new one,
        never neither."""
        actions = [("delete", alias, "")] if alias in self.aliases() else []
        self.update_aliases(actions + [("create", alias, collection)])

