"""Accuracy by class and cross-group errors: one computation behind metrics.json and the app."""

import numpy as np

from cifar_mtl import analysis, scores
from cifar_mtl.labels import CLASS_NAMES, class_names
from cifar_mtl.predictions import predictions_table, summary_metrics


def test_per_class_counts_by_hand():
    labels = np.array([0, 0, 3, 3, 3, 9])
    correct = np.array([True, False, True, True, False, False])
    n, k, accuracy = scores.per_class(labels, correct)
    assert n.tolist() == [2, 0, 0, 3, 0, 0, 0, 0, 0, 1] and k.tolist() == [1, 0, 0, 2, 0, 0, 0, 0, 0, 0]
    assert accuracy[0] == 0.5 and accuracy[3] == 2 / 3 and accuracy[9] == 0.0
    assert np.isnan(accuracy[[1, 2, 4, 5, 6, 7, 8]]).all()


def test_cross_group_is_an_animal_vehicle_mix_up():
    # airplane->bird, cat->dog, truck->automobile, dog->ship
    assert scores.cross_group(np.array([0, 3, 9, 5]), np.array([2, 5, 1, 8])).tolist() == [True, False, False, True]


def test_metrics_and_analysis_agree_on_a_generated_run():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 2_000)
    logits = rng.normal(size=(2_000, 10)) + 2.0 * np.eye(10)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = predictions_table(probs, labels, rng.uniform(0, 1, 2_000))
    metrics = summary_metrics(table)
    by_class = analysis.per_class_accuracy(table).set_index("name")["accuracy"]
    assert metrics["per_class_accuracy"] == {name: by_class[name] for name in CLASS_NAMES}
    assert metrics["cross_group_errors"] == int(analysis.cross_group(table).sum()) > 0
    # the figures as they were computed before one place held them
    correct = table["pred"].to_numpy() == labels
    for k, name in enumerate(CLASS_NAMES):
        assert metrics["per_class_accuracy"][name] == float(correct[labels == k].mean())


def test_class_names_of_an_array():
    assert class_names(np.array([0, 9, 3])).tolist() == ["airplane", "truck", "cat"]
    assert class_names(np.array([], dtype=np.int8)).shape == (0,)
