"""Run folders: where they live, how they are written, and how they are read back.

A run folder is `<home>/runs/<run_id>/` (see docs/design.md). Every file in it is
written to a temporary name and renamed into place, so a reader never sees half a
file. Readers raise `RunError` naming the run and the file, so one bad run never
stops the others from loading.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
STATES = ("queued", "running", "succeeded", "failed", "cancelled")

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
PROGRESS_FILE = "progress.json"
HISTORY_FILE = "history.csv"
LOG_FILE = "train.log"
MODEL_FILE = "model.keras"
PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.json"


class RunError(Exception):
    """A run is missing, incomplete or unreadable. The message names run and file."""


def home(path: str | os.PathLike | None = None) -> Path:
    """The artifacts home: `path`, else `$CIFAR_MTL_HOME`, else `<project>/artifacts`."""
    if path is not None:
        return Path(path)
    env = os.environ.get("CIFAR_MTL_HOME")
    return Path(env) if env else PROJECT_ROOT / "artifacts"


def runs_root(home_dir=None) -> Path:
    return home(home_dir) / "runs"


def validate_run_id(run_id: str) -> str:
    """Return `run_id` if it matches `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, else raise ValueError."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return run_id


def run_dir(run_id: str, home_dir=None) -> Path:
    """Folder of a run (not created). Raises ValueError for an invalid id."""
    return runs_root(home_dir) / validate_run_id(run_id)


def new_run_id(prefix: str = "run") -> str:
    """A fresh, valid run id: `<prefix>-YYYYmmdd-HHMMSS-<4 hex>`."""
    prefix = re.sub(r"[^A-Za-z0-9._-]", "-", prefix).strip("-._") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return validate_run_id(f"{prefix[:40]}-{stamp}-{os.urandom(2).hex()}")


# --- atomic writes -------------------------------------------------------------


@contextlib.contextmanager
def _replacing(path: Path):
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and rename it."""
    with _replacing(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    with _replacing(path) as tmp:
        df.to_parquet(tmp, index=False)


def _json_default(obj):
    # numpy scalars and arrays show up in metrics; JSON has no type for them.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# --- status ------------------------------------------------------------------------


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_status(folder: Path, state: str, error: str | None = None, **extra) -> dict:
    """Update `status.json` in `folder`, keeping the fields already there."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; expected one of {STATES}")
    status = read_status(folder)
    status.update(extra)
    status["state"] = state
    status["error"] = error
    status.setdefault("started_at", now_iso())
    if state in ("succeeded", "failed", "cancelled"):
        status["finished_at"] = now_iso()
    else:
        status["finished_at"] = None
    atomic_write_json(Path(folder) / STATUS_FILE, status)
    return status


def _read_json_quiet(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_status(folder: Path) -> dict:
    """`status.json` of a run folder, or {} while it is missing or unreadable."""
    status = _read_json_quiet(Path(folder) / STATUS_FILE)
    return status if isinstance(status, dict) else {}


# --- reading -------------------------------------------------------------------------


def _read_json(run_id: str, name: str, home_dir=None) -> dict:
    path = run_dir(run_id, home_dir) / name
    if not path.exists():
        raise RunError(f"run {run_id!r}: {name} is missing ({path})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"run {run_id!r}: {name} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RunError(f"run {run_id!r}: {name} should hold a JSON object")
    return data


def load_config(run_id: str, home_dir=None) -> dict:
    return _read_json(run_id, CONFIG_FILE, home_dir)


def load_status(run_id: str, home_dir=None) -> dict:
    return _read_json(run_id, STATUS_FILE, home_dir)


def load_metrics(run_id: str, home_dir=None) -> dict:
    """`metrics.json`; its absence means the run is not complete."""
    path = run_dir(run_id, home_dir) / METRICS_FILE
    if not path.exists():
        raise RunError(
            f"run {run_id!r} is not complete: {METRICS_FILE} is missing. "
            "Wait for training to finish, or run `python -m cifar_mtl predict --run "
            f"{run_id}` if the model exists."
        )
    return _read_json(run_id, METRICS_FILE, home_dir)


