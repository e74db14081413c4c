"""Job workers on other machines (`python -m cifar_mtl worker`): two worker processes
against one database claim jobs without running any twice, a worker killed with
SIGKILL leaves a job that readers fail once its heartbeat is stale, and a cancel
reaches the worker that runs the job.

The workers are real `cifar_mtl worker` processes named like machines of their own
("gpu-a:1"), so this test process reads their jobs as another machine would: by
heartbeat, cancelling through the table. Their training is a fake trainer (a stand-in
interpreter for `python -m cifar_mtl train`) that keeps status.json as the real one
does and trains for `finetune_epochs` x 0.5 s; the real trainer under the local
supervisor is tested in test_jobs.py, and one real tiny training runs through a worker
below (slow).
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_mtl import processes
from cifar_mtl.jobs import JobRunner
from cifar_mtl.runs import run_dir
from cifar_mtl.stores.database import DB_ENV
from tests.conftest import wait_for
from tests.db_engines import engine_home, new_target  # noqa: F401 (engine_home: a fixture)

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 120

FAKE_PYTHON = """#!{python}
import json, os, signal, sys, time
args = sys.argv[1:]
if args[:3] != ["-m", "cifar_mtl", "train"]:  # the worker itself runs for real
    os.execv({python!r}, [{python!r}, *args])
run_id = args[args.index("--run-id") + 1]
config = json.load(open(args[args.index("--config") + 1]))
folder = os.path.join(os.environ["CIFAR_MTL_HOME"], "runs", run_id)

def status(state, error=None):
    tmp = os.path.join(folder, ".status.tmp")
    with open(tmp, "w") as f:
        json.dump({{"state": state, "pid": os.getpid(), "error": error}}, f)
    os.replace(tmp, os.path.join(folder, "status.json"))

def stop(signum, frame):
    status("cancelled", "stopped by SIGTERM")
    print("fake trainer: cancelled", flush=True)
    sys.exit(130)

signal.signal(signal.SIGTERM, stop)
status("running")
print("fake trainer: training", run_id, "pid", os.getpid(), flush=True)
time.sleep(config["finetune_epochs"] * 0.5)
status("succeeded")
print("fake trainer: done", flush=True)
"""


@pytest.fixture
def fake_python(tmp_path):
    path = tmp_path / "python-fake-trainer"
    path.write_text(FAKE_PYTHON.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def postgres_home(home, monkeypatch):
    """The test's home, with the job queue in a fresh PostgreSQL database."""
    monkeypatch.setenv(DB_ENV, new_target("postgresql", None))
    return home


class Workers:
    """Worker processes started by a test, each with its output in a file; all stopped after."""

    def __init__(self, home, python, folder):
        self.home, self.python, self.folder = home, python, folder
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *extra: str) -> subprocess.Popen:
        out = open(self.folder / f"{name}.out", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cifar_mtl", "worker", "--home", str(self.home), "--name", name,
             "--python", str(self.python), "--poll", "0.2", "--heartbeat", "0.5", "--grace", "5", *extra],
            cwd=REPO, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        wait_for(lambda: "claiming jobs from" in self.output(name) or proc.poll() is not None, WAIT_S,
                 f"worker {name} to start")
        assert proc.poll() is None, self.output(name)
        return proc

    def output(self, name: str) -> str:
        return (self.folder / f"{name}.out").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(home, fake_python, tmp_path):
    w = Workers(home, fake_python, tmp_path)
    yield w
    w.stop_all()


def fake(seconds: float, **extra) -> dict:
    return {"finetune_epochs": int(seconds * 2), **extra}


def test_two_workers_share_the_queue_and_run_no_job_twice(engine_home, workers):
    runner = JobRunner(engine_home, autostart=False)
    workers.start("gpu-a:1")
    workers.start("gpu-b:2")
    ids = [runner.submit(fake(1.5), run_id=f"shared-{k}") for k in range(6)]
    wait_for(lambda: set(runner.list_jobs(refresh=False)["state"]) == {"succeeded"}, WAIT_S, "every job to end")
    jobs = [runner.get(i, refresh=False) for i in ids]
    assert {j["worker"] for j in jobs} == {"gpu-a:1", "gpu-b:2"}  # both took part
    for job in jobs:
        log = (run_dir(job["run_id"], engine_home) / "train.log").read_text()
        assert log.count("fake trainer: training") == 1, log  # started once, by one worker
        assert f"job {job['id']}: starting" in log and job["exit_code"] == 0 and job["error"] is None
    claimed = [line for name in workers.procs for line in workers.output(name).splitlines() if ": run shared-" in line]
    assert len(claimed) == 6  # six claims in all, none repeated
    assert sorted(line.rsplit("run ", 1)[1] for line in claimed) == sorted(j["run_id"] for j in jobs)


