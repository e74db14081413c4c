"""Error slices and their summary, on synthetic embeddings with known groups."""

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.evidence.files import EvidenceError
from cifar_mtl.evidence.slices import error_slices, pair_text, slice_quality, slice_summary


def _errors_in_groups(sizes=(30, 20, 12), n_correct=40, d=16, seed=0):
    """Embeddings where the errors form len(sizes) tight groups, each its own confusion pair."""
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[: len(sizes) + 1] * 3
    emb, true, pred = [], [], []
    for g, size in enumerate(sizes):
        emb.append(centres[g] + rng.normal(scale=0.3, size=(size, d)))
        true += [g] * size
        pred += [g + 5] * size
    emb.append(centres[-1] + rng.normal(scale=0.3, size=(n_correct, d)))
    true += [9] * n_correct
    pred += [9] * n_correct
    order = rng.permutation(sum(sizes) + n_correct)  # the groups interleaved in test-set order
    return np.vstack(emb)[order], np.array(true)[order], np.array(pred)[order]


def _predictions(true, pred):
    return pd.DataFrame({"index": np.arange(len(true)), "label": true, "pred": pred,
                         "confidence": np.linspace(0.9, 0.3, len(true))})


@pytest.mark.parametrize("method", ["kmeans", "hdbscan"])
def test_slices_recover_known_groups_of_errors_only(method):
    emb, true, pred = _errors_in_groups()
    index = np.arange(len(true)) + 100  # test indices need not start at 0
    kw = {"n_slices": 3} if method == "kmeans" else {}
    got = error_slices(index, emb, true, pred, method=method, **kw)
    assert list(got.columns) == ["index", "slice"] and got.dtypes.astype(str).tolist() == ["int32", "int32"]
    wrong = true != pred
    assert got["index"].tolist() == index[wrong].tolist()
    slice_of = dict(zip(got["index"], got["slice"]))
    groups = true[wrong]
    for g in range(3):
        assert len({slice_of[i] for i in index[wrong][groups == g]}) == 1
    sizes = got["slice"].value_counts().sort_index()
    assert sizes.tolist() == [30, 20, 12]  # numbered from the largest


def test_kmeans_default_count_and_same_seed_same_slices():
    emb, true, pred = _errors_in_groups(sizes=(40, 40, 40))
    a = error_slices(np.arange(len(true)), emb, true, pred, seed=3)
    b = error_slices(np.arange(len(true)), emb, true, pred, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert a["slice"].nunique() == 6  # 120 errors, about 20 per slice


def test_no_errors_and_few_errors():
    emb, true, _ = _errors_in_groups()
    none = error_slices(np.arange(len(true)), emb, true, true)
    assert len(none) == 0 and list(none.columns) == ["index", "slice"]
    pred = true.copy()
    pred[:3] = (true[:3] + 1) % 10
    few = error_slices(np.arange(len(true)), emb, true, pred)
    assert few["slice"].tolist() == [0, 0, 0]


def test_bad_slice_inputs():
    emb, true, pred = _errors_in_groups()
    with pytest.raises(EvidenceError, match="one embedding"):
        error_slices(np.arange(5), emb, true, pred)
    with pytest.raises(EvidenceError, match="unknown slice method"):
        error_slices(np.arange(len(true)), emb, true, pred, method="dbscan")


def test_summary_names_pairs_sizes_and_examples():
    preds = pd.DataFrame({"index": np.arange(8), "label": [3, 3, 3, 5, 1, 1, 2, 2],
                          "pred": [5, 5, 5, 3, 9, 9, 0, 0],
                          "confidence": [0.5, 0.9, 0.7, 0.6, 0.8, 0.4, 0.5, 0.5]})
    members = pd.DataFrame({"index": [0, 1, 2, 3, 4, 5, 6, 7], "slice": [0, 0, 0, 0, 1, 1, -1, -1]})
    got = slice_summary(members, preds)
    assert got["slice"].tolist() == [0, 1, -1]
    first = got.iloc[0]
    assert first["size"] == 4 and first["top_pairs"] == "cat→dog 3, dog→cat 1"
    assert first["top_pair"] == "cat→dog" and first["top_pair_share"] == pytest.approx(0.75)
    assert first["pairs"] == 2 and first["mean_confidence"] == pytest.approx(0.675)
    assert first["examples"] == [1, 2, 3, 0]  # most confident first without embeddings
    assert got.iloc[1]["top_pairs"] == "automobile→truck 2"
    emb = np.zeros((8, 2))
    emb[:, 0] = 1
    emb[1] = [0, 1]  # far from the slice's centre
    assert slice_summary(members, preds, embeddings=emb).iloc[0]["examples"][-1] == 1
    assert pair_text(3, 5) == "cat→dog"


def test_summary_refuses_members_of_other_predictions():
    preds = pd.DataFrame({"index": [0, 1], "label": [1, 2], "pred": [2, 1], "confidence": [0.5, 0.5]})
    with pytest.raises(EvidenceError, match=r"\[7\] are not in the predictions"):
        slice_summary(pd.DataFrame({"index": [0, 7], "slice": [0, 0]}), preds)
    with pytest.raises(EvidenceError, match="lacks"):
        slice_summary(pd.DataFrame({"index": [0]}), preds)


def test_slice_quality_tells_good_from_random_slices():
    emb, true, pred = _errors_in_groups()
    index = np.arange(len(true))
    good = error_slices(index, emb, true, pred, n_slices=3)
    shuffled = good.assign(slice=np.random.default_rng(0).permutation(good["slice"].to_numpy()))
    q_good, q_bad = slice_quality(good, emb, true, pred), slice_quality(shuffled, emb, true, pred)
    assert q_good["pair_purity"] == 1.0 and q_good["silhouette"] > 0.5 and q_good["clustered"] == 1.0
    assert q_bad["pair_purity"] < 0.8 and q_bad["silhouette"] < 0.1
    assert q_good["slices"] == 3 and q_good["median_size"] == 20
