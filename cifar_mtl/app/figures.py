"""Plotly figures of the app, pure: tables in, figures out (no Streamlit, no session).

Confusion matrices are clickable (`cell_from_selection` reads a click back), counts get
whole-number axes, and class names stay readable on small screens.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cifar_mtl.labels import CLASS_NAMES, NUM_CLASSES


def confusion_figure(cm: pd.DataFrame, *, hide_diagonal: bool = True, title: str | None = None,
                     diverging: bool = False, height: int = 460) -> go.Figure:
    """Heatmap of a 10x10 confusion table (rows true, columns predicted), clickable per cell.

    Plotly heatmaps do not report clicks as selections, so each cell also carries an
    invisible marker (which also gives the hover text); `cell_from_selection` reads
    the clicked one back.
    """
    z = cm.to_numpy(dtype=float).copy()
    if hide_diagonal:
        np.fill_diagonal(z, np.nan)  # correct predictions would swamp the colour scale
    names = list(cm.columns)
    true_names = list(cm.index)
    heat = go.Heatmap(
        z=z, x=names, y=true_names, colorscale="RdBu_r" if diverging else "Blues",
        zmid=0 if diverging else None, hoverinfo="skip", texttemplate="%{z:.0f}", colorbar={"thickness": 12},
    )
    xs, ys = np.meshgrid(np.arange(len(names)), np.arange(len(true_names)))
    cells = go.Scatter(
        x=[names[i] for i in xs.ravel()], y=[true_names[j] for j in ys.ravel()],
        text=cm.to_numpy().ravel(),
        mode="markers", marker={"size": 28, "opacity": 0.0, "symbol": "square"},
        hovertemplate="true %{y} → predicted %{x}: %{text}<extra></extra>", showlegend=False,
    )
    fig = go.Figure([heat, cells])
    fig.update_layout(
        title=title, height=height, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        xaxis={"title": "predicted", "side": "bottom"},
        yaxis={"title": "true", "autorange": "reversed"},
        clickmode="event+select", dragmode=False,
    )
    return fig


def cell_from_selection(state) -> tuple[int, int] | None:
    """(true class, predicted class) of the clicked confusion cell, from a plotly_chart state.

    A click selects the cell's marker; its x is the predicted and its y the true class
    name. Anything else (no click, a click elsewhere) gives None.
    """
    try:
        points = state["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points or []:
        x, y = point.get("x"), point.get("y")
        if x in CLASS_NAMES and y in CLASS_NAMES:
            return CLASS_NAMES.index(y), CLASS_NAMES.index(x)
    return None


def probability_figure(row: dict) -> go.Figure:
    """Bar chart of one image's ten class probabilities; the true class and the prediction marked."""
    probs = [float(row[f"prob_{k}"]) for k in range(NUM_CLASSES)]
    label, pred = int(row["label"]), int(row["pred"])
    colours = ["#2e7d32" if k == label else "#c62828" if k == pred else "#90a4ae" for k in range(NUM_CLASSES)]
    fig = go.Figure(go.Bar(x=list(CLASS_NAMES), y=probs, marker_color=colours,
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=240, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      yaxis={"range": [0, 1], "title": "probability"})
    return fig


# Counts are whole numbers: no 0.5 ticks on a count axis.
COUNT_AXIS = {"tickformat": ",d", "rangemode": "tozero"}


def comparison_bars(x, values: dict[str, list], *, percent: bool = False, title: str | None = None) -> go.Figure:
    """Grouped bars, one series per entry of `values` (name -> y values over `x`).

    Class names are long enough to be cut off when plotly tilts them into a small
    bottom margin, so the axis keeps them upright and the margin grows to fit.
    """
    fig = go.Figure([go.Bar(x=list(x), y=list(y), name=name) for name, y in values.items()])
    yaxis = {"tickformat": ".0%"} if percent else {"title": title or "error images", **COUNT_AXIS}
    fig.update_layout(barmode="group", height=360, margin={"l": 10, "r": 10, "t": 40, "b": 90},
                      xaxis={"automargin": True, "tickangle": -35}, yaxis=yaxis,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def per_class_figure(table: pd.DataFrame, value: str = "accuracy", name: str | None = None) -> go.Figure:
    """Bars per class with the Wilson interval when `ci_low`/`ci_high` are present."""
    error_y = None
    if {"ci_low", "ci_high"} <= set(table.columns):
        error_y = {"type": "data", "symmetric": False,
                   "array": table["ci_high"] - table[value], "arrayminus": table[value] - table["ci_low"]}
    fig = go.Figure(go.Bar(x=table["name"], y=table[value], error_y=error_y, name=name))
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis={"tickformat": ".0%"},
                      xaxis={"automargin": True})
    return fig


def curves_to_show(histories: dict[str, pd.DataFrame], finished: set[str], metric: str,
                   limit: int = 5) -> tuple[list[str], list[str]]:
    """(runs the training-curve chart starts with, runs that recorded no `metric`).

    The chart starts with finished runs that have the metric (failed and cancelled runs
    stay pickable); runs without it are named, so that a run with no validation split
    does not vanish from a `val_*` chart without a word.
    """
    having = [r for r, h in histories.items() if metric in h.columns]
    missing = [r for r, h in histories.items() if metric not in h.columns]
    return [r for r in having if r in finished][:limit], missing


def history_figure(histories: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """One line per run of `metric` against epoch (stages laid end to end)."""
    fig = go.Figure()
    for run_id, df in histories.items():
        if metric not in df.columns or df.empty:
            continue
        fig.add_trace(go.Scatter(x=np.arange(1, len(df) + 1), y=df[metric], mode="lines+markers", name=run_id))
    # The legend sits above the plot: below it, it covered the x-axis title.
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"title": "epoch (all stages)", "dtick": 1 if _max_len(histories) <= 30 else None},
                      yaxis={"title": metric},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def _max_len(histories: dict[str, pd.DataFrame]) -> int:
    return max((len(df) for df in histories.values()), default=0)


def category_figure(counts: pd.DataFrame) -> go.Figure:
    """Stacked bars: error images per category, split by class (rows of `counts`)."""
    fig = go.Figure()
    for name, row in counts.iterrows():
        if row.sum():
            fig.add_trace(go.Bar(x=list(counts.columns), y=row.to_numpy(), name=str(name)))
    fig.update_layout(barmode="stack", height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis={"title": "error images", **COUNT_AXIS},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def per_class_comparison(per_class: pd.DataFrame, name_a: str, name_b: str) -> go.Figure:
    """Accuracy per class of two runs side by side, from `compare_runs(...).per_class`."""
    return comparison_bars(per_class["name"], {name_a: per_class["accuracy_a"], name_b: per_class["accuracy_b"]},
                           percent=True)


# --- the error map ------------------------------------------------------------------------------

# Fixed colours, so a class or a group keeps its colour from one colouring to the next.
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
GROUP_COLOURS = {"correct": "#b0bec5", "error": "#d32f2f", "untagged": "#b0bec5", "several": "#37474f"}
CATEGORY_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
                    "#9a6324", "#469990", "#000075")
# Drawn first, so the groups that matter lie on top of them.
BACKGROUND_GROUPS = ("correct", "untagged")


def group_colours(groups: list[str]) -> dict[str, str]:
    """A colour for each group name: class names, correct/error/untagged/several, then categories."""
    colours, k = {}, 0
    for name in groups:
        if name in CLASS_NAMES:
            colours[name] = CLASS_COLOURS[CLASS_NAMES.index(name)]
        elif name in GROUP_COLOURS:
            colours[name] = GROUP_COLOURS[name]
        else:
            colours[name] = CATEGORY_COLOURS[k % len(CATEGORY_COLOURS)]
            k += 1
    return colours


def map_figure(points: pd.DataFrame, groups: pd.Series, *, selected=None, dragmode: str = "lasso",
               height: int = 620) -> go.Figure:
    """Scatter of the test images on the map, one WebGL trace per group, lasso and box ready.

    Args:
        points: `triage.map_points`' table (index, x, y, label_name, pred_name, confidence).
        groups: the group of each row (`triage.colour_groups`), same index as `points`.
        selected: test indices drawn as selected (the others dimmed), e.g. a selection
            kept while the figure is redrawn; None or empty for no selection.
        dragmode: what a drag does: "lasso", "select" (a box) or "pan" (in Streamlit a
            click selects its point only when a drag does not select).

    Each point's `customdata` is (test index, confidence) (`indices_from_selection` reads
    the index back); the hover names the image, its classes and confidence. Scattergl draws
    10,000 points on the GPU, where SVG markers make the browser crawl.
    """
    names = sorted(pd.unique(groups), key=lambda g: (g not in BACKGROUND_GROUPS, _group_order(g)))
    colours = group_colours(names)
    chosen = np.isin(points["index"].to_numpy(np.int64), np.asarray(list(selected or ()), dtype=np.int64))
    traces = []
    for name in names:
        mask = (groups == name).to_numpy()
        rows = points.loc[mask]
        background = name in BACKGROUND_GROUPS
        traces.append(go.Scattergl(
            selectedpoints=np.flatnonzero(chosen[mask]).tolist() if chosen.any() else None,
            x=rows["x"].to_numpy(np.float32), y=rows["y"].to_numpy(np.float32), mode="markers", name=str(name),
            customdata=np.column_stack([rows["index"].to_numpy(np.float32), rows["confidence"].to_numpy(np.float32)]),
            text=(rows["label_name"] + " → " + rows["pred_name"]).to_numpy(object),
            marker={"size": 4 if background else 5, "color": colours[name], "opacity": 0.55 if background else 0.85},
            selected={"marker": {"opacity": 1.0, "size": 8}}, unselected={"marker": {"opacity": 0.2}},
            hovertemplate="#%{customdata[0]} · %{text} · %{customdata[1]:.0%}<extra>%{fullData.name}</extra>",
        ))
    fig = go.Figure(traces)
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, uirevision="map",
        dragmode=dragmode,
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
        # Below the plot: above it, the legend ran under the chart's toolbar.
        legend={"orientation": "h", "yanchor": "top", "y": -0.01, "x": 0, "itemsizing": "constant"},
        hovermode="closest", showlegend=True,
    )
    return fig


def _group_order(name: str):
    return (0, CLASS_NAMES.index(name)) if name in CLASS_NAMES else (1, str(name))


def indices_from_selection(state) -> list[int]:
    """Test indices of the points selected in a `map_figure` (a plotly_chart state), in order.

    Each point carries its test index as `customdata`: a number, the first item of a list,
    or item "0" of a dict (how the browser sends back a row of a 2-D typed array).
    Anything else (no selection, a malformed state) gives [].
    """
    try:
        points = state["selection"]["points"]
    except (KeyError, TypeError):
        return []
    out = []
    for point in points or []:
        value = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(value, dict):  # a row of a typed array arrives as {"0": index, "1": confidence}
            value = value.get("0")
        elif isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
            out.append(int(value))
    return list(dict.fromkeys(out))
