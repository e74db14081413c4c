"""Run tracking while a model trains: status.json, progress.json, history.csv, train.log, the cancel flag.

`RunCallback` writes progress.json every `progress_interval` seconds and history.csv
and the best checkpoint each epoch; `CancelFlag` turns SIGTERM into a stop after the
current step (TrainingCancelled); `RunLog` prints and appends to the run's log.
`run_lifecycle` is a run's life in status.json (running, then succeeded, cancelled or
failed) around whatever trains it; `log_and_cancel` its log and cancel flag alone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import keras

from cifar_mtl import runs

CHECKPOINT_FILE = "checkpoint.weights.h5"


class TrainingCancelled(Exception):
    """Training was stopped by SIGTERM (or a cancel request) before it finished."""


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite; the run cannot produce a usable model."""


def _in_main_thread() -> bool:
    # signal.signal works only there; a trainer called from another thread keeps no handler.
    return threading.current_thread() is threading.main_thread()


class CancelFlag:
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


class RunLog:
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


@contextlib.contextmanager
def log_and_cancel(folder: Path):
    """(RunLog appending to `folder`/train.log, an installed CancelFlag) for the `with` block;
    the flag is uninstalled and the log closed at exit, however it exits."""
    log = RunLog(folder / runs.LOG_FILE)
    cancel = CancelFlag()
    cancel.install()
    try:
        yield log, cancel
    finally:
        cancel.uninstall()
        log.close()


@contextlib.contextmanager
def run_lifecycle(folder: Path, expected: tuple = (), cancelled: str = "cancelled"):
    """A run's status.json around the `with` block, which trains it; yields (log, cancel).

    "running" (with this process's pid) on entry; "succeeded" when the block ends
    normally; "cancelled" on TrainingCancelled (logging `cancelled`); "failed" with
    "Type: message" on any other exception, logged with its traceback unless it is an
    instance of `expected` (errors whose message says it all; a traceback is for bugs).
    The flag is uninstalled and the log closed before the final status; exceptions
    are re-raised.
    """
    runs.write_status(folder, "running", pid=os.getpid())
    with log_and_cancel(folder) as (log, cancel):
        try:
            yield log, cancel
        except TrainingCancelled as exc:
            runs.write_status(folder, "cancelled", error=str(exc))
            log(cancelled)
            raise
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
            runs.write_status(folder, "failed", error=message)
            known = isinstance(exc, expected)
            log(f"failed: {message}" + ("" if known else f"\n{traceback.format_exc()}"))
            raise
    runs.write_status(folder, "succeeded")


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


class RunCallback(keras.callbacks.Callback):
    """A Keras callback writing progress.json, history.csv and the best checkpoint into `folder`.

    `plan` is [(stage, epochs)], `steps` the steps per epoch, `interval` the seconds
    between progress.json writes; a set `cancel` flag stops training after the step.
    Call `start_stage` before each stage's `fit`. After training, `best` is the best
    validation class accuracy (-inf without validation), `last_metrics` the last
    epoch's logs and `diverged` where the loss first became NaN or infinite (or None).
    """

    def __init__(
        self, folder: Path, plan: list[tuple[str, int]], steps: int, interval: float,
        cancel: CancelFlag | None = None, log=print,
    ):
        super().__init__()
        self.folder, self.steps, self.interval, self.log = folder, steps, interval, log
        self.cancel = CancelFlag() if cancel is None else cancel
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
        if self.cancel.set:
            self.model.stop_training = True
        loss = (logs or {}).get("loss")
        if self.diverged is None and isinstance(loss, float) and not math.isfinite(loss):
            # What keras.callbacks.TerminateOnNaN does, remembering where for the error.
            self.diverged = f"{self.stage} epoch {self.epoch} step {batch + 1}"
            self.model.stop_training = True
        now = time.time()
        if now - self.last_write >= self.interval:
            self.write_progress(batch + 1, logs)

    def write_progress(self, step, logs):
        self.last_write = time.time()
        done = self.done_before + (self.epoch - 1) * self.steps + step
        elapsed = self.last_write - self.t_start
        eta = elapsed / done * (self.total - done) if done else None
        runs.atomic_write_json(
            self.folder / runs.PROGRESS_FILE,
            {
                "phase": "train",
                "stage": self.stage,
                "epoch": self.epoch,
                "epochs": self.stage_epochs,
                "step": step,
                "steps": self.steps,
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
        _write_history(self.folder / runs.HISTORY_FILE, self.history_rows)
        self.write_progress(self.steps, logs)
        score = logs.get("val_class_accuracy")
        if score is not None and score > self.best:
            self.best = score
            self.model.save_weights(self.folder / CHECKPOINT_FILE)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in logs.items() if "accuracy" in k or k.endswith("loss"))
        self.log(f"{self.stage} epoch {epoch + 1}/{self.stage_epochs}: {shown}")


def _write_history(path: Path, rows: list[dict]) -> None:
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    runs.atomic_write_text(path, buf.getvalue())
