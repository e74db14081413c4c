"""Compare: two runs picked in the sidebar; the figures shown are the library's."""

from __future__ import annotations

import re

from cifar_mtl.compare import compare_runs
from cifar_mtl.runs import load_predictions
from tests.browser.support import assert_clean, choose, goto, settle, shot


def test_two_runs_picked_show_the_librarys_figures(app, page):
    url, fx = app
    goto(page, f"{url}/versus?run_id=multi-b&reviewer=ada", "Compare runs")
    # The defaults are A single-a, B multi-b: swap them as a user would.
    choose(page, "Run A (baseline)", re.compile(r"^multi-b · "))
    choose(page, "Run B", re.compile(r"^single-a · "))
    settle(page)
    assert_clean(page)
    cmp = compare_runs(load_predictions("multi-b", fx.home), load_predictions("single-a", fx.home))
    values = page.locator("[data-testid='stMetricValue']").all_inner_texts()
    assert values[:5] == [f"{cmp.accuracy_a:.2%}", f"{cmp.accuracy_b:.2%}", f"{cmp.p_value:.3g}",
                          f"{cmp.n_fixed:,}", f"{cmp.n_broken:,}"], values
    assert page.get_by_text("A = multi-b").first.is_visible()
    shot(page, "compare-1")