def load_progress(run_id: str, home_dir=None) -> dict | None:
    """`progress.json`, or None while there is none yet (or it cannot be read)."""
    return _read_json_quiet(run_dir(run_id, home_dir) / PROGRESS_FILE)


def load_history(run_id: str, home_dir=None) -> pd.DataFrame:
    """`history.csv` (one row per epoch, with its stage); empty when there is none yet."""
    path = run_dir(run_id, home_dir) / HISTORY_FILE
    if not path.exists():
        return pd.DataFrame(columns=["stage", "epoch"])
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise RunError(f"run {run_id!r}: {HISTORY_FILE} cannot be read ({exc})") from exc


def load_predictions(run_id: str, home_dir=None) -> pd.DataFrame:
    """The run's predictions table, checked against the schema in `predictions.py`."""
    from cifar_mtl.predictions import validate_predictions

    path = run_dir(run_id, home_dir) / PREDICTIONS_FILE
    if not path.exists():
        raise RunError(f"run {run_id!r}: {PREDICTIONS_FILE} is missing ({path})")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise RunError(f"run {run_id!r}: {PREDICTIONS_FILE} cannot be read ({exc})") from exc
    try:
        return validate_predictions(df)
    except ValueError as exc:
        raise RunError(f"run {run_id!r}: {PREDICTIONS_FILE} {exc}") from exc


def read_log_tail(run_id: str, lines: int = 50, home_dir=None) -> str:
    """Last `lines` lines of `train.log` ('' when there is none)."""
    path = run_dir(run_id, home_dir) / LOG_FILE
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 256 * 1024))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


RUN_COLUMNS = [
    "run_id",
    "state",
    "complete",
    "variant",
    "backbone",
    "label_smoothing",
    "epochs",
    "accuracy",
    "cross_group_errors",
    "started_at",
    "finished_at",
    "problem",
]


def list_runs(home_dir=None) -> pd.DataFrame:
    """One row per run folder, newest first, with columns `RUN_COLUMNS`.

    A run whose files cannot be read still gets a row, with `problem` saying why;
    `complete` is True only when `metrics.json` and `predictions.parquet` exist.
    """
    root = runs_root(home_dir)
    rows = []
    if root.is_dir():
        for path in root.iterdir():
            if path.is_dir() and RUN_ID_PATTERN.fullmatch(path.name):
                rows.append(_run_row(path.name, home_dir))
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    if len(df):
        df = df.sort_values(["started_at", "run_id"], ascending=False, na_position="last")
    return df.reset_index(drop=True)


def _run_row(run_id: str, home_dir) -> dict:
    row = dict.fromkeys(RUN_COLUMNS)
    row.update(run_id=run_id, complete=False)
    problems = []
    folder = run_dir(run_id, home_dir)
    try:
        config = load_config(run_id, home_dir)
        row["variant"] = config.get("variant")
        row["backbone"] = config.get("backbone")
        row["label_smoothing"] = config.get("label_smoothing")
        row["epochs"] = (config.get("frozen_epochs") or 0) + (config.get("finetune_epochs") or 0)
    except RunError as exc:
        problems.append(str(exc))
    status = read_status(folder)
    if status:
        row["state"] = status.get("state")
        row["started_at"] = status.get("started_at")
        row["finished_at"] = status.get("finished_at")
        if status.get("state") == "failed" and status.get("error"):
            problems.append(f"failed: {status['error']}")
    else:
        problems.append(f"run {run_id!r}: {STATUS_FILE} is missing or unreadable")
    if (folder / METRICS_FILE).exists():
        try:
            metrics = load_metrics(run_id, home_dir)
            row["accuracy"] = metrics.get("accuracy")
            row["cross_group_errors"] = metrics.get("cross_group_errors")
            row["complete"] = (folder / PREDICTIONS_FILE).exists()
            if not row["complete"]:
                problems.append(f"run {run_id!r}: {PREDICTIONS_FILE} is missing")
        except RunError as exc:
            problems.append(str(exc))
    row["problem"] = "; ".join(problems) or None
    return row
