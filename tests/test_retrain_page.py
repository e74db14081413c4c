"""The Retrain page, run on its own with AppTest (no navigation.py needed)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cifar_mtl import jobs, processes
from cifar_mtl.config import load_config_file
from cifar_mtl.runs import atomic_write_json, run_dir
from cifar_mtl.synthetic import make_fake_run
from tests.conftest import wait_for

PAGE = str(Path(__file__).resolve().parent.parent / "views" / "retrain.py")
RUNNER_AUTOSTART = False  # the `runner` fixture (conftest) starts no supervisor by itself


def page(**state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def texts(elements) -> str:
    """The elements' text as a reader sees it: without the backslashes that escape markdown."""
    return re.sub(r"\\(.)", r"\1", "\n".join(str(e.value) for e in elements))


def test_empty_home_shows_the_defaults_and_no_jobs(runner):
    at = page()
    assert not at.exception and not at.error
    assert at.selectbox(key="rt_source").value == "(defaults)"
    assert at.radio(key="rt_variant").value == "multitask"
    assert at.number_input(key="rt_label_smoothing").value == pytest.approx(0.1)
    assert "No jobs yet" in texts(at.caption)
    assert not at.button(key="rt_submit").disabled


def test_problems_show_under_their_fields_and_block_submitting(runner):
    at = page()
    at.text_input(key="rt_name").input("x; rm -rf ~").run()
    at.number_input(key="rt_label_smoothing").set_value(1.5).run()
    at.selectbox(key="rt_weights").set_value("local file").run()
    at.text_input(key="rt_weights_path").input("/no/such/weights.h5").run()
    at.number_input(key="rt_finetune_epochs").set_value(0).run()
    errors = texts(at.error)
    for field in ("name:", "label_smoothing:", "weights:", "finetune_epochs:"):
        assert field in errors
    assert at.button(key="rt_submit").disabled
    assert "4 problem(s)" in texts(at.caption)
    assert runner.list_jobs(refresh=False).empty
    at.text_input(key="rt_run_id").input("../escape").run()
    assert "invalid run id" in texts(at.error)


@pytest.mark.slow  # a real worker process
def test_clone_change_submit_and_a_bad_data_path_fails_visibly(runner, home, tmp_path):
    make_fake_run("base-run", home, n=20, variant="single", label_smoothing=0.2)
    at = page(run_id="base-run", reviewer="ada")
    # Prefilled from the run under review.
    assert at.selectbox(key="rt_source").value == "base-run"
    assert at.radio(key="rt_variant").value == "single"
    assert at.number_input(key="rt_label_smoothing").value == pytest.approx(0.2)
    # Change the smoothing, point at data that is not there, train.
    at.number_input(key="rt_label_smoothing").set_value(0.05).run()
    at.text_input(key="rt_data_dir").input(str(tmp_path / "missing-cifar")).run()
    at.number_input(key="rt_finetune_epochs").set_value(1).run()
    at.button(key="rt_submit").click().run()
    assert "queued" in texts(at.success), texts(at.error)
    table = runner.list_jobs(refresh=False)
    assert len(table) == 1
    job_id = int(table.loc[0, "id"])
    job = runner.get(job_id, refresh=False)
    assert job["config"]["label_smoothing"] == 0.05 and job["config"]["variant"] == "single"
    assert job["submitted_by"] == "ada"

    wait_for(lambda: runner.get(job_id)["state"] in jobs.FINAL_STATES, what="the job to end")
    assert runner.get(job_id)["state"] == "failed"
    at.run()
    assert not at.exception
    shown = texts(at.error)
    assert f"Failed: DataError: {tmp_path / 'missing-cifar'}" in shown and "does not exist" in shown


def test_cloning_a_fast_backbone_run_keeps_its_recipe(runner, home):
    recipe = load_config_file("cpu_fast").to_dict()
    make_fake_run("fast-run", home, n=20)
    folder = run_dir("fast-run", home)
    atomic_write_json(folder / "config.json", {**recipe, "finetune_epochs": 5})
    at = page(run_id="fast-run", reviewer="ada")
    assert at.selectbox(key="rt_backbone").value == "airbench"
    assert at.selectbox(key="rt_optimizer").value == "sgd"
    assert at.selectbox(key="rt_tta").value == recipe["tta"] == "flip_shift"
    at.number_input(key="rt_finetune_epochs").set_value(6).run()
    at.button(key="rt_submit").click().run()
    assert "queued" in texts(at.success), texts(at.error)
    job = runner.get(int(runner.list_jobs(refresh=False).loc[0, "id"]), refresh=False)
    # Everything but the changed field is the source run's recipe, shown or not.
    assert {k: v for k, v in job["config"].items() if k != "finetune_epochs"} == {
        k: v for k, v in recipe.items() if k != "finetune_epochs"
    }
    assert job["config"]["finetune_epochs"] == 6
    runner.cancel(int(job["id"]), grace=2)


