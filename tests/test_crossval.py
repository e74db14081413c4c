"""Cross-validation: stratified seeded folds, a complete run folder, resuming after a cancel."""

import json

import numpy as np
import pandas as pd
import pytest

from cifar_mtl import runs
from cifar_mtl.cifar10 import load_cifar10
from cifar_mtl.config import make_config
from cifar_mtl.predictions import SCHEMA
from cifar_mtl.synthetic import write_fake_cifar

TINY = {"backbone": "airbench", "pooling": "max", "dropout": 0.0, "optimizer": "sgd", "finetune_epochs": 1,
        "batch_size": 16, "val_split": 0.0, "augment": "none", "progress_interval": 0.1, "mixed_precision": "off"}


def test_folds_are_stratified_and_seeded():
    from cifar_mtl.training.crossval import make_folds

    labels = np.repeat(np.arange(10), 50)
    folds = make_folds(labels, 5, seed=1)
    assert folds.shape == (500,) and set(np.unique(folds)) == set(range(5))
    for f in range(5):
        # every fold holds 10 images of every class
        assert (np.bincount(labels[folds == f], minlength=10) == 10).all()
    assert np.array_equal(folds, make_folds(labels, 5, seed=1))
    assert not np.array_equal(folds, make_folds(labels, 5, seed=2))


def test_bad_fold_counts_are_refused():
    from cifar_mtl.training.crossval import CrossvalError, make_folds

    labels = np.repeat(np.arange(10), 3)
    with pytest.raises(CrossvalError, match="at least 4 training images of every class"):
        make_folds(labels, 4, seed=0)
    with pytest.raises(CrossvalError, match="between 2 and 20"):
        make_folds(labels, 1, seed=0)


