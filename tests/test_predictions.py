import numpy as np
import pandas as pd
import pytest

from cifar_mtl.predictions import (
    expected_calibration_error,
    joint_prediction,
    predictions_table,
    summary_metrics,
    validate_predictions,
)


def _table(animal=True):
    probs = np.array(
        [
            [0.7, 0.2, 0.1, 0, 0, 0, 0, 0, 0, 0],  # airplane, right
            [0.1, 0, 0.5, 0.4, 0, 0, 0, 0, 0, 0],  # cat predicted bird: wrong, same group
            [0, 0, 0, 0, 0, 0, 0, 0, 0.6, 0.4],  # dog predicted ship: cross-group
        ],
        dtype=np.float32,
    )
    return predictions_table(probs, np.array([0, 3, 5]), np.array([0.1, 0.9, 0.8]) if animal else None, np.array([10, 11, 12]))


def test_columns_are_computed_by_hand():
    t = _table()
    assert t["index"].tolist() == [10, 11, 12]
    assert t["pred"].tolist() == [0, 2, 8]
    np.testing.assert_allclose(t["confidence"], [0.7, 0.5, 0.6])
    np.testing.assert_allclose(t["margin"], [0.5, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(t["loss"], [-np.log(0.7), -np.log(0.4), -np.log(1e-7)], rtol=1e-5)
    assert t["correct"].tolist() == [True, False, False]
    assert t["animal"].tolist() == [False, True, True]


def test_summary_metrics():
    m = summary_metrics(_table())
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["cross_group_errors"] == 1
    assert m["animal_accuracy"] == pytest.approx(1.0)
    assert m["per_class_accuracy"]["airplane"] == 1.0 and m["per_class_accuracy"]["truck"] is None
    # joint: dog row, animal 0.8 -> vehicles weighed by 0.2: 0.6*0.2 vs no animal mass -> ship stays
    assert m["joint_accuracy"] == pytest.approx(1 / 3)
    single = summary_metrics(_table(animal=False))
    assert single["animal_accuracy"] is None and single["joint_accuracy"] is None


def test_joint_prediction_can_flip_the_group():
    probs = np.array([[0.0, 0.0, 0.0, 0.45, 0.0, 0.0, 0.0, 0.0, 0.55, 0.0]])
    assert joint_prediction(probs, np.array([0.9]))[0] == 3  # cat 0.405 beats ship 0.055
    assert joint_prediction(probs, np.array([0.1]))[0] == 8


def test_validation_lists_problems_and_round_trips(tmp_path):
    t = _table()
    path = tmp_path / "p.parquet"
    t.to_parquet(path)
    back = validate_predictions(pd.read_parquet(path), expected_rows=3)
    pd.testing.assert_frame_equal(back, t)
    with pytest.raises(ValueError, match="missing columns \\['margin'\\]"):
        validate_predictions(t.drop(columns=["margin"]), expected_rows=3)
    bad = t.copy()
    bad["label"] = [0, 3, 12]
    with pytest.raises(ValueError, match="outside 0..9"):
        validate_predictions(bad, expected_rows=3)
    bad = t.copy()
    bad["confidence"] = ["a", "b", "c"]
    with pytest.raises(ValueError, match="'confidence' is"):
        validate_predictions(bad, expected_rows=3)


def test_ece():
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0
    assert expected_calibration_error([0.9, 0.9], [0, 0]) == pytest.approx(0.9)


def _valid(n=20):
    labels = np.arange(n) % 10
    probs = np.full((n, 10), 0.05, np.float32)
    probs[np.arange(n), labels] = 0.55
    return predictions_table(probs, labels, np.full(n, 0.5))


def _negative(table):
    """Probabilities with one -0.05 and 0.05 more elsewhere: rows still sum to 1."""
    probs = table.filter(like="prob_").to_numpy().copy()
    wrong = (table["label"].to_numpy() + 1) % 10
    probs[np.arange(len(probs)), wrong] = -0.05
    probs[np.arange(len(probs)), table["label"].to_numpy()] += 0.1
    return probs


def _with_probs(table, probs):
    bad = table.copy()
    for k in range(10):
        bad[f"prob_{k}"] = probs[:, k].astype(np.float32)
    return bad


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: _with_probs(t, np.where(np.arange(10) == 3, np.nan, t.filter(like="prob_").to_numpy())),
         "probabilities include NaN"),
        (lambda t: _with_probs(t, _negative(t)), "probabilities include negative values"),
        (lambda t: _with_probs(t, t.filter(like="prob_").to_numpy() * 2), "do not sum to 1"),
        (lambda t: t.assign(label=np.int8(10)), "'label' has 20 values outside 0..9"),
        (lambda t: t.assign(index=np.zeros(20, np.int32)), "duplicate test-set indices"),
        (lambda t: t.assign(index=np.arange(20, dtype=np.int32) + 10_000), "'index' has values outside 0..9999"),
        (lambda t: t.assign(pred=((t["pred"] + 1) % 10).astype(np.int8)), "'pred' is not the most probable class"),
        (lambda t: t.assign(correct=~t["correct"]), "'correct' disagrees with pred == label"),
        (lambda t: t.assign(confidence=np.float32(0.9)), "'confidence' differs from the largest probability"),
        (lambda t: t.assign(animal=~t["animal"]), "'animal' disagrees with the label"),
        (lambda t: t.assign(animal_prob=np.float32(1.5)), "'animal_prob' has values outside 0..1"),
    ],
    ids=["nan", "negative", "not-normalised", "label-range", "duplicate-index", "index-range", "pred", "correct",
         "confidence", "animal", "animal-prob"],
)
def test_validation_refuses_values_that_make_no_sense(damage, message):
    table = _valid()
    assert len(validate_predictions(table, expected_rows=20)) == 20
    with pytest.raises(ValueError, match=message):
        validate_predictions(damage(table), expected_rows=20)


def test_row_count_is_checked_against_the_test_set():
    table = _valid(20)
    with pytest.raises(ValueError, match="has 20 rows; the test set has 10,000 images"):
        validate_predictions(table)  # the default: the official test set
    with pytest.raises(ValueError, match="has 20 rows; the test set has 30 images"):
        validate_predictions(table, expected_rows=30)
    assert len(validate_predictions(table, expected_rows=None)) == 20  # a subset, checked explicitly off


def test_float32_rounding_and_single_task_pass():
    n = 50
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, 10)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # float32 sums are 1 +- 1e-7
    table = predictions_table(probs, np.arange(n) % 10)  # single-task: animal_prob NaN
    assert validate_predictions(table, expected_rows=n)["animal_prob"].isna().all()
