"""CIFAR-10 files in memory: loading, checking and stratified splits, with NumPy only.

Sources, in order: the config's `data_dir`, then `$CIFAR10_DIR`, then the keras
download. A source path is an official `cifar-10-batches-py` folder (or a folder
that contains one) or the official `cifar-10-python.tar.gz`. Images come back as
uint8 arrays of shape (N, 32, 32, 3); labels as int64 arrays of shape (N,).
The tf.data pipeline over these arrays is `cifar_mtl.training.pipeline`; Keras is
imported here only to download the dataset when no copy is found.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar_mtl.errors import UserError
from cifar_mtl.labels import NUM_CLASSES

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
BATCH_SIZE = 10_000  # images in each official file, training or test
TRAIN_SIZE = 50_000  # images in the official training files, before any validation split
# Written by `synthetic.write_fake_cifar` beside its batches: {"n_train_per_batch": n, "n_test": m}.
# Without it every batch must hold the official 10,000 images.
SIZES_FILE = "synthetic-sizes.json"
BATCH_DIR = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
KERAS_CACHE = Path(os.path.expanduser("~/.keras/datasets")) / BATCH_DIR


class DataError(UserError):
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


def _numpy_rebuilder(protocol: int):
    # NumPy's own array rebuilder (_reconstruct, or _frombuffer at protocol 5), under
    # whichever module name this NumPy uses: numpy.core in NumPy 1, numpy._core in 2.
    return np.ndarray.__reduce_ex__(np.zeros(1, np.uint8), protocol)[0]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles from Python 3 use it: bytes stored as latin-1 text."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected text encoding {encoding!r}")
    return text.encode("latin-1")


# The only globals a CIFAR-10 batch pickle names. The official files (Python 2) need
# NumPy's array rebuilding; copies written by Python 3 (the synthetic ones included) may
# name it under NumPy 2's module, use `_frombuffer` (protocol 5) or `_codecs.encode` for
# bytes (protocol 2). None of these runs code; anything else could, so it is refused.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_rebuilder(2),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_rebuilder(2),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_rebuilder(5),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_rebuilder(5),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, str and uint8 arrays only; refuses every other global."""

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return allowed()


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside `_ALLOWED_GLOBALS`."""


def _unpickle(raw, name: str):
    """The object in a batch file (its bytes, or the file open for binary reading at its
    start), loaded without running anything it names."""
    stream = io.BytesIO(raw) if isinstance(raw, bytes) else raw
    try:
        return _BatchUnpickler(stream, encoding="bytes").load()
    except _ForbiddenGlobal as exc:
        raise DataError(
            f"{name}: refused: it asks to load {exc}, which an official CIFAR-10 batch never does "
            "(loading it could run code); the file is not the official one, download it again"
        ) from None


def _decode_planes(raw, name: str, expected: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle one official batch (bytes, or a binary file: see `_unpickle`); return its rows
    (N, 3072) uint8 as stored (the R, G and B planes of each 32x32 image) and labels (N,) int64.

    `expected` is the number of images the file must hold (None: any).
    """
    try:
        batch = _unpickle(raw, name)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, RecursionError, MemoryError, struct.error) as exc:
        raise DataError(
            f"{name}: cannot be read as a CIFAR-10 batch ({type(exc).__name__}: {exc}); "
            "the file is truncated or corrupt, download it again"
        ) from None
    if not isinstance(batch, dict):
        raise DataError(f"{name}: expected a pickled dict with b'data' and b'labels', got {type(batch).__name__}")
    keys = {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "labels" not in keys or "data" not in keys:
        found = sorted(map(str, keys))
        hint = " (this looks like CIFAR-100, not CIFAR-10)" if "fine_labels" in keys else ""
        raise DataError(f"{name}: expected keys 'data' and 'labels', found {found}{hint}")
    try:
        data = np.asarray(keys["data"])
        labels = np.asarray(keys["labels"])
    except (ValueError, TypeError) as exc:  # ragged or foreign contents
        raise DataError(f"{name}: 'data' or 'labels' is not an array ({exc}); the file is not a CIFAR-10 batch") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{name}: 'data' is {data.dtype} {data.shape}; expected uint8 (N, 3072)")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{name}: {len(labels)} labels for {len(data)} images; the counts must match")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{name}: labels are {labels.dtype}; expected whole numbers 0..9")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{name}: labels range {labels.min()}..{labels.max()}; expected 0..9")
    if expected is not None and len(labels) != expected:
        why = "an official CIFAR-10 batch holds" if expected == BATCH_SIZE else f"the folder's {SIZES_FILE} says"
        raise DataError(
            f"{name}: holds {len(labels):,} images; {why} {expected:,}. "
            "The file is truncated or not the official one; download it again"
        )
    return data, labels.astype(np.int64)


