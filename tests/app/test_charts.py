"""app.charts: the figures show the numbers they are given, pairs share one colour scale, GPU
cells name the experts they hold."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import plotly.colors
import torch

from app import charts
from app.config import Settings
from app.schemas import RebalanceParams, ReplayParams
from app.service import plan, replay_series
from eplb_core.io import LoadFile


def values(array: Any) -> np.ndarray:
    """A figure array: a plain list, or plotly's typed array ``{dtype, bdata, shape}``."""
    if isinstance(array, dict):
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
        return flat.reshape([int(size) for size in str(array["shape"]).split(",")])
    return np.asarray(array)


def test_load_heatmap_shows_every_load_in_tokens() -> None:
    weight = [[0.0, 4.0, 1.0], [2.0, 2.0, 9.0]]

    figure = charts.load_heatmap(weight)

    (heatmap,) = figure["data"]
    assert heatmap["type"] == "heatmap"
    assert values(heatmap["z"]).tolist() == weight
    assert "tokens" in heatmap["hovertemplate"]
    layout = figure["layout"]
    assert layout["xaxis"]["title"]["text"] == "logical expert"
    assert layout["yaxis"]["title"]["text"] == "layer"
    colour = layout["coloraxis"]
    assert (colour["cmin"], colour["cmax"]) == (0.0, 9.0)
    assert colour["colorbar"]["title"]["text"] == "tokens"
    # Viridis: colourblind-safe and readable in greyscale.
    assert [step[1] for step in colour["colorscale"]] == plotly.colors.sequential.Viridis


def test_a_pair_shares_one_colour_scale_over_both_heatmaps() -> None:
    before = [[10.0, 0.0], [6.0, 4.0]]
    after = [[5.0, 5.0], [5.0, 5.0]]

    figure = charts.node_load_pair(before, after)

    left, right = figure["data"]
    assert values(left["z"]).tolist() == before
    assert values(right["z"]).tolist() == after
    assert left["coloraxis"] == right["coloraxis"] == "coloraxis"
    assert "coloraxis2" not in figure["layout"]
    colour = figure["layout"]["coloraxis"]
    assert (colour["cmin"], colour["cmax"]) == (0.0, 10.0)
    assert colour["colorbar"]["title"]["text"] == "tokens"
    assert [figure["layout"][axis]["title"]["text"] for axis in ("xaxis", "xaxis2")] == \
        ["node", "node"]
    assert figure["layout"]["yaxis2"]["matches"] == "y"  # the same layers side by side
    assert "Node %{x}" in left["hovertemplate"] and "tokens" in left["hovertemplate"]


def test_an_all_equal_pair_still_gets_a_colour_range() -> None:
    flat = [[3.0, 3.0]]

    colour = charts.node_load_pair(flat, flat)["layout"]["coloraxis"]

    assert colour["cmin"] == 3.0 and colour["cmax"] > colour["cmin"]


def test_gpu_cells_name_the_experts_their_slots_hold() -> None:
    # 2 GPUs x 3 slots: GPU 0 holds slots 0..2, GPU 1 slots 3..5.
    before_phy2log = [[0, 1, 2, 3, 0, 1]]
    after_phy2log = [[3, 0, 0, 1, 2, 2]]

    figure = charts.gpu_load_pair([[6.0, 4.0]], [[5.0, 5.0]], before_phy2log, after_phy2log,
                                  num_gpus=2)

    left, right = figure["data"]
    assert values(left["customdata"]).tolist() == [["0, 1, 2", "3, 0, 1"]]
    assert values(right["customdata"]).tolist() == [["3, 0, 0", "1, 2, 2"]]
    for heatmap in (left, right):
        assert "GPU %{x}" in heatmap["hovertemplate"]
        assert "Experts %{customdata}" in heatmap["hovertemplate"]
    assert figure["layout"]["xaxis"]["title"]["text"] == "GPU"


def test_balancedness_chart_draws_before_after_and_the_bound() -> None:
    figure = charts.balancedness_chart([0.5, 0.25], [0.9, 0.8], [1.0, 0.95])

    lines = {line["name"]: line for line in figure["data"]}
    assert set(lines) == {"before", "after", "upper bound"}
    assert values(lines["before"]["y"]).tolist() == [0.5, 0.25]
    assert values(lines["after"]["y"]).tolist() == [0.9, 0.8]
    assert values(lines["upper bound"]["y"]).tolist() == [1.0, 0.95]
    assert values(lines["after"]["x"]).tolist() == [0, 1]
    assert figure["layout"]["xaxis"]["title"]["text"] == "layer"
    assert figure["layout"]["yaxis"]["range"] == [0, 1.05]


