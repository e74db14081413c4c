"""Near-duplicates: test images whose training set holds (almost) the same picture.

A test image the model has, in effect, seen in training says little about
generalisation; one whose near-identical training twin carries another label is one
of the strongest mislabel signals there is. Candidates are each test image's nearest
training images in embedding space (they share its meaning); the verdict comes from
the pixels (`pixel_similarity`), since two different photos of one kind of object are
close in embedding space too: on the fast recipe's airbench embeddings the median
test image's nearest training image has cosine similarity 0.974, twins or not. The
thresholds were set by looking at real pairs (docs/design.md, Evidence).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_mtl.evidence.files import EvidenceError

PIXEL_THRESHOLD = 0.80  # pixel_similarity at or over it: the same photo (docs/design.md, Evidence)
# Without the images only the embeddings speak: on the fast recipe's airbench run, 90% of
# rank-1 pairs at 0.995 or over were twins by the pixel check, but they were 9% of the twins.
EMBEDDING_THRESHOLD = 0.995
MAX_SHIFT = 1  # pooled pixels (2 original ones): CIFAR's duplicates are often re-crops of one photo
DETAIL_SIGMA = 1.5  # pooled pixels
# A pair whose coarse (8x8, unshifted) colour correlation is under this is no twin: no
# twin of the measured run was under 0.58. Skipping them saves ~70% of the pixel work.
COARSE_FLOOR = 0.4
CHUNK = 8192  # pairs compared at once (bounded memory: ~50 MB per chunk)


def near_duplicates(neighbours: pd.DataFrame, test_labels: np.ndarray, test_images: np.ndarray | None = None,
                    train_images: np.ndarray | None = None, threshold: float = EMBEDDING_THRESHOLD,
                    pixel_threshold: float = PIXEL_THRESHOLD) -> pd.DataFrame:
    """Each test image's closest training picture among its nearest training images, and
    whether the two are near-duplicates.

    Args:
        neighbours: `nearest_training`'s table (all k ranks are candidates).
        test_labels: (N_test,) test labels by test index.
        test_images, train_images: (N, 32, 32, 3) uint8 images by index. With them, the
            row is the neighbour with the highest `pixel_similarity`, a near-duplicate at
            `pixel_threshold` or over. Without them, the row is the rank-1 neighbour, a
            near-duplicate at embedding similarity `threshold` or over (few twins are found so).
        threshold: least embedding cosine similarity, used without images.
        pixel_threshold: least pixel similarity, used with images.

    Returns:
        DataFrame, one row per test image in `neighbours`, sorted by `index`: `index`,
        `train_index`, `train_label`, `label`, `similarity` (embedding cosine),
        `pixel_similarity` (NaN without images), `near_duplicate`, `label_conflict` (a
        near-duplicate whose training label differs from the test label).
    """
    table = _checked_neighbours(neighbours, test_labels)
    if (test_images is None) != (train_images is None):
        raise EvidenceError("pass both test_images and train_images, or neither")
    if test_images is None:
        chosen = table[table["rank"] == 1]
        pixels = np.full(len(chosen), np.nan, dtype=np.float32)
        duplicate = chosen["similarity"].to_numpy() >= threshold
    else:
        table = table.assign(pixel=_pair_similarity(table, np.asarray(test_images), np.asarray(train_images)))
        # Best picture first; rank 1 wins among pairs all skipped as unlike (-inf).
        best = table.sort_values(["index", "pixel", "rank"], ascending=[True, False, True], kind="stable")
        chosen = best.drop_duplicates("index")
        pixels = chosen["pixel"].to_numpy(dtype=np.float32)
        duplicate = pixels >= pixel_threshold
        pixels = np.where(np.isfinite(pixels), pixels, np.nan).astype(np.float32)
    index = chosen["index"].to_numpy()
    label = np.asarray(test_labels).reshape(-1)[index]
    train_label = chosen["train_label"].to_numpy()
    return pd.DataFrame({
        "index": index.astype(np.int32),
        "train_index": chosen["train_index"].to_numpy().astype(np.int32),
        "train_label": train_label.astype(np.int8),
        "label": label.astype(np.int8),
        "similarity": chosen["similarity"].to_numpy(dtype=np.float32),
        "pixel_similarity": pixels,
        "near_duplicate": duplicate,
        "label_conflict": duplicate & (train_label != label),
    })


def _checked_neighbours(neighbours: pd.DataFrame, test_labels) -> pd.DataFrame:
    missing = [c for c in ("index", "rank", "train_index", "train_label", "similarity") if c not in neighbours]
    if missing:
        raise EvidenceError(f"the neighbours table lacks column(s) {', '.join(missing)}")
    table = neighbours.sort_values(["index", "rank"], kind="stable").reset_index(drop=True)
    first = table[table["rank"] == 1]
    if len(first) == 0 or first["index"].duplicated().any() or first["index"].nunique() != table["index"].nunique():
        raise EvidenceError("the neighbours table needs exactly one rank-1 row per test image")
    n_labels = len(np.asarray(test_labels).reshape(-1))
    if table["index"].max() >= n_labels:
        raise EvidenceError(f"neighbours name test image {table['index'].max()} but there are {n_labels} labels")
    return table


def _pair_similarity(table: pd.DataFrame, test_images: np.ndarray, train_images: np.ndarray) -> np.ndarray:
    """`pixel_similarity` of each (index, train_index) row; -inf for pairs the coarse check
    already rules out (kept for rank 1, so every test image has a measured row)."""
    test_index, train_index = table["index"].to_numpy(), table["train_index"].to_numpy()
    if test_index.max() >= len(test_images) or train_index.max() >= len(train_images):
        raise EvidenceError(f"neighbours name images beyond the {len(test_images)} test and "
                            f"{len(train_images)} training images given")
    used = np.unique(test_index)
    test_features = picture_features(test_images[used])
    row_of = np.zeros(test_index.max() + 1, dtype=np.int64)
    row_of[used] = np.arange(len(used))
    out = np.full(len(table), -np.inf)
    rank1 = table["rank"].to_numpy() == 1
    for start in range(0, len(table), CHUNK):
        part = slice(start, start + CHUNK)
        tf = tuple(f[row_of[test_index[part]]] for f in test_features)
        rf = picture_features(train_images[train_index[part]])
        keep = (_coarse_correlation(tf[0], rf[0]) >= COARSE_FLOOR) | rank1[part]
        out[part][keep] = feature_similarity(tuple(f[keep] for f in tf), tuple(f[keep] for f in rf))
    return out


def _coarse_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unshifted correlation of (N, 3, h, w) pictures pooled once more (to 8x8 from 32x32 images)."""
    def pool(x):
        return (x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2] + x[:, :, 1::2, 1::2]) / 4

    return _correlation(pool(a), pool(b))


