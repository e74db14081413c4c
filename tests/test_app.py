"""The Streamlit app, page by page, with Streamlit's AppTest against a generated artifacts home."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

from tests.app_fixture import NAVIGATION, break_run
from cifar_mtl import analysis
from cifar_mtl.app import figures, loaders, messages, sidebar, state
from cifar_mtl.compare import compare_runs, compare_with_corrections
from cifar_mtl.config import CONFIG_DIR
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.mislabels import corrected_accuracy, rank_mislabels
from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from cifar_mtl.runs import load_predictions

TIMEOUT = 60  # seconds per script run; the first run imports plotly and pandas


def open_app(page: str | None = None, reviewer: str | None = None, run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(NAVIGATION), default_timeout=TIMEOUT)
    if reviewer:
        at.query_params["reviewer"] = reviewer
    if run_id:
        at.query_params["run_id"] = run_id
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    """The elements' text as a reader sees it: without the backslashes that escape markdown."""
    return [re.sub(r"\\(.)", r"\1", e.value) if isinstance(e.value, str) else e.value for e in elements]


def grid_captions(at: AppTest) -> list[str]:
    """Captions of the thumbnails in the Errors grid (the detail image is the last one)."""
    return [c for image in at.image[:-1] for c in image.captions]


def button(at: AppTest, key: str):
    return at.button(key=key)


def select_in_chart(at: AppTest, key: str, selection: dict) -> AppTest:
    """Rerun as after a selection in the plotly chart `key`: the browser sends the selection
    state as the chart's widget value (a JSON string), and Streamlit calls its on_select."""
    chart = next(c.proto for c in at.get("plotly_chart") if key in c.proto.id)
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.id, string_value=json.dumps(selection)))
    return at._run(states)


# --- every page renders ------------------------------------------------------------------


@pytest.mark.parametrize("page", ["overview", "errors", "review", "mislabels", "compare", "export", "getting_started"])
def test_every_page_renders_without_error(fx, page):
    at = open_app(page, reviewer="ada")
    assert not at.error, texts(at.error)
    assert at.title, "each page has a title"


def test_overview_lists_every_run_with_its_figures(fx):
    at = open_app(reviewer="ada")
    assert texts(at.title) == ["Overview"]
    runs_shown = at.dataframe[0].value
    assert set(runs_shown["run"]) == set(fx.run_ids)
    for run_id in fx.run_ids:
        expected = load_predictions(run_id)["correct"].mean()
        shown = runs_shown.loc[runs_shown["run"] == run_id, "accuracy"].iloc[0]
        assert shown == pytest.approx(100 * expected)  # percent, shown with two decimals
    assert set(runs_shown["backbone"]) == {"efficientnetv2b1"}
    # the most accurate succeeded run (here also the newest) is under review by default
    assert at.sidebar.selectbox(key=state.RUN_KEY).value == "multi-b"
    preds = load_predictions("multi-b")
    n_errors = int((~preds["correct"]).sum())
    assert any(m.value == f"0 of {n_errors:,}" for m in at.metric)


def test_overview_curves_start_with_finished_runs_and_name_runs_without_the_metric(fx):
    from cifar_mtl.runs import HISTORY_FILE, write_status
    from cifar_mtl.synthetic import make_fake_run

    write_status(make_fake_run("failed-c", fx.home, n=200, accuracy=0.5, seed=3), "failed", error="diverged")
    no_val = make_fake_run("noval-d", fx.home, n=200, accuracy=0.6, seed=4)
    (no_val / HISTORY_FILE).write_text("stage,epoch,class_accuracy,loss\nfinetune,1,0.5,1.0\n")
    at = open_app(reviewer="ada")
    assert at.selectbox(key="ov_metric").value == "val_class_accuracy"
    shown = at.multiselect(key="ov_runs")
    assert set(shown.value) == {"single-a", "multi-b"}  # not the failed run, not the one without val metrics
    assert {"failed-c", "noval-d"} <= set(shown.options)  # both can still be picked
    assert any(t.startswith("Runs without `val_class_accuracy`: noval-d.") for t in texts(at.caption))
    # Both accuracy columns in one format: percent with two decimals.
    config = json.loads(at.dataframe[0].proto.columns)
    assert config["accuracy"]["type_config"]["format"] == config["corrected accuracy"]["type_config"]["format"] == "%.2f%%"


