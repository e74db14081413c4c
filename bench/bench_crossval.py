"""A cross-validation job's overhead over its K trainings (issue 16: under 5%).

A: `crossval(config, "cv", k)`: K fold models, each predicting its held-out fold and the
   test set, the fold files, `train_predictions.parquet` and the K-model test average.
B: its K trainings alone: K calls of `fit.train` with the same recipe on as many
   training images as one fold trains on (`train_subset` = (K-1)/K of A's), each
   predicting and writing the test set as every training does.

Each side's time is its run's own `seconds` in metrics.json (from loading the data to
its predictions written), so process and folder set-up count on neither side. The
evidence a training computes after its predictions is switched off for the benchmark
(cross-validation computes none). A and B alternate in A B B A blocks, as
`bench_training` does, and the figure is the median of the blocks' ratios
(trainings per second of A over B); the overhead is 1 / ratio - 1, target under 5%.

Recipe: `configs/cpu_crossval.json` cut to `--epochs` epochs on a `--subset` of the
training images (the overhead is per fold and per run, so a smaller set is the harder
test). Data: $CIFAR10_DIR, else generated images.

    python -m bench.bench_crossval [--quick] [--folds K] [--subset N] [--epochs E] [--blocks B]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

OVERHEAD_TARGET = 0.05  # at most 5% more time than the K trainings


def settings(quick: bool) -> dict:
    """Folds, training images, epochs and A B B A blocks for a mode."""
    if quick:
        return {"folds": 2, "subset": 1_000, "epochs": 1, "blocks": 1}
    return {"folds": 3, "subset": 12_000, "epochs": 2, "blocks": 1}


def recipe(source: str, subset: int, epochs: int) -> dict:
    """The cross-validation recipe on `subset` training images for `epochs` epochs."""
    from cifar_mtl.config import load_config_file

    config = load_config_file("cpu_crossval").to_dict()
    config.update(data_dir=source, train_subset=subset, finetune_epochs=epochs,
                  warmup_epochs=min(config["warmup_epochs"], epochs / 2), progress_interval=30.0)
    return config


def fold_size(subset: int, k: int) -> int:
    """Training images of one fold model: all folds but one of `subset` (StratifiedKFold's sizes
    differ by at most one image per class)."""
    return subset - subset // k


def crossval_side(config: dict, home: Path, k: int, counter: list):
    """A: one cross-validation run; returns (K trainings, seconds)."""
    from cifar_mtl.training.crossval import crossval

    counter[0] += 1
    metrics = crossval(config, f"cv-{counter[0]}", k=k, home_dir=home)
    return k, metrics["seconds"]


def trainings_side(config: dict, home: Path, k: int, counter: list):
    """B: K trainings of one fold's size; returns (K trainings, seconds)."""
    from cifar_mtl.training.fit import train

    one = {**config, "train_subset": fold_size(config["train_subset"], k)}
    seconds = 0.0
    for _ in range(k):
        counter[0] += 1
        seconds += train(one, f"train-{counter[0]}", home_dir=home)["seconds"]
    return k, seconds


def measure(config: dict, home: Path, k: int, blocks: int) -> dict:
    """Alternate A and B; returns `bench_training.summarize`'s dict (ratio = A's rate over B's)."""
    from bench.bench_training import alternate, summarize
    from bench.no_evidence import without_evidence

    counter = [0]
    with without_evidence():  # B's trainings: no evidence, as cross-validation
        result = alternate(lambda: crossval_side(config, home, k, counter),
                           lambda: trainings_side(config, home, k, counter), blocks)
    return summarize(result)


def data_source(home: Path, quick: bool) -> tuple[str, str]:
    """($CIFAR10_DIR or a generated set, its description)."""
    from cifar_mtl.cifar10 import resolve_source
    from cifar_mtl.synthetic import write_fake_cifar

    source = None if quick else resolve_source(None)
    if source:
        return source, "CIFAR-10"
    return str(write_fake_cifar(home / "data", n_train_per_batch=300, n_test=500)), "generated images"


def run(quick: bool = False, folds: int | None = None, subset: int | None = None, epochs: int | None = None,
        blocks: int | None = None) -> list[dict]:
    """The overhead figure as `python -m bench` rows."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    s = settings(quick)
    k, subset, epochs, blocks = folds or s["folds"], subset or s["subset"], epochs or s["epochs"], blocks or s["blocks"]
    with tempfile.TemporaryDirectory(prefix="bench-crossval-") as tmp:
        source, described = data_source(Path(tmp), quick)
        summary = measure(recipe(source, subset, epochs), Path(tmp), k, blocks)
    ratio = summary["ratio"]
    overhead = 1 / ratio - 1
    what = f"{k} folds of {subset:,} {described}, {epochs} epoch(s), {blocks} A B B A block(s)"
    return [
        {"name": f"crossval rate / K trainings' rate ({what}; spread {summary['spread']})", "value": round(ratio, 3),
         "unit": "x", "target": "-", "ok": None},
        {"name": "crossval overhead over its K trainings", "value": round(overhead * 100, 1), "unit": "%",
         "target": f"< {OVERHEAD_TARGET:.0%}", "ok": overhead < OVERHEAD_TARGET},
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="generated images, 2 folds of 1,000, 1 epoch")
    p.add_argument("--folds", type=int)
    p.add_argument("--subset", type=int, help="training images cross-validated")
    p.add_argument("--epochs", type=int)
    p.add_argument("--blocks", type=int, help="A B B A blocks")
    args = p.parse_args(argv)
    for row in run(args.quick, args.folds, args.subset, args.epochs, args.blocks):
        verdict = "" if row["ok"] is None else f" (target {row['target']}: {'met' if row['ok'] else 'missed'})"
        print(f"{row['name']}: {row['value']} {row['unit']}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
