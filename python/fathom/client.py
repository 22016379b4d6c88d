"""HTTP client for a Fathom server, with the same collection methods as the embedded database.

Only the standard library is used (``http.client``): one persistent keep-alive connection per
thread, vectors sent as base64 little-endian float32 (about 3x smaller than JSON numbers and much
faster for the server to parse), large batches split to stay under the server's limits.
"""
from __future__ import annotations

import base64
import http.client
import json
import re
import threading
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from ._common import (AliasMethods, PayloadMethods, Filter, Hit, Point, PointId, Vectors, as_matrix, check_ef, check_k,
                      id_list, is_single_id, named_vectors, payload_texts, simplify_vectors)
from .database import SearchResult, _vector_specs
from .errors import (AlreadyExistsError, AuthError, Error, FailedPreconditionError,
                     InvalidArgumentError, NotFoundError, ResourceExhaustedError,
                     UnavailableError)

# Server distance names <-> library metric names.
_DISTANCE = {"l2": "Euclid", "ip": "Dot", "cosine": "Cosine", "l1": "Manhattan"}
_METRIC = {v: k for k, v in _DISTANCE.items()}
# Points per upsert request and searches per batch-search request (the server allows 10,000).
_BATCH = 1000
# Collection names the server accepts (checked here too: a '/' would otherwise change the route).
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _b64(row: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode("ascii")


def _error_class(status: int) -> type:
    if status == 400:
        return InvalidArgumentError
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFoundError
    if status == 409:
        return AlreadyExistsError
    if status in (408, 413, 429):
        return ResourceExhaustedError
    if status == 503:
        return FailedPreconditionError
    return Error


def _vectors_from_json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {name: np.asarray(v, dtype=np.float32) for name, v in value.items()}
    return np.asarray(value, dtype=np.float32)


class Client(AliasMethods):
    """A Fathom server at ``url``; ``api_key`` (or none) is sent as the ``api-key`` header.

    >>> client = fathom.Client("http://127.0.0.1:6333", api_key=os.environ.get("FATHOM_API_KEY"))
    >>> col = client.get_collection("fashion-mnist")
    >>> hits = col.search(query, k=10, filter="label = 3")

    Errors are the same classes the embedded database raises (HTTP 400 -> InvalidArgumentError,
    404 -> NotFoundError, 409 -> AlreadyExistsError, 401/403 -> AuthError), with the server's
    message. Safe to share between threads.
    """

    def __init__(self, url: str = "http://127.0.0.1:6333", api_key: Optional[str] = None,
                 timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidArgumentError(f"url must be http://host:port or https://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._prefix = parsed.path.rstrip("/")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["api-key"] = api_key
        self._timeout = timeout
        self._local = threading.local()

    # -- transport ---------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Sends one request (``body``: JSON-serialisable, or a JSON text) and returns the
        response's ``result``; raises on an error status."""
        if body is None or isinstance(body, str):  # a str is a JSON text assembled by the caller
            data = None if body is None else body.encode()
        else:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, self._prefix + path, body=data, headers=self._headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                # The server closed an idle keep-alive connection: reconnect once.
                conn.close()
                self._local.conn = None
                if attempt == 1:
                    raise UnavailableError(f"{method} {self.url}{path}: {e}") from e
            except OSError as e:  # refused, unreachable, timed out
                conn.close()
                self._local.conn = None
                raise UnavailableError(f"cannot reach the fathom server at {self.url}: {e}") from e
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {"status": {"error": raw[:200].decode("utf-8", "replace")}}
        if response.status >= 400:
            status = doc.get("status") if isinstance(doc, dict) else None
            message = status.get("error") if isinstance(status, dict) else f"HTTP {response.status}"
            raise _error_class(response.status)(message)
        return doc.get("result") if isinstance(doc, dict) else doc

    def __repr__(self) -> str:
        return f"fathom.Client({self.url!r})"

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @staticmethod
    def _quote(name: str) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
            raise InvalidArgumentError(
                f"collection name {name!r} is not valid: use 1 to 64 letters, digits, '_', '-' and '.' "
                "(not '.' or '..')")
        return name

    # -- collections -------------------------------------------------------------------------

    def healthy(self) -> bool:
        try:
            self.request("GET", "/healthz")
            return True
        except (OSError, Error):
            return False

    def list_collections(self) -> List[str]:
        return [c["name"] for c in self.request("GET", "/collections")["collections"]]

    def create_collection(self, name: str, dim: Optional[int] = None, metric: str = "l2",
                          index: str = "HNSW32", *,
                          indexed_fields: Optional[Mapping[str, str]] = None,
                          vectors: Optional[Mapping[str, Mapping[str, Any]]] = None,
                          on_disk: bool = False, on_disk_payload: bool = False,
                          metadata: Optional[Mapping[str, Any]] = None) -> "RemoteCollection":
        """Same arguments as :meth:`fathom.Database.create_collection`."""
        specs = _vector_specs(dim, metric, index, on_disk, vectors)

        def vector_json(s: Dict[str, Any]) -> Dict[str, Any]:
            return {"size": s["dim"], "distance": s["metric"], "index": s["index"], "on_disk": s["on_disk"]}

        if vectors is None:
            body_vectors: Any = vector_json(specs[0])
        else:
            body_vectors = {s["name"]: vector_json(s) for s in specs}
        body = {"vectors": body_vectors, "indexed_fields": dict(indexed_fields or {}),
                "on_disk_payload": on_disk_payload, "metadata": dict(metadata or {})}
        self.request("PUT", f"/collections/{self._quote(name)}", body)
        return self.get_collection(name)

    def get_collection(self, name: str) -> "RemoteCollection":
        info = self.request("GET", f"/collections/{self._quote(name)}")
        return RemoteCollection(self, name, info)

    __getitem__ = get_collection

    def drop_collection(self, name: str) -> None:
        self.request("DELETE", f"/collections/{self._quote(name)}")


    def update_aliases(self, actions: Sequence[Tuple[str, str, str]]) -> None:
        """Applies ``(kind, alias, other)`` actions in order, all or none: ``("create", alias,
        collection)``, ``("delete", alias, "")``, ``("rename", alias, new_alias)``."""
        body = []
        for kind, alias, other in actions:
            if kind == "create":
                body.append({"create_alias": {"alias_name": alias, "collection_name": other}})
            elif kind == "delete":
                body.append({"delete_alias": {"alias_name": alias}})
            elif kind == "rename":
                body.append({"rename_alias": {"old_alias_name": alias, "new_alias_name": other}})
            else:
                raise InvalidArgumentError(f"alias action must be create, delete or rename, got {kind!r}")
        self.request("POST", "/collections/aliases", {"actions": body})

    def aliases(self) -> Dict[str, str]:
        """{alias: collection}."""
        return {a["alias_name"]: a["collection_name"] for a in self.request("GET", "/aliases")["aliases"]}


class RemoteCollection(PayloadMethods):
    """A collection on a server: the methods of :class:`fathom.Collection`, over HTTP."""

    def __init__(self, client: Client, name: str, info: Dict[str, Any]) -> None:
        self._client = client
        self.name = name
        self._path = f"/collections/{Client._quote(name)}"
        config = info["config"]
        vectors = config["vectors"]
        named = not ("size" in vectors and isinstance(vectors["size"], int))
        items: List[Tuple[str, Dict[str, Any]]] = list(vectors.items()) if named else [("", vectors)]
        self.spec: Dict[str, Any] = {
            "name": name,
            "vectors": [{"name": n, "dim": v["size"], "metric": _METRIC.get(v["distance"], v["distance"]),
                         "index": v["index"]} for n, v in items],
            "indexed_fields": dict(config.get("indexed_fields", {})),
        }

    @property
    def dim(self) -> int:
        return self.spec["vectors"][0]["dim"]

    @property
    def metadata(self) -> Dict[str, Any]:
        """As :attr:`fathom.Collection.metadata` (the server's ``config.metadata``)."""
        info = self._client.request("GET", self._path)
        result: Dict[str, Any] = info["config"].get("metadata", {})
        return result

    def tune(self, target_recall: float = 0.95, *, k: int = 10, sample: int = 500,
             queries: Optional[npt.ArrayLike] = None, vector: str = "",
             values: Optional[Sequence[int]] = None, store: bool = True) -> Dict[str, Any]:
        """As :meth:`fathom.Collection.tune` (``POST /collections/{name}/tune``)."""
        body: Dict[str, Any] = {"target_recall": float(target_recall), "k": int(k), "sample": int(sample),
                                "store": bool(store)}
        if values:
            body["values"] = [int(v) for v in values]
        if vector:
            body["using"] = vector
        if queries is not None:
            body["queries"] = as_matrix(queries, "queries").tolist()
        result: Dict[str, Any] = self._client.request("POST", f"{self._path}/tune", body)
        result["tried"] = [(t["value"], t["recall"]) for t in result["tried"]]
        return result

    def reset_tuning(self, vector: str = "") -> bool:
        """As :meth:`fathom.Collection.reset_tuning` (``DELETE /collections/{name}/tune``)."""
        path = f"{self._path}/tune" + (f"?using={urllib.parse.quote(vector)}" if vector else "")
        return bool(self._client.request("DELETE", path)["reset"])

    def _set_payload_index(self, field: str, field_type: Optional[str]) -> None:
        if field_type is None:
            self._client.request("DELETE", self._path + "/index/" + urllib.parse.quote(field, safe="._-[]"))
        else:
            self._client.request("PUT", self._path + "/index", {"field_name": field, "field_schema": field_type})

    def update_metadata(self, changes: Mapping[str, Any]) -> Dict[str, Any]:
        """As :meth:`fathom.Collection.update_metadata` (``PATCH /collections/{name}``)."""
        self._client.request("PATCH", self._path, {"metadata": dict(changes)})
        return self.metadata

    def upsert(self, ids: Sequence[PointId], vectors: Vectors,
               payloads: Optional[Sequence[Optional[Mapping[str, Any]]]] = None) -> int:
        ids = id_list(ids)
        n = len(ids)
        texts = payload_texts(payloads, n)
        parsed = {}
        for name, v in named_vectors(vectors).items():
            m = as_matrix(v, "vectors" if name == "" else f"vectors[{name!r}]")
            if m.shape[0] != n:
                raise InvalidArgumentError(
                    f"{'vectors' if name == '' else f'vectors[{name!r}]'} has {m.shape[0]} rows for {n} ids")
            parsed[name] = m
        # Bodies are assembled as text: the payloads are already JSON (payload_texts checked and
        # serialised them once), and the vectors are base64 strings.
        dumps = json.dumps
        for start in range(0, max(n, 1), _BATCH):
            end = min(n, start + _BATCH)
            if set(parsed) == {""}:
                body = '{"batch":{"ids":%s,"vectors":"%s"' % (dumps(ids[start:end]), _b64(parsed[""][start:end]))
                if texts is not None:
                    body += ',"payloads":[' + ",".join(t or "{}" for t in texts[start:end]) + "]"
                body += "}}"
            else:
                points = []
                for i in range(start, end):
                    point = '{"id":%s,"vector":%s' % (dumps(ids[i]), dumps({k: _b64(m[i]) for k, m in parsed.items()}))
                    if texts is not None:
                        point += ',"payload":' + (texts[i] or "{}")
                    points.append(point + "}")
                body = '{"points":[' + ",".join(points) + "]}"
            self._client.request("PUT", f"{self._path}/points", body)
        return n

    def get(self, ids: Any, with_vector: bool = True) -> Any:
        single = is_single_id(ids)
        wanted = [ids] if single else id_list(ids)
        found: Dict[Any, Point] = {}
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start:start + _BATCH]
            body = {"ids": chunk, "with_payload": True, "with_vector": with_vector}
            for r in self._client.request("POST", f"{self._path}/points", body):
                vec = _vectors_from_json(r.get("vector")) if with_vector else None
                found[(type(r["id"]), r["id"])] = Point(r["id"], r.get("payload") or {}, vec)
        points = [found.get((type(i), i)) for i in wanted]
        return points[0] if single else points

    def delete(self, ids: Optional[Sequence[PointId]] = None, filter: Optional[Filter] = None) -> int:
        if (ids is None) == (filter is None):
            raise InvalidArgumentError("delete takes either ids or filter")
        if filter is not None:
            return self._client.request("POST", f"{self._path}/points/delete", {"filter": filter})["deleted"]
        wanted: List[Any] = [ids] if is_single_id(ids) else id_list(ids)
        deleted = 0
        for start in range(0, len(wanted), _BATCH):
            body = {"points": wanted[start:start + _BATCH]}
            deleted += self._client.request("POST", f"{self._path}/points/delete", body)["deleted"]
        return deleted

    def _update_payload(self, op: str, payload: Optional[Mapping[str, Any]], keys: Sequence[str],
                        ids: Optional[Sequence[PointId]], filter: Optional[Filter]) -> int:
        if (ids is None) == (filter is None):
            raise InvalidArgumentError("a payload update takes either ids or filter")
        body: Dict[str, Any] = {"filter": filter} if filter is not None else {
            "points": [ids] if is_single_id(ids) else id_list(ids)}
        if payload is not None:
            body["payload"] = dict(payload)
        if op == "delete":
            body["keys"] = list(keys)
        method, path = {"set": ("POST", "/points/payload"), "overwrite": ("PUT", "/points/payload"),
                        "delete": ("POST", "/points/payload/delete"),
                        "clear": ("POST", "/points/payload/clear")}[op]
        return self._client.request(method, self._path + path, body)["updated"]

    def count(self, filter: Optional[Filter] = None) -> int:
        body = {} if filter is None else {"filter": filter}
        return self._client.request("POST", f"{self._path}/points/count", body)["count"]

    def __len__(self) -> int:
        return self.count()

    def search(self, queries: npt.ArrayLike, k: int = 10, *, filter: Optional[Filter] = None,
               ef: Optional[int] = None, with_payload: bool = True, with_vector: bool = False,
               vector: str = "") -> SearchResult:
        single = np.ndim(queries) == 1
        q = as_matrix(queries, "queries")
        k = check_k(k)
        ef = check_ef(ef)
        template: Dict[str, Any] = {"limit": k, "with_payload": with_payload, "with_vector": with_vector}
        if ef:
            template["params"] = {"ef": ef}
        if filter is not None:
            template["filter"] = filter
        results: List[List[Hit]] = []
        for start in range(0, q.shape[0], _BATCH):
            searches = []
            for row in q[start:start + _BATCH]:
                s = dict(template)
                s["vector"] = {"name": vector, "vector": _b64(row)} if vector else _b64(row)
                searches.append(s)
            for hits in self._client.request("POST", f"{self._path}/points/search/batch",
                                             {"searches": searches}):
                results.append([Hit(h["id"], float(np.float32(h["distance"])),
                                    h.get("payload") if with_payload else None,
                                    _vectors_from_json(h.get("vector")) if with_vector else None)
                                for h in hits])
        return results[0] if single else results

    def recommend(self, positive: Sequence[Union[PointId, npt.ArrayLike]],
                  negative: Sequence[Union[PointId, npt.ArrayLike]] = (), k: int = 10, *,
                  strategy: str = "average_vector", filter: Optional[Filter] = None,
                  ef: Optional[int] = None, with_payload: bool = True, with_vector: bool = False,
                  vector: str = "") -> List[Hit]:
        """As :meth:`fathom.Collection.recommend`, over REST (``POST .../points/recommend``)."""
        def example(e: Union[PointId, npt.ArrayLike]) -> Any:
            if isinstance(e, (int, str)) and not isinstance(e, bool):
                return e
            return [float(x) for x in np.asarray(e, dtype=np.float32).ravel()]
        body: Dict[str, Any] = {"positive": [example(e) for e in positive],
                                "negative": [example(e) for e in negative], "strategy": strategy,
                                "limit": check_k(k), "with_payload": with_payload, "with_vector": with_vector}
        ef = check_ef(ef)
        if ef:
            body["params"] = {"ef": ef}
        if filter is not None:
            body["filter"] = filter
        if vector:
            body["using"] = vector
        hits = self._client.request("POST", f"{self._path}/points/recommend", body)
        return [Hit(h["id"], float(np.float32(h["distance"])), h.get("payload") if with_payload else None,
                    _vectors_from_json(h.get("vector")) if with_vector else None) for h in hits]

    def create_snapshot(self) -> str:
        """Asks the server to snapshot this collection; returns the snapshot's name."""
        return self._client.request("POST", f"{self._path}/snapshots")["name"]

    def list_snapshots(self) -> List[str]:
        return [s["name"] for s in self._client.request("GET", f"{self._path}/snapshots")]

    def __repr__(self) -> str:
        return f"fathom.RemoteCollection({self._client.url!r}, {self.name!r})"
