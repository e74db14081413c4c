"""Map: every test image placed by the model's features; colour it, select with a lasso or a box,
and tag the selection at once."""

import streamlit as st

from cifar_mtl import analysis, triage
from cifar_mtl.app import captions, evidence_panel, figures, loaders, state, widgets
from cifar_mtl.app.messages import escape_markdown
from cifar_mtl.app.sidebar import open_run_page

CHART_KEY = "map_chart"
PAGE_KEY = "map_page"
SHOWN = {"all": "all test images", "errors": "errors only"}
# What a mouse drag does (plotly's dragmode). Streamlit makes a click select its point only
# when the drag does not select (pan), so "click" is a mode of its own.
MOUSE = {"lasso": "lasso", "select": "box", "pan": "click a point"}

run_id, preds = open_run_page("Map")
SELECTED_KEY = f"map_selected_{run_id}"  # the reviewer's last lasso, box or click on this run: test indices
ev = loaders.evidence(run_id)
if evidence_panel.no_evidence(ev):
    st.stop()
if ev.layout is None:
    st.caption(f"This run's evidence has no map yet: compute it with `python -m cifar_mtl evidence --run {run_id}`.")
    st.stop()
store = loaders.store_or_none("Review database (categories are not shown)")
name = state.reviewer()
tags = store.current_tags(reviewer=name) if store else None

c = st.columns([4, 2, 3], vertical_alignment="bottom")
st.session_state.setdefault("map_colour", triage.COLOUR_BY[0])
st.session_state.setdefault("map_shown", "all")
st.session_state.setdefault("map_mouse", "lasso")
colour_by = c[0].segmented_control("Colour by", triage.COLOUR_BY, key="map_colour") or triage.COLOUR_BY[0]
shown = c[1].segmented_control("Show", list(SHOWN), key="map_shown", format_func=SHOWN.get) or "all"
mouse = c[2].segmented_control("Select with", list(MOUSE), key="map_mouse", format_func=MOUSE.get) or "lasso"

points = triage.map_points(ev.layout, preds, tags)
if shown == "errors":
    points = points.loc[~points["correct"].to_numpy(bool)].reset_index(drop=True)
groups = triage.colour_groups(points, colour_by)


def remember_selection() -> None:
    """Keep what the reviewer selected: redrawing the figure (a new colouring, a tag that
    changes the category colours) clears the chart's own selection, not the reviewer's."""
    st.session_state[SELECTED_KEY] = figures.indices_from_selection(st.session_state.get(CHART_KEY))


def clear_selection() -> None:
    st.session_state[SELECTED_KEY] = []


shown_indices = set(points["index"].tolist())
selected = [i for i in st.session_state.get(SELECTED_KEY, []) if i in shown_indices]
chart, panel = st.columns([3, 2], gap="medium")
with chart:
    st.plotly_chart(
        figures.map_figure(points, groups, selected=selected, dragmode=mouse), key=CHART_KEY,
        on_select=remember_selection,
        selection_mode=("points", "box", "lasso"), config={"displaylogo": False, "scrollZoom": True},
    )
    whose = f"{escape_markdown(name)}'s tags" if name else "everyone's tags (type your name to see yours)"
    st.caption(
        f"{len(points):,} {'errors' if shown == 'errors' else 'test images'}, placed so that images the model "
        f"sees alike lie close together. Categories are {whose}. Draw round points with the lasso or a box to "
        "list and tag them; in 'click a point' mode a click shows one image with its evidence."
    )

with panel:
    if not selected:
        st.info("Nothing selected yet: draw a lasso round some points.", icon=":material/gesture_select:")
        if store is not None and name:  # a bulk action can be undone after its selection is gone
            widgets.undo_button(key="map_bulk")
        st.stop()
    thumbs = loaders.images_for(preds)
    rows = analysis.error_table(preds, tags, errors_only=False, sort="index")
    rows = rows.set_index("index", drop=False).loc[selected].reset_index(drop=True)
    n_errors = int((~rows["correct"]).sum())
    head = st.container(horizontal=True, vertical_alignment="center")
    head.subheader(f"{len(rows):,} selected", anchor=False)
    head.button("Clear", key="map_clear", on_click=clear_selection, icon=":material/deselect:", type="tertiary")
    st.caption(f"{captions.plural(n_errors, 'error')} and {captions.plural(len(rows) - n_errors, 'correct image')}"
               f" · {captions.group_counts(groups[points['index'].isin(selected).to_numpy()])}")
    if store is not None:
        widgets.bulk_tag_controls(run_id, selected, key="map_bulk", what="selected image")
    if len(rows) == 1:
        row = rows.iloc[0].to_dict()
        index = int(row["index"])
        evidence_panel.detail_image(thumbs, ev, index, row, key="map", caption_text=captions.caption(row))
        evidence_panel.badges(ev, index)
        evidence_panel.neighbours(ev, thumbs, index, row, key="map")
    else:
        page = widgets.page_of(rows, key=PAGE_KEY, size=16)
        widgets.gallery(page.rows, thumbs, captions.caption, columns=4)
        widgets.pager(page, key=PAGE_KEY, max_visible_pages=5)
