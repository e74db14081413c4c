"""Error slices: groups of misclassified test images that look alike to the model.

The misclassified images are clustered on their embeddings, so a reviewer can tag a
whole group at once. k-means (scikit-learn) is the default, with about one slice per
20 errors: on the fast recipe's 896 errors it gave 45 slices whose members share
their true->predicted pair 43% of the time (and their true class 46%), against 23%
for HDBSCAN, which left 30% of the errors unclustered and put most of the rest in 5
blobs: the errors have no dense clusters to find. The comparison is in docs/design.md
(Evidence); `slice_quality` computes its figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_mtl.evidence.files import NOISE_SLICE, EvidenceError, normalise
from cifar_mtl.labels import CLASS_NAMES, NUM_CLASSES

METHODS = ("hdbscan", "kmeans")
DEFAULT_METHOD = "kmeans"
MEAN_SLICE_SIZE = 20  # k-means: about this many errors per slice (a page of thumbnails)
MIN_SLICE_SIZE = 8  # HDBSCAN: the smallest group it reports
PCA_COMPONENTS = 32
MAX_SLICES = 100  # k-means: a weak model's thousands of errors still make a list one can browse
WIDE = 256  # k-means runs on a PCA projection to this many dimensions above it (EfficientNetV2B1: 1280)
TOP_PAIRS = 3
EXAMPLES = 8
ARROW = "→"


def error_slices(index: np.ndarray, embeddings: np.ndarray, true: np.ndarray, pred: np.ndarray,
                 seed: int = 0, method: str = DEFAULT_METHOD, n_slices: int | None = None) -> pd.DataFrame:
    """Cluster the misclassified images on their embeddings.

    Args:
        index: (N,) test-set indices of the rows.
        embeddings: (N, D) their embeddings.
        true, pred: (N,) true and predicted classes; rows with true == pred are left out.
        seed: random seed (k-means initialisation).
        method: "kmeans" or "hdbscan".
        n_slices: k-means only: the number of slices (default: one per `MEAN_SLICE_SIZE` errors).

    Returns:
        DataFrame `index` (int32), `slice` (int32): one row per misclassified image, in
        the order given. Slices are numbered 0, 1, ... from the largest; HDBSCAN's
        unclustered images get -1.
    """
    index, x, true, pred = _checked(index, embeddings, true, pred)
    wrong = true != pred
    index, x = index[wrong], normalise(x[wrong])
    if method not in METHODS:
        raise EvidenceError(f"unknown slice method {method!r}; choose one of {', '.join(METHODS)}")
    if len(index) == 0:
        return pd.DataFrame({"index": np.zeros(0, np.int32), "slice": np.zeros(0, np.int32)})
    if len(index) < 2 * MIN_SLICE_SIZE:
        cluster = np.zeros(len(index), dtype=np.int64)  # too few errors to split
    elif method == "kmeans":
        cluster = _kmeans(x, seed, n_slices)
    else:
        cluster = _hdbscan(x)
    return pd.DataFrame({"index": index.astype(np.int32), "slice": _by_size(cluster).astype(np.int32)})


def _checked(index, embeddings, true, pred):
    x = np.asarray(embeddings)
    index, true, pred = (np.asarray(a).reshape(-1) for a in (index, true, pred))
    if x.ndim != 2 or not (len(x) == len(index) == len(true) == len(pred)):
        raise EvidenceError(f"slices need one embedding, label and prediction per image: got embeddings "
                            f"{x.shape}, {len(index)} indices, {len(true)} labels, {len(pred)} predictions")
    if not np.isfinite(x).all():
        raise EvidenceError("embeddings hold NaN or infinite values; recompute them")
    return index, x, true, pred


def _reduced(x: np.ndarray, components: int = PCA_COMPONENTS) -> np.ndarray:
    """The unit rows projected on their first `components` principal axes."""
    from sklearn.decomposition import PCA

    components = min(components, x.shape[0] - 1, x.shape[1])
    if components >= x.shape[1]:
        return x
    return PCA(n_components=components, svd_solver="covariance_eigh").fit_transform(x)


def _kmeans(x: np.ndarray, seed: int, n_slices: int | None) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = n_slices or min(MAX_SLICES, max(2, round(len(x) / MEAN_SLICE_SIZE)))
    k = int(min(k, len(x)))
    if x.shape[1] > WIDE:  # the cost grows with k x rows x dimensions: a cpu_quick run's 9,000 errors took minutes
        x = _reduced(x, WIDE)
    # On unit rows Euclidean k-means is spherical k-means up to the centroids' length.
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def _hdbscan(x: np.ndarray) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    # HDBSCAN's density estimate degrades in many dimensions: it runs on a PCA projection.
    return HDBSCAN(min_cluster_size=MIN_SLICE_SIZE, min_samples=MIN_SLICE_SIZE // 2, copy=False).fit_predict(
        _reduced(x))


def _by_size(cluster: np.ndarray) -> np.ndarray:
    """Cluster labels renumbered 0.. from the largest (ties by first appearance); -1 kept."""
    out = np.full(len(cluster), NOISE_SLICE, dtype=np.int64)
    ids, first, counts = np.unique(cluster[cluster >= 0], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    for new, old in enumerate(ids[order]):
        out[cluster == old] = new
    return out


# --- what a slice holds ------------------------------------------------------------------


def pair_text(true: int, pred: int) -> str:
    return f"{CLASS_NAMES[int(true)]}{ARROW}{CLASS_NAMES[int(pred)]}"


def slice_summary(members: pd.DataFrame, predictions: pd.DataFrame, embeddings: np.ndarray | None = None,
                  top: int = TOP_PAIRS, examples: int = EXAMPLES) -> pd.DataFrame:
    """One row per slice, from its members and the run's predictions table.

    Args:
        members: `slices.parquet`'s table (`index`, `slice`).
        predictions: the run's predictions table (`index`, `label`, `pred`, `confidence`).
        embeddings: (N_test, D) test embeddings by test index, optional: with them the
            examples are the members closest to the slice's centre, without them the
            most confident errors.
        top: how many true->predicted pairs `top_pairs` names.
        examples: how many member indices `examples` lists.

    Returns:
        DataFrame sorted by `slice` (unclustered, -1, last): `slice`, `size`, `top_pairs`
        (text like "cat→dog 41, dog→cat 12"), `top_pair` ("cat→dog"), `top_pair_share`
        (its share of the slice, 0..1), `pairs` (distinct pairs), `mean_confidence`,
        `examples` (list of test indices).
    """
    table = _joined(members, predictions)
    rows = []
    for slice_id, group in table.groupby("slice", sort=True):
        pairs = group.groupby(["label", "pred"]).size().sort_values(ascending=False, kind="stable")
        (t, p), n_top = pairs.index[0], int(pairs.iloc[0])
        rows.append({
            "slice": int(slice_id),
            "size": len(group),
            "top_pairs": ", ".join(f"{pair_text(a, b)} {int(n)}" for (a, b), n in pairs.head(top).items()),
            "top_pair": pair_text(t, p),
            "top_pair_share": n_top / len(group),
            "pairs": len(pairs),
            "mean_confidence": float(group["confidence"].mean()),
            "examples": _examples(group, embeddings, examples),
        })
    columns = ["slice", "size", "top_pairs", "top_pair", "top_pair_share", "pairs", "mean_confidence", "examples"]
    out = pd.DataFrame(rows, columns=columns)
    order = np.argsort(np.where(out["slice"] < 0, np.iinfo(np.int32).max, out["slice"]), kind="stable")
    return out.iloc[order].reset_index(drop=True)


def _joined(members: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    for name, df, cols in (("members", members, ("index", "slice")),
                           ("predictions", predictions, ("index", "label", "pred", "confidence"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise EvidenceError(f"slice {name} table lacks column(s) {', '.join(missing)}")
    table = members[["index", "slice"]].merge(predictions[["index", "label", "pred", "confidence"]],
                                              on="index", how="left", validate="one_to_one")
    if table["label"].isna().any():
        lost = table.loc[table["label"].isna(), "index"].head(5).tolist()
        raise EvidenceError(f"slice members {lost} are not in the predictions table: the slices belong to "
                            "other predictions; recompute them with `python -m cifar_mtl evidence --run ID`")
    return table


def _examples(group: pd.DataFrame, embeddings: np.ndarray | None, n: int) -> list[int]:
    if embeddings is None:
        order = np.argsort(-group["confidence"].to_numpy(), kind="stable")
    else:
        x = normalise(np.asarray(embeddings)[group["index"].to_numpy()])
        centre = x.mean(axis=0)
        order = np.argsort(-(x @ centre), kind="stable")
    return [int(i) for i in group["index"].to_numpy()[order[:n]]]


# --- how coherent the slices are ---------------------------------------------------------


def slice_quality(members: pd.DataFrame, embeddings: np.ndarray, true: np.ndarray, pred: np.ndarray
                  ) -> dict[str, float]:
    """Coherence figures of a slicing of the errors.

    Args:
        members: `index`, `slice` (from `error_slices`).
        embeddings, true, pred: by test index (N_test rows).

    Returns:
        `slices` (count, -1 excluded), `clustered` (share of errors in a slice),
        `pair_purity` (share of clustered errors whose slice's most common true->predicted
        pair is their own), `true_purity` (the same for the true class alone),
        `silhouette` (cosine, clustered errors only; -1..1), `median_size`.
    """
    from sklearn.metrics import silhouette_score

    true, pred = np.asarray(true), np.asarray(pred)
    idx, s = members["index"].to_numpy(), members["slice"].to_numpy()
    keep = s >= 0
    idx, s = idx[keep], s[keep]
    pair = true[idx] * NUM_CLASSES + pred[idx]

    def purity(groups: np.ndarray) -> float:
        hits = sum(np.bincount(groups[s == k]).max() for k in np.unique(s))
        return hits / max(1, len(s))

    n_slices = len(np.unique(s))
    sil = (silhouette_score(normalise(np.asarray(embeddings)[idx]), s, metric="cosine")
           if 1 < n_slices < len(s) else float("nan"))
    return {
        "slices": float(n_slices),
        "clustered": float(keep.mean()) if len(keep) else float("nan"),
        "pair_purity": purity(pair),
        "true_purity": purity(true[idx]),
        "silhouette": float(sil),
        "median_size": float(np.median(np.bincount(s))) if len(s) else float("nan"),
    }
