"""Session state shared between pages: its keys, the page address, and the error filter.

- `RUN_KEY` (run under review), `COMPARE_KEY` / `COMPARE_BASE_KEY` (Compare's runs),
  `REVIEWER_KEY` (reviewer name), `DETAIL_KEY` (the image open in a detail view);
- the run and the reviewer are also kept in the page address (`?run_id=...&reviewer=...`),
  so reloads and bookmarks keep them (`restore_from_url`, `remember_in_url`);
- the error filter (`filters()`, keys of `FILTER_DEFAULTS`) is one per session, shared
  by Errors, Review and Export; `filter_kwargs` turns it into `analysis.error_table`'s
  keyword arguments, `evidence_kwargs` into `triage.filter_evidence`'s.
"""

from __future__ import annotations

import streamlit as st

RUN_KEY = "run_id"
COMPARE_KEY = "compare_run_id"
COMPARE_BASE_KEY = "compare_base_id"
REVIEWER_KEY = "reviewer"
DETAIL_KEY = "detail_index"
URL_KEYS = (RUN_KEY, REVIEWER_KEY)

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
    # Evidence filters (`triage.filter_evidence`), drawn only for a run with that evidence.
    "near_duplicate": False,
    "label_conflict": False,
    "slice": ANY,  # slice id or "any"
    "suggested": ANY,  # category name or "any"
}
SORT_LABELS = {"loss": "loss (hardest first)", "confidence": "confidence", "margin": "margin", "index": "test index"}


def reviewer() -> str | None:
    """The reviewer's name from the sidebar, stripped; None while it is empty."""
    name = (st.session_state.get(REVIEWER_KEY) or "").strip()
    return name or None


def keep_valid(key: str, options: list, default=None) -> None:
    """Before a widget is drawn: drop a stale value of `key`, then set `default` if unset."""
    # A run can disappear between reruns; a stale value would make the widget refuse it.
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]
    if key not in st.session_state and default is not None:
        st.session_state[key] = default


# --- the page address ----------------------------------------------------------------------


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


# --- the error filter ------------------------------------------------------------------------


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


def error_table_kwargs(f: dict, reviewer_name: str | None = None, **overrides) -> dict:
    """Keyword arguments for `analysis.error_table` from filter values `f` (see `FILTER_DEFAULTS`)."""
    low, high = f["confidence"]
    kwargs = {
        "true_class": None if f["true"] == ANY else int(f["true"]),
        "pred_class": None if f["pred"] == ANY else int(f["pred"]),
        "min_confidence": None if low <= 0 else float(low),
        "max_confidence": None if high >= 1 else float(high),
        "cross_group_only": bool(f["cross"]),
        "tagged": {ANY: None, "tagged": True, "untagged": False}[f["reviewed"]],
        "category": None if f["category"] == ANY else f["category"],
        "reviewer": reviewer_name if f["mine"] else None,
        "sort": f["sort"],
        "descending": bool(f["descending"]),
    }
    kwargs.update(overrides)
    return kwargs


def filter_kwargs(**overrides) -> dict:
    """Keyword arguments for `analysis.error_table` from the session's filter."""
    return error_table_kwargs(filters(), reviewer(), **overrides)


def evidence_kwargs(f: dict, *, duplicates: bool, slices=(), suggested=()) -> dict:
    """Keyword arguments for `triage.filter_evidence` from filter values `f`, keeping only
    what this run's evidence can answer: `duplicates` (near-duplicate flags read), the
    run's slice ids and the categories suggested to this reviewer. A filter set for
    another run that this one cannot answer is left out, not an empty result."""
    return {
        "near_duplicate": bool(duplicates and f["near_duplicate"]),
        "label_conflict": bool(duplicates and f["label_conflict"]),
        "slice_id": int(f["slice"]) if f["slice"] != ANY and f["slice"] in list(slices) else None,
        "suggested": f["suggested"] if f["suggested"] != ANY and f["suggested"] in list(suggested) else None,
    }
