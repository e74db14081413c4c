"""Two-stage training that leaves a complete run folder (see docs/design.md).

Stage "frozen" trains the heads on a frozen backbone (only with pretrained
weights); stage "finetune" trains the whole backbone, or its top blocks, at a
lower learning rate. AdamW with linear warmup and cosine decay; the best epoch by
validation class accuracy is kept. SIGTERM stops after the current step and marks
the run cancelled; an exception marks it failed with the error.

The steps of `train` are public so that benchmarks time the very same code:
`setup_keras`, `precision_policy`, `pipeline.build_datasets`, `model_from_config`,
`stages`, `compile_stage`, `train_stages` (the stage loop, shared with
`crossval`'s folds), `tracking.RunCallback` and `predict.write_predictions`.
Under a multi-worker strategy (`distribute`) every worker trains; only the chief
writes the run folder, the others keep theirs in a temporary folder they delete.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifar_mtl import runs
from cifar_mtl.cifar10 import DataError, load_cifar10, resolve_source, stratified_split
from cifar_mtl.config import TrainConfig, make_config
from cifar_mtl.labelsets import apply_to_training, resolve_labels
from cifar_mtl.predictions import predictions_table, summary_metrics
from cifar_mtl.training import distribute
from cifar_mtl.training.models import build_model, init_whitening, set_stage
from cifar_mtl.training.pipeline import build_datasets
from cifar_mtl.training.evidence import write_evidence
from cifar_mtl.training.predict import predict_arrays, write_predictions
from cifar_mtl.training.tracking import (
    CHECKPOINT_FILE,
    CancelFlag,
    RunCallback,
    TrainingCancelled,
    TrainingDiverged,
    log_and_cancel,
    run_lifecycle,
)


# What `_strategy` gives on backends other than TensorFlow: a scope that does nothing.
_NO_DISTRIBUTION = distribute.NO_DISTRIBUTION


def _strategy():
    """MultiWorkerMirrored with TF_CONFIG, Mirrored on several devices, else the default.

    See `distribute.choose_strategy`. tf.distribute exists only for TensorFlow; on another
    Keras backend (JAX for bench_seed on a GPU machine without TensorFlow) models are
    built and compiled as is.
    """
    return distribute.choose_strategy()


def precision_policy(config: TrainConfig, gpu: bool) -> str:
    """The Keras dtype policy for `config.mixed_precision` on a machine with or without a GPU."""
    if config.mixed_precision == "on" or (config.mixed_precision == "auto" and gpu):
        # On these CPUs bf16 trained slower than fp32 at 32x32, so "auto" uses it on GPUs only.
        return "mixed_float16" if gpu else "mixed_bfloat16"
    return "float32"


def _set_precision(config: TrainConfig) -> str:
    policy = precision_policy(config, gpu=bool(tf.config.list_physical_devices("GPU")))
    keras.mixed_precision.set_global_policy(policy)
    return policy


def _binary_accuracy(y_true, y_pred):
    # Smoothed or mixed targets are never exactly 0 or 1, so both sides are thresholded.
    return keras.ops.cast(keras.ops.equal(y_true > 0.5, y_pred > 0.5), "float32")


def _compile(model, config: TrainConfig, lr: float, total_steps: int, warmup_steps: int):
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
    # config.json records the label set's version this run trains on.
    config = resolve_labels(config, home_dir)
    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything, and
    # only the chief writes the run folder.
    strategy = _strategy()
    if not distribute.is_chief(strategy):
        return _train_as_worker(config, run_id, progress_bar, home_dir)
    folder = _prepare_folder(run_id, config, home_dir)
    # A diverged run or a bad dataset is explained by its message; a traceback is for bugs.
    with run_lifecycle(folder, expected=(TrainingDiverged, DataError)) as (log, cancel):
        with distribute.peer_failures(strategy, cancel):
            metrics = _train(config, folder, progress_bar, cancel, log, home_dir=home_dir)
    return metrics


def _train_as_worker(config: TrainConfig, run_id: str, progress_bar: bool, home_dir=None) -> dict:
    """Train as a non-chief worker of a multi-worker run, in a temporary folder deleted afterwards.

    The worker takes its share of every step; the chief writes the run folder. Returns
    the test metrics of its copy of the model (the same as the chief's) without writing them.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"cifar-mtl-{run_id}-worker-"))
    try:
        with log_and_cancel(folder) as (log, cancel):
            log(f"run {run_id}: a worker of a multi-worker run; the chief writes the run folder")
            with distribute.peer_failures(_strategy(), cancel):
                return _train(config, folder, progress_bar, cancel, log, chief=False, home_dir=home_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def setup_keras(config: TrainConfig):
    """Seed Keras, set the precision policy and pick the distribution strategy.

    Returns (policy name, tf.distribute strategy). Call before building datasets and model.
    """
    keras.utils.set_random_seed(config.seed)
    policy = _set_precision(config)
    return policy, _strategy()


def model_from_config(config: TrainConfig):
    """`models.build_model` with the configuration's fields."""
    return build_model(
        backbone=config.backbone,
        variant=config.variant,
        image_size=config.image_size,
        weights=config.weights,
        dropout=config.dropout,
        pooling=config.pooling,
        resnet_width=config.resnet_width,
    )


def compile_stage(model, config: TrainConfig, stage: str, epochs: int, lr: float, steps: int, strategy=None) -> None:
    """Make `stage`'s weights trainable and compile `model` for `epochs` of `steps` steps at peak rate `lr`."""
    set_stage(model, stage, config.finetune_blocks, freeze_batchnorm=not config.train_from_scratch)
    strategy = _strategy() if strategy is None else strategy
    with strategy.scope():
        # Trainable weights are fixed at compile(): recompile after changing them.
        _compile(model, config, lr, epochs * steps, int(config.warmup_epochs * steps))


def train_stages(
    model, config: TrainConfig, train_ds, val_ds, steps: int, callback: RunCallback, cancel: CancelFlag,
    strategy=None, progress_bar: bool = False,
) -> None:
    """Train `model` through every stage of `stages(config)`: compile, fit, check for NaN.

    The one training loop of a run and of each cross-validation fold. `steps` is the
    number of training steps per epoch; `callback` (a `RunCallback`) records progress and
    the best checkpoint. Raises TrainingCancelled on SIGTERM, TrainingDiverged on NaN loss.
    """
    done = 0
    for stage, epochs, lr in stages(config):
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


def _train(
    config: TrainConfig, folder: Path, progress_bar: bool, cancel: CancelFlag, log, chief: bool = True,
    home_dir=None,
) -> dict:
    t0 = time.time()
    source = resolve_source(config.data_dir)
    log(f"loading CIFAR-10 from {source or 'the keras download'}")
    data = load_cifar10(source)
    cancel.check()
    # Split on the labels as given, so a run on a label set holds out the same images as one without.
    train_idx, val_idx = stratified_split(data.y_train, config.val_split, config.seed, config.train_subset)
    data, train_idx, val_idx, label_info = _apply_labels(config, data, train_idx, val_idx, home_dir, log)
    log(f"{len(train_idx)} training, {len(val_idx)} validation, {len(data.y_test)} test images")

    policy, strategy = setup_keras(config)
    train_ds, val_ds, steps = build_datasets(config, data, train_idx, val_idx)
    plan = stages(config)
    with strategy.scope():
        model = model_from_config(config)
    distribute.prepare_model(model, strategy, train_ds.element_spec)
    if config.backbone == "airbench" and config.train_from_scratch:
        init_whitening(model, data.x_train[train_idx[:5000]])
    log(f"model {model.name}: {model.count_params():,} parameters, precision {policy}, stages {plan}")
    devices = distribute.describe(strategy)
    log("strategy {strategy}: {replicas} replica(s) in sync on {workers} worker(s)".format(**devices))
    callback = RunCallback(folder, [(s, e) for s, e, _ in plan], steps, config.progress_interval, cancel, log)
    train_stages(model, config, train_ds, val_ds, steps, callback, cancel, strategy, progress_bar)
    checkpoint = folder / CHECKPOINT_FILE
    if checkpoint.exists():
        model.load_weights(checkpoint)
        log(f"restored the best epoch (validation class accuracy {callback.best:.4f})")
    distribute.average_moving_statistics(model, strategy)
    model.save(folder / runs.MODEL_FILE)
    cancel.check()
    train_seconds = time.time() - t0
    if devices["workers"] > 1:
        # Predicting under the strategy is a collective step every worker would have to
        # join; each predicts on its own copy instead, which only the chief writes.
        # (Airbench's ScaledShift layers are registered with Keras by models.py.)
        model = keras.models.load_model(folder / runs.MODEL_FILE, compile=False)
    if not chief:
        probs, animal = predict_arrays(model, data.x_test, config.tta, cancel=cancel)
        metrics = summary_metrics(predictions_table(probs, data.y_test, animal))
        log(f"test accuracy {metrics['accuracy']:.4f} (the chief writes the predictions)")
        return {**metrics, **devices, "seconds": round(time.time() - t0, 1)}
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
        **devices,
        **label_info,
    )
    runs.atomic_write_json(folder / runs.METRICS_FILE, metrics)
    log(f"test accuracy {metrics['accuracy']:.4f}, cross-group errors {metrics['cross_group_errors']}")
    if checkpoint.exists():
        checkpoint.unlink()
    metrics.update(_evidence(folder, model, data, log, cancel))
    runs.atomic_write_json(folder / runs.METRICS_FILE, metrics)
    return metrics


def _apply_labels(config: TrainConfig, data, train_idx, val_idx, home_dir, log):
    """Apply `config.labels` to the training labels (never the test set's): relabelled
    images train on their new class, excluded ones leave training and validation.

    Returns (data, train_idx, val_idx, metrics to record: {} without a label set).
    """
    if config.labels is None:
        return data, train_idx, val_idx, {}
    pool = np.concatenate([train_idx, val_idx])
    labels, excluded, info = apply_to_training(data.y_train, config.labels, pool, home_dir)
    data = dataclasses.replace(data, y_train=labels)
    log(f"label set {info['label_set']}@v{info['label_set_version']}: {info['relabelled']} training images "
        f"relabelled, {info['excluded']} excluded")
    return data, train_idx[~excluded[train_idx]], val_idx[~excluded[val_idx]], info


def _evidence(folder: Path, model, data, log, cancel: CancelFlag) -> dict:
    """Write the run's evidence files; returns the metrics they add.

    The predictions are already saved: an evidence failure is logged with the command that
    retries it, and the run still succeeds (a cancel still cancels it).
    """
    t0 = time.time()
    try:
        write_evidence(folder, model, data.x_test, data.y_test, data.x_train, data.y_train, log, cancel)
    except TrainingCancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - hours of training outweigh one missing file
        log(f"evidence failed ({type(exc).__name__}: {exc}); "
            f"retry with `python -m cifar_mtl evidence --run {folder.name}`")
        return {"evidence_error": f"{type(exc).__name__}: {exc}"}
    return {"evidence_seconds": round(time.time() - t0, 1)}
