"""The evidence for one error, drawn beside it (Errors' detail view, Review): the enlarged image
with its saliency overlay, near-duplicate and label-conflict badges, and the nearest training
images, each opening larger in a dialog.

Everything comes from the run folder (`loaders.evidence`); a run without evidence files
gets one line saying how to compute them, and the page goes on.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from cifar_mtl import analysis, triage
from cifar_mtl.app import loaders, state
from cifar_mtl.app.captions import duplicate_badges, neighbour_caption, no_evidence_text
from cifar_mtl.app.loaders import Evidence
from cifar_mtl.app.messages import escape_markdown
from cifar_mtl.app.widgets import EvidenceOptions, show_image
from cifar_mtl.heatmaps import overlay
from cifar_mtl.images import DETAIL_SCALE, Thumbnails, encode_png, enlarge

# Short labels, so the switch fits the detail column (at 1280 px "saliency: true class" was cut off).
VIEWS = {"image": "off", "pred": "predicted", "true": "true"}
NEIGHBOUR_SCALE = 2  # 64 px: eight of them fit beside the detail image
NEIGHBOUR_COLUMNS = 4
DIALOG_SCALE = 8


def no_evidence(ev: Evidence) -> bool:
    """Say (quietly) that the run has no evidence, or name damaged files; True when there is none."""
    for problem in ev.problems:
        st.warning(escape_markdown(problem, keep_code=True), icon=":material/warning:")
    if ev.empty:
        st.caption(no_evidence_text(ev.run_id))
        return True
    return False


def saliency_png(image: np.ndarray, saliency: np.ndarray, scale: int = DETAIL_SCALE) -> bytes:
    """PNG of `image` (32, 32, 3) with `saliency` (32, 32) blended over it, enlarged `scale` times."""
    return encode_png(enlarge(overlay(image, saliency), scale))


def detail_image(thumbs: Thumbnails | None, ev: Evidence, index: int, row: dict, *, key: str,
                 caption_text: str) -> None:
    """The enlarged test image; with saliency maps, a switch draws the map for the predicted or the
    true class over it (the choice is kept while the reviewer moves between images)."""
    maps = triage.saliency_of(ev.saliency, index) if ev.saliency is not None else None
    if maps is None or thumbs is None or not thumbs.has(index):
        show_image(thumbs, index, scale=DETAIL_SCALE, caption_text=caption_text)
        return
    view_key = f"{key}_saliency"
    st.session_state.setdefault(view_key, "image")
    view = st.segmented_control("Saliency map of the class", list(VIEWS), key=view_key, format_func=VIEWS.get,
                                help="Which pixels raised the score of the predicted or the true class "
                                     "(brighter: more), drawn over the image")
    if view in (None, "image"):
        show_image(thumbs, index, scale=DETAIL_SCALE, caption_text=caption_text)
        return
    name = row["pred_name"] if view == "pred" else row["label_name"]
    heat = maps[0] if view == "pred" else maps[1]
    st.image(saliency_png(thumbs.images[index], heat), output_format="PNG",
             caption=f"{caption_text} · where the model saw '{name}'")


def badges(ev: Evidence, index: int) -> None:
    """Near-duplicate and label-conflict badges of image `index`, when it has them."""
    if ev.duplicates is None:
        return
    rows = ev.duplicates.loc[ev.duplicates["index"].to_numpy(np.int64) == int(index)]
    shown = duplicate_badges(rows.iloc[0].to_dict() if len(rows) else None)
    if shown:
        bar = st.container(horizontal=True, wrap=True)
        for text, colour, icon in shown:
            bar.badge(text, color=colour, icon=icon)


@st.dialog("Nearest training image", width="large")
def neighbour_dialog(test_png: bytes | None, test_caption: str, train_png: bytes, train_caption: str,
                     note: str) -> None:
    """The test image beside one of its nearest training images, both large."""
    left, right = st.columns(2)
    with left:
        if test_png is not None:
            st.image(test_png, caption=test_caption, output_format="PNG")
        else:
            st.caption(test_caption)
    with right:
        st.image(train_png, caption=train_caption, output_format="PNG")
    st.caption(note)


def neighbours(ev: Evidence, thumbs: Thumbnails | None, index: int, row: dict, *, key: str) -> None:
    """The nearest training images of `index` with their labels and similarity; each one's
    button opens it larger beside the test image."""
    if ev.neighbours is None:
        return
    near = triage.neighbours_of(ev.neighbours, index)
    st.markdown("**Nearest training images**")
    if near.empty:
        st.caption("None recorded for this image.")
        return
    train, _, problem = loaders.train_images()
    if train is None:
        st.caption(f"Training images are not available ({escape_markdown(problem, keep_code=True)}); "
                   "their labels and similarities:")
        st.dataframe(near[["rank", "train_index", "train_name", "similarity"]], hide_index=True, width="stretch")
        return
    records = near.to_dict("records")
    for start in range(0, len(records), NEIGHBOUR_COLUMNS):
        for cell, nb in zip(st.columns(NEIGHBOUR_COLUMNS), records[start : start + NEIGHBOUR_COLUMNS]):
            with cell:
                _neighbour_cell(nb, train, thumbs, index, row, key)


def _neighbour_cell(nb: dict, train: Thumbnails, thumbs: Thumbnails | None, index: int, row: dict,
                    key: str) -> None:
    t = int(nb["train_index"])
    if not train.has(t):
        st.caption(f"#{t} (not in the loaded training set) · {neighbour_caption(nb)}")
        return
    st.image(train.png(t, NEIGHBOUR_SCALE), caption=neighbour_caption(nb), output_format="PNG", width="stretch")
    if st.button("Open", key=f"{key}_nb_{int(nb['rank'])}", icon=":material/open_in_full:", type="tertiary",
                 help=f"Training image #{t} beside this one, larger"):
        same = int(nb["train_label"]) == int(row["label"])
        note = (f"Cosine similarity of the model's features: {float(nb['similarity']):.3f} "
                f"(rank {int(nb['rank'])} of this image's nearest training images). "
                + ("Same label as the test image." if same else
                   f"Labelled {nb['train_name']}, the test image {row['label_name']}."))
        test_png = thumbs.png(index, DIALOG_SCALE) if thumbs is not None and thumbs.has(index) else None
        neighbour_dialog(test_png, f"test #{index} · labelled {row['label_name']} · predicted {row['pred_name']}",
                         train.png(t, DIALOG_SCALE), f"training #{t} · labelled {nb['train_name']}", note)


def evidence_panel(ev: Evidence, thumbs: Thumbnails | None, index: int, row: dict, *, key: str) -> None:
    """Badges and nearest training images of one error (the image itself: `detail_image`)."""
    if no_evidence(ev):
        return
    badges(ev, index)
    neighbours(ev, thumbs, index, row, key=key)


# --- the evidence filters -----------------------------------------------------------------------


def filter_options(ev: Evidence, suggested=None) -> EvidenceOptions:
    """What the filters can offer for this run: near-duplicate flags, its slices, and the
    categories suggested to this reviewer (`suggested`: DataFrame[index, category] or None)."""
    slices = () if ev.slices is None else tuple(sorted(int(s) for s in set(ev.slices["slice"]) if s != triage.NO_SLICE))
    cats = () if suggested is None or suggested.empty else tuple(sorted(set(suggested["category"])))
    return EvidenceOptions(duplicates=ev.duplicates is not None, slices=slices, suggested=cats)


def filter_kwargs(options: EvidenceOptions) -> dict:
    """`triage.filter_evidence`'s keyword arguments from the session's filter, as far as
    this run's evidence (`options`) can answer them."""
    return state.evidence_kwargs(state.filters(), duplicates=options.duplicates, slices=options.slices,
                                 suggested=options.suggested)


def filtered_errors(preds, tags, ev: Evidence, kwargs: dict, ev_kwargs: dict, suggested=None):
    """`analysis.error_table(preds, tags, **kwargs)` with the run's evidence columns added
    (`triage.add_evidence`) and the evidence filters applied. Raises ValueError on a bad filter."""
    errors = analysis.error_table(preds, tags, **kwargs)
    errors = triage.add_evidence(errors, duplicates=ev.duplicates, slices=ev.slices, suggested=suggested)
    return triage.filter_evidence(errors, **ev_kwargs)


def suggestion_state(ev: Evidence, preds, tags, categories: list[str]) -> loaders.SuggestionState | None:
    """The sidebar reviewer's category suggestions on this run, from the current tags `tags`
    (every reviewer's or theirs); None without a reviewer or without any evidence."""
    name = state.reviewer()
    if name is None or tags is None or ev.empty:
        return None
    mine = tags[tags["reviewer"] == name]
    return loaders.suggestions(ev.run_id, preds, mine, categories, name)
