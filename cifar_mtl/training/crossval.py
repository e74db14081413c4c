"""Cross-validation: out-of-sample class probabilities for every training image.

cleanlab's label-quality scores only mean something on probabilities from a model
that never trained on the image. `crossval` splits the training set into K
stratified, seeded folds (scikit-learn's `StratifiedKFold`) and trains K models with
the steps of `cifar_mtl.training.fit`, each on all folds but one; each model
predicts its held-out fold and the test set.

The run folder is a normal one (`runs` lists it; `predictions.parquet` holds the test
predictions averaged over the K models) plus:

    folds/fold_<k>.parquet        the held-out fold's predictions, written when fold k ends
    folds/fold_<k>_test.npz       that fold's model on the test set (probs, animal)
    folds/fold_<k>/               that fold's history.csv and best checkpoint
    train_predictions.parquet     one row per training image: the predictions table
                                  (`index` = training index, `label` = training label) + `fold`

A cancelled or crashed run resumes at its first fold without a `fold_<k>.parquet`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from cifar_mtl import runs
from cifar_mtl.cifar10 import load_cifar10, resolve_source, stratified_split
from cifar_mtl.config import CROSSVAL_KEY, MAX_FOLDS, MIN_FOLDS, TrainConfig, make_config
from cifar_mtl.errors import UserError
from cifar_mtl.labelsets import apply_to_training, resolve_labels
from cifar_mtl.predictions import predictions_table, summary_metrics, validate_predictions
from cifar_mtl.training import fit
from cifar_mtl.training.models import init_whitening
from cifar_mtl.training.pipeline import build_datasets
from cifar_mtl.training.predict import _git_commit, _versions, predict_arrays
from cifar_mtl.training.tracking import (
    CHECKPOINT_FILE,
    CancelFlag,
    RunCallback,
    TrainingDiverged,
    run_lifecycle,
)

TRAIN_PREDICTIONS_FILE = "train_predictions.parquet"
FOLDS_DIR = "folds"


class CrossvalError(UserError):
    """A cross-validation run cannot start or resume as asked. The message says what to do."""


def make_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) of each image: stratified by class, shuffled with `seed`.

    Args:
        labels: (N,) class labels.
        k: number of folds; every class needs at least k images.

    Returns:
        (N,) int8 fold numbers.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if not MIN_FOLDS <= k <= MAX_FOLDS:
        raise CrossvalError(f"--folds {k}: give between {MIN_FOLDS} and {MAX_FOLDS} folds (5 is usual)")
    smallest = np.unique(labels, return_counts=True)[1].min() if len(labels) else 0
    if smallest < k:
        raise CrossvalError(
            f"{k} folds need at least {k} training images of every class; the smallest class has "
            f"{smallest}. Use fewer folds or more data (train_subset)"
        )
    folds = np.empty(len(labels), dtype=np.int8)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        folds[held] = fold
    return folds


def training_folds(labels: np.ndarray, k: int, config: TrainConfig) -> np.ndarray:
    """`make_folds` over the whole training set, or over `config.train_subset` of it.

    Returns:
        (N,) int8: each training image's fold, -1 for images outside the subset.
    """
    folds = np.full(len(labels), -1, dtype=np.int8)
    pool = np.arange(len(labels))
    if config.train_subset is not None:
        pool, _ = stratified_split(labels, 0.0, config.seed, config.train_subset)
    folds[pool] = make_folds(labels[pool], k, config.seed)
    return folds


def fold_file(folder: Path, fold: int) -> Path:
    return Path(folder) / FOLDS_DIR / f"fold_{fold}.parquet"


def _fold_test_file(folder: Path, fold: int) -> Path:
    return Path(folder) / FOLDS_DIR / f"fold_{fold}_test.npz"


def finished_folds(folder: Path, k: int) -> list[int]:
    """Folds whose held-out predictions are saved."""
    return [f for f in range(k) if fold_file(folder, f).exists() and _fold_test_file(folder, f).exists()]


def _saved_config(config: TrainConfig, k: int) -> dict:
    return {**config.to_dict(), CROSSVAL_KEY: {"folds": int(k), "seed": int(config.seed)}}


def _same_recipe(saved: dict, wanted: dict) -> list[str]:
    """Keys whose values differ, ignoring those that do not change what is trained."""
    ignored = {"progress_interval", "name"}
    keys = (set(saved) | set(wanted)) - ignored
    return sorted(k for k in keys if saved.get(k) != wanted.get(k))


def prepare_folder(run_id: str, config: TrainConfig, k: int, home_dir=None, resume: bool | None = None) -> tuple[Path, bool]:
    """Make the run folder, or check an unfinished one for resuming; return (folder, resumed).

    `resume=None` resumes when the folder exists and is unfinished; True requires it to.
    """
    folder = runs.run_dir(run_id, home_dir)
    exists = (folder / runs.CONFIG_FILE).exists()
    if (folder / runs.METRICS_FILE).exists():
        raise CrossvalError(f"cross-validation run {run_id!r} is already complete ({folder}); choose another --run-id")
    if resume and not exists:
        raise CrossvalError(f"no cross-validation run {run_id!r} to resume under {runs.runs_root(home_dir)}")
    wanted = _saved_config(config, k)
    if exists:
        saved = runs.load_config(run_id, home_dir)
        if CROSSVAL_KEY not in saved:
            raise CrossvalError(f"run {run_id!r} is a training run, not a cross-validation run; choose another --run-id")
        differ = _same_recipe(saved, wanted)
        if differ:
            raise CrossvalError(
                f"run {run_id!r} was started with other settings ({', '.join(differ)}); resume it with "
                f"`crossval --resume {run_id}` alone, or choose another --run-id"
            )
        state = runs.read_status(folder).get("state")
        pid = runs.read_status(folder).get("pid")
        if state == "running" and pid and pid != os.getpid() and _alive(pid):
            raise CrossvalError(f"run {run_id!r} is running (pid {pid}); wait for it or cancel it first")
        return folder, True
    folder.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(folder / runs.CONFIG_FILE, wanted)
    return folder, False


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def resume_config(run_id: str, home_dir=None) -> tuple[TrainConfig, int]:
    """The configuration and fold count an unfinished cross-validation run was started with."""
    saved = runs.load_config(run_id, home_dir)
    extra = saved.pop(CROSSVAL_KEY, None)
    if not isinstance(extra, dict) or not isinstance(extra.get("folds"), int):
        raise CrossvalError(f"run {run_id!r} is not a cross-validation run (its config.json has no {CROSSVAL_KEY})")
    return make_config(saved), extra["folds"]


class FoldCallback(RunCallback):
    """`RunCallback` for one fold: its history and checkpoint go to the fold's folder, and
    the run's progress.json counts steps over all folds, with `fold`, `folds` and `folds_done`."""

    def __init__(self, run_folder: Path, fold: int, k: int, done_folds: list[int], *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_folder, self.fold, self.k, self.done_folds = run_folder, fold, k, list(done_folds)
        self.start_time = time.time()

    def write_progress(self, step, logs):
        super().write_progress(step, logs)
        try:
            own = json.loads((self.folder / runs.PROGRESS_FILE).read_text())
        except (OSError, ValueError):
            return
        per_fold = own["steps_total"]
        done = len(self.done_folds) * per_fold + own["steps_done"]
        total = self.k * per_fold
        elapsed = time.time() - self.start_time
        this_fold = own["steps_done"]  # steps trained in this process: the speed to extrapolate
        eta = elapsed / this_fold * (total - done) if this_fold else None
        own.update(
            fold=self.fold + 1, folds=self.k, folds_done=[f + 1 for f in self.done_folds],
            fold_steps_done=own["steps_done"], fold_steps_total=per_fold,
            steps_done=done, steps_total=total, eta_seconds=None if eta is None else round(eta, 1),
        )
        runs.atomic_write_json(self.run_folder / runs.PROGRESS_FILE, own)


def _fit_fold(
    config: TrainConfig, data, train_idx: np.ndarray, val_idx: np.ndarray, callback: FoldCallback,
    cancel: CancelFlag, progress_bar: bool,
):
    """Train one model on `train_idx` with the steps of `fit.train`; return it (best epoch restored)."""
    keras.backend.clear_session()  # a fresh graph per fold: K models would otherwise pile up
    policy, strategy = fit.setup_keras(config)
    train_ds, val_ds, steps = build_datasets(config, data, train_idx, val_idx)
    with strategy.scope():
        model = fit.model_from_config(config)
    if config.backbone == "airbench" and config.train_from_scratch:
        init_whitening(model, data.x_train[train_idx[:5000]])
    fit.train_stages(model, config, train_ds, val_ds, steps, callback, cancel, strategy, progress_bar)
    checkpoint = callback.folder / CHECKPOINT_FILE
    if checkpoint.exists():
        model.load_weights(checkpoint)
        checkpoint.unlink()
    return model, policy


def _fold_split(folds: np.ndarray, fold: int, labels: np.ndarray, config: TrainConfig):
    """(train, val, held-out) training indices of `fold`; val is `val_split` of the rest."""
    held = np.flatnonzero(folds == fold)
    rest = np.flatnonzero((folds != fold) & (folds >= 0))
    if config.val_split > 0:
        tr, va = stratified_split(labels[rest], config.val_split, config.seed)
        return rest[tr], rest[va], held
    return rest, rest[:0], held


def _run_fold(folder, config, data, folds, fold, k, done, cancel, log, progress_bar) -> dict:
    t0 = time.time()
    train_idx, val_idx, held = _fold_split(folds, fold, data.y_train, config)
    log(f"fold {fold + 1}/{k}: training on {len(train_idx)} images ({len(val_idx)} validation), "
        f"predicting {len(held)} held-out images")
    fold_dir = folder / FOLDS_DIR / f"fold_{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    steps = -(-len(train_idx) // config.batch_size)
    plan = [(s, e) for s, e, _ in fit.stages(config)]
    callback = FoldCallback(folder, fold, k, done, fold_dir, plan, steps, config.progress_interval, cancel, log)
    model, policy = _fit_fold(config, data, train_idx, val_idx, callback, cancel, progress_bar)
    # One pass over held-out and test images: a second predict call would trace the
    # model again for its last, shorter batch and restart the input pipeline.
    both, both_animal = predict_arrays(model, np.concatenate([data.x_train[held], data.x_test]), config.tta,
                                       cancel=cancel)
    probs, test_probs = both[:len(held)], both[len(held):]
    animal, test_animal = (None, None) if both_animal is None else (both_animal[:len(held)], both_animal[len(held):])
    if not (np.isfinite(probs).all() and np.isfinite(test_probs).all()):
        raise TrainingDiverged(f"fold {fold + 1}'s model predicts NaN probabilities; lower the learning rate")
    table = predictions_table(probs, data.y_train[held], animal, index=held)
    table["fold"] = np.int8(fold)
    seconds = round(time.time() - t0, 1)
    # The test file first: the held-out parquet marks the fold finished.
    runs.atomic_write_bytes(_fold_test_file(folder, fold), _npz_bytes(test_probs, test_animal, seconds, policy))
    runs.atomic_write_parquet(fold_file(folder, fold), table)
    accuracy = float(table["correct"].mean())
    log(f"fold {fold + 1}/{k}: held-out accuracy {accuracy:.4f} in {seconds / 60:.1f} min")
    return {"fold": fold, "heldout_accuracy": accuracy, "seconds": seconds}


def _npz_bytes(probs, animal, seconds: float, policy: str) -> bytes:
    import io

    buf = io.BytesIO()
    extra = {} if animal is None else {"animal": animal}
    np.savez(buf, probs=probs, seconds=np.float64(seconds), policy=np.str_(policy), **extra)
    return buf.getvalue()


def combine_folds(folder: Path, k: int) -> pd.DataFrame:
    """All folds' held-out predictions as one table, in training-index order (+ `fold`)."""
    tables = [pd.read_parquet(fold_file(folder, f)) for f in range(k)]
    table = pd.concat(tables, ignore_index=True).sort_values("index", kind="stable").reset_index(drop=True)
    if table["index"].duplicated().any():
        raise CrossvalError(f"{folder}: folds overlap; the run's fold files are inconsistent, start a new run")
    return table


def _test_ensemble(folder: Path, k: int, y_test: np.ndarray) -> tuple[pd.DataFrame, list[dict]]:
    probs, animal, per_fold = [], [], []
    for f in range(k):
        with np.load(_fold_test_file(folder, f)) as saved:
            probs.append(saved["probs"].astype(np.float64))
            if "animal" in saved:
                animal.append(saved["animal"].astype(np.float64))
            per_fold.append({"fold": f, "seconds": float(saved["seconds"]), "policy": str(saved["policy"])})
        per_fold[-1]["test_accuracy"] = float((probs[-1].argmax(axis=1) == y_test).mean())
    mean_animal = np.mean(animal, axis=0) if animal else None
    table = predictions_table(np.mean(probs, axis=0), y_test, mean_animal)
    return validate_predictions(table, expected_rows=len(y_test)), per_fold


def _finish(folder: Path, config: TrainConfig, k: int, data, folds: np.ndarray, source, t0: float, log,
            label_info: dict | None = None) -> dict:
    train_table = combine_folds(folder, k)
    runs.atomic_write_parquet(folder / TRAIN_PREDICTIONS_FILE, train_table)
    test_table, per_fold = _test_ensemble(folder, k, data.y_test)
    runs.atomic_write_parquet(folder / runs.PREDICTIONS_FILE, test_table)
    for row in per_fold:
        held = train_table[train_table["fold"] == row["fold"]]
        row.update(n_heldout=int(len(held)), heldout_accuracy=float(held["correct"].mean()))
    metrics = summary_metrics(test_table)
    metrics.update(
        crossval=True,
        folds=k,
        oos_accuracy=float(train_table["correct"].mean()),
        n_train=int(len(train_table)),
        per_fold=per_fold,
        variant=config.variant,
        backbone=config.backbone,
        label_smoothing=config.label_smoothing,
        tta=config.tta,
        seconds=round(time.time() - t0, 1),
        fold_seconds=round(sum(r["seconds"] for r in per_fold), 1),
        data_source=source or "keras",
        data_fingerprint=data.fingerprint,
        precision=per_fold[0]["policy"],
        versions=_versions(),
        git_commit=_git_commit(),
        **(label_info or {}),
    )
    runs.atomic_write_json(folder / runs.METRICS_FILE, metrics)
    log(f"out-of-sample training accuracy {metrics['oos_accuracy']:.4f} over {len(train_table)} images; "
        f"test accuracy of the {k}-model average {metrics['accuracy']:.4f}")
    return metrics


def crossval(
    config: TrainConfig | dict, run_id: str, k: int = 5, home_dir=None, resume: bool | None = None,
    progress_bar: bool = False,
) -> dict:
    """Cross-validate `config` with `k` folds into `<home>/runs/<run_id>` and return its metrics.

    Folds already finished (their `folds/fold_<k>.parquet` written) are kept when an
    unfinished run is resumed. SIGTERM stops after the current step (status
    "cancelled", TrainingCancelled raised); any error marks the run failed and is re-raised.

    Returns:
        metrics.json's dict: the test figures of the K models' average, `oos_accuracy`
        (held-out accuracy over every training image), `per_fold`, `folds`, `seconds`.
    """
    if isinstance(config, dict):
        config = make_config(config)
    config = resolve_labels(config, home_dir)  # config.json records the label set's version
    folder, resumed = prepare_folder(run_id, config, k, home_dir, resume)
    resume_hint = (f"cancelled; `python -m cifar_mtl crossval --resume {run_id}` goes on "
                   "from the first unfinished fold")
    with run_lifecycle(folder, expected=(TrainingDiverged, UserError), cancelled=resume_hint) as (log, cancel):
        metrics = _crossval(config, folder, k, resumed, cancel, log, progress_bar, home_dir)
    return metrics


def _crossval(config, folder, k, resumed, cancel, log, progress_bar, home_dir=None) -> dict:
    t0 = time.time()
    source = resolve_source(config.data_dir)
    log(f"loading CIFAR-10 from {source or 'the keras download'}")
    data = load_cifar10(source)
    folds = training_folds(data.y_train, k, config)
    if config.train_subset is not None:
        log(f"train_subset: cross-validating {int((folds >= 0).sum())} of {len(folds)} training images")
    label_info = {}
    if config.labels is not None:
        # Folds are drawn on the labels as given (the same folds as without the set);
        # excluded images leave every fold, relabelled ones train and score on their new class.
        labels, excluded, label_info = apply_to_training(data.y_train, config.labels, np.flatnonzero(folds >= 0),
                                                         home_dir)
        folds[excluded] = -1
        data = dataclasses.replace(data, y_train=labels)
        log(f"label set {config.labels}: {label_info['relabelled']} training images relabelled, "
            f"{label_info['excluded']} excluded")
    done = finished_folds(folder, k)
    if resumed:
        log(f"resuming: folds {[f + 1 for f in done] or 'none'} of {k} already finished")
    for fold in range(k):
        if fold in done:
            continue
        cancel.check()
        _run_fold(folder, config, data, folds, fold, k, done, cancel, log, progress_bar)
        done.append(fold)
    cancel.check()
    return _finish(folder, config, k, data, folds, source, t0, log, label_info)
