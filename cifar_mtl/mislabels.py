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


def verdicts_on(mislabels: pd.DataFrame, index: int, reviewer: str | None) -> tuple[pd.DataFrame, list[str]]:
    """Everyone's current verdicts on image `index` (the rows of `mislabels`) and the
    verdicts `reviewer` holds among them (empty without a reviewer)."""
    theirs = mislabels[mislabels["index"] == index]
    mine = theirs.loc[theirs["reviewer"] == reviewer, "verdict"].tolist() if reviewer else []
    return theirs, mine


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


# --- the training set (out-of-sample predictions from a cross-validation run) ---------

TRAIN_PREDICTIONS_FILE = "train_predictions.parquet"  # written by cifar_mtl.training.crossval
DATALAB_ISSUES = ("label", "outlier", "near_duplicate")
DATALAB_COLUMNS = [c for t in DATALAB_ISSUES for c in (f"is_{t}_issue", f"{t}_score")]
RANKING_INPUTS = ["index", "label", *PROB_COLUMNS, "fold"]  # the columns of train predictions a ranking reads


def load_train_predictions(run_id: str, home_dir=None, columns=None) -> pd.DataFrame:
    """A cross-validation run's `train_predictions.parquet`: the predictions table of every
    training image (`index` = training index) plus `fold`.

    Args:
        columns: read only these and `RANKING_INPUTS` (a ranking reads no others); None: all.

    Raises:
        RunError: the run has no such file (it is not a finished cross-validation run), or
            it is damaged or lacks `RANKING_INPUTS`.
    """
    import pyarrow.parquet as pq

    from cifar_mtl.runs import RunError, run_dir

    path = run_dir(run_id, home_dir) / TRAIN_PREDICTIONS_FILE
    if not path.is_file():
        raise RunError(
            f"run {run_id!r} has no {TRAIN_PREDICTIONS_FILE}, so it holds no out-of-sample predictions for the "
            "training set; rank training images from a finished cross-validation run "
            "(`python -m cifar_mtl crossval --config cpu_crossval --folds 5`)"
        )
    try:
        names = pq.read_schema(path).names
        missing = [c for c in RANKING_INPUTS if c not in names]
        wanted = None if columns is None else list(dict.fromkeys([*RANKING_INPUTS, *columns]))
        table = None if missing else pd.read_parquet(path, columns=wanted)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise RunError(f"run {run_id!r}: {TRAIN_PREDICTIONS_FILE} cannot be read ({exc})") from exc
    if missing:
        raise RunError(f"run {run_id!r}: {TRAIN_PREDICTIONS_FILE} is missing columns {missing}; "
                       f"run the cross-validation again")
    if table["index"].duplicated().any() or not np.isfinite(table[PROB_COLUMNS].to_numpy(np.float64)).all():
        raise RunError(f"run {run_id!r}: {TRAIN_PREDICTIONS_FILE} has duplicate images or non-finite "
                       "probabilities; run the cross-validation again")
    return table


def datalab_issues(labels: np.ndarray, probs: np.ndarray, features: np.ndarray | None = None) -> pd.DataFrame:
    """cleanlab's Datalab issues per image: label issues from `probs`, outliers and
    near-duplicates from `features`.

    Args:
        labels: (N,) given labels 0..9.
        probs: (N, 10) out-of-sample class probabilities.
        features: (N, D) embeddings (e.g. a run's `embeddings.npz` train array), or None
            for the label issue type only.

    Returns:
        DataFrame in the rows' order with `is_<type>_issue` (bool) and `<type>_score`
        (float, lower = more severe) for each type in `DATALAB_ISSUES` that was run;
        the columns of types not run are absent.
    """
    from cleanlab import Datalab

    labels = np.asarray(labels, dtype=np.int64)
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    types = {"label": {}}
    kwargs = {"pred_probs": np.asarray(probs, dtype=np.float64)}
    if features is not None:
        features = np.asarray(features, dtype=np.float32)
        if len(features) != len(labels):
            raise ValueError(f"features has {len(features)} rows for {len(labels)} images; pass the training "
                             "embeddings of the same images, in the same order")
        types.update(outlier={}, near_duplicate={})
        kwargs["features"] = features
    lab.find_issues(issue_types=types, **kwargs)
    issues = lab.get_issues()
    wanted = [c for c in DATALAB_COLUMNS if c in issues.columns]
    out = issues[wanted].reset_index(drop=True)
    for col in wanted:
        out[col] = out[col].astype(bool if col.startswith("is_") else np.float64)
    return out


