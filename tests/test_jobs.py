"""The retrain job runner: real tiny trainings where the behaviour needs one, a fake
worker only where a real one cannot show it (a worker that ignores SIGTERM)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_mtl import jobs, processes
from cifar_mtl.cli import jobs_main as main
from cifar_mtl.config import ConfigError
from cifar_mtl.jobs import JobRunner, config_problems, progress_fraction, progress_summary, worker_alive
from cifar_mtl.stores.database import DB_FILE, LEGACY_FILE
from cifar_mtl.runs import list_runs, run_dir
from cifar_mtl.synthetic import make_fake_run
from tests.conftest import stop_jobs, wait_for
from tests.db_engines import engine_home  # noqa: F401 (a fixture: SQLite, then PostgreSQL)

# Tests taking `engine_home` run on both engines; the ones about the SQLite file (a
# damaged file, a home that must not be created) on SQLite only.

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 900  # tiny trainings share two cores with other people's work
TF_NOISE = ("oneDNN", "absl::InitializeLog", "cuInit", "cudart_stub", "cpu_feature_guard")


def tiny(data_dir, **extra) -> dict:
    return {"data_dir": str(data_dir), "finetune_epochs": 1, "batch_size": 16, "val_split": 0.1,
            "augment": "none", "progress_interval": 0.5, **extra}


def status_json(home, run_id) -> dict:
    return json.loads((run_dir(run_id, home) / "status.json").read_text())


# --- fast: validation, bookkeeping, reconciling ------------------------------------------


@pytest.mark.parametrize("run_id", ["../x", "a;rm -rf", "$(touch pwned)", "x/../../y", "", " lead"])
def test_path_tricks_and_shell_metacharacters_in_run_ids_are_refused(engine_home, home, run_id):
    r = JobRunner(home, autostart=False)
    if run_id == "":
        job_id = r.submit({"name": "ok"}, run_id=run_id)  # empty means "make one up"
        assert r.get(job_id, refresh=False)["run_id"].startswith("ok-")
        return
    with pytest.raises(ValueError, match="invalid run id"):
        r.submit({}, run_id=run_id)
    assert r.list_jobs(refresh=False).empty
    assert not (home / "x").exists() and not (home.parent / "y").exists()


def test_bad_configs_are_refused_before_anything_is_stored(engine_home, home):
    r = JobRunner(home, autostart=False)
    with pytest.raises(ConfigError) as err:
        r.submit({"name": "a;rm -rf /", "label_smoothing": 1.5, "weights": "/no/such.h5"})
    assert "name" in str(err.value) and "label_smoothing" in str(err.value) and "weights" in str(err.value)
    with pytest.raises(ConfigError, match="unknown key"):
        r.submit({"epochs": 3})
    assert r.list_jobs(refresh=False).empty
    assert not (home / "runs").exists()


def test_run_id_already_used_by_a_job_or_a_run_is_refused(engine_home, home):
    r = JobRunner(home, autostart=False)
    r.submit({}, run_id="taken")
    with pytest.raises(ValueError, match="already used by a job"):
        r.submit({}, run_id="taken")
    make_fake_run("existing", home, n=20)
    with pytest.raises(ValueError, match="already used by a run folder"):
        r.submit({}, run_id="existing")
    assert len(r.list_jobs(refresh=False)) == 1


def test_queued_job_is_listed_and_cancelled_at_once(engine_home, home):
    r = JobRunner(home, autostart=False)
    job_id = r.submit({"finetune_epochs": 2}, run_id="waiting", submitted_by="ana")
    df = r.list_jobs()
    assert list(df.columns) == jobs.JOB_COLUMNS
    assert df.loc[0, "state"] == "queued" and df.loc[0, "run_id"] == "waiting"
    job = r.get(job_id)
    assert job["config"]["finetune_epochs"] == 2 and job["submitted_by"] == "ana"
    assert job["progress"] is None and job["log_tail"] == "" and r.logs(job_id) == ""
    assert r.cancel(job_id) == "cancelled"
    assert r.get(job_id)["state"] == "cancelled"
    assert r.cancel(job_id) == "cancelled"  # cancelling again changes nothing
    assert not run_dir("waiting", home).exists()


def test_unknown_job_is_a_clear_error(engine_home, home):
    r = JobRunner(home, autostart=False)
    with pytest.raises(jobs.JobError, match="no job 41"):
        r.get(41)


def test_demo_queues_both_variants(engine_home, home):
    r = JobRunner(home, autostart=False)
    ids = r.submit_demo({"train_subset": 100, "finetune_epochs": 1})
    variants = [r.get(i, refresh=False)["config"]["variant"] for i in ids]
    assert variants == ["single", "multitask"]
    assert all(r.get(i, refresh=False)["config"]["train_subset"] == 100 for i in ids)


def _insert_running(r: JobRunner, run_id: str, pid: int, pid_start, boot_id) -> int:
    job_id = r.submit({}, run_id=run_id)
    assert r._update(job_id, "queued", state="running", started_at=jobs.now_iso(), pid=pid,
                     pid_start=pid_start, boot_id=boot_id)
    run_dir(run_id, r.home).mkdir(parents=True)
    return job_id


def test_worker_alive_rejects_reused_pids_and_other_boots():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "run-x"])
    try:
        start = processes.process_start(proc.pid)
        boot = processes.boot_id()
        wait_for(lambda: b"run-x" in open(f"/proc/{proc.pid}/cmdline", "rb").read(), 10, "exec")
        assert worker_alive(proc.pid, start, boot, "run-x")
        assert not worker_alive(proc.pid, start + 1, boot, "run-x")  # same pid, another process
        assert not worker_alive(proc.pid, start, "another-boot", "run-x")  # machine restarted
        assert not worker_alive(proc.pid, start, boot, "run-y")  # not this job's worker
    finally:
        proc.kill()
        proc.wait()
    assert not worker_alive(proc.pid, start, boot, "run-x")


def test_dead_worker_is_failed_with_reason_as_soon_as_anyone_looks(engine_home, home):
    r = JobRunner(home, autostart=False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    job_id = _insert_running(r, "vanished", gone.pid, 1, processes.boot_id())
    (run_dir("vanished", home) / "train.log").write_text("epoch 1/3 step 4\n")
    job = r.get(job_id)
    assert job["state"] == "failed"
    assert "gone" in job["error"] and "epoch 1/3 step 4" in job["error"]
    assert status_json(home, "vanished")["state"] == "failed"  # the run says so too


def test_pid_now_used_by_another_process_is_not_taken_for_the_worker(engine_home, home):
    r = JobRunner(home, autostart=False)
    other = subprocess.Popen(["sleep", "60"])
    try:
        job_id = _insert_running(r, "reused", other.pid, processes.process_start(other.pid), processes.boot_id())
        assert r.get(job_id)["state"] == "failed"
        assert other.poll() is None  # and nobody signalled the stranger
        assert r.cancel(job_id) == "failed"
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_finished_run_state_wins_over_a_missing_worker(engine_home, home):
    r = JobRunner(home, autostart=False)
    job_id = _insert_running(r, "done-run", 2**22 + 7, None, None)
    jobs.write_status(run_dir("done-run", home), "succeeded")
    assert r.get(job_id)["state"] == "succeeded"


def test_config_problems_are_filed_under_their_fields():
    problems = config_problems({"label_smoothing": 1.5, "name": "a b", "batch_size": 0})
    assert set(problems) == {"label_smoothing", "name", "batch_size"}
    assert "[0, 1)" in problems["label_smoothing"]
    assert config_problems({"seed": "x"}) == {"seed": "expected a whole number, got 'x'"}
    assert "unknown key" in config_problems({"bogus": 1})[""]
    assert config_problems({"variant": "single"}) == {}


def test_clone_values_keep_known_keys_of_the_run(home):
    make_fake_run("old", home, n=20, variant="single", label_smoothing=0.2)
    values = jobs.clone_values("old", home)
    assert values["variant"] == "single" and values["label_smoothing"] == 0.2
    assert "synthetic" not in values and values["batch_size"] == 64  # defaults fill the rest
    assert config_problems(values) == {}


def test_progress_helpers():
    p = {"stage": "finetune", "epoch": 2, "epochs": 3, "step": 5, "steps": 10, "eta_seconds": 65}
    assert progress_fraction(p) == pytest.approx(15 / 30)
    assert progress_fraction({**p, "steps_done": 3, "steps_total": 4}) == 0.75
    assert progress_fraction(None) == 0.0
    assert progress_summary(p) == "finetune, epoch 2/3, step 5/10, ETA 1m05s"
    assert progress_summary(None) == "no progress yet"
    # While the test set is predicted, the line says so instead of a finished epoch's last step.
    predicting = {**p, "phase": "predict", "stage": "predict", "epoch": None, "epochs": None,
                  "step": 3, "steps": 40, "steps_done": 3, "steps_total": 40, "eta_seconds": 12}
    assert progress_summary(predicting) == "predicting the test set, batch 3/40, ETA 0m12s"
    assert progress_fraction(predicting) == pytest.approx(3 / 40)


# --- the command line: messages, not tracebacks -----------------------------------------------


def test_submit_says_what_was_queued_and_how_to_follow_it(engine_home, home, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"finetune_epochs": 1}))
    homed = home / "other home"
    assert main(["submit", "--config", str(config), "--set", "seed=3", "--run-id", "q1", "--home", str(homed)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"job 1 queued: run q1 from {config} with seed=3"
    assert lines[1:] == ["follow it with:"] + [f"  python -m cifar_mtl jobs {c} 1 --home '{homed}'"
                                               for c in ("show", "logs", "wait")]
    assert main(["cancel", "1", "--home", str(homed)]) == 0
    capsys.readouterr()
    assert main(["logs", "1", "--home", str(homed)]) == 0
    assert capsys.readouterr().out == "job 1 has no log yet (cancelled)\n"


@pytest.fixture
def idle_runner(engine_home):
    """A runner that starts nothing itself; whatever the test's commands start is stopped after it."""
    r = JobRunner(engine_home, autostart=False)
    yield r
    stop_jobs(r)


