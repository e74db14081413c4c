"""Compare: two runs on the same test images, side by side (e.g. single-task against multitask),
on the test labels and on the labels reviewers corrected on Mislabels."""

import streamlit as st

from cifar_mtl.app import captions, figures, loaders, widgets
from cifar_mtl.app.messages import show_error
from cifar_mtl.app.sidebar import GETTING_STARTED, compare_pickers
from cifar_mtl.compare import compare_runs, compare_with_corrections, corrections_text, relabel_caption, table_text

GALLERY = 24

st.title("Compare runs")
table = loaders.run_table()
ids = loaders.complete_run_ids(table)
if len(ids) < 2:
    st.info("Comparing needs two complete runs; there are fewer so far.", icon=":material/info:")
    st.page_link(GETTING_STARTED, label="Getting started: train both variants", icon=":material/rocket_launch:")
    st.stop()

run_a, run_b = compare_pickers(table, ids)
label = captions.run_label(table)
st.caption(f"A = {label(run_a)}  ·  B = {label(run_b)}  (choose them in the sidebar)")
if run_a == run_b:
    st.warning("Pick two different runs.", icon=":material/warning:")
    st.stop()
preds_a, preds_b = loaders.load_run(run_a), loaders.load_run(run_b)
if preds_a is None or preds_b is None:
    st.stop()
store = loaders.store_or_none("Review database (categories are not compared)")
tags = store.current_tags() if store else None
verdicts = store.current_mislabels() if store else None
try:
    cmp = compare_runs(preds_a, preds_b, tags)
    on_labels = compare_with_corrections(preds_a, preds_b, verdicts)
except ValueError as exc:
    show_error(exc, "These runs cannot be compared")
    st.stop()

c = st.columns(3)
c[0].metric("Accuracy A", f"{cmp.accuracy_a:.2%}", help=f"95% interval {cmp.ci_a[0]:.2%} - {cmp.ci_a[1]:.2%}")
c[0].caption(f"95% CI {cmp.ci_a[0]:.2%} - {cmp.ci_a[1]:.2%}")
c[1].metric("Accuracy B", f"{cmp.accuracy_b:.2%}", delta=f"{cmp.difference:+.2%}",
            help=f"95% interval {cmp.ci_b[0]:.2%} - {cmp.ci_b[1]:.2%}")
c[1].caption(f"95% CI {cmp.ci_b[0]:.2%} - {cmp.ci_b[1]:.2%}")
c[2].metric("McNemar p-value", f"{cmp.p_value:.3g}",
            help="Exact test on the images exactly one run gets right; small means a real difference")
d = st.columns(3)  # a second row: five figures in one row were cut off on a laptop screen
d[0].metric("Fixed by B", f"{cmp.n_fixed:,}", help="Images run A gets wrong and run B gets right")
d[1].metric("Broken by B", f"{cmp.n_broken:,}", help="Images run A gets right and run B gets wrong")
d[2].metric("Animal/vehicle mix-ups", f"{cmp.cross_group_a:,} → {cmp.cross_group_b:,}",
            delta=cmp.cross_group_b - cmp.cross_group_a, delta_color="inverse")

st.markdown("**Original and corrected test labels**")
if on_labels.n_changed:
    st.table(table_text(on_labels))
    st.caption(corrections_text(on_labels))
else:
    st.info(corrections_text(on_labels), icon=":material/info:")
    st.page_link("views/mislabels.py", label="Mislabels: judge suspected mislabels", icon=":material/label_off:")

left, right = st.columns(2)
with left:
    st.markdown("**Accuracy per class**")
    st.plotly_chart(figures.per_class_comparison(cmp.per_class, f"A {run_a}", f"B {run_b}"), key="cmp_per_class")
with right:
    st.markdown("**Confusion difference** (B minus A: red cells are more frequent in B)")
    st.plotly_chart(figures.confusion_figure(cmp.confusion_diff, diverging=True), key="cmp_confusion")

thumbs = loaders.images_for(preds_a)
fixed_tab, broken_tab, relabelled_tab, cat_tab = st.tabs(
    [f"Fixed by B ({cmp.n_fixed:,})", f"Broken by B ({cmp.n_broken:,})",
     f"Relabelled ({on_labels.n_changed:,})", "Error categories"]
)
for tab, pairs, wrong in ((fixed_tab, cmp.fixed, "a"), (broken_tab, cmp.broken, "b")):
    with tab:
        if pairs.empty:
            st.caption("None.")
            continue
        shown = pairs.sort_values(f"confidence_{wrong}", ascending=False).head(GALLERY)
        st.caption(f"The {len(shown)} most confident mistakes of run {wrong.upper()}.")
        widgets.gallery(shown, thumbs, captions.pair_caption)
with relabelled_tab:
    if on_labels.changed.empty:
        st.caption("No test label corrected yet.")
    else:
        shown = on_labels.changed.head(GALLERY)
        which = ("Every test image" if len(shown) == on_labels.n_changed
                 else f"The first {len(shown)} of the {on_labels.n_changed:,} test images")
        st.caption(f"{which} whose label reviewers corrected: test label → corrected label, then each run's "
                   "answer (✓: the corrected label).")
        widgets.gallery(shown, thumbs, relabel_caption)
with cat_tab:
    if cmp.categories is None or cmp.categories.empty:
        st.caption("No tagged errors yet: categories appear once images are tagged.")
    else:
        named = cmp.categories.rename(columns={"a": f"A {run_a}", "b": f"B {run_b}"})
        st.plotly_chart(figures.comparison_bars(named.index, named.to_dict("list")), key="cmp_categories")
        st.dataframe(named, width="stretch")
