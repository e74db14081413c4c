"""Streamlit helpers shared by the app's pages: state, sidebar, cached loaders, figures, messages.

The only library module that imports Streamlit. Pages are views: they call the
analysis modules for every figure and use this module for what every page needs,
so the pages stay short and behave the same way:

- session state shared between pages (and with the Retrain page): `RUN_KEY`
  (run under review), `COMPARE_KEY` (second run), `REVIEWER_KEY` (reviewer name),
  plus the error filter (`filters()`), which every page shares;
- loaders cached per file version (a predictions table is read once, until the
  file changes), the review store, and the test-set thumbnails (made once per
  process, shared by every browser session);
- `show_error(exc)`, which turns any failure into a message that says what to do.

TensorFlow is never imported here.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cifar_mtl import runs
from cifar_mtl.images import DEFAULT_SCALE, Thumbnails
from cifar_mtl.labels import CLASS_NAMES, IS_ANIMAL, NUM_CLASSES

_LOG = logging.getLogger("cifar_mtl.app")

RUN_KEY = "run_id"
COMPARE_KEY = "compare_run_id"
COMPARE_BASE_KEY = "compare_base_id"
REVIEWER_KEY = "reviewer"
DETAIL_KEY = "detail_index"

ANY = "any"
FILTERS_KEY = "filters"
FILTER_DEFAULTS = {
    "true": ANY,  # class index or "any"
    "pred": ANY,
    "confidence": (0.0, 1.0),
    "cross": False,
    "reviewed": ANY,  # "any", "tagged", "untagged"
    "category": ANY,
    "mine": False,  # only my tags count
    "sort": "loss",
    "descending": True,
}
SORT_LABELS = {"loss": "loss (hardest first)", "confidence": "confidence", "margin": "margin", "index": "test index"}
PAGE_SIZES = (12, 24, 48)
GRID_COLUMNS = 6


# --- messages ----------------------------------------------------------------------


def _known_errors() -> tuple[type, ...]:
    """Exceptions whose message already tells the user what to do next."""
    from cifar_mtl.config import ConfigError
    from cifar_mtl.data import DataError
    from cifar_mtl.reviews import ReviewError, SchemaError

    known = [runs.RunError, DataError, ReviewError, SchemaError, ConfigError]
    try:
        from cifar_mtl.jobs import JobError

        known.append(JobError)
    except ImportError:  # the job runner is optional for browsing
        pass
    return tuple(known)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&])")


def escape_markdown(text, *, keep_code: bool = False) -> str:
    """`text` with every markdown character escaped, so data and addresses render as typed.

    Run errors, reviewer names and job fields come from files and the page address;
    rendered as markdown, `![x](http://host/p.png)` would make every viewer's browser
    fetch an outside address. With `keep_code`, spans in backticks stay code spans
    (their content is shown literally anyway): the library's own messages use them.
    """
    text = str(text)
    if not keep_code:
        return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    parts = re.split(r"(`[^`\n]+`)", text)
    return "".join(p if k % 2 else _MARKDOWN_SPECIAL.sub(r"\\\1", p) for k, p in enumerate(parts))


def error_message(exc: BaseException, context: str | None = None) -> str:
    """One paragraph for the user: what failed and what to do next.

    Library errors carry their own advice; anything else is named with its type and
    a pointer to the technical details shown below it.
    """
    prefix = f"{context}: " if context else ""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, _known_errors()):
        return prefix + text
    if isinstance(exc, (ValueError, OSError)):
        return f"{prefix}{text}. Check the file or the input named here, then reload the page."
    return (
        f"{prefix}unexpected {type(exc).__name__}: {text}. The rest of the app still works; "
        "the server's console has the details for a bug report."
    )


def show_error(exc: BaseException, context: str | None = None) -> None:
    """Render `exc` as an error box, never a traceback: an unexpected one goes to the server log."""
    st.error(escape_markdown(error_message(exc, context), keep_code=True), icon=":material/error:")
    if not isinstance(exc, (*_known_errors(), ValueError, OSError)):
        _LOG.error("%s", context or "unexpected error", exc_info=exc)


# --- runs and predictions -------------------------------------------------------------


def _stamp(path: Path) -> tuple[int, int] | None:
    """(mtime ns, size) of a file, None when absent: the cache key of a file version."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return s.st_mtime_ns, s.st_size


