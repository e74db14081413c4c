"""The label loop against known noise (issue 16): does it find flipped labels, and does
retraining on its label set win back the accuracy the noise cost?

1. Flip a seeded share (default 5%) of the training labels to other classes and write
   that noisy copy of the dataset (the test set is copied unchanged).
2. Cross-validate on the noisy copy; rank the training images with cleanlab.
3. `labelsets.from_ranking`: accept the top N relabels, N = the number of flips
   (standing in for reviewers); precision and recall of the top N against the flips.
4. Train the same recipe and seed on clean labels, on noisy labels, and on noisy labels
   with the label set; report test accuracy and McNemar's exact test (cleaned vs noisy).

Targets: recall at N >= 0.8; the cleaned run recovers at least half the accuracy the
noise cost.

    python -m bench.bench_label_noise --quick    # tiny synthetic data, a minute: checks the pipeline only
    python -m bench.bench_label_noise            # $CIFAR10_DIR, cpu_crossval recipe: hours on 2 CPU cores
    python -m bench.bench_label_noise --folds 3 --epochs 4   # the same at about half the cost

--quick figures mean nothing about CIFAR-10 (generated images, a few hundred of them).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUICK = {"backbone": "airbench", "pooling": "max", "dropout": 0.0, "optimizer": "sgd", "finetune_epochs": 2,
         "batch_size": 16, "val_split": 0.0, "augment": "none", "progress_interval": 1.0,
         "mixed_precision": "off"}


def flip_labels(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip `share` of `labels` (seeded) to another class, uniformly among the other nine.

    Returns:
        (noisy labels (N,), flipped training indices, sorted).
    """
    from cifar_mtl.labels import NUM_CLASSES

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    flipped = np.sort(rng.choice(len(labels), int(round(share * len(labels))), replace=False))
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, NUM_CLASSES, len(flipped))) % NUM_CLASSES
    return noisy, flipped


def write_copy(source: str, y_train: np.ndarray, out: Path) -> Path:
    """Write the dataset at `source` with training labels `y_train` in the official layout.

    Returns the new `cifar-10-batches-py` folder (for `data_dir`).
    """
    from cifar_mtl.cifar10 import BATCH_DIR, SIZES_FILE, TRAIN_FILES, load_cifar10

    data = load_cifar10(source, allow_download=False)
    folder = Path(out) / BATCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = len(y_train) // len(TRAIN_FILES)

    def batch(x, y, name):
        planes = np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), 3072), dtype=np.uint8)
        return {b"batch_label": name.encode(), b"labels": [int(v) for v in y], b"data": planes,
                b"filenames": [f"{name}_{i}.png".encode() for i in range(len(x))]}

    for b, name in enumerate(TRAIN_FILES):
        part = slice(b * per_batch, (b + 1) * per_batch)
        with open(folder / name, "wb") as f:
            pickle.dump(batch(data.x_train[part], y_train[part], name), f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(data.x_test, data.y_test, "test_batch"), f, protocol=2)
    (folder / SIZES_FILE).write_text(json.dumps({"n_train_per_batch": per_batch, "n_test": len(data.y_test)}))
    return folder


def precision_recall_at(ranked_index: np.ndarray, flipped: np.ndarray, n: int) -> tuple[float, float]:
    """Precision and recall of the top `n` ranked training indices against the flipped set."""
    hits = np.isin(np.asarray(ranked_index)[:n], flipped).sum()
    return float(hits / max(n, 1)), float(hits / max(len(flipped), 1))


