"""How balanced a plan is: per-GPU and per-node loads, balancedness, and its upper bound.

A plan puts each logical expert's load evenly over its replicas. GPU g holds slots
``g*R/G .. (g+1)*R/G - 1``; node n holds GPUs ``n*G/N .. (n+1)*G/N - 1``.
Balancedness of a layer is mean GPU load / max GPU load (1.0 is perfect).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cluster import Cluster
from .replication import replicate_experts
from .traffic import Routing, expected_nodes, nodes_per_token, routing

__all__ = [  # nodes_per_token: the traffic figure (eplb_core.traffic), shown beside these
    "Scores",
    "active_layers",
    "balancedness",
    "balancedness_bound",
    "gpu_loads",
    "max_over_mean",
    "moe_speedup",
    "node_loads",
    "nodes_per_token",
    "replica_counts",
    "routable",
    "score",
    "slot_loads",
    "trivial_placement",
]


def slot_loads(
    weight: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor | None = None
) -> torch.Tensor:
    """Load of each physical slot: [layers, experts], [layers, slots] -> [layers, slots].

    Each replica carries its expert's load divided by the expert's replica count; the count is
    taken from ``phy2log`` when ``logcnt`` is not given.
    """
    weight = weight.double()
    if logcnt is None:
        logcnt = replica_counts(phy2log, weight.shape[1])
    return (weight / logcnt.clamp(min=1)).gather(1, phy2log)


def replica_counts(phy2log: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Replicas of each logical expert: [layers, slots] -> [layers, experts]."""
    counts = torch.zeros(phy2log.shape[0], num_experts, dtype=torch.int64, device=phy2log.device)
    return counts.scatter_add_(1, phy2log, torch.ones_like(phy2log))


def gpu_loads(
    weight: torch.Tensor, phy2log: torch.Tensor, num_gpus: int, logcnt: torch.Tensor | None = None
) -> torch.Tensor:
    """Load of each GPU: [layers, gpus], float64."""
    loads = slot_loads(weight, phy2log, logcnt)
    return loads.view(loads.shape[0], num_gpus, -1).sum(-1)