def run_table() -> pd.DataFrame:
    """Every run folder under the artifacts home, newest first (`runs.list_runs`)."""
    return runs.list_runs()


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


def load_run(run_id: str | None) -> pd.DataFrame | None:
    """Predictions of `run_id`, or None after showing why they cannot be used."""
    if run_id is None:
        return None
    try:
        return predictions(run_id)
    except Exception as exc:  # a bad run must never take the page down
        show_error(exc, f"Run {run_id}")
        return None


def open_run_page(title: str) -> tuple[str, pd.DataFrame]:
    """Title a page about the run under review; (run id, predictions), or stop with a message."""
    run_id = require_run()
    st.title(title)
    preds = load_run(run_id)
    if preds is None:
        st.stop()
    return run_id, preds


# --- the review store ---------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _store(path: str):
    from cifar_mtl.reviews import ReviewStore

    return ReviewStore(path)


def store():
    """The review database of the artifacts home: one store per process and file.

    The page script, fragment reruns and widget callbacks run on different threads,
    for every browser tab at once; `ReviewStore` gives each thread its own connection
    and never closes one another thread may still use, so one shared store serves
    them all. It is never closed here.
    """
    from cifar_mtl.reviews import default_path

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


def reviewer() -> str | None:
    """The reviewer's name from the sidebar, stripped; None while it is empty."""
    name = (st.session_state.get(REVIEWER_KEY) or "").strip()
    return name or None


# --- test images ------------------------------------------------------------------------


@st.cache_resource(max_entries=2, show_spinner="Loading the CIFAR-10 test images...")
def _thumbnails(source: str | None, stamp) -> tuple[Thumbnails | None, np.ndarray | None, str | None]:
    from cifar_mtl.data import DataError, load_test_set

    try:
        x, y = load_test_set(source, allow_download=False)  # never download on page load
        return Thumbnails(x), np.asarray(y), None
    except (DataError, OSError, ValueError) as exc:
        # Cached as well, so a missing dataset costs one check per file version, not per rerun.
        return None, None, str(exc)


def image_source() -> str | None:
    """Where test images come from: `$CIFAR10_DIR`, else None (the keras download cache)."""
    from cifar_mtl.data import resolve_source

    return resolve_source(None)


def test_images() -> tuple[Thumbnails | None, np.ndarray | None, str | None]:
    """(thumbnails, labels (N,), None) or (None, None, reason the images are unavailable)."""
    from cifar_mtl.data import KERAS_CACHE

    source = image_source()
    return _thumbnails(source, _stamp(Path(source) if source else KERAS_CACHE))


def data_source_text() -> str:
    """One line for the sidebar: where the test images are read from."""
    from cifar_mtl.data import KERAS_CACHE

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


# --- sidebar ----------------------------------------------------------------------------


def run_label(table: pd.DataFrame):
    """format_func for run selectors: 'id · variant · accuracy'."""
    info = table.set_index("run_id") if not table.empty else pd.DataFrame()

    def label(run_id: str) -> str:
        if run_id not in info.index:
            return run_id
        row = info.loc[run_id]
        parts = [run_id]
        if isinstance(row["variant"], str):
            parts.append(row["variant"])
        if pd.notna(row["accuracy"]):
            parts.append(f"{float(row['accuracy']):.1%}")
        return " · ".join(parts)

    return label


def keep_valid(key: str, options: list, default=None) -> None:
    """Before a widget is drawn: drop a stale value of `key`, then set `default` if unset."""
    # A run can disappear between reruns; a stale value would make the widget refuse it.
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]
    if key not in st.session_state and default is not None:
        st.session_state[key] = default


URL_KEYS = (RUN_KEY, REVIEWER_KEY)


def _kept(key: str) -> str:
    return f"_kept_{key}"


def restore_from_url() -> None:
    """Give the run and reviewer widgets their values back before they are drawn.

    After a page switch the browser reports the sidebar widgets as new, with empty
    values, and a reload starts a new session; so the values are kept twice: in a
    plain session key, and in the page address for reloads and bookmarks.
    """
    for key in URL_KEYS:
        if key in st.session_state:
            value = st.session_state[key]
        else:
            value = st.session_state.get(_kept(key)) or st.query_params.get(key)
        if value is not None:
            # Assigning before the widget is drawn makes the widget take this value,
            # even where a page switch made it a new widget.
            st.session_state[key] = value


