"""bench_crossval's pieces that need no training: the fold size it trains B on, its recipe and its scaled data."""

import numpy as np
import pytest

from bench.bench_crossval import fold_size, recipe, scaled_copy, scaled_sizes
from cifar_mtl.cifar10 import load_cifar10
from cifar_mtl.synthetic import write_fake_cifar
from cifar_mtl.training.crossval import make_folds


@pytest.mark.parametrize("n, k", [(1_000, 2), (12_000, 3), (50_000, 5), (1_003, 3)])
def test_fold_size_is_what_one_fold_model_trains_on(n, k):
    labels = np.arange(n) % 10
    folds = make_folds(labels, k, seed=0)
    sizes = [int((folds != f).sum()) for f in range(k)]
    assert min(sizes) <= fold_size(n, k) <= max(sizes)


def test_recipe_keeps_the_configs_epochs_unless_cut_and_warmup_within_them():
    config = recipe("/data")
    assert config["finetune_epochs"] == 8 and config["train_subset"] is None and config["data_dir"] == "/data"
    cut = recipe("/data", 1)
    assert cut["finetune_epochs"] == 1 and cut["warmup_epochs"] <= 0.5
    assert cut["backbone"] == "airbench" and cut["variant"] == "single"


def test_scaled_sizes_shrink_training_and_test_alike():
    assert scaled_sizes(0.05) == (2_500, 500)
    assert scaled_sizes(1) == (50_000, 10_000)
    with pytest.raises(ValueError, match="--scale 0"):
        scaled_sizes(0)


def test_scaled_copy_is_a_stratified_share_that_the_loader_reads(tmp_path):
    source = load_cifar10(str(write_fake_cifar(tmp_path / "full", n_train_per_batch=200, n_test=200)))
    copy = load_cifar10(str(scaled_copy(source, tmp_path / "copy", scale=0.01)))  # 500 training, 100 test
    assert copy.x_train.shape == (500, 32, 32, 3) and copy.x_test.shape == (100, 32, 32, 3)
    assert np.bincount(copy.y_train, minlength=10).tolist() == [50] * 10
    assert np.bincount(copy.y_test, minlength=10).tolist() == [10] * 10
    # Every copied image is one of the source's, under its own label.
    rows = {source.x_train[i].tobytes(): source.y_train[i] for i in range(len(source.y_train))}
    assert all(rows[copy.x_train[i].tobytes()] == copy.y_train[i] for i in range(len(copy.y_train)))
