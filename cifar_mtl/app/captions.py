"""Text the pages show about images, runs and filters: pure functions of rows and tables.

Reviewer names come from the page address and are escaped here; every other value is
the project's own (class names, numbers).
"""

from __future__ import annotations

import pandas as pd

from cifar_mtl.app.messages import escape_markdown
from cifar_mtl.app.state import ANY
from cifar_mtl.labels import CLASS_NAMES, IS_ANIMAL


def caption(row) -> str:
    """'#index · true → predicted · confidence' (+ tags) for one error-table row."""
    text = f"#{int(row['index'])} · {row['label_name']} → {row['pred_name']} · {float(row['confidence']):.0%}"
    cats = row.get("categories") if hasattr(row, "get") else None
    if cats:
        text += " · " + ", ".join(cats)
    return text


def animal_text(row: dict) -> str:
    """The animal head's output for one image, or why there is none."""
    a = row.get("animal_prob")
    if a is None or pd.isna(a):
        return "single-task run: no animal head"
    truth = "an animal" if IS_ANIMAL[int(row["label"])] else "a vehicle"
    return f"animal head: {float(a):.2f} (says {'animal' if a >= 0.5 else 'vehicle'}; it is {truth})"


def class_option(value) -> str:
    """format_func of class pickers: 'any class' or '3 cat'."""
    return "any class" if value == ANY else f"{value} {CLASS_NAMES[value]}"


def describe_filters(kwargs: dict) -> str:
    """Short markdown of the active filters, e.g. 'true cat · predicted dog · untagged'.

    The reviewer's name comes from the page address, so it is escaped.
    """
    parts = []
    if kwargs.get("true_class") is not None:
        parts.append(f"true {CLASS_NAMES[kwargs['true_class']]}")
    if kwargs.get("pred_class") is not None:
        parts.append(f"predicted {CLASS_NAMES[kwargs['pred_class']]}")
    if kwargs.get("min_confidence") is not None or kwargs.get("max_confidence") is not None:
        parts.append(f"confidence {kwargs.get('min_confidence') or 0:.2f}-{kwargs.get('max_confidence') or 1:.2f}")
    if kwargs.get("cross_group_only"):
        parts.append("animal/vehicle mix-ups")
    if kwargs.get("tagged") is not None:
        parts.append("tagged" if kwargs["tagged"] else "untagged")
    if kwargs.get("category"):
        parts.append(f"category {escape_markdown(kwargs['category'])}")
    if kwargs.get("reviewer"):
        parts.append(f"by {escape_markdown(kwargs['reviewer'])}")
    if kwargs.get("near_duplicate"):
        parts.append("near-duplicates")
    if kwargs.get("label_conflict"):
        parts.append("label conflicts")
    if kwargs.get("slice_id") is not None:
        parts.append(f"slice {int(kwargs['slice_id'])}")
    if kwargs.get("suggested"):
        parts.append(f"suggested {escape_markdown(kwargs['suggested'])}")
    return " · ".join(parts) or "all errors"


def run_label(table: pd.DataFrame):
    """format_func for run selectors: 'id · variant · accuracy'."""
    info = table.set_index("run_id") if not table.empty else pd.DataFrame()

    def label(run_id: str) -> str:
        if run_id not in info.index:
            return run_id
        row = info.loc[run_id]
        parts = [run_id]
        if isinstance(row["variant"], str):
            parts.append(row["variant"])
        if pd.notna(row["accuracy"]):
            parts.append(f"{float(row['accuracy']):.1%}")
        return " · ".join(parts)

    return label


def pair_caption(row: dict) -> str:
    """Caption of an image two runs disagree on: '#index true: A pred_a, B pred_b'."""
    return f"#{row['index']} {row['label_name']}: A {row['pred_a_name']}, B {row['pred_b_name']}"


def suspect_text(rank: int, row: dict) -> str:
    """One line about a suspected mislabel of `mislabels.rank_mislabels`' table."""
    return (
        f"**{rank}. #{int(row['index'])}** · labelled **{row['label_name']}** (p = {row['prob_label']:.2f}) · "
        f"model says **{row['suggested_name']}** (p = {row['prob_suggested']:.2f}) · "
        f"quality {row['quality']:.3f}"
    )


