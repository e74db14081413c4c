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

Recipe: `configs/cpu_crossval.json` as it is (its epochs, `--folds` folds), on CIFAR-10
scaled down by `--scale`: a stratified share of the training *and* the test images
written as a data folder of its own. Scaling both keeps every per-image share of the
real run (held-out predictions against training epochs, the test predictions both
sides make); only the per-run and per-fold set-up weighs more than in the full run,
so the smaller copy is the harder test. Without $CIFAR10_DIR (or with --quick):
generated images.

    python -m bench.bench_crossval [--quick] [--folds K] [--scale S] [--epochs E] [--blocks B]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

OVERHEAD_TARGET = 0.05  # at most 5% more time than the K trainings
TRAIN_SIZE, TEST_SIZE = 50_000, 10_000  # CIFAR-10's training and test images


def settings(quick: bool) -> dict:
    """Folds, data scale, epochs (None: the config's) and A B B A blocks for a mode."""
    if quick:
        return {"folds": 2, "scale": 0.02, "epochs": 1, "blocks": 1}
    return {"folds": 5, "scale": 0.05, "epochs": None, "blocks": 1}


def recipe(source: str, epochs: int | None = None) -> dict:
    """The cross-validation recipe on the data folder `source`, cut to `epochs` if given."""
    from cifar_mtl.config import load_config_file

    config = load_config_file("cpu_crossval").to_dict()
    epochs = epochs or config["finetune_epochs"]
    config.update(data_dir=source, train_subset=None, finetune_epochs=epochs,
                  warmup_epochs=min(config["warmup_epochs"], epochs / 2), progress_interval=30.0)
    return config


def scaled_sizes(scale: float) -> tuple[int, int]:
    """(training, test) images of CIFAR-10 scaled by `scale`; training a multiple of 5 (one share per file)."""
    if not 0 < scale <= 1:
        raise ValueError(f"--scale {scale}: give a share of CIFAR-10 above 0 and at most 1")
    return max(5, round(TRAIN_SIZE * scale / 5) * 5), max(10, round(TEST_SIZE * scale))


def scaled_copy(data, folder: Path, scale: float, seed: int = 0) -> Path:
    """Write a stratified `scale` share of `data`'s training and test images as a data folder; return it.

    Args:
        data: a `cifar10.Cifar10`.
    """
    from cifar_mtl.cifar10 import stratified_split
    from cifar_mtl.synthetic import write_batches

    n_train, n_test = scaled_sizes(scale)
    train, _ = stratified_split(data.y_train, 0.0, seed, n_train)
    test, _ = stratified_split(data.y_test, 0.0, seed, n_test)
    train = train[:len(train) - len(train) % 5]  # rounding per class may leave a few over
    return write_batches(folder, data.x_train[train], data.y_train[train], data.x_test[test], data.y_test[test])


def fold_size(n_train: int, k: int) -> int:
    """Training images of one fold model: all folds but one of `n_train` (StratifiedKFold's sizes
    differ by at most one image per class)."""
    return n_train - n_train // k


def crossval_side(config: dict, home: Path, k: int, counter: list):
    """A: one cross-validation run; returns (K trainings, seconds)."""
    from cifar_mtl.training.crossval import crossval

    counter[0] += 1
    metrics = crossval(config, f"cv-{counter[0]}", k=k, home_dir=home)
    return k, metrics["seconds"]


def trainings_side(config: dict, home: Path, k: int, counter: list):
    """B: K trainings of one fold's size; returns (K trainings, seconds)."""
    from cifar_mtl.training.fit import train

    from cifar_mtl.cifar10 import load_cifar10

    n_train = len(load_cifar10(config["data_dir"]).y_train)
    one = {**config, "train_subset": fold_size(n_train, k)}
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


def data_source(home: Path, quick: bool, scale: float) -> tuple[str, str]:
    """(a data folder of CIFAR-10 scaled by `scale` or of generated images, its description)."""
    from cifar_mtl.cifar10 import load_cifar10, resolve_source
    from cifar_mtl.synthetic import write_fake_cifar

    n_train, n_test = scaled_sizes(scale)
    source = None if quick else resolve_source(None)
    if source:
        folder = scaled_copy(load_cifar10(source), home / "data", scale)
        return str(folder), f"{n_train:,} CIFAR-10 training and {n_test:,} test images ({scale:g} of each)"
    folder = write_fake_cifar(home / "data", n_train_per_batch=n_train // 5, n_test=n_test)
    return str(folder), f"{n_train:,} generated training and {n_test:,} test images"


def run(quick: bool = False, folds: int | None = None, scale: float | None = None, epochs: int | None = None,
        blocks: int | None = None) -> list[dict]:
    """The overhead figure as `python -m bench` rows."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    s = settings(quick)
    k, scale, blocks = folds or s["folds"], scale or s["scale"], blocks or s["blocks"]
    with tempfile.TemporaryDirectory(prefix="bench-crossval-") as tmp:
        source, described = data_source(Path(tmp), quick, scale)
        config = recipe(source, epochs or s["epochs"])
        summary = measure(config, Path(tmp), k, blocks)
    ratio = summary["ratio"]
    overhead = 1 / ratio - 1
    what = f"{k} folds of {described}, {config['finetune_epochs']} epoch(s), {blocks} A B B A block(s)"
    return [
        {"name": f"crossval rate / K trainings' rate ({what}; spread {summary['spread']})", "value": round(ratio, 3),
         "unit": "x", "target": "-", "ok": None},
        {"name": "crossval overhead over its K trainings", "value": round(overhead * 100, 1), "unit": "%",
         "target": f"< {OVERHEAD_TARGET:.0%}", "ok": overhead < OVERHEAD_TARGET},
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="generated images (1,000 training), 2 folds, 1 epoch")
    p.add_argument("--folds", type=int)
    p.add_argument("--scale", type=float, help="share of CIFAR-10's training and test images (default 0.05)")
    p.add_argument("--epochs", type=int, help="default: the config's")
    p.add_argument("--blocks", type=int, help="A B B A blocks")
    args = p.parse_args(argv)
    for row in run(args.quick, args.folds, args.scale, args.epochs, args.blocks):
        verdict = "" if row["ok"] is None else f" (target {row['target']}: {'met' if row['ok'] else 'missed'})"
        print(f"{row['name']}: {row['value']} {row['unit']}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