def remember_in_url() -> None:
    """Keep the run and reviewer (see `restore_from_url`); done on every run, since
    following a navigation link drops the address's query."""
    for key in URL_KEYS:
        value = st.session_state.get(key)
        st.session_state[_kept(key)] = value
        if value and st.query_params.get(key) != value:
            st.query_params[key] = value
        elif not value and key in st.query_params:
            del st.query_params[key]


def sidebar(table: pd.DataFrame) -> None:
    """Run under review, reviewer name, problem runs and data locations, in the sidebar.

    The run and the reviewer are asked once per browser session and kept in the page
    address (`?run_id=...&reviewer=...`), so a reload keeps them too.
    """
    ids = complete_run_ids(table)
    restore_from_url()
    with st.sidebar:
        if ids:
            keep_valid(RUN_KEY, ids)
            if RUN_KEY not in st.session_state:
                st.session_state[RUN_KEY] = default_run(table, _last_run_of(reviewer()))
            st.selectbox("Run under review", ids, key=RUN_KEY, format_func=run_label(table))
        else:
            st.caption("No complete run yet.")
        st.text_input(
            "Your name (reviewer)",
            key=REVIEWER_KEY,
            placeholder="e.g. ada",
            help="Asked once; kept in the page address for this browser session.",
        )
        busy = table[table["state"].isin(["queued", "running"]) & ~table["complete"].astype(bool)]
        if len(busy):
            st.caption("In progress: " + ", ".join(f"{r.run_id} ({r.state})" for r in busy.itertuples()))
        problems = table[table["problem"].notna()] if not table.empty else table
        if len(problems):
            with st.expander(f"{len(problems)} run(s) need attention", icon=":material/warning:"):
                for row in problems.itertuples():
                    state = escape_markdown(row.state or "no status")
                    st.caption(f"**{escape_markdown(row.run_id)}** ({state}): {escape_markdown(row.problem)}")
        st.caption(f"Artifacts: `{runs.home().resolve()}`")
        st.caption(f"Test images: {data_source_text()}")
    remember_in_url()


def default_run(table: pd.DataFrame, last: str | None = None) -> str | None:
    """The run a session opens on: `last` (the reviewer's last choice) when it is complete,
    else the most accurate succeeded run, else the newest complete one."""
    ids = complete_run_ids(table)
    if last in ids:
        return last
    done = table[table["complete"].astype(bool) & (table["state"] == "succeeded")]
    if len(done) and done["accuracy"].notna().any():
        return str(done.loc[done["accuracy"].astype(float).idxmax(), "run_id"])
    return ids[0] if ids else None


def _last_run_of(name: str | None) -> str | None:
    """The run `name` last recorded a review on, None for a new reviewer or without a database."""
    if name is None:
        return None
    try:
        return store().last_run(name)
    except Exception:  # the database has its own message on the pages that need it
        return None


def current_run(table: pd.DataFrame | None = None) -> str | None:
    """The run under review (sidebar), or None when there is no complete run."""
    run_id = st.session_state.get(RUN_KEY)
    if run_id:
        return run_id
    return default_run(run_table() if table is None else table, _last_run_of(reviewer()))


def require_run(table: pd.DataFrame | None = None) -> str:
    """The run under review; without one, say how to get one and stop the page."""
    run_id = current_run(table)
    if run_id is None:
        st.info("There is no complete run to look at yet.", icon=":material/info:")
        st.page_link("views/getting_started.py", label="Getting started: train or import a run", icon=":material/rocket_launch:")
        st.stop()
    return run_id


def newest_of_variant(table: pd.DataFrame, variant: str, exclude: str | None = None) -> str | None:
    """Newest complete run of `variant` ('single' or 'multitask'), else None."""
    done = table[table["complete"].astype(bool) & (table["variant"] == variant)]
    done = done[done["run_id"] != exclude] if exclude else done
    return done["run_id"].iloc[0] if len(done) else None


