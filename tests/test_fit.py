"""End-to-end training on a few dozen generated images in the official format."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from cifar_mtl import runs
from cifar_mtl.predictions import SCHEMA
from cifar_mtl.synthetic import write_fake_cifar

pytestmark = pytest.mark.slow  # trains models: left out of the inner loop

TINY = {"finetune_epochs": 2, "batch_size": 16, "augment": "cutmix", "progress_interval": 0.2, "val_split": 0.1}


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "cifar_mtl", *args], env=env, capture_output=True, text=True, **kw)


def _env(home, data_dir=None):
    env = dict(os.environ, CIFAR_MTL_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("CIFAR10_DIR", None)
    if data_dir:
        env["CIFAR10_DIR"] = str(data_dir)
    return env


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One multitask run trained in this process; several tests read its folder."""
    from cifar_mtl.config import make_config
    from cifar_mtl.training.fit import train

    root = tmp_path_factory.mktemp("train")
    data_dir = write_fake_cifar(root / "data", n_train_per_batch=20, n_test=30)
    home = root / "home"
    metrics = train(make_config({**TINY, "data_dir": str(data_dir)}), "tiny", home_dir=home)
    return home, runs.run_dir("tiny", home), metrics


def test_run_folder_is_complete(tiny_run):
    home, folder, metrics = tiny_run
    for name in ["config.json", "status.json", "progress.json", "history.csv", "train.log", "model.keras",
                 "predictions.parquet", "metrics.json"]:
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.tmp")) and not (folder / "checkpoint.weights.h5").exists()
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "succeeded" and status["error"] is None and status["pid"] == os.getpid()
    listed = runs.list_runs(home)
    assert listed.loc[0, "run_id"] == "tiny" and listed.loc[0, "complete"]


def test_predictions_match_the_schema(tiny_run):
    home, folder, metrics = tiny_run
    raw = pd.read_parquet(folder / "predictions.parquet")
    assert list(raw.columns) == list(SCHEMA)
    for col, dtype in SCHEMA.items():
        assert raw[col].dtype.kind == np.dtype(dtype).kind, col
    assert len(raw) == 30 and raw["index"].tolist() == list(range(30))
    probs = raw[[f"prob_{k}" for k in range(10)]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    assert raw["animal_prob"].between(0, 1).all()
    assert (raw["correct"] == (raw["pred"] == raw["label"])).all()


def test_metrics_and_history(tiny_run):
    home, folder, metrics = tiny_run
    saved = json.loads((folder / "metrics.json").read_text())
    for key in ["accuracy", "per_class_accuracy", "cross_group_errors", "animal_accuracy", "joint_accuracy",
                "expected_calibration_error", "n_test", "seconds", "variant", "label_smoothing", "versions",
                "data_fingerprint", "git_commit"]:
        assert key in saved, key
    assert saved["n_test"] == 30 and saved["variant"] == "multitask" and saved["label_smoothing"] == 0.1
    assert 0.0 <= saved["accuracy"] <= 1.0 and saved["versions"]["keras"].startswith("3.")
    history = pd.read_csv(folder / "history.csv")
    assert history["stage"].tolist() == ["finetune", "finetune"] and history["epoch"].tolist() == [1, 2]
    assert {"class_accuracy", "animal_accuracy", "val_class_accuracy", "val_animal_loss"} <= set(history.columns)
    progress = json.loads((folder / "progress.json").read_text())  # the last write: the end of predicting
    assert progress["phase"] == "predict" and progress["step"] == progress["steps"] == 1
    assert progress["eta_seconds"] == 0 and progress["metrics"]["val_class_accuracy"] == history["val_class_accuracy"].iloc[-1]


def test_existing_run_id_is_refused(tiny_run):
    from cifar_mtl.config import make_config
    from cifar_mtl.training.fit import train

    home, folder, _ = tiny_run
    with pytest.raises(FileExistsError, match="already exists"):
        train(make_config(TINY), "tiny", home_dir=home)


def test_predict_command_rewrites_predictions(tiny_run):
    home, folder, metrics = tiny_run
    before = pd.read_parquet(folder / "predictions.parquet")
    (folder / "predictions.parquet").unlink()
    result = _cli("predict", "--run", "tiny", env=_env(home), timeout=300)
    assert result.returncode == 0, result.stderr
    after = pd.read_parquet(folder / "predictions.parquet")
    np.testing.assert_allclose(after["prob_3"], before["prob_3"], rtol=1e-4, atol=1e-6)


def test_cli_single_task_run_and_runs_table(tmp_path):
    data_dir = write_fake_cifar(tmp_path / "data")
    config = tmp_path / "single.json"
    config.write_text(json.dumps({**TINY, "finetune_epochs": 1, "augment": "flip_translate"}))
    env = _env(tmp_path / "home", data_dir)
    result = _cli("train", "--config", str(config), "--set", "variant=single", "--run-id", "one", env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout
    table = pd.read_parquet(tmp_path / "home/runs/one/predictions.parquet")
    assert table["animal_prob"].isna().all()
    metrics = json.loads((tmp_path / "home/runs/one/metrics.json").read_text())
    assert metrics["variant"] == "single" and metrics["animal_accuracy"] is None
    history = pd.read_csv(tmp_path / "home/runs/one/history.csv")
    assert {"class_accuracy", "class_loss", "val_class_accuracy"} <= set(history.columns)  # same names as multitask
    listing = _cli("runs", env=env, timeout=120)
    assert listing.returncode == 0 and "one" in listing.stdout and "succeeded" in listing.stdout


def test_failing_run_records_the_error(tmp_path):
    env = _env(tmp_path / "home")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({**TINY, "data_dir": str(tmp_path / "no-such-data")}))
    result = _cli("train", "--config", str(config), "--run-id", "bad", env=env, timeout=300)
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    status = json.loads((tmp_path / "home/runs/bad/status.json").read_text())
    assert status["state"] == "failed" and "no-such-data" in status["error"]
    assert not (tmp_path / "home/runs/bad/metrics.json").exists()


def test_invalid_config_exits_2_without_a_run(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"batch_size": -1, "colour": "red"}))
    result = _cli("train", "--config", str(config), "--run-id", "x", env=_env(tmp_path / "home"), timeout=120)
    assert result.returncode == 2
    assert "batch_size" in result.stderr and "colour: unknown key" in result.stderr
    assert not (tmp_path / "home/runs/x").exists()


