"""Dashboard figures, built on the server as Plotly figure dicts that the page draws as they are.

Every function takes plain arrays (nested lists or anything ``numpy.asarray`` reads) and returns
``{"data": [...], "layout": {...}}`` ready for ``Plotly.newPlot``. Colour scales are
colourblind-safe (Viridis for loads, the Okabe-Ito palette for lines); the before and after
heatmaps of a pair share one colour axis, so a flat plan looks flat next to a hot layout.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from eplb_core import Rebalance
from eplb_core.replay import Replay

Figure = dict[str, Any]
Matrix = Sequence[Sequence[float]] | np.ndarray

LOAD_SCALE = "Viridis"
# Okabe-Ito: distinguishable with every common colour-vision deficiency.
BEFORE_COLOUR = "#E69F00"
AFTER_COLOUR = "#0072B2"
BOUND_COLOUR = "#009E73"
# One colour per replay strategy: keeping the placement (the "before" orange), greedy, hybrid.
STRATEGY_COLOURS = {"none": BEFORE_COLOUR, "greedy": "#D55E00", "hybrid": AFTER_COLOUR}
TRIVIAL_TITLE = "Before: slot p holds expert p mod E"
CURRENT_TITLE = "Before: the placement in use"
FONT = dict(family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size=12,
            color="#1f2937")
GRID = "#e5e7eb"


def load_heatmap(weight: Matrix) -> Figure:
    """The raw loads, layers x experts: which experts run hot in which layer."""
    loads = np.asarray(weight, dtype=np.float64)
    heatmap = go.Heatmap(
        z=loads, coloraxis="coloraxis",
        hovertemplate="Layer %{y}<br>Expert %{x}<br>Load %{z:,.0f} tokens<extra></extra>")
    fig = go.Figure(heatmap)
    _style(fig, height=360)
    fig.update_xaxes(title_text="logical expert")
    fig.update_yaxes(title_text="layer", autorange="reversed", **_index_ticks(len(loads)))
    fig.update_layout(coloraxis=_colour_axis(loads.min(), loads.max()))
    return _to_dict(fig)


def gpu_load_pair(before: Matrix, after: Matrix, before_phy2log: Matrix, after_phy2log: Matrix,
                  num_gpus: int, before_title: str = TRIVIAL_TITLE) -> Figure:
    """Per-GPU loads before and after, side by side on one colour scale.

    Hovering a cell names the layer, the GPU, its load and the experts its slots hold: GPU g
    holds slots ``g*R/G .. (g+1)*R/G - 1`` of each layer's ``phy2log`` row.
    """
    held = (_experts_per_gpu(before_phy2log, num_gpus), _experts_per_gpu(after_phy2log, num_gpus))
    return _pair(before, after, unit="GPU", before_title=before_title, customdata=held,
                 hover_extra="<br>Experts %{customdata}")


def node_load_pair(before: Matrix, after: Matrix, before_title: str = TRIVIAL_TITLE) -> Figure:
    """Per-node loads before and after, side by side on one colour scale."""
    return _pair(before, after, unit="node", before_title=before_title)


def balancedness_chart(before: Sequence[float], after: Sequence[float],
                       bound: Sequence[float]) -> Figure:
    """Balancedness (mean / max GPU load) per layer, before and after, under its upper bound."""
    layers = list(range(len(before)))
    fig = go.Figure([
        _line(layers, bound, "upper bound", BOUND_COLOUR, dash="dot"),
        _line(layers, after, "after", AFTER_COLOUR),
        _line(layers, before, "before", BEFORE_COLOUR),
    ])
    _style(fig, height=320)
    fig.update_xaxes(title_text="layer", **_index_ticks(len(layers)))
    fig.update_yaxes(title_text="balancedness (mean / max GPU load)", range=[0, 1.05])
    fig.update_layout(hovermode="x unified",
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.02,
                                  yanchor="bottom"))
    return _to_dict(fig)


def rebalance_figures(result: Rebalance) -> dict[str, Figure | None]:
    """Every chart of a rebalance result, keyed by the page element that draws it; "node" is
    None when the GPUs do not split evenly over the nodes (no per-node figures exist)."""
    title = CURRENT_TITLE if result.baseline == "current" else TRIVIAL_TITLE
    before, after = result.before, result.after
    node = None
    if before.node_load is not None and after.node_load is not None:
        node = node_load_pair(before.node_load.cpu(), after.node_load.cpu(), before_title=title)
    return {
        "gpu": gpu_load_pair(before.gpu_load.cpu(), after.gpu_load.cpu(),
                             result.placement_before.cpu(), result.plan.phy2log.cpu(),
                             result.cluster.num_gpus, before_title=title),
        "node": node,
        "balancedness": balancedness_chart(before.balancedness.tolist(),
                                           after.balancedness.tolist(), result.bound.tolist()),
    }


def replay_chart(result: Replay) -> Figure:
    """Balancedness per scored window for each strategy: on the next window (solid, the honest
    score) and on the window the plan came from (in-sample, dashed).

    The x axis is the window scored, 1 .. num_windows - 1: its plan was made on the window
    before it.
    """
    windows = list(range(1, result.num_windows))
    lines = []
    for name, figures in result.strategies.items():
        colour = STRATEGY_COLOURS[name]
        lines.append(go.Scatter(
            x=windows, y=figures.next_window, name=f"{name}, next window", mode="lines+markers",
            legendgroup=name, line=dict(color=colour, width=2), marker=dict(size=5),
            customdata=figures.moves,
            hovertemplate="%{y:.3f} (%{customdata:,} moves)"))
        lines.append(go.Scatter(
            x=windows, y=figures.in_sample, name=f"{name}, in-sample", mode="lines",
            legendgroup=name, line=dict(color=colour, width=1.5, dash="dash"),
            hovertemplate="%{y:.3f}"))
    fig = go.Figure(lines)
    _style(fig, height=360)
    fig.update_xaxes(title_text="window scored (planned on the window before)",
                     dtick=max(1, math.ceil(len(windows) / 12)))
    fig.update_yaxes(title_text="balancedness (mean / max GPU load)", range=[0, 1.05])
    fig.update_layout(hovermode="x unified",
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.02,
                                  yanchor="bottom"))
    return _to_dict(fig)


def _pair(before: Matrix, after: Matrix, unit: str, before_title: str,
          customdata: tuple[np.ndarray, np.ndarray] | None = None, hover_extra: str = "") -> Figure:
    """Two heatmaps, layers x ``unit``, sharing a y axis and one colour axis."""
    loads = (np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64))
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=(before_title, "After: the plan"))
    for column, (label, z) in enumerate(zip(("before", "after"), loads), 1):
        fig.add_trace(go.Heatmap(
            z=z, coloraxis="coloraxis", name=label,
            customdata=None if customdata is None else customdata[column - 1],
            hovertemplate=(f"Layer %{{y}}<br>{unit[0].upper() + unit[1:]} %{{x}}"
                           f"<br>Load %{{z:,.0f}} tokens{hover_extra}"
                           f"<extra>{label}</extra>")), row=1, col=column)
        fig.update_xaxes(title_text=unit, row=1, col=column, **_index_ticks(z.shape[1]))
    layer_ticks = _index_ticks(len(loads[0]))
    fig.update_yaxes(title_text="layer", autorange="reversed", row=1, col=1, **layer_ticks)
    fig.update_yaxes(autorange="reversed", row=1, col=2, **layer_ticks)
    _style(fig, height=380)
    low = min(z.min() for z in loads)
    high = max(z.max() for z in loads)
    fig.update_layout(coloraxis=_colour_axis(low, high))
    fig.update_annotations(font=dict(size=13, color=FONT["color"]))
    return _to_dict(fig)


def _index_ticks(count: int) -> dict:
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


def _line(x: Sequence[int], y: Sequence[float], name: str, colour: str,
          dash: str = "solid") -> go.Scatter:
    return go.Scatter(x=x, y=y, name=name, mode="lines", line=dict(color=colour, width=2,
                                                                   dash=dash),
                      hovertemplate="%{y:.3f}")


def _colour_axis(low: float, high: float) -> dict[str, Any]:
    """A Viridis colour axis over ``[low, high]`` tokens (widened when the range is empty)."""
    if high <= low:
        high = low + 1
    return dict(colorscale=LOAD_SCALE, cmin=float(low), cmax=float(high),
                colorbar=dict(title=dict(text="tokens", side="right"), thickness=12,
                              outlinewidth=0, tickformat="~s"))


def _style(fig: go.Figure, height: int) -> None:
    """The dashboard's look: white, light grid, system font, tight margins."""
    fig.update_layout(template="none", height=height, font=FONT, paper_bgcolor="white",
                      plot_bgcolor="white", margin=dict(l=60, r=20, t=36, b=48))
    fig.update_xaxes(showgrid=False, zeroline=False, ticks="outside", linecolor=GRID)
    fig.update_yaxes(showgrid=True, gridcolor=GRID, zeroline=False, ticks="outside",
                     linecolor=GRID)


def _to_dict(fig: go.Figure) -> Figure:
    """Plain JSON-ready dict (plotly's encoder turns numpy arrays into lists or typed arrays)."""
    return json.loads(fig.to_json())
