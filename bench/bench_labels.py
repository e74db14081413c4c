"""Benchmarks of the label loop's library: ranking 50,000 training images, building a label set.

Figures (median wall time of repeated calls): cleanlab's label-quality ranking of
50,000 out-of-sample training predictions (target < 1 s, issue 16), and building
a label set of 5,000 rows from train verdicts (target < 1 s; added with labelsets).

    python -m bench.bench_labels [--quick]
"""

from __future__ import annotations

import sys

import numpy as np

from bench.timing import median_seconds, print_table, row

N_TRAIN = 50_000


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
    seconds = median_seconds(lambda: rank_train_mislabels(table), repeats)
    return row(f"rank {N_TRAIN:,} training images (cleanlab)", seconds, "s", 1.0)


def train_verdicts(n_images: int = 5_000, reviewers: int = 3, seed: int = 0):
    """Train-split verdicts of `reviewers` reviewers on `n_images` images, as the review
    store returns them: the first two agree on every image (mostly a relabel, some
    unsure), so each image gets a row; the others vote at random."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    index = np.repeat(rng.choice(N_TRAIN, n_images, replace=False), reviewers)
    verdict = rng.choice(["confirmed", "unsure", "rejected"], (n_images, reviewers), p=[0.8, 0.15, 0.05])
    verdict[:, 0] = np.where(rng.random(n_images) < 0.85, "confirmed", "unsure")
    verdict[:, 1] = verdict[:, 0]
    verdict = verdict.ravel()
    suggested = np.where(verdict == "confirmed", index % 10, -1)
    return pd.DataFrame({
        "index": index, "reviewer": np.tile([f"r{i}" for i in range(reviewers)], n_images), "verdict": verdict,
        "suggested_label": pd.arrays.IntegerArray(suggested, suggested < 0), "run_id": "cv",
        "at": pd.Timestamp.now(tz="UTC") + pd.to_timedelta(np.arange(len(index)), unit="us"),
    })


def bench_label_set(repeats: int) -> list[dict]:
    """Build a label set of 5,000 rows (3 reviewers each, min_agree 1) and write it as a new version."""
    import tempfile

    from cifar_mtl.labelsets import build_label_set, save_label_set

    votes = train_verdicts()
    given = (np.arange(N_TRAIN) + 1) % 10  # never the suggestion, so every confirmed vote is a relabel
    table = build_label_set(votes, given_labels=given)
    rows = len(table)
    build = median_seconds(lambda: build_label_set(votes, given_labels=given), repeats)
    with tempfile.TemporaryDirectory() as home:
        save = median_seconds(lambda: save_label_set(table, "bench", home), repeats)
    return [row(f"build a label set of {rows:,} rows from {len(votes):,} verdicts", build, "s", 1.0),
            row(f"save it as a new version (CSV + manifest, {rows:,} rows)", save, "s", 1.0)]


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 7
    return [bench_ranking(repeats), *bench_label_set(repeats)]


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
