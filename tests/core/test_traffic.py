"""nodes_per_token: one node when everything is on one node, a brute-force count of the model on
small cases, a simulation of its tokens, the sampled estimate, and bad input."""

from __future__ import annotations

import itertools
import math
from dataclasses import astuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core import Cluster, rebalance_experts
from eplb_core.metrics import nodes_per_token
from eplb_core.synthetic import zipf_loads


def brute_force(
    phy2log: list[int], weight: list[float], cluster: Cluster, topk_groups: int, top_k: int
) -> float:
    """The model's expectation for one layer, by enumerating every ordered choice of groups,
    every sequence of expert picks and every replica they go to."""
    num_experts = len(weight)
    size = num_experts // cluster.num_groups
    slots_per_node = cluster.num_replicas // cluster.num_nodes
    replica_nodes = {
        e: [slot // slots_per_node for slot, x in enumerate(phy2log) if x == e]
        for e in range(num_experts)
    }
    group_load = [sum(weight[g * size : (g + 1) * size]) for g in range(cluster.num_groups)]
    total = sum(group_load)
    chosen = min(topk_groups, cluster.num_groups)

    def group_choices(prefix: list[int], probability: float):
        if len(prefix) == chosen:
            yield prefix, probability
            return
        remaining = [g for g in range(cluster.num_groups) if g not in prefix]
        left = total - sum(group_load[g] for g in prefix)
        for g in remaining:
            step = group_load[g] / left if left > 1e-12 * total else 1 / len(remaining)
            if step > 0:
                yield from group_choices([*prefix, g], probability * step)

    expected = 0.0
    for groups, probability in group_choices([], 1.0):
        experts = [e for g in groups for e in range(g * size, (g + 1) * size)]
        load = sum(weight[e] for e in experts)
        picks = [
            (weight[e] / load / len(replica_nodes[e]), node)
            for e in experts
            if weight[e] > 0
            for node in replica_nodes[e]
        ]
        for sequence in itertools.product(picks, repeat=top_k):
            expected += (
                probability
                * math.prod(p for p, _ in sequence)
                * len({node for _, node in sequence})
            )
    return expected


def simulate(
    phy2log: torch.Tensor,
    weight: torch.Tensor,
    cluster: Cluster,
    topk_groups: int,
    top_k: int,
    tokens: int,
    seed: int,
) -> float:
    """Mean distinct nodes over ``tokens`` tokens of one layer drawn as the model says: groups
    without replacement by load, experts with replacement by load, a replica at random."""
    gen = torch.Generator().manual_seed(seed)
    num_experts = weight.shape[0]
    size = num_experts // cluster.num_groups
    group_load = weight.view(cluster.num_groups, size).sum(-1).float()
    groups = torch.multinomial(group_load.expand(tokens, -1), topk_groups, generator=gen)
    in_chosen = torch.zeros(tokens, cluster.num_groups).scatter_(1, groups, 1.0)
    expert_weight = weight.float() * in_chosen.repeat_interleave(size, 1)
    experts = torch.multinomial(expert_weight, top_k, replacement=True, generator=gen)
    slots = [torch.nonzero(phy2log == e).flatten() for e in range(num_experts)]
    counts = torch.tensor([len(s) for s in slots])
    table = torch.nn.utils.rnn.pad_sequence(slots, batch_first=True)
    replica = (torch.rand(experts.shape, generator=gen) * counts[experts]).long()
    node = table[experts, replica] // (cluster.num_replicas // cluster.num_nodes)
    reached = torch.zeros(tokens, cluster.num_nodes).scatter_(1, node, 1.0)
    return float(reached.sum(-1).mean())


def random_placement(layers: int, experts: int, slots: int, seed: int) -> torch.Tensor:
    """Every expert once at a random slot, the other slots random experts: [layers, slots]."""
    gen = torch.Generator().manual_seed(seed)
    extra = torch.randint(0, experts, (layers, slots - experts), generator=gen)
    placement = torch.cat([torch.arange(experts).expand(layers, -1), extra], 1)
    order = torch.rand(layers, slots, generator=gen).argsort(-1)
    return placement.gather(1, order)


def test_one_node_is_one_node_per_token() -> None:
    weight = zipf_loads(layers=4, experts=64)
    weight[2] = 0  # an idle layer sends nothing
    cluster = Cluster(72, 8, 1, 8)
    for policy in ("hierarchical", "global", "spill"):
        phy2log = rebalance_experts(weight, *astuple(cluster), policy=policy)[0]
        assert nodes_per_token(phy2log, weight, cluster).tolist() == pytest.approx(
            [1.0, 1.0, 0.0, 1.0], abs=1e-12
        )


def test_load_on_one_node_reaches_one_node() -> None:
    # Two nodes, but only the experts of node 0's groups carry load.
    cluster = Cluster(16, 4, 2, 4)
    weight = torch.zeros(1, 12)
    phy2log = rebalance_experts(torch.arange(12.0).view(1, -1), 16, 4, 2, 4, policy="hierarchical")[
        0
    ]
    node0 = phy2log[0, :8].unique()
    weight[0, node0] = torch.arange(1.0, len(node0) + 1)
    assert nodes_per_token(phy2log, weight, cluster).tolist() == [pytest.approx(1.0)]


@pytest.mark.parametrize(
    ("cluster", "topk_groups", "top_k"),
    [
        (Cluster(12, 4, 2, 4), 2, 3),
        (Cluster(12, 4, 2, 4), 1, 4),
        (Cluster(12, 6, 3, 3), 3, 3),
        (Cluster(10, 2, 2, 2), 4, 3),  # more groups asked for than exist: all of them
    ],
)
def test_hierarchical_figure_matches_brute_force(
    cluster: Cluster, topk_groups: int, top_k: int
) -> None:
    gen = torch.Generator().manual_seed(cluster.num_groups)
    weight = torch.rand(3, 8 if cluster.num_groups != 6 else 6, generator=gen) ** 2 * 100
    weight[1, :2] = 0  # a group without load in some cluster
    phy2log = rebalance_experts(weight, *astuple(cluster), policy="hierarchical")[0]
    figure = nodes_per_token(phy2log, weight, cluster, topk_groups=topk_groups, top_k=top_k)
    for layer in range(weight.shape[0]):
        assert float(figure[layer]) == pytest.approx(
            brute_force(
                phy2log[layer].tolist(), weight[layer].tolist(), cluster, topk_groups, top_k
            ),
            rel=1e-9,
        )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    nodes=st.integers(1, 3),
    groups_per_node=st.integers(1, 2),
    spare=st.integers(0, 3),
    topk_groups=st.integers(1, 2),
    top_k=st.integers(1, 3),
)
def test_any_placement_matches_brute_force(
    seed: int, nodes: int, groups_per_node: int, spare: int, topk_groups: int, top_k: int
) -> None:
    # Replicas spread over nodes at random: the replica picks matter.
    groups = nodes * groups_per_node
    experts = groups * 2
    cluster = Cluster(experts + spare * nodes, groups, nodes, nodes)
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randint(0, 5, (2, experts), generator=gen).float()
    phy2log = random_placement(2, experts, cluster.num_replicas, seed)
    figure = nodes_per_token(phy2log, weight, cluster, topk_groups=topk_groups, top_k=top_k)
    for layer in range(2):
        assert float(figure[layer]) == pytest.approx(
            brute_force(
                phy2log[layer].tolist(), weight[layer].tolist(), cluster, topk_groups, top_k
            ),
            rel=1e-9,
            abs=1e-12,
        )
        if weight[layer].sum() > 0:
            assert 1 - 1e-9 <= float(figure[layer]) <= min(nodes, top_k) + 1e-9


