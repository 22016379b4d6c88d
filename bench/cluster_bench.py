#!/usr/bin/python3
"""Cluster overhead on one machine: one Fathom node against 3 Fathom nodes on 3 NATS servers
(3 shards x 3 replicas), same data, same client, run one after the other.

    /usr/bin/python3 bench/cluster_bench.py FATHOM_BINARY [--points N (60000)] [--queries N (2000)]
        [--catchup N (20000)] [--log-retain N] [--json OUT] [--keep]

Standard library + numpy only; needs nats-server (env NATS_SERVER, else on PATH, else /usr/sbin).
Data: Fashion-MNIST (Debian dataset-fashion-mnist): the first --points training images as
float32 784-d vectors (sent as their integer pixel values) with payload {"label": L}, the first
--queries test images as queries.

Setup A: `fathom serve --durability buffered` alone. Setup B: 3 clustered nats-servers (JetStream)
and 3 nodes `serve --durability buffered --cluster ... --node-id nI`, collection with shard_number
3 and replication_factor 3 (so every node holds a replica of every shard). A runs fully and is
stopped before B starts. For each: ingest (batches of 500, wait=true, one client; B round-robin
over the nodes) until the count is N (B: and every replica has lag 0); searches one per request
(4 clients) and in batches of 64 (2 clients), QPS and p50/p99 latency (B: requests round-robin
over the nodes); recall@10 of the single searches against numpy brute force; server CPU per query
(utime+stime from /proc, Fathom and nats-server separately). B only: SIGKILL n3, upsert --catchup
new points through n1/n2, restart n3 and time its catch-up. With --log-retain N >= 0 (the nodes'
flag; default theirs: every entry kept) the nodes run with --durability fsync instead of buffered
(a replica without fsync holds the log back), and with N below the entries n3 misses the log is
trimmed while n3 is down and n3 catches up by installing its peers' snapshots (counted from its /metrics) instead of
replaying the log.

Prints a markdown table on stdout (progress on stderr, prefixed '#'); --json writes every number.
"""
import argparse
import gzip
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

# The cluster fault test's helpers: free ports below the ephemeral range, polling.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cluster"))
from cluster_test import free_ports, wait_until  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
COLLECTION = "fm"
DIM = 784
BATCH = 500           # points per upsert
K = 10
EF = 64
SEARCH_CLIENTS = 4
BATCH_SEARCH = 64     # searches per batch request
BATCH_CLIENTS = 2
RECALL_QUERIES = 200
WARMUP_QUERIES = 100  # sent once before the timed searches (not measured)
HTTP_TIMEOUT = 300.0
SETTLE_TIMEOUT = 900.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

T0 = time.monotonic()


