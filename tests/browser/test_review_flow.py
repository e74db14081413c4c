"""Review: the keyboard queue, in two tabs as two reviewers, checked against the database."""

from __future__ import annotations

import re

from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from tests.browser.support import assert_clean, focus_page, goto, image_index, press, settle, shot, wait_for


def tags_of(store: ReviewStore, reviewer: str) -> set[tuple[int, str]]:
    tags = store.current_tags(reviewer=reviewer)
    return {(int(i), c) for i, c in zip(tags["index"], tags["category"])}


def position(page) -> str:
    return page.get_by_text(re.compile(r"^\d+ of \d+$")).first.inner_text()


def test_keys_notes_undo_and_a_second_reviewer_in_another_tab(app, browser, page):
    url, fx = app
    store = ReviewStore(default_path(fx.home))
    goto(page, f"{url}/queue?run_id=multi-b&reviewer=ada", "Review")
    first = image_index(page)
    focus_page(page)

    press(page, "1")  # clutter on the first image
    wait_for(lambda: tags_of(store, "ada") == {(first, "clutter")}, what="the first tag")
    press(page, "j")
    wait_for(lambda: position(page).startswith("2 of"), what="the next image")
    second = image_index(page)
    assert second != first
    press(page, "2")  # occlusion on the second
    wait_for(lambda: (second, "occlusion") in tags_of(store, "ada"), what="the second tag")
    press(page, "k")
    wait_for(lambda: position(page).startswith("1 of"), what="the previous image")
    assert image_index(page) == first
    press(page, "U")  # undo the last change: the occlusion tag
    wait_for(lambda: tags_of(store, "ada") == {(first, "clutter")}, what="the undo")
    settle(page)
    assert_clean(page)
    shot(page, "review-1-keys")

    note = page.get_by_label("Note")
    note.click()
    note.fill("the wing looks like an ear")
    focus_page(page)  # leaving the field saves the note
    wait_for(lambda: len(store.current_notes(reviewer="ada")) == 1, what="the note")

    other = browser.new_page()
    goto(other, f"{url}/queue?run_id=multi-b&reviewer=bob", "Review")
    assert image_index(other) == first  # bob has tagged nothing: the same hardest error
    focus_page(other)
    press(other, "3")  # colour, as bob
    wait_for(lambda: tags_of(store, "bob") == {(first, "colour")}, what="bob's tag")
    shot(other, "review-2-second-tab")

    page.bring_to_front()
    focus_page(page)
    press(page, "4")  # context, as ada, in the first tab again
    wait_for(lambda: tags_of(store, "ada") == {(first, "clutter"), (first, "context")}, what="ada's second tag")
    settle(page)
    settle(other)
    assert_clean(page)
    assert_clean(other)
    shot(page, "review-3-back-in-the-first-tab")

    # Exactly what was done, and nothing else.
    assert tags_of(store, "ada") == {(first, "clutter"), (first, "context")}
    assert tags_of(store, "bob") == {(first, "colour")}
    notes = store.current_notes()
    assert notes[["index", "reviewer", "note"]].values.tolist() == [[first, "ada", "the wing looks like an ear"]]
    history = store.history()
    assert len(history) == 6  # 3 adds by ada, her undo, her note, bob's add
    assert set(history["run_id"]) == {"multi-b"}

    # Rebuilding the queue drops the image ada has tagged since the queue was made.
    before = int(position(page).split(" of ")[1])
    page.get_by_role("button", name="Rebuild the queue").click()
    wait_for(lambda: position(page) == f"1 of {before - 1}", what="the rebuilt queue")
    settle(page)
    assert image_index(page) != first
    assert_clean(page)
