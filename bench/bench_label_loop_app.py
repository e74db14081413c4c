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
from pathlib import Path

from bench.timing import median_seconds, ms_row, print_ms_rows, restored_environ, timed

N_TRAIN_PER_BATCH = 10_000  # 5 batches: the 50,000 images of CIFAR-10's training set
N_VERDICTS = 500


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

    from tests.app_fixture import NAVIGATION

    repeats = 3 if quick else 7
    rows = []
    with (restored_environ("CIFAR_MTL_HOME", "CIFAR10_DIR"),
          tempfile.TemporaryDirectory(prefix="bench-label-loop-") as tmp):
        run_id, suspects = _prepare(Path(tmp))
        at = AppTest.from_file(str(NAVIGATION), default_timeout=300)
        at.query_params["reviewer"] = "carol"
        at.run()
        at.switch_page("views/mislabels.py").run()
        first = timed(lambda: at.segmented_control(key="ml_split").set_value("train").run())
        assert not at.exception, [e.value for e in at.exception]
        ranked = {m.label: m.value for m in at.metric}["Training images ranked"]
        rows.append(ms_row(f"Mislabels train, first render ({ranked} images: ranking + thumbnails)", first, None))
        rows.append(ms_row("Mislabels train, render after the first (median)", median_seconds(at.run, repeats), 1000))
        clicks = []
        for index in suspects[:repeats]:
            clicks.append(timed(lambda: at.button(key=f"ml_train_unsure_{index}").click().run()))
        assert not at.exception and not at.error, [e.value for e in at.error]
        rows.append(ms_row("Mislabels train, verdict click, full page rerun (median)", statistics.median(clicks), 1000))
        at.switch_page("views/labels.py").run()
        assert not at.exception, [e.value for e in at.exception]
        rows.append(ms_row(f"Label sets page with its preview of ~{N_VERDICTS} verdicts (median)",
                           median_seconds(at.run, repeats), 1000))
    return rows


if __name__ == "__main__":
    print_ms_rows(run(quick="--quick" in sys.argv[1:]))
