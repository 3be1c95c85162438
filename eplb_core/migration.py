"""From the placement in use to a new plan: how many expert copies move, and how to move fewer.

A slot whose expert changes needs that expert's weights copied in, so the number of changed
slots is the migration cost of a plan. The loads a GPU carries depend only on which experts it
holds, not on their order within the GPU, so a plan's experts can be re-ordered within each GPU
to keep as many as possible in the slots they already occupy (as vLLM's EPLB does). And nodes,
and GPUs within a node, are interchangeable: renumbering them to match the placement in use
keeps more experts in place at no cost in balance. ``migration_cost`` turns the moves into
bytes, and into time given the GPUs' link bandwidth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from .cluster import DEEPSEEK_V3_EXPERT_BYTES
from .errors import ClusterShapeError, OptionError, PlacementError


@dataclass(frozen=True)
class Moves:
    """Slots whose expert changes between two placements."""

    per_layer: torch.Tensor  # [layers], int64
    total: int


@dataclass(frozen=True)
class MigrationCost:
    """What going from one placement to another copies: every slot whose expert changes
    receives that expert's weights (from another GPU, or from another slot of its own: counted
    all the same, so this is an upper bound on the traffic between GPUs)."""

    moves: int  # slots whose expert changes, over all layers
    expert_bytes: int  # the weights of one expert in one layer
    total_bytes: int  # moves * expert_bytes
    max_gpu_bytes: int  # the most any one GPU receives, over all layers: the critical path
    busiest_gpu: int  # the GPU that receives it (the lowest on ties)
    link_gb_per_s: float | None  # the bandwidth into each GPU, in GB/s (1e9 bytes)
    seconds: float | None  # max_gpu_bytes / bandwidth; None without a bandwidth

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_copy_options(expert_bytes: int, link_gb_per_s: float | None = None) -> None:
    """``OptionError`` unless an expert's bytes are a positive whole number and the link, when
    given, a positive finite number of GB/s: checked before a plan or a replay is made."""
    if isinstance(expert_bytes, bool) or not isinstance(expert_bytes, int) or expert_bytes <= 0:
        raise OptionError(f"expert_bytes must be a positive whole number, got {expert_bytes!r}")
    if link_gb_per_s is not None and (
        isinstance(link_gb_per_s, bool)
        or not isinstance(link_gb_per_s, (int, float))
        or not 0 < link_gb_per_s < float("inf")
    ):
        raise OptionError(f"link_gb_per_s must be a positive number of GB/s, got {link_gb_per_s!r}")


def migration_cost(
    old_phy2log: torch.Tensor,
    new_phy2log: torch.Tensor,
    num_gpus: int,
    *,
    expert_bytes: int = DEEPSEEK_V3_EXPERT_BYTES,
    link_gb_per_s: float | None = None,
) -> MigrationCost:
    """The bytes a migration copies, in all and into the busiest GPU, and, given each GPU's
    link bandwidth, the time the busiest GPU takes (GPUs receive in parallel).

    old_phy2log, new_phy2log: [layers, slots]; GPU g holds slots g*slots/num_gpus ..
    """
    per_layer = count_moves(old_phy2log, new_phy2log).per_layer  # checks the shapes agree
    num_layers, num_slots = new_phy2log.shape
    if num_gpus < 1 or num_slots % num_gpus:
        raise ClusterShapeError(f"{num_slots} slots cannot be split evenly over {num_gpus} GPUs")
    check_copy_options(expert_bytes, link_gb_per_s)
    received = (old_phy2log != new_phy2log).view(num_layers, num_gpus, -1).sum((0, 2))
    busiest = int(received.argmax())
    max_gpu_bytes = int(received[busiest]) * expert_bytes
    return MigrationCost(
        moves=int(per_layer.sum()),
        expert_bytes=expert_bytes,
        total_bytes=int(per_layer.sum()) * expert_bytes,
        max_gpu_bytes=max_gpu_bytes,
        busiest_gpu=busiest,
        link_gb_per_s=link_gb_per_s,
        seconds=None if link_gb_per_s is None else max_gpu_bytes / (link_gb_per_s * 1e9),
    )


def validate_placement(
    phy2log: torch.Tensor, num_layers: int, num_experts: int, num_replicas: int
) -> None:
    """Raise ``ValueError`` unless phy2log is a placement [layers, slots] of every expert."""
    if phy2log.dim() != 2:
        raise PlacementError(
            f"a placement (phy2log) must be 2-D [layers, slots], got shape {list(phy2log.shape)}"
        )
    if tuple(phy2log.shape) != (num_layers, num_replicas):
        raise PlacementError(
            f"the placement has shape {list(phy2log.shape)}; this plan needs "
            f"[{num_layers}, {num_replicas}] (layers, slots)"
        )
    if phy2log.is_floating_point() or phy2log.is_complex() or phy2log.dtype == torch.bool:
        raise PlacementError(f"a placement holds expert ids (integers), got dtype {phy2log.dtype}")
    if bool(((phy2log < 0) | (phy2log >= num_experts)).any()):
        raise PlacementError(f"the placement has expert ids outside 0..{num_experts - 1}")
    held = torch.zeros(num_layers, num_experts, dtype=torch.bool, device=phy2log.device)
    held.scatter_(1, phy2log.long(), True)
    missing = (~held).nonzero()
    if len(missing):
        layer, expert = missing[0].tolist()
        raise PlacementError(
            f"the placement holds no replica of expert {expert} in layer {layer}; "
            f"every expert needs at least one slot"
        )


def count_moves(old_phy2log: torch.Tensor, new_phy2log: torch.Tensor) -> Moves:
    """Slots whose expert differs between two placements of the same shape [layers, slots]."""
    if old_phy2log.shape != new_phy2log.shape:
        raise PlacementError(
            f"placements differ in shape: {list(old_phy2log.shape)} and {list(new_phy2log.shape)}"
        )
    per_layer = (old_phy2log != new_phy2log).sum(-1)
    return Moves(per_layer=per_layer, total=int(per_layer.sum()))


def keep_slots(
    old_phy2log: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor, num_gpus: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        raise ClusterShapeError(
            f"{phy2log.shape[1]} slots cannot be split evenly over {num_gpus} GPUs"
        )
    kept = kept_in_place(old_phy2log, phy2log, num_gpus, logcnt.shape[1])
    return kept, build_log2phy(kept, logcnt), logcnt


def kept_in_place(
    old_phy2log: torch.Tensor, phy2log: torch.Tensor, num_gpus: int, num_experts: int
) -> torch.Tensor:
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


def deploy(
    old_phy2log: torch.Tensor,
    phy2log: torch.Tensor,
    logcnt: torch.Tensor,
    num_gpus: int,
    num_nodes: int,
    *,
    renumber_gpus: bool,
    keep_old_slots: bool,
) -> torch.Tensor:
    """A plan as it goes over the placement in use: nodes and GPUs renumbered to match it
    (``match_gpus``), then experts that stay on a GPU kept in their slots (``keep_slots``), as
    asked. Neither changes the plan's balancedness.

    old_phy2log, phy2log: [layers, slots]; logcnt: [layers, experts] -> phy2log [layers, slots]
    """
    num_experts = logcnt.shape[1]
    deployed = (
        kept_in_place(old_phy2log, phy2log, num_gpus, num_experts) if keep_old_slots else phy2log
    )
    if renumber_gpus:
        renumbered = match_gpus(old_phy2log, phy2log, num_gpus, num_nodes)
        if keep_old_slots:
            renumbered = kept_in_place(old_phy2log, renumbered, num_gpus, num_experts)
        # Per layer, whichever moves fewer (the matching maximises slots shared per node and
        # per GPU, which bounds the moves but is not them).
        fewer = (renumbered != old_phy2log).sum(-1) < (deployed != old_phy2log).sum(-1)
        deployed = torch.where(fewer.unsqueeze(1), renumbered, deployed)
    return deployed


def match_gpus(
    old_phy2log: torch.Tensor, phy2log: torch.Tensor, num_gpus: int, num_nodes: int
) -> torch.Tensor:
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
        raise ClusterShapeError(
            f"{phy2log.shape[1]} slots on {num_gpus} GPUs cannot be split evenly "
            f"over {num_nodes} nodes"
        )
    num_layers, num_slots = phy2log.shape
    num_experts = int(torch.maximum(phy2log.max(), old_phy2log.max())) + 1
    old = old_phy2log.long()
    nodes = _renumber(
        old.view(num_layers, num_nodes, -1), phy2log.view(num_layers, num_nodes, -1), num_experts
    )
    gpus_per_node = num_gpus // num_nodes
    old_gpus = old.view(num_layers * num_nodes, gpus_per_node, -1)
    new_gpus = nodes.view(num_layers * num_nodes, gpus_per_node, -1)
    return _renumber(old_gpus, new_gpus, num_experts).view(num_layers, num_slots)


# A new block is paired with at most this many of the old blocks holding each of its experts
# (all of them when fewer hold it, as on any real cluster): the bound on the candidate pairs.
_MAX_PARTNERS = 16
# While a level has at most this many pairs of blocks (rows * blocks * blocks), and this many
# products to count what they share (pairs * experts), every pair is a candidate: one table.
_DENSE_TABLE = 1 << 17
_DENSE_PRODUCTS = 1 << 26


def _renumber(old: torch.Tensor, new: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Permute the blocks of ``new`` [rows, blocks, slots] to share the most with the same
    blocks of ``old``; kept only where it shares more than the numbering as it is.

    Two blocks share the experts both hold. The matching is the greedy one (the pair that
    shares most first, ties in a fixed scrambled order of the pairs, then the pairs left in
    order), computed in
    parallel rounds: a pair is taken when it comes first among the pairs left at both its
    blocks. The pair first overall always is, and a pair taken is one the one-by-one greedy
    takes too, so the result is the greedy's; scrambled ties keep the rounds few (a plain
    order can chain them). While a row's pairs of blocks are few, every pair is a candidate
    (``_shared_table``); beyond, only pairs that share an expert (``_shared_by_candidates``),
    so that work and memory grow about linearly with the slots.
    """
    rows, blocks, _ = new.shape
    device = new.device
    pairs = rows * blocks * blocks
    if pairs <= _DENSE_TABLE and pairs * num_experts <= _DENSE_PRODUCTS:
        shared = _shared_table(old, new, num_experts)
        target = _greedy_on_table(shared)
        matched = shared.gather(2, target.unsqueeze(-1)).sum((1, 2))
        identity = shared.diagonal(dim1=1, dim2=2).sum(-1)
    else:
        pair_new, pair_old, shared = _shared_by_candidates(old, new, num_experts)
        target = _greedy_on_pairs(pair_new, pair_old, shared, rows, blocks)
        matched = torch.zeros(rows * blocks, dtype=shared.dtype, device=device)
        is_pair = target[pair_new] == pair_old
        matched.index_add_(0, pair_new[is_pair], shared[is_pair])
        identity = torch.zeros_like(matched)
        same = pair_new == pair_old
        identity.index_add_(0, pair_new[same], shared[same])
        target = (target % blocks).view(rows, blocks)
        matched, identity = matched.view(rows, blocks).sum(-1), identity.view(rows, blocks).sum(-1)
    target = torch.where(
        (matched > identity).unsqueeze(-1),
        target,
        torch.arange(blocks, device=device).expand(rows, blocks),
    )
    return torch.empty_like(new).scatter_(1, target.unsqueeze(-1).expand_as(new), new)


