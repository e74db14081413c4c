"""Review: the current filter's errors that you have not tagged yet, one at a time, by keyboard."""

import streamlit as st

from cifar_mtl import analysis
from cifar_mtl.app import captions, evidence_panel, figures, loaders, state, widgets
from cifar_mtl.app.messages import show_error
from cifar_mtl.app.sidebar import open_run_page

QUEUE_KEY = "review_queue"
CURRENT_KEY = "review_current"

run_id, preds = open_run_page("Review")
name = state.reviewer()
if name is None:
    st.info("Type your name in the sidebar to start reviewing: each reviewer's tags are kept apart.",
            icon=":material/badge:")
    st.stop()
store = loaders.store_or_none(required=True)
categories = store.category_names()
ev = loaders.evidence(run_id)
suggested = evidence_panel.suggestion_state(ev, preds, store.current_tags(reviewer=name), categories)
options = evidence_panel.filter_options(ev, suggested.table() if suggested else None)

with st.expander("Filter (shared with the Errors page)", icon=":material/filter_alt:"):
    widgets.filter_controls(categories, prefix="rev", evidence=options)
kwargs = state.filter_kwargs(tagged=False, reviewer=name, category=None)
ev_kwargs = evidence_panel.filter_kwargs(options)
signature = (run_id, name, tuple(sorted((k, str(v)) for k, v in {**kwargs, **ev_kwargs}.items())))


def build_queue() -> None:
    """Snapshot the untagged errors, so tagging one does not pull it from under the reviewer."""
    table = evidence_panel.filtered_errors(preds, store.current_tags(reviewer=name), ev, kwargs, ev_kwargs,
                                           suggested.table() if suggested else None)
    order = table["index"].astype(int).tolist()
    st.session_state[QUEUE_KEY] = {"signature": signature, "order": order}
    st.session_state[CURRENT_KEY] = order[0] if order else None


try:
    if st.session_state.get(QUEUE_KEY, {}).get("signature") != signature:
        build_queue()
except ValueError as exc:
    show_error(exc, "Filters")
    st.stop()
order = st.session_state[QUEUE_KEY]["order"]
st.caption(f"Queue: your untagged errors · {captions.describe_filters({**kwargs, **ev_kwargs})}")
if not order:
    st.success("Nothing left to review under this filter.", icon=":material/task_alt:")
    st.button("Look again", on_click=build_queue, icon=":material/refresh:")
    st.stop()
thumbs = loaders.images_for(preds)
# Every error with its class names, by test index (untagged: the captions show no tags).
errors = analysis.error_table(preds, sort="index").set_index("index", drop=False)
queue_preds = preds[preds["index"].isin(order)]  # the queue's errors, for its own progress


@st.fragment
def review_panel() -> None:
    """Image, tags, note and moves; a key press reruns only this panel."""
    current = st.session_state.get(CURRENT_KEY)
    if current not in order:
        current = st.session_state[CURRENT_KEY] = order[0]
    mine, notes = store.current_tags(reviewer=name), store.current_notes(reviewer=name)
    queued = analysis.review_progress(queue_preds, mine, notes=notes)
    done = queued["n_reviewed"]
    st.progress(done / len(order), text=f"{done:,} of {len(order):,} reviewed")
    run_wide = analysis.review_progress(preds, mine, notes=notes)
    st.caption(f"Whole run: you have reviewed {run_wide['n_reviewed']:,} of {run_wide['n_errors']:,} errors.")
    row = errors.loc[current].to_dict()
    # Trained again only when this reviewer's tags changed (cached on the tag state).
    suggestions = loaders.suggestions(run_id, preds, mine, categories, name) if not ev.empty else None
    image, side = st.columns([2, 3], gap="medium")
    with image:
        evidence_panel.detail_image(thumbs, ev, current, row, key="rev", caption_text=captions.caption(row))
        evidence_panel.badges(ev, current)
        st.caption(captions.animal_text(row))
    with side:
        widgets.step_buttons(order, current, key="rev_step", state_key=CURRENT_KEY)
        widgets.tag_controls(run_id, current, key="rev",
                             suggested=suggestions.for_image(current) if suggestions else None,
                             waiting=captions.waiting_text(suggestions) if suggestions else None)
        if not evidence_panel.no_evidence(ev):
            evidence_panel.neighbours(ev, thumbs, current, row, key="rev")
        st.plotly_chart(figures.probability_figure(row), key="rev_probs")


review_panel()
st.button("Rebuild the queue", on_click=build_queue, icon=":material/refresh:", type="tertiary",
          help="Drop the images you have tagged since the queue was made")
