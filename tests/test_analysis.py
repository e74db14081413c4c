"""Error table filters and sorts, confusion matrix, per-class accuracy, category counts."""

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.analysis import (
    category_counts,
    confusion_matrix,
    error_table,
    per_class_accuracy,
    review_progress,
    wilson_interval,
)
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.predictions import predictions_table


def one_hot_probs(preds, confidences):
    """(N, 10) probabilities: `confidence` on the predicted class, the rest spread evenly."""
    n = len(preds)
    probs = np.tile(((1 - np.asarray(confidences)) / 9)[:, None], (1, 10))
    probs[np.arange(n), preds] = confidences
    return probs


# index: label -> pred, confidence
ROWS = [
    (0, 0, 0, 0.90),  # correct
    (1, 3, 5, 0.80),  # cat -> dog, same group
    (2, 3, 1, 0.60),  # cat -> automobile, cross-group
    (3, 0, 2, 0.70),  # airplane -> bird, cross-group
    (4, 5, 3, 0.40),  # dog -> cat
    (5, 9, 1, 0.70),  # truck -> automobile (ties index 3 on confidence)
    (6, 1, 1, 0.95),  # correct
]


@pytest.fixture
def preds():
    index, labels, pred, conf = (np.array(c) for c in zip(*ROWS))
    return predictions_table(one_hot_probs(pred, conf), labels, index=index)


@pytest.fixture
def tags():
    return pd.DataFrame(
        {
            "index": [1, 1, 2, 4, 0],
            "category": ["pose", "clutter", "clutter", "colour", "pose"],
            "reviewer": ["ann", "bob", "ann", "bob", "ann"],
        }
    )


def test_wilson_interval_hand_values():
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert all(np.isnan(wilson_interval(0, 0)))
    lows, highs = wilson_interval(np.array([5, 10]), np.array([10, 10]), confidence=0.9)
    assert lows.shape == (2,) and highs[1] == 1.0 and lows[0] > 0.2366
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(11, 10)


def test_error_table_defaults(preds, tags):
    t = error_table(preds, tags)
    # loss = -log(p_label): p_label = (1 - confidence) / 9; 3 and 5 tie, lower index first.
    assert t["index"].tolist() == [1, 3, 5, 2, 4]
    assert t["loss"].is_monotonic_decreasing and not t["correct"].any()
    row = t.set_index("index").loc[1]
    assert row["categories"] == ("clutter", "pose") and row["label_name"] == "cat"
    assert row["pred_name"] == "dog" and not row["cross_group"]
    assert t.set_index("index").loc[3, "categories"] == ()
    assert t["cross_group"].tolist() == [i in (2, 3) for i in t["index"]]
    assert list(t.index) == list(range(len(t)))
    for col in preds.columns:
        assert col in t.columns


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(true_class=3), {1, 2}),
        (dict(true_class=[0, 9]), {3, 5}),
        (dict(pred_class=1), {2, 5}),
        (dict(min_confidence=0.6, max_confidence=0.7), {2, 3, 5}),
        (dict(max_confidence=0.5), {4}),
        (dict(cross_group_only=True), {2, 3}),
        (dict(tagged=True), {1, 2, 4}),
        (dict(tagged=False), {3, 5}),
        (dict(category="clutter"), {1, 2}),
        (dict(category=["colour", "pose"]), {1, 4}),
        (dict(reviewer="bob", tagged=False), {2, 3, 5}),
        (dict(reviewer="ann", category="clutter"), {2}),
        (dict(errors_only=False, true_class=[0, 1]), {0, 3, 6}),
        (dict(errors_only=False, category="pose"), {0, 1}),
    ],
)
def test_error_table_filters(preds, tags, kwargs, expected):
    assert set(error_table(preds, tags, **kwargs)["index"]) == expected


def test_reviewer_filter_scopes_categories(preds, tags):
    t = error_table(preds, tags, reviewer="ann").set_index("index")
    assert t.loc[1, "categories"] == ("pose",)
    assert t.loc[4, "categories"] == ()
    t = error_table(preds, tags, reviewer=["ann", "bob"]).set_index("index")
    assert t.loc[1, "categories"] == ("clutter", "pose")


