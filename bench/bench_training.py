"""Training and prediction speed of the project's code against bare Keras, same process.

Training: the trainer's own path (`fit.setup_keras`, `pipeline.build_datasets` with
the config's augmentation preset, `fit.compile_stage`, `tracking.RunCallback`,
`model.fit` on the tf.data pipeline) against a bare `model.fit` on float32 arrays in memory, with
the same compiled model, batch size and 32x32 images. The two alternate in
A B B A blocks after a warm-up call of each (which traces the graphs); each call
times only its steady-state steps (the first `SKIP` steps of every call, where the
pipeline starts and the shuffle buffer fills, are left out). The ratio is the
median of the blocks' ratios. Target: ratio >= 0.95.

Prediction: `predict.write_predictions` as training calls it (with a cancel flag and
progress.json after the batches: predict + predictions table + parquet + summary
metrics) for the test images against a bare `model.predict` on the same
images as float32 arrays, alternating the same way. Target: ratio >= 0.90.

On a shared machine the wall-clock ratios swing with other people's load, so the
profile of the difference is measured too, in ways that load barely moves: the
input pipeline's CPU time per batch run alone, the time spent in the run
callback per step, and `write_predictions` with the network replaced by its
recorded outputs.

Data: real CIFAR-10 when `CIFAR10_DIR` is set, else generated images
(`cifar_mtl.synthetic.fake_images`). Weights "none" (from scratch), the
`configs/cpu_reference.json` settings (batch 128, flip_translate, multitask).

    python -m bench.bench_training [--quick]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cifar_mtl.config import CONFIG_DIR


import numpy as np

CONFIG = CONFIG_DIR / "cpu_reference.json"
SKIP = 2  # steps at the start of each fit call that are not timed
TRAIN_TARGET = 0.95
PREDICT_TARGET = 0.90


def settings(quick: bool) -> dict:
    """Timed steps per fit call, A B B A blocks, test images and bare-array size for a mode."""
    if quick:
        return {"steps": SKIP + 5, "blocks": 1, "n_test": 2_000, "n_bare": 2_048, "pipeline_batches": 10}
    return {"steps": SKIP + 12, "blocks": 4, "n_test": 10_000, "n_bare": 4_096, "pipeline_batches": 50}


def load_data(n_synthetic_train: int = 10_000, n_test: int = 10_000):
    """CIFAR-10 from `CIFAR10_DIR` if set, else generated images; returns (Cifar10, description)."""
    from cifar_mtl.cifar10 import Cifar10, load_cifar10, resolve_source
    from cifar_mtl.labels import NUM_CLASSES
    from cifar_mtl.synthetic import fake_images

    source = resolve_source()
    if source:
        return load_cifar10(source, allow_download=False), "CIFAR-10"
    y_train = np.arange(n_synthetic_train) % NUM_CLASSES
    y_test = np.arange(n_test) % NUM_CLASSES
    data = Cifar10(fake_images(y_train, seed=1), y_train, fake_images(y_test, seed=2), y_test, "synthetic")
    return data, "generated images (set CIFAR10_DIR for CIFAR-10)"


def step_timer():
    """A callback recording `time.perf_counter()` after every training step (`.ends`)."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    return StepTimer()


def steady_seconds(ends: list[float], skip: int = SKIP) -> tuple[float, int]:
    """(seconds, steps) from the end of step `skip` to the last step's end."""
    if len(ends) <= skip:
        raise ValueError(f"only {len(ends)} steps timed; need more than {skip} (raise steps)")
    return ends[-1] - ends[skip - 1], len(ends) - skip


def abba(n_blocks: int) -> list[str]:
    """The call order: A B B A per block, so a steady drift in load hits both sides alike."""
    return ["A", "B", "B", "A"] * n_blocks


def alternate(path, bare, n_blocks: int) -> list[dict]:
    """Call `path` and `bare` in A B B A blocks; each returns (amount, seconds).

    Returns per block {"A": rate, "B": rate} with rate = total amount / total seconds.
    """
    blocks = []
    for k, side in enumerate(abba(n_blocks)):
        if k % 4 == 0:
            blocks.append({"A": [0.0, 0.0], "B": [0.0, 0.0]})
        amount, seconds = (path if side == "A" else bare)()
        blocks[-1][side][0] += amount
        blocks[-1][side][1] += seconds
    return [{side: a / s for side, (a, s) in block.items()} for block in blocks]