# --- Errors: filters, grid, detail ------------------------------------------------------------


def test_filters_change_the_grid(fx):
    at = open_app("errors", reviewer="ada")
    preds = load_predictions("multi-b")
    all_errors = analysis.error_table(preds)
    first = grid_captions(at)
    assert len(first) == min(24, len(all_errors))
    assert first[0].startswith(f"#{all_errors['index'].iloc[0]} ")  # hardest (highest loss) first

    at.selectbox(key="err_f_true").set_value(3).run()
    cats = analysis.error_table(preds, true_class=3)
    shown = grid_captions(at)
    assert len(shown) == min(24, len(cats)) and len(shown) < len(first)
    assert all(f"· {CLASS_NAMES[3]} →" in c for c in shown)

    at.selectbox(key="err_f_sort").set_value("confidence").run()
    at.toggle(key="err_f_descending").set_value(False).run()
    ascending = analysis.error_table(preds, true_class=3, sort="confidence", descending=False)
    assert [c.split(" ")[0] for c in grid_captions(at)] == [f"#{i}" for i in ascending["index"][:24]]

    at.toggle(key="err_f_cross").set_value(True).run()
    cross = analysis.error_table(preds, true_class=3, cross_group_only=True)
    assert len(grid_captions(at)) == min(24, len(cross))


def test_filters_survive_moving_between_pages(fx):
    at = open_app("errors", reviewer="ada")
    at.selectbox(key="err_f_true").set_value(5).run()
    at.switch_page("views/overview.py").run()
    at.switch_page("views/errors.py").run()
    assert at.selectbox(key="err_f_true").value == 5
    assert all(f"· {CLASS_NAMES[5]} →" in c for c in grid_captions(at))
    at.switch_page("views/review.py").run()  # the Review queue uses the same filter
    assert at.selectbox(key="rev_f_true").value == 5
    queue = at.session_state["review_queue"]["order"]
    assert queue == analysis.error_table(load_predictions("multi-b"), true_class=5)["index"].tolist()


def test_pages_of_the_grid(fx):
    at = open_app("errors", reviewer="ada")
    errors = analysis.error_table(load_predictions("multi-b"))
    at.selectbox(key="err_page_size").set_value(12).run()
    assert len(grid_captions(at)) == 12
    at.pagination(key="err_page").set_value(2).run()
    assert grid_captions(at)[0].startswith(f"#{errors['index'].iloc[12]} ")


def test_opening_an_image_shows_its_detail(fx):
    at = open_app("errors", reviewer="ada")
    errors = analysis.error_table(load_predictions("multi-b"))
    third = int(errors["index"].iloc[2])
    button(at, f"open_{third}").click().run()
    assert at.image[-1].captions[0].startswith(f"#{third} ")
    button(at, "err_step_Next").click().run()
    assert at.image[-1].captions[0].startswith(f"#{int(errors['index'].iloc[3])} ")
    button(at, "err_step_k").click().run()
    assert at.image[-1].captions[0].startswith(f"#{third} ")


@pytest.mark.parametrize(
    "state, cell",
    [
        # the shape Streamlit reports for a click on the marker of cell (ship, truck)
        ({"selection": {"points": [{"curve_number": 1, "point_index": 89, "x": "truck", "y": "ship",
                                    "customdata": {"0": 8, "1": 9}, "text": 4}], "box": [], "lasso": []}}, (8, 9)),
        ({"selection": {"points": [{"x": "dog", "y": "cat"}]}}, (3, 5)),
        ({"selection": {"points": [{"x": 0.4, "y": 2}]}}, None),
        ({"selection": {"points": []}}, None),
        ({}, None),
        (None, None),
    ],
)
def test_confusion_click_is_read_back_as_true_and_predicted_class(state, cell):
    assert figures.cell_from_selection(state) == cell


