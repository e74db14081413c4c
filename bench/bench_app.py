"""Server-side speed of the Streamlit app on 10,000-image runs (Streamlit's AppTest).

Figures, on a generated artifacts home (a single-task and a multitask run of 10,000
test images with evidence files for the multitask one, 10,000 generated test images,
1,000 tags):

- the Map's hover pictures, 10,000 PNG files written once per test set;
- each page's render time after its first load (median of reruns; target < 1 s),
  the Map with its 10,000 points included, and the Map with 1,000 of them selected;
- a tag click: the tag is written and the page answers (median; target < 200 ms).
  AppTest reruns the whole page on a click, while a browser reruns only the
  tag fragment, so "full page" is an upper bound; "fragment only" runs just the
  fragment's code, which is what a browser click costs;
- PNG encodings during the reruns (thumbnails are made once, so 0 is expected).

    python -m bench.bench_app [--quick]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.timing import ms_row, print_ms_rows, restored_environ, timed


N_IMAGES = 10_000
PAGES = ("overview", "errors", "review", "map", "slices", "mislabels", "compare", "export", "getting_started")
REVIEWER = "bench"


def _prepare(root: Path) -> None:
    """Fixture home with two 10,000-image runs, matching images and 1,000 tags."""
    from cifar_mtl.analysis import error_table
    from cifar_mtl.stores.database import default_path
    from cifar_mtl.stores.reviews import ReviewStore
    from cifar_mtl.runs import load_predictions
    from tests.app_fixture import build_home

    from cifar_mtl.cifar10 import load_cifar10
    from cifar_mtl.runs import run_dir
    from tests.evidence_fixture import write_evidence

    fx = build_home(root, n=N_IMAGES)
    os.environ.update(fx.env())
    write_evidence(run_dir("multi-b"), load_predictions("multi-b"),
                   load_cifar10(str(fx.data), allow_download=False).y_train)
    store = ReviewStore(default_path(fx.home))
    errors = error_table(load_predictions("multi-b"))["index"].to_numpy()
    for k, category in enumerate(store.category_names()):
        store.tag_many("multi-b", errors[k * 150 : (k + 1) * 150], category, "ann")
    store.close()


def _page_rows(at, repeats: int) -> list[dict]:
    rows = []
    for page in PAGES:
        first = timed(lambda: at.switch_page(f"views/{page}.py").run())
        if at.exception:
            raise RuntimeError(f"page {page} failed: {at.exception[0].value}")
        again = statistics.median(timed(at.run) for _ in range(repeats))
        if page == "map" and _map_points(at) != N_IMAGES:
            raise RuntimeError(f"the map drew {_map_points(at)} points, not {N_IMAGES}")
        rows.append(ms_row(f"{page}: first load", first, None))
        rows.append(ms_row(f"{page}: render after first load (median of {repeats})", again, 1000))
    return rows


def _map_chart(at):
    """The Map's chart element (its Vega-Lite spec and data)."""
    return next(c.proto for c in at.get("vega_lite_chart") if "map_chart" in c.proto.id)


def _map_points(at) -> int:
    """How many points the Map's chart holds (rows of its Vega-Lite data)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    return len(convert_arrow_bytes_to_pandas_df(_map_chart(at).data.data))


def _selection_row(at, repeats: int) -> dict:
    """The Map rerun with 1,000 points selected (gallery, counts and bulk-tag controls drawn): a
    box round the 1,000 leftmost points, sent as the browser sends a drawn box."""
    import json

    import numpy as np
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    at.switch_page("views/map.py").run()
    chart = _map_chart(at)
    points = convert_arrow_bytes_to_pandas_df(chart.data.data)
    x = np.sort(points["x"].to_numpy(np.float64))
    box = {"x": [float(x[0]) - 1, float(x[999])],
           "y": [float(points["y"].min()) - 1, float(points["y"].max()) + 1]}
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.id, string_value=json.dumps({"selection": {"box": box}})))
    at._run(states)  # as the browser reports a box: the selection callback keeps it
    if at.exception or not any(h.value == "1,000 selected" for h in at.subheader):
        raise RuntimeError("the map selection was not drawn")
    again = statistics.median(timed(at.run) for _ in range(repeats))
    return ms_row(f"map with 1,000 points selected: render (median of {repeats})", again, 1000)


def _pictures_row() -> dict:
    """The Map's hover pictures of the 10,000 test images written (once per test set), where the
    app serves them, so the Map's timings below do not share the CPU with their writing."""
    import shutil

    from cifar_mtl.app import loaders, map_thumbnails
    from tests.app_fixture import APP

    images = loaders.test_images()[0].images
    static = APP.parent / "static"
    shutil.rmtree(map_thumbnails.set_folder(images, static), ignore_errors=True)
    hover = map_thumbnails.prepare(images, static, "/app/static")
    if hover.problem or hover.written != len(images):
        raise RuntimeError(f"the hover pictures were not written: {hover.problem}")
    return {"name": f"map hover pictures: {len(images):,} PNG files written (once per test set, in the background)",
            "value": round(hover.seconds, 2), "unit": "s", "target": "-", "ok": None}


