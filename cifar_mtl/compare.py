"""Comparing two runs on the same test images (e.g. single-task A against multitask B).

The runs must cover the same test indices with the same labels; the comparison is
paired image by image, so McNemar's exact test on the discordant images is the
right test for "did B really change accuracy".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from cifar_mtl.analysis import (
    category_counts,
    confusion_matrix,
    cross_group,
    per_class_accuracy,
    wilson_interval,
)
from cifar_mtl.labels import class_names

PAIR_COLUMNS = [
    "index", "label", "label_name", "pred_a", "pred_a_name", "confidence_a", "loss_a",
    "pred_b", "pred_b_name", "confidence_b", "loss_b",
]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for discordant counts b and c.

    Under the null each discordant image is equally likely to favour either run, so
    this is the two-sided binomial test of b successes in b + c trials at p = 0.5
    (`scipy.stats.binomtest`). Returns 1.0 when there are no discordant images.
    """
    for name, v in (("b", b), ("c", c)):
        if isinstance(v, (bool, np.bool_)) or int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative count, got {v!r}")
    b, c = int(b), int(c)
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


@dataclass
class Comparison:
    """Run A against run B on the same N test images.

    `difference` is accuracy_b - accuracy_a; `n_fixed` counts images A got wrong and
    B right (`fixed`), `n_broken` the reverse (`broken`); `p_value` is McNemar's
    exact test on those two counts. `confusion_diff` is B's confusion counts minus
    A's. `cross_group_*` count errors across the animal/vehicle line. `categories`
    (when tags were given) counts distinct error images per category for each run.
    """

    n: int
    accuracy_a: float
    accuracy_b: float
    ci_a: tuple
    ci_b: tuple
    difference: float
    n_fixed: int
    n_broken: int
    p_value: float
    fixed: pd.DataFrame
    broken: pd.DataFrame
    per_class: pd.DataFrame
    confusion_diff: pd.DataFrame
    cross_group_a: int
    cross_group_b: int
    categories: pd.DataFrame | None = field(default=None)

    def summary(self) -> dict:
        """The scalar figures as a plain dict (for JSON or a metrics row)."""
        return {
            "n": self.n, "accuracy_a": self.accuracy_a, "accuracy_b": self.accuracy_b,
            "ci_a": self.ci_a, "ci_b": self.ci_b, "difference": self.difference,
            "n_fixed": self.n_fixed, "n_broken": self.n_broken, "p_value": self.p_value,
            "cross_group_a": self.cross_group_a, "cross_group_b": self.cross_group_b,
        }


