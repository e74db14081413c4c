"""The evidence for each error, in chromium: a box on the Map tagged in bulk and undone, a hover on
the Map showing the image, a slice tagged and undone, a suggestion accepted by key, a nearest
training image opened. Each checks its result in the database or on the screen."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from cifar_mtl.app import figures
from cifar_mtl.evidence import files
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.runs import load_predictions, run_dir
from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from tests.browser.support import (
    assert_clean, button, choose, focus_page, goto, image_index, keyed, press, settle, shot, wait_for,
)
from cifar_mtl.evidence.suggestions import MIN_TAGGED
from tests.evidence_fixture import tag_like_a_reviewer

RUN = "multi-b"


def tags_of(store: ReviewStore, reviewer: str = "ada") -> set[tuple[int, str]]:
    tags = store.current_tags(reviewer=reviewer)
    return {(int(i), c) for i, c in zip(tags["index"], tags["category"])}


def map_canvas(page):
    return page.locator("[class*='st-key-map_chart_'] canvas").first


def chart_pixels(page, layout, points) -> list[tuple[float, float]]:
    """Page pixel positions of data points (x, y) on the map: the plot fills the canvas's width
    and is MAP_HEIGHT tall under the padding, over the axes' domains (`figures.map_spec`)."""
    box = map_canvas(page).bounding_box()
    pad = figures.MAP_PADDING
    (x0, x1), (y0, y1) = figures.map_domain(layout["x"]), figures.map_domain(layout["y"])
    width = box["width"] - pad["left"] - pad["right"]
    return [(box["x"] + pad["left"] + (x - x0) / (x1 - x0) * width,
             box["y"] + pad["top"] + (y1 - y) / (y1 - y0) * figures.MAP_HEIGHT) for x, y in points]


def data_per_pixel(page, layout) -> float:
    (x0, x1) = figures.map_domain(layout["x"])
    return (x1 - x0) / (map_canvas(page).bounding_box()["width"] - 8)


def drag_box(page, layout, corner, other, steps=12) -> None:
    """Press the mouse at data point `corner`, move it in steps to `other`, and let go."""
    (ax, ay), (bx, by) = chart_pixels(page, layout, [corner, other])
    page.mouse.move(ax, ay)
    page.mouse.down()
    for k in range(1, steps + 1):
        page.mouse.move(ax + (bx - ax) * k / steps, ay + (by - ay) * k / steps, steps=2)
    page.mouse.up()


def isolated(layout, among=None) -> pd.Series:
    """The row of `layout` (or of its rows `among`) farthest from any other point: hovering it
    can only find it."""
    xy = layout[["x", "y"]].to_numpy()
    rows = np.flatnonzero(among) if among is not None else np.arange(len(layout))
    gaps = [np.partition(np.linalg.norm(xy - xy[r], axis=1), 1)[1] for r in rows]
    return layout.iloc[rows[int(np.argmax(gaps))]]


def hover(page, layout, row):
    """Move the mouse onto `row`'s point; the tooltip once it names that image."""
    x, y = chart_pixels(page, layout, [(row["x"], row["y"])])[0]
    page.mouse.move(x - 30, y - 30)
    page.mouse.move(x, y, steps=5)
    tooltip = page.locator("#vg-tooltip-element")
    expect(tooltip).to_be_visible()
    expect(tooltip.locator("h2")).to_have_text(f"#{int(row['index'])}")
    return tooltip


def pictures_ready(page) -> None:
    """Wait while the Map writes the hover pictures (on the first visit for this test set)."""
    expect(page.get_by_text(re.compile(r"^Writing the hover pictures"))).to_have_count(0, timeout=60_000)
    settle(page)


def test_a_box_on_the_map_is_tagged_in_bulk_and_one_undo_reverts_it(app, page):
    url, fx = app
    store = ReviewStore(default_path(fx.home))
    layout = files.read_map(run_dir(RUN, fx.home))
    goto(page, f"{url}/map?run_id={RUN}&reviewer=ada", "Map")
    map_canvas(page).wait_for()
    pictures_ready(page)
    shot(page, "map-1-open")

    # A box round the densest cluster: its class's images sit there (tests/evidence_fixture.py).
    xy = layout[["x", "y"]].to_numpy()
    centre = xy[np.argmax([(np.linalg.norm(xy - p, axis=1) < 1.5).sum() for p in xy])]
    half = 2.0
    drag_box(page, layout, centre + [half, -half], centre + [-half, half])  # from the bottom right
    heading = page.get_by_role("heading", name=re.compile(r"^\d+ selected$"))
    heading.wait_for()
    settle(page)
    assert_clean(page)
    n = int(heading.inner_text().split()[0])
    slack = 2 * data_per_pixel(page, layout)  # the mouse lands on whole pixels
    offset = np.abs(xy - centre).max(axis=1)
    inside = set(layout.loc[offset < half - slack, "index"].astype(int))
    maybe = set(layout.loc[offset < half + slack, "index"].astype(int))
    assert len(inside) <= n <= len(maybe) and n >= 5, (n, len(inside), len(maybe))
    shot(page, "map-2-box")

    # The box is gone once the page keeps the selection: a point inside it shows its tooltip.
    within = isolated(layout, np.isin(layout["index"], sorted(inside)))
    hover(page, layout, within)
    shot(page, "map-3-hover-in-box")

    choose(page, "Category", "context")
    button(page, f"Tag {n} selected images").click()
    wait_for(lambda: len(tags_of(store)) == n, what="the bulk tag")
    tagged = {i for i, _ in tags_of(store)}
    assert inside <= tagged <= maybe and {c for _, c in tags_of(store)} == {"context"}
    settle(page)
    assert_clean(page)
    expect(page.get_by_text(f"Tagged {n} images 'context'")).to_be_visible()
    shot(page, "map-4-tagged")

    # Colour by category: a tagged image's tooltip names its category
    page.get_by_role("radio", name="category", exact=True).click()
    settle(page)
    assert_clean(page)
    expect(hover(page, layout, within).get_by_role("row", name="category context")).to_be_visible()
    shot(page, "map-5-by-category")

    button(page, "Undo").click()
    wait_for(lambda: not tags_of(store), what="the undo of the whole action")
    settle(page)
    assert_clean(page)
    history = store.history(reviewer="ada")
    assert len(history) == 2 * n and history["batch"].nunique() == 2  # one action and its undo

    # In click mode a click on one point shows that image with its evidence.
    page.get_by_role("radio", name="click a point", exact=True).click()
    settle(page)
    button(page, "Clear").click()
    page.get_by_text("Nothing selected yet").wait_for()
    settle(page)
    row = isolated(layout)
    page.mouse.click(*chart_pixels(page, layout, [(row["x"], row["y"])])[0])
    page.get_by_role("heading", name="1 selected").wait_for()
    settle(page)
    assert_clean(page)
    expect(page.get_by_text(re.compile(rf"^#{int(row['index'])} · "))).to_be_visible()
    expect(page.get_by_text("Nearest training images")).to_be_visible()
    shot(page, "map-6-one-point")


