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
        parts.append(f"category {kwargs['category']}")
    if kwargs.get("reviewer"):
        parts.append(f"by {escape_markdown(kwargs['reviewer'])}")
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
