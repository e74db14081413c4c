"""A 2-D map of the test embeddings (`map.parquet`), and the figures that chose its method.

Three methods, each a maintained library: openTSNE (t-SNE with FFT-accelerated
gradients), UMAP (umap-learn) and scikit-learn's Barnes-Hut t-SNE after a 50-component
PCA. openTSNE is the default: on the fast recipe's 10,000 test embeddings it kept
classes as well as the others and confusion pairs of errors apart better than UMAP,
in less CPU time than either, and it needs neither numba nor TensorFlow (importing
umap-learn imports TensorFlow when it is installed). The comparison table is in
docs/design.md (Evidence); `layout_quality` computes its figures. openTSNE and UMAP
are optional dependencies of the other methods: only the default is required.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_mtl.evidence.files import EvidenceError, normalise

METHODS = ("opentsne", "umap", "tsne")
DEFAULT_METHOD = "opentsne"
NEIGHBOURS = 15  # UMAP's n_neighbors; t-SNE's perplexity is twice it (30), its usual value
PCA_COMPONENTS = 50


def layout_2d(embeddings: np.ndarray, method: str = DEFAULT_METHOD, seed: int = 0,
              index: np.ndarray | None = None, n_jobs: int = 1) -> pd.DataFrame:
    """Lay the embeddings out in 2-D so that similar images land close together.

    Args:
        embeddings: (N, D) embeddings (cosine geometry: rows are L2-normalised here).
        method: "opentsne", "umap" or "tsne" (scikit-learn, after PCA).
        seed: random seed; the same seed and data give the same layout.
        index: (N,) test-set indices of the rows; defaults to 0..N-1.
        n_jobs: threads for the t-SNEs. One, by default: on 2 shared cores openTSNE's
            OpenMP threads wait on each other (10,000 points: 31 s with one thread,
            43 s with two; 150 points: 1 s and 22 s).

    Returns:
        DataFrame `index` (int32), `x`, `y` (float32, centred, the wider spread scaled to
        unit standard deviation, so maps of different methods share one scale).
    """
    x = _checked(embeddings)
    index = np.arange(len(x)) if index is None else np.asarray(index).reshape(-1)
    if len(index) != len(x):
        raise EvidenceError(f"{len(index)} indices for {len(x)} embeddings")
    if method not in METHODS:
        raise EvidenceError(f"unknown layout method {method!r}; choose one of {', '.join(METHODS)}")
    if len(x) <= 3 * NEIGHBOURS:
        # Too few points for a neighbourhood graph or a perplexity of 30: PCA shows them as they are.
        xy = _pca(x, 2)
    else:
        xy = {"umap": _umap, "opentsne": _opentsne, "tsne": _sklearn_tsne}[method](x, seed, n_jobs)
    xy = np.asarray(xy, dtype=np.float64)
    xy = xy - xy.mean(axis=0)
    spread = xy.std(axis=0).max()
    xy = xy / (spread if spread > 0 else 1.0)
    return pd.DataFrame({"index": index.astype(np.int32), "x": xy[:, 0].astype(np.float32),
                         "y": xy[:, 1].astype(np.float32)})


def _checked(embeddings) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or len(x) < 3 or x.shape[1] < 2:
        raise EvidenceError(f"a map needs at least 3 embeddings of 2+ dimensions, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise EvidenceError("embeddings hold NaN or infinite values; recompute them")
    return normalise(x)


def _pca(x: np.ndarray, components: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    components = min(components, x.shape[0], x.shape[1])
    return PCA(n_components=components, svd_solver="covariance_eigh").fit_transform(x)


def _umap(x: np.ndarray, seed: int, n_jobs: int) -> np.ndarray:
    try:
        import umap
    except ImportError:
        raise EvidenceError("the 'umap' map method needs umap-learn: pip install umap-learn") from None

    # random_state makes UMAP reproducible and single-threaded; n_jobs is ignored then.
    reducer = umap.UMAP(n_neighbors=NEIGHBOURS, min_dist=0.1, metric="cosine", random_state=seed,
                        n_components=2)
    return reducer.fit_transform(x)


def _opentsne(x: np.ndarray, seed: int, n_jobs: int) -> np.ndarray:
    from openTSNE import TSNE

    tsne = TSNE(perplexity=2 * NEIGHBOURS, metric="cosine", initialization="pca", random_state=seed,
                n_jobs=n_jobs, verbose=False)
    return np.asarray(tsne.fit(x))


def _sklearn_tsne(x: np.ndarray, seed: int, n_jobs: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    reduced = _pca(x, PCA_COMPONENTS)
    tsne = TSNE(n_components=2, perplexity=2 * NEIGHBOURS, init="pca", random_state=seed, n_jobs=n_jobs)
    return tsne.fit_transform(reduced)


# --- how good a layout is --------------------------------------------------------------


def knn_agreement(points: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Share of points whose `k` nearest other points (Euclidean) mostly share their group.

    Leave-one-out k-NN accuracy: 1.0 when every group is a separate island, about
    the largest group's share when the layout ignores the groups.
    """
    from sklearn.neighbors import NearestNeighbors

    points, groups = np.asarray(points, dtype=np.float32), np.asarray(groups).reshape(-1)
    _, uniq = np.unique(groups, return_inverse=True)
    k = min(k, len(points) - 1)
    _, neighbour = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    votes = uniq[neighbour[:, 1:]]  # column 0 is the point itself
    counts = np.apply_along_axis(np.bincount, 1, votes, minlength=uniq.max() + 1)
    return float((counts.argmax(axis=1) == uniq).mean())


def layout_quality(embeddings: np.ndarray, xy: np.ndarray, labels: np.ndarray, pred: np.ndarray,
                   sample: int = 3000, seed: int = 0) -> dict[str, float]:
    """How well a 2-D layout keeps classes and error groups apart.

    Args:
        embeddings: (N, D) the embeddings laid out; xy: (N, 2) the layout.
        labels, pred: (N,) true and predicted classes.
        sample: points for trustworthiness (it compares all pairs).

    Returns:
        `class_knn`: k-NN (k=10) accuracy of the true class in 2-D (and `class_knn_full`
        in the full space, the ceiling); `error_pair_knn`: among the misclassified, k-NN
        (k=5) accuracy of the true->predicted pair in 2-D (and `error_pair_knn_full`);
        `trustworthiness` (scikit-learn, 10 neighbours, cosine, on `sample` points).
    """
    from sklearn.manifold import trustworthiness

    x = normalise(embeddings)
    xy = np.asarray(xy, dtype=np.float32)
    labels, pred = np.asarray(labels).reshape(-1), np.asarray(pred).reshape(-1)
    wrong = labels != pred
    pairs = labels[wrong] * 100 + pred[wrong]
    pick = np.random.default_rng(seed).choice(len(x), size=min(sample, len(x)), replace=False)
    return {
        "class_knn": knn_agreement(xy, labels, 10),
        "class_knn_full": knn_agreement(x, labels, 10),
        "error_pair_knn": knn_agreement(xy[wrong], pairs, 5) if wrong.sum() > 5 else float("nan"),
        "error_pair_knn_full": knn_agreement(x[wrong], pairs, 5) if wrong.sum() > 5 else float("nan"),
        "trustworthiness": float(trustworthiness(x[pick], xy[pick], n_neighbors=10, metric="cosine")),
    }
