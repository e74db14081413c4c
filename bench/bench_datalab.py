"""Benchmark of `mislabels.write_datalab`: Datalab's training-set flags, computed once per
cross-validation run (never in a page render, issue 16).

Figure: wall time of one `write_datalab` on generated out-of-sample predictions and
clustered 512-dimensional embeddings (a fresh cross-validation run folder in a temporary
home), 10,000 images (5,000 with --quick). No target: it is a one-off command, and the
figure says how long people wait for it.

    python -m bench.bench_datalab [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIMENSIONS = 512  # the width at which issue 16 measured Datalab (2.3 s on 5,000, 73 s on 20,000)


def crossval_folder(home: Path, n: int, seed: int = 0) -> None:
    """Write run "cv" under `home`: train predictions of `n` images and their training embeddings."""
    from cifar_mtl.evidence.files import write_embeddings
    from cifar_mtl.mislabels import TRAIN_PREDICTIONS_FILE
    from cifar_mtl.predictions import predictions_table
    from cifar_mtl.synthetic import fake_probabilities

    folder = home / "runs" / "cv"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    table = predictions_table(fake_probabilities(labels, accuracy=0.85, seed=seed), labels, index=np.arange(n))
    table.assign(fold=(np.arange(n) % 5).astype("int8")).to_parquet(folder / TRAIN_PREDICTIONS_FILE, index=False)
    centres = rng.normal(size=(10, DIMENSIONS)) * 2  # one cluster per class, as trained features roughly are
    train = centres[labels] + rng.normal(size=(n, DIMENSIONS))
    write_embeddings(folder, rng.normal(size=(100, DIMENSIONS)), train)


def run(quick: bool = False) -> list[dict]:
    from cifar_mtl.mislabels import write_datalab

    n = 5_000 if quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        crossval_folder(Path(tmp), n)
        start = time.perf_counter()
        write_datalab("cv", tmp, log=lambda line: None)
        seconds = time.perf_counter() - start
    return [{"name": f"write_datalab, {n:,} training images x {DIMENSIONS} dimensions", "value": seconds,
             "unit": "s", "target": "-", "ok": None}]


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv[1:]):
        print(f"{r['name']}: {r['value']:.1f} {r['unit']}")
