"""Export: the error-category CSV of the run under review, previewed, downloaded and kept under the home."""

import streamlit as st

from cifar_mtl.app import captions, evidence_panel, loaders, state, widgets
from cifar_mtl.app.loaders import store_or_none
from cifar_mtl.app.messages import flash_error, show_error, show_flash
from cifar_mtl.app.sidebar import open_run_page
from cifar_mtl.export import (error_category_frame, file_stem, kept_path, review_events_frame, to_csv_bytes,
                              write_user_file)

SAVED_KEY = "_ex_saved"

run_id, preds = open_run_page("Export")
store = store_or_none(required=True)
tags, categories = store.current_tags(), store.category_names()

c = st.columns([2, 3])
form = c[0].radio(
    "Rows", ["wide", "long"], key="ex_form", horizontal=True, persist_state="session",
    format_func={"wide": "one per reviewed image", "long": "one per review event"}.get,
)
use_filters = c[1].toggle("Only images that match the Errors filters", key="ex_filtered", persist_state="session")
if use_filters:
    ev = loaders.evidence(run_id)
    suggestions = evidence_panel.suggestion_state(ev, preds, tags, categories)
    suggested = suggestions.table() if suggestions else None
    options = evidence_panel.filter_options(ev, suggested)
    with st.expander("Filters (shared with the Errors page)", icon=":material/filter_alt:"):
        widgets.filter_controls(categories, prefix="ex", evidence=options)
    kwargs, ev_kwargs = state.filter_kwargs(), evidence_panel.filter_kwargs(options)
    st.caption(f"Filter: {captions.describe_filters({**kwargs, **ev_kwargs})}")

if store.reviewed_pairs(run_id).empty:
    st.info(f"Nothing to export yet: no review was recorded while reviewing run {run_id}. "
            "Tag some errors on the Errors or Review page first.", icon=":material/info:")
    st.stop()
try:
    frame = (error_category_frame if form == "wide" else review_events_frame)(preds, store, run_id)
except Exception as exc:
    show_error(exc, "Building the CSV")
    st.stop()
if use_filters:
    try:
        keep = evidence_panel.filtered_errors(preds, tags, ev, kwargs, ev_kwargs, suggested)["index"]
    except ValueError as exc:
        show_error(exc, "Filters")
        st.stop()
    frame = frame[frame["index"].isin(keep)].reset_index(drop=True)

st.caption(f"{len(frame):,} row{'' if len(frame) == 1 else 's'} · reviews recorded while reviewing run {run_id}")
if frame.empty:
    st.info("No reviewed image matches the filters.", icon=":material/filter_alt_off:")
st.dataframe(frame.head(500), hide_index=True, width="stretch")
data = to_csv_bytes(frame)
stem = file_stem(run_id, long=form == "long", filtered=use_filters)


def keep_copy() -> None:
    """Write the downloaded bytes under `<home>/exports/` too, so the file outlives the browser."""
    path = kept_path(stem)
    try:
        write_user_file(path, data)  # the user's normal file mode, not a temp file's 0600
        st.session_state[SAVED_KEY] = (stem, str(path))
    except (OSError, ValueError) as exc:
        flash_error("export", exc, "The copy under the artifacts home failed")


st.download_button("Download CSV", data, file_name=f"{stem}.csv", mime="text/csv", on_click=keep_copy,
                   icon=":material/download:", type="primary", key="ex_download")
saved_stem, saved = st.session_state.get(SAVED_KEY) or (None, None)
if saved_stem == stem:  # a copy of another form or filter is not this file
    st.caption(f"Copy saved: `{saved}`")
show_flash("export")
