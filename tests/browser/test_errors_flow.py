"""Errors: a filter, a confusion-cell click, the detail view, tags by click and by key."""

from __future__ import annotations

import re

import numpy as np
from playwright.sync_api import expect

from cifar_mtl.analysis import confusion_matrix
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from cifar_mtl.runs import load_predictions
from tests.browser.support import (
    assert_clean, button, choose, focus_page, goto, image_index, press, settle, shot, wait_for,
)

CAPTION = re.compile(r"^#\d+ · ")


def most_confused(preds, true: int | None = None) -> tuple[int, int]:
    """(true, predicted) class of the most frequent mistake, optionally of one true class."""
    cm = confusion_matrix(preds).to_numpy().copy()
    np.fill_diagonal(cm, 0)
    if true is not None:
        return true, int(cm[true].argmax())
    return tuple(int(v) for v in np.unravel_index(cm.argmax(), cm.shape))


def click_cell(page, true_name: str, pred_name: str) -> None:
    """Click the centre of a confusion-matrix cell, placed with plotly's own axes."""
    x, y = page.evaluate(
        """([t, p]) => {
            const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
            const fl = gd._fullLayout, box = gd.getBoundingClientRect();
            return [box.left + fl._size.l + fl.xaxis.d2p(p), box.top + fl._size.t + fl.yaxis.d2p(t)];
        }""",
        [true_name, pred_name],
    )
    page.mouse.click(x, y)


def test_filter_cell_detail_and_tags_by_click_and_key(app, page):
    url, fx = app
    preds = load_predictions("multi-b", fx.home)
    store = ReviewStore(default_path(fx.home))
    goto(page, f"{url}/browse?run_id=multi-b&reviewer=ada", "Errors")

    true, _ = most_confused(preds)
    choose(page, "True class", f"{true} {CLASS_NAMES[true]}")
    settle(page)
    captions = page.get_by_text(CAPTION).all_inner_texts()
    assert captions and all(f" · {CLASS_NAMES[true]} → " in c for c in captions), captions

    true, pred = most_confused(preds, true)
    click_cell(page, CLASS_NAMES[true], CLASS_NAMES[pred])
    pair = f" · {CLASS_NAMES[true]} → {CLASS_NAMES[pred]} · "
    wait_for(lambda: all(pair in c for c in page.get_by_text(CAPTION).all_inner_texts()), what="the cell's images")
    settle(page)
    assert_clean(page)
    shot(page, "errors-1-cell")

    # Open the last image of the grid in the detail view.
    opens = page.locator("[data-testid^='stBaseButton-']").filter(has_text=re.compile(r"^(zoom_in)?Open$"))
    if opens.count():
        opens.last.click()
        settle(page)
    index = image_index(page, detail=True)
    expect(button(page, "Viewing")).to_be_visible()

    button(page, "clutter").click()  # by click
    wait_for(lambda: {(int(i), c) for i, c in store.current_tags(reviewer="ada")[["index", "category"]].values}
             == {(index, "clutter")}, what="the clicked tag")
    settle(page)
    focus_page(page)
    press(page, "2")  # occlusion, by key
    wait_for(lambda: len(store.current_tags(reviewer="ada")) == 2, what="the key's tag")
    settle(page)
    assert_clean(page)

    # The grid's and the detail view's captions name the new tags without a reload.
    tagged = [c for c in page.get_by_text(CAPTION).all_inner_texts() if c.startswith(f"#{index} ")]
    assert len(tagged) >= 2 and all(c.endswith("clutter, occlusion") for c in tagged), tagged
    shot(page, "errors-2-tagged")

    page.reload()  # the tags are in the database, not in the browser session
    page.get_by_role("heading", name="Errors").first.wait_for()
    settle(page)
    choose(page, "Reviewed", "tagged")  # a new session: only the tagged image is left
    assert image_index(page, detail=True) == index
    expect(button(page, "clutter")).to_have_attribute("data-testid", "stBaseButton-primary")
    expect(button(page, "occlusion")).to_have_attribute("data-testid", "stBaseButton-primary")
