"""Retrain jobs: a durable queue of training runs, with progress, logs, cancel and recovery.

A job is a row of the job queue (`stores.jobqueue`, in `<home>/cifar-mtl.sqlite`
beside the reviews). Its worker is `python -m cifar_mtl train --config FILE
--run-id ID` (a cross-validation job, `submit_crossval`: `crossval --folds K
--config FILE --run-id ID`, which resumes its run at the first unfinished fold, so
`resume` of a cancelled or failed one goes on where it stopped), started from an
argument list (never a shell) in its own process session, with its output appended
to the run's `train.log`.

Workers are launched by a small detached supervisor (`python -m cifar_mtl jobs
_supervise`, see `cli.py`), one per home, which lives while jobs are queued or
running. It starts queued jobs while fewer than `max_concurrent` run, so the queue
moves with no browser or app open. Any `JobRunner` call that reads state first
reconciles it: a running job whose worker is gone (or whose pid now belongs to
another process, see `processes`) takes the run's final state from `status.json`,
or becomes `failed` with the reason. Nothing here imports TensorFlow.

Jobs on other machines: `python -m cifar_mtl worker` (`cifar_mtl.worker`) claims
queued jobs from a shared database (`CIFAR_MTL_DB`) and trains them into a shared run
folder (`CIFAR_MTL_HOME`). Whoever runs a job (a worker, or this machine's
supervisor) records itself as `worker` ("host:pid") and refreshes `heartbeat_at`
every `HEARTBEAT_S`. A reader checks a job it can see from its own machine (same host
and boot) by pid as above; a job on another machine by its heartbeat: older than
`stale_after` seconds means the worker (or its machine) is gone, and the job fails
with that reason. `cancel()` signals a job on this machine itself; on another machine
it records the request, which that machine's worker polls, and waits for the outcome.
With `CIFAR_MTL_LOCAL_JOBS=0` the app starts no supervisor: only workers run jobs.

Workers and the supervisor run `sys.executable -m cifar_mtl` in the folder that
holds this very `cifar_mtl` package (`PACKAGE_PARENT`): `-m` puts the working
folder first on the child's import path, so the child runs the same code as its
parent, installed (editable or not) or straight from a checkout, with no
PYTHONPATH set for it.

Also here, for the Retrain page and `jobs show`: `config_problems`, `clone_values`,
`progress_fraction`, `progress_summary`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cifar_mtl
from cifar_mtl.config import CROSSVAL_KEY, FIELDS, MAX_FOLDS, MIN_FOLDS, ConfigError, TrainConfig, make_config
from cifar_mtl.labelsets import resolve_labels
from cifar_mtl.processes import boot_id, describe_exit, process_alive, process_start, stop_group, try_lock
from cifar_mtl.runs import (
    LOG_FILE,
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
from cifar_mtl.stores.database import default_path, now, parse_time
from cifar_mtl.stores.jobqueue import FINAL_STATES, JOB_COLUMNS, JobError, JobQueue, JobStoreError

__all__ = ["JobRunner", "JobError", "JobStoreError", "FINAL_STATES", "JOB_COLUMNS", "worker_alive",
           "worker_name", "worker_host", "config_problems", "clone_values", "progress_fraction",
           "progress_summary"]

LOCK_FILE = "jobs-supervisor.lock"
SUPERVISOR_LOG = "jobs-supervisor.log"
POLL_SECONDS = 0.5
# A job claimed by a supervisor that died before recording the worker's pid.
LAUNCH_TIMEOUT_S = 60.0
EXIT_OK, EXIT_USAGE = 0, 2
# The folder holding this cifar_mtl package: the children's working folder (see above).
PACKAGE_PARENT = Path(cifar_mtl.__file__).resolve().parent.parent

# Whoever runs a job refreshes its heartbeat this often; a reader on another machine
# fails the job once the heartbeat is older than STALE_S (a few missed beats: a worker
# busy starting TensorFlow still beats, from its own loop).
HEARTBEAT_S = 5.0
STALE_S = 60.0
# How long cancel() waits for another machine's worker to stop a job, beyond the grace.
REMOTE_CANCEL_WAIT_S = 30.0
LOCAL_JOBS_ENV = "CIFAR_MTL_LOCAL_JOBS"  # "0": the app starts no supervisor; workers run the jobs

# Settings for the Getting started demo: both variants, a small subset, one epoch.
DEMO_BASE = {"train_subset": 1000, "finetune_epochs": 1, "augment": "none", "batch_size": 64, "val_split": 0.1}


def worker_alive(pid: int | None, pid_start: int | None, boot: str | None, run_id: str) -> bool:
    """Whether `pid` is still this job's worker: alive, not a zombie, same start time and
    boot, and `run_id` on its command line (`processes.process_alive`)."""
    return process_alive(pid, pid_start, boot, run_id)


def worker_name(pid: int | None = None) -> str:
    """This process as a job's `worker`: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def worker_host(name: str | None) -> str | None:
    """The host part of a `worker` name ("gpu-1:4242" -> "gpu-1"); None for None."""
    return None if name is None else name.rsplit(":", 1)[0]


