"""The method's GPU recipe (`configs/seed_finetune.json`): training throughput of both stages.

EfficientNetV2B1 at 240x240, batch 64, multitask, the project's own model
(`fit.model_from_config`) and `fit.compile_stage` (the stage's trainable weights, optimizer and losses), timed with
`model.fit` on in-memory images (random pixels: throughput does not depend on them)
after a warm-up fit. Weights start from `none` where ImageNet weights cannot be
downloaded (the speed is the same), but the stages run as with ImageNet weights:
"frozen" trains the heads only, "finetune" the whole network with BatchNorm frozen.

It runs on whatever Keras backend and device are at hand (`KERAS_BACKEND=jax` on a
GPU machine without TensorFlow's CUDA build); the row names say which. Without an
accelerator it times only a few steps: a CPU runs this recipe at a few images per
second, which is why the CPU configs exist.

    python -m bench.bench_seed [--quick]
    KERAS_BACKEND=jax python -m bench --only seed
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from cifar_mtl.config import CONFIG_DIR


import numpy as np

from bench.bench_training import _row

CONFIG = CONFIG_DIR / "seed_finetune.json"


def accelerator() -> str | None:
    """The accelerator Keras's backend sees, in words ("NVIDIA H100 80GB HBM3"), or None."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform != "cpu"]
            return getattr(gpus[0], "device_kind", "gpu") if gpus else None
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return None
            return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except (ImportError, RuntimeError, IndexError):
        return None
    return None


def settings(quick: bool, gpu: bool) -> dict:
    if not gpu:
        return {"warm_batches": 1, "batches": 2}
    return {"warm_batches": 5, "batches": 20 if quick else 60}


def stage_throughput(model, config, stage: str, lr: float, x, y, s: dict) -> float:
    """Images per second of `model.fit` in `stage` on the arrays x (N, 32, 32, 3), y (targets dict)."""
    from cifar_mtl.training.fit import compile_stage

    compile_stage(model, config, stage, epochs=10, lr=lr, steps=100)
    bs = config.batch_size
    warm = s["warm_batches"] * bs
    model.fit(x[:warm], {k: v[:warm] for k, v in y.items()}, batch_size=bs, epochs=1, verbose=0)
    n = s["batches"] * bs
    start = time.perf_counter()
    model.fit(x[:n], {k: v[:n] for k, v in y.items()}, batch_size=bs, epochs=1, verbose=0)
    return n / (time.perf_counter() - start)


def run(quick: bool = False) -> list[dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from cifar_mtl.cifar10 import TRAIN_SIZE
    from cifar_mtl.config import load_config_file
    from cifar_mtl.training.fit import model_from_config, precision_policy, stages
    from cifar_mtl.training.targets import make_targets

    device = accelerator()
    config = load_config_file(CONFIG, ["weights=none"])
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(precision_policy(config, gpu=bool(device)))
    s = settings(quick, bool(device))
    model = model_from_config(config)
    n = max(s["batches"], s["warm_batches"]) * config.batch_size
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.float32)
    y = make_targets(rng.integers(0, 10, n), config.label_smoothing, config.animal_eps, config.multitask)
    where = f"{device or 'CPU, no accelerator'}, Keras {keras.__version__} on {keras.backend.backend()}"
    # The stages as the ImageNet recipe runs them: BatchNorm frozen (in inference mode) in both.
    recipe = dataclasses.replace(config, weights="imagenet")
    images = round(TRAIN_SIZE * (1 - config.val_split))
    rows = []
    for stage, epochs, lr in stages(recipe):
        rate = stage_throughput(model, recipe, stage, lr, x, y, s)
        what = "heads on a frozen backbone" if stage == "frozen" else "whole network fine-tuned"
        rows.append(_row(f"seed recipe, {what} ({config.image_size}x{config.image_size}, batch "
                         f"{config.batch_size}, {keras.mixed_precision.global_policy().name}; {where})", rate, "img/s"))
        rows.append(_row(f"  minutes for its {epochs} epochs of {images:,} images", images * epochs / rate / 60, "min"))
    return rows


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run(quick="--quick" in sys.argv[1:]))
