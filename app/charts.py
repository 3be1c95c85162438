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

from eplb_core import Evaluation, Rebalance
from eplb_core.replay import Replay
from eplb_core.sweep import Sweep, SweepPoint

Figure = dict[str, Any]
Matrix = Sequence[Sequence[float]] | np.ndarray

# Below this panel width (CSS pixels) a figure uses its "narrow" layout.
NARROW_WIDTH = 600

VIRIDIS = plotly.colors.sequential.Viridis
# ColorBrewer RdBu (colourblind-safe), from the coldest blue through white to the hottest red.
COLD = [
    "rgb(5,48,97)",
    "rgb(33,102,172)",
    "rgb(67,147,195)",
    "rgb(146,197,222)",
    "rgb(209,229,240)",
]
NEUTRAL = "rgb(247,247,247)"
HOT = ["rgb(253,219,199)", "rgb(244,165,130)", "rgb(214,96,77)", "rgb(178,24,43)", "rgb(103,0,31)"]
# Okabe-Ito: distinguishable with every common colour-vision deficiency.
BEFORE_COLOUR = "#E69F00"
AFTER_COLOUR = "#0072B2"
BOUND_COLOUR = "#000000"
# One colour and marker per replay strategy: keeping the placement (the "before" orange),
# greedy, hybrid; greedy's lines are drawn wider, under hybrid's, so that both show where they
# coincide. Widths: the next-window line, then the in-sample one.
STRATEGY_STYLES: dict[str, dict[str, Any]] = {
    "none": {"color": BEFORE_COLOUR, "widths": (2, 1.5), "symbol": "circle", "size": 6},
    "greedy": {"color": "#CC79A7", "widths": (5, 4), "symbol": "square", "size": 10},
    "hybrid": {"color": AFTER_COLOUR, "widths": (2, 1.5), "symbol": "diamond", "size": 7},
}
TRIVIAL_TITLE = "Before: slot p holds expert p mod E"
CURRENT_TITLE = "Before: the placement in use"
AFTER_TITLE = "After: the plan"
RATIO_TITLE = "× layer mean"
FONT = {
    "family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    "size": 12,
    "color": "#1f2937",
}
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
    heatmap = {
        "type": "heatmap",
        "z": loads.tolist(),
        "coloraxis": "coloraxis",
        "hovertemplate": "Layer %{y}<br>Expert %{x}<br>Load %{z:,.0f} tokens<extra></extra>",
    }
    layout = _layout(height=360)
    layout["xaxis"] = _axis("logical expert")
    layout["yaxis"] = _axis("layer", grid=True, autorange="reversed", **_index_ticks(len(loads)))
    layout["coloraxis"] = _token_axis(float(loads.min()), float(loads.max()))
    return _figure([heatmap], layout, narrow={"margin": NARROW_MARGIN})


def gpu_load_pair(
    before: Matrix,
    after: Matrix,
    before_phy2log: Matrix,
    after_phy2log: Matrix,
    num_gpus: int,
    before_title: str = TRIVIAL_TITLE,
) -> Figure:
    """Per-GPU loads before and after, in both views.

    Hovering a cell names the layer, the GPU, its load and the experts its slots hold: GPU g
    holds slots ``g*R/G .. (g+1)*R/G - 1`` of each layer's ``phy2log`` row.
    """
    held = (_experts_per_gpu(before_phy2log, num_gpus), _experts_per_gpu(after_phy2log, num_gpus))
    return _pair(before, after, unit="GPU", before_title=before_title, held=held)


def node_load_pair(before: Matrix, after: Matrix, before_title: str = TRIVIAL_TITLE) -> Figure:
    """Per-node loads before and after, in both views."""
    return _pair(before, after, unit="node", before_title=before_title)


def balancedness_chart(
    before: Sequence[float], after: Sequence[float], bound: Sequence[float]
) -> Figure:
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
    return _figure(
        lines,
        layout,
        narrow={
            "margin": NARROW_MARGIN,
            "yaxis": {**layout["yaxis"], "title": {"text": "balancedness"}},
        },
    )


