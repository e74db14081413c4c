"""Two-stage training that leaves a complete run folder (see docs/design.md).

Stage "frozen" trains the heads on a frozen backbone (only with pretrained
weights); stage "finetune" trains the whole backbone, or its top blocks, at a
lower learning rate. AdamW with linear warmup and cosine decay; the best epoch by
validation class accuracy is kept. SIGTERM stops after the current step and marks
the run cancelled; an exception marks it failed with the error.

The steps of `train` are public so that benchmarks time the very same code:
`setup_keras`, `precision_policy`, `build_datasets`, `stages`, `compile_stage`, `make_run_callback`
and `write_predictions`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
from pathlib import Path

import numpy as np

from cifar_mtl import runs
from cifar_mtl.config import TrainConfig, make_config
from cifar_mtl.predictions import predictions_table, summary_metrics, validate_predictions

CHECKPOINT_FILE = "checkpoint.weights.h5"
PREDICT_BATCH = 256


class TrainingCancelled(Exception):
    """Training was stopped by SIGTERM (or a cancel request) before it finished."""


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite; the run cannot produce a usable model."""


def _in_main_thread() -> bool:
    # signal.signal works only there; a trainer called from another thread keeps no handler.
    return threading.current_thread() is threading.main_thread()


class _CancelFlag:
    """Set by SIGTERM; checked after every training step and between phases."""

    def __init__(self):
        self.set = False
        self._previous = None

    def install(self):
        if _in_main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self):
        if self._previous is not None and _in_main_thread():
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum, frame):
        self.set = True

    def check(self):
        if self.set:
            raise TrainingCancelled("cancelled by SIGTERM")


class _Log:
    """Prints to stdout and appends to the run's train.log (unless stdout already is that file)."""

    def __init__(self, path: Path):
        self.path = path
        self.file = None
        try:
            same = os.path.exists(path) and os.path.samefile(path, f"/proc/self/fd/{sys.stdout.fileno()}")
        except (OSError, ValueError, io.UnsupportedOperation):
            same = False
        if not same:
            self.file = open(path, "a", encoding="utf-8")

    def __call__(self, message: str):
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


def _float_logs(logs) -> dict:
    """Keras logs as floats, with one naming for both variants.

    A single-output model logs `accuracy` and `loss` where a multitask one logs
    `class_accuracy` and `class_loss`; history.csv and progress.json use the latter.
    """
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            pass
    for prefix in ("", "val_"):
        if f"{prefix}accuracy" in out and f"{prefix}class_accuracy" not in out:
            out[f"{prefix}class_accuracy"] = out.pop(f"{prefix}accuracy")
            out.setdefault(f"{prefix}class_loss", out.get(f"{prefix}loss"))
    return out


def make_run_callback(
    folder: Path, plan: list[tuple[str, int]], steps: int, interval: float, cancel: _CancelFlag | None = None, log=print
):
    """A Keras callback writing progress.json, history.csv and the best checkpoint into `folder`.

    `plan` is [(stage, epochs)], `steps` the steps per epoch, `interval` the seconds
    between progress.json writes; a set `cancel` flag stops training after the step.
    """
    import keras

    cancel = _CancelFlag() if cancel is None else cancel

    class RunCallback(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.stage = plan[0][0]
            self.stage_epochs = plan[0][1]
            self.done_before = 0  # steps finished in earlier stages
            self.epoch = 0
            self.t_start = time.time()
            self.last_write = 0.0
            self.best = -math.inf
            self.history_rows = []
            self.total = sum(e for _, e in plan) * steps
            self.last_metrics = {}  # the latest epoch's logs, carried into the predict phase's progress
            self.diverged = None  # "stage epoch E step S" where the loss first became NaN or infinite

        def start_stage(self, stage: str, epochs: int, done_before: int):
            self.stage, self.stage_epochs, self.done_before = stage, epochs, done_before

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            self.epoch_start = time.time()

        def on_train_batch_end(self, batch, logs=None):
            if cancel.set:
                self.model.stop_training = True
            loss = (logs or {}).get("loss")
            if self.diverged is None and isinstance(loss, float) and not math.isfinite(loss):
                # What keras.callbacks.TerminateOnNaN does, remembering where for the error.
                self.diverged = f"{self.stage} epoch {self.epoch} step {batch + 1}"
                self.model.stop_training = True
            now = time.time()
            if now - self.last_write >= interval:
                self.write_progress(batch + 1, logs)

        def write_progress(self, step, logs):
            self.last_write = time.time()
            done = self.done_before + (self.epoch - 1) * steps + step
            elapsed = self.last_write - self.t_start
            eta = elapsed / done * (self.total - done) if done else None
            runs.atomic_write_json(
                folder / runs.PROGRESS_FILE,
                {
                    "phase": "train",
                    "stage": self.stage,
                    "epoch": self.epoch,
                    "epochs": self.stage_epochs,
                    "step": step,
                    "steps": steps,
                    "steps_done": done,
                    "steps_total": self.total,
                    "metrics": _float_logs(logs),
                    "elapsed_seconds": round(elapsed, 1),
                    "eta_seconds": None if eta is None else round(eta, 1),
                    "updated_at": runs.now_iso(),
                },
            )

        def on_epoch_end(self, epoch, logs=None):
            logs = _float_logs(logs)
            self.last_metrics = logs
            row = {"stage": self.stage, "epoch": epoch + 1, "seconds": round(time.time() - self.epoch_start, 2), **logs}
            self.history_rows.append(row)
            _write_history(folder / runs.HISTORY_FILE, self.history_rows)
            self.write_progress(steps, logs)
            score = logs.get("val_class_accuracy")
            if score is not None and score > self.best:
                self.best = score
                self.model.save_weights(folder / CHECKPOINT_FILE)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in logs.items() if "accuracy" in k or k.endswith("loss"))
            log(f"{self.stage} epoch {epoch + 1}/{self.stage_epochs}: {shown}")

    return RunCallback()


