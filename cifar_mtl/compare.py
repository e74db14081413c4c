"""Comparing two runs on the same test images (e.g. single-task A against multitask B).

The runs must cover the same test indices with the same labels; the comparison is
paired image by image, so McNemar's exact test on the discordant images is the
right test for "did B really change accuracy".

The same pair can be scored on the original test labels and on the labels reviewers
corrected (`compare_with_corrections`): test verdicts never change the test set, they
only define the corrected label vector (`mislabels.corrected_labels`).
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
from cifar_mtl.mislabels import resolve_mislabels

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


@dataclass(frozen=True)
class PairedScores:
    """Runs A and B scored against one label vector over the same N images.

    `ci_a`, `ci_b` are Wilson intervals of the accuracies; `difference` is
    accuracy_b - accuracy_a (a fraction, not points); `n_fixed` counts images A gets
    wrong and B right, `n_broken` the reverse; `p_value` is McNemar's exact test on them.
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


def _scores(ok_a: np.ndarray, ok_b: np.ndarray, confidence: float) -> PairedScores:
    """`PairedScores` from two (N,) boolean arrays: is each image right in run A, in run B."""
    n = len(ok_a)
    n_fixed, n_broken = int((~ok_a & ok_b).sum()), int((ok_a & ~ok_b).sum())
    acc_a = float(ok_a.mean()) if n else float("nan")
    acc_b = float(ok_b.mean()) if n else float("nan")
    return PairedScores(
        n=n, accuracy_a=acc_a, accuracy_b=acc_b,
        ci_a=wilson_interval(int(ok_a.sum()), n, confidence),
        ci_b=wilson_interval(int(ok_b.sum()), n, confidence),
        difference=acc_b - acc_a, n_fixed=n_fixed, n_broken=n_broken,
        p_value=mcnemar_exact(n_fixed, n_broken),
    )


def paired_scores(labels, pred_a, pred_b, confidence: float = 0.95) -> PairedScores:
    """Runs A and B against `labels`: accuracies with intervals, fixed/broken, McNemar.

    Args:
        labels: (N,) class indices 0..9, the original test labels or corrected ones.
        pred_a, pred_b: (N,) each run's predicted class for the same images, same order.
        confidence: level of the Wilson intervals.
    """
    labels, pred_a, pred_b = (np.asarray(x, dtype=np.int64) for x in (labels, pred_a, pred_b))
    if not labels.shape == pred_a.shape == pred_b.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape}, pred_a {pred_a.shape} and pred_b {pred_b.shape} must be "
                         "1-D arrays of the same length: one entry per test image, in the same order")
    return _scores(pred_a == labels, pred_b == labels, confidence)


