"""The app's figure builders and captions, without Streamlit's AppTest: tables in, figures out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cifar_mtl import analysis
from cifar_mtl.app import captions, figures
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.runs import load_predictions
from cifar_mtl.synthetic import make_fake_run


@pytest.fixture
def preds(home):
    make_fake_run("fig", home, n=300, variant="multitask", accuracy=0.7, seed=3)
    return load_predictions("fig")


def test_confusion_figure_blanks_the_diagonal_and_has_a_clickable_marker_per_cell(preds):
    cm = analysis.confusion_matrix(preds)
    heat, cells = figures.confusion_figure(cm).data
    z = np.array(heat.z, dtype=float)
    assert np.isnan(np.diag(z)).all()
    off = ~np.eye(10, dtype=bool)
    assert (z[off] == cm.to_numpy()[off]).all()
    assert len(cells.x) == len(cells.y) == 100
    # every marker reads back as the cell it sits on
    for k in (0, 37, 89):
        point = {"x": cells.x[k], "y": cells.y[k]}
        true, pred = figures.cell_from_selection({"selection": {"points": [point]}})
        assert cm.iloc[true, pred] == cells.text[k]


def test_a_diverging_confusion_figure_is_centred_on_zero():
    diff = pd.DataFrame(np.arange(100).reshape(10, 10) - 50, index=CLASS_NAMES, columns=CLASS_NAMES)
    heat = figures.confusion_figure(diff, diverging=True, hide_diagonal=False).data[0]
    assert heat.zmid == 0 and not np.isnan(np.array(heat.z, dtype=float)).any()


def test_probability_figure_marks_the_true_class_and_the_prediction(preds):
    row = analysis.error_table(preds).iloc[0].to_dict()
    bar = figures.probability_figure(row).data[0]
    assert list(bar.x) == list(CLASS_NAMES)
    assert np.allclose(bar.y, [row[f"prob_{k}"] for k in range(10)])
    assert bar.marker.color[int(row["label"])] == "#2e7d32" and bar.marker.color[int(row["pred"])] == "#c62828"


def test_per_class_figure_draws_the_wilson_interval(preds):
    table = analysis.per_class_accuracy(preds)
    bar = figures.per_class_figure(table).data[0]
    assert np.allclose(bar.y, table["accuracy"])
    assert np.allclose(bar.error_y.array, table["ci_high"] - table["accuracy"])
    assert np.allclose(bar.error_y.arrayminus, table["accuracy"] - table["ci_low"])


def test_comparison_and_history_figures_have_one_trace_per_series():
    bars = figures.comparison_bars(["cat", "dog"], {"A": [1, 2], "B": [3, 4]})
    assert [t.name for t in bars.data] == ["A", "B"] and bars.layout.yaxis.tickformat == ",d"
    histories = {"r1": pd.DataFrame({"loss": [2.0, 1.0]}), "r2": pd.DataFrame({"acc": [0.5]}),
                 "r3": pd.DataFrame()}
    lines = figures.history_figure(histories, "loss")
    assert [t.name for t in lines.data] == ["r1"] and list(lines.data[0].x) == [1, 2]


def test_category_figure_stacks_classes_and_skips_empty_ones():
    counts = pd.DataFrame({"clutter": [2, 0], "pose": [1, 0]}, index=["cat", "dog"])
    fig = figures.category_figure(counts)
    assert [t.name for t in fig.data] == ["cat"] and fig.layout.barmode == "stack"


def test_captions_of_an_error_row_and_the_animal_head(preds):
    row = analysis.error_table(preds).iloc[0].to_dict()
    text = captions.caption(row)
    assert text.startswith(f"#{int(row['index'])} · {row['label_name']} → {row['pred_name']} · ")
    assert captions.caption({**row, "categories": ("pose", "clutter")}).endswith(" · pose, clutter")
    assert captions.animal_text({**row, "animal_prob": float("nan")}) == "single-task run: no animal head"
    assert "(says animal;" in captions.animal_text({**row, "animal_prob": 0.9})


def test_describe_filters_escapes_the_reviewer():
    kwargs = {"true_class": 3, "pred_class": None, "tagged": False, "reviewer": "![x](http://h/p.png)"}
    text = captions.describe_filters(kwargs)
    assert text.startswith("true cat · untagged · by ") and "![x](" not in text
    assert captions.describe_filters({}) == "all errors"


def test_legends_sit_above_the_plot_and_long_class_names_get_room():
    # Below the plot, the legend covered the x-axis title; tilted names were cut off.
    lines = figures.history_figure({"r1": pd.DataFrame({"loss": [2.0, 1.0]})}, "loss")
    assert lines.layout.legend.y > 1 and lines.layout.legend.yanchor == "bottom"
    assert lines.layout.xaxis.title.text == "epoch (all stages)"
    bars = figures.comparison_bars(CLASS_NAMES, {"A": [0.5] * 10}, percent=True)
    assert bars.layout.xaxis.automargin and bars.layout.margin.b >= 80
    assert bars.layout.legend.y > 1
    counts = figures.category_figure(pd.DataFrame({"clutter": [2]}, index=["cat"]))
    assert counts.layout.yaxis.tickformat == ",d"  # whole error images, no 0.5 ticks


def test_the_curve_chart_starts_with_finished_runs_and_names_runs_without_the_metric():
    histories = {"done": pd.DataFrame({"val_acc": [0.5], "acc": [0.4]}),
                 "failed": pd.DataFrame({"val_acc": [0.2], "acc": [0.1]}),
                 "no-val": pd.DataFrame({"acc": [0.9]})}
    shown, missing = figures.curves_to_show(histories, {"done", "no-val"}, "val_acc")
    assert shown == ["done"] and missing == ["no-val"]
    shown, missing = figures.curves_to_show(histories, {"done", "no-val"}, "acc")
    assert shown == ["done", "no-val"] and missing == []


# --- the error map and evidence captions ---------------------------------------------------------------


def map_points(preds, tags=None):
    from cifar_mtl import triage

    rng = np.random.default_rng(0)
    layout = pd.DataFrame({"index": preds["index"], "x": rng.normal(size=len(preds)),
                           "y": rng.normal(size=len(preds))})
    return triage.map_points(layout, preds, tags)


@pytest.fixture
def preds_10k(home):
    make_fake_run("map", home, n=10_000, variant="multitask", accuracy=0.7, seed=4)
    return load_predictions("map")


def spec_table(spec) -> pd.DataFrame:
    return spec["data"]["values"]


def evaluate(expression: str, index: int) -> str:
    """A map tooltip's `calculate` expression for one point (Vega's string + reads as Python's)."""
    from types import SimpleNamespace

    return eval(expression, {"__builtins__": {}}, {"datum": SimpleNamespace(index=str(index))})


