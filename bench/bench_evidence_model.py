"""Evidence from a trained model: its cost against the run's training time, and the saliency methods compared.

    python -m bench.bench_evidence_model [--run ID] [--errors N]

Needs a run whose model.keras is kept (committed runs carry none: train one, e.g.
`python -m cifar_mtl train --config cpu_fast`) and CIFAR-10 (`CIFAR10_DIR`). The run is
copied to a temporary home, so its own evidence files are left alone. Figures:

- every evidence step (embeddings of 60,000 images, saliency of the errors, neighbours,
  near-duplicates, map, slices) in seconds, and their sum as a share of the run's
  `train_seconds` (target: under 10 %);
- the deletion score (lower: the map found what the class score rests on) of Grad-CAM
  at the last spatial layer, SmoothGrad, and random maps, on N misclassified test
  images for their predicted class, with seconds per map.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from cifar_mtl import runs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _run_with_model(run_id: str | None) -> str | None:
    if run_id:
        return run_id
    table = runs.list_runs()
    for rid in table["run_id"] if len(table) else []:
        if (runs.run_dir(rid) / runs.MODEL_FILE).exists():
            return rid
    return None


def _copy_run(run_id: str, home: Path) -> None:
    src, dst = runs.run_dir(run_id), home / "runs" / run_id
    dst.mkdir(parents=True)
    for name in (runs.CONFIG_FILE, runs.MODEL_FILE, runs.PREDICTIONS_FILE, runs.METRICS_FILE, "status.json"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


def saliency_rows(run_id: str, n_errors: int) -> list[dict]:
    from cifar_mtl.cifar10 import load_test_set, resolve_source
    from cifar_mtl.config import make_config
    from cifar_mtl.training.evidence import compare_saliency, load_model

    config = make_config(runs.load_config(run_id))
    predictions = runs.load_predictions(run_id)
    errors = predictions[~predictions["correct"]].head(n_errors)
    x_test, _ = load_test_set(resolve_source(config.data_dir))
    result = compare_saliency(load_model(runs.run_dir(run_id)), x_test[errors["index"].to_numpy()],
                              errors["pred"].to_numpy())
    rows = []
    for method, figures in result.items():
        rows.append({"name": f"deletion score, {method} ({len(errors)} errors, predicted class)",
                     "value": round(figures["deletion"], 4), "unit": "mean prob", "target": "lower is better",
                     "ok": None})
        if method != "random":
            rows.append({"name": f"{method} seconds per map", "value": round(figures["seconds_per_image"], 4),
                         "unit": "s", "target": "", "ok": None})
    return rows


def cost_rows(run_id: str) -> list[dict]:
    from cifar_mtl.training.evidence import evidence_run

    train_seconds = runs.load_metrics(run_id).get("train_seconds")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        _copy_run(run_id, home)
        seconds = evidence_run(run_id, home_dir=home, log=lambda line: None)
    rows = [{"name": f"evidence: {step}", "value": round(s, 2), "unit": "s", "target": "", "ok": None}
            for step, s in seconds.items()]
    total = sum(seconds.values())
    rows.append({"name": "evidence, all steps", "value": round(total, 1), "unit": "s", "target": "", "ok": None})
    if train_seconds:
        share = 100 * total / train_seconds
        rows.append({"name": f"evidence / training time ({train_seconds:.0f} s)", "value": round(share, 1),
                     "unit": "%", "target": "< 10 %", "ok": share < 10})
    return rows


def run(quick: bool = False, run_id: str | None = None, n_errors: int | None = None) -> list[dict]:
    run_id = _run_with_model(run_id)
    if run_id is None:
        return [{"name": "evidence from a model: no run with model.keras under the home (train one first)",
                 "value": float("nan"), "unit": "", "target": "", "ok": None}]
    n_errors = n_errors or (64 if quick else 256)
    rows = saliency_rows(run_id, n_errors)
    if not quick:
        rows += cost_rows(run_id)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run id with model.keras (default: the first such run)")
    parser.add_argument("--errors", type=int, default=256, help="errors for the saliency comparison")
    parser.add_argument("--quick", action="store_true", help="saliency comparison only, on 64 errors")
    args = parser.parse_args()
    for row in run(args.quick, args.run, args.errors if not args.quick else None):
        value = row["value"]
        shown = "-" if isinstance(value, float) and np.isnan(value) else value
        print(f"{row['name']:<64} {shown:>10} {row['unit']:<9} {row['target']}")


if __name__ == "__main__":
    main()
