"""Errors: the run's misclassified test images, filtered and sorted, and a detail view to tag them."""

import streamlit as st

from cifar_mtl import analysis
from cifar_mtl.app import captions, evidence_panel, figures, loaders, state, widgets
from cifar_mtl.app.messages import show_error
from cifar_mtl.app.sidebar import open_run_page

PAGE_KEY = "err_page"
SIZE_KEY = "err_page_size"
CHART_KEY = "err_confusion"

run_id, preds = open_run_page("Errors")
store = loaders.store_or_none("Review database (tags are not shown)")
tags, categories = (store.current_tags(), store.category_names()) if store else (None, [])
ev = loaders.evidence(run_id)
suggestions = evidence_panel.suggestion_state(ev, preds, tags, categories)
suggested = suggestions.table() if suggestions else None
options = evidence_panel.filter_options(ev, suggested)


def show_cell() -> None:
    """Clicking a confusion cell filters the grid to that true/predicted pair."""
    cell = figures.cell_from_selection(st.session_state.get(CHART_KEY))
    if cell is not None:
        state.set_filter("err", true=cell[0], pred=cell[1])
        st.session_state[PAGE_KEY] = 1


with st.expander("Filters and confusion matrix", expanded=True, icon=":material/filter_alt:"):
    controls, matrix = st.columns([1, 1], gap="medium")
    with controls:
        widgets.filter_controls(categories, prefix="err", columns=2, evidence=options)
    with matrix:
        st.plotly_chart(
            figures.confusion_figure(analysis.confusion_matrix(preds), height=360), key=CHART_KEY,
            on_select=show_cell, selection_mode="points",
        )
        st.caption("Click a cell to see those images (the diagonal, correct answers, is left blank).")

kwargs = state.filter_kwargs()
ev_kwargs = evidence_panel.filter_kwargs(options)
try:
    errors = evidence_panel.filtered_errors(preds, tags, ev, kwargs, ev_kwargs, suggested)
except ValueError as exc:
    show_error(exc, "Filters")
    st.stop()
st.caption(f"**{len(errors):,}** of {int((~preds['correct']).sum()):,} errors · {captions.describe_filters({**kwargs, **ev_kwargs})}")
if errors.empty:
    st.info("No error matches these filters.", icon=":material/filter_alt_off:")
    st.stop()
thumbs = loaders.images_for(preds)

size = widgets.page_size(SIZE_KEY)
page = widgets.page_of(errors, key=PAGE_KEY, size=size)
order = errors["index"].astype(int).tolist()
detail = st.session_state.get(state.DETAIL_KEY)
if detail not in order:
    detail = int(page.rows["index"].iloc[0])

grid, detail_col = st.columns([3, 2], gap="medium")
with grid:
    if thumbs is not None:
        widgets.thumbnail_grid(page.rows, thumbs, columns=4, selected=detail)
    else:
        st.dataframe(
            page.rows[["index", "label_name", "pred_name", "confidence", "loss", "categories"]],
            hide_index=True, width="stretch",
        )
    widgets.pager(page, key=PAGE_KEY, size_key=SIZE_KEY, max_visible_pages=7)

with detail_col:
    row = errors.loc[errors["index"] == detail].iloc[0].to_dict()
    evidence_panel.detail_image(thumbs, ev, detail, row, key="err", caption_text=captions.caption(row))
    evidence_panel.badges(ev, detail)
    widgets.step_buttons(order, detail, key="err_step", page_key=PAGE_KEY, page_size=size)

    # Not a fragment: a tag changes the grid's and this view's captions, so the whole page reruns.
    if tags is not None:
        widgets.tag_controls(run_id, detail, key="err",
                             suggested=suggestions.for_image(detail) if suggestions else None,
                             waiting=captions.waiting_text(suggestions) if suggestions else None)
    if not evidence_panel.no_evidence(ev):
        evidence_panel.neighbours(ev, thumbs, detail, row, key="err")
    st.plotly_chart(figures.probability_figure(row), key="err_probs")
    st.caption(captions.animal_text(row))
    if tags is not None:
        st.markdown("**Tags by every reviewer**")
        everyone = loaders.tags_by_everyone(detail)
        if everyone.empty:
            st.caption("Nobody has tagged this image yet.")
        else:
            st.dataframe(everyone, hide_index=True, width="stretch")