def test_running_job_shows_progress_metrics_log_and_cancels(runner, home):
    # A stand-in worker held at a chosen point of training: a real one cannot be paused.
    job_id = runner.submit({"finetune_epochs": 2}, run_id="held")
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "held"], start_new_session=True)
    try:
        assert runner._update(job_id, "queued", state="running", started_at=jobs.now_iso(), pid=worker.pid,
                              pid_start=processes.process_start(worker.pid), boot_id=processes.boot_id())
        folder = run_dir("held", home)
        folder.mkdir(parents=True)
        (folder / "train.log").write_text("finetune epoch 1/2 started\n")
        atomic_write_json(folder / "status.json", {"state": "running", "pid": worker.pid, "error": None})
        atomic_write_json(folder / "progress.json", {
            "stage": "finetune", "epoch": 2, "epochs": 2, "step": 3, "steps": 6, "eta_seconds": 30,
            "metrics": {"class_accuracy": 0.4321, "loss": 1.5}})
        wait_for(lambda: b"held" in open(f"/proc/{worker.pid}/cmdline", "rb").read(), 10, "exec")
        at = page()
        assert not at.exception
        bar = at.get("progress")[0]
        assert "finetune, epoch 2/2, step 3/6, ETA 0m30s" in json.dumps(bar.proto.text)
        assert "class_accuracy 0.4321" in texts(at.caption)
        assert "finetune epoch 1/2 started" in texts(at.code)
        at.button(key=f"rt_cancel_{job_id}").click().run()
        assert worker.wait(timeout=30) is not None
        assert runner.get(job_id)["state"] == "cancelled"
        assert json.loads((folder / "status.json").read_text())["state"] == "cancelled"
        assert f"Job {job_id}: cancelled." in texts(at.info)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_the_form_round_trips_a_config_and_takes_its_fields_from_settings():
    from cifar_mtl.app import retrain_form
    from cifar_mtl.config import SETTINGS, TrainConfig

    values = {**TrainConfig().to_dict(), "weights": "/w/model.weights.h5", "train_subset": 1000,
              "animal_label_smoothing": 0.3}
    state = retrain_form.form_state(values, "some-run")
    assert state["rt_weights"] == "local file" and state["rt_weights_path"] == "/w/model.weights.h5"
    assert state["rt_finetune_blocks"] == 0 and state["rt_animal_same"] is False
    assert retrain_form.form_values(state) == values
    # every number the config knows has a number box, with the config's own label and kind
    assert set(retrain_form.NUMBERS) == {f for f, s in SETTINGS.items() if s.kind in ("int", "float", "rate")}


def test_a_warmup_longer_than_the_stage_is_refused_where_it_can_be_seen(runner, home):
    recipe = load_config_file("cpu_fast").to_dict()  # 4 warmup epochs
    make_fake_run("fast-run", home, n=20)
    atomic_write_json(run_dir("fast-run", home) / "config.json", recipe)
    at = page(run_id="fast-run", reviewer="ada")
    assert not at.button(key="rt_submit").disabled
    at.number_input(key="rt_finetune_epochs").set_value(2).run()
    assert any("warmup_epochs: 4 is longer than the finetune stage (2 epochs)" in e for e in texts(at.error).split("\n"))
    assert at.button(key="rt_submit").disabled
    assert "Warmup epochs" in texts(at.caption)  # the summary names the field
    more = next(e for e in at.expander if e.label == "More settings")
    assert more.proto.expanded  # the field's message is not hidden in a closed expander


def test_label_set_field_lists_saved_versions_and_the_job_trains_on_one(runner, home):
    import pandas as pd

    from cifar_mtl.labelsets import from_ranking, save_label_set

    ranking = pd.DataFrame({"index": [3, 8], "label": [1, 4], "suggested": [2, 5]})
    for top in (1, 2):
        save_label_set(from_ranking(ranking, top), "round1", home)
    at = page()
    box = at.selectbox(key="rt_labels")
    assert box.value is None and box.options == ["none (labels as given)", "round1@v2", "round1@v1"]
    box.set_value("round1@v1").run()
    assert not at.error
    at.button(key="rt_submit").click().run()
    assert "queued" in texts(at.success), texts(at.error)
    job = runner.get(int(runner.list_jobs(refresh=False)["id"].iloc[0]), refresh=False)
    assert job["config"]["labels"] == "round1@v1"


def test_a_cloned_run_with_an_unknown_label_set_shows_the_problem(runner, home):
    make_fake_run("noisy", home, n=20, variant="single")
    folder = run_dir("noisy", home)
    atomic_write_json(folder / "config.json", {**json.loads((folder / "config.json").read_text()), "labels": "gone@v3"})
    at = page(run_id="noisy")
    assert at.selectbox(key="rt_labels").value == "gone@v3"
    assert "no label set named 'gone'" in texts(at.error)
    assert at.button(key="rt_submit").disabled
    assert runner.list_jobs(refresh=False).empty
