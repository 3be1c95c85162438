"""Loads, balancedness and its upper bound, recomputed by hand on small plans."""

from __future__ import annotations

import pytest
import torch

from eplb_core import Cluster, rebalance_experts
from eplb_core.metrics import (
    balancedness,
    balancedness_bound,
    gpu_loads,
    max_over_mean,
    node_loads,
    score,
    trivial_placement,
)
from eplb_core.synthetic import WORKLOADS


def test_loads_split_evenly_over_replicas() -> None:
    weight = torch.tensor([[6.0, 2.0, 4.0]])
    phy2log = torch.tensor([[0, 1, 0, 2]])  # expert 0 twice: 3 tokens per replica
    loads = gpu_loads(weight, phy2log, num_gpus=2)
    assert loads.tolist() == [[5.0, 7.0]]
    assert node_loads(loads, 1).tolist() == [[12.0]]
    assert balancedness(loads).tolist() == [pytest.approx(6 / 7)]
    assert max_over_mean(loads).tolist() == [pytest.approx(7 / 6)]


def test_score_summary() -> None:
    weight = torch.tensor([[6.0, 2.0, 4.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    phy2log = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    report = score(weight, phy2log, Cluster(4, 1, 2, 2))
    assert report.gpu_load.tolist() == [[8.0, 4.0], [2.0, 2.0]]
    assert report.node_load.tolist() == [[8.0, 4.0], [2.0, 2.0]]
    assert report.balancedness.tolist() == [pytest.approx(0.75), 1.0]
    assert report.mean_balancedness == pytest.approx(0.875)
    assert report.worst_max_over_mean == pytest.approx(4 / 3)


def test_zero_layer_counts_as_balanced() -> None:
    assert balancedness(torch.zeros(1, 4)).tolist() == [1.0]


def test_trivial_placement_wraps_experts() -> None:
    assert trivial_placement(2, 3, 5).tolist() == [[0, 1, 2, 0, 1]] * 2


def test_bound_by_hand() -> None:
    # 8 slots on 4 GPUs: the hot expert can have 5 replicas (20 tokens each) <= mean 25.
    assert balancedness_bound(
        torch.tensor([[100.0, 0.0, 0.0, 0.0]]), Cluster(8, 1, 1, 4)
    ).tolist() == [1.0]
    # 3 slots on 3 GPUs, two experts: 90 gets 2 replicas (45 each) > mean 100 / 3.
    assert balancedness_bound(torch.tensor([[90.0, 10.0]]), Cluster(3, 1, 1, 3)).tolist() == [
        pytest.approx((100 / 3) / 45)
    ]


def test_bound_of_the_hierarchical_policy_by_hand() -> None:
    # Four one-expert groups on 2 nodes of 1 GPU: the 10 must share a node with a group, at
    # best the 0, so some GPU carries 10 while the mean is 6 -> 0.6; replicas alone allow 1.0.
    weight = torch.tensor([[10.0, 1.0, 1.0, 0.0]])
    assert balancedness_bound(weight, Cluster(8, 4, 2, 2)).tolist() == [1.0]
    assert balancedness_bound(weight, Cluster(8, 4, 2, 2), "hierarchical").tolist() == [0.6]
    # Three groups per node: the heaviest plus the two lightest, 10 + 0 + 1 = 11 on one node.
    weight = torch.tensor([[10.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    assert balancedness_bound(weight, Cluster(12, 6, 2, 2), "hierarchical").tolist() == [
        pytest.approx(10 / 11)
    ]
    # The global policy has no grouping term.
    assert balancedness_bound(weight, Cluster(12, 6, 2, 2), "global").tolist() == [1.0]


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
@pytest.mark.parametrize("config", [(288, 8, 4, 32), (288, 8, 9, 144), (288, 8, 2, 16)])
def test_plans_respect_the_bound(workload: str, config: tuple[int, int, int, int]) -> None:
    weight = WORKLOADS[workload](layers=4)
    replicas, _groups, _nodes, _gpus = config
    cluster = Cluster(*config)
    bound = balancedness_bound(weight, cluster, cluster.auto_policy)
    for algorithm in ("greedy", "hybrid"):
        phy2log, _, logcnt = rebalance_experts(weight, *config, algorithm=algorithm)
        achieved = score(weight, phy2log, cluster, logcnt).balancedness
        assert bool((achieved <= bound + 1e-12).all())
        before = score(weight, trivial_placement(4, 256, replicas), cluster).balancedness
        assert bool((before <= bound + 1e-12).all())
