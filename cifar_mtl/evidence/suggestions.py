"""Category suggestions: a small classifier trained on one reviewer's tags proposes
categories for the errors that reviewer has not tagged yet.

One logistic regression per category (one-vs-rest: an error may carry several
categories) on the error's embedding (PCA-reduced), its true->predicted pair and its
confidence. Its precision and recall are measured out of fold (stratified k-fold),
with the number of positives beside them, and a category with too few tags gets no
model and says so. Nothing here writes a tag: a suggestion becomes a tag only when a
reviewer accepts it, through the review store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cifar_mtl.evidence.files import EvidenceError, normalise
from cifar_mtl.labels import NUM_CLASSES

# Tagged errors before any suggestion. With stand-in categories on a real run, the
# precision reported at 30 tagged errors overstated the precision met on the untagged
# ones by up to 0.16; from 50 on, by at most 0.11 (docs/design.md, Evidence).
MIN_TAGGED = 50
MIN_POSITIVES = 5  # per category, and as many errors without it: one of each per fold
FOLDS = 5
PCA_COMPONENTS = 32
C = 0.5  # inverse L2 strength: a few dozen tags must not fit noise
BETA = 0.5  # the threshold maximises F-beta: a wrong suggestion costs a reviewer more than a missed one
MIN_LIFT = 1.5  # out-of-fold precision over the category's share of tagged errors, to suggest at all

STATUS_OK = "ok"
STATUS_TOO_FEW = "too few"
STATUS_WEAK = "weak"


@dataclass
class Suggestions:
    """What `fit_suggestions` learnt.

    Attributes:
        scores: DataFrame (index: test index of every feature row; one float column per
            category, 0..1), NaN in the columns of categories without a model.
        metrics: DataFrame indexed by category: `n_positive`, `n_negative` (tagged errors
            with / without it), `precision`, `recall` (out of fold, NaN when too few),
            `threshold`, `status`: "ok"; "too few" (tags); or "weak", when out-of-fold
            precision is under `MIN_LIFT` times the category's share of the tagged
            errors, i.e. the model does little better than suggesting it everywhere.
        tagged: test indices the model was trained on (never suggested to).
    """

    scores: pd.DataFrame
    metrics: pd.DataFrame
    tagged: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def thresholds(self) -> pd.Series:
        return self.metrics["threshold"]

    def suggested(self, include_tagged: bool = False) -> pd.DataFrame:
        """Rows (`index`, `category`, `score`, `precision`) with a score at or over the
        category's threshold, for the "ok" categories; untagged rows only unless
        `include_tagged`; by index, then best score first."""
        ok = self.metrics.index[self.metrics["status"] == STATUS_OK]
        long = self.scores[list(ok)].stack().rename("score").reset_index()
        long.columns = ["index", "category", "score"]
        long = long[long["score"] >= long["category"].map(self.metrics["threshold"]).astype(float)]
        if not include_tagged:
            long = long[~long["index"].isin(self.tagged)]
        long["precision"] = long["category"].map(self.metrics["precision"]).astype(float)
        return long.sort_values(["index", "score"], ascending=[True, False]).reset_index(drop=True)


def suggestion_features(embeddings: np.ndarray, predictions: pd.DataFrame) -> np.ndarray:
    """Features of each row of `predictions`: its embedding, its confusion pair, its confidence.

    Args:
        embeddings: (N_test, D) test embeddings, row i = test image i.
        predictions: rows of the predictions table to describe (usually the errors):
            `index`, `label`, `pred`, `confidence`.

    Returns:
        (len(predictions), F) float32: the embedding's first 32 principal components (fit on
        these rows, whitened so each has unit variance), one-hot true->predicted pair
        (100 columns), confidence. The PCA sees no tags, so it leaks nothing into the
        cross-validation.
    """
    from sklearn.decomposition import PCA

    missing = [c for c in ("index", "label", "pred", "confidence") if c not in predictions.columns]
    if missing:
        raise EvidenceError(f"the predictions table lacks column(s) {', '.join(missing)}")
    embeddings = np.asarray(embeddings)
    idx = predictions["index"].to_numpy()
    if embeddings.ndim != 2 or len(idx) and (idx.min() < 0 or idx.max() >= len(embeddings)):
        raise EvidenceError(f"embeddings of shape {embeddings.shape} do not cover the predictions' indices; "
                            "recompute them with `python -m cifar_mtl evidence --run ID`")
    x = normalise(embeddings[idx])
    components = min(PCA_COMPONENTS, x.shape[1], max(len(x) - 1, 0))
    if components >= 1:
        reduced = PCA(n_components=components, whiten=True, svd_solver="covariance_eigh").fit_transform(x)
    else:
        reduced = np.zeros((len(x), 0))
    pair = predictions["label"].to_numpy().astype(int) * NUM_CLASSES + predictions["pred"].to_numpy().astype(int)
    one_hot = np.zeros((len(x), NUM_CLASSES * NUM_CLASSES), dtype=np.float32)
    one_hot[np.arange(len(x)), pair] = 1.0
    confidence = predictions["confidence"].to_numpy(dtype=np.float32).reshape(-1, 1)
    return np.hstack([reduced, one_hot, confidence]).astype(np.float32)


def fit_suggestions(features: np.ndarray, tagged_index, tag_sets, categories, seed: int = 0,
                    index=None) -> Suggestions:
    """Train one classifier per category on a reviewer's tagged errors and score every row.

    Args:
        features: (N, F) from `suggestion_features`.
        tagged_index: test indices of the tagged errors (each must be one of `index`).
        tag_sets: for each tagged error, the categories it carries (an iterable of names;
            an empty one counts as tagged with none).
        categories: every category name, in display order.
        seed: fold assignment.
        index: (N,) test indices of the feature rows; default 0..N-1.

    Returns:
        `Suggestions`. With fewer than `MIN_TAGGED` tagged errors, or fewer than
        `MIN_POSITIVES` errors with (or without) a category, that category gets no model:
        NaN scores and figures, status "too few". A "weak" category keeps its scores and
        figures but `Suggestions.suggested` leaves it out.
    """
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    index = np.arange(len(x)) if index is None else np.asarray(index).reshape(-1)
    if x.ndim != 2 or len(x) != len(index):
        raise EvidenceError(f"features of shape {x.shape} for {len(index)} indices; expected one row each")
    categories = list(dict.fromkeys(categories))
    rows, y = _tag_matrix(index, tagged_index, tag_sets, categories)
    # A few thousand rows by ~130 features: BLAS threads cost more than they give
    # (3-5x slower fits on 2 busy cores).
    with threadpool_limits(1):
        scores, metrics = _fit_all(x, index, rows, y, categories, seed)
    return Suggestions(scores=scores, metrics=metrics, tagged=index[rows])


def _fit_all(x, index, rows, y, categories, seed):
    scores = pd.DataFrame(np.nan, index=pd.Index(index, name="index"), columns=categories)
    records = []
    for j, category in enumerate(categories):
        target = y[:, j]
        n_pos, n_neg = int(target.sum()), int(len(target) - target.sum())
        record = {"category": category, "n_positive": n_pos, "n_negative": n_neg, "precision": np.nan,
                  "recall": np.nan, "threshold": np.nan, "status": STATUS_TOO_FEW}
        if len(rows) >= MIN_TAGGED and min(n_pos, n_neg) >= MIN_POSITIVES:
            precision, recall, threshold = _cross_validated(x[rows], target, seed)
            scores[category] = _model().fit(x[rows], target).predict_proba(x)[:, 1]
            useful = precision >= MIN_LIFT * n_pos / len(target)  # NaN (nothing predicted) is not
            record.update(precision=precision, recall=recall, threshold=threshold,
                          status=STATUS_OK if useful else STATUS_WEAK)
        records.append(record)
    return scores, pd.DataFrame(records).set_index("category")


def _tag_matrix(index: np.ndarray, tagged_index, tag_sets, categories: list[str]):
    """(rows of the tagged errors in `index`, (n_tagged, n_categories) 0/1 targets)."""
    tagged_index = np.asarray(list(tagged_index)).reshape(-1)
    tag_sets = [set(t) for t in tag_sets]
    if len(tag_sets) != len(tagged_index):
        raise EvidenceError(f"{len(tag_sets)} tag sets for {len(tagged_index)} tagged errors")
    if len(np.unique(tagged_index)) != len(tagged_index):
        raise EvidenceError("a tagged error appears twice; give each error's categories once")
    position = pd.Series(np.arange(len(index)), index=index)
    known = np.isin(tagged_index, index)
    if not known.all():
        raise EvidenceError(f"tagged images {tagged_index[~known][:5].tolist()} are not among the scored "
                            "rows (suggestions are for misclassified images)")
    rows = position.loc[tagged_index].to_numpy() if len(tagged_index) else np.zeros(0, np.int64)
    y = np.array([[c in tags for c in categories] for tags in tag_sets], dtype=np.int64)
    return rows, y.reshape(len(tagged_index), len(categories))


def _model():
    from sklearn.linear_model import LogisticRegression

    # Balanced weights: a rare category must not be drowned by the errors without it,
    # so scores are comparable across categories.
    return LogisticRegression(C=C, class_weight="balanced", max_iter=500)


def _cross_validated(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Out-of-fold (precision, recall) at a threshold chosen without the scored fold, and
    the threshold for the final model (best F-beta on all out-of-fold scores)."""
    from sklearn.model_selection import StratifiedKFold

    folds = min(FOLDS, int(y.sum()), int(len(y) - y.sum()))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    oof = np.empty(len(y))
    for f, (fit, held) in enumerate(split.split(x, y)):
        oof[held] = _model().fit(x[fit], y[fit]).predict_proba(x[held])[:, 1]
        fold_of[held] = f
    # Each fold is judged at a threshold picked on the other folds' scores, so its own
    # labels never choose the cut that decides its hits.
    predicted = np.zeros(len(y), dtype=bool)
    for f in range(folds):
        held = fold_of == f
        predicted[held] = oof[held] >= best_threshold(oof[~held], y[~held])
    hits = int((predicted & (y == 1)).sum())
    precision = hits / predicted.sum() if predicted.any() else float("nan")
    recall = hits / y.sum()
    return float(precision), float(recall), best_threshold(oof, y)


def best_threshold(scores: np.ndarray, y: np.ndarray, beta: float = BETA) -> float:
    """The score cut with the best F-beta (ties: the higher cut); 0.5 when there are no positives."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y).astype(bool)
    if not y.any():
        return 0.5
    order = np.argsort(-scores, kind="stable")
    s, hit = scores[order], y[order]
    tp = np.cumsum(hit)
    k = np.arange(1, len(s) + 1)
    last = np.r_[s[1:] != s[:-1], True]  # a cut can only fall between distinct scores
    b2 = beta * beta
    f_beta = np.where(last, (1 + b2) * tp / (k + b2 * y.sum()), -1.0)
    return float(s[int(np.argmax(f_beta))])