def log(msg):
    print("# %7.1fs %s" % (time.monotonic() - T0, msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data


def read_idx(path, n):
    """The first n records of a gzipped IDX file as a uint8 array (n, ...)."""
    with gzip.open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        ndim = magic & 0xFF
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        n = min(n, dims[0])
        per = int(np.prod(dims[1:])) if ndim > 1 else 1
        data = np.frombuffer(f.read(n * per), dtype=np.uint8)
    return data.reshape((n,) + tuple(dims[1:]))


def load_data(n_points, n_queries):
    train = read_idx(os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"), n_points).reshape(-1, DIM)
    labels = read_idx(os.path.join(DATA_DIR, "train-labels-idx1-ubyte.gz"), n_points)
    queries = read_idx(os.path.join(DATA_DIR, "t10k-images-idx3-ubyte.gz"), n_queries).reshape(-1, DIM)
    return train, labels, queries


def upsert_bodies(vectors, labels, first_id):
    """JSON bodies of batches of BATCH points (pixel values are integers: exact in float32)."""
    bodies = []
    for start in range(0, len(vectors), BATCH):
        points = [{"id": first_id + start + i, "vector": v, "payload": {"label": int(l)}}
                  for i, (v, l) in enumerate(zip(vectors[start:start + BATCH].tolist(),
                                                 labels[start:start + BATCH]))]
        bodies.append(json.dumps({"points": points}, separators=(",", ":")).encode())
    return bodies


def search_spec(q):
    return {"vector": q, "limit": K, "params": {"hnsw_ef": EF}}


def exact_topk(train, queries):
    """(ids, distances) of the exact K nearest (L2) of each query, by brute force."""
    x = train.astype(np.float64)
    q = queries.astype(np.float64)
    d2 = (q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :]
    ids = np.argsort(d2, axis=1, kind="stable")[:, :K]
    return ids, np.take_along_axis(d2, ids, axis=1), d2


def recall_at_k(hit_ids, d2, kth):
    """Mean share of the K returned ids whose exact distance is within the K-th exact distance
    (ids tied with the K-th neighbour count as correct)."""
    total = 0
    for i, ids in enumerate(hit_ids):
        ok = [pid for pid in ids[:K] if 0 <= pid < d2.shape[1] and d2[i, pid] <= kth[i] * (1 + 1e-9) + 1e-6]
        total += len(set(ok))
    return total / (K * len(hit_ids))


# ---------------------------------------------------------------------------------------------
# HTTP


class Client:
    """One keep-alive connection to 127.0.0.1:port, reopened (and the request sent again) when the
    server closed it; every request here is idempotent."""

    def __init__(self, port, timeout=HTTP_TIMEOUT):
        self.port, self.timeout, self.conn = port, timeout, None

    def call(self, method, path, body=None):
        """-> (HTTP status, parsed JSON or text); status None when no answer came."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                raw = resp.read()
                try:
                    return resp.status, json.loads(raw)
                except ValueError:
                    return resp.status, raw.decode("utf-8", "replace")
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt == 1:
                    return None, repr(e)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def request(port, method, path, body=None, timeout=10.0):
    """One request on a fresh connection."""
    c = Client(port, timeout)
    try:
        return c.call(method, path, body)
    finally:
        c.close()


def run_parallel(items, threads):
    """Send items [(port, method, path, body bytes)] from `threads` client threads, each taking
    the next item. Returns (wall seconds, latencies in s, answers, failures) with latencies and
    answers in item order."""
    lat = [0.0] * len(items)
    answers = [None] * len(items)
    failures = []
    next_item = iter(range(len(items)))
    lock = threading.Lock()

    def work():
        clients = {}
        try:
            while True:
                with lock:
                    i = next(next_item, None)
                if i is None:
                    return
                port, method, path, body = items[i]
                c = clients.setdefault(port, Client(port))
                t = time.perf_counter()
                status, answer = c.call(method, path, body)
                lat[i] = time.perf_counter() - t
                if status != 200:
                    with lock:
                        failures.append("item %d port %d: %s %s" % (i, port, status, str(answer)[:300]))
                answers[i] = answer if status == 200 else None
        finally:
            for c in clients.values():
                c.close()

    ts = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0, lat, answers, failures


# ---------------------------------------------------------------------------------------------
# Processes


class Proc:
    """A server process, restartable with the same argv; output appended to log_path."""

    def __init__(self, name, argv, log_path, port=None):
        self.name, self.argv, self.log_path, self.port = name, argv, log_path, port
        self.popen = None

    def start(self):
        with open(self.log_path, "ab") as f:
            f.write(("--- %.1fs start: %s\n" % (time.monotonic() - T0, " ".join(self.argv))).encode())
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=f,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def kill(self):
        if self.running():
            os.kill(self.popen.pid, signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()

    def stop(self, grace=30):
        """SIGTERM (a clean close), SIGKILL after `grace` s."""
        if not self.running():
            return
        os.kill(self.popen.pid, signal.SIGCONT)
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            log("%s did not stop within %d s of SIGTERM: SIGKILL" % (self.name, grace))
            self.kill()

    def cpu_seconds(self):
        """utime + stime of the running process (all its threads), in seconds."""
        if not self.running():
            return 0.0
        try:
            with open("/proc/%d/stat" % self.popen.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLK_TCK   # fields 14 and 15 of stat

    def tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError as e:
            return "(no log: %s)" % e


class BenchError(Exception):
    pass


def wait_healthy(node, timeout=60):
    ok = wait_until(lambda: not node.running() or request(node.port, "GET", "/healthz", timeout=2)[0] == 200,
                    timeout)
    if not node.running():
        raise BenchError("%s exited with status %s while starting:\n%s" % (node.name, node.popen.returncode,
                                                                          node.tail()))
    if not ok:
        raise BenchError("%s did not answer /healthz within %d s" % (node.name, timeout))


def check_alive(procs):
    for p in procs:
        if p.popen is not None and not p.running():
            raise BenchError("%s exited by itself with status %s; its log ends:\n%s" % (
                p.name, p.popen.returncode, p.tail()))


class Setup:
    """The processes of one setup: Fathom nodes (each with .port) and nats-servers."""

    def __init__(self, name, nodes, nats=()):
        self.name, self.nodes, self.nats = name, list(nodes), list(nats)

    def cpu(self):
        return (sum(p.cpu_seconds() for p in self.nodes), sum(p.cpu_seconds() for p in self.nats))

    def stop(self):
        for p in self.nodes:      # Fathom first, while NATS still answers
            p.stop()
        for p in self.nats:
            p.stop(10)


def single_setup(binary, tmp):
    port = free_ports(1)[0]
    node = Proc("single", [binary, "serve", "--data", os.path.join(tmp, "single"), "--port", str(port),
                           "--durability", "buffered"], os.path.join(tmp, "single.log"), port)
    return Setup("single", [node])


def cluster_setup(binary, tmp, node_args=(), durability="buffered"):
    nats_bin = os.environ.get("NATS_SERVER") or shutil.which("nats-server") or "/usr/sbin/nats-server"
    ports = free_ports(12)
    client_ports, route_ports, monitor_ports, rest_ports = ports[0:3], ports[3:6], ports[6:9], ports[9:12]
    nats = []
    for i in range(3):
        name = "nats%d" % (i + 1)
        routes = ",".join("nats://127.0.0.1:%d" % route_ports[j] for j in range(3) if j != i)
        argv = [nats_bin, "-a", "127.0.0.1", "-p", str(client_ports[i]), "-js", "-sd", os.path.join(tmp, name),
                "-n", name, "--cluster", "nats://127.0.0.1:%d" % route_ports[i], "--cluster_name", "fathom",
                "--routes", routes, "-m", str(monitor_ports[i])]
        p = Proc(name, argv, os.path.join(tmp, name + ".log"))
        p.monitor_port = monitor_ports[i]
        nats.append(p)
    urls = ",".join("nats://127.0.0.1:%d" % p for p in client_ports)
    nodes = [Proc("n%d" % (i + 1), [binary, "serve", "--data", os.path.join(tmp, "n%d" % (i + 1)), "--port",
                                    str(rest_ports[i]), "--durability", durability, "--cluster", urls,
                                    "--node-id", "n%d" % (i + 1)] + list(node_args),
                  os.path.join(tmp, "n%d.log" % (i + 1)), rest_ports[i]) for i in range(3)]
    return Setup("cluster", nodes, nats)


def nats_healthy(nats):
    """True when one server says it is the JetStream meta leader and sees the others current."""
    for s in nats:
        status, body = request(s.monitor_port, "GET", "/jsz", timeout=1)
        meta = body.get("meta_cluster") if status == 200 and isinstance(body, dict) else None
        if meta and meta.get("leader") == s.name:
            peers = meta.get("replicas") or []
            return len(peers) == len(nats) - 1 and all(p.get("current") for p in peers)
    return False


def start(setup, create_body):
    """Start every process of the setup and create the collection through the first node."""
    if setup.nats:
        for s in setup.nats:
            s.start()
        if not wait_until(lambda: nats_healthy(setup.nats), 30):
            raise BenchError("NATS: no JetStream meta leader with all servers current within 30 s")
        log("NATS up")
    for n in setup.nodes:
        n.start()
    for n in setup.nodes:
        wait_healthy(n)
    log("%s: Fathom up on ports %s" % (setup.name, [n.port for n in setup.nodes]))
    deadline = time.monotonic() + 30
    while True:
        status, answer = request(setup.nodes[0].port, "PUT", "/collections/" + COLLECTION, create_body)
        if status == 200:
            break
        if time.monotonic() > deadline or (status is not None and status < 500):
            raise BenchError("PUT /collections/%s answered %s: %s" % (COLLECTION, status, answer))
        time.sleep(0.5)
    for n in setup.nodes:
        if not wait_until(lambda: request(n.port, "GET", "/collections/" + COLLECTION, timeout=2)[0] == 200, 30):
            raise BenchError("%s does not know collection %s after 30 s" % (n.name, COLLECTION))


# ---------------------------------------------------------------------------------------------
# Cluster status


def cluster_status(port):
    status, body = request(port, "GET", "/cluster", timeout=10)
    if status != 200 or not isinstance(body, dict):
        return None
    return body.get("result", body)


def cluster_status_now(port, timeout=30):
    """GET /cluster, retried until it answers."""
    st = wait_until(lambda: cluster_status(port), timeout, 0.5)
    if st is None:
        raise BenchError("GET /cluster on port %d did not answer within %d s" % (port, timeout))
    return st


def replicas(status, node=None):
    """[(shard dict, replica dict)] of collection fm in a GET /cluster answer (of one node)."""
    out = []
    for c in status.get("collections", []):
        if c.get("name") != COLLECTION:
            continue
        for s in c.get("shards", []):
            for r in s.get("replicas", []):
                if node is None or r.get("node") == node:
                    out.append((s, r))
    return out


def node_alive(status, node):
    return any(n.get("id") == node and n.get("alive") for n in status.get("nodes", []))


def all_caught_up(status, node=None):
    reps = replicas(status, node)
    return bool(reps) and all(r.get("alive") and r.get("ready") and r.get("lag") == 0 for _, r in reps)


def count(port):
    status, body = request(port, "POST", "/collections/%s/points/count" % COLLECTION, {"exact": True}, timeout=30)
    if status == 200 and isinstance(body, dict):
        return body["result"]["count"]
    return None


# ---------------------------------------------------------------------------------------------
# Measurements


def ingest(setup, bodies, ports, n_total, problems):
    """Upsert every body (one client, round-robin over ports), then wait until the count is
    n_total (cluster: and every replica has lag 0). Returns the numbers."""
    cpu0 = setup.cpu()
    t0 = time.perf_counter()
    clients = {p: Client(p) for p in ports}
    not_completed = 0
    for i, body in enumerate(bodies):
        port = ports[i % len(ports)]
        for attempt in range(3):
            status, answer = clients[port].call("PUT", "/collections/%s/points?wait=true" % COLLECTION, body)
            if status == 200:
                break
            problems.append("%s: upsert batch %d via port %d attempt %d answered %s: %s" % (
                setup.name, i, port, attempt + 1, status, str(answer)[:300]))
            time.sleep(1)
        else:
            raise BenchError("upsert batch %d failed 3 times" % i)
        if answer.get("result", {}).get("status") != "completed":
            not_completed += 1
        if (i + 1) % max(1, len(bodies) // 10) == 0:
            log("%s: ingest %d/%d batches, %.0f points/s" % (
                setup.name, i + 1, len(bodies), (i + 1) * BATCH / (time.perf_counter() - t0)))
    t_ingest = time.perf_counter() - t0
    for c in clients.values():
        c.close()
    if not_completed:
        problems.append("%s: %d of %d upserts answered status other than 'completed' (acknowledged: "
                        "not applied within the wait)" % (setup.name, not_completed, len(bodies)))
    # Settle: count on the first node, and in the cluster every replica at lag 0.
    last = {}

    def settled():
        check_alive(setup.nodes + setup.nats)
        last["count"] = count(ports[0])
        if last["count"] != n_total:
            return False
        if setup.nats:
            st = cluster_status(ports[0])
            last["cluster"] = st
            return st is not None and all_caught_up(st)
        return True

    if not wait_until(settled, SETTLE_TIMEOUT, 0.5):
        raise BenchError("%s: not settled within %d s: count %s (want %d), last /cluster %s" % (
            setup.name, SETTLE_TIMEOUT, last.get("count"), n_total, json.dumps(last.get("cluster"))[:2000]))
    t_settle = time.perf_counter() - t0
    cpu1 = setup.cpu()
    n = n_total
    log("%s: ingest %.1f s (%.0f points/s), settled %.1f s after the first upsert" % (
        setup.name, t_ingest, n_total / t_ingest, t_settle))
    return {"ingest_s": t_ingest, "ingest_points_per_s": n_total / t_ingest,
            "settle_s": t_settle - t_ingest, "ingest_settled_points_per_s": n_total / t_settle,
            "not_completed_upserts": not_completed,
            "ingest_cpu_us_per_point_fathom": (cpu1[0] - cpu0[0]) / n * 1e6,
            "ingest_cpu_us_per_point_nats": (cpu1[1] - cpu0[1]) / n * 1e6}


def hit_ids(answer):
    return [h["id"] for h in answer["result"]] if answer else []


def search(setup, queries, ports, d2, kth, problems):
    """Single and batch searches; returns the numbers."""
    ql = queries.tolist()
    single = [json.dumps(search_spec(q), separators=(",", ":")).encode() for q in ql]
    path1 = "/collections/%s/points/search" % COLLECTION
    items1 = [(ports[i % len(ports)], "POST", path1, b) for i, b in enumerate(single)]
    # Warm-up (not measured): the first queries once.
    run_parallel(items1[:WARMUP_QUERIES], SEARCH_CLIENTS)

    check_alive(setup.nodes + setup.nats)
    cpu0 = setup.cpu()
    wall, lat, answers, failures = run_parallel(items1, SEARCH_CLIENTS)
    cpu1 = setup.cpu()
    n = len(items1)
    lat_ms = np.array(lat) * 1000
    res = {"search1_qps": n / wall, "search1_p50_ms": float(np.percentile(lat_ms, 50)),
           "search1_p99_ms": float(np.percentile(lat_ms, 99)), "search1_failures": len(failures),
           "search_cpu_us_per_query_fathom": (cpu1[0] - cpu0[0]) / n * 1e6,
           "search_cpu_us_per_query_nats": (cpu1[1] - cpu0[1]) / n * 1e6}
    problems.extend("%s: search: %s" % (setup.name, f) for f in failures[:5])
    ids1 = [hit_ids(a) for a in answers]
    short = sum(1 for ids in ids1 if len(ids) != K)
    if short:
        problems.append("%s: %d single searches returned other than %d hits" % (setup.name, short, K))
    nr = min(RECALL_QUERIES, n)
    res["recall_at_10"] = recall_at_k(ids1[:nr], d2[:nr], kth[:nr])
    log("%s: search x1: %.0f QPS, p50 %.2f ms, p99 %.2f ms, recall@10 %.4f, CPU/query Fathom %.0f us "
        "NATS %.0f us" % (setup.name, res["search1_qps"], res["search1_p50_ms"], res["search1_p99_ms"],
                          res["recall_at_10"], res["search_cpu_us_per_query_fathom"],
                          res["search_cpu_us_per_query_nats"]))

    # Batches of 64 searches, 2 clients.
    path64 = "/collections/%s/points/search/batch" % COLLECTION
    items64 = []
    for j, start in enumerate(range(0, len(ql), BATCH_SEARCH)):
        body = json.dumps({"searches": [search_spec(q) for q in ql[start:start + BATCH_SEARCH]]},
                          separators=(",", ":")).encode()
        items64.append((ports[j % len(ports)], "POST", path64, body))
    wall, lat, answers, failures = run_parallel(items64, BATCH_CLIENTS)
    lat_ms = np.array(lat) * 1000
    res.update({"search64_qps": n / wall, "search64_p50_ms": float(np.percentile(lat_ms, 50)),
                "search64_p99_ms": float(np.percentile(lat_ms, 99)), "search64_failures": len(failures)})
    problems.extend("%s: batch search: %s" % (setup.name, f) for f in failures[:5])
    ids64 = [[h["id"] for h in hits] for a in answers if a for hits in a["result"]]
    if len(ids64) == n:
        res["recall_at_10_batch64"] = recall_at_k(ids64[:nr], d2[:nr], kth[:nr])
        res["batch64_same_as_single"] = sum(a == b for a, b in zip(ids1, ids64)) / n
    log("%s: search x64: %.0f QPS, p50 %.1f ms, p99 %.1f ms per request" % (
        setup.name, res["search64_qps"], res["search64_p50_ms"], res["search64_p99_ms"]))
    return res


def idle_cpu(setup, seconds=3.0):
    """Server CPU, in % of one core, while no request is sent (heartbeats, log consumers)."""
    cpu0 = setup.cpu()
    time.sleep(seconds)
    cpu1 = setup.cpu()
    res = {"idle_cpu_pct_fathom": (cpu1[0] - cpu0[0]) / seconds * 100,
           "idle_cpu_pct_nats": (cpu1[1] - cpu0[1]) / seconds * 100}
    log("%s: idle CPU Fathom %.1f%% NATS %.1f%% of a core" % (setup.name, res["idle_cpu_pct_fathom"],
                                                           res["idle_cpu_pct_nats"]))
    return res


def entries(position, per_epoch):
    """Log entries up to a position, epoch << 40 | sequence in the epoch's stream (per_epoch: the
    entries of a full epoch's stream; 0 without --log-retain, where the epoch is always 0)."""
    return (position >> 40) * per_epoch + (position & ((1 << 40) - 1))


def catchup(setup, bodies, n_new, n_total, problems, per_epoch=0):
    """SIGKILL n3, upsert `bodies` through n1/n2, restart n3, time until its replicas have lag 0."""
    n1, n2, n3 = setup.nodes
    before = cluster_status_now(n1.port)
    seq_before = {s["shard"]: s.get("last_seq") for s, _ in replicas(before, "n3")}
    n3.kill()
    log("catch-up: SIGKILL n3; upserting %d points through n1/n2" % n_new)
    t0 = time.perf_counter()
    clients = {n.port: Client(n.port) for n in (n1, n2)}
    for i, body in enumerate(bodies):
        port = (n1, n2)[i % 2].port
        status, answer = clients[port].call("PUT", "/collections/%s/points?wait=true" % COLLECTION, body)
        if status != 200:
            raise BenchError("catch-up upsert %d via port %d answered %s: %s" % (i, port, status, answer))
    t_down_ingest = time.perf_counter() - t0
    for c in clients.values():
        c.close()
    after = cluster_status_now(n1.port)
    seq_after = {s["shard"]: s.get("last_seq") for s, _ in replicas(after, "n3")}
    missed = sum(entries(seq_after[s], per_epoch) - entries(seq_before[s], per_epoch) for s in seq_after
                 if seq_after[s] is not None and seq_before.get(s) is not None)

    n3.start()
    t_restart = time.perf_counter()
    first_alive = None
    lag_at_alive = None
    polls = 0
    last = None
    deadline = t_restart + SETTLE_TIMEOUT
    while time.perf_counter() < deadline:
        check_alive(setup.nodes + setup.nats)
        st = cluster_status(n1.port)
        polls += 1
        if st is not None:
            last = st
            if first_alive is None and node_alive(st, "n3"):
                first_alive = time.perf_counter() - t_restart
                # Lag of n3's replicas; a replica not open yet has no lag: then its log's growth.
                lag_at_alive = 0
                for s, r in replicas(st, "n3"):
                    lag_at_alive += r["lag"] if "lag" in r else (entries(s.get("last_seq", 0), per_epoch)
                                                                 - entries(seq_before.get(s["shard"], 0), per_epoch))
            if first_alive is not None and all_caught_up(st, "n3"):
                break
        time.sleep(0.2)
    else:
        raise BenchError("catch-up: n3 not caught up within %d s; last /cluster %s" % (
            SETTLE_TIMEOUT, json.dumps(last)[:2000]))
    t_catch = time.perf_counter() - t_restart
    installs = 0
    try:
        conn = http.client.HTTPConnection("127.0.0.1", n3.port, timeout=10)
        conn.request("GET", "/metrics")
        for line in conn.getresponse().read().decode().splitlines():
            if line.startswith("fathom_cluster_snapshots_installed_total "):
                installs = int(float(line.split()[1]))
        conn.close()
    except OSError:
        pass
    res = {"catchup_snapshot_installs": installs,"catchup_points": n_new,
           "catchup_ingest_points_per_s_n3_down": n_new / t_down_ingest,
           "catchup_s": t_catch, "catchup_n3_alive_after_s": first_alive,
           "catchup_entries_lag_at_alive": lag_at_alive, "catchup_entries_missed": missed,
           "catchup_entries_per_s": lag_at_alive / t_catch if t_catch > 0 else None,
           "catchup_points_per_s": n_new / t_catch, "catchup_polls": polls}
    log("catch-up: n3 answered after %.2f s, caught up %.2f s after restart (lag at first alive %s entries, "
        "%d missed, %d snapshots installed)" % (first_alive, t_catch, lag_at_alive, missed, installs))
    # Every node must count every point now.
    for n in setup.nodes:
        got = wait_until(lambda: count(n.port) == n_total, 30, 0.5)
        if not got:
            problems.append("after catch-up: count via %s is %s, want %d" % (n.name, count(n.port), n_total))
    return res


def run_setup(setup, create_body, bodies, queries, d2, kth, n_points, catchup_bodies, n_catchup, problems,
              searches=True, per_epoch=0):
    try:
        start(setup, create_body)
        ports = [n.port for n in setup.nodes]
        res = ingest(setup, bodies, ports, n_points, problems)
        if searches:
            res.update(search(setup, queries, ports, d2, kth, problems))
            res.update(idle_cpu(setup))
        if catchup_bodies:
            res.update(catchup(setup, catchup_bodies, n_catchup, n_points + n_catchup, problems, per_epoch))
        check_alive(setup.nodes + setup.nats)
        return res
    finally:
        setup.stop()


# ---------------------------------------------------------------------------------------------
# Report

ROWS = [  # (key, label, format); NO_RATIO: rows where a ratio means nothing (near 0 on one node)
    ("ingest_points_per_s", "ingest, points/s (batches of %d, wait=true, 1 client)" % BATCH, "{:,.0f}"),
    ("settle_s", "settle after the last upsert, s (count = N; cluster: every lag 0)", "{:.2f}"),
    ("ingest_cpu_us_per_point_fathom", "ingest CPU per point, Fathom, us", "{:,.0f}"),
    ("ingest_cpu_us_per_point_nats", "ingest CPU per point, NATS, us", "{:,.0f}"),
    ("search1_qps", "search x1, QPS (%d clients)" % SEARCH_CLIENTS, "{:,.0f}"),
    ("search1_p50_ms", "search x1, p50 ms", "{:.2f}"),
    ("search1_p99_ms", "search x1, p99 ms", "{:.2f}"),
    ("search64_qps", "search batch %d, queries/s (%d clients)" % (BATCH_SEARCH, BATCH_CLIENTS), "{:,.0f}"),
    ("search64_p50_ms", "search batch %d, p50 ms per request" % BATCH_SEARCH, "{:.1f}"),
    ("search64_p99_ms", "search batch %d, p99 ms per request" % BATCH_SEARCH, "{:.1f}"),
    ("recall_at_10", "recall@10 (search x1, ef %d, first %d queries)" % (EF, RECALL_QUERIES), "{:.4f}"),
    ("search_cpu_us_per_query_fathom", "CPU per query (search x1), Fathom, us", "{:,.0f}"),
    ("search_cpu_us_per_query_nats", "CPU per query (search x1), NATS, us", "{:,.0f}"),
    ("idle_cpu_pct_fathom", "idle CPU (3 s, no requests), Fathom, % of a core", "{:.1f}"),
    ("idle_cpu_pct_nats", "idle CPU (3 s, no requests), NATS, % of a core", "{:.1f}"),
]
NO_RATIO = ("settle_s", "ingest_cpu_us_per_point_nats", "search_cpu_us_per_query_nats", "idle_cpu_pct_fathom",
            "idle_cpu_pct_nats")


def table(a, b):
    lines = ["| metric | single node | cluster 3x3 | ratio |", "|---|---|---|---|"]
    for key, label, fmt in ROWS:
        va, vb = a.get(key), b.get(key)
        fa = fmt.format(va) if va is not None else "-"
        fb = fmt.format(vb) if vb is not None else "-"
        ratio = "%.2f" % (vb / va) if va and vb is not None and key not in NO_RATIO else "-"
        lines.append("| %s | %s | %s | %s |" % (label, fa, fb, ratio))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fathom_binary")
    ap.add_argument("--points", type=int, default=60000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--catchup", type=int, default=20000)
    ap.add_argument("--log-retain", type=int, default=None,
                    help="the cluster nodes' --log-retain (below the entries n3 misses: catch-up by snapshot)")
    ap.add_argument("--catchup-only", action="store_true",
                    help="cluster only: ingest, then the catch-up (no single node, no searches)")
    ap.add_argument("--json", help="write every number to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    args = ap.parse_args()
    binary = os.path.abspath(args.fathom_binary)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # unwind through the finally blocks

    train, labels, queries = load_data(args.points, args.queries)
    n = len(train)
    log("data: %d points, %d queries (%d-d)" % (n, len(queries), DIM))
    bodies = upsert_bodies(train, labels, 0)
    # Catch-up points: new ids n.., training rows again with +-2 of integer noise.
    rng = np.random.default_rng(7)
    rows = np.arange(args.catchup) % n
    noisy = np.clip(train[rows].astype(np.int16) + rng.integers(-2, 3, (len(rows), DIM)), 0, 255).astype(np.uint8)
    catchup_bodies = upsert_bodies(noisy, labels[rows], n)
    nr = min(RECALL_QUERIES, len(queries))
    _, kth_d, d2 = exact_topk(train, queries[:nr])
    kth = kth_d[:, -1]
    log("exact top-%d of %d queries computed" % (K, nr))

    problems = []
    tmp = tempfile.mkdtemp(prefix="fathom-cluster-bench-")
    log("directory %s" % tmp)
    results = {}
    try:
        if not args.catchup_only:
            single = single_setup(binary, tmp)
            results["single"] = run_setup(single, {"vectors": {"size": DIM, "distance": "Euclid"}},
                                          bodies, queries, d2, kth, n, None, 0, problems)
        # Entries per epoch stream as the nodes make them (0: one stream, no trimming). A replica
        # that applies without fsync holds the log back, so a trimmed log needs fsync.
        per_epoch = max(args.log_retain, 1) if args.log_retain is not None and args.log_retain >= 0 else 0
        cluster = cluster_setup(binary, tmp, [] if args.log_retain is None else ["--log-retain", str(args.log_retain)],
                                "fsync" if per_epoch else "buffered")
        results["cluster"] = run_setup(cluster, {"vectors": {"size": DIM, "distance": "Euclid"},
                                                 "shard_number": 3, "replication_factor": 3},
                                       bodies, queries, d2, kth, n, catchup_bodies, args.catchup, problems,
                                       searches=not args.catchup_only, per_epoch=per_epoch)
    except BenchError as e:
        print("cluster-bench: error: %s" % e, file=sys.stderr)
        for p in problems:
            print("problem: %s" % p, file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    a, b = results.get("single"), results["cluster"]
    if a is not None:
        print("Fashion-MNIST %d x %d, %d queries, k=%d, ef=%d; %d CPU cores, everything on this machine\n" % (
            n, DIM, len(queries), K, EF, os.cpu_count()))
        print(table(a, b))
        print()
    print("catch-up: n3 SIGKILLed, %d points upserted through n1/n2 (%.0f points/s), n3 restarted: answered "
          "after %.2f s, every replica of n3 at lag 0 after %.2f s; %d log entries behind when first seen "
          "alive (%d missed in all) -> %.1f entries/s, %.0f points/s; %d snapshots installed" % (
              b["catchup_points"], b["catchup_ingest_points_per_s_n3_down"], b["catchup_n3_alive_after_s"],
              b["catchup_s"], b["catchup_entries_lag_at_alive"], b["catchup_entries_missed"],
              b["catchup_entries_per_s"], b["catchup_points_per_s"], b["catchup_snapshot_installs"]))
    for p in problems:
        print("problem: %s" % p)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"params": {"points": n, "queries": len(queries), "catchup": args.catchup, "dim": DIM,
                                  "k": K, "ef": EF, "batch": BATCH, "search_clients": SEARCH_CLIENTS,
                                  "batch_search": BATCH_SEARCH, "batch_clients": BATCH_CLIENTS,
                                  "recall_queries": nr, "cpus": os.cpu_count(), "machine": platform.platform()},
                       "single": a, "cluster": b, "problems": problems}, f, indent=2)
        log("wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
