"""Benchmarks of the label loop's library: ranking 50,000 training images, building a label set.

Figures (median wall time of repeated calls): cleanlab's label-quality ranking of
50,000 out-of-sample training predictions (target < 1 s, issue 16), and building
a label set of 5,000 rows from train verdicts (target < 1 s; added with labelsets).

    python -m bench.bench_labels [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

N_TRAIN = 50_000


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _row(name: str, value: float, unit: str, limit: float) -> dict:
    return {"name": name, "value": value, "unit": unit, "target": f"< {limit:g} {unit}", "ok": bool(value < limit)}


def train_predictions(n: int = N_TRAIN, seed: int = 0):
    """A cross-validation run's train predictions table for `n` generated images (+ `fold`)."""
    from cifar_mtl.predictions import predictions_table
    from cifar_mtl.synthetic import fake_probabilities

    labels = np.arange(n) % 10
    table = predictions_table(fake_probabilities(labels, accuracy=0.85, seed=seed), labels, index=np.arange(n))
    table["fold"] = (np.arange(n) % 5).astype("int8")
    return table


def bench_ranking(repeats: int) -> dict:
    from cifar_mtl.mislabels import rank_train_mislabels

    table = train_predictions()
    rank_train_mislabels(table)  # cleanlab's first import is not part of a page render
    seconds = _median_seconds(lambda: rank_train_mislabels(table), repeats)
    return _row(f"rank {N_TRAIN:,} training images (cleanlab)", seconds, "s", 1.0)


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 7
    return [bench_ranking(repeats)]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']}: {row['value']:.3f} {row['unit']} (target {row['target']}, ok={row['ok']})")
