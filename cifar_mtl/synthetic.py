"""Generated stand-ins for CIFAR-10 files and for finished runs.

Used by the tests, the benchmarks and the app's fixture home. The files are
written in the official formats (the pickled "python version" batches, the
tarball), so the real loaders read them; the runs follow the run-folder contract.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_mtl.cifar10 import SIZES_FILE
from cifar_mtl.labels import CLASS_NAMES, IS_ANIMAL, NUM_CLASSES
from cifar_mtl.predictions import predictions_table, summary_metrics
from cifar_mtl.runs import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    atomic_write_json,
    atomic_write_parquet,
    run_dir,
    write_status,
)

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def fake_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 32, 32, 3) uint8 images whose colour and stripe pattern depend on the label."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n = len(labels)
    yy, xx = np.mgrid[0:32, 0:32]
    images = rng.integers(0, 60, size=(n, 32, 32, 3)).astype(np.int32)
    for i, y in enumerate(labels):
        hue = np.array([(y * 37) % 256, (y * 91 + 80) % 256, (y * 53 + 160) % 256])
        stripes = ((xx + yy * (y % 3)) // (2 + y % 4)) % 2
        images[i] += (stripes[..., None] * hue[None, None, :] * 0.7).astype(np.int32)
    return np.clip(images, 0, 255).astype(np.uint8)


class _Py2Pickler(pickle._Pickler):
    """Protocol 2, with bytes written as Python 2 strings, as in the official files.

    Python 3's own protocol 2 writes bytes as latin-1 text to be re-encoded on load,
    which makes a generated 10,000-image batch several times slower to read than an
    official one; benchmarks on generated files would then time the wrong thing.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _dump(obj, path: Path) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def _batch(images: np.ndarray, labels: np.ndarray, name: str) -> dict:
    # The official files store each image as its R, G and B planes, row-major.
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(data, dtype=np.uint8),
        b"filenames": [f"img_{name}_{i}.png".encode() for i in range(len(images))],
    }


def write_batches(folder: str | Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray) -> Path:
    """Write images in the official layout under `folder`; return the `cifar-10-batches-py` path.

    Args:
        x_train: (N, 32, 32, 3) uint8, N a multiple of 5 (the five training files hold N / 5 each).
        y_train: (N,) labels 0..9.
        x_test, y_test: the test images and labels, any number.

    Beside the batches goes `cifar10.SIZES_FILE` with the sizes, without which the
    loader wants the official 10,000 images per file.
    """
    n_per_batch, rest = divmod(len(x_train), len(TRAIN_BATCHES))
    if rest or not n_per_batch or len(y_train) != len(x_train) or len(y_test) != len(x_test):
        raise ValueError(f"{len(x_train)} training images for {len(y_train)} labels: give a positive multiple of "
                         f"{len(TRAIN_BATCHES)} images, one label each (and one label per test image)")
    out = Path(folder) / BATCH_DIR
    out.mkdir(parents=True, exist_ok=True)
    for b, name in enumerate(TRAIN_BATCHES):
        part = slice(b * n_per_batch, (b + 1) * n_per_batch)
        _dump(_batch(x_train[part], y_train[part], name), out / name)
    _dump(_batch(x_test, y_test, "test"), out / "test_batch")
    meta = {
        b"label_names": [n.encode() for n in CLASS_NAMES],
        b"num_cases_per_batch": n_per_batch,
        b"num_vis": 3072,
    }
    _dump(meta, out / "batches.meta")
    (out / SIZES_FILE).write_text(json.dumps({"n_train_per_batch": n_per_batch, "n_test": len(x_test)}) + "\n")
    return out