def rebalance_figures(result: Rebalance) -> dict[str, Figure | None]:
    """Every chart of a rebalance result, keyed by the page element that draws it; "node" is
    None when the GPUs do not split evenly over the nodes (no per-node figures exist)."""
    title = CURRENT_TITLE if result.baseline == "current" else TRIVIAL_TITLE
    before, after = result.before, result.after
    node = None
    if before.node_load is not None and after.node_load is not None:
        node = node_load_pair(
            before.node_load.cpu().numpy(), after.node_load.cpu().numpy(), before_title=title
        )
    return {
        "gpu": gpu_load_pair(
            before.gpu_load.cpu().numpy(),
            after.gpu_load.cpu().numpy(),
            result.placement_before.cpu().numpy(),
            result.plan.phy2log.cpu().numpy(),
            result.cluster.num_gpus,
            before_title=title,
        ),
        "node": node,
        "balancedness": balancedness_chart(
            before.balancedness.tolist(), after.balancedness.tolist(), result.bound.tolist()
        ),
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
        lines.append(
            {
                "type": "scatter",
                "x": windows,
                "y": figures.next_window,
                "name": f"{name}, next window",
                "mode": "lines+markers",
                "legendgroup": name,
                "line": {"color": style["color"], "width": next_width},
                "marker": {"symbol": style["symbol"], "size": style["size"]},
                "customdata": figures.moves,
                "hovertemplate": "%{y:.3f} (%{customdata:,} moves)",
            }
        )
        lines.append(
            {
                "type": "scatter",
                "x": windows,
                "y": figures.in_sample,
                "name": f"{name}, in-sample",
                "mode": "lines",
                "legendgroup": name,
                "line": {"color": style["color"], "width": in_sample_width, "dash": "dash"},
                "hovertemplate": "%{y:.3f}",
            }
        )
    layout = _layout(height=360)
    layout["xaxis"] = _axis(
        "window scored (planned on the window before)", dtick=max(1, math.ceil(len(windows) / 12))
    )
    layout["yaxis"] = _axis("balancedness (mean / max GPU load)", grid=True, range=[0, 1.05])
    layout.update(hovermode="x unified", legend={**_top_legend(), "groupclick": "toggleitem"})
    narrow_legend = {
        "orientation": "h",
        "x": 0,
        "xanchor": "left",
        "y": -0.22,
        "yanchor": "top",
        "groupclick": "toggleitem",
    }
    return _figure(
        lines,
        layout,
        narrow={
            "height": 460,
            "margin": NARROW_MARGIN,
            "legend": narrow_legend,
            "xaxis": {**layout["xaxis"], "title": {"text": "window scored"}},
            "yaxis": {**layout["yaxis"], "title": {"text": "balancedness"}},
        },
    )


def _pair(
    before: Matrix,
    after: Matrix,
    unit: str,
    before_title: str,
    held: tuple[np.ndarray, np.ndarray] | None = None,
    after_title: str = AFTER_TITLE,
) -> Figure:
    """Two heatmaps, layers x ``unit``, in the tokens and the ratio view, with the name of the
    view that shows the imbalance left in ``after``."""
    loads = (np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64))
    titles = (_plain(before_title), _plain(after_title))
    low = min(float(z.min()) for z in loads)
    high = max(float(z.max()) for z in loads)
    token_traces = [
        _pair_heatmap(
            z,
            side,
            unit,
            "coloraxis",
            "Load %{z:,.0f} tokens",
            None if held is None else held[side].tolist(),
            "<br>Experts %{customdata}" if held is not None else "",
        )
        for side, z in enumerate(loads)
    ]
    tokens = _pair_figure(token_traces, unit, titles, loads, {"coloraxis": _token_axis(low, high)})

    ratios = [_over_layer_mean(z) for z in loads]
    ratio_traces = [
        _pair_heatmap(
            ratio,
            side,
            unit,
            f"coloraxis{side + 2}",
            "Load %{z:.3f} × layer mean, %{customdata[0]:,.0f} tokens",
            _cells(loads[side], None if held is None else held[side]),
            "<br>Experts %{customdata[1]}" if held is not None else "",
        )
        for side, ratio in enumerate(ratios)
    ]
    ratio_axes = {f"coloraxis{side + 2}": _ratio_axis(ratio) for side, ratio in enumerate(ratios)}
    ratio = _pair_figure(ratio_traces, unit, titles, loads, ratio_axes)

    after_spread = float((loads[1].max(axis=1) - loads[1].min(axis=1)).max())
    shows_imbalance = after_spread >= VISIBLE_SPREAD * max(high - low, 1.0)
    return {
        "views": {"tokens": tokens, "ratio": ratio},
        "view": "tokens" if shows_imbalance else "ratio",
    }


def _pair_heatmap(
    z: np.ndarray,
    side: int,
    unit: str,
    coloraxis: str,
    value: str,
    customdata: list[Any] | None,
    hover_extra: str,
) -> dict[str, Any]:
    label = ("before", "after")[side]
    suffix = "" if side == 0 else "2"
    trace = {
        "type": "heatmap",
        "z": _json_matrix(z),
        "coloraxis": coloraxis,
        "name": label,
        "xaxis": f"x{suffix}",
        "yaxis": f"y{suffix}",
        "hovertemplate": f"Layer %{{y}}<br>{unit[0].upper() + unit[1:]} %{{x}}<br>{value}"
        f"{hover_extra}<extra>{label}</extra>",
    }
    if customdata is not None:
        trace["customdata"] = customdata
    return trace