def rank_train_mislabels(
    preds, method: str = "normalized_margin", top: int | None = None, features: np.ndarray | None = None,
) -> pd.DataFrame:
    """Training images ranked by cleanlab's label-quality score, most suspect first.

    Args:
        preds: one cross-validation run's train predictions (`load_train_predictions`),
            or a list of them whose probabilities are averaged.
        features: None, or (50000, D) training embeddings indexed by training index
            (`cifar_mtl.evidence.files.read_embeddings(folder, "train")`): Datalab's
            issue columns (`DATALAB_COLUMNS`) are then added, usable as filters.

    Returns:
        The columns of `rank_mislabels` (`index` = training index), plus `fold` where the
        first table has one, plus the Datalab columns when `features` is given.
    """
    ranked = rank_mislabels(preds, method=method, top=None)
    first = preds if isinstance(preds, pd.DataFrame) else list(preds)[0]
    if "fold" in first.columns:
        ranked["fold"] = ranked["index"].map(first.set_index("index")["fold"]).astype("int8")
    if features is not None:
        index, labels, probs = average_probabilities(preds)
        if index.max() >= len(features):
            raise ValueError(f"training index {index.max()} is beyond the {len(features)} rows of the embeddings; "
                             "use the training embeddings of the full training set")
        issues = datalab_issues(labels, probs, np.asarray(features)[index])
        issues.insert(0, "index", index)
        ranked = ranked.merge(issues, on="index", how="left", sort=False)
    return ranked.head(int(top)).reset_index(drop=True) if top is not None else ranked


# --- Datalab's flags, computed once per cross-validation run and saved beside it ---------

DATALAB_FILE = "datalab.parquet"  # `index` + DATALAB_COLUMNS, in a cross-validation run folder


def _datalab_inputs(folder, embeddings_folder=None) -> list:
    """The files a run's Datalab flags are computed from: its train predictions and the
    embeddings (its own, or those of `embeddings_folder`'s run)."""
    from cifar_mtl.evidence.files import EMBEDDINGS_FILE

    return [folder / TRAIN_PREDICTIONS_FILE, (embeddings_folder or folder) / EMBEDDINGS_FILE]


def check_same_dataset(run_id: str, other: str, home_dir=None) -> None:
    """Refuse embeddings of `other` when its run trained on other data than `run_id` (both
    metrics.json record `data_fingerprint`; a run without one is not checked)."""
    from cifar_mtl.runs import RunError, load_metrics

    def fingerprint(run):
        try:
            return load_metrics(run, home_dir).get("data_fingerprint")
        except (OSError, ValueError, RunError):
            return None

    mine, theirs = fingerprint(run_id), fingerprint(other)
    if mine and theirs and mine != theirs:
        raise RunError(f"run {other!r} was trained on another dataset than run {run_id!r} (data fingerprints "
                       f"{theirs} and {mine}); take the embeddings of a run on the same training images")


def _mtimes(paths) -> list[int | None]:
    """Modification time (ns) of each path, None where it is absent."""
    return [p.stat().st_mtime_ns if p.is_file() else None for p in paths]


def _train_embeddings(run_id: str, folder) -> np.ndarray:
    """The run's (N, D) training embeddings, or a RunError saying how to get them."""
    from cifar_mtl.evidence.files import MissingEvidence, read_embeddings
    from cifar_mtl.runs import MODEL_FILE, RunError

    try:
        return read_embeddings(folder, "train")
    except MissingEvidence as exc:
        if (folder / MODEL_FILE).is_file():
            how = f"set CIFAR10_DIR and run `python -m cifar_mtl evidence --run {run_id}`"
        else:  # `evidence` embeds images with model.keras; cross-validation keeps only fold checkpoints
            how = ("a cross-validation run keeps no model to embed images with: take the embeddings of a "
                   "training run on the same data with `--embeddings-from RUN_ID` (`runs` lists them; any "
                   "run trained since evidence exists has them)")
        raise RunError(f"run {run_id!r} has no training embeddings, which Datalab's outlier and near-duplicate "
                       f"checks need ({exc}); {how}") from exc


