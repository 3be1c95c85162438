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
    if phy2log.shape[1] % num_gpus:
        raise ValueError(f"{phy2log.shape[1]} slots cannot be split evenly over {num_gpus} GPUs")
    kept = kept_in_place(old_phy2log, phy2log, num_gpus, logcnt.shape[1])
    return kept, build_log2phy(kept, logcnt), logcnt


def kept_in_place(old_phy2log: torch.Tensor, phy2log: torch.Tensor, num_gpus: int,
                  num_experts: int) -> torch.Tensor:
    """``keep_slots``'s re-ordered plan alone: [layers, slots] (shapes checked by the caller;
    expert ids below ``num_experts``)."""
    num_layers, num_slots = phy2log.shape
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
    return torch.empty_like(new).scatter_(-1, free_slots, values).view(num_layers, num_slots)


def deploy(old_phy2log: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor, num_gpus: int,
           num_nodes: int, *, renumber_gpus: bool, keep_old_slots: bool) -> torch.Tensor:
    """A plan as it goes over the placement in use: nodes and GPUs renumbered to match it
    (``match_gpus``), then experts that stay on a GPU kept in their slots (``keep_slots``), as
    asked. Neither changes the plan's balancedness.

    old_phy2log, phy2log: [layers, slots]; logcnt: [layers, experts] -> phy2log [layers, slots]
    """
    num_experts = logcnt.shape[1]
    deployed = (kept_in_place(old_phy2log, phy2log, num_gpus, num_experts) if keep_old_slots
                else phy2log)
    if renumber_gpus:
        renumbered = match_gpus(old_phy2log, phy2log, num_gpus, num_nodes)
        if keep_old_slots:
            renumbered = kept_in_place(old_phy2log, renumbered, num_gpus, num_experts)
        # Per layer, whichever moves fewer (the matching maximises slots shared per node and
        # per GPU, which bounds the moves but is not them).
        fewer = (renumbered != old_phy2log).sum(-1) < (deployed != old_phy2log).sum(-1)
        deployed = torch.where(fewer.unsqueeze(1), renumbered, deployed)
    return deployed


def match_gpus(old_phy2log: torch.Tensor, phy2log: torch.Tensor, num_gpus: int,
               num_nodes: int) -> torch.Tensor:
    """Renumber a plan's nodes, and the GPUs within each node, to keep experts where they are.

    Nodes are interchangeable, and so are the GPUs of a node: renumbering them changes which
    node or GPU carries which load, never the set of loads, so balancedness and the
    hierarchical policy's group-to-node rule hold. Each level is matched greedily, per layer,
    on the slots two blocks (nodes, or GPUs) could keep (``_renumber``): the (new, old) pair
    sharing the most first, then the best pair left, and so on; kept only where it keeps more
    than the numbering as it is. ``keep_slots`` afterwards keeps the shared experts in their
    old slots. Time and memory grow with the slots (times ``_MAX_PARTNERS``), not with the
    square of the GPUs.

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


# A new block is paired with at most this many of the old blocks holding each of its experts
# (all of them when fewer hold it, as on any real cluster): the bound on the candidate pairs.
_MAX_PARTNERS = 16


def _renumber(old: torch.Tensor, new: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Permute the blocks of ``new`` [rows, blocks, slots] to share the most with the same
    blocks of ``old``; kept only where it shares more than the numbering as it is.

    Two blocks share ``sum over experts of min(copies in one, copies in the other)`` slots (what
    ``keep_slots`` keeps). Only pairs that share an expert are candidates (per expert held by a
    new block, up to ``_MAX_PARTNERS`` old blocks holding it), so the work is about linear in
    the slots. The matching is the greedy one (the pair sharing the most first, ties to the
    lower new then old block), computed in parallel rounds: a pair is taken when it is the
    best pair left for both its blocks. That gives the same matching as taking pairs one by
    one in that order. Blocks left without a candidate pair in common are paired in order.
    """
    rows, blocks, _ = new.shape
    device = new.device
    block_ids = rows * blocks
    new_key, new_count = _distinct(new, num_experts)
    old_key, old_count = _distinct(old, num_experts)
    new_block, new_expert = new_key // num_experts, new_key % num_experts
    old_block, old_expert = old_key // num_experts, old_key % num_experts
    row_of = lambda block: block // blocks  # noqa: E731

    # Candidates: for each expert of a new block, old blocks of the same row holding it.
    holders_key = row_of(old_block) * num_experts + old_expert
    by_expert = holders_key.argsort(stable=True)
    holders_sorted = holders_key[by_expert]
    wanted = row_of(new_block) * num_experts + new_expert
    first = torch.searchsorted(holders_sorted, wanted)
    held = torch.searchsorted(holders_sorted, wanted, right=True) - first
    # Spread the partners of a crowded expert over its holders: each new block starts at its
    # own rank among the new blocks holding the expert.
    in_turn = wanted.argsort(stable=True)
    position = torch.arange(len(wanted), device=device)
    rank = torch.empty_like(wanted).scatter_(
        0, in_turn, position - torch.searchsorted(wanted[in_turn], wanted[in_turn]))
    offset = torch.arange(_MAX_PARTNERS, device=device)
    valid = offset < held.unsqueeze(1)
    partner = first.unsqueeze(1) + (rank.unsqueeze(1) + offset) % held.clamp(min=1).unsqueeze(1)
    partner = old_block[by_expert[partner[valid]]]
    candidate = torch.cat([new_block.unsqueeze(1).expand(-1, _MAX_PARTNERS)[valid] * blocks
                           + partner % blocks,
                           torch.arange(block_ids, device=device) * blocks
                           + torch.arange(block_ids, device=device) % blocks]).unique()
    # Slots each candidate pair shares: over the new block's experts, the old block's copies.
    pair_new, pair_old = candidate // blocks, row_of(candidate // blocks) * blocks + candidate % blocks
    starts = torch.searchsorted(new_block, pair_new)
    lengths = torch.searchsorted(new_block, pair_new, right=True) - starts
    pair_of = torch.repeat_interleave(torch.arange(len(candidate), device=device), lengths)
    entry = (torch.arange(len(pair_of), device=device)
             - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
             + starts[pair_of])
    lookup = pair_old[pair_of] * num_experts + new_expert[entry]
    found = torch.searchsorted(old_key, lookup).clamp(max=len(old_key) - 1)
    in_old = torch.where(old_key[found] == lookup, old_count[found], 0)
    shared = torch.zeros(len(candidate), dtype=torch.int64, device=device).index_add_(
        0, pair_of, torch.minimum(new_count[entry], in_old))

    target = _greedy_matching(pair_new, pair_old, shared, _scrambled(candidate), block_ids)
    local = (target % blocks).view(rows, blocks)
    matched = torch.zeros(block_ids, dtype=torch.int64, device=device)
    is_pair = (target[pair_new] == pair_old) & (shared > 0)
    matched.index_add_(0, pair_new[is_pair], shared[is_pair])
    identity = torch.zeros(block_ids, dtype=torch.int64, device=device)
    same = (pair_new == pair_old)
    identity.index_add_(0, pair_new[same], shared[same])
    better = matched.view(rows, blocks).sum(-1) > identity.view(rows, blocks).sum(-1)
    local = torch.where(better.unsqueeze(-1), local,
                        torch.arange(blocks, device=device).expand(rows, blocks))
    return torch.empty_like(new).scatter_(1, local.unsqueeze(-1).expand_as(new), new)


