"""A job worker for another machine: `python -m cifar_mtl worker`.

It claims queued jobs from the shared database (`CIFAR_MTL_DB`, or the home's SQLite
file), trains each as a child process exactly as the app's local supervisor does
(`python -m cifar_mtl train --config FILE --run-id ID`, its own process session,
output appended to the run's `train.log`), and writes the run into the shared run
folder (`CIFAR_MTL_HOME` or `--home`), so every app replica sees it.

The rules are the local supervisor's (`cifar_mtl.jobs`): a job's state is always true.

- Claiming is atomic (`JobQueue.claim`: PostgreSQL's `SELECT ... FOR UPDATE SKIP LOCKED`,
  SQLite's BEGIN IMMEDIATE): two workers never run the same job.
- The job records the worker ("host:pid", or `--name`) and the child's pid; the worker
  refreshes `heartbeat_at` every `heartbeat` seconds while the child runs. A reader on
  another machine fails the job once the heartbeat is older than its `stale_after`: the
  worker, or its machine, is gone. The child is started with PR_SET_PDEATHSIG, so a
  worker killed outright takes its training with it instead of leaving it to write a
  run the table has called failed.
- Cancel across machines: the worker polls the job's `cancel_requested` and stops its
  child (SIGTERM to its group: the trainer stops after the current step and marks the
  run cancelled; SIGKILL after `grace` seconds).
- A heartbeat that finds the job no longer its own (a reader failed it, e.g. after a
  network cut) stops the child too: the table's word stands.
- SIGTERM or Ctrl-C stops the worker: its running job's child is stopped the same way
  and the job ends as its run does (cancelled), with the reason.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import signal
import sys
import time

from cifar_mtl.jobs import HEARTBEAT_S, JobRunner, worker_alive, worker_name
from cifar_mtl.processes import boot_id, stop_group
from cifar_mtl.runs import now_iso

POLL_S = 1.0
GRACE_S = 10.0


class Worker:
    """Claims and runs jobs until stopped.

    Args:
        home_dir: the shared run folder (default: `CIFAR_MTL_HOME`, else `artifacts/`).
        name: how the job table names this worker (default "host:pid"); it must be
            unique among running workers.
        poll: seconds between looks at the queue, and at a running job's cancel request.
        heartbeat: seconds between heartbeats while a job runs.
        grace: seconds a stopped child gets between SIGTERM and SIGKILL.
        python: the interpreter for the training processes.
    """

    def __init__(self, home_dir=None, name: str | None = None, poll: float = POLL_S,
                 heartbeat: float = HEARTBEAT_S, grace: float = GRACE_S, python: str = sys.executable):
        self.runner = JobRunner(home_dir, python=python, autostart=False)
        self.queue = self.runner.queue
        self.name = name or worker_name()
        self.poll, self.heartbeat, self.grace = float(poll), float(heartbeat), float(grace)
        self.stopping: str | None = None  # the signal's name once asked to stop
        self.killed = False  # whether the current job's child needed SIGKILL

    def log(self, text: str) -> None:
        print(f"[{now_iso()}] worker {self.name}: {text}", flush=True)

    def run(self, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Claim and run jobs until stopped (SIGTERM, SIGINT), `max_jobs` have run, or (with
        `exit_when_idle`) the queue is empty. Returns the exit code (0)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.log(f"claiming jobs from {self.queue.where}; runs go to {self.runner.home}")
        done = 0
        while self.stopping is None and (max_jobs is None or done < max_jobs):
            try:
                job = self.queue.claim(self.name, boot_id=boot_id())
            except self.queue.errors as exc:  # a database hiccup: look again next round
                self.log(f"cannot read the queue ({type(exc).__name__}: {exc}); retrying")
                job = None
            if job is None:
                if exit_when_idle:
                    break
                self._sleep(self.poll)
                continue
            self.run_job(job)
            done += 1
        self.log("stopped" if self.stopping else "done")
        return 0

    def _on_signal(self, signum, frame) -> None:
        self.stopping = signal.Signals(signum).name

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.stopping is None and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    def run_job(self, job: dict) -> str:
        """Train one claimed job to its end; returns its final state."""
        self.log(f"job {job['id']}: run {job['run_id']}")
        self.killed = False
        proc = self.runner.launch(job, die_with_parent=True)
        if proc is None:
            return self.queue.get(job["id"])["state"]
        last_beat, reason = time.monotonic(), None
        while proc.poll() is None:
            if self.stopping is not None:
                reason = f"the worker {self.name} was stopped ({self.stopping}) while running it"
                self._stop(job, proc)
                break
            try:
                if self._should_stop(job, last_beat):
                    self._stop(job, proc)
                    break
            except self.queue.errors as exc:
                # The database is out of reach: training goes on; the heartbeat resumes
                # when it is back (or readers fail the job if it stays away too long).
                self.log(f"job {job['id']}: cannot reach the job table ({type(exc).__name__}: {exc}); retrying")
            else:
                if time.monotonic() - last_beat >= self.heartbeat:
                    last_beat = time.monotonic()
            self._sleep(self.poll)
        code = proc.wait()
        state = self._retry(lambda: self._record_end(job, code, reason))
        self.log(f"job {job['id']}: {state}")
        return state

    def _record_end(self, job: dict, code: int, reason: str | None) -> str:
        row = self.queue.get(job["id"])
        state = row["state"]
        if state == "running" and row["worker"] == self.name:
            state = self.runner.finish(row, code, reason=reason)
            self.queue.update(job["id"], exit_code=code)
            if self.killed and state == "cancelled":
                self.queue.update(job["id"], error=f"did not stop within {self.grace:g} s of SIGTERM; killed")
        return state

    def _retry(self, call):
        """`call()`, retried every few seconds while the database is out of reach."""
        while True:
            try:
                return call()
            except self.queue.errors as exc:
                self.log(f"cannot reach the job table ({type(exc).__name__}: {exc}); retrying")
                time.sleep(max(self.poll, 2.0))

    def _should_stop(self, job: dict, last_beat: float) -> bool:
        """Whether the job's training must stop: cancel requested, or (at a heartbeat) the
        job is no longer this worker's running job. Beats when it is time."""
        row = self.queue.get(job["id"])
        if row["cancel_requested"]:
            self.log(f"job {job['id']}: cancel requested, stopping its training")
            return True
        if time.monotonic() - last_beat >= self.heartbeat and not self.queue.heartbeat(job["id"], self.name):
            self.log(f"job {job['id']}: no longer running here ({row['state']}); stopping its training")
            return True
        return False

    def _stop(self, job: dict, proc) -> None:
        """SIGTERM the child's group, SIGKILL after the grace period (then `self.killed`)."""
        row = self.queue.get(job["id"])
        args = (proc.pid, row["pid_start"], row["boot_id"], job["run_id"])
        self.killed = stop_group(proc.pid, self.grace, lambda: proc.poll() is None and worker_alive(*args))
        if self.killed:
            self.log(f"job {job['id']}: did not stop within {self.grace:g} s of SIGTERM; killed")
