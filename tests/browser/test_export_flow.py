"""Export: tags made in the browser come back in the wide and the long CSV."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from tests.browser.support import (
    assert_clean, focus_page, goto, image_index, open_page, press, settle, shot, wait_for,
)


def download(page) -> list[dict]:
    with page.expect_download() as event:
        page.get_by_role("button", name="Download CSV").click()
    settle(page)
    return list(csv.DictReader(io.StringIO(Path(event.value.path()).read_text())))


def test_wide_and_long_files_hold_the_tags(app, page):
    url, fx = app
    store = ReviewStore(default_path(fx.home))
    goto(page, f"{url}/queue?run_id=multi-b&reviewer=ada", "Review")
    first = image_index(page)
    focus_page(page)
    press(page, "1")
    press(page, "5")
    wait_for(lambda: len(store.current_tags(reviewer="ada")) == 2, what="two tags")
    settle(page)

    open_page(page, "Export")
    wide = download(page)
    assert [(int(r["index"]), r["clutter"], r["pose"], r["occlusion"], r["reviewers"]) for r in wide] == [
        (first, "1", "1", "0", "ada")]
    assert page.get_by_text("Copy saved").first.inner_text().endswith(".csv")
    assert "-long" not in page.get_by_text("Copy saved").first.inner_text()

    page.get_by_text("one per review event").click()
    # Under load the click's rerun may not have begun when settle() looks, so wait for the
    # caption itself: the wide file's copy is not this one, and must go.
    wait_for(lambda: page.get_by_text("Copy saved").count() == 0, what="the wide file's caption to go")
    settle(page)
    long = download(page)
    assert sorted((int(r["index"]), r["category"], r["action"], r["reviewer"]) for r in long) == [
        (first, "clutter", "add", "ada"), (first, "pose", "add", "ada")]
    assert "-long-" in page.get_by_text("Copy saved").first.inner_text()
    assert_clean(page)
    copies = list((fx.home / "exports").glob("multi-b-errors-*.csv"))
    assert len(copies) == 2
    umask = os.umask(0)
    os.umask(umask)
    assert all(c.stat().st_mode & 0o777 == 0o666 & ~umask for c in copies)  # the user's normal mode
    shot(page, "export-1-long")
