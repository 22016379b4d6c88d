#!/usr/bin/env python3
"""Jepsen-style fault-injection test of Fathom's cluster mode (3 Fathom nodes on 3 NATS servers).

    cluster_test.py FATHOM_BINARY [--seconds N (default 100) | --minutes N] [--seed S] [--log-retain N] [--keep]
    cluster_test.py [FATHOM_BINARY] --nats-only

Standard library only; needs nats-server (env NATS_SERVER, else on PATH, else /usr/sbin).
Everything runs on free loopback ports (below the ephemeral range, so that restarted servers get
theirs back) in a temporary directory, removed at the end unless --keep:

 1. start 3 nats-servers clustered with JetStream, wait for a meta leader; start 3 Fathom nodes
    (`serve --data D --port P --cluster URLS --node-id nI`), wait for /healthz; create collection
    "jepsen" (8-dim Euclid, 3 shards, replication factor 3) through node 1;
 2. for the duration, 4 workers upsert (70%) or delete (30%) random ids of their own range through
    random nodes with ?wait=false, recording every op and whether it was acknowledged (HTTP 200);
    a nemesis meanwhile SIGKILLs and restarts Fathom nodes (some for 10-18 s) and NATS servers (at most one NATS
    server down at a time) and SIGSTOPs/SIGCONTs Fathom nodes, about one fault every 3 s;
 3. heal: stop both, resume and restart everything, wait until GET /cluster on node 1 shows every
    replica alive with lag 0;
 4. check every replica's contents (read through /cluster/local) against the histories, the
    replicas of each shard against each other, and exact search on every node against brute force.

With --log-retain N the collection's shards are logged in streams of N entries and old ones are
deleted (docs/distributed.md), so a node away for a while comes back behind the start of the log
and installs a peer's snapshot under the faults.

It prints one line `cluster-test: nodes=3 nats=3 kills=N pauses=N acked=N lost=N resurrected=N
diverged=N search_mismatch=N snapshot_installs=N nats_exits=N` (a setup failure prints `cluster-test: error: ...` instead) and exits
0 only when lost, resurrected, diverged and search_mismatch are 0, something was acknowledged, the
cluster healed, no Fathom process exited by itself, and (runs of 100 s or more) kills >= 20.
The final state allowed for an id is the effect of its last acknowledged op or of any
unacknowledged op (which may take effect at any time after it was sent); an id with no
acknowledged op may also be absent. A wrong state counts as `resurrected` when the last
acknowledged op was a delete, else as `lost`. --nats-only checks the NATS part alone: start the
cluster, kill the meta leader, see a new one elected within 10 s, restart the killed server, see
it rejoin, print `nats-cluster: ok`.
"""
import argparse
import http.client
import json
import math
import os
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
import urllib.parse
from dataclasses import dataclass

COLLECTION = "jepsen"
DIM = 8
SHARDS = 3
REPLICATION = 3
WORKERS = 4
IDS_PER_WORKER = 500
ID_STRIDE = 100000          # worker w owns ids w*ID_STRIDE + 0..IDS_PER_WORKER-1
UPSERT_SHARE = 0.7
HTTP_TIMEOUT = 10.0
NEMESIS_INTERVAL = 3.0      # mean seconds between faults
KILL_RATE = 0.25            # kills per second the nemesis keeps up with
LONG_OUTAGE_SHARE = 0.25    # Fathom kills that keep the node down 10-18 s instead of 1-3 s
MIN_KILLS = 20              # required for runs of at least MIN_KILLS_SECONDS
MIN_KILLS_SECONDS = 100
HEAL_TIMEOUT = 90.0
SEARCH_QUERIES = 20
SEARCH_LIMIT = 10

T0 = time.monotonic()


def log(msg):
    """Progress and nemesis events; '#' keeps them apart from the summary line."""
    print("# %6.1fs %s" % (time.monotonic() - T0, msg), flush=True)


def f32(x):
    """x rounded to float32, as the server stores it."""
    return struct.unpack("f", struct.pack("f", x))[0]


def random_vector(rng):
    # k/1024 with |k| <= 2^14 is exact in float32, so stored vectors compare exactly.
    return tuple(rng.randint(-16384, 16384) / 1024 for _ in range(DIM))


