"""The evidence for each error in the app (issue 15), with Streamlit's AppTest: the detail view's
saliency, badges and nearest training images, the Map's selection tagged in bulk, Slices,
suggestions, and the evidence filters. Evidence files are small synthetic ones
(`tests/evidence_fixture.py`) on the fixture home's multitask run; the single-task run has none.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.cifar10 import load_cifar10
from cifar_mtl.evidence import files
from cifar_mtl.runs import load_predictions, run_dir
from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from tests.evidence_fixture import N_DUPLICATES, error_indices, tag_like_a_reviewer, write_evidence
from tests.test_app import open_app, texts

RUN = "multi-b"


@pytest.fixture
def efx(tmp_path, monkeypatch):
    """The app's fixture home with evidence files for run multi-b (none for single-a); 400 test
    images, so that run has errors enough to tag past the suggestions' threshold and leave some."""
    from tests.app_fixture import build_home

    fx = build_home(tmp_path, n=400)
    for key, value in fx.env().items():
        monkeypatch.setenv(key, value)
    train_labels = load_cifar10(str(fx.data), allow_download=False).y_train
    write_evidence(run_dir(RUN, fx.home), load_predictions(RUN, fx.home), train_labels)
    return fx


@pytest.fixture
def store(efx):
    s = ReviewStore(default_path(efx.home))
    yield s
    s.close()


def evidence_of(fx):
    folder = run_dir(RUN, fx.home)
    return files.read_duplicates(folder), files.read_slices(folder), files.read_neighbours(folder)


def captions_of(at) -> list[str]:
    return [c for image in at.image for c in image.captions]


def tags_of(store, reviewer="ada") -> set[tuple[int, str]]:
    tags = store.current_tags(reviewer=reviewer)
    return {(int(i), c) for i, c in zip(tags["index"], tags["category"])}


def detail_index(at) -> int:
    """The test index of the image in Errors' detail view (the last '#index · ...' caption:
    the nearest training images after it are captioned 'label · similarity')."""
    return int(re.match(r"#(\d+)", detail_image(at).captions[0]).group(1))


def detail_image(at):
    return [image for image in at.image if image.captions and image.captions[0].startswith("#")][-1]


# --- the detail view ------------------------------------------------------------------------------


def test_a_label_conflict_shows_both_badges_and_its_training_twin_first(efx):
    duplicates, _, neighbours = evidence_of(efx)
    at = open_app("errors", reviewer="ada", run_id=RUN)
    at.toggle(key="err_f_label_conflict").set_value(True).run()
    assert not at.exception and not at.error
    conflict = duplicates.loc[duplicates["label_conflict"]].iloc[0]
    assert detail_index(at) == int(conflict["index"])
    badges = [m for m in texts(at.markdown) if "badge" in m]
    assert any(f"near-duplicate of training image #{int(conflict['train_index'])}" in b for b in badges), badges
    assert any("label conflict" in b for b in badges), badges
    # the nearest training images, nearest first, each with its label and similarity
    near = neighbours[neighbours["index"] == conflict["index"]].sort_values("rank")
    shown = [c for c in captions_of(at) if re.fullmatch(r"[a-z]+ · \d\.\d\d", c)]
    assert len(shown) == len(near) == 8
    assert shown[0].endswith("0.99") and [float(c.split(" · ")[1]) for c in shown] == sorted(
        [round(float(s), 2) for s in near["similarity"]], reverse=True)


def test_the_saliency_switch_draws_the_map_of_the_predicted_or_the_true_class(efx):
    at = open_app("errors", reviewer="ada", run_id=RUN)
    plain = detail_image(at)
    switch = at.button_group(key="err_saliency")
    assert switch.value == "image"
    switch.set_value("pred").run()
    pred_image = detail_image(at)
    assert "where the model saw" in pred_image.captions[0]
    assert pred_image.captions[0].startswith(plain.captions[0])
    at.button_group(key="err_saliency").set_value("true").run()
    assert not at.exception
    true_image = detail_image(at)
    assert true_image.proto.imgs[0].url != pred_image.proto.imgs[0].url
    # the choice stays while the reviewer moves on
    at.button(key="err_step_Next").click().run()
    assert at.button_group(key="err_saliency").value == "true" and "where the model saw" in detail_image(at).captions[0]


