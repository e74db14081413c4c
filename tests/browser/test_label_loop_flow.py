"""The label loop by clicks: confirm a training image's other label on Mislabels (split
train), build a label set from it, and queue a retrain on that set (then cancel it)."""

from __future__ import annotations

import re

from cifar_mtl.jobs import JobRunner
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.labelsets import labelsets_root, load_label_set
from cifar_mtl.mislabels import load_train_predictions
from cifar_mtl.runs import CONFIG_FILE, atomic_write_json, run_dir
from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from tests.browser.support import assert_clean, choose, goto, keyed, settle, shot, wait_for
from tests.browser.test_retrain_flow import TINY


def test_train_verdict_label_set_and_a_retrain_on_it(app, crossval_run, page):
    url, fx = app
    run_id, suspects = crossval_run
    store = ReviewStore(default_path(fx.home))
    first = suspects[0]
    train = load_train_predictions(run_id, fx.home).set_index("index")
    given, suggested = int(train.loc[first, "label"]), int(train.loc[first, "pred"])
    other = next(k for k in range(10) if k not in (given, suggested))

    # 1. Mislabels, split train: the fixture's suspects come first; confirm one with another label.
    goto(page, f"{url}/suspects?run_id=multi-b&reviewer=ada", "Suspected mislabels")
    keyed(page, "ml_split").get_by_text("train", exact=True).click()
    settle(page)
    keyed(page, f"ml_train_label_{first}").wait_for()
    assert page.get_by_text(re.compile(rf"^1\. #{first} · labelled {CLASS_NAMES[given]}")).count() == 1
    choose(page, "Right label", f"{other} {CLASS_NAMES[other]}", scope=keyed(page, f"ml_train_label_{first}"))
    keyed(page, f"ml_train_confirmed_{first}").click()
    wait_for(lambda: len(store.current_mislabels(split="train")) == 1, what="the train verdict")
    row = store.current_mislabels(split="train").iloc[0]
    assert (int(row["index"]), row["verdict"], int(row["suggested_label"]), row["run_id"]) == (
        first, "confirmed", other, run_id)
    assert store.current_mislabels().empty  # nothing recorded on the test split
    settle(page)
    assert_clean(page)
    shot(page, "label-loop-1-train-verdict")

    # 2. Label sets: preview the relabel, try a bad name, build.
    goto(page, f"{url}/labelsets?reviewer=ada", "Label sets")
    relabels = page.locator("[data-testid='stMetric']").filter(has_text="Relabels").first
    assert relabels.locator("[data-testid='stMetricValue']").inner_text() == "1"
    name_box = page.get_by_role("textbox", name="Label set name")
    name_box.fill("round one")
    name_box.press("Enter")
    settle(page)
    page.get_by_text(re.compile("must be 1-64 letters")).first.wait_for()
    assert_clean(page, allowed_errors=("must be 1-64 letters",))
    name_box.fill("round1")
    name_box.press("Enter")
    settle(page)
    keyed(page, "ls_build").click()
    page.get_by_text(re.compile(r"Saved label set round1@v1")).first.wait_for()
    settle(page)
    assert_clean(page)
    csv = labelsets_root(fx.home) / "round1" / "v1.csv"
    assert csv.is_file()
    table = load_label_set("round1@v1", fx.home)
    assert table[["index", "action", "label", "given_label", "reviewers"]].values.tolist() == [
        [first, "relabel", other, given, "ada"]]
    shot(page, "label-loop-2-label-set")

    # 3. Retrain with the set: the queued job's config names it; then cancel the job.
    atomic_write_json(run_dir("single-a", fx.home) / CONFIG_FILE, TINY)
    runner = JobRunner(fx.home, autostart=False)
    goto(page, f"{url}/jobs?run_id=multi-b&reviewer=ada", "Retrain")
    choose(page, "Start from (clone and change)", re.compile(r"^single-a"))
    choose(page, "Label set", "round1@v1")
    assert_clean(page)
    keyed(page, "rt_submit").click()
    wait_for(lambda: len(runner.list_jobs(refresh=False)) == 1, what="the job to be queued")
    job_id = int(runner.list_jobs(refresh=False)["id"].iloc[0])
    assert runner.get(job_id, refresh=False)["config"]["labels"] == "round1@v1"
    page.get_by_text(re.compile(rf"Job {job_id} queued")).first.wait_for()
    settle(page)
    shot(page, "label-loop-3-retrain-queued")
    keyed(page, f"rt_cancel_{job_id}").click()
    wait_for(lambda: runner.get(job_id, refresh=False)["state"] == "cancelled", timeout=60, what="the cancel")
    page.get_by_text(re.compile("^Cancelled")).first.wait_for(timeout=30_000)
    settle(page)
    assert_clean(page)
