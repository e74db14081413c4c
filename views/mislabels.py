"""Mislabels: test images whose label looks wrong (cleanlab's label quality), and reviewers' verdicts."""

import streamlit as st

from cifar_mtl.app import captions, loaders, state, widgets
from cifar_mtl.app.messages import flash_error, show_error, show_flash
from cifar_mtl.app.sidebar import open_run_page
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.mislabels import METHODS, corrected_accuracy, without_judged

PER_PAGE = 8
PAGE_KEY = "ml_page"
VERDICTS = {"confirmed": ("Confirm", ":material/check:"), "rejected": ("Reject", ":material/close:"),
            "unsure": ("Unsure", ":material/help:")}

run_id, preds = open_run_page("Suspected mislabels")
name = state.reviewer()
store = loaders.store_or_none(required=True)
verdicts = store.current_mislabels()


def set_verdict(index: int, verdict: str | None, label_key: str) -> None:
    """Record (or with verdict None withdraw) this reviewer's verdict on image `index`."""
    try:
        if verdict is None:
            store.clear_mislabel(run_id, index, name)
        else:
            label = int(st.session_state[label_key]) if verdict == "confirmed" else None
            given = int(preds.loc[preds["index"] == index, "label"].iloc[0])
            store.set_mislabel(run_id, index, name, verdict, label, given_label=given)
    except Exception as exc:
        flash_error("verdict", exc, f"Verdict on #{index} not saved")


acc = corrected_accuracy(preds, verdicts)
c = st.columns(4)
c[0].metric("Accuracy (test labels)", f"{acc['accuracy']:.2%}")
c[1].metric("Accuracy (corrected labels)", f"{acc['corrected_accuracy']:.2%}",
            delta=f"{acc['corrected_accuracy'] - acc['accuracy']:+.2%}",
            help="Reviewer-confirmed corrections replace the test label (majority of verdicts)")
c[2].metric("Labels corrected", f"{acc['n_corrected']:,}")
c[3].metric("Verdicts recorded", f"{len(verdicts):,}")
show_flash("verdict")

c = st.columns([2, 2, 3])
method = c[0].selectbox("Ranking", METHODS, key="ml_method", persist_state="session",
                        help="cleanlab label-quality score; lower means more likely mislabelled")
top = c[1].number_input("Suspects to list", 10, 2000, 100, step=10, key="ml_top", persist_state="session")
hide_judged = c[2].toggle("Hide images I have judged", key="ml_hide", persist_state="session",
                          disabled=name is None)
try:
    ranked = loaders.ranked_mislabels(run_id, method).head(int(top))
except Exception as exc:
    show_error(exc, "Ranking")
    st.stop()
if hide_judged and name:
    ranked = without_judged(ranked, verdicts, name)
if name is None:
    st.info("Type your name in the sidebar to confirm or reject suspects.", icon=":material/badge:")
if ranked.empty:
    st.success("No suspect left to judge.", icon=":material/task_alt:")
    st.stop()

thumbs = loaders.images_for(preds)
page = widgets.page_of(ranked, key=PAGE_KEY, size=PER_PAGE)
for rank, row in enumerate(page.rows.to_dict("records"), start=page.start + 1):
    index = int(row["index"])
    with st.container(border=True):
        image, info, controls = st.columns([1, 3, 3], vertical_alignment="center")
        with image:
            widgets.show_image(thumbs, index)
        info.markdown(captions.suspect_text(rank, row))
        theirs = verdicts[verdicts["index"] == index]
        if len(theirs):
            info.caption(captions.verdicts_text(theirs))
        if name is None:
            continue
        label_key = f"ml_label_{index}"
        controls.selectbox("Right label", range(len(CLASS_NAMES)), index=int(row["suggested"]),
                           format_func=captions.class_option, key=label_key, label_visibility="collapsed")
        buttons = controls.container(horizontal=True)
        mine = theirs[theirs["reviewer"] == name]["verdict"].tolist()
        for verdict, (label, icon) in VERDICTS.items():
            buttons.button(label, key=f"ml_{verdict}_{index}", icon=icon, on_click=set_verdict,
                           args=(index, verdict, label_key), type="primary" if verdict in mine else "secondary")
        if mine:
            buttons.button("Clear", key=f"ml_clear_{index}", type="tertiary", on_click=set_verdict,
                           args=(index, None, label_key))
widgets.pager(page, key=PAGE_KEY)
