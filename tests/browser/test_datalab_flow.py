"""Datalab's flags on Mislabels (split train) by clicks: with training embeddings but no saved
flags the page gives the command; after running it, the filter lists only flagged images."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from cifar_mtl.mislabels import read_datalab
from tests.app_fixture import APP
from tests.browser.support import assert_clean, goto, keyed, settle, shot, wait_for
from tests.label_loop_fixture import TWINS, add_train_embeddings


def test_datalab_command_then_filter(app, crossval_run, page):
    url, fx = app
    run_id, _ = crossval_run
    add_train_embeddings(fx, run_id, datalab=False)

    # 1. Embeddings but no saved flags: the command, no filter, no flags on the suspects.
    goto(page, f"{url}/suspects?reviewer=ada", "Suspected mislabels")
    keyed(page, "ml_split").get_by_text("train", exact=True).click()
    settle(page)
    command = f"python -m cifar_mtl mislabels --split train --run {run_id} --datalab"
    page.get_by_text(command).first.wait_for()
    assert keyed(page, "ml_train_issues").count() == 0
    assert page.get_by_text("Datalab: ").count() == 0
    assert_clean(page)
    shot(page, "datalab-1-command")

    # 2. The command, as a person would run it; then a reload shows the filter.
    done = subprocess.run([sys.executable, "-m", "cifar_mtl", *command.split()[3:]], cwd=APP.parent,
                          env={**os.environ, **fx.env()}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "saved to" in done.stderr and read_datalab(run_id, fx.home) is not None
    page.reload()
    settle(page)
    keyed(page, "ml_split").get_by_text("train", exact=True).click()
    settle(page)
    keyed(page, "ml_train_issues").get_by_text("near-duplicate", exact=True).click()
    flagged = set(TWINS[0]) | set(TWINS[1]) | set(read_datalab(run_id, fx.home).query("is_near_duplicate_issue")["index"])

    def listed() -> list[int]:
        text = page.locator("[data-testid='stMain']").inner_text()
        return [int(m) for m in re.findall(r"^\d+\. #(\d+)", text, re.M)]

    # Under load the click's rerun may not have begun when settle() looks: wait for the
    # list itself to hold flagged images only (a filter that does nothing times out here).
    wait_for(lambda: (now := listed()) and set(now) <= flagged, what="the list to show near-duplicates only")
    settle(page)
    assert page.get_by_text(command).count() == 0
    shown = listed()
    assert shown and set(shown) <= flagged
    assert page.get_by_text("Datalab: ").count() == len(shown)
    assert_clean(page)
    shot(page, "datalab-2-filtered")