def _pair_figure(
    traces: list[dict[str, Any]],
    unit: str,
    titles: tuple[str, str],
    loads: tuple[np.ndarray, np.ndarray],
    colour_axes: dict[str, Any],
) -> Figure:
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
            "yaxis": _axis(
                "layer",
                grid=True,
                domain=list(y_domains[0]),
                anchor="x",
                autorange="reversed",
                **layer_ticks,
            ),
            "yaxis2": _axis(
                "layer" if stacked else "",
                grid=True,
                domain=list(y_domains[1]),
                anchor="x2",
                autorange="reversed",
                matches="y",
                showticklabels=stacked,
                **layer_ticks,
            ),
            "annotations": [
                _subplot_title(text, x_domains[side], y_domains[side][1])
                for side, text in enumerate(titles)
            ],
        }
        for name, axis in colour_axes.items():
            side = int(name[-1]) - 2 if ratio_view else None
            layout[name] = {
                **axis,
                "colorbar": {
                    **axis["colorbar"],
                    **_colourbar_place(side, stacked, x_domains, y_domains),
                },
            }
        return layout

    layout = {**_layout(height=400), **axes(stacked=False)}
    layout["margin"] = {**MARGIN, "t": PAIR_TOP}
    narrow = {"height": 700, "margin": {**NARROW_MARGIN, "t": PAIR_TOP}, **axes(stacked=True)}
    return _figure(traces, layout, narrow=narrow)


def _colourbar_place(
    side: int | None, stacked: bool, x_domains: tuple[Any, ...], y_domains: tuple[Any, ...]
) -> dict[str, Any]:
    """Where a colour bar goes: the shared one right of both heatmaps; a ratio heatmap's right
    of it (side by side) or beside its row (stacked)."""
    if side is None:
        return {"x": 1.02, "xanchor": "left", "y": 0.5, "yanchor": "middle", "len": 1}
    if stacked:
        low, high = y_domains[side]
        return {
            "x": 1.02,
            "xanchor": "left",
            "y": (low + high) / 2,
            "yanchor": "middle",
            "len": high - low,
        }
    return {
        "x": x_domains[side][1] + 0.015,
        "xanchor": "left",
        "y": 0.5,
        "yanchor": "middle",
        "len": 1,
    }


def _subplot_title(text: str, x_domain: tuple[float, float], top: float) -> dict[str, Any]:
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": (x_domain[0] + x_domain[1]) / 2,
        "y": top,
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 13, "color": FONT["color"]},
    }


def _over_layer_mean(loads: np.ndarray) -> np.ndarray:
    """Each load over its layer's mean, to 4 decimals; NaN in a layer without load."""
    means = loads.mean(axis=1, keepdims=True)
    ratio = loads / np.where(means > 0, means, 1)
    return np.where(means > 0, ratio.round(4), np.nan)


def _cells(tokens: np.ndarray, held: np.ndarray | None) -> list[Any]:
    """Per-cell hover data of a ratio heatmap: [tokens] or [tokens, experts held]."""
    if held is None:
        return [[[value] for value in row] for row in tokens.tolist()]
    return [
        [[value, experts] for value, experts in zip(row, names, strict=True)]
        for row, names in zip(tokens.tolist(), held.tolist(), strict=True)
    ]


def _json_matrix(z: np.ndarray) -> list[list[float | None]]:
    """Rows of numbers, NaN as null (a gap in the heatmap)."""
    if not np.isnan(z).any():
        rows: list[list[float | None]] = z.tolist()
        return rows
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
    return np.array(
        [[", ".join(map(str, gpu)) for gpu in layer.tolist()] for layer in per_gpu], dtype=object
    )


def _line(x: Sequence[int], y: Sequence[float], name: str, line: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "scatter",
        "x": list(x),
        "y": list(y),
        "name": name,
        "mode": "lines",
        "line": line,
        "hovertemplate": "%{y:.3f}",
    }


def _token_axis(low: float, high: float) -> dict[str, Any]:
    """A Viridis colour axis over ``[low, high]`` tokens (widened when the range is empty)."""
    if high <= low:
        high = low + 1
    return {
        "colorscale": _scale(VIRIDIS),
        "cmin": low,
        "cmax": high,
        "colorbar": _colourbar("tokens", tickformat="~s"),
    }


def _ratio_axis(ratio: np.ndarray) -> dict[str, Any]:
    """A diverging colour axis over a heatmap's own ratios: white at 1.0 (a load at its layer's
    mean), blue below, red above, each side spread over its own range."""
    finite = ratio[np.isfinite(ratio)]
    low = min(float(finite.min()) if finite.size else 1.0, 1 - MIN_RATIO_SPREAD)
    high = max(float(finite.max()) if finite.size else 1.0, 1 + MIN_RATIO_SPREAD)
    neutral = (1 - low) / (high - low)
    stops = [[neutral * step / len(COLD), colour] for step, colour in enumerate(COLD)]
    stops.append([neutral, NEUTRAL])
    stops += [
        [neutral + (1 - neutral) * step / len(HOT), colour] for step, colour in enumerate(HOT, 1)
    ]
    return {
        "colorscale": stops,
        "cmin": low,
        "cmax": high,
        "colorbar": _colourbar(RATIO_TITLE, tickformat=".2~f"),
    }


def _colourbar(title: str, tickformat: str) -> dict[str, Any]:
    return {
        "title": {"text": title, "side": "right"},
        "thickness": 12,
        "outlinewidth": 0,
        "tickformat": tickformat,
    }


