"""CIFAR-10 loading, stratified splits and the tf.data input pipeline.

Sources, in order: the config's `data_dir`, then `$CIFAR10_DIR`, then the keras
download. A source path is an official `cifar-10-batches-py` folder (or a folder
that contains one) or the official `cifar-10-python.tar.gz`. Images come back as
uint8 arrays of shape (N, 32, 32, 3); labels as int64 arrays of shape (N,).
TensorFlow is imported only by `make_dataset`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar_mtl.labels import NUM_CLASSES

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
TRAIN_SIZE = 50_000  # images in the official training files, before any validation split
BATCH_DIR = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
KERAS_CACHE = Path(os.path.expanduser("~/.keras/datasets")) / BATCH_DIR


class DataError(Exception):
    """CIFAR-10 is missing, truncated or not in the official format. Names the file."""


@dataclass
class Cifar10:
    """The dataset in memory. x_*: (N, 32, 32, 3) uint8; y_*: (N,) int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.x_test, self.y_test)


def fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """Short SHA-256 of images and labels: tells which test set a run was evaluated on."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.asarray(y, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def resolve_source(data_dir: str | None = None) -> str | None:
    """The dataset path to read: `data_dir`, else `$CIFAR10_DIR`, else None (keras download)."""
    source = data_dir or os.environ.get("CIFAR10_DIR") or None
    return os.path.expanduser(source) if source else None


def _decode_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle one official batch; return images (N, 32, 32, 3) uint8 and labels (N,)."""
    try:
        batch = pickle.loads(raw, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(
            f"{name}: cannot be read as a CIFAR-10 batch ({type(exc).__name__}: {exc}); "
            "the file is truncated or corrupt, download it again"
        ) from None
    if not isinstance(batch, dict):
        raise DataError(f"{name}: expected a pickled dict with b'data' and b'labels', got {type(batch).__name__}")
    keys = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "labels" not in keys or "data" not in keys:
        found = sorted(map(str, keys))
        hint = " (this looks like CIFAR-100, not CIFAR-10)" if "fine_labels" in keys else ""
        raise DataError(f"{name}: expected keys 'data' and 'labels', found {found}{hint}")
    data = np.asarray(keys["data"])
    labels = np.asarray(keys["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{name}: 'data' is {data.dtype} {data.shape}; expected uint8 (N, 3072)")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{name}: {len(labels)} labels for {len(data)} images; the counts must match")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{name}: labels range {labels.min()}..{labels.max()}; expected 0..9")
    # Each row is the R, G and B planes of one 32x32 image.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _read_folder(folder: Path, names) -> dict[str, bytes]:
    out = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing; an official {BATCH_DIR} folder holds {', '.join(TRAIN_FILES)} and {TEST_FILE}")
        out[str(path)] = path.read_bytes()
    return out


def _read_tarball(path: Path, names) -> dict[str, bytes]:
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for name in names:
                if name not in members:
                    raise DataError(f"{path}: has no {name}; expected the official {TARBALL}")
                out[f"{path}:{members[name].name}"] = tar.extractfile(members[name]).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read as a .tar.gz ({exc}); the download is truncated or corrupt") from None
    return out


def _locate(source: str) -> tuple[str, Path]:
    """('folder' | 'tar', path) for a source path, or DataError saying what was expected."""
    path = Path(source)
    if path.is_file():
        return "tar", path
    if path.is_dir():
        if (path / TEST_FILE).exists() or (path / "data_batch_1").exists():
            return "folder", path
        if (path / BATCH_DIR).is_dir():
            return "folder", path / BATCH_DIR
        if (path / TARBALL).is_file():
            return "tar", path / TARBALL
        raise DataError(f"{path}: holds neither {BATCH_DIR}/ nor {TARBALL}; point CIFAR10_DIR at one of them")
    raise DataError(f"{path}: does not exist; set CIFAR10_DIR (or data_dir) to a {BATCH_DIR} folder or {TARBALL}")


def _load_files(source: str, names) -> list[tuple[np.ndarray, np.ndarray]]:
    kind, path = _locate(source)
    raw = _read_folder(path, names) if kind == "folder" else _read_tarball(path, names)
    return [_decode_batch(data, name) for name, data in raw.items()]


def _keras_source(allow_download: bool) -> str:
    if KERAS_CACHE.is_dir():
        return str(KERAS_CACHE)
    if not allow_download:
        raise DataError(
            "CIFAR-10 is not available: set CIFAR10_DIR to a cifar-10-batches-py folder or "
            f"{TARBALL}, or train once to download it to {KERAS_CACHE}"
        )
    import keras

    try:
        keras.datasets.cifar10.load_data()  # downloads and extracts into the cache
    except Exception as exc:
        raise DataError(f"downloading CIFAR-10 failed ({exc}); set CIFAR10_DIR to a local copy") from None
    return str(KERAS_CACHE)


def load_cifar10(source: str | None = None, allow_download: bool = True) -> Cifar10:
    """Load the training and test sets from `source` (see `resolve_source`)."""
    source = resolve_source(source) or _keras_source(allow_download)
    parts = _load_files(source, TRAIN_FILES + (TEST_FILE,))
    x_train = np.concatenate([x for x, _ in parts[:-1]])
    y_train = np.concatenate([y for _, y in parts[:-1]])
    x_test, y_test = parts[-1]
    return Cifar10(x_train, y_train, x_test, y_test, source)


def load_test_set(source: str | None = None, allow_download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Only the official test set: images (10000, 32, 32, 3) uint8 and labels (10000,) int64."""
    source = resolve_source(source) or _keras_source(allow_download)
    [(x, y)] = _load_files(source, (TEST_FILE,))
    return x, y


def stratified_split(
    labels: np.ndarray, val_split: float, seed: int, subset: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) into `labels`, both stratified by class and seeded.

    `val_split` is the share held out for validation; `subset`, if given, keeps that
    many training images (in class proportion) for quick runs. Indices are sorted.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    keep = 1.0 if subset is None else min(1.0, subset / max(1, round(len(labels) * (1 - val_split))))
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        n_val = int(round(len(idx) * val_split))
        val.append(idx[:n_val])
        rest = idx[n_val:]
        train.append(rest[: max(1, int(round(len(rest) * keep)))])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def make_dataset(
    images: np.ndarray,
    targets: dict[str, np.ndarray],
    batch_size: int,
    training: bool,
    augment=None,
    seed: int = 0,
):
    """A tf.data pipeline of (images float32 (B, 32, 32, 3) in [0, 255], targets dict).

    `targets` maps output names to arrays with the images' first dimension. Training
    datasets are cached, shuffled each epoch, batched, augmented on the fly by
    `augment(images, targets) -> (images, targets)` (batch-wise) and prefetched.
    """
    import tensorflow as tf

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
