"""Balanced packing: n weighted items into m packs of exactly n/m items each, per row.

``greedy`` is DeepSeek's published LPT (heaviest item first, to the lightest pack with room),
exactly, for all rows at once and mostly a round of m items per step (``_lpt_rounds``).
``hybrid`` is a multi-start search: many candidate orderings per row, each placed greedily, then
refined by swaps between the heaviest pack and the others (and between paired heavy and light
packs); the candidate with the smallest max pack load wins. Candidate 0 is the greedy's
packing, and a swap is only taken when it lowers the larger of the two loads it touches, so the
hybrid's max load is never above the greedy's. ``pack_slots`` gives a packing as the item in
each slot, the form the policy uses.
"""

from __future__ import annotations

import sys
from typing import Literal

import torch

from .errors import ClusterShapeError, OptionError

Algorithm = Literal["greedy", "hybrid"]
ALGORITHMS: tuple[str, ...] = ("greedy", "hybrid")

NOISE = 0.2  # multiplicative noise of the noisy-LPT candidates: key = w * (1 + NOISE * U[0,1))
CUDA_CANDIDATES = 128  # the seed's search size; a GPU runs it in a few milliseconds
CPU_CANDIDATES = 2  # pure + folded LPT; on a CPU more cost time and buy ~1e-4 balancedness
_SWAP_ELEMENTS = 1 << 22  # bound on the [problems, k, m, min(k, 64)] tensors of a swap round
_DENSE_SWAP_ITEMS = 64  # up to this many items per pack, swaps compare all item pairs at once
_ROUNDS_MIN_PACKS = 5  # from this many packs the LPT goes a round at a time, not an item at a time
_FULL_KEY = (1 << 63) - 1  # a full pack's key in ``_lpt_rounds``: above every load's (inf, NaN)


def default_candidates(device: torch.device) -> int:
    """Candidates per row when none are asked for: 128 on CUDA, 2 on a CPU."""
    return CUDA_CANDIDATES if device.type == "cuda" else CPU_CANDIDATES


