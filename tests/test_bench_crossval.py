"""bench_crossval's pieces that need no training: the fold size it trains B on, and its recipe."""

import numpy as np
import pytest

from bench.bench_crossval import fold_size, recipe
from cifar_mtl.training.crossval import make_folds


@pytest.mark.parametrize("n, k", [(1_000, 2), (12_000, 3), (50_000, 5), (1_003, 3)])
def test_fold_size_is_what_one_fold_model_trains_on(n, k):
    labels = np.arange(n) % 10
    folds = make_folds(labels, k, seed=0)
    sizes = [int((folds != f).sum()) for f in range(k)]
    assert min(sizes) <= fold_size(n, k) <= max(sizes)


def test_recipe_cuts_the_crossval_config_and_keeps_warmup_within_the_epochs():
    config = recipe("/data", 6_000, 1)
    assert config["train_subset"] == 6_000 and config["finetune_epochs"] == 1 and config["data_dir"] == "/data"
    assert config["warmup_epochs"] <= 0.5
    assert config["backbone"] == "airbench" and config["variant"] == "single"