def _write_history(path: Path, rows: list[dict]) -> None:
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    runs.atomic_write_text(path, buf.getvalue())


# What `_strategy` gives on backends other than TensorFlow: a scope that does nothing.
_NO_DISTRIBUTION = types.SimpleNamespace(scope=contextlib.nullcontext)


def _strategy():
    """MultiWorkerMirrored with TF_CONFIG, Mirrored on several GPUs, else the default.

    tf.distribute exists only for TensorFlow; on another Keras backend (JAX for
    bench_seed on a GPU machine without TensorFlow) models are built and compiled as is.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return _NO_DISTRIBUTION
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def precision_policy(config: TrainConfig, gpu: bool) -> str:
    """The Keras dtype policy for `config.mixed_precision` on a machine with or without a GPU."""
    if config.mixed_precision == "on" or (config.mixed_precision == "auto" and gpu):
        # On these CPUs bf16 trained slower than fp32 at 32x32, so "auto" uses it on GPUs only.
        return "mixed_float16" if gpu else "mixed_bfloat16"
    return "float32"


def _set_precision(config: TrainConfig) -> str:
    import keras
    import tensorflow as tf

    policy = precision_policy(config, gpu=bool(tf.config.list_physical_devices("GPU")))
    keras.mixed_precision.set_global_policy(policy)
    return policy


def _binary_accuracy(y_true, y_pred):
    import keras

    # Smoothed or mixed targets are never exactly 0 or 1, so both sides are thresholded.
    return keras.ops.cast(keras.ops.equal(y_true > 0.5, y_pred > 0.5), "float32")


def _compile(model, config: TrainConfig, lr: float, total_steps: int, warmup_steps: int):
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr * 0.01 if warmup_steps else lr,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.01,
        warmup_target=lr if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    losses = {"class": keras.losses.CategoricalCrossentropy()}
    metrics = {"class": [keras.metrics.CategoricalAccuracy(name="accuracy")]}
    weights = {"class": 1.0}
    if config.multitask:
        losses["animal"] = keras.losses.BinaryCrossentropy()
        metrics["animal"] = [keras.metrics.MeanMetricWrapper(_binary_accuracy, name="accuracy")]
        weights["animal"] = config.animal_loss_weight
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=schedule, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
        )
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)
    model.compile(
        optimizer=optimizer,
        loss=losses,
        loss_weights=weights,
        metrics=metrics,
    )


def stages(config: TrainConfig) -> list[tuple[str, int, float]]:
    """(stage, epochs, learning rate) in order; no frozen stage when training from scratch."""
    rates = {"frozen": config.frozen_lr, "finetune": config.finetune_lr}
    return [(stage, epochs, rates[stage]) for stage, epochs in config.stage_epochs]


def _versions() -> dict:
    import keras
    import pandas
    import tensorflow as tf

    return {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=runs.PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _prepare_folder(run_id: str, config: TrainConfig, home_dir) -> Path:
    folder = runs.run_dir(run_id, home_dir)
    if (folder / runs.METRICS_FILE).exists() or (folder / runs.CONFIG_FILE).exists():
        raise FileExistsError(f"run {run_id!r} already exists at {folder}; choose another --run-id")
    folder.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(folder / runs.CONFIG_FILE, config.to_dict())
    return folder


def train(config: TrainConfig | dict, run_id: str, progress_bar: bool = False, home_dir=None) -> dict:
    """Train `config` into the run folder `<home>/runs/<run_id>` and return its metrics.

    Raises TrainingCancelled on SIGTERM (status "cancelled") and re-raises any error
    after recording it (status "failed").
    """
    if isinstance(config, dict):
        config = make_config(config)
    folder = _prepare_folder(run_id, config, home_dir)
    runs.write_status(folder, "running", pid=os.getpid())
    log = _Log(folder / runs.LOG_FILE)
    cancel = _CancelFlag()
    cancel.install()
    try:
        metrics = _train(config, folder, progress_bar, cancel, log)
    except TrainingCancelled as exc:
        runs.write_status(folder, "cancelled", error=str(exc))
        log("cancelled")
        raise
    except BaseException as exc:
        from cifar_mtl.data import DataError

        message = f"{type(exc).__name__}: {exc}"
        runs.write_status(folder, "failed", error=message)
        # A diverged run or a bad dataset is explained by its message; a traceback is for bugs.
        expected = isinstance(exc, (TrainingDiverged, DataError))
        log(f"failed: {message}" + ("" if expected else f"\n{traceback.format_exc()}"))
        raise
    finally:
        cancel.uninstall()
        log.close()
    runs.write_status(folder, "succeeded")
    return metrics


def setup_keras(config: TrainConfig):
    """Seed Keras, set the precision policy and pick the distribution strategy.

    Returns (policy name, tf.distribute strategy). Call before building datasets and model.
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    policy = _set_precision(config)
    return policy, _strategy()


