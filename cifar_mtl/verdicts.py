"""Mislabel verdicts from a file: the command line's way to review suspects.

The reviewer writes `mislabels --out FILE` (the ranking as CSV), opens it in a
spreadsheet or an editor, fills a `verdict` column (confirmed, rejected or unsure)
on the rows they judged, and imports the file. A confirmed row takes the right label
from a `new_label` column (a class name or 0-9) or, left empty or absent, from the
ranking's own `suggested` class (the file's `label` column is the given label). Rows without a verdict are skipped, so a reviewer can judge the
top 20 of a 500-row file.

`read_verdicts` checks every row against the run's images and labels before anything
is saved; `record_verdicts` then saves them through the review store, one event per
changed verdict (history and undo as in the app).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_mtl.errors import UserError
from cifar_mtl.labels import CLASS_NAMES, NUM_CLASSES
from cifar_mtl.stores.reviews import VERDICTS

NEW_LABEL = "new_label"  # the column with the right class of a confirmed row
MAX_PROBLEMS = 10  # rows named in one error message; the rest are counted
MAX_BYTES = 50 * 1024 * 1024  # a ranking of 50,000 images is about 6 MB


class VerdictFileError(UserError):
    """The verdict file cannot be read or has rows that cannot be saved. Names the rows."""


def read_verdicts(source, labels: pd.Series) -> pd.DataFrame:
    """The verdicts of a CSV file, checked against the run's images.

    Args:
        source: a path, or the file's bytes.
        labels: the run's given label per image: a Series of class indices indexed by
            image index (the predictions' or train predictions' `label` column).

    Returns:
        DataFrame[index (int64), verdict (str), label (Int64: missing unless given or
        confirmed), line (the row's line in the file)], one row per judged image.

    Raises:
        VerdictFileError: naming each bad row by its line (up to `MAX_PROBLEMS`).
    """
    table = _read_csv(source)
    columns = {str(c).strip().lower(): c for c in table.columns}
    for needed in ("index", "verdict"):
        if needed not in columns:
            raise VerdictFileError(
                f"the file has no {needed!r} column (its columns: {', '.join(map(str, table.columns)) or 'none'}); "
                "start from `mislabels --out FILE` and add a 'verdict' column with confirmed, rejected or unsure")
    problems, rows = [], []
    for position, row in enumerate(table.itertuples(index=False)):
        line = position + 2  # the header is line 1
        cells = dict(zip(table.columns, row))
        verdict = _text(cells[columns["verdict"]]).lower()
        if not verdict:
            continue
        try:
            rows.append(_check_row(cells, columns, verdict, labels) + (line,))
        except VerdictFileError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        more = len(problems) - MAX_PROBLEMS
        listed = "; ".join(problems[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise VerdictFileError(f"{len(problems)} row(s) cannot be saved, so none was: {listed}")
    out = pd.DataFrame(rows, columns=["index", "verdict", "label", "line"])
    out["index"] = out["index"].astype(np.int64)
    out["label"] = out["label"].astype("Int64")
    duplicated = out["index"].duplicated(keep=False)
    if duplicated.any():
        first = out[duplicated].groupby("index")["line"].apply(lambda s: ", ".join(map(str, s))).head(MAX_PROBLEMS)
        named = "; ".join(f"image {i} on lines {lines}" for i, lines in first.items())
        raise VerdictFileError(f"an image has two verdicts, so none was saved: {named}; keep one row per image")
    return out


def run_labels(run_id: str, split: str, home_dir=None) -> pd.Series:
    """The given label of each image a run predicted: test images (`predictions.parquet`) or,
    with `split="train"`, a cross-validation run's training images (`train_predictions.parquet`).

    Returns:
        Series of class indices (int64) indexed by image index.
    """
    if split == "train":
        from cifar_mtl.mislabels import load_train_predictions

        table = load_train_predictions(run_id, home_dir, columns=["label"])
    elif split == "test":
        from cifar_mtl.runs import load_predictions

        table = load_predictions(run_id, home_dir)
    else:
        raise VerdictFileError(f"split {split!r}: choose test or train")
    return pd.Series(table["label"].to_numpy(np.int64), index=table["index"].to_numpy(np.int64), name="label")


def record_verdicts(store, run_id: str, verdicts: pd.DataFrame, reviewer: str, split: str,
                    labels: pd.Series) -> dict:
    """Save `read_verdicts`'s rows as `reviewer`'s verdicts on `run_id`; return counts.

    Returns:
        {"saved": verdicts that changed, "unchanged": verdicts the reviewer had already given}.
    """
    saved = 0
    for row in verdicts.itertuples(index=False):
        label = None if pd.isna(row.label) else int(row.label)
        saved += store.set_mislabel(run_id, int(row.index), reviewer, row.verdict, label,
                                    given_label=int(labels[row.index]), split=split)
    return {"saved": saved, "unchanged": len(verdicts) - saved}


def _read_csv(source) -> pd.DataFrame:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise VerdictFileError(f"{path}: no such file; write one with `mislabels --out FILE` first")
        if path.stat().st_size > MAX_BYTES:
            raise VerdictFileError(f"{path}: {path.stat().st_size:,} bytes is too large for a verdict file")
        source = path.read_bytes()
    try:
        text = bytes(source).decode("utf-8-sig")
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except UnicodeDecodeError as exc:
        raise VerdictFileError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as CSV, "
                               "UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise VerdictFileError(f"the file is not a readable CSV table ({exc}); save it as CSV") from None


def _check_row(cells: dict, columns: dict, verdict: str, labels: pd.Series) -> tuple[int, str, int | None]:
    if verdict not in VERDICTS:
        raise VerdictFileError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    index = _number(_text(cells[columns["index"]]), "image index")
    if index not in labels.index:
        raise VerdictFileError(f"image {index} is not among the run's {len(labels):,} images")
    given = int(labels[index])
    label = _class(_text(cells[columns[NEW_LABEL]])) if NEW_LABEL in columns else None
    if label is None and verdict == "confirmed" and "suggested" in columns:
        label = _class(_text(cells[columns["suggested"]]))
    if verdict == "confirmed":
        if label is None:
            raise VerdictFileError(f"image {index} is confirmed mislabelled but names no label: "
                                   f"fill its '{NEW_LABEL}' cell")
        if label == given:
            raise VerdictFileError(f"image {index} already has label {CLASS_NAMES[given]}; give the right label, "
                                   "or reject the suspicion")
    if verdict == "rejected":
        label = None  # a rejection keeps the given label; a filled label cell says nothing more
    return index, verdict, label


def _text(value) -> str:
    text = "" if value is None else str(value).strip()
    return text[1:] if text.startswith("'") else text  # cells the exporter neutralised for spreadsheets


def _number(text: str, what: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise VerdictFileError(f"{what} {text!r} is not a number") from None
    if not value.is_integer():
        raise VerdictFileError(f"{what} {text!r} is not a whole number")
    return int(value)


def _class(text: str) -> int | None:
    """A class given by name ("cat") or index ("3"); None when the cell is empty."""
    if not text:
        return None
    if text.lower() in CLASS_NAMES:
        return CLASS_NAMES.index(text.lower())
    try:
        number = _number(text, "label")
    except VerdictFileError:
        raise VerdictFileError(f"label {text!r} is not a class: use one of {', '.join(CLASS_NAMES)} or 0-9") from None
    if not 0 <= number < NUM_CLASSES:
        raise VerdictFileError(f"label {number} is outside 0-9")
    return number