def test_bad_run_id_is_refused(tmp_path):
    config = tmp_path / "c.json"
    config.write_text("{}")
    result = _cli("train", "--config", str(config), "--run-id", "../escape", env=_env(tmp_path / "home"), timeout=120)
    assert result.returncode == 1 and "invalid run id" in result.stderr


def test_sigterm_cancels_after_the_current_step(tmp_path):
    data_dir = write_fake_cifar(tmp_path / "data", n_train_per_batch=200, n_test=10)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({**TINY, "finetune_epochs": 50, "batch_size": 8, "augment": "none"}))
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_mtl", "train", "--config", str(config), "--run-id", "c"],
        env=_env(home, data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    progress = home / "runs/c/progress.json"
    deadline = time.time() + 400
    while not progress.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert progress.exists(), "training never reported progress"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    status = json.loads((home / "runs/c/status.json").read_text())
    assert status["state"] == "cancelled" and status["finished_at"]
    assert not (home / "runs/c/metrics.json").exists()


@pytest.mark.parametrize(
    "setting, gpu, policy",
    [("auto", False, "float32"), ("auto", True, "mixed_float16"), ("on", False, "mixed_bfloat16"),
     ("on", True, "mixed_float16"), ("off", True, "float32")],
)
def test_precision_policy(setting, gpu, policy):
    from cifar_mtl.config import make_config
    from cifar_mtl.training.fit import precision_policy

    assert precision_policy(make_config({"mixed_precision": setting}), gpu=gpu) == policy


def test_no_tf_distribute_off_tensorflow(monkeypatch):
    """On another Keras backend (bench_seed on JAX) building and compiling need no tf.distribute."""
    import keras

    from cifar_mtl.training import fit

    assert fit._strategy() is not fit._NO_DISTRIBUTION  # TensorFlow here: a real strategy
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    strategy = fit._strategy()
    assert strategy is fit._NO_DISTRIBUTION
    with strategy.scope():
        pass


# A small residual net trains and predicts in seconds where EfficientNetV2B1 takes a minute.
FAST = {"backbone": "resnet9", "resnet_width": 8, "finetune_epochs": 1, "batch_size": 16, "augment": "none",
        "val_split": 0.1, "progress_interval": 0.0}


def _record_progress(monkeypatch, folder_name, on_write=None):
    """Every progress.json the trainer writes, in order; `on_write(progress)` runs after each."""
    written = []
    original = runs.atomic_write_json

    def spy(path, obj):
        original(path, obj)
        if path.name == runs.PROGRESS_FILE and path.parent.name == folder_name:
            written.append(dict(obj))
            if on_write:
                on_write(obj)

    monkeypatch.setattr(runs, "atomic_write_json", spy)
    return written


def test_prediction_reports_progress_and_sigterm_cancels_it(tmp_path, monkeypatch):
    """Issues 12/13: progress.json follows the prediction batches (phase "predict"), and
    SIGTERM while predicting ends the run cancelled at once, not after the grace period."""
    import warnings

    from cifar_mtl.config import make_config
    from cifar_mtl.training.fit import train
    from cifar_mtl.training.predict import predict_steps
    from cifar_mtl.training.tracking import TrainingCancelled

    data_dir = write_fake_cifar(tmp_path / "data", n_train_per_batch=20, n_test=300)
    home = tmp_path / "home"
    steps = predict_steps(300, "flip_shift")
    assert steps == 6 * 2  # six views of two 256-image batches

    def cancel_once_predicting(progress):
        if progress["phase"] == "predict" and progress["step"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    written = _record_progress(monkeypatch, "p", cancel_once_predicting)
    config = make_config({**FAST, "tta": "flip_shift", "data_dir": str(data_dir)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TrainingCancelled):
            train(config, "p", home_dir=home)
    # issue 12: fit no longer gets shuffle=True for a tf.data dataset, so Keras has nothing to warn about
    assert not [w for w in caught if "shuffle" in str(w.message)]
    phases = [p["phase"] for p in written]
    assert phases[0] == "train" and "predict" in phases
    training = [p for p in written if p["phase"] == "train"]
    assert training[-1]["stage"] == "finetune" and training[-1]["epoch"] == 1
    predicting = [p for p in written if p["phase"] == "predict"]
    first = predicting[0]
    assert first["steps"] == steps and first["step"] == 1 and first["stage"] == "predict"
    assert first["epoch"] is None and first["eta_seconds"] >= 0
    assert {"metrics", "steps_done", "steps_total", "elapsed_seconds", "updated_at"} <= set(first)
    assert "class_accuracy" in first["metrics"]  # the last epoch's figures stay on show
    assert max(p["step"] for p in predicting) < steps  # stopped between batches, not at the end
    folder = runs.run_dir("p", home)
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "cancelled" and "SIGTERM" in status["error"]
    assert (folder / "model.keras").is_file()  # what was saved before the cancel stays
    assert not (folder / "predictions.parquet").exists() and not (folder / "metrics.json").exists()


def test_nan_loss_fails_the_run_with_that_reason(tmp_path, monkeypatch):
    """Issue 13: a run whose loss turns NaN is failed, never succeeded with NaN predictions."""
    from cifar_mtl.config import make_config
    from cifar_mtl.training import pipeline
    from cifar_mtl.training.fit import train
    from cifar_mtl.training.tracking import TrainingDiverged

    real = pipeline.make_targets

    def nan_targets(*args, **kwargs):
        targets = real(*args, **kwargs)
        return {**targets, "class": np.full_like(targets["class"], np.nan)}

    monkeypatch.setattr(pipeline, "make_targets", nan_targets)
    data_dir = write_fake_cifar(tmp_path / "data", n_train_per_batch=20, n_test=20)
    home = tmp_path / "home"
    with pytest.raises(TrainingDiverged, match="loss became NaN at finetune epoch 1 step 1"):
        train(make_config({**FAST, "data_dir": str(data_dir)}), "nan", home_dir=home)
    folder = runs.run_dir("nan", home)
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "failed" and "NaN" in status["error"] and "learning rate" in status["error"]
    assert not (folder / "predictions.parquet").exists() and not (folder / "metrics.json").exists()
    row = runs.list_runs(home).set_index("run_id").loc["nan"]
    assert not row["complete"] and "loss became NaN" in row["problem"]


def test_nan_predictions_are_never_written(tmp_path):
    from cifar_mtl.config import make_config
    from cifar_mtl.training.predict import write_predictions
    from cifar_mtl.training.tracking import TrainingDiverged

    class NanModel:
        def predict(self, data, verbose=0):
            n = sum(int(batch.shape[0]) for batch in data)
            return {"class": np.full((n, 10), np.nan, np.float32)}

    labels = np.arange(20) % 10
    with pytest.raises(TrainingDiverged, match="NaN probabilities"):
        write_predictions(tmp_path, NanModel(), make_config({"variant": "single"}), np.zeros((20, 32, 32, 3), np.uint8),
                          labels, log=lambda m: None)
    assert not (tmp_path / "predictions.parquet").exists()
