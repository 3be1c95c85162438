"""Replay of a load time series: figures recomputed by hand on a tiny series."""

from __future__ import annotations

import pytest
import torch

from eplb_core import Cluster, OptionError, PlanOptions
from eplb_core.replay import replay, window_loads
from eplb_core.synthetic import drifting_series

# One layer that drifts and one uniform layer; 4 experts on 4 slots over 2 GPUs, so each GPU
# holds 2 experts and the plans only pair experts up (no replicas). Windows of 2 steps:
#   layer 0: W0 = [6, 4, 1, 1], W1 = [1, 6, 4, 1], W2 = [2, 2, 2, 2]; layer 1: [2, 2, 2, 2]
# and a 7th step that fills no window.
LAYER0 = [
    [3, 4, 0, 1],
    [3, 0, 1, 0],
    [1, 2, 4, 0],
    [0, 4, 0, 1],
    [1, 1, 1, 1],
    [1, 1, 1, 1],
    [100, 0, 0, 0],
]
LAYER1 = [[1, 1, 1, 1]] * 6 + [[0, 0, 0, 50]]
SERIES = torch.tensor([LAYER0, LAYER1], dtype=torch.float32).transpose(0, 1)  # [7, 2, 4]
CLUSTER = Cluster(num_replicas=4, num_groups=1, num_nodes=1, num_gpus=2)
KEEP = PlanOptions(keep_slots=True)


def test_window_loads_sums_blocks_of_steps_and_drops_the_tail():
    windows = window_loads(SERIES, 2)
    assert windows[:, 0].tolist() == [[6, 4, 1, 1], [1, 6, 4, 1], [2, 2, 2, 2]]
    assert windows[:, 1].tolist() == [[2, 2, 2, 2]] * 3


def test_replay_figures_by_hand():
    result = replay(SERIES, 2, CLUSTER)
    assert (result.window, result.num_windows, result.dropped_steps) == (2, 3, 1)
    assert list(result.strategies) == ["none", "greedy", "hybrid"]
    # Layer 1 is uniform: balancedness 1 under any plan, so each figure is (layer 0 + 1) / 2.
    # None: GPUs {0, 1} and {2, 3}. W0: 10 and 2 -> 6/10; W1: 7 and 5 -> 6/7; W2: 1.
    none = result.strategies["none"]
    assert none.in_sample == pytest.approx([(0.6 + 1) / 2, (6 / 7 + 1) / 2])
    assert none.next_window == pytest.approx([(6 / 7 + 1) / 2, 1.0])
    assert none.moves == [0, 0]
    # Greedy pairs the heaviest with the lightest. On W0: {0, 3} = 7, {1, 2} = 5 -> 6/7, and
    # on W1 that plan gives 2 and 10 -> 6/10. On W1: {1, 3} = 7, {2, 0} = 5 -> 6/7; on W2: 1.
    # With two experts per GPU the hybrid keeps the greedy's pairs (it is optimal there).
    for name in ("greedy", "hybrid"):
        figures = result.strategies[name]
        assert figures.in_sample == pytest.approx([(6 / 7 + 1) / 2, (6 / 7 + 1) / 2])
        assert figures.next_window == pytest.approx([(0.6 + 1) / 2, 1.0])
        assert figures.mean_in_sample == pytest.approx((6 / 7 + 1) / 2)
        assert figures.mean_next_window == pytest.approx(((0.6 + 1) / 2 + 1) / 2)
        # The plans' slots: W0 -> layer 0 [0, 3, 1, 2], layer 1 [0, 2, 1, 3]; W1 -> layer 0
        # [1, 3, 2, 0], layer 1 unchanged. From the trivial [0, 1, 2, 3]: 3 + 2, then 3 + 0.
        assert figures.moves == [5, 3]
        assert figures.total_moves == 8


def test_preserving_slots_moves_fewer_copies_for_the_same_balance():
    plain = replay(SERIES, 2, CLUSTER, algorithms=["greedy"])
    kept = replay(SERIES, 2, CLUSTER, KEEP, algorithms=["greedy"])
    assert list(kept.strategies) == ["none", "greedy"]
    assert kept.strategies["greedy"].next_window == plain.strategies["greedy"].next_window
    # W0: layer 0 becomes [0, 3, 2, 1] (2 moves), layer 1 [0, 2, 1, 3] (2 moves).
    # W1: layer 0 becomes [1, 3, 2, 0] (1 move per GPU), layer 1 stays.
    assert kept.strategies["greedy"].moves == [4, 2]


def test_renumbering_gpus_keeps_the_balance_and_moves_no_more():
    plain = replay(SERIES, 2, CLUSTER, KEEP, algorithms=["greedy"])
    both = replay(
        SERIES, 2, CLUSTER, PlanOptions(keep_slots=True, renumber_gpus=True), algorithms=["greedy"]
    )
    assert both.strategies["greedy"].next_window == pytest.approx(
        plain.strategies["greedy"].next_window
    )
    assert both.strategies["greedy"].total_moves <= plain.strategies["greedy"].total_moves


def test_none_keeps_the_placement_in_use():
    current = torch.tensor([[0, 3, 1, 2], [0, 1, 2, 3]])  # layer 0 already paired as greedy's W0
    result = replay(SERIES, 2, CLUSTER, algorithms=["greedy"], current=current)
    none = result.strategies["none"]
    # Layer 0 on W0: {0, 3} = 7, {1, 2} = 5 -> 6/7; on W1: 2 and 10 -> 6/10; on W2: 1.
    assert none.in_sample == pytest.approx([(6 / 7 + 1) / 2, (0.6 + 1) / 2])
    assert none.next_window == pytest.approx([(0.6 + 1) / 2, 1.0])
    # Greedy's first plan only moves layer 1's two slots away from this placement.
    assert result.strategies["greedy"].moves == [2, 3]


