"""Dashboard figures, built on the server as Plotly figure dicts that the page draws as they are.

Every figure is ``{"data": [...], "layout": {...}}``, ready for ``Plotly.newPlot``, and may add
``"narrow": {"max_width": px, "layout": {...}}``: the layout to use in a panel narrower than
``max_width`` pixels (heatmap pairs stack, legends move under the plot). The figures are written
as plain dicts (Plotly's JSON schema), not through ``plotly.graph_objects``, whose validation
cost more than the plan itself on a 58 x 256 matrix.

A before/after pair of heatmaps comes in two views, ``{"views": {"tokens": figure, "ratio":
figure}, "view": name}``: tokens on one colour scale shared by both heatmaps (a flat plan looks
flat next to a hot layout), and each load over its layer's mean (1.0 is perfect), each heatmap
on its own scale so that the imbalance a plan leaves is visible. ``view`` names the one that
shows that imbalance.

Colour scales are colourblind-safe: Viridis for tokens, ColorBrewer's RdBu (white at 1.0) for
ratios, the Okabe-Ito palette for lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.colors

from eplb_core import Rebalance
from eplb_core.replay import Replay

Figure = dict[str, Any]
Matrix = Sequence[Sequence[float]] | np.ndarray

# Below this panel width (CSS pixels) a figure uses its "narrow" layout.
NARROW_WIDTH = 600

VIRIDIS = plotly.colors.sequential.Viridis
# ColorBrewer RdBu (colourblind-safe), from the coldest blue through white to the hottest red.
COLD = ["rgb(5,48,97)", "rgb(33,102,172)", "rgb(67,147,195)", "rgb(146,197,222)",
        "rgb(209,229,240)"]
NEUTRAL = "rgb(247,247,247)"
HOT = ["rgb(253,219,199)", "rgb(244,165,130)", "rgb(214,96,77)", "rgb(178,24,43)",
       "rgb(103,0,31)"]
# Okabe-Ito: distinguishable with every common colour-vision deficiency.
BEFORE_COLOUR = "#E69F00"
AFTER_COLOUR = "#0072B2"
BOUND_COLOUR = "#000000"
# One colour and marker per replay strategy: keeping the placement (the "before" orange),
# greedy, hybrid; greedy's lines are drawn wider, under hybrid's, so that both show where they
# coincide. Widths: the next-window line, then the in-sample one.
STRATEGY_STYLES = {
    "none": {"color": BEFORE_COLOUR, "widths": (2, 1.5), "symbol": "circle", "size": 6},
    "greedy": {"color": "#CC79A7", "widths": (5, 4), "symbol": "square", "size": 10},
    "hybrid": {"color": AFTER_COLOUR, "widths": (2, 1.5), "symbol": "diamond", "size": 7},
}
TRIVIAL_TITLE = "Before: slot p holds expert p mod E"
CURRENT_TITLE = "Before: the placement in use"
AFTER_TITLE = "After: the plan"
RATIO_TITLE = "× layer mean"
FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12,
        "color": "#1f2937"}
GRID = "#e5e7eb"
MARGIN = {"l": 60, "r": 20, "t": 36, "b": 48}
NARROW_MARGIN = {"l": 44, "r": 8, "t": 36, "b": 44}
# Room above a pair's subplot titles for Plotly's tool bar, shown on hover.
PAIR_TOP = 56
# A ratio scale spans at least 1 +- this, so that a near-perfect plan looks near white.
MIN_RATIO_SPREAD = 0.05
# The tokens view shows the imbalance left after a plan when some layer's spread over its GPUs
# covers at least this share of the colour scale; else the page opens on the ratio view.
VISIBLE_SPREAD = 0.2
# A pair side by side: each heatmap's horizontal domain, with room for the ratio view's middle
# colour bar; stacked (narrow): each heatmap's vertical domain.
COLUMNS = ((0.0, 0.47), (0.53, 1.0))
RATIO_COLUMNS = ((0.0, 0.42), (0.56, 1.0))
ROWS = ((0.58, 1.0), (0.0, 0.42))


def load_heatmap(weight: Matrix) -> Figure:
    """The raw loads, layers x experts: which experts run hot in which layer."""
    loads = np.asarray(weight, dtype=np.float64)
    heatmap = {"type": "heatmap", "z": loads.tolist(), "coloraxis": "coloraxis",
               "hovertemplate": "Layer %{y}<br>Expert %{x}<br>Load %{z:,.0f} tokens"
                                "<extra></extra>"}
    layout = _layout(height=360)
    layout["xaxis"] = _axis("logical expert")
    layout["yaxis"] = _axis("layer", grid=True, autorange="reversed", **_index_ticks(len(loads)))
    layout["coloraxis"] = _token_axis(float(loads.min()), float(loads.max()))
    return _figure([heatmap], layout, narrow={"margin": NARROW_MARGIN})


def gpu_load_pair(before: Matrix, after: Matrix, before_phy2log: Matrix, after_phy2log: Matrix,
                  num_gpus: int, before_title: str = TRIVIAL_TITLE) -> Figure:
    """Per-GPU loads before and after, in both views.

    Hovering a cell names the layer, the GPU, its load and the experts its slots hold: GPU g
    holds slots ``g*R/G .. (g+1)*R/G - 1`` of each layer's ``phy2log`` row.
    """
    held = (_experts_per_gpu(before_phy2log, num_gpus), _experts_per_gpu(after_phy2log, num_gpus))
    return _pair(before, after, unit="GPU", before_title=before_title, held=held)


def node_load_pair(before: Matrix, after: Matrix, before_title: str = TRIVIAL_TITLE) -> Figure:
    """Per-node loads before and after, in both views."""
    return _pair(before, after, unit="node", before_title=before_title)


def balancedness_chart(before: Sequence[float], after: Sequence[float],
                       bound: Sequence[float]) -> Figure:
    """Balancedness (mean / max GPU load) per layer, before and after, under its upper bound.

    The bound is drawn last, on top, thin and dotted in black over a wide "after" line: where
    a plan reaches the bound, both show.
    """
    layers = list(range(len(before)))
    lines = [
        _line(layers, before, "before", {"color": BEFORE_COLOUR, "width": 2}),
        _line(layers, after, "after", {"color": AFTER_COLOUR, "width": 4}),
        _line(layers, bound, "upper bound", {"color": BOUND_COLOUR, "width": 1.5, "dash": "dot"}),
    ]
    layout = _layout(height=320)
    layout["xaxis"] = _axis("layer", **_index_ticks(len(layers)))
    layout["yaxis"] = _axis("balancedness (mean / max GPU load)", grid=True, range=[0, 1.05])
    layout.update(hovermode="x unified", legend=_top_legend())
    return _figure(lines, layout, narrow={"margin": NARROW_MARGIN,
                                          "yaxis": {**layout["yaxis"],
                                                    "title": {"text": "balancedness"}}})


def rebalance_figures(result: Rebalance) -> dict[str, Figure | None]:
    """Every chart of a rebalance result, keyed by the page element that draws it; "node" is
    None when the GPUs do not split evenly over the nodes (no per-node figures exist)."""
    title = CURRENT_TITLE if result.baseline == "current" else TRIVIAL_TITLE
    before, after = result.before, result.after
    node = None
    if before.node_load is not None and after.node_load is not None:
        node = node_load_pair(before.node_load.cpu().numpy(), after.node_load.cpu().numpy(),
                              before_title=title)
    return {
        "gpu": gpu_load_pair(before.gpu_load.cpu().numpy(), after.gpu_load.cpu().numpy(),
                             result.placement_before.cpu().numpy(),
                             result.plan.phy2log.cpu().numpy(), result.cluster.num_gpus,
                             before_title=title),
        "node": node,
        "balancedness": balancedness_chart(before.balancedness.tolist(),
                                           after.balancedness.tolist(), result.bound.tolist()),
    }


def replay_chart(result: Replay) -> Figure:
    """Balancedness per scored window for each strategy: on the next window (solid, with
    markers: the honest score) and on the window the plan came from (in-sample, dashed).

    The x axis is the window scored, 1 .. num_windows - 1: its plan was made on the window
    before it. Strategies that score alike stay apart by marker and width (see
    ``STRATEGY_STYLES``).
    """
    windows = list(range(1, result.num_windows))
    lines = []
    for name, figures in result.strategies.items():
        style = STRATEGY_STYLES[name]
        next_width, in_sample_width = style["widths"]
        lines.append({
            "type": "scatter", "x": windows, "y": figures.next_window,
            "name": f"{name}, next window", "mode": "lines+markers", "legendgroup": name,
            "line": {"color": style["color"], "width": next_width},
            "marker": {"symbol": style["symbol"], "size": style["size"]},
            "customdata": figures.moves, "hovertemplate": "%{y:.3f} (%{customdata:,} moves)"})
        lines.append({
            "type": "scatter", "x": windows, "y": figures.in_sample,
            "name": f"{name}, in-sample", "mode": "lines", "legendgroup": name,
            "line": {"color": style["color"], "width": in_sample_width, "dash": "dash"},
            "hovertemplate": "%{y:.3f}"})
    layout = _layout(height=360)
    layout["xaxis"] = _axis("window scored (planned on the window before)",
                            dtick=max(1, math.ceil(len(windows) / 12)))
    layout["yaxis"] = _axis("balancedness (mean / max GPU load)", grid=True, range=[0, 1.05])
    layout.update(hovermode="x unified", legend={**_top_legend(), "groupclick": "toggleitem"})
    narrow_legend = {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.22,
                     "yanchor": "top", "groupclick": "toggleitem"}
    return _figure(lines, layout, narrow={
        "height": 460, "margin": NARROW_MARGIN, "legend": narrow_legend,
        "xaxis": {**layout["xaxis"], "title": {"text": "window scored"}},
        "yaxis": {**layout["yaxis"], "title": {"text": "balancedness"}}})


def _pair(before: Matrix, after: Matrix, unit: str, before_title: str,
          held: tuple[np.ndarray, np.ndarray] | None = None) -> Figure:
    """Two heatmaps, layers x ``unit``, in the tokens and the ratio view, with the name of the
    view that shows the imbalance left in ``after``."""
    loads = (np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64))
    titles = (before_title, AFTER_TITLE)
    low = min(float(z.min()) for z in loads)
    high = max(float(z.max()) for z in loads)
    token_traces = [
        _pair_heatmap(z, side, unit, "coloraxis", "Load %{z:,.0f} tokens",
                      None if held is None else held[side].tolist(),
                      "<br>Experts %{customdata}" if held is not None else "")
        for side, z in enumerate(loads)]
    tokens = _pair_figure(token_traces, unit, titles, loads, {"coloraxis": _token_axis(low, high)})

    ratios = [_over_layer_mean(z) for z in loads]
    ratio_traces = [
        _pair_heatmap(ratio, side, unit, f"coloraxis{side + 2}",
                      "Load %{z:.3f} × layer mean, %{customdata[0]:,.0f} tokens",
                      _cells(loads[side], None if held is None else held[side]),
                      "<br>Experts %{customdata[1]}" if held is not None else "")
        for side, ratio in enumerate(ratios)]
    ratio_axes = {f"coloraxis{side + 2}": _ratio_axis(ratio) for side, ratio in enumerate(ratios)}
    ratio = _pair_figure(ratio_traces, unit, titles, loads, ratio_axes)

    after_spread = float((loads[1].max(axis=1) - loads[1].min(axis=1)).max())
    shows_imbalance = after_spread >= VISIBLE_SPREAD * max(high - low, 1.0)
    return {"views": {"tokens": tokens, "ratio": ratio},
            "view": "tokens" if shows_imbalance else "ratio"}


def _pair_heatmap(z: np.ndarray, side: int, unit: str, coloraxis: str, value: str,
                  customdata: list | None, hover_extra: str) -> dict[str, Any]:
    label = ("before", "after")[side]
    suffix = "" if side == 0 else "2"
    trace = {"type": "heatmap", "z": _json_matrix(z), "coloraxis": coloraxis, "name": label,
             "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
             "hovertemplate": f"Layer %{{y}}<br>{unit[0].upper() + unit[1:]} %{{x}}<br>{value}"
                              f"{hover_extra}<extra>{label}</extra>"}
    if customdata is not None:
        trace["customdata"] = customdata
    return trace


def _pair_figure(traces: list[dict[str, Any]], unit: str, titles: tuple[str, str],
                 loads: tuple[np.ndarray, np.ndarray], colour_axes: dict[str, Any]) -> Figure:
    """A pair side by side (wide) or stacked (narrow), sharing the layer axis."""
    num_layers, num_units = loads[0].shape
    ratio_view = "coloraxis" not in colour_axes

    def axes(stacked: bool) -> dict[str, Any]:
        columns = RATIO_COLUMNS if ratio_view else COLUMNS
        x_domains = ((0.0, 1.0), (0.0, 1.0)) if stacked else columns
        y_domains = ROWS if stacked else ((0.0, 1.0), (0.0, 1.0))
        layer_ticks = _index_ticks(num_layers)
        unit_ticks = _index_ticks(num_units)
        layout: dict[str, Any] = {
            "xaxis": _axis(unit, domain=list(x_domains[0]), anchor="y", **unit_ticks),
            "xaxis2": _axis(unit, domain=list(x_domains[1]), anchor="y2", **unit_ticks),
            "yaxis": _axis("layer", grid=True, domain=list(y_domains[0]), anchor="x",
                           autorange="reversed", **layer_ticks),
            "yaxis2": _axis("layer" if stacked else "", grid=True, domain=list(y_domains[1]),
                            anchor="x2", autorange="reversed", matches="y",
                            showticklabels=stacked, **layer_ticks),
            "annotations": [_subplot_title(text, x_domains[side], y_domains[side][1])
                            for side, text in enumerate(titles)],
        }
        for name, axis in colour_axes.items():
            side = int(name[-1]) - 2 if ratio_view else None
            layout[name] = {**axis, "colorbar": {**axis["colorbar"],
                                                 **_colourbar_place(side, stacked, x_domains,
                                                                    y_domains)}}
        return layout

    layout = {**_layout(height=400), **axes(stacked=False)}
    layout["margin"] = {**MARGIN, "t": PAIR_TOP}
    narrow = {"height": 700, "margin": {**NARROW_MARGIN, "t": PAIR_TOP}, **axes(stacked=True)}
    return _figure(traces, layout, narrow=narrow)


def _colourbar_place(side: int | None, stacked: bool, x_domains: tuple, y_domains: tuple
                     ) -> dict[str, Any]:
    """Where a colour bar goes: the shared one right of both heatmaps; a ratio heatmap's right
    of it (side by side) or beside its row (stacked)."""
    if side is None:
        return {"x": 1.02, "xanchor": "left", "y": 0.5, "yanchor": "middle", "len": 1}
    if stacked:
        low, high = y_domains[side]
        return {"x": 1.02, "xanchor": "left", "y": (low + high) / 2, "yanchor": "middle",
                "len": high - low}
    return {"x": x_domains[side][1] + 0.015, "xanchor": "left", "y": 0.5, "yanchor": "middle",
            "len": 1}


def _subplot_title(text: str, x_domain: tuple[float, float], top: float) -> dict[str, Any]:
    return {"text": text, "xref": "paper", "yref": "paper", "x": (x_domain[0] + x_domain[1]) / 2,
            "y": top, "xanchor": "center", "yanchor": "bottom", "showarrow": False,
            "font": {"size": 13, "color": FONT["color"]}}


def _over_layer_mean(loads: np.ndarray) -> np.ndarray:
    """Each load over its layer's mean, to 4 decimals; NaN in a layer without load."""
    means = loads.mean(axis=1, keepdims=True)
    ratio = loads / np.where(means > 0, means, 1)
    return np.where(means > 0, ratio.round(4), np.nan)


