"""Training targets of the heads: the method's label smoothing, as explicit soft targets.

The true class gets 1 - eps and every other class eps / (K - 1). Keras's own
`label_smoothing=` argument follows another rule (1 - eps + eps/K, eps/K), so the
targets are smoothed here and the losses get them as they are.
"""

from __future__ import annotations

import numpy as np

from cifar_mtl.labels import IS_ANIMAL, NUM_CLASSES


def smooth_class_targets(labels: np.ndarray, eps: float, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(N,) int labels -> (N, K) float32 targets: 1 - eps on the label, eps/(K-1) elsewhere."""
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label smoothing eps {eps} must be in [0, 1)")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    targets = np.full((len(labels), num_classes), eps / (num_classes - 1), dtype=np.float32)
    targets[np.arange(len(labels)), labels] = 1.0 - eps
    return targets


def smooth_binary_targets(y: np.ndarray, eps: float) -> np.ndarray:
    """(N,) 0/1 targets -> (N, 1) float32: 1 - eps for the true side, eps for the other (K = 2)."""
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label smoothing eps {eps} must be in [0, 1)")
    y = np.asarray(y, dtype=np.float32).reshape(-1, 1)
    return (y * (1.0 - eps) + (1.0 - y) * eps).astype(np.float32)


def make_targets(labels: np.ndarray, eps: float, animal_eps: float | None, multitask: bool) -> dict:
    """Training targets for the model's outputs: {"class": (N, 10)} plus {"animal": (N, 1)}."""
    labels = np.asarray(labels, dtype=np.int64)
    targets = {"class": smooth_class_targets(labels, eps)}
    if multitask:
        targets["animal"] = smooth_binary_targets(IS_ANIMAL[labels], eps if animal_eps is None else animal_eps)
    return targets
