"""Cached reads: runs, predictions, the mislabel ranking, the review store and the test images.

- predictions and rankings are cached per file version (a table is read once, until
  its file changes) and shared by every browser session: do not modify them;
- `store()` is one review store per process and database file (`st.cache_resource`);
- the test-set thumbnails are made once per process, and never downloaded; the
  training set's (for the nearest training images) only when first needed;
- a run's evidence files (`evidence`) are read once per file version, and the slice
  summary with them; category suggestions are fitted once per (run, reviewer, tag
  state), so the classifier is trained again only when that reviewer's tags change.

A load that fails shows why (`load_run`, `store_or_none`, `images_for`) and the page
goes on with what it has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cifar_mtl import runs
from cifar_mtl.app.messages import error_message, escape_markdown, show_error
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


# --- evidence (cifar_mtl.evidence.files) ------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """A run's evidence files as read (`cifar_mtl.evidence.files`); None for each one not there.

    `problems` holds the message of each file that is present but damaged (the file
    is then None too). Shared by every session: do not modify the tables.
    """

    run_id: str
    neighbours: pd.DataFrame | None = None
    duplicates: pd.DataFrame | None = None
    layout: pd.DataFrame | None = None
    slices: pd.DataFrame | None = None
    saliency: dict | None = None
    problems: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """No evidence file could be read: the run has none yet (or only damaged ones)."""
        return all(getattr(self, f) is None for f in ("neighbours", "duplicates", "layout", "slices", "saliency"))


def _evidence_readers() -> dict:
    from cifar_mtl.evidence import files

    return {"neighbours": (files.NEIGHBOURS_FILE, files.read_neighbours),
            "duplicates": (files.DUPLICATES_FILE, files.read_duplicates),
            "layout": (files.MAP_FILE, files.read_map),
            "slices": (files.SLICES_FILE, files.read_slices),
            "saliency": (files.SALIENCY_FILE, files.read_saliency)}


@st.cache_resource(max_entries=8, show_spinner=False)
def _evidence(home: str, run_id: str, stamp) -> Evidence:
    from cifar_mtl.evidence.files import EvidenceError, MissingEvidence

    folder = runs.run_dir(run_id, home)
    found, problems = {}, []
    for field, (_, read) in _evidence_readers().items():
        try:
            found[field] = read(folder)
        except MissingEvidence:
            continue
        except EvidenceError as exc:  # one damaged file leaves the others usable
            problems.append(str(exc))
    return Evidence(run_id, **found, problems=tuple(problems))


def evidence(run_id: str) -> Evidence:
    """The run's evidence, read once per version of its files. Never raises."""
    home = runs.home().resolve()
    folder = runs.run_dir(run_id, home)
    stamp = tuple(_stamp(folder / name) for name, _ in _evidence_readers().values())
    try:
        return _evidence(str(home), run_id, stamp)
    except Exception as exc:  # e.g. an unreadable folder: said on the page, the page goes on
        return Evidence(run_id, problems=(error_message(exc, "Reading the evidence"),))


@st.cache_resource(max_entries=1, show_spinner="Loading the CIFAR-10 training images...")
def _train_thumbnails(source: str | None, stamp) -> tuple[Thumbnails | None, np.ndarray | None, str | None]:
    from cifar_mtl.cifar10 import DataError, load_train_view

    try:
        # A view of the files' colour planes: thumbnails take one image at a time, so the
        # whole set is never copied into channels-last order (that copy was half the load).
        images, labels = load_train_view(source, allow_download=False)  # never download on page load
        return Thumbnails(images), labels, None
    except (DataError, OSError, ValueError) as exc:
        return None, None, str(exc)


def train_images() -> tuple[Thumbnails | None, np.ndarray | None, str | None]:
    """(thumbnails of the training set, its labels (N,), None) or (None, None, why there are none).

    Loaded on first use only (the nearest training images and the Mislabels train split
    need them; 150 MB), once per process and dataset version."""
    from cifar_mtl.cifar10 import KERAS_CACHE

    source = image_source()
    return _train_thumbnails(source, _stamp(Path(source) if source else KERAS_CACHE))


# --- category suggestions (cifar_mtl.evidence.suggestions) -------------------------------------------