def test_opening_a_nearest_training_image_shows_it_beside_the_test_image(efx):
    at = open_app("errors", reviewer="ada", run_id=RUN)
    index = detail_index(at)
    at.button(key="err_nb_2").click().run()
    assert not at.exception
    _, _, neighbours = evidence_of(efx)
    second = neighbours[(neighbours["index"] == index) & (neighbours["rank"] == 2)].iloc[0]
    caps = captions_of(at)
    assert any(c.startswith(f"training #{int(second['train_index'])} · labelled ") for c in caps), caps
    assert any(c.startswith(f"test #{index} · labelled ") for c in caps), caps
    assert any("rank 2" in c for c in texts(at.caption))


def test_a_run_without_evidence_says_how_to_compute_it_and_every_page_works(efx):
    for page in ("errors", "review", "map", "slices"):
        at = open_app(page, reviewer="ada", run_id="single-a")
        assert not at.exception and not at.error, page
        assert any("python -m cifar_mtl evidence --run single-a" in c for c in texts(at.caption)), page
    at = open_app("errors", reviewer="ada", run_id="single-a")
    assert not [k for k in (b.key for b in at.button) if k and "_nb_" in k]


def test_a_damaged_evidence_file_is_named_and_the_rest_still_shows(efx):
    (run_dir(RUN, efx.home) / files.MAP_FILE).write_bytes(b"not parquet")
    at = open_app("errors", reviewer="ada", run_id=RUN)
    assert not at.exception
    assert any(files.MAP_FILE in w for w in texts(at.warning))
    assert any(re.fullmatch(r"[a-z]+ · \d\.\d\d", c) for c in captions_of(at))  # neighbours still shown
    at = open_app("map", reviewer="ada", run_id=RUN)
    assert not at.exception and any(files.MAP_FILE in w for w in texts(at.warning))


def test_neighbours_outside_the_loaded_training_set_are_named_not_drawn(efx):
    folder = run_dir(RUN, efx.home)
    neighbours = files.read_neighbours(folder)
    neighbours.loc[neighbours["rank"] == 1, "train_index"] = 49_999  # the real training set's last image
    files.write_table(folder, files.NEIGHBOURS_FILE, neighbours)
    at = open_app("errors", reviewer="ada", run_id=RUN)
    assert not at.exception and not at.error
    assert any("#49999 (not in the loaded training set)" in c for c in texts(at.caption))
    assert len([c for c in captions_of(at) if re.fullmatch(r"[a-z]+ · \d\.\d\d", c)]) == 7


def test_without_the_dataset_the_neighbours_are_a_table(efx, monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "nowhere"))
    at = open_app("errors", reviewer="ada", run_id=RUN)
    assert not at.exception and not at.error
    assert any("Training images are not available" in c for c in texts(at.caption))
    table = at.dataframe[-1].value
    assert list(table.columns) == ["rank", "train_index", "train_name", "similarity"] and len(table) == 8


def test_slices_of_other_predictions_are_refused_with_the_command_to_recompute(efx):
    folder = run_dir(RUN, efx.home)
    files.write_table(folder, files.SLICES_FILE, pd.DataFrame({"index": [5000, 5001], "slice": [0, 0]}))
    at = open_app("slices", reviewer="ada", run_id=RUN)
    assert not at.exception
    assert any("python -m cifar_mtl evidence --run" in e for e in texts(at.error))


# --- the evidence filters --------------------------------------------------------------------------


def test_evidence_filters_narrow_the_grid_and_are_named(efx):
    duplicates, slices, _ = evidence_of(efx)
    at = open_app("errors", reviewer="ada", run_id=RUN)
    at.toggle(key="err_f_near_duplicate").set_value(True).run()
    assert f"**{N_DUPLICATES}** of" in at.caption[1].value and "near-duplicates" in at.caption[1].value
    at.toggle(key="err_f_near_duplicate").set_value(False).run()
    at.selectbox(key="err_f_slice").set_value(1).run()
    members = set(slices.loc[slices["slice"] == 1, "index"])
    page_size = 24
    grid = {int(re.match(r"#(\d+)", c).group(1)) for c in captions_of(at)[:-1] if c.startswith("#")}
    assert grid <= members and len(grid) == min(len(members), page_size)
    assert "slice 1" in at.caption[1].value
    # the shared filter reaches Review's queue
    at.switch_page("views/review.py").run()
    assert "slice 1" in " ".join(texts(at.caption))