def test_hovering_a_point_on_the_map_shows_its_picture(app, page):
    url, fx = app
    layout = files.read_map(run_dir(RUN, fx.home))
    goto(page, f"{url}/map?run_id={RUN}&reviewer=ada", "Map")
    map_canvas(page).wait_for()
    pictures_ready(page)
    row = isolated(layout)
    tooltip = hover(page, layout, row)
    picture = tooltip.locator("img")
    expect(picture).to_have_attribute("src", re.compile(rf"/app/static/map-thumbnails/[0-9a-f]+/{int(row['index'])}\.png$"))
    wait_for(lambda: picture.evaluate("i => i.complete && i.naturalWidth === 64"), what="the picture drawn")
    preds = load_predictions(RUN, fx.home).set_index("index")
    label, pred = (CLASS_NAMES[int(preds.loc[int(row["index"]), k])] for k in ("label", "pred"))
    expect(tooltip.get_by_role("row", name=f"true → predicted {label} → {pred}")).to_be_visible()
    shot(page, "map-hover")
    settle(page)
    assert_clean(page)


def test_a_slice_is_tagged_and_undone(app, page):
    url, fx = app
    store = ReviewStore(default_path(fx.home))
    slices = files.read_slices(run_dir(RUN, fx.home))
    members = set(slices.loc[slices["slice"] == 1, "index"].astype(int))
    goto(page, f"{url}/slices?run_id={RUN}&reviewer=ada", "Slices")
    keyed(page, "slice_btn_1").locator("button").first.click()
    page.get_by_role("heading", name="Slice 1", exact=True).wait_for()
    settle(page)
    shot(page, "slices-1-open")

    choose(page, "Category", "colour")
    button(page, f"Tag {len(members)} slice members").click()
    wait_for(lambda: tags_of(store) == {(i, "colour") for i in members}, what="the slice's tags")
    settle(page)
    assert_clean(page)
    shot(page, "slices-2-tagged")

    keyed(page, "slice_bulk_undo").locator("button").first.click()
    wait_for(lambda: not tags_of(store), what="the undo of the slice")
    settle(page)
    assert_clean(page)


@pytest.mark.images(400)  # multi-b: errors enough to tag past the suggestions' threshold and leave some
def test_a_suggestion_is_accepted_by_key(app, page):
    url, fx = app
    store = ReviewStore(default_path(fx.home))
    tag_like_a_reviewer(store, RUN, load_predictions(RUN, fx.home), MIN_TAGGED + 10, "ada")
    before = tags_of(store)
    goto(page, f"{url}/queue?run_id={RUN}&reviewer=ada", "Review")
    page.get_by_text("Filter (shared with the Errors page)").click()
    expect(page.get_by_role("combobox", name="Suggested category")).to_be_visible()
    settle(page)
    choose(page, "Suggested category", re.compile(r"^(pose|colour)$"))
    category = page.get_by_role("combobox", name="Suggested category").input_value()
    expect(page.get_by_text("Suggested", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(rf"^{category} · precision")).first).to_be_visible()
    current = image_index(page)
    shot(page, "review-suggestion")

    focus_page(page)
    press(page, "a")
    wait_for(lambda: tags_of(store) - before, what="the accepted suggestion")
    assert (current, category) in tags_of(store) - before
    assert {i for i, _ in tags_of(store) - before} == {current}
    settle(page)
    assert_clean(page)


def test_a_nearest_training_image_opens_beside_the_test_image(app, page):
    url, fx = app
    neighbours = files.read_neighbours(run_dir(RUN, fx.home))
    goto(page, f"{url}/browse?run_id={RUN}&reviewer=ada", "Errors")
    index = image_index(page, detail=True)
    keyed(page, "err_nb_1").locator("button").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    first = neighbours[(neighbours["index"] == index) & (neighbours["rank"] == 1)].iloc[0]
    expect(dialog.get_by_text(f"training #{int(first['train_index'])} · labelled")).to_be_visible()
    expect(dialog.get_by_text(re.compile(rf"^test #{index} · labelled"))).to_be_visible()
    images = dialog.locator("img")
    expect(images).to_have_count(2)
    wait_for(lambda: all(images.nth(k).evaluate("i => i.complete && i.naturalWidth >= 256") for k in range(2)),
             what="both images drawn large")
    shot(page, "errors-neighbour-dialog")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    settle(page)
    assert_clean(page)