def _distinct(placement: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (block, expert) pairs of blocks [rows, blocks, slots], with their copies: keys
    ``(row * blocks + block) * num_experts + expert``, increasing, and counts."""
    rows, blocks, per_block = placement.shape
    block = torch.arange(rows * blocks, device=placement.device).view(rows, blocks, 1)
    return (block * num_experts + placement).flatten().unique(return_counts=True)


def _scrambled(key: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random order of int64 keys (two Park-Miller steps), to break ties."""
    prime = 2147483647
    return (key % prime * 48271 % prime) * 48271 % prime


def _greedy_matching(new_block: torch.Tensor, old_block: torch.Tensor, weight: torch.Tensor,
                     tie: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """Greedy maximum-weight matching of new blocks to old blocks on candidate pairs (new,
    old, weight > 0), in the order (weight down, ``tie`` up), computed in rounds: each round
    takes every pair that comes first among the pairs left at both its blocks. The pair first
    overall always is, and every pair taken is one the one-by-one greedy takes too, so the
    result is the greedy's; ties in a fixed pseudo-random order keep the rounds few (about
    the log of the pairs; a plain order can chain them). Blocks without a pair are then
    matched in increasing order. Blocks are numbered globally: [pairs] -> target
    [num_blocks], the old block of each new block.
    """
    device = new_block.device
    positive = weight > 0
    new_block, old_block = new_block[positive], old_block[positive]
    order = tie[positive].argsort()
    order = order[(-weight[positive][order]).argsort(stable=True)]
    new_block, old_block = new_block[order], old_block[order]
    rank = torch.arange(len(order), device=device)
    target = torch.full((num_blocks,), -1, dtype=torch.int64, device=device)
    taken = torch.zeros(num_blocks, dtype=torch.bool, device=device)
    while len(rank):
        best_new = torch.full((num_blocks,), len(order), device=device).scatter_reduce(
            0, new_block, rank, "amin")
        best_old = torch.full((num_blocks,), len(order), device=device).scatter_reduce(
            0, old_block, rank, "amin")
        take = (best_new[new_block] == rank) & (best_old[old_block] == rank)
        target[new_block[take]] = old_block[take]
        taken[old_block[take]] = True
        left = (target[new_block] < 0) & ~taken[old_block]
        new_block, old_block, rank = new_block[left], old_block[left], rank[left]
    # The rest, in order: the i-th free new block of a row takes its i-th free old block.
    free_new = (target < 0).nonzero().flatten()
    free_old = (~taken).nonzero().flatten()
    target[free_new] = free_old
    return target


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
