"""The predictions table (`predictions.parquet`) and the summary figures in `metrics.json`.

Everything here works on NumPy arrays and DataFrames and runs no model: the
probabilities come from `cifar_mtl.training.predict`, which writes this table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_mtl import scores
from cifar_mtl.labels import CLASS_NAMES, IS_ANIMAL, NUM_CLASSES

PROB_COLUMNS = [f"prob_{k}" for k in range(NUM_CLASSES)]

# column -> pandas dtype; the order is the table's column order.
SCHEMA = {
    "index": "int32",
    "label": "int8",
    "pred": "int8",
    **{c: "float32" for c in PROB_COLUMNS},
    "confidence": "float32",
    "margin": "float32",
    "loss": "float32",
    "correct": "bool",
    "animal": "bool",
    "animal_prob": "float32",
}


def predictions_table(
    probs: np.ndarray,
    labels: np.ndarray,
    animal_prob: np.ndarray | None = None,
    index: np.ndarray | None = None,
) -> pd.DataFrame:
    """Build the predictions table.

    Args:
        probs: (N, 10) class-head probabilities (rows sum to 1).
        labels: (N,) test labels 0..9.
        animal_prob: (N,) animal-head outputs in [0, 1], or None for a single-task run.
        index: (N,) official test-set indices; defaults to 0..N-1.

    Returns:
        DataFrame with the columns and dtypes of `SCHEMA`, one row per image.
    """
    probs = np.asarray(probs, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    n = len(labels)
    if probs.shape != (n, NUM_CLASSES):
        raise ValueError(f"probs has shape {probs.shape}; expected ({n}, {NUM_CLASSES})")
    index = np.arange(n) if index is None else np.asarray(index)
    order = np.argsort(-probs, axis=1, kind="stable")
    top1 = probs[np.arange(n), order[:, 0]]
    top2 = probs[np.arange(n), order[:, 1]]
    pred = order[:, 0]
    given = np.clip(probs[np.arange(n), labels], 1e-7, 1.0)
    df = pd.DataFrame(
        {
            "index": index.astype(np.int32),
            "label": labels.astype(np.int8),
            "pred": pred.astype(np.int8),
            **{c: probs[:, k] for k, c in enumerate(PROB_COLUMNS)},
            "confidence": top1,
            "margin": top1 - top2,
            "loss": -np.log(given),
            "correct": pred == labels,
            "animal": IS_ANIMAL[labels],
        }
    )
    if animal_prob is None:
        # NaN in memory; pyarrow writes NaN floats from pandas as parquet nulls.
        df["animal_prob"] = np.full(n, np.nan, dtype=np.float32)
    else:
        df["animal_prob"] = np.asarray(animal_prob, dtype=np.float32).reshape(-1)
    return df


TEST_SIZE = 10_000  # rows of a run evaluated on the official test set
SUM_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; TTA averages stay as close


def validate_predictions(df: pd.DataFrame, expected_rows: int | None = TEST_SIZE) -> pd.DataFrame:
    """Check a predictions table against `SCHEMA`; return it with canonical dtypes.

    `expected_rows` is the test set's size (None skips the count check, for tables of
    a subset). Beyond the columns and types, the values must make sense: labels and
    predictions 0..9, indices unique in 0..9999, probabilities finite, non-negative and
    summing to 1 per row, and `pred`, `confidence`, `correct` and `animal` agreeing
    with the probabilities and labels. Raises ValueError listing every problem.
    """
    problems = _schema_problems(df)
    if not problems:
        problems = _value_problems(df, expected_rows)
    if problems:
        raise ValueError("; ".join(problems))
    out = df[list(SCHEMA)].copy()
    for col, dtype in SCHEMA.items():
        out[col] = out[col].astype(dtype)
    return out.reset_index(drop=True)


def _schema_problems(df: pd.DataFrame) -> list[str]:
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        return [f"is missing columns {missing}"]
    problems = []
    for col, dtype in SCHEMA.items():
        kind = df[col].dtype.kind
        want = np.dtype(dtype).kind
        if want == "f" and kind not in "f":
            problems.append(f"column {col!r} is {df[col].dtype}, expected {dtype}")
        elif want in "iu" and kind not in "iu":
            problems.append(f"column {col!r} is {df[col].dtype}, expected {dtype}")
        elif want == "b" and kind != "b":
            problems.append(f"column {col!r} is {df[col].dtype}, expected bool")
    return problems


def _value_problems(df: pd.DataFrame, expected_rows: int | None) -> list[str]:
    """What is wrong with the values of a table whose columns and types are right."""
    problems = []
    if expected_rows is not None and len(df) != expected_rows:
        problems.append(f"has {len(df):,} rows; the test set has {expected_rows:,} images")
    classes_ok = True  # `pred` and `label` index the probabilities below
    for col in ("label", "pred"):
        bad = ~df[col].between(0, NUM_CLASSES - 1)
        if bad.any():
            problems.append(f"column {col!r} has {int(bad.sum())} values outside 0..9")
            classes_ok = False
    if df["index"].duplicated().any():
        problems.append("column 'index' has duplicate test-set indices")
    if (~df["index"].between(0, TEST_SIZE - 1)).any():
        problems.append(f"column 'index' has values outside 0..{TEST_SIZE - 1}")
    probs = df[PROB_COLUMNS].to_numpy(dtype=np.float64)
    if not np.isfinite(probs).all():
        problems.append("probabilities include NaN or infinite values")
    elif (probs < 0).any():
        problems.append("probabilities include negative values")
    elif (np.abs(probs.sum(axis=1) - 1.0) > SUM_TOLERANCE).any():
        problems.append(f"probability rows do not sum to 1 (within {SUM_TOLERANCE:g})")
    elif classes_ok:
        problems += _agreement_problems(df, probs)
    animal = df["animal_prob"].to_numpy(dtype=np.float64)
    if ((animal < 0) | (animal > 1)).any():  # NaN (single-task) compares False: allowed
        problems.append("column 'animal_prob' has values outside 0..1")
    return problems


def _agreement_problems(df: pd.DataFrame, probs: np.ndarray) -> list[str]:
    """Columns derived from the probabilities and labels that disagree with them (probs (N, 10))."""
    problems = []
    n = len(df)
    labels = df["label"].to_numpy(np.int64)
    pred = df["pred"].to_numpy(np.int64)
    top = probs.max(axis=1) if n else np.zeros(0)
    # A tie may be broken either way, so `pred` only has to be one of the largest.
    if (probs[np.arange(n), pred] < top - 1e-6).any():
        problems.append("column 'pred' is not the most probable class in some rows")
    if (np.abs(df["confidence"].to_numpy(np.float64) - top) > 1e-5).any():
        problems.append("column 'confidence' differs from the largest probability in some rows")
    if (df["correct"].to_numpy(bool) != (pred == labels)).any():
        problems.append("column 'correct' disagrees with pred == label in some rows")
    if (df["animal"].to_numpy(bool) != IS_ANIMAL[labels]).any():
        problems.append("column 'animal' disagrees with the label's class in some rows")
    return problems


def probabilities(df: pd.DataFrame) -> np.ndarray:
    """(N, 10) float32 class probabilities of a predictions table."""
    return df[PROB_COLUMNS].to_numpy(dtype=np.float32)


def is_multitask(df: pd.DataFrame) -> bool:
    return bool(df["animal_prob"].notna().any())


def joint_prediction(probs: np.ndarray, animal_prob: np.ndarray) -> np.ndarray:
    """Class decision that weighs class probabilities by the animal head.

    p(c) * a for animal classes, p(c) * (1 - a) for vehicles, then argmax. Shapes:
    probs (N, 10), animal_prob (N,) -> (N,) int.
    """
    a = np.asarray(animal_prob, dtype=np.float64)[:, None]
    weights = np.where(IS_ANIMAL[None, :], a, 1.0 - a)
    return np.argmax(np.asarray(probs, dtype=np.float64) * weights, axis=1)


def expected_calibration_error(confidence, correct, bins: int = 15) -> float:
    """ECE with equal-width confidence bins: sum over bins of |accuracy - confidence| * share."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += abs(correct[mask].mean() - confidence[mask].mean()) * mask.mean()
    return float(ece)