def compare_defaults(table: pd.DataFrame) -> tuple[str | None, str | None]:
    """(A, B) for Compare: the newest single-task and multitask runs, else the two newest."""
    ids = complete_run_ids(table)
    a, b = newest_of_variant(table, "single"), newest_of_variant(table, "multitask")
    if a is None:
        a = next((r for r in ids if r != b), None)
    if b is None:
        b = next((r for r in ids if r != a), None)
    return a, b


# --- filters ----------------------------------------------------------------------------


def class_option(value) -> str:
    return "any class" if value == ANY else f"{value} {CLASS_NAMES[value]}"


def filters() -> dict:
    """The session's error filter (keys of `FILTER_DEFAULTS`), shared by every page."""
    if FILTERS_KEY not in st.session_state:
        st.session_state[FILTERS_KEY] = dict(FILTER_DEFAULTS)
    return st.session_state[FILTERS_KEY]


def filter_key(prefix: str, name: str) -> str:
    """Widget key of filter `name` on the page using `prefix`, e.g. 'err_f_true'."""
    return f"{prefix}_f_{name}"


def set_filter(prefix: str, **values) -> None:
    """Change filters from a callback: the shared values and this page's widgets."""
    filters().update(values)
    for name, value in values.items():
        st.session_state[filter_key(prefix, name)] = value


def filter_controls(categories: list[str], *, prefix: str, columns: int = 3) -> None:
    """The error filters of `analysis.error_table`, drawn on one page.

    A widget's state belongs to its page, so each page draws its own copies (keys
    `filter_key(prefix, name)`), seeded from and written back to `filters()`: the
    filter set on Errors is the one Review and Export use, and it survives moving
    between pages.
    """
    shared = filters()
    if shared["category"] not in [ANY, *categories]:
        shared["category"] = ANY
    for name, value in shared.items():
        st.session_state.setdefault(filter_key(prefix, name), value)
    k = functools.partial(filter_key, prefix)
    classes = [ANY, *range(NUM_CLASSES)]
    cells = itertools.cycle(st.columns(columns))  # filled row by row
    next(cells).selectbox("True class", classes, key=k("true"), format_func=class_option)
    next(cells).selectbox("Predicted class", classes, key=k("pred"), format_func=class_option)
    next(cells).selectbox("Reviewed", [ANY, "tagged", "untagged"], key=k("reviewed"))
    next(cells).selectbox("Category", [ANY, *categories], key=k("category"))
    next(cells).selectbox("Sort by", list(SORT_LABELS), key=k("sort"), format_func=SORT_LABELS.get)
    next(cells).slider("Confidence", 0.0, 1.0, key=k("confidence"), step=0.05)
    next(cells).toggle("Descending", key=k("descending"))
    next(cells).toggle("Animal/vehicle mix-ups only", key=k("cross"))
    next(cells).toggle("Only my tags count", key=k("mine"))
    for name in shared:
        shared[name] = st.session_state[filter_key(prefix, name)]


def filter_kwargs(**overrides) -> dict:
    """Keyword arguments for `analysis.error_table` from the session's filter."""
    f = filters()
    low, high = f["confidence"]
    kwargs = {
        "true_class": None if f["true"] == ANY else int(f["true"]),
        "pred_class": None if f["pred"] == ANY else int(f["pred"]),
        "min_confidence": None if low <= 0 else float(low),
        "max_confidence": None if high >= 1 else float(high),
        "cross_group_only": bool(f["cross"]),
        "tagged": {ANY: None, "tagged": True, "untagged": False}[f["reviewed"]],
        "category": None if f["category"] == ANY else f["category"],
        "reviewer": reviewer() if f["mine"] else None,
        "sort": f["sort"],
        "descending": bool(f["descending"]),
    }
    kwargs.update(overrides)
    return kwargs


