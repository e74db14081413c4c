"""Test-set predictions of a trained model: predictions.parquet and the figures of metrics.json.

`predict_arrays` runs the model over the test-time views of the images and averages
them; `write_predictions` turns the probabilities into the predictions table
(`cifar_mtl.predictions`) and the summary metrics; `predict_run` does both for a
run folder's saved model. While predicting, progress.json follows the batches
(phase "predict") and a set cancel flag stops between batches.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pandas
import tensorflow as tf

from cifar_mtl import runs
from cifar_mtl.cifar10 import fingerprint, load_cifar10, load_test_set, resolve_source
from cifar_mtl.config import TrainConfig, make_config
from cifar_mtl.predictions import predictions_table, summary_metrics, validate_predictions
from cifar_mtl.training.augment import tta_views
from cifar_mtl.training.models import ScaledShift
from cifar_mtl.training.pipeline import PREDICT_BATCH, predict_dataset
from cifar_mtl.training.tracking import CancelFlag, TrainingDiverged


def predict_steps(n_images: int, tta: str = "none") -> int:
    """Prediction batches for `n_images` test images, over every test-time view."""
    views = len(tta_views(np.zeros((1, 32, 32, 3), np.uint8), tta))
    return views * math.ceil(n_images / PREDICT_BATCH)


class PredictCallback(keras.callbacks.Callback):
    """A Keras callback for `model.predict` writing progress.json with phase "predict".

    `steps` is the prediction batches over all views (`predict_steps`), `interval` the
    seconds between writes (the last batch is always written; None: no writes),
    `metrics` the training metrics shown meanwhile. A set `cancel` flag stops
    predicting after the batch.
    """

    # Keras may then call it on a worker thread, so predict batches never wait for it.
    async_safe = True

    def __init__(
        self, folder: Path, steps: int, interval: float | None, cancel: CancelFlag | None = None,
        metrics: dict | None = None,
    ):
        super().__init__()
        self.folder, self.steps, self.interval, self.cancel, self.metrics = folder, steps, interval, cancel, metrics
        self.done = 0
        self.t_start = time.time()
        self.last_write = 0.0
        self.lock = threading.Lock()

    def on_predict_batch_end(self, batch, logs=None):
        if self.cancel is not None and self.cancel.set:
            self.model.stop_predicting = True
        with self.lock:
            self.done += 1
            now = time.time()
            if self.interval is not None and (now - self.last_write >= self.interval or self.done >= self.steps):
                self.last_write = now
                self.write_progress(now)

    def write_progress(self, now: float):
        elapsed = now - self.t_start
        eta = elapsed / self.done * max(0, self.steps - self.done)
        runs.atomic_write_json(
            self.folder / runs.PROGRESS_FILE,
            {
                "phase": "predict",
                "stage": "predict",
                "epoch": None,
                "epochs": None,
                "step": self.done,
                "steps": self.steps,
                "steps_done": self.done,
                "steps_total": self.steps,
                "metrics": self.metrics or {},
                "elapsed_seconds": round(elapsed, 1),
                "eta_seconds": round(eta, 1),
                "updated_at": runs.now_iso(),
            },
        )


def predict_arrays(
    model, images: np.ndarray, tta: str = "none", callbacks=None, cancel: CancelFlag | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run `model` on uint8 images (N, 32, 32, 3); return probs (N, 10) and animal (N,) or None.

    `tta` (see `augment.tta_views`) averages the probabilities over views of each image.
    `callbacks` go to every `model.predict` call; a set `cancel` flag raises
    TrainingCancelled as soon as the current view's predict stops.
    """
    extra = {"callbacks": callbacks} if callbacks else {}  # stand-in models (tests) may take no callbacks
    probs, animal = [], []
    for view in tta_views(images, tta):
        out = model.predict(predict_dataset(view), verbose=0, **extra)
        if cancel is not None:
            cancel.check()  # a stopped predict returns only the batches before it stopped
        probs.append(np.asarray(out["class"], dtype=np.float64))
        if "animal" in out:
            animal.append(np.asarray(out["animal"], dtype=np.float64).reshape(-1))
    mean_animal = np.mean(animal, axis=0).astype(np.float32) if animal else None
    return np.mean(probs, axis=0).astype(np.float32), mean_animal


def _versions() -> dict:
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
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_predictions(
    folder: Path,
    model,
    config: TrainConfig,
    x_test,
    y_test,
    log=print,
    cancel: CancelFlag | None = None,
    progress_interval: float | None = None,
    train_metrics: dict | None = None,
) -> dict:
    """Write predictions.parquet for the test set; return the summary metrics (not yet saved).

    With `progress_interval` (seconds), progress.json follows the prediction batches
    (phase "predict", see `PredictCallback`); a set `cancel` flag stops between
    batches with TrainingCancelled, before anything is written.
    """
    t0 = time.time()
    callbacks = []
    if progress_interval is not None or cancel is not None:
        steps = predict_steps(len(x_test), config.tta)
        callbacks.append(PredictCallback(folder, steps, progress_interval, cancel, train_metrics))
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


def predict_run(run_id: str, home_dir=None, evidence: bool = True, log=print) -> dict:
    """(Re)write predictions.parquet and metrics.json of a run from its saved model, then
    (with `evidence`) its evidence files (`training.evidence.write_evidence`)."""
    folder = runs.run_dir(run_id, home_dir)
    config = make_config(runs.load_config(run_id, home_dir))
    model_path = folder / runs.MODEL_FILE
    if not model_path.exists():
        raise runs.RunError(f"run {run_id!r}: {runs.MODEL_FILE} is missing; train the run first")
    # Airbench models hold ScaledShift layers (registered with Keras when models.py loads).
    custom = {keras.saving.get_registered_name(ScaledShift): ScaledShift}
    model = keras.models.load_model(model_path, compile=False, custom_objects=custom)
    source = resolve_source(config.data_dir)
    data = load_cifar10(source, allow_download=True) if evidence else None
    x_test, y_test = (data.x_test, data.y_test) if data is not None else load_test_set(source, allow_download=True)
    t0 = time.time()
    previous = {}
    if (folder / runs.METRICS_FILE).exists():
        previous = runs.load_metrics(run_id, home_dir)
    metrics = {**previous, **write_predictions(folder, model, config, x_test, y_test, log)}
    metrics.update(data_source=source or "keras", data_fingerprint=fingerprint(x_test, y_test))
    metrics.setdefault("seconds", round(time.time() - t0, 1))
    runs.atomic_write_json(folder / runs.METRICS_FILE, metrics)
    if data is not None:
        from cifar_mtl.training.evidence import write_evidence

        write_evidence(folder, model, data.x_test, data.y_test, data.x_train, data.y_train, log)
    return metrics