def _cells(tokens: np.ndarray, held: np.ndarray | None) -> list:
    """Per-cell hover data of a ratio heatmap: [tokens] or [tokens, experts held]."""
    if held is None:
        return [[[value] for value in row] for row in tokens.tolist()]
    return [[[value, experts] for value, experts in zip(row, names)]
            for row, names in zip(tokens.tolist(), held.tolist())]


def _json_matrix(z: np.ndarray) -> list[list[float | None]]:
    """Rows of numbers, NaN as null (a gap in the heatmap)."""
    if not np.isnan(z).any():
        return z.tolist()
    return [[None if math.isnan(value) else value for value in row] for row in z.tolist()]


def _index_ticks(count: int) -> dict[str, Any]:
    """Axis settings for an axis of integer positions (layers, GPUs, nodes): with few
    positions, one tick each, so Plotly puts no ticks between them (0.5, 1.5, ...)."""
    return {"tick0": 0, "dtick": 1} if count <= 12 else {}


def _experts_per_gpu(phy2log: Matrix, num_gpus: int) -> np.ndarray:
    """[layers, gpus] text: the experts each GPU's slots hold, in slot order."""
    slots = np.asarray(phy2log, dtype=np.int64)
    layers, replicas = slots.shape
    per_gpu = slots.reshape(layers, num_gpus, replicas // num_gpus)
    return np.array([[", ".join(map(str, gpu)) for gpu in layer.tolist()] for layer in per_gpu],
                    dtype=object)


def _line(x: Sequence[int], y: Sequence[float], name: str, line: dict[str, Any]
          ) -> dict[str, Any]:
    return {"type": "scatter", "x": list(x), "y": list(y), "name": name, "mode": "lines",
            "line": line, "hovertemplate": "%{y:.3f}"}


def _token_axis(low: float, high: float) -> dict[str, Any]:
    """A Viridis colour axis over ``[low, high]`` tokens (widened when the range is empty)."""
    if high <= low:
        high = low + 1
    return {"colorscale": _scale(VIRIDIS), "cmin": low, "cmax": high,
            "colorbar": _colourbar("tokens", tickformat="~s")}


def _ratio_axis(ratio: np.ndarray) -> dict[str, Any]:
    """A diverging colour axis over a heatmap's own ratios: white at 1.0 (a load at its layer's
    mean), blue below, red above, each side spread over its own range."""
    finite = ratio[np.isfinite(ratio)]
    low = min(float(finite.min()) if finite.size else 1.0, 1 - MIN_RATIO_SPREAD)
    high = max(float(finite.max()) if finite.size else 1.0, 1 + MIN_RATIO_SPREAD)
    neutral = (1 - low) / (high - low)
    stops = [[neutral * step / len(COLD), colour] for step, colour in enumerate(COLD)]
    stops.append([neutral, NEUTRAL])
    stops += [[neutral + (1 - neutral) * step / len(HOT), colour]
              for step, colour in enumerate(HOT, 1)]
    return {"colorscale": stops, "cmin": low, "cmax": high,
            "colorbar": _colourbar(RATIO_TITLE, tickformat=".2~f")}


def _colourbar(title: str, tickformat: str) -> dict[str, Any]:
    return {"title": {"text": title, "side": "right"}, "thickness": 12, "outlinewidth": 0,
            "tickformat": tickformat}


def _scale(colours: Sequence[str]) -> list[list[Any]]:
    """Evenly spaced colour stops."""
    return [[index / (len(colours) - 1), colour] for index, colour in enumerate(colours)]


def _axis(title: str, grid: bool = False, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "showgrid": grid, "gridcolor": GRID, "zeroline": False,
            "ticks": "outside", "linecolor": GRID, **extra}


def _top_legend() -> dict[str, Any]:
    return {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"}


def _layout(height: int) -> dict[str, Any]:
    """The dashboard's look: white, light grid, system font, tight margins."""
    return {"height": height, "font": FONT, "paper_bgcolor": "white", "plot_bgcolor": "white",
            "margin": MARGIN}


def _figure(data: list[dict[str, Any]], layout: dict[str, Any],
            narrow: dict[str, Any] | None = None) -> Figure:
    """A figure; ``narrow`` holds what its narrow layout changes."""
    figure: Figure = {"data": data, "layout": layout}
    if narrow is not None:
        figure["narrow"] = {"max_width": NARROW_WIDTH, "layout": {**layout, **narrow}}
    return figure
