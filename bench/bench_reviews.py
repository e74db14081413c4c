"""Benchmarks of the review library on a 10,000-image generated run.

Figures (median wall time of repeated calls, on a real SQLite file in a temp folder):
filtering and sorting the error table, one tag write, exporting the error-category
CSV of 10,000 reviewed images, ranking 10,000 images for mislabels; then the same
operations at scale (issue 13 #12): 1,050,000 current tags (15 reviewers x 7
categories x 10,000 images; 105,000 with --quick), read from the store each time.
At both sizes: a bulk tag of 1,000 images and its one undo (issue 15, each < 1 s).

    python -m bench.bench_reviews [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path


import numpy as np
import pandas as pd

from bench.timing import median_seconds, print_table, row, timed

N_IMAGES = 10_000
RUN_ID = "bench-reviews"


def _fill_store(store, preds, n_notes: int) -> None:
    """Every image reviewed: categories spread over all 10,000, some notes and verdicts."""
    categories = store.category_names()
    index = preds["index"].to_numpy()
    for k, cat in enumerate(categories):
        store.tag_many(RUN_ID, index[k::3], cat, "ann" if k % 2 else "bob")
    for i in index[:n_notes]:
        store.set_note(RUN_ID, int(i), "ann", f"note {i}: cluttered, \"dark\"\n=maybe")
    for i in index[: n_notes // 5]:
        store.set_mislabel(RUN_ID, int(i), "bob", "confirmed", int((i + 1) % 10))


def run(quick: bool = False) -> list[dict]:
    """Time the four operations; returns one dict per figure (name, value, unit, target, ok)."""
    from cifar_mtl.analysis import error_table
    from cifar_mtl.export import write_error_csv
    from cifar_mtl.stores.reviews import ReviewStore
    from cifar_mtl.runs import load_predictions
    from cifar_mtl.synthetic import make_fake_run

    repeats = 5 if quick else 30
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-reviews-") as tmp:
        home = Path(tmp)
        make_fake_run(RUN_ID, home_dir=home, n=N_IMAGES, seed=0)
        preds = load_predictions(RUN_ID, home)
        store = ReviewStore(home / "cifar-mtl.sqlite")
        _fill_store(store, preds, n_notes=100 if quick else 500)
        tags = store.current_tags(RUN_ID)

        calls = [  # the app's common views: all errors, a filtered slice, a reviewer's queue
            dict(sort="loss"),
            dict(true_class=[3, 5], min_confidence=0.3, category=["occlusion", "colour"], sort="confidence"),
            dict(tagged=False, reviewer="cy", sort="margin", descending=False),
        ]
        sizes = [len(error_table(preds, tags, **kw)) for kw in calls]
        seconds = median_seconds(lambda: [error_table(preds, tags, **kw) for kw in calls], repeats)
        rows.append(row(f"error table filter+sort ({N_IMAGES:,} rows, {len(tags):,} tags; "
                        f"mean of 3 views of {'/'.join(map(str, sizes))} rows)",
                        seconds / len(calls) * 1e3, "ms", 50))

        errors = preds.loc[~preds["correct"], "index"].to_numpy()
        picks = iter(np.resize(errors, repeats * 2).tolist())
        seconds = median_seconds(lambda: store.toggle(RUN_ID, next(picks), "context", "cy"), repeats)
        rows.append(row("one tag write (toggle, committed, synchronous=FULL)", seconds * 1e3, "ms", 20))

        rows += _bulk_rows(store, preds, repeats=3 if quick else 10, where=f"{len(store.current_tags()):,} tags")

        out = home / "exports" / "bench.csv"
        seconds = median_seconds(
            lambda: write_error_csv(RUN_ID, out=out, home_dir=home, store=store), max(3, repeats // 5)
        )
        n_rows = len(pd.read_csv(out))
        rows.append(row(f"export error-category CSV ({n_rows:,} reviewed images)", seconds, "s", 1))
        store.close()

    rows += _rank_rows(preds, repeats)
    rows += _scale_rows(quick)
    return rows


SCALE_REVIEWERS = 15


def _bulk_tags(path, n_reviewers: int, n_images: int) -> None:
    """Append n_reviewers x categories x n_images tag events in one transaction.

    Generated in SQL: the event indexes and the state triggers are dropped, the
    rows inserted, then the indexes rebuilt and `review_state` filled by the store's
    own migration-2 builder, so the file is exactly what the triggers would make.
    """
    import sqlite3

    from cifar_mtl.stores import reviews

    bulk = [x for x in reviews._SCHEMA_1 + reviews._SCHEMA_2
            if x.startswith(("CREATE INDEX", "CREATE TRIGGER review_state"))]
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        for statement in bulk:  # "CREATE INDEX name ..." -> "DROP INDEX name"
            kind, name = statement.split()[1:3]
            con.execute(f"DROP {kind} {name}")
        n_cats = con.execute("SELECT COUNT(*) FROM categories").fetchone()[0]
        con.execute(
            "INSERT INTO review_events (at, reviewer, run_id, idx, kind, key, action) "
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "SELECT strftime('%Y-%m-%dT%H:%M:%S', 1700000000 + i / 1000, 'unixepoch') || '.' || "
            "printf('%06d', i % 1000 * 997) || '+00:00', printf('rev%02d', i / (? * ?)), ?, "
            "i % ?, 'tag', c.name, 'add' "
            "FROM n JOIN (SELECT name, ROW_NUMBER() OVER (ORDER BY rowid) - 1 AS k FROM categories) c "
            "ON c.k = (n.i / ?) % ?",
            (n_reviewers * n_cats * n_images - 1, n_cats, n_images, RUN_ID, n_images, n_images, n_cats),
        )
        con.execute("DELETE FROM review_state")
        for statement in bulk:
            con.execute(statement)
        reviews._build_state(con)
        con.execute("COMMIT")
    finally:
        con.close()


def _scale_rows(quick: bool) -> list[dict]:
    """The error table, a tag write and the export at a million current tags."""
    from cifar_mtl.analysis import error_table
    from cifar_mtl.export import error_category_frame
    from cifar_mtl.stores.reviews import ReviewStore
    from cifar_mtl.runs import load_predictions
    from cifar_mtl.synthetic import make_fake_run

    n_images = 1_000 if quick else N_IMAGES  # 105,000 or 1,050,000 tags
    repeats = 3 if quick else 5
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-reviews-scale-") as tmp:
        home = Path(tmp)
        make_fake_run(RUN_ID, home_dir=home, n=N_IMAGES, seed=0)
        preds = load_predictions(RUN_ID, home)
        path = home / "cifar-mtl.sqlite"
        ReviewStore(path).close()
        generate = timed(lambda: _bulk_tags(path, SCALE_REVIEWERS, n_images))
        store = ReviewStore(path)
        _fill_store_notes(store, preds, 500)
        n = len(store.current_tags())
        rows.append(row(f"generate {n:,} tags (bulk SQL, one transaction)", generate, "s"))
        seconds = median_seconds(store.current_tags, repeats)
        rows.append(row(f"read current_tags() ({n:,} tags)", seconds, "s"))
        seconds = median_seconds(lambda: error_table(preds, store.current_tags(), sort="loss"), repeats)
        rows.append(row(f"error table at {n:,} tags (current_tags() + error_table, {N_IMAGES:,} rows)",
                        seconds, "s", 0.5))
        seconds = median_seconds(
            lambda: error_table(preds, store.current_tags(reviewer="rev03"), tagged=False, reviewer="rev03"),
            repeats)
        rows.append(row(f"reviewer's queue at {n:,} tags (current_tags(reviewer) + error_table)",
                        seconds, "s", 0.5))
        picks = iter(np.resize(np.arange(N_IMAGES), repeats * 4).tolist())
        seconds = median_seconds(lambda: store.toggle(RUN_ID, next(picks), "context", "rev03"), repeats * 4)
        rows.append(row(f"one tag write at {n:,} tags (toggle, committed)", seconds * 1e3, "ms", 20))
        rows += _bulk_rows(store, preds, repeats=repeats, where=f"{n:,} tags")
        seconds = median_seconds(lambda: error_category_frame(preds, store, RUN_ID), repeats)
        rows.append(row(f"export frame at {n:,} tags (tags + notes + mislabels, export.error_category_frame)",
                        seconds, "s", 2))
        store.close()
    return rows


BULK_SIZE = 1_000


def bulk_seconds(store, run_id: str, index: list[int], category: str, repeats: int) -> tuple[float, float]:
    """Median seconds of a bulk tag of `index` (one action, committed) and of its one undo.

    Each repeat is a fresh reviewer (bulk0, bulk1, ...) tagging all of `index`, then undoing it.
    """
    tag_s, undo_s = [], []
    for k in range(repeats):
        reviewer = f"bulk{k}"
        start = time.perf_counter()
        assert store.tag_many(run_id, index, category, reviewer) == len(index)
        tag_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert store.undo(reviewer)["count"] == len(index)
        undo_s.append(time.perf_counter() - start)
    return statistics.median(tag_s), statistics.median(undo_s)


def _bulk_rows(store, preds, repeats: int, where: str) -> list[dict]:
    """A bulk tag of 1,000 images (one action) and its one undo, each committed (issue 15:
    under 1 s each)."""
    index = preds["index"].to_numpy()[:BULK_SIZE].tolist()
    tag, undo = bulk_seconds(store, RUN_ID, index, "context", repeats)
    return [row(f"bulk tag of {BULK_SIZE:,} images, one action (tag_many, committed; {where})", tag, "s", 1),
            row(f"its undo, {BULK_SIZE:,} events reverted in one transaction ({where})", undo, "s", 1)]


def _fill_store_notes(store, preds, n_notes: int) -> None:
    """Some notes and verdicts next to the bulk tags, as in the 10,000-image figures."""
    index = preds["index"].to_numpy()
    for i in index[:n_notes]:
        store.set_note(RUN_ID, int(i), "ann", f"note {i}: cluttered, \"dark\"\n=maybe")
    for i in index[: n_notes // 5]:
        store.set_mislabel(RUN_ID, int(i), "bob", "confirmed", int((i + 1) % 10))


def _rank_rows(preds, repeats: int) -> list[dict]:
    from cifar_mtl.mislabels import rank_mislabels

    rows = []
    if "cleanlab.rank" not in sys.modules:
        # Paid once per process (the app's first ranking); reported, not judged.
        start = time.perf_counter()
        import cleanlab.rank  # noqa: F401

        rows.append(row("import cleanlab (once per process)", time.perf_counter() - start, "s"))
    seconds = median_seconds(lambda: rank_mislabels(preds), max(3, repeats // 3))
    rows.append(row(f"rank {len(preds):,} images for mislabels (normalized margin)", seconds, "s", 1))
    return rows


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv[1:]))