def write_datalab(run_id: str, home_dir=None, log=print, embeddings_from: str | None = None):
    """Compute cleanlab's Datalab flags of a cross-validation run and save them atomically
    as `DATALAB_FILE` in its folder (minutes on 50,000 images: done once, not per render).

    Reads the run's own `train_predictions.parquet` (out-of-sample probabilities) and the
    `embeddings.npz` `train` array (rows by training index) of `embeddings_from`: a
    training run on the same data, whose evidence embeds the training images (a
    cross-validation run keeps no model to embed them with); default the run itself.
    The file records which run's embeddings it used (`attrs["embeddings_run"]`).

    Returns:
        (path, table): the file and its DataFrame[index, *DATALAB_COLUMNS], in index order.

    Raises:
        RunError: no train predictions, no training embeddings (the message says how to
            make them), embeddings that do not cover the run's images, or inputs rewritten
            while the flags were computed.
    """
    import time

    from cifar_mtl.runs import RunError, atomic_write_parquet, run_dir

    folder = run_dir(run_id, home_dir)
    source = embeddings_from or run_id
    source_folder = run_dir(source, home_dir)
    if source != run_id:
        check_same_dataset(run_id, source, home_dir)
    before = _mtimes(_datalab_inputs(folder, source_folder))
    preds = load_train_predictions(run_id, home_dir, columns=RANKING_INPUTS)
    features = _train_embeddings(source, source_folder)
    index, labels, probs = average_probabilities(preds)
    if index.max(initial=-1) >= len(features):
        raise RunError(f"run {run_id!r}: training index {index.max()} is beyond the {len(features)} rows of "
                       f"run {source!r}'s training embeddings; use the embeddings of the full training set")
    log(f"Datalab on {len(index):,} training images of run {run_id} ({features.shape[1]}-dimension embeddings "
        f"of run {source})...")
    start = time.perf_counter()
    table = datalab_issues(labels, probs, features[index])
    table.insert(0, "index", index)
    table.attrs["embeddings_run"] = source
    if _mtimes(_datalab_inputs(folder, source_folder)) != before:  # the flags would describe files that are gone
        raise RunError(f"run {run_id!r}: its train predictions or embeddings changed while Datalab ran; "
                       "run the command again")
    path = folder / DATALAB_FILE
    atomic_write_parquet(path, table)
    counts = ", ".join(f"{int(table[f'is_{t}_issue'].sum()):,} {t.replace('_', '-')}" for t in DATALAB_ISSUES)
    log(f"Datalab flags ({counts} issues) in {time.perf_counter() - start:.1f} s, saved to {path}")
    return path, table


def read_datalab(run_id: str, home_dir=None) -> pd.DataFrame | None:
    """A run's saved Datalab flags: DataFrame[index, *DATALAB_COLUMNS], or None when the file
    is absent or older than its train predictions or embeddings (a stale file is never used).

    Raises:
        RunError: the file is damaged or lacks columns (the message says how to rewrite it).
    """
    from cifar_mtl.runs import RunError, run_dir

    folder = run_dir(run_id, home_dir)
    path = folder / DATALAB_FILE
    if not path.is_file():
        return None
    redo = f"rewrite it with `python -m cifar_mtl mislabels --split train --run {run_id} --datalab`"
    try:
        table = pd.read_parquet(path)
        source_folder = run_dir(table.attrs.get("embeddings_run") or run_id, home_dir)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise RunError(f"run {run_id!r}: {DATALAB_FILE} cannot be read ({exc}); {redo}") from exc
    inputs = _mtimes(_datalab_inputs(folder, source_folder))
    if None in inputs or path.stat().st_mtime_ns < max(inputs):
        return None
    missing = [c for c in ["index", *DATALAB_COLUMNS] if c not in table.columns]
    if missing:
        raise RunError(f"run {run_id!r}: {DATALAB_FILE} is missing columns {missing}; {redo}")
    return table[["index", *DATALAB_COLUMNS]]


def with_datalab(ranked: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """`ranked` with the saved flags' columns; images the flags do not cover are unflagged
    (is_* False, scores NaN)."""
    ranked = ranked.merge(flags, on="index", how="left", sort=False)
    for col in DATALAB_COLUMNS:
        if col.startswith("is_"):
            ranked[col] = ranked[col].fillna(False).astype(bool)
    return ranked


def train_ranking_of_runs(run_ids, method: str = "normalized_margin", top: int | None = None,
                          home_dir=None, features_run: str | None = None) -> pd.DataFrame:
    """`rank_train_mislabels` of one or several cross-validation runs' train predictions.

    Datalab's columns are added from the saved flags (`write_datalab`) of `features_run`
    (default: the first run) when they are fresh (`read_datalab`); otherwise the ranking
    alone is returned. Datalab itself never runs here: it takes minutes on 50,000 images.
    """
    run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    tables = [load_train_predictions(r, home_dir, columns=RANKING_INPUTS) for r in run_ids]
    ranked = rank_train_mislabels(tables, method=method)
    flags = read_datalab(features_run or run_ids[0], home_dir)
    if flags is not None:
        ranked = with_datalab(ranked, flags)
    return ranked.head(int(top)).reset_index(drop=True) if top is not None else ranked
