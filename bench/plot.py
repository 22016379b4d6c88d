#!/usr/bin/python3
"""Plot ann_bench --json output: recall (x) against QPS (y, log scale), one curve per library/index.

Usage: /usr/bin/python3 bench/plot.py results.json --out results.png [--min-recall 0.9] [--title T]
       /usr/bin/python3 bench/plot.py results.json --out bytes.png --bytes DIM [--qps-floor 2000]

Curves are drawn in the benchmark's ef order (not re-sorted by recall), so timing noise shows
as a kink instead of being hidden. Exact indexes (one point each) are drawn as single markers.
Output of `ann_bench --runs N` is drawn as one curve per index: per ef, the median recall and
the median QPS over the runs (build time and memory: the first run's).

With --bytes DIM (the vectors' dimension) the plot is recall against bytes per vector instead:
one marker per index at the best recall@10 it reaches at --qps-floor queries per second or more,
and the bytes per vector a search walks and keeps in RAM (codes, graph links or list ids; float32
copies kept only for re-ranking are left out, as an on_disk collection keeps them in its vector
file), computed from the factory string by the formulas in docs/format/ (index_bytes below).
"""

import argparse
import collections
import json
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")  # files only: no display on build machines
import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)

# A few related, still distinguishable colours per library, so each library reads as a group.
LIBRARY_COLORS = {
    "fathom": ["#1f77b4", "#9467bd", "#17becf", "#08306b", "#e377c2", "#7f7f7f", "#6baed6", "#3f007d",
               "#00441b", "#c994c7"],
    "hnswlib": ["#d62728", "#ff7f0e"],
    "faiss": ["#2ca02c", "#8c564b"],
    "flann": ["#bcbd22", "#8c6d31"],
}
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
TARGET_RECALLS = (0.95, 0.99)


def load_curves(path):
    with open(path, encoding="utf-8") as f:
        points = json.load(f)
    if not isinstance(points, list):
        sys.exit(f"{path}: expected a JSON array of points, found {type(points).__name__}")
    curves = collections.OrderedDict()
    for i, p in enumerate(points):
        missing = {"library", "index", "recall", "qps"} - p.keys()
        if missing:
            sys.exit(f"{path}: point {i} lacks {', '.join(sorted(missing))}")
        curves.setdefault((p["library"], p["index"]), []).append(p)
    # ann_bench --runs N writes every run's points (each with "run"): one point per parameter,
    # the median recall and the median QPS over the runs.
    for key, pts in curves.items():
        if not all("run" in p for p in pts):
            continue
        by_param = collections.OrderedDict()
        for p in pts:
            by_param.setdefault(p.get("param", p.get("ef")), []).append(p)
        if all(len(group) == 1 for group in by_param.values()):
            continue
        curves[key] = [dict(group[0], recall=statistics.median(q["recall"] for q in group),
                            qps=statistics.median(q["qps"] for q in group)) for group in by_param.values()]
    return curves


