"""A run's errors next to their evidence: per-image flags, the filters over them, map points,
nearest training images and saliency maps of one image. Tables in, tables out.

The evidence tables are those of `cifar_mtl.evidence.files` (`read_duplicates`,
`read_slices`, `read_map`, `read_neighbours`, `read_saliency`); the error table is
`analysis.error_table`'s. Nothing here reads files or knows about the app, so a
notebook can do what the app's Errors, Map and Slices pages do:

    errors = analysis.error_table(preds, tags)
    errors = add_evidence(errors, duplicates=files.read_duplicates(folder),
                          slices=files.read_slices(folder))
    conflicts = filter_evidence(errors, label_conflict=True)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_mtl import analysis
from cifar_mtl.labels import class_names

NO_SLICE = -1  # an image in no slice: a correct one, or an error the clustering left alone
COLOUR_BY = ("true class", "predicted class", "correct or error", "category")
UNTAGGED = "untagged"
SEVERAL = "several"


def _positions(keys: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Row of each `index` value in `keys` (distinct values), -1 where absent."""
    return pd.Index(keys).get_indexer(index)


def add_evidence(table: pd.DataFrame, *, duplicates: pd.DataFrame | None = None,
                 slices: pd.DataFrame | None = None, suggested: pd.DataFrame | None = None) -> pd.DataFrame:
    """`table` (any table with an `index` column of test images) with evidence columns added.

    Args:
        duplicates: `read_duplicates`' table; adds `near_duplicate`, `label_conflict` (bool),
            `duplicate_index` (nearest training image, -1 when unknown) and
            `duplicate_similarity` (cosine, NaN when unknown).
        slices: `read_slices`' table; adds `slice` (int, `NO_SLICE` when in none).
        suggested: DataFrame[index, category] of suggested categories (see
            `suggestion_table`); adds `suggested` (sorted tuple of names, () when none).

    Returns a copy; an evidence table left out adds no column, so a filter on it
    (`filter_evidence`) says the evidence is missing instead of finding nothing.
    """
    out = table.copy()
    index = out["index"].to_numpy(np.int64)
    if duplicates is not None:
        at = _positions(duplicates["index"].to_numpy(np.int64), index)
        found = at >= 0
        rows = np.where(found, at, 0)

        def take(col, fill):
            values = duplicates[col].to_numpy()
            return np.where(found, values[rows] if len(values) else fill, fill)

        out["near_duplicate"] = take("near_duplicate", False).astype(bool)
        out["label_conflict"] = take("label_conflict", False).astype(bool)
        out["duplicate_index"] = take("train_index", -1).astype(np.int64)
        out["duplicate_similarity"] = take("similarity", np.nan).astype(np.float64)
    if slices is not None:
        at = _positions(slices["index"].to_numpy(np.int64), index)
        values = slices["slice"].to_numpy(np.int64)
        out["slice"] = np.where(at >= 0, values[np.maximum(at, 0)] if len(values) else NO_SLICE, NO_SLICE)
    if suggested is not None:
        lookup = (suggested.groupby("index")["category"].agg(lambda c: tuple(sorted(set(c)))).to_dict()
                  if len(suggested) else {})
        out["suggested"] = pd.Series([lookup.get(i, ()) for i in index.tolist()], index=out.index, dtype=object)
    return out


def _need(table: pd.DataFrame, column: str, what: str) -> None:
    if column not in table.columns:
        raise ValueError(f"the table has no {what}: pass them to add_evidence first (column {column!r})")