def _suggestion_row(at, repeats: int) -> dict:
    """A tag key on Review as a reviewer with 1,050 tags: the tag state changes on every
    click (a new category each time), so the suggestions classifier is fitted again."""
    at.sidebar.text_input(key="reviewer").set_value("ann").run()
    at.switch_page("views/review.py").run()
    categories = ("clutter", "occlusion", "colour", "context", "pose", "distinctive_features", "mislabel")
    times = []
    for category in categories[:repeats]:
        times.append(timed(lambda: at.button(key=f"rev_tag_{category}").click().run()))
        if at.exception:
            raise RuntimeError(f"review failed: {at.exception[0].value}")
    waiting = [c.value for c in at.caption if "more to go" in c.value or c.value.startswith("No suggestions")]
    if waiting:
        raise RuntimeError(f"no suggestions were fitted: {waiting[0]}")
    at.sidebar.text_input(key="reviewer").set_value(REVIEWER).run()
    return ms_row(f"tag click on review with 1,050 tags, suggestions refitted (median of {len(times)})",
                   statistics.median(times), 1000)


def _click_rows(at, repeats: int) -> list[dict]:
    rows = []
    for page, key in (("errors", "err_tag_clutter"), ("review", "rev_tag_pose")):
        at.switch_page(f"views/{page}.py").run()
        clicks = statistics.median(timed(lambda: at.button(key=key).click().run()) for _ in range(repeats))
        rows.append(ms_row(f"tag click on {page}, full page rerun (AppTest upper bound)", clicks, None))
    return rows


def _fragment_script() -> None:
    import streamlit as st

    from cifar_mtl.app import loaders, state, widgets

    st.session_state.setdefault(state.REVIEWER_KEY, "bench")
    index = int(loaders.predictions("multi-b").loc[lambda d: ~d["correct"], "index"].iloc[0])
    widgets.tag_controls("multi-b", index, key="frag")


def _fragment_row(repeats: int) -> dict:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_fragment_script, default_timeout=60).run()
    clicks = statistics.median(
        timed(lambda: at.button(key="frag_tag_context").click().run()) for _ in range(repeats)
    )
    return ms_row("tag click, fragment only (what a browser click reruns)", clicks, 200)


def run(quick: bool = False) -> list[dict]:
    """Time every page and a tag click; one dict per figure (name, value, unit, target, ok)."""
    from streamlit.testing.v1 import AppTest

    from cifar_mtl.app import loaders
    from tests.app_fixture import NAVIGATION

    repeats = 3 if quick else 7
    with restored_environ("CIFAR_MTL_HOME", "CIFAR10_DIR"):
        with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
            _prepare(Path(tmp))
            rows = [_pictures_row()]
            at = AppTest.from_file(str(NAVIGATION), default_timeout=120)
            at.query_params["reviewer"] = REVIEWER
            at.run()
            rows += _page_rows(at, repeats)
            thumbs = loaders.test_images()[0]
            before = thumbs.n_encoded
            at.switch_page("views/errors.py").run()
            for _ in range(repeats):
                at.run()
            rows.append({"name": f"PNG encodings during {repeats} Errors reruns ({before} made on first loads)",
                         "value": float(thumbs.n_encoded - before), "unit": "", "target": "0",
                         "ok": before > 0 and thumbs.n_encoded == before})
            rows.append(_selection_row(at, repeats))
            rows += _click_rows(at, repeats)
            rows.append(_suggestion_row(at, repeats))
            rows.append(_fragment_row(repeats))
    return rows


if __name__ == "__main__":
    print_ms_rows(run(quick="--quick" in sys.argv[1:]))
