"""The tf.data input pipelines: training and validation batches of a run, and test views.

Images go in as uint8 arrays (N, 32, 32, 3) (see `cifar_mtl.cifar10`) and come out as
float32 batches (B, 32, 32, 3) with pixels in [0, 255]; the models rescale them.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from cifar_mtl.config import TrainConfig
from cifar_mtl.training.augment import build_augmenter
from cifar_mtl.training.targets import make_targets

PREDICT_BATCH = 256


def make_dataset(
    images: np.ndarray,
    targets: dict[str, np.ndarray],
    batch_size: int,
    training: bool,
    augment=None,
    seed: int = 0,
) -> tf.data.Dataset:
    """A tf.data pipeline of (images float32 (B, 32, 32, 3) in [0, 255], targets dict).

    `targets` maps output names to arrays with the images' first dimension. Training
    datasets are cached, shuffled each epoch, batched, augmented on the fly by
    `augment(images, targets) -> (images, targets)` (batch-wise) and prefetched.
    """
    ds = tf.data.Dataset.from_tensor_slices((images, targets)).cache()
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def cast(x, y):
        return tf.cast(x, tf.float32), y

    ds = ds.map(cast, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def predict_dataset(images: np.ndarray, batch_size: int = PREDICT_BATCH) -> tf.data.Dataset:
    """Batches of float32 images (B, 32, 32, 3) in [0, 255] from uint8 images (N, 32, 32, 3), in order."""
    ds = tf.data.Dataset.from_tensor_slices(np.ascontiguousarray(images)).batch(batch_size)
    ds = ds.map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def build_datasets(config: TrainConfig, data, train_idx: np.ndarray, val_idx: np.ndarray):
    """The training and validation pipelines of a run.

    Args:
        data: a `cifar10.Cifar10` (x_train (N, 32, 32, 3) uint8, y_train (N,)).
        train_idx, val_idx: indices into `data.x_train` (see `cifar10.stratified_split`).

    Returns:
        (train_ds, val_ds or None when val_idx is empty, steps per training epoch).
        Training batches are shuffled and augmented with `config.augment`.
    """

    def targets(idx):
        return make_targets(data.y_train[idx], config.label_smoothing, config.animal_eps, config.multitask)

    augment = build_augmenter(config.augment, config.seed)
    train_ds = make_dataset(data.x_train[train_idx], targets(train_idx), config.batch_size, True, augment, config.seed)
    val_ds = None
    if len(val_idx):
        val_ds = make_dataset(data.x_train[val_idx], targets(val_idx), config.batch_size, False)
    return train_ds, val_ds, math.ceil(len(train_idx) / config.batch_size)
