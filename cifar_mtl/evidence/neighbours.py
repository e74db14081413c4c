"""Each test image's nearest training images in embedding space (exact cosine search).

The search is scikit-learn's brute-force `NearestNeighbors` with the Euclidean
metric on L2-normalised float32 rows: for unit vectors ||a - b||^2 = 2 - 2 cos(a, b),
so the order is exactly the cosine order, and Euclidean is the metric scikit-learn
runs through its chunked, multi-threaded GEMM + heap kernel (`ArgKmin`). Its own
`metric="cosine"` takes the generic path (a full distance block, then argpartition):
same answer, about twice the CPU time here (docs/design.md, Evidence).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_mtl.evidence.files import EvidenceError, normalise
from cifar_mtl.labels import NUM_CLASSES

DEFAULT_K = 8


def nearest_training(test_emb: np.ndarray, train_emb: np.ndarray, train_labels: np.ndarray,
                     k: int = DEFAULT_K) -> pd.DataFrame:
    """The `k` training images most cosine-similar to each test image.

    Args:
        test_emb: (N_test, D) test embeddings in test-set order (any float dtype; rows
            are re-normalised here, so float16 rounding does not bend the order).
        train_emb: (N_train, D) training embeddings in training-set order.
        train_labels: (N_train,) training labels 0..9.
        k: neighbours per test image (at most N_train).

    Returns:
        DataFrame with N_test * k rows sorted by `index` then `rank`: `index` (test
        index, int32), `rank` (1 = nearest, int16), `train_index` (int32),
        `train_label` (int8), `similarity` (cosine in -1..1, float32).
    """
    from sklearn.neighbors import NearestNeighbors

    test, train, train_labels = _checked(test_emb, train_emb, train_labels, k)
    search = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean").fit(train)
    distance, neighbour = search.kneighbors(test)
    similarity = np.clip(1.0 - distance.astype(np.float64) ** 2 / 2.0, -1.0, 1.0)
    n = len(test)
    return pd.DataFrame({
        "index": np.repeat(np.arange(n, dtype=np.int32), k),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), n),
        "train_index": neighbour.reshape(-1).astype(np.int32),
        "train_label": train_labels[neighbour.reshape(-1)].astype(np.int8),
        "similarity": similarity.reshape(-1).astype(np.float32),
    })


def _checked(test_emb, train_emb, train_labels, k: int):
    test, train = np.asarray(test_emb), np.asarray(train_emb)
    labels = np.asarray(train_labels).reshape(-1)
    for name, x in (("test", test), ("train", train)):
        if x.ndim != 2 or len(x) == 0:
            raise EvidenceError(f"{name} embeddings must be a non-empty (N, D) array, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise EvidenceError(f"{name} embeddings hold NaN or infinite values; recompute them")
    if test.shape[1] != train.shape[1]:
        raise EvidenceError(f"test embeddings have {test.shape[1]} dimensions and training embeddings "
                            f"{train.shape[1]}: they come from different models; recompute both")
    if len(labels) != len(train):
        raise EvidenceError(f"{len(labels)} training labels for {len(train)} training embeddings; "
                            "the embeddings were computed on another training set")
    if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any() or (labels >= NUM_CLASSES).any():
        raise EvidenceError("training labels must be whole numbers 0..9")
    if not 1 <= int(k) <= len(train):
        raise EvidenceError(f"k must be between 1 and the {len(train)} training images, got {k}")
    return normalise(test), normalise(train), labels
