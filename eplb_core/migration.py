"""From the placement in use to a new plan: how many expert copies move, and how to move fewer.

A slot whose expert changes needs that expert's weights copied in, so the number of changed
slots is the migration cost of a plan. The loads a GPU carries depend only on which experts it
holds, not on their order within the GPU, so a plan's experts can be re-ordered within each GPU
to keep as many as possible in the slots they already occupy (as vLLM's EPLB does). And nodes,
and GPUs within a node, are interchangeable: renumbering them to match the placement in use
keeps more experts in place at no cost in balance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import PlacementError


@dataclass(frozen=True)
class Moves:
    """Slots whose expert changes between two placements."""

    per_layer: torch.Tensor  # [layers], int64
    total: int


def validate_placement(phy2log: torch.Tensor, num_layers: int, num_experts: int,
                       num_replicas: int) -> None:
    """Raise ``ValueError`` unless phy2log is a placement [layers, slots] of every expert."""
    if phy2log.dim() != 2:
        raise PlacementError(f"a placement (phy2log) must be 2-D [layers, slots], got shape "
                         f"{list(phy2log.shape)}")
    if tuple(phy2log.shape) != (num_layers, num_replicas):
        raise PlacementError(f"the placement has shape {list(phy2log.shape)}; this plan needs "
                         f"[{num_layers}, {num_replicas}] (layers, slots)")
    if phy2log.is_floating_point() or phy2log.is_complex() or phy2log.dtype == torch.bool:
        raise PlacementError(f"a placement holds expert ids (integers), got dtype {phy2log.dtype}")
    if bool(((phy2log < 0) | (phy2log >= num_experts)).any()):
        raise PlacementError(f"the placement has expert ids outside 0..{num_experts - 1}")
    held = torch.zeros(num_layers, num_experts, dtype=torch.bool, device=phy2log.device)
    held.scatter_(1, phy2log.long(), True)
    missing = (~held).nonzero()
    if len(missing):
        layer, expert = missing[0].tolist()
        raise PlacementError(f"the placement holds no replica of expert {expert} in layer {layer}; "
                         f"every expert needs at least one slot")


def count_moves(old_phy2log: torch.Tensor, new_phy2log: torch.Tensor) -> Moves:
    """Slots whose expert differs between two placements of the same shape [layers, slots]."""
    if old_phy2log.shape != new_phy2log.shape:
        raise PlacementError(f"placements differ in shape: {list(old_phy2log.shape)} and "
                         f"{list(new_phy2log.shape)}")
    per_layer = (old_phy2log != new_phy2log).sum(-1)
    return Moves(per_layer=per_layer, total=int(per_layer.sum()))


def keep_slots(old_phy2log: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor,
               num_gpus: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-order a plan within each GPU so that experts already on a GPU keep their old slots.

    Within a GPU, an expert held ``a`` times before and ``b`` times by the plan keeps
    ``min(a, b)`` of its old slots, the most any order can keep; the plan's other replicas fill
    the GPU's remaining slots in slot order. Each GPU holds the same experts as in the plan, so
    no load changes, and moves never increase.

    Parameters:
        old_phy2log: [layers, slots], the placement in use
        phy2log, logcnt: the new plan ([layers, slots], [layers, experts])
        num_gpus: GPUs; GPU g holds slots g*slots/num_gpus .. (g+1)*slots/num_gpus - 1

    Returns:
        phy2log, log2phy, logcnt of the re-ordered plan; log2phy lists each expert's slots in
        increasing order, padded with -1.
    """
    count_moves(old_phy2log, phy2log)  # checks the shapes agree
    num_layers, num_slots = phy2log.shape
    if num_slots % num_gpus:
        raise ValueError(f"{num_slots} slots cannot be split evenly over {num_gpus} GPUs")
    num_experts = logcnt.shape[1]
    old = old_phy2log.long().view(num_layers, num_gpus, -1)
    new = phy2log.view(num_layers, num_gpus, -1)
    old_count = _counts_per_gpu(old, num_experts)
    new_count = _counts_per_gpu(new, num_experts)
    # The k-th copy of expert e in an old slot stays when the plan puts at least k+1 copies of e
    # on that GPU; the plan's copies beyond the old count are the ones that move in.
    stays = _occurrence(old) < new_count.gather(-1, old)
    moves_in = _occurrence(new) >= old_count.gather(-1, new)
    # Free slots first (in slot order), then the kept ones; incoming copies first, in plan order.
    free_slots = stays.long().argsort(dim=-1, stable=True)
    incoming = (~moves_in).long().argsort(dim=-1, stable=True)
    position = torch.arange(new.shape[-1], device=new.device)
    num_free = (~stays).sum(-1, keepdim=True)
    values = torch.where(position < num_free, new.gather(-1, incoming), old.gather(-1, free_slots))
    kept = torch.empty_like(new).scatter_(-1, free_slots, values).view(num_layers, num_slots)
    return kept, build_log2phy(kept, logcnt), logcnt


