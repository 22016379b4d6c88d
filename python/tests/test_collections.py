"""Collections through both doors: each test runs against the embedded fathom.Database and
against fathom.Client speaking HTTP to a real fathom-server (the `backend` fixture)."""
from __future__ import annotations

import numpy as np
import pytest

import fathom
from conftest import API_KEY, READ_ONLY_KEY, unique_name
from helpers import brute_force, clustered, recall


def test_round_trip(backend):
    name = unique_name()
    col = backend.create_collection(name, dim=8, metric="l2", indexed_fields={"label": "integer"})
    assert name in backend.list_collections()
    assert col.spec["vectors"][0]["dim"] == 8 and col.spec["vectors"][0]["metric"] == "l2"
    x = clustered(200, 8, seed=1)
    assert col.upsert(list(range(200)), x, [{"label": i % 5, "tag": f"t{i}"} for i in range(200)]) == 200
    assert col.count() == 200 and len(col) == 200
    assert col.count(filter="label = 2") == 40
    points = col.get([3, 999, 7])
    assert points[1] is None
    assert points[0].id == 3 and points[0].payload == {"label": 3, "tag": "t3"}
    np.testing.assert_array_equal(points[0].vector, x[3])
    assert col.get(7).payload["tag"] == "t7"
    assert col.get(7, with_vector=False).vector is None
    # Upsert replaces.
    col.upsert([7], x[8:9], [{"label": 9}])
    assert col.count() == 200 and col.get(7).payload == {"label": 9}
    np.testing.assert_array_equal(col.get(7).vector, x[8])
    # Delete by ids, then by filter.
    assert col.delete(ids=[1, 2, 12345]) == 2
    assert col.get(1) is None and col.count() == 198
    assert col.delete(filter="label = 4") == 40
    assert col.count() == 158 and col.count(filter="label = 4") == 0
    backend.drop_collection(name)
    assert name not in backend.list_collections()


def test_recommend_more_like_this(backend):
    """recommend() embedded and over REST: average_vector is one search for
    2 * mean(positives) - mean(negatives) (checked against brute force), the examples are never
    returned, filters hold, best_score ranks candidates best first, unknown ids are NotFound."""
    name = unique_name()
    col = backend.create_collection(name, dim=8, metric="l2", index="Flat", indexed_fields={"label": "integer"})
    x = clustered(300, 8, seed=3)
    col.upsert(list(range(300)), x, [{"label": i % 3} for i in range(300)])
    query = 2 * (x[10] + x[20]) / 2 - x[30]
    order = [int(i) for i in np.argsort(((x - query) ** 2).sum(axis=1)) if i not in (10, 20, 30)]
    hits = col.recommend(positive=[10, 20], negative=[30], k=5)
    assert [h.id for h in hits] == order[:5]
    hits = col.recommend(positive=[x[10]], negative=[30], k=5, filter="label = 1")
    assert hits and all(col.get(h.id).payload["label"] == 1 and h.id != 30 for h in hits)
    best = col.recommend(positive=[10, 20], negative=[30], k=8, strategy="best_score")
    assert len(best) == 8 and all(h.id not in (10, 20, 30) for h in best)
    assert all(a.distance <= b.distance for a, b in zip(best, best[1:]))
    with pytest.raises(fathom.NotFoundError):
        col.recommend(positive=[12345], k=3)
    with pytest.raises(fathom.InvalidArgumentError):
        col.recommend(positive=[], k=3)
    backend.drop_collection(name)


def test_payload_operations(backend):
    """set / overwrite / delete / clear payload, embedded and over REST: by ids or filter,
    all or nothing, the payload index follows, vectors stay where they were."""
    name = unique_name()
    col = backend.create_collection(name, dim=4, metric="l2", index="Flat", indexed_fields={"color": "keyword"})
    x = clustered(6, 4, seed=5)
    col.upsert(list(range(6)), x, [{"color": "red" if i % 2 else "blue", "n": i} for i in range(6)])
    assert col.set_payload({"reviewed": True}, ids=[1, 2]) == 2
    assert col.get(1).payload == {"color": "red", "n": 1, "reviewed": True}
    assert col.overwrite_payload({"color": "green"}, filter="color = 'blue'") == 3
    assert col.get(0).payload == {"color": "green"}
    assert col.count("color = 'green'") == 3
    assert col.delete_payload(["reviewed", "n"], ids=[1]) == 1
    assert col.get(1).payload == {"color": "red"}
    assert col.clear_payload(ids=3) == 1
    assert col.get(3).payload == {}
    with pytest.raises(fathom.NotFoundError):
        col.set_payload({"x": 1}, ids=[5, 999])
    assert "x" not in col.get(5).payload
    with pytest.raises(fathom.InvalidArgumentError):
        col.clear_payload()
    np.testing.assert_array_equal(col.get(3).vector, x[3])
    backend.drop_collection(name)


