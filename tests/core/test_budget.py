"""Plans under a move budget: the budget holds, balance grows with it, structure is kept."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core import (
    Cluster,
    OptionError,
    PlacementError,
    PlanOptions,
    make_plan,
    rebalance,
    rebalance_experts,
)
from eplb_core.budget import allocate, groups_on_nodes
from eplb_core.metrics import gpu_loads, replica_counts, trivial_placement
from eplb_core.migration import count_moves, deploy
from tests.core.helpers import Shape, random_weight, shapes

# 32 experts in 8 groups, 48 slots on 2 nodes x 4 GPUs: hierarchical.
SMALL = Shape(layers=3, experts=32, replicas=48, groups=8, nodes=2, gpus=8)


def _random_placement(gen: torch.Generator, layers: int, experts: int, slots: int) -> torch.Tensor:
    """Every expert once, the extra slots to random experts, all shuffled: [layers, slots]."""
    extra = torch.randint(experts, (layers, slots - experts), generator=gen)
    placement = torch.cat([torch.arange(experts).expand(layers, -1), extra], 1)
    return placement.gather(1, torch.rand(layers, slots, generator=gen).argsort(-1))


def _peaks(weight: torch.Tensor, phy2log: torch.Tensor, num_gpus: int) -> torch.Tensor:
    return gpu_loads(weight, phy2log, num_gpus).amax(-1)


def _drifted(weight: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return weight * (0.5 + torch.rand(weight.shape, generator=gen))


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes(), seed=st.integers(0, 2**31 - 1), structured=st.booleans(), share=st.floats(0, 1)
)
def test_the_budget_holds_and_every_expert_keeps_a_replica(shape, seed, structured, share):
    weight = random_weight(shape, seed, integer=seed % 2 == 0)
    cluster = Cluster(*shape.args)
    if structured:  # a plan of other loads: under the hierarchical policy, groups on nodes
        current = rebalance_experts(_drifted(weight, seed), *shape.args, algorithm="greedy")[0]
    else:
        current = _random_placement(
            torch.Generator().manual_seed(seed), shape.layers, shape.experts, shape.replicas
        )
    budget = round(share * shape.layers * shape.replicas)
    plan = make_plan(weight, cluster, PlanOptions(max_moves=budget), current)  # checked
    assert count_moves(current, plan.phy2log).total <= budget
    assert int(plan.logcnt.min()) >= 1


@settings(max_examples=40, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 2**31 - 1))
def test_a_larger_budget_never_gives_a_heavier_gpu(shape, seed):
    weight = random_weight(shape, seed, integer=False)
    current = rebalance_experts(_drifted(weight, seed), *shape.args, algorithm="greedy")[0]
    slots = shape.layers * shape.replicas
    peaks = [
        _peaks(
            weight,
            rebalance_experts(weight, *shape.args, current=current, max_moves=budget)[0],
            shape.gpus,
        )
        for budget in (0, slots // 20, slots // 10, slots // 4, slots)
    ]
    # Per layer (descents keep loads in float32: equal up to its rounding).
    for smaller, larger in pairwise(peaks):
        assert (larger <= smaller * (1 + 1e-6)).all()


@settings(max_examples=30, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 2**31 - 1))
def test_a_budget_of_every_slot_balances_at_least_as_well_as_the_full_replan(shape, seed):
    weight = random_weight(shape, seed, integer=False)
    current = rebalance_experts(_drifted(weight, seed), *shape.args, algorithm="greedy")[0]
    full = rebalance_experts(weight, *shape.args, current=current)[0]
    budgeted = rebalance_experts(
        weight, *shape.args, current=current, max_moves=shape.layers * shape.replicas
    )[0]
    assert (
        _peaks(weight, budgeted, shape.gpus) <= _peaks(weight, full, shape.gpus) * (1 + 1e-6)
    ).all()


def test_no_budget_returns_the_placement_in_use():
    weight = random_weight(SMALL, 0, integer=False)
    current = _random_placement(torch.Generator().manual_seed(1), 3, 32, 48)
    phy2log, _, logcnt = rebalance_experts(weight, 48, 8, 2, 8, current=current, max_moves=0)
    assert torch.equal(phy2log, current)
    assert torch.equal(logcnt, replica_counts(current, 32))


def test_without_a_budget_the_plan_is_todays_deploy():
    weight = random_weight(SMALL, 2, integer=False)
    current = rebalance_experts(_drifted(weight, 3), 48, 8, 2, 8)[0]
    phy2log = rebalance_experts(weight, 48, 8, 2, 8, current=current, max_moves=None)[0]
    plain = make_plan(weight, Cluster(48, 8, 2, 8))
    expected = deploy(
        current, plain.phy2log, plain.logcnt, 8, 2, renumber_gpus=True, keep_old_slots=True
    )
    assert torch.equal(phy2log, expected)


def test_a_budget_without_a_placement_starts_from_the_trivial_layout():
    weight = random_weight(SMALL, 4, integer=False)
    phy2log = rebalance_experts(weight, 48, 8, 2, 8, max_moves=20)[0]
    assert count_moves(trivial_placement(3, 32, 48), phy2log).total <= 20


def test_the_budget_goes_to_the_layer_that_gains():
    # Layer 0 runs the plan of its loads; layer 1 the plan of loads in the opposite order.
    cluster = Cluster(16, 1, 1, 4)
    weight = torch.tensor([[40.0, 30, 20, 10, 5, 5, 3, 2, 2, 1, 1, 1]] * 2)
    settled = make_plan(weight, cluster, PlanOptions(algorithm="greedy")).phy2log
    stale = make_plan(weight.flip(-1), cluster, PlanOptions(algorithm="greedy")).phy2log
    current = torch.stack([settled[0], stale[1]])
    plan = make_plan(weight, cluster, PlanOptions(max_moves=4), current)
    moves = count_moves(current, plan.phy2log).per_layer
    assert moves[0] == 0 and 0 < moves[1] <= 4
    assert _peaks(weight, plan.phy2log, 4)[1] < _peaks(weight, current, 4)[1]


def test_groups_stay_on_their_nodes_where_the_placement_keeps_them():
    weight = random_weight(SMALL, 5, integer=False)
    cluster = Cluster(48, 8, 2, 8)
    current = rebalance_experts(_drifted(weight, 6), 48, 8, 2, 8)[0]
    assert groups_on_nodes(current, cluster, 32)[1].all()
    for budget in (3, 10, 40, 144):
        phy2log = rebalance_experts(weight, 48, 8, 2, 8, current=current, max_moves=budget)[0]
        assert groups_on_nodes(phy2log, cluster, 32)[1].all()


def test_on_the_prefill_cluster_a_tenth_of_the_slots_keeps_most_of_the_balance():
    gen = torch.Generator().manual_seed(0)
    before = torch.rand(58, 256, generator=gen) ** 4 * 1000
    now = before * (0.7 + 0.6 * torch.rand(58, 256, generator=gen))
    current = rebalance_experts(before, 288, 8, 4, 32, algorithm="greedy")[0]
    full = rebalance_experts(now, 288, 8, 4, 32, current=current)[0]
    budget = 58 * 288 // 10
    budgeted = rebalance_experts(now, 288, 8, 4, 32, current=current, max_moves=budget)[0]
    mean = now.double().sum(-1) / 32

    def balance(placement: torch.Tensor) -> float:
        return float((mean / _peaks(now, placement, 32)).mean())

    assert count_moves(current, budgeted).total <= budget < count_moves(current, full).total
    assert balance(budgeted) > balance(current)
    assert balance(budgeted) >= 0.95 * balance(full)


def test_allocate_follows_the_best_rate_per_move():
    # Layer 0: 2 moves buy 0.4 (0.2 per move). Layer 1: 1 move buys nothing, the second 0.3
    # (0.15 per move over both: the plateau counts at the rate of the drop after it).
    cost = torch.tensor([[0, 2, 9], [0, 1, 2]])
    value = torch.tensor([[0.5, 0.9, float("-inf")], [0.5, 0.5, 0.8]], dtype=torch.float64)
    assert allocate(cost, value, 0).tolist() == [0, 0]
    assert allocate(cost, value, 1).tolist() == [0, 0]  # layer 0's step needs 2
    assert allocate(cost, value, 2).tolist() == [1, 0]
    assert allocate(cost, value, 3).tolist() == [1, 0]  # a prefix: layer 1's 2 do not fit
    assert allocate(cost, value, 4).tolist() == [1, 2]


def test_allocate_skips_points_that_balance_no_better_than_cheaper_ones():
    cost = torch.tensor([[0, 3, 1]])
    value = torch.tensor([[0.5, 0.6, 0.7]], dtype=torch.float64)
    assert allocate(cost, value, 10).tolist() == [2]


@pytest.mark.parametrize(
    "budget, message",
    [
        (-1, r"max_moves must be a whole number of slots >= 0, got -1"),
        (2.5, r"got 2.5"),
        (True, r"got True"),
        ("10", r"got '10'"),
    ],
)
def test_a_bad_budget_is_refused(budget, message):
    with pytest.raises(OptionError, match=message):
        PlanOptions(max_moves=budget)
    with pytest.raises(ValueError, match=message):
        rebalance_experts(torch.ones(2, 8), 8, 1, 1, 2, max_moves=budget)


def test_a_placement_of_the_wrong_shape_is_refused():
    with pytest.raises(PlacementError, match=r"has shape \[2, 6\]; this plan needs \[2, 8\]"):
        rebalance_experts(
            torch.ones(2, 8), 8, 1, 1, 2, current=torch.zeros(2, 6).long(), max_moves=3
        )


def test_budgeted_plans_are_deterministic():
    weight = random_weight(SMALL, 7, integer=True)
    current = rebalance_experts(_drifted(weight, 8), 48, 8, 2, 8)[0]
    first = rebalance_experts(weight, 48, 8, 2, 8, current=current, max_moves=12)[0]
    assert torch.equal(
        first, rebalance_experts(weight, 48, 8, 2, 8, current=current, max_moves=12)[0]
    )


def test_budgeted_plans_stay_on_the_weights_device(device):
    weight = random_weight(SMALL, 9, integer=False)
    current = rebalance_experts(_drifted(weight, 10), 48, 8, 2, 8)[0]
    phy2log, log2phy, logcnt = rebalance_experts(
        weight.to(device), 48, 8, 2, 8, current=current.to(device), max_moves=10
    )
    assert phy2log.device.type == log2phy.device.type == logcnt.device.type == device
    assert count_moves(current, phy2log.cpu()).total <= 10
    assert int(logcnt.min()) >= 1


def test_under_the_global_policy_a_budget_buys_balance():
    # 12 experts in 3 groups on 2 nodes: groups do not split over nodes, so any slot may take
    # any expert.
    gen = torch.Generator().manual_seed(11)
    weight = torch.rand(4, 12, generator=gen) ** 3 * 100
    current = rebalance_experts(weight.flip(-1), 24, 3, 2, 6)[0]
    phy2log = rebalance_experts(weight, 24, 3, 2, 6, current=current, max_moves=12)[0]
    assert count_moves(current, phy2log).total <= 12
    assert _peaks(weight, phy2log, 6).sum() < _peaks(weight, current, 6).sum()


def test_the_budget_is_in_the_json_document():
    weight = random_weight(SMALL, 12, integer=False)
    result = rebalance(weight, Cluster(48, 8, 2, 8), PlanOptions(max_moves=7))
    document = result.as_dict()
    assert document["params"]["max_moves"] == 7
    assert document["moves"]["total"] <= 7  # from the trivial layout, the baseline
    assert rebalance(weight, Cluster(48, 8, 2, 8)).as_dict()["params"]["max_moves"] is None
