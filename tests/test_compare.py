"""Two-run comparison and McNemar's exact test against hand-computed values, on the test labels
and on the labels reviewers corrected."""

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.analysis import wilson_interval
from cifar_mtl.compare import (
    CHANGED_COLUMNS,
    Comparison,
    compare_runs,
    compare_with_corrections,
    corrected_summary_text,
    corrections_text,
    mcnemar_exact,
    paired_scores,
    relabel_caption,
    table_text,
)
from cifar_mtl.mislabels import corrected_accuracy
from cifar_mtl.predictions import predictions_table


@pytest.mark.parametrize(
    "b, c, p",
    [
        (0, 5, 2 / 32),  # 2 * 0.5**5
        (1, 9, 2 * 11 / 1024),  # 2 * (C(10,0) + C(10,1)) / 2**10
        (2, 8, 2 * 56 / 1024),  # 2 * (1 + 10 + 45) / 1024
        (8, 2, 2 * 56 / 1024),  # symmetric
        (5, 5, 1.0),
        (0, 0, 1.0),  # nothing discordant
        (0, 1, 1.0),
    ],
)
def test_mcnemar_exact_hand_computed(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_bad_counts():
    for b, c in ((-1, 3), (2.5, 1), (True, 2)):
        with pytest.raises(ValueError, match="non-negative count"):
            mcnemar_exact(b, c)


def table(labels, preds, index=None):
    probs = np.full((len(preds), 10), 0.02)
    probs[np.arange(len(preds)), preds] = 0.82
    return predictions_table(probs, np.asarray(labels), index=index)


LABELS = [0, 0, 3, 3, 5, 9, 1, 2]
PRED_A = [0, 1, 5, 3, 3, 1, 1, 2]  # wrong: 1, 2, 4, 5
PRED_B = [0, 0, 3, 5, 3, 9, 1, 4]  # wrong: 3, 4, 7


def test_compare_runs_counts():
    a, b = table(LABELS, PRED_A), table(LABELS, PRED_B)
    c = compare_runs(a, b)
    assert isinstance(c, Comparison)
    assert c.n == 8 and c.accuracy_a == 4 / 8 and c.accuracy_b == 5 / 8
    assert c.difference == pytest.approx(1 / 8)
    assert c.ci_a == wilson_interval(4, 8) and c.ci_b == wilson_interval(5, 8)
    assert c.fixed["index"].tolist() == [1, 2, 5] and c.n_fixed == 3
    assert c.broken["index"].tolist() == [3, 7] and c.n_broken == 2
    assert c.p_value == pytest.approx(mcnemar_exact(3, 2))
    row = c.fixed.iloc[0]
    assert (row["pred_a"], row["pred_b"], row["label_name"]) == (1, 0, "airplane")
    assert row["pred_a_name"] == "automobile" and row["confidence_b"] == pytest.approx(0.82)
    per = c.per_class.set_index("name")
    assert per.loc["airplane", "accuracy_a"] == 0.5 and per.loc["airplane", "accuracy_b"] == 1.0
    assert per.loc["airplane", "difference"] == 0.5
    assert c.confusion_diff.loc["airplane", "automobile"] == -1
    assert c.confusion_diff.loc["bird", "deer"] == 1
    assert c.confusion_diff.to_numpy().sum() == 0
    assert c.categories is None
    assert c.summary()["n_fixed"] == 3


def test_compare_cross_group_and_categories():
    a, b = table(LABELS, PRED_A), table(LABELS, PRED_B)
    c = compare_runs(a, b)
    # A's errors: 0->1 (same group), 3->5 (same), 5->3 (same), 9->1 (same): none cross.
    # B's errors: 3->5, 5->3 (same), 2->4 (same): none cross either. Make one cross:
    b2 = table(LABELS, [0, 0, 3, 3, 3, 9, 1, 8])  # bird -> ship
    c2 = compare_runs(a, b2)
    assert (c.cross_group_a, c.cross_group_b, c2.cross_group_b) == (0, 0, 1)
    tags = pd.DataFrame(
        {"index": [1, 1, 3, 7, 0], "category": ["pose", "pose", "clutter", "pose", "colour"],
         "reviewer": ["ann", "bob", "ann", "ann", "ann"]}
    )
    cats = compare_runs(a, b, tags).categories
    assert cats.to_dict() == {"a": {"clutter": 0, "colour": 0, "pose": 1},
                              "b": {"clutter": 1, "colour": 0, "pose": 1}}


def test_row_order_does_not_matter():
    a, b = table(LABELS, PRED_A), table(LABELS, PRED_B)
    c = compare_runs(a, b.iloc[::-1])
    assert (c.n_fixed, c.n_broken) == (3, 2)


def test_runs_on_other_images_are_refused():
    a = table(LABELS, PRED_A)
    with pytest.raises(ValueError, match="different test images"):
        compare_runs(a, table(LABELS[:7], PRED_B[:7]))
    with pytest.raises(ValueError, match="different test images"):
        compare_runs(a, table(LABELS, PRED_B, index=np.arange(8) + 100))
    with pytest.raises(ValueError, match="disagree on the label of 1 test images"):
        compare_runs(a, table([0, 0, 3, 3, 5, 9, 1, 7], PRED_B))


# --- original and corrected test labels ------------------------------------------------------


def verdicts(tmp_path, *rows):
    """`ReviewStore.current_mislabels()` after recording `rows` of (reviewer, index, verdict, label)."""
    from cifar_mtl.stores.reviews import ReviewStore

    with ReviewStore(tmp_path / "cifar-mtl.sqlite") as store:
        for reviewer, index, verdict, label in rows:
            store.set_mislabel("some-run", index, reviewer, verdict, label)
        return store.current_mislabels()


def test_paired_scores_hand_computed():
    s = paired_scores(LABELS, PRED_A, PRED_B)
    assert (s.n, s.accuracy_a, s.accuracy_b, s.n_fixed, s.n_broken) == (8, 4 / 8, 5 / 8, 3, 2)
    assert s.difference == pytest.approx(1 / 8) and s.p_value == pytest.approx(mcnemar_exact(3, 2))
    assert s.ci_a == wilson_interval(4, 8)
    with pytest.raises(ValueError, match="same length"):
        paired_scores(LABELS, PRED_A[:7], PRED_B)


def test_no_verdicts_leave_the_corrected_labels_as_the_original(tmp_path):
    a, b = table(LABELS, PRED_A), table(LABELS, PRED_B)
    for none in (None, verdicts(tmp_path)):
        lc = compare_with_corrections(a, b, none)
        assert lc.corrected == lc.original and lc.n_changed == 0 and lc.n_verdicts == 0
        assert lc.changed.columns.tolist() == CHANGED_COLUMNS and lc.changed.empty
        assert lc.table().index.tolist() == ["original"]
        assert "No reviewer has a verdict" in corrections_text(lc) and "original test labels only" in corrections_text(lc)
    c = compare_runs(a, b)
    assert (lc.original.accuracy_a, lc.original.n_fixed, lc.original.n_broken, lc.original.p_value) == (
        c.accuracy_a, c.n_fixed, c.n_broken, c.p_value)


def test_a_verdict_that_makes_an_error_of_a_right_moves_it_from_fixed_to_broken(tmp_path):
    # Image 1: test label airplane (0), A says automobile (1), B airplane: one that B "fixed".
    # Confirmed as an automobile, A is right and B wrong: fixed 3 -> 2, broken 2 -> 3.
    a, b = table(LABELS, PRED_A), table(LABELS, PRED_B)
    lc = compare_with_corrections(a, b, verdicts(tmp_path, ("ann", 1, "confirmed", 1)))
    assert (lc.original.n_fixed, lc.original.n_broken) == (3, 2)
    s = lc.corrected
    assert (s.accuracy_a, s.accuracy_b, s.n_fixed, s.n_broken) == (5 / 8, 4 / 8, 2, 3)
    assert s.p_value == pytest.approx(mcnemar_exact(2, 3)) and s.difference == pytest.approx(-1 / 8)
    assert s.ci_a == wilson_interval(5, 8) and s.ci_b == wilson_interval(4, 8)
    row = lc.changed.iloc[0]
    assert lc.n_changed == 1 and lc.n_verdicts == 1
    assert (row["index"], row["label"], row["corrected_label"], row["corrected_name"]) == (1, 0, 1, "automobile")
    assert (bool(row["right_a"]), bool(row["right_b"]), row["votes"], row["n_verdicts"]) == (True, False, 1, 1)
    table_ = lc.table()
    assert table_.index.tolist() == ["original", "corrected"]
    assert table_.loc["corrected", "n_broken"] == 3 and table_.loc["original", "p_value"] == lc.original.p_value
    text = corrections_text(lc)
    assert "corrected 1 of the 8 test labels (1 verdict;" in text and "A predicts the corrected label 1 time, B 0" in text
    shown = table_text(lc)
    assert shown.index.tolist() == ["Original labels", "Corrected labels"]
    (low5, high5), (low4, high4) = wilson_interval(5, 8), wilson_interval(4, 8)
    assert shown.loc["Corrected labels"].tolist() == [
        f"62.50% ({low5:.1%}-{high5:.1%})", f"50.00% ({low4:.1%}-{high4:.1%})",
        "-12.50 points", "2", "3", f"{mcnemar_exact(2, 3):.3g}"]
    assert shown.loc["Original labels", "Accuracy B"] == shown.loc["Corrected labels", "Accuracy A"]  # both 5 of 8
    assert relabel_caption(row.to_dict()) == "#1 airplane → automobile: A automobile ✓, B airplane"


def test_verdicts_resolve_as_the_mislabels_page_counts_them(tmp_path):
    a, b = table(LABELS, PRED_A), table(LABELS, PRED_B)
    mislabels = verdicts(
        tmp_path,
        ("ann", 4, "confirmed", 3), ("bob", 4, "confirmed", 3), ("cy", 4, "rejected", None),  # 2:1 -> 3
        ("ann", 7, "confirmed", 4), ("bob", 7, "rejected", None),  # a tie keeps the test label
        ("ann", 0, "unsure", None),  # does not vote
        ("ann", 5000, "confirmed", 2),  # not an image of these runs
    )
    lc = compare_with_corrections(a, b, mislabels)
    # Image 4 (dog, both runs say cat) becomes a cat: both right, so only the accuracies move.
    assert lc.changed["index"].tolist() == [4] and lc.changed["votes"].tolist() == [2]
    assert lc.changed["n_verdicts"].tolist() == [3] and lc.n_verdicts == 6
    assert (lc.corrected.accuracy_a, lc.corrected.accuracy_b) == (5 / 8, 6 / 8)
    assert (lc.corrected.n_fixed, lc.corrected.n_broken) == (3, 2)
    assert lc.corrected.p_value == lc.original.p_value
    assert lc.changed[["right_a", "right_b"]].values.tolist() == [[True, True]]
    expected = corrected_accuracy(a, mislabels)
    assert (expected["corrected_accuracy"], expected["n_corrected"]) == (lc.corrected.accuracy_a, lc.n_changed)


def test_verdicts_that_change_nothing_are_said_so(tmp_path):
    a, b = table(LABELS, PRED_A), table(LABELS, PRED_B)
    lc = compare_with_corrections(a, b, verdicts(tmp_path, ("ann", 2, "rejected", None), ("bob", 2, "unsure", None)))
    assert lc.n_verdicts == 2 and lc.n_changed == 0 and lc.corrected == lc.original
    assert "2 verdicts change none of these 8 test labels" in corrections_text(lc)
    assert corrected_summary_text(lc).count("\n") == 0


def test_corrected_summary_text_gives_the_corrected_figures(tmp_path):
    a, b = table(LABELS, PRED_A), table(LABELS, PRED_B)
    lc = compare_with_corrections(a, b, verdicts(tmp_path, ("ann", 1, "confirmed", 1)))
    lines = corrected_summary_text(lc, "ca", "cb").splitlines()
    assert lines[0].startswith("On the corrected test labels: Reviewers corrected 1 of the 8")
    assert lines[1].startswith("A ca: corrected accuracy 62.50% (95% CI ")
    assert lines[2].startswith("B cb: corrected accuracy 50.00%")
    assert lines[3] == f"B - A: -12.50 points; B fixed 2, broke 3; McNemar exact p = {mcnemar_exact(2, 3):.2g}"


def test_corrections_need_runs_on_the_same_images(tmp_path):
    with pytest.raises(ValueError, match="different test images"):
        compare_with_corrections(table(LABELS, PRED_A), table(LABELS[:7], PRED_B[:7]), None)
