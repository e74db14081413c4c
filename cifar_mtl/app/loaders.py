"""Cached reads: runs, predictions, the mislabel ranking, the review store and the test images.

- predictions and rankings are cached per file version (a table is read once, until
  its file changes) and shared by every browser session: do not modify them;
- `store()` is one review store per process and database file (`st.cache_resource`);
- the test-set thumbnails are made once per process, and never downloaded.

A load that fails shows why (`load_run`, `store_or_none`, `images_for`) and the page
goes on with what it has.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cifar_mtl import runs
from cifar_mtl.app.messages import escape_markdown, show_error
from cifar_mtl.images import Thumbnails


def _stamp(path: Path) -> tuple[int, int] | None:
    """(mtime ns, size) of a file, None when absent: the cache key of a file version."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return s.st_mtime_ns, s.st_size


# --- runs and predictions -------------------------------------------------------------------


_RUN_FILES = (runs.CONFIG_FILE, runs.STATUS_FILE, runs.METRICS_FILE, runs.PREDICTIONS_FILE,
              runs.PROGRESS_FILE, runs.HISTORY_FILE)


def _runs_stamp(home: Path) -> tuple:
    """The version of every file `list_runs` reads: a few stat calls, so the listing (which
    parses every run's files) runs again only when something in a run folder changed."""
    root = runs.runs_root(home)
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return (str(root), None)
    return tuple((p.name, tuple(_stamp(p / f) for f in _RUN_FILES)) for p in folders)


@st.cache_data(max_entries=4, show_spinner=False)
def _run_table(home: str, stamp: tuple) -> pd.DataFrame:
    return runs.list_runs(home)


def run_table() -> pd.DataFrame:
    """Every run folder under the artifacts home, newest first (`runs.list_runs`), read again
    only when a run's files change. Never raises: an unreadable home is said once, on the
    page, and listed as no runs, so Getting started still shows."""
    home = runs.home().resolve()
    try:
        return _run_table(str(home), _runs_stamp(home))
    except Exception as exc:
        show_error(exc, "Listing runs")
        return pd.DataFrame(columns=runs.RUN_COLUMNS)


def complete_run_ids(table: pd.DataFrame) -> list[str]:
    """Ids of runs with metrics and predictions, in the table's (newest first) order."""
    if table.empty:
        return []
    return table.loc[table["complete"].astype(bool), "run_id"].tolist()


@st.cache_resource(max_entries=16, show_spinner=False)
def _predictions(home: str, run_id: str, stamp) -> pd.DataFrame:
    return runs.load_predictions(run_id, home)


def _predictions_key(run_id: str) -> tuple[str, str, tuple[int, int] | None]:
    """(home, run id, file version): the cache key of a run's predictions."""
    home = runs.home()
    path = runs.run_dir(run_id, home) / runs.PREDICTIONS_FILE
    return str(home.resolve()), run_id, _stamp(path)


def predictions(run_id: str) -> pd.DataFrame:
    """The run's predictions table, read once per file version. Shared: do not modify it."""
    return _predictions(*_predictions_key(run_id))


@st.cache_data(max_entries=16, show_spinner="Ranking suspected mislabels...")
def _ranked(home: str, run_id: str, stamp, method: str) -> pd.DataFrame:
    from cifar_mtl.mislabels import rank_mislabels

    # The cached table, not a second read of the parquet file.
    return rank_mislabels(_predictions(home, run_id, stamp), method=method)


def ranked_mislabels(run_id: str, method: str = "normalized_margin") -> pd.DataFrame:
    """`mislabels.rank_mislabels` of the run, computed once per predictions file."""
    return _ranked(*_predictions_key(run_id), method)


@st.cache_data(max_entries=64, show_spinner=False)
def _history(home: str, run_id: str, stamp) -> pd.DataFrame:
    return runs.load_history(run_id, home)


def history(run_id: str) -> pd.DataFrame:
    """The run's history.csv (`runs.load_history`), read once per file version."""
    home = runs.home().resolve()
    return _history(str(home), run_id, _stamp(runs.run_dir(run_id, home) / runs.HISTORY_FILE))


