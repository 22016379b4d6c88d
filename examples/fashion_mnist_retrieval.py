#!/usr/bin/env python3
"""Deep-learning features end to end: train a small CNN on Fashion-MNIST with PyTorch, store its
128-d (--dim) embeddings in a Fathom collection (label and split as payload), search by image and by
image + filter, report label precision@10, and save a picture of queries and their neighbours.

    python3 examples/fashion_mnist_retrieval.py                 # ~1 minute of training on CPU
    python3 examples/fashion_mnist_retrieval.py --train 3000 --gallery 3000 --train-seconds 10

Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist). Needs python3-torch,
python3-numpy, python3-matplotlib and the fathom package (see docs/python.md).
"""
from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

import fathom

DATA = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
FOOTWEAR = (5, 7, 9)


def load_idx(name: str) -> np.ndarray:
    """An IDX file (big-endian header: magic, dimensions) as a numpy array."""
    raw = gzip.open(DATA / name).read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


class EmbeddingNet(nn.Module):
    """Two conv blocks and a `dim`-wide embedding; a linear classifier on top for training only."""

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, dim))
        self.classifier = nn.Linear(dim, 10)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.embed(x)))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def train(model: EmbeddingNet, images: np.ndarray, labels: np.ndarray, seconds: float,
          max_epochs: int, seed: int) -> int:
    """Trains until the time budget or max_epochs runs out; returns the number of batches."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    x_all, y_all = to_tensor(images), torch.from_numpy(labels.astype(np.int64))
    model.train()
    start, batches = time.time(), 0
    for _ in range(max_epochs):
        order = rng.permutation(len(images))
        for i in range(0, len(order), 128):
            idx = torch.from_numpy(order[i:i + 128])
            optimiser.zero_grad()
            loss = loss_fn(model(x_all[idx]), y_all[idx])
            loss.backward()
            optimiser.step()
            batches += 1
            if time.time() - start > seconds:
                return batches
    return batches


@torch.no_grad()
def embed(model: EmbeddingNet, images: np.ndarray) -> np.ndarray:
    model.eval()
    out = [model.embed(to_tensor(images[i:i + 1024])).numpy() for i in range(0, len(images), 1024)]
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def precision_at_k(neighbour_labels: np.ndarray, query_labels: np.ndarray) -> float:
    return float((neighbour_labels == query_labels[:, None]).mean())


def save_grid(path: str, queries: np.ndarray, query_labels: np.ndarray, hits, gallery: np.ndarray,
              gallery_labels: np.ndarray, rows: int = 8) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(hits[0])
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.1 * (k + 1), 1.25 * rows))
    for r in range(rows):
        axes[r, 0].imshow(queries[r], cmap="gray")
        axes[r, 0].set_title(f"query: {CLASSES[query_labels[r]]}", fontsize=6)
        for c, hit in enumerate(hits[r]):
            ax = axes[r, c + 1]
            ax.imshow(gallery[hit.id], cmap="gray")
            same = gallery_labels[hit.id] == query_labels[r]
            for spine in ax.spines.values():
                spine.set_edgecolor("green" if same else "red")
                spine.set_linewidth(2)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Fathom: Fashion-MNIST test images (left) and their 10 nearest CNN embeddings "
                 "(green: same class)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(train_images: int = 60000, gallery_images: int = 60000, queries: int = 1000,
        train_seconds: float = 60.0, max_epochs: int = 5, data_dir: Optional[str] = None,
        picture: Optional[str] = None, seed: int = 0, verbose: bool = True,
        save_embeddings: Optional[str] = None, dim: int = 128) -> Dict[str, float]:
    say = print if verbose else (lambda *a, **k: None)
    torch.set_num_threads(os.cpu_count() or 1)
    train_x, train_y = load_idx("train-images-idx3-ubyte.gz"), load_idx("train-labels-idx1-ubyte.gz")
    test_x, test_y = load_idx("t10k-images-idx3-ubyte.gz"), load_idx("t10k-labels-idx1-ubyte.gz")

    model = EmbeddingNet(dim)
    t = time.time()
    batches = train(model, train_x[:train_images], train_y[:train_images], train_seconds, max_epochs, seed)
    say(f"trained {batches} batches of 128 on {train_images} images in {time.time() - t:.0f} s")

    gallery_x, gallery_y = train_x[:gallery_images], train_y[:gallery_images]
    query_x, query_y = test_x[:queries], test_y[:queries]
    t = time.time()
    gallery = embed(model, gallery_x)
    query = embed(model, query_x)
    say(f"embedded {len(gallery)} gallery and {len(query)} query images ({dim}-d) in {time.time() - t:.1f} s")
    if save_embeddings:  # float embeddings for benchmarks (bench/ann_bench --base/--query)
        os.makedirs(save_embeddings, exist_ok=True)
        np.save(os.path.join(save_embeddings, "gallery.npy"), gallery)
        np.save(os.path.join(save_embeddings, "queries.npy"), query)

    with tempfile.TemporaryDirectory() as tmp, \
            fathom.Database(data_dir or os.path.join(tmp, "db"), durability="buffered") as db:
        if "fashion" in db.list_collections():
            db.drop_collection("fashion")
        col = db.create_collection("fashion", dim=dim, metric="cosine", index="HNSW32",
                                   indexed_fields={"label": "integer", "split": "keyword"})
        t = time.time()
        for start in range(0, len(gallery), 5000):
            end = min(len(gallery), start + 5000)
            col.upsert(range(start, end), gallery[start:end],
                       [{"label": int(gallery_y[i]), "split": "train"} for i in range(start, end)])
        say(f"stored {col.count()} embeddings in {time.time() - t:.1f} s")

        t = time.time()
        hits = col.search(query, k=10, ef=64)
        elapsed = time.time() - t
        labels = np.array([[h.payload["label"] for h in row] for row in hits])
        p10 = precision_at_k(labels, query_y)
        say(f"search by image: label precision@10 = {p10:.3f} ({len(query) / elapsed:.0f} queries/s)")

        # Image + filter: "shoes like this one", over the footwear classes only.
        shoes = np.flatnonzero(np.isin(query_y, FOOTWEAR))
        filtered = col.search(query[shoes], k=10, filter="label IN (5, 7, 9)")
        f_labels = np.array([[h.payload["label"] for h in row] for row in filtered])
        assert np.isin(f_labels, FOOTWEAR).all()
        p10_filtered = precision_at_k(f_labels, query_y[shoes])
        say(f"search by image + filter 'label IN (5, 7, 9)' ({len(shoes)} footwear queries): "
            f"precision@10 = {p10_filtered:.3f}")

        # The same search on raw pixels, for scale: what the CNN's features add.
        pixels = fathom.Index(784, "HNSW32", metric="l2")
        pixels.add(gallery_x.reshape(len(gallery_x), -1))
        _, ids = pixels.search(query_x.reshape(len(query_x), -1), 10)
        p10_pixels = precision_at_k(gallery_y[ids], query_y)
        say(f"raw pixels instead of embeddings: precision@10 = {p10_pixels:.3f}")

        if picture:
            save_grid(picture, query_x, query_y, hits, gallery_x, gallery_y)
            say(f"wrote {picture}")
    return {"precision_at_10": p10, "filtered_precision_at_10": p10_filtered,
            "pixel_precision_at_10": p10_pixels, "chance": 0.1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=60000, help="training images (default all 60000)")
    p.add_argument("--gallery", type=int, default=60000, help="images stored in the collection")
    p.add_argument("--queries", type=int, default=1000, help="test images used as queries")
    p.add_argument("--train-seconds", type=float, default=60.0, help="training time budget")
    p.add_argument("--epochs", type=int, default=5, help="at most this many epochs")
    p.add_argument("--data", help="keep the database in this directory (default: temporary)")
    p.add_argument("--picture", default="fashion-mnist-retrieval.png", help="PNG of queries and neighbours")
    p.add_argument("--save-embeddings", metavar="DIR", help="also write gallery.npy and queries.npy there")
    p.add_argument("--dim", type=int, default=128, help="embedding width (default 128)")
    a = p.parse_args()
    run(a.train, a.gallery, a.queries, a.train_seconds, a.epochs, a.data, a.picture,
        save_embeddings=a.save_embeddings, dim=a.dim)


if __name__ == "__main__":
    main()
