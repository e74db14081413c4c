"""Two-run comparison and McNemar's exact test against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.analysis import wilson_interval
from cifar_mtl.compare import Comparison, compare_runs, mcnemar_exact
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