def test_jobs_list_is_a_terminal_table(idle_runner, capsys):
    r = idle_runner
    first = r.submit({}, run_id="waiting")
    second = r.submit({}, run_id="broken")
    r._update(second, state="failed", finished_at="2026-11-25T21:03:31+0000", pid=2156, exit_code=1,
              error="the worker exited with code 1; last log line: " + "x" * 200 + "\nmore")
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["job", "run", "state", "queued", "started", "finished", "pid", "error"]
    broken, waiting = lines[1], lines[2]
    assert broken.split()[:3] == [str(second), "broken", "failed"] and " 2156 " in broken
    assert "2026-11-25 21:03" in broken and broken.endswith("...") and "more" not in broken
    assert waiting.split()[:3] == [str(first), "waiting", "queued"]
    assert waiting.split()[-4:] == ["-", "-", "-", "-"]  # started, finished, pid, error
    assert "nan" not in "\n".join(lines).lower() and "None" not in "\n".join(lines)
    assert max(map(len, lines)) < 160


@pytest.mark.parametrize("name", [DB_FILE, LEGACY_FILE])  # the file, or the file under its old name
def test_a_damaged_database_is_one_line_and_exit_1(home, capsys, name):
    (home / name).write_bytes(os.urandom(4096))
    for argv in (["list"], ["show", "1"], ["logs", "1"], ["cancel", "1"], ["wait", "1"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "is not a usable SQLite database" in err[0] and "move it aside" in err[0]
    with pytest.raises(jobs.JobStoreError):  # the app shows JobError messages as they are
        JobRunner(home)


BIG = "99999999999999999999"  # beyond SQLite's integers: once an OverflowError traceback


@pytest.mark.parametrize("argv, says", [
    (["show", BIG], f"no job {BIG} in "), (["show", "--", "-5"], "no job -5 in "), (["show", "0"], "no job 0 in "),
    (["logs", BIG], f"no job {BIG} in "), (["cancel", "--", "-1"], "no job -1 in "), (["wait", BIG], f"no job {BIG} in "),
    (["show", "abc"], "invalid int value: 'abc'"), (["logs", "1", "--lines", "x"], "invalid int value: 'x'"),
    (["cancel", "1", "--grace", "nan"], "--grace: expected a finite number of seconds"),
    (["wait", "1", "--timeout", "-1"], "--timeout: expected a finite number of seconds, 0 or more"),
    ([], "the following arguments are required"),
])
def test_bad_job_ids_and_values_are_refused_without_a_traceback(idle_runner, capsys, argv, says):
    idle_runner.submit({}, run_id="one")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_reading_commands_do_not_create_a_home(tmp_path, capsys):
    missing = tmp_path / "no" / "home"
    assert main(["list", "--home", str(missing)]) == 0
    assert "no jobs yet" in capsys.readouterr().out
    for argv in (["show", "3"], ["logs", "3"], ["cancel", "3"], ["wait", "3"]):
        assert main([*argv, "--home", str(missing)]) == 2
        assert "no job 3: there is no job database" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_a_home_that_cannot_be_made_is_one_line(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    config = tmp_path / "c.json"
    config.write_text("{}")
    assert main(["submit", "--config", str(config), "--home", str(tmp_path / "file" / "home")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--home" in err[0]


def test_workers_get_tensorflow_quieted_unless_the_user_chose(home, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert jobs._child_env(home)["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert jobs._child_env(home)["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert "TF_ENABLE_ONEDNN_OPTS" not in jobs._child_env(home) or os.environ.get("TF_ENABLE_ONEDNN_OPTS")


def test_job_files_are_ignored_by_git():
    if not shutil.which("git") or not (REPO / ".git").exists():
        pytest.skip("needs git and the project's checkout")
    paths = [f"artifacts/{jobs.LOCK_FILE}", f"artifacts/{jobs.SUPERVISOR_LOG}", "artifacts/jobs/job-1.json",
             f"artifacts/{DB_FILE}", f"artifacts/{DB_FILE}-wal", "artifacts/exports/x.csv"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True,
                          text=True)
    assert done.stdout.split() == paths


# --- real workers --------------------------------------------------------------------------


@pytest.mark.slow  # a real worker process
def test_tiny_job_queue_restart_success_then_cancel(runner, home, fake_cifar_dir):
    first = runner.submit(tiny(fake_cifar_dir), run_id="tiny-ok")
    # Enough training left after the first step that SIGTERM lands mid-training.
    second = runner.submit(tiny(fake_cifar_dir, variant="single", finetune_epochs=4), run_id="tiny-cancel")

    # refresh=False: only reads the table, so the detached supervisor alone moves the queue.
    wait_for(lambda: runner.get(first, refresh=False)["state"] == "running", what="job 1 to start")
    assert runner.get(second, refresh=False)["state"] == "queued"  # limit 1: it waits
    wait_for(lambda: (runner.get(first, refresh=False)["progress"] or {}).get("step"), what="job 1 progress")

    restarted = JobRunner(home)  # an app restart: a new runner finds the job running
    job = restarted.get(first)
    assert job["state"] == "running" and job["pid"] == runner.get(first)["pid"]
    assert job["progress"]["stage"] == "finetune" and job["progress"]["epochs"] == 1
    assert restarted.get(second)["state"] == "queued"

    wait_for(lambda: runner.get(first, refresh=False)["state"] != "running", what="job 1 to end")
    job = runner.get(first)
    assert job["state"] == "succeeded", job["log_tail"]
    log = (run_dir("tiny-ok", home) / "train.log").read_text()
    assert not [word for word in TF_NOISE if word in log], log[:3000]  # TensorFlow's start-up chatter
    assert job["error"] is None and job["exit_code"] == 0
    row = list_runs(home).set_index("run_id").loc["tiny-ok"]
    assert row["complete"] and row["state"] == "succeeded"

    # The slot is free: the queued job starts without anyone calling the runner.
    wait_for(lambda: (runner.get(second, refresh=False)["progress"] or {}).get("step"), what="job 2 training")
    assert runner.cancel(second, grace=120) == "cancelled"
    job = runner.get(second)
    assert job["state"] == "cancelled" and "killed" not in (job["error"] or "")
    status = status_json(home, "tiny-cancel")
    assert status["state"] == "cancelled" and "SIGTERM" in status["error"]  # written by the trainer
    assert not (run_dir("tiny-cancel", home) / "metrics.json").exists()


@pytest.mark.slow  # a real worker process
def test_worker_killed_with_sigkill_is_reported_failed(engine_home, runner, home, fake_cifar_dir):
    # engine_home first: the runner opens the database it chose
    job_id = runner.submit(tiny(fake_cifar_dir), run_id="tiny-killed")
    wait_for(lambda: status_json(home, "tiny-killed").get("state") == "running"
             if (run_dir("tiny-killed", home) / "status.json").exists() else False, what="the trainer to start")
    os.killpg(runner.get(job_id, refresh=False)["pid"], signal.SIGKILL)
    wait_for(lambda: runner.get(job_id, refresh=False)["state"] != "running", what="the supervisor to notice")
    job = runner.get(job_id)
    assert job["state"] == "failed" and "SIGKILL" in job["error"]
    assert job["exit_code"] == -signal.SIGKILL
    assert status_json(home, "tiny-killed")["state"] == "failed"


@pytest.mark.slow  # a real worker process
def test_cli_bad_data_path_with_shell_metacharacters_fails_harmlessly(home, tmp_path, capsys):
    marker = tmp_path / "pwned"
    data_dir = f"/nonexistent; touch {marker}1 $(touch {marker}2) `touch {marker}3` | touch {marker}4"
    config = tmp_path / "bad.json"
    config.write_text(json.dumps(tiny(data_dir)))
    assert main(["submit", "--config", str(config), "--set", "finetune_epochs=x"]) == 2
    assert main(["submit", "--config", str(config), "--run-id", "$(reboot)"]) == 2
    assert main(["submit", "--config", str(config), "--run-id", "bad-data"]) == 0
    out = capsys.readouterr().out
    job_id = int(re.match(r"job (\d+) queued: run bad-data from ", out).group(1))
    for command in ("show", "logs", "wait"):
        assert f"python -m cifar_mtl jobs {command} {job_id}\n" in out
    assert main(["wait", str(job_id), "--timeout", str(TIMEOUT_S)]) == 1
    assert main(["show", str(job_id)]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "does not exist" in out
    log = (run_dir("bad-data", home) / "train.log").read_text()
    assert "does not exist" in log and not [word for word in TF_NOISE if word in log], log  # errors still arrive
    assert main(["logs", str(job_id)]) == 0 and "does not exist" in capsys.readouterr().out
    assert main(["list"]) == 0 and "bad-data" in capsys.readouterr().out
    assert main(["cancel", str(job_id)]) == 1  # already ended: nothing to cancel
    assert main(["show", "999"]) == 2
    job = JobRunner(home).get(job_id)
    assert job["state"] == "failed" and "does not exist" in job["error"]
    assert not any(marker.with_name(f"pwned{i}").exists() for i in range(1, 5))
    wait_for(lambda: not JobRunner(home).supervisor_running(), timeout=30, what="the supervisor to exit")


# --- a fake worker: one that ignores SIGTERM, which the real trainer never does -------------

FAKE_PYTHON = """#!{python}
import json, os, signal, sys, time
args = sys.argv[1:]
if args[:3] != ["-m", "cifar_mtl", "train"]:  # the supervisor itself runs for real
    os.execv({python!r}, [{python!r}, *args])
folder = os.path.join(os.environ["CIFAR_MTL_HOME"], "runs", args[args.index("--run-id") + 1])
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(os.path.join(folder, "status.json"), "w") as f:
    json.dump({{"state": "running", "pid": os.getpid(), "error": None}}, f)
print("stubborn worker: ignoring SIGTERM", flush=True)
while True:
    time.sleep(0.2)
"""


def test_worker_ignoring_sigterm_is_killed_after_the_grace_period(engine_home, home, tmp_path):
    fake = tmp_path / "python-stubborn"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    r = JobRunner(home, python=str(fake))
    job_id = r.submit({}, run_id="stubborn")
    wait_for(lambda: "ignoring SIGTERM" in r.logs(job_id), timeout=60, what="the fake worker")
    pid = r.get(job_id)["pid"]
    assert r.cancel(job_id, grace=1.0) == "cancelled"
    job = r.get(job_id)
    assert "killed" in job["error"]
    assert status_json(home, "stubborn")["state"] == "cancelled"
    assert not worker_alive(pid, job["pid_start"], None, "stubborn")
    wait_for(lambda: not r.supervisor_running(), timeout=30, what="the supervisor to exit")


# --- cross-validation jobs (issue 16) ---------------------------------------------------------

CV_TINY = {"backbone": "airbench", "pooling": "max", "dropout": 0.0, "optimizer": "sgd", "finetune_epochs": 1,
           "batch_size": 16, "val_split": 0.0, "augment": "none", "progress_interval": 0.1,
           "mixed_precision": "off"}


def test_a_crossval_job_runs_the_crossval_command(engine_home, home):
    from cifar_mtl.config import CROSSVAL_KEY
    from cifar_mtl.training.crossval import CROSSVAL_KEY as RUN_KEY

    assert CROSSVAL_KEY == RUN_KEY  # the job's config is the run's config.json form
    r = JobRunner(home, autostart=False)
    job_id = r.submit_crossval({"name": "x", "seed": 7}, folds=3, run_id="cv-x")
    config = r.get(job_id, refresh=False)["config"]
    assert config["crossval"] == {"folds": 3, "seed": 7} and jobs.is_crossval(config)
    text, cmd = jobs.job_command(json.dumps(config), Path("/j/job-1.json"), "cv-x", "py")
    assert cmd == ["py", "-m", "cifar_mtl", "crossval", "--folds", "3", "--config", "/j/job-1.json",
                   "--run-id", "cv-x", "--no-progress-bar"]
    assert "crossval" not in json.loads(text) and json.loads(text)["seed"] == 7  # a file `crossval --config` takes
    plain = r.submit({"name": "t"})
    assert jobs.job_command(json.dumps(r.get(plain, refresh=False)["config"]), Path("c.json"), "t1", "py")[1][3] == "train"
    for folds in (1, 21, True, "3"):
        with pytest.raises(jobs.JobError, match="between 2 and 20"):
            r.submit_crossval({}, folds=folds)


def test_only_a_cancelled_or_failed_crossval_job_is_resumed(engine_home, home):
    r = JobRunner(home, autostart=False)
    plain = r.submit({})
    cv = r.submit_crossval({}, folds=2, run_id="cv-r")
    with pytest.raises(jobs.JobError, match="training run, which starts over"):
        r.resume(plain)
    with pytest.raises(jobs.JobError, match="is queued; only a cancelled or failed"):
        r.resume(cv)
    assert r.cancel(cv) == "cancelled"
    assert r.resume(cv) == "queued"
    job = r.get(cv, refresh=False)
    assert job["state"] == "queued" and job["error"] is None and job["finished_at"] is None


def test_a_job_pins_its_label_set_version(engine_home, home):
    from cifar_mtl import labelsets as ls

    r = JobRunner(home, autostart=False)
    with pytest.raises(ConfigError, match="no label set named 'fixes'"):
        r.submit({"labels": "fixes"})
    table = ls.from_ranking(__import__("pandas").DataFrame({"index": [1], "label": [0], "suggested": [2]}), 1)
    ls.save_label_set(table, "fixes", home)
    ls.save_label_set(table, "fixes", home)
    assert r.get(r.submit({"labels": "fixes"}), refresh=False)["config"]["labels"] == "fixes@v2"
    assert r.get(r.submit_crossval({"labels": "fixes@v1"}, 2), refresh=False)["config"]["labels"] == "fixes@v1"


def test_progress_summary_names_the_fold():
    progress = {"stage": "finetune", "epoch": 1, "epochs": 1, "step": 3, "steps": 4, "fold": 2, "folds": 5,
                "steps_done": 7, "steps_total": 20}
    assert progress_summary(progress).startswith("fold 2/5, finetune, epoch 1/1, step 3/4")
    assert progress_fraction(progress) == 0.35


def test_crossval_queue_and_jobs_submit_crossval(engine_home, home, capsys, monkeypatch):
    from cifar_mtl.cli import main as cli_main

    monkeypatch.setattr(JobRunner, "ensure_supervisor", lambda self: None)  # only the queue is looked at
    assert cli_main(["crossval", "--config", "cpu_crossval", "--folds", "4", "--queue", "--run-id", "cv-q",
                     "--set", "seed=3"]) == 0
    assert "4-fold cross-validation run cv-q" in capsys.readouterr().out
    assert main(["submit", "--config", "cpu_crossval", "--crossval", "3"]) == 0
    rows = JobRunner(home, autostart=False).list_jobs(refresh=False)
    configs = [JobRunner(home, autostart=False).get(int(i), refresh=False)["config"] for i in rows["id"]]
    assert sorted(c["crossval"]["folds"] for c in configs) == [3, 4]
    assert main(["resume", str(int(rows["id"].iloc[0]))]) == 2
    assert "only a cancelled or failed job" in capsys.readouterr().err


@pytest.mark.slow  # a real worker process: three folds, cancelled in the second, resumed
def test_crossval_job_shows_folds_cancels_and_resumes_at_the_unfinished_fold(runner, home, tmp_path):
    from cifar_mtl.synthetic import write_fake_cifar
    from cifar_mtl.training.crossval import fold_file

    data_dir = write_fake_cifar(tmp_path / "data", n_train_per_batch=12, n_test=20)
    job_id = runner.submit_crossval({**CV_TINY, "data_dir": str(data_dir), "finetune_epochs": 30}, folds=3,
                                    run_id="cv-job")
    folder = run_dir("cv-job", home)

    def in_fold_2():
        progress = runner.get(job_id, refresh=False)["progress"] or {}
        return progress.get("fold") == 2 and progress.get("step")

    wait_for(in_fold_2, what="the second fold to train")
    shown = format_job_text(runner, job_id)
    assert "progress: fold 2/3, finetune" in shown
    assert runner.cancel(job_id, grace=120) == "cancelled"
    assert fold_file(folder, 0).exists() and not fold_file(folder, 1).exists()
    assert runner.resume(job_id) == "queued"
    wait_for(lambda: runner.get(job_id, refresh=False)["state"] not in ("queued", "running"), what="the job to end")
    job = runner.get(job_id)
    assert job["state"] == "succeeded", job["log_tail"]
    log = (folder / "train.log").read_text()
    assert "resuming: folds [1] of 3 already finished" in log
    assert log.count("fold 1/3: training") == 1  # the finished fold was not trained again
    assert (folder / "train_predictions.parquet").exists()


def format_job_text(runner, job_id) -> str:
    from cifar_mtl.cli import format_job

    return format_job(runner.get(job_id))