def test_confusion_cell_filter_shows_those_images(fx):
    at = open_app("errors", reviewer="ada")
    preds = load_predictions("multi-b")
    cm = analysis.confusion_matrix(preds).to_numpy().copy()
    np.fill_diagonal(cm, 0)
    true, pred = np.unravel_index(cm.argmax(), cm.shape)
    # a click on the cell's marker, as the browser reports it: the chart's on_select callback runs
    click = {"selection": {"points": [{"curve_number": 1, "point_index": int(true * 10 + pred),
                                       "x": CLASS_NAMES[pred], "y": CLASS_NAMES[true]}], "box": [], "lasso": []}}
    select_in_chart(at, "err_confusion", click)
    assert (at.selectbox(key="err_f_true").value, at.selectbox(key="err_f_pred").value) == (true, pred)
    shown = grid_captions(at)
    assert len(shown) == min(24, cm[true, pred])
    assert all(f"{CLASS_NAMES[true]} → {CLASS_NAMES[pred]}" in c for c in shown)


# --- tagging -----------------------------------------------------------------------------------


def test_a_tag_set_on_errors_is_stored_and_shows_on_review(fx):
    at = open_app("review", reviewer="ada")  # the queue is built first ...
    queue = at.session_state["review_queue"]["order"]
    at.switch_page("views/errors.py").run()
    detail = int(at.image[-1].captions[0].split(" ")[0][1:])
    assert detail == queue[0]  # same filter, same order: the first error is first in the queue
    button(at, "err_tag_clutter").click().run()  # ... then an image is tagged on Errors
    assert button(at, "err_tag_clutter").proto.type == "primary"

    tags = ReviewStore(default_path(fx.home)).current_tags()
    assert tags[["index", "category", "reviewer", "run_id"]].values.tolist() == [[detail, "clutter", "ada", "multi-b"]]
    everyone = at.dataframe[-1].value
    assert everyone.values.tolist() == [["ada", "clutter", ""]]

    at.switch_page("views/review.py").run()
    assert button(at, "rev_tag_clutter").proto.type == "primary"  # the queue's first image shows it
    assert any(p.proto.text == f"1 of {len(queue):,} reviewed" for p in at.get("progress"))
    fresh = open_app("review", reviewer="ada")  # a new queue leaves the tagged image out
    assert fresh.session_state["review_queue"]["order"] == queue[1:]


def test_review_queue_moves_and_tags_with_its_buttons(fx):
    at = open_app("review", reviewer="bob")
    queue = at.session_state["review_queue"]["order"]
    button(at, "rev_step_j").click().run()
    assert at.session_state["review_current"] == queue[1]
    button(at, "rev_tag_pose").click().run()
    button(at, "rev_tag_colour").click().run()
    button(at, "rev_tag_pose").click().run()  # a second press removes the tag
    store = ReviewStore(default_path(fx.home))
    assert store.current_tags(reviewer="bob")[["index", "category"]].values.tolist() == [[queue[1], "colour"]]
    button(at, "rev_undo").click().run()  # undoes the last change: the pose tag is back
    assert sorted(store.current_tags(reviewer="bob")["category"]) == ["colour", "pose"]
    at.text_area(key=f"rev_note_{queue[1]}").input("blurry wing").run()
    assert store.current_notes(reviewer="bob")["note"].tolist() == ["blurry wing"]


def test_tag_controls_ask_for_a_name_first(fx):
    at = open_app("errors")
    assert any("Type your name" in m for m in texts(at.info))
    assert not [b for b in at.button if (b.key or "").startswith("err_tag_")]
    at.text_input(key=state.REVIEWER_KEY).input("cy").run()
    assert button(at, "err_tag_clutter")


