"""Cached reads for the label loop: cross-validation runs, their training-set ranking, the
training labels they hold, and the label sets under the artifacts home.

Like `loaders`, a ranking is computed once per version of the files it reads (every chosen
run's train_predictions.parquet, the first run's embeddings.npz and its saved Datalab flags,
datalab.parquet) and shared by every browser session: do not modify it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cifar_mtl import runs
from cifar_mtl.app.loaders import _stamp
from cifar_mtl.evidence.files import EMBEDDINGS_FILE
from cifar_mtl.mislabels import DATALAB_FILE, TRAIN_PREDICTIONS_FILE


def crossval_run_ids() -> list[str]:
    """Run folders holding a train_predictions.parquet (finished cross-validation runs), newest first."""
    root = runs.runs_root(runs.home())
    try:
        found = [p for p in root.iterdir() if (p / TRAIN_PREDICTIONS_FILE).is_file()]
    except OSError:
        return []
    return [p.name for p in sorted(found, key=lambda p: (p / TRAIN_PREDICTIONS_FILE).stat().st_mtime, reverse=True)]


def _stamps(home, run_ids: tuple[str, ...]) -> tuple:
    """The versions of the files a training-set ranking of `run_ids` reads."""
    files = [runs.run_dir(r, home) / TRAIN_PREDICTIONS_FILE for r in run_ids]
    first = runs.run_dir(run_ids[0], home)
    return tuple(_stamp(f) for f in [*files, first / EMBEDDINGS_FILE, first / DATALAB_FILE])


@st.cache_data(max_entries=8, show_spinner="Ranking training images...")
def _train_ranked(home: str, run_ids: tuple[str, ...], stamps: tuple, method: str) -> pd.DataFrame:
    from cifar_mtl.mislabels import train_ranking_of_runs

    return train_ranking_of_runs(list(run_ids), method=method, home_dir=home)


def train_ranked(run_ids, method: str = "normalized_margin") -> pd.DataFrame:
    """`mislabels.train_ranking_of_runs` of the runs (Datalab columns when the first has
    fresh saved flags), computed once per version of their files."""
    home = runs.home().resolve()
    run_ids = tuple(run_ids)
    return _train_ranked(str(home), run_ids, _stamps(home, run_ids), method)


@st.cache_data(max_entries=8, show_spinner=False)
def _has_train_embeddings(path: str, stamp) -> bool:
    try:
        with np.load(path, allow_pickle=False) as data:  # lists the arrays without reading them
            return "train" in data.files
    except Exception:  # a damaged file has no usable training embeddings; reading it says why
        return False


def _train_embeddings_of(run_id: str) -> bool:
    path = runs.run_dir(run_id, runs.home().resolve()) / EMBEDDINGS_FILE
    return _has_train_embeddings(str(path), _stamp(path))


def embeddings_run_for(run_id: str, others) -> str | None:
    """The run whose training embeddings Datalab can use for cross-validation run `run_id`:
    `run_id` itself if it has some, else the first of `others` that has them and trained on
    the same data (`data_fingerprint`); None when none has."""
    from cifar_mtl.mislabels import check_same_dataset
    from cifar_mtl.runs import RunError

    if _train_embeddings_of(run_id):
        return run_id
    for other in others:
        if other == run_id or not _train_embeddings_of(other):
            continue
        try:
            check_same_dataset(run_id, other, runs.home().resolve())
        except RunError:
            continue
        return other
    return None


def datalab_hint(run_id: str, ranking: pd.DataFrame, others=()) -> str | None:
    """How to compute Datalab's flags when `ranking` (the training ranking of cross-validation
    run `run_id`) has none (no fresh datalab.parquet) and training embeddings exist, in
    `run_id` or in one of the training runs `others`; else None."""
    if "is_label_issue" in ranking.columns:
        return None
    source = embeddings_run_for(run_id, others)
    if source is None:
        return None
    extra = "" if source == run_id else f" --embeddings-from {source}"
    return (f"Datalab's flags (label, outlier, near-duplicate) are not computed for run {run_id}'s current files. "
            f"Compute them once with `python -m cifar_mtl mislabels --split train --run {run_id} --datalab{extra}` "
            "(it takes minutes on 50,000 images), then reload this page.")


@st.cache_data(max_entries=8, show_spinner=False)
def _given_labels(home: str, run_id: str, stamp) -> np.ndarray:
    from cifar_mtl.labelsets import N_TRAIN

    table = pd.read_parquet(runs.run_dir(run_id, home) / TRAIN_PREDICTIONS_FILE, columns=["index", "label"])
    labels = np.full(N_TRAIN, -1, dtype=np.int64)  # -1: not in the run
    labels[table["index"].to_numpy(np.int64)] = table["label"].to_numpy(np.int64)
    return labels


def given_labels(run_ids) -> np.ndarray | None:
    """(50000,) training labels (-1 where absent) from the first of `run_ids` that has a
    train_predictions.parquet, as `labelsets.build_from_reviews` takes them; None if none has."""
    home = runs.home().resolve()
    for run_id in run_ids:
        try:
            path = runs.run_dir(run_id, home) / TRAIN_PREDICTIONS_FILE
        except ValueError:  # a malformed id recorded in the database
            continue
        if path.is_file():
            return _given_labels(str(home), run_id, _stamp(path))
    return None


def with_issues(ranked: pd.DataFrame, issues) -> pd.DataFrame:
    """Rows of a training ranking that Datalab flags with any of `issues` ("label",
    "outlier", "near_duplicate"); all rows when `issues` is empty."""
    columns = [f"is_{t}_issue" for t in issues if f"is_{t}_issue" in ranked.columns]
    if not columns:
        return ranked
    return ranked[ranked[columns].any(axis=1)]


def issues_text(row: dict) -> str:
    """'Datalab: label, outlier' for one ranking row, '' when it has no flag (or no Datalab columns)."""
    from cifar_mtl.mislabels import DATALAB_ISSUES

    flags = [t.replace("_", "-") for t in DATALAB_ISSUES if row.get(f"is_{t}_issue") in (True,)]  # numpy or Python bool, NaN never
    return f"Datalab: {', '.join(flags)}" if flags else ""


# --- what the Mislabels and Label sets pages show (tables in, tables and messages out) ---------


def train_images_problem(ranked: pd.DataFrame, labels: np.ndarray) -> str | None:
    """None when the loaded training set can illustrate `ranked` (every listed training
    index is in it, with the label the cross-validation runs have), else a warning saying
    what to do.

    Args:
        ranked: the listed rows of a training ranking (`index`, `label`).
        labels: (N,) labels of the loaded training set (`loaders.train_images`).
    """
    index = ranked["index"].to_numpy(np.int64)
    if index.max(initial=-1) < len(labels) and (labels[index] == ranked["label"].to_numpy(np.int64)).all():
        return None
    return (f"The loaded training set ({len(labels)} images) does not match these cross-validation runs; "
            "point CIFAR10_DIR at the dataset they were trained on. Images are hidden meanwhile.")


def train_summary(ranking: pd.DataFrame, verdicts: pd.DataFrame) -> dict:
    """The train split's figures: {"ranked", "judged" (images with a verdict), "verdicts",
    "label_issues" (Datalab's count; None without Datalab columns), "datalab_types" (the
    issue types the ranking has columns for, in `DATALAB_ISSUES` order)}."""
    from cifar_mtl.mislabels import DATALAB_ISSUES

    has_datalab = "is_label_issue" in ranking.columns
    return {"ranked": len(ranking), "judged": int(verdicts["index"].nunique()), "verdicts": len(verdicts),
            "label_issues": int(ranking["is_label_issue"].sum()) if has_datalab else None,
            "datalab_types": [t for t in DATALAB_ISSUES if f"is_{t}_issue" in ranking.columns] if has_datalab else []}


def preview_counts(table: pd.DataFrame, verdicts: pd.DataFrame, reviewers) -> dict:
    """The Label sets preview's figures: `labelsets.counts` of the set plus "judged", the
    images that `reviewers` gave a verdict on."""
    from cifar_mtl.labelsets import counts

    judged = verdicts.loc[verdicts["reviewer"].isin(list(reviewers)), "index"].nunique()
    return {**counts(table), "judged": int(judged)}


def saved_text(name: str, version: int, table: pd.DataFrame, path) -> str:
    """The note after Build: what was saved where, and how to retrain with it."""
    from cifar_mtl.labelsets import counts

    c = counts(table)
    return (f"Saved label set {name}@v{version}: {c['relabel']} relabel(s), {c['exclude']} exclusion(s), "
            f"in `{path}`. Retrain with it: Retrain page, Label set {name}@v{version}.")
