"""Errors: the run's misclassified test images, filtered and sorted, and a detail view to tag them."""

import math

import streamlit as st

from cifar_mtl import analysis, ui
from cifar_mtl.images import DETAIL_SCALE

PAGE_KEY = "err_page"
SIZE_KEY = "err_page_size"
CHART_KEY = "err_confusion"

run_id, preds = ui.open_run_page("Errors")
store = ui.store_or_none("Review database (tags are not shown)")
tags, categories = (store.current_tags(), store.category_names()) if store else (None, [])


def show_cell() -> None:
    """Clicking a confusion cell filters the grid to that true/predicted pair."""
    cell = ui.cell_from_selection(st.session_state.get(CHART_KEY))
    if cell is not None:
        ui.set_filter("err", true=cell[0], pred=cell[1])
        st.session_state[PAGE_KEY] = 1


with st.expander("Filters and confusion matrix", expanded=True, icon=":material/filter_alt:"):
    controls, matrix = st.columns([1, 1], gap="medium")
    with controls:
        ui.filter_controls(categories, prefix="err", columns=2)
    with matrix:
        st.plotly_chart(
            ui.confusion_figure(analysis.confusion_matrix(preds), height=360), key=CHART_KEY,
            on_select=show_cell, selection_mode="points",
        )
        st.caption("Click a cell to see those images (the diagonal, correct answers, is left blank).")

kwargs = ui.filter_kwargs()
try:
    errors = analysis.error_table(preds, tags, **kwargs)
except ValueError as exc:
    ui.show_error(exc, "Filters")
    st.stop()
st.caption(f"**{len(errors):,}** of {int((~preds['correct']).sum()):,} errors · {ui.describe_filters(kwargs)}")
if errors.empty:
    st.info("No error matches these filters.", icon=":material/filter_alt_off:")
    st.stop()
thumbs = ui.images_for(preds)

size = st.session_state.setdefault(SIZE_KEY, ui.PAGE_SIZES[1])
n_pages = max(1, math.ceil(len(errors) / size))
if not 1 <= st.session_state.get(PAGE_KEY, 1) <= n_pages:
    st.session_state[PAGE_KEY] = 1
order = errors["index"].astype(int).tolist()

grid, detail_col = st.columns([3, 2], gap="medium")
with grid:
    page = st.session_state.get(PAGE_KEY, 1)
    rows = errors.iloc[(page - 1) * size : page * size]
    detail = st.session_state.get(ui.DETAIL_KEY)
    if detail not in order:
        detail = int(rows["index"].iloc[0])
    if thumbs is not None:
        ui.thumbnail_grid(rows, thumbs, columns=4, selected=detail)
    else:
        st.dataframe(
            rows[["index", "label_name", "pred_name", "confidence", "loss", "categories"]],
            hide_index=True, width="stretch",
        )
    bar = st.container(horizontal=True, vertical_alignment="center")
    with bar:
        st.pagination(n_pages, key=PAGE_KEY, max_visible_pages=7)
        st.selectbox("Per page", ui.PAGE_SIZES, key=SIZE_KEY, label_visibility="collapsed", width=90)

with detail_col:
    row = errors.loc[errors["index"] == detail].iloc[0].to_dict()
    ui.show_image(thumbs, detail, scale=DETAIL_SCALE, caption_text=ui.caption(row))
    ui.step_buttons(order, detail, key="err_step", page_key=PAGE_KEY, page_size=size)
    st.plotly_chart(ui.probability_figure(row), key="err_probs")
    st.caption(ui.animal_text(row))

    # Not a fragment: a tag changes the grid's and this view's captions, so the whole page reruns.
    if tags is not None:
        ui.tag_controls(run_id, detail, key="err")
        st.markdown("**Tags by every reviewer**")
        everyone = ui.tags_by_everyone(detail)
        if everyone.empty:
            st.caption("Nobody has tagged this image yet.")
        else:
            st.dataframe(everyone, hide_index=True, width="stretch")
