"""app.charts: the figures show the numbers they are given; pairs share one colour scale in
tokens and show each load over its layer's mean in the other view; GPU cells name the experts
they hold; narrow panels get layouts that fit them."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import plotly.colors
import torch

from app import charts
from app.config import Settings
from app.schemas import RebalanceParams, ReplayParams, SweepParams
from app.service import plan, prepare_sweep, replay_series
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


def test_a_pair_shares_one_colour_scale_over_both_heatmaps_in_tokens() -> None:
    before = [[10.0, 0.0], [6.0, 4.0]]
    after = [[5.0, 5.0], [5.0, 5.0]]

    figure = charts.node_load_pair(before, after)["views"]["tokens"]

    left, right = figure["data"]
    assert values(left["z"]).tolist() == before
    assert values(right["z"]).tolist() == after
    assert left["coloraxis"] == right["coloraxis"] == "coloraxis"
    assert "coloraxis2" not in figure["layout"]
    colour = figure["layout"]["coloraxis"]
    assert (colour["cmin"], colour["cmax"]) == (0.0, 10.0)
    assert colour["colorbar"]["title"]["text"] == "tokens"
    assert [figure["layout"][axis]["title"]["text"] for axis in ("xaxis", "xaxis2")] == [
        "node",
        "node",
    ]
    assert figure["layout"]["yaxis2"]["matches"] == "y"  # the same layers side by side
    assert "Node %{x}" in left["hovertemplate"] and "tokens" in left["hovertemplate"]


def test_the_ratio_view_shows_each_load_over_its_layer_mean_on_its_own_scale() -> None:
    before = [[30.0, 10.0, 0.0, 0.0], [1.0, 1.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0]]
    after = [[12.0, 10.0, 9.0, 9.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]]

    figure = charts.node_load_pair(before, after)["views"]["ratio"]

    left, right = figure["data"]
    assert values(left["z"]).tolist() == [
        [3.0, 1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5, 2.5],
        [None, None, None, None],
    ]  # an idle layer: a gap
    assert values(right["z"]).tolist() == [
        [1.2, 1.0, 0.9, 0.9],
        [1.0, 1.0, 1.0, 1.0],
        [None, None, None, None],
    ]
    # Each heatmap on its own scale, so that the plan's small imbalance fills its colours.
    assert (left["coloraxis"], right["coloraxis"]) == ("coloraxis2", "coloraxis3")
    layout = figure["layout"]
    assert (layout["coloraxis2"]["cmin"], layout["coloraxis2"]["cmax"]) == (0.0, 3.0)
    assert (layout["coloraxis3"]["cmin"], layout["coloraxis3"]["cmax"]) == (0.9, 1.2)
    for axis in (layout["coloraxis2"], layout["coloraxis3"]):
        # White where a load is at its layer's mean: the scale's stop at 1.0.
        neutral = (1 - axis["cmin"]) / (axis["cmax"] - axis["cmin"])
        assert [neutral, charts.NEUTRAL] in axis["colorscale"]
        assert axis["colorscale"][0][0] == 0 and axis["colorscale"][-1][0] == 1
        assert axis["colorbar"]["title"]["text"] == "× layer mean"
    # Hover gives the ratio and the tokens.
    assert values(right["customdata"])[0, 0].tolist() == [12.0]
    assert "× layer mean" in right["hovertemplate"] and "tokens" in right["hovertemplate"]


def test_a_pair_opens_on_the_view_that_shows_the_imbalance_left() -> None:
    hot = [[100.0, 0.0, 0.0, 0.0]] * 2
    # After: 4% apart, invisible next to the hot layout in tokens: the ratio view.
    nearly_flat = [[26.0, 25.0, 25.0, 24.0]] * 2
    assert charts.node_load_pair(hot, nearly_flat)["view"] == "ratio"
    # After: still far apart on the tokens scale: tokens show it.
    rough = [[60.0, 20.0, 10.0, 10.0]] * 2
    assert charts.node_load_pair(hot, rough)["view"] == "tokens"


def test_an_all_equal_pair_still_gets_a_colour_range() -> None:
    flat = [[3.0, 3.0]]

    pair = charts.node_load_pair(flat, flat)

    tokens = pair["views"]["tokens"]["layout"]["coloraxis"]
    assert tokens["cmin"] == 3.0 and tokens["cmax"] > tokens["cmin"]
    ratio = pair["views"]["ratio"]["layout"]["coloraxis3"]
    assert ratio["cmin"] < 1 < ratio["cmax"]  # a perfect plan is all white, not all red


def test_gpu_cells_name_the_experts_their_slots_hold_in_both_views() -> None:
    # 2 GPUs x 3 slots: GPU 0 holds slots 0..2, GPU 1 slots 3..5.
    before_phy2log = [[0, 1, 2, 3, 0, 1]]
    after_phy2log = [[3, 0, 0, 1, 2, 2]]

    pair = charts.gpu_load_pair(
        [[6.0, 4.0]], [[5.0, 5.0]], before_phy2log, after_phy2log, num_gpus=2
    )

    left, right = pair["views"]["tokens"]["data"]
    assert values(left["customdata"]).tolist() == [["0, 1, 2", "3, 0, 1"]]
    assert values(right["customdata"]).tolist() == [["3, 0, 0", "1, 2, 2"]]
    for heatmap in (left, right):
        assert "GPU %{x}" in heatmap["hovertemplate"]
        assert "Experts %{customdata}" in heatmap["hovertemplate"]
    left, right = pair["views"]["ratio"]["data"]
    assert left["customdata"] == [[[6.0, "0, 1, 2"], [4.0, "3, 0, 1"]]]
    assert right["customdata"] == [[[5.0, "3, 0, 0"], [5.0, "1, 2, 2"]]]
    assert "Experts %{customdata[1]}" in left["hovertemplate"]
    assert pair["views"]["tokens"]["layout"]["xaxis"]["title"]["text"] == "GPU"


def test_a_narrow_panel_stacks_a_pair_and_keeps_titles_apart() -> None:
    pair = charts.node_load_pair([[4.0, 2.0]], [[3.0, 3.0]])

    for figure in pair["views"].values():
        wide, narrow = figure["layout"], figure["narrow"]["layout"]
        assert figure["narrow"]["max_width"] == charts.NARROW_WIDTH
        # Wide: side by side, each title over its own heatmap.
        left, right = wide["xaxis"]["domain"], wide["xaxis2"]["domain"]
        assert left[1] < right[0]
        titles = wide["annotations"]
        assert [title["x"] for title in titles] == [sum(left) / 2, sum(right) / 2]
        # Narrow: one above the other, full width, each title on top of its own row.
        assert narrow["xaxis"]["domain"] == narrow["xaxis2"]["domain"] == [0.0, 1.0]
        top, bottom = narrow["yaxis"]["domain"], narrow["yaxis2"]["domain"]
        assert bottom[1] < top[0]
        assert [title["y"] for title in narrow["annotations"]] == [top[1], bottom[1]]
        assert narrow["yaxis2"]["showticklabels"] is True


def test_balancedness_chart_draws_before_after_and_the_bound_on_top() -> None:
    figure = charts.balancedness_chart([0.5, 0.25], [0.9, 0.8], [1.0, 0.95])

    lines = {line["name"]: line for line in figure["data"]}
    assert [line["name"] for line in figure["data"]] == ["before", "after", "upper bound"]
    # A plan that reaches the bound: the bound, last (on top), thin and dotted in its own
    # colour over a wider "after" line, so that both show.
    bound, after = lines["upper bound"]["line"], lines["after"]["line"]
    assert bound["dash"] == "dot" and "dash" not in after
    assert bound["color"] not in {lines["before"]["line"]["color"], after["color"]}
    assert bound["width"] < after["width"]
    assert values(lines["before"]["y"]).tolist() == [0.5, 0.25]
    assert values(lines["after"]["y"]).tolist() == [0.9, 0.8]
    assert values(lines["upper bound"]["y"]).tolist() == [1.0, 0.95]
    assert values(lines["after"]["x"]).tolist() == [0, 1]
    assert figure["layout"]["xaxis"]["title"]["text"] == "layer"
    assert figure["layout"]["yaxis"]["range"] == [0, 1.05]


def test_rebalance_figures_show_the_result() -> None:
    weight = torch.tensor([[90.0, 10, 10, 10, 5, 5, 5, 5], [1, 1, 1, 1, 1, 1, 1, 60]])
    params = RebalanceParams(
        num_replicas=12, num_groups=2, num_nodes=2, num_gpus=4, algorithm="greedy"
    )
    result = plan(LoadFile(weight), params, Settings())

    figures = charts.rebalance_figures(result)
    document = result.as_dict()

    assert set(figures) == {"gpu", "node", "balancedness"}
    assert figures["gpu"]["view"] in figures["gpu"]["views"]
    gpu_before, gpu_after = figures["gpu"]["views"]["tokens"]["data"]
    assert values(gpu_before["z"]).tolist() == document["before"]["gpu_load"]
    assert values(gpu_after["z"]).tolist() == document["after"]["gpu_load"]
    # Before: slot p holds expert p mod 8; GPU 1 holds slots 3, 4, 5.
    assert values(gpu_before["customdata"])[0, 1] == "3, 4, 5"
    held = values(gpu_after["customdata"])
    for layer, slots in enumerate(document["plan"]["phy2log"]):
        assert [held[layer, gpu] for gpu in range(4)] == [
            ", ".join(map(str, slots[gpu * 3 : gpu * 3 + 3])) for gpu in range(4)
        ]
    node_before, node_after = figures["node"]["views"]["tokens"]["data"]
    assert values(node_before["z"]).tolist() == document["before"]["node_load"]
    assert values(node_after["z"]).tolist() == document["after"]["node_load"]
    lines = {line["name"]: values(line["y"]).tolist() for line in figures["balancedness"]["data"]}
    assert lines == {
        "before": document["before"]["balancedness"],
        "after": document["after"]["balancedness"],
        "upper bound": document["bound"],
    }


def test_rebalance_figures_have_no_node_pair_when_gpus_do_not_split_over_nodes() -> None:
    weight = torch.tensor([[90.0, 10, 10, 10, 5, 5, 5, 5], [1, 1, 1, 1, 1, 1, 1, 60]])
    params = RebalanceParams(
        num_replicas=12, num_groups=2, num_nodes=3, num_gpus=4, algorithm="greedy", policy="global"
    )

    figures = charts.rebalance_figures(plan(LoadFile(weight), params, Settings()))

    assert figures["node"] is None
    assert figures["gpu"] is not None


def test_replay_chart_draws_next_window_solid_and_in_sample_dashed() -> None:
    series = torch.tensor([[[8.0, 4, 3, 1]], [[1, 8, 4, 3]], [[4, 4, 4, 4]], [[2, 2, 6, 2]]])
    params = ReplayParams(num_replicas=4, num_groups=1, num_nodes=1, num_gpus=2, window=1)
    result = replay_series(LoadFile(series), params, Settings())

    figure = charts.replay_chart(result)

    lines = {line["name"]: line for line in figure["data"]}
    assert set(lines) == {
        f"{name}, {score}"
        for name in ("none", "greedy", "hybrid")
        for score in ("next window", "in-sample")
    }
    for name, figures in result.strategies.items():
        honest, in_sample = lines[f"{name}, next window"], lines[f"{name}, in-sample"]
        assert values(honest["y"]).tolist() == figures.next_window
        assert values(in_sample["y"]).tolist() == figures.in_sample
        assert values(honest["x"]).tolist() == [1, 2, 3]  # the windows scored
        assert values(honest["customdata"]).tolist() == figures.moves
        assert "dash" not in honest["line"]  # solid
        assert in_sample["line"]["dash"] == "dash"
        assert honest["line"]["color"] == in_sample["line"]["color"]
    honest = [lines[f"{name}, next window"] for name in ("none", "greedy", "hybrid")]
    # Lines that coincide stay apart: each strategy its colour and marker, and greedy's
    # lines, drawn before hybrid's, wider than them.
    assert len({line["line"]["color"] for line in honest}) == 3
    assert len({line["marker"]["symbol"] for line in honest}) == 3
    for score in ("next window", "in-sample"):
        greedy, hybrid = lines[f"greedy, {score}"], lines[f"hybrid, {score}"]
        assert greedy["line"]["width"] > hybrid["line"]["width"]
        assert figure["data"].index(greedy) < figure["data"].index(hybrid)
    assert figure["layout"]["yaxis"]["range"] == [0, 1.05]
    assert figure["layout"]["xaxis"]["dtick"] == 1


def test_few_layers_get_one_tick_each_and_many_get_plotlys() -> None:
    few = charts.load_heatmap(np.ones((4, 6)))
    assert (few["layout"]["yaxis"]["tick0"], few["layout"]["yaxis"]["dtick"]) == (0, 1)
    pair = charts.gpu_load_pair(
        np.ones((3, 4)),
        np.ones((3, 4)),
        np.zeros((3, 8), dtype=int),
        np.zeros((3, 8), dtype=int),
        num_gpus=4,
    )
    for view in pair["views"].values():
        assert view["layout"]["yaxis"]["dtick"] == 1 and view["layout"]["xaxis"]["dtick"] == 1
    many = charts.load_heatmap(np.ones((58, 256)))
    assert "dtick" not in many["layout"]["yaxis"] and "dtick" not in many["layout"]["xaxis"]


def test_budget_labels_read_as_people_write_them() -> None:
    assert charts.budget_label(None, None) == "full plan"
    assert charts.budget_label(0.05, 835) == "5%"
    assert charts.budget_label(0.125, 2088) == "12.5%"
    assert charts.budget_label(500, 500) == "500 slots"
    assert charts.budget_label(1, 1) == "1 slot"


def test_the_choice_in_use_is_ringed_only_where_the_sweep_has_it() -> None:
    weight = torch.tensor([[90.0, 10, 10, 10, 5, 5, 5, 5], [1, 1, 1, 1, 1, 1, 1, 60]])
    params = SweepParams(
        num_replicas=[8, 12], num_groups=2, num_nodes=2, num_gpus=4, algorithm="greedy"
    )
    result = prepare_sweep(LoadFile(weight), params, Settings())(None)

    ringed = charts.sweep_figures(result, "auto", 1, current_replicas=12)
    (ring,) = [trace for trace in ringed["slots"]["data"] if trace["name"] == "your choice"]
    (point,) = [p for p in result.points if p.num_replicas == 12]
    assert (ring["x"], ring["y"]) == ([point.slots_per_gpu], [point.mean_balancedness])
    elsewhere = charts.sweep_figures(result, "auto", 1, current_replicas=16)
    assert "your choice" not in [trace["name"] for trace in elsewhere["slots"]["data"]]
    # One policy: no comparison to draw; one window: no windows to draw.
    assert ringed["policies"] is None and ringed["windows"] is None
    # "auto" is named as it resolves (groups split over nodes: hierarchical).
    assert "hierarchical" in [trace["name"] for trace in ringed["slots"]["data"]]


def test_a_layer_draws_both_placements_against_the_mean() -> None:
    figures = charts.layer_figures(
        [8.0, 2.0, 2.0],
        [[10.0, 2.0], [6.0, 6.0]],
        [[1, 1, 2], [2, 1, 1]],
        ["in <b>use</b>", "the plan"],
    )

    bars = {trace["name"]: trace for trace in figures["gpu"]["data"]}
    assert set(bars) == {"in &lt;b&gt;use&lt;/b&gt;", "the plan", "mean GPU load"}
    assert bars["the plan"]["y"] == [6.0, 6.0]
    assert bars["mean GPU load"]["y"] == [6.0, 6.0]  # (10 + 2) / 2
    assert bars["mean GPU load"]["line"]["dash"] == "dot"
    experts = {trace["name"]: trace for trace in figures["experts"]["data"]}
    assert experts["tokens"]["y"] == [8.0, 2.0, 2.0]
    after, before = experts["replicas, the plan"], experts["replicas, in &lt;b&gt;use&lt;/b&gt;"]
    assert (after["type"], after["yaxis"], after["y"]) == ("bar", "y2", [2, 1, 1])
    assert (before["mode"], before["yaxis"], before["y"]) == ("markers", "y2", [1, 1, 2])
    # Replicas under the loads, on one expert axis.
    layout = figures["experts"]["layout"]
    assert layout["yaxis2"]["domain"][1] < layout["yaxis"]["domain"][0]
    assert layout["yaxis2"]["dtick"] == 1
