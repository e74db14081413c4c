"""Compare: two runs picked in the sidebar; the figures shown are the library's, on the test
labels and, once a reviewer has confirmed a mislabel, on the corrected labels too."""

from __future__ import annotations

import re

from cifar_mtl.compare import compare_runs, compare_with_corrections
from cifar_mtl.mislabels import rank_mislabels
from cifar_mtl.runs import load_predictions
from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from tests.browser.support import assert_clean, choose, goto, keyed, open_page, settle, shot, wait_for


def table_row(page, name: str) -> list[str]:
    """The cells of the row `name` in the page's table (its header cell first)."""
    row = page.locator("[data-testid='stTable'] tr").filter(has_text=name).first
    return [c.strip() for c in row.locator("th, td").all_inner_texts()]


def test_two_runs_picked_show_the_librarys_figures(app, page):
    url, fx = app
    goto(page, f"{url}/versus?run_id=multi-b&reviewer=ada", "Compare runs")
    # The defaults are A single-a, B multi-b: swap them as a user would.
    choose(page, "Run A (baseline)", re.compile(r"^multi-b · "))
    choose(page, "Run B", re.compile(r"^single-a · "))
    settle(page)
    assert_clean(page)
    preds_a, preds_b = load_predictions("multi-b", fx.home), load_predictions("single-a", fx.home)
    cmp = compare_runs(preds_a, preds_b)
    values = page.locator("[data-testid='stMetricValue']").all_inner_texts()
    assert values[:5] == [f"{cmp.accuracy_a:.2%}", f"{cmp.accuracy_b:.2%}", f"{cmp.p_value:.3g}",
                          f"{cmp.n_fixed:,}", f"{cmp.n_broken:,}"], values
    assert page.get_by_text("A = multi-b").first.is_visible()
    # The gallery of fixed images: every thumbnail drawn at one size.
    gallery = page.locator("[data-testid='stTabPanel']:visible [data-testid='stImage'] img")
    wait_for(lambda: gallery.count() > 1, what="the Fixed by B gallery")
    sizes = {(round(box["width"]), round(box["height"])) for box in
             (gallery.nth(i).bounding_box() for i in range(gallery.count()))}
    assert len(sizes) == 1, sizes
    # No verdict yet: the page says the figures are on the original labels, and shows no table.
    assert page.get_by_text("No reviewer has a verdict on these test images yet").first.is_visible()
    assert page.locator("[data-testid='stTable']").count() == 0
    shot(page, "compare-1")

    # A reviewer confirms the top suspect of multi-b (the run under review) with its suggested label.
    top = rank_mislabels(preds_a).iloc[0]
    index, suggested = int(top["index"]), int(top["suggested"])
    open_page(page, "Mislabels", "Suspected mislabels")
    keyed(page, f"ml_confirmed_{index}").click()
    store = ReviewStore(default_path(fx.home))
    wait_for(lambda: len(store.current_mislabels()) == 1, what="the verdict")
    settle(page)
    expected = compare_with_corrections(preds_a, preds_b, store.current_mislabels())
    assert expected.changed["corrected_label"].tolist() == [suggested]

    open_page(page, "Compare", "Compare runs")
    page.locator("[data-testid='stTable']").first.wait_for()
    for name, s in (("Original labels", expected.original), ("Corrected labels", expected.corrected)):
        assert table_row(page, name) == [
            name, f"{s.accuracy_a:.2%} ({s.ci_a[0]:.1%}-{s.ci_a[1]:.1%})",
            f"{s.accuracy_b:.2%} ({s.ci_b[0]:.1%}-{s.ci_b[1]:.1%})", f"{s.difference * 100:+.2f} points",
            f"{s.n_fixed:,}", f"{s.n_broken:,}", f"{s.p_value:.3g}",
        ], table_row(page, name)
    assert page.get_by_text(re.compile(r"^Reviewers corrected 1 of the 200 test labels \(1 verdict;")).first.is_visible()
    page.get_by_role("tab", name="Relabelled (1)").click()
    row = expected.changed.iloc[0]
    caption = page.get_by_text(re.compile(rf"^#{index} \w+ → ")).first  # the same image may be in Fixed/Broken
    caption.wait_for()
    assert caption.inner_text().startswith(f"#{index} {row['label_name']} → {row['corrected_name']}: "), caption.inner_text()
    assert_clean(page)
    shot(page, "compare-2-corrected-labels")