def test_payload_index_created_and_deleted(backend):
    """Payload indexes on a live collection, embedded and over REST: listed in the spec, later
    upserts held to the type, counts unchanged, dropped again; a second drop is NotFoundError."""
    name = unique_name()
    col = backend.create_collection(name, dim=4, metric="l2", index="Flat")
    col.upsert(list(range(6)), clustered(6, 4, seed=6),
               [{"n": i, "at": f"2024-05-0{i + 1}T12:00:00Z"} for i in range(6)])
    col.create_payload_index("n", "integer")
    col.create_payload_index("at", "datetime")
    assert backend.get_collection(name).spec["indexed_fields"] == {"n": "integer", "at": "datetime"}
    assert col.count("n >= 3") == 3
    assert col.count({"must": [{"key": "at", "range": {"lt": "2024-05-03"}}]}) == 2
    with pytest.raises(fathom.InvalidArgumentError):
        col.upsert([9], np.zeros((1, 4), np.float32), [{"n": "nine"}])
    col.delete_payload_index("n")
    col.upsert([9], np.zeros((1, 4), np.float32), [{"n": "nine"}])
    with pytest.raises(fathom.NotFoundError):
        col.delete_payload_index("n")
    with pytest.raises(fathom.InvalidArgumentError):
        col.create_payload_index("n", "colour")
    backend.drop_collection(name)


def test_alias_switch_for_re_embedding(backend):
    """The re-embedding workflow: `images` (an alias) serves v1 while v2 is built, then
    switch_alias points it at v2 in one step; a handle opened through the alias follows it."""
    v1, v2, alias = unique_name(), unique_name(), unique_name()
    a = backend.create_collection(v1, dim=4, metric="cosine", index="Flat")
    a.upsert([1], np.ones((1, 4), np.float32), [{"model": "v1"}])
    backend.switch_alias(alias, v1)
    images = backend.get_collection(alias)
    assert images.search(np.ones(4, np.float32), k=1)[0].payload == {"model": "v1"}
    b = backend.create_collection(v2, dim=4, metric="cosine", index="Flat")
    b.upsert([1], np.ones((1, 4), np.float32), [{"model": "v2"}])
    backend.switch_alias(alias, v2)
    assert backend.aliases()[alias] == v2
    assert backend.get_collection(alias).search(np.ones(4, np.float32), k=1)[0].payload == {"model": "v2"}
    with pytest.raises(fathom.NotFoundError):
        backend.create_alias(unique_name(), "no-such-collection")
    backend.drop_collection(v2)
    assert alias not in backend.aliases()
    backend.drop_collection(v1)


def test_collection_metadata_describes_the_model(backend):
    """Which model made the vectors travels with the collection: set at create, merged by
    update_metadata (None removes a key), read back, also through an alias."""
    name, alias = unique_name(), unique_name()
    model = {"name": "resnet50", "version": "2", "dimension": 4}
    col = backend.create_collection(name, dim=4, metadata={"model": model, "team": "vision"})
    assert col.metadata == {"model": model, "team": "vision"}
    assert backend.create_collection(unique_name(), dim=4).metadata == {}
    backend.switch_alias(alias, name)
    merged = backend.get_collection(alias).update_metadata({"image_field": "thumb", "team": None})
    assert merged == {"model": model, "image_field": "thumb"}
    assert backend.get_collection(name).metadata == merged
    with pytest.raises(fathom.InvalidArgumentError, match="the limit is 65536"):
        col.update_metadata({"x": "a" * 70000})
    assert col.metadata == merged


