"""EfficientNetV2B1 (or a CPU-sized network: ResNet-9 or the airbench net) with a
`class` head and, for the multitask variant, an `animal` head.

Input: float32 images (B, 32, 32, 3) with pixels in [0, 255]; the backbone's own
preprocessing layer rescales them (B0-B3 expect [0, 255], not [-1, 1]). Outputs: a
dict {"class": (B, 10) softmax, "animal": (B, 1) sigmoid}; single-task models have
only "class". Names of output layers equal their dict keys, so Keras's history has
`class_loss`, `class_accuracy`, `animal_loss`, ...
"""

from __future__ import annotations

import functools
import os
import re

import numpy as np

from cifar_mtl.config import TrainConfig
from cifar_mtl.labels import NUM_CLASSES

BACKBONE_NAME = "backbone"


def _weights_arg(weights: str):
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    return os.path.expanduser(weights)


def build_backbone(config: TrainConfig):
    """The feature extractor named by `config.backbone`, for `config.image_size` inputs."""
    if config.backbone == "resnet9":
        return build_resnet9(config.image_size, config.resnet_width, _weights_arg(config.weights))
    if config.backbone == "airbench":
        return build_airbench(config.image_size, _weights_arg(config.weights))
    return build_efficientnet(config)


# Per-channel mean and standard deviation of the CIFAR-10 training images (0..255).
CIFAR_MEAN = (125.3, 123.0, 113.9)
CIFAR_STD = (63.0, 62.1, 66.7)


def _conv_bn(x, filters: int, name: str, pool: bool = False):
    import keras

    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    if pool:
        x = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.Activation("gelu", name=f"{name}_act")(x)


def build_resnet9(size: int = 32, width: int = 64, weights: str | None = None):
    """ResNet-9 (the DAWNBench CIFAR-10 design) as a feature extractor for CPUs.

    Input (B, size, size, 3) float pixels in [0, 255]; output (B, s, s, 8 * width)
    feature maps (s = size / 8). Stages: prep conv, then three stages that double the
    channels and halve the resolution, the first and last with a residual pair of
    convolutions. About 1/15 of EfficientNetV2B1's FLOPs at width 32.
    """
    import keras

    inputs = keras.Input(shape=(size, size, 3), name="pixels")
    x = keras.layers.Normalization(
        mean=list(CIFAR_MEAN), variance=[s * s for s in CIFAR_STD], name="normalize"
    )(inputs)
    x = _conv_bn(x, width, "prep")
    for stage, (mult, residual) in enumerate([(2, True), (4, False), (8, True)], start=1):
        x = _conv_bn(x, width * mult, f"stage{stage}", pool=True)
        if residual:
            r = _conv_bn(x, width * mult, f"stage{stage}_res1")
            r = _conv_bn(r, width * mult, f"stage{stage}_res2")
            x = keras.layers.Add(name=f"stage{stage}_add")([x, r])
    base = keras.Model(inputs, x, name=BACKBONE_NAME)
    if weights:
        base.load_weights(weights)
    return base


AIRBENCH_WIDTHS = (64, 256, 256)
WHITEN_LAYER = "whiten"


@functools.cache
def shift_layer_class():
    """The ScaledShift layer class (defined and registered with Keras on first use)."""
    import keras

    @keras.saving.register_keras_serializable(package="cifar_mtl")
    class ScaledShift(keras.layers.Layer):
        """Adds a learned per-channel shift stored divided by `scale`: (B, H, W, C) -> same.

        SGD moves the stored value by lr * scale * grad, so the shift itself moves
        scale**2 times faster than a plain bias: airbench's 64x bias learning rate
        (scale 8) without per-variable learning rates, which Keras optimizers lack.
        """

        def __init__(self, scale: float = 8.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def build(self, input_shape):
            self.shift = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="shift")

        def call(self, x):
            return x + keras.ops.cast(self.shift * self.scale, x.dtype)

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

    return ScaledShift


def _airbench_bn(x, name: str):
    import keras

    # No learned scale (BN output feeds GELU; airbench freezes it at 1) and a fast shift.
    x = keras.layers.BatchNormalization(momentum=0.4, epsilon=1e-5, center=False, scale=False, name=f"{name}_bn")(x)
    x = shift_layer_class()(name=f"{name}_shift")(x)
    return keras.layers.Activation("gelu", name=f"{name}_act")(x)


def build_airbench(size: int = 32, weights: str | None = None, widths: tuple = AIRBENCH_WIDTHS):
    """The airbench94 network (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds") as a feature extractor.

    Input (B, size, size, 3) float pixels in [0, 255]; output (B, s, s, widths[-1])
    with s = (size - 1) // 8, scaled by 1/9 (airbench's logit scale, applied before
    the heads). A frozen 2x2 patch-whitening convolution (set it with
    `init_whitening`), then three groups of conv-pool-BN-GELU-conv-BN-GELU. About
    0.24 GFLOP per image forward at 32x32, a third of ResNet-9 at width 64.
    """
    import keras

    inputs = keras.Input(shape=(size, size, 3), name="pixels")
    x = keras.layers.Normalization(
        mean=list(CIFAR_MEAN), variance=[s * s for s in CIFAR_STD], name="normalize"
    )(inputs)
    # 24 = 2 x (2*2*3): each whitening direction with both signs, so GELU keeps both halves.
    whiten = keras.layers.Conv2D(24, 2, padding="valid", use_bias=False, name=WHITEN_LAYER)
    whiten.trainable = False
    x = keras.layers.Activation("gelu", name="whiten_act")(whiten(x))
    for group, width in enumerate(widths, start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"group{group}_conv1")(x)
        x = keras.layers.MaxPooling2D(2, name=f"group{group}_pool")(x)
        x = _airbench_bn(x, f"group{group}_1")
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"group{group}_conv2")(x)
        x = _airbench_bn(x, f"group{group}_2")
    x = keras.layers.Rescaling(1.0 / 9.0, name="scale")(x)
    base = keras.Model(inputs, x, name=BACKBONE_NAME)
    if weights:
        base.load_weights(weights)
    return base