def build_datasets(config: TrainConfig, data, train_idx: np.ndarray, val_idx: np.ndarray):
    """The training and validation pipelines of a run.

    Args:
        data: a `data.Cifar10` (x_train (N, 32, 32, 3) uint8, y_train (N,)).
        train_idx, val_idx: indices into `data.x_train` (see `data.stratified_split`).

    Returns:
        (train_ds, val_ds or None when val_idx is empty, steps per training epoch).
        Training batches are shuffled and augmented with `config.augment`.
    """
    from cifar_mtl.augment import build_augmenter
    from cifar_mtl.data import make_dataset
    from cifar_mtl.losses import make_targets

    def targets(idx):
        return make_targets(data.y_train[idx], config.label_smoothing, config.animal_eps, config.multitask)

    augment = build_augmenter(config.augment, config.seed)
    train_ds = make_dataset(data.x_train[train_idx], targets(train_idx), config.batch_size, True, augment, config.seed)
    val_ds = None
    if len(val_idx):
        val_ds = make_dataset(data.x_train[val_idx], targets(val_idx), config.batch_size, False)
    return train_ds, val_ds, math.ceil(len(train_idx) / config.batch_size)


def compile_stage(model, config: TrainConfig, stage: str, epochs: int, lr: float, steps: int, strategy=None) -> None:
    """Make `stage`'s weights trainable and compile `model` for `epochs` of `steps` steps at peak rate `lr`."""
    from cifar_mtl.model import set_stage

    set_stage(model, stage, config.finetune_blocks, freeze_batchnorm=not config.train_from_scratch)
    strategy = _strategy() if strategy is None else strategy
    with strategy.scope():
        # Trainable weights are fixed at compile(): recompile after changing them.
        _compile(model, config, lr, epochs * steps, int(config.warmup_epochs * steps))