def summary_metrics(df: pd.DataFrame) -> dict:
    """Figures for `metrics.json` computed from a predictions table.

    Keys: accuracy, per_class_accuracy (name -> accuracy), cross_group_errors,
    animal_accuracy and joint_accuracy (multitask only, else None),
    expected_calibration_error, n_test, n_errors.
    """
    labels = df["label"].to_numpy(np.int64)
    pred = df["pred"].to_numpy(np.int64)
    correct = pred == labels
    n, _, accuracy = scores.per_class(labels, correct)
    per_class = {name: float(accuracy[k]) if n[k] else None for k, name in enumerate(CLASS_NAMES)}
    out = {
        "accuracy": float(correct.mean()) if len(df) else float("nan"),
        "per_class_accuracy": per_class,
        "cross_group_errors": int(scores.cross_group(labels, pred).sum()),
        "n_test": int(len(df)),
        "n_errors": int((~correct).sum()),
        "expected_calibration_error": expected_calibration_error(
            df["confidence"].to_numpy(), correct
        ),
        "animal_accuracy": None,
        "joint_accuracy": None,
    }
    if is_multitask(df):
        a = df["animal_prob"].to_numpy(dtype=np.float64)
        out["animal_accuracy"] = float(((a >= 0.5) == IS_ANIMAL[labels]).mean())
        joint = joint_prediction(probabilities(df), a)
        out["joint_accuracy"] = float((joint == labels).mean())
    return out