def summarize(blocks: list[dict]) -> dict:
    """Median rates of each side, the median of per-block ratios A/B and their spread."""
    ratios = [b["A"] / b["B"] for b in blocks]
    return {
        "path": statistics.median(b["A"] for b in blocks),
        "bare": statistics.median(b["B"] for b in blocks),
        "ratio": statistics.median(ratios),
        "spread": f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else f"{ratios[0]:.2f}",
    }


class CallTimer:
    """Wraps one bound method of an object and sums the seconds spent in it (`.seconds`, `.calls`)."""

    def __init__(self, obj, method: str):
        self.seconds, self.calls = 0.0, 0
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        setattr(obj, method, timed)


class Setup:
    """The trainer's objects for one config: model compiled as the trainer does, datasets, callback."""

    def __init__(self, config, data, folder: Path, n_bare: int):
        from cifar_mtl.cifar10 import stratified_split
        from cifar_mtl.training import fit, pipeline
        from cifar_mtl.training.targets import make_targets
        from cifar_mtl.training.tracking import RunCallback

        self.config = config
        train_idx, val_idx = stratified_split(data.y_train, config.val_split, config.seed, config.train_subset)
        self.policy, strategy = fit.setup_keras(config)
        self.train_ds, _, steps_per_epoch = pipeline.build_datasets(config, data, train_idx, val_idx)
        stage, epochs, lr = fit.stages(config)[0]
        with strategy.scope():
            self.model = fit.model_from_config(config)
        fit.compile_stage(self.model, config, stage, epochs, lr, steps_per_epoch, strategy)
        self.callback = RunCallback(
            folder, [(stage, epochs)], steps_per_epoch, config.progress_interval, log=lambda message: None
        )
        # Only the per-step hook: epoch ends (history, checkpoint) fall outside the timed steps.
        self.callback_time = CallTimer(self.callback, "on_train_batch_end")
        bare_idx = train_idx[:n_bare]
        self.x_bare = data.x_train[bare_idx].astype(np.float32)
        self.y_bare = make_targets(data.y_train[bare_idx], config.label_smoothing, config.animal_eps, config.multitask)

    def fit_path(self, steps: int) -> tuple[float, float]:
        """One `model.fit` on the trainer's pipeline and callback; (images, seconds) of steady steps."""
        timer = step_timer()
        self.model.fit(self.train_ds, epochs=1, steps_per_epoch=steps, callbacks=[self.callback, timer], verbose=0)
        return self._images(timer.ends)

    def fit_bare(self, steps: int) -> tuple[float, float]:
        """One bare `model.fit` on the in-memory arrays; (images, seconds) of steady steps."""
        timer = step_timer()
        self.model.fit(
            self.x_bare, self.y_bare, batch_size=self.config.batch_size, epochs=1, steps_per_epoch=steps,
            shuffle=True, callbacks=[timer], verbose=0,
        )
        return self._images(timer.ends)

    def _images(self, ends: list[float]) -> tuple[float, float]:
        seconds, steps = steady_seconds(ends)
        return steps * self.config.batch_size, seconds

    def pipeline_cpu_per_batch(self, n_batches: int) -> float:
        """Process CPU seconds per batch the input pipeline takes alone (no model running)."""
        it = iter(self.train_ds)
        for _ in range(2):  # the first batches fill the shuffle buffer
            next(it)
        start = time.process_time()
        for _ in range(n_batches):
            next(it)
        return (time.process_time() - start) / n_batches


def time_training(setup: Setup, steps: int, n_blocks: int) -> dict:
    """Steady-state images/s of each side in A B B A blocks, after a warm-up call of each."""
    setup.fit_path(SKIP + 1)  # warm-up: traces the train step for each input signature
    setup.fit_bare(SKIP + 1)
    setup.callback_time.seconds, setup.callback_time.calls = 0.0, 0
    return summarize(alternate(lambda: setup.fit_path(steps), lambda: setup.fit_bare(steps), n_blocks))


class Replay:
    """Stands in for a model whose outputs are known: `predict` returns them at once.

    Timing `write_predictions` with it measures everything but the network itself.
    """

    def __init__(self, outputs: dict):
        self.outputs = outputs

    def predict(self, data, verbose=0, callbacks=None):
        return self.outputs


