"""Distribution strategies for training: which one, who writes the run, and Keras 3's gaps.

`choose_strategy` picks `tf.distribute.MultiWorkerMirroredStrategy` when `TF_CONFIG`
is set, `MirroredStrategy` over several logical GPUs (or, with no GPU, several
logical CPUs), else the default strategy. `is_chief` says whether this process
writes the run folder; `describe` gives the figures a run records; `prepare_model`
works around the two places where Keras 3's `fit` breaks under
MultiWorkerMirroredStrategy (keras-team/keras#20585, #20329; see docs/design.md);
`peer_failures` turns a lost worker into one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import types

import keras
import tensorflow as tf

from cifar_mtl.errors import UserError
from cifar_mtl.training.tracking import CancelFlag

# What `choose_strategy` gives on backends other than TensorFlow: one replica, a scope that does nothing.
NO_DISTRIBUTION = types.SimpleNamespace(
    scope=contextlib.nullcontext, num_replicas_in_sync=1, extended=types.SimpleNamespace(should_checkpoint=True)
)

# A process makes one strategy: MultiWorkerMirroredStrategy starts a server and can only be made once.
_made: dict[str, object] = {}


class DistributionError(UserError):
    """Training on several workers cannot start or go on (a bad TF_CONFIG, a lost worker). The message says why."""


def cluster_from_tf_config(text: str) -> dict:
    """The `TF_CONFIG` JSON `text` as a dict, checked: a cluster of `chief`/`worker` addresses and this task in it.

    Raises DistributionError naming what is wrong (TensorFlow would fail later, or hang).
    """
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DistributionError(f"TF_CONFIG is not JSON ({exc}); unset it to train on one machine") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise DistributionError(
            'TF_CONFIG needs "cluster" (e.g. {"worker": ["host1:12345", "host2:12345"]}) and "task" '
            '(e.g. {"type": "worker", "index": 0}); see the README, "Training on several devices or machines"'
        )
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise DistributionError(
            f"TF_CONFIG's cluster has {unknown}: MultiWorkerMirroredStrategy takes only 'chief' and 'worker' tasks"
        )
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise DistributionError(
            f"TF_CONFIG's task {task} is not in its cluster {cluster}: give each machine its own type and index"
        )
    return spec


def choose_strategy():
    """The strategy this process trains under (made once per process, then reused).

    - `TF_CONFIG` set: MultiWorkerMirroredStrategy (one replica per GPU of each worker,
      or its CPU); it must be made before TensorFlow runs anything.
    - several logical GPUs, or no GPU and several logical CPUs
      (`tf.config.set_logical_device_configuration`): MirroredStrategy over them.
    - otherwise TensorFlow's default strategy (one device).
    On another Keras backend: NO_DISTRIBUTION.
    """
    if keras.backend.backend() != "tensorflow":
        return NO_DISTRIBUTION
    if "strategy" not in _made:
        _made["strategy"] = _new_strategy()
    return _made["strategy"]


def _new_strategy():
    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:
        cluster_from_tf_config(tf_config)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if _multi_worker(strategy):
            _reduce_scalars_across_workers(strategy)
        return strategy
    # Listing logical devices starts TensorFlow's runtime: only after TF_CONFIG was ruled out.
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def _workers(strategy) -> int:
    """The processes training together: the chief and workers of TF_CONFIG's cluster, else 1."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return len(jobs.get("chief", [])) + len(jobs.get("worker", []))


def _multi_worker(strategy) -> bool:
    return _workers(strategy) > 1


def is_chief(strategy) -> bool:
    """Whether this process writes the run folder: the chief, or worker 0 of a cluster without one."""
    return bool(strategy.extended.should_checkpoint)


def describe(strategy) -> dict:
    """`strategy` (the name of its class), `replicas` (devices training in sync), `workers` (processes)."""
    return {
        "strategy": _name(strategy),
        "replicas": int(strategy.num_replicas_in_sync),
        "workers": _workers(strategy),
    }