@dataclass(frozen=True)
class SuggestionState:
    """The suggestions for one reviewer on one run.

    `result` is the fitted `Suggestions` (None before `MIN_TAGGED` tagged errors, without
    embeddings, or when fitting failed: `problem` then says why); `n_tagged` counts the
    reviewer's tagged errors of this run and `needed` how many more tags suggestions wait for.
    """

    result: object | None
    n_tagged: int = 0
    needed: int = 0
    problem: str | None = None

    def table(self) -> pd.DataFrame:
        """DataFrame[index, category, score, precision] of the suggestions (empty without any)."""
        if self.result is None:
            return pd.DataFrame({"index": pd.Series(dtype="int64"), "category": pd.Series(dtype=object),
                                 "score": pd.Series(dtype=float), "precision": pd.Series(dtype=float)})
        return self.result.suggested()

    def for_image(self, index: int) -> dict[str, float]:
        """{category: cross-validated precision} suggested for image `index`, best score first."""
        table = self.table()
        rows = table[table["index"] == int(index)]
        return dict(zip(rows["category"], rows["precision"].astype(float)))


@st.cache_resource(max_entries=4, show_spinner=False)
def _suggestion_features(home: str, run_id: str, stamp, preds_stamp):
    """(test indices of the run's errors, their suggestion features), per embeddings file version."""
    from cifar_mtl.evidence import files
    from cifar_mtl.evidence.suggestions import suggestion_features

    preds = _predictions(home, run_id, preds_stamp)
    errors = preds.loc[~preds["correct"].to_numpy(bool)]
    embeddings = files.read_embeddings(runs.run_dir(run_id, home), "test")
    return errors["index"].to_numpy(np.int64), suggestion_features(embeddings, errors)


@st.cache_resource(max_entries=16, show_spinner="Training the suggestions on your tags...")
def _fit(home: str, run_id: str, stamp, preds_stamp, reviewer: str, tagged: tuple, categories: tuple):
    # `tagged` is the tag state itself ((index, categories) pairs): the key under which a fit
    # is kept, so the classifier is trained again only when this reviewer's tags change.
    from cifar_mtl.evidence.suggestions import fit_suggestions

    index, features = _suggestion_features(home, run_id, stamp, preds_stamp)
    return fit_suggestions(features, [i for i, _ in tagged], [c for _, c in tagged], list(categories), index=index)


def suggestions(run_id: str, preds: pd.DataFrame, mine: pd.DataFrame, categories: list[str],
                reviewer: str) -> SuggestionState:
    """Category suggestions for `reviewer` on `run_id`, from their current tags `mine`
    (`ReviewStore.current_tags(reviewer=...)`). Never raises: a problem is in the state."""
    from cifar_mtl.analysis import values_by_index
    from cifar_mtl.evidence import files
    from cifar_mtl.evidence.suggestions import MIN_TAGGED

    errors = preds.loc[~preds["correct"].to_numpy(bool), "index"].to_numpy(np.int64)
    on_errors = mine[np.isin(mine["index"].to_numpy(np.int64), errors)]
    tagged = tuple(sorted(values_by_index(on_errors["index"], on_errors["category"]).items()))
    if len(tagged) < MIN_TAGGED:
        return SuggestionState(None, len(tagged), MIN_TAGGED - len(tagged))
    home = runs.home().resolve()
    folder = runs.run_dir(run_id, home)
    stamp = _stamp(folder / files.EMBEDDINGS_FILE)
    if stamp is None:
        return SuggestionState(None, len(tagged), 0, f"this run has no {files.EMBEDDINGS_FILE}")
    try:
        result = _fit(str(home), run_id, stamp, _predictions_key(run_id)[2], reviewer, tagged, tuple(categories))
    except Exception as exc:  # a damaged file or a failed fit must not take the page down
        return SuggestionState(None, len(tagged), 0, error_message(exc, "Suggestions"))
    return SuggestionState(result, len(tagged))


@st.cache_data(max_entries=8, show_spinner=False)
def _slice_summary(home: str, run_id: str, stamps: tuple, preds_stamp) -> pd.DataFrame:
    from cifar_mtl.evidence import files
    from cifar_mtl.evidence.slices import slice_summary

    folder = runs.run_dir(run_id, home)
    try:  # with embeddings the examples are the members nearest the slice's centre
        embeddings = files.read_embeddings(folder, "test")
    except files.EvidenceError:
        embeddings = None
    return slice_summary(files.read_slices(folder), _predictions(home, run_id, preds_stamp), embeddings)


def slice_summary(run_id: str) -> pd.DataFrame:
    """`evidence.slices.slice_summary` of the run (size, top pairs, examples per slice), once per
    version of its slices, embeddings and predictions files. Raises EvidenceError for bad files."""
    from cifar_mtl.evidence import files

    home = runs.home().resolve()
    folder = runs.run_dir(run_id, home)
    stamps = tuple(_stamp(folder / name) for name in (files.SLICES_FILE, files.EMBEDDINGS_FILE))
    return _slice_summary(str(home), run_id, stamps, _predictions_key(run_id)[2])
