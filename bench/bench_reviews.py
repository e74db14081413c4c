"""Benchmarks of the review library on a 10,000-image generated run.

Figures (median wall time of repeated calls, on a real SQLite file in a temp folder):
filtering and sorting the error table, one tag write, exporting the error-category
CSV of 10,000 reviewed images, ranking 10,000 images for mislabels.

    python bench/bench_reviews.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

N_IMAGES = 10_000
RUN_ID = "bench-reviews"


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _row(name: str, value: float, unit: str, limit: float) -> dict:
    return {"name": name, "value": value, "unit": unit, "target": f"< {limit:g} {unit}",
            "ok": bool(value < limit)}


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
    from cifar_mtl.reviews import ReviewStore
    from cifar_mtl.runs import load_predictions
    from cifar_mtl.synthetic import make_fake_run

    repeats = 5 if quick else 30
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-reviews-") as tmp:
        home = Path(tmp)
        make_fake_run(RUN_ID, home_dir=home, n=N_IMAGES, seed=0)
        preds = load_predictions(RUN_ID, home)
        store = ReviewStore(home / "reviews.sqlite")
        _fill_store(store, preds, n_notes=100 if quick else 500)
        tags = store.current_tags(RUN_ID)

        calls = [  # the app's common views: all errors, a filtered slice, a reviewer's queue
            dict(sort="loss"),
            dict(true_class=[3, 5], min_confidence=0.3, category=["occlusion", "colour"], sort="confidence"),
            dict(tagged=False, reviewer="cy", sort="margin", descending=False),
        ]
        sizes = [len(error_table(preds, tags, **kw)) for kw in calls]
        seconds = _median_seconds(lambda: [error_table(preds, tags, **kw) for kw in calls], repeats)
        rows.append(_row(f"error table filter+sort ({N_IMAGES:,} rows, {len(tags):,} tags; "
                         f"mean of 3 views of {'/'.join(map(str, sizes))} rows)",
                         seconds / len(calls) * 1e3, "ms", 50))

        errors = preds.loc[~preds["correct"], "index"].to_numpy()
        picks = iter(np.resize(errors, repeats * 2).tolist())
        seconds = _median_seconds(lambda: store.toggle(RUN_ID, next(picks), "context", "cy"), repeats)
        rows.append(_row("one tag write (toggle, committed, synchronous=FULL)", seconds * 1e3, "ms", 20))

        out = home / "exports" / "bench.csv"
        seconds = _median_seconds(
            lambda: write_error_csv(RUN_ID, out=out, home_dir=home, store=store), max(3, repeats // 5)
        )
        n_rows = len(pd.read_csv(out))
        rows.append(_row(f"export error-category CSV ({n_rows:,} reviewed images)", seconds, "s", 1))
        store.close()

    rows += _rank_rows(preds, repeats)
    return rows


def _rank_rows(preds, repeats: int) -> list[dict]:
    from cifar_mtl.mislabels import rank_mislabels

    rows = []
    if "cleanlab.rank" not in sys.modules:
        # Paid once per process (the app's first ranking); reported, not judged.
        start = time.perf_counter()
        import cleanlab.rank  # noqa: F401

        rows.append({"name": "import cleanlab (once per process)", "value": time.perf_counter() - start,
                     "unit": "s", "target": "-", "ok": None})
    seconds = _median_seconds(lambda: rank_mislabels(preds), max(3, repeats // 3))
    rows.append(_row(f"rank {len(preds):,} images for mislabels (normalized margin)", seconds, "s", 1))
    return rows


def _print_table(rows: list[dict]) -> None:
    width = max(len(r["name"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'value':>10}  unit  {'target':<10}  ok")
    for r in rows:
        ok = "-" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        print(f"{r['name']:<{width}}  {r['value']:>10.3f}  {r['unit']:<4}  {r['target']:<10}  {ok}")


if __name__ == "__main__":
    _print_table(run(quick="--quick" in sys.argv[1:]))
