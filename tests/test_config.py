import json

import pytest

from cifar_mtl.config import ConfigError, TrainConfig, load_config_file, make_config
from cifar_mtl.runs import PROJECT_ROOT


def test_defaults_are_valid():
    config = make_config({})
    assert config == TrainConfig()
    assert config.multitask and config.animal_eps == 0.1 and config.train_from_scratch


def test_every_problem_is_listed():
    with pytest.raises(ConfigError) as err:
        make_config({"variant": "triple", "batch_sise": 3, "label_smoothing": 1.5, "augment": "blur"})
    text = str(err.value)
    assert "batch_sise: unknown key" in text
    assert "variant: 'triple'" in text
    assert "label_smoothing: 1.5" in text
    assert "augment: 'blur'" in text


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"batch_size": "64"}, "batch_size: expected a whole number"),
        ({"batch_size": 0}, "batch_size: 0 must be at least 1"),
        ({"image_size": 16}, "image_size: 16 must be at least 32"),
        ({"finetune_lr": -1.0}, "finetune_lr"),
        ({"weights": "/no/such/file.h5"}, "weights: '/no/such/file.h5'"),
        ({"finetune_epochs": 0}, "finetune_epochs: must be at least 1"),
        ({"name": "../evil"}, "name: '../evil'"),
        ({"val_split": 0.7}, "val_split"),
        ({"variant": None}, "variant: must not be null"),
    ],
)
def test_bad_values_are_refused(values, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        make_config(values)


def test_overrides_are_typed():
    config = make_config({}, ["label_smoothing=0", "train_subset=500", "variant=single", "animal_label_smoothing=null"])
    assert config.label_smoothing == 0.0 and isinstance(config.label_smoothing, float)
    assert config.train_subset == 500 and config.variant == "single"
    assert config.animal_label_smoothing is None
    with pytest.raises(ConfigError, match="expected key=value"):
        make_config({}, ["oops"])


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json is not valid JSON"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.json")
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        load_config_file(listed)


@pytest.mark.parametrize("name", ["cpu_quick", "cpu_reference", "seed_finetune"])
@pytest.mark.parametrize("variant", ["single", "multitask"])
def test_shipped_configs_are_valid(name, variant):
    config = load_config_file(PROJECT_ROOT / "configs" / f"{name}.json", [f"variant={variant}"])
    assert config.variant == variant
