"""Plotly figures of the app, and the Map's Vega-Lite spec, pure: tables in, figures out (no
Streamlit, no session).

Confusion matrices are clickable (`cell_from_selection` reads a click back), counts get
whole-number axes, and class names stay readable on small screens. The Map is Vega-Lite, not
plotly: its tooltips can show a picture (`map_spec`), and `indices_from_selection` reads its
box or clicked points back.
"""

from __future__ import annotations

import json
import math

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


# The Map's selection parameters, named as Streamlit reports them (`indices_from_selection`).
BOX, CLICK = "box", "click"
MAP_MODES = (BOX, CLICK)
MAP_HEIGHT = 620  # pixels, the plot alone
MAP_MARGIN = 0.03  # of the layout's extent, left free on each side
MAP_PADDING = {"left": 4, "right": 4, "top": 4, "bottom": 4}  # pixels round the plot
# Dot areas (px²) and opacities: background groups small and faint, a kept selection large.
_SIZE = {"background": 14, "group": 22, "selected": 64}
_OPACITY = {"background": 0.55, "group": 0.85, "selected": 1.0, "faded": 0.2}
_BRUSH = {"fill": "#1565c0", "fillOpacity": 0.06, "stroke": "#1565c0", "strokeWidth": 1, "strokeDash": [4, 3]}