def _train(config: TrainConfig, folder: Path, progress_bar: bool, cancel: _CancelFlag, log) -> dict:
    t0 = time.time()
    from cifar_mtl.data import load_cifar10, resolve_source, stratified_split

    source = resolve_source(config.data_dir)
    log(f"loading CIFAR-10 from {source or 'the keras download'}")
    data = load_cifar10(source)
    cancel.check()
    train_idx, val_idx = stratified_split(data.y_train, config.val_split, config.seed, config.train_subset)
    log(f"{len(train_idx)} training, {len(val_idx)} validation, {len(data.y_test)} test images")

    from cifar_mtl.model import build_model, init_whitening

    policy, strategy = setup_keras(config)
    train_ds, val_ds, steps = build_datasets(config, data, train_idx, val_idx)
    plan = stages(config)
    with strategy.scope():
        model = build_model(config)
    if config.backbone == "airbench" and config.train_from_scratch:
        init_whitening(model, data.x_train[train_idx[:5000]])
    log(f"model {model.name}: {model.count_params():,} parameters, precision {policy}, stages {plan}")
    callback = make_run_callback(folder, [(s, e) for s, e, _ in plan], steps, config.progress_interval, cancel, log)
    done = 0
    for stage, epochs, lr in plan:
        cancel.check()
        compile_stage(model, config, stage, epochs, lr, steps, strategy)
        callback.start_stage(stage, epochs, done)
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            callbacks=[callback],
            verbose=1 if progress_bar and sys.stdout.isatty() else 0,
            shuffle=False,  # the dataset shuffles itself (make_dataset); Keras warns that it ignores True
        )
        cancel.check()
        if callback.diverged:
            raise TrainingDiverged(
                f"the training loss became NaN at {callback.diverged}; lower the learning rate "
                "(finetune_lr/frozen_lr) or weight_decay, or lengthen warmup_epochs"
            )
        done += epochs * steps
    checkpoint = folder / CHECKPOINT_FILE
    if checkpoint.exists():
        model.load_weights(checkpoint)
        log(f"restored the best epoch (validation class accuracy {callback.best:.4f})")
    model.save(folder / runs.MODEL_FILE)
    cancel.check()
    train_seconds = time.time() - t0
    metrics = write_predictions(
        folder, model, config, data.x_test, data.y_test, log,
        cancel=cancel, progress_interval=config.progress_interval, train_metrics=callback.last_metrics,
    )
    metrics.update(
        seconds=round(time.time() - t0, 1),
        train_seconds=round(train_seconds, 1),
        best_val_class_accuracy=None if callback.best == -math.inf else callback.best,
        n_train=int(len(train_idx)),
        n_val=int(len(val_idx)),
        data_source=source or "keras",
        data_fingerprint=data.fingerprint,
        precision=policy,
    )
    runs.atomic_write_json(folder / runs.METRICS_FILE, metrics)
    log(f"test accuracy {metrics['accuracy']:.4f}, cross-group errors {metrics['cross_group_errors']}")
    if checkpoint.exists():
        checkpoint.unlink()
    return metrics


def predict_steps(n_images: int, tta: str = "none") -> int:
    """Prediction batches for `n_images` test images, over every test-time view."""
    from cifar_mtl.augment import tta_views

    views = len(tta_views(np.zeros((1, 32, 32, 3), np.uint8), tta))
    return views * math.ceil(n_images / PREDICT_BATCH)


def make_predict_callback(
    folder: Path, steps: int, interval: float | None, cancel: _CancelFlag | None = None, metrics: dict | None = None
):
    """A Keras callback for `model.predict` writing progress.json with phase "predict".

    `steps` is the prediction batches over all views (`predict_steps`), `interval` the
    seconds between writes (the last batch is always written; None: no writes),
    `metrics` the training metrics shown meanwhile. A set `cancel` flag stops
    predicting after the batch.
    """
    import keras

    class PredictCallback(keras.callbacks.Callback):
        # Keras may then call it on a worker thread, so predict batches never wait for it.
        async_safe = True

        def __init__(self):
            super().__init__()
            self.done = 0
            self.t_start = time.time()
            self.last_write = 0.0
            self.lock = threading.Lock()

        def on_predict_batch_end(self, batch, logs=None):
            if cancel is not None and cancel.set:
                self.model.stop_predicting = True
            with self.lock:
                self.done += 1
                now = time.time()
                if interval is not None and (now - self.last_write >= interval or self.done >= steps):
                    self.last_write = now
                    self.write_progress(now)

        def write_progress(self, now: float):
            elapsed = now - self.t_start
            eta = elapsed / self.done * max(0, steps - self.done)
            runs.atomic_write_json(
                folder / runs.PROGRESS_FILE,
                {
                    "phase": "predict",
                    "stage": "predict",
                    "epoch": None,
                    "epochs": None,
                    "step": self.done,
                    "steps": steps,
                    "steps_done": self.done,
                    "steps_total": steps,
                    "metrics": metrics or {},
                    "elapsed_seconds": round(elapsed, 1),
                    "eta_seconds": round(eta, 1),
                    "updated_at": runs.now_iso(),
                },
            )

    return PredictCallback()