def free_ports(n):
    """n distinct loopback ports that are free now, taken below the kernel's ephemeral range when
    it leaves room: a server restarted by the nemesis must get its port back, and a port of the
    ephemeral range may meanwhile be the local end of one of the workers' connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 0
    candidates = list(range(10000, ephemeral_low))
    random.SystemRandom().shuffle(candidates)
    socks = []

    def take(port):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            socks.append(s)
        except OSError:
            s.close()

    try:
        for port in candidates:
            if len(socks) == n:
                break
            take(port)
        while len(socks) < n:   # no room below the ephemeral range: let the kernel pick
            take(0)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def request(port, method, path, body=None, timeout=HTTP_TIMEOUT):
    """One HTTP request on a fresh connection -> (status, parsed JSON or text); status is None
    when no answer came (refused, reset, timed out)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return None, repr(e)
    finally:
        conn.close()


def wait_until(predicate, timeout, interval=0.2):
    """predicate()'s first truthy value within timeout seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value or None
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Processes


class Proc:
    """One server process, restartable with the same arguments; output appended to a log."""

    def __init__(self, name, argv, log_path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.popen = None
        self.state = "down"   # what the nemesis did to it: up, down (killed) or paused

    def start(self):
        with open(self.log_path, "ab") as f:
            f.write(("--- %.1fs start: %s\n" % (time.monotonic() - T0, " ".join(self.argv))).encode())
            # A session of its own: a Ctrl-C of the test does not reach it; cleanup() stops it.
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=f,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.state = "up"

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def send(self, sig):
        if self.running():
            os.kill(self.popen.pid, sig)

    def kill(self):
        """SIGKILL and reap."""
        self.send(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()
        self.state = "down"

    def stop(self):
        """SIGTERM (after SIGCONT), SIGKILL after 3 s."""
        if not self.running():
            return
        self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            self.popen.wait(3)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(no log: %s)" % e
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    """3 nats-servers and 3 Fathom nodes on free ports under dir_."""

    def __init__(self, fathom_binary, dir_, node_args=()):
        self.dir = dir_
        nats_bin = os.environ.get("NATS_SERVER") or shutil.which("nats-server") or "/usr/sbin/nats-server"
        ports = free_ports(12)
        self.nats_ports, cluster_ports = ports[0:3], ports[3:6]
        self.monitor_ports, self.rest_ports = ports[6:9], ports[9:12]
        self.nats = []
        for i in range(3):
            routes = ",".join("nats://127.0.0.1:%d" % cluster_ports[j] for j in range(3) if j != i)
            name = "nats%d" % (i + 1)
            argv = [nats_bin, "-a", "127.0.0.1", "-p", str(self.nats_ports[i]), "-js",
                    "-sd", os.path.join(dir_, name), "-n", name,
                    "--cluster", "nats://127.0.0.1:%d" % cluster_ports[i], "--cluster_name", "fathom",
                    "--routes", routes, "-m", str(self.monitor_ports[i])]
            proc = Proc(name, argv, os.path.join(dir_, name + ".log"))
            proc.monitor_port = self.monitor_ports[i]
            self.nats.append(proc)
        urls = ",".join("nats://127.0.0.1:%d" % p for p in self.nats_ports)
        self.nodes = []
        for i in range(3):
            name = "n%d" % (i + 1)
            argv = [fathom_binary, "serve", "--data", os.path.join(dir_, name), "--port",
                    str(self.rest_ports[i]), "--cluster", urls, "--node-id", name] + list(node_args)
            proc = Proc(name, argv, os.path.join(dir_, name + ".log"))
            proc.port = self.rest_ports[i]
            self.nodes.append(proc)

    def all(self):
        return self.nats + self.nodes

    def meta_leader(self):
        """(name, meta_cluster) of the NATS server that says it is the JetStream meta leader
        itself, else (None, None). A follower names a dead leader for seconds after it died, so
        only the leader's own word counts."""
        for s in self.nats:
            if not s.running():
                continue
            status, body = request(s.monitor_port, "GET", "/jsz", timeout=1)
            meta = body.get("meta_cluster") if status == 200 and isinstance(body, dict) else None
            if meta and meta.get("leader") == s.name:
                return s.name, meta
        return None, None

    def nats_healthy(self):
        """The meta leader's name when it exists and sees every other server as current."""
        leader, meta = self.meta_leader()
        if leader is None:
            return None
        peers = meta.get("replicas") or []
        if len(peers) == len(self.nats) - 1 and all(p.get("current") for p in peers):
            return leader
        return None

    def start_nats(self):
        for s in self.nats:
            s.start()
        leader = wait_until(self.nats_healthy, 30)
        if not leader:
            raise SetupError("no JetStream meta leader with all 3 servers current within 30 s",
                             self.nats)
        log("NATS up (client ports %s), meta leader %s" % (self.nats_ports, leader))

    def wait_healthy(self, node, timeout):
        ok = wait_until(lambda: not node.running() or request(node.port, "GET", "/healthz", timeout=2)[0] == 200,
                        timeout)
        if not node.running():
            raise SetupError("%s exited with status %s while starting" % (node.name, node.popen.returncode), [node])
        if not ok:
            raise SetupError("%s did not answer /healthz within %d s" % (node.name, timeout), [node])

    def cleanup(self):
        for p in self.all():
            p.send(signal.SIGCONT)
        for p in self.nodes + self.nats:   # Fathom first, while NATS still answers
            p.stop()


