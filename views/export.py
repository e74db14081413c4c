"""Export: the error-category CSV of the run under review, previewed, downloaded and kept under the home."""

import time

import streamlit as st

from cifar_mtl import analysis, runs, ui
from cifar_mtl.export import error_category_frame, review_events_frame, to_csv_bytes, write_user_file

run_id, preds = ui.open_run_page("Export")
store = ui.store_or_none(required=True)
tags, categories = store.current_tags(), store.category_names()

c = st.columns([2, 3])
form = c[0].radio(
    "Rows", ["wide", "long"], key="ex_form", horizontal=True, persist_state="session",
    format_func={"wide": "one per reviewed image", "long": "one per review event"}.get,
)
use_filters = c[1].toggle("Only images that match the Errors filters", key="ex_filtered", persist_state="session")
if use_filters:
    with st.expander("Filters (shared with the Errors page)", icon=":material/filter_alt:"):
        ui.filter_controls(categories, prefix="ex")
    kwargs = ui.filter_kwargs()
    st.caption(f"Filter: {ui.describe_filters(kwargs)}")

if store.reviewed_pairs(run_id).empty:
    st.info(f"Nothing to export yet: no review was recorded while reviewing run {run_id}. "
            "Tag some errors on the Errors or Review page first.", icon=":material/info:")
    st.stop()
try:
    frame = (error_category_frame if form == "wide" else review_events_frame)(preds, store, run_id)
except Exception as exc:
    ui.show_error(exc, "Building the CSV")
    st.stop()
if use_filters:
    try:
        keep = analysis.error_table(preds, tags, **kwargs)["index"]
    except ValueError as exc:
        ui.show_error(exc, "Filters")
        st.stop()
    frame = frame[frame["index"].isin(keep)].reset_index(drop=True)

st.caption(f"{len(frame):,} row{'' if len(frame) == 1 else 's'} · reviews recorded while reviewing run {run_id}")
if frame.empty:
    st.info("No reviewed image matches the filters.", icon=":material/filter_alt_off:")
st.dataframe(frame.head(500), hide_index=True, width="stretch")
data = to_csv_bytes(frame)
stem = f"{run_id}-errors{'-long' if form == 'long' else ''}{'-filtered' if use_filters else ''}"


def keep_copy() -> None:
    """Write the downloaded bytes under `<home>/exports/` too, so the file outlives the browser."""
    path = runs.home() / "exports" / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    try:
        write_user_file(path, data)  # the user's normal file mode, not a temp file's 0600
        st.session_state["_ex_saved"] = (stem, str(path))
    except (OSError, ValueError) as exc:
        st.session_state["_ex_error"] = ui.error_message(exc, "The copy under the artifacts home failed")


st.download_button("Download CSV", data, file_name=f"{stem}.csv", mime="text/csv", on_click=keep_copy,
                   icon=":material/download:", type="primary", key="ex_download")
saved_stem, saved = st.session_state.get("_ex_saved") or (None, None)
if saved_stem == stem:  # a copy of another form or filter is not this file
    st.caption(f"Copy saved: `{saved}`")
if message := st.session_state.pop("_ex_error", None):
    st.error(message)