def deploy(old_phy2log: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor, num_gpus: int,
           num_nodes: int, *, renumber_gpus: bool, keep_old_slots: bool) -> torch.Tensor:
    """A plan as it goes over the placement in use: nodes and GPUs renumbered to match it
    (``match_gpus``), then experts that stay on a GPU kept in their slots (``keep_slots``), as
    asked. Neither changes the plan's balancedness.

    old_phy2log, phy2log: [layers, slots]; logcnt: [layers, experts] -> phy2log [layers, slots]
    """
    if renumber_gpus:
        phy2log = match_gpus(old_phy2log, phy2log, num_gpus, num_nodes)
    if keep_old_slots:
        phy2log = keep_slots(old_phy2log, phy2log, logcnt, num_gpus)[0]
    return phy2log


def match_gpus(old_phy2log: torch.Tensor, phy2log: torch.Tensor, num_gpus: int,
               num_nodes: int) -> torch.Tensor:
    """Renumber a plan's nodes, and the GPUs within each node, to keep experts where they are.

    Nodes are interchangeable, and so are the GPUs of a node: renumbering them changes which
    node or GPU carries which load, never the set of loads, so balancedness and the
    hierarchical policy's group-to-node rule hold. Each level is matched greedily, per layer:
    the (new, old) pair sharing the most experts first, then the best pair left, and so on.
    ``keep_slots`` afterwards keeps the shared experts in their old slots.

    old_phy2log, phy2log: [layers, slots] -> the renumbered phy2log: [layers, slots]
    """
    count_moves(old_phy2log, phy2log)  # checks the shapes agree
    if num_gpus % num_nodes or phy2log.shape[1] % num_gpus:
        raise ValueError(f"{phy2log.shape[1]} slots on {num_gpus} GPUs cannot be split evenly "
                         f"over {num_nodes} nodes")
    num_layers, num_slots = phy2log.shape
    num_experts = int(torch.maximum(phy2log.max(), old_phy2log.max())) + 1
    old = old_phy2log.long()
    nodes = _renumber(old.view(num_layers, num_nodes, -1), phy2log.view(num_layers, num_nodes, -1),
                      num_experts)
    gpus_per_node = num_gpus // num_nodes
    old_gpus = old.view(num_layers * num_nodes, gpus_per_node, -1)
    new_gpus = nodes.view(num_layers * num_nodes, gpus_per_node, -1)
    return _renumber(old_gpus, new_gpus, num_experts).view(num_layers, num_slots)


def _renumber(old: torch.Tensor, new: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Permute the blocks of ``new`` [rows, blocks, slots] to share the most experts with the
    same blocks of ``old``: greedy matching on the count of experts both blocks hold, kept only
    where it shares more than the numbering as it is."""
    rows, blocks, _ = new.shape

    def held(placement: torch.Tensor) -> torch.Tensor:
        present = torch.zeros(rows, blocks, num_experts, device=placement.device)
        return present.scatter_(-1, placement, 1.0)

    shared = torch.bmm(held(new), held(old).transpose(1, 2))  # [rows, new block, old block]
    left = shared.clone()
    target = torch.empty(rows, blocks, dtype=torch.int64, device=new.device)
    row_ids = torch.arange(rows, device=new.device)
    for _ in range(blocks):
        best = left.flatten(1).argmax(1)
        new_block, old_block = best // blocks, best % blocks
        target[row_ids, new_block] = old_block
        left[row_ids, new_block, :] = -1
        left[row_ids, :, old_block] = -1
    matched = shared.gather(2, target.unsqueeze(-1)).sum((1, 2))
    identity = torch.arange(blocks, device=new.device).expand(rows, blocks)
    target = torch.where((matched > shared.diagonal(dim1=1, dim2=2).sum(-1)).unsqueeze(-1),
                         target, identity)
    return torch.empty_like(new).scatter_(1, target.unsqueeze(-1).expand_as(new), new)


def build_log2phy(phy2log: torch.Tensor, logcnt: torch.Tensor) -> torch.Tensor:
    """Each expert's slots in increasing order, padded with -1: [layers, experts, max count]."""
    num_layers, num_slots = phy2log.shape
    max_count = int(logcnt.max())
    by_expert = phy2log.argsort(dim=-1, stable=True)  # slots grouped by expert, in slot order
    first = logcnt.cumsum(-1) - logcnt  # where each expert's run starts in by_expert
    expert = phy2log.gather(-1, by_expert)
    rank = torch.arange(num_slots, device=phy2log.device) - first.gather(-1, expert)
    log2phy = torch.full((num_layers, logcnt.shape[1], max_count), -1, dtype=torch.int64,
                         device=phy2log.device)
    log2phy.view(num_layers, -1).scatter_(-1, expert * max_count + rank, by_expert)
    return log2phy


def _counts_per_gpu(placement: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Copies of each expert on each GPU: [layers, gpus, slots per GPU] -> [layers, gpus, E]."""
    counts = torch.zeros(*placement.shape[:2], num_experts, dtype=torch.int64,
                         device=placement.device)
    return counts.scatter_add_(-1, placement, torch.ones_like(placement))


def _occurrence(placement: torch.Tensor) -> torch.Tensor:
    """For each slot, how many earlier slots of the same GPU hold the same expert."""
    order = placement.argsort(dim=-1, stable=True)
    ordered = placement.gather(-1, order)
    position = torch.arange(placement.shape[-1], device=placement.device).expand_as(placement)
    run_start = torch.ones_like(ordered, dtype=torch.bool)
    run_start[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    first = torch.where(run_start, position, torch.zeros_like(position)).cummax(-1).values
    return torch.empty_like(placement).scatter_(-1, order, position - first)
