"""plan_cost: monotone in the shape, additive, large shapes above small ones, and a replica
bound that holds on real plans. No timings here: benchmarks/cost.py compares with them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core import Cluster, rebalance_experts
from eplb_core.cost import ZERO, Cost, packing_cost, plan_cost, replica_bound
from tests.core.helpers import Shape, random_weight, shapes

PREFILL = Cluster(288, 8, 4, 32)


def cost_of(
    shape: Shape, layers: int | None = None, slots_per_gpu: int = 0, algorithm: str = "greedy"
) -> Cost:
    cluster = Cluster(
        shape.replicas + slots_per_gpu * shape.gpus, shape.groups, shape.nodes, shape.gpus
    )
    return plan_cost(
        layers or shape.layers, shape.experts, cluster, cluster.check(shape.experts), algorithm
    )


@settings(max_examples=200, deadline=None)
@given(shape=shapes(), more=st.integers(1, 500), algorithm=st.sampled_from(["greedy", "hybrid"]))
def test_more_layers_or_slots_never_cost_less(shape: Shape, more: int, algorithm: str) -> None:
    base = cost_of(shape, algorithm=algorithm)
    for bigger in (
        cost_of(shape, layers=shape.layers + more, algorithm=algorithm),
        cost_of(shape, slots_per_gpu=1 + more % 7, algorithm=algorithm),
    ):
        assert bigger.work >= base.work and bigger.peak_bytes >= base.peak_bytes
    if algorithm == "greedy":
        hybrid = cost_of(shape, algorithm="hybrid")
        assert hybrid.work >= base.work and hybrid.peak_bytes >= base.peak_bytes


def test_costs_add_and_scale() -> None:
    a = plan_cost(58, 256, PREFILL, "hierarchical", "greedy")
    b = plan_cost(58, 256, PREFILL, "hierarchical", "hybrid")
    assert (a + b).work == pytest.approx(a.work + b.work)
    assert (a + b).peak_bytes == a.peak_bytes + b.peak_bytes
    assert 3 * a == a * 3 and (3 * a).work == pytest.approx((a + a + a).work)
    assert (3 * a).peak_bytes == 3 * a.peak_bytes
    assert a + ZERO == a and 0 * a == ZERO
    with pytest.raises(ValueError, match="negative"):
        a * -1


def test_large_shapes_cost_more_than_small_ones() -> None:
    small = [
        plan_cost(1, 8, Cluster(8, 1, 1, 1), "global", "greedy"),
        plan_cost(58, 256, PREFILL, "hierarchical", "greedy"),
        plan_cost(58, 256, Cluster(288, 8, 18, 144), "global", "hybrid"),
    ]
    large = [
        plan_cost(1024, 256, PREFILL, "hierarchical", "greedy"),
        plan_cost(64, 4096, Cluster(16384, 1, 1, 1), "global", "hybrid"),
        plan_cost(64, 4096, Cluster(16384, 1, 1, 4096), "global", "greedy"),
        plan_cost(1024, 1024, Cluster(2048, 16, 8, 256), "hierarchical", "greedy"),
    ]
    assert min(c.work for c in large) > max(c.work for c in small)
    assert min(c.peak_bytes for c in large) > max(c.peak_bytes for c in small)
    # log2phy at its worst: one expert could take all 12,288 spare slots of 64 x 4,096 experts.
    assert plan_cost(64, 4096, Cluster(16384, 1, 1, 1), "global", "greedy").peak_bytes > 2**34


def test_a_known_replica_bound_lowers_the_memory_estimate() -> None:
    cluster = Cluster(16384, 1, 1, 64)
    worst = plan_cost(64, 4096, cluster, "global", "greedy")
    known = plan_cost(64, 4096, cluster, "global", "greedy", max_replicas=700)
    assert known.peak_bytes < worst.peak_bytes / 10 and known.work < worst.work


def test_more_candidates_or_rounds_cost_more() -> None:
    base = packing_cost(58, 320, 64, "hybrid")
    assert packing_cost(58, 320, 64, "hybrid", num_candidates=128).work > base.work
    assert packing_cost(58, 320, 64, "hybrid", num_rounds=100).work > base.work
    assert packing_cost(58, 320, 64, "hybrid", device="cuda").peak_bytes > base.peak_bytes
    assert packing_cost(58, 320, 64, "greedy").work < base.work


def test_unresolved_policy_or_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="resolved policy"):
        plan_cost(58, 256, PREFILL, "auto", "greedy")
    with pytest.raises(ValueError, match="unknown algorithm"):
        plan_cost(58, 256, PREFILL, "hierarchical", "fast")


@settings(max_examples=80, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 2**16), integer=st.booleans(), sparse=st.booleans())
def test_replica_bound_holds(shape: Shape, seed: int, integer: bool, sparse: bool) -> None:
    weight = random_weight(shape, seed, integer)
    if sparse:  # idle experts, and whole idle layers
        weight *= torch.rand(weight.shape, generator=torch.Generator().manual_seed(seed)) < 0.3
    cluster = Cluster(*shape.args)
    policy = cluster.check(shape.experts)
    bound = replica_bound(weight, cluster, policy)
    _, log2phy, logcnt = rebalance_experts(weight, *shape.args)
    assert int(logcnt.max()) <= bound <= cluster.num_replicas - shape.experts + 1
    assert log2phy.shape[-1] <= bound