def describe_filters(kwargs: dict) -> str:
    """Short markdown of the active filters, e.g. 'true cat · predicted dog · untagged'.

    The reviewer's name comes from the page address, so it is escaped.
    """
    parts = []
    if kwargs.get("true_class") is not None:
        parts.append(f"true {CLASS_NAMES[kwargs['true_class']]}")
    if kwargs.get("pred_class") is not None:
        parts.append(f"predicted {CLASS_NAMES[kwargs['pred_class']]}")
    if kwargs.get("min_confidence") is not None or kwargs.get("max_confidence") is not None:
        parts.append(f"confidence {kwargs.get('min_confidence') or 0:.2f}-{kwargs.get('max_confidence') or 1:.2f}")
    if kwargs.get("cross_group_only"):
        parts.append("animal/vehicle mix-ups")
    if kwargs.get("tagged") is not None:
        parts.append("tagged" if kwargs["tagged"] else "untagged")
    if kwargs.get("category"):
        parts.append(f"category {kwargs['category']}")
    if kwargs.get("reviewer"):
        parts.append(f"by {escape_markdown(kwargs['reviewer'])}")
    return " · ".join(parts) or "all errors"


# --- thumbnails and captions ---------------------------------------------------------------


def caption(row) -> str:
    """'#index · true → predicted · confidence' (+ tags) for one error-table row."""
    text = f"#{int(row['index'])} · {row['label_name']} → {row['pred_name']} · {float(row['confidence']):.0%}"
    cats = row.get("categories") if hasattr(row, "get") else None
    if cats:
        text += " · " + ", ".join(cats)
    return text


def show_image(thumbs: Thumbnails | None, index: int, *, scale: int = DEFAULT_SCALE, caption_text=None) -> None:
    """One test image from the thumbnail cache (already PNG: Streamlit passes it on as is)."""
    if thumbs is None or not thumbs.has(index):
        st.caption(caption_text or f"#{index} (no image)")
        return
    st.image(thumbs.png(index, scale), caption=caption_text, output_format="PNG")


def select_detail(index: int) -> None:
    """Callback: show image `index` in the detail view."""
    st.session_state[DETAIL_KEY] = int(index)


def thumbnail_grid(rows: pd.DataFrame, thumbs: Thumbnails | None, *, columns: int = GRID_COLUMNS,
                   selected: int | None = None) -> None:
    """A grid of error thumbnails with captions; each has a button opening its detail view."""
    cols = st.columns(columns)
    for k, row in enumerate(rows.to_dict("records")):
        index = int(row["index"])
        with cols[k % columns]:
            show_image(thumbs, index, caption_text=caption(row))
            st.button(
                "Viewing" if index == selected else "Open",
                key=f"open_{index}",
                on_click=select_detail,
                args=(index,),
                type="primary" if index == selected else "secondary",
                icon=":material/zoom_in:",
                width="stretch",
            )


# --- figures ----------------------------------------------------------------------------


def confusion_figure(cm: pd.DataFrame, *, hide_diagonal: bool = True, title: str | None = None,
                     diverging: bool = False, height: int = 460) -> go.Figure:
    """Heatmap of a 10x10 confusion table (rows true, columns predicted), clickable per cell.

    Plotly heatmaps do not report clicks as selections, so each cell also carries an
    invisible marker (which also gives the hover text); `cell_from_selection` reads
    the clicked one back.
    """
    z = cm.to_numpy(dtype=float).copy()
    if hide_diagonal:
        np.fill_diagonal(z, np.nan)  # correct predictions would swamp the colour scale
    names = list(cm.columns)
    true_names = list(cm.index)
    heat = go.Heatmap(
        z=z, x=names, y=true_names, colorscale="RdBu_r" if diverging else "Blues",
        zmid=0 if diverging else None, hoverinfo="skip", texttemplate="%{z:.0f}", colorbar={"thickness": 12},
    )
    xs, ys = np.meshgrid(np.arange(len(names)), np.arange(len(true_names)))
    cells = go.Scatter(
        x=[names[i] for i in xs.ravel()], y=[true_names[j] for j in ys.ravel()],
        text=cm.to_numpy().ravel(),
        mode="markers", marker={"size": 28, "opacity": 0.0, "symbol": "square"},
        hovertemplate="true %{y} → predicted %{x}: %{text}<extra></extra>", showlegend=False,
    )
    fig = go.Figure([heat, cells])
    fig.update_layout(
        title=title, height=height, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        xaxis={"title": "predicted", "side": "bottom"},
        yaxis={"title": "true", "autorange": "reversed"},
        clickmode="event+select", dragmode=False,
    )
    return fig