class SetupError(Exception):
    def __init__(self, msg, procs=()):
        super().__init__(msg)
        self.procs = list(procs)


# ---------------------------------------------------------------------------------------------
# Workload


@dataclass
class Op:
    kind: str            # "upsert" or "delete"
    w: int               # worker
    v: int               # per-worker counter: the payload "v" of an upsert
    vector: tuple        # upsert only
    node: str
    t_sent: float
    t_done: float = 0.0
    acked: bool = False
    status: object = None  # HTTP status, or the error when no answer came

    def effect(self):
        """The point state this op leaves: None (absent) or (payload, vector)."""
        if self.kind == "delete":
            return None
        return (json.dumps({"w": self.w, "v": self.v}, sort_keys=True), self.vector)

    def describe(self):
        what = "upsert v=%d" % self.v if self.kind == "upsert" else "delete (op %d)" % self.v
        return "%-18s via %s sent %6.1fs done %6.1fs %s (%s)" % (
            what, self.node, self.t_sent - T0, self.t_done - T0, "ACKED" if self.acked else "unacked", self.status)


def worker(w, cluster, stop, seed, history):
    """Random upserts and deletes of worker w's ids until stop; history: id -> [Op] (this worker's
    ids only, so no lock)."""
    rng = random.Random(seed * 1000 + w)
    counter = 0
    while not stop.is_set():
        node = rng.choice(cluster.nodes)
        pid = w * ID_STRIDE + rng.randrange(IDS_PER_WORKER)
        counter += 1
        if rng.random() < UPSERT_SHARE:
            op = Op("upsert", w, counter, random_vector(rng), node.name, time.monotonic())
            history.setdefault(pid, []).append(op)   # recorded before it is sent
            path = "/collections/%s/points?wait=false" % COLLECTION
            status, body = request(node.port, "PUT", path, {"points": [
                {"id": pid, "vector": list(op.vector), "payload": {"w": w, "v": counter}}]})
        else:
            op = Op("delete", w, counter, None, node.name, time.monotonic())
            history.setdefault(pid, []).append(op)
            path = "/collections/%s/points/delete?wait=false" % COLLECTION
            status, body = request(node.port, "POST", path, {"points": [pid]})
        op.t_done, op.acked = time.monotonic(), status == 200
        op.status = status if status is not None else body
        if not op.acked:
            time.sleep(0.05)   # do not spin on a dead node


