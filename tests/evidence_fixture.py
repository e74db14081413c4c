"""Synthetic evidence files for app tests: small arrays written with `cifar_mtl.evidence.files`.

No model and no TensorFlow: the tables are made up but valid (the readers' checks
pass), and shaped so that each page has something to show:

- the map puts each class in its own cluster, errors between their two classes;
- the first `N_DUPLICATES` errors have a near-duplicate in the training set, and the
  first of those a training twin with another label (a label conflict);
- the errors fall into slices by true class (`slice = label % N_SLICES`), the
  errors of class 9 left unclustered;
- every error has saliency maps, each a bright square in a corner of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cifar_mtl.evidence import files
from cifar_mtl.labels import IS_ANIMAL

K = 8
DIM = 16
N_DUPLICATES = 3
N_SLICES = 3


def error_indices(preds: pd.DataFrame) -> np.ndarray:
    return preds.loc[~preds["correct"].to_numpy(bool), "index"].to_numpy(np.int64)


def tag_like_a_reviewer(store, run_id: str, preds: pd.DataFrame, n: int, reviewer: str) -> list[int]:
    """Tag the first `n` errors as a reviewer might: animals 'pose', vehicles 'colour' (the
    fixture's embeddings tell the two apart, so suggestions can be learnt). Returns the
    errors left untagged."""
    errors = error_indices(preds)
    label = preds.set_index("index").loc[errors, "label"].to_numpy()
    for category, animal in (("pose", True), ("colour", False)):
        chosen = [int(i) for i, y in zip(errors[:n], label[:n]) if bool(IS_ANIMAL[y]) == animal]
        store.tag_many(run_id, chosen, category, reviewer)
    return [int(i) for i in errors[n:]]


def write_evidence(folder, preds: pd.DataFrame, train_labels: np.ndarray, *, seed: int = 0,
                   only=None) -> Path:
    """Write every evidence file (or those named in `only`) into run folder `folder`.

    `train_labels` (N_train,) are the training set's labels (neighbours point into it).
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    index = preds["index"].to_numpy(np.int64)
    label = preds["label"].to_numpy(np.int64)
    pred = preds["pred"].to_numpy(np.int64)
    errors = error_indices(preds)
    train_labels = np.asarray(train_labels, dtype=np.int64)
    wanted = set(only or ("embeddings", "neighbours", "duplicates", "map", "slices", "saliency"))

    # Embeddings near a per-class direction: the suggestions classifier has something to learn.
    centres = rng.normal(size=(10, DIM))
    embeddings = centres[label] + 0.5 * centres[pred] + rng.normal(scale=0.3, size=(len(index), DIM))
    if "embeddings" in wanted:
        files.write_embeddings(folder, embeddings)

    neighbours = _neighbours(rng, index, label, train_labels)
    _plant_duplicates(neighbours, index, label, errors, train_labels)
    if "neighbours" in wanted:
        files.write_table(folder, files.NEIGHBOURS_FILE, neighbours)
    if "duplicates" in wanted:
        files.write_table(folder, files.DUPLICATES_FILE, _duplicates(neighbours, index, label))
    if "map" in wanted:
        angle = 2 * np.pi * np.arange(10) / 10
        centre = np.column_stack([np.cos(angle), np.sin(angle)]) * 10
        xy = (centre[label] + centre[pred]) / 2 + rng.normal(scale=0.8, size=(len(index), 2))
        files.write_table(folder, files.MAP_FILE, pd.DataFrame({"index": index, "x": xy[:, 0], "y": xy[:, 1]}))
    if "slices" in wanted:
        error_label = label[np.isin(index, errors)]
        files.write_table(folder, files.SLICES_FILE, pd.DataFrame(
            {"index": errors, "slice": np.where(error_label == 9, files.NOISE_SLICE, error_label % N_SLICES)}))
    if "saliency" in wanted:
        pred_map = np.zeros((len(errors), 32, 32), np.uint8)
        true_map = np.zeros((len(errors), 32, 32), np.uint8)
        pred_map[:, 2:14, 2:14] = 255  # top left: what made it the predicted class
        true_map[:, 18:30, 18:30] = 200  # bottom right: what speaks for the true class
        files.write_saliency(folder, errors, pred_map, true_map)
    return folder


def _neighbours(rng, index, label, train_labels) -> pd.DataFrame:
    """K training images per test image: same-class ones first, similarity falling with rank."""
    n_train = len(train_labels)
    rows = []
    for i, y in zip(index.tolist(), label.tolist()):
        same = np.flatnonzero(train_labels == y)
        other = np.flatnonzero(train_labels != y)
        picks = np.concatenate([rng.permutation(same)[: K // 2], rng.permutation(other)])[:K]
        if len(picks) < K:
            picks = rng.choice(n_train, K, replace=False)
        similarity = np.sort(rng.uniform(0.5, 0.9, K))[::-1]
        for rank, (t, s) in enumerate(zip(picks.tolist(), similarity.tolist()), start=1):
            rows.append((i, rank, t, int(train_labels[t]), s))
    return pd.DataFrame(rows, columns=["index", "rank", "train_index", "train_label", "similarity"])


def _plant_duplicates(neighbours: pd.DataFrame, index: np.ndarray, label: np.ndarray, errors: np.ndarray,
                      train_labels: np.ndarray) -> None:
    """Make the nearest neighbour of the first N_DUPLICATES errors a near-duplicate (in place):
    of a training image with another label for the first, with the same label for the others."""
    label_of = dict(zip(index.tolist(), label.tolist()))
    for k, i in enumerate(errors[:N_DUPLICATES].tolist()):
        y = label_of[i]
        twin = int(np.flatnonzero(train_labels != y if k == 0 else train_labels == y)[0])
        row = (neighbours["index"] == i) & (neighbours["rank"] == 1)
        neighbours.loc[row, ["train_index", "train_label", "similarity"]] = [twin, int(train_labels[twin]), 0.99]


def _duplicates(neighbours: pd.DataFrame, index: np.ndarray, label: np.ndarray) -> pd.DataFrame:
    """Each image's nearest neighbour, flagged a near-duplicate above similarity 0.95."""
    first = neighbours[neighbours["rank"] == 1].set_index("index").loc[index].reset_index()
    first["label"] = label
    first["pixel_similarity"] = first["similarity"] * 0.9
    first["near_duplicate"] = first["similarity"] > 0.95
    first["label_conflict"] = first["near_duplicate"] & (first["label"] != first["train_label"])
    return first
