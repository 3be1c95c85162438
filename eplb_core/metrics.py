"""How balanced a plan is: per-GPU and per-node loads, balancedness, and its upper bound.

A plan puts each logical expert's load evenly over its replicas. GPU g holds slots
``g*R/G .. (g+1)*R/G - 1``; node n holds GPUs ``n*G/N .. (n+1)*G/N - 1``.
Balancedness of a layer is mean GPU load / max GPU load (1.0 is perfect).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .replication import replicate_experts


def slot_loads(weight: torch.Tensor, phy2log: torch.Tensor,
               logcnt: torch.Tensor | None = None) -> torch.Tensor:
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


def gpu_loads(weight: torch.Tensor, phy2log: torch.Tensor, num_gpus: int,
              logcnt: torch.Tensor | None = None) -> torch.Tensor:
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


def balancedness_bound(weight: torch.Tensor, num_replicas: int, num_gpus: int,
                       num_groups: int | None = None,
                       num_nodes: int | None = None) -> torch.Tensor:
    """An upper bound on the balancedness any plan can reach, per layer: [layers].

    The max GPU load of any plan is at least the mean GPU load ``W / G``. It is also at least
    the heaviest replica: a GPU holding a replica of expert e carries ``w_e / c_e`` from it, and
    no choice of replica counts ``c`` (summing to the slots) makes ``max_e w_e / c_e`` smaller
    than the greedy replication does (it hands each slot to the expert with the largest load per
    replica, which is optimal for this min-max). So balancedness <= mean / max(mean, that).

    Given ``num_groups`` and ``num_nodes`` where the hierarchical policy applies (groups divide
    evenly over nodes), each node holds ``k = groups / nodes`` whole groups, so some node carries
    at least the heaviest group plus the ``k - 1`` lightest (for ``k = 2``, exactly the best
    pairing: the i-th heaviest with the i-th lightest), and some GPU of it at least its share.
    That bound shows how much balance the policy's grouping itself costs.
    """
    weight = weight.double()
    _, _, logcnt = replicate_experts(weight, num_replicas)
    peak = torch.maximum(weight.sum(-1) / num_gpus, (weight / logcnt).amax(-1))
    if num_groups and num_nodes and num_groups % num_nodes == 0:
        node_peak = _busiest_node_at_least(weight, num_groups, num_groups // num_nodes)
        peak = torch.maximum(peak, node_peak / (num_gpus // num_nodes))
    mean = weight.sum(-1) / num_gpus
    return torch.where(peak > 0, mean / peak.clamp(min=1e-300), torch.ones_like(peak))


def _busiest_node_at_least(weight: torch.Tensor, num_groups: int,
                           groups_per_node: int) -> torch.Tensor:
    """A lower bound on the busiest node's load when whole groups go to nodes: [layers]."""
    groups = weight.unflatten(-1, (num_groups, -1)).sum(-1).sort(-1, descending=True).values
    if groups_per_node == 2:
        return (groups + groups.flip(-1)).amax(-1)
    return groups[:, 0] + groups[:, num_groups - groups_per_node + 1:].sum(-1)


def trivial_placement(num_layers: int, num_experts: int, num_replicas: int,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """The layout engines start with before any balancing: slot p holds expert p mod E.

    Returns phy2log: [layers, num_replicas].
    """
    slots = torch.arange(num_replicas, dtype=torch.int64, device=device) % num_experts
    return slots.expand(num_layers, num_replicas).contiguous()


@dataclass(frozen=True)
class PlanReport:
    """Loads and balance figures of one plan on one load matrix."""

    gpu_load: torch.Tensor  # [layers, gpus]
    node_load: torch.Tensor  # [layers, nodes]
    balancedness: torch.Tensor  # [layers], GPU level
    mean_balancedness: float
    worst_max_over_mean: float  # the largest max/mean GPU load over layers


def evaluate(weight: torch.Tensor, phy2log: torch.Tensor, num_gpus: int, num_nodes: int,
             logcnt: torch.Tensor | None = None) -> PlanReport:
    """Every figure of a plan at once."""
    gpu = gpu_loads(weight, phy2log, num_gpus, logcnt)
    per_layer = balancedness(gpu)
    return PlanReport(
        gpu_load=gpu,
        node_load=node_loads(gpu, num_nodes),
        balancedness=per_layer,
        mean_balancedness=float(per_layer.mean()),
        worst_max_over_mean=float(max_over_mean(gpu).max()),
    )
