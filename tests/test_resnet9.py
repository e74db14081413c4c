"""The second backbone family: ResNet-9 for CPUs, chosen by the `backbone` config key."""

import json

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.config import ConfigError, make_config
from cifar_mtl.training.models import backbone, build_model, set_stage
from cifar_mtl.synthetic import write_fake_cifar


@pytest.mark.parametrize("variant", ["single", "multitask"])
def test_outputs_match_the_efficientnet_heads(variant):
    model = build_model(backbone="resnet9", resnet_width=16, variant=variant)
    out = model(np.random.uniform(0, 255, (3, 32, 32, 3)).astype("float32"))
    assert out["class"].shape == (3, 10)
    assert ("animal" in out) == (variant == "multitask")
    assert backbone(model).output.shape[1:] == (4, 4, 128)  # 32 / 8 pixels, 8 x width channels
    assert model.name == f"resnet9_{variant}"


def test_backbone_key_refuses_unknown_names_and_imagenet():
    with pytest.raises(ConfigError, match="backbone: 'resnet50' is not one of efficientnetv2b1, resnet9, airbench"):
        make_config({"backbone": "resnet50"})
    with pytest.raises(ConfigError, match="'imagenet' exists only for efficientnetv2b1"):
        make_config({"backbone": "resnet9", "weights": "imagenet"})
    with pytest.raises(ConfigError, match="resnet_width: 4"):
        make_config({"backbone": "resnet9", "resnet_width": 4})


def test_from_scratch_everything_trains():
    model = build_model(backbone="resnet9", resnet_width=8)
    set_stage(model, "finetune", freeze_batchnorm=False)
    trainable = {w.path for w in model.trainable_weights}
    frozen = {w.path for w in model.weights} - trainable
    assert frozen and all("moving_" in p for p in frozen)  # only BatchNorm's running statistics
    assert sum(p.endswith("_conv/kernel") for p in trainable) == 8 and sum(p.endswith("_bn/gamma") for p in trainable) == 8


@pytest.mark.slow  # trains a model
def test_tiny_end_to_end_run(tmp_path):
    from cifar_mtl.training.fit import train

    data_dir = write_fake_cifar(tmp_path / "data", n_train_per_batch=20, n_test=20)
    config = make_config({"backbone": "resnet9", "resnet_width": 8, "data_dir": str(data_dir), "finetune_epochs": 1,
                          "batch_size": 16, "augment": "flip_translate"})
    metrics = train(config, "r9", home_dir=tmp_path / "home")
    folder = tmp_path / "home/runs/r9"
    assert json.loads((folder / "status.json").read_text())["state"] == "succeeded"
    table = pd.read_parquet(folder / "predictions.parquet")
    assert len(table) == 20 and table["animal_prob"].notna().all()
    assert metrics["backbone"] == "resnet9" and json.loads((folder / "config.json").read_text())["backbone"] == "resnet9"
