#!/usr/bin/python3
"""Scale run (issue 10): one large collection on this machine, ingested through the CLI import
with durability on, then measured from the Python package.

  PYTHONPATH=build/python /usr/bin/python3 bench/scale_bench.py --n 10000000 --dim 96
  PYTHONPATH=build/python /usr/bin/python3 bench/scale_bench.py --n 2000000 --dim 768 --on-disk

Data: clustered synthetic float32 (--clusters Gaussian centres; each cluster spreads in its own
random --latent-dimensional subspace plus a little isotropic noise, like real embeddings;
--latent 0 gives isotropic Gaussian clusters, the worst case for any graph index), written to a
.npy file chunk by chunk, never whole in memory; 200 queries drawn the same way; exact top-10 by
brute force over the memory-mapped file.

Reports (printed, and as JSON with --json FILE): ingest points/s over time and the import
process's peak and steady RSS; bytes on disk by part; open time after a clean close (warm page
cache, and cold after dropping the caches when allowed) and after a SIGKILL; the RSS of the
opened collection and the collection's own RAM accounting; recall@10 and QPS (one thread) for
each ef, warm and cold; checkpoint time and p99 search latency during a checkpoint against
without one.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_bytes(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def du(path):
    total = 0
    for p in Path(path).rglob("*"):
        if p.is_file():
            total += p.stat().st_blocks * 512
    return total


def make_data(path, n, dim, clusters, seed, latent, chunk=200_000):
    """Cluster centres plus, per cluster, a random `latent`-dimensional subspace the points
    spread in, plus a little isotropic noise: low intrinsic dimension, as real embeddings have
    (latent=0: isotropic Gaussian clusters, intrinsic dimension = dim, the worst case)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32) * 4.0
    bases = (rng.normal(size=(clusters, latent, dim)) / np.sqrt(latent)).astype(np.float32) if latent else None

    def draw(m):
        which = rng.integers(0, clusters, size=m)
        if bases is None:
            return centres[which] + rng.normal(size=(m, dim)).astype(np.float32)
        z = rng.normal(size=(m, latent)).astype(np.float32) * 2.0
        out = centres[which] + 0.05 * rng.normal(size=(m, dim)).astype(np.float32)
        order = np.argsort(which, kind="stable")  # per cluster: one small matrix product each
        bounds = np.searchsorted(which[order], np.arange(clusters + 1))
        for c in range(clusters):
            rows = order[bounds[c]:bounds[c + 1]]
            if len(rows):
                out[rows] += z[rows] @ bases[c]
        return out

    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for first in range(0, n, chunk):
        m = min(chunk, n - first)
        out[first:first + m] = draw(m)
    out.flush()
    del out
    return draw(200).astype(np.float32)


def exact_top10(data_path, queries, metric):
    data = np.load(data_path, mmap_mode="r")
    q = queries.astype(np.float32)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    best_d = np.full((len(q), 10), np.inf, dtype=np.float64)
    best_i = np.zeros((len(q), 10), dtype=np.int64)
    qn = (q.astype(np.float64) ** 2).sum(1)
    for first in range(0, data.shape[0], 500_000):
        x = np.asarray(data[first:first + 500_000], dtype=np.float32)
        if metric == "cosine":
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
            d = 1.0 - q @ x.T
        else:
            d = qn[:, None] + (x.astype(np.float64) ** 2).sum(1)[None, :] - 2.0 * (q @ x.T)
        idx = np.argpartition(d, 10, axis=1)[:, :10]
        cand_d = np.concatenate([best_d, np.take_along_axis(d, idx, 1)], axis=1)
        cand_i = np.concatenate([best_i, idx + first], axis=1)
        order = np.argsort(cand_d, axis=1)[:, :10]
        best_d = np.take_along_axis(cand_d, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    return best_i


def recall(found, truth):
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth))
    return hits / (10.0 * len(truth))