def test_export_keeps_only_the_images_an_evidence_filter_keeps(efx, store):
    duplicates, _, _ = evidence_of(efx)
    near = duplicates.loc[duplicates["near_duplicate"], ["index", "label_conflict"]]
    conflict = int(near.loc[near["label_conflict"], "index"].iloc[0])
    other = int(near.loc[~near["label_conflict"], "index"].iloc[0])
    store.tag_many(RUN, [conflict, other], "mislabel", "ada")
    at = open_app("export", reviewer="ada", run_id=RUN)
    assert sorted(at.dataframe[0].value["index"]) == sorted([conflict, other])
    at.toggle(key="ex_filtered").set_value(True).run()
    at.toggle(key="ex_f_label_conflict").set_value(True).run()
    assert not at.exception
    assert at.dataframe[0].value["index"].tolist() == [conflict]
    assert any("label conflicts" in c for c in texts(at.caption))


def test_a_slice_filter_from_another_run_is_dropped_not_an_empty_grid(efx):
    at = open_app("errors", reviewer="ada", run_id=RUN)
    at.selectbox(key="err_f_slice").set_value(2).run()
    at.sidebar.selectbox[0].set_value("single-a").run()
    assert not at.exception and not at.error
    assert "slice" not in at.caption[1].value and "of" in at.caption[1].value


# --- the map ---------------------------------------------------------------------------------------


def map_chart(at):
    """(the Map's chart proto, its spec, its data: one row per point) as the page drew them."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    chart = at.get("vega_lite_chart")[0].proto
    return chart, json.loads(chart.spec), convert_arrow_bytes_to_pandas_df(chart.data.data)


def select_on_map(at, selection: dict):
    """Rerun as after a box or a click on the Map: the browser sends the chart's selection state
    (a JSON string) as its widget value, and Streamlit calls its on_select."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    chart, _, _ = map_chart(at)
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.id, string_value=json.dumps({"selection": selection})))
    return at._run(states)


def test_a_box_selection_is_listed_tagged_at_once_and_undone_at_once(efx, store):
    at = open_app("map", reviewer="ada", run_id=RUN)
    assert not at.exception
    chart, spec, points = map_chart(at)
    assert len(points) == len(load_predictions(RUN, efx.home))
    # a box round the 30 points of smallest x, from the other corner (as a drag right to left)
    x = np.sort(points["x"].to_numpy(np.float64))
    box = {"x": [float(x[29]), float(x[0]) - 1], "y": [float(points["y"].max()) + 1, float(points["y"].min()) - 1]}
    chosen = set(points.loc[points["x"] <= x[29], "index"].astype(int))
    at = select_on_map(at, {"box": box})
    assert not at.exception
    assert texts(at.subheader) == [f"{len(chosen)} selected"] and len(chosen) >= 30
    assert len([c for c in captions_of(at) if c.startswith("#")]) == 16  # the first page of the gallery
    # the box is cleared (a new chart), the selection kept: drawn last and larger
    new_chart, _, drawn = map_chart(at)
    assert new_chart.id != chart.id
    assert set(drawn["index"].iloc[-len(chosen):]) == chosen and drawn["size"].iloc[-1] > drawn["size"].iloc[0]
    at.selectbox(key="map_bulk_category").set_value("context").run()
    at.button(key="map_bulk_tag").click().run()
    assert not at.exception
    assert tags_of(store) == {(i, "context") for i in chosen}
    assert any(f"Tagged {len(chosen)} images 'context'" in s for s in texts(at.success))
    at.button(key="map_bulk_undo").click().run()
    assert tags_of(store) == set()
    assert store.history(reviewer="ada")["batch"].nunique() == 2  # the tag and its undo: one batch each
    at.button(key="map_clear").click().run()
    assert not at.subheader and any("Nothing selected" in i for i in texts(at.info))


