"""A finished cross-validation run for the label loop's app tests: the fake test predictions
of a complete run plus a train_predictions.parquet over the fixture dataset's training images,
written with the library's own table functions."""

from __future__ import annotations

import numpy as np

from cifar_mtl.cifar10 import load_cifar10
from cifar_mtl.evidence.files import write_embeddings
from cifar_mtl.mislabels import TRAIN_PREDICTIONS_FILE, write_datalab
from cifar_mtl.predictions import predictions_table
from cifar_mtl.runs import atomic_write_parquet, run_dir, write_status
from cifar_mtl.synthetic import make_fake_run

CROSSVAL_RUN = "cv-c"


def write_train_predictions(folder, train_labels: np.ndarray, suspects: np.ndarray, k: int = 5) -> None:
    """Write `folder`/train_predictions.parquet over every training image: confident (0.9) in
    the given label, except `suspects`, confident in the next class (so they rank first);
    fold = index mod k."""
    labels = np.asarray(train_labels, dtype=np.int64)
    top = labels.copy()
    top[suspects] = (labels[suspects] + 1) % 10
    probs = np.full((len(labels), 10), 0.1 / 9, dtype=np.float32)
    probs[np.arange(len(labels)), top] = 0.9
    table = predictions_table(probs, labels, index=np.arange(len(labels)))
    table["fold"] = (np.arange(len(labels)) % k).astype(np.int8)
    atomic_write_parquet(folder / TRAIN_PREDICTIONS_FILE, table)


def add_crossval_run(fx, run_id: str = CROSSVAL_RUN, n_suspects: int = 5) -> tuple[str, list[int]]:
    """Add a finished cross-validation run to fixture home `fx` (`app_fixture.build_home`).

    Returns:
        (run id, the training indices made to look mislabelled, ascending).
    """
    train_labels = load_cifar10(str(fx.data), allow_download=False).y_train
    folder = make_fake_run(run_id, fx.home, n=200, variant="single", accuracy=0.75, seed=3)
    write_status(folder, "succeeded", started_at="2025-12-31T10:00:00+0000")  # older: not the default run
    suspects = np.random.default_rng(0).choice(len(train_labels), size=n_suspects, replace=False)
    write_train_predictions(folder, train_labels, suspects)
    return run_id, sorted(int(i) for i in suspects)


TWINS = (range(30, 36), range(40, 46))  # training images 40..45 embed exactly as 30..35


def add_train_embeddings(fx, run_id: str = CROSSVAL_RUN, datalab: bool = True) -> None:
    """Give the run training embeddings of the fixture's 50 training images (random, with six
    pairs of twins for Datalab's near-duplicate check) and, with `datalab`, its saved
    Datalab flags (`mislabels.write_datalab`)."""
    rng = np.random.default_rng(1)
    train = rng.normal(size=(50, 8))
    train[list(TWINS[1])] = train[list(TWINS[0])]
    write_embeddings(run_dir(run_id, fx.home), rng.normal(size=(200, 8)), train)
    if datalab:
        write_datalab(run_id, fx.home, log=lambda line: None)