class Nemesis:
    """Every ~NEMESIS_INTERVAL s one fault: SIGKILL a Fathom node (restart after 1-3 s, or for a
    quarter of them, one at a time, 10-18 s: long enough to come back behind the trimmed log), SIGKILL a
    NATS server (restart after 2-4 s; one down at most), or SIGSTOP a Fathom node (SIGCONT after
    1-4 s). It forces kills when it falls behind KILL_RATE. Restarts any process that exits by
    itself, counting those exits as crashes."""

    def __init__(self, cluster, rng):
        self.cluster, self.rng = cluster, rng
        self.stop = threading.Event()
        self.fathom_kills = self.nats_kills = self.pauses = 0
        self.crashes = []      # (name, exit status, time) of processes that exited by themselves
        self.pending = []      # (due time, "restart" or "resume", Proc)

    @property
    def kills(self):
        return self.fathom_kills + self.nats_kills

    def run(self):
        t_start = time.monotonic()
        next_at = t_start + self.rng.uniform(1, 3)
        while not self.stop.is_set():
            now = time.monotonic()
            self.reap_crashes()
            for item in sorted(self.pending, key=lambda x: x[0]):
                if item[0] <= now:
                    self.pending.remove(item)
                    self.finish(item[1], item[2])
            if now >= next_at:
                self.act(now - t_start)
                next_at = now + self.rng.uniform(0.5, 1.5) * NEMESIS_INTERVAL
            self.stop.wait(0.1)

    def reap_crashes(self):
        for p in self.cluster.all():
            if p.state in ("up", "paused") and not p.running():
                rc = p.popen.returncode
                self.crashes.append((p.name, rc, time.monotonic()))
                log("nemesis: %s EXITED BY ITSELF (status %s); restarting it" % (p.name, rc))
                self.pending = [x for x in self.pending if x[2] is not p]
                p.start()

    def finish(self, what, p):
        if what == "restart":
            p.start()
            log("nemesis: restart %s" % p.name)
        else:
            p.send(signal.SIGCONT)
            p.state = "up"
            log("nemesis: resume %s" % p.name)

    def act(self, elapsed):
        up_nodes = [p for p in self.cluster.nodes if p.state == "up"]
        nats_all_up = all(p.state == "up" for p in self.cluster.nats)
        behind = self.kills < KILL_RATE * elapsed - 1
        r = self.rng.random()
        if r < 0.2 and not behind:
            choice = "pause"
        else:
            choice = "fathom" if self.rng.random() < 0.5 else "nats"
        if choice == "nats" and not nats_all_up:
            choice = "fathom"
        if choice in ("fathom", "pause") and not up_nodes:
            choice = "nats" if nats_all_up else None
        if choice == "fathom":
            p = self.rng.choice(up_nodes)
            p.kill()
            self.fathom_kills += 1
            # Now and then a long outage (one at a time): past the heartbeat's expiry and a log
            # trim, so the node comes back behind the log and installs a peer's snapshot.
            long_out = any(item[0] - time.monotonic() > 4 for item in self.pending if item[1] == "restart")
            if not long_out and self.rng.random() < LONG_OUTAGE_SHARE:
                delay = self.rng.uniform(10, 18)
            else:
                delay = self.rng.uniform(1, 3)
            self.pending.append((time.monotonic() + delay, "restart", p))
            log("nemesis: SIGKILL %s (restart in %.1fs)" % (p.name, delay))
        elif choice == "nats":
            p = self.rng.choice(self.cluster.nats)
            p.kill()
            self.nats_kills += 1
            delay = self.rng.uniform(2, 4)
            self.pending.append((time.monotonic() + delay, "restart", p))
            log("nemesis: SIGKILL %s (restart in %.1fs)" % (p.name, delay))
        elif choice == "pause":
            p = self.rng.choice(up_nodes)
            p.send(signal.SIGSTOP)
            p.state = "paused"
            self.pauses += 1
            delay = self.rng.uniform(1, 4)
            self.pending.append((time.monotonic() + delay, "resume", p))
            log("nemesis: SIGSTOP %s (SIGCONT in %.1fs)" % (p.name, delay))


# ---------------------------------------------------------------------------------------------
# Heal and check


