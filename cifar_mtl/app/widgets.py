"""Controls the pages share: images and grids, paged lists, step buttons, tag controls, filters."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import streamlit as st

from cifar_mtl.app import loaders
from cifar_mtl.app.captions import caption, class_option, plural, precision_text, undo_text
from cifar_mtl.app.messages import flash, flash_error, show_flash
from cifar_mtl.app.state import ANY, DETAIL_KEY, SORT_LABELS, filter_key, filters, reviewer
from cifar_mtl.images import DEFAULT_SCALE, Thumbnails
from cifar_mtl.labels import NUM_CLASSES

PAGE_SIZES = (12, 24, 48)
GRID_COLUMNS = 6


# --- images --------------------------------------------------------------------------------------


def show_image(thumbs: Thumbnails | None, index: int, *, scale: int = DEFAULT_SCALE, caption_text=None,
               width="content") -> None:
    """One test image from the thumbnail cache (already PNG: Streamlit passes it on as is).

    In a grid, `width="stretch"` makes every image as wide as its column: at their own
    size, images with longer captions were drawn smaller than their neighbours.
    """
    if thumbs is None or not thumbs.has(index):
        st.caption(caption_text or f"#{index} (no image)")
        return
    st.image(thumbs.png(index, scale), caption=caption_text, output_format="PNG", width=width)


def _grid_cells(n: int, columns: int):
    """One column per item, row by row: a new row of `columns` starts every `columns` items,
    so the images of a row line up whatever the captions above them."""
    for start in range(0, n, columns):
        yield from st.columns(columns)[: min(columns, n - start)]


def select_detail(index: int) -> None:
    """Callback: show image `index` in the detail view."""
    st.session_state[DETAIL_KEY] = int(index)


def thumbnail_grid(rows: pd.DataFrame, thumbs: Thumbnails | None, *, columns: int = GRID_COLUMNS,
                   selected: int | None = None) -> None:
    """A grid of error thumbnails with captions; each has a button opening its detail view."""
    records = rows.to_dict("records")
    for cell, row in zip(_grid_cells(len(records), columns), records):
        index = int(row["index"])
        with cell:
            show_image(thumbs, index, caption_text=caption(row), width="stretch")
            st.button(
                "Viewing" if index == selected else "Open",
                key=f"open_{index}",
                on_click=select_detail,
                args=(index,),
                type="primary" if index == selected else "secondary",
                icon=":material/zoom_in:",
                width="stretch",
            )


def gallery(rows: pd.DataFrame, thumbs: Thumbnails | None, captioned: Callable[[dict], str], *,
            columns: int = GRID_COLUMNS) -> None:
    """Images of `rows` in a grid, row by row, each with `captioned(row)` under it."""
    records = rows.to_dict("records")
    for cell, row in zip(_grid_cells(len(records), columns), records):
        with cell:
            show_image(thumbs, int(row["index"]), caption_text=captioned(row), width="stretch")


# --- paged lists ----------------------------------------------------------------------------------


@dataclass
class Page:
    """One page of a list: its rows, which page it is, of how many, and where it starts."""

    rows: pd.DataFrame
    number: int
    count: int
    start: int  # position of the page's first row in the whole list


def page_of(table: pd.DataFrame, *, key: str, size: int) -> Page:
    """The page of `table` that `st.session_state[key]` (a pagination widget) shows.

    A page number outside the list (it got shorter) goes back to page 1.
    """
    count = max(1, math.ceil(len(table) / size))
    if not 1 <= st.session_state.get(key, 1) <= count:
        st.session_state[key] = 1
    number = st.session_state.get(key, 1)
    start = (number - 1) * size
    return Page(table.iloc[start : start + size], number, count, start)


def page_size(key: str, default: int = PAGE_SIZES[1]) -> int:
    """The page size picked with `pager(size_key=key)`; `default` until one is picked."""
    return st.session_state.setdefault(key, default)


def pager(page: Page, *, key: str, size_key: str | None = None, max_visible_pages: int | None = None) -> None:
    """Page buttons for a list paged by `page_of(key=key)`; with `size_key`, a page-size picker beside them."""
    options = {} if max_visible_pages is None else {"max_visible_pages": max_visible_pages}
    if size_key is None:
        st.pagination(page.count, key=key, **options)
        return
    with st.container(horizontal=True, vertical_alignment="center"):
        st.pagination(page.count, key=key, **options)
        st.selectbox("Per page", PAGE_SIZES, key=size_key, label_visibility="collapsed", width=90)


# --- moving through a list of images -----------------------------------------------------------


def _step(order: list[int], current: int | None, delta: int, state_key: str,
          page_key: str | None, page_size: int) -> None:
    pos = order.index(current) if current in order else -1 if delta > 0 else len(order)
    new = min(max(pos + delta, 0), len(order) - 1)
    st.session_state[state_key] = order[new]
    if page_key:
        st.session_state[page_key] = new // page_size + 1


def step_buttons(order: list[int], current: int | None, *, key: str, state_key: str = DETAIL_KEY,
                 page_key: str | None = None, page_size: int = 1) -> None:
    """Previous / next through `order` (test indices): keys ← or K, → or J.

    Sets `st.session_state[state_key]` to the new index and, when the list is shown
    in pages of `page_size`, `st.session_state[page_key]` to the page that holds it.
    """
    pos = order.index(current) if current in order else None
    bar = st.container(horizontal=True, vertical_alignment="center")
    # j/k too: reviewers coming from mail and code tools reach for them first.
    moves = (("Previous", -1, "Left", ":material/arrow_back:", "secondary"),
             ("Next", 1, "Right", ":material/arrow_forward:", "secondary"),
             ("k", -1, "K", None, "tertiary"),
             ("j", 1, "J", None, "tertiary"))
    for label, delta, shortcut, icon, kind in moves:
        at_end = pos is not None and not 0 <= pos + delta < len(order)
        bar.button(label, key=f"{key}_{label}", shortcut=shortcut, icon=icon, type=kind, disabled=at_end,
                   on_click=_step, args=(order, current, delta, state_key, page_key, page_size),
                   help="previous image" if delta < 0 else "next image")
    if pos is not None:
        bar.caption(f"{pos + 1:,} of {len(order):,}")


# --- tagging ---------------------------------------------------------------------------------------

TAG_FLASH = "tags"


def _set_tag(run_id: str, index: int, category: str, name: str, on: bool) -> None:
    try:
        s = loaders.store()
        (s.tag if on else s.untag)(run_id, index, category, name)
    except Exception as exc:  # shown on the next render instead of a traceback
        flash_error(TAG_FLASH, exc, "Tag not saved")


def _save_note(run_id: str, index: int, name: str, key: str) -> None:
    try:
        loaders.store().set_note(run_id, index, name, st.session_state.get(key) or "")
    except Exception as exc:
        flash_error(TAG_FLASH, exc, "Note not saved")


def _undo(name: str, slot: str = TAG_FLASH) -> None:
    """Undo the reviewer's latest action: one edit, or a whole bulk action."""
    try:
        flash(slot, undo_text(loaders.store().undo(name)), "toast")
    except Exception as exc:
        flash_error(slot, exc, "Undo failed")


