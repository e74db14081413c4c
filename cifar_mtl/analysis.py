"""Error analysis over a run's predictions table: the error table, confusion, accuracy by class.

Every function takes a predictions table (`cifar_mtl.runs.load_predictions`) and,
where reviews matter, a tags table as returned by `ReviewStore.current_tags`
(columns index, category, reviewer). Tags are about test images, so tags from any
run apply to this run's images; pass `store.current_tags(run_id)` to keep only the
ones made while reviewing this run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from cifar_mtl import scores
from cifar_mtl.labels import CLASS_NAMES, NUM_CLASSES, class_names

SORTS = ("loss", "confidence", "margin", "index")


def wilson_interval(k, n, confidence: float = 0.95):
    """Wilson score interval for a proportion k / n.

    Args:
        k: successes (scalar or array).
        n: trials (same shape); where n is 0 the bounds are NaN.
        confidence: two-sided level, e.g. 0.95.

    Returns:
        (low, high), floats for scalar input, else arrays shaped like `k`.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("wilson_interval needs 0 <= k <= n")
    z = stats.norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def class_list(value, what: str = "class") -> list[int] | None:
    """None, an int or a list of ints 0..9 -> list of ints (None stays None)."""
    if value is None:
        return None
    values = [value] if np.ndim(value) == 0 else list(np.asarray(value).reshape(-1))
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{what} must be a class index 0..9 or a list of them, got {v!r}")
        if not 0 <= int(v) < NUM_CLASSES:
            raise ValueError(f"{what} {int(v)} is outside 0..{NUM_CLASSES - 1}")
        out.append(int(v))
    return out


def cross_group(preds: pd.DataFrame) -> np.ndarray:
    """(N,) bool: the prediction is on the other side of the animal/vehicle line (`scores.cross_group`)."""
    return scores.cross_group(preds["label"].to_numpy(np.int64), preds["pred"].to_numpy(np.int64))


def _check_tags(tags: pd.DataFrame | None) -> pd.DataFrame:
    if tags is None:
        return pd.DataFrame({"index": pd.Series(dtype="int64"), "category": pd.Series(dtype=object),
                             "reviewer": pd.Series(dtype=object)})
    missing = [c for c in ("index", "category", "reviewer") if c not in tags.columns]
    if missing:
        raise ValueError(
            f"tags table is missing columns {missing}; pass ReviewStore.current_tags(...)"
        )
    return tags


def _names(value) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def values_by_index(index, values) -> dict:
    """Group `values` by `index`: {index: sorted tuple of its distinct values}.

    Shapes: index (M,) ints, values (M,) sortable values. Pairs are deduplicated on
    integer codes, so only the final tuples are built in Python (about 1 ms per
    5,000 pairs).
    """
    index = np.asarray(index, dtype=np.int64)
    if not len(index):
        return {}
    # A pandas column is factorised as it is (Arrow text without a Python str per row).
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        values = values.array
    else:
        values = np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(values, sort=True)
    n = max(len(uniques), 1)
    pairs = np.unique(index * n + codes)  # sorted by index, then by value
    names = list(uniques)
    groups: dict = {}
    for i, c in zip(*(part.tolist() for part in np.divmod(pairs, n))):
        groups.setdefault(i, []).append(names[c])
    return {i: tuple(v) for i, v in groups.items()}


def image_categories(tags: pd.DataFrame, indices) -> pd.Series:
    """Sorted tuple of distinct categories per image, for `indices` (() when untagged)."""
    indices = np.asarray(indices, dtype=np.int64)
    index = tags["index"].to_numpy(np.int64)
    wanted = np.isin(index, indices)
    # Filter before touching the text column: at a million tags most rows are not shown.
    lookup = values_by_index(index[wanted], tags["category"][wanted])
    return pd.Series([lookup.get(i, ()) for i in indices.tolist()], dtype=object)