def run_import(cli, data_dir, name, data_path, batch, report):
    cmd = [cli, "--data", str(data_dir), "import", name, str(data_path), "--batch", str(batch)]
    start = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    samples = []  # (seconds, points, rss)
    points = [0]

    def read_progress():
        buf = b""
        while True:
            c = proc.stderr.read(1)
            if not c:
                return
            if c in (b"\r", b"\n"):
                m = re.search(rb"(\d+) points", buf)
                if m:
                    points[0] = int(m.group(1))
                buf = b""
            else:
                buf += c

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            samples.append((time.time() - start, points[0], rss_bytes(proc.pid)))
        except OSError:
            pass
        time.sleep(1.0)
    reader.join(timeout=5)
    if proc.returncode != 0:
        sys.exit("import failed: " + proc.stdout.read().decode())
    seconds = time.time() - start
    n = points[0]
    rss = [s[2] for s in samples if s[2] > 0]
    # Throughput per tenth of the run.
    per_tenth = []
    for t in range(1, 11):
        upto = [s for s in samples if s[0] <= seconds * t / 10]
        prev = [s for s in samples if s[0] <= seconds * (t - 1) / 10]
        if upto and prev and upto[-1][0] > prev[-1][0]:
            per_tenth.append(round((upto[-1][1] - prev[-1][1]) / (upto[-1][0] - prev[-1][0])))
    report["ingest"] = {
        "seconds": round(seconds, 1), "points_per_s": round(n / seconds) if seconds else 0,
        "points_per_s_by_tenth": per_tenth,
        "peak_rss_bytes": max(rss) if rss else 0,
        "steady_rss_bytes": int(np.median(rss[len(rss) // 2:])) if rss else 0,
        "output": proc.stdout.read().decode().strip(),
    }


def timed_open(fathom, data_dir, name):
    t = time.time()
    db = fathom.Database(str(data_dir))
    col = db.get_collection(name)
    return db, col, time.time() - t


def search_sweep(col, queries, truth, values, rerank=None, knob="ef"):
    """Recall@10 and single-thread QPS for each value of `knob` ("ef", or "nprobe" for IVF)."""
    rows = []
    for v in values:
        params = {knob: v, "rerank": rerank, "with_payload": False}
        col.search(queries[:10], k=10, **params)  # warm the code path
        t = time.time()
        res = [col.search(q, k=10, **params) for q in queries]
        dt = time.time() - t
        found = [[h.id for h in r] for r in res]
        rows.append({knob: v, "rerank": rerank or 20, "recall": round(recall(found, truth), 4),
                     "qps": round(len(queries) / dt)})
    return rows


def latency_during(col, queries, seconds, action=None, params=None):
    """Single-query latencies (ms) for `seconds`; `action` runs in the middle on another thread.
    Returns (latencies outside the action, latencies during it, action seconds)."""
    stop = threading.Event()
    window = {}

    def act():
        time.sleep(seconds / 3)
        window["start"] = time.time()
        action()
        window["end"] = time.time()

    worker = threading.Thread(target=act) if action else None
    if worker:
        worker.start()
    lat = []
    end = time.time() + seconds
    i = 0
    while time.time() < end or (worker and worker.is_alive()):
        q = queries[i % len(queries)]
        i += 1
        t0 = time.time()
        col.search(q, k=10, with_payload=False, **(params or {"ef": 64}))
        lat.append((t0, (time.time() - t0) * 1000))
    if worker:
        worker.join()
        inside = [l for t, l in lat if window["start"] <= t <= window["end"]]
        outside = [l for t, l in lat if not (window["start"] <= t <= window["end"])]
        return outside, inside, window["end"] - window["start"]
    return [l for _, l in lat], [], 0.0


def p99(xs):
    return round(float(np.percentile(xs, 99)), 3) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--metric", default="l2")
    ap.add_argument("--index", default="HNSW16,SQ8,efC=100")
    ap.add_argument("--on-disk", action="store_true", help="vectors and payloads on disk")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--latent", type=int, default=16,
                    help="intrinsic dimension of each cluster (0: isotropic Gaussian clusters)")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--ef", default="16,32,64,128,256,512")
    ap.add_argument("--nprobe", help="comma list of IVF nprobe values to sweep instead of --ef")
    ap.add_argument("--rerank", default="0",
                    help="comma list of re-ranking depths to sweep too (0: the default, 2k)")
    ap.add_argument("--dir", default="/tmp/fathom_scale")
    ap.add_argument("--cli", default=str(ROOT / "build/src/cli/fathom"))
    ap.add_argument("--kill-upserts", type=int, default=50_000,
                    help="points upserted (after the import) by a process then SIGKILLed")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args()
    import fathom

    work = Path(args.dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data_path, data_dir, name = work / "data.npy", work / "db", "scale"
    report = {"n": args.n, "dim": args.dim, "metric": args.metric, "index": args.index,
              "on_disk": args.on_disk,
              "data": f"clustered synthetic, {args.clusters} clusters, latent dimension {args.latent or args.dim}",
              "float_bytes": args.n * args.dim * 4,
              "simd": os.environ.get("FATHOM_SIMD", "default (best the CPU has)")}
    t = time.time()
    queries = make_data(data_path, args.n, args.dim, args.clusters, seed=7, latent=args.latent)
    print(f"data: {args.n} x {args.dim} written in {time.time() - t:.0f} s", flush=True)
    t = time.time()
    truth = exact_top10(data_path, queries, args.metric)
    print(f"exact top-10 of {len(queries)} queries in {time.time() - t:.0f} s", flush=True)

    create = [args.cli, "--data", str(data_dir), "create", name, "--dim", str(args.dim),
              "--metric", args.metric, "--index", args.index]
    if args.on_disk:
        create += ["--on-disk", "--on-disk-payload"]
    subprocess.run(create, check=True, stdout=subprocess.DEVNULL)
    run_import(args.cli, data_dir, name, data_path, args.batch, report)
    print("ingest:", json.dumps(report["ingest"]), flush=True)
    report["disk_bytes_after_close"] = du(data_dir)

    # Open after a clean close: warm, then cold.
    base_rss = rss_bytes()
    db, col, warm = timed_open(fathom, data_dir, name)
    report["open_warm_s"] = round(warm, 2)
    report["rss_after_open_bytes"] = rss_bytes() - base_rss
    usage = col.usage()
    report["usage"] = usage
    db.close()
    cold_ok = drop_caches()
    db, col, cold = timed_open(fathom, data_dir, name)
    report["open_cold_s"] = round(cold, 2) if cold_ok else None
    knob = "nprobe" if args.nprobe else "ef"
    efs = [int(e) for e in (args.nprobe or args.ef).split(",")]
    if cold_ok:
        drop_caches()
        report["search_cold"] = search_sweep(col, queries, truth, [efs[len(efs) // 2]],
                                             int(args.rerank.split(",")[-1]) or None, knob)
    report["search_warm"] = []
    for rr in [int(r) for r in args.rerank.split(",")]:
        report["search_warm"] += search_sweep(col, queries, truth, efs, rr or None, knob)
    report["rss_after_searches_bytes"] = rss_bytes() - base_rss
    print("search:", json.dumps(report["search_warm"]), flush=True)

    # p99 during a checkpoint: some writes first so that it has work to do.
    extra = np.load(data_path, mmap_mode="r")[: min(20_000, args.n)]
    col.upsert(range(args.n, args.n + len(extra)), np.asarray(extra))
    outside, inside, ckpt = latency_during(col, queries, 6.0, col.checkpoint,
                                           {knob: efs[len(efs) // 2]})
    report["checkpoint"] = {"seconds": round(ckpt, 2), "p99_ms_without": p99(outside),
                            "p99_ms_during": p99(inside), "searches_during": len(inside)}
    print("checkpoint:", json.dumps(report["checkpoint"]), flush=True)
    db.close()

    # Open after a SIGKILL: a process upserts more points, then is killed without closing.
    killer = (
        "import sys, time, numpy as np, fathom\n"
        f"db = fathom.Database({str(data_dir)!r})\n"
        f"col = db.get_collection({name!r})\n"
        f"x = np.asarray(np.load({str(data_path)!r}, mmap_mode='r')[:{args.kill_upserts}])\n"
        f"for i in range(0, len(x), 5000): col.upsert(range({2 * args.n} + i, {2 * args.n} + i + len(x[i:i+5000])), x[i:i+5000])\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", killer], stdout=subprocess.PIPE, env=os.environ)
    proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    db, col, after_kill = timed_open(fathom, data_dir, name)
    report["open_after_sigkill_s"] = round(after_kill, 2)
    report["points_after_sigkill"] = col.count()
    db.close()
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