def _scale(colours: Sequence[str]) -> list[list[Any]]:
    """Evenly spaced colour stops."""
    return [[index / (len(colours) - 1), colour] for index, colour in enumerate(colours)]


def _axis(title: str, grid: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "showgrid": grid,
        "gridcolor": GRID,
        "zeroline": False,
        "ticks": "outside",
        "linecolor": GRID,
        **extra,
    }


def _top_legend() -> dict[str, Any]:
    return {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"}


def _layout(height: int) -> dict[str, Any]:
    """The dashboard's look: white, light grid, system font, tight margins."""
    return {
        "height": height,
        "font": FONT,
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "margin": MARGIN,
    }


def _figure(
    data: list[dict[str, Any]], layout: dict[str, Any], narrow: dict[str, Any] | None = None
) -> Figure:
    """A figure; ``narrow`` holds what its narrow layout changes."""
    figure: Figure = {"data": data, "layout": layout}
    if narrow is not None:
        figure["narrow"] = {"max_width": NARROW_WIDTH, "layout": {**layout, **narrow}}
    return figure


# ---------------------------------------------------------------------------------------------
# Migration, the advisor, placements scored without planning, and one layer in detail.

# Okabe-Ito colours and markers for the policies a sweep compares, in the order they first
# appear; the current choice is drawn over its point as a large open ring.
POLICY_COLOURS = ("#0072B2", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#E69F00", "#000000")
POLICY_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star")
# Greedy and hybrid on the frontier: their replay colours and markers.
ALGORITHM_STYLES: dict[str, dict[str, Any]] = {
    name: STRATEGY_STYLES[name] for name in ("greedy", "hybrid")
}
CURRENT_MARKER = {
    "symbol": "circle-open",
    "size": 22,
    "color": BOUND_COLOUR,
    "line": {"width": 2.5, "color": BOUND_COLOUR},
}
MEMORY_COLOUR = "#BBBBBB"
GIB_BYTES = float(1 << 30)
# Experts listed as the hottest of a layer.
HOTTEST = 10


def budget_label(budget: float | int | None, max_moves: int | None) -> str:
    """A move budget as people read it: "full plan", "10%" (of all slots), "500 slots"."""
    if budget is None:
        return "full plan"
    if isinstance(budget, float):
        return f"{budget * 100:g}%"
    return f"{budget:,} {'slot' if budget == 1 else 'slots'}"


def replay_frontier(result: Replay) -> Figure | None:
    """The frontier of a replay under move budgets: mean next-window balancedness against the
    moves (expert copies) per rebalance, one point per budget, a line per algorithm; keeping
    the placement (no moves) is the point at 0. None when no budget was replayed."""
    if not result.budgets:
        return None
    gib = result.expert_bytes / GIB_BYTES
    kept = result.strategies["none"]
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "x": [0],
            "y": [kept.mean_next_window],
            "name": "no rebalancing",
            "mode": "markers",
            "marker": {"color": BEFORE_COLOUR, "size": 11, "symbol": "circle"},
            "hovertemplate": "no rebalancing: %{y:.3f}, no moves<extra></extra>",
        }
    ]
    for algorithm, style in ALGORITHM_STYLES.items():
        entries = sorted(
            (entry for entry in result.budgets if entry.algorithm == algorithm),
            key=lambda entry: entry.figures.total_moves,
        )
        if not entries:
            continue
        per_window = [entry.figures.total_moves / len(entry.figures.moves) for entry in entries]
        labels = [budget_label(entry.budget, entry.max_moves) for entry in entries]
        traces.append(
            {
                "type": "scatter",
                "x": per_window,
                "y": [entry.figures.mean_next_window for entry in entries],
                "name": algorithm,
                "mode": "lines+markers+text",
                "text": labels,
                "textposition": "top center" if algorithm == "hybrid" else "bottom center",
                "textfont": {"size": 11, "color": style["color"]},
                "cliponaxis": False,
                "line": {"color": style["color"], "width": style["widths"][0] - 0.5},
                "marker": {
                    "color": style["color"],
                    "symbol": style["symbol"],
                    "size": style["size"] + 2,
                },
                "customdata": [
                    [label, moves * gib, entry.figures.mean_in_sample]
                    for label, moves, entry in zip(labels, per_window, entries, strict=True)
                ],
                "hovertemplate": f"{algorithm}, %{{customdata[0]}}: %{{y:.3f}} next window "
                "(%{customdata[2]:.3f} in-sample)<br>%{x:,.0f} moves, "
                "%{customdata[1]:,.2f} GiB per rebalance<extra></extra>",
            }
        )
    layout = _layout(height=380)
    layout["xaxis"] = _axis(
        "moves per rebalance (expert copies; GiB on hover)",
        grid=True,
        rangemode="tozero",
        tickformat=",d",
    )
    layout["yaxis"] = _axis("next-window balancedness", grid=True)
    layout.update(hovermode="closest", legend=_top_legend())
    layout["margin"] = {**MARGIN, "t": 48}
    return _figure(
        traces,
        layout,
        narrow={
            "height": 440,
            "margin": {**NARROW_MARGIN, "t": 48},
            "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.2, "yanchor": "top"},
            "xaxis": {**layout["xaxis"], "title": {"text": "moves per rebalance"}},
            "yaxis": {**layout["yaxis"], "title": {"text": "next-window balancedness"}},
        },
    )


