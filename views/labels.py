"""Label sets: build a named, versioned set of training-label corrections from the
reviewers' train-split verdicts (`cifar_mtl.labelsets`), and list the sets built so far.

The preview is the library's own `build_label_set` on the verdicts as they are now, so
what Build saves (`build_from_reviews`, which reads them again) matches it unless a
verdict changes in between.
"""

import pandas as pd
import streamlit as st

from cifar_mtl import labelsets, runs
from cifar_mtl.app import label_loop, loaders, state
from cifar_mtl.app.messages import escape_markdown, flash, flash_error, show_error, show_flash

KEY = "ls_"
NOTE = "ls_build"
PREVIEW_ROWS = 500


def build(name: str, reviewers: list[str] | None, min_agree: int) -> None:
    """Button callback: save the next version of `name`; the outcome shows under the button."""
    try:
        table, version, path = labelsets.build_from_reviews(
            name, runs.home(), reviewers=reviewers, min_agree=min_agree, built_by=state.reviewer())
        flash(NOTE, label_loop.saved_text(name, version, table, path), "success")
    except Exception as exc:
        flash_error(NOTE, exc, "The label set was not saved")


def builder(verdicts: pd.DataFrame) -> None:
    """Name, reviewers, agreement rule, the preview with its counts, and the Build button."""
    everyone = sorted(verdicts["reviewer"].unique())
    c = st.columns([2, 3, 1])
    name = c[0].text_input("Label set name", key=KEY + "name", placeholder="relabels-round1",
                           help="Letters, digits, '_' and '-'; building under an existing name adds a version").strip()
    # Everyone at first; a name whose verdicts were all withdrawn leaves the pick.
    kept = [r for r in st.session_state.get(KEY + "reviewers", everyone) if r in everyone]
    st.session_state[KEY + "reviewers"] = kept
    chosen = c[1].multiselect("Reviewers whose verdicts count", everyone, key=KEY + "reviewers")
    min_agree = int(c[2].number_input("Min agreement", 1, max(1, len(everyone)), 1, key=KEY + "min_agree",
                                      help="How many of them must cast the winning vote on an image "
                                           "(and more than any other choice got)"))
    problem = labelsets.name_problem(name)
    if problem and name:
        st.error(f"Label set name: {escape_markdown(problem)}", icon=":material/error:")
    if not chosen:
        st.info("Pick at least one reviewer.", icon=":material/info:")
        return
    given = label_loop.given_labels(sorted(set(verdicts["run_id"])))
    try:
        table = labelsets.build_label_set(verdicts, chosen, min_agree, given_labels=given)
    except Exception as exc:
        show_error(exc, "Preview")
        return
    c = label_loop.preview_counts(table, verdicts, chosen)
    m = st.columns(4)
    m[0].metric("Images changed", f"{c['rows']:,}")
    m[1].metric("Relabels", f"{c['relabel']:,}")
    m[2].metric("Exclusions", f"{c['exclude']:,}", help="Images a reviewer marked unsure leave training")
    m[3].metric("Images judged", f"{c['judged']:,}")
    if len(table):
        st.dataframe(labelsets.preview_table(table.head(PREVIEW_ROWS)), hide_index=True, width="stretch",
                     key=KEY + "preview")
        if len(table) > PREVIEW_ROWS:
            st.caption(f"First {PREVIEW_ROWS} of {len(table):,} rows.")
    else:
        st.caption("No image gets a relabel or an exclusion under this rule: nothing to build.")
    st.button("Build", key=KEY + "build", type="primary", icon=":material/playlist_add_check:",
              disabled=bool(problem) or not len(table), on_click=build,
              args=(name, None if chosen == everyone else chosen, min_agree))
    show_flash(NOTE)


def existing() -> None:
    """Every version of every label set, newest build first."""
    try:
        table = labelsets.list_label_sets(runs.home())
    except Exception as exc:
        show_error(exc, "Listing label sets")
        return
    if table.empty:
        st.caption("No label set yet: build one above.")
        return
    shown = table.sort_values("built_at", ascending=False, na_position="last")
    st.dataframe(shown, hide_index=True, width="stretch", key=KEY + "list")
    st.caption(f"Files under `{labelsets.labelsets_root(runs.home())}` (one CSV per version, never overwritten); "
               "`python -m cifar_mtl labels show NAME@vK` prints one.")


st.title("Label sets")
st.caption("Turn reviewers' verdicts on training images (Mislabels, split train) into a versioned set of "
           "relabels and exclusions, then retrain on it (Retrain page, Label set).")
store = loaders.store_or_none(required=True)
st.subheader("Build a label set")
try:
    train_verdicts = store.current_mislabels(split="train")
except Exception as exc:
    show_error(exc, "Reading the verdicts")
    st.stop()
if train_verdicts.empty:
    st.info("No verdict on a training image yet: review training suspects on Mislabels (split train) first.",
            icon=":material/info:")
    st.page_link("views/mislabels.py", label="Mislabels", icon=":material/label_off:")
else:
    builder(train_verdicts)
st.subheader("Label sets built so far")
existing()
