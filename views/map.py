"""Map: every test image placed by the model's features; hover shows its picture, a box or a click
selects, and the selection is tagged at once."""

from functools import partial
from pathlib import Path

import streamlit as st

from cifar_mtl import analysis, triage
from cifar_mtl.app import captions, evidence_panel, figures, loaders, map_thumbnails, state, widgets
from cifar_mtl.app.messages import escape_markdown
from cifar_mtl.app.sidebar import open_run_page

PAGE_KEY = "map_page"
SHOWN = {"all": "all test images", "errors": "errors only"}
MOUSE = {figures.BOX: "box", figures.CLICK: "click a point"}
# Streamlit serves `static/` next to navigation.py (and app.py) at app/static/ (server.enableStaticServing).
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

run_id, preds = open_run_page("Map")
SELECTED_KEY = f"map_selected_{run_id}"  # the reviewer's last box or clicked points on this run: test indices
# A new chart (a new key) after each box and on Clear: see remember_selection.
st.session_state.setdefault("map_chart_gen", 0)
CHART_KEY = f"map_chart_{st.session_state['map_chart_gen']}"
ev = loaders.evidence(run_id)
if evidence_panel.no_evidence(ev):
    st.stop()
if ev.layout is None:
    st.caption(f"This run's evidence has no map yet: compute it with `python -m cifar_mtl evidence --run {run_id}`.")
    st.stop()
store = loaders.store_or_none("Review database (categories are not shown)")
name = state.reviewer()
tags = store.current_tags(reviewer=name) if store else None
thumbs = loaders.images_for(preds)


def hover_images() -> map_thumbnails.HoverImages:
    """The hover pictures of the loaded test set; on the first visit they are written in the
    background (once per test set) while the Map is already in use."""
    if thumbs is None:
        return map_thumbnails.HoverImages(None, "Hover shows no picture: the test images are not loaded.")
    if not st.get_option("server.enableStaticServing"):
        return map_thumbnails.HoverImages(None, (
            "Hover shows no picture: static file serving is off. Start the app from the repository "
            "folder (its `.streamlit/config.toml` turns it on) or pass `--server.enableStaticServing true`."))
    url_root = "/" + "/".join(p for p in (st.get_option("server.baseUrlPath").strip("/"), "app/static") if p)
    return map_thumbnails.hover_images(thumbs.images, STATIC_DIR, url_root)


@st.fragment(run_every=1.5)
def wait_for_pictures() -> None:
    """While the hover pictures are written: how far it got, then the whole page again to use them."""
    now = hover_images()
    if not now.writing:
        st.rerun()
    st.caption(f"Writing the hover pictures ({now.written:,} of {now.total:,}, once per test set); "
               "hover shows them when this is done.")


c = st.columns([4, 2, 2], vertical_alignment="bottom")
st.session_state.setdefault("map_colour", triage.COLOUR_BY[0])
st.session_state.setdefault("map_shown", "all")
st.session_state.setdefault("map_mouse", figures.BOX)
colour_by = c[0].segmented_control("Colour by", triage.COLOUR_BY, key="map_colour") or triage.COLOUR_BY[0]
shown = c[1].segmented_control("Show", list(SHOWN), key="map_shown", format_func=SHOWN.get) or "all"
mouse = c[2].segmented_control("Select with", list(MOUSE), key="map_mouse", format_func=MOUSE.get) or figures.BOX

points = triage.map_points(ev.layout, preds, tags)
if shown == "errors":
    points = points.loc[~points["correct"].to_numpy(bool)].reset_index(drop=True)
groups = triage.colour_groups(points, colour_by)
hover = hover_images()


def remember_selection(chart_key: str, mode: str, drawn) -> None:
    """Keep what the reviewer selected among the points `drawn`: redrawing the chart (a new
    colouring, a tag that changes the category colours) must not lose it. A box is then
    cleared (a new chart): the page draws the kept selection itself, and a box left on the
    chart would take the pointer and hide the tooltips of the points inside it."""
    st.session_state[SELECTED_KEY] = figures.indices_from_selection(st.session_state.get(chart_key), drawn)
    if mode == figures.BOX:
        st.session_state["map_chart_gen"] += 1


def clear_selection() -> None:
    st.session_state[SELECTED_KEY] = []
    st.session_state["map_chart_gen"] += 1


shown_indices = set(points["index"].tolist())
selected = [i for i in st.session_state.get(SELECTED_KEY, []) if i in shown_indices]
chart, panel = st.columns([3, 2], gap="medium")
with chart:
    st.space(28)  # room for the chart's toolbar, which otherwise covers the controls above on hover
    drawn = points[["index", "x", "y"]]
    st.vega_lite_chart(
        figures.map_spec(points, groups, selected=selected, mode=mouse, image_url=hover.url,
                         group_title=colour_by),
        key=CHART_KEY,
        on_select=partial(remember_selection, CHART_KEY, mouse, drawn), selection_mode=[mouse], width="stretch",
    )
    whose = f"{escape_markdown(name)}'s tags" if name else "everyone's tags (type your name to see yours)"
    how = ("Drag a box round points to list and tag them" if mouse == figures.BOX else
           "Click a point to show its image with its evidence; shift-click adds more")
    st.caption(
        f"{len(points):,} {'errors' if shown == 'errors' else 'test images'}, placed so that images the model "
        f"sees alike lie close together. Categories are {whose}. Hover a point to see its image. {how}; "
        "the wheel zooms."
    )
    if hover.problem:
        st.caption(escape_markdown(hover.problem, keep_code=True))
    elif hover.writing:
        wait_for_pictures()

with panel:
    if not selected:
        st.info("Nothing selected yet: drag a box round some points, or click one.",
                icon=":material/select:")
        if store is not None and name:  # a bulk action can be undone after its selection is gone
            widgets.undo_button(key="map_bulk")
        st.stop()
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