def error_table(
    preds: pd.DataFrame,
    tags: pd.DataFrame | None = None,
    *,
    true_class=None,
    pred_class=None,
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    cross_group_only: bool = False,
    tagged: bool | None = None,
    category=None,
    reviewer=None,
    sort: str = "loss",
    descending: bool = True,
    errors_only: bool = True,
) -> pd.DataFrame:
    """Filtered, sorted table of a run's errors (or all images with `errors_only=False`).

    Args:
        preds: predictions table (N rows).
        tags: current tags (index, category, reviewer), or None for no review data.
        true_class, pred_class: an int or list of ints 0..9 to keep.
        min_confidence, max_confidence: inclusive bounds on `confidence` (0..1).
        cross_group_only: keep images predicted across the animal/vehicle line.
        tagged: True keeps images with at least one tag, False those with none.
        category: a category name or list; keeps images tagged with any of them.
        reviewer: a name or list; only these reviewers' tags count for `categories`,
            `tagged` and `category` (so `tagged=False, reviewer="ann"` is ann's queue).
        sort: one of loss, confidence, margin, index; ties are broken by index.
        descending: sort order.
        errors_only: keep only rows with `correct == False`.

    Returns:
        The prediction columns plus `label_name`, `pred_name`, `categories` (sorted
        tuple of category names) and `cross_group` (bool), with a fresh RangeIndex.
    """
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; expected one of {SORTS}")
    tags = _check_tags(tags)
    reviewers = _names(reviewer)
    if reviewers is not None:
        tags = tags[tags["reviewer"].isin(reviewers)]
    keep = _numeric_mask(preds, true_class, pred_class, min_confidence, max_confidence,
                         cross_group_only, errors_only)
    index = preds["index"].to_numpy(np.int64)
    if tagged is not None:
        has_tag = np.isin(index, tags["index"].to_numpy(np.int64))
        keep &= has_tag if tagged else ~has_tag
    categories = _names(category)
    if categories is not None:
        chosen = tags.loc[tags["category"].isin(categories), "index"].to_numpy(np.int64)
        keep &= np.isin(index, chosen)
    out = preds.loc[keep]
    out = out.iloc[_order(out, sort, descending)].reset_index(drop=True)
    out["label_name"] = class_names(out["label"].to_numpy(np.int64))
    out["pred_name"] = class_names(out["pred"].to_numpy(np.int64))
    out["categories"] = image_categories(tags, out["index"].to_numpy())
    out["cross_group"] = cross_group(out)
    return out


def _numeric_mask(preds, true_class, pred_class, min_confidence, max_confidence,
                  cross_group_only, errors_only) -> np.ndarray:
    keep = np.ones(len(preds), dtype=bool)
    if errors_only:
        keep &= ~preds["correct"].to_numpy(bool)
    for column, value in (("label", true_class), ("pred", pred_class)):
        classes = class_list(value, "true class" if column == "label" else "predicted class")
        if classes is not None:
            keep &= np.isin(preds[column].to_numpy(np.int64), classes)
    for bound in (min_confidence, max_confidence):
        if bound is not None and not 0 <= bound <= 1:
            raise ValueError(f"confidence bounds must lie in 0..1, got {bound}")
    if min_confidence is not None and max_confidence is not None and min_confidence > max_confidence:
        raise ValueError(f"min_confidence {min_confidence} is above max_confidence {max_confidence}")
    confidence = preds["confidence"].to_numpy(np.float64)
    if min_confidence is not None:
        keep &= confidence >= min_confidence
    if max_confidence is not None:
        keep &= confidence <= max_confidence
    if cross_group_only:
        keep &= cross_group(preds)
    return keep


def _order(df: pd.DataFrame, sort: str, descending: bool) -> np.ndarray:
    index = df["index"].to_numpy(np.int64)
    if sort == "index":
        order = np.argsort(index, kind="stable")
        return order[::-1] if descending else order
    key = df[sort].to_numpy(np.float64)
    # lexsort: last key is primary; ties go to the lower index either way.
    return np.lexsort((index, -key if descending else key))