def replica_entries(status):
    """Every dict in GET /cluster's answer that describes a replica (has "lag" or "alive")."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            if "lag" in x or "alive" in x:
                found.append(x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(status)
    return found


def converged(status):
    entries = replica_entries(status)
    with_lag = [e for e in entries if "lag" in e]
    return (len(with_lag) >= SHARDS * REPLICATION and all(e["lag"] == 0 for e in with_lag)
            and all(e["alive"] is True for e in entries if "alive" in e))


def heal(cluster):
    """Resume and restart everything, then wait for every replica to catch up. Returns
    (converged, last GET /cluster answer)."""
    for p in cluster.all():
        p.send(signal.SIGCONT)
        if p.state == "paused":
            p.state = "up"
    for p in cluster.nats:
        if not p.running():
            p.start()
    if not wait_until(cluster.nats_healthy, 30):
        log("heal: NATS has no meta leader with all servers current after 30 s")
    for p in cluster.nodes:
        if not p.running():
            p.start()
    for p in cluster.nodes:
        cluster.wait_healthy(p, 60)
    last = [None]

    def poll():
        status, body = request(cluster.nodes[0].port, "GET", "/cluster", timeout=5)
        last[0] = (status, body)
        return status == 200 and converged(body)

    ok = bool(wait_until(poll, HEAL_TIMEOUT, 0.5))
    return ok, last[0]


def point_state(point):
    """A scrolled point as (payload JSON, float32 vector) -- comparable with Op.effect()."""
    vector = point.get("vector")
    if isinstance(vector, list):
        vector = tuple(f32(x) for x in vector)
    return (json.dumps(point.get("payload"), sort_keys=True), vector)


def scroll_replica(node, shard, local_name, problems):
    """Every point of one local replica: id -> state. Appends (shard, text) to problems."""
    contents, offset = {}, None
    for _ in range(100000):
        body = {"limit": 1000, "with_payload": True, "with_vector": True}
        if offset is not None:
            body["offset"] = offset
        path = "/cluster/local/%s/scroll" % urllib.parse.quote(local_name, safe="")
        status, answer = request(node.port, "POST", path, body)
        result = answer.get("result") if status == 200 and isinstance(answer, dict) else None
        if not isinstance(result, dict) or not isinstance(result.get("points"), list):
            raise SetupError("%s: scroll of %s answered %s: %s" % (node.name, local_name, status, answer), [node])
        for p in result["points"]:
            if p["id"] in contents:
                problems.append((shard, "%s %s: id %s listed twice by scroll" % (node.name, local_name, p["id"])))
            contents[p["id"]] = point_state(p)
        offset = result.get("next_page_offset")
        if offset is None:
            return contents
    raise SetupError("%s: scroll of %s does not end" % (node.name, local_name), [node])


def read_replicas(cluster):
    """{shard: [(node name, /cluster/local entry, contents)]} for collection jepsen."""
    shards, problems = {}, []
    for node in cluster.nodes:
        status, answer = request(node.port, "GET", "/cluster/local")
        entries = answer.get("result") if status == 200 and isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise SetupError("%s: GET /cluster/local answered %s: %s" % (node.name, status, answer), [node])
        for entry in entries:
            if entry.get("collection") != COLLECTION:
                continue
            contents = scroll_replica(node, entry["shard"], entry["local_name"], problems)
            shards.setdefault(entry["shard"], []).append((node.name, entry, contents))
    return shards, problems


def applied_counts(cluster):
    """{(node, shard): applied} from every node's GET /cluster/local (None for a failed node)."""
    counts = {}
    for node in cluster.nodes:
        status, answer = request(node.port, "GET", "/cluster/local")
        entries = answer.get("result") if status == 200 and isinstance(answer, dict) else None
        for entry in entries if isinstance(entries, list) else [{"shard": None}]:
            counts[(node.name, entry.get("shard"))] = entry.get("applied")
    return counts


def read_replicas_stable(cluster, healed):
    """read_replicas() once no replica applies anything while it reads: the nodes are read one
    after the other, and a late op (an unacknowledged one still on its way) would otherwise look
    like divergence. Up to 5 tries while the applied counts move."""
    for _ in range(5):
        before = applied_counts(cluster)
        shards, problems = read_replicas(cluster)
        if applied_counts(cluster) == before or not healed:
            return shards, problems
        log("replicas applied more ops while being read; reading again")
        time.sleep(2)
        wait_until(lambda: converged(request(cluster.nodes[0].port, "GET", "/cluster", timeout=5)[1]), 30, 0.5)
    return shards, problems


