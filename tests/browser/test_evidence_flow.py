"""The evidence for each error, in chromium: a lasso on the Map tagged in bulk and undone, a slice
tagged and undone, a suggestion accepted by key, a nearest training image opened. Each checks
its result in the database."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from cifar_mtl.evidence import files
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


def chart_pixels(page, points):
    """Page pixel positions of data points (x, y) on the map, through plotly's own axes."""
    return page.evaluate(
        """(points) => {
            const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
            const fl = gd._fullLayout, box = gd.getBoundingClientRect();
            return points.map(([x, y]) => [box.left + fl._size.l + fl.xaxis.l2p(x),
                                            box.top + fl._size.t + fl.yaxis.l2p(y)]);
        }""",
        [list(map(float, p)) for p in points],
    )


def draw_lasso(page, centre, radius, corners=32) -> None:
    """Drag the mouse round a circle of `radius` (data units) about `centre` with the lasso."""
    ring = [(centre[0] + radius * math.cos(2 * math.pi * k / corners),
             centre[1] + radius * math.sin(2 * math.pi * k / corners)) for k in range(corners + 1)]
    pixels = chart_pixels(page, ring)
    page.mouse.move(*pixels[0])
    page.mouse.down()
    for x, y in pixels[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def test_a_lasso_on_the_map_is_tagged_in_bulk_and_one_undo_reverts_it(app, page):
    url, fx = app
    store = ReviewStore(default_path(fx.home))
    layout = files.read_map(run_dir(RUN, fx.home))
    goto(page, f"{url}/map?run_id={RUN}&reviewer=ada", "Map")
    keyed(page, "map_chart").locator(".js-plotly-plot").wait_for()
    shot(page, "map-1-open")

    # A circle round the densest cluster: its class's images sit there (tests/evidence_fixture.py).
    xy = layout[["x", "y"]].to_numpy()
    centre = xy[np.argmax([(np.linalg.norm(xy - p, axis=1) < 1.5).sum() for p in xy])]
    radius = 2.0
    draw_lasso(page, centre, radius)
    heading = page.get_by_role("heading", name=re.compile(r"^\d+ selected$"))
    heading.wait_for()
    settle(page)
    assert_clean(page)
    n = int(heading.inner_text().split()[0])
    distance = np.linalg.norm(xy - centre, axis=1)
    inside = set(layout.loc[distance < radius * 0.97, "index"].astype(int))
    maybe = set(layout.loc[distance < radius * 1.03, "index"].astype(int))  # the lasso is a polygon
    assert len(inside) <= n <= len(maybe) and n >= 5, (n, len(inside), len(maybe))
    shot(page, "map-2-lasso")

    choose(page, "Category", "context")
    button(page, f"Tag {n} selected images").click()
    wait_for(lambda: len(tags_of(store)) == n, what="the bulk tag")
    tagged = {i for i, _ in tags_of(store)}
    assert inside <= tagged <= maybe and {c for _, c in tags_of(store)} == {"context"}
    settle(page)
    assert_clean(page)
    expect(page.get_by_text(f"Tagged {n} images 'context'")).to_be_visible()
    shot(page, "map-3-tagged")

    # Colour by category: the tagged images show as their own group
    page.get_by_role("radio", name="category", exact=True).click()
    settle(page)
    assert_clean(page)
    legend = page.evaluate("""() => document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot')
        .data.map(t => t.name)""")
    assert set(legend) == {"context", "untagged"}, legend
    shot(page, "map-4-by-category")

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
    row = layout.iloc[int(np.argmin(np.linalg.norm(xy - centre, axis=1)))]
    page.mouse.click(*chart_pixels(page, [(row["x"], row["y"])])[0])
    page.get_by_role("heading", name="1 selected").wait_for()
    settle(page)
    assert_clean(page)
    expect(page.get_by_text(re.compile(rf"^#{int(row['index'])} · "))).to_be_visible()
    expect(page.get_by_text("Nearest training images")).to_be_visible()
    shot(page, "map-5-one-point")


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
