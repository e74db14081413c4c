"""Server-side speed of the label loop's pages on a full-size training set (Streamlit's AppTest).

On a generated artifacts home: 50,000 generated training images and a cross-validation
run whose train_predictions.parquet covers all of them (`tests.label_loop_fixture`),
with 500 train-split verdicts by two reviewers:

- Mislabels, split train: the first render (ranking 50,000 images, loading the training
  thumbnails) and the render after it (median of reruns; target < 1 s), and a verdict
  click (AppTest reruns the whole page: an upper bound);
- Label sets: the page with its preview of the 500 verdicts (median; target < 1 s).

    python -m bench.bench_label_loop_app [--quick]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

N_TRAIN_PER_BATCH = 10_000  # 5 batches: the 50,000 images of CIFAR-10's training set
N_VERDICTS = 500


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _row(name: str, seconds: float, limit_ms: float | None) -> dict:
    ms = seconds * 1e3
    return {"name": name, "value": round(ms, 1), "target": "-" if limit_ms is None else f"< {limit_ms:g} ms",
            "ok": None if limit_ms is None else bool(ms < limit_ms)}


def _prepare(root: Path) -> tuple[str, list[int]]:
    """The home, its environment set; returns (cross-validation run id, its suspects)."""
    import numpy as np

    from cifar_mtl.stores.database import default_path
    from cifar_mtl.stores.reviews import ReviewStore
    from cifar_mtl.synthetic import write_fake_cifar
    from tests.app_fixture import build_home
    from tests.label_loop_fixture import add_crossval_run

    fx = build_home(root, n=200, images=False)
    fx.data = write_fake_cifar(root / "data", n_train_per_batch=N_TRAIN_PER_BATCH, n_test=200)
    os.environ.update(fx.env())
    run_id, suspects = add_crossval_run(fx, n_suspects=N_VERDICTS)
    store = ReviewStore(default_path(fx.home))
    rng = np.random.default_rng(0)
    for k, index in enumerate(suspects):
        reviewer = ("ada", "bob")[k % 2]
        verdict = ("confirmed", "confirmed", "unsure", "rejected")[rng.integers(4)]
        label = int(rng.integers(10)) if verdict == "confirmed" else None
        try:
            store.set_mislabel(run_id, index, reviewer, verdict, label, split="train")
        except Exception:  # a confirm of an image's own label is refused: skip it
            continue
    store.close()
    return run_id, suspects


def run(quick: bool = False) -> list[dict]:
    from streamlit.testing.v1 import AppTest

    from tests.app_fixture import APP

    repeats = 3 if quick else 7
    saved = {k: os.environ.get(k) for k in ("CIFAR_MTL_HOME", "CIFAR10_DIR")}
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-label-loop-") as tmp:
            run_id, suspects = _prepare(Path(tmp))
            at = AppTest.from_file(str(APP), default_timeout=300)
            at.query_params["reviewer"] = "carol"
            at.run()
            at.switch_page("views/mislabels.py").run()
            first = _timed(lambda: at.segmented_control(key="ml_split").set_value("train").run())
            assert not at.exception, [e.value for e in at.exception]
            ranked = {m.label: m.value for m in at.metric}["Training images ranked"]
            rows.append(_row(f"Mislabels train, first render ({ranked} images: ranking + thumbnails)", first, None))
            rows.append(_row("Mislabels train, render after the first (median)",
                             statistics.median(_timed(at.run) for _ in range(repeats)), 1000))
            clicks = []
            for index in suspects[:repeats]:
                clicks.append(_timed(lambda: at.button(key=f"ml_train_unsure_{index}").click().run()))
            assert not at.exception and not at.error, [e.value for e in at.error]
            rows.append(_row("Mislabels train, verdict click, full page rerun (median)",
                             statistics.median(clicks), 1000))
            at.switch_page("views/labels.py").run()
            assert not at.exception, [e.value for e in at.exception]
            rows.append(_row(f"Label sets page with its preview of ~{N_VERDICTS} verdicts (median)",
                             statistics.median(_timed(at.run) for _ in range(repeats)), 1000))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return rows


def _print(rows: list[dict]) -> None:
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        verdict = {None: "", True: "ok", False: "TOO SLOW"}[r["ok"]]
        print(f"{r['name']:<{width}}  {r['value']:>9.1f} ms {r['target']:<10} {verdict}")


if __name__ == "__main__":
    _print(run(quick="--quick" in sys.argv[1:]))
