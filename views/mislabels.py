"""Mislabels: images whose label looks wrong (cleanlab's label quality), and reviewers' verdicts.

Split "test" ranks the test images of the run under review; split "train" ranks the
training images from one or several cross-validation runs' out-of-sample predictions
(train_predictions.parquet), with cleanlab's Datalab flags as filters where the first
run has them saved (datalab.parquet, written by `mislabels --split train --datalab`).
Verdicts on training images feed label sets (Label sets page), never the test figures.
"""

import streamlit as st

from cifar_mtl.app import captions, label_loop, loaders, state, widgets
from cifar_mtl.app.messages import escape_markdown, flash_error, show_error, show_flash
from cifar_mtl.app.sidebar import require_run
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.mislabels import METHODS, corrected_accuracy, verdicts_on, without_judged

PER_PAGE = 8
PAGE_KEY = "ml_page"
SPLITS = ("test", "train")
VERDICTS = {"confirmed": ("Confirm", ":material/check:"), "rejected": ("Reject", ":material/close:"),
            "unsure": ("Unsure", ":material/help:")}
# Widget keys of the train split carry this prefix, so that a training image's picks are
# never mistaken for those of the test image with the same index.
KEY_PREFIX = {"test": "ml_", "train": "ml_train_"}


def set_verdict(run_id: str, index: int, given: int, verdict: str | None, label_key: str, split: str) -> None:
    """Record (or with verdict None withdraw) this reviewer's verdict on image `index` of `split`."""
    try:
        if verdict is None:
            store.clear_mislabel(run_id, index, name, split=split)
        else:
            label = int(st.session_state[label_key]) if verdict == "confirmed" else None
            store.set_mislabel(run_id, index, name, verdict, label, given_label=given, split=split)
    except Exception as exc:
        flash_error("verdict", exc, f"Verdict on {split} image #{index} not saved")


def suspect_list(ranked, verdicts, thumbs, run_id: str, split: str) -> None:
    """The paged suspects: image, ranking line, everyone's verdicts, and this reviewer's buttons."""
    prefix = KEY_PREFIX[split]
    page = widgets.page_of(ranked, key=prefix + "page", size=PER_PAGE)
    for rank, row in enumerate(page.rows.to_dict("records"), start=page.start + 1):
        index = int(row["index"])
        with st.container(border=True):
            image, info, controls = st.columns([1, 3, 3], vertical_alignment="center")
            with image:
                widgets.show_image(thumbs, index)
            info.markdown(captions.suspect_text(rank, row))
            if flags := label_loop.issues_text(row):
                info.caption(flags)
            theirs, mine = verdicts_on(verdicts, index, name)
            if len(theirs):
                info.caption(captions.verdicts_text(theirs))
            if name is None:
                continue
            label_key = f"{prefix}label_{index}"
            controls.selectbox("Right label", range(len(CLASS_NAMES)), index=int(row["suggested"]),
                               format_func=captions.class_option, key=label_key, label_visibility="collapsed")
            buttons = controls.container(horizontal=True)
            given = int(row["label"])
            for verdict, (label, icon) in VERDICTS.items():
                buttons.button(label, key=f"{prefix}{verdict}_{index}", icon=icon, on_click=set_verdict,
                               args=(run_id, index, given, verdict, label_key, split),
                               type="primary" if verdict in mine else "secondary")
            if mine:
                buttons.button("Clear", key=f"{prefix}clear_{index}", type="tertiary", on_click=set_verdict,
                               args=(run_id, index, given, None, label_key, split))
    widgets.pager(page, key=prefix + "page")


def ranking_controls():
    """(method, how many suspects, hide judged) of the row of controls over the list."""
    c = st.columns([2, 2, 3])
    method = c[0].selectbox("Ranking", METHODS, key="ml_method", persist_state="session",
                            help="cleanlab label-quality score; lower means more likely mislabelled")
    top = c[1].number_input("Suspects to list", 10, 2000, 100, step=10, key="ml_top", persist_state="session")
    hide = c[2].toggle("Hide images I have judged", key="ml_hide", persist_state="session", disabled=name is None)
    return method, int(top), hide


def finish(ranked, verdicts, hide_judged: bool):
    """The list after 'hide judged', or a stop with a note when nothing is left."""
    if hide_judged and name:
        ranked = without_judged(ranked, verdicts, name)
    if name is None:
        st.info("Type your name in the sidebar to confirm or reject suspects.", icon=":material/badge:")
    if ranked.empty:
        st.success("No suspect left to judge.", icon=":material/task_alt:")
        st.stop()
    return ranked