def index_bytes(library, index, dim):
    """Bytes per vector held in RAM for search, from the index's name; None when unknown."""
    parts = index.split(",")
    head = parts[0]
    codes = {"SQ8": dim, "FP16": 2 * dim, "RBQ": -(-dim // 64) * 8 + 24}
    if library in ("fathom", "faiss") and head.startswith("IVF"):
        code = parts[1] if len(parts) > 1 else "Flat"
        if code == "Flat":
            per = 4 * dim
        elif code in codes:
            per = codes[code]
        elif code.startswith("PQ"):
            m = int(code[2:].split("x")[0])
            per = m // 2 if code.endswith("x4fs") else m
        else:
            return None
        return per + 8  # the list's id
    if head.startswith("HNSW") or library == "hnswlib":
        found = re.match(r"HNSW(\d+)", head) or re.search(r"M=(\d+)", index)
        m = int(found.group(1)) if found else 16
        per = 4 * dim
        for p in parts[1:]:
            per = codes.get(p, per)
        return per + 8 * m + 4  # level-0 list: 2M 4-byte ids and a count
    if head in ("Flat",):
        return 4 * dim
    if library == "fathom" and head.startswith("KDForest"):
        trees = int(head[8:] or 4)
        return 4 * dim + 4 * trees + 8
    if library == "fathom" and (head.startswith("KDTree") or head.startswith("BallTree")):
        return 4 * dim + 8
    if library == "flann" and head.startswith("kdtree"):
        return 4 * dim + 4 * int(head[6:])
    if library == "flann" and head.startswith("kmeans"):
        return 4 * dim + 4
    return None


def plot_bytes(curves, args):
    fig, ax = plt.subplots(figsize=(10, 6.5))
    used = collections.Counter()
    for n, ((library, index), pts) in enumerate(curves.items()):
        fast = [p["recall"] for p in pts if p["qps"] >= args.qps_floor]
        nbytes = index_bytes(library, index, args.bytes)
        if not fast or nbytes is None:
            print(f"skipped {library} {index}: " + ("no point at the QPS floor" if not fast else "unknown size"))
            continue
        palette = LIBRARY_COLORS.get(library, ["#525252", "#969696"])
        color = palette[used[library] % len(palette)]
        used[library] += 1
        ax.plot([nbytes], [max(fast)], marker=MARKERS[n % len(MARKERS)], markersize=9, linestyle="none",
                color=color, label=f"{library} {index}  ({nbytes} B)")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per vector in RAM for search (codes + links or ids; re-ranking floats excluded)")
    ax.set_ylabel(f"best recall@10 at >= {args.qps_floor:g} QPS")
    ax.set_title(args.title if args.title != DEFAULT_TITLE else
                 f"ann_bench: recall@10 against bytes per vector (dimension {args.bytes})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


DEFAULT_TITLE = "ann_bench: recall@10 vs QPS (one query at a time, one thread)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="file written by ann_bench --json")
    parser.add_argument("--out", default="ann_bench.png", help="PNG to write (default ann_bench.png)")
    parser.add_argument("--min-recall", type=float, default=None,
                        help="left edge of the x axis (default: just below the lowest recall)")
    parser.add_argument("--title", default=DEFAULT_TITLE)
    parser.add_argument("--bytes", type=int, default=None, metavar="DIM",
                        help="plot recall against bytes per vector for vectors of this dimension")
    parser.add_argument("--qps-floor", type=float, default=2000,
                        help="with --bytes: the best recall at this many QPS or more (default 2000)")
    args = parser.parse_args()

    curves = load_curves(args.json)
    if not curves:
        sys.exit(f"{args.json}: no points")
    if args.bytes is not None:
        plot_bytes(curves, args)
        return

    fig, ax = plt.subplots(figsize=(10, 6.5))
    used = collections.Counter()
    for n, ((library, index), pts) in enumerate(curves.items()):
        palette = LIBRARY_COLORS.get(library, ["#525252", "#969696"])
        color = palette[used[library] % len(palette)]
        used[library] += 1
        first = pts[0]
        label = f"{library} {index}"
        if "build_s" in first and "memory_bytes" in first:
            label += f"  (build {first['build_s']:.1f} s, {first['memory_bytes'] / 1e6:.0f} MB)"
        ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts],
                marker=MARKERS[n % len(MARKERS)], markersize=4 if len(pts) > 1 else 8,
                linestyle="-" if len(pts) > 1 else "none", linewidth=1.5, color=color, label=label)

    for target in TARGET_RECALLS:
        ax.axvline(target, color="#bdbdbd", linestyle=":", linewidth=1)
    all_recalls = [p["recall"] for pts in curves.values() for p in pts]
    left = args.min_recall if args.min_recall is not None else max(0.0, min(all_recalls) - 0.01)
    ax.set_xlim(left, 1.0 + (1.0 - left) * 0.02)
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (log scale)")
    ax.set_title(args.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