def write_fake_cifar(
    folder: str | Path,
    n_train_per_batch: int = 20,
    n_test: int = 20,
    seed: int = 0,
    tar: bool = False,
) -> Path:
    """Write a small dataset in the official layout; return the `cifar-10-batches-py` path.

    Labels cycle through the ten classes so every class is present (see
    `write_batches` for the files). With `tar=True` also writes
    `cifar-10-python.tar.gz` beside the folder (and returns the tarball).
    """
    rng = np.random.default_rng(seed)
    x_train, y_train = [], []
    for b in range(len(TRAIN_BATCHES)):
        labels = (np.arange(n_train_per_batch) + b) % NUM_CLASSES
        rng.shuffle(labels)
        x_train.append(fake_images(labels, seed=seed * 100 + b))
        y_train.append(labels)
    y_test = np.arange(n_test) % NUM_CLASSES
    x_test = fake_images(y_test, seed=seed * 100 + 99)
    out = write_batches(folder, np.concatenate(x_train), np.concatenate(y_train), x_test, y_test)
    if not tar:
        return out
    folder = Path(folder)
    tar_path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as t:
        t.add(out, arcname=BATCH_DIR)
    return tar_path


def fake_probabilities(labels: np.ndarray, accuracy: float = 0.8, seed: int = 0) -> np.ndarray:
    """(N, 10) softmax outputs that are right for about `accuracy` of the labels."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n = len(labels)
    logits = rng.normal(0.0, 1.0, size=(n, NUM_CLASSES))
    right = rng.random(n) < accuracy
    # Wrong answers favour a "confusable" neighbour class, as real models do.
    wrong_class = np.where(rng.random(n) < 0.6, (labels + 1) % NUM_CLASSES, rng.integers(0, 10, n))
    wrong_class = np.where(wrong_class == labels, (labels + 2) % NUM_CLASSES, wrong_class)
    target = np.where(right, labels, wrong_class)
    logits[np.arange(n), target] += rng.uniform(1.5, 6.0, size=n)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def make_fake_run(
    run_id: str,
    home_dir=None,
    n: int = 10_000,
    variant: str = "multitask",
    accuracy: float = 0.8,
    seed: int = 0,
    label_smoothing: float = 0.1,
    labels: np.ndarray | None = None,
) -> Path:
    """Write a complete run folder with generated predictions; return its path.

    `labels` defaults to the official test set's balance (class = index mod 10).
    """
    folder = run_dir(run_id, home_dir)
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(n) % NUM_CLASSES if labels is None else np.asarray(labels)
    probs = fake_probabilities(labels, accuracy, seed)
    animal_prob = None
    if variant == "multitask":
        rng = np.random.default_rng(seed + 1)
        animal_prob = np.clip(IS_ANIMAL[labels] * 0.8 + rng.normal(0.1, 0.15, len(labels)), 0, 1)
    config = {
        "variant": variant,
        "backbone": "efficientnetv2b1",
        "label_smoothing": label_smoothing,
        "frozen_epochs": 0,
        "finetune_epochs": 3,
        "seed": seed,
        "synthetic": True,
    }
    atomic_write_json(folder / CONFIG_FILE, config)
    write_status(folder, "running", pid=None)
    history = pd.DataFrame(
        {
            "stage": ["finetune"] * 3,
            "epoch": [1, 2, 3],
            "class_accuracy": [accuracy * 0.6, accuracy * 0.85, accuracy],
            "loss": [2.0, 1.2, 0.8],
            "val_class_accuracy": [accuracy * 0.55, accuracy * 0.8, accuracy * 0.95],
            "val_loss": [2.1, 1.4, 1.0],
        }
    )
    buf = io.StringIO()
    history.to_csv(buf, index=False)
    (folder / HISTORY_FILE).write_text(buf.getvalue())
    table = predictions_table(probs, labels, animal_prob)
    atomic_write_parquet(folder / PREDICTIONS_FILE, table)
    metrics = summary_metrics(table)
    metrics.update(variant=variant, label_smoothing=label_smoothing, seconds=0.0, synthetic=True)
    atomic_write_json(folder / METRICS_FILE, metrics)
    write_status(folder, "succeeded")
    return folder