def test_progress_reports_windows_planned():
    calls = []
    replay(SERIES, 2, CLUSTER, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 4), (4, 4)]


def test_replay_of_integer_counts_like_an_engines_dump():
    result = replay(SERIES.long(), 2, CLUSTER, algorithms=["greedy"])
    assert result.strategies["greedy"].next_window == pytest.approx([(0.6 + 1) / 2, 1.0])


@pytest.mark.parametrize(
    "series, window, message",
    [
        (SERIES[0], 2, r"needs a time series \[steps, layers, experts\], got shape \[2, 4\]"),
        (SERIES, 0, "window must be a positive number of steps, got 0"),
        (SERIES, 4, "needs at least 2 windows of 4 steps; the series has 7 steps with load"),
        (-SERIES, 2, "negative values"),
    ],
)
def test_replay_rejects_bad_input(series, window, message):
    with pytest.raises(ValueError, match=message):
        replay(series, window, CLUSTER)


def test_replay_rejects_a_bad_cluster_algorithm_or_placement():
    with pytest.raises(ValueError, match="4 slots cannot be split evenly over 3 GPUs"):
        replay(SERIES, 2, Cluster(4, 1, 1, 3))
    with pytest.raises(ValueError, match="unknown algorithm 'magic'"):
        replay(SERIES, 2, CLUSTER, algorithms=["magic"])
    with pytest.raises(ValueError, match=r"this plan needs \[2, 4\]"):
        replay(SERIES, 2, CLUSTER, current=torch.zeros(2, 3, dtype=torch.int64))


def test_a_budget_of_no_move_keeps_the_placement_in_use():
    result = replay(SERIES, 2, CLUSTER, algorithms=["greedy"], budgets=[0])
    (entry,) = result.budgets
    assert (entry.algorithm, entry.budget, entry.max_moves) == ("greedy", 0, 0)
    assert entry.figures == result.strategies["none"]


def test_a_share_and_a_slot_count_that_compare_equal_are_two_budgets():
    # 1.0 is every slot (2 layers x 4 slots), 1 is one slot: both are replayed and named.
    result = replay(SERIES, 2, CLUSTER, algorithms=["greedy"], budgets=[1.0, 1])
    assert [(entry.budget, entry.max_moves) for entry in result.budgets] == [(1.0, 8), (1, 1)]
    assert [type(entry.budget) for entry in result.budgets] == [float, int]


def test_budgets_replay_each_algorithm_under_each_budget():
    series = drifting_series(60, layers=4, experts=16, seed=1)
    cluster = Cluster(24, 4, 2, 4)
    result = replay(series, 10, cluster, budgets=[None, 0.1, 3])
    assert [(entry.algorithm, entry.budget, entry.max_moves) for entry in result.budgets] == [
        ("greedy", None, None),
        ("greedy", 0.1, 9),
        ("greedy", 3, 3),
        ("hybrid", None, None),
        ("hybrid", 0.1, 9),
        ("hybrid", 3, 3),
    ]
    for entry in result.budgets:
        if entry.max_moves is not None:
            assert max(entry.figures.moves) <= entry.max_moves
    # No budget: the full plan, deployed over the placement before it.
    deployed = replay(series, 10, cluster, PlanOptions(keep_slots=True, renumber_gpus=True))
    assert result.budgets[0].figures == deployed.strategies["greedy"]
    # The strategies are as without budgets.
    assert result.strategies == replay(series, 10, cluster).strategies


def test_a_budget_in_the_options_plans_every_window_from_the_one_before():
    series = drifting_series(60, layers=4, experts=16, seed=2)
    result = replay(
        series, 10, Cluster(24, 4, 2, 4), PlanOptions(max_moves=5), algorithms=["hybrid"]
    )
    assert max(result.strategies["hybrid"].moves) <= 5
    assert result.as_dict()["params"]["max_moves"] == 5


def test_budgets_in_the_json_document():
    document = replay(SERIES, 2, CLUSTER, algorithms=["greedy"], budgets=[0.5]).as_dict()
    (entry,) = document["budgets"]
    assert entry["algorithm"] == "greedy" and entry["budget"] == 0.5
    assert entry["max_moves"] == 4  # half of 2 layers x 4 slots
    assert set(entry) >= {
        "in_sample",
        "next_window",
        "moves",
        "mean_in_sample",
        "mean_next_window",
        "total_moves",
    }
    assert replay(SERIES, 2, CLUSTER).as_dict()["budgets"] == []


@pytest.mark.parametrize("budget", [-1, 1.5, True, "10%"])
def test_a_bad_budget_is_refused_before_any_work(budget):
    with pytest.raises(OptionError, match="a move budget is a share of all slots"):
        replay(SERIES, 2, CLUSTER, budgets=[budget])


@pytest.mark.parametrize("expert_bytes", [0, -5, 1.5])
def test_a_bad_expert_size_is_refused(expert_bytes):
    with pytest.raises(OptionError, match="expert_bytes must be a positive whole number"):
        replay(SERIES, 2, CLUSTER, expert_bytes=expert_bytes)
