"""The 2-D map and its quality figures, and build_evidence writing every file, on small synthetic data."""

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.evidence import files
from cifar_mtl.evidence.build import build_evidence
from cifar_mtl.evidence.files import EvidenceError
from cifar_mtl.evidence.layout import DEFAULT_METHOD, METHODS, knn_agreement, layout_2d, layout_quality


def _clusters(n_per=40, k=3, d=20, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n_per)
    x = np.eye(d)[labels] * 2 + rng.normal(scale=0.2, size=(n_per * k, d))
    return x, labels


@pytest.mark.parametrize("method", [DEFAULT_METHOD])
def test_default_map_keeps_clusters_apart(method):
    x, labels = _clusters()
    got = layout_2d(x, method=method, index=np.arange(len(x)) + 1000)
    assert list(got.columns) == ["index", "x", "y"]
    assert got.dtypes.astype(str).tolist() == ["int32", "float32", "float32"]
    assert got["index"].tolist() == list(range(1000, 1000 + len(x)))
    xy = got[["x", "y"]].to_numpy()
    assert np.allclose(xy.mean(axis=0), 0, atol=1e-5) and xy.std(axis=0).max() == pytest.approx(1, abs=1e-4)
    assert knn_agreement(xy, labels) == 1.0
    again = layout_2d(x, method=method, index=np.arange(len(x)) + 1000)
    pd.testing.assert_frame_equal(got, again)  # same seed, same map


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in METHODS if m != DEFAULT_METHOD])
def test_other_map_methods_keep_clusters_apart(method):
    if method == "umap":  # optional: the map's default is openTSNE
        pytest.importorskip("umap", reason="umap-learn is optional and not installed")
    x, labels = _clusters()
    xy = layout_2d(x, method=method)[["x", "y"]].to_numpy()
    assert knn_agreement(xy, labels) == 1.0


def test_tiny_inputs_fall_back_to_pca_and_bad_inputs_are_refused():
    x, labels = _clusters(n_per=5)
    got = layout_2d(x)
    assert len(got) == 15 and knn_agreement(got[["x", "y"]].to_numpy(), labels, k=4) == 1.0
    with pytest.raises(EvidenceError, match="unknown layout method"):
        layout_2d(_clusters()[0], method="pca3d")
    with pytest.raises(EvidenceError, match="at least 3"):
        layout_2d(np.ones((2, 4)))
    with pytest.raises(EvidenceError, match="NaN"):
        layout_2d(np.full((5, 4), np.nan))
    with pytest.raises(EvidenceError, match="indices"):
        layout_2d(x, index=np.arange(3))


def test_knn_agreement_is_one_for_islands_and_chance_for_noise():
    x, labels = _clusters(n_per=100)
    assert knn_agreement(x, labels) == 1.0
    noise = np.random.default_rng(1).normal(size=(300, 2))
    assert knn_agreement(noise, labels) < 0.5


def test_layout_quality_prefers_a_faithful_map():
    x, labels = _clusters(n_per=60)
    pred = labels.copy()
    pred[::6] = (labels[::6] + 1) % 3  # some errors, each class's confused one way
    faithful = x[:, :2] * 3 + x[:, 2:4]  # the cluster axes kept
    scrambled = np.random.default_rng(2).normal(size=(len(x), 2))
    good = layout_quality(x, faithful, labels, pred, sample=150)
    bad = layout_quality(x, scrambled, labels, pred, sample=150)
    assert good["class_knn_full"] == bad["class_knn_full"] == 1.0
    assert good["class_knn"] > bad["class_knn"] + 0.3
    assert good["trustworthiness"] > bad["trustworthiness"]
    assert set(good) == {"class_knn", "class_knn_full", "error_pair_knn", "error_pair_knn_full", "trustworthiness"}


# --- build_evidence -------------------------------------------------------------------------


def _run_inputs(n=150, n_train=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    pred = labels.copy()
    pred[::4] = (labels[::4] + 3) % 10
    preds = pd.DataFrame({"index": np.arange(n), "label": labels, "pred": pred,
                          "confidence": rng.uniform(0.3, 1, n)})
    centres = rng.normal(size=(10, 12))
    test = centres[labels] + rng.normal(scale=0.3, size=(n, 12))
    train_labels = rng.integers(0, 10, n_train)
    train = centres[train_labels] + rng.normal(scale=0.3, size=(n_train, 12))
    return preds, test, train, train_labels


def test_build_writes_every_table_that_reads_back(tmp_path):
    preds, test, train, train_labels = _run_inputs()
    images = np.random.default_rng(0).integers(0, 256, size=(400, 32, 32, 3), dtype=np.uint8)
    seconds = build_evidence(tmp_path, preds, test, train, train_labels, images[:150], images)
    assert list(seconds) == [files.NEIGHBOURS_FILE, files.DUPLICATES_FILE, files.MAP_FILE, files.SLICES_FILE]
    assert all(s >= 0 for s in seconds.values())
    assert len(files.read_neighbours(tmp_path)) == 150 * 8
    dup = files.read_duplicates(tmp_path)
    assert len(dup) == 150 and not dup["pixel_similarity"].isna().any()
    assert files.read_map(tmp_path)["index"].tolist() == list(range(150))
    members = files.read_slices(tmp_path)
    assert sorted(members["index"]) == preds.loc[preds["label"] != preds["pred"], "index"].tolist()
    status = files.evidence_status(tmp_path)
    assert not status[files.EMBEDDINGS_FILE] and not status[files.SALIENCY_FILE]  # the model's side
    assert sum(status.values()) == 4


def test_build_without_training_embeddings_writes_the_test_side(tmp_path):
    preds, test, _, _ = _run_inputs()
    assert list(build_evidence(tmp_path, preds, test)) == [files.MAP_FILE, files.SLICES_FILE]
    assert not (tmp_path / files.NEIGHBOURS_FILE).exists()


def test_build_refuses_mismatched_inputs(tmp_path):
    preds, test, train, train_labels = _run_inputs()
    with pytest.raises(EvidenceError, match="test-set order"):
        build_evidence(tmp_path, preds, test[:-1])
    with pytest.raises(EvidenceError, match="test-set order"):
        build_evidence(tmp_path, preds.iloc[::-1], test)
    with pytest.raises(EvidenceError, match="train_labels"):
        build_evidence(tmp_path, preds, test, train)
    assert list(tmp_path.iterdir()) == []
