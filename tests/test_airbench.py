"""The fast CPU backbone: the airbench94 network, its SGD recipe, flip TTA (configs/cpu_fast.json)."""

import json

import keras
import numpy as np
import pandas as pd
import pytest

from cifar_mtl.config import ConfigError, load_config_file, make_config
from cifar_mtl.synthetic import write_fake_cifar
from cifar_mtl.training.augment import build_augmenter, tta_views
from cifar_mtl.training.fit import train
from cifar_mtl.training.models import WHITEN_LAYER, ScaledShift, backbone, build_model, init_whitening, set_stage, whitening_kernel
from cifar_mtl.training.predict import predict_arrays, predict_run

FAST = {"backbone": "airbench", "pooling": "max", "dropout": 0.0, "optimizer": "sgd", "momentum": 0.85}
FAST_MODEL = {k: FAST[k] for k in ("backbone", "pooling", "dropout")}  # the model builder's part


@pytest.mark.parametrize("variant", ["single", "multitask"])
def test_outputs_match_the_other_backbones(variant):
    model = build_model(**FAST_MODEL, variant=variant)
    out = model(np.random.uniform(0, 255, (3, 32, 32, 3)).astype("float32"))
    assert out["class"].shape == (3, 10)
    assert np.allclose(np.sum(out["class"], axis=1), 1.0, atol=1e-5)
    assert ("animal" in out) == (variant == "multitask")
    assert backbone(model).output.shape[1:] == (3, 3, 256)  # 2x2 valid conv (31) then three 2x poolings
    assert model.name == f"airbench_{variant}"


def test_config_refuses_bad_fast_settings():
    with pytest.raises(ConfigError, match="'imagenet' exists only for efficientnetv2b1; airbench"):
        make_config({"backbone": "airbench", "weights": "imagenet"})
    with pytest.raises(ConfigError, match="optimizer: 'lamb' is not one of adamw, sgd"):
        make_config({"optimizer": "lamb"})
    with pytest.raises(ConfigError, match="tta: 'ten_crop' is not one of none, flip, flip_shift"):
        make_config({"tta": "ten_crop"})
    with pytest.raises(ConfigError, match="momentum: 1.0 must be in"):
        make_config({"momentum": 1})
    # SGD runs at rates AdamW must not: the limit follows the optimizer.
    assert make_config({"optimizer": "sgd", "finetune_lr": 1.5}).finetune_lr == 1.5
    with pytest.raises(ConfigError, match="finetune_lr: 1.5 is larger than 1 .*'adamw'"):
        make_config({"finetune_lr": 1.5})
    with pytest.raises(ConfigError, match="finetune_lr: 20.0 is larger than 10"):
        make_config({"optimizer": "sgd", "finetune_lr": 20})


def test_shipped_fast_configs_are_valid_and_differ_only_in_variant():
    multitask = load_config_file("cpu_fast")
    single = load_config_file("cpu_fast_single")
    assert (multitask.backbone, multitask.variant, single.variant) == ("airbench", "multitask", "single")
    differ = {k for k, v in multitask.to_dict().items() if single.to_dict()[k] != v}
    assert differ == {"variant", "name"}


def test_whitening_kernel_whitens_2x2_patches():
    rng = np.random.default_rng(0)
    # Strongly correlated channels and neighbours, like real images.
    base = rng.normal(size=(64, 33, 33, 1))
    smooth = base[:, 1:, 1:] + base[:, :-1, :-1] + 0.3 * rng.normal(size=(64, 32, 32, 3))
    kernel = whitening_kernel(smooth, eps=0.0)
    assert kernel.shape == (2, 2, 3, 24)
    assert np.allclose(kernel[..., 12:], -kernel[..., :12])
    patches = np.concatenate(
        [smooth[:, i : 31 + i, j : 31 + j, :] for i in (0, 1) for j in (0, 1)], axis=-1
    ).reshape(-1, 12)
    out = patches @ kernel.reshape(12, 24)[:, :12]
    assert np.allclose(out.T @ out / len(out), np.eye(12), atol=1e-3)


def test_whitening_layer_is_set_and_never_trains():
    model = build_model(**FAST_MODEL)
    images = np.random.default_rng(1).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    init_whitening(model, images)
    layer = backbone(model).get_layer(WHITEN_LAYER)
    kernel = layer.get_weights()[0].copy()
    assert np.abs(kernel).max() > 0.5  # not the random initial kernel any more
    set_stage(model, "finetune", freeze_batchnorm=False)
    assert not layer.trainable and all(WHITEN_LAYER not in w.path for w in model.trainable_weights)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss={"class": "categorical_crossentropy"})
    model.fit(images.astype("float32"), {"class": np.eye(10)[np.arange(50) % 10]}, epochs=1, verbose=0)
    assert np.array_equal(layer.get_weights()[0], kernel)