def check_divergence(shards, problems):
    """{shard: reason} for the shards whose replicas disagree or are not 3 on 3 nodes."""
    bad = dict(problems)
    for s in range(SHARDS):
        if s not in shards:
            bad[s] = "no replica at all"
    for s, reps in shards.items():
        nodes = [n for n, _, _ in reps]
        if len(reps) != REPLICATION or len(set(nodes)) != len(nodes):
            bad[s] = "replicas on %s, expected %d on distinct nodes" % (nodes, REPLICATION)
            continue
        for n, entry, contents in reps:
            if entry.get("points") != len(contents):
                bad[s] = "%s reports points=%s but scroll gives %d" % (n, entry.get("points"), len(contents))
        first_node, first_entry, first = reps[0]
        for n, entry, contents in reps[1:]:
            if contents != first:
                ids = sorted(set(first) ^ set(contents)) + sorted(i for i in set(first) & set(contents)
                                                                 if first[i] != contents[i])
                bad[s] = "%s and %s differ (%d vs %d points; ids %s)" % (
                    first_node, n, len(first), len(contents), ids[:10])
            elif entry.get("checksum") != first_entry.get("checksum"):
                bad[s] = "checksums differ: %s %s, %s %s" % (first_node, first_entry.get("checksum"),
                                                               n, entry.get("checksum"))
        applied = {n: e.get("applied") for n, e, _ in reps}
        if s not in bad and len(set(applied.values())) > 1:
            log("note: shard %d replicas agree but report different applied counts %s" % (s, applied))
        errors = {n: e.get("apply_errors") for n, e, _ in reps if e.get("apply_errors")}
        if errors:
            log("note: shard %d replicas report apply_errors %s" % (s, errors))
    return bad


def check_histories(history, shards):
    """(lost ids, resurrected ids, misplaced ids, {id: [(where, state)]}) per the allowed final
    states in the module doc."""
    where = {}  # id -> [(node/shard, state)] over every replica of every shard holding the id
    for s, reps in shards.items():
        holders = set()
        for _, _, contents in reps:
            holders.update(contents)
        for pid in holders:
            for n, _, contents in reps:
                where.setdefault(pid, []).append(("%s/shard%d" % (n, s), contents.get(pid)))
    misplaced = [pid for pid in where if len({w.split("/")[1] for w, _ in where[pid]}) > 1]
    lost, resurrected = [], []
    for pid in sorted(set(history) | set(where)):
        ops = history.get(pid, [])
        acked = [op for op in ops if op.acked]
        allowed = {op.effect() for op in ops if not op.acked}
        if acked:
            allowed.add(acked[-1].effect())
        else:
            allowed.add(None)
        states = [st for _, st in where.get(pid, [("everywhere", None)])]
        if any(st not in allowed for st in states):
            (resurrected if acked and acked[-1].kind == "delete" else lost).append(pid)
    return lost, resurrected, misplaced, where


def check_search(cluster, shards, rng):
    """Exact search on every node against brute-force L2 over the final contents. Returns a list
    of mismatch descriptions."""
    union = {}
    for reps in shards.values():
        for _, _, contents in reps:
            for pid, (_, vector) in contents.items():
                union.setdefault(pid, vector)
    mismatches = []
    for _ in range(SEARCH_QUERIES):
        q = random_vector(rng)
        dist = {pid: math.dist(q, v) for pid, v in union.items() if v is not None}
        expected = sorted(dist, key=lambda pid: (dist[pid], pid))[:SEARCH_LIMIT]
        for node in cluster.nodes:
            status, answer = request(node.port, "POST", "/collections/%s/points/search" % COLLECTION,
                                     {"vector": list(q), "limit": SEARCH_LIMIT, "params": {"exact": True}})
            problem = search_problem(status, answer, expected, dist)
            if problem:
                mismatches.append("%s query %s: %s" % (node.name, list(q), problem))
    return mismatches


def search_problem(status, answer, expected, dist):
    """Why a search answer differs from the brute-force top list, or None. Ids may swap only
    between (near-)equal distances; scores must be the distances, ascending."""
    if status != 200:
        return "status %s: %s" % (status, answer)
    hits = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(hits, list):
        return "no result list: %s" % answer
    got = [h.get("id") for h in hits]
    if len(got) != len(expected):
        return "%d hits, expected %d" % (len(got), len(expected))
    if len(set(got)) != len(got) or any(pid not in dist for pid in got):
        return "ids %s, expected %s" % (got, expected)
    for i, (h, e) in enumerate(zip(hits, expected)):
        tol = 1e-4 * max(1.0, dist[e])
        if abs(dist[h["id"]] - dist[e]) > tol:
            return "ids %s, expected %s" % (got, expected)
        if not isinstance(h.get("score"), (int, float)) or abs(h["score"] - dist[h["id"]]) > tol:
            return "hit %d (id %s) has score %s, distance %.6f" % (i, h["id"], h.get("score"), dist[h["id"]])
    return None


