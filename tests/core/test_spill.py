"""The spill policy's guarantees (homes kept, at most spill_slots foreign slots per GPU, never
less balanced than the hierarchical plan), policy="auto" unchanged, and the options' checks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core import Cluster, PlanOptions, errors, make_plan, rebalance, rebalance_experts
from eplb_core.metrics import balancedness, balancedness_bound, gpu_loads
from eplb_core.spill import MIN_GAIN
from eplb_core.synthetic import hot_expert_loads, uniform_loads, zipf_loads
from tests.core.helpers import Shape, random_weight, shapes
from tests.core.test_policy import check_plan
from tests.reference import published_rebalance


@st.composite
def hierarchical_shapes(draw: st.DrawFn) -> Shape:
    """A shape the hierarchical and spill policies take: groups split over nodes, experts into
    groups, GPUs over nodes."""
    nodes = draw(st.integers(1, 4))
    gpus = nodes * draw(st.integers(1, 4))
    groups = nodes * draw(st.integers(1, 3))
    experts = groups * draw(st.integers(1, 5))
    per_gpu = -(-experts // gpus) + draw(st.integers(0, 3))
    return Shape(draw(st.integers(1, 4)), experts, gpus * per_gpu, groups, nodes, gpus)


def node_of_slot(shape: Shape) -> torch.Tensor:
    return torch.arange(shape.replicas) // (shape.replicas // shape.nodes)


def homes(hierarchical: torch.Tensor, shape: Shape) -> torch.Tensor:
    """Each expert's node in a hierarchical plan (all its replicas are there): [layers, experts]."""
    nodes = node_of_slot(shape).expand_as(hierarchical)
    return torch.empty(hierarchical.shape[0], shape.experts, dtype=torch.int64).scatter_(
        1, hierarchical, nodes
    )


def check_spill(
    weight: torch.Tensor,
    shape: Shape,
    spill_slots: int,
    plan: tuple[torch.Tensor, ...],
    hierarchical: tuple[torch.Tensor, ...],
) -> None:
    """The spill plan against the hierarchical plan of the same loads and options."""
    # The engine's invariants (phy2log, log2phy, logcnt consistent, every expert held): those of
    # any plan, without the hierarchical rule that all of a group's replicas share a node.
    check_plan(weight, replace(shape, groups=1, nodes=1), plan)
    phy2log = plan[0]
    home = homes(hierarchical[0], shape)
    # Every group keeps its home: each expert has a replica on its group's node (the
    # hierarchical plan's, where all of a group's replicas are), and the groups' homes are
    # whole groups.
    group_home = home.view(weight.shape[0], shape.groups, -1)
    assert torch.equal(group_home, group_home[..., :1].expand_as(group_home))
    at_home = home.gather(1, phy2log) == node_of_slot(shape)
    held_at_home = torch.zeros_like(home).scatter_add_(1, phy2log, at_home.long())
    assert int(held_at_home.min()) >= 1
    # At most spill_slots slots per GPU hold another node's experts.
    assert int((~at_home).view(weight.shape[0], shape.gpus, -1).sum(-1).max()) <= spill_slots
    # A layer spills only when it gains at least MIN_GAIN on the planned loads; every other
    # layer is the hierarchical plan's, bit for bit.
    spilled = (~at_home).any(-1)
    after = balancedness(gpu_loads(weight, phy2log, shape.gpus))
    before = balancedness(gpu_loads(weight, hierarchical[0], shape.gpus))
    assert bool((after[spilled] >= before[spilled] + MIN_GAIN - 1e-12).all())
    assert torch.equal(phy2log[~spilled], hierarchical[0][~spilled])
    assert torch.equal(plan[2][~spilled], hierarchical[2][~spilled])


