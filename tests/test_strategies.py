"""Training on several devices and machines: MirroredStrategy over two logical CPUs and
MultiWorkerMirroredStrategy with two worker processes on loopback ports, end to end through
the command line, plus the checks of TF_CONFIG and of what a run records.

A strategy must be chosen before TensorFlow starts its runtime, so the strategies run in
subprocesses of their own."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from cifar_mtl import runs
from cifar_mtl.synthetic import write_fake_cifar
from tests.conftest import wait_for

# A small residual net on 90 training images: seconds per epoch. The global batch of 16
# is split into 8 per replica.
TINY = {"backbone": "resnet9", "resnet_width": 8, "weights": "none", "finetune_epochs": 2, "batch_size": 16,
        "augment": "none", "val_split": 0.1, "progress_interval": 0.0}
TIMEOUT_S = 600  # two TensorFlow processes share two cores with other work


@pytest.fixture
def tiny_config(tmp_path):
    """A config file of TINY on 100 generated training and 20 test images."""
    data_dir = write_fake_cifar(tmp_path / "data", n_train_per_batch=20, n_test=20)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**TINY, "data_dir": str(data_dir)}))
    return path


def _env(home, **extra):
    env = dict(os.environ, CIFAR_MTL_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
    for name in ("CIFAR10_DIR", "TF_CONFIG"):
        env.pop(name, None)
    env.update(extra)
    return env


# --- TF_CONFIG and what a run records (no strategy made) ------------------------------------


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "not JSON"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', 'needs "cluster"'),
        ('{"cluster": {"ps": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
         "only 'chief' and 'worker'"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}', "not in its cluster"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}', "not in its cluster"),
    ],
)
def test_bad_tf_config_is_named(text, problem):
    from cifar_mtl.errors import UserError
    from cifar_mtl.training.distribute import DistributionError, cluster_from_tf_config

    with pytest.raises(DistributionError, match=problem) as caught:
        cluster_from_tf_config(text)
    assert isinstance(caught.value, UserError)


def test_good_tf_config_is_returned():
    from cifar_mtl.training.distribute import cluster_from_tf_config

    text = '{"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}}'
    assert cluster_from_tf_config(text)["task"] == {"type": "worker", "index": 1}


def test_one_device_is_the_default_strategy(monkeypatch):
    from cifar_mtl.training import distribute

    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = distribute.choose_strategy()
    assert distribute.choose_strategy() is strategy  # made once per process
    assert distribute.describe(strategy) == {"strategy": "default", "replicas": 1, "workers": 1}
    assert distribute.is_chief(strategy)
    assert distribute.describe(distribute.NO_DISTRIBUTION) == {"strategy": "none", "replicas": 1, "workers": 1}


def test_errors_of_one_worker_pass_unchanged(monkeypatch):
    """Only a multi-worker run turns TensorFlow's collective errors into its one-line message."""
    import tensorflow as tf

    from cifar_mtl.training import distribute
    from cifar_mtl.training.tracking import CancelFlag

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(tf.errors.UnavailableError):
        with distribute.peer_failures(distribute.choose_strategy(), CancelFlag()):
            raise tf.errors.UnavailableError(None, None, "a device went away")


# --- MirroredStrategy: two logical CPUs ----------------------------------------------------

# Runs the real command line after splitting the CPU into two logical devices, which
# TensorFlow allows only before its runtime starts.
TWO_CPUS = textwrap.dedent(
    """
    import sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from cifar_mtl.cli import main

    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path, tiny_config):
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-c", TWO_CPUS, "train", "--config", str(tiny_config), "--run-id", "mirrored",
         "--no-progress-bar"],
        env=_env(home), capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = runs.load_metrics("mirrored", home)
    assert (metrics["strategy"], metrics["replicas"], metrics["workers"]) == ("MirroredStrategy", 2, 1)
    assert "strategy MirroredStrategy: 2 replica(s) in sync on 1 worker(s)" in runs.read_log_tail("mirrored", home_dir=home)
    listed = runs.list_runs(home)
    assert listed["run_id"].tolist() == ["mirrored"] and listed.loc[0, "complete"]
    assert len(pd.read_parquet(runs.run_dir("mirrored", home) / runs.PREDICTIONS_FILE)) == 20


# Trains a BatchNormalization net on two logical CPUs: Keras 3 leaves each replica its own
# moving statistics; `average_moving_statistics` makes them one.
MOVING_STATISTICS = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from cifar_mtl.training import distribute

    strategy = distribute.choose_strategy()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    x[1::2] += 3.0  # the two replicas' halves of each batch differ, and so do their statistics
    ds = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(16)
    with strategy.scope():
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.BatchNormalization()(inputs)))
        model.compile(optimizer="sgd", loss="mse")
    model.fit(ds, epochs=1, verbose=0)

    def copies():
        return {v.path: [t.numpy().tolist() for t in strategy.experimental_local_results(v.value)]
                for v in model.non_trainable_variables}

    before = copies()
    distribute.average_moving_statistics(model, strategy)
    print(json.dumps({"before": before, "after": copies()}))
    """
)


