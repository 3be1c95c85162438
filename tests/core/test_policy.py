"""rebalance_experts: the published example, agreement with the published greedy, plan
invariants for both algorithms, determinism, and argument checks."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core import Cluster, rebalance_experts
from eplb_core.metrics import replica_counts
from eplb_core.synthetic import zipf_loads
from tests.core.helpers import EXAMPLE, Shape, random_weight, shapes
from tests.reference import published_rebalance


@pytest.fixture(scope="module")
def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def test_greedy_reproduces_published_example(example: dict, device: str) -> None:
    weight = torch.tensor(example["weight"], device=device)
    phy2log, log2phy, logcnt = rebalance_experts(
        weight,
        example["num_replicas"],
        example["num_groups"],
        example["num_nodes"],
        example["num_gpus"],
        algorithm="greedy",
    )
    assert phy2log.tolist() == example["expected_greedy_phy2log"]
    assert logcnt.tolist() == example["expected_greedy_logcnt"]
    assert phy2log.device.type == log2phy.device.type == logcnt.device.type == device
    assert phy2log.dtype == log2phy.dtype == logcnt.dtype == torch.int64


@settings(max_examples=60, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 2**16), integer=st.booleans())
def test_greedy_matches_published_implementation(shape: Shape, seed: int, integer: bool) -> None:
    weight = random_weight(shape, seed, integer)
    ours = rebalance_experts(weight, *shape.args, algorithm="greedy")
    published = published_rebalance(weight, *shape.args)
    for mine, theirs in zip(ours, published):
        assert torch.equal(mine, theirs)


def test_greedy_matches_published_on_deepseek_shape() -> None:
    weight = zipf_loads(layers=6)
    # prefill, decode (18 nodes x 8 GPUs), and 64 GPUs over 5 nodes: global, so the nodes need
    # not split the GPUs evenly (DeepSeek plans it).
    for config in [(288, 8, 4, 32), (288, 8, 18, 144), (320, 8, 5, 64)]:
        ours = rebalance_experts(weight, *config, algorithm="greedy")
        published = published_rebalance(weight, *config)
        assert all(torch.equal(a, b) for a, b in zip(ours, published))


def check_plan(weight: torch.Tensor, shape: Shape, plan: tuple[torch.Tensor, ...]) -> None:
    """Every invariant a serving engine relies on."""
    phy2log, log2phy, logcnt = plan
    layers, experts = weight.shape
    assert phy2log.shape == (layers, shape.replicas)
    assert logcnt.shape == (layers, experts)
    assert log2phy.shape == (layers, experts, int(logcnt.max()))
    # ids in range; every expert has a replica; counts sum to the slots and match phy2log
    assert int(phy2log.min()) >= 0 and int(phy2log.max()) < experts
    assert int(logcnt.min()) >= 1
    assert torch.equal(logcnt.sum(-1), torch.full((layers,), shape.replicas, device=logcnt.device))
    assert torch.equal(replica_counts(phy2log, experts), logcnt)
    # log2phy is the exact inverse of phy2log, padded with -1 after each expert's replicas
    valid = log2phy >= 0
    assert torch.equal(valid.sum(-1), logcnt)
    rank = torch.arange(log2phy.shape[-1], device=log2phy.device)
    assert torch.equal(valid, rank < logcnt.unsqueeze(-1))
    layer_ids = torch.arange(layers, device=phy2log.device).view(-1, 1, 1).expand_as(log2phy)
    expert_ids = torch.arange(experts, device=phy2log.device).view(1, -1, 1).expand_as(log2phy)
    assert torch.equal(phy2log[layer_ids[valid], log2phy[valid]], expert_ids[valid])
    slots = log2phy[valid]
    assert slots.numel() == layers * shape.replicas
    assert torch.equal(
        (layer_ids[valid] * shape.replicas + slots).sort().values,
        torch.arange(layers * shape.replicas, device=slots.device),
    )
    if Cluster(*shape.args).auto_policy == "hierarchical":
        # all replicas of a group's experts sit on the GPUs of one node
        slots_per_node = shape.replicas // shape.nodes
        node_of_slot = torch.arange(shape.replicas, device=phy2log.device) // slots_per_node
        group_of_slot = phy2log // (experts // shape.groups)
        node_of_group = torch.full((layers, shape.groups), -1, device=phy2log.device)
        node_of_group.scatter_(1, group_of_slot, node_of_slot.expand(layers, -1))
        assert torch.equal(node_of_group.gather(1, group_of_slot), node_of_slot.expand(layers, -1))


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes(),
    seed=st.integers(0, 2**16),
    integer=st.booleans(),
    algorithm=st.sampled_from(["greedy", "hybrid"]),
)
def test_plan_invariants(shape: Shape, seed: int, integer: bool, algorithm: str) -> None:
    weight = random_weight(shape, seed, integer)
    check_plan(
        weight, shape, rebalance_experts(weight, *shape.args, algorithm=algorithm, seed=seed)
    )


@pytest.mark.parametrize("algorithm", ["greedy", "hybrid"])
def test_plan_invariants_on_device(device: str, algorithm: str) -> None:
    shape = Shape(layers=5, experts=64, replicas=80, groups=8, nodes=2, gpus=8)
    weight = zipf_loads(layers=5, experts=64).to(device)
    plan = rebalance_experts(weight, *shape.args, algorithm=algorithm)
    assert all(t.device.type == device for t in plan)
    check_plan(weight, shape, plan)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float64, torch.float16])
def test_any_real_dtype_and_integer_ties(dtype: torch.dtype) -> None:
    # Many equal counts: the plan must still be valid, and greedy still the published one.
    weight = torch.tensor([[4, 4, 4, 4, 1, 1, 1, 1], [0, 0, 7, 7, 7, 0, 0, 7]], dtype=dtype)
    shape = Shape(layers=2, experts=8, replicas=12, groups=4, nodes=2, gpus=4)
    for algorithm in ("greedy", "hybrid"):
        check_plan(weight, shape, rebalance_experts(weight, *shape.args, algorithm=algorithm))
    greedy = rebalance_experts(weight, *shape.args, algorithm="greedy")
    assert all(torch.equal(a, b) for a, b in zip(greedy, published_rebalance(weight, *shape.args)))


def test_hybrid_is_deterministic_for_a_seed(device: str) -> None:
    weight = zipf_loads(layers=8).to(device)
    first = rebalance_experts(weight, 288, 8, 4, 32, seed=7, num_candidates=16)
    second = rebalance_experts(weight, 288, 8, 4, 32, seed=7, num_candidates=16)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize(
    ("weight", "config"),
    [
        # vLLM's tests/distributed/test_eplb_algo.py: global fallbacks DeepSeek's code accepts,
        # 4 experts in 3 groups on 2 nodes among them, and its hierarchical cases.
        ([[10, 20, 30, 40]], (8, 3, 2, 4)),
        ([[10, 20, 30, 40, 50, 60]], (8, 3, 2, 4)),
        ([[50, 100, 75, 120, 90, 60, 80, 110, 40, 70, 95, 85, 65, 55, 45, 35]], (24, 8, 4, 8)),
        ([[200, 150, 100, 50, 25, 12], [12, 25, 50, 100, 150, 200]], (10, 3, 1, 2)),
        ([[100, 50, 200, 75, 150, 25, 300, 80]], (12, 4, 2, 4)),
        ([[1000, 1, 1, 1, 1, 1, 1, 1]], (12, 2, 2, 4)),
    ],
)
def test_greedy_matches_published_on_vllm_cases(weight: list, config: tuple) -> None:
    weight = torch.tensor(weight)
    ours = rebalance_experts(weight, *config, algorithm="greedy")
    assert all(torch.equal(a, b) for a, b in zip(ours, published_rebalance(weight, *config)))


def test_policy_choice() -> None:
    assert Cluster(288, 8, 4, 32).auto_policy == "hierarchical"
    assert Cluster(288, 8, 9, 144).auto_policy == "global"
    assert Cluster(320, 8, 5, 64).check(256) == "global"
    assert Cluster(8, 3, 2, 4).check(4) == "global"


@pytest.mark.parametrize(
    ("weight", "args", "message"),
    [
        (torch.ones(4), (8, 1, 1, 2), "2-D"),
        (torch.ones(2, 3, 4), (8, 1, 1, 2), "2-D"),
        (torch.ones(0, 4), (8, 1, 1, 2), "empty"),
        (torch.ones(2, 0), (8, 1, 1, 2), "empty"),
        (torch.tensor([[1.0, float("nan")]]), (2, 1, 1, 1), "NaN"),
        (torch.tensor([[1.0, float("inf")]]), (2, 1, 1, 1), "infinite"),
        (torch.tensor([[1.0, -2.0]]), (2, 1, 1, 1), "negative"),
        (torch.ones(2, 8), (6, 2, 1, 2), "at least the number of experts"),
        (torch.ones(2, 8), (12, 2, 1, 5), "12 slots cannot be split evenly over 5 GPUs"),
        (torch.ones(2, 8), (12, 4, 4, 6), "6 GPUs cannot be split evenly over 4 nodes"),
        (torch.ones(2, 8), (12, 3, 1, 4), "8 experts cannot be split evenly into 3 groups"),
        (torch.ones(2, 8), (0, 2, 1, 2), "num_replicas must be a positive integer"),
        (torch.ones(2, 8), (8, -1, 1, 2), "num_groups must be a positive integer"),
        (torch.ones(2, 8), (8, 2, 0, 2), "num_nodes must be a positive integer"),
        (torch.ones(2, 8), (8, 2, 1, 0), "num_gpus must be a positive integer"),
        (torch.ones(2, 8), (8.0, 2, 1, 2), "num_replicas must be a positive integer"),
        (torch.ones(2, 8, dtype=torch.bool), (8, 2, 1, 2), "real numbers"),
        ([[1.0, 2.0]], (2, 1, 1, 1), "torch.Tensor"),
    ],
)
def test_bad_input_raises_value_error(weight, args, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rebalance_experts(weight, *args)


def test_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown algorithm 'fast'"):
        rebalance_experts(torch.ones(1, 4), 4, 1, 1, 2, algorithm="fast")


def test_a_plan_too_large_to_hold_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # One expert with nearly all the load takes most spare slots: log2phy grows with its count.
    monkeypatch.setattr("eplb_core.plan.MAX_LOG2PHY_ENTRIES", 4 * 8 * 20)
    weight = torch.ones(4, 8)
    weight[:, 3] = 1e6
    with pytest.raises(ValueError, match="log2phy would hold 4 x 8 x 25 entries"):
        rebalance_experts(weight, 32, 1, 1, 4)