def node_loads(gpu_load: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Load of each node from GPU loads: [layers, gpus] -> [layers, nodes]."""
    return gpu_load.view(gpu_load.shape[0], num_nodes, -1).sum(-1)


def balancedness(loads: torch.Tensor) -> torch.Tensor:
    """mean / max per layer: [layers, units] -> [layers]; a layer with no load counts as 1."""
    peak = loads.amax(-1)
    return torch.where(peak > 0, loads.mean(-1) / peak.clamp(min=1e-300), torch.ones_like(peak))


def max_over_mean(loads: torch.Tensor) -> torch.Tensor:
    """max / mean per layer (the inverse of balancedness): [layers, units] -> [layers]."""
    return 1.0 / balancedness(loads)


def balancedness_bound(
    weight: torch.Tensor, cluster: Cluster, policy: str = "global"
) -> torch.Tensor:
    """An upper bound on the balancedness any plan can reach under ``policy``, per layer:
    [layers, experts] -> [layers].

    The max GPU load of any plan is at least the mean GPU load ``W / G``. It is also at least
    the heaviest replica: a GPU holding a replica of expert e carries ``w_e / c_e`` from it, and
    no choice of replica counts ``c`` (summing to the slots) makes ``max_e w_e / c_e`` smaller
    than the greedy replication does (it hands each slot to the expert with the largest load per
    replica, which is optimal for this min-max). So balancedness <= mean / max(mean, that).

    Under the hierarchical policy each node holds ``k = groups / nodes`` whole groups, so some
    node carries at least the heaviest group plus the ``k - 1`` lightest (for ``k = 2``, exactly
    the best pairing: the i-th heaviest with the i-th lightest), and some GPU of it at least its
    share. That bound shows how much balance the policy's grouping itself costs.
    """
    weight = weight.double()
    _, _, logcnt = replicate_experts(weight, cluster.num_replicas)
    mean = weight.sum(-1) / cluster.num_gpus
    peak = torch.maximum(mean, (weight / logcnt).amax(-1))
    if policy == "hierarchical":
        groups_per_node = cluster.num_groups // cluster.num_nodes
        node_peak = _busiest_node_at_least(weight, cluster.num_groups, groups_per_node)
        peak = torch.maximum(peak, node_peak * cluster.num_nodes / cluster.num_gpus)
    return torch.where(peak > 0, mean / peak.clamp(min=1e-300), torch.ones_like(peak))


def _busiest_node_at_least(
    weight: torch.Tensor, num_groups: int, groups_per_node: int
) -> torch.Tensor:
    """A lower bound on the busiest node's load when whole groups go to nodes: [layers]."""
    groups = (
        weight.view(*weight.shape[:-1], num_groups, -1).sum(-1).sort(-1, descending=True).values
    )
    if groups_per_node == 2:
        return (groups + groups.flip(-1)).amax(-1)
    return groups[:, 0] + groups[:, num_groups - groups_per_node + 1 :].sum(-1)


def moe_speedup(before: Scores, after: Scores, weight: torch.Tensor) -> float:
    """The expected speed-up of the MoE part of a step from ``before`` to ``after``: a layer
    waits for its busiest GPU, so the step's MoE time is the sum over layers of the max GPU
    load (over the layers with load). weight: [layers, experts]."""
    active = active_layers(weight)
    slowest = after.gpu_load.amax(-1)[active].sum()
    return float(before.gpu_load.amax(-1)[active].sum() / slowest) if slowest > 0 else 1.0


def trivial_placement(
    num_layers: int, num_experts: int, num_replicas: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The layout engines start with before any balancing: slot p holds expert p mod E.

    Returns phy2log: [layers, num_replicas].
    """
    slots = torch.arange(num_replicas, dtype=torch.int64, device=device) % num_experts
    return slots.expand(num_layers, num_replicas).contiguous()


@dataclass(frozen=True)
class Scores:
    """How a placement spreads one load matrix: loads per GPU and node, and balance figures.

    Layers without load (dense layers in an engine's dump, all-zero rows) have balancedness 1
    and are left out of the two summary figures, which are over the layers that carry load.
    """

    gpu_load: torch.Tensor  # [layers, gpus], float64
    node_load: torch.Tensor | None  # [layers, nodes]; None when GPUs do not split over nodes
    balancedness: torch.Tensor  # [layers], GPU level
    mean_balancedness: float  # over the layers with load
    worst_max_over_mean: float  # the largest max/mean GPU load over the layers with load
    # Expected nodes a token reaches (``traffic.nodes_per_token``), per layer and its mean
    # over the layers with load; None where the nodes or the groups do not split evenly.
    nodes_per_token: torch.Tensor | None = None
    mean_nodes_per_token: float | None = None


def routable(num_experts: int, cluster: Cluster) -> bool:
    """Whether a token's nodes are defined: the nodes and the groups split evenly."""
    return cluster.has_nodes and num_experts % cluster.num_groups == 0


def active_layers(weight: torch.Tensor) -> torch.Tensor:
    """The layers that carry load: [..., layers, experts] -> [..., layers] bool; all of them
    where none does (then every figure is that of an idle layer)."""
    active = weight.sum(-1) > 0
    return active | ~active.any(-1, keepdim=True)


def score(
    weight: torch.Tensor,
    phy2log: torch.Tensor,
    cluster: Cluster,
    logcnt: torch.Tensor | None = None,
    picks: Routing | None = None,
) -> Scores:
    """Every figure of a placement phy2log [layers, slots] on loads [layers, experts], both
    checked. ``picks``: the loads' group choices (``traffic.routing``), when several placements
    are scored on the same loads; computed here otherwise."""
    gpu = gpu_loads(weight, phy2log, cluster.num_gpus, logcnt)
    per_layer = balancedness(gpu)
    active = active_layers(weight)
    traffic = None
    if routable(weight.shape[1], cluster):
        picks = routing(weight, cluster) if picks is None else picks
        traffic = expected_nodes(phy2log, weight, cluster, picks)
    return Scores(
        gpu_load=gpu,
        node_load=node_loads(gpu, cluster.num_nodes) if cluster.has_nodes else None,
        balancedness=per_layer,
        mean_balancedness=float(per_layer[active].mean()),
        worst_max_over_mean=float(max_over_mean(gpu)[active].max()),
        nodes_per_token=traffic,
        mean_nodes_per_token=None if traffic is None else float(traffic[active].mean()),
    )