def test_deepseek_routing_matches_a_simulation_of_its_tokens() -> None:
    # DeepSeek-V3's routing (4 of 8 groups, 8 experts) on 4 nodes; the simulation's standard
    # error is about 0.0025 nodes.
    weight = zipf_loads(layers=2, experts=64)
    cluster = Cluster(72, 8, 4, 8)
    for policy in ("hierarchical", "global", "spill"):
        phy2log = rebalance_experts(weight, *astuple(cluster), policy=policy)[0]
        figure = nodes_per_token(phy2log, weight, cluster)
        for layer in range(2):
            simulated = simulate(phy2log[layer], weight[layer], cluster, 4, 8, 100_000, layer)
            assert float(figure[layer]) == pytest.approx(simulated, abs=0.012)


def test_many_groups_are_sampled_from_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    # 16 groups choose 8 is too many subsets to enumerate: the figure is an estimate, seeded.
    weight = zipf_loads(layers=2, experts=64)
    cluster = Cluster(80, 16, 4, 8)
    phy2log = rebalance_experts(weight, 80, 16, 4, 8, policy="hierarchical")[0]
    args = (phy2log, weight, cluster)
    first = nodes_per_token(
        *args, topk_groups=8, num_samples=20_000, generator=torch.Generator().manual_seed(3)
    )
    again = nodes_per_token(
        *args, topk_groups=8, num_samples=20_000, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(first, again)
    monkeypatch.setattr("eplb_core.traffic.MAX_EXACT_SUBSETS", 1 << 20)
    exact = nodes_per_token(*args, topk_groups=8)
    assert torch.allclose(first, exact, atol=0.01)


def test_bad_input() -> None:
    weight = torch.ones(2, 8)
    phy2log = torch.arange(8).repeat(2, 2)  # 16 slots
    cluster = Cluster(16, 4, 2, 4)
    with pytest.raises(ValueError, match="topk_groups must be a positive integer"):
        nodes_per_token(phy2log, weight, cluster, topk_groups=0)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        nodes_per_token(phy2log, weight, cluster, top_k=True)
    with pytest.raises(ValueError, match="shape"):
        nodes_per_token(phy2log[:, :12], weight, cluster)
    with pytest.raises(ValueError, match="finite and >= 0"):
        nodes_per_token(phy2log, -weight, cluster)
    with pytest.raises(ValueError, match="6 GPUs cannot be split evenly over 4 nodes"):
        nodes_per_token(torch.arange(8).repeat(2, 3)[:, :18], weight, Cluster(18, 4, 4, 6))
    with pytest.raises(ValueError, match="8 experts cannot be split evenly into 3 groups"):
        nodes_per_token(phy2log, weight, Cluster(16, 3, 2, 4))
