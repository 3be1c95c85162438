"""A peer to time the core against: vLLM's batched EPLB policy, re-implemented in plain numpy.

vLLM (``vllm/distributed/eplb/policy``) runs DeepSeek's greedy on the CPU in numpy: the weight
is moved to the host as float32, the packing loops over items once for all layers at once
(loads in float64, full packs set to infinity), replication hands out one redundant slot per
step to the largest load per replica, and the hierarchical policy composes the two as
DeepSeek's does. Ties are broken by numpy's sorts and arg-reductions, so plans can differ from
DeepSeek's where loads tie; the balance is the same algorithm's. This file is written from that
description for benchmarking only; it is not used by the product.
"""

from __future__ import annotations

import numpy as np
import torch


def balanced_packing(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """LPT with n/m items per pack, one item step for all rows at once.

    weight: [rows, n] -> pack_index, rank_in_pack: [rows, n]
    """
    rows, n = weight.shape
    per_pack = n // num_packs
    if per_pack == 1:
        pack_index = np.tile(np.arange(n, dtype=np.int64), (rows, 1))
        return pack_index, np.zeros_like(pack_index)
    order = np.argsort(-weight, axis=-1)
    pack_index = np.empty((rows, n), dtype=np.int64)
    rank_in_pack = np.empty((rows, n), dtype=np.int64)
    loads = np.zeros((rows, num_packs), dtype=np.float64)
    counts = np.zeros((rows, num_packs), dtype=np.int64)
    row = np.arange(rows)
    for step in range(n):
        item = order[:, step]
        pack = np.argmin(loads, axis=1)
        pack_index[row, item] = pack
        rank_in_pack[row, item] = counts[row, pack]
        loads[row, pack] += weight[row, item]
        counts[row, pack] += 1
        full = counts[row, pack] == per_pack
        loads[row[full], pack[full]] = np.inf
    return pack_index, rank_in_pack


def replicate_experts(
    weight: np.ndarray, num_phy: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One redundant slot per step to the expert with the largest load per replica.

    weight: [rows, num_log] -> phy2log, rank: [rows, num_phy]; logcnt: [rows, num_log]
    """
    rows, num_log = weight.shape
    phy2log = np.tile(np.arange(num_phy, dtype=np.int64), (rows, 1))
    rank = np.zeros((rows, num_phy), dtype=np.int64)
    logcnt = np.ones((rows, num_log), dtype=np.int64)
    row = np.arange(rows)
    for slot in range(num_log, num_phy):
        hottest = np.argmax(weight / logcnt, axis=-1)
        phy2log[:, slot] = hottest
        rank[:, slot] = logcnt[row, hottest]
        logcnt[row, hottest] += 1
    return phy2log, rank, logcnt


def _inverse(perm: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(perm)
    np.put_along_axis(inverse, perm, np.arange(perm.shape[1], dtype=np.int64)[None], axis=1)
    return inverse


def _hierarchical(
    weight: np.ndarray, num_phy: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups to nodes, replicas within nodes, replicas to GPUs: [layers, experts] ->
    phy2log, rank: [layers, num_phy]; logcnt: [layers, experts]."""
    num_layers, num_log = weight.shape
    group_size = num_log // num_groups
    groups_per_node = num_groups // num_nodes
    per_gpu = num_phy // num_gpus

    group_load = weight.reshape(num_layers, num_groups, group_size).sum(-1)
    group_pack, group_rank = balanced_packing(group_load, num_nodes)
    log2mlog = (
        ((group_pack * groups_per_node + group_rank) * group_size)[..., None]
        + np.arange(group_size, dtype=np.int64)
    ).reshape(num_layers, num_log)
    mlog2log = _inverse(log2mlog)

    mlog_load = np.take_along_axis(weight, mlog2log, axis=1).reshape(-1, num_log // num_nodes)
    phy2mlog, phy_rank, mlogcnt = replicate_experts(mlog_load, num_phy // num_nodes)

    phy_load = np.take_along_axis(mlog_load / mlogcnt, phy2mlog, axis=1)
    pack, rank = balanced_packing(phy_load, num_gpus // num_nodes)
    pphy2phy = _inverse(pack * per_gpu + rank)

    pphy2mlog = np.take_along_axis(phy2mlog, pphy2phy, axis=1)
    offset = np.arange(0, num_log, num_log // num_nodes, dtype=np.int64)[None, :, None]
    pphy2mlog = (pphy2mlog.reshape(num_layers, num_nodes, -1) + offset).reshape(num_layers, -1)
    phy2log = np.take_along_axis(mlog2log, pphy2mlog, axis=1)
    rank = np.take_along_axis(phy_rank, pphy2phy, axis=1).reshape(num_layers, -1)
    logcnt = np.take_along_axis(mlogcnt.reshape(num_layers, -1), log2mlog, axis=1)
    return phy2log, rank, logcnt


def vllm_rebalance(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """vLLM's batched policy with DeepSeek's interface: phy2log [layers, slots], log2phy
    [layers, experts, max replicas] (padded with -1) and logcnt [layers, experts]."""
    loads = weight.float().cpu().numpy()
    num_layers, num_log = loads.shape
    if num_groups % num_nodes == 0:
        phy2log, rank, logcnt = _hierarchical(loads, num_replicas, num_groups, num_nodes, num_gpus)
    else:
        phy2log, rank, logcnt = _hierarchical(loads, num_replicas, 1, 1, num_gpus)
    max_count = int(logcnt.max())
    log2phy = np.full((num_layers, num_log * max_count), -1, dtype=np.int64)
    np.put_along_axis(
        log2phy, phy2log * max_count + rank, np.arange(num_replicas, dtype=np.int64)[None], axis=1
    )
    return (
        torch.from_numpy(phy2log),
        torch.from_numpy(log2phy).view(num_layers, num_log, -1),
        torch.from_numpy(logcnt),
    )
