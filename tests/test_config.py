import json

import pytest

from cifar_mtl.config import ConfigError, TrainConfig, load_config_file, make_config


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


@pytest.mark.parametrize("name", ["cpu_quick", "cpu_reference", "seed_finetune", "cpu_crossval"])
@pytest.mark.parametrize("variant", ["single", "multitask"])
def test_shipped_configs_are_valid(name, variant):
    config = load_config_file(name, [f"variant={variant}"])
    assert config.variant == variant


@pytest.mark.parametrize(
    "values",
    [
        {"finetune_epochs": 2, "warmup_epochs": 4},  # issue 12: never reaches the peak rate
        {"weights": "imagenet", "frozen_epochs": 1, "finetune_epochs": 5, "warmup_epochs": 2},  # warmup restarts per stage
    ],
)
def test_warmup_longer_than_a_stage_is_refused(values):
    with pytest.raises(ConfigError) as err:
        make_config(values)
    [line] = str(err.value).splitlines()[1:]
    assert line.strip().startswith("warmup_epochs: ") and "peak learning rate" in line and "at most" in line


def test_warmup_as_long_as_the_shortest_stage_is_accepted():
    assert make_config({"finetune_epochs": 2, "warmup_epochs": 2}).warmup_epochs == 2.0
    # from scratch there is no frozen stage, so its epoch count does not bound warmup
    assert make_config({"frozen_epochs": 1, "finetune_epochs": 5, "warmup_epochs": 3}).warmup_epochs == 3.0


@pytest.mark.parametrize("key", ["weight_decay", "warmup_epochs", "animal_loss_weight", "progress_interval",
                                 "finetune_lr", "dropout", "label_smoothing", "momentum", "val_split"])
@pytest.mark.parametrize("text", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_numbers_are_refused(key, text):
    with pytest.raises(ConfigError, match=f"{key}: .* is not a finite number"):
        make_config({}, [f"{key}={text}"])


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"seed": 2**32}, "seed: 4294967296 is larger than 4,294,967,295 (NumPy and TensorFlow seeds are 32-bit)"),
        ({"batch_size": 99999999999}, "batch_size: 99999999999 is larger than 8,192"),
        ({"finetune_epochs": 10**6}, "finetune_epochs: 1000000 is larger than 1,000"),
        ({"train_subset": 60000}, "train_subset: 60000 is larger than 50,000 (the training set holds 50,000 images)"),
        ({"finetune_blocks": 500}, "finetune_blocks: 500 is larger than 64"),
        ({"image_size": 513}, "image_size: 513 is larger than 512"),
        ({"weight_decay": 2.0}, "weight_decay: 2.0 is larger than 1"),
        ({"animal_loss_weight": 1e9}, "animal_loss_weight: 1000000000.0 is larger than 100"),
        ({"progress_interval": 1e9}, "progress_interval: 1000000000.0 is larger than 3600"),
        ({"seed": 10**400}, "seed: 10000000000000000000... (401 digits) is larger than"),
        ({"warmup_epochs": 10**400}, "warmup_epochs: 10000000000000000000... (401 digits) is too large"),
        ({"resnet_width": 10**6}, "resnet_width: 1000000 is larger than 256"),
    ],
)
def test_every_number_has_an_upper_bound(values, expected):
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert expected in str(err.value)


def test_largest_values_that_can_run_are_accepted():
    config = make_config({"seed": 2**32 - 1, "batch_size": 8192, "train_subset": 50_000, "weight_decay": 1.0,
                          "progress_interval": 3600})
    assert config.seed == 2**32 - 1 and config.batch_size == 8192


def test_a_shipped_config_is_found_by_name_and_an_unknown_one_is_named(tmp_path):
    from cifar_mtl.config import CONFIG_DIR, config_path, shipped_configs

    assert {"cpu_fast", "cpu_quick", "cpu_reference"} <= set(shipped_configs())
    for spelled in ("cpu_fast", "cpu_fast.json", "configs/cpu_fast.json"):
        assert config_path(spelled) == CONFIG_DIR / "cpu_fast.json"
    own = tmp_path / "cpu_fast.json"  # a file of the user's wins over the shipped one
    own.write_text('{"finetune_epochs": 2}')
    assert load_config_file(own).finetune_epochs == 2
    with pytest.raises(ConfigError, match="nope does not exist and is not a shipped config .*cpu_fast"):
        load_config_file("nope")


def test_labels_key_is_a_label_set_name_or_version():
    assert make_config().labels is None
    assert make_config(overrides=["labels=fixes"]).labels == "fixes"
    assert make_config(overrides=["labels=fixes@v3"]).labels == "fixes@v3"
    assert make_config(overrides=["labels=null"]).labels is None
    for bad, message in (("../x", "must be 1-64 letters"), ("fixes@3", "NAME@vK"), ("fixes@v0", "start at v1")):
        with pytest.raises(ConfigError, match=message) as err:
            make_config(overrides=[f"labels={bad}"])
        assert "labels" in err.value.by_field()
    with pytest.raises(ConfigError, match="labels: expected a string"):
        make_config({"labels": 3})
