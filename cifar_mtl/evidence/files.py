"""The evidence files of a run folder: names, schemas, atomic writes and validating reads.

Every writer goes through a temporary file renamed into place (`cifar_mtl.runs`), so
a reader never sees half a file. Every reader checks shapes, columns, dtypes and
ranges and raises `EvidenceError` naming the file and what to do; a missing file
raises its subclass `MissingEvidence`. Neither ever lets a pyarrow or NumPy error
through, so one damaged file never breaks a page or another file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_mtl.errors import UserError
from cifar_mtl.labels import NUM_CLASSES
from cifar_mtl.runs import atomic_write_bytes, atomic_write_parquet

EMBEDDINGS_FILE = "embeddings.npz"
NEIGHBOURS_FILE = "neighbours.parquet"
SALIENCY_FILE = "saliency.npz"
MAP_FILE = "map.parquet"
DUPLICATES_FILE = "duplicates.parquet"
SLICES_FILE = "slices.parquet"
FILES = (EMBEDDINGS_FILE, NEIGHBOURS_FILE, SALIENCY_FILE, MAP_FILE, DUPLICATES_FILE, SLICES_FILE)

SPLITS = ("test", "train")
SALIENCY_SIZE = 32  # maps are drawn over the 32x32 test image
NORM_TOLERANCE = 0.01  # float16 keeps ~3 significant digits: a stored unit row has norm 1 +- 0.002
SIMILARITY_TOLERANCE = 1e-3
NOISE_SLICE = -1  # members HDBSCAN leaves unclustered (see slices.py)
NULLABLE = {"pixel_similarity"}  # NaN when the images were not at hand

# column -> dtype for each table file; the order is the file's column order.
SCHEMAS: dict[str, dict[str, str]] = {
    NEIGHBOURS_FILE: {"index": "int32", "rank": "int16", "train_index": "int32",
                      "train_label": "int8", "similarity": "float32"},
    MAP_FILE: {"index": "int32", "x": "float32", "y": "float32"},
    DUPLICATES_FILE: {"index": "int32", "train_index": "int32", "train_label": "int8", "label": "int8",
                      "similarity": "float32", "pixel_similarity": "float32",
                      "near_duplicate": "bool", "label_conflict": "bool"},
    SLICES_FILE: {"index": "int32", "slice": "int32"},
}


class EvidenceError(UserError):
    """An evidence file is damaged or does not fit the run. The message names the file and the fix."""


class MissingEvidence(EvidenceError):
    """An evidence file has not been computed for this run (yet)."""


def _recompute_hint(folder: Path) -> str:
    return f"run `python -m cifar_mtl evidence --run {Path(folder).name}` to recompute it"


def _damaged(folder: Path, name: str, problem: str) -> EvidenceError:
    return EvidenceError(f"{Path(folder) / name} {problem}; {_recompute_hint(folder)}")


def _existing(folder: Path, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise MissingEvidence(f"{path} is missing; {_recompute_hint(folder)}")
    return path


# --- embeddings ---------------------------------------------------------------------


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows of `x` (N, D) scaled to unit L2 norm, as float32; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _embedding_array(x, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise EvidenceError(f"{what} embeddings must be a non-empty (N, D) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise EvidenceError(f"{what} embeddings hold non-numbers or NaN/inf values; the model's features "
                            "are broken: check the run's training log")
    return x


def write_embeddings(folder, test: np.ndarray, train: np.ndarray | None = None) -> Path:
    """Write `embeddings.npz`: rows L2-normalised and stored as float16 (zip-compressed).

    Args:
        test: (N_test, D) features of the test images, in test-set order.
        train: (N_train, D) features of the training images in training-set order, or None.

    Returns the file's path.
    """
    arrays = {"test": _embedding_array(test, "test")}
    if train is not None:
        arrays["train"] = _embedding_array(train, "train")
        if arrays["train"].shape[1] != arrays["test"].shape[1]:
            raise EvidenceError(f"train embeddings have {arrays['train'].shape[1]} dimensions and test "
                                f"embeddings {arrays['test'].shape[1]}; both must come from the same model")
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: normalise(v).astype(np.float16) for k, v in arrays.items()})
    path = Path(folder) / EMBEDDINGS_FILE
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_embeddings(folder, split: str = "test") -> np.ndarray:
    """The stored embeddings of `split` ("test" or "train"): (N, D) float16, unit rows (or zero rows)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = _existing(folder, EMBEDDINGS_FILE)
    arrays = _load_npz(folder, EMBEDDINGS_FILE, path)
    if split not in arrays:
        if split == "train":
            raise MissingEvidence(f"{path} holds no training-set embeddings (committed runs carry the test "
                                  f"side only); set CIFAR10_DIR and {_recompute_hint(folder)}")
        raise _damaged(folder, EMBEDDINGS_FILE, "has no 'test' array")
    x = arrays[split]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or x.dtype != np.float16:
        raise _damaged(folder, EMBEDDINGS_FILE, f"'{split}' is {x.dtype} of shape {x.shape}, "
                                                "not a non-empty (N, D) float16 array")
    if not np.isfinite(x).all():
        raise _damaged(folder, EMBEDDINGS_FILE, f"'{split}' holds NaN or infinite values")
    norms = np.linalg.norm(x.astype(np.float32), axis=1)
    bad = ~((np.abs(norms - 1) <= NORM_TOLERANCE) | (norms == 0))
    if bad.any():
        raise _damaged(folder, EMBEDDINGS_FILE, f"'{split}' has {int(bad.sum())} rows that are not unit "
                                                f"length (row {int(np.flatnonzero(bad)[0])}: norm "
                                                f"{norms[bad][0]:.3f})")
    if split == "train":
        test_dim = arrays["test"].shape[-1] if "test" in arrays else None
        if test_dim != x.shape[1]:
            raise _damaged(folder, EMBEDDINGS_FILE, f"'train' has {x.shape[1]} dimensions but 'test' "
                                                    f"has {test_dim}")
    return x


