#!/usr/bin/env python3
"""Probes a built fathom-server the way issue 9 found its defects, and prints the figures that
docs/reliability.md records. Standard library only; run as root for the disk-full probe.

    /usr/bin/python3 bench/robustness_probe.py build/src/server/fathom-server [--crash-cycles 10]
"""
import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import http.client


def start(binary, data, *args, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    t0 = time.time()
    p = subprocess.Popen([binary, "--data", data, "--port", "0", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=full_env)
    buf = b""
    while True:
        r, _, _ = select.select([p.stdout], [], [], 120)
        chunk = os.read(p.stdout.fileno(), 4096) if r else b""
        if not chunk:
            raise SystemExit("server did not start")
        buf += chunk
        m = re.search(rb"listening on http://[^\s]+:(\d+)", buf)
        if m:
            return p, int(m.group(1)), time.time() - t0


def call(port, method, path, body=None, headers=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    d = r.read()
    c.close()
    return r.status, d


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def probe_slow_clients(binary, tmp):
    p, port, _ = start(binary, os.path.join(tmp, "slow"))
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
    stop = threading.Event()

    def trickle():
        i = 0
        while not stop.is_set():
            for s in socks:
                try:
                    s.send(b"GET /collections HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " [i % 45:i % 45 + 1] or b"a")
                except OSError:
                    pass
            i += 1
            stop.wait(2)
    t = threading.Thread(target=trickle)
    t.start()
    time.sleep(1)
    lat = []
    for _ in range(20):
        t0 = time.time()
        status, _ = call(port, "GET", "/healthz", timeout=70)
        lat.append((time.time() - t0) * 1000)
        time.sleep(0.5)
    closed_at = None
    t0 = time.time()
    while time.time() - t0 < 40:
        alive = 0
        for s in socks:
            s.setblocking(False)
            try:
                alive += s.recv(1) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        if alive == 0:
            closed_at = time.time() - t0 + 1 + 10
            break
        time.sleep(0.2)
    stop.set()
    t.join()
    lat.sort()
    print("slow clients: 64 connections trickling a header byte every 2 s; /healthz p50 %.1f ms, max %.1f ms; "
          "all 64 cut off by the server %s" % (lat[len(lat) // 2], lat[-1],
                                               "within %.0f s" % closed_at if closed_at else "NOT within 50 s"))
    p.send_signal(signal.SIGTERM)
    p.wait()


def probe_unauthenticated_bodies(binary, tmp):
    p, port, _ = start(binary, os.path.join(tmp, "auth"), env={"FATHOM_API_KEY": "k"})
    before = rss_mib(p.pid)
    body = b"[" * (60 << 20)

    def send():
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            s.sendall(b"PUT /collections/x/points HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass  # the server answered 401 and closed without reading the rest
        finally:
            s.close()
    peak = before
    threads = [threading.Thread(target=send) for _ in range(16)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_mib(p.pid))
        time.sleep(0.05)
    time.sleep(1)
    print("unauthenticated bodies: 16 parallel 60 MB PUTs without a key: RSS %.0f MB before, peak %.0f MB, "
          "%.0f MB after" % (before, peak, rss_mib(p.pid)))
    p.send_signal(signal.SIGTERM)
    p.wait()


def probe_crash_reopen(binary, tmp, cycles, points_per_cycle):
    data = os.path.join(tmp, "crash")
    p, port, _ = start(binary, data, "--durability", "buffered")
    call(port, "PUT", "/collections/c", {"vectors": {"size": 64, "distance": "L2", "index": "HNSW16"}})
    next_id = 0
    opens = []
    rng = random.Random(1)
    for cycle in range(cycles):
        for _ in range(points_per_cycle // 500):
            pts = [{"id": next_id + j, "vector": [rng.random() for _ in range(64)]} for j in range(500)]
            status, _ = call(port, "PUT", "/collections/c/points", {"points": pts})
            assert status == 200
            next_id += 500
        p.send_signal(signal.SIGKILL)
        p.wait()
        p, port, secs = start(binary, data, "--durability", "buffered")
        opens.append(secs)
    status, d = call(port, "POST", "/collections/c/points/count", {})
    print("reopen after kill -9: %d cycles of %d points (checkpoint every 50000): open %s s; %d of %d points there"
          % (cycles, points_per_cycle, " ".join("%.1f" % s for s in opens), json.loads(d)["result"]["count"], next_id))
    p.send_signal(signal.SIGTERM)
    p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--crash-cycles", type=int, default=8)
    ap.add_argument("--points-per-cycle", type=int, default=20000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="fathom_probe_")
    try:
        probe_slow_clients(a.binary, tmp)
        probe_unauthenticated_bodies(a.binary, tmp)
        probe_crash_reopen(a.binary, tmp, a.crash_cycles, a.points_per_cycle)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
