"""Mislabels: confirm with another label, reject, unsure, clear; a same-label confirm is refused."""

from __future__ import annotations

import pandas as pd

from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.mislabels import rank_mislabels
from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from cifar_mtl.runs import load_predictions
from tests.browser.support import assert_clean, choose, goto, keyed, settle, shot, wait_for


def verdicts(store: ReviewStore) -> dict[int, tuple[str, int | None]]:
    table = store.current_mislabels(reviewer="ada")
    return {int(r.index): (r.verdict, None if pd.isna(r.suggested_label) else int(r.suggested_label))
            for r in table.itertuples()}


def test_verdicts_and_a_refused_same_label_confirm(app, page):
    url, fx = app
    store = ReviewStore(default_path(fx.home))
    ranked = rank_mislabels(load_predictions("multi-b", fx.home))
    (a, b, c), given = ranked["index"].head(3).astype(int).tolist(), ranked["label"].astype(int).tolist()
    goto(page, f"{url}/suspects?run_id=multi-b&reviewer=ada", "Suspected mislabels")

    other = next(k for k in range(10) if k not in (given[0], int(ranked["suggested"].iloc[0])))
    choose(page, "Right label", f"{other} {CLASS_NAMES[other]}", scope=keyed(page, f"ml_label_{a}"))
    keyed(page, f"ml_confirmed_{a}").click()
    wait_for(lambda: verdicts(store) == {a: ("confirmed", other)}, what="the confirm")
    keyed(page, f"ml_rejected_{b}").click()
    wait_for(lambda: verdicts(store).get(b) == ("rejected", None), what="the reject")
    keyed(page, f"ml_unsure_{c}").click()
    wait_for(lambda: verdicts(store).get(c) == ("unsure", None), what="unsure")
    settle(page)
    assert_clean(page)
    shot(page, "mislabels-1-verdicts")
    keyed(page, f"ml_clear_{c}").click()
    wait_for(lambda: c not in verdicts(store), what="the clear")
    settle(page)

    # Confirming the label the image already has is refused, and the earlier verdict stays.
    choose(page, "Right label", f"{given[1]} {CLASS_NAMES[given[1]]}", scope=keyed(page, f"ml_label_{b}"))
    keyed(page, f"ml_confirmed_{b}").click()
    settle(page)
    error = page.locator("[data-testid='stAlertContentError']").first
    error.wait_for()
    assert "already" in error.inner_text() and CLASS_NAMES[given[1]] in error.inner_text(), error.inner_text()
    assert_clean(page, allowed_errors=("already",))
    assert verdicts(store) == {a: ("confirmed", other), b: ("rejected", None)}
    shot(page, "mislabels-2-same-label-refused")