def load_run(run_id: str | None) -> pd.DataFrame | None:
    """Predictions of `run_id`, or None after showing why they cannot be used."""
    if run_id is None:
        return None
    try:
        return predictions(run_id)
    except Exception as exc:  # a bad run must never take the page down
        show_error(exc, f"Run {run_id}")
        return None


# --- the review store -------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _store(path: str):
    from cifar_mtl.stores.reviews import ReviewStore

    return ReviewStore(path)


def store():
    """The review database of the artifacts home: one store per process and file.

    The page script, fragment reruns and widget callbacks run on different threads,
    for every browser tab at once; `ReviewStore` gives each thread its own connection
    and never closes one another thread may still use, so one shared store serves
    them all. It is never closed here.
    """
    from cifar_mtl.stores.database import default_path

    return _store(str(default_path().resolve()))


def store_or_none(context: str = "Review database", *, required: bool = False):
    """`store()`, or None after an error message; with `required` the page stops instead."""
    try:
        return store()
    except Exception as exc:  # e.g. SchemaError: the file is not a review database
        show_error(exc, context)
        if required:
            st.stop()
        return None


def tags_by_everyone(index: int) -> pd.DataFrame:
    """Every reviewer's current tags and note on image `index`: DataFrame[reviewer, tags, note]."""
    s = store()
    tags = s.current_tags(indices=[index])
    notes = s.current_notes(indices=[index]).set_index("reviewer")["note"]
    per = tags.groupby("reviewer")["category"].apply(lambda c: ", ".join(sorted(c)))
    names = sorted(set(per.index) | set(notes.index))
    return pd.DataFrame(
        {"reviewer": names, "tags": [per.get(n, "") for n in names], "note": [notes.get(n, "") for n in names]}
    )


# --- test images --------------------------------------------------------------------------------


@st.cache_resource(max_entries=2, show_spinner="Loading the CIFAR-10 test images...")
def _thumbnails(source: str | None, stamp) -> tuple[Thumbnails | None, np.ndarray | None, str | None]:
    from cifar_mtl.cifar10 import DataError, load_test_set

    try:
        x, y = load_test_set(source, allow_download=False)  # never download on page load
        return Thumbnails(x), np.asarray(y), None
    except (DataError, OSError, ValueError) as exc:
        # Cached as well, so a missing dataset costs one check per file version, not per rerun.
        return None, None, str(exc)


def image_source() -> str | None:
    """Where test images come from: `$CIFAR10_DIR`, else None (the keras download cache)."""
    from cifar_mtl.cifar10 import resolve_source

    return resolve_source(None)


def test_images() -> tuple[Thumbnails | None, np.ndarray | None, str | None]:
    """(thumbnails, labels (N,), None) or (None, None, reason the images are unavailable)."""
    from cifar_mtl.cifar10 import KERAS_CACHE

    source = image_source()
    return _thumbnails(source, _stamp(Path(source) if source else KERAS_CACHE))


def data_source_text() -> str:
    """One line for the sidebar: where the test images are read from."""
    from cifar_mtl.cifar10 import KERAS_CACHE

    source = image_source()
    if source:
        return f"`$CIFAR10_DIR` = `{source}`"
    if KERAS_CACHE.exists():
        return f"keras download cache `{KERAS_CACHE}`"
    return "not found: set `CIFAR10_DIR` (see Getting started)"


def images_for(preds: pd.DataFrame) -> Thumbnails | None:
    """Thumbnails matching this run, or None after a notice saying why there are none.

    Tables and charts never need the images, so pages go on without them.
    """
    thumbs, labels, problem = test_images()
    if thumbs is None:
        st.info(
            f"Images are not shown. {escape_markdown(problem.rstrip('.'), keep_code=True)}. "
            "Tables and charts below still work.",
            icon=":material/hide_image:",
        )
        return None
    index = preds["index"].to_numpy(np.int64)
    inside = index < len(labels)
    mismatched = int((labels[index[inside]] != preds["label"].to_numpy(np.int64)[inside]).sum())
    if mismatched or not inside.all():
        st.warning(
            f"The loaded test set ({len(labels)} images) does not match this run: "
            f"{int((~inside).sum())} of its images are missing and {mismatched} have other labels. "
            "Point CIFAR10_DIR at the dataset the run was evaluated on; images are hidden meanwhile.",
            icon=":material/warning:",
        )
        return None
    return thumbs