# --- mislabels, compare, export -------------------------------------------------------------


def test_confirming_a_mislabel_updates_the_corrected_accuracy(fx):
    at = open_app("mislabels", reviewer="ada")
    preds = load_predictions("multi-b")
    top = rank_mislabels(preds).iloc[0]
    button(at, f"ml_confirmed_{int(top['index'])}").click().run()
    store = ReviewStore(default_path(fx.home))
    verdicts = store.current_mislabels()
    assert verdicts[["index", "verdict", "suggested_label"]].values.tolist() == [
        [int(top["index"]), "confirmed", int(top["suggested"])]
    ]
    expected = corrected_accuracy(preds, verdicts)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy (corrected labels)"] == f"{expected['corrected_accuracy']:.2%}"
    assert metrics["Labels corrected"] == "1"


def test_compare_shows_the_comparison_figures(fx):
    at = open_app("compare", reviewer="ada")
    # defaults: newest single-task run as A, newest multitask run as B
    assert at.selectbox(key=state.COMPARE_BASE_KEY).value == "single-a"
    assert at.selectbox(key=state.COMPARE_KEY).value == "multi-b"
    cmp = compare_runs(load_predictions("single-a"), load_predictions("multi-b"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy A"] == f"{cmp.accuracy_a:.2%}"
    assert metrics["Accuracy B"] == f"{cmp.accuracy_b:.2%}"
    assert metrics["McNemar p-value"] == f"{cmp.p_value:.3g}"
    assert metrics["Fixed by B"] == f"{cmp.n_fixed:,}" and metrics["Broken by B"] == f"{cmp.n_broken:,}"
    assert [t.label for t in at.tabs][:2] == [f"Fixed by B ({cmp.n_fixed:,})", f"Broken by B ({cmp.n_broken:,})"]
    assert any(c.startswith(f"95% CI {cmp.ci_a[0]:.2%}") for c in texts(at.caption))


def test_compare_without_verdicts_says_the_figures_are_on_the_original_labels(fx):
    at = open_app("compare", reviewer="ada")
    assert not at.table
    assert any("No reviewer has a verdict on these test images yet" in m for m in texts(at.info))
    assert [t.label for t in at.tabs][2] == "Relabelled (0)"


def test_compare_shows_the_corrected_labels_row_after_a_verdict(fx):
    a, b = load_predictions("single-a"), load_predictions("multi-b")
    # An image A gets wrong and B right, confirmed with A's answer: it moves from fixed to broken.
    fixed = compare_runs(a, b).fixed.iloc[0]
    store = ReviewStore(default_path(fx.home))
    store.set_mislabel("multi-b", int(fixed["index"]), "bob", "confirmed", int(fixed["pred_a"]))
    expected = compare_with_corrections(a, b, store.current_mislabels())
    assert expected.corrected.n_fixed == expected.original.n_fixed - 1

    at = open_app("compare", reviewer="ada")
    shown = at.table[0].value
    assert shown.index.tolist() == ["Original labels", "Corrected labels"]
    assert shown.loc["Corrected labels", "McNemar p"] == f"{expected.corrected.p_value:.3g}"
    assert shown.loc["Original labels", "Fixed by B"] == f"{expected.original.n_fixed:,}"
    assert shown.loc["Corrected labels", "Fixed by B"] == f"{expected.corrected.n_fixed:,}"
    assert shown.loc["Corrected labels", "Accuracy A"].startswith(f"{expected.corrected.accuracy_a:.2%} (")
    assert any(t.startswith("Reviewers corrected 1 of the 200 test labels (1 verdict;") for t in texts(at.caption))
    assert [t.label for t in at.tabs][2] == "Relabelled (1)"
    assert not at.info


def test_compare_categories_are_named_by_run_and_counted_in_whole_images(fx):
    a, b = load_predictions("single-a"), load_predictions("multi-b")
    store = ReviewStore(default_path(fx.home))
    for run_id, preds in (("single-a", a), ("multi-b", b)):
        wrong = preds.loc[~preds["correct"], "index"].head(2).astype(int)
        for index in wrong:
            store.tag(run_id, int(index), "clutter", "ada")

    at = open_app("compare", reviewer="ada")
    table = at.dataframe[-1].value
    assert table.columns.tolist() == ["A single-a", "B multi-b"]
    assert table.loc["clutter"].tolist() == [2, 2]
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "cmp_categories" in c.proto.id]
    assert [t["name"] for t in charts[0]["data"]] == ["A single-a", "B multi-b"]
    assert charts[0]["layout"]["yaxis"]["tickformat"] == ",d"  # no 0.5 images


def test_export_contains_the_tags_and_keeps_a_copy(fx):
    at = open_app("export", reviewer="ada")
    assert any("Nothing to export yet" in m for m in texts(at.info))
    at.switch_page("views/errors.py").run()
    detail = int(at.image[-1].captions[0].split(" ")[0][1:])
    button(at, "err_tag_occlusion").click().run()
    at.switch_page("views/export.py").run()
    preview = at.dataframe[0].value
    assert preview["index"].tolist() == [detail]
    assert preview["occlusion"].tolist() == [1] and preview["clutter"].tolist() == [0]
    at.download_button(key="ex_download").click().run()
    copies = list((fx.home / "exports").glob("multi-b-errors-*.csv"))
    assert len(copies) == 1
    lines = copies[0].read_text().splitlines()
    header = lines[0].split(",")
    row = dict(zip(header, lines[1].split(",")))
    assert row["index"] == str(detail) and row["occlusion"] == "1" and row["reviewers"] == "ada"

    at.radio(key="ex_form").set_value("long").run()
    events = at.dataframe[0].value
    assert events[["index", "kind", "category", "action"]].values.tolist() == [[detail, "tag", "occlusion", "add"]]


# --- first run and bad states -----------------------------------------------------------------


def test_no_runs_leads_to_getting_started(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_MTL_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "nowhere"))
    at = open_app()
    assert texts(at.title) == ["Getting started"]
    assert any("No finished runs yet" in m for m in texts(at.info))
    assert any("CIFAR10_DIR" in m.value for m in at.markdown)
    for page in ("errors", "review", "export"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception
        assert any("no complete run" in m for m in texts(at.info)), page


@pytest.mark.parametrize("gpu, demo", [(False, "cpu_fast_demo.json"), (True, "cpu_quick.json")])
def test_quick_demo_submits_both_variants_of_the_quick_config(fx, monkeypatch, gpu, demo):
    from cifar_mtl import config as config_module
    from cifar_mtl import jobs
    from cifar_mtl.config import load_config_file

    monkeypatch.setattr(config_module, "has_gpu", lambda: gpu)
    submitted = []
    monkeypatch.setattr(jobs.JobRunner, "submit", lambda self, config, run_id=None: submitted.append(config) or len(submitted))
    at = open_app("getting_started")
    assert any(demo.removesuffix(".json") in m.value for m in at.markdown)
    at.button[0].click().run()
    quick = load_config_file(CONFIG_DIR / demo).to_dict()
    assert (quick["backbone"] == "airbench") == (not gpu)
    assert [c["variant"] for c in submitted] == ["single", "multitask"]
    for config in submitted:
        assert {k: v for k, v in config.items() if k not in ("variant", "name")} == {
            k: v for k, v in quick.items() if k not in ("variant", "name")
        }
    assert any("Queued jobs 1, 2" in m for m in texts(at.success))


def test_missing_dataset_keeps_tables_and_charts_with_a_notice(fx, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(fx.data.parent / "moved-away"))
    at = open_app("errors", reviewer="ada")
    assert any("Images are not shown" in m and "moved-away" in m for m in texts(at.info))
    assert len(at.image) == 0
    table = at.dataframe[0].value
    assert len(table) == 24 and {"label_name", "pred_name", "confidence"} <= set(table.columns)
    button(at, "err_tag_clutter").click().run()  # tagging still works without images
    assert len(ReviewStore(default_path(fx.home)).current_tags()) == 1
    for page in ("overview", "compare", "mislabels", "review"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception and not at.error, page


def test_images_of_another_dataset_are_not_shown(fx, monkeypatch, tmp_path):
    from cifar_mtl.synthetic import write_fake_cifar

    other = write_fake_cifar(tmp_path / "small", n_train_per_batch=10, n_test=50)
    monkeypatch.setenv("CIFAR10_DIR", str(other))
    at = open_app("errors", reviewer="ada")
    assert any("does not match this run" in m for m in texts(at.warning))
    assert len(at.image) == 0


def test_a_corrupt_run_shows_a_message_and_other_runs_work(fx):
    break_run(fx.home, "broken-c", "corrupt")
    break_run(fx.home, "training-d", "partial")
    at = open_app("errors", reviewer="ada", run_id="broken-c")
    assert not at.exception
    # A link to the broken run says why it is not shown, and another run is under review.
    assert any(m.startswith("Run broken-c cannot be reviewed") and "predictions" in m for m in texts(at.warning))
    assert "broken-c" not in at.sidebar.selectbox(key=state.RUN_KEY).options
    # the run still training is listed as needing attention, not offered for review
    assert "training-d" not in at.sidebar.selectbox(key=state.RUN_KEY).options
    assert "In progress: training-d (running)" in texts(at.sidebar.caption)
    at.sidebar.selectbox(key=state.RUN_KEY).set_value("single-a").run()
    assert not at.error and len(grid_captions(at)) == 24
    at.switch_page("views/overview.py").run()
    listed = at.dataframe[0].value.set_index("run")
    assert listed.loc["training-d", "state"] == "running"
    assert pd.isna(listed.loc["broken-c", "corrected accuracy"])
    assert "cannot be read" in listed.loc["broken-c", "problem"]  # the table names the damage
    assert listed.loc["single-a", "corrected accuracy"] == pytest.approx(listed.loc["single-a", "accuracy"])


def test_an_unusable_review_database_leaves_the_grid_working(fx):
    (fx.home / "reviews.sqlite").write_bytes(b"not a database at all" * 100)
    at = open_app("errors", reviewer="ada")
    assert any("cannot be used as the review database" in m for m in texts(at.error))
    assert len(grid_captions(at)) == 24


# --- speed-related behaviour and messages ------------------------------------------------------


def test_thumbnails_are_made_once_for_every_session_and_rerun(fx):
    first = open_app("errors", reviewer="ada")
    thumbs = loaders.test_images()[0]
    made = thumbs.n_encoded
    assert made == len(first.image)  # 24 grid thumbnails and the large detail image
    first.run()
    second = open_app("errors", reviewer="bob")  # another browser session
    assert len(second.image) == len(first.image)
    assert thumbs.n_encoded == made


def test_error_messages_say_what_to_do_instead_of_a_traceback():
    from cifar_mtl.runs import RunError

    known = RunError("run 'x': predictions.parquet is missing (/h/runs/x/predictions.parquet)")
    assert messages.error_message(known, "Run x") == f"Run x: {known}"
    bug = messages.error_message(KeyError("prob_3"))
    assert "unexpected KeyError" in bug and "rest of the app still works" in bug

    def page():
        import streamlit as st

        from cifar_mtl.app import messages

        try:
            {}["prob_3"]
        except KeyError as exc:
            messages.show_error(exc, "Drawing")
        st.write("still here")

    at = AppTest.from_function(page).run()
    assert not at.exception
    shown = ("Drawing: unexpected KeyError: 'prob_3'. The rest of the app still works; "
             "the server's console has the details for a bug report.")
    assert texts(at.error) == [shown]  # escaped for markdown, read as typed
    assert not at.expander and not at.code  # no traceback in the browser
    assert "still here" in texts(at.markdown)


def test_the_default_run_is_the_reviewers_last_else_the_best_succeeded():
    import pandas as pd

    table = pd.DataFrame({
        "run_id": ["newest-failed", "partial", "good", "best", "older"],
        "complete": [True, False, True, True, True],
        "state": ["failed", "running", "succeeded", "succeeded", "succeeded"],
        "accuracy": [0.26, None, 0.80, 0.91, 0.70],
    })
    assert sidebar.default_run(table) == "best"  # not the newest, which failed
    assert sidebar.default_run(table, last="older") == "older"
    assert sidebar.default_run(table, last="partial") == "best"  # an incomplete run is no choice
    assert sidebar.default_run(table.iloc[:1]) == "newest-failed"  # nothing succeeded: the newest complete


def test_getting_started_says_once_why_the_images_are_missing(fx, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(fx.data.parent / "moved-away"))
    at = open_app("getting_started")
    notes = [m for m in texts(at.warning) if "moved-away" in m]
    # The loader's own message, not wrapped in a second "is not available: ..." prefix.
    assert len(notes) == 1 and "not available: " not in notes[0], notes


# --- the label loop: train split, label sets ---------------------------------------------------


def test_train_split_ranks_crossval_suspects_and_keeps_train_verdicts(fx):
    from tests.label_loop_fixture import add_crossval_run

    run_id, suspects = add_crossval_run(fx)
    at = open_app("mislabels", reviewer="ada", run_id="multi-b")
    at.segmented_control(key="ml_split").set_value("train").run()
    assert not at.exception and not at.error
    assert at.multiselect(key="ml_train_runs").value == [run_id]
    lines = [m for m in texts(at.markdown) if re.match(r"\*\*\d+\. #", m)]
    assert [int(re.search(r"#(\d+)", m).group(1)) for m in lines[:5]] == suspects  # ties broken by index
    assert {m.label: m.value for m in at.metric}["Training images ranked"] == "50"
    first, second = suspects[:2]
    from cifar_mtl.mislabels import load_train_predictions

    other = (int(load_train_predictions(run_id, fx.home).set_index("index").loc[first, "label"]) + 2) % 10
    at.selectbox(key=f"ml_train_label_{first}").set_value(other).run()
    button(at, f"ml_train_confirmed_{first}").click().run()
    button(at, f"ml_train_rejected_{second}").click().run()
    store = ReviewStore(default_path(fx.home))
    train = store.current_mislabels(split="train")
    assert sorted(train[["index", "verdict", "run_id"]].values.tolist()) == [
        [first, "confirmed", run_id], [second, "rejected", run_id]]
    assert int(train.set_index("index").loc[first, "suggested_label"]) == other
    assert store.current_mislabels().empty  # the test split is untouched
    button(at, f"ml_train_clear_{second}").click().run()
    assert store.current_mislabels(split="train")["index"].tolist() == [first]
    # The test split is still there, with its own keys.
    at.segmented_control(key="ml_split").set_value("test").run()
    assert not at.exception and "Accuracy (corrected labels)" in {m.label for m in at.metric}


def test_train_split_without_a_crossval_run_says_how_to_make_one(fx):
    at = open_app("mislabels", reviewer="ada")
    at.segmented_control(key="ml_split").set_value("train").run()
    assert not at.exception and not at.error
    assert any("crossval" in t for t in texts(at.info))


def test_label_sets_page_previews_builds_and_refuses_a_bad_name(fx):
    from cifar_mtl.labelsets import list_label_sets, load_label_set
    from tests.label_loop_fixture import add_crossval_run

    run_id, suspects = add_crossval_run(fx)
    store = ReviewStore(default_path(fx.home))
    at_none = open_app("labels", reviewer="ada")
    assert any("No verdict on a training image" in t for t in texts(at_none.info))
    from cifar_mtl.mislabels import load_train_predictions

    labels = load_train_predictions(run_id, fx.home).set_index("index")["label"]
    a, b, c = suspects[:3]
    new = (int(labels[a]) + 2) % 10
    store.set_mislabel(run_id, a, "ada", "confirmed", new, split="train")
    store.set_mislabel(run_id, a, "bob", "confirmed", new, split="train")
    store.set_mislabel(run_id, b, "ada", "unsure", split="train")
    store.set_mislabel(run_id, c, "bob", "rejected", split="train")

    at = open_app("labels", reviewer="ada")
    assert not at.exception and not at.error
    assert at.multiselect(key="ls_reviewers").value == ["ada", "bob"]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Relabels"], metrics["Exclusions"], metrics["Images judged"]) == ("1", "1", "3")
    at.number_input(key="ls_min_agree").set_value(2).run()
    assert {m.label: m.value for m in at.metric}["Images changed"] == "1"  # b had one vote only
    at.text_input(key="ls_name").input("no good/name").run()
    assert any("must be 1-64 letters" in t for t in texts(at.error))
    assert at.button(key="ls_build").disabled
    at.text_input(key="ls_name").input("round1").run()
    button(at, "ls_build").click().run()
    assert not at.exception and any("round1@v1" in t for t in texts(at.success))
    table = load_label_set("round1@v1", fx.home)
    assert table[["index", "action", "label", "given_label"]].values.tolist() == [[a, "relabel", new, int(labels[a])]]
    assert table["reviewers"].tolist() == ["ada;bob"]
    listed = list_label_sets(fx.home)
    assert listed[["name", "version", "relabel"]].values.tolist() == [["round1", 1, 1]]
    assert at.dataframe[-1].value["name"].tolist() == ["round1"]  # the list of sets, last on the page


def test_train_split_filters_by_datalab_flags_when_the_run_has_training_embeddings(fx):
    from cifar_mtl.mislabels import train_ranking_of_runs
    from tests.label_loop_fixture import TWINS, add_crossval_run, add_train_embeddings

    run_id, suspects = add_crossval_run(fx)
    add_train_embeddings(fx, run_id)  # and the saved Datalab flags
    expected = train_ranking_of_runs([run_id], home_dir=fx.home)
    twins = expected.loc[expected["is_near_duplicate_issue"], "index"].tolist()
    assert set(twins) >= set(TWINS[0]) | set(TWINS[1]) and len(twins) < 50
    at = open_app("mislabels", reviewer="ada")
    at.segmented_control(key="ml_split").set_value("train").run()
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["Datalab label issues"] == str(int(expected["is_label_issue"].sum()))
    assert not any("--datalab" in t for t in texts(at.caption))
    at.button_group(key="ml_train_issues").set_value(["near_duplicate"]).run()
    assert not at.exception
    lines = [m for m in texts(at.markdown) if re.match(r"\*\*\d+\. #", m)]
    assert [int(re.search(r"#(\d+)", m).group(1)) for m in lines] == twins[:8]  # first page, ranking order
    assert sum("Datalab: near-duplicate" in t for t in texts(at.caption)) == min(8, len(twins))


def test_train_split_with_embeddings_but_no_saved_flags_shows_the_command_and_no_flags(fx):
    from tests.label_loop_fixture import add_crossval_run, add_train_embeddings

    run_id, suspects = add_crossval_run(fx)
    add_train_embeddings(fx, run_id, datalab=False)
    at = open_app("mislabels", reviewer="ada")
    at.segmented_control(key="ml_split").set_value("train").run()
    assert not at.exception and not at.error
    hint = [t for t in texts(at.caption) if "--datalab" in t]
    assert len(hint) == 1 and f"`python -m cifar_mtl mislabels --split train --run {run_id} --datalab`" in hint[0]
    assert "minutes on 50,000 images" in hint[0]
    assert {m.label: m.value for m in at.metric}["Datalab label issues"] == "-"
    assert not any("Datalab:" in t for t in texts(at.caption))
    assert not [g for g in at.button_group if g.key == "ml_train_issues"]  # no filter without flags
