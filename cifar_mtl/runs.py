"""Run folders: where they live, how they are written, and how they are read back.

A run folder is `<home>/runs/<run_id>/` (see docs/design.md). Every file in it is
written to a temporary name and renamed into place, so a reader never sees half a
file. Readers raise `RunError` naming the run and the file, so one bad run never
stops the others from loading.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from pathlib import Path

import pandas as pd

from cifar_mtl.errors import UserError

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


class RunError(UserError):
    """A run is missing, incomplete or unreadable. The message names run and file."""


def home(path: str | os.PathLike | None = None) -> Path:
    """The artifacts home: `path`, else `$CIFAR_MTL_HOME`, else `artifacts/` in the current folder.

    The current folder, not the package's: an installed package lives in
    site-packages, and `streamlit run app.py` or `cifar-mtl ...` started in a
    checkout finds that checkout's `artifacts/`.
    """
    if path is not None:
        return Path(path)
    env = os.environ.get("CIFAR_MTL_HOME")
    return Path(env) if env else Path.cwd() / "artifacts"


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
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    The temporary file is created with mode 0o666, which the kernel cuts by the umask
    (0644 under umask 022), so the file gets the mode any new file of the user's gets:
    `tempfile.mkstemp`'s 0600 would hide run folders and exports from a team.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp"))
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
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
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return None


def read_status(folder: Path) -> dict:
    """`status.json` of a run folder, or {} while it is missing or unreadable."""
    status = _read_json_quiet(Path(folder) / STATUS_FILE)
    return status if isinstance(status, dict) else {}


# --- reading -------------------------------------------------------------------------


def _existing_run(run_id: str, home_dir=None) -> Path:
    """The folder of run `run_id`; RunError when no such run exists (ValueError for a bad id)."""
    folder = run_dir(run_id, home_dir)
    if not folder.is_dir():
        raise RunError(
            f"no run named {run_id!r} exists under {runs_root(home_dir)}; "
            "`python -m cifar_mtl runs` lists them"
        )
    return folder


def _read_json(run_id: str, name: str, home_dir=None) -> dict:
    path = _existing_run(run_id, home_dir) / name
    if not path.exists():
        raise RunError(f"run {run_id!r}: {name} is missing ({path})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RunError(f"run {run_id!r}: {name} is not text (binary garbage?); the file is damaged") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"run {run_id!r}: {name} is not valid JSON ({exc})") from None
    except RecursionError:
        raise RunError(f"run {run_id!r}: {name} is nested too deeply to read; the file is damaged") from None
    if not isinstance(data, dict):
        raise RunError(f"run {run_id!r}: {name} should hold a JSON object, not a {type(data).__name__}")
    return data


def load_config(run_id: str, home_dir=None) -> dict:
    return _read_json(run_id, CONFIG_FILE, home_dir)


def load_status(run_id: str, home_dir=None) -> dict:
    return _read_json(run_id, STATUS_FILE, home_dir)


def load_metrics(run_id: str, home_dir=None) -> dict:
    """`metrics.json`; its absence means the run is not complete."""
    path = _existing_run(run_id, home_dir) / METRICS_FILE
    if not path.exists():
        raise RunError(
            f"run {run_id!r} is not complete: {METRICS_FILE} is missing. "
            "Wait for training to finish, or run `python -m cifar_mtl predict --run "
            f"{run_id}` if the model exists."
        )
    return _read_json(run_id, METRICS_FILE, home_dir)


def load_progress(run_id: str, home_dir=None) -> dict | None:
    """`progress.json`, or None while there is none yet (or it cannot be read, or is no JSON object).

    Fields: `phase` ("train" while fitting, "predict" while predicting the test set),
    `stage`, `epoch`, `epochs`, `step`, `steps`, `steps_done`, `steps_total`,
    `metrics`, `elapsed_seconds`, `eta_seconds`, `updated_at` (see docs/design.md).
    """
    progress = _read_json_quiet(run_dir(run_id, home_dir) / PROGRESS_FILE)
    return progress if isinstance(progress, dict) else None


def load_history(run_id: str, home_dir=None) -> pd.DataFrame:
    """`history.csv` (one row per epoch, with its stage); empty when there is none yet."""
    path = _existing_run(run_id, home_dir) / HISTORY_FILE
    if not path.exists():
        return pd.DataFrame(columns=["stage", "epoch"])
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as exc:  # ValueError: pandas' parser errors, undecodable bytes
        raise RunError(f"run {run_id!r}: {HISTORY_FILE} cannot be read ({exc})") from None
    missing = [c for c in ("stage", "epoch") if c not in history.columns]
    if missing or not pd.api.types.is_numeric_dtype(history["epoch"]):
        raise RunError(
            f"run {run_id!r}: {HISTORY_FILE} is damaged: it needs columns 'stage' and a numeric 'epoch', "
            f"found {list(map(str, history.columns))[:8]}"
        )
    return history


def load_predictions(run_id: str, home_dir=None) -> pd.DataFrame:
    """The run's predictions table, checked by `predictions.validate_predictions`.

    The row count must match `n_test` of the run's metrics.json; a run without
    readable metrics (predictions being rewritten) skips that one check.
    """
    from cifar_mtl.predictions import validate_predictions

    path = _existing_run(run_id, home_dir) / PREDICTIONS_FILE
    if not path.exists():
        raise RunError(f"run {run_id!r}: {PREDICTIONS_FILE} is missing ({path})")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise RunError(f"run {run_id!r}: {PREDICTIONS_FILE} cannot be read ({exc})") from exc
    try:
        return validate_predictions(df, expected_rows=_metrics_n_test(run_id, home_dir))
    except ValueError as exc:
        raise RunError(f"run {run_id!r}: {PREDICTIONS_FILE} {exc}") from exc


def _metrics_n_test(run_id: str, home_dir=None) -> int | None:
    """`n_test` of the run's metrics.json, or None when there is no readable whole number."""
    try:
        n = load_metrics(run_id, home_dir).get("n_test")
    except RunError:
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


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

    Each run is read on its own: a run whose files are missing, damaged or of the
    wrong shape still gets a row, with `problem` naming the file and what is wrong,
    and never stops the other runs from loading. `complete` is True only when
    `metrics.json` is sound and `predictions.parquet` has a readable footer with
    the table's columns and `n_test` rows (the table itself is not read).
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
    try:
        _config_columns(row, run_id, home_dir, problems)
        _status_columns(row, run_id, home_dir, problems)
        row["complete"] = _result_columns(row, run_id, home_dir, problems)
        _check_side_files(run_id, home_dir, problems)
    except Exception as exc:  # a last resort: whatever one run holds, the others still list
        row["complete"] = False
        problems.append(f"run {run_id!r} cannot be read ({type(exc).__name__}: {exc})")
    row["problem"] = "; ".join(problems) or None
    return row