def policy_name(policy: str, spill_slots: int) -> str:
    """A policy as the advisor names it: "hierarchical", "spill:2"."""
    return f"{policy}:{spill_slots}" if policy == "spill" else policy


def sweep_figures(
    result: Sweep,
    current_policy: str | None = None,
    current_spill_slots: int = 1,
    current_replicas: int | None = None,
) -> dict[str, Figure | None]:
    """The advisor's charts of a sweep:

    - ``slots``: balancedness (in-sample, and the bound dotted) against slots per GPU, a line
      per policy, with the extra expert memory each GPU holds on a second axis (bars);
    - ``windows`` (a time series swept over windows): next-window balancedness against the
      moves per 1,000 steps, a point per window size, a line per policy and slot count;
      None without windows;
    - ``policies``: balancedness against nodes per token, a point per policy at the current
      slot count (else the first swept); None with fewer than two policies with nodes per
      token.

    The current choice (``current_policy`` resolved, with its spill slots, and
    ``current_replicas``) is ringed where the sweep has it.
    """
    points = result.points
    names: list[str] = []
    for point in points:
        name = policy_name(_resolved(point.policy, result), point.spill_slots)
        if name not in names:
            names.append(name)
    styles = {
        name: (
            POLICY_COLOURS[index % len(POLICY_COLOURS)],
            POLICY_SYMBOLS[index % len(POLICY_SYMBOLS)],
        )
        for index, name in enumerate(names)
    }
    current = (
        None
        if current_policy is None
        else policy_name(_resolved(current_policy, result), current_spill_slots)
    )

    def name_of(point: SweepPoint) -> str:
        return policy_name(_resolved(point.policy, result), point.spill_slots)

    def is_current(point: SweepPoint) -> bool:
        return name_of(point) == current and point.num_replicas == current_replicas

    return {
        "slots": _slots_chart(points, names, styles, name_of, is_current),
        "windows": _windows_chart(points, names, styles, name_of, is_current),
        "policies": _policies_chart(points, names, styles, name_of, current, current_replicas),
    }


def _resolved(policy: str, result: Sweep) -> str:
    return result.cluster.auto_policy if policy == "auto" else policy


def _slots_chart(
    points: Sequence[SweepPoint],
    names: list[str],
    styles: dict[str, tuple[str, str]],
    name_of: Any,
    is_current: Any,
) -> Figure:
    traces: list[dict[str, Any]] = []
    memory: dict[int, float] = {}
    for point in points:
        memory[point.slots_per_gpu] = point.extra_memory_per_gpu_bytes / GIB_BYTES
    per_gpu = sorted(memory)
    traces.append(
        {
            "type": "bar",
            "x": per_gpu,
            "y": [memory[count] for count in per_gpu],
            "name": "extra expert memory per GPU",
            "yaxis": "y2",
            "width": 0.35,
            "marker": {"color": MEMORY_COLOUR, "opacity": 0.55},
            "hovertemplate": "%{x} slots per GPU: %{y:,.2f} GiB more per GPU<extra></extra>",
        }
    )
    marked = None
    for name in names:
        colour, symbol = styles[name]
        seen: dict[int, SweepPoint] = {}
        for point in points:
            if name_of(point) == name:
                seen.setdefault(point.slots_per_gpu, point)
        chosen = [seen[count] for count in sorted(seen)]
        x = [point.slots_per_gpu for point in chosen]
        traces.append(
            {
                "type": "scatter",
                "x": x,
                "y": [point.mean_balancedness for point in chosen],
                "name": name,
                "mode": "lines+markers",
                "legendgroup": name,
                "line": {"color": colour, "width": 2.5},
                "marker": {"color": colour, "symbol": symbol, "size": 9},
                "customdata": [[point.num_replicas] for point in chosen],
                "hovertemplate": f"{name}: %{{y:.3f}} with %{{x}} slots per GPU "
                "(%{customdata[0]:,} slots)<extra></extra>",
            }
        )
        traces.append(
            {
                "type": "scatter",
                "x": x,
                "y": [point.bound for point in chosen],
                "name": f"{name}, upper bound",
                "mode": "lines",
                "legendgroup": name,
                "showlegend": False,
                "line": {"color": colour, "width": 1.5, "dash": "dot"},
                "hovertemplate": f"{name} upper bound: %{{y:.3f}}<extra></extra>",
            }
        )
        for point in chosen:
            if is_current(point):
                marked = point
    if marked is not None:
        traces.append(_current_trace([marked.slots_per_gpu], [marked.mean_balancedness]))
    layout = _layout(height=380)
    layout["xaxis"] = _axis("slots per GPU", tickvals=per_gpu, showgrid=False)
    layout["yaxis"] = _axis("balancedness (in-sample; bound dotted)", grid=True, rangemode="tozero")
    layout["yaxis2"] = _axis(
        "extra expert memory per GPU (GiB)",
        overlaying="y",
        side="right",
        rangemode="tozero",
        showgrid=False,
        tickmode="auto",
        nticks=6,
    )
    layout["margin"] = {**MARGIN, "r": 64, "t": 48}
    layout.update(hovermode="closest", legend=_top_legend(), barmode="overlay")
    return _figure(
        traces,
        layout,
        narrow={
            "height": 460,
            "margin": {**NARROW_MARGIN, "r": 48, "t": 48},
            "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.2, "yanchor": "top"},
            "yaxis": {**layout["yaxis"], "title": {"text": "balancedness"}},
            "yaxis2": {**layout["yaxis2"], "title": {"text": "extra GiB per GPU"}},
        },
    )