def filter_evidence(table: pd.DataFrame, *, near_duplicate: bool = False, label_conflict: bool = False,
                    slice_id: int | None = None, suggested: str | None = None) -> pd.DataFrame:
    """Rows of an `add_evidence` table that pass every filter given, in their order.

    Args:
        near_duplicate: keep images with a near-duplicate in the training set.
        label_conflict: keep near-duplicates whose training twin has another label.
        slice_id: keep the members of this slice.
        suggested: keep images for which this category is suggested.
    """
    keep = np.ones(len(table), dtype=bool)
    if near_duplicate:
        _need(table, "near_duplicate", "near-duplicate flags")
        keep &= table["near_duplicate"].to_numpy(bool)
    if label_conflict:
        _need(table, "label_conflict", "label-conflict flags")
        keep &= table["label_conflict"].to_numpy(bool)
    if slice_id is not None:
        _need(table, "slice", "slices")
        keep &= table["slice"].to_numpy(np.int64) == int(slice_id)
    if suggested is not None:
        _need(table, "suggested", "suggestions")
        keep &= np.array([suggested in s for s in table["suggested"]], dtype=bool)
    return table.loc[keep].reset_index(drop=True)


def slice_members(slices: pd.DataFrame, slice_id: int, leave_out=()) -> np.ndarray:
    """Sorted test indices (int64) of slice `slice_id`, without those in `leave_out`."""
    members = slices.loc[slices["slice"].to_numpy(np.int64) == int(slice_id), "index"].to_numpy(np.int64)
    return np.setdiff1d(members, np.asarray(list(leave_out), dtype=np.int64))


def point_category(categories) -> str:
    """One name for a point's colour: its category, `UNTAGGED`, or `SEVERAL`."""
    categories = tuple(categories)
    if not categories:
        return UNTAGGED
    return categories[0] if len(categories) == 1 else SEVERAL


def map_points(layout: pd.DataFrame, preds: pd.DataFrame, tags: pd.DataFrame | None = None) -> pd.DataFrame:
    """The map's points: `read_map`'s layout joined with the predictions and the tags.

    Args:
        layout: DataFrame[index, x, y].
        preds: the predictions table.
        tags: current tags (index, category, reviewer) as `ReviewStore.current_tags`
            returns them, or None; pass one reviewer's to colour by their categories.

    Returns:
        DataFrame[index, x, y, label, pred, correct, confidence, label_name, pred_name,
        categories (sorted tuple), category (`point_category`)], one row per image in
        both tables, in `layout`'s order.
    """
    cols = ["index", "label", "pred", "correct", "confidence"]
    out = layout[["index", "x", "y"]].merge(preds[cols], on="index", how="inner", validate="one_to_one")
    out["label_name"] = class_names(out["label"].to_numpy(np.int64))
    out["pred_name"] = class_names(out["pred"].to_numpy(np.int64))
    if tags is None or tags.empty:
        out["categories"] = pd.Series([()] * len(out), dtype=object)
    else:
        out["categories"] = analysis.image_categories(tags, out["index"].to_numpy())
    out["category"] = [point_category(c) for c in out["categories"]]
    return out


def colour_groups(points: pd.DataFrame, by: str) -> pd.Series:
    """The group each map point is coloured by (`by` one of `COLOUR_BY`): a Series of names."""
    if by == "true class":
        return points["label_name"]
    if by == "predicted class":
        return points["pred_name"]
    if by == "correct or error":
        return pd.Series(np.where(points["correct"].to_numpy(bool), "correct", "error"), index=points.index)
    if by == "category":
        return points["category"]
    raise ValueError(f"unknown colouring {by!r}; expected one of {COLOUR_BY}")


def neighbours_of(neighbours: pd.DataFrame, index: int) -> pd.DataFrame:
    """The nearest training images of test image `index`, nearest first:
    DataFrame[rank, train_index, train_label, train_name, similarity] (empty when unknown)."""
    rows = neighbours.loc[neighbours["index"].to_numpy(np.int64) == int(index)].sort_values("rank")
    out = rows[["rank", "train_index", "train_label", "similarity"]].reset_index(drop=True)
    out["train_name"] = class_names(out["train_label"].to_numpy(np.int64))
    return out


def saliency_of(saliency: dict[str, np.ndarray], index: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(map for the predicted class, map for the true class) of test image `index`, each
    (32, 32) uint8; None when the file holds no map for it (a correct image)."""
    rows = np.flatnonzero(saliency["index"] == int(index))
    if not len(rows):
        return None
    return saliency["pred_map"][rows[0]], saliency["true_map"][rows[0]]
