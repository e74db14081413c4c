"""Getting started: where the data comes from, a quick demo training, how reviewing works."""

import streamlit as st

from cifar_mtl.app import loaders
from cifar_mtl.app.messages import escape_markdown, flash_error, show_error, show_flash
from cifar_mtl.config import demo_config_file, has_gpu

GPU = has_gpu()
QUICK_CONFIG = demo_config_file(GPU)


def submit_demo() -> None:
    """Queue the quick configuration twice (single-task and multitask) with the job runner."""
    try:
        from cifar_mtl.config import load_config_file
        from cifar_mtl.jobs import JobRunner

        base = load_config_file(QUICK_CONFIG).to_dict()
        ids = JobRunner().submit_demo(base=base)
        st.session_state["_demo_jobs"] = ids
    except Exception as exc:
        flash_error("demo", exc, "The demo could not be queued")


st.title("Getting started")
table = loaders.run_table()
if not loaders.complete_run_ids(table):
    st.info("No finished runs yet: train one below, or point the app at an artifacts folder that has some.",
            icon=":material/info:")

st.subheader("1. Point the app at CIFAR-10")
thumbs, _, problem = loaders.test_images()
if thumbs is not None:
    st.success(f"Test images found: {len(thumbs):,} images from {loaders.data_source_text()}.", icon=":material/check:")
else:
    # The loader's message already says what is missing and what to set.
    st.warning(escape_markdown(problem, keep_code=True), icon=":material/hide_image:")
st.markdown(
    """
The app never downloads anything by itself. Give it the official **python version** of
CIFAR-10, either the `cifar-10-batches-py` folder or `cifar-10-python.tar.gz`:

```bash
export CIFAR10_DIR=/data/cifar-10-batches-py      # or .../cifar-10-python.tar.gz
export CIFAR_MTL_HOME=/data/cifar-mtl-artifacts   # optional: where runs and reviews live
streamlit run app.py
```

Without `CIFAR10_DIR` the app looks in the keras download cache (`~/.keras/datasets`).
Runs, the review database and exports live in the artifacts home shown in the sidebar.
"""
)

st.subheader("2. Train a model")
if GPU:
    about = "EfficientNetV2B1, the method's backbone, on a stratified subset for a few epochs from scratch"
else:
    about = ("no GPU here, so the fast CPU backbone (the airbench net) for 3 epochs from scratch, "
             "a few minutes each on 2 cores")
st.markdown(
    f"The quick demo trains both variants of `{QUICK_CONFIG.stem}` ({about}), one after "
    "the other. They show up here and on the Retrain page while they run."
)
st.button("Train the quick demo (single-task and multitask)", on_click=submit_demo,
          icon=":material/play_arrow:", type="primary", disabled=not QUICK_CONFIG.exists())
show_flash("demo")
if ids := st.session_state.get("_demo_jobs"):
    st.success(f"Queued jobs {', '.join(map(str, ids))}.", icon=":material/schedule:")
try:
    from cifar_mtl.jobs import JobRunner

    jobs = JobRunner().list_jobs()
    if len(jobs):
        st.dataframe(jobs, hide_index=True, width="stretch")
        st.button("Refresh", icon=":material/refresh:")
except Exception as exc:
    show_error(exc, "Reading the job queue")
st.markdown(
    """
From a terminal instead:

```bash
cifar-mtl train --config cpu_fast         # ~35 min on 2 CPU cores, multitask
cifar-mtl train --config cpu_fast_single  # the same, single-task
cifar-mtl train --config cpu_quick        # EfficientNetV2B1, a few epochs
```
"""
)

st.subheader("3. Review the errors")
st.markdown(
    """
- **Overview**: runs, training curves, accuracy per class, review progress.
- **Errors**: the misclassified test images with filters and a clickable confusion matrix;
  open an image to see its probabilities and tag it.
- **Review**: one untagged error at a time. Keys: **1-9** toggle categories, **→ / J** next,
  **← / K** previous, **U** undo. Tags are saved the moment they are set.
- **Mislabels**: images whose test label looks wrong; confirm, reject or mark unsure.
- **Compare**: two runs side by side; **Export**: the error-category CSV.

Type your name in the sidebar first: every reviewer's tags are kept apart.
"""
)
