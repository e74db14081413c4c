"""CSV exports: the error-category table of a run's reviews, its review events, mislabels.

Files are UTF-8 with a header row. Text cells a spreadsheet would run as a formula
(starting with =, +, -, @, tab or carriage return) get a leading apostrophe;
numeric columns are written as numbers, negative ones included, since a number
cannot carry a formula. Files get the user's usual mode (0o666 less the umask).
"""

from __future__ import annotations

import datetime as _dt
import math
import numbers
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_mtl.analysis import values_by_index
from cifar_mtl.labels import CLASS_NAMES, class_names
from cifar_mtl.stores.reviews import VERDICTS, ReviewStore, default_path
from cifar_mtl.runs import atomic_write_bytes

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number ("-3", "+0.5", "1e-4") cannot run as a formula, so it stays as is.
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
PRED_COLUMNS = ["index", "label", "label_name", "pred", "pred_name", "confidence", "correct"]


def neutralise(value) -> str:
    """One cell as spreadsheet-safe text.

    Missing values become "", numbers their usual text (negatives too), timestamps
    ISO 8601, tuples and lists "a; b". Text starting with =, +, -, @, tab or
    carriage return gets a leading apostrophe unless it is a plain number.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Number):
        return "" if isinstance(value, numbers.Real) and math.isnan(value) else str(value)
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        text = "; ".join(neutralise(v) for v in value)
    else:
        text = str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """`df` as UTF-8 CSV bytes (CRLF rows) with a header row, no index column, cells neutralised.

    Numeric and bool columns are written by pandas as numbers; every other column
    (and the header) gets the same text as `neutralise` would give, computed a whole
    column at a time where the column holds only text or timestamps.
    """
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        series = df[col]
        if series.dtype.kind in "iufb" and not isinstance(series.dtype, pd.CategoricalDtype):
            out[neutralise(col)] = series
        else:
            out[neutralise(col)] = _neutralise_column(series)
    # CRLF as RFC 4180 says; it also makes the writer quote cells holding a lone \r.
    return out.to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def _neutralise_column(series: pd.Series) -> pd.Series:
    """`series.map(neutralise)`, vectorised for text and tz-aware timestamp columns."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        # ISO 8601 in UTC with microseconds, as Timestamp.isoformat() gives for review times.
        utc = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
        stamps = np.datetime_as_string(utc, unit="us")
        text = pd.Series(stamps, index=series.index, dtype=object) + "+00:00"
        return text.where(series.notna(), "")
    if pd.api.types.infer_dtype(series, skipna=True) not in ("string", "empty"):
        return series.map(neutralise).astype(object)
    text = series.astype(object).where(series.notna(), "").astype(str)
    risky = text.str.startswith(FORMULA_STARTS) & ~text.str.fullmatch(_PLAIN_NUMBER.pattern)
    return ("'" + text).where(risky, text).astype(object)


# --- frames ------------------------------------------------------------------------


def _pred_columns(preds: pd.DataFrame) -> pd.DataFrame:
    label = preds["label"].to_numpy(np.int64)
    pred = preds["pred"].to_numpy(np.int64)
    return pd.DataFrame(
        {
            "index": preds["index"].to_numpy(np.int64),
            "label": label,
            "label_name": class_names(label),
            "pred": pred,
            "pred_name": class_names(pred),
            "confidence": preds["confidence"].to_numpy(np.float32),
            "correct": preds["correct"].to_numpy(bool),
        },
        columns=PRED_COLUMNS,
    )