def local_jobs_enabled() -> bool:
    """Whether the app may run jobs on its own machine (`CIFAR_MTL_LOCAL_JOBS`, default yes)."""
    return os.environ.get(LOCAL_JOBS_ENV, "1").strip().lower() not in ("0", "no", "false", "off")


def _last_log_line(run_id: str, home_dir: Path) -> str | None:
    lines = [ln.strip() for ln in read_log_tail(run_id, 20, home_dir).splitlines() if ln.strip()]
    return lines[-1] if lines else None


def _age_s(text: str | None) -> float:
    """Seconds since a time stored in the job table; infinite when unknown."""
    when = parse_time(text)
    return float("inf") if when is None else time.time() - when.timestamp()


def _child_env(home_dir: Path) -> dict:
    env = dict(os.environ)
    env["CIFAR_MTL_HOME"] = str(home_dir)
    env["PYTHONUNBUFFERED"] = "1"
    # TensorFlow's C++ info and warning lines are start-up noise in train.log; errors
    # and Python tracebacks still get through. The trainer's CLI drops the notices
    # TensorFlow writes before it reads this (see cli.import_tensorflow_quietly).
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _start(cmd: list[str], home_dir: Path, out, die_with_parent: bool = False) -> subprocess.Popen:
    """Start `python -m cifar_mtl ...` detached: its own session, output to `out`.

    `die_with_parent`: the kernel SIGKILLs it when the starting process dies (Linux's
    PR_SET_PDEATHSIG), so a worker that vanishes leaves no training behind to write a
    run the job table has already called failed."""
    return subprocess.Popen(cmd, cwd=PACKAGE_PARENT, env=_child_env(home_dir), stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=die_with_parent_signal if die_with_parent else None)


