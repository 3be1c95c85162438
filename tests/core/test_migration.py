"""Migration: moves between placements, and the slot-preserving re-ordering."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core import Cluster, migration, rebalance_experts
from eplb_core.metrics import gpu_loads, replica_counts, score, trivial_placement
from eplb_core.migration import (
    DEEPSEEK_V3_EXPERT_BYTES,
    _renumber,
    _scrambled,
    build_log2phy,
    count_moves,
    deploy,
    keep_slots,
    match_gpus,
    migration_cost,
    validate_placement,
)
from eplb_core.replay import window_loads
from eplb_core.synthetic import drifting_series

# Two layers, 4 experts in 6 slots on 2 GPUs (3 slots each).
OLD = torch.tensor([[0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 0, 1]])
NEW = torch.tensor(
    [
        [1, 0, 2, 3, 0, 2],  # slots 0, 1 and 5 change
        [0, 1, 2, 3, 0, 1],
    ]
)  # unchanged


def test_count_moves_on_a_hand_made_pair():
    moves = count_moves(OLD, NEW)
    assert moves.per_layer.tolist() == [3, 0]
    assert moves.total == 3


def test_migration_cost_on_a_hand_made_pair():
    # OLD -> NEW changes slots 0 and 1 (GPU 0) and slot 5 (GPU 1) of layer 0.
    cost = migration_cost(OLD, NEW, num_gpus=2, expert_bytes=1000, link_gb_per_s=2.0)
    assert (cost.moves, cost.total_bytes) == (3, 3000)
    assert (cost.max_gpu_bytes, cost.busiest_gpu) == (2000, 0)
    assert cost.seconds == pytest.approx(2000 / 2e9)
    assert cost.as_dict() == {
        "moves": 3,
        "expert_bytes": 1000,
        "total_bytes": 3000,
        "max_gpu_bytes": 2000,
        "busiest_gpu": 0,
        "link_gb_per_s": 2.0,
        "seconds": pytest.approx(1e-6),
    }


def test_migration_cost_adds_up_every_layer_per_gpu():
    # DeepSeek-V3's FP8 experts by default; 3 GPUs of 2 slots, two layers.
    old = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]])
    new = torch.tensor([[0, 1, 2, 3, 5, 4], [0, 1, 3, 2, 4, 4]])
    cost = migration_cost(old, new, num_gpus=3)
    assert DEEPSEEK_V3_EXPERT_BYTES == 44_040_192
    # GPU 1 receives 2 copies (layer 1), GPU 2 receives 3 (2 in layer 0, 1 in layer 1).
    assert cost.moves == 5 and cost.total_bytes == 5 * 44_040_192
    assert (cost.max_gpu_bytes, cost.busiest_gpu) == (3 * 44_040_192, 2)
    assert cost.seconds is None and cost.link_gb_per_s is None


def test_migration_cost_of_no_change_is_nothing():
    cost = migration_cost(OLD, OLD, num_gpus=2, link_gb_per_s=100)
    assert (cost.moves, cost.total_bytes, cost.max_gpu_bytes, cost.seconds) == (0, 0, 0, 0.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_gpus": 4}, "6 slots cannot be split evenly over 4 GPUs"),
        ({"num_gpus": 2, "expert_bytes": 0}, "expert_bytes must be a positive whole number, got 0"),
        ({"num_gpus": 2, "link_gb_per_s": -1.0}, "link_gb_per_s must be a positive number"),
        ({"num_gpus": 2, "link_gb_per_s": float("nan")}, "link_gb_per_s must be a positive number"),
    ],
)
def test_migration_cost_refuses_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        migration_cost(OLD, NEW, **kwargs)


def test_count_moves_rejects_placements_of_different_shapes():
    with pytest.raises(ValueError, match=r"differ in shape: \[2, 6\] and \[2, 4\]"):
        count_moves(OLD, NEW[:, :4])


def test_keep_slots_on_a_hand_made_pair():
    logcnt = replica_counts(NEW, 4)
    kept, log2phy, counts = keep_slots(OLD, NEW, logcnt, num_gpus=2)
    # GPU 0 already holds 0, 1, 2: nothing moves. GPU 1 keeps 3 and 0; 2 replaces 1.
    assert kept.tolist() == [[0, 1, 2, 3, 0, 2], [0, 1, 2, 3, 0, 1]]
    assert count_moves(OLD, kept).total == 1
    assert log2phy[0].tolist() == [[0, 4], [1, -1], [2, 5], [3, -1]]
    assert torch.equal(counts, logcnt)


def test_keep_slots_with_several_copies_of_an_expert_on_one_gpu():
    old = torch.tensor([[3, 3, 1, 0, 2, 1]])
    new = torch.tensor([[1, 1, 3, 0, 3, 2]])  # GPU 0 goes from {3, 3, 1} to {1, 1, 3}
    kept, _, _ = keep_slots(old, new, replica_counts(new, 4), num_gpus=2)
    # GPU 0: the first 3 and the 1 stay, the second 3 makes room for the extra 1.
    # GPU 1: 0 and 2 stay, 3 replaces 1.
    assert kept.tolist() == [[3, 1, 1, 0, 2, 3]]
    assert count_moves(old, kept).total == 2
    assert count_moves(old, new).total == 5


def test_keep_slots_rejects_slots_that_do_not_split_over_the_gpus():
    with pytest.raises(ValueError, match="6 slots cannot be split evenly over 4 GPUs"):
        keep_slots(OLD, NEW, replica_counts(NEW, 4), num_gpus=4)


def test_build_log2phy_lists_each_experts_slots():
    phy2log = torch.tensor([[2, 0, 2, 1, 0, 2]])
    log2phy = build_log2phy(phy2log, replica_counts(phy2log, 3))
    assert log2phy.tolist() == [[[1, 4, -1], [3, -1, -1], [0, 2, 5]]]


def _random_plan(gen: torch.Generator, layers: int, experts: int, slots: int) -> torch.Tensor:
    """Every expert once, the extra slots to random experts, all shuffled: [layers, slots]."""
    extra = torch.randint(experts, (layers, slots - experts), generator=gen)
    plan = torch.cat([torch.arange(experts).expand(layers, -1), extra], 1)
    return plan.gather(1, torch.rand(layers, slots, generator=gen).argsort(-1))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    layers=st.integers(1, 4),
    experts=st.integers(1, 12),
    num_gpus=st.integers(1, 6),
    extra_per_gpu=st.integers(0, 3),
)
def test_keep_slots_never_changes_gpu_loads_nor_increases_moves(
    seed, layers, experts, num_gpus, extra_per_gpu
):
    gen = torch.Generator().manual_seed(seed)
    per_gpu = -(-experts // num_gpus) + extra_per_gpu
    slots = per_gpu * num_gpus
    old = _random_plan(gen, layers, experts, slots)
    new = _random_plan(gen, layers, experts, slots)
    weight = torch.randint(0, 1000, (layers, experts), generator=gen).float()
    logcnt = replica_counts(new, experts)

    kept, log2phy, counts = keep_slots(old, new, logcnt, num_gpus)

    # Equal up to the order of the float sums.
    assert torch.allclose(
        gpu_loads(weight, kept, num_gpus, counts),
        gpu_loads(weight, new, num_gpus, logcnt),
        rtol=1e-12,
        atol=0,
    )
    assert torch.equal(
        kept.view(layers, num_gpus, -1).sort(-1).values,
        new.view(layers, num_gpus, -1).sort(-1).values,
    )
    assert (count_moves(old, kept).per_layer <= count_moves(old, new).per_layer).all()
    # log2phy points back at slots holding the expert, one entry per replica.
    assert torch.equal((log2phy >= 0).sum(-1), counts)
    valid = log2phy >= 0
    layer_index = torch.arange(layers).view(-1, 1, 1).expand_as(log2phy)
    expert_index = torch.arange(experts).view(1, -1, 1).expand_as(log2phy)
    assert torch.equal(kept[layer_index[valid], log2phy[valid]], expert_index[valid])


def test_keep_slots_keeps_a_plan_already_in_place():
    weight = torch.tensor([[90.0, 10, 40, 5, 70, 20, 30, 60]] * 3)
    phy2log, _, logcnt = rebalance_experts(weight, 12, 2, 2, 4, algorithm="greedy")
    kept, _, _ = keep_slots(phy2log, phy2log, logcnt, num_gpus=4)
    assert torch.equal(kept, phy2log)


def test_validate_placement_accepts_the_trivial_layout():
    validate_placement(trivial_placement(3, 8, 12), 3, 8, 12)


@pytest.mark.parametrize(
    "placement, message",
    [
        (
            torch.zeros(2, 6, 1, dtype=torch.int64),
            r"must be 2-D \[layers, slots\], got shape \[2, 6, 1\]",
        ),
        (torch.zeros(2, 5, dtype=torch.int64), r"has shape \[2, 5\]; this plan needs \[2, 6\]"),
        (OLD.float(), "expert ids \\(integers\\), got dtype torch.float32"),
        (OLD + 1, "expert ids outside 0..3"),
        (
            torch.tensor([[0, 1, 2, 3, 0, 1], [0, 1, 2, 2, 0, 1]]),
            "no replica of expert 3 in layer 1",
        ),
    ],
)
def test_validate_placement_says_what_is_wrong(placement, message):
    with pytest.raises(ValueError, match=message):
        validate_placement(placement, 2, 4, 6)


def test_match_gpus_undoes_a_renumbering_of_nodes_and_gpus():
    # The old placement: 2 nodes x 2 GPUs x 2 slots. The new one holds the same GPU contents,
    # with the nodes swapped and the GPUs of node 0 swapped: renumbering finds it all in place.
    old = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]])
    new = torch.tensor([[6, 7, 4, 5, 2, 3, 0, 1]])
    assert count_moves(old, new).total == 8
    assert torch.equal(match_gpus(old, new, num_gpus=4, num_nodes=2), old)


def test_match_gpus_keeps_the_numbering_when_nothing_is_gained():
    old = torch.tensor([[0, 1, 2, 3]])
    new = torch.tensor([[0, 2, 1, 3]])  # GPU 0 shares expert 0 either way: no better match
    assert torch.equal(match_gpus(old, new, num_gpus=2, num_nodes=1), new)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), layers=st.integers(1, 4))
def test_match_gpus_keeps_balance_and_hierarchy_and_moves_fewer(seed, layers):
    gen = torch.Generator().manual_seed(seed)
    old_loads = torch.rand(layers, 32, generator=gen) ** 3
    new_loads = old_loads * (1 + torch.rand(layers, 32, generator=gen))
    shape = (48, 8, 2, 8)  # 32 experts in 8 groups, 48 slots, 2 nodes x 4 GPUs: hierarchical
    old = rebalance_experts(old_loads, *shape)[0]
    new, _, logcnt = rebalance_experts(new_loads, *shape)
    renumbered = match_gpus(old, new, num_gpus=8, num_nodes=2)
    before = score(new_loads, new, Cluster(*shape), logcnt)
    after = score(new_loads, renumbered, Cluster(*shape), logcnt)
    # The same loads in another order: equal up to the order of float additions.
    assert torch.allclose(before.balancedness, after.balancedness, rtol=1e-12, atol=0)
    assert torch.allclose(
        before.node_load.sort(-1).values, after.node_load.sort(-1).values, rtol=1e-12, atol=0
    )
    # Whole nodes move as blocks, so every group still sits on one node.
    group_node = (renumbered // 4).view(layers, 2, -1)
    for layer in range(layers):
        for node in range(2):
            groups = set(group_node[layer, node].tolist())
            assert groups.isdisjoint(group_node[layer, 1 - node].tolist())

    # GPU contents are the plan's, renumbered: the same multiset of GPUs per node.
    def contents(p):
        return p.view(layers, 8, -1).sort(-1).values.tolist()

    assert sorted(map(sorted, contents(renumbered))) == sorted(map(sorted, contents(new)))


def test_match_gpus_cuts_moves_between_consecutive_plans():
    windows = window_loads(drifting_series(100, layers=8, seed=3), 50)
    old = rebalance_experts(windows[0], 288, 8, 4, 32)[0]
    new, _, logcnt = rebalance_experts(windows[1], 288, 8, 4, 32)
    kept = count_moves(old, keep_slots(old, new, logcnt, 32)[0]).total
    renumbered = match_gpus(old, new, 32, 4)
    both = count_moves(old, keep_slots(old, renumbered, logcnt, 32)[0]).total
    assert both < 0.95 * kept


def _sequential_greedy(old: torch.Tensor, new: torch.Tensor, num_experts: int) -> torch.Tensor:
    """The matching ``_renumber`` computes in rounds, one pair at a time over a dense table:
    blocks share the experts both hold; pairs by shared experts down, then the scrambled pair
    key; blocks left over in order; kept only where it shares more than the numbering as it
    is."""
    rows, blocks, _ = new.shape

    def held(placement: torch.Tensor) -> torch.Tensor:
        return torch.zeros(rows, blocks, num_experts, dtype=torch.int64).scatter_(-1, placement, 1)

    shared = (held(new).unsqueeze(2) * held(old).unsqueeze(1)).sum(-1)
    result = new.clone()
    for row in range(rows):
        pairs = sorted(
            (
                -int(shared[row, x, y]),
                int(_scrambled(torch.tensor((row * blocks + x) * blocks + y))),
                x,
                y,
            )
            for x in range(blocks)
            for y in range(blocks)
            if shared[row, x, y] > 0
        )
        target, used = {}, set()
        for *_, x, y in pairs:
            if x not in target and y not in used:
                target[x] = y
                used.add(y)
        free = [y for y in range(blocks) if y not in used]
        for x in range(blocks):
            if x not in target:
                target[x] = free.pop(0)
        if sum(int(shared[row, x, target[x]]) for x in range(blocks)) > int(
            shared[row].diagonal().sum()
        ):
            for x in range(blocks):
                result[row, target[x]] = new[row, x]
    return result


@pytest.mark.parametrize("table", [True, False], ids=["all pairs", "candidate pairs"])
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(1, 3),
    blocks=st.integers(1, 9),
    per_block=st.integers(1, 5),
    experts=st.integers(1, 10),
)
def test_renumber_equals_the_one_by_one_greedy(table, seed, rows, blocks, per_block, experts):
    # Up to 9 blocks: every pair that shares an expert is a candidate on either path, so the
    # parallel rounds must give exactly the sequential greedy's matching.
    gen = torch.Generator().manual_seed(seed)
    old = torch.randint(experts, (rows, blocks, per_block), generator=gen)
    new = torch.randint(experts, (rows, blocks, per_block), generator=gen)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(migration, "_DENSE_TABLE", 1 << 26 if table else 0)
        renumbered = _renumber(old, new, experts)
    assert torch.equal(renumbered, _sequential_greedy(old, new, experts))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    layers=st.integers(1, 3),
    experts=st.integers(1, 12),
    num_nodes=st.integers(1, 3),
    gpus_per_node=st.integers(1, 4),
    extra_per_gpu=st.integers(0, 3),
    keep=st.booleans(),
)
def test_deploy_never_moves_more_with_renumbering(
    seed, layers, experts, num_nodes, gpus_per_node, extra_per_gpu, keep
):
    gen = torch.Generator().manual_seed(seed)
    num_gpus = num_nodes * gpus_per_node
    slots = (-(-experts // num_gpus) + extra_per_gpu) * num_gpus
    old = _random_plan(gen, layers, experts, slots)
    new = _random_plan(gen, layers, experts, slots)
    logcnt = replica_counts(new, experts)
    plain = deploy(old, new, logcnt, num_gpus, num_nodes, renumber_gpus=False, keep_old_slots=keep)
    renumbered = deploy(
        old, new, logcnt, num_gpus, num_nodes, renumber_gpus=True, keep_old_slots=keep
    )
    assert (count_moves(old, renumbered).per_layer <= count_moves(old, plain).per_layer).all()

    # Whole nodes move, then whole GPUs within them: each node holds one of the plan's nodes,
    # its GPUs that node's GPUs (in some order), each GPU the same experts.
    def nodes(placement: torch.Tensor) -> list:
        return sorted(
            sorted(sorted(gpu) for gpu in node)
            for node in placement.view(num_nodes, gpus_per_node, -1).tolist()
        )

    for layer in range(layers):
        assert nodes(renumbered[layer]) == nodes(new[layer])


def test_match_gpus_on_thousands_of_gpus():
    # 4,096 GPUs with 2 slots each: the dense matching took a [GPUs, GPUs] table and as many
    # rounds; this must just run.
    gen = torch.Generator().manual_seed(0)
    old = _random_plan(gen, 2, 12, 8192)
    new = _random_plan(gen, 2, 12, 8192)
    renumbered = match_gpus(old, new, num_gpus=4096, num_nodes=1)
    assert sorted(map(sorted, renumbered.view(2 * 4096, 2).tolist())) == sorted(
        map(sorted, new.view(2 * 4096, 2).tolist())
    )
    assert count_moves(old, renumbered).total <= count_moves(old, new).total