def cell_from_selection(state) -> tuple[int, int] | None:
    """(true class, predicted class) of the clicked confusion cell, from a plotly_chart state.

    A click selects the cell's marker; its x is the predicted and its y the true class
    name. Anything else (no click, a click elsewhere) gives None.
    """
    try:
        points = state["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points or []:
        x, y = point.get("x"), point.get("y")
        if x in CLASS_NAMES and y in CLASS_NAMES:
            return CLASS_NAMES.index(y), CLASS_NAMES.index(x)
    return None


def probability_figure(row: dict) -> go.Figure:
    """Bar chart of one image's ten class probabilities; the true class and the prediction marked."""
    probs = [float(row[f"prob_{k}"]) for k in range(NUM_CLASSES)]
    label, pred = int(row["label"]), int(row["pred"])
    colours = ["#2e7d32" if k == label else "#c62828" if k == pred else "#90a4ae" for k in range(NUM_CLASSES)]
    fig = go.Figure(go.Bar(x=list(CLASS_NAMES), y=probs, marker_color=colours,
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=240, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      yaxis={"range": [0, 1], "title": "probability"})
    return fig


# Counts are whole numbers: no 0.5 ticks on a count axis.
COUNT_AXIS = {"tickformat": ",d", "rangemode": "tozero"}


def comparison_bars(x, values: dict[str, list], *, percent: bool = False, title: str | None = None) -> go.Figure:
    """Grouped bars, one series per entry of `values` (name -> y values over `x`).

    Class names are long enough to be cut off when plotly tilts them into a small
    bottom margin, so the axis keeps them upright and the margin grows to fit.
    """
    fig = go.Figure([go.Bar(x=list(x), y=list(y), name=name) for name, y in values.items()])
    yaxis = {"tickformat": ".0%"} if percent else {"title": title or "error images", **COUNT_AXIS}
    fig.update_layout(barmode="group", height=360, margin={"l": 10, "r": 10, "t": 40, "b": 90},
                      xaxis={"automargin": True, "tickangle": -35}, yaxis=yaxis,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def per_class_figure(table: pd.DataFrame, value: str = "accuracy", name: str | None = None) -> go.Figure:
    """Bars per class with the Wilson interval when `ci_low`/`ci_high` are present."""
    error_y = None
    if {"ci_low", "ci_high"} <= set(table.columns):
        error_y = {"type": "data", "symmetric": False,
                   "array": table["ci_high"] - table[value], "arrayminus": table[value] - table["ci_low"]}
    fig = go.Figure(go.Bar(x=table["name"], y=table[value], error_y=error_y, name=name))
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis={"tickformat": ".0%"},
                      xaxis={"automargin": True})
    return fig


def history_figure(histories: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """One line per run of `metric` against epoch (stages laid end to end)."""
    fig = go.Figure()
    for run_id, df in histories.items():
        if metric not in df.columns or df.empty:
            continue
        fig.add_trace(go.Scatter(x=np.arange(1, len(df) + 1), y=df[metric], mode="lines+markers", name=run_id))
    # The legend sits above the plot: below it, it covered the x-axis title.
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"title": "epoch (all stages)", "dtick": 1 if _max_len(histories) <= 30 else None},
                      yaxis={"title": metric},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def _max_len(histories: dict[str, pd.DataFrame]) -> int:
    return max((len(df) for df in histories.values()), default=0)


def category_figure(counts: pd.DataFrame) -> go.Figure:
    """Stacked bars: error images per category, split by class (rows of `counts`)."""
    fig = go.Figure()
    for name, row in counts.iterrows():
        if row.sum():
            fig.add_trace(go.Bar(x=list(counts.columns), y=row.to_numpy(), name=str(name)))
    fig.update_layout(barmode="stack", height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis={"title": "error images", **COUNT_AXIS},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def animal_text(row: dict) -> str:
    """The animal head's output for one image, or why there is none."""
    a = row.get("animal_prob")
    if a is None or pd.isna(a):
        return "single-task run: no animal head"
    truth = "an animal" if IS_ANIMAL[int(row["label"])] else "a vehicle"
    return f"animal head: {float(a):.2f} (says {'animal' if a >= 0.5 else 'vehicle'}; it is {truth})"


# --- tagging ----------------------------------------------------------------------------


def _set_tag(run_id: str, index: int, category: str, name: str, on: bool) -> None:
    try:
        s = store()
        (s.tag if on else s.untag)(run_id, index, category, name)
    except Exception as exc:  # shown on the next render instead of a traceback
        st.session_state["_tag_error"] = error_message(exc, "Tag not saved")


def _save_note(run_id: str, index: int, name: str, key: str) -> None:
    try:
        store().set_note(run_id, index, name, st.session_state.get(key) or "")
    except Exception as exc:
        st.session_state["_tag_error"] = error_message(exc, "Note not saved")


def _undo(name: str) -> None:
    try:
        done = store().undo(name)
        st.session_state["_tag_info"] = (
            f"Undid {done['kind']} {done['action']} on #{done['index']}" if done else "Nothing to undo."
        )
    except Exception as exc:
        st.session_state["_tag_error"] = error_message(exc, "Undo failed")


def tag_controls(run_id: str, index: int, *, key: str, shortcuts: bool = True) -> None:
    """Category toggles (keys 1-9), a note and undo (U) for one image; saved on click.

    Call it inside an `st.fragment` so a click reruns only these controls.
    """
    name = reviewer()
    for slot in ("_tag_error", "_tag_info"):
        message = st.session_state.pop(slot, None)
        if message:
            (st.error if slot == "_tag_error" else st.toast)(message)
    if name is None:
        st.info("Type your name in the sidebar to tag images.", icon=":material/badge:")
        return
    s = store()
    categories = s.category_names()
    mine = set(s.current_tags(reviewer=name, indices=[index])["category"])
    row = st.container(horizontal=True, wrap=True)
    for k, category in enumerate(categories, start=1):
        on = category in mine
        row.button(
            f"{category.replace('_', ' ')}",
            key=f"{key}_tag_{category}",
            on_click=_set_tag,
            args=(run_id, index, category, name, not on),
            type="primary" if on else "secondary",
            icon=":material/check:" if on else None,
            shortcut=str(k) if shortcuts and k <= 9 else None,
            help=f"{'Remove' if on else 'Add'} the tag '{category}'",
        )
    row.button("Undo", key=f"{key}_undo", on_click=_undo, args=(name,), icon=":material/undo:",
               shortcut="U" if shortcuts else None, type="tertiary")
    notes = s.current_notes(reviewer=name, indices=[index])
    note_key = f"{key}_note_{index}"
    st.text_area(
        "Note", value=notes["note"].iloc[0] if len(notes) else "", key=note_key, height=68,
        on_change=_save_note, args=(run_id, index, name, note_key),
        placeholder="What makes this image hard? (saved when you leave the field)",
    )


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


# --- moving through a list of images ------------------------------------------------------


def _step(order: list[int], current: int | None, delta: int, state_key: str,
          page_key: str | None, page_size: int) -> None:
    pos = order.index(current) if current in order else -1 if delta > 0 else len(order)
    new = min(max(pos + delta, 0), len(order) - 1)
    st.session_state[state_key] = order[new]
    if page_key:
        st.session_state[page_key] = new // page_size + 1


def step_buttons(order: list[int], current: int | None, *, key: str, state_key: str = DETAIL_KEY,
                 page_key: str | None = None, page_size: int = 1) -> None:
    """Previous / next through `order` (test indices): keys ← or K, → or J.

    Sets `st.session_state[state_key]` to the new index and, when the list is shown
    in pages of `page_size`, `st.session_state[page_key]` to the page that holds it.
    """
    pos = order.index(current) if current in order else None
    bar = st.container(horizontal=True, vertical_alignment="center")
    # j/k too: reviewers coming from mail and code tools reach for them first.
    moves = (("Previous", -1, "Left", ":material/arrow_back:", "secondary"),
             ("Next", 1, "Right", ":material/arrow_forward:", "secondary"),
             ("k", -1, "K", None, "tertiary"),
             ("j", 1, "J", None, "tertiary"))
    for label, delta, shortcut, icon, kind in moves:
        at_end = pos is not None and not 0 <= pos + delta < len(order)
        bar.button(label, key=f"{key}_{label}", shortcut=shortcut, icon=icon, type=kind, disabled=at_end,
                   on_click=_step, args=(order, current, delta, state_key, page_key, page_size),
                   help="previous image" if delta < 0 else "next image")
    if pos is not None:
        bar.caption(f"{pos + 1:,} of {len(order):,}")
