"""Retrain jobs: a durable queue of training runs, with progress, logs, cancel and recovery.

A job is a row of the `jobs` table in `<home>/reviews.sqlite` (the review tables in
the same file belong to `reviews.py`; this module touches only `jobs` and
`jobs_meta`). Its worker is `python -m cifar_mtl train --config FILE --run-id ID`,
started from an argument list (never a shell) in its own process session, with its
output appended to the run's `train.log`.

Workers are launched by a small detached supervisor (`python -m cifar_mtl jobs
_supervise`), one per home, which lives while jobs are queued or running. It
starts queued jobs while fewer than `max_concurrent` run, so the queue moves with
no browser or app open. Any `JobRunner` call that reads state first reconciles
it: a running job whose worker is gone (or whose pid now belongs to another
process) takes the run's final state from `status.json`, or becomes `failed` with
the reason. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cifar_mtl.config import FIELDS, ConfigError, TrainConfig, load_config_file, make_config
from cifar_mtl.runs import (
    LOG_FILE,
    PROJECT_ROOT,
    home as _home,
    load_progress,
    now_iso,
    read_log_tail,
    read_status,
    run_dir,
    new_run_id,
    validate_run_id,
    write_status,
)

DB_FILE = "reviews.sqlite"
JOBS_SCHEMA_VERSION = 1
FINAL_STATES = ("succeeded", "failed", "cancelled")
JOB_COLUMNS = ["id", "run_id", "state", "created_at", "started_at", "finished_at", "pid", "error"]
LOCK_FILE = "jobs-supervisor.lock"
SUPERVISOR_LOG = "jobs-supervisor.log"
POLL_SECONDS = 0.5
# A job claimed by a supervisor that died before recording the worker's pid.
LAUNCH_TIMEOUT_S = 60.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
MAX_JOB_ID = 2**63 - 1  # SQLite's largest INTEGER; a larger id cannot even be looked up

# Settings for the Getting started demo: both variants, a small subset, one epoch.
DEMO_BASE = {"train_subset": 1000, "finetune_epochs": 1, "augment": "none", "batch_size": 64, "val_split": 0.1}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    pid INTEGER,
    pid_start INTEGER,
    boot_id TEXT,
    exit_code INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    submitted_by TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS jobs_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class JobError(ValueError):
    """A job is unknown, or the job table cannot be used. The message says what to do."""


class JobStoreError(JobError):
    """The database file cannot be used as a job table (not SQLite, damaged, unreadable)."""


# --- processes -------------------------------------------------------------------------


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of `pid`, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name may hold spaces and parentheses; the fields after the last ')' do not.
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


def _process_start(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def worker_alive(pid: int | None, pid_start: int | None, boot_id: str | None, run_id: str) -> bool:
    """Whether `pid` is still this job's worker: alive, not a zombie, same start time and boot.

    The start-time and boot checks make a reused pid (another process, or after a
    machine restart) read as dead rather than as our worker.
    """
    if not pid:
        return False
    if not Path("/proc").is_dir():  # no procfs: signal 0 is the best we have
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # someone else's process now holds the pid
        return True
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if boot_id and _boot_id() and boot_id != _boot_id():
        return False
    if pid_start is not None and stat[1] != pid_start:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return run_id.encode() in cmdline


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker process is gone (killed, out of memory, or the machine restarted)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (often the out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"the worker was killed by {name}{hint}"
    if code == EXIT_USAGE:
        return "the worker refused its configuration (exit code 2)"
    return f"the worker exited with code {code}"


def _last_log_line(run_id: str, home_dir: Path) -> str | None:
    lines = [ln.strip() for ln in read_log_tail(run_id, 20, home_dir).splitlines() if ln.strip()]
    return lines[-1] if lines else None


def _iso_age_s(text: str | None) -> float:
    """Seconds since an ISO time written by `now_iso()`; infinite when unknown."""
    try:
        return time.time() - _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (TypeError, ValueError):
        return float("inf")


def _child_env(home_dir: Path) -> dict:
    env = dict(os.environ)
    env["CIFAR_MTL_HOME"] = str(home_dir)
    env["PYTHONUNBUFFERED"] = "1"
    # TensorFlow's C++ info and warning lines are start-up noise in train.log; errors
    # and Python tracebacks still get through. The trainer's CLI drops the notices
    # TensorFlow writes before it reads this (see cli.import_tensorflow_quietly).
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    return env


# --- the runner ------------------------------------------------------------------------


class JobRunner:
    """Submit, watch and cancel training jobs kept in `<home>/reviews.sqlite`.

    Args:
        home_dir: artifacts home (default: `$CIFAR_MTL_HOME`, else `artifacts/`).
        max_concurrent: how many workers may run at once; the supervisor that this
            runner starts applies it.
        python: interpreter for the supervisor and workers.
        autostart: start a supervisor when jobs wait (False: only store and report;
            someone else runs `python -m cifar_mtl jobs _supervise`).
    """

    def __init__(self, home_dir=None, max_concurrent: int = 1, python: str = sys.executable, autostart: bool = True):
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be a whole number >= 1, got {max_concurrent!r}")
        self.home = _home(home_dir).resolve()
        self.max_concurrent = max_concurrent
        self.python = python
        self.autostart = autostart
        self.db_path = self.home / DB_FILE
        self._spawned: list[subprocess.Popen] = []
        self._init_db()

    # database ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _db(self):
        """A fresh connection per call: safe across Streamlit threads and processes."""
        con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA busy_timeout = 30000")
            yield con
        finally:
            con.close()

    def _init_db(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self._create_tables()
        except sqlite3.OperationalError:
            raise  # locked or busy: worth a retry, not a verdict on the file
        except sqlite3.DatabaseError as exc:
            raise JobStoreError(
                f"{self.db_path} is not a usable SQLite database ({exc}). It also holds the reviews: "
                "restore it from a backup, or move it aside (a new empty one is then made), "
                "or point --home / CIFAR_MTL_HOME at another artifacts folder"
            ) from None

    def _create_tables(self) -> None:
        with self._db() as con:
            con.execute("PRAGMA journal_mode = WAL")
            con.executescript(_SCHEMA)
            row = con.execute("SELECT value FROM jobs_meta WHERE key = 'jobs_schema_version'").fetchone()
            if row is None:
                con.execute(
                    "INSERT OR IGNORE INTO jobs_meta (key, value) VALUES ('jobs_schema_version', ?)",
                    (str(JOBS_SCHEMA_VERSION),),
                )
            elif int(row["value"]) > JOBS_SCHEMA_VERSION:
                raise JobError(
                    f"{self.db_path}: job table version {row['value']} is newer than this code "
                    f"({JOBS_SCHEMA_VERSION}); update cifar-mtl"
                )

    def _row(self, job_id: int) -> dict:
        row = None
        if 1 <= int(job_id) <= MAX_JOB_ID:  # ids start at 1; SQLite cannot take a larger number
            with self._db() as con:
                row = con.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if row is None:
            raise JobError(f"no job {job_id} in {self.db_path}; `python -m cifar_mtl jobs list` shows the jobs")
        return dict(row)

    def _rows(self, where: str = "1", args: tuple = ()) -> list[dict]:
        with self._db() as con:
            return [dict(r) for r in con.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY id", args)]

    def _update(self, job_id: int, when_state: str | None = None, **values) -> bool:
        """Set columns of a job, only if it is still in `when_state`; True if it changed."""
        sets = ", ".join(f"{k} = ?" for k in values)
        sql, args = f"UPDATE jobs SET {sets} WHERE id = ?", [*values.values(), job_id]
        if when_state:
            sql += " AND state = ?"
            args.append(when_state)
        with self._db() as con:
            return con.execute(sql, args).rowcount == 1

    # submit -----------------------------------------------------------------------------

    def submit(self, config: dict | TrainConfig, run_id: str | None = None, submitted_by: str | None = None) -> int:
        """Queue a training run; return the job id.

        `config` is validated by `make_config` (ConfigError lists every bad key) and
        `run_id` by `validate_run_id` (ValueError), before anything is stored. Relative
        `data_dir` / `weights` paths are made absolute, since the worker runs elsewhere.
        """
        values = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
        cfg = make_config(_absolute_paths(values))
        run_id = validate_run_id(run_id) if run_id else new_run_id(cfg.name)
        if run_dir(run_id, self.home).exists():
            raise ValueError(f"run id {run_id!r} is already used by a run folder; choose another or leave it empty")
        try:
            with self._db() as con:
                cur = con.execute(
                    "INSERT INTO jobs (run_id, config, state, created_at, submitted_by) VALUES (?, ?, 'queued', ?, ?)",
                    (run_id, json.dumps(cfg.to_dict()), now_iso(), submitted_by),
                )
                job_id = int(cur.lastrowid)
        except sqlite3.IntegrityError:
            raise ValueError(f"run id {run_id!r} is already used by a job; choose another or leave it empty") from None
        self.ensure_supervisor()
        return job_id

    def submit_demo(self, base: dict | None = None) -> list[int]:
        """Queue the Getting started demo: one single-task and one multitask run of `base`.

        `base` defaults to `DEMO_BASE` (1000-image subset, one epoch); returns both job ids.
        """
        base = dict(DEMO_BASE if base is None else base)
        return [self.submit({**base, "variant": v, "name": f"demo-{v}"}) for v in ("single", "multitask")]

    # reading ----------------------------------------------------------------------------

    def list_jobs(self, refresh: bool = True):
        """DataFrame of jobs, newest first, with columns `JOB_COLUMNS`."""
        import pandas as pd

        if refresh:
            self.refresh()
        rows = self._rows()[::-1]
        df = pd.DataFrame([{k: r[k] for k in JOB_COLUMNS} for r in rows], columns=JOB_COLUMNS)
        return df.astype({"id": "int64", "pid": "Int64"})

    def get(self, job_id: int, refresh: bool = True, log_lines: int = 20) -> dict:
        """One job: its row, `config` (dict), `progress` (progress.json or None),
        `run_status` (status.json or {}) and `log_tail` (last `log_lines` lines of train.log)."""
        if refresh:
            self.refresh()
        job = self._row(job_id)
        job["config"] = json.loads(job["config"])
        job["cancel_requested"] = bool(job["cancel_requested"])
        folder = run_dir(job["run_id"], self.home)
        job["progress"] = load_progress(job["run_id"], self.home) if folder.exists() else None
        job["run_status"] = read_status(folder)
        job["log_tail"] = self.logs(job_id, log_lines)
        return job

    def logs(self, job_id: int, lines: int = 200) -> str:
        """The last `lines` lines of the job's `train.log` ('' before it starts)."""
        if lines <= 0:
            return ""
        return read_log_tail(self._row(job_id)["run_id"], lines, self.home)

    # reconciling ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Make the table true: finish jobs whose worker is gone; make sure a supervisor
        is there to start queued jobs while slots are free."""
        for job in self._rows("state = 'running'"):
            self._reconcile(job)
        if self._rows("state IN ('queued', 'running')"):
            self.ensure_supervisor()

    def _reconcile(self, job: dict) -> str:
        """Bring one running job up to date with its worker; return its state."""
        if job["pid"] is None:
            return self._reconcile_unlaunched(job)
        if worker_alive(job["pid"], job["pid_start"], job["boot_id"], job["run_id"]):
            return "running"
        return self._finish(job, None)

    def _reconcile_unlaunched(self, job: dict) -> str:
        # Claimed by a supervisor that has not recorded the pid yet (or died doing so).
        status = read_status(run_dir(job["run_id"], self.home))
        pid = status.get("pid")
        if pid and status.get("state") == "running":
            start = _process_start(pid)
            if worker_alive(pid, start, None, job["run_id"]):
                self._update(job["id"], "running", pid=pid, pid_start=start, boot_id=_boot_id())
                return "running"
        if _iso_age_s(job["started_at"]) < LAUNCH_TIMEOUT_S:
            return "running"
        return self._finish(job, None, reason="the job runner stopped while starting the worker")

    def _finish(self, job: dict, exit_code: int | None, reason: str | None = None) -> str:
        """Record the end of a job whose worker is gone; the run's status.json agrees after."""
        folder = run_dir(job["run_id"], self.home)
        status = read_status(folder)
        run_state = status.get("state")
        if job["cancel_requested"] and run_state != "succeeded":
            state = "cancelled"
            error = status.get("error") if run_state == "cancelled" else "cancelled before the worker stopped itself"
        elif run_state in FINAL_STATES:
            state, error = run_state, status.get("error")
        else:
            state = "failed"
            error = reason or _describe_exit(exit_code)
            line = _last_log_line(job["run_id"], self.home)
            if line:
                error += f"; last log line: {line}"
        if run_state != state and folder.exists():
            write_status(folder, state, error)
        changed = self._update(
            job["id"], "running", state=state, error=error, finished_at=now_iso(), exit_code=exit_code
        )
        return state if changed else self._row(job["id"])["state"]

    # cancel -----------------------------------------------------------------------------

    def cancel(self, job_id: int, grace: float = 10.0) -> str:
        """Stop a job; return its final state.

        A queued job is cancelled at once. A running worker gets SIGTERM on its process
        group (the trainer stops after the current step and marks the run cancelled);
        after `grace` seconds it gets SIGKILL. A job that already ended keeps its state.
        """
        job = self._row(job_id)
        if job["state"] == "queued":
            if self._update(job_id, "queued", state="cancelled", finished_at=now_iso(), error="cancelled while queued"):
                return "cancelled"
            job = self._row(job_id)  # the supervisor started it meanwhile
        if job["state"] in FINAL_STATES:
            return job["state"]
        self._update(job_id, "running", cancel_requested=1)
        job = self._wait_for_pid(job_id)
        if job["state"] != "running":
            return job["state"]
        killed = self._stop_worker(job, grace)
        job = self._row(job_id)  # the supervisor may have recorded the end already
        state = self._finish(job, None) if job["state"] == "running" else job["state"]
        if killed and state == "cancelled":
            self._update(job_id, error=f"did not stop within {grace:g} s of SIGTERM; killed")
        return state

    def _wait_for_pid(self, job_id: int, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        job = self._row(job_id)
        while job["state"] == "running" and job["pid"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
            job = self._row(job_id)
        return job

    def _stop_worker(self, job: dict, grace: float) -> bool:
        """SIGTERM the worker's group, then SIGKILL after `grace` s; True if it needed SIGKILL."""
        if not _signal_worker(job, signal.SIGTERM, grace):
            return False
        _signal_worker(job, signal.SIGKILL, 10.0)
        return True

    # supervisor -------------------------------------------------------------------------

    def supervisor_running(self) -> bool:
        """Whether a supervisor holds this home's lock."""
        return not _try_lock(self.home / LOCK_FILE, release=True)

    def ensure_supervisor(self) -> None:
        """Start a detached supervisor unless one is running (it exits when the queue is empty)."""
        self._spawned = [p for p in self._spawned if p.poll() is None]  # reap finished ones
        if not self.autostart or self.supervisor_running():
            return
        cmd = [self.python, "-m", "cifar_mtl", "jobs", "_supervise", "--home", str(self.home),
               "--max-concurrent", str(self.max_concurrent), "--python", self.python]
        with open(self.home / SUPERVISOR_LOG, "ab") as log:
            self._spawned.append(
                subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=_child_env(self.home), stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )

    def supervise(self, poll: float = POLL_SECONDS) -> int:
        """The supervisor's loop: start queued jobs while slots are free, reap workers,
        reconcile; return when nothing is queued or running (or another supervisor runs)."""
        lock_path = self.home / LOCK_FILE
        # Someone merely checking (supervisor_running) holds the lock for microseconds;
        # a live supervisor holds it for good.
        lock = _try_lock(lock_path, wait=2.0)
        if lock is None:
            return EXIT_OK
        children: dict[int, subprocess.Popen] = {}
        while True:
            try:
                self._supervise_step(children)
            except (sqlite3.Error, OSError) as exc:  # e.g. a long write lock: try again next round
                print(f"[{now_iso()}] supervisor: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            if not self._rows("state IN ('queued', 'running')") and not children:
                os.close(lock)
                # A job submitted while we were deciding to stop found the lock held and
                # started no supervisor: look again after letting go.
                if not self._rows("state IN ('queued', 'running')"):
                    return EXIT_OK
                lock = _try_lock(lock_path)
                if lock is None:
                    return EXIT_OK
            time.sleep(poll)

    def _supervise_step(self, children: dict) -> None:
        for job_id, proc in list(children.items()):
            code = proc.poll()
            if code is None:
                continue
            del children[job_id]
            job = self._row(job_id)
            if job["state"] == "running":
                self._finish(job, code)
            self._update(job_id, exit_code=code)
        for job in self._rows("state = 'running'"):
            if job["id"] not in children:
                self._reconcile(job)
        running = len(self._rows("state = 'running'"))
        for job in self._rows("state = 'queued'")[: max(0, self.max_concurrent - running)]:
            proc = self._launch(job)
            if proc is not None:
                children[job["id"]] = proc

    def _launch(self, job: dict) -> subprocess.Popen | None:
        """Start one queued job's worker; None if it was cancelled meanwhile or failed to start."""
        if not self._update(job["id"], "queued", state="running", started_at=now_iso()):
            return None
        folder = run_dir(job["run_id"], self.home)
        config_path = self.home / "jobs" / f"job-{job['id']}.json"
        cmd = [self.python, "-m", "cifar_mtl", "train", "--config", str(config_path),
               "--run-id", job["run_id"], "--no-progress-bar"]
        try:
            config_path.parent.mkdir(parents=True, exist_ok=True)
            config_path.write_text(job["config"], encoding="utf-8")
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / LOG_FILE, "ab") as log:
                log.write(f"[{now_iso()}] job {job['id']}: starting {' '.join(cmd)}\n".encode())
                log.flush()
                proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=_child_env(self.home), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self._update(job["id"], "running", state="failed", finished_at=now_iso(),
                         error=f"could not start the worker: {exc}")
            return None
        self._update(job["id"], pid=proc.pid, pid_start=_process_start(proc.pid), boot_id=_boot_id())
        return proc


def _signal_worker(job: dict, sig: int, wait: float) -> bool:
    """Send `sig` to the job's worker group if it is still our worker; True if it outlives `wait` s."""
    args = (job["pid"], job["pid_start"], job["boot_id"], job["run_id"])
    if not worker_alive(*args):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job["pid"], sig)  # start_new_session made the worker its group's leader
    deadline = time.monotonic() + wait
    while worker_alive(*args) and time.monotonic() < deadline:
        time.sleep(0.1)
    return worker_alive(*args)


def _try_lock(path: Path, release: bool = False, wait: float = 0.0):
    """Take an exclusive flock on `path`, retrying for `wait` s: the fd, or None if another
    process holds it. With `release=True` let go at once and return True/False (was it free)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return False if release else None
            time.sleep(0.05)
    if release:
        os.close(fd)
        return True
    return fd


def _absolute_paths(values: dict) -> dict:
    # The worker runs in the project folder; a path relative to the submitter's folder
    # would point elsewhere there.
    values = dict(values)
    for key in ("data_dir", "weights"):
        v = values.get(key)
        if isinstance(v, str) and v not in ("none", "imagenet") and not os.path.isabs(os.path.expanduser(v)):
            if os.path.exists(v):
                values[key] = os.path.abspath(v)
    return values


# --- command line ----------------------------------------------------------------------


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, 0 or more, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cifar_mtl jobs", description="Retrain jobs: submit, list, show, cancel, logs.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="artifacts home (default: $CIFAR_MTL_HOME, else artifacts/)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", parents=[common], help="queue a training run; prints the job id")
    s.add_argument("--config", required=True, help="JSON configuration file (see configs/)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.add_argument("--run-id", help="run folder name (default: <name>-<date>-<random>)")
    s.add_argument("--max-concurrent", type=int, default=1, help="workers allowed at once (default 1)")
    sub.add_parser("list", parents=[common], help="table of jobs, newest first")
    for name, text in (("show", "state, progress, error and log tail of a job"), ("logs", "the job's train.log"),
                       ("cancel", "stop a job (SIGTERM, then SIGKILL after --grace s)"),
                       ("wait", "wait for a job to end; exit 0 succeeded, 1 failed, 130 cancelled")):
        c = sub.add_parser(name, parents=[common], help=text)
        c.add_argument("id", type=int, help="job id (see `jobs list`)")
        if name == "logs":
            c.add_argument("--lines", type=int, default=200)
        if name == "cancel":
            c.add_argument("--grace", type=_seconds, default=10.0, help="seconds between SIGTERM and SIGKILL")
        if name == "wait":
            c.add_argument("--timeout", type=_seconds, default=None, help="give up after this many seconds (exit 1)")
    v = sub.add_parser("_supervise", parents=[common])
    v.add_argument("--max-concurrent", type=int, default=1)
    v.add_argument("--python", default=sys.executable)
    return p


def main(argv: list[str]) -> int:
    """`python -m cifar_mtl jobs ...`. Exit codes: 0 ok, 1 failed, 2 bad arguments or config.

    Every failure is one `error:` line on stderr, never a traceback.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage
        return EXIT_USAGE if exc.code else EXIT_OK
    db_path = _home(args.home).resolve() / DB_FILE
    try:
        return _dispatch(args)
    except JobStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ConfigError, JobError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as exc:  # e.g. locked for longer than the busy timeout
        print(f"error: the job database {db_path} cannot be used right now ({exc}); try again, "
              "and if it persists check the file and its folder", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # e.g. a home that cannot be created or written
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; check that the artifacts home "
              f"{db_path.parent} is a folder you can write to, or pass --home", file=sys.stderr)
        return EXIT_FAILED


def _dispatch(args) -> int:
    if args.command == "_supervise":
        return JobRunner(args.home, args.max_concurrent, args.python).supervise()
    if args.command == "submit":
        return _submit(args)
    db_path = _home(args.home).resolve() / DB_FILE
    if not db_path.exists():  # reading must not create a home or a database
        if args.command == "list":
            print(f"no jobs yet: there is no job database at {db_path}; "
                  "`python -m cifar_mtl jobs submit --config FILE` queues one")
            return EXIT_OK
        raise JobError(f"no job {args.id}: there is no job database at {db_path}; "
                       "check --home / CIFAR_MTL_HOME, or queue one with `python -m cifar_mtl jobs submit`")
    runner = JobRunner(args.home)
    if args.command == "list":
        df = runner.list_jobs()
        print(jobs_table(df) if len(df) else f"no jobs in {runner.db_path}")
        return EXIT_OK
    if args.command == "logs":
        text = runner.logs(args.id, args.lines)
        print(text if text else f"job {args.id} has no log yet ({runner.get(args.id, log_lines=0)['state']})")
        return EXIT_OK
    if args.command == "show":
        print(format_job(runner.get(args.id)))
        return EXIT_OK
    if args.command == "cancel":
        state = runner.cancel(args.id, args.grace)
        print(f"job {args.id}: {state}")
        return EXIT_OK if state == "cancelled" else EXIT_FAILED
    return _wait(runner, args.id, args.timeout)


def _submit(args) -> int:
    """Queue a job and say what was queued and how to follow it."""
    import shlex

    runner = JobRunner(args.home, max_concurrent=args.max_concurrent)
    job_id = runner.submit(load_config_file(args.config, args.set), args.run_id)
    run_id = runner.get(job_id, refresh=False, log_lines=0)["run_id"]
    home_arg = f" --home {shlex.quote(args.home)}" if args.home else ""
    print(f"job {job_id} queued: run {run_id} from {args.config}"
          + (f" with {', '.join(args.set)}" if args.set else ""))
    print("follow it with:")
    for command in ("show", "logs", "wait"):
        print(f"  python -m cifar_mtl jobs {command} {job_id}{home_arg}")
    return EXIT_OK


def jobs_table(df) -> str:
    """`JobRunner.list_jobs()` as a terminal table: whole-number ids and pids, short times,
    missing values as "-", errors cut short."""
    from cifar_mtl.cli import format_table, short_time

    headers = {"id": "job", "run_id": "run", "state": "state", "created_at": "queued",
               "started_at": "started", "finished_at": "finished", "pid": "pid", "error": "error"}
    times = dict.fromkeys(("created_at", "started_at", "finished_at"), short_time)
    return format_table(df, headers, formats=times, widths={"run_id": 40, "error": 60})


def _wait(runner: JobRunner, job_id: int, timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = runner.get(job_id, log_lines=0)
        if job["state"] in FINAL_STATES:
            print(f"job {job_id}: {job['state']}" + (f": {job['error']}" if job["error"] else ""))
            return {"succeeded": EXIT_OK, "cancelled": EXIT_CANCELLED}.get(job["state"], EXIT_FAILED)
        if deadline is not None and time.monotonic() > deadline:
            print(f"job {job_id}: still {job['state']} after {timeout:g} s", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(1.0)


def config_problems(values: dict) -> dict[str, str]:
    """Validate form values with `make_config`; {field: problem} for each bad field ({} if valid).

    A problem of no one field goes under "".
    """
    try:
        make_config(values)
    except ConfigError as exc:
        return exc.by_field()
    return {}


def clone_values(run_id: str | None = None, home_dir=None) -> dict:
    """Every TrainConfig field, taken from run `run_id`'s config.json where it has the key.

    Keys the current config does not know (older or synthetic runs) are dropped, so
    the result is a valid starting point for a new job; without `run_id`, the defaults.
    """
    values = TrainConfig().to_dict()
    if run_id:
        from cifar_mtl.runs import load_config

        values.update({k: v for k, v in load_config(run_id, home_dir).items() if k in FIELDS})
    return values


def progress_fraction(progress: dict | None) -> float:
    """Share of all training steps done, 0..1, from progress.json (0 when unknown)."""
    if not progress:
        return 0.0
    done, total = progress.get("steps_done"), progress.get("steps_total")
    if not (isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0):
        epochs, steps = progress.get("epochs") or 0, progress.get("steps") or 0
        if not (epochs and steps):
            return 0.0
        done, total = (max(progress.get("epoch", 1), 1) - 1) * steps + (progress.get("step") or 0), epochs * steps
    return float(min(max(done / total, 0.0), 1.0))


def progress_summary(progress: dict | None) -> str:
    """One line from progress.json: stage, epoch, step, ETA (e.g. 'finetune epoch 2/3, step 40/100, ETA 1m05s')."""
    if not progress:
        return "no progress yet"
    if progress.get("phase") == "predict":
        # Training is over: the bar now follows the test set's prediction batches.
        parts = [f"predicting the test set, batch {progress.get('step', 0)}/{progress.get('steps') or '?'}"]
        eta = progress.get("eta_seconds")
        if isinstance(eta, (int, float)) and eta >= 0:
            parts.append(f"ETA {int(eta) // 60}m{int(eta) % 60:02d}s")
        return ", ".join(parts)
    parts = [str(progress.get("stage") or "starting")]
    if progress.get("epochs"):
        parts.append(f"epoch {progress.get('epoch', 0)}/{progress['epochs']}")
    if progress.get("steps"):
        parts[-1] += f", step {progress.get('step', 0)}/{progress['steps']}"
    eta = progress.get("eta_seconds")
    if isinstance(eta, (int, float)) and eta >= 0:
        parts.append(f"ETA {int(eta) // 60}m{int(eta) % 60:02d}s")
    return ", ".join(parts)


def format_job(job: dict) -> str:
    """Text for `jobs show`: the row, progress, latest metrics, error and log tail."""
    lines = [f"job {job['id']}: {job['state']}  run {job['run_id']}"]
    for key in ("created_at", "started_at", "finished_at", "pid", "exit_code"):
        if job.get(key) is not None:
            lines.append(f"  {key}: {job[key]}")
    if job["state"] == "running":
        lines.append(f"  progress: {progress_summary(job['progress'])}")
    metrics = (job.get("progress") or {}).get("metrics") or {}
    if metrics:
        lines.append("  metrics: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    if job.get("log_tail"):
        lines += ["  log:", *("    " + ln for ln in job["log_tail"].splitlines())]
    return "\n".join(lines)