def _shared_table(old: torch.Tensor, new: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Experts held by both blocks of every (new, old) pair of a row, one batched matrix
    product: old, new: [rows, blocks, slots] -> [rows, new block, old block], int64."""
    rows, blocks, _ = new.shape

    def held(placement: torch.Tensor) -> torch.Tensor:
        present = torch.zeros(rows, blocks, num_experts, device=new.device)
        return present.scatter_(2, placement, 1.0)

    return torch.bmm(held(new), held(old).transpose(1, 2)).long()


def _greedy_on_table(shared: torch.Tensor) -> torch.Tensor:
    """The greedy matching of new to old blocks on a table of shared slots [rows, new, old]
    (see ``_renumber``) -> the old block of each new block, [rows, blocks]."""
    rows, blocks, _ = shared.shape
    device = shared.device
    block = torch.arange(blocks, device=device)
    pair = (
        torch.arange(rows, device=device).view(-1, 1, 1) * blocks + block.view(1, -1, 1)
    ) * blocks + block
    # Shared slots first, then the scrambled order: one int64 per pair, -1 where none shared.
    priority = torch.where(
        shared > 0, (shared << _TIE_BITS) + ((1 << _TIE_BITS) - 1 - _scrambled(pair)), -1
    )
    target = torch.full((rows, blocks), -1, dtype=torch.int64, device=device)
    while True:
        best_old, best_new = priority.argmax(2), priority.argmax(1)  # per new, per old block
        take = (best_new.gather(1, best_old) == block) & (priority.amax(2) >= 0)
        if not bool(take.any()):
            break
        target = torch.where(take, best_old, target)
        taken_old = torch.zeros_like(target).scatter_add_(1, best_old, take.long()) > 0
        priority.masked_fill_(take.unsqueeze(2) | taken_old.unsqueeze(1), -1)
    # The rest in order: the i-th free new block of a row takes the i-th free old block.
    matched = target >= 0
    taken_old = torch.zeros_like(target).scatter_add_(1, target.clamp(min=0), matched.long())
    free_new = matched.long().argsort(dim=1, stable=True)
    free_old = taken_old.clamp(max=1).argsort(dim=1, stable=True)
    num_free = (target < 0).sum(1, keepdim=True)
    return target.scatter(
        1, free_new, torch.where(block < num_free, free_old, target.gather(1, free_new))
    )


def _shared_by_candidates(
    old: torch.Tensor, new: torch.Tensor, num_experts: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Experts held by both blocks of candidate (new, old) pairs of a row: per expert of a new
    block, up to ``_MAX_PARTNERS`` old blocks holding it, and each block with itself. old, new:
    [rows, blocks, slots] -> new block, old block (numbered rows * blocks) and shared slots,
    each [candidates], in (new, old) order."""
    rows, blocks, _ = new.shape
    device = new.device
    new_key, old_key = _distinct(new, num_experts), _distinct(old, num_experts)
    new_block, new_expert = new_key // num_experts, new_key % num_experts
    old_block = old_key // num_experts

    # Old blocks holding each (row, expert), and each new block's rank among those holding it:
    # the partners of a crowded expert spread over its holders.
    holders = old_block // blocks * num_experts + old_key % num_experts
    by_expert = holders.argsort(stable=True)
    holders = holders[by_expert]
    wanted = new_block // blocks * num_experts + new_expert
    first = torch.searchsorted(holders, wanted)
    held = torch.searchsorted(holders, wanted, right=True) - first
    in_turn = wanted.argsort(stable=True)
    rank = torch.empty_like(wanted).scatter_(
        0,
        in_turn,
        torch.arange(len(wanted), device=device)
        - torch.searchsorted(wanted[in_turn], wanted[in_turn]),
    )
    offset = torch.arange(_MAX_PARTNERS, device=device)
    valid = offset < held.unsqueeze(1)
    partner = first.unsqueeze(1) + (rank.unsqueeze(1) + offset) % held.clamp(min=1).unsqueeze(1)
    block = torch.arange(rows * blocks, device=device)
    candidate = _unique(
        torch.cat(
            [
                new_block.unsqueeze(1).expand(-1, _MAX_PARTNERS)[valid] * blocks
                + old_block[by_expert[partner[valid]]] % blocks,
                block * blocks + block % blocks,
            ]
        )
    )
    pair_new = candidate // blocks
    pair_old = pair_new // blocks * blocks + candidate % blocks
    # Over each new block's experts, those the old block holds.
    starts = torch.searchsorted(new_block, pair_new)
    lengths = torch.searchsorted(new_block, pair_new, right=True) - starts
    pair_of = torch.repeat_interleave(torch.arange(len(candidate), device=device), lengths)
    entry = (
        torch.arange(len(pair_of), device=device)
        + starts[pair_of]
        - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    )
    lookup = pair_old[pair_of] * num_experts + new_expert[entry]
    found = torch.searchsorted(old_key, lookup).clamp(max=len(old_key) - 1)
    shared = torch.zeros(len(candidate), dtype=torch.int64, device=device).index_add_(
        0, pair_of, (old_key[found] == lookup).long()
    )
    return pair_new, pair_old, shared


def _distinct(placement: torch.Tensor, num_experts: int) -> torch.Tensor:
    """The (block, expert) pairs of blocks [rows, blocks, slots], as keys
    ``(row * blocks + block) * num_experts + expert``, increasing."""
    rows, blocks, _ = placement.shape
    block = torch.arange(rows * blocks, device=placement.device).view(rows, blocks, 1)
    return _unique((block * num_experts + placement).flatten())


def _unique(values: torch.Tensor) -> torch.Tensor:
    """The distinct values of a 1-D tensor, in increasing order."""
    ordered = values.sort().values
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first]


