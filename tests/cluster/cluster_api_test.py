#!/usr/bin/env python3
"""Functional test of the cluster's REST API (no faults): 3 NATS servers + 3 Fathom nodes.

    cluster_api_test.py FATHOM_BINARY [--keep]

Standard library only (the Python-client check imports fathom from build/python next to the
binary, or from PYTHONPATH, and needs numpy; it is skipped with a note when fathom cannot be
imported). Starts the cluster of tests/cluster/cluster_test.py (its Cluster, request and
wait_until are reused) on free loopback ports in a temporary directory, then checks, sending
requests through different nodes: collection create/exists/info/list (with 409 and 400s and
nothing half-created), upserts with wait=true and their 400s, count (with filter), search and
batch search against brute-force cosine (with offset), retrieve, payload set/delete/clear,
deletes by id and filter, scroll pages through every node, recommend and query (single and batch), snapshots made across shards and recovered, tune, payload indexes made and dropped on a live collection, PATCH of metadata, GET /cluster (and a shard no replica answers for, in it, the CLI and /metrics), `fathom cluster status`, /metrics, moving
a shard replica (add, catch up, remove, last-replica and unknown-node 400s), the Python client,
and dropping and re-creating the collection (every node must serve the new one at once, and a
dropped one must be gone from every node as soon as DELETE answered), read_after tokens and
partial answers, aliases, and bounded log retention: the nodes run with --log-retain 5, a node
killed while writes go on comes back behind the trimmed log and installs both shards from a
peer's snapshot, after which all replicas hold the same contents and it alone answers every
point as written; rebalancing (a dry run, then the moves while writes go on: counts even,
every acknowledged write present; then a fourth node joins and receives replicas); and a
replica started with --durability buffered keeping its shard's log from being trimmed.

A wait=true write is applied by one replica of each shard when it answers; the others follow
(reads are eventually consistent across replicas, docs/distributed.md). So after each write the
test waits (up to 10 s, itself a check) until GET /cluster shows every replica with lag 0 before
it reads through every node.

Prints `cluster-api: N checks passed` and exits 0, or prints `cluster-api: FAILED: ...` (the
request and the answer) at the first failing check and exits 1.
"""
import argparse
import http.client
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_test import T0, Cluster, SetupError, log, request, wait_until  # noqa: E402

NAME = "c"
DIM = 4
POINTS = 300
BASE = "/collections/" + NAME
LOG_RETAIN = 5


class CheckFailed(Exception):
    pass


class Checks:
    def __init__(self):
        self.passed = 0

    def ok(self, cond, what, detail=None):
        if not cond:
            raise CheckFailed(what if detail is None else "%s\n    %s" % (what, detail))
        self.passed += 1

    def call(self, node, method, path, body=None, status=200, what=None):
        """One request that must answer `status`; returns the parsed answer (its "result" for 200).
        A minute to answer: on a loaded 2-core CI machine (browser tests beside it) a cluster-wide
        change once took more than the default 15 s."""
        got, answer = request(node.port, method, path, body, timeout=60)
        self.ok(got == status, "%s: %s %s via %s answered %s, expected %s" % (
                    what or "request", method, path, node.name, got, status),
                "body %s\n    answer %s" % (short(body), short(answer)))
        if status == 200:
            self.ok(isinstance(answer, dict) and "result" in answer,
                    "%s %s via %s: no result in the answer" % (method, path, node.name), short(answer))
            return answer["result"]
        return answer