def test_rebalance_figures_show_the_result() -> None:
    weight = torch.tensor([[90.0, 10, 10, 10, 5, 5, 5, 5], [1, 1, 1, 1, 1, 1, 1, 60]])
    params = RebalanceParams(num_replicas=12, num_groups=2, num_nodes=2, num_gpus=4,
                             algorithm="greedy")
    result = plan(LoadFile(weight), params, Settings())

    figures = charts.rebalance_figures(result)
    document = result.as_dict()

    assert set(figures) == {"gpu", "node", "balancedness"}
    gpu_before, gpu_after = figures["gpu"]["data"]
    assert values(gpu_before["z"]).tolist() == document["before"]["gpu_load"]
    assert values(gpu_after["z"]).tolist() == document["after"]["gpu_load"]
    # Before: slot p holds expert p mod 8; GPU 1 holds slots 3, 4, 5.
    assert values(gpu_before["customdata"])[0, 1] == "3, 4, 5"
    held = values(gpu_after["customdata"])
    for layer, slots in enumerate(document["plan"]["phy2log"]):
        assert [held[layer, gpu] for gpu in range(4)] == \
            [", ".join(map(str, slots[gpu * 3:gpu * 3 + 3])) for gpu in range(4)]
    node_before, node_after = figures["node"]["data"]
    assert values(node_before["z"]).tolist() == document["before"]["node_load"]
    assert values(node_after["z"]).tolist() == document["after"]["node_load"]
    lines = {line["name"]: values(line["y"]).tolist()
             for line in figures["balancedness"]["data"]}
    assert lines == {"before": document["before"]["balancedness"], "after": document["after"]["balancedness"],
                     "upper bound": document["bound"]}


def test_replay_chart_draws_next_window_solid_and_in_sample_dashed() -> None:
    series = torch.tensor([[[8.0, 4, 3, 1]], [[1, 8, 4, 3]], [[4, 4, 4, 4]], [[2, 2, 6, 2]]])
    params = ReplayParams(num_replicas=4, num_groups=1, num_nodes=1, num_gpus=2, window=1)
    result = replay_series(LoadFile(series), params, Settings())

    figure = charts.replay_chart(result)

    lines = {line["name"]: line for line in figure["data"]}
    assert set(lines) == {f"{name}, {score}" for name in ("none", "greedy", "hybrid")
                          for score in ("next window", "in-sample")}
    for name, figures in result.strategies.items():
        honest, in_sample = lines[f"{name}, next window"], lines[f"{name}, in-sample"]
        assert values(honest["y"]).tolist() == figures.next_window
        assert values(in_sample["y"]).tolist() == figures.in_sample
        assert values(honest["x"]).tolist() == [1, 2, 3]  # the windows scored
        assert values(honest["customdata"]).tolist() == figures.moves
        assert "dash" not in honest["line"]  # solid
        assert in_sample["line"]["dash"] == "dash"
        assert honest["line"]["color"] == in_sample["line"]["color"]
    assert len({lines[f"{name}, next window"]["line"]["color"]
                for name in ("none", "greedy", "hybrid")}) == 3
    assert figure["layout"]["yaxis"]["range"] == [0, 1.05]
    assert figure["layout"]["xaxis"]["dtick"] == 1


def test_few_layers_get_one_tick_each_and_many_get_plotlys() -> None:
    few = charts.load_heatmap(np.ones((4, 6)))
    assert (few["layout"]["yaxis"]["tick0"], few["layout"]["yaxis"]["dtick"]) == (0, 1)
    pair = charts.gpu_load_pair(np.ones((3, 4)), np.ones((3, 4)), np.zeros((3, 8), dtype=int),
                                np.zeros((3, 8), dtype=int), num_gpus=4)
    assert pair["layout"]["yaxis"]["dtick"] == 1 and pair["layout"]["xaxis"]["dtick"] == 1
    many = charts.load_heatmap(np.ones((58, 256)))
    assert "dtick" not in many["layout"]["yaxis"] and "dtick" not in many["layout"]["xaxis"]
