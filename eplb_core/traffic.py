"""Inter-node traffic of a placement: the nodes one token is sent to, under group-limited routing.

The model, per layer (DeepSeek-V3's routing, in expectation over tokens whose choices follow the
loads):

1. A token picks ``topk_groups`` distinct expert groups, one after another, each with probability
   proportional to its load among the groups not picked yet (sampling without replacement).
2. It then makes ``top_k`` picks among the experts of those groups, independently, each expert
   with probability proportional to its load (with replacement: a repeated pick adds no node,
   so under heavy skew the figure is slightly below that of a router picking distinct experts).
3. Each pick goes to one of its expert's replicas, uniformly at random (which is what splits an
   expert's load evenly over its replicas, as every balancedness figure assumes).

The figure is the expected number of distinct nodes among those replicas: the nodes a token is
dispatched to, 1 when every expert lives on one node. Given the chosen groups ``S``, node n
receives none of the picks with probability ``(1 - q_n(S)) ** top_k``, where ``q_n(S)`` is the
share of S's load that node n serves, so

    E[nodes] = sum over S of P(S) * sum over n of (1 - (1 - q_n(S)) ** top_k).

The sum over S is exact (dynamic programming over the subsets of groups) when there are at
most ``MAX_EXACT_SUBSETS`` of them (8 groups choose 4: 70), else an average over
``num_samples`` group choices drawn from a ``torch.Generator`` (Gumbel top-k, which is sampling
without replacement); the expert and replica picks are always exact.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from .cluster import Cluster
from .errors import ClusterShapeError, LoadError, OptionError
from .migration import validate_placement

MAX_EXACT_SUBSETS = 1 << 12  # subsets of groups enumerated per layer (all sizes), at most
DEFAULT_SAMPLES = 4096  # group choices drawn per layer past that


@dataclass(frozen=True)
class Routing:
    """Which sets of groups a token picks, and how likely each is, for loads [layers, experts]
    on a cluster's groups: it depends on the loads alone, so placements scored on the same
    loads share it (``routing``).

    sets: [subsets, groups] membership (float64), the same for every layer, when ``exact``;
        else [layers, samples, chosen] group ids drawn per layer
    probability: [layers, subsets or samples]
    """

    sets: torch.Tensor
    probability: torch.Tensor
    exact: bool


def routing(
    weight: torch.Tensor,
    cluster: Cluster,
    *,
    topk_groups: int = 4,
    num_samples: int = DEFAULT_SAMPLES,
    generator: torch.Generator | None = None,
) -> Routing:
    """The group choices of tokens following ``weight`` [layers, experts] (checked loads, on
    the cluster's equal groups): exact when the subsets are few, else ``num_samples`` draws per
    layer from ``generator`` (default: seeded with 0, on weight's device)."""
    num_groups = cluster.num_groups
    group_load = weight.double().view(weight.shape[0], num_groups, -1).sum(-1)
    chosen = min(topk_groups, num_groups)
    if sum(math.comb(num_groups, size) for size in range(chosen + 1)) <= MAX_EXACT_SUBSETS:
        membership, probability = _subset_probabilities(group_load, chosen)
        return Routing(membership, probability, exact=True)
    if generator is None:
        generator = torch.Generator(device=weight.device).manual_seed(0)
    sets = _sample_subsets(group_load, chosen, num_samples, generator)
    probability = torch.full(
        sets.shape[:2], 1 / num_samples, dtype=torch.float64, device=weight.device
    )
    return Routing(sets, probability, exact=False)


def nodes_per_token(
    phy2log: torch.Tensor,
    weight: torch.Tensor,
    cluster: Cluster,
    *,
    topk_groups: int = 4,
    top_k: int = 8,
    num_samples: int = DEFAULT_SAMPLES,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Expected distinct nodes per token, per layer: [layers, slots], [layers, experts] ->
    [layers], float64 (0 for a layer without load).

    Parameters:
        phy2log: the placement, each slot's logical expert (every expert held at least once)
        weight: the loads the tokens follow (the traffic served, e.g. the next window's)
        cluster: slots, groups (experts ``e`` is in group ``e // (E / num_groups)``) and nodes
        topk_groups: groups a token picks (DeepSeek-V3: 4 of 8); all of them when there are
            fewer
        top_k: expert picks per token (DeepSeek-V3: 8)
        num_samples, generator: group choices drawn per layer when they are too many to
            enumerate; the generator (default: seeded with 0) is on weight's device
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.is_complex():
        raise LoadError("loads must be a real tensor [layers, experts]")
    if not bool((torch.isfinite(weight) & (weight >= 0)).all()):
        raise LoadError("loads must be finite and >= 0")
    num_layers, num_experts = weight.shape
    validate_placement(phy2log, num_layers, num_experts, cluster.num_replicas)
    for name, value in (
        ("topk_groups", topk_groups),
        ("top_k", top_k),
        ("num_samples", num_samples),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"{name} must be a positive integer, got {value!r}")
    check_routable(num_experts, cluster)
    picks = routing(
        weight, cluster, topk_groups=topk_groups, num_samples=num_samples, generator=generator
    )
    return expected_nodes(phy2log, weight, cluster, picks, top_k=top_k)


def check_routable(num_experts: int, cluster: Cluster) -> None:
    """``ClusterShapeError`` unless the nodes and the groups split evenly: a token's nodes
    are defined."""
    if not cluster.has_nodes:
        raise ClusterShapeError(
            f"{cluster.num_gpus} GPUs cannot be split evenly over "
            f"{cluster.num_nodes} nodes: a token's nodes are not defined"
        )
    if num_experts % cluster.num_groups:
        raise ClusterShapeError(
            f"{num_experts} experts cannot be split evenly into "
            f"{cluster.num_groups} groups: group-limited routing needs "
            f"equal groups"
        )


def expected_nodes(
    phy2log: torch.Tensor, weight: torch.Tensor, cluster: Cluster, picks: Routing, *, top_k: int = 8
) -> torch.Tensor:
    """``nodes_per_token`` of checked inputs, for the group choices ``picks`` of these loads:
    [layers, slots], [layers, experts] -> [layers]."""
    num_layers, num_experts = weight.shape
    num_nodes, num_groups = cluster.num_nodes, cluster.num_groups
    device = weight.device
    load = weight.double()

    # served[l, g, n]: the load of group g that node n serves (each expert's load split evenly
    # over its replicas).
    node_of_slot = torch.arange(cluster.num_replicas, device=device) // (
        cluster.num_replicas // num_nodes
    )
    replicas = torch.zeros(num_layers, num_experts * num_nodes, dtype=torch.float64, device=device)
    replicas.scatter_add_(
        1,
        phy2log.to(device, torch.int64) * num_nodes + node_of_slot,
        torch.ones(phy2log.shape, dtype=torch.float64, device=device),
    )
    replicas = replicas.view(num_layers, num_experts, num_nodes)
    share = replicas / replicas.sum(-1, keepdim=True)
    served = (load.unsqueeze(-1) * share).view(num_layers, num_groups, -1, num_nodes).sum(2)
    if picks.exact:
        set_served = torch.einsum("sg,lgn->lsn", picks.sets, served)  # [layers, subsets, nodes]
    else:
        rows = torch.arange(num_layers, device=device).view(-1, 1, 1)
        set_served = served[rows, picks.sets].sum(2)
    # q[l, s, n]: the share of the chosen groups' load that node n serves.
    set_load = set_served.sum(-1, keepdim=True)
    q = torch.where(set_load > 0, set_served / set_load.clamp(min=1e-300), 0.0)
    reached = (1 - (1 - q).clamp(min=0) ** top_k).sum(-1)  # [layers, subsets]
    return (picks.probability * reached).sum(-1)


@lru_cache(maxsize=32)
def _subset_lattice(num_groups: int, chosen: int) -> list[tuple[torch.Tensor, ...]]:
    """The subsets of 1 .. ``chosen`` groups, level by level (on the CPU): for each level, its
    membership [subsets, groups] (0 or 1, float64), and every way to reach one of its subsets
    by adding a group to a subset of the level below: (parent subset, group added, child
    subset), each [transitions]."""
    levels: list[tuple[torch.Tensor, ...]] = []
    below: dict[tuple[int, ...], int] = {(): 0}
    for size in range(1, chosen + 1):
        subsets = list(itertools.combinations(range(num_groups), size))
        index: dict[tuple[int, ...], int] = {subset: i for i, subset in enumerate(subsets)}
        parent, added, child = [], [], []
        for subset in subsets:
            for group in subset:
                parent.append(below[tuple(g for g in subset if g != group)])
                added.append(group)
                child.append(index[subset])
        membership = torch.zeros(len(subsets), num_groups, dtype=torch.float64)
        for i, subset in enumerate(subsets):
            membership[i, list(subset)] = 1.0
        levels.append((membership, torch.tensor(parent), torch.tensor(added), torch.tensor(child)))
        below = index
    return levels


def _subset_probabilities(
    group_load: torch.Tensor, chosen: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each subset of ``chosen`` groups and its probability under sampling without replacement
    proportional to load: [layers, groups] -> membership [subsets, groups] (float64),
    probability [layers, subsets].

    Dynamic programming over subsets: the probability of having picked T is the sum, over its
    groups g, of having picked T without g, then g. Once the groups left carry no load the next
    pick is uniform among them (they add no traffic, so only the total matters)."""
    num_layers, num_groups = group_load.shape
    device = group_load.device
    total = group_load.sum(-1, keepdim=True)
    probability = torch.ones(num_layers, 1, dtype=torch.float64, device=device)
    picked_load = torch.zeros(num_layers, 1, dtype=torch.float64, device=device)
    for size, level in enumerate(_subset_lattice(num_groups, chosen), start=1):
        membership, parent, added, child = (t.to(device) for t in level)
        left = (total - picked_load)[:, parent]
        step = torch.where(
            left > total * 1e-12,
            group_load[:, added] / left.clamp(min=1e-300),
            1 / (num_groups - size + 1),
        )
        probability = torch.zeros(
            num_layers, membership.shape[0], dtype=torch.float64, device=device
        ).index_add_(1, child, probability[:, parent] * step)
        picked_load = group_load @ membership.t()
    return membership, probability


def _sample_subsets(
    group_load: torch.Tensor, chosen: int, num_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """``num_samples`` subsets of ``chosen`` groups per layer, drawn without replacement
    proportional to load (Gumbel top-k): [layers, groups] -> [layers, samples, chosen]."""
    num_layers, num_groups = group_load.shape
    uniform = torch.rand(
        num_layers,
        num_samples,
        num_groups,
        generator=generator,
        dtype=torch.float64,
        device=group_load.device,
    )
    gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-300)))
    keys = group_load.log().unsqueeze(1) + gumbel
    return keys.topk(chosen, dim=-1).indices
