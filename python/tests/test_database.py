"""The embedded database: durability across reopen, snapshots, lifetime, threads, and the same
answers as the C++ command-line tool on the same data directory."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import fathom
from helpers import clustered

ROOT = Path(__file__).resolve().parents[2]


def fill(db, name="items", n=2000, dim=16, seed=1):
    col = db.create_collection(name, dim=dim, metric="cosine", index="HNSW32",
                               indexed_fields={"label": "integer"})
    x = clustered(n, dim, seed=seed)
    col.upsert(range(n), x, [{"label": i % 10} for i in range(n)])
    return col, x


def ids(results):
    return [[h.id for h in r] for r in results]


def test_data_survives_reopen(tmp_path):
    queries = clustered(20, 16, seed=2)
    with fathom.Database(tmp_path / "db") as db:
        col, _ = fill(db)
        col.delete([5, 6])
        before = col.search(queries, k=10, filter="label < 5")
    with fathom.Database(tmp_path / "db") as db:
        col = db.get_collection("items")
        assert col.count() == 1998 and col.get(5) is None
        assert ids(col.search(queries, k=10, filter="label < 5")) == ids(before)


def test_snapshot_and_restore(tmp_path):
    queries = clustered(20, 16, seed=3)
    with fathom.Database(tmp_path / "db", durability="buffered") as db:
        col, _ = fill(db)
        fill(db, "other", n=100)
        expected = ids(col.search(queries, k=5))
        assert sorted(db.snapshot(tmp_path / "snap")) == ["items", "other"]
        col.upsert([10**6], clustered(1, 16, seed=9))  # after the snapshot: not in it
        copy = db.restore_snapshot(tmp_path / "snap" / "items", name="items_copy")
        assert copy.count() == 2000 and ids(copy.search(queries, k=5)) == expected
        with pytest.raises(fathom.AlreadyExistsError):
            db.restore_snapshot(tmp_path / "snap" / "items")
    with fathom.Database(tmp_path / "fresh") as db:
        assert db.restore(tmp_path / "snap") == ["items", "other"]
        assert db["items"].count() == 2000 and db["other"].count() == 100
        assert ids(db["items"].search(queries, k=5)) == expected


def test_closed_database_and_stale_handles(tmp_path):
    db = fathom.Database(tmp_path / "db")
    col, _ = fill(db, n=10)
    db.drop_collection("items")
    with pytest.raises(KeyError, match="items"):
        col.count()
    with pytest.raises(fathom.FailedPreconditionError, match="is already open"):
        fathom.Database(tmp_path / "db")
    db.close()
    assert db.closed
    with pytest.raises(fathom.FailedPreconditionError, match="closed"):
        db.list_collections()
    db.close()  # closing twice is harmless
    with pytest.raises(KeyError, match="does not exist"):
        fathom.Database(tmp_path / "db3").restore(tmp_path / "no-such-snapshot")
    with pytest.raises(ValueError, match="durability"):
        fathom.Database(tmp_path / "db2", durability="sometimes")


def test_threads_search_while_one_writes(tmp_path):
    with fathom.Database(tmp_path / "db", durability="buffered") as db:
        col, x = fill(db, n=3000)
        queries = x[:40]
        expected = ids(col.search(queries, k=1))
        errors = []

        def searcher():
            try:
                for _ in range(20):
                    assert ids(col.search(queries, k=1)) == expected
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=searcher) for _ in range(3)]
        for t in threads:
            t.start()
        for start in range(10**6, 10**6 + 2000, 200):  # far-away points: top-1 never changes
            col.upsert(range(start, start + 200), np.full((200, 16), 1e3, dtype=np.float32))
        for t in threads:
            t.join()
        assert not errors and col.count() == 5000


def test_drop_while_other_threads_use_the_collection(tmp_path):
    """Regression (issue 9.3): drop_collection while other threads searched and upserted freed the
    collection under them (segfaults, heap corruption). Now their calls either finish or raise
    NotFoundError; the process and the database stay usable."""
    with fathom.Database(tmp_path / "db", durability="buffered") as db:
        for round_ in range(3):
            col, x = fill(db, name="items", n=500)
            started = threading.Barrier(4)
            outcomes = []

            def user(kind):
                started.wait()
                calls = 0
                try:
                    while True:
                        if kind == 0:
                            col.upsert([10**6 + calls], x[:1])
                        elif kind == 1:
                            col.search(x[:5], k=3, with_vector=True)
                        else:
                            col.get([calls % 500])
                        calls += 1
                except fathom.NotFoundError as e:
                    outcomes.append((kind, calls, str(e)))
                except Exception as e:  # noqa: BLE001 - reported below
                    outcomes.append((kind, calls, "unexpected %r" % e))

            threads = [threading.Thread(target=user, args=(k,)) for k in range(3)]
            for t in threads:
                t.start()
            started.wait()
            db.drop_collection("items")
            for t in threads:
                t.join(60)
            assert len(outcomes) == 3, outcomes
            for kind, calls, message in outcomes:
                assert "unexpected" not in message, message
                assert "items" in message
        assert db.list_collections() == []


def test_same_answers_as_the_cli(tmp_path):
    """Results through the bindings equal those of the C++ `fathom` tool on the same data."""
    cli = os.environ.get("FATHOM_CLI_BIN") or str(ROOT / "build" / "src" / "cli" / "fathom")
    queries = clustered(5, 16, seed=4)
    with fathom.Database(tmp_path / "db") as db:
        col, _ = fill(db)
        ours = col.search(queries, k=7, filter="label >= 4", ef=64)
    np.save(tmp_path / "q.npy", queries)
    for row, hits in enumerate(ours):
        out = subprocess.run([cli, "search", "items", "--data", str(tmp_path / "db"),
                              "--vector-file", str(tmp_path / "q.npy"), "--row", str(row), "-k", "7",
                              "--ef", "64", "--filter", "label >= 4", "--json"],
                             check=True, capture_output=True, text=True).stdout
        theirs = json.loads(out)["results"]
        assert [h.id for h in hits] == [r["id"] for r in theirs]
        np.testing.assert_allclose([h.distance for h in hits], [r["distance"] for r in theirs], rtol=1e-5, atol=1e-6)
        assert [h.payload for h in hits] == [r["payload"] for r in theirs]


def test_checkpoint_and_memory_bytes(tmp_path):
    """checkpoint() writes the index file for the current log position (so a reopen replays
    nothing); memory_bytes grows with the data."""
    with fathom.Database(tmp_path / "db", durability="buffered", checkpoint_every=10**6) as db:
        col = db.create_collection("items", dim=16)
        empty = col.memory_bytes
        col.upsert(range(2000), clustered(2000, 16, seed=2))
        full = col.memory_bytes
        assert full > empty + 2000 * 16 * 4, (empty, full)
        index_dir = tmp_path / "db" / "indexes" / "1"
        before = {p.name for p in index_dir.glob("*.fathom")}
        col.checkpoint()
        after = {p.name for p in index_dir.glob("*.fathom")}
        assert after - before == {"0.1.fathom"}, (before, after)
    with fathom.Database(tmp_path / "db") as db:
        assert db.get_collection("items").count() == 2000


def test_vectors_on_disk_and_usage(tmp_path):
    """on_disk=True: the floats go to a file (usage() counts it on disk, not in RAM), answers
    match an in-RAM collection, and everything is back after a reopen. optimize() runs the
    housekeeping that deletions otherwise trigger in the background."""
    n, dim = 3000, 32
    x = clustered(n, dim, seed=7)
    queries = clustered(20, dim, seed=8)
    with fathom.Database(tmp_path / "db") as db:
        ram = db.create_collection("ram", dim=dim, metric="cosine", index="HNSW16,SQ8")
        disk = db.create_collection("disk", dim=dim, metric="cosine", index="HNSW16,SQ8",
                                    on_disk=True, on_disk_payload=True)
        for col in (ram, disk):
            col.upsert(range(n), x, [{"i": i} for i in range(n)])
            col.delete(range(0, n, 3))
            col.optimize()
        assert disk.spec["vectors"][0]["on_disk"] is True
        assert disk.spec["on_disk_payload"] is True
        u_ram, u_disk = ram.usage(), disk.usage()
        assert u_ram["vectors_disk_bytes"] == 0
        assert u_disk["vectors_disk_bytes"] >= n * dim * 4
        assert u_disk["ram_bytes"] + n * dim * 4 * 0.9 < u_ram["ram_bytes"], (u_ram, u_disk)
        assert u_disk["disk_bytes"] == (u_disk["vectors_disk_bytes"] + u_disk["records_disk_bytes"]
                                        + u_disk["index_files_bytes"])
        expected = ram.search(queries, k=5, ef=128, filter="i > 100")
        got = disk.search(queries, k=5, ef=128, filter="i > 100")
        assert ids(got) == ids(expected)
        # A deeper re-ranking (exact distances for the best 200 by code) finds the exact top 5.
        deep = disk.search(queries, k=5, ef=200, rerank=200, with_payload=False)
        for q, hits in zip(queries, deep):
            qn = q / np.linalg.norm(q)
            xn = x / np.linalg.norm(x, axis=1, keepdims=True)
            alive = np.array([i % 3 != 0 for i in range(n)])
            d = np.where(alive, 1.0 - xn @ qn, np.inf)
            assert [h.id for h in hits] == list(np.argsort(d)[:5])
        with pytest.raises(fathom.InvalidArgumentError, match="rerank"):
            disk.search(queries[0], k=5, rerank=-1)
        assert got[0][0].payload == expected[0][0].payload
    with fathom.Database(tmp_path / "db") as db:
        disk = db.get_collection("disk")
        assert disk.count() == n - len(range(0, n, 3))
        assert ids(disk.search(queries, k=5, ef=128, filter="i > 100")) == ids(expected)
    with pytest.raises(fathom.InvalidArgumentError, match="on_disk"):
        with fathom.Database(tmp_path / "db") as db:
            db.create_collection("bad", dim=dim, index="HNSW16", on_disk=True)


def test_client_reconnects_after_the_server_closed_its_connection(server):
    """The HTTP client keeps one connection per thread; when the server has closed it (idle
    keep-alive timeout, restart), the next call reconnects once instead of failing."""
    import socket
    from conftest import API_KEY
    client = fathom.Client(server.url, api_key=API_KEY)
    col = client.create_collection("reconnect", dim=4)
    col.upsert([1], np.ones((1, 4), dtype=np.float32))
    for _ in range(3):
        client._local.conn.sock.shutdown(socket.SHUT_RDWR)  # as the server closing it would
        assert col.count() == 1
    client.drop_collection("reconnect")
    client.close()


@pytest.mark.parametrize("factory", ["KDTree", "KDForest8", "BallTree", "IVF16,SQ8", "IVF16_HNSW8,PQ4x4fs", "IVF16,RBQ", "IVF16,FP16", "IVF16,SQ4", "OPQ4,IVF16,PQ4"])
def test_index_family_as_a_collection_index(tmp_path, factory):
    """Every index kind serves a collection: exact answers for the trees, self-training IVF,
    filters, deletes, and the same answers after a reopen (checkpoint and log replay)."""
    dim = 8
    x = clustered(3000, dim, seed=11)
    queries = clustered(20, dim, seed=12)
    with fathom.Database(tmp_path / "db") as db:
        col = db.create_collection("items", dim=dim, metric="l2", index=factory,
                                   indexed_fields={"label": "integer"})
        for b in range(0, 3000, 500):  # IVF16 trains itself once it holds 16 x 39 points
            col.upsert(range(b, b + 500), x[b:b + 500], [{"label": i % 10} for i in range(b, b + 500)])
        col.delete([0, 1, 2])
        found = col.search(queries, k=10, filter="label < 5", nprobe=16, rerank=200)
        for r in found:
            assert all(h.payload["label"] < 5 and h.id not in (0, 1, 2) for h in r)
        if "Tree" in factory or "Forest" in factory:  # exact indexes (the forest without checks): the same neighbours as brute force
            brute = [[int(i) for i in np.argsort(((x - q) ** 2).sum(1) + np.where(
                (np.arange(3000) % 10 < 5) & (np.arange(3000) > 2), 0, np.inf))[:10]] for q in queries]
            assert ids(found) == brute
        before = ids(found)
    with fathom.Database(tmp_path / "db") as db:
        col = db.get_collection("items")
        assert col.count() == 2997
        assert ids(col.search(queries, k=10, filter="label < 5", nprobe=16, rerank=200)) == before