def verdicts_text(verdicts: pd.DataFrame) -> str:
    """'ada: confirmed → cat; bob: rejected' for the verdicts on one image (names escaped)."""
    return "; ".join(
        f"{escape_markdown(r.reviewer)}: {r.verdict}"
        + ("" if pd.isna(r.suggested_label) else f" → {CLASS_NAMES[int(r.suggested_label)]}")
        for r in verdicts.itertuples()
    )


# --- evidence ------------------------------------------------------------------------------------


def no_evidence_text(run_id: str) -> str:
    """The one line shown where a run has no evidence files yet (markdown)."""
    return (f"No evidence for run {escape_markdown(run_id)} yet (nearest training images, saliency, map, "
            f"slices): compute it with `python -m cifar_mtl evidence --run {run_id}`.")


def duplicate_badges(row) -> list[tuple[str, str, str]]:
    """(text, colour, icon) of the badges for one image's `read_duplicates` row (a dict or None).

    A near-duplicate is a training image the model has seen that looks the same; with
    another label, one of the two labels is very likely wrong.
    """
    if row is None or not bool(row["near_duplicate"]):
        return []
    twin = int(row["train_index"])
    badges = [(f"near-duplicate of training image #{twin} (similarity {float(row['similarity']):.2f})",
               "orange", ":material/content_copy:")]
    if bool(row["label_conflict"]):
        badges.append((f"label conflict: training image #{twin} is labelled {CLASS_NAMES[int(row['train_label'])]}",
                       "red", ":material/report:"))
    return badges


def neighbour_caption(row) -> str:
    """'cat · 0.93' for one row of `triage.neighbours_of`."""
    return f"{row['train_name']} · {float(row['similarity']):.2f}"


def undo_text(done: dict | None) -> str:
    """What an undo did, from `ReviewStore.undo`'s dict (with `count` for a bulk action)."""
    if not done:
        return "Nothing to undo."
    count = int(done.get("count") or 1)
    what = f"{done['kind']} {done['action']}"
    if done.get("category"):
        what = f"{done['action']} of tag '{done['category']}'" if done["kind"] == "tag" else what
    return f"Undid the {what} on {count:,} images." if count > 1 else f"Undid the {what} on #{done['index']}."


def slice_name(slice_id: int) -> str:
    """'Slice 3', or 'Unclustered' for the errors the clustering left alone (-1)."""
    return "Unclustered" if int(slice_id) < 0 else f"Slice {int(slice_id)}"


def slice_title(row) -> str:
    """'Slice 3 · 42 errors · cat→dog 20, dog→cat 9' for one row of `slice_summary`."""
    return f"{slice_name(row['slice'])} · {int(row['size']):,} errors · {row['top_pairs']}"


def group_counts(groups: pd.Series, limit: int = 6) -> str:
    """'cat 12 · dog 5 · 2 more groups' for the map groups of the selected points."""
    counts = groups.value_counts()
    text = " · ".join(f"{escape_markdown(g)} {n:,}" for g, n in counts.head(limit).items())
    extra = len(counts) - limit
    return text + (f" · {extra} more group{'s' if extra > 1 else ''}" if extra > 0 else "")


def precision_text(precision: float) -> str:
    """'precision 64%' for a suggestion's cross-validated precision; NaN: not measured."""
    return "precision not measured" if pd.isna(precision) else f"precision {float(precision):.0%}"


def waiting_text(state) -> str | None:
    """The line shown while a reviewer has no suggestions yet (a `loaders.SuggestionState`)."""
    if state.result is not None:
        return None
    if state.problem:
        return f"No suggestions: {escape_markdown(state.problem, keep_code=True)}"
    if state.needed > 0:
        return (f"Suggested categories start once you have tagged {state.n_tagged + state.needed} errors "
                f"of this run: {state.needed} more to go.")
    return None


def plural(n: int, noun: str) -> str:
    """'1 error', '3 errors', '1,024 correct images'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