def align_runs(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables sorted by index; ValueError if their test indices or labels differ."""
    a = a.sort_values("index").reset_index(drop=True)
    b = b.sort_values("index").reset_index(drop=True)
    ia, ib = a["index"].to_numpy(np.int64), b["index"].to_numpy(np.int64)
    if len(ia) != len(ib) or not np.array_equal(ia, ib):
        only_a, only_b = np.setdiff1d(ia, ib), np.setdiff1d(ib, ia)
        raise ValueError(
            f"the runs cover different test images ({len(ia)} vs {len(ib)}; {len(only_a)} only "
            f"in A, {len(only_b)} only in B): compare runs evaluated on the same test set"
        )
    differ = a["label"].to_numpy(np.int64) != b["label"].to_numpy(np.int64)
    if differ.any():
        raise ValueError(
            f"the runs disagree on the label of {int(differ.sum())} test images (first index "
            f"{int(ia[differ][0])}): they were evaluated on different data"
        )
    return a, b


def compare_runs(a: pd.DataFrame, b: pd.DataFrame, tags: pd.DataFrame | None = None,
                 confidence: float = 0.95) -> Comparison:
    """Compare two runs' predictions tables (see `Comparison` for the fields).

    Args:
        a, b: predictions tables over the same test images.
        tags: current tags (index, category, reviewer) for `categories`, or None.
        confidence: level of the Wilson intervals `ci_a`, `ci_b`.
    """
    a, b = align_runs(a, b)
    ok_a, ok_b = a["correct"].to_numpy(bool), b["correct"].to_numpy(bool)
    n = len(a)
    fixed_mask, broken_mask = ~ok_a & ok_b, ok_a & ~ok_b
    n_fixed, n_broken = int(fixed_mask.sum()), int(broken_mask.sum())
    pair = _pair_table(a, b)
    return Comparison(
        n=n,
        accuracy_a=float(ok_a.mean()) if n else float("nan"),
        accuracy_b=float(ok_b.mean()) if n else float("nan"),
        ci_a=wilson_interval(int(ok_a.sum()), n, confidence),
        ci_b=wilson_interval(int(ok_b.sum()), n, confidence),
        difference=float(ok_b.mean() - ok_a.mean()) if n else float("nan"),
        n_fixed=n_fixed,
        n_broken=n_broken,
        p_value=mcnemar_exact(n_fixed, n_broken),
        fixed=pair[fixed_mask].reset_index(drop=True),
        broken=pair[broken_mask].reset_index(drop=True),
        per_class=_per_class(a, b),
        confusion_diff=confusion_matrix(b) - confusion_matrix(a),
        cross_group_a=int((cross_group(a) & ~ok_a).sum()),
        cross_group_b=int((cross_group(b) & ~ok_b).sum()),
        categories=None if tags is None else _category_counts(a, b, tags),
    )


def _pair_table(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    label = a["label"].to_numpy(np.int64)
    out = {"index": a["index"].to_numpy(np.int64), "label": label, "label_name": class_names(label)}
    for suffix, df in (("a", a), ("b", b)):
        pred = df["pred"].to_numpy(np.int64)
        out[f"pred_{suffix}"] = pred
        out[f"pred_{suffix}_name"] = class_names(pred)
        out[f"confidence_{suffix}"] = df["confidence"].to_numpy(np.float32)
        out[f"loss_{suffix}"] = df["loss"].to_numpy(np.float32)
    return pd.DataFrame(out, columns=PAIR_COLUMNS)


def _per_class(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    pa, pb = per_class_accuracy(a), per_class_accuracy(b)
    return pd.DataFrame(
        {
            "name": pa["name"],
            "n": pa["n"],
            "accuracy_a": pa["accuracy"],
            "accuracy_b": pb["accuracy"],
            "difference": pb["accuracy"] - pa["accuracy"],
        }
    )


def _category_counts(a: pd.DataFrame, b: pd.DataFrame, tags: pd.DataFrame) -> pd.DataFrame:
    """Distinct error images per category for each run: DataFrame[category -> a, b]."""
    cats = sorted(set(tags["category"]))
    # Each image has one true class, so summing the per-class table counts images once.
    return pd.DataFrame(
        {name: category_counts(df, tags, categories=cats).sum(axis=0).to_numpy(np.int64)
         for name, df in (("a", a), ("b", b))},
        index=pd.Index(cats, name="category"),
    )


def summary_text(c: Comparison, name_a: str = "A", name_b: str = "B") -> str:
    """A few lines of plain text for a `Comparison`: both accuracies with their intervals,
    cross-group errors, the difference with fixed/broken counts and McNemar's p-value."""
    lines = []
    for label, name, acc, (low, high), cross in [
        ("A", name_a, c.accuracy_a, c.ci_a, c.cross_group_a),
        ("B", name_b, c.accuracy_b, c.ci_b, c.cross_group_b),
    ]:
        lines.append(f"{label} {name}: accuracy {acc:.2%} (95% CI {low:.2%}-{high:.2%}), cross-group errors {cross:,}")
    lines.append(
        f"B - A: {c.difference * 100:+.2f} points on {c.n:,} images; B fixed {c.n_fixed:,}, "
        f"broke {c.n_broken:,}; McNemar exact p = {c.p_value:.2g}"
    )
    return "\n".join(lines)