def test_split() -> None:
    """Test images of the run under review, with accuracy against the corrected labels."""
    run_id = require_run()
    preds = loaders.load_run(run_id)
    if preds is None:
        st.stop()
    verdicts = store.current_mislabels()
    acc = corrected_accuracy(preds, verdicts)
    c = st.columns(4)
    c[0].metric("Accuracy (test labels)", f"{acc['accuracy']:.2%}")
    c[1].metric("Accuracy (corrected labels)", f"{acc['corrected_accuracy']:.2%}",
                delta=f"{acc['corrected_accuracy'] - acc['accuracy']:+.2%}",
                help="Reviewer-confirmed corrections replace the test label (majority of verdicts)")
    c[2].metric("Labels corrected", f"{acc['n_corrected']:,}")
    c[3].metric("Verdicts recorded", f"{len(verdicts):,}")
    show_flash("verdict")
    method, top, hide_judged = ranking_controls()
    try:
        ranked = loaders.ranked_mislabels(run_id, method).head(top)
    except Exception as exc:
        show_error(exc, "Ranking")
        st.stop()
    ranked = finish(ranked, verdicts, hide_judged)
    suspect_list(ranked, verdicts, loaders.images_for(preds), run_id, "test")


def train_thumbnails(ranked):
    """The training-set thumbnails, or None after a notice (no dataset, or other labels than the runs')."""
    thumbs, labels, problem = loaders.train_images()
    if thumbs is None:
        st.info(f"Images are not shown. {escape_markdown(problem.rstrip('.'), keep_code=True)}.",
                icon=":material/hide_image:")
        return None
    if mismatch := label_loop.train_images_problem(ranked, labels):
        st.warning(mismatch, icon=":material/warning:")
        return None
    return thumbs


def train_split() -> None:
    """Training images ranked from cross-validation runs, with Datalab's flags as filters."""
    choices = label_loop.crossval_run_ids()
    if not choices:
        st.info("No cross-validation run yet: training images are ranked from out-of-sample predictions. Run "
                "`python -m cifar_mtl crossval --config cpu_crossval --folds 5` (or queue it with `--queue`).",
                icon=":material/info:")
        st.stop()
    # A run deleted since the last visit leaves the pick; the newest run is picked at first.
    kept = [r for r in st.session_state.get("ml_train_runs", []) if r in choices]
    st.session_state["ml_train_runs"] = kept or choices[:1]
    run_ids = st.multiselect("Cross-validation runs", choices, key="ml_train_runs",
                             help="Runs with train_predictions.parquet; several are combined by averaging "
                                  "their probabilities image by image.")
    if not run_ids:
        st.info("Pick at least one cross-validation run.", icon=":material/info:")
        st.stop()
    verdicts = store.current_mislabels(split="train")
    method, top, hide_judged = ranking_controls()
    try:
        ranking = label_loop.train_ranked(run_ids, method)
    except Exception as exc:
        show_error(exc, "Ranking the training images")
        st.stop()
    figures = label_loop.train_summary(ranking, verdicts)
    has_datalab = figures["label_issues"] is not None
    c = st.columns(4)
    c[0].metric("Training images ranked", f"{figures['ranked']:,}")
    c[1].metric("Images judged", f"{figures['judged']:,}")
    c[2].metric("Verdicts recorded", f"{figures['verdicts']:,}")
    c[3].metric("Datalab label issues", f"{figures['label_issues']:,}" if has_datalab else "-",
                help="cleanlab Datalab on the first run's training embeddings, saved by "
                     "`mislabels --split train --datalab`" if has_datalab else
                "Needs training embeddings (the run's own, or a training run's) and the first run's saved "
                "Datalab flags (`python -m cifar_mtl mislabels --split train --run RUN_ID --datalab "
                "[--embeddings-from TRAINING_RUN]`)")
    if hint := label_loop.datalab_hint(run_ids[0], ranking, loaders.complete_run_ids(loaders.run_table())):
        st.caption(hint)
    show_flash("verdict")
    if has_datalab:
        picked = st.pills("Only images Datalab flags as", figures["datalab_types"], selection_mode="multi",
                          key="ml_train_issues", format_func=lambda t: t.replace("_", "-"))
        ranking = label_loop.with_issues(ranking, picked or [])
    ranked = finish(ranking.head(top), verdicts, hide_judged)
    suspect_list(ranked, verdicts, train_thumbnails(ranked), run_ids[0], "train")
    st.page_link("views/labels.py", label="Build a label set from these verdicts", icon=":material/playlist_add_check:")


st.title("Suspected mislabels")
name = state.reviewer()
store = loaders.store_or_none(required=True)
split = st.segmented_control("Split", SPLITS, key="ml_split", default="test", required=True, persist_state="session",
                             help="test: the run under review's test images (verdicts feed corrected accuracy). "
                                  "train: training images from cross-validation runs (verdicts feed label sets).")
if split == "train":
    train_split()
else:
    test_split()
