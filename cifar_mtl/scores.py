"""Scores of class decisions, arrays in and arrays out: accuracy by class and cross-group errors.

The one place these are computed: a run's summary figures (`predictions.summary_metrics`,
metrics.json) and the error analysis (`analysis.per_class_accuracy`, `analysis.cross_group`)
both call these functions, so the app and metrics.json always show the same numbers.
"""

from __future__ import annotations

import numpy as np

from cifar_mtl.labels import IS_ANIMAL, NUM_CLASSES


def per_class(labels, correct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, correct decisions and accuracy per class.

    Args:
        labels: (N,) true classes 0..9.
        correct: (N,) bool, the decision was right.

    Returns:
        (n, k, accuracy), each of shape (10,): n and k int64, accuracy float64 k / n
        (NaN for a class with no images).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = np.bincount(labels, minlength=NUM_CLASSES)
    k = np.bincount(labels, weights=np.asarray(correct, dtype=bool), minlength=NUM_CLASSES).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    return n, k, accuracy


def cross_group(labels, pred) -> np.ndarray:
    """(N,) bool: the predicted class is on the other side of the animal/vehicle line than the label.

    Such a decision is always an error; labels and pred are (N,) classes 0..9.
    """
    return IS_ANIMAL[np.asarray(labels, dtype=np.int64)] != IS_ANIMAL[np.asarray(pred, dtype=np.int64)]
