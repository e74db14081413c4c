"""Nearest training images and near-duplicates on small synthetic embeddings and images."""

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.evidence.duplicates import near_duplicates, pixel_similarity
from cifar_mtl.evidence.files import EvidenceError
from cifar_mtl.evidence.neighbours import nearest_training


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_nearest_training_is_exact_cosine_order():
    rng = np.random.default_rng(0)
    test, train = rng.normal(size=(30, 12)) * 5, rng.normal(size=(200, 12))
    labels = rng.integers(0, 10, 200)
    got = nearest_training(test, train, labels, k=4)
    assert list(got.columns) == ["index", "rank", "train_index", "train_label", "similarity"]
    assert got.dtypes.astype(str).tolist() == ["int32", "int16", "int32", "int8", "float32"]
    cosine = _unit(test) @ _unit(train).T
    expected = np.argsort(-cosine, axis=1)[:, :4]
    assert (got["train_index"].to_numpy().reshape(30, 4) == expected).all()
    assert got["rank"].tolist()[:5] == [1, 2, 3, 4, 1] and got["index"].tolist()[:5] == [0, 0, 0, 0, 1]
    assert np.allclose(got["similarity"].to_numpy().reshape(30, 4),
                       np.take_along_axis(cosine, expected, 1), atol=1e-5)
    assert (got["train_label"].to_numpy() == labels[got["train_index"]]).all()


def test_float16_input_and_identical_images():
    rng = np.random.default_rng(1)
    train = _unit(rng.normal(size=(50, 8))).astype(np.float16)
    test = train[[7, 3]]
    got = nearest_training(test, train, np.arange(50) % 10, k=2)
    first = got[got["rank"] == 1]
    assert first["train_index"].tolist() == [7, 3]
    assert np.allclose(first["similarity"], 1.0, atol=1e-6)
    assert (got["similarity"] <= 1.0).all()


@pytest.mark.parametrize("test, train, labels, k, message", [
    (np.ones((3, 4)), np.ones((5, 5)), np.zeros(5, int), 2, "different models"),
    (np.ones((3, 4)), np.ones((5, 4)), np.zeros(4, int), 2, "4 training labels for 5"),
    (np.ones((3, 4)), np.ones((5, 4)), np.full(5, 11), 2, "0..9"),
    (np.ones((3, 4)), np.ones((5, 4)), np.zeros(5, int), 6, "k must be"),
    (np.full((3, 4), np.nan), np.ones((5, 4)), np.zeros(5, int), 2, "NaN"),
    (np.ones(4), np.ones((5, 4)), np.zeros(5, int), 2, r"\(N, D\)"),
])
def test_bad_inputs_are_refused(test, train, labels, k, message):
    with pytest.raises(EvidenceError, match=message):
        nearest_training(test, train, labels, k=k)


# --- pixel similarity and near-duplicates ------------------------------------------------


def _photos(n, seed=0, size=36):
    """Smooth random colour images (bigger than 32 px, so crops can be shifted)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, size // 4 + 1, size // 4 + 1, 3)).astype(np.float32)
    big = coarse.repeat(4, axis=1).repeat(4, axis=2)[:, :size, :size]
    return big.astype(np.uint8)


def test_pixel_similarity_sees_through_shifts_and_brightness_but_not_other_pictures():
    big = _photos(4)
    a = big[:, 2:34, 2:34]
    shifted = big[:, 4:36, 0:32]  # two pixels down, two left: one pooled pixel each way
    brighter = np.clip(a.astype(int) * 0.7 + 40, 0, 255).astype(np.uint8)
    other = _photos(4, seed=9)[:, 2:34, 2:34]
    recoloured = a[..., ::-1]  # the same shapes in other colours: another photo for this check
    assert np.allclose(pixel_similarity(a, a), 1, atol=1e-5)
    assert (pixel_similarity(a, shifted) > 0.99).all()
    assert (pixel_similarity(a, shifted, max_shift=0) < 0.8).all()
    assert np.allclose(pixel_similarity(a, brighter), 1, atol=1e-3)
    assert (pixel_similarity(a, other) < 0.5).all()
    assert (pixel_similarity(a, recoloured) < 0.7).all()
    flat = np.full_like(a, 128)
    assert (pixel_similarity(a, flat) == 0).all()
    with pytest.raises(EvidenceError, match="even"):
        pixel_similarity(a[:, :31], a[:, :31])


def _neighbour_table(similarity, train_index, train_label, k=2):
    """k ranks per test image: rank r points at train_index + 100 * (r - 1)."""
    n = len(similarity)
    return pd.DataFrame({"index": np.repeat(np.arange(n), k), "rank": np.tile(np.arange(1, k + 1), n),
                         "train_index": np.repeat(train_index, k) + np.tile(np.arange(k) * 100, n),
                         "train_label": np.repeat(train_label, k),
                         "similarity": np.repeat(similarity, k) - np.tile(np.arange(k) * 0.001, n)})


def test_without_images_the_rank_1_neighbour_and_the_embedding_threshold_decide():
    table = _neighbour_table([0.999, 0.999, 0.5, 0.996], [5, 6, 7, 8], [1, 2, 3, 4])
    got = near_duplicates(table, np.array([1, 3, 3, 4]))
    assert got["near_duplicate"].tolist() == [True, True, False, True]
    assert got["label_conflict"].tolist() == [False, True, False, False]
    assert got["train_index"].tolist() == [5, 6, 7, 8] and got["label"].tolist() == [1, 3, 3, 4]
    assert got["pixel_similarity"].isna().all()
    assert near_duplicates(table, np.array([1, 3, 3, 4]), threshold=0.9999)["near_duplicate"].sum() == 0


def test_with_images_the_pixels_decide_among_all_neighbours():
    big = _photos(3)
    test_images = big[:, 2:34, 2:34]
    train_images = _photos(300, seed=5)[:, :32, :32]
    train_images[100] = big[0, 4:36, 2:34]  # image 0's twin, shifted, at rank 2
    train_images[1] = big[1, 2:34, 2:34]  # image 1's twin at rank 1, labelled otherwise
    table = _neighbour_table([0.9, 0.9, 0.9], [0, 1, 2], [4, 7, 4])
    got = near_duplicates(table, np.array([4, 5, 4]), test_images, train_images)
    assert got["near_duplicate"].tolist() == [True, True, False]
    assert got["train_index"].tolist() == [100, 1, got["train_index"][2]]
    assert got["pixel_similarity"][0] > 0.99 and got["pixel_similarity"][1] > 0.99
    assert got["label_conflict"].tolist() == [False, True, False]
    assert not got["pixel_similarity"].isna().any()  # every image has a measured pair
    # An embedding-similar pair that is another photo is no near-duplicate.
    assert got["pixel_similarity"][2] < 0.8


def test_near_duplicates_refuses_half_the_images_and_bad_tables():
    table = _neighbour_table([0.99], [0], [1])
    with pytest.raises(EvidenceError, match="both"):
        near_duplicates(table, np.array([1]), test_images=np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(EvidenceError, match="lacks column"):
        near_duplicates(table.drop(columns="rank"), np.array([1]))
    with pytest.raises(EvidenceError, match="labels"):
        near_duplicates(_neighbour_table([0.9, 0.9], [0, 1], [1, 1]), np.array([1]))
    with pytest.raises(EvidenceError, match="rank-1"):
        near_duplicates(table[table["rank"] == 2], np.array([1]))
    with pytest.raises(EvidenceError, match="beyond"):
        near_duplicates(table, np.array([1]), np.zeros((1, 32, 32, 3), np.uint8), np.zeros((5, 32, 32, 3), np.uint8))