def _windows_chart(
    points: Sequence[SweepPoint],
    names: list[str],
    styles: dict[str, tuple[str, str]],
    name_of: Any,
    is_current: Any,
) -> Figure | None:
    """A line per policy and slot count through its windows; one policy: a colour per slot
    count, else a colour per policy and a dash per slot count. The choice in use is drawn
    wider, "(yours)" in its name."""
    replayed = [point for point in points if point.next_window is not None]
    if not replayed:
        return None
    counts = sorted({point.num_replicas for point in replayed})
    dashes = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
    traces: list[dict[str, Any]] = []
    for name in names:
        colour, symbol = styles[name]
        for index, count in enumerate(counts):
            line = sorted(
                (
                    point
                    for point in replayed
                    if name_of(point) == name and point.num_replicas == count
                ),
                key=lambda point: point.window or 0,
            )
            if not line:
                continue
            if len(names) == 1:
                colour, dash = POLICY_COLOURS[index % len(POLICY_COLOURS)], "solid"
            else:
                dash = dashes[index % len(dashes)]
            yours = is_current(line[0])
            label = (f"{name}, {count:,} slots" if len(names) > 1 else f"{count:,} slots") + (
                " (yours)" if yours else ""
            )
            traces.append(
                {
                    "type": "scatter",
                    "x": [point.moves_per_1000_steps for point in line],
                    "y": [point.next_window for point in line],
                    "name": label,
                    "mode": "lines+markers+text",
                    "text": [f"{point.window}" for point in line],
                    "textposition": "top center",
                    "textfont": {"size": 10, "color": colour},
                    "cliponaxis": False,
                    "line": {"color": colour, "width": 4 if yours else 2, "dash": dash},
                    "marker": {"color": colour, "symbol": symbol, "size": 10 if yours else 8},
                    "customdata": [
                        [point.window, point.gib_per_1000_steps, point.mean_balancedness]
                        for point in line
                    ],
                    "hovertemplate": f"{label}, rebalanced every %{{customdata[0]}} steps: "
                    "%{y:.3f} next window (%{customdata[2]:.3f} in-sample)<br>"
                    "%{x:,.0f} moves, %{customdata[1]:,.1f} GiB per 1,000 steps"
                    "<extra></extra>",
                }
            )
    layout = _layout(height=400)
    layout["xaxis"] = _axis(
        "moves per 1,000 steps (labels: steps between rebalances)",
        grid=True,
        rangemode="tozero",
        tickformat="~s",
    )
    layout["yaxis"] = _axis("next-window balancedness", grid=True)
    layout["margin"] = {**MARGIN, "t": 48}
    layout.update(hovermode="closest", legend=_top_legend())
    return _figure(
        traces,
        layout,
        narrow={
            "height": 480,
            "margin": {**NARROW_MARGIN, "t": 48},
            "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.2, "yanchor": "top"},
            "xaxis": {**layout["xaxis"], "title": {"text": "moves per 1,000 steps"}},
        },
    )


def _policies_chart(
    points: Sequence[SweepPoint],
    names: list[str],
    styles: dict[str, tuple[str, str]],
    name_of: Any,
    current: str | None,
    current_replicas: int | None,
) -> Figure | None:
    counts = [point.num_replicas for point in points]
    count = current_replicas if current_replicas in counts else counts[0]
    traces: list[dict[str, Any]] = []
    marked = None
    for name in names:
        point = next(
            (point for point in points if name_of(point) == name and point.num_replicas == count),
            None,
        )
        if point is None or point.mean_nodes_per_token is None:
            continue
        colour, symbol = styles[name]
        traces.append(
            {
                "type": "scatter",
                "x": [point.mean_nodes_per_token],
                "y": [point.mean_balancedness],
                "name": name,
                "mode": "markers+text",
                "text": [name],
                "textposition": "top center",
                "textfont": {"color": colour},
                "cliponaxis": False,
                "marker": {"color": colour, "symbol": symbol, "size": 13},
                "hovertemplate": f"{name}: balancedness %{{y:.3f}}, %{{x:.3f}} nodes per token "
                f"({count:,} slots)<extra></extra>",
            }
        )
        if name == current:
            marked = point
    if len(traces) < 2:  # one policy: nothing to compare
        return None
    if marked is not None:
        traces.append(_current_trace([marked.mean_nodes_per_token], [marked.mean_balancedness]))
    layout = _layout(height=340)
    layout["xaxis"] = _axis(f"nodes per token (inter-node sends; {count:,} slots)", grid=True)
    layout["yaxis"] = _axis("balancedness (in-sample)", grid=True)
    layout["margin"] = {**MARGIN, "t": 48}
    layout.update(hovermode="closest", legend=_top_legend(), showlegend=False)
    return _figure(
        traces,
        layout,
        narrow={
            "margin": {**NARROW_MARGIN, "l": 60, "t": 48},
            "xaxis": {**layout["xaxis"], "title": {"text": "nodes per token"}},
            "yaxis": {**layout["yaxis"], "title": {"text": "balancedness"}},
        },
    )