def error_category_frame(preds: pd.DataFrame, store: ReviewStore, run_id: str) -> pd.DataFrame:
    """Wide form: one row per image of `preds` with a current review made under `run_id`.

    Columns: index, label, label_name, pred, pred_name, confidence, correct, one 0/1
    column per category (1 when any reviewer tags it), mislabel_verdict (the distinct
    verdicts, "; "-joined), suggested_label and suggested_name (the reviewers'
    majority correction, see `cifar_mtl.mislabels.resolve_mislabels`; empty if none),
    reviewers ("; "-joined), notes ("reviewer: note", " | "-joined), last_review (UTC
    time of the latest current entry). Rows are ordered by index.
    """
    from cifar_mtl.mislabels import resolve_mislabels

    tags = store.current_tags(run_id)
    mislabels = store.current_mislabels(run_id)
    notes = store.current_notes(run_id)
    entries = pd.concat(
        [t[["index", "reviewer", "at"]] for t in (tags, mislabels, notes) if len(t)]
        or [tags[["index", "reviewer", "at"]]]
    )
    frame = _pred_columns(preds)
    frame = frame[frame["index"].isin(entries["index"])].sort_values("index").reset_index(drop=True)
    idx = frame["index"]
    for cat in store.category_names():
        tagged = tags.loc[tags["category"] == cat, "index"]
        frame[cat] = idx.isin(tagged).astype("int64")
    verdict_rank = {v: k for k, v in enumerate(VERDICTS)}
    verdicts = values_by_index(mislabels["index"], mislabels["verdict"].map(verdict_rank))
    frame["mislabel_verdict"] = idx.map(lambda i: "; ".join(VERDICTS[k] for k in verdicts.get(i, ())))
    decided = resolve_mislabels(mislabels).set_index("index")["corrected_label"]
    frame["suggested_label"] = idx.map(decided).astype("Int64")
    frame["suggested_name"] = frame["suggested_label"].map(
        lambda v: "" if pd.isna(v) else CLASS_NAMES[int(v)]
    )
    reviewers = values_by_index(entries["index"], entries["reviewer"])
    frame["reviewers"] = idx.map(lambda i: "; ".join(reviewers.get(i, ())))
    texts = values_by_index(notes["index"], notes["reviewer"] + ": " + notes["note"])
    frame["notes"] = idx.map(lambda i: " | ".join(texts.get(i, ())))
    last = entries.groupby("index")["at"].max()
    # pandas 3 cannot map an empty index through a datetime Series: build the empty column.
    frame["last_review"] = idx.map(last) if len(frame) else pd.Series(dtype=last.dtype)
    return frame


def review_events_frame(preds: pd.DataFrame, store: ReviewStore, run_id: str) -> pd.DataFrame:
    """Long form: one row per review event recorded under `run_id`, oldest first.

    Columns: id, at, reviewer, run_id, index, label, label_name, pred, pred_name,
    confidence, correct, kind, category, action, note, verdict, suggested_label, undoes,
    batch, split ("train" for verdicts on training images, whose prediction columns are empty).
    """
    events = store.history(run_id=run_id)
    # A verdict on a training image (split "train") has no row in the test predictions.
    test_index = events["index"].where(events["split"] == "test", -1)
    merged = events.assign(_test_index=test_index).merge(
        _pred_columns(preds).rename(columns={"index": "_test_index"}), on="_test_index", how="left")
    head = ["id", "at", "reviewer", "run_id"]
    tail = [c for c in events.columns if c not in head and c != "index"]
    return merged[head + PRED_COLUMNS + tail]


# --- files ---------------------------------------------------------------------------


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def file_stem(run_id: str, *, long: bool = False, filtered: bool = False) -> str:
    """An error-category export's name without time stamp: `<run_id>-errors[-long][-filtered]`."""
    return f"{run_id}-errors{'-long' if long else ''}{'-filtered' if filtered else ''}"


def kept_path(stem: str, home_dir=None) -> Path:
    """`<home>/exports/<stem>-<YYYYmmdd-HHMMSS>.csv`: where an export is kept by default."""
    from cifar_mtl.runs import home

    return home(home_dir) / "exports" / f"{stem}-{_stamp()}.csv"