def map_domain(values) -> list[float]:
    """[low, high] of an axis of the Map: the values' extent and `MAP_MARGIN` of it on each side."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return [0.0, 1.0]
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * MAP_MARGIN or 1.0
    return [low - pad, high + pad]


def map_spec(points: pd.DataFrame, groups: pd.Series, *, selected=(), mode: str = BOX,
             image_url: str | None = None, group_title: str = "group", height: int = MAP_HEIGHT) -> dict:
    """Vega-Lite spec of the Map (for `st.vega_lite_chart`): a dot per test image, coloured by group.

    Args:
        points: `triage.map_points`' table (index, x, y, label_name, pred_name, confidence).
        groups: the group of each row (`triage.colour_groups`), same index as `points`.
        selected: test indices drawn as selected (larger; the others fade): the page's kept
            selection, which outlives the chart's own box or click.
        mode: BOX (a drag draws a box, an interval selection reported as x and y ranges) or
            CLICK (a click picks a point, shift-click adds one: a point selection on `index`
            reported as [{"index": i}, ...]; a drag pans). The wheel zooms in both.
        image_url: URL prefix of the hover pictures (`map_thumbnails.HoverImages.url`): image
            i's is f"{image_url}/{i}.png"; None for tooltips without a picture.
        group_title: what the groups are (the colouring's name), the tooltip's name for a group.
        height: of the plot, in pixels (the legend comes below it).

    Returns a dict whose `data.values` is a DataFrame[index, x, y, group, classes, confidence,
    size, opacity] in drawing order (background groups first, the selection last). Each dot's
    tooltip is vega-tooltip's: a title "#index", the picture (a field named `image`), the
    classes, the confidence and the group.

    A box's brush takes the pointer inside it (Vega-Lite draws it above every mark of the view),
    hiding the tooltips there: the page clears it once it has kept the selection.
    """
    if mode not in MAP_MODES:
        raise ValueError(f"unknown selection mode {mode!r}; expected one of {MAP_MODES}")
    names = sorted(pd.unique(groups), key=lambda g: (g not in BACKGROUND_GROUPS, _group_order(g)))
    colours = group_colours(names)
    table = _map_table(points, groups, selected)
    tooltip = [{"field": "title", "type": "nominal"}]
    transform = [{"calculate": "'#' + datum.index", "as": "title"}]
    if image_url is not None:
        tooltip.append({"field": "image", "type": "nominal"})
        transform.append({"calculate": f"{json.dumps(image_url.rstrip('/') + '/')} + datum.index + '.png'",
                          "as": "image"})
    tooltip += [{"field": "classes", "type": "nominal", "title": "true → predicted"},
                {"field": "confidence", "type": "quantitative", "format": ".0%"},
                {"field": "group", "type": "nominal", "title": group_title}]
    zoom = {"name": "zoom", "select": {"type": "interval", "encodings": ["x", "y"], "zoom": "wheel!",
                                       **({} if mode == CLICK else {"translate": False})}, "bind": "scales"}
    if mode == BOX:
        select = {"name": BOX, "select": {"type": "interval", "encodings": ["x", "y"], "zoom": False, "mark": _BRUSH}}
    else:
        select = {"name": CLICK, "select": {"type": "point", "fields": ["index"], "on": "click",
                                            "clear": "dblclick", "toggle": "event.shiftKey"}}
    return {
        "data": {"values": table},
        "mark": {"type": "circle", "stroke": None},
        "transform": transform,
        "params": [zoom, select],
        "height": height,
        # The plot fills the width, and is `height` tall with the legend below it: so a data point's
        # pixel is known from the domains alone (`map_domain`; the browser tests rely on it).
        "autosize": {"type": "fit-x", "contains": "padding"},
        "padding": MAP_PADDING,
        "encoding": {
            "x": {"field": "x", "type": "quantitative", "axis": None,
                  "scale": {"domain": map_domain(points["x"]), "nice": False, "zero": False}},
            "y": {"field": "y", "type": "quantitative", "axis": None,
                  "scale": {"domain": map_domain(points["y"]), "nice": False, "zero": False}},
            "color": {"field": "group", "type": "nominal",
                      "scale": {"domain": names, "range": [colours[n] for n in names]},
                      "legend": {"title": None, "orient": "bottom", "direction": "horizontal",
                                 "symbolType": "circle", "symbolOpacity": 1, "columns": 6}},
            "size": {"field": "size", "type": "quantitative", "scale": None, "legend": None},
            "opacity": {"field": "opacity", "type": "quantitative", "scale": None, "legend": None},
            "tooltip": tooltip,
        },
        "config": {"view": {"stroke": None}},
        # 10,000 dots: a canvas keeps pointer moves fluid where SVG elements do not.
        "usermeta": {"embedOptions": {"renderer": "canvas"}},
    }


def _map_table(points: pd.DataFrame, groups: pd.Series, selected) -> pd.DataFrame:
    """The Map's data: one row per point, background groups first and the selection last."""
    index = points["index"].to_numpy(np.int64)
    chosen = np.isin(index, np.asarray(list(selected or ()), dtype=np.int64))
    background = groups.isin(BACKGROUND_GROUPS).to_numpy(bool)
    size = np.where(chosen, _SIZE["selected"], np.where(background, _SIZE["background"], _SIZE["group"]))
    opacity = np.where(background, _OPACITY["background"], _OPACITY["group"])
    if chosen.any():
        opacity = np.where(chosen, _OPACITY["selected"], _OPACITY["faded"])
    table = pd.DataFrame({
        "index": index,
        "x": points["x"].to_numpy(np.float32), "y": points["y"].to_numpy(np.float32),
        "group": groups.astype(str).to_numpy(object),
        "classes": (points["label_name"] + " → " + points["pred_name"]).to_numpy(object),
        "confidence": points["confidence"].to_numpy(np.float32),
        "size": size.astype(np.int16), "opacity": opacity.astype(np.float32),
    })
    order = np.lexsort((~background, chosen))  # by selection, then background before the rest
    return table.iloc[order].reset_index(drop=True)


def _group_order(name: str):
    return (0, CLASS_NAMES.index(name)) if name in CLASS_NAMES else (1, str(name))


def indices_from_selection(state, points: pd.DataFrame) -> list[int]:
    """Test indices selected on the Map, from its `st.vega_lite_chart` state (see `map_spec`).

    A box arrives as {"selection": {"box": {"x": [x0, x1], "y": [y0, y1]}}} in data units
    (either end first): the rows of `points` (DataFrame[index, x, y]) inside it, edges
    included, in `points`' order. Clicked points arrive as {"selection": {"click": [{"index":
    i}, ...]}}: those of them that are in `points`, in click order. Anything else (no
    selection, a cleared box, a malformed state) gives [].
    """
    try:
        selection = state["selection"]
    except (KeyError, TypeError, IndexError):
        return []
    if not hasattr(selection, "get"):
        return []
    out = _inside_box(selection.get(BOX), points) + _clicked(selection.get(CLICK), points)
    return list(dict.fromkeys(out))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _inside_box(box, points: pd.DataFrame) -> list[int]:
    if not hasattr(box, "get"):
        return []
    x, y = box.get("x"), box.get("y")
    if not all(isinstance(r, (list, tuple)) and len(r) == 2 and all(map(_number, r)) for r in (x, y)):
        return []
    px, py = points["x"].to_numpy(np.float64), points["y"].to_numpy(np.float64)
    inside = (px >= min(x)) & (px <= max(x)) & (py >= min(y)) & (py <= max(y))
    return points["index"].to_numpy(np.int64)[inside].tolist()


def _clicked(clicks, points: pd.DataFrame) -> list[int]:
    if not isinstance(clicks, (list, tuple)):
        return []
    values = [c.get("index") if hasattr(c, "get") else None for c in clicks]
    wanted = [int(v) for v in values if _number(v) and float(v).is_integer()]
    shown = set(points["index"].to_numpy(np.int64).tolist())
    return [i for i in wanted if i in shown]