def pixel_similarity(a: np.ndarray, b: np.ndarray, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """How alike image pairs are as pictures, not in meaning: 1 for the same photo.

    Both images are pooled to half size (2x2 means: this also damps JPEG noise) and
    compared in colour twice, each time by Pearson correlation at the best shift of up
    to `max_shift` pooled pixels (2 original pixels) each way: the whole picture, and
    its detail (the picture minus a Gaussian blur of sigma 1.5 pooled pixels: edges and
    texture without the layout, since sea-and-sky scenes or catalogue cars on white
    share their layout without being one photo). The result is the mean of the two.

    Args:
        a, b: (N, H, W, 3) images (H, W even), pair i = (a[i], b[i]).

    Returns:
        (N,) float32 in -1..1. A flat image correlates with nothing (0).
    """
    fa, fb = picture_features(a), picture_features(b)
    if fa[0].shape != fb[0].shape:
        raise EvidenceError(f"image pairs of different shapes {np.shape(a)} and {np.shape(b)}")
    return feature_similarity(fa, fb, max_shift)


def picture_features(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whole, detail) of (N, H, W, 3) images, as `pixel_similarity` compares them: each
    (N, 3, H/2, W/2) float64. Computing them once per image saves work when an image is
    in several pairs."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] % 2 or x.shape[2] % 2:
        raise EvidenceError(f"images must be (N, H, W, 3) with even H and W, got shape {x.shape}")
    blocks = (x[:, 0::2, 0::2].astype(np.uint16) + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])
    whole = np.ascontiguousarray(np.moveaxis(blocks, -1, 1), dtype=np.float64) / 4
    return whole, _detail(whole)


def feature_similarity(fa: tuple[np.ndarray, np.ndarray], fb: tuple[np.ndarray, np.ndarray],
                       max_shift: int = MAX_SHIFT) -> np.ndarray:
    """`pixel_similarity` of pairs given as `picture_features` (row i of each)."""
    whole = _best_correlation(fa[0], fb[0], max_shift)
    detail = _best_correlation(fa[1], fb[1], max_shift)
    return ((whole + detail) / 2).astype(np.float32)


def _detail(x: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return x - gaussian_filter(x, sigma=(0, 0, DETAIL_SIGMA, DETAIL_SIGMA))


def _best_correlation(a: np.ndarray, b: np.ndarray, max_shift: int) -> np.ndarray:
    """The best Pearson correlation of (N, C, h, w) pairs, all channels together (so a
    colour change is a pattern change), over shifts of up to `max_shift`, on the overlap."""
    h, w = a.shape[2:]
    best = np.full(len(a), -1.0)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            pa = a[:, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
            pb = b[:, :, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            best = np.maximum(best, _correlation(pa, pb))
    return best


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of (N, C, h, w) windows, from sums (no centred copies)."""
    m = a[0].size
    sa, sb = a.sum(axis=(1, 2, 3)), b.sum(axis=(1, 2, 3))
    cov = np.einsum("nchw,nchw->n", a, b) - sa * sb / m
    var_a = np.einsum("nchw,nchw->n", a, a) - sa * sa / m
    var_b = np.einsum("nchw,nchw->n", b, b) - sb * sb / m
    # A flat picture (a variance of ~0, up to rounding) correlates with nothing.
    flat = np.minimum(var_a, var_b) <= 1e-6 * m
    return np.where(flat, 0.0, cov / np.sqrt(np.where(flat, 1.0, var_a * var_b)))
