#!/usr/bin/python3
"""How long writes wait while a collection snapshot is written (Collection.snapshot).

  PYTHONPATH=build/python /usr/bin/python3 bench/snapshot_stall.py [--runs 3] [--index HNSW16,SQ8]

Loads Fashion-MNIST (60,000 x 784, Debian's dataset-fashion-mnist) into a collection in a
temporary directory, then takes --runs snapshots, each while this thread upserts one point at a
time, and prints per snapshot its duration, how many upserts ran meanwhile and their slowest and
median latency. (The snapshot runs on another thread; the binding releases the GIL.)
"""
import argparse
import gzip
import shutil
import tempfile
import threading
import time

import numpy as np

import fathom


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--index", default="HNSW16,SQ8")
    parser.add_argument("--images", default="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
    args = parser.parse_args()
    with gzip.open(args.images) as f:
        x = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 784).astype(np.float32)
    tmp = tempfile.mkdtemp(prefix="fathom-snapshot-stall-")
    try:
        db = fathom.Database(tmp + "/db")
        c = db.create_collection("fm", 784, "l2", args.index)
        for i in range(0, len(x), 5000):
            ids = list(range(i, min(i + 5000, len(x))))
            c.upsert(ids, x[ids[0]:ids[-1] + 1], [{"label": j} for j in ids])
        print("collection: %d x 784, %s" % (len(x), args.index))
        for run in range(args.runs):
            target = "%s/snap%d" % (tmp, run)
            done = threading.Event()
            took = [0.0]

            def snapshot():
                start = time.perf_counter()
                c.snapshot(target)
                took[0] = time.perf_counter() - start
                done.set()

            thread = threading.Thread(target=snapshot)
            thread.start()
            latencies = []
            k = 0
            while not done.is_set():
                start = time.perf_counter()
                c.upsert([1_000_000 + k], x[k % len(x):k % len(x) + 1])
                latencies.append(time.perf_counter() - start)
                k += 1
            thread.join()
            print("snapshot %.2f s: %d upserts meanwhile, slowest %.3f s, median %.4f s" % (
                took[0], len(latencies), max(latencies), float(np.median(latencies))))
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
