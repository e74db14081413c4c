"""Augmentation presets built from Keras's own preprocessing layers.

An augmenter is a function `(images, targets) -> (images, targets)` over one batch:
images float32 (B, H, W, 3) in [0, 255], targets a dict of (B, k) soft targets.
MixUp and CutMix mix the class and the animal targets with the same weights, so
both heads see one consistent mixture.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cifar_mtl.config import AUGMENTATIONS as PRESETS, TTA_MODES


def _flip_translate(seed: int):
    return [
        keras.layers.RandomFlip("horizontal", seed=seed),
        # 4 pixels of 32, with reflection: the classic CIFAR pad-and-crop.
        keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed + 1),
    ]


def _flip_shift2(seed: int):
    return [
        keras.layers.RandomFlip("horizontal", seed=seed),
        # Whole-pixel shifts of up to 2 (nearest sampling), with reflection: airbench's translate.
        keras.layers.RandomTranslation(
            2 / 32, 2 / 32, fill_mode="reflect", interpolation="nearest", seed=seed + 1
        ),
    ]


def tta_views(images, mode: str = "none") -> list:
    """The views of uint8 images (N, H, W, 3) whose predictions test-time augmentation averages.

    "none": the images; "flip": they and their mirrors; "flip_shift": those two and each
    shifted one pixel up-left and one down-right (reflected edges), six views in all:
    airbench's level-2 test-time augmentation.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; choose one of {', '.join(TTA_MODES)}")
    views = [images]
    if mode in ("flip", "flip_shift"):
        views.append(images[:, :, ::-1, :])
    if mode == "flip_shift":
        h, w = images.shape[1:3]
        for batch in views[:2]:
            padded = np.pad(batch, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
            views += [padded[:, :h, :w], padded[:, 2 : h + 2, 2 : w + 2]]
    return views


def build_augmenter(preset: str, seed: int = 0):
    """The augmenter for a preset name (see PRESETS), or None for "none"."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset == "none":
        return None
    layers = _flip_shift2(seed) if preset == "flip_shift2" else _flip_translate(seed)
    if preset == "randaugment":
        layers = [layers[0], keras.layers.RandAugment(value_range=(0, 255), seed=seed + 2)]
    mixer = None
    if preset == "mixup":
        mixer = keras.layers.MixUp(alpha=0.2, seed=seed + 3)
    elif preset == "cutmix":
        mixer = keras.layers.CutMix(factor=1.0, seed=seed + 3)

    def augment(images, targets):
        for layer in layers:
            images = layer(images, training=True)
        if mixer is not None:
            images, targets = mix(mixer, images, targets)
        return images, targets

    return augment


def mix(mixer, images, targets: dict):
    """Apply a MixUp/CutMix layer to images and to every target with the same draw.

    The targets are concatenated along the last axis, mixed once and split again,
    so the animal target is mixed with exactly the class target's weights.
    """
    names = sorted(targets)
    sizes = [int(targets[n].shape[-1]) for n in names]
    labels = tf.concat([tf.cast(targets[n], tf.float32) for n in names], axis=-1)
    out = mixer({"images": images, "labels": labels}, training=True)
    parts = tf.split(out["labels"], sizes, axis=-1)
    return out["images"], dict(zip(names, parts))