def request_with_headers(port, method, path, body=None, timeout=15):
    """(status, parsed JSON or None, response headers) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return resp.status, parsed, dict(resp.getheaders())
    finally:
        conn.close()


def short(x, limit=600):
    text = x if isinstance(x, str) else repr(x)
    return text if len(text) <= limit else text[:limit] + "...(%d chars)" % len(text)


def error_text(answer):
    status = answer.get("status") if isinstance(answer, dict) else None
    return status.get("error", "") if isinstance(status, dict) else str(answer)


def normalise(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def brute_force(vectors, q):
    """[(score, id)] by cosine similarity, best first (ties by id)."""
    qn = normalise(q)
    scored = [(sum(a * b for a, b in zip(qn, normalise(v))), pid) for pid, v in vectors.items()]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return scored


def same_ranking(got_ids, expected, start=0, tol=1e-5):
    """Whether got_ids is expected[start:start+len] up to swaps between (near-)equal scores."""
    want = expected[start:start + len(got_ids)]
    if len(want) != len(got_ids):
        return False
    score = {pid: s for s, pid in expected}
    for g, (s, _) in zip(got_ids, want):
        if g not in score or abs(score[g] - s) > tol:
            return False
    return len(set(got_ids)) == len(got_ids)


def result_of(node, method, path, body=None):
    """The result of a 200 answer, else None (for polling; not a check)."""
    st, answer = request(node.port, method, path, body)
    return answer.get("result") if st == 200 and isinstance(answer, dict) else None


def cluster_collection(status):
    for c in status.get("collections", []):
        if c.get("name") == NAME:
            return c
    return None


def local_shards(node):
    """[(shard, entry)] of collection c that `node` holds (GET /cluster/local), or None."""
    st, answer = request(node.port, "GET", "/cluster/local")
    if st != 200 or not isinstance(answer, dict) or not isinstance(answer.get("result"), list):
        return None
    return [(e.get("shard"), e) for e in answer["result"] if e.get("collection") == NAME]


def settle(ck, node, after, timeout=10):
    """Waits until GET /cluster via `node` shows every replica of c ready with lag 0. Reads are
    eventually consistent across replicas (docs/distributed.md): a wait=true write is applied by
    one replica of each shard, and a replica made by a create or an add may still be catching up,
    so checks that read through every node come after this. Returns the last GET /cluster result."""
    last = [None]

    def done():
        st = result_of(node, "GET", "/cluster") or {}
        last[0] = st
        col = cluster_collection(st)
        reps = [r for s in (col or {}).get("shards", []) for r in s.get("replicas", [])]
        return bool(col and reps and all(r.get("ready") and r.get("lag") == 0 for r in reps))

    t = time.monotonic()
    ok = wait_until(done, timeout, 0.05)
    if ok and time.monotonic() - t > 1:
        log("note: replicas took %.1f s to catch up after %s" % (time.monotonic() - t, after))
    ck.ok(ok, "replicas of c not all ready with lag 0 within %d s after %s" % (timeout, after),
          short(cluster_collection(last[0]), 2000))
    return last[0]


def recreate_and_check(ck, cluster, via, shards, query):
    """Creates c with `shards` shards through `via`, then checks through every node at once: its
    config, count 0, empty search, no old point; then one upsert through each node (wait=true)
    and the count of 3 everywhere."""
    body = {"vectors": {"size": DIM, "distance": "Cosine"}, "shard_number": shards}
    ck.ok(ck.call(via, "PUT", BASE, body, what="re-create with %d shards" % shards) is True,
          "re-create did not answer true")
    for node in cluster.nodes:
        info = ck.call(node, "GET", BASE, what="GET of the re-created c")
        ck.ok(info.get("config", {}).get("params", {}).get("shard_number") == shards and
              len(info.get("shards", [])) == shards and info.get("points_count") == 0,
              "GET /collections/c via %s right after it was re-created through %s with %d shard(s): "
              "shard_number %s, shards %s, points_count %s" % (
                  node.name, via.name, shards, info.get("config", {}).get("params", {}).get("shard_number"),
                  info.get("shards"), info.get("points_count")), short(info, 1200))
        c = ck.call(node, "POST", BASE + "/points/count", {}, what="count of the re-created c")
        ck.ok(c.get("count") == 0, "count of the re-created c via %s is %s, expected 0" % (node.name, c))
        hits = ck.call(node, "POST", BASE + "/points/search", {"vector": query, "limit": 5},
                       what="search of the re-created c")
        ck.ok(hits == [], "search of the re-created c via %s found %s" % (node.name, short(hits)))
        ck.call(node, "GET", BASE + "/points/7", status=404, what="GET of an old point in the re-created c")
    for k, node in enumerate(cluster.nodes):
        result = ck.call(node, "PUT", BASE + "/points?wait=true",
                         {"points": [{"id": 7 + k, "vector": [1.0, float(k), 0.0, 0.0]}]},
                         what="upsert into the re-created c")
        ck.ok(result.get("status") == "completed", "upsert into the re-created c via %s: %s" % (node.name, result))
    settle(ck, via, "upserts into the re-created c")
    for node in cluster.nodes:
        c = ck.call(node, "POST", BASE + "/points/count", {})
        ck.ok(c.get("count") == 3, "count of the re-created c via %s after 3 upserts is %s" % (node.name, c))


def print_replicas(node):
    """GET /cluster in brief (each replica's applied position, points and lag), for a failure."""
    st, answer = request(node.port, "GET", "/cluster")
    if st != 200 or not isinstance(answer, dict):
        print("--- GET /cluster via %s answered %s: %s" % (node.name, st, short(answer)))
        return
    print("--- GET /cluster via %s (now):" % node.name)
    for c in answer["result"].get("collections", []):
        for s in c.get("shards", []):
            print("    %s shard %s last_seq %s: %s" % (c.get("name"), s.get("shard"), s.get("last_seq"), ", ".join(
                "%s applied=%s points=%s lag=%s" % (r.get("node"), r.get("applied"), r.get("points"), r.get("lag"))
                for r in s.get("replicas", []))))


def run(args, tmp):
    ck = Checks()
    rng = random.Random(20240601)
    # A short log (5 entries beyond what every live replica applied): replicas added later (10.)
    # or away while writes go on (15.) install a peer's snapshot before they apply the log.
    cluster = Cluster(os.path.abspath(args.fathom_binary), tmp, ["--log-retain", str(LOG_RETAIN)])
    n1, n2, n3 = cluster.nodes
    by_name = {n.name: n for n in cluster.nodes}
    try:
        cluster.start_nats()
        for node in cluster.nodes:
            node.start()
        for node in cluster.nodes:
            cluster.wait_healthy(node, 60)
        # Every node must see all three heartbeats before a create may ask for 2 replicas.
        def all_live():
            st, body = request(n1.port, "GET", "/cluster")
            nodes = body.get("result", {}).get("nodes", []) if st == 200 and isinstance(body, dict) else []
            return len(nodes) == 3 and all(n.get("heartbeat") and n.get("alive") for n in nodes)
        if not wait_until(all_live, 20):
            raise SetupError("GET /cluster does not show 3 live nodes within 20 s", cluster.nodes)
        log("cluster up: Fathom on %s" % cluster.rest_ports)

        # 1. collections --------------------------------------------------------------------
        create = {"vectors": {"size": DIM, "distance": "Cosine"}, "shard_number": 3, "replication_factor": 2}
        ck.ok(ck.call(n1, "PUT", BASE, create, what="create") is True, "create answered a result other than true")
        ck.call(n2, "PUT", BASE, create, status=409, what="create again")
        listed = ck.call(n3, "GET", "/collections")
        ck.ok([c.get("name") for c in listed.get("collections", [])] == [NAME],
              "GET /collections via n3 lists %s, expected [c]" % listed)
        for node in cluster.nodes:
            ck.ok(ck.call(node, "GET", BASE + "/exists") == {"exists": True}, "%s: exists is not true" % node.name)
        info = ck.call(n2, "GET", BASE)
        params = info.get("config", {}).get("params", {})
        ck.ok(params.get("shard_number") == 3 and params.get("replication_factor") == 2,
              "GET /collections/c: config.params has shard_number %s replication_factor %s, expected 3 and 2"
              % (params.get("shard_number"), params.get("replication_factor")), short(info))
        shards = info.get("shards")
        ck.ok(isinstance(shards, list) and len(shards) == 3 and
              all(isinstance(s, list) and len(s) == 2 and len(set(s)) == 2 and set(s) <= set(by_name) for s in shards),
              "GET /collections/c: shards is not 3 lists of 2 distinct node ids", short(shards))
        answer = ck.call(n3, "PUT", "/collections/c5", dict(create, replication_factor=5), status=400,
                         what="create with replication_factor 5")
        ck.ok("live nodes" in error_text(answer), "the replication_factor 5 error does not mention live nodes",
              short(answer))
        ck.call(n2, "PUT", "/collections/bad", {"vectors": {"size": 0, "distance": "Cosine"}}, status=400,
                what="create with size 0")
        for node in cluster.nodes:
            listed = ck.call(node, "GET", "/collections")
            ck.ok([c.get("name") for c in listed.get("collections", [])] == [NAME],
                  "after the failed creates GET /collections via %s lists %s, expected only c" % (node.name, listed))
            ck.ok(ck.call(node, "GET", "/collections/bad/exists") == {"exists": False},
                  "collection 'bad' exists after its create failed")
        log("1. collections ok")

        # 2. upserts ------------------------------------------------------------------------
        vectors = {}
        for i in range(POINTS):
            v = [0.0] * DIM
            while not any(v):
                v = [rng.randint(-1024, 1024) / 256 for _ in range(DIM)]
            vectors[i] = v
        payload_of = {i: {"i": i, "even": i % 2 == 0} for i in range(POINTS)}
        for b, node in enumerate(cluster.nodes):
            ids = range(b * 100, (b + 1) * 100)
            body = {"points": [{"id": i, "vector": vectors[i], "payload": payload_of[i]} for i in ids]}
            result = ck.call(node, "PUT", BASE + "/points?wait=true", body, what="upsert batch %d" % b)
            ck.ok(result.get("status") == "completed" and result.get("upserted") == 100,
                  "upsert batch %d via %s: expected status completed and upserted 100" % (b, node.name), short(result))
        ck.call(n2, "PUT", BASE + "/points?wait=true",
                {"points": [{"id": 1000, "vector": [1.0, 2.0, 3.0]}]}, status=400, what="upsert of a 3-d vector")
        # Ids are unsigned integers or any string of 1 to 256 bytes (Fathom, unlike Qdrant, does
        # not require UUIDs): "" and -1 are refused, "not-a-uuid" is a valid id.
        for bad_id in ("", -1, 1.5, "x" * 257):
            ck.call(n3, "PUT", BASE + "/points?wait=true",
                    {"points": [{"id": bad_id, "vector": [1.0, 2.0, 3.0, 4.0]}]}, status=400,
                    what="upsert with id %s" % short(bad_id, 20))
        result = ck.call(n3, "PUT", BASE + "/points?wait=true",
                         {"points": [{"id": "not-a-uuid", "vector": [1.0, 2.0, 3.0, 4.0]}]}, what="string id")
        ck.ok(result.get("status") == "completed", "upsert of id 'not-a-uuid' not completed", short(result))
        settle(ck, n1, "the string-id upsert")
        p = ck.call(n1, "GET", BASE + "/points/not-a-uuid")
        ck.ok(isinstance(p, dict) and p.get("id") == "not-a-uuid", "GET points/not-a-uuid answered %s" % short(p))
        result = ck.call(n2, "POST", BASE + "/points/delete?wait=true", {"points": ["not-a-uuid"]})
        ck.ok(result.get("deleted") == 1, "delete of id 'not-a-uuid' answered %s" % short(result))
        settle(ck, n3, "the string-id delete")
        ck.call(n3, "GET", BASE + "/points/not-a-uuid", status=404, what="GET of the deleted string id")
        # A valid point next to the bad one: the whole request is refused, nothing stored.
        ck.call(n1, "PUT", BASE + "/points?wait=true",
                {"points": [{"id": 1001, "vector": [1.0, 0.0, 0.0, 0.0]}, {"id": 1002, "vector": [1.0, 0.0]}]},
                status=400, what="upsert of a good and a 2-d point")
        settle(ck, n1, "the upserts")
        for node in cluster.nodes:
            c = ck.call(node, "POST", BASE + "/points/count", {})
            ck.ok(c.get("count") == POINTS, "count via %s after the refused upserts is %s, expected %d"
                  % (node.name, c, POINTS))
        log("2. upserts ok")

        # 3. count ----------------------------------------------------------------------------
        even = {"must": [{"key": "even", "match": {"value": True}}]}
        for node in cluster.nodes:
            c = ck.call(node, "POST", BASE + "/points/count", {"filter": even})
            ck.ok(c.get("count") == POINTS // 2, "count of even via %s is %s, expected %d" % (node.name, c, POINTS // 2))
        log("3. count ok")

        # 4. search -------------------------------------------------------------------------
        queries = []
        for _ in range(5):
            q = [rng.randint(-1024, 1024) / 256 for _ in range(DIM)]
            if any(q):
                queries.append(q)
        for q in queries:
            expected = brute_force(vectors, q)
            per_node = {}
            for node in cluster.nodes:
                hits = ck.call(node, "POST", BASE + "/points/search", {"vector": q, "limit": 5, "with_payload": True})
                ids = [h.get("id") for h in hits]
                per_node[node.name] = ids
                ck.ok(same_ranking(ids, expected), "search via %s for %s: ids %s, brute force %s"
                      % (node.name, q, ids, [(pid, round(s, 6)) for s, pid in expected[:5]]), short(hits))
                ck.ok(all(h.get("payload") == payload_of[h["id"]] for h in hits),
                      "search via %s: payloads differ from the upserted ones" % node.name, short(hits))
                ck.ok(all(abs(h.get("score", 1e9) - dict((p, s) for s, p in expected)[h["id"]]) < 1e-4 for h in hits),
                      "search via %s: scores are not the cosine similarities" % node.name, short(hits))
            ck.ok(len({tuple(v) for v in per_node.values()}) == 1, "search ids differ between nodes", per_node)
            hits = ck.call(n2, "POST", BASE + "/points/search", {"vector": q, "limit": 5, "offset": 5})
            ids = [h.get("id") for h in hits]
            ck.ok(same_ranking(ids, expected, start=5), "search with offset 5 via n2: ids %s, brute-force ranks 5..9 %s"
                  % (ids, [pid for _, pid in expected[5:10]]), short(hits))
        searches = [{"vector": queries[0], "limit": 5}, {"vector": queries[1], "limit": 3, "offset": 2}]
        batch = ck.call(n3, "POST", BASE + "/points/search/batch", {"searches": searches})
        ck.ok(isinstance(batch, list) and len(batch) == 2, "search/batch returned %s lists, expected 2" % (
              len(batch) if isinstance(batch, list) else batch))
        for s, got in zip(searches, batch):
            single = ck.call(n1, "POST", BASE + "/points/search", s)
            ck.ok([h["id"] for h in got] == [h["id"] for h in single],
                  "search/batch list %s differs from the single search %s" % ([h["id"] for h in got],
                                                                          [h["id"] for h in single]))
        log("4. search ok")

        # 5. retrieve -----------------------------------------------------------------------
        got = ck.call(n1, "POST", BASE + "/points", {"ids": [1, 2, 999], "with_payload": True, "with_vector": True})
        ck.ok(isinstance(got, list) and sorted(p.get("id") for p in got) == [1, 2],
              "retrieve of [1, 2, 999] gave ids %s, expected [1, 2]" % (
                  [p.get("id") for p in got] if isinstance(got, list) else got))
        for p in got:
            ck.ok(p.get("payload") == payload_of[p["id"]], "retrieved point %s has payload %s" % (p["id"], p.get("payload")))
            want = normalise(vectors[p["id"]])
            vec = p.get("vector")
            ck.ok(isinstance(vec, list) and len(vec) == DIM and all(abs(a - b) < 1e-5 for a, b in zip(vec, want)),
                  "retrieved point %s has vector %s, expected the normalised %s" % (p["id"], vec, want))
        p7 = ck.call(n2, "GET", BASE + "/points/7")
        ck.ok(isinstance(p7, dict) and p7.get("id") == 7 and p7.get("payload") == payload_of[7],
              "GET points/7 answered %s" % short(p7))
        ck.call(n3, "GET", BASE + "/points/999999", status=404, what="GET of a missing point")
        log("5. retrieve ok")

        # 6. payload ------------------------------------------------------------------------
        tag_x = {"must": [{"key": "tag", "match": {"value": "x"}}]}
        result = ck.call(n2, "POST", BASE + "/points/payload?wait=true", {"payload": {"tag": "x"}, "points": [1, 2, 3]})
        ck.ok(result.get("status") == "completed" and result.get("updated") == 3,
              "set payload: expected status completed and updated 3", short(result))
        settle(ck, n3, "set payload")
        for node in cluster.nodes:
            c = ck.call(node, "POST", BASE + "/points/count", {"filter": tag_x})
            ck.ok(c.get("count") == 3, "count of tag x via %s is %s, expected 3" % (node.name, c))
        p1 = ck.call(n1, "GET", BASE + "/points/1")
        ck.ok(p1.get("payload") == dict(payload_of[1], tag="x"), "point 1 after set payload: %s" % p1.get("payload"))
        result = ck.call(n3, "POST", BASE + "/points/payload/delete?wait=true", {"keys": ["tag"], "filter": tag_x})
        ck.ok(result.get("status") == "completed", "delete payload keys: status is not completed", short(result))
        settle(ck, n1, "delete payload key")
        for node in cluster.nodes:
            c = ck.call(node, "POST", BASE + "/points/count", {"filter": tag_x})
            ck.ok(c.get("count") == 0, "count of tag x via %s after deleting the key is %s, expected 0" % (node.name, c))
        p1 = ck.call(n2, "GET", BASE + "/points/1")
        ck.ok(p1.get("payload") == payload_of[1], "point 1 after deleting key tag: %s" % p1.get("payload"))
        result = ck.call(n1, "POST", BASE + "/points/payload/clear?wait=true", {"points": [4]})
        ck.ok(result.get("status") == "completed", "clear payload: status is not completed", short(result))
        settle(ck, n2, "clear payload")
        p4 = ck.call(n3, "GET", BASE + "/points/4")
        ck.ok(p4.get("payload") == {}, "point 4 after clear payload has payload %s, expected {}" % p4.get("payload"))
        log("6. payload ok")

        # 7. delete -------------------------------------------------------------------------
        result = ck.call(n1, "POST", BASE + "/points/delete?wait=true", {"points": [0, 1, 2, 12345]})
        ck.ok(result.get("status") == "completed" and result.get("deleted") == 3,
              "delete of [0, 1, 2, 12345]: expected status completed and deleted 3", short(result))
        settle(ck, n3, "delete by id")
        alive = set(range(POINTS)) - {0, 1, 2}
        for node in cluster.nodes:
            c = ck.call(node, "POST", BASE + "/points/count", {})
            ck.ok(c.get("count") == len(alive), "count via %s after deleting 3 is %s, expected %d" % (node.name, c, len(alive)))
        # Even ids still holding even=true: not 0 and 2 (deleted) nor 4 (payload cleared).
        doomed = {i for i in alive if i % 2 == 0 and i != 4}
        result = ck.call(n2, "POST", BASE + "/points/delete?wait=true", {"filter": even})
        ck.ok(result.get("status") == "completed" and result.get("deleted") == len(doomed),
              "delete by filter even=true: expected status completed and deleted %d" % len(doomed), short(result))
        settle(ck, n1, "delete by filter")
        alive -= doomed
        for node in cluster.nodes:
            c = ck.call(node, "POST", BASE + "/points/count", {})
            ck.ok(c.get("count") == len(alive), "count via %s after the filter delete is %s, expected %d"
                  % (node.name, c, len(alive)))
            c = ck.call(node, "POST", BASE + "/points/count", {"filter": even})
            ck.ok(c.get("count") == 0, "count of even via %s after deleting them is %s" % (node.name, c))
        for q in queries[:2]:
            for node in cluster.nodes:
                hits = ck.call(node, "POST", BASE + "/points/search", {"vector": q, "limit": POINTS})
                ids = [h.get("id") for h in hits]
                ck.ok(set(ids) == alive and len(ids) == len(alive),
                      "search of everything via %s returns %d ids, deleted ones %s, missing %s" % (
                          node.name, len(ids), sorted(set(ids) - alive)[:10], sorted(alive - set(ids))[:10]))
        log("7. delete ok")

        # 8. scroll -------------------------------------------------------------------------
        # Pages of every size through the nodes in turn (the cursor is a point id: its shard says
        # where the next page goes on), with and without a filter: every live point exactly once.
        odd = {"must": [{"key": "even", "match": {"value": False}}]}
        for limit in (1, 7, 50, POINTS + 5):
            for flt, expected in ((None, alive), (odd, {i for i in alive if i % 2 == 1})):
                seen, offset, pages = [], None, 0
                while pages <= POINTS + 1:
                    body = {"limit": limit, "with_payload": True}
                    if offset is not None:
                        body["offset"] = offset
                    if flt:
                        body["filter"] = flt
                    page = ck.call(cluster.nodes[pages % 3], "POST", BASE + "/points/scroll", body,
                                   what="scroll page %d (limit %d)" % (pages, limit))
                    ck.ok(len(page.get("points", [])) <= limit, "a scroll page holds more than its limit", short(page))
                    seen += [p["id"] for p in page["points"]]
                    pages += 1
                    offset = page.get("next_page_offset")
                    if offset is None:
                        break
                ck.ok(sorted(seen) == sorted(expected),
                      "scroll with limit %d%s: %d ids (%d distinct), expected %d" % (
                          limit, " and a filter" if flt else "", len(seen), len(set(seen)), len(expected)))
        # Recommend by ids: the same answer through every node, never the examples themselves,
        # and a missing example is a 404 naming it.
        examples = sorted(alive)[:3]
        answers = []
        for node in cluster.nodes:
            hits = ck.call(node, "POST", BASE + "/points/recommend",
                           {"positive": examples[:2], "negative": examples[2:], "limit": 5}, what="recommend")
            ids = [h.get("id") for h in hits]
            ck.ok(len(ids) == 5 and not set(ids) & set(examples) and set(ids) <= alive,
                  "recommend via %s returned %s (examples %s)" % (node.name, ids, examples))
            answers.append(ids)
        ck.ok(answers[0] == answers[1] == answers[2], "recommend differs between nodes", answers)
        answer = ck.call(n1, "POST", BASE + "/points/recommend", {"positive": [987654]}, status=404, what="recommend")
        ck.ok("987654" in error_text(answer), "the missing example is not named", short(answer))
        # Query by id (the point itself left out) and batch forms agree with the single forms.
        q_ids = None
        for node in cluster.nodes:
            got = ck.call(node, "POST", BASE + "/points/query", {"query": examples[0], "limit": 4}, what="query by id")
            ids = [h.get("id") for h in got.get("points", [])]
            ck.ok(len(ids) == 4 and examples[0] not in ids and set(ids) <= alive, "query by id via %s: %s" % (node.name, ids))
            ck.ok(q_ids is None or ids == q_ids, "query by id differs between nodes", (q_ids, ids))
            q_ids = ids
        batch = ck.call(n2, "POST", BASE + "/points/query/batch",
                        {"searches": [{"query": examples[0], "limit": 4}, {"query": {"nearest": examples[1]}, "limit": 2}]},
                        what="query batch")
        ck.ok([h.get("id") for h in batch[0]["points"]] == q_ids and len(batch[1]["points"]) == 2,
              "query batch does not match the single queries", short(batch))
        rbatch = ck.call(n1, "POST", BASE + "/points/recommend/batch",
                         {"searches": [{"positive": examples[:2], "negative": examples[2:], "limit": 5}]}, what="recommend batch")
        ck.ok([h.get("id") for h in rbatch[0]] == answers[0], "recommend batch differs from recommend", short(rbatch))
        ck.ok(ck.call(n3, "GET", BASE + "/snapshots", what="snapshots") == [], "c has snapshots on n3 already")
        log("8. scroll ok")

        # 9. cluster status, CLI, metrics ---------------------------------------------------
        st = settle(ck, n2, "the deletes")
        ck.ok(st.get("status") == "enabled", "GET /cluster status is %s, expected enabled" % st.get("status"))
        nodes = st.get("nodes", [])
        ck.ok(len(nodes) == 3 and all(n.get("alive") for n in nodes), "GET /cluster nodes: %s" % nodes)
        col = cluster_collection(st)
        ck.ok(col is not None and len(col.get("shards", [])) == 3 and
              all(len(s.get("replicas", [])) == 2 for s in col["shards"]),
              "GET /cluster: collection c is not 3 shards x 2 replicas", short(col, 2000))
        reps = [r for s in col["shards"] for r in s["replicas"]]
        ck.ok(all(r.get("lag") == 0 for r in reps), "GET /cluster: lag not 0 after 10 s", short(col, 2000))
        ck.ok(sum(s["replicas"][0].get("points", -1) for s in col["shards"]) == len(alive),
              "GET /cluster: the shards' points do not add up to %d" % len(alive), short(col, 2000))
        cli = subprocess.run([os.path.abspath(args.fathom_binary), "cluster", "status", "--url",
                              "http://127.0.0.1:%d" % n3.port], capture_output=True, text=True, timeout=30)
        ck.ok(cli.returncode == 0 and "collection c" in cli.stdout,
              "fathom cluster status exited %d" % cli.returncode, "stdout %s\n    stderr %s" % (cli.stdout, cli.stderr))
        holder = by_name[info["shards"][0][0]]
        mst, metrics = request(holder.port, "GET", "/metrics")
        ck.ok(mst == 200 and isinstance(metrics, str), "GET /metrics via %s answered %s" % (holder.name, mst))
        ck.ok('fathom_cluster_replica_applied_sequence{collection="c",shard=' in metrics,
              "/metrics of %s has no fathom_cluster_replica_applied_sequence for c" % holder.name,
              "\n".join(l for l in metrics.splitlines() if "fathom_cluster" in l))
        ck.ok("fathom_cluster_live_nodes 3" in metrics.splitlines(),
              "/metrics of %s has no 'fathom_cluster_live_nodes 3'" % holder.name,
              "\n".join(l for l in metrics.splitlines() if "fathom_cluster" in l))
        log("9. cluster status ok")

        # 10. move a replica of shard 0 -----------------------------------------------------
        path = "/cluster/collections/c/shards/0/replicas"
        a, b = info["shards"][0]
        x = next(n for n in by_name if n not in (a, b))
        result = ck.call(n1, "POST", path, {"add": x}, what="add a replica")
        ck.ok(sorted(result.get("replicas", [])) == sorted([a, b, x]), "add %s: replicas %s" % (x, result))

        def replica(status, node):
            col = cluster_collection(status) or {}
            for s in col.get("shards", []):
                if s.get("shard") == 0:
                    return {r.get("node"): r for r in s.get("replicas", [])}.get(node)
            return None

        last = [None]

        def caught_up():
            st = result_of(n2, "GET", "/cluster") or {}
            last[0] = st
            rx, ra = replica(st, x), replica(st, a)
            return rx and ra and rx.get("ready") and rx.get("lag") == 0 and rx.get("points") == ra.get("points") \
                and ra.get("points") is not None
        ck.ok(wait_until(caught_up, 10, 0.25), "the new replica of shard 0 on %s did not catch up within 10 s" % x,
              short(cluster_collection(last[0]), 2000))
        result = ck.call(n2, "POST", path, {"remove": a}, what="remove a replica")
        ck.ok(sorted(result.get("replicas", [])) == sorted([b, x]), "remove %s: replicas %s" % (a, result))
        gone = wait_until(lambda: (lambda s: s is not None and 0 not in [sh for sh, _ in s])(local_shards(by_name[a])), 5)
        ck.ok(gone, "GET /cluster/local on %s still lists shard 0 of c 5 s after its removal" % a,
              short(local_shards(by_name[a])))
        for node in cluster.nodes:
            c = ck.call(node, "POST", BASE + "/points/count", {})
            ck.ok(c.get("count") == len(alive), "count via %s after moving shard 0 is %s, expected %d"
                  % (node.name, c, len(alive)))
        result = ck.call(n3, "POST", path, {"remove": b}, what="remove the second-last replica")
        ck.ok(result.get("replicas") == [x], "remove %s: replicas %s, expected [%s]" % (b, result, x))
        ck.call(n1, "POST", path, {"remove": x}, status=400, what="remove the last replica")
        ck.call(n2, "POST", path, {"add": "nope"}, status=400, what="add an unknown node")
        for node in cluster.nodes:
            c = ck.call(node, "POST", BASE + "/points/count", {})
            ck.ok(c.get("count") == len(alive), "count via %s with shard 0 on %s alone is %s, expected %d"
                  % (node.name, x, c, len(alive)))
        log("10. replica move ok")

        # 11. Python client -----------------------------------------------------------------
        try:
            import fathom
        except ImportError as e:
            fathom = None
            log("11. SKIPPED: cannot import fathom (%s); set PYTHONPATH=build/python" % e)
        if fathom is not None:
            client = fathom.Client("http://127.0.0.1:%d" % n3.port)
            col = client.get_collection(NAME)
            rest = ck.call(n1, "POST", BASE + "/points/count", {})["count"]
            ck.ok(col.count() == rest, "client count %s, REST count %s" % (col.count(), rest))
            q = queries[2]
            hits = col.search(q, k=5)
            rest_hits = ck.call(n2, "POST", BASE + "/points/search", {"vector": q, "limit": 5})
            ck.ok([h.id for h in hits] == [h["id"] for h in rest_hits],
                  "client search ids %s, REST %s" % ([h.id for h in hits], [h["id"] for h in rest_hits]))
            ck.ok(col.upsert([5000, 5001], [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]],
                             [{"k": "a"}, {"k": "b"}]) == 2, "client upsert did not return 2")
            settle(ck, n3, "the client's upsert")
            got = col.get([5000, 5001])
            ck.ok([p.id if p else None for p in got] == [5000, 5001] and [p.payload for p in got] == [{"k": "a"}, {"k": "b"}],
                  "client get after upsert: %s" % got)
            alive |= {5000, 5001}
            c = ck.call(n1, "POST", BASE + "/points/count", {})
            ck.ok(c.get("count") == len(alive), "REST count after the client's upsert is %s, expected %d" % (c, len(alive)))
            client.close()
            log("11. python client ok")

        # 12. drop and re-create ------------------------------------------------------------
        ck.ok(ck.call(n2, "DELETE", BASE, what="drop") is True, "DELETE /collections/c did not answer true")
        for node in cluster.nodes:
            ck.ok(wait_until(lambda: result_of(node, "GET", BASE + "/exists") == {"exists": False}, 5),
                  "%s still says c exists 5 s after the drop" % node.name, short(request(node.port, "GET", BASE + "/exists")))
        for node in cluster.nodes:
            ck.ok(wait_until(lambda: local_shards(node) == [], 5),
                  "GET /cluster/local on %s still lists replicas of c 5 s after the drop" % node.name,
                  short(local_shards(node)))
        # A create answers once every shard has a replica, and any node serves the collection at
        # once (a node that has not synced yet reads the metadata from the bucket).
        recreate_and_check(ck, cluster, n3, 1, queries[0])
        # Dropped and made again at once, with another shard count: no node may go on serving
        # the dropped collection's metadata (its shards, its deleted logs).
        ck.ok(ck.call(n1, "DELETE", BASE, what="second drop") is True, "the second DELETE did not answer true")
        for node in (n2, n3):
            ck.ok(result_of(node, "GET", BASE + "/exists") == {"exists": False},
                  "%s says c exists right after DELETE through n1 answered true" % node.name)
            ck.call(node, "GET", BASE, status=404, what="GET /collections/c right after DELETE through n1 answered true")
        recreate_and_check(ck, cluster, n2, 2, queries[0])
        log("12. drop and re-create ok")

        # 13. read-your-writes tokens and opt-in partial answers -----------------------------
        P = "/collections/p"
        ck.call(n1, "PUT", P, {"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 3,
                               "replication_factor": 1}, what="create p")
        w = ck.call(n1, "PUT", P + "/points?wait=false",
                    {"points": [{"id": i, "vector": [i, 0, 0, 0]} for i in range(60)]}, what="upsert p")
        token = w.get("read_after", "")
        ck.ok(all(part.count(":") == 1 for part in token.split(",")) and token, "read_after token %r" % token)
        for node in cluster.nodes:  # through any node, at once: each replica waits for its entry
            c = ck.call(node, "POST", P + "/points/count?read_after=" + token, {}, what="count with read_after")
            ck.ok(c.get("count") == 60, "count via %s with read_after=%s is %s" % (node.name, token, c))
        answer = ck.call(n2, "POST", P + "/points/count?read_after=zero", {}, status=400, what="bad read_after")
        ck.ok("read_after" in error_text(answer), "the read_after 400 does not say what is wrong", short(answer))
        status = ck.call(n1, "GET", "/cluster", what="cluster status")
        shards = [c for c in status["collections"] if c["name"] == "p"][0]["shards"]
        holder = shards[0]["replicas"][0]["node"]
        shard0_points = shards[0]["replicas"][0]["points"]
        victim = [n for n in cluster.nodes if n.name == holder][0]
        via = [n for n in cluster.nodes if n is not victim][0]
        victim.kill()
        got, answer, headers = request_with_headers(via.port, "POST", P + "/points/search", {"vector": [1, 0, 0, 0], "limit": 100})
        ck.ok(got == 503 and "shard 0" in error_text(answer),
              "a search with shard 0's only replica dead answered %s (expected 503 naming shard 0)" % got, short(answer))
        got, answer, headers = request_with_headers(via.port, "POST", P + "/points/search?partial=true",
                                                    {"vector": [1, 0, 0, 0], "limit": 100})
        ids = [h.get("id") for h in (answer or {}).get("result") or []]
        ck.ok(got == 200 and headers.get("Fathom-Missing-Shards") == "0" and len(ids) == 60 - shard0_points,
              "partial search answered %s, missing %r, %d hits (expected %d)" % (
                  got, headers.get("Fathom-Missing-Shards"), len(ids), 60 - shard0_points))
        got, answer, headers = request_with_headers(via.port, "POST", P + "/points/count?partial=true", {})
        ck.ok(got == 200 and (answer or {}).get("result", {}).get("count") == 60 - shard0_points
              and headers.get("Fathom-Missing-Shards") == "0", "partial count answered %s %s" % (got, short(answer)))
        victim.start()
        cluster.wait_healthy(victim, 60)
        ck.ok(wait_until(lambda: (result_of(via, "POST", P + "/points/count", {}) or {}).get("count") == 60, 20),
              "the restarted %s does not serve shard 0 again" % victim.name)
        log("13. read_after and partial ok")

        # 14. aliases: a switch in one request, seen through every node when it answers -----
        for name, v in (("v1", [1, 0, 0, 0]), ("v2", [0, 1, 0, 0])):
            ck.call(n1, "PUT", "/collections/" + name, {"vectors": {"size": 4, "distance": "Euclid"},
                                                        "shard_number": 2, "replication_factor": 2}, what="create " + name)
            ck.call(n1, "PUT", "/collections/%s/points?wait=true" % name,
                    {"points": [{"id": 1, "vector": v, "payload": {"model": name}}]}, what="upsert " + name)
        for target, via in (("v1", n1), ("v2", n2)):
            actions = [{"create_alias": {"collection_name": target, "alias_name": "images"}}]
            if target == "v2":
                actions.insert(0, {"delete_alias": {"alias_name": "images"}})
            ck.ok(ck.call(via, "POST", "/collections/aliases", {"actions": actions}, what="alias to " + target) is True,
                  "alias switch to %s did not answer true" % target)
            for node in cluster.nodes:
                got = ck.call(node, "POST", "/collections/images/points", {"ids": [1], "with_payload": True},
                              what="read through the alias")
                ck.ok(got and got[0].get("payload") == {"model": target},
                      "through %s the alias 'images' reads %s, expected %s" % (node.name, short(got), target))
        ck.ok(ck.call(n3, "GET", "/aliases") == {"aliases": [{"alias_name": "images", "collection_name": "v2"}]},
              "GET /aliases after the switch", short(ck.call(n3, "GET", "/aliases")))
        answer = ck.call(n1, "POST", "/collections/aliases",
                         {"actions": [{"create_alias": {"collection_name": "v1", "alias_name": "v2"}}]}, status=409,
                         what="an alias named like a collection")
        ck.ok("name of a collection" in error_text(answer), "the 409 does not say why", short(answer))
        ck.call(n2, "DELETE", "/collections/v2", what="drop v2")
        ck.ok(ck.call(n3, "GET", "/aliases") == {"aliases": []}, "dropping v2 left its alias",
              short(ck.call(n3, "GET", "/aliases")))
        log("14. aliases ok")

        # 15. bounded log retention and snapshot install ------------------------------------
        T = "/collections/t"
        ck.call(n1, "PUT", T, {"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 2,
                               "replication_factor": 3}, what="create t")
        expected = {}
        def write(via, i):
            v = [float(i), float(i % 7), 1.0, -float(i % 3)]
            ck.call(via, "PUT", T + "/points?wait=true",
                    {"points": [{"id": i, "vector": v, "payload": {"i": i}}]}, what="upsert into t")
            expected[i] = v
        for i in range(40):
            write(cluster.nodes[i % 3], i)

        def shards_of_t(via):
            st = result_of(via, "GET", "/cluster") or {}
            col = [c for c in st.get("collections", []) if c.get("name") == "t"]
            return col[0]["shards"] if col else []

        # The log rotates (a new stream per epoch, checked every 5 s) and deletes whole epochs
        # every live replica is past: keep writing until an epoch of each shard is gone.
        def trimmed(via, past=0):
            shards = shards_of_t(via)
            return len(shards) == 2 and all(s.get("first_epoch", 0) > past for s in shards)

        def write_until(done, writers, start, seconds):
            i, deadline = start, time.time() + seconds
            while not done() and time.time() < deadline:
                write(writers[i % len(writers)], i)
                i += 1
                time.sleep(0.1)
            return i
        nxt = write_until(lambda: trimmed(n1), cluster.nodes, 40, 60)
        ck.ok(trimmed(n1), "the logs of t were not trimmed (no epoch deleted) within 60 s of writes",
              short(shards_of_t(n1), 2000))
        at_kill = max(s.get("epoch", 0) for s in shards_of_t(n1))
        n3.kill()
        ck.call(n2, "POST", T + "/points/delete?wait=true", {"points": [0, 1, 2, 41]}, what="delete from t")
        for i in (0, 1, 2, 41):
            expected.pop(i, None)
        ck.call(n1, "POST", T + "/points/payload?wait=true", {"payload": {"tag": "late"}, "points": [50, 51]},
                what="set payload in t")
        # With n3 away, the live replicas' positions bound the trim: the epochs n3 was in go.
        nxt = write_until(lambda: trimmed(n1, at_kill), (n1, n2), max(nxt, 80), 60)
        ck.ok(trimmed(n1, at_kill), "the logs of t were not trimmed past epoch %d with n3 away" % at_kill,
              short(shards_of_t(n1), 2000))
        n3.start()
        cluster.wait_healthy(n3, 60)

        def installed():
            mst, metrics = request(n3.port, "GET", "/metrics")
            return mst == 200 and isinstance(metrics, str) and \
                "fathom_cluster_snapshots_installed_total 2" in metrics.splitlines()
        ck.ok(wait_until(installed, 60, 0.5), "n3 did not install snapshots of both shards of t within 60 s",
              "\n".join(l for l in (request(n3.port, "GET", "/metrics")[1] or "").splitlines() if "fathom_cluster" in l))

        def t_replicas_equal():
            sums = {}
            for node in cluster.nodes:
                st, answer = request(node.port, "GET", "/cluster/local")
                if st != 200:
                    return False
                for e in answer["result"]:
                    if e.get("collection") == "t":
                        sums.setdefault(e["shard"], []).append((e.get("points"), e.get("checksum")))
            return len(sums) == 2 and all(len(v) == 3 and len(set(v)) == 1 for v in sums.values())
        ck.ok(wait_until(t_replicas_equal, 30, 0.5), "the 3 replicas of each shard of t differ after n3's install",
              short([(n.name, request(n.port, "GET", "/cluster/local")[1]) for n in cluster.nodes], 3000))
        # n3 alone answers for what it holds: every point, payload and the late payload change.
        c = ck.call(n3, "POST", T + "/points/count", {})
        ck.ok(c.get("count") == len(expected), "count of t via n3 is %s, expected %d" % (c, len(expected)))
        n1.send(signal.SIGSTOP)
        n2.send(signal.SIGSTOP)
        try:
            ids = sorted(expected)
            pts = ck.call(n3, "POST", T + "/points", {"ids": ids, "with_payload": True, "with_vector": True},
                          what="retrieve t through n3 alone")
        finally:
            n1.send(signal.SIGCONT)
            n2.send(signal.SIGCONT)
        by_id = {p["id"]: p for p in pts}
        ck.ok(sorted(by_id) == ids, "n3 alone returns ids %s, expected %s" % (sorted(by_id), ids))
        bad = [i for i in ids if by_id[i]["vector"] != expected[i] or by_id[i]["payload"].get("i") != i
               or (by_id[i]["payload"].get("tag") == "late") != (i in (50, 51) and i in expected)]
        ck.ok(not bad, "n3's installed replicas differ from what was written at ids %s" % bad[:10],
              short([by_id[i] for i in bad[:3]]))
        sent = 0
        for node in (n1, n2):
            _, metrics = request(node.port, "GET", "/metrics")
            for line in (metrics or "").splitlines():
                if line.startswith("fathom_cluster_snapshots_sent_total "):
                    sent += int(line.split()[1])
        ck.ok(sent >= 2, "n1 and n2 say they sent %d snapshots, expected at least 2" % sent)
        log("15. log trimming and snapshot install ok")

        # 16. rebalance while writes go on ---------------------------------------------------
        R = "/collections/r"
        ck.call(n1, "PUT", R, {"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 6,
                               "replication_factor": 1}, what="create r")
        for i in range(30):
            ck.call(n1, "PUT", R + "/points?wait=true", {"points": [{"id": i, "vector": [i, 1, 2, 3]}]},
                    what="upsert into r")
        layout = ck.call(n1, "GET", R)["shards"]
        for shard, holders in enumerate(layout):  # every shard of r onto n1: n1 is the fullest
            if "n1" in holders:
                continue
            ck.call(n1, "POST", "/cluster/collections/r/shards/%d/replicas" % shard, {"add": "n1"},
                    what="add n1 to r's shard %d" % shard)
            def caught_up(shard=shard):
                col = [c for c in (result_of(n1, "GET", "/cluster") or {}).get("collections", []) if c["name"] == "r"]
                reps = col[0]["shards"][shard]["replicas"] if col else []
                return len(reps) == 2 and all(r.get("ready") and r.get("lag") == 0 for r in reps)
            ck.ok(wait_until(caught_up, 30, 0.25), "n1's new replica of r's shard %d did not catch up" % shard)
            ck.call(n1, "POST", "/cluster/collections/r/shards/%d/replicas" % shard, {"remove": holders[0]},
                    what="remove %s from r's shard %d" % (holders[0], shard))

        def replica_counts():
            st = result_of(n1, "GET", "/cluster") or {}
            counts = {n.name: 0 for n in cluster.nodes}
            for col in st.get("collections", []):
                for sh in col["shards"]:
                    for r in sh["replicas"]:
                        counts[r["node"]] = counts.get(r["node"], 0) + 1
            return counts
        before = replica_counts()
        ck.ok(max(before.values()) - min(before.values()) > 1, "the layout is not uneven: %s" % before)
        plan = ck.call(n2, "POST", "/cluster/rebalance", {"dry_run": True}, what="rebalance plan")
        ck.ok(plan["moves"] and not plan["started"] and all(m["from"] == "n1" for m in plan["moves"]),
              "the rebalance plan for %s moves off n1 alone and starts nothing" % before, short(plan))
        ck.ok(any(m["collection"] == "r" for m in plan["moves"]), "the plan moves no shard of r", short(plan))
        ck.ok(replica_counts() == before, "a dry run changed the layout")
        # Writes go on into every collection the moves touch, through the other nodes.
        moved = sorted({m["collection"] for m in plan["moves"]})
        acked = {name: set() for name in moved}
        start_count = {name: ck.call(n1, "POST", "/collections/%s/points/count" % name, {})["count"]
                       for name in moved}
        acked["r"] |= set(range(30))
        stop_writes = [False]
        write_errors = []
        slowest = [0.0]
        def writer():
            i = 100000
            while not stop_writes[0]:
                name = moved[i % len(moved)]
                w0 = time.monotonic()
                st, answer = request((n2, n3)[i % 2].port, "PUT", "/collections/%s/points?wait=true" % name,
                                     {"points": [{"id": i, "vector": [i % 97, 0, 0, 1]}]})
                slowest[0] = max(slowest[0], time.monotonic() - w0)
                if st == 200:
                    acked[name].add(i)
                else:
                    write_errors.append((name, st, short(answer), "at %.1f s" % (time.monotonic() - T0)))
                i += 1
        import threading
        t = threading.Thread(target=writer)
        t.start()
        try:
            started = ck.call(n2, "POST", "/cluster/rebalance", {}, what="rebalance")
            ck.ok(started["started"] and started["moves"] == plan["moves"], "rebalance answered %s" % short(started))
            ck.call(n2, "POST", "/cluster/rebalance", {}, status=409, what="a second rebalance while one runs")
            job = [None]
            def finished():
                job[0] = (result_of(n2, "GET", "/cluster") or {}).get("rebalance")
                return job[0] and job[0]["state"] != "running"
            ck.ok(wait_until(finished, 120, 0.5), "the rebalance did not finish within 120 s", short(job[0]))
            ck.ok(job[0]["state"] == "done" and job[0]["done"] == len(plan["moves"]), "rebalance: %s" % short(job[0]))
        finally:
            stop_writes[0] = True
            t.join()
        after = replica_counts()
        ck.ok(max(after.values()) - min(after.values()) <= 1, "after the rebalance the replica counts are %s" % after)
        ck.ok(not write_errors, "writes failed during the rebalance: %s" % write_errors[:3])
        ck.ok(all(len(a) > 0 for a in acked.values()), "no write was acknowledged during the rebalance")
        settle_all = lambda: all(r.get("ready") and r.get("lag") == 0 for c in (result_of(n1, "GET", "/cluster") or {})
                                 .get("collections", []) for sh in c["shards"] for r in sh["replicas"])
        ck.ok(wait_until(settle_all, 30, 0.25), "replicas not all caught up after the rebalance")
        for name in moved:
            want = len(acked[name]) + (0 if name == "r" else start_count[name])
            for node in cluster.nodes:
                c = ck.call(node, "POST", "/collections/%s/points/count" % name, {})
                ck.ok(c.get("count") == want, "count of %s via %s after the rebalance is %s, expected %d"
                      % (name, node.name, c, want))
            got = ck.call(n3, "POST", "/collections/%s/points" % name, {"ids": sorted(acked[name])},
                          what="retrieve %s after the rebalance" % name)
            ck.ok(sorted(p["id"] for p in got) == sorted(acked[name]), "retrieve of %s after the rebalance misses ids"
                  % name, short(sorted(acked[name] - {p["id"] for p in got})))
        c = ck.call(n1, "POST", T + "/points/count", {})
        ck.ok(c.get("count") == len(expected), "count of t after the rebalance is %s, expected %d" % (c, len(expected)))
        cli = subprocess.run([os.path.abspath(args.fathom_binary), "cluster", "rebalance", "--dry-run", "--url",
                              "http://127.0.0.1:%d" % n1.port], capture_output=True, text=True, timeout=30)
        ck.ok(cli.returncode == 0 and "balanced: no move needed" in cli.stdout,
              "fathom cluster rebalance --dry-run exited %d" % cli.returncode, "stdout %s\n    stderr %s" % (cli.stdout, cli.stderr))
        log("16. rebalance with writes ok (%d moves of %s, %d writes meanwhile, the slowest %.2f s)" % (
            len(plan["moves"]), ", ".join(moved), sum(len(a) for a in acked.values()) - 30, slowest[0]))

        # 17. a node joins; rebalancing moves replicas onto it while writes go on -------------
        from cluster_test import Proc, free_ports
        n4_argv = list(n1.argv)
        n4_argv[n4_argv.index("--data") + 1] = os.path.join(tmp, "n4")
        n4_argv[n4_argv.index("--port") + 1] = str(free_ports(1)[0])
        n4_argv[n4_argv.index("--node-id") + 1] = "n4"
        n4 = Proc("n4", n4_argv, os.path.join(tmp, "n4.log"))
        n4.port = int(n4_argv[n4_argv.index("--port") + 1])
        cluster.nodes.append(n4)  # (stopped with the others)
        n4.start()
        cluster.wait_healthy(n4, 60)
        ck.ok(wait_until(lambda: len((result_of(n1, "GET", "/cluster") or {}).get("nodes", [])) == 4, 20),
              "n1 does not see n4 within 20 s")
        counts = {name: ck.call(n1, "POST", "/collections/%s/points/count" % name, {})["count"]
                  for name in ("c", "p", "r", "t", "v1")}
        stop_writes[0] = False
        write_errors.clear()
        acked = {"t": set()}
        moved = ["t"]
        t = threading.Thread(target=writer)
        t.start()
        try:
            started = ck.call(n3, "POST", "/cluster/rebalance", {}, what="rebalance onto n4")
            ck.ok(started["started"] and all(m["to"] == "n4" for m in started["moves"]),
                  "rebalance with n4 empty answered %s" % short(started))
            job = [None]
            def finished4():
                job[0] = (result_of(n3, "GET", "/cluster") or {}).get("rebalance")
                return job[0] and job[0]["state"] != "running"
            ck.ok(wait_until(finished4, 120, 0.5), "the rebalance onto n4 did not finish within 120 s", short(job[0]))
            ck.ok(job[0]["state"] == "done", "rebalance onto n4: %s" % short(job[0]))
        finally:
            stop_writes[0] = True
            t.join()
        after = replica_counts()
        ck.ok(after.get("n4", 0) >= 2 and max(after.values()) - min(after.values()) <= 1,
              "after the rebalance onto n4 the replica counts are %s" % after)
        ck.ok(not write_errors, "writes failed during the rebalance onto n4: %s" % write_errors[:3])
        ck.ok(wait_until(settle_all, 30, 0.25), "replicas not all caught up after the rebalance onto n4")
        counts["t"] += len(acked["t"] - set(expected))
        for name, want in counts.items():
            for node in cluster.nodes:
                c = ck.call(node, "POST", "/collections/%s/points/count" % name, {})
                ck.ok(c.get("count") == want, "count of %s via %s after the rebalance onto n4 is %s, expected %d"
                      % (name, node.name, c, want))
        log("17. n4 joined, %d replicas moved onto it while %d writes went on" % (
            after.get("n4", 0), len(acked["t"])))

        # 18. a replica without fsync (--durability buffered) holds the log back ---------------
        D = "/collections/d"
        ck.call(n1, "PUT", D, {"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 1,
                               "replication_factor": 4}, what="create d")
        n2.stop()
        fsync_argv = list(n2.argv)
        n2.argv = fsync_argv + ["--durability", "buffered"]
        n2.start()
        cluster.wait_healthy(n2, 60)
        def d_log():
            col = [c for c in (result_of(n1, "GET", "/cluster") or {}).get("collections", []) if c["name"] == "d"]
            return col[0]["shards"][0] if col else {}

        def write_d_until(done, start, seconds):
            i, deadline = start, time.time() + seconds
            while not done() and time.time() < deadline:
                ck.call(cluster.nodes[i % 4], "PUT", D + "/points?wait=true",
                        {"points": [{"id": i, "vector": [i, 0, 0, 0]}]}, what="upsert into d")
                i += 1
                time.sleep(0.1)
            return i
        # Rotations go on (they need no replica), deletions do not: epoch 0 would be deletable
        # from epoch 2 on, but n2 has not fsynced what it applied.
        nxt = write_d_until(lambda: d_log().get("epoch", 0) >= 3, 0, 60)
        ck.ok(wait_until(lambda: all(r.get("ready") and r.get("lag") == 0 for r in d_log().get("replicas", [])), 20),
              "d's replicas did not catch up", short(d_log()))
        time.sleep(12)  # two trim rounds
        ck.ok(d_log().get("epoch", 0) >= 3 and d_log().get("first_epoch") == 0,
              "d's log was trimmed while n2 applies without fsync (or never rotated): %s" % short(d_log()))
        n2.stop()
        n2.argv = fsync_argv
        n2.start()
        cluster.wait_healthy(n2, 60)
        ck.ok(wait_until(lambda: d_log().get("first_epoch", 0) >= 1, 30, 0.5),
              "d's log was not trimmed once n2 applies with fsync again", short(d_log()))
        ck.ok(wait_until(lambda: (result_of(n3, "POST", D + "/points/count", {}) or {}).get("count") == nxt, 20),
              "count of d across its rotations is %s, expected %d"
              % (result_of(n3, "POST", D + "/points/count", {}), nxt))
        log("18. a buffered replica holds the log back ok")

        # 19. payload indexes made and dropped on a live collection ----------------------------
        # The metadata names the index (templates follow: GET /collections and the type check of
        # later writes), and an entry in each shard's log makes it on every replica.
        nodes = cluster.nodes

        def schema_on(node):
            return (result_of(node, "GET", BASE) or {}).get("payload_schema", {})

        def replica_fields(node):
            return [e.get("indexed_fields") for _, e in (local_shards(node) or [])]

        answer = ck.call(n2, "PUT", BASE + "/index?wait=true", {"field_name": "color", "field_schema": "keyword"},
                         what="create a payload index")
        ck.ok(answer.get("status") == "completed", "create index with wait answered %s" % short(answer))
        for node in nodes:
            ck.ok(wait_until(lambda: schema_on(node).get("color", {}).get("data_type") == "keyword", 10),
                  "GET /collections/c via %s does not show the index on color" % node.name, short(schema_on(node)))
            # (a node the rebalance of 17. left without a replica of c has none to check)
            ck.ok(wait_until(lambda: replica_fields(node) is not None and
                             all(f == {"color": "keyword"} for f in replica_fields(node)), 10),
                  "the replicas of c on %s lack the index on color" % node.name, short(replica_fields(node)))
        ck.ok(sum(len(replica_fields(node) or []) for node in nodes) >= 2 * 3,
              "c's replicas are not all listed", short([(n.name, replica_fields(n)) for n in nodes]))
        for k, node in enumerate(nodes):  # every node's template checks a write against the index
            bad = ck.call(node, "PUT", BASE + "/points?wait=true",
                          {"points": [{"id": 900 + k, "vector": [1.0, 0.5, 0.0, 0.0], "payload": {"color": 7}}]},
                          status=400, what="an upsert whose payload does not fit the keyword index")
            ck.ok("color" in error_text(bad), "the 400 does not name the field: %s" % short(bad))
            ck.call(node, "PUT", BASE + "/points?wait=true",
                    {"points": [{"id": 900 + k, "vector": [1.0, 0.5, float(k), 0.0], "payload": {"color": "red" if k % 2 else "blue"}}]},
                    what="an upsert that fits the index")
        settle(ck, n1, "upserts with an indexed payload")
        want_red = sorted(900 + k for k in range(len(nodes)) if k % 2)
        for node in nodes:
            hits = ck.call(node, "POST", BASE + "/points/scroll",
                           {"filter": {"must": [{"key": "color", "match": {"value": "red"}}]}, "limit": 100})
            ck.ok(sorted(p["id"] for p in hits.get("points", [])) == want_red,
                  "scroll on the indexed field via %s: %s, expected %s" % (node.name, short(hits), want_red))
        ck.call(n3, "PUT", BASE + "/index", {"field_name": "color", "field_schema": "nonsense"}, status=400,
                what="an index of an unknown type")
        # A replica made after the index has it too.
        holders = {n.name for n in nodes if any(sh == 0 for sh, _ in (local_shards(n) or []))}
        spare = next((n for n in nodes if n.name not in holders), None)
        if spare is not None:
            ck.call(n1, "POST", "/cluster/collections/c/shards/0/replicas", {"add": spare.name}, what="add a replica")
            ck.ok(wait_until(lambda: any(sh == 0 and e.get("indexed_fields") == {"color": "keyword"}
                                         for sh, e in (local_shards(spare) or [])), 30),
                  "the replica added on %s lacks the index" % spare.name, short(local_shards(spare)))
        answer = ck.call(n4, "DELETE", BASE + "/index/color?wait=true", what="drop the payload index")
        ck.ok(answer.get("status") == "completed", "drop index with wait answered %s" % short(answer))
        for node in nodes:
            ck.ok(wait_until(lambda: "color" not in schema_on(node), 10),
                  "GET /collections/c via %s still shows the dropped index" % node.name, short(schema_on(node)))
            ck.ok(wait_until(lambda: replica_fields(node) is not None and all(f == {} for f in replica_fields(node)), 10),
                  "the replicas of c on %s still have the dropped index" % node.name, short(replica_fields(node)))
        ck.call(n1, "PUT", BASE + "/points?wait=true",
                {"points": [{"id": 950, "vector": [1.0, 0.5, 0.0, 1.0], "payload": {"color": 7}}]},
                what="an upsert of any payload once the index is gone")
        ck.call(n2, "DELETE", BASE + "/index/color", status=404, what="dropping an index that is not there")
        log("19. payload indexes made and dropped ok")

        # 20. PATCH /collections/{name}: user metadata, merged key by key, through any node -------
        def metadata_on(node):
            return (result_of(node, "GET", BASE) or {}).get("config", {}).get("metadata")

        model = {"name": "resnet50", "version": "2", "dimension": DIM}
        ck.ok(ck.call(n3, "PATCH", BASE, {"metadata": {"model": model, "owner": "search"}}, what="PATCH metadata") is True,
              "PATCH did not answer true")
        ck.ok(ck.call(n1, "PATCH", BASE, {"metadata": {"owner": None, "stage": "canary"}}, what="a second PATCH") is True,
              "the second PATCH did not answer true")
        want = {"model": model, "stage": "canary"}
        for node in nodes:
            ck.ok(wait_until(lambda: metadata_on(node) == want, 10),
                  "GET /collections/c via %s: metadata %s, expected %s" % (node.name, short(metadata_on(node)), want))
        bad = ck.call(n2, "PATCH", BASE, {"params": {"shard_number": 5}}, status=400, what="PATCH of a fixed setting")
        ck.ok("not supported" in error_text(bad), "the PATCH 400 does not say why: %s" % short(bad))
        ck.call(n2, "PATCH", "/collections/nope", {"metadata": {"a": 1}}, status=404, what="PATCH of a missing collection")
        log("20. PATCH metadata ok")

        # 21. a shard no replica answers for: GET /cluster, `fathom cluster status`, /metrics ---
        U = "/collections/u"
        ck.call(n1, "PUT", U, {"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 4,
                               "replication_factor": 1}, what="create u (one replica per shard)")
        u_info = ck.call(n1, "GET", U, what="GET u")
        owner = next(n for n in nodes if n is not n1 and [n.name] in u_info["shards"])
        lone = u_info["shards"].index([owner.name])

        def u_shards(node):
            col = [c for c in (result_of(node, "GET", "/cluster") or {}).get("collections", []) if c["name"] == "u"]
            return col[0]["shards"] if col else []

        def unavailable_metric(node):
            st, text = request(node.port, "GET", "/metrics")
            if st != 200 or not isinstance(text, str):
                return None
            for line in text.splitlines():
                if line.startswith("fathom_cluster_shards_unavailable "):
                    return float(line.split()[1])
            return None

        ck.ok(wait_until(lambda: unavailable_metric(n1) == 0, 15), "fathom_cluster_shards_unavailable of n1 is %s, "
              "expected 0 with every node up" % unavailable_metric(n1))
        owner.send(signal.SIGSTOP)
        try:
            ck.ok(wait_until(lambda: any(sh["shard"] == lone and sh.get("available") is False for sh in u_shards(n1)), 20),
                  "GET /cluster via n1 does not mark shard %d of u (only on the stopped %s) unavailable" % (lone, owner.name),
                  short(u_shards(n1), 1500))
            ck.ok(all(sh.get("available") for sh in u_shards(n1) if sh["shard"] != lone),
                  "GET /cluster marks other shards of u unavailable", short(u_shards(n1), 1500))
            cli = subprocess.run([os.path.abspath(args.fathom_binary), "cluster", "status", "--url",
                                  "http://127.0.0.1:%d" % n1.port], capture_output=True, text=True, timeout=60)
            ck.ok("SHARD UNAVAILABLE" in cli.stdout, "fathom cluster status does not say a shard of u is unavailable",
                  "stdout %s\n    stderr %s" % (cli.stdout, cli.stderr))
            ck.ok(wait_until(lambda: (unavailable_metric(n1) or 0) >= 1, 20),
                  "fathom_cluster_shards_unavailable of n1 is %s with %s stopped" % (unavailable_metric(n1), owner.name))
        finally:
            owner.send(signal.SIGCONT)
        ck.ok(wait_until(lambda: unavailable_metric(n1) == 0, 30),
              "fathom_cluster_shards_unavailable of n1 is still %s after %s resumed" % (unavailable_metric(n1), owner.name))
        log("21. an unavailable shard shows in GET /cluster, the CLI and /metrics ok")

        # 22. tune to a target recall: every shard measured, every replica and template told -----
        TN = "/collections/tn"
        ck.call(n1, "PUT", TN, {"vectors": {"size": 8, "distance": "Euclid"}, "shard_number": 2,
                                "replication_factor": 2}, what="create tn")
        trng = random.Random(7)
        pts = [{"id": i, "vector": [trng.uniform(-1, 1) for _ in range(8)]} for i in range(1200)]
        for start in range(0, len(pts), 300):
            ck.call(nodes[start // 300 % 3], "PUT", TN + "/points?wait=true", {"points": pts[start:start + 300]},
                    what="upsert into tn")
        bad = ck.call(n2, "POST", TN + "/tune", {"k": 10}, status=400, what="tune without a target")
        ck.ok("target_recall" in error_text(bad), "the tune 400 does not name target_recall: %s" % short(bad))
        tuned = ck.call(n2, "POST", TN + "/tune", {"target_recall": 0.95, "sample": 60}, what="tune tn")
        ck.ok(tuned.get("knob") == "ef" and tuned.get("value", 0) > 0 and len(tuned.get("shards", [])) == 2
              and tuned.get("queries") == 120 and tuned.get("reached") is True,
              "tune of tn answered %s" % short(tuned, 1500))
        ck.ok(tuned["value"] == max(sh["value"] for sh in tuned["shards"]),
              "the cluster's setting is not the largest shard's: %s" % short(tuned, 1500))
        ef = tuned["value"]

        def replica_defaults(node):
            st, answer = request(node.port, "GET", "/cluster/local")
            if st != 200:
                return None
            return [e.get("search_defaults", {}).get("", {}).get("ef") for e in answer["result"]
                    if e.get("collection") == "tn"]
        def all_replicas(want):  # every replica of tn, on whichever node holds it
            got = [replica_defaults(node) for node in nodes]
            return None not in got and sum(len(g) for g in got) == 4 and all(d == want for g in got for d in g)
        ck.ok(wait_until(lambda: all_replicas(ef), 20), "the 4 replicas of tn have tuned ef %s, expected %d"
              % ([replica_defaults(node) for node in nodes], ef))
        for node in nodes:
            ck.ok(wait_until(lambda node=node: (result_of(node, "GET", TN) or {}).get("search_defaults", {})
                             .get("", {}).get("ef") == ef, 20),
                  "GET tn via %s shows search_defaults %s, expected ef %d" % (
                      node.name, short((result_of(node, "GET", TN) or {}).get("search_defaults")), ef))
        hits = ck.call(n3, "POST", TN + "/points/search", {"vector": pts[5]["vector"], "limit": 1}, what="search tn")
        ck.ok(hits and hits[0]["id"] == 5, "a search of tn after tuning does not find point 5 first: %s" % short(hits))
        ck.ok(ck.call(n1, "DELETE", TN + "/tune", what="reset tn's tuning") == {"reset": True},
              "the first reset of tn does not answer reset: true")
        ck.ok(wait_until(lambda: all_replicas(None), 20), "the replicas of tn still have tuned ef %s after the reset"
              % [replica_defaults(node) for node in nodes])
        for node in nodes:
            ck.ok(wait_until(lambda node=node: (result_of(node, "GET", TN) or {}).get("search_defaults") == {}, 20),
                  "GET tn via %s still shows search_defaults after the reset" % node.name)
        ck.ok(ck.call(n2, "DELETE", TN + "/tune", what="reset tn's tuning again") == {"reset": False},
              "a second reset of tn does not answer reset: false")
        ck.call(n2, "DELETE", TN + "/tune?using=nope", status=400, what="reset of a vector tn does not have")
        log("22. tune in cluster mode (ef %d over 2 shards) ok" % ef)

        # 23. snapshots: made across the shards, listed/downloaded/deleted, recovered elsewhere ----
        ck.call(n1, "POST", TN + "/points/payload?wait=true", {"payload": {"tag": "kept"}, "points": [1, 2, 3]},
                what="set payload in tn")
        tuned = ck.call(n1, "POST", TN + "/tune", {"target_recall": 0.95, "sample": 40}, what="tune tn again")
        snap = ck.call(n3, "POST", TN + "/snapshots", what="snapshot of tn via n3")
        ck.ok(snap.get("name") and snap.get("collection") == "tn" and snap.get("size", 0) > 0,
              "the snapshot answer is %s" % short(snap))
        listed = ck.call(n3, "GET", TN + "/snapshots", what="list tn's snapshots on n3")
        ck.ok([x["name"] for x in listed] == [snap["name"]], "n3 lists %s" % short(listed))
        st, tar = request(n3.port, "GET", TN + "/snapshots/" + snap["name"])
        ck.ok(st == 200 and tar, "downloading the snapshot from n3 answered %s" % st)
        recovered = ck.call(n3, "PUT", TN + "/snapshots/recover", {"snapshot": snap["name"], "name": "tn2"},
                            what="recover tn's snapshot as tn2")
        ck.ok(recovered == {"name": "tn2", "points_count": 1200}, "the recover answered %s" % short(recovered))
        ck.call(n3, "PUT", TN + "/snapshots/recover", {"snapshot": snap["name"], "name": "tn2"}, status=409,
                what="recover onto an existing collection")
        ck.call(n1, "PUT", "/collections/tn3/snapshots/recover",
                {"location": "http://127.0.0.1:%d/collections/tn/snapshots/%s" % (n3.port, snap["name"])},
                what="recover from n3's URL as tn3 through n1")
        sample_ids = [0, 1, 2, 3, 599, 1199]
        want = {p["id"]: (p["vector"], p["payload"]) for p in ck.call(
            n2, "POST", TN + "/points", {"ids": sample_ids, "with_payload": True, "with_vector": True}, what="read tn")}
        for copy in ("tn2", "tn3"):
            info = ck.call(n2, "GET", "/collections/" + copy, what="GET " + copy)
            ck.ok(info.get("points_count") == 1200 and len(info.get("shards", [])) == 2
                  and info["config"]["params"].get("replication_factor") == 2,
                  "%s has %s points over %s" % (copy, info.get("points_count"), short(info.get("shards"))))
            ck.ok(wait_until(lambda copy=copy: (result_of(n2, "GET", "/collections/" + copy) or {})
                             .get("search_defaults", {}).get("", {}).get("ef") == tuned["value"], 20),
                  "%s does not carry tn's tuned ef %d" % (copy, tuned["value"]))
            got = {p["id"]: (p["vector"], p["payload"]) for p in ck.call(
                n1, "POST", "/collections/%s/points" % copy,
                {"ids": sample_ids, "with_payload": True, "with_vector": True}, what="read " + copy)}
            ck.ok(got == want, "%s differs from tn at ids %s" % (copy, [i for i in sample_ids if got.get(i) != want[i]]))
        ck.ok(ck.call(n3, "DELETE", TN + "/snapshots/" + snap["name"], what="delete the snapshot") is True,
              "deleting the snapshot did not answer true")
        ck.ok(ck.call(n3, "GET", TN + "/snapshots", what="list after delete") == [], "the snapshot is still listed")
        ck.call(n3, "GET", TN + "/snapshots/" + snap["name"], status=404, what="download a deleted snapshot")
        log("23. cluster snapshots: made, listed, downloaded, recovered twice, deleted ok")

        # 24. --auto-rebalance: a dead node's replicas replaced, a node that comes back gets its share ----
        # n4 alone is given the option, so it decides; it first evens out what sections 18-23 made.
        n4.stop()
        n4.argv = n4.argv + ["--auto-rebalance", "2"]
        n4.start()
        cluster.wait_healthy(n4, 60)
        def layout():
            st = result_of(n1, "GET", "/cluster") or {}
            return {c["name"]: [[r["node"] for r in sh["replicas"]] for sh in c["shards"]]
                    for c in st.get("collections", [])}
        def auto_job():
            return (result_of(n4, "GET", "/cluster") or {}).get("rebalance")
        def balanced_and_idle():
            job = auto_job()
            counts = replica_counts()
            return (not job or job["state"] != "running") and max(counts.values()) - min(counts.values()) <= 1
        ck.ok(wait_until(balanced_and_idle, 120, 0.5), "with --auto-rebalance on n4 the replica counts are %s, job %s"
              % (replica_counts(), short(auto_job())))
        ck.ok(wait_until(settle_all, 60, 0.25), "replicas not all caught up before n3 is killed")
        before = layout()
        whole = [name for name, shards in before.items() if all(any(n != "n3" for n in r) for r in shards)]
        counts = {name: ck.call(n1, "POST", "/collections/%s/points/count" % name, {})["count"] for name in whole}
        replaceable = {(name, s) for name, shards in before.items() for s, r in enumerate(shards)
                       if "n3" in r and any(n != "n3" for n in r) and not {"n1", "n2", "n4"} <= set(r)}
        kept = {(name, s) for name, shards in before.items() for s, r in enumerate(shards)
                if "n3" in r and (name, s) not in replaceable}
        ck.ok(replaceable, "n3 holds no replica that another node could take over: %s" % short(before))
        n3.kill()
        t_kill = time.monotonic()
        replacing_job = [None]
        def replaced():
            now = layout()
            job = auto_job()
            if not (job and job["state"] != "running" and all(
                    "n3" not in now[name][s] and len(now[name][s]) == len(before[name][s]) for name, s in replaceable)):
                return False
            replacing_job[0] = job  # (an even-out job may follow it a round later)
            return True
        ck.ok(wait_until(replaced, 120, 1), "n3's replicas were not replaced within 120 s of its kill: %s; job %s"
              % (short(layout()), short(auto_job())))
        took = time.monotonic() - t_kill
        job = replacing_job[0]
        ck.ok(job["automatic"] and job["state"] == "done" and all(m["from"] == "n3" for m in job["moves"])
              and len(job["moves"]) == len(replaceable), "the automatic job that replaced n3 is %s" % short(job))
        now = layout()
        ck.ok(all("n3" in now[name][s] for name, s in kept),
              "a shard with no other live replica, or on every live node, lost its replica on n3: %s"
              % short({"%s/%d" % k: now[k[0]][k[1]] for k in sorted(kept)}))
        for name, want in counts.items():
            c = result_of(n2, "POST", "/collections/%s/points/count" % name, {})
            ck.ok(c and c.get("count") == want, "count of %s via n2 with n3 replaced is %s, expected %d"
                  % (name, c, want))
        others = {n: c for n, c in replica_counts().items() if n != "n3"}
        n3.start()
        cluster.wait_healthy(n3, 60)
        ck.ok(wait_until(lambda: replica_counts().get("n3", 0) > len(kept) and balanced_and_idle(), 120, 1),
              "n3 came back and did not get its share of replicas: counts %s, job %s"
              % (replica_counts(), short(auto_job())))
        job = auto_job() or {}
        after = replica_counts()
        ck.ok(job.get("automatic") and all(after[n] <= c for n, c in others.items()),
              "evening out onto n3 gave another node more replicas: %s before, %s after; job %s"
              % (others, after, short(job)))
        ck.ok(wait_until(settle_all, 60, 0.25), "replicas not all caught up after n3 got its share")
        for name, want in counts.items():
            for node in (n1, n3):
                c = ck.call(node, "POST", "/collections/%s/points/count" % name, {})
                ck.ok(c.get("count") == want, "count of %s via %s after n3 came back is %s, expected %d"
                      % (name, node.name, c, want))
        log("24. auto-rebalance: %d replicas of killed n3 replaced in %.1f s, %d back on it after its restart"
            % (len(replaceable), took, after["n3"] - len(kept)))

        crashed = [n.name for n in cluster.nodes + cluster.nats if not n.running()]
        ck.ok(not crashed, "processes exited during the test: %s" % crashed)
        print("cluster-api: %d checks passed" % ck.passed, flush=True)
        return 0
    except CheckFailed as e:
        print("cluster-api: FAILED after %d checks: %s" % (ck.passed, e), flush=True)
        print_replicas(n1)
        for p in cluster.nodes:
            if not p.running():
                print("--- %s is not running; last lines of %s" % (p.name, p.log_path))
                print(p.tail(30))
            elif shutil.which("gdb"):  # where each live node's threads wait (a hang shows here)
                stacks = p.log_path + ".stacks"
                with open(stacks, "w") as f:
                    subprocess.run(["gdb", "-batch", "-p", str(p.popen.pid), "-ex", "thread apply all bt"],
                                   stdout=f, stderr=subprocess.STDOUT, timeout=120, check=False)
                print("--- %s's threads: %s" % (p.name, stacks))
        return 1
    finally:
        cluster.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fathom_binary")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    # The Python client: build/python next to the binary (build/src/cli/fathom), unless importable.
    build_python = os.path.join(os.path.dirname(os.path.abspath(args.fathom_binary)), "..", "..", "python")
    if os.path.isdir(os.path.join(build_python, "fathom")):
        sys.path.append(os.path.normpath(build_python))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="fathom-cluster-api-")
    log("directory %s" % tmp)
    try:
        return run(args, tmp)
    except SetupError as e:
        print("cluster-api: error: %s" % e)
        for p in e.procs:
            print("--- last lines of %s (%s)" % (p.name, p.log_path))
            print(p.tail(40))
        return 1
    finally:
        if args.keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
