"""The app's figure builders and captions, without Streamlit's AppTest: tables in, figures out."""

from __future__ import annotations

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
