"""A shortened run of examples/fashion_mnist_retrieval.py: a CNN trained for two epochs on a few
thousand images must already retrieve same-class neighbours far above chance (0.1). Training is
bounded by epochs, not by a time budget, so a slow or busy machine trains exactly as much."""
from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fashion_mnist_retrieval.py"


def test_fashion_mnist_retrieval_example(tmp_path):
    spec = importlib.util.spec_from_file_location("fashion_mnist_retrieval", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    picture = tmp_path / "grid.png"
    result = example.run(train_images=3000, gallery_images=3000, queries=300, train_seconds=float("inf"),
                         max_epochs=2, picture=str(picture), verbose=False)
    assert result["precision_at_10"] > 0.5, result
    assert result["filtered_precision_at_10"] > 0.5, result
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