def _current_trace(x: list[Any], y: list[Any]) -> dict[str, Any]:
    """A ring around the current choice's point."""
    return {
        "type": "scatter",
        "x": x,
        "y": y,
        "name": "your choice",
        "mode": "markers",
        "marker": CURRENT_MARKER,
        "hoverinfo": "skip",
    }


def evaluate_figures(
    result: Evaluation, placement: Matrix, compare: Matrix | None, titles: tuple[str, str | None]
) -> dict[str, Figure]:
    """A placement scored without planning: its per-GPU loads (beside ``compare``'s, left,
    when given) in both views, and its balancedness per layer (with ``compare``'s) under the
    bound. ``titles``: the placement's and the compare's names."""
    num_gpus = result.cluster.num_gpus
    title, compare_title = titles
    scored = result.placement.gpu_load.cpu().numpy()
    held = _experts_per_gpu(placement, num_gpus)
    if result.compare is None or compare is None:
        gpu = _single(scored, "GPU", title, held)
    else:
        gpu = _pair(
            result.compare.gpu_load.cpu().numpy(),
            scored,
            unit="GPU",
            before_title=compare_title or "compare",
            held=(_experts_per_gpu(compare, num_gpus), held),
            after_title=title,
        )
    layers = list(range(scored.shape[0]))
    lines = []
    if result.compare is not None:
        lines.append(
            _line(
                layers,
                result.compare.balancedness.tolist(),
                compare_title or "compare",
                {"color": BEFORE_COLOUR, "width": 2},
            )
        )
    lines.append(
        _line(
            layers,
            result.placement.balancedness.tolist(),
            title,
            {"color": AFTER_COLOUR, "width": 3},
        )
    )
    lines.append(
        _line(
            layers,
            result.bound.tolist(),
            "upper bound",
            {"color": BOUND_COLOUR, "width": 1.5, "dash": "dot"},
        )
    )
    layout = _layout(height=320)
    layout["xaxis"] = _axis("layer", **_index_ticks(len(layers)))
    layout["yaxis"] = _axis("balancedness (mean / max GPU load)", grid=True, range=[0, 1.05])
    layout.update(hovermode="x unified", legend=_top_legend())
    balance = _figure(
        lines,
        layout,
        narrow={
            "height": 380,
            "margin": NARROW_MARGIN,
            "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.35, "yanchor": "top"},
            "yaxis": {**layout["yaxis"], "title": {"text": "balancedness"}},
        },
    )
    return {"gpu": gpu, "balancedness": balance}


def _single(loads: np.ndarray, unit: str, title: str, held: np.ndarray) -> Figure:
    """One placement's loads, layers x ``unit``, in the tokens and the ratio view (the one
    that shows its imbalance first)."""
    loads = np.asarray(loads, dtype=np.float64)
    label = _plain(title)
    hover = f"Layer %{{y}}<br>{unit} %{{x}}<br>VALUE<br>Experts EXPERTS<extra>{label}</extra>"

    def figure(z: Any, colour: dict[str, Any], value: str, experts: str, customdata: Any) -> Figure:
        trace = {
            "type": "heatmap",
            "z": z,
            "coloraxis": "coloraxis",
            "name": label,
            "customdata": customdata,
            "hovertemplate": hover.replace("VALUE", value).replace("EXPERTS", experts),
        }
        layout = _layout(height=400)
        ticks = _index_ticks(loads.shape[0])
        layout["xaxis"] = _axis(unit, **_index_ticks(loads.shape[1]))
        layout["yaxis"] = _axis("layer", grid=True, autorange="reversed", **ticks)
        layout["coloraxis"] = colour
        layout["annotations"] = [_subplot_title(label, (0.0, 1.0), 1.0)]
        layout["margin"] = {**MARGIN, "t": PAIR_TOP}
        return _figure([trace], layout, narrow={"margin": {**NARROW_MARGIN, "t": PAIR_TOP}})

    tokens = figure(
        loads.tolist(),
        _token_axis(float(loads.min()), float(loads.max())),
        "Load %{z:,.0f} tokens",
        "%{customdata}",
        held.tolist(),
    )
    ratio = _over_layer_mean(loads)
    ratios = figure(
        _json_matrix(ratio),
        _ratio_axis(ratio),
        "Load %{z:.3f} × layer mean, %{customdata[0]:,.0f} tokens",
        "%{customdata[1]}",
        _cells(loads, held),
    )
    spread = float((loads.max(axis=1) - loads.min(axis=1)).max())
    visible = spread >= VISIBLE_SPREAD * max(float(loads.max() - loads.min()), 1.0)
    return {
        "views": {"tokens": tokens, "ratio": ratios},
        "view": "tokens" if visible and spread > 0 else "ratio",
    }