@pytest.mark.parametrize("by", ["true class", "predicted class", "correct or error", "category"])
def test_the_map_spec_has_every_point_once_with_a_colour_per_group(preds_10k, by):
    from cifar_mtl import triage

    tags = pd.DataFrame({"index": [int(preds_10k["index"].iloc[0])], "category": ["pose"], "reviewer": ["ada"]})
    points = map_points(preds_10k, tags)
    groups = triage.colour_groups(points, by)
    spec = figures.map_spec(points, groups)
    table = spec_table(spec)
    assert len(table) == 10_000 and sorted(table["index"]) == sorted(preds_10k["index"])
    json.dumps({k: v for k, v in spec.items() if k != "data"})  # the rest is plain JSON for Streamlit
    colour = spec["encoding"]["color"]
    assert colour["field"] == "group" and set(colour["scale"]["domain"]) == set(groups)
    assert colour["scale"]["range"] == [figures.group_colours(colour["scale"]["domain"])[g]
                                        for g in colour["scale"]["domain"]]
    assert len(set(colour["scale"]["range"])) == len(colour["scale"]["range"]), "each group has its own colour"
    by_index = table.set_index("index")
    expected = points.set_index("index")
    assert (by_index.loc[expected.index, "group"] == groups.set_axis(expected.index)).all()
    assert (by_index.loc[expected.index, "classes"] == expected["label_name"] + " → " + expected["pred_name"]).all()
    assert np.allclose(by_index.loc[expected.index, ["x", "y"]], expected[["x", "y"]])
    if by in ("correct or error", "category"):
        # the background group (correct, untagged) is drawn first, under the others, and fainter
        background = table["group"].isin(figures.BACKGROUND_GROUPS).to_numpy()
        assert background.any() and (~background).any()
        assert not background[np.argmax(~background):].any()
        assert table.loc[background, "opacity"].max() < table.loc[~background, "opacity"].min()


