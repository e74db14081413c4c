"""Near-duplicates: test images whose closest training image is (almost) the same picture.

A test image the model has, in effect, seen in training says little about
generalisation; one whose near-identical training twin carries another label is one
of the strongest mislabel signals there is. The verdict comes from the nearest
training image in embedding space (cosine similarity, semantic) confirmed, when the
images are at hand, by the pixels themselves (correlation allowing a small shift),
since two different photos of the same kind of object can be close in embedding
space. The thresholds were set by looking at real pairs (docs/design.md, Evidence).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_mtl.evidence.files import EvidenceError

EMBEDDING_THRESHOLD = 0.95
PIXEL_THRESHOLD = 0.9
MAX_SHIFT = 2  # pixels: CIFAR's duplicates are often re-crops of the same photo


def near_duplicates(neighbours: pd.DataFrame, test_labels: np.ndarray, test_images: np.ndarray | None = None,
                    train_images: np.ndarray | None = None, threshold: float = EMBEDDING_THRESHOLD,
                    pixel_threshold: float = PIXEL_THRESHOLD) -> pd.DataFrame:
    """Each test image's closest training image, and whether the pair is a near-duplicate.

    Args:
        neighbours: `nearest_training`'s table (rank 1 rows are used).
        test_labels: (N_test,) test labels by test index.
        test_images, train_images: (N, 32, 32, 3) uint8 images by index, optional.
        threshold: least embedding cosine similarity for a near-duplicate.
        pixel_threshold: with images, also the least pixel similarity.

    Returns:
        DataFrame, one row per test image in `neighbours`, sorted by `index`: `index`,
        `train_index`, `train_label`, `label`, `similarity` (embedding cosine),
        `pixel_similarity` (see `pixel_similarity`; NaN without images),
        `near_duplicate`, `label_conflict` (a near-duplicate whose training label differs).
    """
    missing = [c for c in ("index", "rank", "train_index", "train_label", "similarity") if c not in neighbours]
    if missing:
        raise EvidenceError(f"the neighbours table lacks column(s) {', '.join(missing)}")
    first = neighbours[neighbours["rank"] == 1].sort_values("index")
    if first["index"].duplicated().any() or len(first) == 0:
        raise EvidenceError("the neighbours table needs exactly one rank-1 row per test image")
    index, train_index = first["index"].to_numpy(), first["train_index"].to_numpy()
    test_labels = np.asarray(test_labels).reshape(-1)
    if index.max() >= len(test_labels):
        raise EvidenceError(f"neighbours name test image {index.max()} but there are {len(test_labels)} labels")
    label = test_labels[index]
    similarity = first["similarity"].to_numpy(dtype=np.float32)
    duplicate = similarity >= threshold
    if test_images is not None and train_images is not None:
        pixels = pixel_similarity(np.asarray(test_images)[index], np.asarray(train_images)[train_index])
        duplicate &= pixels >= pixel_threshold
    elif test_images is not None or train_images is not None:
        raise EvidenceError("pass both test_images and train_images, or neither")
    else:
        pixels = np.full(len(index), np.nan, dtype=np.float32)
    train_label = first["train_label"].to_numpy()
    return pd.DataFrame({
        "index": index.astype(np.int32),
        "train_index": train_index.astype(np.int32),
        "train_label": train_label.astype(np.int8),
        "label": label.astype(np.int8),
        "similarity": similarity,
        "pixel_similarity": pixels.astype(np.float32),
        "near_duplicate": duplicate,
        "label_conflict": duplicate & (train_label != label),
    })


def pixel_similarity(a: np.ndarray, b: np.ndarray, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Pixel-space similarity of image pairs: the best Pearson correlation of their grey
    levels over shifts of up to `max_shift` pixels each way (on the overlap).

    Args:
        a, b: (N, H, W, 3) or (N, H, W) images, pair i = (a[i], b[i]).

    Returns:
        (N,) float32 in -1..1; 1 for the same picture, shifted or with changed brightness
        or contrast. A flat image correlates with nothing (0).
    """
    a, b = _grey(a), _grey(b)
    if a.shape != b.shape:
        raise EvidenceError(f"image pairs of different shapes {a.shape} and {b.shape}")
    h, w = a.shape[1:]
    best = np.full(len(a), -1.0)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            pa = a[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
            pb = b[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            best = np.maximum(best, _correlation(pa, pb))
    return best.astype(np.float32)


def _grey(images: np.ndarray) -> np.ndarray:
    """Grey levels (ITU-R 601 luma) as float64: the correlation's sums of squares need its precision."""
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[-1] == 3:
        x = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]  # 15x NumPy's uint8 @ float matmul
    if x.ndim != 3:
        raise EvidenceError(f"images must be (N, H, W, 3) or (N, H, W), got shape {np.shape(images)}")
    return x.astype(np.float64)


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of (N, h, w) windows, from sums (no centred copies)."""
    m = a[0].size
    sa, sb = a.sum(axis=(1, 2)), b.sum(axis=(1, 2))
    cov = np.einsum("nij,nij->n", a, b) - sa * sb / m
    var_a = np.einsum("nij,nij->n", a, a) - sa * sa / m
    var_b = np.einsum("nij,nij->n", b, b) - sb * sb / m
    # A flat window (a grey-level variance of ~0, up to rounding) correlates with nothing.
    flat = np.minimum(var_a, var_b) <= 1e-6 * m
    denominator = np.sqrt(np.where(flat, 1.0, var_a * var_b))
    return np.where(flat, 0.0, cov / denominator)
