"""EfficientNetV2B1 (or a CPU-sized network: ResNet-9 or the airbench net) with a
`class` head and, for the multitask variant, an `animal` head.

Input: float32 images (B, 32, 32, 3) with pixels in [0, 255]; the backbone's own
preprocessing layer rescales them (B0-B3 expect [0, 255], not [-1, 1]). Outputs: a
dict {"class": (B, 10) softmax, "animal": (B, 1) sigmoid}; single-task models have
only "class". Names of output layers equal their dict keys, so Keras's history has
`class_loss`, `class_accuracy`, `animal_loss`, ...

Builders take keyword arguments, as `keras.applications` does; the defaults are
`TrainConfig`'s, and a run passes its config's fields (`fit.model_from_config`).
"""

from __future__ import annotations

import os
import re

import keras
import numpy as np

from cifar_mtl.labels import NUM_CLASSES

BACKBONE_NAME = "backbone"


def _weights_arg(weights: str):
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    return os.path.expanduser(weights)


def build_backbone(
    *, backbone: str = "efficientnetv2b1", image_size: int = 32, weights: str = "none", resnet_width: int = 64
):
    """The feature extractor named `backbone` for (B, image_size, image_size, 3) inputs.

    `weights`: "none", "imagenet" (EfficientNetV2B1 only) or a path to a weights file;
    `resnet_width`: ResNet-9's first-stage channels (ignored by the others).
    """
    if backbone == "resnet9":
        return build_resnet9(image_size=image_size, width=resnet_width, weights=weights)
    if backbone == "airbench":
        return build_airbench(image_size=image_size, weights=weights)
    return build_efficientnet(image_size=image_size, weights=weights)


# Per-channel mean and standard deviation of the CIFAR-10 training images (0..255).
CIFAR_MEAN = (125.3, 123.0, 113.9)
CIFAR_STD = (63.0, 62.1, 66.7)


def _conv_bn(x, filters: int, name: str, pool: bool = False):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    if pool:
        x = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.Activation("gelu", name=f"{name}_act")(x)


def build_resnet9(*, image_size: int = 32, width: int = 64, weights: str = "none"):
    """ResNet-9 (the DAWNBench CIFAR-10 design) as a feature extractor for CPUs.

    Input (B, image_size, image_size, 3) float pixels in [0, 255]; output
    (B, s, s, 8 * width) feature maps (s = image_size / 8); `weights` "none" or a
    file. Stages: prep conv, then three stages that double the channels and halve
    the resolution, the first and last with a residual pair of convolutions. About
    1/15 of EfficientNetV2B1's FLOPs at width 32.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="pixels")
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
    if _weights_arg(weights):
        base.load_weights(_weights_arg(weights))
    return base


AIRBENCH_WIDTHS = (64, 256, 256)
WHITEN_LAYER = "whiten"


# Registered with Keras as "cifar_mtl>ScaledShift", the name saved airbench models give it.
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


def _airbench_bn(x, name: str):
    # No learned scale (BN output feeds GELU; airbench freezes it at 1) and a fast shift.
    x = keras.layers.BatchNormalization(momentum=0.4, epsilon=1e-5, center=False, scale=False, name=f"{name}_bn")(x)
    x = ScaledShift(name=f"{name}_shift")(x)
    return keras.layers.Activation("gelu", name=f"{name}_act")(x)


def build_airbench(*, image_size: int = 32, weights: str = "none", widths: tuple = AIRBENCH_WIDTHS):
    """The airbench94 network (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds") as a feature extractor.

    Input (B, image_size, image_size, 3) float pixels in [0, 255]; output
    (B, s, s, widths[-1]) with s = (image_size - 1) // 8, scaled by 1/9 (airbench's
    logit scale, applied before the heads); `weights` "none" or a file. A frozen 2x2
    patch-whitening convolution (set it with `init_whitening`), then three groups of
    conv-pool-BN-GELU-conv-BN-GELU. About 0.24 GFLOP per image forward at 32x32, a
    third of ResNet-9 at width 64.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="pixels")
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
    if _weights_arg(weights):
        base.load_weights(_weights_arg(weights))
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


def build_efficientnet(*, image_size: int = 32, weights: str = "none"):
    """The EfficientNetV2B1 feature extractor (no top) for (B, image_size, image_size, 3) inputs."""
    base = keras.applications.EfficientNetV2B1(
        include_top=False,
        weights=_weights_arg(weights),
        input_shape=(image_size, image_size, 3),
        include_preprocessing=True,
    )
    base.name = BACKBONE_NAME
    return base


def build_model(
    *,
    backbone: str = "efficientnetv2b1",
    variant: str = "multitask",
    image_size: int = 32,
    weights: str = "none",
    dropout: float = 0.2,
    pooling: str = "avg",
    resnet_width: int = 64,
):
    """The full model (see the module docstring for its input and outputs).

    Args:
        backbone: "efficientnetv2b1", "resnet9" or "airbench" (see `build_backbone`).
        variant: "single" (a `class` head) or "multitask" (plus an `animal` head).
        image_size: side the 32x32 input images are resized to inside the model.
        weights: "none", "imagenet" or a path to a backbone weights file.
        dropout: dropout rate before the heads.
        pooling: "avg" or "max" global pooling of the backbone's feature maps.
        resnet_width: ResNet-9's first-stage channels.

    Returns:
        A Keras model named "<backbone>_<variant>".
    """
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = inputs
    if image_size != 32:
        x = keras.layers.Resizing(image_size, image_size, name="resize")(x)
    base = build_backbone(backbone=backbone, image_size=image_size, weights=weights, resnet_width=resnet_width)
    # No `training=False` here: a functional model passes the outer call's `training`
    # to every inner layer (keras/src/models/functional.py, operation_fn), overriding
    # it. BatchNorm's inference mode while fine-tuning comes from `set_stage` instead.
    x = base(x)
    pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
    x = pool(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 heads keep softmax/sigmoid stable under mixed precision.
    outputs = {"class": keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="class")(x)}
    if variant == "multitask":
        outputs["animal"] = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="animal")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_{variant}")


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