def test_each_point_has_a_tooltip_with_its_picture_classes_and_confidence(preds):
    from cifar_mtl import triage

    points = map_points(preds)
    spec = figures.map_spec(points, triage.colour_groups(points, "true class"),
                            image_url="/app/static/map-thumbnails/0123abcd", group_title="true class")
    tooltip = [t["field"] for t in spec["encoding"]["tooltip"]]
    assert tooltip == ["title", "image", "classes", "confidence", "group"]
    assert spec["encoding"]["tooltip"][-1]["title"] == "true class"
    # vega-tooltip draws the field named `image` as a picture and `title` as the heading
    made = {t["as"]: t["calculate"] for t in spec["transform"]}
    assert evaluate(made["image"], 17) == "/app/static/map-thumbnails/0123abcd/17.png"
    assert evaluate(made["title"], 17) == "#17"
    confidence = spec["encoding"]["tooltip"][-2]
    assert confidence["type"] == "quantitative" and confidence["format"] == ".0%"
    without = figures.map_spec(points, triage.colour_groups(points, "true class"))
    assert [t["field"] for t in without["encoding"]["tooltip"]] == ["title", "classes", "confidence", "group"]
    assert "image" not in {t["as"] for t in without["transform"]}


def test_the_map_selects_with_a_box_or_a_click_and_zooms_with_the_wheel(preds):
    from cifar_mtl import triage

    points = map_points(preds)
    groups = triage.colour_groups(points, "true class")
    box = {p["name"]: p for p in figures.map_spec(points, groups, mode=figures.BOX)["params"]}
    assert set(box) == {"zoom", figures.BOX}
    assert box[figures.BOX]["select"]["type"] == "interval"
    assert box[figures.BOX]["select"]["encodings"] == ["x", "y"]
    assert box["zoom"]["bind"] == "scales" and box["zoom"]["select"]["translate"] is False  # a drag draws a box
    click = {p["name"]: p for p in figures.map_spec(points, groups, mode=figures.CLICK)["params"]}
    assert set(click) == {"zoom", figures.CLICK}
    assert click[figures.CLICK]["select"]["type"] == "point" and click[figures.CLICK]["select"]["fields"] == ["index"]
    assert "translate" not in click["zoom"]["select"]  # a drag pans
    with pytest.raises(ValueError, match="lasso"):
        figures.map_spec(points, groups, mode="lasso")


def test_a_kept_selection_is_drawn_last_larger_and_the_rest_faded(preds):
    from cifar_mtl import triage

    points = map_points(preds)
    chosen = points["index"].iloc[[3, 50, 7]].tolist()
    table = spec_table(figures.map_spec(points, triage.colour_groups(points, "true class"), selected=chosen))
    assert sorted(table["index"].iloc[-3:]) == sorted(chosen)
    inside = table["index"].isin(chosen)
    assert table.loc[inside, "size"].min() > table.loc[~inside, "size"].max()
    assert table.loc[inside, "opacity"].min() > table.loc[~inside, "opacity"].max()
    plain = spec_table(figures.map_spec(points, triage.colour_groups(points, "true class")))
    assert plain["opacity"].min() > table.loc[~inside, "opacity"].max()


def test_the_map_axes_hold_every_point_with_a_margin():
    assert figures.map_domain([0.0, 10.0]) == pytest.approx([-0.3, 10.3])
    assert figures.map_domain([2.0, 2.0]) == [1.0, 3.0]  # one point (or all at one place)
    assert figures.map_domain([]) == [0.0, 1.0]


def test_a_class_keeps_its_colour_whatever_else_is_shown():
    assert figures.group_colours(["cat"])["cat"] == figures.group_colours(["truck", "cat"])["cat"]
    assert figures.group_colours(["error", "correct"]) == {"error": figures.GROUP_COLOURS["error"],
                                                          "correct": figures.GROUP_COLOURS["correct"]}