def _plain(text: str) -> str:
    """A name for Plotly's text, which reads a few HTML tags: none of its own."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def layer_figures(
    loads: Sequence[float],
    gpu: Sequence[Sequence[float] | None],
    replicas: Sequence[Sequence[int] | None],
    names: Sequence[str],
) -> dict[str, Figure]:
    """One layer in detail: each GPU's load (a bar per placement: before, after) against the
    layer's mean GPU load (dotted), and each expert's load (above) over its replica counts
    (below: after as bars, before as ticks), so that the hot experts and what a plan gave
    them line up."""
    colours = (BEFORE_COLOUR, AFTER_COLOUR)
    shown = [
        (side, loads_of, _plain(name))
        for side, (loads_of, name) in enumerate(zip(gpu, names, strict=True))
        if loads_of is not None
    ]
    bars: list[dict[str, Any]] = [
        {
            "type": "bar",
            "x": list(range(len(loads_of))),
            "y": list(loads_of),
            "name": name,
            "marker": {"color": colours[side]},
            "hovertemplate": f"%{{y:,.0f}} tokens<extra>{name}</extra>",
        }
        for side, loads_of, name in shown
    ]
    count = len(shown[0][1])
    mean = sum(shown[0][1]) / count
    bars.append(
        {
            "type": "scatter",
            "x": [-0.5, count - 0.5],
            "y": [mean, mean],
            "name": "mean GPU load",
            "mode": "lines",
            "hoverinfo": "skip",
            "line": {"color": BOUND_COLOUR, "width": 1.5, "dash": "dot"},
        }
    )
    layout = _layout(height=300)
    layout["xaxis"] = _axis("GPU", **_index_ticks(count))
    layout["yaxis"] = _axis("tokens", grid=True, tickformat="~s")
    layout.update(barmode="group", bargap=0.25, legend=_top_legend(), hovermode="x unified")
    layout["margin"] = {**MARGIN, "t": 44}
    narrow_legend = {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.3, "yanchor": "top"}
    gpu_figure = _figure(
        bars,
        layout,
        narrow={"margin": {**NARROW_MARGIN, "t": 44}, "height": 340, "legend": narrow_legend},
    )

    experts = list(range(len(loads)))
    traces: list[dict[str, Any]] = [
        {
            "type": "bar",
            "x": experts,
            "y": list(loads),
            "name": "tokens",
            "marker": {"color": "#666666"},
            "hovertemplate": "%{y:,.0f} tokens<extra></extra>",
        }
    ]
    for side, (counts, name) in enumerate(zip(replicas, names, strict=True)):
        if counts is None:
            continue
        label = f"replicas, {_plain(name)}"
        if side == 0:
            traces.append(
                {
                    "type": "scatter",
                    "x": experts,
                    "y": list(counts),
                    "yaxis": "y2",
                    "name": label,
                    "mode": "markers",
                    "marker": {
                        "color": colours[side],
                        "symbol": "line-ew-open",
                        "size": 8,
                        "line": {"width": 2.5, "color": colours[side]},
                    },
                    "hovertemplate": f"%{{y}} replicas<extra>{_plain(name)}</extra>",
                }
            )
        else:
            traces.insert(
                1,
                {
                    "type": "bar",
                    "x": experts,
                    "y": list(counts),
                    "yaxis": "y2",
                    "name": label,
                    "marker": {"color": colours[side]},
                    "hovertemplate": f"%{{y}} replicas<extra>{_plain(name)}</extra>",
                },
            )
    most = max((max(counts) for counts in replicas if counts is not None), default=1)
    layout = _layout(height=380)
    layout["xaxis"] = _axis("logical expert", anchor="y2", **_index_ticks(len(experts)))
    layout["yaxis"] = _axis(
        "tokens", grid=True, tickformat="~s", rangemode="tozero", domain=[0.42, 1.0]
    )
    layout["yaxis2"] = _axis(
        "replicas",
        grid=True,
        domain=[0.0, 0.32],
        range=[0, most + 0.6],
        **({"dtick": 1} if most <= 6 else {}),
    )
    layout.update(legend=_top_legend(), hovermode="x unified", bargap=0.1)
    layout["margin"] = {**MARGIN, "t": 44}
    expert_figure = _figure(
        traces,
        layout,
        narrow={"margin": {**NARROW_MARGIN, "t": 44}, "legend": narrow_legend, "height": 440},
    )
    return {"gpu": gpu_figure, "experts": expert_figure}