def test_scaled_shift_moves_scale_squared_times_faster_under_sgd():
    layer = ScaledShift(scale=8.0)
    x = keras.ops.zeros((1, 1, 1, 4))
    layer.build(x.shape)
    optimizer = keras.optimizers.SGD(learning_rate=0.01)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.ops.sum(layer(x))
    optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_weights), layer.trainable_weights))
    # d loss / d shift = 1 for a plain bias; the stored value gets 8 and moves 8x, the shift 64x.
    assert np.allclose(keras.ops.convert_to_numpy(layer(x)), -0.01 * 64)


def test_flip_tta_averages_an_image_and_its_mirror():
    inputs = keras.Input((32, 32, 3))
    # Output depends on which side of the image is bright, so a mirror changes it.
    left = keras.layers.Lambda(lambda t: keras.ops.mean(t[:, :, :16, :], axis=(1, 2, 3)))(inputs)
    logits = keras.layers.Dense(10, kernel_initializer="glorot_uniform")(keras.layers.Reshape((1,))(left))
    model = keras.Model(inputs, {"class": keras.layers.Softmax()(logits)})
    images = np.zeros((4, 32, 32, 3), np.uint8)
    images[:2, :, :16] = 255  # bright left half
    plain, _ = predict_arrays(model, images)
    mirrored, _ = predict_arrays(model, images[:, :, ::-1])
    averaged, animal = predict_arrays(model, images, tta="flip")
    assert animal is None and not np.allclose(plain, mirrored)
    assert np.allclose(averaged, (plain + mirrored) / 2, atol=1e-6)


def test_flip_shift_tta_views_are_the_image_its_mirror_and_their_one_pixel_shifts():
    images = np.arange(2 * 32 * 32 * 3, dtype=np.int64).reshape(2, 32, 32, 3).astype(np.uint8)
    views = tta_views(images, "flip_shift")
    assert len(views) == 6 and all(v.shape == images.shape for v in views)
    plain, mirror, up_left, down_right, mirror_up_left, mirror_down_right = views
    assert np.array_equal(mirror, images[:, :, ::-1])
    # up-left: content moves one pixel down-right, the first row/column reflected from the second
    assert np.array_equal(up_left[:, 1:, 1:], images[:, :-1, :-1])
    assert np.array_equal(up_left[:, 0, 1:], images[:, 1, :-1])
    assert np.array_equal(down_right[:, :-1, :-1], images[:, 1:, 1:])
    assert np.array_equal(mirror_up_left[:, 1:, 1:], mirror[:, :-1, :-1])
    assert np.array_equal(mirror_down_right[:, :-1, :-1], mirror[:, 1:, 1:])
    assert len(tta_views(images, "none")) == 1 and len(tta_views(images, "flip")) == 2
    with pytest.raises(ValueError, match="unknown test-time augmentation 'ten_crop'"):
        tta_views(images, "ten_crop")


def test_flip_shift2_moves_whole_pixels_at_most_two():
    augment = build_augmenter("flip_shift2", seed=3)
    ramp = np.tile(np.arange(32, dtype="float32")[None, :, None] * 8, (32, 1, 3))  # value = 8 * column
    images = np.stack([ramp] * 16)
    out, _ = augment(images, {"class": np.zeros((16, 10), "float32")})
    out = np.asarray(out)
    assert set(np.unique(out)) <= set(np.unique(ramp))  # nearest sampling: no blended values
    centre = out[:, 16, 16, 0] / 8  # the column now at the centre: 16 +- 2, or mirrored 15 +- 2
    assert all(13 <= c <= 18 for c in centre) and len(set(centre)) > 1


@pytest.mark.slow  # trains a model
def test_tiny_end_to_end_run_and_reload(tmp_path):
    data_dir = write_fake_cifar(tmp_path / "data", n_train_per_batch=20, n_test=20)
    config = make_config({**FAST, "data_dir": str(data_dir), "finetune_epochs": 1, "batch_size": 16,
                          "val_split": 0.0, "augment": "flip_shift2", "finetune_lr": 0.5, "tta": "flip_shift"})
    metrics = train(config, "fast", home_dir=tmp_path / "home")
    folder = tmp_path / "home/runs/fast"
    assert json.loads((folder / "status.json").read_text())["state"] == "succeeded"
    table = pd.read_parquet(folder / "predictions.parquet")
    assert len(table) == 20 and table["animal_prob"].notna().all()
    assert (metrics["backbone"], metrics["tta"]) == ("airbench", "flip_shift")
    # The saved model (with its custom shift layer) reloads and predicts the same table.
    again = predict_run("fast", home_dir=tmp_path / "home")
    assert np.allclose(pd.read_parquet(folder / "predictions.parquet")["prob_0"], table["prob_0"], atol=1e-5)
    assert again["accuracy"] == metrics["accuracy"]