def _name(strategy) -> str:
    if strategy is NO_DISTRIBUTION:
        return "none"
    # tf.distribute.MultiWorkerMirroredStrategy is a class named CollectiveAllReduceStrategy.
    for kind, name in ((tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
                       (tf.distribute.MirroredStrategy, "MirroredStrategy")):
        if isinstance(strategy, kind):
            return name
    return "default" if strategy is tf.distribute.get_strategy() else type(strategy).__name__


def prepare_model(model, strategy, element_spec) -> None:
    """Make `model.fit` and `evaluate` work under a multi-worker strategy; nothing otherwise.

    `element_spec` is the training dataset's (images, targets) spec. Keras 3.15's
    TensorFlow trainer builds the model before fitting from the first batch averaged
    across replicas (`_maybe_symbolic_build`: `strategy.reduce("MEAN", batch)`), and
    MultiWorkerMirroredStrategy cannot reduce a nest of tensors: fit fails at once
    with "Attempt to convert a value (PerReplica...)" (keras-team/keras#20585,
    #20329). The build needs only shapes and dtypes, which the spec has, with no
    collective step that workers holding batches of different sizes would break.
    """
    if not _multi_worker(strategy):
        return
    build = getattr(model, "_maybe_symbolic_build", None)
    if build is None:
        raise DistributionError(
            f"Keras {keras.__version__} changed the trainer that the multi-worker workaround wraps "
            "(keras-team/keras#20585); check whether fit now works under MultiWorkerMirroredStrategy without it"
        )
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(data_batch=element_spec)


def _reduce_scalars_across_workers(strategy) -> None:
    """Let `strategy.reduce(op, scalar, axis=0)` mean a reduction across replicas only.

    Keras 3.15 reduces every training and evaluation log (scalars: losses, metric
    results) of a multi-worker strategy with `strategy.reduce("MEAN", value, axis=0)`
    (`reduce_per_replica`), and a scalar has no axis 0: the first step fails with
    "Invalid reduction dimension 0 for input with 0 dimensions", the failure one meets
    after the one `prepare_model` avoids (keras-team/keras#20585). Averaging over
    replicas is what Keras does for one worker's replicas.
    """
    reduce = strategy.reduce

    def reduce_scalars_by_replica(reduce_op, value, axis=None):
        first = strategy.experimental_local_results(value)[0]
        if axis is not None and len(getattr(first, "shape", ())) == 0:
            axis = None
        return reduce(reduce_op, value, axis=axis)

    strategy.reduce = reduce_scalars_by_replica


def average_moving_statistics(model, strategy) -> None:
    """Set each non-trainable float variable of `model` to its mean over all replicas.

    Keras 3 updates BatchNormalization's moving mean and variance on each replica from
    its own share of the batch and never combines them: each device (and worker) ends
    with its own copy, and a saved model holds the first one's. Averaging them once after
    training gives every worker the same model, estimated from every replica's images.
    Call in cross-replica context (outside `strategy.run`); a collective step with several
    workers, so every worker calls it.
    """
    if strategy.num_replicas_in_sync < 2:
        return
    variables = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]
    if not variables:
        return

    def replica_mean():
        context = tf.distribute.get_replica_context()
        return context.all_reduce("MEAN", [tf.identity(v.value) for v in variables])

    means = strategy.run(replica_mean)
    for variable, mean in zip(variables, means):
        variable.assign(strategy.experimental_local_results(mean)[0])


# What TensorFlow raises on every worker when one of them stops, fails or cannot be reached.
_PEER_ERRORS = (
    tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError, tf.errors.InternalError,
    tf.errors.DeadlineExceededError,
)


@contextlib.contextmanager
def peer_failures(strategy, cancel: CancelFlag):
    """Around multi-worker training: a collective step that fails because a worker left says so.

    When one worker stops (SIGTERM, an error, a lost machine) the others' next
    collective step fails with a long gRPC error. Raises TrainingCancelled if this
    worker was the one stopped (`cancel` set), else DistributionError naming the
    cause; with one worker, errors pass unchanged.
    """
    try:
        yield
    except _PEER_ERRORS as exc:
        if not _multi_worker(strategy):
            raise
        cancel.check()
        message = getattr(exc, "message", str(exc))
        # TensorFlow's first line is often "Graph execution error:"; the cause follows "aborted by:".
        lines = [line for line in message.splitlines() if line.strip()] or [""]
        cause = next((line.split("aborted by:", 1)[1] for line in lines if "aborted by:" in line), lines[0])
        raise DistributionError(
            f"a worker of this multi-worker run stopped, failed or cannot be reached ({type(exc).__name__}: "
            f"{cause.strip()[:300]}); see each worker's output, then start the run again on every machine"
        ) from exc