def whitening_kernel(images: np.ndarray, eps: float = 5e-4) -> np.ndarray:
    """The patch-whitening kernel (2, 2, 3, 24) for normalised images (N, H, W, 3).

    Eigenvectors of the (uncentred) covariance of all 2x2 patches, each divided by
    the square root of its eigenvalue, with both signs.
    """
    x = np.asarray(images, dtype=np.float32)
    patches = np.concatenate(
        [x[:, i : x.shape[1] - 1 + i, j : x.shape[2] - 1 + j, :] for i in (0, 1) for j in (0, 1)], axis=-1
    )
    # concatenation order is (i, j, channel): the same order as a (2, 2, 3) kernel flattened
    flat = patches.reshape(-1, 12)
    values, vectors = np.linalg.eigh((flat.T @ flat).astype(np.float64) / len(flat))
    filters = vectors / np.sqrt(values + eps)  # columns are filters
    kernel = filters.reshape(2, 2, 3, 12)
    return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


def init_whitening(model, images: np.ndarray) -> None:
    """Set the airbench backbone's whitening conv from uint8 training images (N, 32, 32, 3)."""
    base = backbone(model)
    # 5,000 images give 4.8 million patches: plenty for a 12x12 covariance.
    sample = np.asarray(images[:5000], dtype=np.float32)
    normalized = (sample - np.array(CIFAR_MEAN, np.float32)) / np.array(CIFAR_STD, np.float32)
    base.get_layer(WHITEN_LAYER).set_weights([whitening_kernel(normalized)])


def build_efficientnet(config: TrainConfig):
    """The EfficientNetV2B1 feature extractor (no top) for `config.image_size` inputs."""
    import keras

    size = config.image_size
    base = keras.applications.EfficientNetV2B1(
        include_top=False,
        weights=_weights_arg(config.weights),
        input_shape=(size, size, 3),
        include_preprocessing=True,
    )
    base.name = BACKBONE_NAME
    return base


def build_model(config: TrainConfig):
    """The full model for `config` (see module docstring for inputs and outputs)."""
    import keras

    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = inputs
    if config.image_size != 32:
        x = keras.layers.Resizing(config.image_size, config.image_size, name="resize")(x)
    base = build_backbone(config)
    # No `training=False` here: a functional model passes the outer call's `training`
    # to every inner layer (keras/src/models/functional.py, operation_fn), overriding
    # it. BatchNorm's inference mode while fine-tuning comes from `set_stage` instead.
    x = base(x)
    pool = keras.layers.GlobalAveragePooling2D if config.pooling == "avg" else keras.layers.GlobalMaxPooling2D
    x = pool(name="pool")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    # float32 heads keep softmax/sigmoid stable under mixed precision.
    outputs = {"class": keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="class")(x)}
    if config.multitask:
        outputs["animal"] = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="animal")(x)
    return keras.Model(inputs, outputs, name=f"{config.backbone}_{config.variant}")


def backbone(model):
    return model.get_layer(BACKBONE_NAME)


def _block_id(layer_name: str) -> str | None:
    match = re.match(r"(block\d+[a-z]+)_", layer_name)
    return match.group(1) if match else None


def set_stage(model, stage: str, finetune_blocks: int | None = None, freeze_batchnorm: bool = True) -> None:
    """Make the right weights trainable for a stage; recompile afterwards.

    "frozen": the backbone is frozen, only the heads train.
    "finetune": the whole backbone trains, or only its top `finetune_blocks` blocks
    (plus the final 1x1 conv). With `freeze_batchnorm` (pretrained weights), every
    BatchNormalization layer stays frozen, which in Keras 3 also means inference
    mode; from scratch (`freeze_batchnorm=False`) BatchNorm learns its statistics.
    """
    base = backbone(model)
    if stage == "frozen":
        base.trainable = False
        return
    if stage != "finetune":
        raise ValueError(f"unknown stage {stage!r}; expected 'frozen' or 'finetune'")
    base.trainable = True
    top = _top_blocks(base, finetune_blocks)
    for layer in base.layers:
        block = _block_id(layer.name)
        if top is not None:
            layer.trainable = (block in top) if block else layer.name.startswith("top_")
        if freeze_batchnorm and layer.__class__.__name__ == "BatchNormalization":
            layer.trainable = False
        if layer.name == WHITEN_LAYER:  # a fixed transform of the input, never trained
            layer.trainable = False


def _top_blocks(base, n: int | None) -> set[str] | None:
    """Ids of the last `n` blocks (e.g. {"block6h", "block6g"}), or None for all."""
    if n is None:
        return None
    blocks = []
    for layer in base.layers:
        block = _block_id(layer.name)
        if block and block not in blocks:
            blocks.append(block)
    return set(blocks[-n:])
