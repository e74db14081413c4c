"""Slices: the run's errors in groups the model sees alike, with their confusion pairs and examples;
one action tags a whole slice (or the members kept), one undo reverts it."""

import streamlit as st

from cifar_mtl import analysis, triage
from cifar_mtl.app import captions, evidence_panel, loaders, state, widgets
from cifar_mtl.app.messages import show_error
from cifar_mtl.app.sidebar import open_run_page

LIST_PAGE_KEY = "slice_list_page"
MEMBER_PAGE_KEY = "slice_member_page"
EXAMPLE_SCALE = 2
EXAMPLES = 8  # thumbnails per slice card (slice_summary lists this many by default)

run_id, preds = open_run_page("Slices")
OPEN_KEY = f"slice_open_{run_id}"  # slice numbers mean other groups in another run
ev = loaders.evidence(run_id)
if evidence_panel.no_evidence(ev):
    st.stop()
if ev.slices is None:
    st.caption(f"This run's evidence has no slices yet: compute them with `python -m cifar_mtl evidence --run {run_id}`.")
    st.stop()
try:
    summary = loaders.slice_summary(run_id)
except Exception as exc:
    show_error(exc, "Slices")
    st.stop()
if summary.empty:
    st.info("This run has no errors to group.", icon=":material/task_alt:")
    st.stop()
store = loaders.store_or_none("Review database (tags are not shown)")
tags = store.current_tags(reviewer=state.reviewer()) if store else None
thumbs = loaders.images_for(preds)

ids = summary["slice"].astype(int).tolist()
if st.session_state.get(OPEN_KEY) not in ids:
    st.session_state[OPEN_KEY] = ids[0]
chosen = st.session_state[OPEN_KEY]
st.caption(f"{int(summary['size'].sum()):,} errors in {sum(i >= 0 for i in ids)} slices, grouped by how alike the "
           "model's features are; each slice names its most common mistakes (true→predicted, count).")


def key_of(slice_id: int) -> str:
    """Widget-key part for a slice: its number, or 'unclustered'."""
    return "unclustered" if slice_id < 0 else str(slice_id)


def open_slice(slice_id: int) -> None:
    st.session_state[OPEN_KEY] = int(slice_id)
    st.session_state[MEMBER_PAGE_KEY] = 1


def slice_card(row: dict) -> None:
    """One slice in the list: name, size, top pairs, example thumbnails and its Open button."""
    slice_id = int(row["slice"])
    with st.container(border=True, key=f"slice_card_{key_of(slice_id)}"):
        head = st.container(horizontal=True, vertical_alignment="center")
        head.markdown(f"**{captions.slice_name(slice_id)}** · {int(row['size']):,} errors · {row['top_pairs']}")
        head.button("Viewing" if slice_id == chosen else "Open", key=f"slice_btn_{key_of(slice_id)}",
                    on_click=open_slice, args=(slice_id,), icon=":material/arrow_forward:",
                    type="primary" if slice_id == chosen else "secondary")
        if thumbs is not None:
            examples = [i for i in row["examples"] if thumbs.has(i)]
            for cell, index in zip(st.columns(EXAMPLES), examples):
                cell.image(thumbs.png(index, EXAMPLE_SCALE), output_format="PNG", width="stretch")
        st.caption(f"{captions.plural(int(row['pairs']), 'confusion pair')} · "
                   f"mean confidence {float(row['mean_confidence']):.0%}")


listing, detail = st.columns([3, 2], gap="medium")
with listing:
    page = widgets.page_of(summary, key=LIST_PAGE_KEY, size=8)
    for record in page.rows.to_dict("records"):
        slice_card(record)
    widgets.pager(page, key=LIST_PAGE_KEY, max_visible_pages=7)

with detail:
    row = summary.loc[summary["slice"] == chosen].iloc[0]
    st.subheader(captions.slice_name(chosen), anchor=False)
    st.caption(f"{int(row['size']):,} errors · {row['top_pairs']}")
    members = triage.slice_members(ev.slices, chosen)
    left_out = st.multiselect("Leave out", members.tolist(), key=f"slice_leave_{run_id}_{key_of(chosen)}",
                              format_func=lambda i: f"#{i}", placeholder="images not to tag with the rest",
                              help="Tag the slice without these members")
    kept = triage.slice_members(ev.slices, chosen, leave_out=left_out)
    if store is not None:
        widgets.bulk_tag_controls(run_id, kept.tolist(), key="slice_bulk", what="slice member")
    rows = analysis.error_table(preds, tags, sort="index")
    rows = rows[rows["index"].isin(members)].reset_index(drop=True)
    page = widgets.page_of(rows, key=MEMBER_PAGE_KEY, size=24)
    widgets.gallery(page.rows, thumbs, captions.caption, columns=4)
    widgets.pager(page, key=MEMBER_PAGE_KEY, max_visible_pages=5)