def die_with_parent_signal() -> None:
    """In a child before exec: be SIGKILLed when the parent dies (Linux only; elsewhere nothing)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# --- the runner ------------------------------------------------------------------------


class JobRunner:
    """Submit, watch and cancel training jobs kept in `<home>/cifar-mtl.sqlite`.

    Args:
        home_dir: artifacts home (default: `$CIFAR_MTL_HOME`, else `artifacts/`).
        max_concurrent: how many workers may run at once; the supervisor that this
            runner starts applies it.
        python: interpreter for the supervisor and workers.
        autostart: start a supervisor when jobs wait (False: only store and report;
            someone else runs `python -m cifar_mtl jobs _supervise`, or workers run
            them). Default: yes, unless `CIFAR_MTL_LOCAL_JOBS=0`.
        stale_after: seconds without a heartbeat after which a job running on another
            machine is taken for lost and failed.
    """

    def __init__(self, home_dir=None, max_concurrent: int = 1, python: str = sys.executable,
                 autostart: bool | None = None, stale_after: float = STALE_S):
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be a whole number >= 1, got {max_concurrent!r}")
        self.home = _home(home_dir).resolve()
        self.max_concurrent = max_concurrent
        self.python = python
        self.autostart = local_jobs_enabled() if autostart is None else autostart
        self.stale_after = float(stale_after)
        self.worker_name = worker_name()
        self._spawned: list[subprocess.Popen] = []
        self._beats: dict[int, float] = {}  # job id -> monotonic time of its last heartbeat
        self.queue = JobQueue(default_path(self.home))
        self.db_path = self.queue.where  # the file, or CIFAR_MTL_DB's URL without its password

    # the table ----------------------------------------------------------------------------

    def _row(self, job_id: int) -> dict:
        return self.queue.get(job_id)

    def _rows(self, *states: str) -> list[dict]:
        return self.queue.rows(*states)

    def _update(self, job_id: int, when_state: str | None = None, **values) -> bool:
        """Set columns of a job, only if it is still in `when_state`; True if it changed."""
        return self.queue.update(job_id, when_state, **values)

    # submit -----------------------------------------------------------------------------

    def submit(self, config: dict | TrainConfig, run_id: str | None = None, submitted_by: str | None = None) -> int:
        """Queue a training run; return the job id.

        `config` is validated by `make_config` (ConfigError lists every bad key) and
        `run_id` by `validate_run_id` (JobError, a ValueError), before anything is stored. Relative
        `data_dir` / `weights` paths are made absolute, since the worker runs elsewhere.
        """
        values = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
        # A label set is pinned to its version now: the job trains on what was submitted.
        cfg = resolve_labels(make_config(_absolute_paths(values)), self.home)
        try:
            run_id = validate_run_id(run_id) if run_id else new_run_id(cfg.name)
        except ValueError as exc:
            raise JobError(str(exc)) from None
        if run_dir(run_id, self.home).exists():
            raise JobError(f"run id {run_id!r} is already used by a run folder; choose another or leave it empty")
        job_id = self.queue.add(run_id, cfg.to_dict(), submitted_by)
        self.ensure_supervisor()
        return job_id

    def submit_crossval(self, config: dict | TrainConfig, folds: int = 5, run_id: str | None = None,
                        submitted_by: str | None = None) -> int:
        """Queue a cross-validation run of `folds` folds (`python -m cifar_mtl crossval`); the job id.

        The job's config is the run's config.json form: the TrainConfig fields plus
        `{"crossval": {"folds": K, "seed": S}}`. A cancelled or failed one goes on from its
        first unfinished fold when `resume`d. Checks as `submit`; JobError for a bad fold count.
        """
        if isinstance(folds, bool) or not isinstance(folds, int) or not MIN_FOLDS <= folds <= MAX_FOLDS:
            raise JobError(f"folds {folds!r}: give between {MIN_FOLDS} and {MAX_FOLDS} folds (5 is usual)")
        values = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
        cfg = resolve_labels(make_config(_absolute_paths(values)), self.home)
        run_id = self._new_run_id(run_id, f"cv-{cfg.name}")
        extra = {CROSSVAL_KEY: {"folds": int(folds), "seed": int(cfg.seed)}}
        job_id = self.queue.add(run_id, {**cfg.to_dict(), **extra}, submitted_by)
        self.ensure_supervisor()
        return job_id

    def _new_run_id(self, run_id: str | None, prefix: str) -> str:
        try:
            run_id = validate_run_id(run_id) if run_id else new_run_id(prefix)
        except ValueError as exc:
            raise JobError(str(exc)) from None
        if run_dir(run_id, self.home).exists():
            raise JobError(f"run id {run_id!r} is already used by a run folder; choose another or leave it empty")
        return run_id

    def resume(self, job_id: int) -> str:
        """Queue a cancelled or failed cross-validation job again, as the same job: its
        worker resumes the run at its first unfinished fold. Returns the new state."""
        job = self._row(job_id)
        if CROSSVAL_KEY not in json.loads(job["config"]):
            raise JobError(f"job {job_id} is a training run, which starts over; submit it again instead "
                           "(only cross-validation jobs resume)")
        if job["state"] not in ("cancelled", "failed"):
            raise JobError(f"job {job_id} is {job['state']}; only a cancelled or failed job can be resumed")
        if read_status(run_dir(job["run_id"], self.home)).get("state") == "succeeded":
            raise JobError(f"job {job_id}'s run {job['run_id']} is already complete")
        cleared = dict(state="queued", started_at=None, finished_at=None, pid=None, pid_start=None, boot_id=None,
                       exit_code=None, cancel_requested=0, error=None, worker=None, heartbeat_at=None)
        if not self._update(job_id, job["state"], **cleared):
            return self._row(job_id)["state"]
        self.ensure_supervisor()
        return "queued"

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
        for job in self._rows("running"):
            self._reconcile(job)
        if self._rows("queued", "running"):
            self.ensure_supervisor()

    def is_local(self, job: dict) -> bool:
        """Whether `job` runs (or ran) on this machine, so its pid can be checked and
        signalled here: its worker's host is ours (jobs from before workers had none)."""
        host = worker_host(job.get("worker"))
        return host is None or host == socket.gethostname()

    def _reconcile(self, job: dict) -> str:
        """Bring one running job up to date with its worker; return its state."""
        if not self.is_local(job):
            return self._reconcile_remote(job)
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
            start = process_start(pid)
            if worker_alive(pid, start, None, job["run_id"]):
                self._update(job["id"], "running", pid=pid, pid_start=start, boot_id=boot_id())
                return "running"
        if _age_s(job["started_at"]) < LAUNCH_TIMEOUT_S:
            return "running"
        return self._finish(job, None, reason="the job runner stopped while starting the worker")

    def _reconcile_remote(self, job: dict) -> str:
        """A job on another machine: alive while its worker's heartbeat is fresh."""
        age = _age_s(job.get("heartbeat_at") or job["started_at"])
        if age <= self.stale_after:
            return "running"
        return self._finish(job, None, reason=(
            f"its worker {job.get('worker')} sent no heartbeat for {age:.0f} s (limit {self.stale_after:g} s): "
            "the worker or its machine is gone"))

    def finish(self, job: dict, exit_code: int | None, reason: str | None = None) -> str:
        """Record the end of a running job whose training process is gone (its exit code,
        or None when unknown); the run's status.json agrees after. Returns the job's state."""
        return self._finish(job, exit_code, reason)

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
            error = reason or describe_exit(exit_code, EXIT_USAGE)
            line = _last_log_line(job["run_id"], self.home)
            if line:
                error += f"; last log line: {line}"
        if run_state != state and folder.exists():
            write_status(folder, state, error)
        changed = self._update(
            job["id"], "running", state=state, error=error, finished_at=now(), exit_code=exit_code
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
            if self._update(job_id, "queued", state="cancelled", finished_at=now(), error="cancelled while queued"):
                return "cancelled"
            job = self._row(job_id)  # the supervisor started it meanwhile
        if job["state"] in FINAL_STATES:
            return job["state"]
        self._update(job_id, "running", cancel_requested=1)
        if not self.is_local(job):
            return self._wait_for_remote_cancel(job_id, grace + REMOTE_CANCEL_WAIT_S)
        job = self._wait_for_pid(job_id)
        if job["state"] != "running":
            return job["state"]
        killed = self._stop_worker(job, grace)
        job = self._row(job_id)  # the supervisor may have recorded the end already
        state = self._finish(job, None) if job["state"] == "running" else job["state"]
        if killed and state == "cancelled":
            self._update(job_id, error=f"did not stop within {grace:g} s of SIGTERM; killed")
        return state

    def _wait_for_remote_cancel(self, job_id: int, timeout: float) -> str:
        """The job's state once its worker (on another machine) has acted on the cancel
        request, or "running" if it has not within `timeout` s (the request stays)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self._row(job_id)
            if job["state"] != "running" or time.monotonic() > deadline:
                return job["state"] if job["state"] != "running" else self._reconcile(job)
            time.sleep(0.2)

    def _wait_for_pid(self, job_id: int, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        job = self._row(job_id)
        while job["state"] == "running" and job["pid"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
            job = self._row(job_id)
        return job

    def _stop_worker(self, job: dict, grace: float) -> bool:
        """SIGTERM the worker's group, then SIGKILL after `grace` s; True if it needed SIGKILL.

        Signals go only while the pid is still this job's worker (start_new_session
        made the worker its group's leader)."""
        args = (job["pid"], job["pid_start"], job["boot_id"], job["run_id"])
        return stop_group(job["pid"], grace, lambda: worker_alive(*args))

    # supervisor -------------------------------------------------------------------------

    def supervisor_running(self) -> bool:
        """Whether a supervisor holds this home's lock."""
        return not try_lock(self.home / LOCK_FILE, release=True)

    def ensure_supervisor(self) -> None:
        """Start a detached supervisor unless one is running (it exits when the queue is empty)."""
        self._spawned = [p for p in self._spawned if p.poll() is None]  # reap finished ones
        if not self.autostart:
            return
        # With the queue in PostgreSQL, nothing has made the home yet: the lock lives there.
        self.home.mkdir(parents=True, exist_ok=True)
        if self.supervisor_running():
            return
        cmd = [self.python, "-m", "cifar_mtl", "jobs", "_supervise", "--home", str(self.home),
               "--max-concurrent", str(self.max_concurrent), "--python", self.python]
        with open(self.home / SUPERVISOR_LOG, "ab") as log:
            self._spawned.append(_start(cmd, self.home, log))

    def supervise(self, poll: float = POLL_SECONDS) -> int:
        """The supervisor's loop: start queued jobs while slots are free, reap workers,
        reconcile; return when nothing is queued or running (or another supervisor runs)."""
        lock_path = self.home / LOCK_FILE
        # Someone merely checking (supervisor_running) holds the lock for microseconds;
        # a live supervisor holds it for good.
        lock = try_lock(lock_path, wait=2.0)
        if lock is None:
            return EXIT_OK
        children: dict[int, subprocess.Popen] = {}
        while True:
            try:
                self._supervise_step(children)
            except (self.queue.errors, OSError) as exc:  # e.g. a long write lock: try again next round
                print(f"[{now_iso()}] supervisor: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            if not self._rows("queued", "running") and not children:
                os.close(lock)
                # A job submitted while we were deciding to stop found the lock held and
                # started no supervisor: look again after letting go.
                if not self._rows("queued", "running"):
                    return EXIT_OK
                lock = try_lock(lock_path)
                if lock is None:
                    return EXIT_OK
            time.sleep(poll)

    def _supervise_step(self, children: dict) -> None:
        for job_id, proc in list(children.items()):
            code = proc.poll()
            if code is None:
                self._beat(job_id)
                continue
            del children[job_id]
            job = self._row(job_id)
            if job["state"] == "running":
                self._finish(job, code)
            self._update(job_id, exit_code=code)
        for job in self._rows("running"):
            if job["id"] not in children:
                self._reconcile(job)
        # Slots are counted on this machine: workers elsewhere run theirs besides.
        running = sum(1 for job in self._rows("running") if self.is_local(job))
        for _ in range(max(0, self.max_concurrent - running)):
            job = self.queue.claim(self.worker_name)
            if job is None:
                break
            proc = self.launch(job)
            if proc is not None:
                children[job["id"]] = proc

    def _beat(self, job_id: int) -> None:
        """Refresh the heartbeat of a job this process runs, at most every HEARTBEAT_S."""
        if time.monotonic() - self._beats.get(job_id, 0.0) >= HEARTBEAT_S:
            self.queue.heartbeat(job_id, self.worker_name)
            self._beats[job_id] = time.monotonic()

    def launch(self, job: dict, die_with_parent: bool = False) -> subprocess.Popen | None:
        """Start the training process of a job this process has claimed (`JobQueue.claim`);
        None if it failed to start (the job is then failed with the reason)."""
        folder = run_dir(job["run_id"], self.home)
        config_path = self.home / "jobs" / f"job-{job['id']}.json"
        config_text, cmd = job_command(job["config"], config_path, job["run_id"], self.python)
        try:
            config_path.parent.mkdir(parents=True, exist_ok=True)
            config_path.write_text(config_text, encoding="utf-8")
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / LOG_FILE, "ab") as log:
                log.write(f"[{now_iso()}] job {job['id']}: starting {' '.join(cmd)}\n".encode())
                log.flush()
                proc = _start(cmd, self.home, log, die_with_parent=die_with_parent)
        except OSError as exc:
            self._update(job["id"], "running", state="failed", finished_at=now(),
                         error=f"could not start the worker: {exc}")
            return None
        self._update(job["id"], pid=proc.pid, pid_start=process_start(proc.pid), boot_id=boot_id())
        return proc



def job_command(config_json: str, config_path: Path, run_id: str, python: str = sys.executable) -> tuple[str, list[str]]:
    """(the config file's text, the worker's argument list) of a job.

    A training job runs `train`; a cross-validation job (config with `CROSSVAL_KEY`)
    runs `crossval --folds K`, which resumes the run folder `run_id` when it is unfinished.
    """
    values = json.loads(config_json)
    extra = values.pop(CROSSVAL_KEY, None)
    base = [python, "-m", "cifar_mtl"]
    tail = ["--config", str(config_path), "--run-id", run_id, "--no-progress-bar"]
    if extra is None:
        return config_json, [*base, "train", *tail]
    return json.dumps(values), [*base, "crossval", "--folds", str(int(extra["folds"])), *tail]


def is_crossval(config: dict) -> bool:
    """Whether a job's config (dict) is a cross-validation run's."""
    return CROSSVAL_KEY in config


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



# --- for the Retrain page and `jobs show` ---------------------------------------------


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
    """One line from progress.json: stage, epoch, step, ETA (e.g. 'finetune, epoch 2/3, step 40/100, ETA 1m05s')."""
    if not progress:
        return "no progress yet"
    fold = [f"fold {progress['fold']}/{progress['folds']}"] if progress.get("folds") else []
    if progress.get("phase") == "predict":
        # Training is over: the bar now follows the test set's prediction batches.
        parts = [f"predicting the test set, batch {progress.get('step', 0)}/{progress.get('steps') or '?'}"]
    else:
        parts = [str(progress.get("stage") or "starting")]
        if progress.get("epochs"):
            parts.append(f"epoch {progress.get('epoch', 0)}/{progress['epochs']}")
        if progress.get("steps"):
            parts[-1] += f", step {progress.get('step', 0)}/{progress['steps']}"
    parts = fold + parts
    eta = progress.get("eta_seconds")
    if isinstance(eta, (int, float)) and eta >= 0:
        parts.append(f"ETA {int(eta) // 60}m{int(eta) % 60:02d}s")
    return ", ".join(parts)