@dataclass(frozen=True)
class Comparison(PairedScores):
    """Run A against run B on the same N test images.

    `difference` is accuracy_b - accuracy_a; `n_fixed` counts images A got wrong and
    B right (`fixed`), `n_broken` the reverse (`broken`); `p_value` is McNemar's
    exact test on those two counts. `confusion_diff` is B's confusion counts minus
    A's. `cross_group_*` count errors across the animal/vehicle line. `categories`
    (when tags were given) counts distinct error images per category for each run.
    The `PairedScores` fields come first.
    """

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
    s = _scores(ok_a, ok_b, confidence)
    fixed_mask, broken_mask = ~ok_a & ok_b, ok_a & ~ok_b
    pair = _pair_table(a, b)
    return Comparison(
        **vars(s),
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


# --- the original and the reviewer-corrected test labels ------------------------------------

CORRECTION_RULE = (
    "majority of every reviewer's verdicts on Mislabels: a confirmed verdict votes for its label, a rejected "
    "one for the test label, unsure does not vote; a tie keeps the test label"
)
CHANGED_COLUMNS = [
    "index", "label", "label_name", "corrected_label", "corrected_name", "votes", "n_verdicts",
    "pred_a", "pred_a_name", "pred_b", "pred_b_name", "right_a", "right_b",
]


@dataclass
class LabelComparison:
    """Runs A and B on the original test labels and on the labels reviewers corrected.

    `corrected` equals `original` when the verdicts change none of these images' labels.
    `changed` has one row per image whose label they changed (`CHANGED_COLUMNS`): the
    test label, the corrected label with its winning `votes` out of `n_verdicts`, each
    run's prediction, and `right_a`, `right_b`: whether the run predicts the corrected
    label (on the test label a run was right only if it predicted `label`).
    `n_verdicts` counts the current test verdicts, every reviewer's, on these images.
    """

    original: PairedScores
    corrected: PairedScores
    changed: pd.DataFrame
    n_verdicts: int

    @property
    def n_changed(self) -> int:
        """Test labels of these images that the verdicts changed."""
        return len(self.changed)

    def table(self) -> pd.DataFrame:
        """Both rows side by side: index "original", "corrected" (only "original" when no
        label changed); columns accuracy_a, ci_a_low, ci_a_high, accuracy_b, ci_b_low,
        ci_b_high, difference (fractions), n_fixed, n_broken, p_value."""
        rows = {"original": self.original}
        if self.n_changed:
            rows["corrected"] = self.corrected
        return pd.DataFrame(
            [{"accuracy_a": s.accuracy_a, "ci_a_low": s.ci_a[0], "ci_a_high": s.ci_a[1],
              "accuracy_b": s.accuracy_b, "ci_b_low": s.ci_b[0], "ci_b_high": s.ci_b[1],
              "difference": s.difference, "n_fixed": s.n_fixed, "n_broken": s.n_broken, "p_value": s.p_value}
             for s in rows.values()],
            index=pd.Index(list(rows), name="labels"),
        )


ROW_NAMES = {"original": "Original labels", "corrected": "Corrected labels"}


def table_text(lc: LabelComparison) -> pd.DataFrame:
    """`LabelComparison.table()` as text for the page, one row per label vector ("Original
    labels", "Corrected labels"): each accuracy with its 95% interval, B - A in points,
    fixed and broken counts, McNemar's p to 3 significant digits (as the metrics above it)."""
    t = lc.table()
    return pd.DataFrame(
        {
            "Accuracy A": [f"{r.accuracy_a:.2%} ({r.ci_a_low:.1%}-{r.ci_a_high:.1%})" for r in t.itertuples()],
            "Accuracy B": [f"{r.accuracy_b:.2%} ({r.ci_b_low:.1%}-{r.ci_b_high:.1%})" for r in t.itertuples()],
            "B - A": [f"{r.difference * 100:+.2f} points" for r in t.itertuples()],
            "Fixed by B": [f"{r.n_fixed:,}" for r in t.itertuples()],
            "Broken by B": [f"{r.n_broken:,}" for r in t.itertuples()],
            "McNemar p": [f"{r.p_value:.3g}" for r in t.itertuples()],
        },
        index=pd.Index([ROW_NAMES[k] for k in t.index], name="Test labels"),
    )


def compare_with_corrections(a: pd.DataFrame, b: pd.DataFrame, mislabels: pd.DataFrame | None,
                             confidence: float = 0.95) -> LabelComparison:
    """Compare two runs on the test labels and on the reviewer-corrected labels.

    Args:
        a, b: predictions tables over the same test images (checked as in `compare_runs`).
        mislabels: current test verdicts (`ReviewStore.current_mislabels()`: every reviewer,
            every run), resolved image by image by `mislabels.resolve_mislabels`
            (`CORRECTION_RULE`); None or no rows: no verdicts. Verdicts on images the
            runs do not cover are ignored.
        confidence: level of the Wilson intervals.
    """
    a, b = align_runs(a, b)
    index = a["index"].to_numpy(np.int64)
    labels = a["label"].to_numpy(np.int64)
    pred_a, pred_b = a["pred"].to_numpy(np.int64), b["pred"].to_numpy(np.int64)
    has_verdicts = mislabels is not None and len(mislabels) > 0
    decided = resolve_mislabels(mislabels) if has_verdicts else None
    corrected = labels.copy()
    votes = np.zeros(len(labels), np.int64)
    n_votes = np.zeros(len(labels), np.int64)
    if decided is not None and len(decided):
        rows = pd.Series(np.arange(len(index)), index=index).reindex(decided["index"].to_numpy(np.int64))
        hit = rows.notna().to_numpy()
        at = rows[hit].to_numpy(np.int64)
        corrected[at] = decided["corrected_label"].to_numpy(np.int64)[hit]
        votes[at] = decided["votes"].to_numpy(np.int64)[hit]
        n_votes[at] = decided["n_verdicts"].to_numpy(np.int64)[hit]
    changed = corrected != labels
    n_verdicts = int(mislabels["index"].isin(index).sum()) if has_verdicts else 0
    return LabelComparison(
        original=paired_scores(labels, pred_a, pred_b, confidence),
        corrected=paired_scores(corrected, pred_a, pred_b, confidence),
        changed=_changed_table(index, labels, corrected, votes, n_votes, pred_a, pred_b, changed),
        n_verdicts=n_verdicts,
    )


def _changed_table(index, labels, corrected, votes, n_votes, pred_a, pred_b, changed) -> pd.DataFrame:
    """The rows of the images whose label changed (arrays of N, mask `changed`)."""
    pick = {"index": index, "label": labels, "corrected_label": corrected, "votes": votes,
            "n_verdicts": n_votes, "pred_a": pred_a, "pred_b": pred_b}
    out = {k: v[changed] for k, v in pick.items()}
    out["label_name"] = class_names(out["label"])
    out["corrected_name"] = class_names(out["corrected_label"])
    out["pred_a_name"], out["pred_b_name"] = class_names(out["pred_a"]), class_names(out["pred_b"])
    out["right_a"] = out["pred_a"] == out["corrected_label"]
    out["right_b"] = out["pred_b"] == out["corrected_label"]
    return pd.DataFrame(out, columns=CHANGED_COLUMNS)


def corrections_text(lc: LabelComparison) -> str:
    """One sentence: how many test labels the verdicts changed, by which rule, and how many
    of those images each run gets right; or that there is nothing to correct with."""
    if not lc.n_verdicts:
        return ("No reviewer has a verdict on these test images yet, so the figures are on the original "
                "test labels only; confirm mislabels on Mislabels to see them on corrected labels too.")
    verdicts = f"{lc.n_verdicts:,} verdict{'s' if lc.n_verdicts != 1 else ''}"
    if not lc.n_changed:
        return (f"The reviewers' {verdicts} change none of these {lc.original.n:,} test labels "
                f"({CORRECTION_RULE}), so the corrected labels are the original ones.")
    right_a, right_b = int(lc.changed["right_a"].sum()), int(lc.changed["right_b"].sum())
    return (f"Reviewers corrected {lc.n_changed:,} of the {lc.original.n:,} test labels ({verdicts}; "
            f"{CORRECTION_RULE}). On those images A predicts the corrected label {right_a:,} "
            f"time{'s' if right_a != 1 else ''}, B {right_b:,}.")


def relabel_caption(row: dict) -> str:
    """Caption of a relabelled image (a row of `LabelComparison.changed`):
    '#index label → corrected: A pred_a ✓, B pred_b', ✓ where the run predicts the corrected label."""
    mark = {True: " ✓", False: ""}
    return (f"#{row['index']} {row['label_name']} → {row['corrected_name']}: "
            f"A {row['pred_a_name']}{mark[bool(row['right_a'])]}, B {row['pred_b_name']}{mark[bool(row['right_b'])]}")


def corrected_summary_text(lc: LabelComparison, name_a: str = "A", name_b: str = "B") -> str:
    """Plain text for the corrected labels, to follow `summary_text`: the corrections
    (`corrections_text`), then both accuracies, the difference, fixed/broken and McNemar's
    p-value against the corrected labels when any label changed."""
    lines = ["On the corrected test labels: " + corrections_text(lc)]
    if lc.n_changed:
        s = lc.corrected
        for label, name, acc, (low, high) in (("A", name_a, s.accuracy_a, s.ci_a), ("B", name_b, s.accuracy_b, s.ci_b)):
            lines.append(f"{label} {name}: corrected accuracy {acc:.2%} (95% CI {low:.2%}-{high:.2%})")
        lines.append(f"B - A: {s.difference * 100:+.2f} points; B fixed {s.n_fixed:,}, broke {s.n_broken:,}; "
                     f"McNemar exact p = {s.p_value:.2g}")
    return "\n".join(lines)