# ---------------------------------------------------------------------------------------------
# Runs


def create_collection(cluster):
    body = {"vectors": {"size": DIM, "distance": "Euclid"}, "shard_number": SHARDS,
            "replication_factor": REPLICATION}
    node = cluster.nodes[0]
    tried = False
    deadline = time.monotonic() + 30
    while True:
        status, answer = request(node.port, "PUT", "/collections/" + COLLECTION, body)
        if status == 200 and isinstance(answer, dict) and answer.get("result") is True \
                and answer.get("status") == "ok":
            break
        # A retry after an attempt that got no answer may find the collection made by that one.
        if tried and status is not None and 400 <= status < 500 and \
                request(node.port, "GET", "/collections/" + COLLECTION)[0] == 200:
            break
        if (status is not None and status < 500) or time.monotonic() > deadline:
            raise SetupError("PUT /collections/%s answered %s: %s" % (COLLECTION, status, answer), [node])
        tried = True
        time.sleep(0.5)
    for n in cluster.nodes:   # every node must know it before the workers use it
        if not wait_until(lambda: request(n.port, "GET", "/collections/" + COLLECTION, timeout=2)[0] == 200, 30):
            raise SetupError("%s does not know collection %s after 30 s" % (n.name, COLLECTION), [n])
    log("collection %s created (%d shards x %d replicas)" % (COLLECTION, SHARDS, REPLICATION))


def print_failure_details(cluster, history, where, offending, bad_shards, mismatches, crashes, heal_info):
    print("--- failure details")
    if heal_info:
        print("cluster did not converge within %d s; last GET /cluster on n1: %s" % (HEAL_TIMEOUT, heal_info))
    for name, rc, t in crashes:
        print("%s exited by itself with status %s at %.1fs" % (name, rc, t - T0))
    for s, reason in sorted(bad_shards.items()):
        print("diverged shard %s: %s" % (s, reason))
    for m in mismatches[:10]:
        print("search mismatch: %s" % m)
    for kind, pid in offending[:10]:
        ops = history.get(pid, [])
        print("%s id %s (%d ops%s):" % (kind, pid, len(ops), ", the last 20" if len(ops) > 20 else ""))
        for op in ops[-20:]:
            print("    " + op.describe())
        for w, st in where.get(pid, [("every replica", None)]):
            print("    %-16s %s" % (w, "absent" if st is None else "payload %s vector %s" % st))
    for p in cluster.nodes + cluster.nats:
        print("--- last lines of %s (%s)" % (p.name, p.log_path))
        print(p.tail(40 if p in cluster.nodes else 10))