def confusion_matrix(preds: pd.DataFrame, normalize: bool = False) -> pd.DataFrame:
    """10x10 confusion matrix: rows = true class names, columns = predicted names.

    Counts (int64), or with `normalize=True` each row divided by its total (rows of a
    class absent from `preds` are NaN rather than a misleading 0).
    """
    label = preds["label"].to_numpy(np.int64)
    pred = preds["pred"].to_numpy(np.int64)
    counts = np.bincount(label * NUM_CLASSES + pred, minlength=NUM_CLASSES**2)
    counts = counts.reshape(NUM_CLASSES, NUM_CLASSES)
    values = counts
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    return pd.DataFrame(
        values,
        index=pd.Index(CLASS_NAMES, name="true"),
        columns=pd.Index(CLASS_NAMES, name="predicted"),
    )


def per_class_accuracy(preds: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """DataFrame[class, name, n, correct, accuracy, ci_low, ci_high], one row per class.

    Counts and accuracy come from `scores.per_class`; the interval is Wilson's score
    interval (`wilson_interval`) at `confidence`.
    """
    n, k, accuracy = scores.per_class(preds["label"].to_numpy(np.int64), preds["correct"].to_numpy(bool))
    low, high = wilson_interval(k, n, confidence)
    return pd.DataFrame(
        {
            "class": np.arange(NUM_CLASSES),
            "name": list(CLASS_NAMES),
            "n": n,
            "correct": k,
            "accuracy": accuracy,
            "ci_low": low,
            "ci_high": high,
        }
    )


def category_counts(preds: pd.DataFrame, tags: pd.DataFrame | None, by: str = "label",
                    categories=None) -> pd.DataFrame:
    """Distinct error images of this run per class and category.

    Args:
        preds: predictions table; only its errors are counted.
        tags: current tags (any reviewer; an image tagged by two reviewers counts once).
        by: "label" (true class) or "pred" (predicted class) for the rows.
        categories: column order; default the categories present in `tags`, sorted.

    Returns:
        DataFrame of int64 counts, index = the ten class names, columns = categories.
    """
    if by not in ("label", "pred"):
        raise ValueError(f"by must be 'label' or 'pred', got {by!r}")
    tags = _check_tags(tags)
    cols = list(categories) if categories is not None else sorted(set(tags["category"]))
    errors = preds.loc[~preds["correct"].to_numpy(bool), ["index", by]]
    pairs = tags[["index", "category"]].drop_duplicates()
    pairs = pairs[pairs["category"].isin(cols)].merge(errors, on="index")
    table = np.zeros((NUM_CLASSES, len(cols)), dtype=np.int64)
    if len(pairs):
        col_of = {c: j for j, c in enumerate(cols)}
        j = pairs["category"].map(col_of).to_numpy(np.int64)
        np.add.at(table, (pairs[by].to_numpy(np.int64), j), 1)
    return pd.DataFrame(table, index=pd.Index(CLASS_NAMES, name=by), columns=pd.Index(cols, name="category"))


def review_progress(preds: pd.DataFrame, tags: pd.DataFrame | None, *, reviewer=None,
                    mislabels: pd.DataFrame | None = None, notes: pd.DataFrame | None = None) -> dict:
    """How many of this run's errors have a review.

    An error counts as reviewed when it has a tag (or, when given, a mislabel verdict
    or a note) by `reviewer` (a name or list; default anyone).

    Returns:
        dict(n_errors=int, n_reviewed=int, share=float; NaN when there are no errors).
    """
    reviewers = _names(reviewer)
    reviewed = set()
    for table in (_check_tags(tags), mislabels, notes):
        if table is None:
            continue
        if reviewers is not None:
            table = table[table["reviewer"].isin(reviewers)]
        reviewed.update(table["index"].astype("int64").tolist())
    errors = preds.loc[~preds["correct"].to_numpy(bool), "index"].to_numpy(np.int64)
    n_reviewed = int(np.isin(errors, list(reviewed)).sum()) if reviewed else 0
    n_errors = len(errors)
    return {
        "n_errors": n_errors,
        "n_reviewed": n_reviewed,
        "share": n_reviewed / n_errors if n_errors else float("nan"),
    }