def time_prediction(setup: Setup, x_test: np.ndarray, y_test: np.ndarray, folder: Path, n_blocks: int) -> dict:
    """Images/s of `write_predictions` and of a bare `model.predict`, and the former's own overhead (s)."""
    from cifar_mtl.training.pipeline import PREDICT_BATCH
    from cifar_mtl.training.predict import write_predictions
    from cifar_mtl.training.tracking import CancelFlag

    x_float = x_test.astype(np.float32)
    # As training calls it: with a cancel flag and progress.json after the batches.
    quiet = {"log": lambda message: None, "cancel": CancelFlag(), "progress_interval": setup.config.progress_interval}

    def path():
        start = time.perf_counter()
        write_predictions(folder, setup.model, setup.config, x_test, y_test, **quiet)
        return len(x_test), time.perf_counter() - start

    def bare():
        start = time.perf_counter()
        setup.model.predict(x_float, batch_size=PREDICT_BATCH, verbose=0)
        return len(x_test), time.perf_counter() - start

    # Warm-up on a slice with a partial last batch traces both predict functions.
    write_predictions(folder, setup.model, setup.config, x_test[:300], y_test[:300], **quiet)
    outputs = setup.model.predict(x_float, batch_size=PREDICT_BATCH, verbose=0)
    result = summarize(alternate(path, bare, n_blocks))
    replay = Replay(outputs)
    start = time.perf_counter()
    write_predictions(folder, replay, setup.config, x_test, y_test, **quiet)
    result["overhead"] = time.perf_counter() - start
    return result


def _row(name, value, unit, target="-", ok=None) -> dict:
    return {"name": name, "value": float(value), "unit": unit, "target": target, "ok": ok}


def _at_least(name, value, limit) -> dict:
    return _row(name, value, "x", f">= {limit:g}", bool(value >= limit))


def training_rows(setup: Setup, fit: dict, pipeline_cpu: float, what: str) -> list[dict]:
    """The training figures, with where the path's extra time goes (per step, as a share of a bare step)."""
    step = setup.config.batch_size / fit["bare"]
    callback = setup.callback_time.seconds / max(1, setup.callback_time.calls)
    return [
        _row(f"training path: make_dataset + run callback + fit ({what})", fit["path"], "img/s"),
        _row("bare model.fit on in-memory float32 arrays (same model)", fit["bare"], "img/s"),
        _at_least(f"training ratio path/bare (median of blocks {fit['spread']})", fit["ratio"], TRAIN_TARGET),
        _row(f"input pipeline alone: CPU per batch (cast + {setup.config.augment})", pipeline_cpu * 1e3, "ms"),
        _row("run callback per step (progress.json every "
             f"{setup.config.progress_interval:g} s)", callback * 1e3, "ms"),
        _row(f"pipeline CPU + callback as a share of a bare step ({step:.2f} s)",
             (pipeline_cpu + callback) / step * 100, "%", "< 5 %", bool((pipeline_cpu + callback) / step < 0.05)),
    ]


def prediction_rows(pred: dict, n: int) -> list[dict]:
    """The prediction figures, with write_predictions' own cost apart from the network."""
    bare_seconds = n / pred["bare"]
    return [
        _row(f"write_predictions for {n:,} test images (predict + table + parquet)", n / pred["path"], "s"),
        _row(f"bare model.predict on {n:,} float32 images", bare_seconds, "s"),
        _at_least(f"prediction ratio bare/write_predictions time (median of blocks {pred['spread']})",
                  pred["ratio"], PREDICT_TARGET),
        _row("write_predictions without the network (replayed outputs)", pred["overhead"], "s", "< 10 % of predict",
             bool(pred["overhead"] < 0.1 * bare_seconds)),
    ]


def run(quick: bool = False) -> list[dict]:
    """Training and prediction figures; one dict per figure (name, value, unit, target, ok)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cifar_mtl.config import load_config_file

    s = settings(quick)
    config = load_config_file(CONFIG, ["weights=none", "image_size=32"])
    data, described = load_data(n_test=s["n_test"])
    x_test, y_test = data.x_test[: s["n_test"]], data.y_test[: s["n_test"]]
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        setup = Setup(config, data, Path(tmp), s["n_bare"])
        fit = time_training(setup, s["steps"], s["blocks"])
        loads.append(os.getloadavg()[0])
        pipeline_cpu = setup.pipeline_cpu_per_batch(s["pipeline_batches"])
        pred = time_prediction(setup, x_test, y_test, Path(tmp), s["blocks"])
        loads.append(os.getloadavg()[0])
    what = f"{config.variant}, batch {config.batch_size}, 32x32, {config.augment}, {described}"
    rows = training_rows(setup, fit, pipeline_cpu, what) + prediction_rows(pred, len(y_test))
    seen = "/".join(f"{v:.1f}" for v in loads)
    rows.append(_row(f"1-min load average, mean of start/middle/end {seen} ({os.cpu_count()} cores)",
                     statistics.mean(loads), ""))
    return rows


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run(quick="--quick" in sys.argv[1:]))