def run_test(args, tmp):
    seconds = args.minutes * 60 if args.minutes is not None else args.seconds
    rng = random.Random(args.seed)
    # With --log-retain N, a node away for a while comes back behind the trimmed log and installs
    # a peer's snapshot, so the faults exercise that path too.
    cluster = Cluster(os.path.abspath(args.fathom_binary), tmp,
                      ["--log-retain", str(args.log_retain)] if args.log_retain >= 0 else [])
    try:
        cluster.start_nats()
        for node in cluster.nodes:
            node.start()
        for node in cluster.nodes:
            cluster.wait_healthy(node, 60)
        log("Fathom nodes up on ports %s" % cluster.rest_ports)
        create_collection(cluster)

        stop = threading.Event()
        histories = [dict() for _ in range(WORKERS)]
        workers = [threading.Thread(target=worker, args=(w, cluster, stop, args.seed, histories[w]), daemon=True)
                   for w in range(WORKERS)]
        nemesis = Nemesis(cluster, random.Random(rng.random()))
        nemesis_thread = threading.Thread(target=nemesis.run, daemon=True)
        for t in workers + [nemesis_thread]:
            t.start()
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            time.sleep(min(10, max(0.0, t_end - time.monotonic())))
            ops = [op for h in histories for hist in list(h.values()) for op in list(hist)]
            log("progress: %d ops, %d acked, kills=%d pauses=%d" % (
                len(ops), sum(op.acked for op in ops), nemesis.kills, nemesis.pauses))
        stop.set()
        for t in workers:
            t.join(HTTP_TIMEOUT + 5)
        nemesis.stop.set()
        nemesis_thread.join(10)
        log("workload over; healing")

        history = {}
        for h in histories:
            history.update(h)
        acked = sum(op.acked for ops in history.values() for op in ops)
        ok_heal, last_status = heal(cluster)
        log("heal: %s" % ("every replica alive with lag 0" if ok_heal else "NOT converged"))

        shards, problems = read_replicas_stable(cluster, ok_heal)
        bad_shards = check_divergence(shards, problems)
        lost, resurrected, misplaced, where = check_histories(history, shards)
        for pid in misplaced:
            for w, _ in where[pid]:
                bad_shards.setdefault(int(w.split("/shard")[1]), "id %s is in more than one shard" % pid)
        mismatches = check_search(cluster, shards, random.Random(rng.random()))

        node_names = {n.name for n in cluster.nodes}   # NATS exits are restarted, not failures
        crashes = [c for c in nemesis.crashes if c[0] in node_names]
        required_kills = MIN_KILLS if seconds >= MIN_KILLS_SECONDS else 0
        installs = sum(p.tail(10 ** 9).count("installed from") for p in cluster.nodes)
        nats_exits = len(nemesis.crashes) - len(crashes)  # (reported: a NATS server that crashes)
        print("cluster-test: nodes=3 nats=3 kills=%d pauses=%d acked=%d lost=%d resurrected=%d diverged=%d "
              "search_mismatch=%d snapshot_installs=%d nats_exits=%d" % (
                  nemesis.kills, nemesis.pauses, acked, len(lost), len(resurrected), len(bad_shards),
                  len(mismatches), installs, nats_exits), flush=True)
        failed = bool(lost or resurrected or bad_shards or mismatches or crashes or not ok_heal)
        if failed:
            offending = [("lost", p) for p in lost] + [("resurrected", p) for p in resurrected]
            print_failure_details(cluster, history, where, offending, bad_shards, mismatches, crashes,
                                  None if ok_heal else last_status)
        if acked == 0:
            print("FAILED: no op was acknowledged")
            failed = True
        if nemesis.kills < required_kills:
            print("FAILED: only %d kills, %d required" % (nemesis.kills, required_kills))
            failed = True
        return 1 if failed else 0
    finally:
        cluster.cleanup()


def run_nats_only(tmp):
    cluster = Cluster("unused", tmp)
    try:
        cluster.start_nats()
        leader, _ = cluster.meta_leader()
        victim = next(s for s in cluster.nats if s.name == leader)
        victim.kill()
        t = time.monotonic()
        log("SIGKILL %s, the meta leader" % leader)
        new_leader = wait_until(lambda: cluster.meta_leader()[0], 10)
        if not new_leader:
            raise SetupError("no new meta leader within 10 s of killing %s" % leader, cluster.nats)
        log("new meta leader %s after %.1fs" % (new_leader, time.monotonic() - t))
        victim.start()
        if not wait_until(cluster.nats_healthy, 20):
            raise SetupError("%s did not rejoin as a current peer within 20 s" % victim.name, cluster.nats)
        log("%s restarted on its store and rejoined; leader %s" % (victim.name, cluster.meta_leader()[0]))
        print("nats-cluster: ok")
        return 0
    finally:
        cluster.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fathom_binary", nargs="?")
    parser.add_argument("--seconds", type=float, default=100, help="workload duration (default 100)")
    parser.add_argument("--minutes", type=float, help="workload duration in minutes (overrides --seconds)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--log-retain", type=int, default=-1,
                        help="the nodes' --log-retain (default -1, theirs: every entry kept; e.g. 200 makes nodes "
                             "that were away install snapshots under the faults)")
    parser.add_argument("--nats-only", action="store_true", help="check the NATS cluster handling alone")
    args = parser.parse_args()
    if not args.nats_only and not args.fathom_binary:
        parser.error("FATHOM_BINARY is required (except with --nats-only)")
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="fathom-cluster-test-")
    log("seed %d, directory %s" % (args.seed, tmp))
    try:
        return run_nats_only(tmp) if args.nats_only else run_test(args, tmp)
    except SetupError as e:
        prefix = "nats-cluster: FAILED" if args.nats_only else "cluster-test: error"
        print("%s: %s" % (prefix, e))
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