@pytest.mark.slow
def test_moving_statistics_are_averaged_over_replicas(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", MOVING_STATISTICS], env=_env(tmp_path), capture_output=True, text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    mean = "batch_normalization/moving_mean"
    first, second = found["before"][mean]
    assert first != second  # what Keras leaves: one copy per replica
    for path, (a, b) in found["after"].items():
        assert a == b, path
    assert found["after"][mean][0] == pytest.approx([(u + v) / 2 for u, v in zip(first, second)], rel=1e-5)


# --- MultiWorkerMirroredStrategy: two worker processes on loopback -------------------------


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def _two_workers(config, home, scratch):
    """`cifar_mtl train --run-id mw` as workers 0 and 1 of one cluster on 127.0.0.1, sharing `home`.

    `scratch` is their TMPDIR. Yields the processes, their output going to `worker-<i>.out` and
    `.err` beside `scratch`; kills any still running at the end.
    """
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            with open(scratch.parent / f"worker-{index}.out", "w") as out, \
                    open(scratch.parent / f"worker-{index}.err", "w") as err:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "cifar_mtl", "train", "--config", str(config), "--run-id", "mw",
                     "--no-progress-bar"],
                    env=_env(home, TF_CONFIG=tf_config, TMPDIR=str(scratch)), stdout=out, stderr=err,
                ))
        yield workers
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()


def _output(scratch, index: int) -> tuple[str, str]:
    return tuple((scratch.parent / f"worker-{index}.{kind}").read_text() for kind in ("out", "err"))


@pytest.mark.slow
def test_multi_worker_run_leaves_one_complete_run_folder(tmp_path, tiny_config):
    """Both workers share one home (a shared folder, the worst case): only the chief writes to it."""
    home, scratch = tmp_path / "home", tmp_path / "scratch"
    scratch.mkdir()
    with _two_workers(tiny_config, home, scratch) as workers:
        codes = [w.wait(timeout=TIMEOUT_S) for w in workers]
    (chief_out, chief_err), (worker_out, worker_err) = _output(scratch, 0), _output(scratch, 1)
    assert codes == [0, 0], chief_err[-3000:] + worker_err[-3000:]

    listed = runs.list_runs(home)
    assert listed["run_id"].tolist() == ["mw"] and listed.loc[0, "complete"]
    assert runs.read_status(runs.run_dir("mw", home))["pid"] == workers[0].pid
    metrics = runs.load_metrics("mw", home)
    assert (metrics["strategy"], metrics["replicas"], metrics["workers"]) == ("MultiWorkerMirroredStrategy", 2, 2)
    assert runs.load_history("mw", home)["epoch"].tolist() == [1, 2]
    assert "strategy MultiWorkerMirroredStrategy: 2 replica(s) in sync on 2 worker(s)" in chief_out
    # The worker trained in step (the same logs) and cleaned up after itself.
    assert "strategy MultiWorkerMirroredStrategy: 2 replica(s) in sync on 2 worker(s)" in worker_out
    assert "the chief writes the predictions" in worker_out and "wrote predictions" not in worker_out
    assert list(scratch.iterdir()) == []
    # Its copy of the model, moving statistics included, is the chief's: the same test accuracy.
    assert f"test accuracy {metrics['accuracy']:.4f}" in worker_out
    epochs = [[line.split("] ", 1)[1] for line in out.splitlines() if "finetune epoch" in line]
              for out in (chief_out, worker_out)]
    assert epochs[0] == epochs[1] and len(epochs[0]) == 2


@pytest.mark.slow
def test_stopping_the_chief_cancels_the_run_and_ends_the_worker(tmp_path, tiny_config):
    from cifar_mtl.cli import EXIT_CANCELLED

    config = tmp_path / "long.json"
    config.write_text(json.dumps({**json.loads(tiny_config.read_text()), "finetune_epochs": 30}))
    home, scratch = tmp_path / "home", tmp_path / "scratch"
    scratch.mkdir()
    with _two_workers(config, home, scratch) as workers:
        wait_for(lambda: "finetune epoch 1/" in _output(scratch, 0)[0], timeout=TIMEOUT_S, what="the first epoch")
        workers[0].send_signal(signal.SIGTERM)
        codes = [w.wait(timeout=TIMEOUT_S) for w in workers]
    assert codes[0] == EXIT_CANCELLED and codes[1] != 0
    status = runs.read_status(runs.run_dir("mw", home))
    assert (status["state"], status["error"]) == ("cancelled", "cancelled by SIGTERM")
    # The worker says why in one line instead of hanging or dumping gRPC errors as its reason.
    assert "run mw: failed: a worker of this multi-worker run stopped" in _output(scratch, 1)[1]
    assert list(scratch.iterdir()) == []