def predict_arrays(
    model, images: np.ndarray, tta: str = "none", callbacks=None, cancel: _CancelFlag | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run `model` on uint8 images (N, 32, 32, 3); return probs (N, 10) and animal (N,) or None.

    `tta` (see `augment.tta_views`) averages the probabilities over views of each image.
    `callbacks` go to every `model.predict` call; a set `cancel` flag raises
    TrainingCancelled as soon as the current view's predict stops.
    """
    import tensorflow as tf

    from cifar_mtl.augment import tta_views

    views = tta_views(images, tta)
    extra = {"callbacks": callbacks} if callbacks else {}  # stand-in models (bench) take no callbacks
    probs, animal = [], []
    for view in views:
        ds = tf.data.Dataset.from_tensor_slices(np.ascontiguousarray(view)).batch(PREDICT_BATCH)
        ds = ds.map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=tf.data.AUTOTUNE)
        out = model.predict(ds.prefetch(tf.data.AUTOTUNE), verbose=0, **extra)
        if cancel is not None:
            cancel.check()  # a stopped predict returns only the batches before it stopped
        probs.append(np.asarray(out["class"], dtype=np.float64))
        if "animal" in out:
            animal.append(np.asarray(out["animal"], dtype=np.float64).reshape(-1))
    mean_animal = np.mean(animal, axis=0).astype(np.float32) if animal else None
    return np.mean(probs, axis=0).astype(np.float32), mean_animal


def write_predictions(
    folder: Path,
    model,
    config: TrainConfig,
    x_test,
    y_test,
    log=print,
    cancel: _CancelFlag | None = None,
    progress_interval: float | None = None,
    train_metrics: dict | None = None,
) -> dict:
    """Write predictions.parquet for the test set; return the summary metrics (not yet saved).

    With `progress_interval` (seconds), progress.json follows the prediction batches
    (phase "predict", see `make_predict_callback`); a set `cancel` flag stops between
    batches with TrainingCancelled, before anything is written.
    """
    t0 = time.time()
    callbacks = []
    if progress_interval is not None or cancel is not None:
        steps = predict_steps(len(x_test), config.tta)
        callbacks.append(make_predict_callback(folder, steps, progress_interval, cancel, train_metrics))
    probs, animal = predict_arrays(model, x_test, config.tta, callbacks, cancel)
    if not np.isfinite(probs).all():
        raise TrainingDiverged("the model predicts NaN probabilities (its weights are not finite); retrain it")
    table = validate_predictions(predictions_table(probs, y_test, animal), expected_rows=len(y_test))
    runs.atomic_write_parquet(folder / runs.PREDICTIONS_FILE, table)
    metrics = summary_metrics(table)
    metrics.update(
        variant=config.variant,
        backbone=config.backbone,
        label_smoothing=config.label_smoothing,
        animal_label_smoothing=config.animal_eps if config.multitask else None,
        tta=config.tta,
        predict_seconds=round(time.time() - t0, 2),
        versions=_versions(),
        git_commit=_git_commit(),
    )
    log(f"wrote predictions for {len(table)} test images in {metrics['predict_seconds']} s")
    return metrics


def predict_run(run_id: str, home_dir=None) -> dict:
    """(Re)write predictions.parquet and metrics.json of a run from its saved model."""
    import keras

    from cifar_mtl.data import fingerprint, load_test_set, resolve_source
    from cifar_mtl.model import shift_layer_class

    shift_layer_class()  # registers the airbench layer with Keras before loading

    folder = runs.run_dir(run_id, home_dir)
    config = make_config(runs.load_config(run_id, home_dir))
    model_path = folder / runs.MODEL_FILE
    if not model_path.exists():
        raise runs.RunError(f"run {run_id!r}: {runs.MODEL_FILE} is missing; train the run first")
    model = keras.models.load_model(model_path, compile=False)
    source = resolve_source(config.data_dir)
    x_test, y_test = load_test_set(source, allow_download=True)
    t0 = time.time()
    previous = {}
    if (folder / runs.METRICS_FILE).exists():
        previous = runs.load_metrics(run_id, home_dir)
    metrics = {**previous, **write_predictions(folder, model, config, x_test, y_test)}
    metrics.update(data_source=source or "keras", data_fingerprint=fingerprint(x_test, y_test))
    metrics.setdefault("seconds", round(time.time() - t0, 1))
    runs.atomic_write_json(folder / runs.METRICS_FILE, metrics)
    return metrics