def _planes_to_images(data: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of colour planes -> (N, 32, 32, 3) channels-last: a view, no copy."""
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _decode_batch(raw: bytes, name: str, expected: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle one official batch; return images (N, 32, 32, 3) uint8, contiguous, and labels (N,)."""
    data, labels = _decode_planes(raw, name, expected)
    return np.ascontiguousarray(_planes_to_images(data)), labels


def _missing(path: Path) -> DataError:
    return DataError(f"{path}: missing; an official {BATCH_DIR} folder holds {', '.join(TRAIN_FILES)} and {TEST_FILE}")


def _read_folder(folder: Path, names, optional=()) -> dict[str, tuple[str, bytes]]:
    """{name: (path shown in messages, bytes)} for each of `names`, and of `optional` where present."""
    out = {}
    for name in (*names, *optional):
        path = folder / name
        if not path.is_file():
            if name in optional:
                continue
            raise _missing(path)
        out[name] = (str(path), path.read_bytes())
    return out


def _read_tarball(path: Path, names, optional=()) -> dict[str, tuple[str, bytes]]:
    """Like `_read_folder`, from the members of a .tar.gz (matched by their base names)."""
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for name in (*names, *optional):
                if name not in members:
                    if name in optional:
                        continue
                    raise DataError(f"{path}: has no {name}; expected the official {TARBALL}")
                out[name] = (f"{path}:{members[name].name}", tar.extractfile(members[name]).read())
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


def _expected_sizes(found: tuple[str, bytes] | None) -> dict[str, int]:
    """Images each file must hold: the official 10,000, or what a synthetic folder's SIZES_FILE says.

    `found` is (where, bytes) of SIZES_FILE, or None when there is none.
    """
    sizes = dict.fromkeys(TRAIN_FILES + (TEST_FILE,), BATCH_SIZE)
    if found is None:
        return sizes
    where, raw = found
    try:
        given = json.loads(raw.decode("utf-8"))
        train, test = given["n_train_per_batch"], given["n_test"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (train, test)):
            raise ValueError("sizes must be positive whole numbers")
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise DataError(
            f"{where}: cannot be read ({type(exc).__name__}: {exc}); it should hold "
            '{"n_train_per_batch": N, "n_test": M}, or be deleted for an official folder'
        ) from None
    sizes.update(dict.fromkeys(TRAIN_FILES, train), **{TEST_FILE: test})
    return sizes


def _load_files(source: str, names, decode=_decode_batch) -> list[tuple[np.ndarray, np.ndarray]]:
    """(images, labels) of each file in `names`, in that order, each checked (`decode`:
    `_decode_batch`, or `_decode_planes` for the rows as stored)."""
    kind, path = _locate(source)
    read = _read_folder if kind == "folder" else _read_tarball
    raw = read(path, names, optional=(SIZES_FILE,))
    sizes = _expected_sizes(raw.pop(SIZES_FILE, None))
    return [decode(raw[name][1], raw[name][0], sizes[name]) for name in names]


def _keras_source(allow_download: bool) -> str:
    if KERAS_CACHE.is_dir():
        return str(KERAS_CACHE)
    if not allow_download:
        raise DataError(
            "CIFAR-10 is not available: set CIFAR10_DIR to a cifar-10-batches-py folder or "
            f"{TARBALL}, or train once to download it to {KERAS_CACHE}"
        )
    import keras  # only to download: the app and the CLI's reading commands never load it

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


def _planes_one_by_one(source: str, names):
    """Yield `_decode_planes` (rows, labels) of each file in `names`. From a folder, each
    file is unpickled straight from disk, one after the other, without a copy of the whole
    file in memory first (fresh memory pages are most of a cold load's time); a tarball is
    read in one pass (gzip cannot seek)."""
    kind, path = _locate(source)
    if kind == "tar":
        yield from _load_files(source, names, decode=_decode_planes)
        return
    sizes = _expected_sizes(_read_folder(path, (), optional=(SIZES_FILE,)).get(SIZES_FILE))
    for name in names:
        file = path / name
        if not file.is_file():
            raise _missing(file)
        with open(file, "rb") as f:
            yield _decode_planes(f, str(file), sizes[name])


def load_train_view(source: str | None = None, allow_download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Only the training set, read for looking at images one by one: images (N, 32, 32, 3)
    uint8 as a channels-last view of the files' colour planes, and labels (N,) int64.

    Cheaper than `load_cifar10` for the app: no channels-last copy of the whole set, no test
    set, and one file in memory at a time. Index single images from the view; for a model,
    use `load_cifar10`.
    """
    source = resolve_source(source) or _keras_source(allow_download)
    rows, labels, start = None, [], 0
    for part, part_labels in _planes_one_by_one(source, TRAIN_FILES):
        if rows is None:  # every training file holds the same, checked, number of images
            rows = np.empty((len(part) * len(TRAIN_FILES), part.shape[1]), np.uint8)
        rows[start : start + len(part)] = part
        start += len(part)
        labels.append(part_labels)
        del part  # its bytes go before the next file is read
    return _planes_to_images(rows), np.concatenate(labels)


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

