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
    back = validate_predictions(pd.read_parquet(path))
    pd.testing.assert_frame_equal(back, t)
    with pytest.raises(ValueError, match="missing columns \\['margin'\\]"):
        validate_predictions(t.drop(columns=["margin"]))
    bad = t.copy()
    bad["label"] = [0, 3, 12]
    with pytest.raises(ValueError, match="outside 0..9"):
        validate_predictions(bad)
    bad = t.copy()
    bad["confidence"] = ["a", "b", "c"]
    with pytest.raises(ValueError, match="'confidence' is"):
        validate_predictions(bad)


def test_ece():
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0
    assert expected_calibration_error([0.9, 0.9], [0, 0]) == pytest.approx(0.9)
