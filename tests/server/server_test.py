#!/usr/bin/env python3
"""Integration tests for fathom-server: the real binary on an ephemeral loopback port, real HTTP.

    python3 tests/server/server_test.py PATH/TO/fathom-server [unittest options, e.g. -v or -k Auth]

Standard library only. Each test class starts its own server on port 0 with a fresh temporary
data directory and reads the port from the "fathom: listening on http://HOST:PORT" line.
Covered: every endpoint, API keys (401 / 403 / 200), restart with the same data directory,
SIGTERM during an ingest (no acknowledged point lost), and a bad-input corpus where every
request must get a 4xx JSON error and the server must stay healthy.
"""
import base64
import http.client
import json
import math
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SERVER_BINARY = None  # set from argv in main

# Every route the server answers: (method, template, needs the read-write key).
ROUTES = [
    ("GET", "/", False),
    ("GET", "/healthz", False),
    ("GET", "/readyz", False),
    ("GET", "/metrics", False),
    ("GET", "/openapi.json", False),
    ("GET", "/access", False),
    ("GET", "/console", False),
    ("GET", "/console/{file}", False),
    ("GET", "/collections", False),
    ("POST", "/collections/aliases", True),
    ("GET", "/aliases", False),
    ("GET", "/collections/{name}/aliases", False),
    ("GET", "/collections/{name}", False),
    ("PUT", "/collections/{name}", True),
    ("DELETE", "/collections/{name}", True),
    ("PATCH", "/collections/{name}", True),
    ("GET", "/collections/{name}/exists", False),
    ("PUT", "/collections/{name}/points", True),
    ("POST", "/collections/{name}/points", False),
    ("GET", "/collections/{name}/points/{id}", False),
    ("POST", "/collections/{name}/points/delete", True),
    ("POST", "/collections/{name}/points/payload", True),
    ("PUT", "/collections/{name}/points/payload", True),
    ("POST", "/collections/{name}/points/payload/delete", True),
    ("POST", "/collections/{name}/points/payload/clear", True),
    ("POST", "/collections/{name}/points/count", False),
    ("POST", "/collections/{name}/points/search", False),
    ("POST", "/collections/{name}/points/search/batch", False),
    ("POST", "/collections/{name}/points/scroll", False),
    ("POST", "/collections/{name}/points/recommend", False),
    ("POST", "/collections/{name}/points/query", False),
    ("POST", "/collections/{name}/points/query/batch", False),
    ("POST", "/collections/{name}/points/recommend/batch", False),
    ("GET", "/collections/{name}/snapshots", False),
    ("POST", "/collections/{name}/snapshots", True),
    ("PUT", "/collections/{name}/snapshots/recover", True),
    ("DELETE", "/collections/{name}/snapshots/{snapshot}", True),
    ("GET", "/collections/{name}/snapshots/{snapshot}", False),
    ("PUT", "/collections/{name}/index", True),
    ("DELETE", "/collections/{name}/index/{field}", True),
    ("POST", "/collections/{name}/tune", True),
    ("DELETE", "/collections/{name}/tune", True),
]