def _accept(run_id: str, index: int, categories: list[str], name: str) -> None:
    """Tag image `index` with every suggested category (a suggestion is a tag only from here)."""
    try:
        s = loaders.store()
        for category in categories:
            s.tag(run_id, index, category, name)
        flash(TAG_FLASH, f"Accepted {', '.join(categories)} on #{index}.", "toast")
    except Exception as exc:
        flash_error(TAG_FLASH, exc, "Suggestions not accepted")


def suggestion_bar(run_id: str, index: int, suggested: dict[str, float], *, key: str, name: str,
                   shortcuts: bool = True) -> None:
    """The categories suggested for image `index` ({name: cross-validated precision}), highlighted,
    with one button (key A) that accepts them all."""
    bar = st.container(horizontal=True, wrap=True, vertical_alignment="center")
    bar.markdown(":violet[:material/auto_awesome: **Suggested**]")
    for category, precision in suggested.items():
        bar.badge(f"{category.replace('_', ' ')} · {precision_text(precision)}", color="violet",
                  help="Precision measured by cross-validation on your own tags: the share of such "
                       "suggestions that matched your tag")
    bar.button("Accept all", key=f"{key}_accept", on_click=_accept, args=(run_id, index, list(suggested), name),
               icon=":material/done_all:", shortcut="A" if shortcuts else None, type="secondary",
               help="Tag this image with every suggested category (one tag each; U undoes the last)")