def test_tune_to_a_target_recall(backend):
    """tune() keeps the cheapest ef that reaches the target; the same on both backends."""
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(20, 16)).astype(np.float32) * 4
    data = (centres[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    col = backend.create_collection(unique_name(), dim=16, index="HNSW8")
    col.upsert(list(range(3000)), data)
    result = col.tune(0.9, sample=100)
    assert result["knob"] == "ef" and result["reached"] and result["recall"] >= 0.9
    assert result["queries"] == 100
    assert (result["value"], result["recall"]) in result["tried"]
    given = col.tune(0.95, k=5, queries=data[:20] + 0.01)
    assert given["queries"] == 20 and given["recall"] >= 0.95
    with pytest.raises(fathom.InvalidArgumentError, match="target"):
        col.tune(1.5)
    # Measuring one setting without storing it: the stored default stays.
    measured = col.tune(0.5, values=[64], store=False)
    assert measured["value"] == 64 and [v for v, _ in measured["tried"]] == [64]
    assert col.tune(0.5, values=[2, 64], store=False)["tried"][0][0] == 64  # (the top is measured first)
    with pytest.raises(fathom.InvalidArgumentError, match="ascending"):
        col.tune(0.9, values=[64, 16], store=False)
    assert col.reset_tuning() is True
    assert col.reset_tuning() is False
    with pytest.raises(fathom.InvalidArgumentError, match="has no vector 'nope'"):
        col.reset_tuning("nope")


def test_string_ids_and_payload_types(backend):
    col = backend.create_collection(unique_name(), dim=4, metric="cosine")
    vectors = np.eye(4, dtype=np.float32) + 0.1
    payloads = [{"s": "x", "f": 1.5, "b": True, "n": None, "list": [1, 2], "obj": {"a": "é"}}, None, {}, {"k": 1}]
    col.upsert(["doc-1", "doc-2", 3, "4"], vectors, payloads)
    got = col.get(["doc-1", "doc-2", 3, "4", 4])
    assert [p.id if p else None for p in got] == ["doc-1", "doc-2", 3, "4", None]
    assert got[0].payload == payloads[0] and got[1].payload == {}
    hits = col.search(vectors[0], k=2)
    assert hits[0].id == "doc-1" and hits[0].distance == pytest.approx(0.0, abs=1e-5)
    # numpy scalars and arrays (labels[i], features) are stored as plain JSON.
    col.upsert(["np"], vectors[:1], [{"label": np.int64(3), "score": np.float32(0.5), "v": np.arange(2)}])
    assert col.get("np").payload == {"label": 3, "score": 0.5, "v": [0, 1]}


def test_search_recall_filters_and_shapes(backend):
    col = backend.create_collection(unique_name(), dim=32, metric="l2", index="HNSW32",
                                    indexed_fields={"label": "integer", "colour": "keyword"})
    base = clustered(3000, 32, seed=2)
    labels = np.arange(3000) % 10
    col.upsert(np.arange(3000), base, [{"label": int(l), "colour": "red" if l < 5 else "blue"} for l in labels])
    queries = clustered(50, 32, seed=3)

    results = col.search(queries, k=10, ef=128)
    assert len(results) == 50 and all(len(r) == 10 for r in results)
    _, true_ids = brute_force(base, queries, 10)
    assert recall([[h.id for h in r] for r in results], true_ids) >= 0.95
    assert all(r[i].distance <= r[i + 1].distance for r in results for i in range(9))

    # Filtered: every hit satisfies the filter, and the hits are the true nearest among those.
    allowed = np.flatnonzero(labels == 3)
    _, true_sub = brute_force(base[allowed], queries, 10)
    filtered = col.search(queries, k=10, filter="label = 3", ef=128)
    assert all(h.payload["label"] == 3 for r in filtered for h in r)
    assert recall([[h.id for h in r] for r in filtered], allowed[true_sub]) >= 0.95
    as_json = col.search(queries, k=10, ef=128,
                         filter={"must": [{"key": "label", "match": {"value": 3}}]})
    assert [[h.id for h in r] for r in as_json] == [[h.id for h in r] for r in filtered]
    assert col.count(filter='colour = "red" AND label >= 3') == 600

    # One query in, one list out; payloads and vectors on request.
    one = col.search(queries[0], k=3, with_payload=False, with_vector=True)
    assert isinstance(one, list) and isinstance(one[0], fathom.Hit)
    assert one[0].payload is None and one[0].vector.shape == (32,)
    np.testing.assert_allclose(one[0].vector, base[one[0].id])


def test_named_vectors(backend):
    col = backend.create_collection(unique_name(), vectors={"image": {"dim": 8}, "text": {"dim": 4, "metric": "cosine"}})
    image = clustered(100, 8, seed=4)
    text = clustered(100, 4, seed=5)
    col.upsert(range(100), {"image": image, "text": text})
    assert col.search(image[17], k=1, vector="image")[0].id == 17
    assert col.search(text[23], k=1, vector="text")[0].id == 23
    p = col.get(5)
    np.testing.assert_array_equal(p.vector["image"], image[5])
    with pytest.raises(ValueError):
        col.search(image[0], k=1, vector="text")


def test_bad_input(backend):
    name = unique_name()
    col = backend.create_collection(name, dim=4, indexed_fields={"label": "integer"})
    col.upsert([1, 2], np.ones((2, 4), dtype=np.float32), [{"label": 1}, {"label": 2}])
    with pytest.raises(fathom.AlreadyExistsError, match=name):
        backend.create_collection(name, dim=4)
    with pytest.raises(KeyError, match="nope"):
        backend.get_collection("nope")
    with pytest.raises(ValueError, match="dimension"):
        col.upsert([3], np.ones((1, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="dimension"):
        col.search(np.ones(7, dtype=np.float32), k=1)
    nan = np.ones((2, 4), dtype=np.float32)
    nan[1, 2] = np.nan
    with pytest.raises(ValueError):
        col.upsert([3, 4], nan)
    with pytest.raises(ValueError, match="rows for 3 ids"):
        col.upsert([3, 4, 5], np.ones((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"payloads\[0\] must be a dict"):
        col.upsert([3], np.ones((1, 4), dtype=np.float32), ["label"])
    with pytest.raises(ValueError):
        col.search(np.ones(4, dtype=np.float32), k=1, filter="label = = 3")
    with pytest.raises(ValueError):
        col.search(np.ones(4, dtype=np.float32), k=0)
    with pytest.raises(ValueError):
        backend.create_collection(unique_name(), dim=4, metric="hamming")
    with pytest.raises(ValueError):
        backend.create_collection("bad/name", dim=4)
    assert col.count() == 2, "no rejected batch wrote anything"
    assert isinstance(pytest.raises(fathom.Error, backend.get_collection, "nope").value, fathom.NotFoundError)


def test_embedded_and_server_agree(server, tmp_path):
    base = clustered(1500, 24, seed=6)
    queries = clustered(30, 24, seed=7)
    payloads = [{"label": i % 7} for i in range(1500)]
    client = fathom.Client(server.url, api_key=API_KEY)
    with fathom.Database(tmp_path / "db", durability="buffered") as db:
        results = []
        for backend in (db, client):
            col = backend.create_collection("parity", dim=24, index="Flat", indexed_fields={"label": "integer"})
            col.upsert(range(1500), base, payloads)
            results.append((col.search(queries, k=8, filter="label < 3"), col.count(filter="label = 0"),
                            col.get([10, 11, 5000])))
        client.drop_collection("parity")
    (emb_hits, emb_count, emb_get), (srv_hits, srv_count, srv_get) = results
    assert [[h.id for h in r] for r in emb_hits] == [[h.id for h in r] for r in srv_hits]
    np.testing.assert_allclose([[h.distance for h in r] for r in emb_hits],
                               [[h.distance for h in r] for r in srv_hits], rtol=1e-6)
    assert [[h.payload for h in r] for r in emb_hits] == [[h.payload for h in r] for r in srv_hits]
    assert emb_count == srv_count == 215
    assert [p and (p.id, p.payload) for p in emb_get] == [p and (p.id, p.payload) for p in srv_get]
    np.testing.assert_array_equal(emb_get[0].vector, srv_get[0].vector)


def test_client_auth(server):
    name = unique_name()
    fathom.Client(server.url, api_key=API_KEY).create_collection(name, dim=2)
    with pytest.raises(fathom.AuthError):
        fathom.Client(server.url).list_collections()
    with pytest.raises(PermissionError):
        fathom.Client(server.url, api_key="wrong").get_collection(name)
    reader = fathom.Client(server.url, api_key=READ_ONLY_KEY)
    col = reader.get_collection(name)
    assert col.count() == 0
    with pytest.raises(fathom.AuthError):
        col.upsert([1], np.ones((1, 2), dtype=np.float32))
    fathom.Client(server.url, api_key=API_KEY).drop_collection(name)


def test_client_rejects_bad_url_and_says_when_unreachable():
    with pytest.raises(ValueError, match="url"):
        fathom.Client("ftp://example.com")
    with pytest.raises(fathom.UnavailableError, match="cannot reach the fathom server at http://127.0.0.1:1"):
        fathom.Client("http://127.0.0.1:1").list_collections()
    assert issubclass(fathom.UnavailableError, ConnectionError)
