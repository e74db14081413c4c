"""Overview: every run, training curves, and the run under review's accuracy and review state."""

import pandas as pd
import streamlit as st

from cifar_mtl import analysis, runs
from cifar_mtl.app import figures, loaders
from cifar_mtl.app.messages import error_message, escape_markdown
from cifar_mtl.app.sidebar import GETTING_STARTED, current_run
from cifar_mtl.mislabels import corrected_accuracy

st.title("Overview")
table = loaders.run_table()
if table.empty:
    st.info("No runs in the artifacts home yet.", icon=":material/info:")
    st.page_link(GETTING_STARTED, label="Getting started", icon=":material/rocket_launch:")
    st.stop()

store = loaders.store_or_none()
tags, mislabels = (store.current_tags(), store.current_mislabels()) if store else (None, None)


unreadable = {}


def corrected(run_id: str) -> float | None:
    """Accuracy against reviewer-corrected labels (None when the run cannot be read)."""
    try:
        preds = loaders.predictions(run_id)
    except Exception as exc:  # listed below the table; the other runs still show
        unreadable[run_id] = error_message(exc)
        return None
    return None if mislabels is None else corrected_accuracy(preds, mislabels)["corrected_accuracy"]


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


done = table["complete"].astype(bool)
view = pd.DataFrame(
    {
        "run": table["run_id"],
        "backbone": table["backbone"],
        "variant": table["variant"],
        "label smoothing": table["label_smoothing"],
        "epochs": table["epochs"],
        # Percent with two decimals in both columns (the percent format rounded them differently).
        "accuracy": table["accuracy"] * 100,
        "corrected accuracy": [_percent(corrected(r)) if ok else None for r, ok in zip(table["run_id"], done)],
        "cross-group errors": table["cross_group_errors"],
        "state": table["state"],
        "date": table["finished_at"].fillna(table["started_at"]),
        "problem": table["problem"],
    }
)
st.dataframe(
    view, hide_index=True, width="stretch",
    column_config={
        "accuracy": st.column_config.NumberColumn(format="%.2f%%"),
        "corrected accuracy": st.column_config.NumberColumn(
            format="%.2f%%", help="Accuracy when reviewer-confirmed mislabels take the corrected label"),
        "label smoothing": st.column_config.NumberColumn(format="%.2f"),
    },
)

for message in unreadable.values():
    st.warning(escape_markdown(message, keep_code=True), icon=":material/warning:")

st.subheader("Training curves")
histories = {}
for run_id in table["run_id"]:
    try:
        histories[run_id] = loaders.history(run_id)
    except runs.RunError as exc:
        st.caption(escape_markdown(error_message(exc), keep_code=True))
plotted = {r: h for r, h in histories.items() if not h.empty}
metrics = sorted({c for h in plotted.values() for c in h.columns} - {"stage", "epoch"})
if metrics:
    c1, c2 = st.columns([1, 3])
    default = "val_class_accuracy" if "val_class_accuracy" in metrics else metrics[0]
    metric = c1.selectbox("Metric", metrics, index=metrics.index(default), key="ov_metric")
    finished = set(table.loc[table["state"] == "succeeded", "run_id"])
    default, missing = figures.curves_to_show(plotted, finished, metric)
    shown = c2.multiselect("Runs", list(plotted), default=default, key="ov_runs")
    st.plotly_chart(figures.history_figure({r: plotted[r] for r in shown}, metric), key="ov_history")
    if missing:
        st.caption(f"Runs without `{metric}`: {', '.join(missing)}. They recorded no such metric "
                   "(a run with `val_split: 0` has no validation metrics); pick a training metric "
                   "such as `class_accuracy` to see them.")
else:
    st.caption("No training history recorded yet.")

run_id = current_run(table)
if run_id is None:
    st.stop()
st.subheader(f"Run under review: {escape_markdown(run_id)}")
preds = loaders.load_run(run_id)
if preds is None:
    st.stop()

left, right = st.columns(2)
with left:
    st.markdown("**Accuracy per class** (95% Wilson interval)")
    st.plotly_chart(figures.per_class_figure(analysis.per_class_accuracy(preds)), key="ov_per_class")
with right:
    progress = analysis.review_progress(preds, tags, mislabels=mislabels)
    st.markdown("**Review progress**")
    c1, c2 = st.columns(2)
    c1.metric("Errors reviewed", f"{progress['n_reviewed']:,} of {progress['n_errors']:,}")
    share = progress["share"]
    c2.metric("Share", "-" if pd.isna(share) else f"{share:.0%}")
    st.progress(0.0 if pd.isna(share) else float(share))
    st.markdown("**Error categories** (distinct error images, by true class)")
    counts = analysis.category_counts(preds, tags, by="label")
    if counts.shape[1] and counts.to_numpy().sum():
        st.plotly_chart(figures.category_figure(counts), key="ov_categories")
    else:
        st.caption("No error of this run is tagged yet: tag some on the Errors or Review page.")