def tag_controls(run_id: str, index: int, *, key: str, shortcuts: bool = True,
                 suggested: dict[str, float] | None = None, waiting: str | None = None) -> None:
    """Category toggles (keys 1-9), a note and undo (U) for one image; saved on click.

    `suggested` ({category: cross-validated precision}) marks the suggested categories and
    offers to accept them all (key A); `waiting` is a line said instead while there are no
    suggestions yet. Call it inside an `st.fragment` so a click reruns only these controls.
    """
    name = reviewer()
    show_flash(TAG_FLASH)
    if name is None:
        st.info("Type your name in the sidebar to tag images.", icon=":material/badge:")
        return
    s = loaders.store()
    categories = s.category_names()
    mine = set(s.current_tags(reviewer=name, indices=[index])["category"])
    suggested = {c: p for c, p in (suggested or {}).items() if c not in mine}
    if suggested:
        suggestion_bar(run_id, index, suggested, key=key, name=name, shortcuts=shortcuts)
    elif waiting:
        st.caption(waiting)
    row = st.container(horizontal=True, wrap=True)
    for k, category in enumerate(categories, start=1):
        on = category in mine
        hint = f" (suggested; {precision_text(suggested[category])})" if category in suggested else ""
        row.button(
            f"{category.replace('_', ' ')}",
            key=f"{key}_tag_{category}",
            on_click=_set_tag,
            args=(run_id, index, category, name, not on),
            type="primary" if on else "secondary",
            icon=":material/check:" if on else ":material/auto_awesome:" if category in suggested else None,
            shortcut=str(k) if shortcuts and k <= 9 else None,
            help=f"{'Remove' if on else 'Add'} the tag '{category}'{hint}",
        )
    row.button("Undo", key=f"{key}_undo", on_click=_undo, args=(name,), icon=":material/undo:",
               shortcut="U" if shortcuts else None, type="tertiary")
    notes = s.current_notes(reviewer=name, indices=[index])
    note_key = f"{key}_note_{index}"
    st.text_area(
        "Note", value=notes["note"].iloc[0] if len(notes) else "", key=note_key, height=68,
        on_change=_save_note, args=(run_id, index, name, note_key),
        placeholder="What makes this image hard? (saved when you leave the field)",
    )


# --- tagging many images at once -------------------------------------------------------------------

BULK_FLASH = "bulk"


def _bulk(run_id: str, indices: list[int], category_key: str, name: str, on: bool) -> None:
    category = st.session_state.get(category_key)
    try:
        s = loaders.store()
        n = (s.tag_many if on else s.untag_many)(run_id, indices, category, name)
        done = f"Tagged {n:,} images '{category}'" if on else f"Removed the tag '{category}' from {n:,} images"
        unchanged = len(indices) - n
        flash(BULK_FLASH, done + (f" ({unchanged:,} already were)." if unchanged and on else
                                  f" ({unchanged:,} did not have it)." if unchanged else "."), "success")
    except Exception as exc:
        flash_error(BULK_FLASH, exc, "Tags not saved")


def bulk_tag_controls(run_id: str, indices: list[int], *, key: str, what: str = "image") -> None:
    """Tag (or untag) every image of `indices` with one category as one action; one Undo reverts it.

    `what` names one image on the buttons ("selected image", "slice member"; made plural).
    """
    name = reviewer()
    show_flash(BULK_FLASH)
    if name is None:
        st.info("Type your name in the sidebar to tag images.", icon=":material/badge:")
        return
    categories = loaders.store().category_names()
    category_key = f"{key}_category"
    bar = st.container(horizontal=True, vertical_alignment="bottom", wrap=True)
    bar.selectbox("Category", categories, key=category_key, format_func=lambda c: c.replace("_", " "), width=200)
    n = len(indices)
    bar.button(f"Tag {plural(n, what)}", key=f"{key}_tag", on_click=_bulk, args=(run_id, indices, category_key, name, True),
               type="primary", icon=":material/sell:", disabled=not n,
               help="One action: a single Undo removes every tag it added")
    bar.button(f"Untag {n:,}", key=f"{key}_untag", on_click=_bulk,
               args=(run_id, indices, category_key, name, False), icon=":material/label_off:", disabled=not n,
               help="Remove this category from these images, as one action")
    undo_button(key=key, container=bar)