def test_one_point_clicked_on_the_map_shows_its_evidence(efx):
    duplicates, _, _ = evidence_of(efx)
    twin = int(duplicates.loc[duplicates["label_conflict"], "index"].iloc[0])
    at = open_app("map", reviewer="ada", run_id=RUN)
    at.button_group(key="map_mouse").set_value("click").run()
    at = select_on_map(at, {"click": [{"index": twin}]})
    assert not at.exception
    assert texts(at.subheader) == ["1 selected"]
    assert any("label conflict" in m for m in texts(at.markdown))
    assert at.button(key="map_nb_1") is not None


@pytest.mark.parametrize("colour", ["predicted class", "correct or error", "category"])
def test_every_colouring_draws(efx, store, colour):
    preds = load_predictions(RUN, efx.home)
    store.tag_many(RUN, preds["index"].iloc[:5], "pose", "ada")
    at = open_app("map", reviewer="ada", run_id=RUN)
    at.button_group(key="map_colour").set_value(colour).run()
    assert not at.exception
    names = set(map_chart(at)[1]["encoding"]["color"]["scale"]["domain"])
    if colour == "category":
        assert names == {"pose", "untagged"}
    elif colour == "correct or error":
        assert names == {"correct", "error"}
    at.button_group(key="map_mouse").set_value("click").run()  # a click selects its point
    assert {p["name"] for p in map_chart(at)[1]["params"]} == {"zoom", "click"}
    at.button_group(key="map_shown").set_value("errors").run()
    assert not at.exception
    assert texts(at.caption)[0].startswith(f"{len(error_indices(preds))} errors, placed")
    assert len(map_chart(at)[2]) == len(error_indices(preds))


def test_the_map_tooltip_shows_a_picture_once_written(efx):
    from cifar_mtl.app import loaders, map_thumbnails
    from tests.app_fixture import APP

    at = open_app("map", reviewer="ada", run_id=RUN)
    thumbs = loaders.test_images()[0]
    hover = map_thumbnails.hover_images(thumbs.images, APP.parent / "static", "/app/static", wait=None)
    assert hover.url is not None, hover.problem
    at.run()
    _, spec, _ = map_chart(at)
    assert "image" in [t["field"] for t in spec["encoding"]["tooltip"]]
    assert hover.url in next(t["calculate"] for t in spec["transform"] if t["as"] == "image")
    assert not any(c.startswith("Writing the hover pictures") for c in texts(at.caption))


# --- slices ----------------------------------------------------------------------------------------


def test_a_slice_is_tagged_without_the_members_left_out_and_undone_at_once(efx, store):
    _, slices, _ = evidence_of(efx)
    members = sorted(int(i) for i in slices.loc[slices["slice"] == 1, "index"])
    at = open_app("slices", reviewer="ada", run_id=RUN)
    assert not at.exception and not at.error
    at.button(key="slice_btn_1").click().run()
    assert texts(at.subheader) == ["Slice 1"]
    at.multiselect(key=f"slice_leave_{RUN}_1").set_value(members[:2]).run()
    at.selectbox(key="slice_bulk_category").set_value("colour").run()
    at.button(key="slice_bulk_tag").click().run()
    assert not at.exception
    assert tags_of(store) == {(i, "colour") for i in members[2:]}
    at.button(key="slice_bulk_undo").click().run()
    assert tags_of(store) == set()


def test_slice_cards_name_their_size_and_top_pairs(efx):
    _, slices, _ = evidence_of(efx)
    at = open_app("slices", reviewer="ada", run_id=RUN)
    cards = [m for m in texts(at.markdown) if m.startswith("**Slice") or m.startswith("**Unclustered")]
    sizes = slices["slice"].value_counts()
    for card in cards:
        slice_id = -1 if "Unclustered" in card else int(re.match(r"\*\*Slice (\d+)", card).group(1))
        assert f"· {sizes[slice_id]} errors ·" in card and "→" in card


# --- suggestions -----------------------------------------------------------------------------------


