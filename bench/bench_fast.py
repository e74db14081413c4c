"""The fast CPU backbone (`configs/cpu_fast.json`, the airbench net): speed and minutes to accuracy.

Throughput: the trainer's path (`bench_training.Setup`: the run's tf.data pipeline,
callback and compiled model) with the cpu_fast settings (bf16, batch 512,
flip_shift2, multitask) against a bare `model.fit` on in-memory arrays, in A B B A
blocks; then the same path in float32, to show what bf16 brings on CPUs with
AVX512_BF16. The figure turns into minutes per 50,000-image epoch.

Minutes to accuracy: the full mode trains `configs/cpu_fast_demo.json` (the recipe
cut to 3 epochs) with `fit.train` on CIFAR-10 (needs `CIFAR10_DIR`) and reports
its wall-clock minutes and test accuracy. Every mode also lists the recorded
airbench runs under `artifacts/runs/` (their minutes and accuracy come from their
metrics.json, measured when they were trained, not now).

    python -m bench.bench_fast [--quick]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path


from bench.bench_training import SKIP, Setup, _row, load_data, time_training
from cifar_mtl.config import CONFIG_DIR
from cifar_mtl.cifar10 import TRAIN_SIZE

ROOT = Path(__file__).resolve().parent.parent
CONFIG = CONFIG_DIR / "cpu_fast.json"
DEMO_CONFIG = CONFIG_DIR / "cpu_fast_demo.json"


def settings(quick: bool) -> dict:
    if quick:
        return {"steps": SKIP + 3, "blocks": 1, "train_demo": False}
    return {"steps": SKIP + 6, "blocks": 2, "train_demo": True}


def throughput_rows(data, described: str, s: dict, tmp: Path) -> list[dict]:
    from cifar_mtl.config import load_config_file

    rows = []
    config = load_config_file(CONFIG)
    for sub in ("bf16", "fp32"):
        (tmp / sub).mkdir()
    # The bare side needs an image for every step it times: a short array ends its fit early.
    n_bare = s["steps"] * config.batch_size
    setup = Setup(config, data, tmp / "bf16", n_bare)
    fit = time_training(setup, s["steps"], s["blocks"])
    what = f"{config.backbone}, {setup.policy}, batch {config.batch_size}, {config.augment}, {described}"
    rows += [
        _row(f"fast backbone training path ({what})", fit["path"], "img/s"),
        _row("fast backbone, bare model.fit on in-memory arrays", fit["bare"], "img/s"),
        _row(f"fast backbone training ratio path/bare (blocks {fit['spread']})", fit["ratio"], "x", ">= 0.95",
             bool(fit["ratio"] >= 0.95)),
        _row("fast backbone: minutes per 50,000-image epoch", TRAIN_SIZE / fit["path"] / 60, "min"),
    ]
    fp32 = load_config_file(CONFIG, ["mixed_precision=off"])
    setup32 = Setup(fp32, data, tmp / "fp32", n_bare)
    setup32.fit_path(SKIP + 1)  # traces the graph
    images, seconds = setup32.fit_path(s["steps"])
    rows.append(_row(f"fast backbone training path in float32 (bf16 is {fit['path'] / (images / seconds):.1f}x)",
                     images / seconds, "img/s"))
    return rows


def demo_rows(tmp: Path) -> list[dict]:
    """Train the 3-epoch demo config on CIFAR-10 and report minutes and test accuracy."""
    from cifar_mtl.config import load_config_file
    from cifar_mtl.training.fit import train

    config = load_config_file(DEMO_CONFIG)
    start = time.perf_counter()
    metrics = train(config, "bench-demo", home_dir=tmp / "home")
    minutes = (time.perf_counter() - start) / 60
    return [
        _row(f"minutes to train and predict configs/{DEMO_CONFIG.name} ({config.finetune_epochs} epochs, "
             f"{config.variant})", minutes, "min"),
        _row(f"  its test accuracy ({config.tta} TTA), reached in {minutes:.1f} min", metrics["accuracy"] * 100, "%"),
    ]


def recorded_rows(runs_dir: Path = ROOT / "artifacts" / "runs") -> list[dict]:
    """Minutes and test accuracy of the recorded airbench runs (from their metrics.json)."""
    rows = []
    for metrics_file in sorted(runs_dir.glob("*/metrics.json")):
        try:
            metrics = json.loads(metrics_file.read_text())
            config = json.loads((metrics_file.parent / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if metrics.get("backbone") != "airbench":
            continue
        run = metrics_file.parent.name
        epochs = config.get("finetune_epochs")
        rows.append(_row(f"recorded run {run} ({config.get('variant')}, {epochs} epochs): minutes",
                         metrics["seconds"] / 60, "min", "< 60 min", bool(metrics["seconds"] < 3600)))
        rows.append(_row(f"recorded run {run}: test accuracy", metrics["accuracy"] * 100, "%", ">= 93 %",
                         bool(metrics["accuracy"] >= 0.93)))
    return rows


def run(quick: bool = False) -> list[dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cifar_mtl.cifar10 import resolve_source

    s = settings(quick)
    data, described = load_data(n_test=1_000)
    with tempfile.TemporaryDirectory(prefix="bench-fast-") as tmp:
        rows = throughput_rows(data, described, s, Path(tmp))
        if s["train_demo"]:
            if resolve_source():
                rows += demo_rows(Path(tmp))
            else:
                print("bench_fast: CIFAR10_DIR is not set, so the demo training is skipped", file=sys.stderr)
    return rows + recorded_rows()


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run(quick="--quick" in sys.argv[1:]))