SHOWN = pd.DataFrame({"index": [5, 3, 9, 12], "x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 2.0, -1.0]})


@pytest.mark.parametrize("box, expected", [
    ({"x": [0.5, 2.0], "y": [0.0, 2.0]}, [3, 9]),  # edges included, in the points' order
    ({"x": [2.0, 0.5], "y": [2.0, 0.0]}, [3, 9]),  # dragged from the other corner
    ({"x": [-1, 4], "y": [-2, 3]}, [5, 3, 9, 12]),
    ({"x": [10, 11], "y": [0, 1]}, []),
    ({"x": [0, 1]}, []),  # no y range
    ({"x": [0, "1"], "y": [0, 1]}, []),
    ({"x": [0, float("nan")], "y": [0, 1]}, []),
    ({"x": [True, 2], "y": [0, 1]}, []),
    ({}, []),  # a box cleared
])
def test_a_box_selects_the_points_inside_it(box, expected):
    assert figures.indices_from_selection({"selection": {figures.BOX: box}}, SHOWN) == expected


def test_clicked_points_are_listed_once_in_click_order_and_only_when_shown():
    clicks = [{"index": 9}, {"index": 5.0}, {"index": 9}, {"index": 77}, {"index": "3"}, {"index": 3.5}, {}, None]
    assert figures.indices_from_selection({"selection": {figures.CLICK: clicks}}, SHOWN) == [9, 5]


def test_no_selection_gives_nothing():
    for state in (None, {}, "garbage", {"selection": None}, {"selection": {}},
                  {"selection": {figures.BOX: {}, figures.CLICK: []}}, {"selection": {figures.CLICK: {"index": 3}}}):
        assert figures.indices_from_selection(state, SHOWN) == []


def test_duplicate_badges_say_what_the_training_twin_is():
    row = {"near_duplicate": True, "label_conflict": True, "train_index": 41, "train_label": 3, "similarity": 0.987}
    (dup, colour, _), (conflict, conflict_colour, _) = captions.duplicate_badges(row)
    assert "#41" in dup and "0.99" in dup and colour == "orange"
    assert "labelled cat" in conflict and conflict_colour == "red"
    assert len(captions.duplicate_badges({**row, "label_conflict": False})) == 1
    assert captions.duplicate_badges({**row, "near_duplicate": False, "label_conflict": False}) == []
    assert captions.duplicate_badges(None) == []


def test_undo_text_counts_a_bulk_action():
    assert captions.undo_text(None) == "Nothing to undo."
    single = {"kind": "tag", "action": "add", "category": "pose", "index": 7, "count": 1}
    assert captions.undo_text(single) == "Undid the add of tag 'pose' on #7."
    assert captions.undo_text({**single, "count": 120}) == "Undid the add of tag 'pose' on 120 images."
    note = {"kind": "note", "action": "set", "category": None, "index": 7}
    assert captions.undo_text(note) == "Undid the note set on #7."


def test_the_no_evidence_line_names_the_command():
    text = captions.no_evidence_text("fast-multitask")
    assert "`python -m cifar_mtl evidence --run fast-multitask`" in text


def test_suggestion_captions():
    from cifar_mtl.app.loaders import SuggestionState

    assert captions.precision_text(0.637) == "precision 64%"
    assert captions.precision_text(float("nan")) == "precision not measured"
    waiting = captions.waiting_text(SuggestionState(None, n_tagged=12, needed=18))
    assert "tagged 30 errors" in waiting and "18 more to go" in waiting
    assert captions.waiting_text(SuggestionState(None, 40, 0, problem="no embeddings.npz")).startswith(
        "No suggestions: no embeddings")
    assert captions.waiting_text(SuggestionState(object(), 40)) is None


def test_describe_filters_names_the_evidence_filters():
    text = captions.describe_filters({"near_duplicate": True, "label_conflict": True, "slice_id": 0,
                                      "suggested": "pose"})
    assert text == "near-duplicates · label conflicts · slice 0 · suggested pose"
    assert captions.describe_filters({"suggested": "distinctive_features"}) == r"suggested distinctive\_features"