class Server:
    """One fathom-server process on a temporary (or given) data directory."""

    def __init__(self, data_dir, args=(), env=None, durability="buffered"):
        self.data_dir = data_dir
        self.log_path = os.path.join(os.path.dirname(data_dir), "server-%d.log" % random.randrange(1 << 30))
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.pop("FATHOM_API_KEY", None)
        full_env.pop("FATHOM_READ_ONLY_API_KEY", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [SERVER_BINARY, "--data", data_dir, "--port", "0", "--durability", durability, *args],
            stdout=subprocess.PIPE, stderr=self.log, env=full_env)
        self.host = None
        self.port = None
        self._wait_for_listening()

    def _wait_for_listening(self, timeout=60):
        deadline = time.time() + timeout
        line = b""
        while time.time() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
                m = re.search(rb"fathom: listening on http://([^\s:]+|\[[^\]]+\]):(\d+)", line)
                if m:
                    self.host = m.group(1).decode().strip("[]")
                    self.port = int(m.group(2))
                    return
            if self.proc.poll() is not None:
                break
        raise AssertionError("server did not start; log:\n" + self.log_text())

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def connect(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """Returns (status, parsed JSON or text, response headers). `body` may be a dict or bytes."""
        own = conn is None
        conn = conn or self.connect()
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        if body is None and method in ("POST", "PUT", "DELETE"):
            body = b""
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            if own:
                conn.close()
        ctype = resp.getheader("Content-Type", "")
        if ctype.startswith("application/json"):
            return resp.status, json.loads(data), resp
        return resp.status, data.decode("utf-8", "replace"), resp

    def ok(self, method, path, body=None, headers=None):
        status, doc, _ = self.request(method, path, body, headers)
        if status != 200:
            raise AssertionError("%s %s -> %d: %s" % (method, path, status, doc))
        assert doc["status"] == "ok", doc
        assert isinstance(doc["time"], (int, float)) and doc["time"] >= 0, doc
        return doc["result"]

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not stop within %ds; log:\n%s" % (timeout, self.log_text()))
        self.proc.stdout.close()
        self.log.close()
        return rc


def vec(i, dim, seed=0):
    rng = random.Random(i * 7919 + seed)
    return [round(rng.uniform(-1, 1), 4) for _ in range(dim)]


def b64(values):
    return base64.b64encode(struct.pack("<%df" % len(values), *values)).decode()


class ServerTestCase(unittest.TestCase):
    server_args = ()
    server_env = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fathom_server_test_")
        cls.server = Server(os.path.join(cls.tmp, "data"), cls.server_args, cls.server_env)

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert rc == 0, "server exited with %d" % rc

    def assertError(self, status, doc, expected_status=None, contains=None):
        """A 4xx answer in the JSON envelope with an error message."""
        if expected_status is not None:
            self.assertEqual(status, expected_status, doc)
        self.assertTrue(400 <= status < 500, "expected a 4xx, got %d: %s" % (status, doc))
        self.assertIsInstance(doc, dict, doc)
        self.assertIsNone(doc.get("result"), doc)
        self.assertIsInstance(doc["status"], dict, doc)
        self.assertIsInstance(doc["status"]["error"], str, doc)
        self.assertTrue(doc["status"]["error"], doc)
        self.assertIn("time", doc)
        if contains is not None:
            self.assertIn(contains, doc["status"]["error"])


class EndpointTest(ServerTestCase):
    DIM = 8

    def create(self, name, body=None):
        body = body or {"vectors": {"size": self.DIM, "distance": "Cosine", "index": "HNSW16"},
                        "indexed_fields": {"label": "integer", "color": "keyword"}}
        self.assertIs(self.server.ok("PUT", "/collections/" + name, body), True)

    def fill(self, name, n=300):
        points = [{"id": i, "vector": vec(i, self.DIM),
                   "payload": {"label": i % 5, "color": "red" if i % 2 else "blue", "i": i}}
                  for i in range(n)]
        # Three encodings: JSON arrays, per-point base64, and the column batch form with base64.
        third = n // 3
        res = self.server.ok("PUT", "/collections/%s/points" % name, {"points": points[:third]})
        self.assertIsInstance(res.pop("operation_id"), int)  # Qdrant's write answer
        self.assertEqual(res, {"status": "completed", "upserted": third})
        for p in points[third:2 * third]:
            p["vector"] = b64(p["vector"])
        self.server.ok("PUT", "/collections/%s/points" % name, {"points": points[third:2 * third]})
        rest = points[2 * third:]
        flat = [x for p in rest for x in p["vector"]]
        self.server.ok("PUT", "/collections/%s/points" % name, {"batch": {
            "ids": [p["id"] for p in rest], "vectors": b64(flat), "payloads": [p["payload"] for p in rest]}})

    def test_health_root_and_ready(self):
        self.assertEqual(self.server.ok("GET", "/healthz"), {"status": "healthy"})
        self.assertEqual(self.server.ok("GET", "/readyz"), {"status": "ready"})
        # Qdrant's shape: a bare object whose version Qdrant clients check.
        status, doc, _ = self.server.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(doc["title"], "fathom")
        self.assertRegex(doc["version"], r"^1\.\d+\.\d+$")
        self.assertIn("fathom_version", doc)

    def test_access_without_a_key(self):
        self.assertEqual(self.server.ok("GET", "/access"), {"access": "read_write", "api_key_required": False})

    def test_collection_metadata(self):
        # Qdrant's collection metadata: set at create, merged by PATCH (null removes a key),
        # returned in config.metadata. It used to be accepted and dropped.
        model = {"name": "resnet50", "version": "2", "dimension": 2}
        self.server.ok("PUT", "/collections/described",
                       {"vectors": {"size": 2, "distance": "Cosine"}, "metadata": {"model": model, "team": "vision"}})
        info = self.server.ok("GET", "/collections/described")
        self.assertEqual(info["config"]["metadata"], {"model": model, "team": "vision"})
        self.server.ok("PATCH", "/collections/described", {"metadata": {"image_field": "thumb", "team": None}})
        self.assertEqual(self.server.ok("GET", "/collections/described")["config"]["metadata"],
                         {"model": model, "image_field": "thumb"})
        for bad in [[1], "text", 3]:
            status, doc, _ = self.server.request("PATCH", "/collections/described", {"metadata": bad})
            self.assertError(status, doc, 400, "'metadata' must be a JSON object")
            status, doc, _ = self.server.request("PUT", "/collections/described2",
                                                 {"vectors": {"size": 2, "distance": "Cosine"}, "metadata": bad})
            self.assertError(status, doc, 400, "'metadata' must be a JSON object")
        status, doc, _ = self.server.request("PATCH", "/collections/described", {"metadata": {"x": "a" * 70000}})
        self.assertError(status, doc, 400, "the limit is 65536")
        self.assertEqual(self.server.ok("GET", "/collections/described")["config"]["metadata"],
                         {"model": model, "image_field": "thumb"})
        status, doc, _ = self.server.request("GET", "/collections/described2")
        self.assertError(status, doc, 404)
        self.assertEqual(self.server.ok("GET", "/collections/described2/exists"), {"exists": False})
        self.server.ok("DELETE", "/collections/described")

    def test_tune(self):
        # The cheapest ef reaching the target becomes the default; the collection info says so.
        self.server.ok("PUT", "/collections/tuned", {"vectors": {"size": 16, "distance": "L2", "index": "HNSW8"}})
        self.server.ok("PUT", "/collections/tuned/points",
                       {"points": [{"id": i, "vector": vec(i, 16)} for i in range(1500)]})
        result = self.server.ok("POST", "/collections/tuned/tune", {"target_recall": 0.9, "sample": 100})
        self.assertEqual(result["knob"], "ef")
        self.assertTrue(result["reached"])
        self.assertGreaterEqual(result["recall"], 0.9)
        self.assertEqual(result["queries"], 100)
        self.assertIn({"value": result["value"], "recall": result["recall"]}, result["tried"])
        defaults = self.server.ok("GET", "/collections/tuned")["search_defaults"]
        self.assertEqual(defaults[""]["ef"], result["value"])
        self.assertEqual(defaults[""]["target_recall"], 0.9)
        given = self.server.ok("POST", "/collections/tuned/tune",
                               {"target_recall": 0.99, "k": 5, "queries": [vec(i, 16, seed=3) for i in range(20)]})
        self.assertEqual(given["queries"], 20)
        self.assertGreaterEqual(given["recall"], 0.99)
        for body, message in [({}, "'target_recall' is required"), ({"target_recall": 2}, "'target_recall' is required"),
                              ({"target_recall": 0.9, "using": "nope"}, "has no vector 'nope'"),
                              ({"target_recall": 0.9, "queries": [[1, 2]]}, "not a multiple of the dimension 16"),
                              ({"target_recall": 0.9, "bogus": 1}, "bogus")]:
            status, doc, _ = self.server.request("POST", "/collections/tuned/tune", body)
            self.assertError(status, doc, 400, message)
        # Measuring one setting without storing it leaves the default as it was.
        measured = self.server.ok("POST", "/collections/tuned/tune",
                                  {"target_recall": 0.5, "values": [64], "store": False, "sample": 50})
        self.assertEqual([t["value"] for t in measured["tried"]], [64])
        self.assertEqual(self.server.ok("GET", "/collections/tuned")["search_defaults"][""]["target_recall"], 0.99)
        for body, message in [({"target_recall": 0.9, "values": []}, "'values' must be a non-empty array"),
                              ({"target_recall": 0.9, "values": [0]}, "integers from 1"),
                              ({"target_recall": 0.9, "values": [64, 16]}, "ascending"),
                              ({"target_recall": 0.9, "store": "no"}, "'store' must be true or false")]:
            status, doc, _ = self.server.request("POST", "/collections/tuned/tune", body)
            self.assertError(status, doc, 400, message)
        # DELETE .../tune forgets it: the info has no default, a second reset has nothing to do.
        self.assertEqual(self.server.ok("DELETE", "/collections/tuned/tune"), {"reset": True})
        self.assertNotIn("", self.server.ok("GET", "/collections/tuned").get("search_defaults") or {})
        self.assertEqual(self.server.ok("DELETE", "/collections/tuned/tune"), {"reset": False})
        status, doc, _ = self.server.request("DELETE", "/collections/tuned/tune?using=nope")
        self.assertEqual(status, 400)
        self.assertIn("has no vector 'nope'", doc["status"]["error"])
        self.server.ok("DELETE", "/collections/tuned")

    def test_console_files(self):
        # The web console comes from the binary: its page, script and style, with headers that
        # keep other sites' scripts and frames out; nothing else is served under /console.
        status, html, resp = self.server.request("GET", "/console")
        self.assertEqual(status, 200)
        self.assertTrue(resp.getheader("Content-Type").startswith("text/html"))
        self.assertIn("<title>Fathom console</title>", html)
        csp = resp.getheader("Content-Security-Policy")
        for directive in ["default-src 'self'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]:
            self.assertIn(directive, csp)
        self.assertEqual(resp.getheader("X-Content-Type-Options"), "nosniff")
        for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css"), ("index.html", "text/html")]:
            status, body, resp = self.server.request("GET", "/console/" + name)
            self.assertEqual(status, 200, name)
            self.assertTrue(resp.getheader("Content-Type").startswith(kind), resp.getheader("Content-Type"))
            self.assertGreater(len(body), 500)
        status, doc, _ = self.server.request("GET", "/console/nope.js")
        self.assertError(status, doc, 404)
        self.assertIn("the console has no file 'nope.js'", doc["status"]["error"])
        for path in ["/console/..", "/console/../openapi.json"]:
            status, doc, _ = self.server.request("GET", path)
            self.assertError(status, doc, 400)

    def test_collection_lifecycle(self):
        self.create("life")
        names = [c["name"] for c in self.server.ok("GET", "/collections")["collections"]]
        self.assertIn("life", names)
        info = self.server.ok("GET", "/collections/life")
        self.assertEqual(info["name"], "life")
        self.assertEqual(info["points_count"], 0)
        self.assertGreaterEqual(info["memory_bytes"], 0)
        self.assertEqual(info["config"]["vectors"],
                         {"size": self.DIM, "distance": "Cosine", "index": "HNSW16", "on_disk": False})
        self.assertEqual(info["storage"]["vectors_disk_bytes"], 0)
        self.assertEqual(info["config"]["indexed_fields"], {"label": "integer", "color": "keyword"})
        status, doc, _ = self.server.request("PUT", "/collections/life", {"vectors": {"size": 4, "distance": "l2"}})
        self.assertError(status, doc, 409, "already exists")
        self.assertIs(self.server.ok("DELETE", "/collections/life"), True)
        status, doc, _ = self.server.request("GET", "/collections/life")
        self.assertError(status, doc, 404, "does not exist")
        status, doc, _ = self.server.request("DELETE", "/collections/life")
        self.assertError(status, doc, 404)
        # Every distance spelling.
        for i, d in enumerate(["Cosine", "Euclid", "Dot", "l2", "ip", "cosine"]):
            self.server.ok("PUT", "/collections/dist%d" % i, {"vectors": {"size": 3, "distance": d, "index": "Flat"}})
            self.server.ok("DELETE", "/collections/dist%d" % i)

    def test_points_get_count_delete(self):
        self.create("pts")
        self.fill("pts", 300)
        self.server.ok("PUT", "/collections/pts/points",
                       {"points": [{"id": "alpha", "vector": vec(1000, self.DIM), "payload": {"label": 9}}]})
        self.assertEqual(self.server.ok("GET", "/collections/pts")["points_count"], 301)
        got = self.server.ok("POST", "/collections/pts/points", {"ids": [0, 150, 299, "alpha", 12345], "with_vector": True})
        self.assertEqual([r["id"] for r in got], [0, 150, 299, "alpha"])
        self.assertEqual(got[0]["payload"], {"label": 0, "color": "blue", "i": 0})
        self.assertEqual(len(got[0]["vector"]), self.DIM)
        got = self.server.ok("POST", "/collections/pts/points", {"ids": [7], "with_payload": False})
        self.assertEqual(got, [{"id": 7}])
        one = self.server.ok("GET", "/collections/pts/points/alpha")
        self.assertEqual(one["id"], "alpha")
        self.assertEqual(one["payload"], {"label": 9})
        self.assertEqual(self.server.ok("GET", "/collections/pts/points/42")["id"], 42)
        status, doc, _ = self.server.request("GET", "/collections/pts/points/999999")
        self.assertError(status, doc, 404)

        self.assertEqual(self.server.ok("POST", "/collections/pts/points/count", {}), {"count": 301})
        self.assertEqual(self.server.ok("POST", "/collections/pts/points/count", None), {"count": 301})
        self.assertEqual(self.server.ok("POST", "/collections/pts/points/count", {"filter": "label = 3"}), {"count": 60})
        self.assertEqual(self.server.ok("POST", "/collections/pts/points/count", {"filter": {
            "must": [{"key": "label", "match": {"value": 3}}, {"key": "color", "match": {"value": "red"}}]}}),
            {"count": 30})

        res = self.server.ok("POST", "/collections/pts/points/delete", {"points": [0, 1, 2, "alpha", 777777]})
        self.assertIsInstance(res.pop("operation_id"), int)
        self.assertEqual(res, {"status": "completed", "deleted": 4})
        res = self.server.ok("POST", "/collections/pts/points/delete", {"filter": "label = 4"})
        self.assertEqual(res["deleted"], 60)
        self.assertEqual(self.server.ok("POST", "/collections/pts/points/count", {})["count"], 301 - 4 - 60)
        self.assertEqual(self.server.ok("POST", "/collections/pts/points", {"ids": [0, 4]}), [])

    def test_search_and_batch(self):
        self.create("srch")
        self.fill("srch", 300)
        q = vec(17, self.DIM)
        hits = self.server.ok("POST", "/collections/srch/points/search",
                              {"vector": q, "limit": 5, "params": {"ef": 128}, "with_payload": True})
        self.assertEqual(len(hits), 5)
        self.assertEqual(hits[0]["id"], 17)
        self.assertAlmostEqual(hits[0]["score"], 1.0, places=4)
        self.assertEqual(hits[0]["payload"]["i"], 17)
        self.assertNotIn("vector", hits[0])
        scores = [h["score"] for h in hits]
        self.assertEqual(scores, sorted(scores, reverse=True))
        # base64 query, with_vector, no payload by default.
        hits2 = self.server.ok("POST", "/collections/srch/points/search", {"vector": b64(q), "limit": 5, "with_vector": True})
        self.assertEqual([h["id"] for h in hits2], [h["id"] for h in hits])
        self.assertNotIn("payload", hits2[0])
        self.assertEqual(len(hits2[0]["vector"]), self.DIM)
        # Offset skips the first results.
        hits3 = self.server.ok("POST", "/collections/srch/points/search", {"vector": q, "limit": 3, "offset": 2, "params": {"ef": 128}})
        self.assertEqual([h["id"] for h in hits3], [h["id"] for h in hits[2:5]])
        # params.upper_ef (HNSW level-1 beam, a Fathom extension): accepted, bounded like ef.
        hits4 = self.server.ok("POST", "/collections/srch/points/search",
                               {"vector": q, "limit": 5, "params": {"ef": 128, "upper_ef": 32}})
        self.assertEqual(hits4[0]["id"], 17)
        status, doc, _ = self.server.request("POST", "/collections/srch/points/search",
                                             {"vector": q, "limit": 5, "params": {"upper_ef": 10**9}})
        self.assertError(status, doc, 400, "params.upper_ef must be at most")
        # Filters, text and JSON.
        for flt in ["label = 2 AND color = \"blue\"",
                    {"must": [{"key": "label", "match": {"value": 2}}], "must_not": [{"key": "color", "match": {"value": "red"}}]}]:
            fh = self.server.ok("POST", "/collections/srch/points/search",
                                {"vector": q, "limit": 10, "filter": flt, "with_payload": True})
            self.assertEqual(len(fh), 10)
            for h in fh:
                self.assertEqual(h["payload"]["label"], 2)
                self.assertEqual(h["payload"]["color"], "blue")
        # Batch: equal to the single searches, in order, with mixed parameters.
        searches = [{"vector": vec(i, self.DIM), "limit": 3, "params": {"ef": 200}} for i in range(10)]
        searches.append({"vector": q, "limit": 2, "filter": "label = 1"})
        batch = self.server.ok("POST", "/collections/srch/points/search/batch", {"searches": searches})
        self.assertEqual(len(batch), 11)
        for s, res in zip(searches, batch):
            single = self.server.ok("POST", "/collections/srch/points/search", s)
            self.assertEqual([h["id"] for h in res], [h["id"] for h in single])
        for i in range(10):
            self.assertEqual(batch[i][0]["id"], i)
        self.assertEqual(self.server.ok("POST", "/collections/srch/points/search/batch", {"searches": []}), [])

    def test_named_vectors(self):
        self.server.ok("PUT", "/collections/media", {"vectors": {
            "image": {"size": 3, "distance": "Euclid", "index": "Flat"},
            "text": {"size": 2, "distance": "Cosine", "index": "HNSW8"}}})
        info = self.server.ok("GET", "/collections/media")
        self.assertEqual(set(info["config"]["vectors"]), {"image", "text"})
        points = [{"id": i, "vector": {"image": [float(i), 0, 0], "text": [math.cos(i * 0.1), math.sin(i * 0.1)]}}
                  for i in range(50)]
        self.server.ok("PUT", "/collections/media/points", {"points": points})
        hits = self.server.ok("POST", "/collections/media/points/search",
                              {"vector": {"name": "image", "vector": [20.2, 0, 0]}, "limit": 1})
        self.assertEqual(hits[0]["id"], 20)
        self.assertAlmostEqual(hits[0]["score"], 0.2, places=4)  # Euclid: the distance itself
        hits = self.server.ok("POST", "/collections/media/points/search",
                              {"vector": {"name": "text", "vector": [math.cos(3.0), math.sin(3.0)]}, "limit": 1})
        self.assertEqual(hits[0]["id"], 30)
        got = self.server.ok("POST", "/collections/media/points", {"ids": [5], "with_vector": True})
        self.assertEqual(set(got[0]["vector"]), {"image", "text"})
        status, doc, _ = self.server.request("POST", "/collections/media/points/search",
                                             {"vector": {"name": "audio", "vector": [1, 2]}})
        self.assertError(status, doc, 400, "audio")

    def test_vectors_and_payloads_on_disk(self):
        # Qdrant's create body: vectors.on_disk and on_disk_payload.
        self.server.ok("PUT", "/collections/ondisk", {
            "vectors": {"size": self.DIM, "distance": "Cosine", "index": "HNSW16,SQ8", "on_disk": True},
            "on_disk_payload": True, "indexed_fields": {"label": "integer", "color": "keyword"}})
        self.fill("ondisk", 300)
        info = self.server.ok("GET", "/collections/ondisk")
        self.assertIs(info["config"]["vectors"]["on_disk"], True)
        self.assertIs(info["config"]["on_disk_payload"], True)
        storage = info["storage"]
        self.assertGreaterEqual(storage["vectors_disk_bytes"], 300 * self.DIM * 4)
        self.assertEqual(storage["disk_bytes"], storage["vectors_disk_bytes"] + storage["records_disk_bytes"]
                         + storage["index_files_bytes"])
        self.assertEqual(storage["ram_bytes"], info["memory_bytes"])
        hits = self.server.ok("POST", "/collections/ondisk/points/search",
                              {"vector": vec(42, self.DIM), "limit": 3, "with_payload": True})
        self.assertEqual(hits[0]["id"], 42)
        self.assertAlmostEqual(hits[0]["score"], 1.0, places=5)  # exact, re-ranked from the file
        self.assertEqual(hits[0]["payload"], {"label": 2, "color": "blue", "i": 42})
        hits = self.server.ok("POST", "/collections/ondisk/points/search",
                              {"vector": vec(42, self.DIM), "limit": 3, "filter": "i = 43"})
        self.assertEqual([h["id"] for h in hits], [43])  # a field with no payload index, read from disk
        # Qdrant's search params: re-ranking depth (quantization.oversampling) and exact search.
        exact = self.server.ok("POST", "/collections/ondisk/points/search",
                               {"vector": vec(7, self.DIM), "limit": 10, "params": {"exact": True}})
        deep = self.server.ok("POST", "/collections/ondisk/points/search", {
            "vector": vec(7, self.DIM), "limit": 10,
            "params": {"hnsw_ef": 128, "quantization": {"rescore": True, "oversampling": 8.0}}})
        self.assertEqual([h["id"] for h in deep], [h["id"] for h in exact])
        status, doc, _ = self.server.request("POST", "/collections/ondisk/points/search", {
            "vector": vec(7, self.DIM), "params": {"quantization": {"oversampling": 0.5}}})
        self.assertError(status, doc, 400, "oversampling must be a number from 1 to 100")
        metrics = self.server.request("GET", "/metrics")[1]
        self.assertIn('fathom_collection_disk_bytes{collection="ondisk",part="vectors"}', metrics)
        status, doc, _ = self.server.request("PUT", "/collections/ondisk2", {
            "vectors": {"size": 4, "distance": "Cosine", "index": "HNSW16", "on_disk": True}})
        self.assertError(status, doc, 400, "on_disk keeps float vectors on disk")
        status, doc, _ = self.server.request("PUT", "/collections/ondisk3", {
            "vectors": {"size": 4, "distance": "Cosine", "on_disk": "yes"}})
        self.assertError(status, doc, 400, "on_disk must be true or false")

    def test_snapshots(self):
        self.create("snap")
        self.fill("snap", 120)
        q = vec(3, self.DIM)
        before = self.server.ok("POST", "/collections/snap/points/search", {"vector": q, "limit": 5, "with_payload": True})
        snap = self.server.ok("POST", "/collections/snap/snapshots")
        self.assertEqual(snap["collection"], "snap")
        self.assertGreater(snap["size"], 0)
        self.assertTrue(os.path.isdir(os.path.join(self.server.data_dir, "snapshots", "snap", snap["name"])))
        listed = self.server.ok("GET", "/collections/snap/snapshots")
        self.assertEqual([s["name"] for s in listed], [snap["name"]])
        # Changes after the snapshot are not in the restored copy.
        self.server.ok("POST", "/collections/snap/points/delete", {"points": [3]})
        res = self.server.ok("PUT", "/collections/snap/snapshots/recover", {"snapshot": snap["name"], "name": "snap_copy"})
        self.assertEqual(res, {"name": "snap_copy", "points_count": 120})
        after = self.server.ok("POST", "/collections/snap_copy/points/search", {"vector": q, "limit": 5, "with_payload": True})
        self.assertEqual(after, before)
        # The original collection still serves after the restore.
        self.assertEqual(self.server.ok("POST", "/collections/snap/points/count", {})["count"], 119)
        status, doc, _ = self.server.request("PUT", "/collections/snap/snapshots/recover", {"snapshot": snap["name"]})
        self.assertError(status, doc, 409, "already exists")
        status, doc, _ = self.server.request("PUT", "/collections/snap/snapshots/recover", {"snapshot": "20000101T000000Z"})
        self.assertError(status, doc, 404)
        # Snapshots outlive their collection and can bring it back.
        self.server.ok("DELETE", "/collections/snap")
        self.assertEqual(len(self.server.ok("GET", "/collections/snap/snapshots")), 1)
        self.server.ok("PUT", "/collections/snap/snapshots/recover", {"snapshot": snap["name"]})
        self.assertEqual(self.server.ok("POST", "/collections/snap/points/count", {})["count"], 120)
        self.assertIs(self.server.ok("DELETE", "/collections/snap/snapshots/" + snap["name"]), True)
        self.assertEqual(self.server.ok("GET", "/collections/snap/snapshots"), [])
        status, doc, _ = self.server.request("DELETE", "/collections/snap/snapshots/" + snap["name"])
        self.assertError(status, doc, 404)

    def test_metrics(self):
        self.create("met")
        self.fill("met", 30)
        self.server.ok("POST", "/collections/met/points/search", {"vector": vec(1, self.DIM), "limit": 3})
        self.server.request("POST", "/collections/met/points/search", {"vector": vec(1, self.DIM), "limit": 0})
        status, text, resp = self.server.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(resp.getheader("Content-Type").startswith("text/plain"))
        route = 'route="/collections/{name}/points/search",method="POST"'
        self.assertRegex(text, r'fathom_http_requests_total\{%s,code="200"\} [1-9]' % re.escape(route))
        self.assertRegex(text, r'fathom_http_requests_total\{%s,code="400"\} [1-9]' % re.escape(route))
        self.assertRegex(text, r'fathom_http_request_duration_seconds_bucket\{%s,code="200",le="\+Inf"\} [1-9]' % re.escape(route))
        self.assertIn("# TYPE fathom_http_request_duration_seconds histogram", text)
        self.assertIn('fathom_collection_points{collection="met"} 30', text)
        self.assertRegex(text, r'fathom_collection_memory_bytes\{collection="met"\} [1-9]')
        self.assertIn("# TYPE fathom_checkpoint_age_seconds gauge", text)
        self.assertGreaterEqual(checkpoint_age(text, "met"), 0)
        # fill() sent three upserts; with no other writer each was its own commit.
        self.assertIn('fathom_upsert_requests_total{collection="met"} 3', text)
        self.assertIn('fathom_upsert_commits_total{collection="met"} 3', text)
        # Every sample line parses as NAME{LABELS} VALUE.
        for line in text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-z_]+(\{.*\})? [-+0-9.e]+$')

    def test_openapi_covers_every_route(self):
        status, doc, _ = self.server.request("GET", "/openapi.json")
        self.assertEqual(status, 200)
        self.assertTrue(doc["openapi"].startswith("3."))
        for method, path, _ in ROUTES:
            self.assertIn(path, doc["paths"], path)
            self.assertIn(method.lower(), doc["paths"][path], "%s %s" % (method, path))
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        self.assertEqual(documented, {(m, p) for m, p, _ in ROUTES})
        # Every $ref resolves.
        text = json.dumps(doc)
        for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
            node = doc
            for part in ref.split("/"):
                node = node[part]

    def test_unknown_route_and_method(self):
        status, doc, _ = self.server.request("GET", "/nope")
        self.assertError(status, doc, 404)
        status, doc, resp = self.server.request("PATCH", "/collections/x/points")
        self.assertError(status, doc, 405)
        self.assertIn("PUT", resp.getheader("Allow"))

    def test_keep_alive_connection_serves_many_requests(self):
        conn = self.server.connect()
        for _ in range(20):
            status, doc, _ = self.server.request("GET", "/healthz", conn=conn)
            self.assertEqual(status, 200)
        conn.close()


def checkpoint_age(metrics_text, collection):
    m = re.search(r'^fathom_checkpoint_age_seconds\{collection="%s"\} (\S+)$' % re.escape(collection),
                  metrics_text, re.M)
    assert m, "no fathom_checkpoint_age_seconds for %s" % collection
    return float(m.group(1))


class CheckpointMetricTest(ServerTestCase):
    """fathom_checkpoint_age_seconds grows from the collection's creation and drops to about zero
    when enough operations trigger a checkpoint (no endpoint checkpoints on demand: a snapshot
    copies the indexes without checkpointing them)."""
    server_args = ("--checkpoint-every", "10")
    DIM = 4

    def metrics(self):
        status, text, _ = self.server.request("GET", "/metrics")
        self.assertEqual(status, 200)
        return text

    def test_age_drops_after_checkpoint(self):
        self.server.ok("PUT", "/collections/ck", {"vectors": {"size": self.DIM, "distance": "L2"}})
        time.sleep(1.2)
        before = checkpoint_age(self.metrics(), "ck")
        self.assertGreaterEqual(before, 1.0)
        # Fewer points than --checkpoint-every: no checkpoint, the age keeps growing.
        self.server.ok("PUT", "/collections/ck/points", {"points": [
            {"id": i, "vector": vec(i, self.DIM)} for i in range(5)]})
        self.assertGreaterEqual(checkpoint_age(self.metrics(), "ck"), before)
        self.server.ok("POST", "/collections/ck/snapshots")
        self.assertGreaterEqual(checkpoint_age(self.metrics(), "ck"), before)
        # Reaching it checkpoints (in the background, soon after).
        self.server.ok("PUT", "/collections/ck/points", {"points": [
            {"id": i, "vector": vec(i, self.DIM)} for i in range(5, 10)]})
        deadline = time.time() + 30
        after = checkpoint_age(self.metrics(), "ck")
        while after >= before and time.time() < deadline:
            time.sleep(0.05)
            after = checkpoint_age(self.metrics(), "ck")
        self.assertGreaterEqual(after, 0)
        self.assertLess(after, before)


class BadInputTest(ServerTestCase):
    """Hostile and careless requests: each gets a 4xx JSON error; the server stays healthy."""
    server_args = ("--max-body", "262144", "--request-timeout", "2")
    DIM = 4

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server.ok("PUT", "/collections/bad", {"vectors": {"size": cls.DIM, "distance": "l2"},
                                                  "indexed_fields": {"label": "integer"}})
        cls.server.ok("PUT", "/collections/bad/points", {"points": [
            {"id": i, "vector": vec(i, cls.DIM), "payload": {"label": i}} for i in range(20)]})
        cls.server.ok("POST", "/collections/bad/snapshots")

    def tearDown(self):
        self.assertEqual(self.server.ok("GET", "/healthz"), {"status": "healthy"})

    def check(self, method, path, body, status=None, contains=None, headers=None):
        got, doc, _ = self.server.request(method, path, body, headers)
        self.assertError(got, doc, status, contains)
        return doc

    def raw(self, data, timeout=10, half_close=False):
        """Sends raw bytes on a fresh connection; returns (status, JSON body)."""
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=timeout)
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            buf = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                buf += chunk
                head, sep, rest = buf.partition(b"\r\n\r\n")
                m = re.search(rb"Content-Length: (\d+)", head, re.I)
                if sep and m and len(rest) >= int(m.group(1)):
                    break
        finally:
            s.close()
        head, _, rest = buf.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d+)", head)
        self.assertIsNotNone(m, "no HTTP response: %r" % buf[:200])
        return int(m.group(1)), json.loads(rest)

    def test_malformed_json(self):
        for body in [b'{"vector": [1, 2,', b'{"vector": [1 2 3 4]}', b"{'vector': [1,2,3,4]}", b"nope",
                     b'{"vector": [1,2,3,4],}', b'{"vector": [1,2,3,4]} trailing']:
            doc = self.check("POST", "/collections/bad/points/search", body, 400)
            self.assertIn("JSON", doc["status"]["error"])
        doc = self.check("POST", "/collections/bad/points/search", b'{"vector": [1,2,', 400)
        self.assertIn("line 1, column 17", doc["status"]["error"])
        self.check("POST", "/collections/bad/points/search", b"[1, 2, 3, 4]", 400, "must be a JSON object")

    def test_truncated_body(self):
        # Content-Length promises more than arrives: the read times out (--request-timeout 2).
        status, doc = self.raw(b"POST /collections/bad/points/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 100\r\n\r\n{\"vector\": [1,", timeout=15)
        self.assertEqual(status, 400)
        self.assertIn("truncated", doc["status"]["error"])
        # A complete but cut-off JSON document.
        self.check("PUT", "/collections/bad/points", b'{"points": [{"id": 1, "vector": [1, 2, 3, 4], "payl', 400)

    def test_wrong_types(self):
        cases = [
            ("POST", "/collections/bad/points/search", {"vector": "not base64!"}, "base64"),
            ("POST", "/collections/bad/points/search", {"vector": [1, "2", 3, 4]}, "must be a number"),
            ("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "limit": "10"}, "limit"),
            ("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "limit": 2.5}, "limit"),
            ("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "with_payload": 1}, "with_payload"),
            ("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "filter": 42}, "filter"),
            ("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "params": {"ef": -1}}, "ef"),
            ("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "params": {"ef": 10 ** 12}}, "ef"),
            ("POST", "/collections/bad/points/search", {"vector": None}, "vector"),
            ("POST", "/collections/bad/points/search", {}, "vector"),
            ("POST", "/collections/bad/points/search", {"vector": [True, False, True, False]}, None),
            ("POST", "/collections/bad/points/search/batch", {"searches": {"vector": [1, 2, 3, 4]}}, "searches"),
            ("POST", "/collections/bad/points/search/batch", {"searches": [{"vector": [1, 2, 3, 4]}, 7]}, "searches[1]"),
            ("PUT", "/collections/bad/points", {"points": {"id": 1}}, "points"),
            ("PUT", "/collections/bad/points", {"points": [7]}, "points[0]"),
            ("PUT", "/collections/bad/points", {"points": [{"id": 1.5, "vector": [1, 2, 3, 4]}]}, "id"),
            ("PUT", "/collections/bad/points", {"points": [{"id": -1, "vector": [1, 2, 3, 4]}]}, "-1"),
            ("PUT", "/collections/bad/points", {"points": [{"id": True, "vector": [1, 2, 3, 4]}]}, "id"),
            ("PUT", "/collections/bad/points", {"points": [{"id": "", "vector": [1, 2, 3, 4]}]}, "id"),
            ("PUT", "/collections/bad/points", {"points": [{"id": 1, "vector": [1, 2, 3, 4], "payload": [1]}]}, "payload"),
            ("PUT", "/collections/bad/points", {"points": [{"id": 1, "vector": [1, 2, 3, 4], "payload": "x"}]}, "payload"),
            ("PUT", "/collections/bad/points", {"points": [{"id": 1}]}, "vector"),
            ("PUT", "/collections/bad/points", {"points": []}, "empty"),
            ("PUT", "/collections/bad/points", {"points": [{"id": 1, "vector": [1, 2, 3, 4]}] * 2}, "more than once"),
            ("PUT", "/collections/bad/points", {"batch": {"ids": [1, 2], "vectors": [[1, 2, 3, 4]]}}, "batch"),
            ("PUT", "/collections/bad/points", {"batch": {"ids": [1], "vectors": b64([1, 2, 3])}}, "base64"),
            ("PUT", "/collections/bad/points", {}, "points"),
            ("POST", "/collections/bad/points", {"ids": "1"}, "ids"),
            ("POST", "/collections/bad/points", {"ids": [{}]}, "ids[0]"),
            ("POST", "/collections/bad/points", {}, "ids"),
            ("POST", "/collections/bad/points/delete", {}, "exactly one"),
            ("POST", "/collections/bad/points/delete", {"points": [1], "filter": "label = 1"}, "exactly one"),
            ("POST", "/collections/bad/points/count", {"filter": "label = "}, None),
            ("POST", "/collections/bad/points/count", {"filter": "label = \"one\""}, "integer"),
            ("POST", "/collections/bad/points/count", {"filter": {"must": "x"}}, None),
            ("PUT", "/collections/newc", {"vectors": {"size": "4", "distance": "l2"}}, "size"),
            ("PUT", "/collections/newc", {"vectors": {"size": 0, "distance": "l2"}}, "size"),
            ("PUT", "/collections/newc", {"vectors": {"size": 10 ** 9, "distance": "l2"}}, "size"),
            ("PUT", "/collections/newc", {"vectors": {"size": 4, "distance": "hamming"}}, "distance"),
            ("PUT", "/collections/newc", {"vectors": {"size": 4}}, "distance"),
            ("PUT", "/collections/newc", {"vectors": {"size": 4, "distance": "l2", "index": "HNSX"}}, None),
            ("PUT", "/collections/newc", {"vectors": {"size": 4, "distance": "l2"}, "indexed_fields": {"a": "date"}}, "date"),
            ("PUT", "/collections/newc", {"vectors": {"size": 4, "distance": "l2"}, "indexed_fields": ["a"]}, "indexed_fields"),
            ("PUT", "/collections/newc", {"vectors": 4}, "vectors"),
            ("PUT", "/collections/newc", {}, "vectors"),
            ("PUT", "/collections/bad/snapshots/recover", {"snapshot": 5}, "snapshot"),
            ("PUT", "/collections/bad/snapshots/recover", {}, "snapshot"),
        ]
        for method, path, body, contains in cases:
            with self.subTest(body=body):
                self.check(method, path, body, 400, contains)
        self.assertEqual(self.server.ok("GET", "/collections/bad")["points_count"], 20)
        status, _, _ = self.server.request("GET", "/collections/newc")
        self.assertEqual(status, 404)

    def test_wrong_dimension(self):
        self.check("PUT", "/collections/bad/points", {"points": [{"id": 100, "vector": [1, 2, 3]}]}, 400, "dimensions")
        self.check("PUT", "/collections/bad/points", {"points": [{"id": 100, "vector": b64([1, 2, 3, 4, 5])}]}, 400, "dimensions")
        self.check("POST", "/collections/bad/points/search", {"vector": [1, 2, 3]}, 400, "dimensions")
        self.check("POST", "/collections/bad/points/search", {"vector": []}, 400)
        self.check("POST", "/collections/bad/points/search/batch",
                   {"searches": [{"vector": [1, 2, 3, 4]}, {"vector": [1, 2, 3, 4, 5]}]}, 400, "searches[1]")
        self.assertEqual(self.server.ok("GET", "/collections/bad")["points_count"], 20)

    def test_nan_and_huge_numbers(self):
        for text in [b"NaN", b"nan", b"Infinity", b"-Infinity", b"1e39", b"-1e39", b"1e400", b"3.5e38"]:
            with self.subTest(value=text):
                self.check("PUT", "/collections/bad/points",
                           b'{"points": [{"id": 100, "vector": [1, 2, 3, ' + text + b']}]}', 400)
                self.check("POST", "/collections/bad/points/search", b'{"vector": [1, 2, ' + text + b', 4]}', 400)
        nan_b64 = base64.b64encode(struct.pack("<4f", 1, 2, float("nan"), 4)).decode()
        self.check("PUT", "/collections/bad/points", {"points": [{"id": 100, "vector": nan_b64}]}, 400, "NaN")
        self.check("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "limit": 10 ** 30}, 400)
        self.check("PUT", "/collections/bad/points", {"points": [{"id": 2 ** 64, "vector": [1, 2, 3, 4]}]}, 400, "id")
        self.assertEqual(self.server.ok("GET", "/collections/bad")["points_count"], 20)

    def test_unknown_fields(self):
        cases = [
            ("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "limt": 3}, "limt"),
            ("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "params": {"beam": 3}}, "beam"),
            ("POST", "/collections/bad/points/search", {"vector": {"name": "", "vector": [1, 2, 3, 4], "x": 1}}, "'x'"),
            ("POST", "/collections/bad/points/search/batch", {"searches": [], "extra": 1}, "extra"),
            ("PUT", "/collections/bad/points", {"points": [{"id": 1, "vector": [1, 2, 3, 4], "vectors": [1]}]}, "vectors"),
            ("PUT", "/collections/bad/points", {"points": [], "wait": True}, "wait"),
            ("POST", "/collections/bad/points", {"ids": [1], "with_payloads": True}, "with_payloads"),
            ("POST", "/collections/bad/points/delete", {"points": [1], "ids": [1]}, "'ids'"),
            ("POST", "/collections/bad/points/count", {"filters": "label = 1"}, "filters"),
            ("PUT", "/collections/newc", {"vectors": {"size": 4, "distance": "l2"}, "hnsw": {}}, "hnsw"),
            ("PUT", "/collections/newc", {"vectors": {"size": 4, "distance": "l2", "on_dsk": True}}, "on_dsk"),
            ("PUT", "/collections/bad/snapshots/recover", {"snapshot": "x", "speed": "high"}, "speed"),
        ]
        for method, path, body, contains in cases:
            with self.subTest(body=body):
                doc = self.check(method, path, body, 400, contains)
                self.assertIn("unknown field", doc["status"]["error"])

    def test_invalid_utf8(self):
        bodies = [b'{"points": [{"id": "\xff\xfe", "vector": [1, 2, 3, 4]}]}',
                  b'{"points": [{"id": 5, "vector": [1, 2, 3, 4], "payload": {"name": "caf\xc3"}}]}',
                  b'{"points": [{"id": 5, "vector": [1, 2, 3, 4], "payload": {"\xed\xa0\x80": 1}}]}']
        for body in bodies:
            doc = self.check("PUT", "/collections/bad/points", body, 400)
            self.assertIn("UTF-8", doc["status"]["error"])
            json.dumps(doc)  # the error message itself is valid UTF-8 JSON
        self.check("POST", "/collections/bad/points/count", b'{"filter": "label = \xff"}', 400, "UTF-8")
        self.check("GET", "/collections/%FF%FE", None, 400)
        self.assertEqual(self.server.ok("GET", "/collections/bad")["points_count"], 20)

    def test_body_over_the_limit(self):
        big = json.dumps({"points": [{"id": i, "vector": [0.5] * 4, "payload": {"pad": "x" * 100}}
                                     for i in range(3000)]}).encode()
        self.assertGreater(len(big), 262144)
        doc = self.check("PUT", "/collections/bad/points", big, 413)
        self.assertIn("262144", doc["status"]["error"])
        # Chunked bodies are held to the same limit.
        chunk = big[:270000]
        status, doc = self.raw(b"PUT /collections/bad/points HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                               b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
        self.assertEqual(status, 413)
        self.assertIn("larger than", doc["status"]["error"])
        # A client announcing 100 MB and sending little gets 413 once the read times out.
        status, doc = self.raw(b"PUT /collections/bad/points HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{}",
                               timeout=15)
        self.assertEqual(status, 413)
        self.assertEqual(self.server.ok("GET", "/collections/bad")["points_count"], 20)

    def test_k_zero_and_huge(self):
        for k in [0, 10001, 10 ** 9]:
            with self.subTest(k=k):
                self.check("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "limit": k}, 400, "limit")
                self.check("POST", "/collections/bad/points/search/batch",
                           {"searches": [{"vector": [1, 2, 3, 4], "limit": k}]}, 400, "limit")
        self.check("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "limit": 10, "offset": 9995}, 400)
        self.check("POST", "/collections/bad/points/search/batch",
                   {"searches": [{"vector": [1, 2, 3, 4], "limit": 10000}] * 200}, 400, "results")
        self.check("POST", "/collections/bad/points/search/batch",
                   {"searches": [{"vector": [1, 2, 3, 4], "limit": 1}] * 10001}, None)
        self.assertEqual(len(self.server.ok("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "limit": 10000})), 20)

    def test_deeply_nested_filter(self):
        flt = {"key": "label", "match": {"value": 1}}
        for _ in range(40):
            flt = {"must": [flt]}
        self.check("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "filter": flt}, 400, "deep")
        self.check("POST", "/collections/bad/points/count", {"filter": flt}, 400, "deep")
        self.check("POST", "/collections/bad/points/delete", {"filter": flt}, 400, "deep")
        text = "(" * 100 + "label = 1" + ")" * 100
        self.check("POST", "/collections/bad/points/search", {"vector": [1, 2, 3, 4], "filter": text}, 400, "deep")
        self.check("POST", "/collections/bad/points/count", {"filter": "label = 1 OR " * 5400 + "label = 2"}, 400, "bytes")
        # A body nested 100,000 levels deep is refused before it is parsed.
        self.check("POST", "/collections/bad/points/count", b'{"filter": ' + b"[" * 100000 + b"]" * 100000 + b"}", 400, "deep")
        self.check("POST", "/collections/bad/points/count", b'{"filter": ' + b"{\"a\":" * 30000 + b"1" + b"}" * 30001, 400, "deep")
        self.check("PUT", "/collections/bad/points",
                   b'{"points": [{"id": 1, "vector": [1,2,3,4], "payload": {"a": ' + b'{"a": ' * 500 + b"1" + b"}" * 501 + b"}]}",
                   400, "deep")
        # Filters at the limit still work.
        ok = {"key": "label", "match": {"value": 1}}
        for _ in range(5):
            ok = {"must": [ok]}
        self.assertEqual(self.server.ok("POST", "/collections/bad/points/count", {"filter": ok}), {"count": 1})
        self.assertEqual(self.server.ok("POST", "/collections/bad/points/count", {"filter": "((label = 1))"}), {"count": 1})

    def test_path_traversal_and_bad_names(self):
        snapshot = self.server.ok("GET", "/collections/bad/snapshots")[0]["name"]
        for path in ["/collections/..", "/collections/../../etc/passwd", "/collections/..%2F..%2Fetc",
                     "/collections/%2E%2E", "/collections/bad/../bad", "/collections/./bad/points/count",
                     "/collections/bad/snapshots/..", "/collections/bad/snapshots/..%2F..%2Fdata"]:
            for method in ["GET", "PUT", "POST", "DELETE"]:
                with self.subTest(path=path, method=method):
                    self.check(method, path, {"vectors": {"size": 4, "distance": "l2"}}, 400)
        for name in ["a%20b", "a%00b", "x" * 65, "semi;colon", "%C3%A9t%C3%A9", "back%5Cslash"]:
            with self.subTest(name=name):
                self.check("PUT", "/collections/" + name, {"vectors": {"size": 4, "distance": "l2"}}, 400, "not valid")
                self.check("GET", "/collections/%s/snapshots" % name, None, 400, "not valid")
        for snap in ["../../../etc", "..", ".", "a/b", "", "x" * 65, "/abs"]:
            with self.subTest(snapshot=snap):
                self.check("PUT", "/collections/bad/snapshots/recover", {"snapshot": snap}, 400)
        for target in ["../evil", "..", "a/b", ""]:
            with self.subTest(target=target):
                self.check("PUT", "/collections/bad/snapshots/recover", {"snapshot": snapshot, "name": target}, 400)
        self.check("DELETE", "/collections/bad/snapshots/%2E%2E", None, 400)
        self.check("DELETE", "/collections/bad/snapshots/a%5C..", None, 400)
        names = [c["name"] for c in self.server.ok("GET", "/collections")["collections"]]
        self.assertEqual(names, ["bad"])
        self.assertEqual(len(self.server.ok("GET", "/collections/bad/snapshots")), 1)

    def test_garbage_http(self):
        status, doc = self.raw(b"GARBAGE\r\n\r\n")
        self.assertEqual(status, 400)
        self.assertIn("error", doc["status"])
        status, doc = self.raw(b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\r\n")
        self.assertTrue(400 <= status < 500, status)

    def test_multipart_body(self):
        body = (b"--abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--abc--\r\n")
        conn = self.server.connect()
        for _ in range(2):  # the connection stays usable afterwards
            status, doc, _ = self.server.request("POST", "/collections/bad/points/count", body,
                                                 {"Content-Type": "multipart/form-data; boundary=abc"}, conn=conn)
            self.assertError(status, doc, 415, "multipart")
        status, doc, _ = self.server.request("GET", "/healthz", conn=conn)
        self.assertEqual(status, 200)
        conn.close()

    def test_missing_collection(self):
        self.check("POST", "/collections/missing/points/search", {"vector": [1, 2, 3, 4]}, 404, "does not exist")
        self.check("PUT", "/collections/missing/points", {"points": [{"id": 1, "vector": [1, 2, 3, 4]}]}, 404)
        self.check("POST", "/collections/missing/snapshots", None, 404)


class NonLoopbackTest(unittest.TestCase):
    def test_refuses_non_loopback_without_key(self):
        tmp = tempfile.mkdtemp(prefix="fathom_server_test_")
        try:
            proc = subprocess.run([SERVER_BINARY, "--data", os.path.join(tmp, "d"), "--host", "0.0.0.0", "--port", "0"],
                                  capture_output=True, timeout=60,
                                  env={k: v for k, v in os.environ.items() if not k.startswith("FATHOM_")})
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn(b"refusing", proc.stderr)
            self.assertIn(b"FATHOM_API_KEY", proc.stderr)
            # --insecure overrides.
            server = Server(os.path.join(tmp, "d"), ("--host", "0.0.0.0", "--insecure"))
            self.assertEqual(server.ok("GET", "/healthz"), {"status": "healthy"})
            self.assertEqual(server.stop(), 0)
            # A key also allows it.
            server = Server(os.path.join(tmp, "d"), ("--host", "0.0.0.0"), {"FATHOM_API_KEY": "k"})
            self.assertEqual(server.ok("GET", "/collections", headers={"api-key": "k"}), {"collections": []})
            self.assertEqual(server.stop(), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class AuthTest(ServerTestCase):
    server_env = {"FATHOM_API_KEY": "rw-secret-key", "FATHOM_READ_ONLY_API_KEY": "ro-secret-key"}
    RW = {"api-key": "rw-secret-key"}
    RO = {"api-key": "ro-secret-key"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server.ok("PUT", "/collections/auth", {"vectors": {"size": 2, "distance": "l2", "index": "Flat"}}, cls.RW)
        cls.server.ok("PUT", "/collections/auth/points", {"points": [{"id": 1, "vector": [1, 2]}]}, cls.RW)
        cls.snapshot = cls.server.ok("POST", "/collections/auth/snapshots", None, cls.RW)["name"]

    def body_for(self, method, path):
        return {
            ("PUT", "/collections/{name}"): {"vectors": {"size": 2, "distance": "l2"}},
            ("PUT", "/collections/{name}/points"): {"points": [{"id": 2, "vector": [3, 4]}]},
            ("POST", "/collections/{name}/points"): {"ids": [1]},
            ("POST", "/collections/{name}/points/delete"): {"points": [2]},
            ("POST", "/collections/{name}/points/count"): {},
            ("POST", "/collections/{name}/points/search"): {"vector": [1, 2], "limit": 1},
            ("POST", "/collections/{name}/points/search/batch"): {"searches": [{"vector": [1, 2]}]},
            ("POST", "/collections/{name}/points/recommend"): {"positive": [[1, 2]], "limit": 1},
            ("POST", "/collections/{name}/points/recommend/batch"): {"searches": [{"positive": [1]}]},
            ("POST", "/collections/{name}/points/query"): {"query": 1},
            ("POST", "/collections/{name}/points/query/batch"): {"searches": [{"query": 1}]},
            ("PATCH", "/collections/{name}"): {"optimizers_config": {}},
            ("POST", "/collections/aliases"): {"actions": []},
            ("PUT", "/collections/{name}/snapshots/recover"): {"snapshot": self.snapshot, "name": "auth_copy"},
            ("POST", "/collections/{name}/tune"): {"target_recall": 0.9},
            ("PUT", "/collections/{name}/index"): {"field_name": "k", "field_schema": "keyword"},
        }.get((method, path))

    def concrete(self, path, name="auth"):
        return (path.replace("{name}", name).replace("{id}", "1").replace("{snapshot}", self.snapshot)
                .replace("{file}", "app.js").replace("{field}", "k"))

    def test_health_needs_no_key(self):
        self.assertEqual(self.server.ok("GET", "/healthz"), {"status": "healthy"})
        self.assertEqual(self.server.ok("GET", "/readyz"), {"status": "ready"})

    def test_console_needs_no_key_and_access_names_the_key(self):
        # The page loads without a key (it then asks for one); every call it makes needs one.
        self.assertEqual(self.server.request("GET", "/console")[0], 200)
        self.assertEqual(self.server.request("GET", "/console/app.js")[0], 200)
        self.assertEqual(self.server.ok("GET", "/access", None, self.RW), {"access": "read_write", "api_key_required": True})
        self.assertEqual(self.server.ok("GET", "/access", None, self.RO), {"access": "read_only", "api_key_required": True})
        self.assertEqual(self.server.ok("GET", "/access", None, {"Authorization": "Bearer ro-secret-key"})["access"],
                         "read_only")
        status, doc, _ = self.server.request("GET", "/access")
        self.assertEqual(status, 401, doc)

    def test_missing_or_wrong_key_is_401_everywhere(self):
        for method, path, _ in ROUTES:
            if path in ("/", "/healthz", "/readyz", "/console", "/console/{file}"):
                continue
            for headers in [{}, {"api-key": "wrong"}, {"api-key": "rw-secret-ke"}, {"api-key": "rw-secret-key-"},
                            {"Authorization": "Bearer wrong"}, {"Authorization": "rw-secret-key"}]:
                with self.subTest(method=method, path=path, headers=headers):
                    status, doc, resp = self.server.request(method, self.concrete(path), self.body_for(method, path), headers)
                    self.assertEqual(status, 401, doc)
                    self.assertIn("API key", doc["status"]["error"])

    def test_read_only_key_is_403_on_every_write(self):
        for method, path, write in ROUTES:
            if path in ("/", "/healthz", "/readyz", "/console", "/console/{file}"):
                continue
            with self.subTest(method=method, path=path):
                target = "auth_new" if (method, path) == ("PUT", "/collections/{name}") else "auth"
                status, doc, _ = self.server.request(method, self.concrete(path, target), self.body_for(method, path), self.RO)
                if write:
                    self.assertEqual(status, 403, doc)
                    self.assertIn("read-only", doc["status"]["error"])
                else:
                    self.assertEqual(status, 200, doc)
        self.assertEqual(self.server.ok("POST", "/collections/auth/points/count", {}, self.RO), {"count": 1})
        self.assertEqual(len(self.server.ok("GET", "/collections/auth/snapshots", None, self.RO)), 1)

    def test_right_key_is_200(self):
        for headers in [self.RW, {"Authorization": "Bearer rw-secret-key"}]:
            self.assertEqual(self.server.ok("GET", "/collections", None, headers)["collections"], [{"name": "auth"}])
        self.server.ok("PUT", "/collections/auth2", {"vectors": {"size": 2, "distance": "l2"}},
                       {"Authorization": "Bearer rw-secret-key"})
        self.server.ok("DELETE", "/collections/auth2", None, self.RW)
        self.assertEqual(self.server.ok("POST", "/collections/auth/points/search", {"vector": [1, 2]}, self.RO)[0]["id"], 1)
        self.assertEqual(self.server.ok("POST", "/collections/auth/points/search", {"vector": [1, 2]},
                                        {"Authorization": "Bearer ro-secret-key"})[0]["id"], 1)


def search_all(server, name, queries):
    return server.ok("POST", "/collections/%s/points/search/batch" % name,
                     {"searches": [{"vector": q, "limit": 10, "with_payload": True} for q in queries]})


class RestartTest(unittest.TestCase):
    def test_restart_returns_the_same_results(self):
        tmp = tempfile.mkdtemp(prefix="fathom_server_test_")
        data = os.path.join(tmp, "data")
        try:
            server = Server(data)
            server.ok("PUT", "/collections/r", {"vectors": {"size": 16, "distance": "Cosine"}, "indexed_fields": {"label": "integer"}})
            server.ok("PUT", "/collections/r2", {"vectors": {"size": 3, "distance": "l2", "index": "Flat"}})
            for start in range(0, 2000, 500):
                server.ok("PUT", "/collections/r/points", {"points": [
                    {"id": i, "vector": vec(i, 16), "payload": {"label": i % 10}} for i in range(start, start + 500)]})
            server.ok("PUT", "/collections/r2/points", {"points": [{"id": "s%d" % i, "vector": [i, 0, 1]} for i in range(10)]})
            server.ok("POST", "/collections/r/points/delete", {"filter": "label = 3"})
            queries = [vec(i, 16, seed=99) for i in range(20)]
            before = search_all(server, "r", queries)
            before2 = server.ok("POST", "/collections/r2/points/search", {"vector": [4.2, 0, 1], "limit": 3})
            self.assertEqual(server.stop(), 0)
            self.assertIn("closed cleanly", server.log_text())

            server = Server(data)
            self.assertEqual(sorted(c["name"] for c in server.ok("GET", "/collections")["collections"]), ["r", "r2"])
            self.assertEqual(server.ok("GET", "/collections/r")["points_count"], 1800)
            after = search_all(server, "r", queries)
            self.assertEqual(after, before)
            self.assertEqual(server.ok("POST", "/collections/r2/points/search", {"vector": [4.2, 0, 1], "limit": 3}), before2)
            self.assertEqual(server.stop(signal.SIGINT), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class SigtermDuringIngestTest(unittest.TestCase):
    def test_no_acknowledged_point_is_lost(self):
        tmp = tempfile.mkdtemp(prefix="fathom_server_test_")
        data = os.path.join(tmp, "data")
        try:
            # fsync durability here: the guarantee under test is the default one.
            server = Server(data, durability="fsync")
            server.ok("PUT", "/collections/ingest", {"vectors": {"size": 8, "distance": "l2", "index": "HNSW16"}})
            acked = []
            lock = threading.Lock()
            errors = []
            stop = threading.Event()

            def writer(w):
                conn = server.connect(timeout=30)
                batch_no = 0
                while not stop.is_set():
                    ids = [w * 10 ** 9 + batch_no * 50 + j for j in range(50)]
                    body = {"points": [{"id": i, "vector": vec(i, 8), "payload": {"w": w}} for i in ids]}
                    try:
                        status, doc, _ = server.request("PUT", "/collections/ingest/points", body, conn=conn)
                    except (OSError, http.client.HTTPException):
                        # The server stopped accepting: this batch was never acknowledged.
                        conn.close()
                        if server.proc.poll() is not None or stop.is_set():
                            return
                        time.sleep(0.01)
                        try:
                            conn = server.connect(timeout=30)
                        except OSError:
                            return
                        continue
                    if status == 200:
                        with lock:
                            acked.extend(ids)
                    else:
                        errors.append((status, doc))
                        return
                    batch_no += 1

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
            for t in threads:
                t.start()
            deadline = time.time() + 30
            while time.time() < deadline:
                with lock:
                    if len(acked) >= 1000:
                        break
                time.sleep(0.05)
            rc = server.stop(signal.SIGTERM)
            stop.set()
            for t in threads:
                t.join(60)
            self.assertEqual(rc, 0, server.log_text())
            self.assertEqual(errors, [])
            self.assertGreaterEqual(len(acked), 1000)

            server = Server(data)
            count = server.ok("POST", "/collections/ingest/points/count", {})["count"]
            self.assertGreaterEqual(count, len(acked))
            found = 0
            for start in range(0, len(acked), 5000):
                chunk = acked[start:start + 5000]
                got = server.ok("POST", "/collections/ingest/points", {"ids": chunk, "with_payload": False})
                found += len(got)
            self.assertEqual(found, len(acked), "acknowledged points were lost")
            self.assertEqual(server.stop(), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class ConcurrentDropTest(ServerTestCase):
    """Searches and upserts overlap (a barrier starts them together) and the collection is dropped
    under them: every answer is a correct 200 or a clean 404, never a 500 or a crash."""

    def test_search_write_and_drop_overlap(self):
        dim = 8
        for round_ in range(3):
            name = "conc%d" % round_
            self.server.ok("PUT", "/collections/" + name, {"vectors": {"size": dim, "distance": "L2"}})
            self.server.ok("PUT", "/collections/%s/points" % name,
                           {"points": [{"id": i, "vector": vec(i, dim)} for i in range(300)]})
            start = threading.Barrier(5)
            progress = [0] * 4
            problems = []

            def worker(k):
                conn = self.server.connect()
                start.wait()
                i = 0
                while True:
                    if k == 0:
                        body = {"points": [{"id": 1000 + i, "vector": vec(1000 + i, dim)}]}
                        status, doc, _ = self.server.request("PUT", "/collections/%s/points" % name, body, conn=conn)
                    else:
                        body = {"vector": vec(i % 300, dim), "limit": 3}
                        status, doc, _ = self.server.request("POST", "/collections/%s/points/search" % name, body,
                                                             conn=conn)
                        if status == 200 and (not doc["result"] or doc["result"][0]["id"] != i % 300):
                            problems.append(("wrong hit", i % 300, doc["result"][:1]))
                    if status == 404:
                        if "does not exist" not in doc["status"]["error"] and "dropped" not in doc["status"]["error"]:
                            problems.append((404, doc))
                        break
                    if status != 200:
                        problems.append((status, doc))
                        break
                    progress[k] += 1
                    i += 1
                conn.close()

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            start.wait()
            while min(progress) < 20 and not problems and all(t.is_alive() for t in threads):
                time.sleep(0.01)
            self.server.ok("DELETE", "/collections/" + name)
            for t in threads:
                t.join(60)
                self.assertFalse(t.is_alive())
            self.assertEqual(problems, [])
            self.assertGreaterEqual(min(progress), 20)
            self.assertEqual(self.server.ok("GET", "/healthz"), {"status": "healthy"})
            self.server.ok("PUT", "/collections/" + name, {"vectors": {"size": dim, "distance": "L2"}})
            self.assertEqual(self.server.ok("POST", "/collections/%s/points/count" % name, {})["count"], 0)


class RecallMonitorTest(ServerTestCase):
    """--recall-sample-rate 1: every search is re-run exactly; the estimate shows in /metrics and
    the collection info; a search answered exactly (Flat) is estimated at 1.0."""
    server_args = ("--recall-sample-rate", "1", "--recall-cpu-share", "1")

    def test_estimate_in_metrics_and_info(self):
        self.server.ok("PUT", "/collections/watched", {"vectors": {"size": 8, "distance": "L2", "index": "Flat"}})
        self.server.ok("PUT", "/collections/watched/points",
                       {"points": [{"id": i, "vector": vec(i, 8)} for i in range(200)]})
        info = self.server.ok("GET", "/collections/watched")
        self.assertEqual(info["recall_estimate"]["samples"], 0)
        self.assertIsNone(info["recall_estimate"]["recall"])
        self.assertNotIn('fathom_recall_estimate{collection="watched"}', self.server.request("GET", "/metrics")[1])
        for i in range(30):
            self.server.ok("POST", "/collections/watched/points/search", {"vector": vec(i, 8, seed=7), "limit": 5})
        self.server.ok("POST", "/collections/watched/points/search",
                       {"vector": vec(0, 8, seed=7), "limit": 5, "params": {"exact": True}})  # not sampled
        deadline = time.time() + 30
        while time.time() < deadline:
            estimate = self.server.ok("GET", "/collections/watched")["recall_estimate"]
            if estimate["total_samples"] + estimate["dropped"] >= 30:
                break
            time.sleep(0.05)
        self.assertEqual(estimate["total_samples"] + estimate["dropped"], 30)
        self.assertEqual(estimate["recall"], 1.0)
        metrics = self.server.request("GET", "/metrics")[1]
        self.assertIn('fathom_recall_estimate{collection="watched"} 1\n', metrics)
        self.assertRegex(metrics, r'fathom_recall_samples\{collection="watched"\} (\d+)')
        self.assertIn('fathom_recall_samples_dropped_total{collection="watched"}', metrics)


class LimitsFlagTest(ServerTestCase):
    """--max-batch and --max-k are honoured, with errors that name the limit."""
    server_args = ("--max-batch", "5", "--max-k", "7")

    def test_flags_bound_batches_and_k(self):
        self.server.ok("PUT", "/collections/lim", {"vectors": {"size": 2, "distance": "L2", "index": "Flat"}})
        points = [{"id": i, "vector": [i, i]} for i in range(6)]
        status, doc, _ = self.server.request("PUT", "/collections/lim/points", {"points": points})
        self.assertEqual(status, 400, doc)
        self.assertIn("5", doc["status"]["error"])
        self.server.ok("PUT", "/collections/lim/points", {"points": points[:5]})
        status, doc, _ = self.server.request("POST", "/collections/lim/points/search", {"vector": [0, 0], "limit": 8})
        self.assertEqual(status, 400, doc)
        self.assertIn("7", doc["status"]["error"])
        self.assertEqual(len(self.server.ok("POST", "/collections/lim/points/search", {"vector": [0, 0], "limit": 7})), 5)
        status, doc, _ = self.server.request("POST", "/collections/lim/points/search/batch",
                                             {"searches": [{"vector": [0, 0]}] * 6})
        self.assertEqual(status, 400, doc)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PortTest(unittest.TestCase):
    """Regression (issue 9.4): a second server on a busy port printed "listening" (SO_REUSEPORT)
    and the two split the requests between two databases."""

    def test_second_server_on_a_busy_port_fails(self):
        tmp = tempfile.mkdtemp(prefix="fathom_port_test_")
        try:
            first = Server(os.path.join(tmp, "a"))
            try:
                proc = subprocess.run([SERVER_BINARY, "--data", os.path.join(tmp, "b"), "--port", str(first.port)],
                                      capture_output=True, timeout=60)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertNotIn(b"listening", proc.stdout)
                self.assertIn(b"Address already in use", proc.stderr)
                for _ in range(10):
                    self.assertEqual(first.ok("GET", "/collections"), {"collections": []})
            finally:
                self.assertEqual(first.stop(), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class SlowClientTest(ServerTestCase):
    """Regression (issue 9.5): connections trickling one header byte at a time held every worker
    and /healthz timed out for 70 s."""
    server_args = ("--threads", "8", "--header-timeout", "3", "--max-connections-per-client", "40")

    def trickle(self, sockets, stop):
        request = b"GET /collections HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 1000
        pos = 0
        while not stop.is_set() and pos < len(request):
            for s in list(sockets):
                try:
                    s.send(request[pos:pos + 1])
                except OSError:
                    sockets.remove(s)
            pos += 1
            stop.wait(0.2)

    def test_slow_clients_are_cut_off_and_health_answers(self):
        sockets = [socket.create_connection(("127.0.0.1", self.server.port)) for _ in range(30)]
        stop = threading.Event()
        t = threading.Thread(target=self.trickle, args=(list(sockets), stop))
        t.start()

        def closed_by_server():
            n = 0
            for s in sockets:
                s.setblocking(False)
                try:
                    n += s.recv(1) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    n += 1
            return n
        try:
            # 30 slow connections hold all 8 core workers. /healthz must be answered while they
            # are all still open (before the 3 s header timeout frees any worker): no wall clock.
            conn = self.server.connect(timeout=30)
            conn.request("GET", "/healthz")
            self.assertEqual(conn.getresponse().status, 200)
            conn.close()
            self.assertEqual(closed_by_server(), 0, "health was answered only after slow clients were cut off")
            # Past the header timeout every slow connection is closed by the server.
            deadline = time.time() + 30  # a bound for failing, not a measurement
            closed = 0
            while time.time() < deadline and closed < 30:
                closed = closed_by_server()
                time.sleep(0.2)
            self.assertEqual(closed, 30)
            metrics = self.server.request("GET", "/metrics")[1]
            m = re.search(r'fathom_http_connections_closed_total\{reason="header_timeout"\} (\d+)', metrics)
            self.assertGreaterEqual(int(m.group(1)), 30, metrics)
        finally:
            stop.set()
            t.join()
            for s in sockets:
                s.close()
        self.assertEqual(self.server.ok("GET", "/healthz"), {"status": "healthy"})

    def test_connections_per_client_are_bounded(self):
        sockets = [socket.create_connection(("127.0.0.1", self.server.port)) for _ in range(50)]
        try:
            # Idle (header-phase) connections past the allowance of 40 are closed first: the
            # newest 10, before the header timeout closes the other 40.
            deadline = time.time() + 30  # a bound for failing, not a measurement
            closed = []
            while time.time() < deadline and len(closed) < 10:
                closed = []
                for i, s in enumerate(sockets):
                    s.setblocking(False)
                    try:
                        if s.recv(1) == b"":
                            closed.append(i)
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed.append(i)
                time.sleep(0.05)
            self.assertEqual(len(closed), 10, closed)
            self.assertEqual(closed, list(range(40, 50)))
        finally:
            for s in sockets:
                s.close()


class UnauthenticatedBodyTest(ServerTestCase):
    """Regression (issue 9.6): bodies were read before the key was checked (16 x 60 MB without a
    key took the server to 1.47 GB)."""
    server_env = {"FATHOM_API_KEY": "rw-secret-key"}
    server_args = ("--max-body", str(64 << 20))

    def test_key_is_checked_before_the_body_is_read(self):
        before = rss_kib(self.server.proc.pid)
        for i in range(16):
            s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
            try:
                s.sendall(b"PUT /collections/x/points HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 60000000\r\n\r\n" + b"[" * 65536)
                # The 401 comes while 59.9 MB are still unsent: the server did not wait for them.
                reply = b""
                while b"\r\n\r\n" not in reply:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                self.assertTrue(reply.startswith(b"HTTP/1.1 401"), reply[:200])
                self.assertIn(b"Connection: close", reply)
                # The rest is never read: the server closed the connection.
                with self.assertRaises(OSError):
                    for _ in range(60000000 // 65536 + 1):
                        s.sendall(b"[" * 65536)
            finally:
                s.close()
        self.assertLess(rss_kib(self.server.proc.pid) - before, 100 * 1024)
        self.assertEqual(self.server.ok("GET", "/healthz"), {"status": "healthy"})


class BrowserOriginTest(ServerTestCase):
    """Regression (issue 9.10): a keyless loopback server took text/plain POSTs from any web page
    (CSRF) and requests for any Host name (DNS rebinding)."""

    def test_keyless_server_refuses_browser_attacks(self):
        self.server.ok("PUT", "/collections/web", {"vectors": {"size": 2, "distance": "l2", "index": "Flat"}})
        body = json.dumps({"points": [{"id": 1, "vector": [1, 2]}]}).encode()
        status, doc, _ = self.server.request("PUT", "/collections/web/points", body, {"Content-Type": "text/plain"})
        self.assertEqual(status, 415, doc)
        self.assertIn("application/json", doc["status"]["error"])
        status, doc, _ = self.server.request("PUT", "/collections/web/points", body,
                                             {"Origin": "http://evil.example"})
        self.assertEqual(status, 403, doc)
        status, doc, _ = self.server.request("GET", "/collections", None, {"Host": "evil.example:6333"})
        self.assertEqual(status, 403, doc)
        self.assertIn("DNS rebinding", doc["status"]["error"])
        self.assertEqual(self.server.ok("POST", "/collections/web/points/count", {})["count"], 0)
        # Same-machine pages and plain clients still work.
        self.server.ok("PUT", "/collections/web/points", json.loads(body), {"Origin": "http://localhost:8080"})
        self.server.ok("PUT", "/collections/web/points", json.loads(body), {"Host": "localhost:%d" % self.server.port})
        self.assertEqual(self.server.ok("POST", "/collections/web/points/count", {})["count"], 1)


class DiskFullTest(unittest.TestCase):
    """Regression (issue 9.2): on a full disk the second failing write aborted the server (a
    RocksDB assertion). Runs on a 16 MiB tmpfs, so it needs root (CI runs as root)."""

    def test_disk_full_is_507_and_recovers(self):
        mnt = tempfile.mkdtemp(prefix="fathom_small_fs_")
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt],
                                               capture_output=True).returncode != 0:
            os.rmdir(mnt)
            self.skipTest("mounting a small tmpfs needs root")
        try:
            server = Server(os.path.join(mnt, "data"), ("--min-free-disk", "2"), durability="fsync")
            try:
                server.ok("PUT", "/collections/c", {"vectors": {"size": 64, "distance": "L2"}})
                st = os.statvfs(mnt)
                with open(os.path.join(mnt, "filler"), "wb") as f:
                    f.write(b"\0" * (st.f_bavail * st.f_frsize - 3 * 1024 * 1024))
                acked, errors = [], []
                for b in range(60):
                    pts = [{"id": b * 50 + j, "vector": [float(j)] * 64, "payload": {"pad": "x" * 2000}}
                           for j in range(50)]
                    status, doc, _ = server.request("PUT", "/collections/c/points", {"points": pts})
                    if status == 200:
                        acked += [p["id"] for p in pts]
                    else:
                        errors.append((status, doc["status"]["error"]))
                    self.assertIsNone(server.proc.poll(), "the server died:\n" + server.log_text())
                self.assertTrue(errors)
                self.assertEqual({s for s, _ in errors}, {507}, errors[:3])
                self.assertIn("disk full", errors[0][1])
                # Reads go on while the disk is full.
                self.assertEqual(server.ok("POST", "/collections/c/points/count", {})["count"], len(acked))
                os.remove(os.path.join(mnt, "filler"))
                server.ok("PUT", "/collections/c/points", {"points": [{"id": 10 ** 6, "vector": [1.0] * 64}]})
                acked.append(10 ** 6)
                self.assertEqual(server.stop(), 0)
                server = Server(os.path.join(mnt, "data"))
                got = server.ok("POST", "/collections/c/points", {"ids": acked})
                self.assertEqual(len(got), len(acked))
            finally:
                server.stop()
        finally:
            subprocess.run(["umount", mnt])
            os.rmdir(mnt)


def main():
    global SERVER_BINARY
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print(__doc__, file=sys.stderr)
        print("error: pass the path to the fathom-server binary", file=sys.stderr)
        return 2
    SERVER_BINARY = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)


if __name__ == "__main__":
    sys.exit(main())