def enough_tags() -> int:
    """Tagged errors comfortably past the suggestions' threshold."""
    from cifar_mtl.evidence.suggestions import MIN_TAGGED

    return MIN_TAGGED + 10


def tag_for_suggestions(store, preds, n: int) -> list[int]:
    return tag_like_a_reviewer(store, RUN, preds, n, "ada")


def test_suggestions_wait_for_enough_tags_and_say_how_many(efx, store):
    from cifar_mtl.evidence.suggestions import MIN_TAGGED

    tag_for_suggestions(store, load_predictions(RUN, efx.home), 10)
    at = open_app("errors", reviewer="ada", run_id=RUN)
    assert any(f"{MIN_TAGGED - 10} more to go" in c for c in texts(at.caption))
    assert not [b for b in at.button if b.key == "err_accept"]


def test_suggested_categories_are_highlighted_and_accepted_all_at_once(efx, store):
    preds = load_predictions(RUN, efx.home)
    untagged = tag_for_suggestions(store, preds, enough_tags())
    before = tags_of(store)
    at = open_app("errors", reviewer="ada", run_id=RUN)
    at.selectbox(key="err_f_reviewed").set_value("untagged").run()
    at.toggle(key="err_f_mine").set_value(True).run()
    options = at.selectbox(key="err_f_suggested").options
    assert set(options) - {"any"} <= {"pose", "colour"} and len(options) > 1
    category = options[1]
    at.selectbox(key="err_f_suggested").set_value(category).run()
    index = detail_index(at)
    assert index in untagged
    bar = " ".join(texts(at.markdown))
    assert "Suggested" in bar and re.search(rf"{category} · precision (\d+%|not measured)", bar), bar
    accept = at.button(key="err_accept")
    assert accept.proto.shortcut.lower() == "a"
    accept.click().run()
    assert not at.exception
    added = tags_of(store) - before
    assert (index, category) in added and {i for i, _ in added} == {index}


def test_review_shows_the_evidence_and_accepts_suggestions_by_the_queue_filter(efx, store):
    preds = load_predictions(RUN, efx.home)
    tag_for_suggestions(store, preds, enough_tags())
    at = open_app("review", reviewer="ada", run_id=RUN)
    assert not at.exception and not at.error
    assert at.button_group(key="rev_saliency").value == "image"
    assert any(re.fullmatch(r"[a-z]+ · \d\.\d\d", c) for c in captions_of(at))  # nearest training images
    category = at.selectbox(key="rev_f_suggested").options[1]
    at.selectbox(key="rev_f_suggested").set_value(category).run()  # a queue of errors suggested `category`
    current = int(re.match(r"#(\d+)", [c for c in captions_of(at) if c.startswith("#")][0]).group(1))
    before = tags_of(store)
    at.button(key="rev_accept").click().run()
    assert not at.exception
    assert (current, category) in tags_of(store) - before


def test_suggestions_are_fitted_again_only_when_the_reviewers_tags_change(efx, store, monkeypatch):
    from cifar_mtl.app import loaders
    from cifar_mtl.evidence import suggestions as module

    calls = []
    real = module.fit_suggestions
    monkeypatch.setattr(module, "fit_suggestions", lambda *a, **k: calls.append(1) or real(*a, **k))
    loaders._fit.clear()
    preds = load_predictions(RUN, efx.home)
    untagged = tag_for_suggestions(store, preds, enough_tags())
    categories = store.category_names()

    def state():
        return loaders.suggestions(RUN, preds, store.current_tags(reviewer="ada"), categories, "ada")

    first = state()
    assert first.result is not None and first.n_tagged == enough_tags() and len(calls) == 1
    assert state().result is first.result and len(calls) == 1  # same tags: the cached fit
    store.tag(RUN, untagged[0], "clutter", "bob")  # another reviewer's tag changes nothing for ada
    assert state().result is first.result and len(calls) == 1
    store.tag(RUN, untagged[0], "clutter", "ada")
    second = state()
    assert len(calls) == 2 and second.n_tagged == enough_tags() + 1 and untagged[0] not in set(second.table()["index"])
    store.undo("ada")  # back to the first tag state: its fit is still cached
    assert state().result is first.result and len(calls) == 2
