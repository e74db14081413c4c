"""The sidebar (run under review, reviewer, runs in progress or in trouble, data locations)
and which run a page is about."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cifar_mtl import runs
from cifar_mtl.app import loaders
from cifar_mtl.app.captions import run_label
from cifar_mtl.app.messages import escape_markdown
from cifar_mtl.app.state import (COMPARE_BASE_KEY, COMPARE_KEY, REVIEWER_KEY, RUN_KEY, keep_valid, remember_in_url,
                                 restore_from_url, reviewer)

GETTING_STARTED = "views/getting_started.py"
_SUBSTITUTED = "_substituted_run"  # (run asked for in the address, run shown instead)


# --- which run (pure: the runs table in, run ids out) -----------------------------------------------


def default_run(table: pd.DataFrame, last: str | None = None) -> str | None:
    """The run a session opens on: `last` (the reviewer's last choice) when it is complete,
    else the most accurate succeeded run, else the newest complete one."""
    ids = loaders.complete_run_ids(table)
    if last in ids:
        return last
    done = table[table["complete"].astype(bool) & (table["state"] == "succeeded")]
    if len(done) and done["accuracy"].notna().any():
        return str(done.loc[done["accuracy"].astype(float).idxmax(), "run_id"])
    return ids[0] if ids else None


def newest_of_variant(table: pd.DataFrame, variant: str, exclude: str | None = None) -> str | None:
    """Newest complete run of `variant` ('single' or 'multitask'), else None."""
    done = table[table["complete"].astype(bool) & (table["variant"] == variant)]
    done = done[done["run_id"] != exclude] if exclude else done
    return done["run_id"].iloc[0] if len(done) else None


def compare_defaults(table: pd.DataFrame) -> tuple[str | None, str | None]:
    """(A, B) for Compare: the newest single-task and multitask runs, else the two newest."""
    ids = loaders.complete_run_ids(table)
    a, b = newest_of_variant(table, "single"), newest_of_variant(table, "multitask")
    if a is None:
        a = next((r for r in ids if r != b), None)
    if b is None:
        b = next((r for r in ids if r != a), None)
    return a, b


# --- the run under review ------------------------------------------------------------------------


def _last_run_of(name: str | None) -> str | None:
    """The run `name` last recorded a review on, None for a new reviewer or without a database."""
    if name is None:
        return None
    try:
        return loaders.store().last_run(name)
    except Exception:  # the database has its own message on the pages that need it
        return None


def current_run(table: pd.DataFrame | None = None) -> str | None:
    """The run under review (sidebar), or None when there is no complete run."""
    run_id = st.session_state.get(RUN_KEY)
    if run_id:
        return run_id
    return default_run(loaders.run_table() if table is None else table, _last_run_of(reviewer()))


def require_run(table: pd.DataFrame | None = None) -> str:
    """The run under review; without one, say how to get one and stop the page."""
    run_id = current_run(table)
    if run_id is None:
        st.info("There is no complete run to look at yet.", icon=":material/info:")
        st.page_link(GETTING_STARTED, label="Getting started: train or import a run", icon=":material/rocket_launch:")
        st.stop()
    return run_id


def open_run_page(title: str) -> tuple[str, pd.DataFrame]:
    """Title a page about the run under review; (run id, predictions), or stop with a message."""
    run_id = require_run()
    st.title(title)
    preds = loaders.load_run(run_id)
    if preds is None:
        st.stop()
    return run_id, preds


# --- the sidebar ------------------------------------------------------------------------------------


def sidebar(table: pd.DataFrame) -> None:
    """Run under review, reviewer name, problem runs and data locations, in the sidebar.

    The run and the reviewer are asked once per browser session and kept in the page
    address (`?run_id=...&reviewer=...`), so a reload keeps them too.
    """
    ids = loaders.complete_run_ids(table)
    restore_from_url()
    asked = st.session_state.get(RUN_KEY)
    with st.sidebar:
        keep_valid(RUN_KEY, ids)  # also with no complete run: an address's run_id is not kept unchecked
        if ids:
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
        st.caption(f"Test images: {loaders.data_source_text()}")
    if asked and asked not in ids:
        st.session_state[_SUBSTITUTED] = (asked, st.session_state.get(RUN_KEY))
    substituted = st.session_state.get(_SUBSTITUTED)
    if substituted and substituted[1] == st.session_state.get(RUN_KEY):
        # A shared link to a run that cannot be reviewed: say why, until the reviewer picks a run.
        st.warning(unreviewable_text(table, *substituted), icon=":material/warning:")
    else:
        st.session_state.pop(_SUBSTITUTED, None)
    remember_in_url()


def unreviewable_text(table: pd.DataFrame, run_id: str, instead: str | None) -> str:
    """Markdown: why `run_id` (from the address) is not under review, and which run is."""
    row = table[table["run_id"] == run_id] if not table.empty else table
    if len(row) and isinstance(row["problem"].iloc[0], str):
        why = f"it {'is ' + row['state'].iloc[0] if row['state'].iloc[0] in ('queued', 'running') else 'cannot be read'}: "
        why += row["problem"].iloc[0]
    elif len(row):
        why = f"it is {row['state'].iloc[0] or 'not finished'} and has no predictions yet"
    else:
        why = "there is no run of that name"
    shown = f" Showing {instead} instead." if instead else ""
    return escape_markdown(f"Run {run_id} cannot be reviewed: {why}.{shown}")


def compare_pickers(table: pd.DataFrame, ids: list[str]) -> tuple[str, str]:
    """Compare's two run pickers, in the sidebar under the shared ones: (run A, run B)."""
    default_a, default_b = compare_defaults(table)
    keep_valid(COMPARE_BASE_KEY, ids, default_a)
    keep_valid(COMPARE_KEY, ids, default_b)
    label = run_label(table)
    with st.sidebar:
        st.divider()
        st.markdown("**Compare**")
        run_a = st.selectbox("Run A (baseline)", ids, key=COMPARE_BASE_KEY, format_func=label, persist_state="session")
        run_b = st.selectbox("Run B", ids, key=COMPARE_KEY, format_func=label, persist_state="session")
    return run_a, run_b