def undo_button(*, key: str, container=None) -> None:
    """Undo (key `{key}_undo`) of the reviewer's latest action, a whole bulk tag at once."""
    name = reviewer()
    (container or st).button("Undo", key=f"{key}_undo", on_click=_undo, args=(name, BULK_FLASH),
                             icon=":material/undo:", disabled=name is None,
                             help="Undo your latest action (a whole bulk tag at once)")


# --- the error filter --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceOptions:
    """What a run's evidence can filter on: near-duplicate flags, slice ids, suggested categories."""

    duplicates: bool = False
    slices: tuple[int, ...] = ()
    suggested: tuple[str, ...] = ()


def filter_controls(categories: list[str], *, prefix: str, columns: int = 3,
                    evidence: EvidenceOptions | None = None) -> None:
    """The error filters of `analysis.error_table`, drawn on one page, and the evidence
    filters (`triage.filter_evidence`) that `evidence` says this run can answer.

    A widget's state belongs to its page, so each page draws its own copies (keys
    `filter_key(prefix, name)`), seeded from and written back to `filters()`: the
    filter set on Errors is the one Review and Export use, and it survives moving
    between pages.
    """
    shared = filters()
    evidence = evidence or EvidenceOptions()
    # Choices that depend on the run or the database: a value they no longer offer goes back to any.
    for name, options in (("category", categories), ("slice", evidence.slices), ("suggested", evidence.suggested)):
        if shared[name] not in [ANY, *options]:
            shared[name] = ANY
        if st.session_state.get(filter_key(prefix, name), ANY) not in [ANY, *options]:
            st.session_state[filter_key(prefix, name)] = ANY
    for name, value in shared.items():
        st.session_state.setdefault(filter_key(prefix, name), value)
    k = functools.partial(filter_key, prefix)
    classes = [ANY, *range(NUM_CLASSES)]
    cells = itertools.cycle(st.columns(columns))  # filled row by row
    next(cells).selectbox("True class", classes, key=k("true"), format_func=class_option)
    next(cells).selectbox("Predicted class", classes, key=k("pred"), format_func=class_option)
    next(cells).selectbox("Reviewed", [ANY, "tagged", "untagged"], key=k("reviewed"))
    next(cells).selectbox("Category", [ANY, *categories], key=k("category"))
    next(cells).selectbox("Sort by", list(SORT_LABELS), key=k("sort"), format_func=SORT_LABELS.get)
    next(cells).slider("Confidence", 0.0, 1.0, key=k("confidence"), step=0.05)
    next(cells).toggle("Descending", key=k("descending"))
    next(cells).toggle("Animal/vehicle mix-ups only", key=k("cross"))
    next(cells).toggle("Only my tags count", key=k("mine"))
    if evidence.duplicates:
        next(cells).toggle("Near-duplicates only", key=k("near_duplicate"),
                           help="A training image looks the same (see the detail view's badge)")
        next(cells).toggle("Label conflicts only", key=k("label_conflict"),
                           help="A near-identical training image has another label")
    if evidence.slices:
        next(cells).selectbox("Slice", [ANY, *evidence.slices], key=k("slice"),
                              format_func=lambda v: "any slice" if v == ANY else f"slice {v}")
    if evidence.suggested:
        next(cells).selectbox("Suggested category", [ANY, *evidence.suggested], key=k("suggested"),
                              help="Categories the suggestions classifier proposes to you")
    for name in shared:
        if filter_key(prefix, name) in st.session_state:
            shared[name] = st.session_state[filter_key(prefix, name)]