_EXPECTED = {"text": "text", "whole": "a whole number", "number": "a finite number"}


def _typed(data: dict, key: str, kind: str, where: str, problems: list):
    """`data[key]` if it is None or of `kind` ("text", "whole", "number"), else None and a problem."""
    value = data.get(key)
    if value is None:
        return None
    if kind == "text":
        ok = isinstance(value, str)
    elif kind == "whole":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        problems.append(f"{where}: {key} is {value!r:.40} ({type(value).__name__}), expected {_EXPECTED[kind]}")
        return None
    return value


def _config_columns(row: dict, run_id: str, home_dir, problems: list) -> None:
    try:
        config = load_config(run_id, home_dir)
    except RunError as exc:
        problems.append(str(exc))
        return
    where = f"run {run_id!r}: {CONFIG_FILE}"
    row["variant"] = _typed(config, "variant", "text", where, problems)
    row["backbone"] = _typed(config, "backbone", "text", where, problems)
    row["label_smoothing"] = _typed(config, "label_smoothing", "number", where, problems)
    epochs = [_typed(config, k, "whole", where, problems) for k in ("frozen_epochs", "finetune_epochs")]
    row["epochs"] = sum(e or 0 for e in epochs)


def _status_columns(row: dict, run_id: str, home_dir, problems: list) -> None:
    try:
        status = load_status(run_id, home_dir)
    except RunError as exc:
        problems.append(str(exc))
        return
    where = f"run {run_id!r}: {STATUS_FILE}"
    state = _typed(status, "state", "text", where, problems)
    if state is not None and state not in STATES:
        problems.append(f"{where}: state {state!r:.40} is not one of {', '.join(STATES)}")
        state = None
    row["state"] = state
    row["started_at"] = _typed(status, "started_at", "text", where, problems)
    row["finished_at"] = _typed(status, "finished_at", "text", where, problems)
    error = _typed(status, "error", "text", where, problems)
    if state == "failed" and error:
        problems.append(f"failed: {error}")


def _result_columns(row: dict, run_id: str, home_dir, problems: list) -> bool:
    """Fill accuracy and cross-group errors from metrics.json; True when the run is complete."""
    folder = run_dir(run_id, home_dir)
    if not (folder / METRICS_FILE).exists():
        return False
    try:
        metrics = load_metrics(run_id, home_dir)
    except RunError as exc:
        problems.append(str(exc))
        return False
    where = f"run {run_id!r}: {METRICS_FILE}"
    before = len(problems)
    accuracy = _typed(metrics, "accuracy", "number", where, problems)
    if accuracy is not None and not 0.0 <= accuracy <= 1.0:
        problems.append(f"{where}: accuracy {accuracy} is outside 0..1")
        accuracy = None
    row["accuracy"] = accuracy
    row["cross_group_errors"] = _typed(metrics, "cross_group_errors", "whole", where, problems)
    n_test = _typed(metrics, "n_test", "whole", where, problems)
    if len(problems) > before:
        return False
    problem = _predictions_problem(folder / PREDICTIONS_FILE, n_test)
    if problem:
        problems.append(f"run {run_id!r}: {PREDICTIONS_FILE} {problem}")
        return False
    return True


def _predictions_problem(path: Path, n_rows: int | None) -> str | None:
    """What is wrong with a predictions file from its footer alone (None if nothing): cheap
    enough for every run on every listing, unlike reading the table."""
    import pyarrow.parquet as pq

    from cifar_mtl.predictions import SCHEMA

    if not path.exists():
        return "is missing"
    try:
        parquet = pq.ParquetFile(path)
        columns, rows = parquet.schema_arrow.names, parquet.metadata.num_rows
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        return f"cannot be read as parquet ({type(exc).__name__}: {str(exc)[:200]})"
    missing = [c for c in SCHEMA if c not in columns]
    if missing:
        return f"is missing columns {missing}"
    if rows == 0 or (n_rows is not None and rows != n_rows):
        return f"has {rows:,} rows where metrics.json says n_test {n_rows}"
    return None


def _check_side_files(run_id: str, home_dir, problems: list) -> None:
    """History and progress: a damaged one is reported, without making the run incomplete."""
    try:
        load_history(run_id, home_dir)
    except RunError as exc:
        problems.append(str(exc))
    path = run_dir(run_id, home_dir) / PROGRESS_FILE
    if path.exists() and load_progress(run_id, home_dir) is None:
        problems.append(f"run {run_id!r}: {PROGRESS_FILE} cannot be read or is not a JSON object")