def default_rounds(num_packs: int) -> int:
    """Swap rounds when none are asked for: the seed's 20, more for many packs (each round
    improves one heaviest pack per candidate); converged candidates drop out early."""
    return max(20, num_packs // 2)


def balanced_packing(
    weight: torch.Tensor,
    num_packs: int,
    *,
    algorithm: str = "hybrid",
    num_candidates: int | None = None,
    num_rounds: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack each row's n items into ``num_packs`` packs of n/num_packs items, balancing loads.

    Parameters:
        weight: [rows, n], float; n must be a multiple of num_packs
        num_packs: number of packs m
        algorithm: "greedy" (published LPT) or "hybrid" (multi-start + swaps)
        num_candidates: hybrid only, candidate orderings per row (candidate 0 is pure LPT);
            None picks ``default_candidates(weight.device)``
        num_rounds: hybrid only, swap rounds at most; None picks ``default_rounds(num_packs)``
        generator: hybrid only, the source of every random draw (on weight's device)

    Returns:
        pack_index: [rows, n], int64, the pack of each item
        rank_in_pack: [rows, n], int64, the item's position within its pack
    """
    slots = pack_slots(
        weight,
        num_packs,
        algorithm=algorithm,
        num_candidates=num_candidates,
        num_rounds=num_rounds,
        generator=generator,
    )
    return _pack_and_rank(slots, num_packs)


def pack_slots(
    weight: torch.Tensor,
    num_packs: int,
    *,
    algorithm: str = "hybrid",
    num_candidates: int | None = None,
    num_rounds: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``balanced_packing`` as the item in each slot: slot ``p * k + r`` holds pack p's r-th
    item (k = n / num_packs), the inverse of ``pack_index * k + rank_in_pack``.

    weight: [rows, n] -> [rows, n], int64
    """
    rows, n = weight.shape
    if n % num_packs:
        raise ClusterShapeError(f"{n} items cannot be split evenly into {num_packs} packs")
    if algorithm not in ALGORITHMS:
        raise OptionError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    per_pack = n // num_packs
    if per_pack == 1:
        return torch.arange(n, dtype=torch.int64, device=weight.device).repeat(rows, 1)
    if num_candidates is None:
        num_candidates = default_candidates(weight.device)
    if num_rounds is None:
        num_rounds = default_rounds(num_packs)
    slots = _greedy_slots(weight, num_packs)
    # One pack needs no search, and LPT is optimal for two items per pack (it pairs the i-th
    # heaviest with the i-th lightest).
    if algorithm == "greedy" or num_packs == 1 or per_pack == 2 or rows == 0:
        return slots
    return _hybrid_packing(weight, slots, num_packs, num_candidates, num_rounds, generator)


def _pack_and_rank(slots: torch.Tensor, num_packs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The item in each slot [rows, n] -> each item's pack and rank there, [rows, n] each."""
    rows, n = slots.shape
    position = torch.arange(n, device=slots.device).expand(rows, n)
    per_pack = n // num_packs
    pack_index = torch.empty_like(slots).scatter_(1, slots, position // per_pack)
    rank_in_pack = torch.empty_like(slots).scatter_(1, slots, position % per_pack)
    return pack_index, rank_in_pack


def greedy_packing(weight: torch.Tensor, num_packs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek's LPT, batched over rows: items by decreasing weight, each to the lightest
    pack that has room (lowest index on ties), with sums in the same order and dtype.

    weight: [rows, n], >= 0 -> pack_index, rank_in_pack: [rows, n]
    """
    return _pack_and_rank(_greedy_slots(weight, num_packs), num_packs)


def _greedy_slots(weight: torch.Tensor, num_packs: int) -> torch.Tensor:
    """The LPT's item in each slot: [rows, n] -> [rows, n] (see ``pack_slots``)."""
    sorted_weight, order = weight.sort(-1, descending=True)
    return torch.empty_like(order).scatter_(1, _lpt(sorted_weight, num_packs), order)


def _lpt(sorted_weight: torch.Tensor, num_packs: int) -> torch.Tensor:
    """The slot (``pack * k + rank``) of each item, for items in decreasing weight order:
    [rows, n] -> [rows, n], int64.

    When the m-1 heaviest items of every row are positive, the first m items go to packs
    0..m-1, one each. With two items per pack, the second round then fills packs lightest
    first, lowest index on ties: a stable sort of their loads. Otherwise float32 loads go a
    round at a time (``_lpt_rounds``) and others, or few packs, an item at a time (as do
    loads on which rounds make little progress).
    """
    rows, n = sorted_weight.shape
    per_pack = n // num_packs
    device = sorted_weight.device
    if num_packs == 1:
        return torch.arange(n, device=device).repeat(rows, 1)
    first_round = bool((sorted_weight[:, num_packs - 2] > 0).all())
    if first_round and per_pack == 2:
        first = torch.arange(0, n, 2, device=device).expand(rows, num_packs)
        second = sorted_weight[:, :num_packs].sort(dim=1, stable=True).indices * 2 + 1
        return torch.cat([first, second], 1)
    if (
        sorted_weight.dtype == torch.float32
        and _ROUNDS_MIN_PACKS <= num_packs < 1 << 15
        and per_pack <= 1 << 16
    ):
        code = _lpt_rounds(sorted_weight, num_packs, first_round)
        if code is not None:
            return (code >> 16).long() * per_pack + (code & 0xFFFF)
    pack = _lpt_items(sorted_weight, num_packs, first_round)
    return pack * per_pack + _rank_in_pack(pack, num_packs)


def _lpt_items(sorted_weight: torch.Tensor, num_packs: int, first_round: bool) -> torch.Tensor:
    """LPT one item at a time (all rows at once): [rows, n] -> pack of each item [rows, n]."""
    rows, n = sorted_weight.shape
    per_pack = n // num_packs
    device = sorted_weight.device
    if first_round:
        loads = sorted_weight[:, :num_packs].clone()
        counts = torch.ones(rows, num_packs, dtype=torch.int64, device=device)
        packs, start = [torch.arange(num_packs, device=device).expand(rows, num_packs)], num_packs
    else:
        loads = torch.zeros(rows, num_packs, dtype=sorted_weight.dtype, device=device)
        counts = torch.zeros(rows, num_packs, dtype=torch.int64, device=device)
        packs, start = [], 0
    one = torch.ones(rows, 1, dtype=torch.int64, device=device)
    # Full packs get an infinite load, so argmin only sees packs with room.
    for column in sorted_weight[:, start:].t().unsqueeze(-1).unbind(0):
        pack = loads.argmin(1, keepdim=True)
        packs.append(pack)
        loads.scatter_add_(1, pack, column)
        counts.scatter_add_(1, pack, one)
        loads.masked_fill_(counts == per_pack, float("inf"))
    return torch.cat(packs, 1)


def _lpt_rounds(
    sorted_weight: torch.Tensor, num_packs: int, first_round: bool
) -> torch.Tensor | None:
    """Exact LPT a round at a time, float32: [rows, n] -> code [rows, n], int32, each item's
    ``pack << 16 | rank``; None when some row needs more than ``2 n/m + 8`` steps.

    Each pack has an int64 key, ``load's float32 bits << 32 | pack << 16 | items``, so that keys
    order packs as the published argmin does (lighter first, then lower index), and a full pack
    has a key above every load's. Each step sorts the keys and proposes the next m items of every
    row for the packs in that order, lightest first. Proposal j is LPT's own choice when its
    pack's key is below the new keys of the packs proposals 0..j-1 filled (an exclusive prefix
    min), so each row takes its longest such prefix, at least one item, and moves on by it.
    Loads are nearly even after the first round, so a step usually takes a whole round: about
    n/m steps instead of n. Loads where items are far smaller than the gaps between packs (each
    item's pack stays the lightest) take one item a step; past ``2 n/m + 8`` steps the caller
    does them an item at a time, which is cheaper per item, so the worst case stays within
    ``1 + 6/m`` times the item loop's.
    """
    rows, n = sorted_weight.shape
    per_pack = n // num_packs
    device = sorted_weight.device
    pack_code = torch.arange(num_packs, dtype=torch.int32, device=device) << 16
    # Padded with m zero-weight items, so a step's proposals never index past the row.
    weights = torch.zeros(rows, n + num_packs, dtype=torch.float32, device=device)
    weights[:, :n] = sorted_weight.abs()  # -0.0 -> +0.0: bit patterns order loads >= 0
    code = torch.empty(rows, n + num_packs, dtype=torch.int32, device=device)
    keys = torch.empty(rows, num_packs, dtype=torch.int64, device=device)
    load_bits, count_bits = _halves(keys)
    if first_round:
        load_bits.copy_(weights[:, :num_packs].view(torch.int32))
        count_bits.copy_(pack_code + 1)
        code[:, :num_packs] = pack_code
        start = num_packs
    else:
        load_bits.zero_()
        count_bits.copy_(pack_code)
        start = 0
    # The items each step proposes; items[:, :1] is the row's next item.
    items = (torch.arange(num_packs, device=device) + start).repeat(rows, 1)
    # Buffers reused by every step, and views of their halves made once.
    ordered, order = torch.empty_like(keys), torch.empty_like(keys)
    loads, counts = _halves(ordered)
    loads = loads.view(torch.float32)
    # new[:, 0] is a full pack's key, so new[:, :m].cummin is the exclusive prefix min.
    new = torch.empty(rows, num_packs + 1, dtype=torch.int64, device=device)
    new[:, 0] = _FULL_KEY
    new_keys = new[:, 1:]
    new_loads, new_counts = _halves(new_keys)
    new_loads = new_loads.view(torch.float32)
    # 0-d operands of the right dtype: cheaper per op than Python numbers.
    one, count_mask, last, full = (
        torch.tensor(value, dtype=dtype, device=device)
        for value, dtype in (
            (1, torch.int32),
            (0xFFFF, torch.int32),
            (per_pack - 1, torch.int32),
            (_FULL_KEY, torch.int64),
        )
    )
    # The zero items at the end of a row (idle experts, idle layers) leave every load as it is:
    # the loop stops where they start, and they are placed at once afterwards.
    zeros_from = (weights[:, :n] > 0).sum(1, keepdim=True).clamp_(min=start)
    zeros = int(zeros_from.min()) < n
    # Every row needs at least this many steps; the loop only checks for the end after them.
    min_steps, steps = -(-(int(zeros_from.max()) - start) // num_packs), 0
    max_steps = 2 * -(-(n - start) // num_packs) + 8
    while steps < min_steps or bool((items[:, :1] < zeros_from).any()):
        if steps == max_steps:
            return None
        torch.sort(keys, dim=1, out=(ordered, order))
        torch.add(loads, weights.gather(1, items), out=new_loads)
        torch.add(counts, one, out=new_counts)
        new_keys.masked_fill_((counts & count_mask) == last, full)
        # Keys ascend and the prefix min does not, so the proposals taken are a prefix.
        taken = ordered < new[:, :num_packs].cummin(1).values
        if zeros:  # (past a row's last item, every pack is full: nothing is taken)
            taken &= items < zeros_from
        code.scatter_(1, items, counts)
        items += taken.sum(1, keepdim=True)
        torch.where(taken, new_keys, ordered, out=keys)
        steps += 1
    code = code[:, :n]
    if zeros:
        _place_zeros(keys, code, zeros_from, per_pack)
    return code


def _place_zeros(
    keys: torch.Tensor, code: torch.Tensor, zeros_from: torch.Tensor, per_pack: int
) -> None:
    """Place each row's zero items, ``zeros_from`` [rows, 1] on, into ``code`` [rows, n], in
    place: LPT gives each of them to the lightest pack with room (lowest index on ties), and as
    they add nothing, that fills the packs with room one after another in key order."""
    _rows, n = code.shape
    ordered = keys.sort(1).values
    counts = _halves(ordered)[1]
    room = (per_pack - (counts & 0xFFFF)).masked_fill_(ordered == _FULL_KEY, 0)
    ends = room.cumsum(1)
    zero = torch.arange(n, device=code.device) - zeros_from  # index among the row's zeros
    which = torch.searchsorted(ends, zero.clamp(min=0), right=True).clamp_(max=keys.shape[1] - 1)
    placed = counts.gather(1, which) + (zero - (ends - room).gather(1, which))
    torch.where(zero >= 0, placed.int(), code, out=code)


def _halves(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of an int64 tensor's high and low 32 bits, as int32: [rows, m] -> 2 x [rows, m]."""
    words = keys.view(torch.int32)
    high = 1 if sys.byteorder == "little" else 0
    return words[:, high::2], words[:, 1 - high :: 2]


def _rank_in_pack(item_pack: torch.Tensor, num_packs: int) -> torch.Tensor:
    """Each item's position among the items of its pack, in item order: [rows, n] -> [rows, n]."""
    rows, n = item_pack.shape
    by_pack = item_pack.argsort(dim=1, stable=True)
    ranks = torch.arange(n // num_packs, device=item_pack.device).repeat(num_packs)
    return torch.empty_like(item_pack).scatter_(1, by_pack, ranks.expand(rows, n))


def _hybrid_packing(
    weight: torch.Tensor,
    greedy_slots: torch.Tensor,
    num_packs: int,
    num_candidates: int,
    num_rounds: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Multi-start search, in row chunks that keep ``[rows, candidates, n]`` tensors bounded.

    weight, greedy_slots: [rows, n] -> the winner's item in each slot, [rows, n]
    """
    rows, n = weight.shape
    if generator is None:
        generator = torch.Generator(device=weight.device).manual_seed(0)
    greedy_slots = greedy_slots.view(rows, num_packs, n // num_packs)
    chunk = max(1, _SWAP_ELEMENTS // (num_candidates * n))
    best = [
        _search(
            weight[lo : lo + chunk],
            greedy_slots[lo : lo + chunk],
            num_candidates,
            num_rounds,
            generator,
        )
        for lo in range(0, rows, chunk)
    ]
    return torch.cat(best).flatten(1)


def _search(
    weight: torch.Tensor,
    greedy_slots: torch.Tensor,
    num_candidates: int,
    num_rounds: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Best packing of each row among the greedy's and ``num_candidates - 1`` others.

    weight: [rows, n]; greedy_slots: [rows, m, k] -> [rows, m, k] item ids of the winner
    """
    rows, n = weight.shape
    num_packs, per_pack = greedy_slots.shape[1:]
    slots = greedy_slots.unsqueeze(1)
    if num_candidates > 1:
        orders = _candidate_orders(weight, num_candidates - 1, generator)  # [rows, c-1, n]
        w = weight.unsqueeze(1).expand(rows, num_candidates - 1, n)
        others = _place_in_rounds(w.reshape(-1, n), orders.reshape(-1, n), num_packs)
        slots = torch.cat([slots, others.view(rows, -1, num_packs, per_pack)], 1)
    slots = slots.reshape(-1, num_packs, per_pack)
    item_weight = weight.repeat_interleave(num_candidates, 0)
    slot_weight = item_weight.gather(1, slots.flatten(1)).view_as(slots)
    _refine_by_swaps(slot_weight, slots, num_rounds)

    exact = item_weight.double().gather(1, slots.flatten(1)).view_as(slots)
    max_load = exact.sum(-1).amax(-1).view(rows, num_candidates)
    greedy_max = weight.double().gather(1, greedy_slots.flatten(1)).view_as(greedy_slots)
    greedy_max = greedy_max.sum(-1).amax(-1)
    best_max, best = max_load.min(1)
    winner = slots.view(rows, num_candidates, num_packs, per_pack)[
        torch.arange(rows, device=weight.device), best
    ]
    keep_greedy = (best_max >= greedy_max).view(-1, 1, 1)
    return torch.where(keep_greedy, greedy_slots, winner)


def _candidate_orders(weight: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Item orders for ``count`` candidates besides pure LPT: [rows, count, n].

    About half are LPT on noisy weights, a quarter random shuffles, and the last quarter
    "folded" LPT (heaviest, lightest, second heaviest, ...): the first of those folds the true
    order, the others fold noisy orders so that they differ from one another.
    """
    rows, n = weight.shape
    total = count + 1
    num_shuffled = total // 4
    num_folded = max(0, total - total // 2 - num_shuffled)
    num_noisy = count - num_shuffled - num_folded
    device = weight.device
    num_keyed = num_noisy + max(0, num_folded - 1)
    noise = torch.rand(rows, num_keyed, n, generator=generator, device=device)
    keyed = (weight.unsqueeze(1) * (1 + NOISE * noise)).sort(-1, descending=True).indices
    shuffled = torch.rand(rows, num_shuffled, n, generator=generator, device=device).argsort(-1)
    lpt = weight.sort(-1, descending=True).indices.unsqueeze(1)
    fold_sources = torch.cat([lpt, keyed[:, num_noisy:]], 1)[:, :num_folded]
    folded = fold_sources[..., _fold_permutation(n, device)]
    return torch.cat([keyed[:, :num_noisy], shuffled, folded], 1)


def _fold_permutation(n: int, device: torch.device) -> torch.Tensor:
    """[0, n-1, 1, n-2, ...]"""
    half = (n + 1) // 2
    perm = torch.empty(n, dtype=torch.int64, device=device)
    perm[0::2] = torch.arange(half, device=device)
    perm[1::2] = torch.arange(n - 1, half - 1, -1, device=device)
    return perm


def _place_in_rounds(weight: torch.Tensor, order: torch.Tensor, num_packs: int) -> torch.Tensor:
    """Greedy placement in k rounds of m items: each round takes the next m items of the order
    and gives the heaviest of them to the lightest pack, the next to the next lightest, ...

    weight, order: [problems, n] -> slots: [problems, m, k], item ids
    """
    problems, n = order.shape
    per_pack = n // num_packs
    rounds = order.view(problems, per_pack, num_packs)
    round_weight = weight.gather(1, order).view_as(rounds)
    round_weight, within = round_weight.sort(-1, descending=True)
    rounds = rounds.gather(2, within)
    loads = torch.zeros(problems, num_packs, dtype=weight.dtype, device=weight.device)
    slots = torch.empty(problems, num_packs, per_pack, dtype=torch.int64, device=weight.device)
    for r in range(per_pack):
        lightest_first = loads.argsort(1)
        slots[:, :, r].scatter_(1, lightest_first, rounds[:, r])
        loads.scatter_add_(1, lightest_first, round_weight[:, r])
    return slots


def _refine_by_swaps(slot_weight: torch.Tensor, slots: torch.Tensor, num_rounds: int) -> None:
    """Swap local search, in place, until no candidate improves or ``num_rounds`` run out.

    Each round, per problem: the best exchange of an item of the heaviest pack with an item of
    any other pack; and, on the packs this leaves alone, the best exchange within each pair
    (r-th heaviest, r-th lightest), so that problems with many packs level out in few rounds.
    Moving ``d = w_i - w_j`` from a pack of load H to one of load L gains
    ``min(d, H - L - d)``; a swap is made only if it gains, so it lowers the larger of the two
    loads and never raises the max. Problems whose heaviest pack found no improving swap drop
    out, as in the seed.

    slot_weight, slots: [problems, m, k]
    """
    problems, num_packs, per_pack = slots.shape
    active = torch.arange(problems, device=slots.device)
    chunk = max(1, _SWAP_ELEMENTS // (num_packs * per_pack * min(per_pack, _DENSE_SWAP_ITEMS)))
    for _ in range(num_rounds):
        moved = []
        for lo in range(0, active.numel(), chunk):
            rows = active[lo : lo + chunk]
            problem, pack_a, slot_a, pack_b, slot_b, improved = _improving_swaps(slot_weight[rows])
            problem = rows[problem]
            for t in (slot_weight, slots):
                a, b = t[problem, pack_a, slot_a], t[problem, pack_b, slot_b]
                t[problem, pack_a, slot_a], t[problem, pack_b, slot_b] = b, a
            moved.append(rows[improved])
        active = torch.cat(moved)
        if active.numel() == 0:
            break


def _improving_swaps(w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One round's swaps, on distinct packs: w [p, m, k] -> (problem, pack_a, slot_a, pack_b,
    slot_b), each [swaps], pack_a always the heavier side; and whether each problem's heaviest
    pack improved, [p] bool.

    ``min(d, g - d) = g/2 - |d - g/2|``: for a given heavy item a and partner pack (gap g), the
    best item b of that pack is the one closest to ``a - g/2``. With few items per pack, the
    [p, k, m, k] distances of all pairs need only a subtraction, an in-place abs and a min;
    with many, a binary search in each pack's sorted items (``_nearest``) gives the same
    distances in O(m k log k) time and O(m k) memory per problem.
    """
    p, num_packs, per_pack = w.shape
    dense = per_pack <= _DENSE_SWAP_ITEMS
    loads = w.sum(-1)
    by_load = loads.argsort(1)
    heavy = by_load[:, -1]
    max_load = loads.gather(1, heavy.unsqueeze(1))
    eps = 1e-6 * max_load.squeeze(1)
    rows = torch.arange(p, device=w.device)

    # The heaviest pack against every other pack: distances [p, k, m], heavy item by pack.
    half_gap = (max_load - loads).unsqueeze(-1) / 2
    heavy_items = w[rows, heavy]
    target = w + half_gap
    if dense:
        distance = (heavy_items.view(p, per_pack, 1, 1) - target.unsqueeze(1)).abs_().amin(-1)
    else:
        distance = _nearest(target, heavy_items.unsqueeze(1).expand_as(target)).transpose(1, 2)
    gain, flat = (half_gap.view(p, 1, num_packs) - distance).flatten(1).max(1)
    take = gain > eps
    slot, partner = flat // num_packs, flat % num_packs
    chosen = heavy_items.gather(1, slot.unsqueeze(1))
    closest = (chosen - target[rows, partner]).abs_().argmin(1)
    partner = torch.where(take, partner, heavy)
    problem = [rows[take]]
    pack_a, slot_a = [heavy[take]], [slot[take]]
    pack_b, slot_b = [partner[take]], [closest[take]]

    # Pairs (r-th heaviest, r-th lightest) for r = 1 .. m/2 - 1: distances [p, pairs, k].
    pairs = num_packs // 2 - 1
    if pairs > 0:
        high, low = by_load.flip(1)[:, 1 : 1 + pairs], by_load[:, 1 : 1 + pairs]

        def index(packs: torch.Tensor) -> torch.Tensor:
            return packs.unsqueeze(-1).expand(-1, -1, per_pack)

        half_gap = ((loads.gather(1, high) - loads.gather(1, low)) / 2).unsqueeze(-1)
        high_items, target = w.gather(1, index(high)), w.gather(1, index(low)) + half_gap
        if dense:
            distance = (high_items.unsqueeze(-1) - target.unsqueeze(-2)).abs_()
            distance, flat = distance.flatten(2).min(2)
            high_slot, low_slot = flat // per_pack, flat % per_pack
        else:
            distance, high_slot = _nearest(target, high_items).min(-1)
            chosen = high_items.gather(-1, high_slot.unsqueeze(-1))
            low_slot = (chosen - target).abs_().argmin(-1)
        clash = (high == partner.unsqueeze(1)) | (low == partner.unsqueeze(1))
        gains = half_gap.squeeze(-1) - distance
        take_pair, which = torch.nonzero((gains > eps.unsqueeze(1)) & ~clash, as_tuple=True)
        problem.append(take_pair)
        pack_a.append(high[take_pair, which])
        slot_a.append(high_slot[take_pair, which])
        pack_b.append(low[take_pair, which])
        slot_b.append(low_slot[take_pair, which])
    swaps = tuple(torch.cat(x) for x in (problem, pack_a, slot_a, pack_b, slot_b))
    return (*swaps, take)


def _nearest(targets: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """``min_b |a - target_b|`` for each query a, by binary search in the sorted targets.

    targets: [..., k]; queries: [..., q] -> [..., q]
    """
    per_pack = targets.shape[-1]
    ascending = targets.sort(-1).values
    queries = queries.contiguous()
    above = torch.searchsorted(ascending, queries)
    below = (above - 1).clamp_(min=0)
    above.clamp_(max=per_pack - 1)
    return torch.minimum(
        (queries - ascending.gather(-1, below)).abs_(),
        (queries - ascending.gather(-1, above)).abs_(),
    )