def test_train_subset_folds_keep_training_indices():
    from cifar_mtl.training.crossval import training_folds

    labels = np.repeat(np.arange(10), 40)
    folds = training_folds(labels, 3, make_config({"train_subset": 90, "val_split": 0.0}))
    assert (folds >= 0).sum() == 90 and set(np.unique(folds)) == {-1, 0, 1, 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fake_cifar(tmp_path_factory.mktemp("cv") / "data", n_train_per_batch=12, n_test=20)


@pytest.mark.slow
def test_cancelled_run_resumes_at_the_first_unfinished_fold(data_dir, tmp_path, monkeypatch):
    from cifar_mtl.training import crossval as cv
    from cifar_mtl.training.tracking import TrainingCancelled

    home = tmp_path / "home"
    config = make_config({**TINY, "data_dir": str(data_dir)})
    real = cv._run_fold

    def cancelled_in_fold_2(folder, config, data, folds, fold, k, done, cancel, log, progress_bar):
        if fold == 1:
            cancel.set = True  # what SIGTERM does
        return real(folder, config, data, folds, fold, k, done, cancel, log, progress_bar)

    monkeypatch.setattr(cv, "_run_fold", cancelled_in_fold_2)
    with pytest.raises(TrainingCancelled):
        cv.crossval(config, "cv", k=3, home_dir=home)
    folder = runs.run_dir("cv", home)
    assert runs.read_status(folder)["state"] == "cancelled"
    assert cv.finished_folds(folder, 3) == [0]
    first = cv.fold_file(folder, 0).stat().st_mtime_ns
    progress = json.loads((folder / "progress.json").read_text())
    assert progress["folds"] == 3 and progress["fold"] in (1, 2) and progress["steps_total"] == 3 * progress["fold_steps_total"]

    monkeypatch.setattr(cv, "_run_fold", real)
    with pytest.raises(cv.CrossvalError, match="other settings"):
        cv.crossval(make_config({**TINY, "data_dir": str(data_dir), "seed": 7}), "cv", k=3, home_dir=home)
    resumed_config, k = cv.resume_config("cv", home)
    assert k == 3 and resumed_config == config
    metrics = cv.crossval(resumed_config, "cv", k=k, home_dir=home, resume=True)
    assert cv.fold_file(folder, 0).stat().st_mtime_ns == first  # fold 1 was not trained again
    assert "resuming: folds [1] of 3 already finished" in (folder / "train.log").read_text()

    data = load_cifar10(str(data_dir))
    table = pd.read_parquet(folder / cv.TRAIN_PREDICTIONS_FILE)
    assert list(table.columns) == [*SCHEMA, "fold"] and len(table) == 60
    assert table["index"].tolist() == list(range(60))
    assert np.array_equal(table["label"], data.y_train)
    assert np.array_equal(table["fold"], cv.make_folds(data.y_train, 3, config.seed))
    assert metrics["oos_accuracy"] == pytest.approx(table["correct"].mean())
    assert metrics["folds"] == 3 and [r["n_heldout"] for r in metrics["per_fold"]] == [20, 20, 20]
    assert json.loads((folder / "config.json").read_text())["crossval"] == {"folds": 3, "seed": config.seed}
    listed = runs.list_runs(home)
    assert listed.loc[0, "run_id"] == "cv" and listed.loc[0, "complete"] and listed.loc[0, "state"] == "succeeded"
    assert len(runs.load_predictions("cv", home)) == 20  # the K models' average on the test set

    with pytest.raises(cv.CrossvalError, match="already complete"):
        cv.crossval(config, "cv", k=3, home_dir=home)


def _cli(*args, home, data_dir=None):
    import os
    import subprocess
    import sys

    env = dict(os.environ, CIFAR_MTL_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("CIFAR10_DIR", None)
    if data_dir:
        env["CIFAR10_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "cifar_mtl", "crossval", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_refuses_mixed_or_missing_arguments(tmp_path):
    out = _cli(home=tmp_path)
    assert out.returncode == 2 and "give --config (e.g. --config cpu_crossval), or --resume RUN_ID" in out.stderr
    out = _cli("--resume", "x", "--config", "cpu_crossval", home=tmp_path)
    assert out.returncode == 2 and "leave out --config" in out.stderr
    out = _cli("--resume", "nope", home=tmp_path)
    assert out.returncode == 2 and "no run named 'nope'" in out.stderr


def test_shipped_crossval_config_is_the_fast_recipe_shortened():
    from cifar_mtl.config import load_config_file

    config, fast = load_config_file("cpu_crossval"), load_config_file("cpu_fast")
    assert config.backbone == fast.backbone == "airbench" and config.finetune_epochs < fast.finetune_epochs
    assert config.val_split == 0.0  # every fold model trains on all of its folds


@pytest.mark.slow
def test_cli_cross_validates(data_dir, tmp_path):
    sets = [a for k, v in {**TINY, "warmup_epochs": 0.5}.items() for a in ("--set", f"{k}={v}")]
    out = _cli("--config", "cpu_crossval", "--folds", "2", "--run-id", "cv2", "--no-progress-bar", *sets,
               home=tmp_path, data_dir=data_dir)
    assert out.returncode == 0, out.stderr
    assert "run cv2: out-of-sample training accuracy" in out.stdout and "on 60 images (2 folds)" in out.stdout
    assert len(pd.read_parquet(runs.run_dir("cv2", tmp_path) / "train_predictions.parquet")) == 60


def test_crossval_on_a_label_set_uses_the_shared_training_loop(data_dir, tmp_path, monkeypatch):
    """Folds train through fit.train_stages; a label set's relabels are the labels the folds
    train and score on, its exclusions leave every fold."""
    from cifar_mtl import labelsets as ls
    from cifar_mtl.training import crossval as cv, fit

    y = load_cifar10(str(data_dir)).y_train
    table = ls.from_ranking(pd.DataFrame({"index": [2, 5], "label": y[[2, 5]], "suggested": (y[[2, 5]] + 1) % 10}), 2)
    table.loc[1, ["action", "label"]] = ["exclude", pd.NA]
    ls.save_label_set(table, "fixes", tmp_path)
    calls = []
    loop = fit.train_stages
    monkeypatch.setattr(fit, "train_stages", lambda *a, **k: calls.append(1) or loop(*a, **k))
    metrics = cv.crossval(make_config({**TINY, "data_dir": str(data_dir), "labels": "fixes"}), "cvl", k=2,
                          home_dir=tmp_path)
    assert len(calls) == 2  # one per fold
    train = pd.read_parquet(runs.run_dir("cvl", tmp_path) / "train_predictions.parquet").set_index("index")
    assert 5 not in train.index and len(train) == len(y) - 1
    assert train.loc[2, "label"] == (y[2] + 1) % 10 and train.loc[3, "label"] == y[3]
    assert (metrics["label_set"], metrics["label_set_version"], metrics["relabelled"], metrics["excluded"]) == (
        "fixes", 1, 1, 1)
    assert runs.load_config("cvl", tmp_path)["labels"] == "fixes@v1"
