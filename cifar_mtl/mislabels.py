"""Suspected mislabels (cleanlab label-quality scores) and accuracy with corrected labels.

A run's test predictions are out-of-sample (the model never trained on the test
set), which is what cleanlab's scores assume. Several runs can be combined: their
class probabilities are averaged image by image.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_mtl.errors import UserError
from cifar_mtl.labels import class_names
from cifar_mtl.predictions import PROB_COLUMNS

METHODS = ("normalized_margin", "self_confidence")
RANK_COLUMNS = [
    "index", "label", "label_name", "suggested", "suggested_name", "quality", "prob_label",
    "prob_suggested",
]


class NoPredictionsError(UserError, ValueError):
    """A predictions table has no rows, so there is nothing to rank."""


def average_probabilities(preds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average the class probabilities of one or several runs over the same test images.

    Args:
        preds: a predictions table or a list of them (same indices and labels).

    Returns:
        (index (N,) int64, labels (N,) int64, probs (N, 10) float64), in index order.
    """
    tables = [preds] if isinstance(preds, pd.DataFrame) else list(preds)
    if not tables:
        raise ValueError("no predictions given: pass a predictions table or a list of them")
    first = tables[0].sort_values("index")
    index = first["index"].to_numpy(np.int64)
    labels = first["label"].to_numpy(np.int64)
    probs = first[PROB_COLUMNS].to_numpy(np.float64, copy=True)  # summed into below
    for k, table in enumerate(tables[1:], start=2):
        table = table.sort_values("index")
        if not np.array_equal(table["index"].to_numpy(np.int64), index):
            raise ValueError(f"predictions table {k} covers other test images than table 1; "
                             "combine runs evaluated on the same test set")
        if not np.array_equal(table["label"].to_numpy(np.int64), labels):
            raise ValueError(f"predictions table {k} has other labels than table 1 for the same "
                             "images; were they evaluated on the same data?")
        probs += table[PROB_COLUMNS].to_numpy(np.float64)
    return index, labels, probs / len(tables)


def rank_mislabels(preds, method: str = "normalized_margin", top: int | None = None) -> pd.DataFrame:
    """Test images ranked by cleanlab's label-quality score, most suspect first.

    Args:
        preds: a predictions table, or a list of them whose probabilities are averaged.
        method: "normalized_margin" (default) or "self_confidence".
        top: keep only the `top` most suspect images.

    Returns:
        DataFrame[index, label, label_name, suggested, suggested_name, quality,
        prob_label, prob_suggested]. `suggested` is the class with the highest
        (averaged) probability; `quality` is in [0, 1], lower = more likely wrong.
        Ties are broken by index.

    Raises:
        NoPredictionsError (a ValueError): the table has no rows.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if top is not None and (isinstance(top, bool) or int(top) != top or top < 1):
        raise ValueError(f"top must be a positive whole number, got {top!r}")
    from cleanlab.rank import get_label_quality_scores  # slow import, kept off app start-up

    index, labels, probs = average_probabilities(preds)
    if not len(labels):  # cleanlab would fail with "min() arg is an empty sequence"
        raise NoPredictionsError(
            "the predictions table has no rows, so there are no test images to rank; rewrite the run's "
            "predictions with `python -m cifar_mtl predict --run RUN_ID`, or pick a run with predictions"
        )
    rows = np.arange(len(labels))
    quality = get_label_quality_scores(labels, probs, method=method)
    order = np.lexsort((index, quality))
    if top is not None:
        order = order[: int(top)]
    suggested = probs.argmax(axis=1)
    return pd.DataFrame(
        {
            "index": index[order],
            "label": labels[order],
            "label_name": class_names(labels[order]),
            "suggested": suggested[order],
            "suggested_name": class_names(suggested[order]),
            "quality": quality[order],
            "prob_label": probs[rows, labels][order],
            "prob_suggested": probs[rows, suggested][order],
        },
        columns=RANK_COLUMNS,
    )


def without_judged(ranked: pd.DataFrame, mislabels: pd.DataFrame, reviewer: str) -> pd.DataFrame:
    """Rows of a `rank_mislabels` table that `reviewer` has no current verdict on."""
    judged = mislabels.loc[mislabels["reviewer"] == reviewer, "index"]
    return ranked[~ranked["index"].isin(judged)]


def resolve_mislabels(mislabels: pd.DataFrame) -> pd.DataFrame:
    """One decision per image from several reviewers' verdicts.

    Each confirmed verdict is a vote for its suggested label, each rejected verdict
    a vote for the test label; unsure verdicts do not vote. The label with most votes
    wins; a tie, or the test label winning, means no correction.

    Returns:
        DataFrame[index, corrected_label, votes, n_verdicts] for the images to correct.
    """
    missing = [c for c in ("index", "verdict", "suggested_label") if c not in mislabels.columns]
    if missing:
        raise ValueError(f"mislabels table is missing columns {missing}; "
                         "pass ReviewStore.current_mislabels(...)")
    confirmed = (mislabels["verdict"] == "confirmed") & mislabels["suggested_label"].notna()
    votes = mislabels[confirmed | (mislabels["verdict"] == "rejected")]
    # -1 stands for "the test label is right".
    tally = pd.DataFrame({
        "index": votes["index"].astype("int64"),
        "choice": votes["suggested_label"].where(confirmed[votes.index], -1).astype("int64"),
    })
    n_verdicts = tally.groupby("index").size()
    tally = tally.value_counts().rename("votes").reset_index()
    leaders = tally[tally["votes"] == tally.groupby("index")["votes"].transform("max")]
    alone = leaders.groupby("index")["choice"].transform("size") == 1
    winners = leaders[alone & (leaders["choice"] >= 0)].sort_values("index").set_index("index")
    return pd.DataFrame(
        {
            "index": winners.index.to_numpy(np.int64),
            "corrected_label": winners["choice"].to_numpy(np.int64),
            "votes": winners["votes"].to_numpy(np.int64),
            "n_verdicts": n_verdicts.reindex(winners.index).to_numpy(np.int64),
        }
    )


def corrected_labels(preds: pd.DataFrame, mislabels: pd.DataFrame) -> pd.Series:
    """The run's labels with reviewer-confirmed corrections applied.

    Disagreeing reviewers are resolved by `resolve_mislabels` (majority of confirmed
    and rejected verdicts; ties keep the test label).

    Returns:
        int64 Series named "label", aligned with `preds`' rows (same index).
    """
    decided = resolve_mislabels(mislabels).set_index("index")["corrected_label"]
    labels = preds["label"].astype("int64")
    fixed = preds["index"].map(decided)
    return fixed.fillna(labels).astype("int64").rename("label")


def corrected_accuracy(preds: pd.DataFrame, mislabels: pd.DataFrame) -> dict:
    """Accuracy against the test labels and against the corrected labels.

    Returns:
        dict(accuracy, corrected_accuracy, n_corrected, n) where n_corrected counts
        images of `preds` whose label the reviewers changed.
    """
    labels = preds["label"].to_numpy(np.int64)
    pred = preds["pred"].to_numpy(np.int64)
    corrected = corrected_labels(preds, mislabels).to_numpy(np.int64)
    n = len(labels)
    return {
        "accuracy": float((pred == labels).mean()) if n else float("nan"),
        "corrected_accuracy": float((pred == corrected).mean()) if n else float("nan"),
        "n_corrected": int((corrected != labels).sum()),
        "n": n,
    }