_TIE_BITS = 31


def _scrambled(key: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random order of int64 keys, to break ties: a multiplicative hash and an
    xor-shift of the low 31 bits, one to one on keys below 2**31 (bit operations only: integer
    division is slow on a CPU)."""
    mask = (1 << _TIE_BITS) - 1
    mixed = (key & mask) * 2654435761 & mask
    return mixed ^ (mixed >> 15)


def _greedy_on_pairs(
    new_block: torch.Tensor, old_block: torch.Tensor, shared: torch.Tensor, rows: int, blocks: int
) -> torch.Tensor:
    """The greedy matching of new to old blocks (see ``_renumber``) on candidate pairs, each
    [pairs]: new and old block (numbered ``row * blocks + block``) and shared slots -> the old
    block of each new block, [rows * blocks]."""
    device = new_block.device
    num_blocks = rows * blocks
    positive = (shared > 0).nonzero().squeeze(1)
    tie = _scrambled(new_block[positive] * blocks + old_block[positive] % blocks)
    order = positive[tie.argsort()]
    order = order[(-shared[order]).argsort(stable=True)]
    new_block, old_block = new_block[order], old_block[order]
    rank = torch.arange(len(order), device=device)
    target = torch.full((num_blocks,), -1, dtype=torch.int64, device=device)
    taken = torch.zeros(num_blocks, dtype=torch.bool, device=device)
    while len(rank):
        best_new = torch.full((num_blocks,), len(order), device=device).scatter_reduce(
            0, new_block, rank, "amin"
        )
        best_old = torch.full((num_blocks,), len(order), device=device).scatter_reduce(
            0, old_block, rank, "amin"
        )
        take = ((best_new[new_block] == rank) & (best_old[old_block] == rank)).nonzero()
        target[new_block[take]] = old_block[take]
        taken[old_block[take]] = True
        left = ((target[new_block] < 0) & ~taken[old_block]).nonzero().squeeze(1)
        new_block, old_block, rank = new_block[left], old_block[left], rank[left]
    # The rest, in order: the i-th free new block of a row takes its i-th free old block.
    free_new = (target < 0).nonzero().flatten()
    free_old = (~taken).nonzero().flatten()
    target[free_new] = free_old
    return target


def rank_in_slot_order(phy2log: torch.Tensor, logcnt: torch.Tensor) -> torch.Tensor:
    """Each slot's index among its expert's slots, in slot order: [layers, slots]."""
    by_expert = phy2log.argsort(dim=-1, stable=True)  # slots grouped by expert, in slot order
    first = logcnt.cumsum(-1) - logcnt  # where each expert's run starts in by_expert
    position = torch.arange(phy2log.shape[1], device=phy2log.device).expand_as(phy2log)
    rank_sorted = position - first.gather(-1, phy2log.gather(-1, by_expert))
    return torch.empty_like(phy2log).scatter_(-1, by_expert, rank_sorted)


def build_log2phy(
    phy2log: torch.Tensor, logcnt: torch.Tensor, rank: torch.Tensor | None = None
) -> torch.Tensor:
    """Each expert's slots, padded with -1: [layers, experts, max count]. Slot p is its
    expert's ``rank[l, p]``-th replica (default: in increasing slot order)."""
    num_layers, num_slots = phy2log.shape
    max_count = int(logcnt.max())
    if rank is None:
        rank = rank_in_slot_order(phy2log, logcnt)
    log2phy = torch.full(
        (num_layers, logcnt.shape[1], max_count), -1, dtype=torch.int64, device=phy2log.device
    )
    slots = torch.arange(num_slots, dtype=torch.int64, device=phy2log.device)
    log2phy.view(num_layers, -1).scatter_(
        -1, phy2log * max_count + rank, slots.expand(num_layers, -1)
    )
    return log2phy


def _counts_per_gpu(placement: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Copies of each expert on each GPU: [layers, gpus, slots per GPU] -> [layers, gpus, E]."""
    counts = torch.zeros(
        *placement.shape[:2], num_experts, dtype=torch.int64, device=placement.device
    )
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
