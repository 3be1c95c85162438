"""Slow reference implementations, kept only to measure the core against.

``published_rebalance`` follows DeepSeek's published ``eplb.py`` step by step: the weight is
forced to the CPU, and packing loops over layers and items in Python. ``seed_rebalance``
follows the seed spec of the hybrid (see the README): 128 candidates placed by
sequential LPT, then unrestricted ``[problems, n, n]`` swap search. Neither is used by the
product; the benchmark times them and the tests compare plans with them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

PackFn = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def published_packing(weight: torch.Tensor, num_packs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LPT with a per-pack item cap, one layer and one item at a time, in Python."""
    num_layers, num_items = weight.shape
    per_pack = num_items // num_packs
    if per_pack == 1:
        index = torch.arange(num_items, dtype=torch.int64).expand(num_layers, num_items)
        return index, torch.zeros_like(index)
    order = weight.float().sort(-1, descending=True).indices.cpu()
    pack_index = torch.full((num_layers, num_items), -1, dtype=torch.int64)
    rank_in_pack = torch.full_like(pack_index, -1)
    for layer in range(num_layers):
        loads = [0] * num_packs
        counts = [0] * num_packs
        for item in order[layer]:
            pack = min((p for p in range(num_packs) if counts[p] < per_pack), key=loads.__getitem__)
            pack_index[layer, item] = pack
            rank_in_pack[layer, item] = counts[pack]
            loads[pack] += weight[layer, item]
            counts[pack] += 1
    return pack_index, rank_in_pack


def published_replication(weight: torch.Tensor, num_phy: int) -> tuple[torch.Tensor, ...]:
    """One redundant slot at a time to the expert with the largest load per replica."""
    rows, num_log = weight.shape
    phy2log = torch.arange(num_phy, dtype=torch.int64).repeat(rows, 1)
    rank = torch.zeros(rows, num_phy, dtype=torch.int64)
    logcnt = torch.ones(rows, num_log, dtype=torch.int64)
    row_ids = torch.arange(rows)
    for slot in range(num_log, num_phy):
        hottest = (weight / logcnt).max(dim=-1).indices
        phy2log[:, slot] = hottest
        rank[:, slot] = logcnt[row_ids, hottest]
        logcnt[row_ids, hottest] += 1
    return phy2log, rank, logcnt


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(perm)
    inv.scatter_(1, perm, torch.arange(perm.size(1)).expand(perm.shape))
    return inv


