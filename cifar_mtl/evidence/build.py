"""All the evidence a run's embeddings give, computed and written into its folder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_mtl.evidence import files
from cifar_mtl.evidence.duplicates import near_duplicates
from cifar_mtl.evidence.files import EvidenceError
from cifar_mtl.evidence.layout import layout_2d
from cifar_mtl.evidence.neighbours import nearest_training
from cifar_mtl.evidence.slices import error_slices


def build_evidence(folder, predictions: pd.DataFrame, test_emb: np.ndarray, train_emb: np.ndarray | None = None,
                   train_labels: np.ndarray | None = None, test_images: np.ndarray | None = None,
                   train_images: np.ndarray | None = None, seed: int = 0) -> dict[str, float]:
    """Compute and write the neighbour, near-duplicate, map and slice files of a run.

    Args:
        folder: the run folder.
        predictions: the run's predictions table, one row per test image in test-set
            order (`index` 0..N-1, `label`, `pred`, `confidence`).
        test_emb: (N, D) test embeddings in the same order (normalised here).
        train_emb, train_labels: (N_train, D) training embeddings and (N_train,) labels;
            without them there are no neighbours or near-duplicates (files already
            there are left as they are: they came from the same model).
        test_images, train_images: (N, 32, 32, 3) / (N_train, 32, 32, 3) uint8 images,
            optional: they let the near-duplicate check confirm pairs in pixel space.
        seed: for the map and the slices.

    Returns:
        {file name: seconds} for each file written.
    """
    folder = Path(folder)
    test_emb = np.asarray(test_emb)
    index = predictions["index"].to_numpy()
    if test_emb.ndim != 2 or len(test_emb) != len(predictions) or not (index == np.arange(len(index))).all():
        raise EvidenceError(f"{len(predictions)} predictions for test embeddings of shape {test_emb.shape}: "
                            "both must cover the test set in test-set order")
    seconds = {}

    def timed(name: str, compute):
        start = time.perf_counter()
        table = compute()
        files.write_table(folder, name, table)
        seconds[name] = time.perf_counter() - start
        return table

    if train_emb is not None:
        if train_labels is None:
            raise EvidenceError("training embeddings came without their labels; pass train_labels")
        neighbours = timed(files.NEIGHBOURS_FILE, lambda: nearest_training(test_emb, train_emb, train_labels))
        timed(files.DUPLICATES_FILE, lambda: near_duplicates(
            neighbours, predictions["label"].to_numpy(), test_images, train_images))
    timed(files.MAP_FILE, lambda: layout_2d(test_emb, seed=seed, index=index))
    timed(files.SLICES_FILE, lambda: error_slices(
        index, test_emb, predictions["label"].to_numpy(), predictions["pred"].to_numpy(), seed=seed))
    return seconds