def test_error_table_sorts(preds):
    by_conf = error_table(preds, sort="confidence")["index"].tolist()
    assert by_conf == [1, 3, 5, 2, 4]  # 0.8, then the 0.7 tie broken by index, 0.6, 0.4
    assert error_table(preds, sort="confidence", descending=False)["index"].tolist() == [4, 2, 3, 5, 1]
    assert error_table(preds, sort="index", descending=False)["index"].tolist() == [1, 2, 3, 4, 5]
    assert error_table(preds, sort="index")["index"].tolist() == [5, 4, 3, 2, 1]
    margins = error_table(preds, sort="margin")["margin"]
    assert margins.is_monotonic_decreasing
    assert error_table(preds)["categories"].tolist() == [()] * 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sort="size"), "unknown sort"),
        (dict(true_class=10), "outside 0..9"),
        (dict(pred_class="cat"), "class index"),
        (dict(min_confidence=1.5), "0..1"),
        (dict(min_confidence=0.8, max_confidence=0.2), "above max_confidence"),
    ],
)
def test_error_table_bad_input(preds, kwargs, message):
    with pytest.raises(ValueError, match=message):
        error_table(preds, **kwargs)


def test_error_table_needs_tag_columns(preds):
    with pytest.raises(ValueError, match="missing columns"):
        error_table(preds, pd.DataFrame({"index": [1]}))


def test_confusion_matrix(preds):
    cm = confusion_matrix(preds)
    assert cm.shape == (10, 10) and cm.to_numpy().sum() == len(preds)
    assert list(cm.index) == list(CLASS_NAMES) and list(cm.columns) == list(CLASS_NAMES)
    assert cm.loc["cat", "dog"] == 1 and cm.loc["cat", "automobile"] == 1
    assert cm.loc["airplane", "airplane"] == 1 and cm.loc["airplane", "bird"] == 1
    norm = confusion_matrix(preds, normalize=True)
    assert norm.loc["cat", "dog"] == 0.5
    present = norm.loc[["airplane", "automobile", "cat", "dog", "truck"]]
    assert np.allclose(present.sum(axis=1), 1.0)
    assert norm.loc["ship"].isna().all()  # no ship images: undefined, not 0


def test_per_class_accuracy(preds):
    acc = per_class_accuracy(preds).set_index("name")
    assert list(acc.columns) == ["class", "n", "correct", "accuracy", "ci_low", "ci_high"]
    assert acc.loc["airplane", "n"] == 2 and acc.loc["airplane", "correct"] == 1
    assert acc.loc["airplane", "accuracy"] == 0.5
    assert (acc.loc["airplane", "ci_low"], acc.loc["airplane", "ci_high"]) == wilson_interval(1, 2)
    assert np.isnan(acc.loc["ship", "accuracy"]) and acc.loc["ship", "n"] == 0


def test_category_counts(preds, tags):
    extra = pd.DataFrame({"index": [1], "category": ["pose"], "reviewer": ["bob"]})
    both = pd.concat([tags, extra])  # image 1 tagged pose by two reviewers: counted once
    by_label = category_counts(preds, both)
    assert list(by_label.columns) == ["clutter", "colour", "pose"]
    assert list(by_label.index) == list(CLASS_NAMES)
    assert by_label.loc["cat"].tolist() == [2, 0, 1]
    assert by_label.loc["dog"].tolist() == [0, 1, 0]
    assert by_label.loc["airplane"].sum() == 0  # image 0 is tagged but correct
    by_pred = category_counts(preds, both, by="pred", categories=["pose", "occlusion"])
    assert list(by_pred.columns) == ["pose", "occlusion"]
    assert by_pred.loc["dog", "pose"] == 1 and by_pred["occlusion"].sum() == 0
    with pytest.raises(ValueError, match="'label' or 'pred'"):
        category_counts(preds, tags, by="class")


def test_review_progress(preds, tags):
    assert review_progress(preds, tags) == {"n_errors": 5, "n_reviewed": 3, "share": 0.6}
    assert review_progress(preds, tags, reviewer="bob")["n_reviewed"] == 2
    mislabels = pd.DataFrame({"index": [5], "reviewer": ["ann"]})
    assert review_progress(preds, tags, mislabels=mislabels)["n_reviewed"] == 4
    assert review_progress(preds, None)["share"] == 0.0
    all_right = preds[preds["correct"]]
    assert np.isnan(review_progress(all_right, tags)["share"])