def run(config: dict, source: str, home: Path, folds: int, share: float, seed: int, log=print,
        method: str = "normalized_margin", action: str = "relabel") -> dict:
    """The whole benchmark; returns its figures."""
    from bench.no_evidence import without_evidence
    from cifar_mtl import labelsets, runs
    from cifar_mtl.cifar10 import load_cifar10
    from cifar_mtl.compare import compare_runs
    from cifar_mtl.config import make_config
    from cifar_mtl.mislabels import METHODS, load_train_predictions, rank_train_mislabels
    from cifar_mtl.training.crossval import crossval
    from cifar_mtl.training.fit import train

    t0 = time.time()
    clean = load_cifar10(source, allow_download=False)
    noisy_labels, flipped = flip_labels(clean.y_train, share, seed)
    noisy_dir = write_copy(source, noisy_labels, home / "noisy-data")
    log(f"flipped {len(flipped)} of {len(noisy_labels)} training labels (seed {seed})")
    base = {**config, "seed": seed}
    crossval(make_config({**base, "data_dir": str(noisy_dir)}), "noise-cv", k=folds, home_dir=home)
    cv = load_train_predictions("noise-cv", home)
    n = len(flipped)
    other = {}
    for name in METHODS:  # the label set takes `method`'s ranking; the others are reported beside it
        ranked = rank_train_mislabels(cv, method=name)
        p, r = precision_recall_at(ranked["index"].to_numpy(), flipped, n)
        log(f"ranking by {name}: precision {p:.3f}, recall {r:.3f} at N = {n}")
        if name == method:
            ranking, precision, recall = ranked, p, r
        else:
            other[f"recall_at_n_{name}"] = r
    table = labelsets.from_ranking(ranking, n, method=method, action=action)
    version, _ = labelsets.save_label_set(table, "noise-top-n", home, source_runs=["noise-cv"],
                                          rule={"from_ranking": n, "action": action}, built_by="bench_label_noise")
    accuracy = {}
    with without_evidence():  # the accuracies are the figures; evidence would add minutes a run
        for name, values in (("clean", {"data_dir": source}), ("noisy", {"data_dir": str(noisy_dir)}),
                             ("cleaned", {"data_dir": str(noisy_dir), "labels": f"noise-top-n@v{version}"})):
            accuracy[name] = train(make_config({**base, **values}), f"noise-{name}", home_dir=home)["accuracy"]
            log(f"{name}: test accuracy {accuracy[name]:.4f}")
    test = compare_runs(runs.load_predictions("noise-noisy", home), runs.load_predictions("noise-cleaned", home))
    cost = accuracy["clean"] - accuracy["noisy"]
    return {
        "flipped": int(n), "method": method, "precision_at_n": precision, "recall_at_n": recall, **other,
        "oos_accuracy": float(cv["correct"].mean()),
        "action": action, "set_rows": int(len(table)), "set_fixes_flip": int(np.isin(table["index"], flipped).sum()),
        "accuracy_clean": accuracy["clean"], "accuracy_noisy": accuracy["noisy"],
        "accuracy_cleaned": accuracy["cleaned"], "noise_cost": cost,
        "recovered_share": (accuracy["cleaned"] - accuracy["noisy"]) / cost if cost > 0 else float("nan"),
        "mcnemar_p_cleaned_vs_noisy": test.p_value, "fixed": test.n_fixed, "broken": test.n_broken,
        "minutes": round((time.time() - t0) / 60, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny generated data (checks the pipeline, not CIFAR-10)")
    p.add_argument("--config", default="cpu_crossval", help="recipe for all runs (full mode; default cpu_crossval)")
    p.add_argument("--folds", type=int, default=None, help="cross-validation folds (default 5; 2 with --quick)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every run (default: the recipe's; warmup kept within them)")
    p.add_argument("--noise", type=float, default=0.05, help="share of training labels flipped (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--action", default="relabel", choices=["relabel", "exclude"],
                   help="what the automatic label set does with the top N (default relabel)")
    p.add_argument("--method", default="normalized_margin", choices=["normalized_margin", "self_confidence"],
                   help="cleanlab score the label set's top N is taken by (default normalized_margin, the app's)")
    p.add_argument("--home", help="artifacts folder for the runs (default: a temporary one)")
    args = p.parse_args(argv)
    if not args.home:
        with tempfile.TemporaryDirectory(prefix="bench-label-noise-") as home:
            return _main(args, Path(home))
    return _main(args, Path(args.home))


def _main(args, home: Path) -> int:
    from cifar_mtl.cifar10 import resolve_source
    from cifar_mtl.config import load_config_file

    if args.quick:
        from cifar_mtl.synthetic import write_fake_cifar

        source, config, folds = str(write_fake_cifar(home / "data", n_train_per_batch=40, n_test=40)), QUICK, 2
    else:
        source = resolve_source(None)
        if source is None:
            print("error: set CIFAR10_DIR to the CIFAR-10 folder (or use --quick)", file=sys.stderr)
            return 2
        config, folds = load_config_file(args.config).to_dict(), 5
    if args.epochs:
        config = {**config, "finetune_epochs": args.epochs,
                  "warmup_epochs": min(config.get("warmup_epochs", 0.0), args.epochs / 2)}
    figures = run(config, source, home, args.folds or folds, args.noise, args.seed, method=args.method, action=args.action)
    for key, value in figures.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    print(f"targets: recall at N >= 0.8: {figures['recall_at_n'] >= 0.8}; "
          f"recovers >= half the noise cost: {figures['recovered_share'] >= 0.5}")
    print(f"runs under {home}" + ("" if args.home else " (temporary, deleted; keep them with --home)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
