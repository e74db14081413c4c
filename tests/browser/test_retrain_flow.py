"""Retrain: clone a run, change a field, submit a tiny job, watch its progress, cancel it."""

from __future__ import annotations

import re

from cifar_mtl.jobs import JobRunner
from cifar_mtl.runs import CONFIG_FILE, atomic_write_json, run_dir
from tests.browser.support import assert_clean, choose, goto, keyed, settle, shot, wait_for

# Small enough to start in seconds on two cores, long enough (many epochs of the 50 fixture
# training images) to be cancelled while it trains.
TINY = {"variant": "single", "backbone": "resnet9", "resnet_width": 8, "finetune_epochs": 400, "batch_size": 8,
        "val_split": 0.0, "augment": "none", "warmup_epochs": 0.0, "progress_interval": 0.5, "weights": "none"}


def test_clone_submit_watch_and_cancel_a_job(app, page):
    url, fx = app
    atomic_write_json(run_dir("single-a", fx.home) / CONFIG_FILE, TINY)
    runner = JobRunner(fx.home, autostart=False)
    goto(page, f"{url}/jobs?run_id=multi-b&reviewer=ada", "Retrain")

    choose(page, "Start from (clone and change)", re.compile(r"^single-a"))
    seed = page.get_by_role("spinbutton", name="Seed")
    seed.fill("7")
    seed.press("Enter")
    settle(page)
    assert_clean(page)
    keyed(page, "rt_submit").click()
    wait_for(lambda: len(runner.list_jobs(refresh=False)) == 1, what="the job to be queued")
    job_id = int(runner.list_jobs(refresh=False)["id"].iloc[0])
    config = runner.get(job_id, refresh=False)["config"]
    assert config["seed"] == 7 and config["backbone"] == "resnet9" and config["finetune_epochs"] == 400

    # The card's progress bar names the stage and epoch once the worker trains.
    progress = page.locator("[data-testid='stProgress']").filter(has_text=re.compile(r"epoch \d+/400"))
    progress.first.wait_for(timeout=180_000)
    shot(page, "retrain-1-progress")
    keyed(page, f"rt_cancel_{job_id}").click()
    wait_for(lambda: runner.get(job_id, refresh=False)["state"] == "cancelled", timeout=60, what="the cancel")
    page.get_by_text(re.compile("^Cancelled")).first.wait_for(timeout=30_000)
    settle(page)
    assert_clean(page)
    shot(page, "retrain-2-cancelled")
