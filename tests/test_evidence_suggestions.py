"""Category suggestions: honest cross-validated figures, too-few handling, never a tag written."""

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.evidence.files import EvidenceError
from cifar_mtl.evidence.suggestions import (
    MIN_TAGGED, best_threshold, fit_suggestions, suggestion_features,
)

CATEGORIES = ["clutter", "occlusion", "colour", "mislabel"]


def _errors(n=300, d=48, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n * 2, d))  # embeddings of the whole test set, errors among them
    index = np.sort(rng.choice(n * 2, size=n, replace=False))
    preds = pd.DataFrame({"index": index, "label": rng.integers(0, 10, n), "pred": rng.integers(0, 10, n),
                          "confidence": rng.uniform(0.3, 1.0, n)})
    return emb, preds


def test_features_hold_reduced_embedding_pair_and_confidence():
    emb, preds = _errors()
    x = suggestion_features(emb, preds)
    assert x.shape == (300, 32 + 100 + 1) and x.dtype == np.float32
    assert np.allclose(x[:, :32].std(axis=0), 1, atol=0.01)  # whitened
    pair = preds["label"] * 10 + preds["pred"]
    assert (x[np.arange(300), 32 + pair] == 1).all() and (x[:, 32:132].sum(axis=1) == 1).all()
    assert np.allclose(x[:, -1], preds["confidence"])
    with pytest.raises(EvidenceError, match="do not cover"):
        suggestion_features(emb[:10], preds)


def _learnable_tags(x, index, n_tagged, rng):
    """'clutter' follows feature 0, 'colour' follows feature 1, 'mislabel' is random, 'occlusion' never."""
    tagged = index[:n_tagged]
    tag_sets = []
    for row in range(n_tagged):
        tags = set()
        if x[row, 0] > 0.5:
            tags.add("clutter")
        if x[row, 1] > 0.3:
            tags.add("colour")
        if rng.random() < 0.3:
            tags.add("mislabel")
        tag_sets.append(tags)
    return tagged, tag_sets


def test_learnable_categories_score_well_random_ones_do_not():
    emb, preds = _errors(n=400)
    x = suggestion_features(emb, preds)
    index = preds["index"].to_numpy()
    rng = np.random.default_rng(1)
    tagged, tag_sets = _learnable_tags(x, index, 250, rng)
    result = fit_suggestions(x, tagged, tag_sets, CATEGORIES, index=index)
    m = result.metrics
    assert list(m.index) == CATEGORIES
    assert m.loc["clutter", "precision"] > 0.8 and m.loc["clutter", "recall"] > 0.8
    assert m.loc["colour", "precision"] > 0.8
    # Random tags: out-of-fold precision stays near their 30% base rate, not the in-sample
    # fit's, and the category is marked weak rather than suggested.
    assert m.loc["mislabel", "precision"] < 0.45 and m.loc["mislabel", "status"] == "weak"
    assert m.loc["clutter", "status"] == "ok"
    assert m.loc["occlusion", "status"] == "too few" and np.isnan(m.loc["occlusion", "precision"])
    assert m.loc["clutter", "n_positive"] == sum("clutter" in t for t in tag_sets)
    assert m.loc["clutter", "n_negative"] == 250 - m.loc["clutter", "n_positive"]
    assert result.scores.shape == (400, 4) and result.scores["occlusion"].isna().all()
    assert list(result.scores.index) == index.tolist()
    assert ((result.scores["clutter"] >= 0) & (result.scores["clutter"] <= 1)).all()
    untagged = index[250:]
    truth = x[250:, 0] > 0.5
    hit = result.scores.loc[untagged, "clutter"].to_numpy() >= m.loc["clutter", "threshold"]
    assert (hit == truth).mean() > 0.85  # the suggestions carry over to untagged errors


def test_suggested_lists_untagged_rows_over_threshold_only():
    emb, preds = _errors(n=400)
    x = suggestion_features(emb, preds)
    index = preds["index"].to_numpy()
    tagged, tag_sets = _learnable_tags(x, index, 200, np.random.default_rng(2))
    result = fit_suggestions(x, tagged, tag_sets, CATEGORIES, index=index)
    got = result.suggested()
    assert list(got.columns) == ["index", "category", "score", "precision"]
    assert not got["index"].isin(tagged).any() and len(got) > 0
    assert set(got["category"]) == {"clutter", "colour"}  # not the weak 'mislabel'
    assert np.allclose(got["precision"], got["category"].map(result.metrics["precision"]))
    thresholds = got["category"].map(result.thresholds)
    assert (got["score"] >= thresholds).all()
    assert result.suggested(include_tagged=True)["index"].isin(tagged).any()


def test_too_few_tags_give_no_model():
    emb, preds = _errors(n=100)
    x = suggestion_features(emb, preds)
    index = preds["index"].to_numpy()
    n = MIN_TAGGED - 1
    tag_sets = [{"clutter"} if i % 2 else {"colour"} for i in range(n)]
    result = fit_suggestions(x, index[:n], tag_sets, CATEGORIES, index=index)
    assert (result.metrics["status"] == "too few").all()
    assert result.scores.isna().all().all() and result.suggested().empty


def test_multi_label_tags_count_for_each_category():
    emb, preds = _errors(n=120)
    x = suggestion_features(emb, preds)
    index = preds["index"].to_numpy()
    tag_sets = [{"clutter", "colour"}] * 20 + [set()] * 20 + [{"clutter"}] * 20
    result = fit_suggestions(x, index[:60], tag_sets, CATEGORIES, index=index)
    assert result.metrics.loc["clutter", "n_positive"] == 40
    assert result.metrics.loc["colour", "n_positive"] == 20 and result.metrics.loc["colour", "n_negative"] == 40


def test_bad_tag_inputs():
    x = np.zeros((5, 3))
    with pytest.raises(EvidenceError, match="not among the scored rows"):
        fit_suggestions(x, [9], [{"clutter"}], CATEGORIES)
    with pytest.raises(EvidenceError, match="twice"):
        fit_suggestions(x, [1, 1], [{"clutter"}, set()], CATEGORIES)
    with pytest.raises(EvidenceError, match="2 tag sets for 1"):
        fit_suggestions(x, [1], [{"clutter"}, set()], CATEGORIES)


def test_best_threshold_maximises_f_beta():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    y = np.array([1, 1, 0, 1, 0, 0])
    assert best_threshold(scores, y, beta=1) == 0.6  # F1 6/7 at 0.6 beats 4/5 at 0.8
    assert best_threshold(scores, y) == 0.8  # F0.5 weighs precision: 0.91 at 0.8, 0.79 at 0.6
    assert best_threshold(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0])) == 0.5
    assert best_threshold(scores, np.zeros(6)) == 0.5