def _out_path(out, home_dir, stem: str) -> Path:
    """Where an export goes: `out` in an existing folder, else a stamped file under `<home>/exports/`.

    The home's exports folder is made when missing; any other missing folder is refused,
    since silently making one hides a typo in the path.
    """
    from cifar_mtl.runs import home

    exports = home(home_dir) / "exports"
    if out is None:
        return kept_path(stem, home_dir)
    path = Path(out).expanduser()
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name ending in .csv")
    folder = path.parent
    if not folder.is_dir() and folder.resolve() != exports.resolve():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"--out {path}: {folder} {what}; create it first (mkdir -p {folder}) "
                         "or give a file in an existing folder")
    return path


def write_user_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, with the user's normal file mode (`runs.atomic_write_bytes`).

    OSError becomes a ValueError naming the file.
    """
    try:
        atomic_write_bytes(Path(path), data)
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}; "
                         "choose a file in a folder you can write to (--out)") from exc


def export_error_csv(run_id: str, *, long: bool = False, out=None, home_dir=None,
                     store: ReviewStore | None = None) -> tuple[Path, int]:
    """`write_error_csv`, also returning the number of data rows (0: nothing reviewed yet)."""
    from cifar_mtl.runs import load_predictions

    path = _out_path(out, home_dir, file_stem(run_id, long=long))  # refuse a bad --out first
    preds = load_predictions(run_id, home_dir)
    own = store is None
    store = ReviewStore(default_path(home_dir)) if own else store
    try:
        frame = (review_events_frame if long else error_category_frame)(preds, store, run_id)
    finally:
        if own:
            store.close()
    write_user_file(path, to_csv_bytes(frame))
    return path, len(frame)


def write_error_csv(run_id: str, *, long: bool = False, out=None, home_dir=None,
                    store: ReviewStore | None = None) -> Path:
    """Write a run's error-category CSV (or with `long=True` its review events).

    Default path `<home>/exports/<run_id>-errors[-long]-<YYYYmmdd-HHMMSS>.csv`; `out`
    must be in an existing folder. Uses `store`, else the home's review database.
    A run without reviews gets a header-only file. Returns the written path.
    """
    return export_error_csv(run_id, long=long, out=out, home_dir=home_dir, store=store)[0]


def export_mislabels_csv(run_ids, *, top: int | None = None, method: str = "normalized_margin",
                         out=None, home_dir=None, split: str = "test") -> tuple[Path, pd.DataFrame]:
    """`write_mislabels_csv`, also returning the ranking it wrote (with its `rank` column).

    `split="train"` ranks training images from cross-validation runs' train predictions
    (`cifar_mtl.mislabels.train_ranking_of_runs`, Datalab columns where the first run has
    fresh saved flags: `mislabels --split train --datalab`).
    """
    from cifar_mtl.mislabels import rank_mislabels, train_ranking_of_runs
    from cifar_mtl.runs import load_predictions

    run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids or [])
    if not run_ids:
        raise ValueError("no run given: pass at least one run id (--run ID)")
    name = run_ids[0] if len(run_ids) == 1 else f"{run_ids[0]}-and-{len(run_ids) - 1}-more"
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    suffix = "mislabels" if split == "test" else "train-mislabels"
    path = _out_path(out, home_dir, f"{name}-{suffix}")  # refuse a bad --out before the slow part
    if split == "train":
        ranked = train_ranking_of_runs(run_ids, method=method, top=top, home_dir=home_dir)
    else:
        tables = [load_predictions(r, home_dir) for r in run_ids]
        ranked = rank_mislabels(tables, method=method, top=top)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    write_user_file(path, to_csv_bytes(ranked))
    return path, ranked


def write_mislabels_csv(run_ids, *, top: int | None = None, method: str = "normalized_margin",
                        out=None, home_dir=None) -> Path:
    """Write the mislabel ranking of one run, or of several runs' averaged probabilities.

    Columns: rank (1 = most suspect) then those of `rank_mislabels`. Default path
    `<home>/exports/<run_id>[-and-N-more]-mislabels-<YYYYmmdd-HHMMSS>.csv`; `out`
    must be in an existing folder.
    """
    return export_mislabels_csv(run_ids, top=top, method=method, out=out, home_dir=home_dir)[0]