def _load_npz(folder, name: str, path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, loaded without pickles; damage becomes EvidenceError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as exc:  # zipfile, NumPy and OS errors of several types for a bad file
        raise _damaged(folder, name, f"cannot be read ({type(exc).__name__}: {exc})") from None


# --- saliency -----------------------------------------------------------------------


def write_saliency(folder, index, pred_map, true_map) -> Path:
    """Write `saliency.npz`.

    Args:
        index: (N,) test-set indices of the misclassified images, distinct.
        pred_map, true_map: (N, 32, 32) uint8 maps (0 = no attribution, 255 = most)
            for the predicted and the true class.
    """
    arrays = {"index": np.asarray(index), "pred_map": np.asarray(pred_map), "true_map": np.asarray(true_map)}
    problem = _saliency_problem(arrays)
    if problem:
        raise EvidenceError(f"saliency maps not written: {problem}")
    buf = io.BytesIO()
    np.savez_compressed(buf, index=arrays["index"].astype(np.int32), pred_map=arrays["pred_map"],
                        true_map=arrays["true_map"])
    path = Path(folder) / SALIENCY_FILE
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_saliency(folder) -> dict[str, np.ndarray]:
    """`{"index": (N,) int32, "pred_map": (N, 32, 32) uint8, "true_map": (N, 32, 32) uint8}`."""
    path = _existing(folder, SALIENCY_FILE)
    arrays = _load_npz(folder, SALIENCY_FILE, path)
    problem = _saliency_problem(arrays)
    if problem:
        raise _damaged(folder, SALIENCY_FILE, problem)
    return {"index": arrays["index"].astype(np.int32), "pred_map": arrays["pred_map"],
            "true_map": arrays["true_map"]}


def _saliency_problem(arrays: dict) -> str | None:
    missing = [k for k in ("index", "pred_map", "true_map") if k not in arrays]
    if missing:
        return f"lacks {', '.join(missing)}"
    index = arrays["index"]
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        return f"'index' must be a 1-D integer array, got {index.dtype} of shape {index.shape}"
    if len(index) and (index.min() < 0 or index.max() >= 2**31):
        return "'index' holds values outside 0..2**31-1"
    if len(np.unique(index)) != len(index):
        return "'index' repeats images"
    for key in ("pred_map", "true_map"):
        m = arrays[key]
        if m.dtype != np.uint8 or m.shape != (len(index), SALIENCY_SIZE, SALIENCY_SIZE):
            return (f"'{key}' must be uint8 of shape ({len(index)}, {SALIENCY_SIZE}, {SALIENCY_SIZE}), "
                    f"got {m.dtype} of shape {m.shape}")
    return None


# --- tables -------------------------------------------------------------------------


def write_table(folder, name: str, df: pd.DataFrame) -> Path:
    """Write one of the table files (`NEIGHBOURS_FILE`, `MAP_FILE`, `DUPLICATES_FILE`,
    `SLICES_FILE`) with its schema's columns and dtypes, after the same checks a read makes."""
    if name not in SCHEMAS:
        raise ValueError(f"{name!r} is not an evidence table; expected one of {', '.join(SCHEMAS)}")
    try:
        table = _checked_table(name, df)
    except _TableProblem as exc:
        raise EvidenceError(f"{name} not written: {exc}") from None
    path = Path(folder) / name
    atomic_write_parquet(path, table)
    return path


def read_table(folder, name: str) -> pd.DataFrame:
    """A table file, checked against its schema and value rules (see `SCHEMAS`)."""
    if name not in SCHEMAS:
        raise ValueError(f"{name!r} is not an evidence table; expected one of {', '.join(SCHEMAS)}")
    path = _existing(folder, name)
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise _damaged(folder, name, f"cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        return _checked_table(name, df)
    except _TableProblem as exc:
        raise _damaged(folder, name, str(exc)) from None


def read_neighbours(folder) -> pd.DataFrame:
    """`index`, `rank` (1 = nearest), `train_index`, `train_label`, `similarity` (cosine)."""
    return read_table(folder, NEIGHBOURS_FILE)


def read_map(folder) -> pd.DataFrame:
    """`index`, `x`, `y`: one row per test image."""
    return read_table(folder, MAP_FILE)


def read_duplicates(folder) -> pd.DataFrame:
    """`index`, `train_index`, `train_label`, `label`, `similarity`, `pixel_similarity`,
    `near_duplicate`, `label_conflict`: one row per test image."""
    return read_table(folder, DUPLICATES_FILE)


def read_slices(folder) -> pd.DataFrame:
    """`index`, `slice` (-1: left unclustered): one row per misclassified test image."""
    return read_table(folder, SLICES_FILE)


def evidence_status(folder) -> dict[str, bool]:
    """For each evidence file name: whether it is present and passes its read checks."""
    readers = {
        EMBEDDINGS_FILE: read_embeddings, SALIENCY_FILE: read_saliency,
        NEIGHBOURS_FILE: read_neighbours, MAP_FILE: read_map,
        DUPLICATES_FILE: read_duplicates, SLICES_FILE: read_slices,
    }
    status = {}
    for name in FILES:
        try:
            readers[name](folder)
            status[name] = True
        except EvidenceError:
            status[name] = False
    return status


class _TableProblem(Exception):
    pass


def _checked_table(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """`df`'s schema columns in schema order and dtypes; _TableProblem says what is wrong."""
    schema = SCHEMAS[name]
    if not isinstance(df, pd.DataFrame):
        raise _TableProblem(f"is a {type(df).__name__}, not a table")
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise _TableProblem(f"lacks column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns[:10]))})")
    out = {}
    for col, dtype in schema.items():
        out[col] = _column(df[col], col, dtype, nullable=col in NULLABLE)
    table = pd.DataFrame(out)
    _RULES[name](table)
    return table


def _column(series: pd.Series, col: str, dtype: str, nullable: bool = False) -> np.ndarray:
    """One column as a NumPy array of `dtype`, refusing other kinds and (unless `nullable`,
    floats only, as NaN) missing values."""
    if series.isna().any() and not nullable:
        raise _TableProblem(f"column {col!r} has missing values")
    values = series.to_numpy()
    kind = np.dtype(dtype).kind
    if kind == "b":
        if values.dtype != bool:
            raise _TableProblem(f"column {col!r} is {series.dtype}, expected bool")
        return values
    if kind == "i":
        if not np.issubdtype(values.dtype, np.integer):
            raise _TableProblem(f"column {col!r} is {series.dtype}, expected whole numbers")
        info = np.iinfo(dtype)
        if len(values) and (values.min() < info.min or values.max() > info.max):
            raise _TableProblem(f"column {col!r} has values outside {dtype}'s range")
        return values.astype(dtype)
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise _TableProblem(f"column {col!r} is {series.dtype}, expected numbers")
    values = values.astype(dtype)
    if not (np.isfinite(values) | (nullable & np.isnan(values))).all():
        raise _TableProblem(f"column {col!r} has NaN or infinite values")
    return values


def _require(ok, message: str) -> None:
    if not bool(np.all(ok)):
        raise _TableProblem(message)


def _check_labels(table: pd.DataFrame, *cols: str) -> None:
    for col in cols:
        _require((table[col] >= 0) & (table[col] < NUM_CLASSES), f"column {col!r} has labels outside 0..9")


def _check_index(table: pd.DataFrame, unique: bool = True, col: str = "index") -> None:
    _require(table[col] >= 0, f"column {col!r} has negative image indices")
    if unique:
        _require(~table[col].duplicated(), f"column {col!r} repeats images")


def _check_similarity(table: pd.DataFrame, col: str = "similarity") -> None:
    values = table[col].to_numpy()
    _require(np.isnan(values) | (np.abs(values) <= 1 + SIMILARITY_TOLERANCE),
             f"column {col!r} has values outside -1..1")


def _neighbour_rules(t: pd.DataFrame) -> None:
    _check_index(t, unique=False)
    _check_index(t, unique=False, col="train_index")
    _check_labels(t, "train_label")
    _check_similarity(t)
    _require(t["rank"] >= 1, "column 'rank' has ranks below 1")
    _require(~t.duplicated(["index", "rank"]), "repeats an (index, rank) pair")


def _map_rules(t: pd.DataFrame) -> None:
    _check_index(t)


def _duplicate_rules(t: pd.DataFrame) -> None:
    _check_index(t)
    _check_index(t, unique=False, col="train_index")
    _check_labels(t, "label", "train_label")
    _check_similarity(t)
    _check_similarity(t, "pixel_similarity")
    conflict = t["near_duplicate"] & (t["label"] != t["train_label"])
    _require(t["label_conflict"] == conflict,
             "has 'label_conflict' flags that disagree with 'near_duplicate' and the two labels")


def _slice_rules(t: pd.DataFrame) -> None:
    _check_index(t)
    _require(t["slice"] >= NOISE_SLICE, f"column 'slice' has values below {NOISE_SLICE}")


_RULES = {NEIGHBOURS_FILE: _neighbour_rules, MAP_FILE: _map_rules,
          DUPLICATES_FILE: _duplicate_rules, SLICES_FILE: _slice_rules}