def _hierarchical(
    weight: torch.Tensor, num_phy: int, num_groups: int, num_nodes: int, num_gpus: int, pack: PackFn
) -> tuple[torch.Tensor, ...]:
    num_layers, num_log = weight.shape
    group_size = num_log // num_groups
    groups_per_node = num_groups // num_nodes
    phy_per_gpu = num_phy // num_gpus

    tokens_per_group = weight.unflatten(-1, (num_groups, group_size)).sum(-1)
    group_pack, group_rank = pack(tokens_per_group, num_nodes)
    log2mlog = (
        ((group_pack * groups_per_node + group_rank) * group_size).unsqueeze(-1)
        + torch.arange(group_size)
    ).flatten(-2)
    mlog2log = _inverse(log2mlog)

    tokens_per_mlog = weight.gather(-1, mlog2log).view(-1, num_log // num_nodes)
    phy2mlog, phyrank, mlogcnt = published_replication(tokens_per_mlog, num_phy // num_nodes)

    tokens_per_phy = (tokens_per_mlog / mlogcnt).gather(-1, phy2mlog)
    pack_index, rank_in_pack = pack(tokens_per_phy, num_gpus // num_nodes)
    pphy2phy = _inverse(pack_index * phy_per_gpu + rank_in_pack)

    pphy2mlog = phy2mlog.gather(-1, pphy2phy)
    pphy2mlog = (
        pphy2mlog.view(num_layers, num_nodes, -1)
        + torch.arange(0, num_log, num_log // num_nodes).view(1, -1, 1)
    ).flatten(-2)
    pphy2log = mlog2log.gather(-1, pphy2mlog)
    pphyrank = phyrank.gather(-1, pphy2phy).view(num_layers, -1)
    logcnt = mlogcnt.view(num_layers, -1).gather(-1, log2mlog)
    return pphy2log, pphyrank, logcnt


def _rebalance(
    weight: torch.Tensor,
    num_replicas: int,
    num_groups: int,
    num_nodes: int,
    num_gpus: int,
    pack: PackFn,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    num_layers, num_log = weight.shape
    weight = weight.float().cpu()
    if num_groups % num_nodes == 0:
        phy2log, phyrank, logcnt = _hierarchical(
            weight, num_replicas, num_groups, num_nodes, num_gpus, pack
        )
    else:
        phy2log, phyrank, logcnt = _hierarchical(weight, num_replicas, 1, 1, num_gpus, pack)
    max_cnt = int(logcnt.max())
    log2phy = torch.full((num_layers, num_log, max_cnt), -1, dtype=torch.int64)
    log2phy.view(num_layers, -1).scatter_(
        -1,
        phy2log * max_cnt + phyrank,
        torch.arange(num_replicas, dtype=torch.int64).expand(num_layers, -1),
    )
    return phy2log, log2phy, logcnt


def published_rebalance(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[torch.Tensor, ...]:
    """DeepSeek's published greedy policy, as it runs (CPU, Python loops)."""
    return _rebalance(weight, num_replicas, num_groups, num_nodes, num_gpus, published_packing)


def seed_packing(
    weight: torch.Tensor,
    num_packs: int,
    num_candidates: int = 128,
    num_rounds: int = 20,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed spec's hybrid packing, step by step: sequential placement, full swap search."""
    num_layers, num_items = weight.shape
    per_pack = num_items // num_packs
    if per_pack == 1:
        index = torch.arange(num_items, dtype=torch.int64).expand(num_layers, num_items)
        return index, torch.zeros_like(index)
    gen = torch.Generator().manual_seed(seed)
    problems = num_layers * num_candidates
    w = weight.repeat_interleave(num_candidates, dim=0)
    cand = torch.arange(num_candidates).repeat(num_layers)
    order = torch.empty(w.shape, dtype=torch.int64)
    noisy = cand < num_candidates // 2
    keys = w[noisy] * (1 + 0.2 * torch.rand(w[noisy].shape, generator=gen))
    order[noisy] = keys.sort(-1, descending=True).indices
    shuffled = (cand >= num_candidates // 2) & (cand < 3 * num_candidates // 4)
    order[shuffled] = torch.rand(w[shuffled].shape, generator=gen).argsort(-1)
    folded = cand >= 3 * num_candidates // 4
    half = (num_items + 1) // 2
    fold = torch.empty(num_items, dtype=torch.int64)
    fold[0::2] = torch.arange(half)
    fold[1::2] = torch.arange(num_items - 1, half - 1, -1)
    order[folded] = w[folded].sort(-1, descending=True).indices[:, fold]
    order[torch.arange(num_layers) * num_candidates] = weight.sort(-1, descending=True).indices
    sw = w.gather(1, order)

    loads = torch.zeros(problems, num_packs)
    counts = torch.zeros(problems, num_packs, dtype=torch.int64)
    spack = torch.zeros_like(order)
    for i in range(num_items):
        masked = loads.masked_fill(counts >= per_pack, float("inf"))
        choice = masked.argmin(1, keepdim=True)
        spack[:, i : i + 1] = choice
        loads.scatter_add_(1, choice, sw[:, i : i + 1])
        counts.scatter_add_(1, choice, torch.ones_like(choice))

    chunk = max(1, (1 << 26) // (num_items * num_items))
    for _ in range(num_rounds):
        loads = torch.zeros(problems, num_packs).scatter_add_(1, spack, sw)
        max_load, max_pack = loads.max(1)
        best = torch.empty(problems)
        flat = torch.empty(problems, dtype=torch.int64)
        for lo in range(0, problems, chunk):
            sl = slice(lo, lo + chunk)
            in_max = spack[sl] == max_pack[sl].unsqueeze(1)
            diff = sw[sl].unsqueeze(2) - sw[sl].unsqueeze(1)
            valid = in_max.unsqueeze(2) & ~in_max.unsqueeze(1) & (diff > 0)
            target = loads[sl].gather(1, spack[sl]).unsqueeze(1)
            score = torch.minimum(diff, max_load[sl].view(-1, 1, 1) - target - diff)
            score = score.masked_fill(~valid, float("-inf"))
            best[sl], flat[sl] = score.flatten(1).max(1)
        rows = torch.nonzero(best > 1e-6).squeeze(1)
        if rows.numel() == 0:
            break
        i, j = flat[rows] // num_items, flat[rows] % num_items
        pj = spack[rows, j]
        spack[rows, i] = pj
        spack[rows, j] = max_pack[rows]

    loads = torch.zeros(problems, num_packs).scatter_add_(1, spack, sw)
    best = loads.max(1).values.view(num_layers, num_candidates).argmin(1)
    pick = torch.arange(num_layers) * num_candidates + best
    pack_index = torch.empty_like(order[pick]).scatter_(1, order[pick], spack[pick])
    rank_in_pack = torch.empty_like(pack_index)
    by_pack = spack[pick].argsort(dim=1, stable=True)
    pattern = torch.arange(per_pack).repeat(num_packs).expand(num_layers, -1)
    sorted_rank = torch.empty_like(pattern).scatter_(1, by_pack, pattern)
    rank_in_pack.scatter_(1, order[pick], sorted_rank)
    return pack_index, rank_in_pack


def seed_rebalance(
    weight: torch.Tensor,
    num_replicas: int,
    num_groups: int,
    num_nodes: int,
    num_gpus: int,
    seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """The seed spec's hybrid policy, as written (very slow on a CPU)."""
    return _rebalance(
        weight,
        num_replicas,
        num_groups,
        num_nodes,
        num_gpus,
        lambda w, m: seed_packing(w, m, seed=seed),
    )
