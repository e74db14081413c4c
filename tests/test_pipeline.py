"""The tf.data pipelines: training batches with their targets, test views in order."""

import numpy as np

from cifar_mtl.synthetic import fake_images
from cifar_mtl.training import pipeline
from cifar_mtl.training.augment import build_augmenter
from cifar_mtl.training.targets import make_targets


def test_dataset_batches_and_targets(tmp_path):
    labels = np.arange(20) % 10
    x = fake_images(labels)
    ds = pipeline.make_dataset(x, make_targets(labels, 0.1, None, True), 8, True, build_augmenter("flip_translate"))
    xb, yb = next(iter(ds))
    assert xb.shape == (8, 32, 32, 3) and xb.dtype.name == "float32"
    assert float(np.max(xb)) <= 255.0 and yb["class"].shape == (8, 10) and yb["animal"].shape == (8, 1)


def test_predict_dataset_keeps_the_images_in_order_as_float32():
    images = fake_images(np.arange(300) % 10)
    batches = [b.numpy() for b in pipeline.predict_dataset(images)]
    assert [len(b) for b in batches] == [pipeline.PREDICT_BATCH, 300 - pipeline.PREDICT_BATCH]
    assert all(b.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), images.astype(np.float32))