def test_a_killed_workers_job_is_failed_by_its_stale_heartbeat(postgres_home, workers):
    runner = JobRunner(postgres_home, autostart=False, stale_after=3)
    worker = workers.start("gpu-a:1")
    job_id = runner.submit(fake(60), run_id="orphaned")
    job = wait_for(lambda: (lambda j: j if j["pid"] else None)(runner.get(job_id, refresh=False)), WAIT_S,
                   "the worker to start the training")
    wait_for(lambda: "fake trainer: training" in runner.logs(job_id), WAIT_S, "the fake trainer")
    assert job["worker"] == "gpu-a:1" and job["state"] == "running"
    worker.send_signal(signal.SIGKILL)  # the machine vanishes, as far as the queue can tell
    worker.wait(timeout=30)
    # The kernel takes the training down with its worker (PR_SET_PDEATHSIG).
    wait_for(lambda: not processes.process_alive(job["pid"], job["pid_start"], None, "orphaned"), 30,
             "the training to die with its worker")
    assert runner.get(job_id)["state"] == "running"  # heartbeat still fresh: not yet judged
    job = wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(runner.get(job_id)), 30,
                   "a reader to fail the job")
    assert job["state"] == "failed"
    assert "gpu-a:1 sent no heartbeat" in job["error"] and "gone" in job["error"]
    assert json.loads((run_dir("orphaned", postgres_home) / "status.json").read_text())["state"] == "failed"


def test_a_cancel_reaches_the_worker_running_the_job(postgres_home, workers):
    runner = JobRunner(postgres_home, autostart=False)
    workers.start("gpu-a:1")
    workers.start("gpu-b:2")
    first = runner.submit(fake(60), run_id="long-1")
    second = runner.submit(fake(60), run_id="long-2")
    for job_id in (first, second):
        wait_for(lambda: "fake trainer: training" in runner.logs(job_id), WAIT_S, f"job {job_id} to train")
    jobs = {job_id: runner.get(job_id, refresh=False) for job_id in (first, second)}
    assert {j["worker"] for j in jobs.values()} == {"gpu-a:1", "gpu-b:2"}
    target, other = jobs[second], jobs[first]
    assert runner.cancel(second, grace=5) == "cancelled"
    assert f"job {second}: cancel requested" in workers.output(target["worker"])
    assert f"job {second}" not in workers.output(other["worker"])
    job = runner.get(second)
    assert job["state"] == "cancelled" and job["exit_code"] == 130 and "killed" not in (job["error"] or "")
    status = json.loads((run_dir("long-2", postgres_home) / "status.json").read_text())
    assert status["state"] == "cancelled" and "SIGTERM" in status["error"]  # the trainer stopped itself
    assert not processes.process_alive(target["pid"], target["pid_start"], None, "long-2")
    # The other worker's job runs on, untouched.
    assert runner.get(first)["state"] == "running"
    assert processes.process_alive(other["pid"], other["pid_start"], None, "long-1")
    assert runner.cancel(first, grace=5) == "cancelled"


def test_the_worker_command_refuses_bad_values(capsys):
    from cifar_mtl.cli import main

    with pytest.raises(SystemExit):
        main(["worker", "--poll", "0"])
    assert "--poll: expected a number of seconds above 0" in capsys.readouterr().err


@pytest.mark.slow  # a real tiny training, through a worker
def test_a_worker_trains_a_real_tiny_run_into_the_shared_folder(postgres_home, tmp_path, fake_cifar_dir):
    runner = JobRunner(postgres_home, autostart=False)
    job_id = runner.submit({"data_dir": str(fake_cifar_dir), "finetune_epochs": 1, "batch_size": 16,
                            "val_split": 0.1, "augment": "none"}, run_id="tiny-remote")
    done = subprocess.run(
        [sys.executable, "-m", "cifar_mtl", "worker", "--home", str(postgres_home), "--exit-when-idle"],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    job = runner.get(job_id)
    assert job["state"] == "succeeded", job["log_tail"]
    # Named "host:pid" by default, as its log says.
    assert job["worker"].startswith(socket.gethostname() + ":") and job["exit_code"] == 0
    assert f"worker {job['worker']}: job {job_id}: succeeded" in done.stdout
    assert (run_dir("tiny-remote", postgres_home) / "metrics.json").exists()


def test_the_retrain_page_shows_which_worker_runs_each_job(engine_home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from cifar_mtl.jobs import LOCAL_JOBS_ENV

    monkeypatch.setenv(LOCAL_JOBS_ENV, "0")  # a team's app: it queues, workers train
    runner = JobRunner(engine_home)
    assert not runner.autostart
    job_id = runner.submit(fake(60), run_id="on-gpu")
    assert runner.queue.claim("gpu-box-3:4242")["id"] == job_id  # as a worker elsewhere would
    runner.submit(fake(60), run_id="waiting")
    at = AppTest.from_file(str(REPO / "views" / "retrain.py"), default_timeout=60).run()
    assert not at.exception
    cards = "\n".join(str(m.value) for m in at.markdown if "**Job" in str(m.value))
    assert "on-gpu` · **running** · on `gpu-box-3:4242`" in cards
    assert "waiting` · **queued** · queued" in cards  # not claimed yet: no worker shown
    assert not runner.supervisor_running()  # the page started no local training