@settings(max_examples=80, deadline=None)
@given(
    shape=hierarchical_shapes(),
    seed=st.integers(0, 2**16),
    integer=st.booleans(),
    algorithm=st.sampled_from(["greedy", "hybrid"]),
    data=st.data(),
)
def test_spill_invariants(
    shape: Shape, seed: int, integer: bool, algorithm: str, data: st.DataObject
) -> None:
    spill_slots = data.draw(st.integers(0, shape.replicas // shape.gpus))
    weight = random_weight(shape, seed, integer)
    plan = rebalance_experts(
        weight, *shape.args, algorithm=algorithm, seed=seed, policy="spill", spill_slots=spill_slots
    )
    hierarchical = rebalance_experts(
        weight, *shape.args, algorithm=algorithm, seed=seed, policy="hierarchical"
    )
    check_spill(weight, shape, spill_slots, plan, hierarchical)
    if spill_slots == 0:
        assert all(torch.equal(a, b) for a, b in zip(plan, hierarchical))


@pytest.mark.parametrize("algorithm", ["greedy", "hybrid"])
@pytest.mark.parametrize("loads", [zipf_loads, hot_expert_loads])
def test_skewed_deepseek_loads_spill_for_balance(device: str, algorithm: str, loads) -> None:
    shape = Shape(layers=8, experts=256, replicas=288, groups=8, nodes=4, gpus=32)
    weight = loads(layers=8).to(device)
    for spill_slots in (1, 2):
        plan = rebalance_experts(
            weight, *shape.args, algorithm=algorithm, policy="spill", spill_slots=spill_slots
        )
        hierarchical = rebalance_experts(
            weight, *shape.args, algorithm=algorithm, policy="hierarchical"
        )
        assert all(t.device.type == device for t in plan)
        check_spill(
            weight.cpu(),
            shape,
            spill_slots,
            tuple(t.cpu() for t in plan),
            tuple(t.cpu() for t in hierarchical),
        )
        # Skewed loads leave some node busier than the mean: most layers spill, and come close
        # to the global policy's balance.
        spilled = balancedness(gpu_loads(weight.cpu(), plan[0].cpu(), 32))
        kept = balancedness(gpu_loads(weight.cpu(), hierarchical[0].cpu(), 32))
        assert int((spilled > kept).sum()) >= 6
        assert float(spilled.mean()) > 0.93


def test_a_busy_node_hands_load_to_a_light_one() -> None:
    # Two nodes of one GPU (3 slots each); group 0 (experts 0, 1) carries 20 tokens, group 1
    # (experts 2, 3) 2. Hierarchically node 0 holds 0, 0, 1 (20 tokens), node 1 holds 2, 2, 3.
    # Spilling, node 1 gives up its spare replica of expert 2 for a replica of expert 1: the
    # move that takes the most off node 0 (5 tokens) without pushing node 1 past the mean.
    weight = torch.tensor([[10.0, 10.0, 1.0, 1.0]])
    hierarchical = rebalance_experts(weight, 6, 2, 2, 2, policy="hierarchical")
    assert gpu_loads(weight, hierarchical[0], 2).tolist() == [[20.0, 2.0]]
    phy2log, _, logcnt = rebalance_experts(weight, 6, 2, 2, 2, policy="spill")
    assert logcnt.tolist() == [[2, 2, 1, 1]]
    assert sorted(phy2log[0, :3].tolist()) == [0, 0, 1]
    assert sorted(phy2log[0, 3:].tolist()) == [1, 2, 3]
    assert gpu_loads(weight, phy2log, 2).tolist() == [[15.0, 7.0]]


def test_near_uniform_loads_keep_the_hierarchical_plan() -> None:
    weight = uniform_loads(layers=16)
    plan = rebalance_experts(weight, 288, 8, 4, 32, policy="spill")
    hierarchical = rebalance_experts(weight, 288, 8, 4, 32, policy="hierarchical")
    assert all(torch.equal(a, b) for a, b in zip(plan, hierarchical))


def test_spill_is_deterministic_for_a_seed() -> None:
    weight = zipf_loads(layers=4)
    first = rebalance_experts(weight, 288, 8, 4, 32, policy="spill", seed=5, num_candidates=8)
    second = rebalance_experts(weight, 288, 8, 4, 32, policy="spill", seed=5, num_candidates=8)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def foreign_slots(phy2log: torch.Tensor, shape: Shape, spill_slots: int = 1) -> torch.Tensor:
    """The slots holding another node's experts, [layers, slots], after checking the spill
    structure: each group has every expert on exactly one node (its home), each node is home
    to groups / nodes groups, and each GPU holds at most ``spill_slots`` foreign replicas."""
    layers, group_size = phy2log.shape[0], shape.experts // shape.groups
    node = node_of_slot(shape).expand(layers, -1)
    held = torch.zeros(layers, shape.nodes, shape.experts, dtype=torch.bool)
    held[torch.arange(layers).unsqueeze(-1), node, phy2log] = True
    home = held.view(layers, shape.nodes, shape.groups, group_size).all(-1)
    assert bool((home.sum(1) == 1).all())
    assert bool((home.sum(2) == shape.groups // shape.nodes).all())
    group_home = home.int().argmax(1)  # [layers, groups]
    foreign = group_home.gather(1, phy2log // group_size) != node
    assert int(foreign.view(layers, shape.gpus, -1).sum(-1).max()) <= spill_slots
    return foreign


def test_deploying_a_spill_plan_keeps_its_homes() -> None:
    # Renumbering moves whole nodes, and GPUs within a node, so homes stay whole.
    shape = Shape(layers=6, experts=256, replicas=288, groups=8, nodes=4, gpus=32)
    weight = zipf_loads(layers=6)
    current = rebalance_experts(zipf_loads(layers=6, seed=1), *shape.args)[0]
    options = PlanOptions(policy="spill", keep_slots=True, renumber_gpus=True)
    deployed = make_plan(weight, Cluster(*shape.args), options, current)
    undeployed = make_plan(
        weight, Cluster(*shape.args), replace(options, keep_slots=False, renumber_gpus=False)
    )
    assert torch.equal(deployed.logcnt, undeployed.logcnt)
    assert bool(foreign_slots(deployed.phy2log, shape).any())
    assert torch.allclose(
        balancedness(gpu_loads(weight, deployed.phy2log, 32)),
        balancedness(gpu_loads(weight, undeployed.phy2log, 32)),
    )


@pytest.mark.parametrize("budget", [40, 400, 10_000])
def test_a_move_budget_keeps_the_spill_structure(budget: int) -> None:
    # From the placement in use (a spill plan of other loads) a budgeted plan moves nodes only
    # as wholes and never spills more than the policy does; from the trivial layout, a budget
    # that affords the spill plan deploys it as a whole.
    shape = Shape(layers=6, experts=256, replicas=288, groups=8, nodes=4, gpus=32)
    cluster, options = Cluster(*shape.args), PlanOptions(policy="spill", max_moves=budget)
    weight = zipf_loads(layers=6)
    in_use = rebalance_experts(zipf_loads(layers=6, seed=1), *shape.args, policy="spill")[0]
    foreign_slots(in_use, shape)

    plan = make_plan(weight, cluster, options, in_use)

    foreign_slots(plan.phy2log, shape)
    assert int((plan.phy2log != in_use).sum()) <= budget
    if budget == 10_000:
        foreign_slots(make_plan(weight, cluster, options).phy2log, shape)


def test_rebalance_reports_the_spill_plan() -> None:
    result = rebalance(
        zipf_loads(layers=3), Cluster(288, 8, 4, 32), PlanOptions(policy="spill", spill_slots=2)
    )
    document = result.as_dict()
    assert document["params"]["policy"] == "spill"
    assert document["params"]["spill_slots"] == 2
    assert document["plan"]["policy"] == "spill"
    # A spill plan is a plan of the global policy: its bound holds, the hierarchical one not.
    assert torch.equal(
        result.bound,
        balancedness_bound(zipf_loads(layers=3).double(), Cluster(288, 8, 4, 32), "global"),
    )
    assert bool((result.after.balancedness <= result.bound + 1e-9).all())


@settings(max_examples=40, deadline=None)
@given(
    shape=shapes(), seed=st.integers(0, 2**16), integer=st.booleans(), spill_slots=st.integers(0, 1)
)
def test_auto_is_todays_plan(shape: Shape, seed: int, integer: bool, spill_slots: int) -> None:
    # "auto" is DeepSeek's rule whatever spill_slots says: greedy gives the published plans.
    weight = random_weight(shape, seed, integer)
    ours = rebalance_experts(
        weight, *shape.args, algorithm="greedy", policy="auto", spill_slots=spill_slots
    )
    assert all(torch.equal(a, b) for a, b in zip(ours, published_rebalance(weight, *shape.args)))
    resolved = Cluster(*shape.args).check(shape.experts)
    hybrid = rebalance_experts(
        weight, *shape.args, seed=seed, policy="auto", spill_slots=spill_slots
    )
    explicit = rebalance_experts(weight, *shape.args, seed=seed, policy=resolved)
    assert all(torch.equal(a, b) for a, b in zip(hybrid, explicit))


@pytest.mark.parametrize(
    ("args", "options", "error", "message"),
    [
        (
            (288, 8, 4, 32),
            {"policy": "balanced"},
            "OptionError",
            "unknown policy 'balanced'; expected one of .*'spill'",
        ),
        (
            (288, 8, 4, 32),
            {"policy": "spill", "spill_slots": -1},
            "OptionError",
            "spill_slots must be an integer >= 0, got -1",
        ),
        (
            (288, 8, 4, 32),
            {"policy": "spill", "spill_slots": 1.0},
            "OptionError",
            "spill_slots must be an integer >= 0, got 1.0",
        ),
        (
            (288, 8, 4, 32),
            {"policy": "spill", "spill_slots": True},
            "OptionError",
            "spill_slots must be an integer >= 0, got True",
        ),
        (
            (288, 8, 4, 32),
            {"policy": "spill", "spill_slots": 10},
            "OptionError",
            "spill_slots 10 is more than the 9 slots of a GPU",
        ),
        (
            (288, 8, 18, 144),
            {"policy": "hierarchical"},
            "ClusterShapeError",
            r"8 groups cannot be split evenly over 18 nodes \(the hierarchical policy\)",
        ),
        (
            (288, 8, 18, 144),
            {"policy": "spill"},
            "ClusterShapeError",
            r"8 groups cannot be split evenly over 18 nodes \(the spill policy\)",
        ),
        (
            (288, 3, 1, 32),
            {"policy": "spill"},
            "ClusterShapeError",
            r"256 experts cannot be split evenly into 3 groups \(the spill policy\)",
        ),
        (
            (320, 4, 2, 5),
            {"policy": "hierarchical"},
            "ClusterShapeError",
            r"5 GPUs cannot be split evenly over 2 nodes \(the hierarchical policy\)",
        ),
    ],
)
def test_bad_options_are_refused(args: tuple, options: dict, error: str, message: str) -> None:
    with pytest.raises(getattr(errors, error), match=message) as caught:
        rebalance_experts(zipf_loads(layers=2), *args, **options)
    assert isinstance(caught.value, ValueError)


def test_spill_slots_is_checked_before_any_work() -> None:
    with pytest.raises(ValueError, match="spill_slots must be an integer >= 0"):
        PlanOptions(spill_slots=-2)
    with pytest.raises(ValueError, match="spill_slots 3 is more than the 2 slots of a GPU"):
        Cluster(288, 8, 18, 144).check(256, "global", spill_slots=3)
    assert Cluster(288, 8, 4, 32).check(256, "spill", spill_slots=9) == "spill"
