"""Placement policies: hierarchical (groups to nodes, then replicas to GPUs) and global.

A drop-in for DeepSeek's ``eplb.rebalance_experts``; with ``algorithm="greedy"`` the plans are
the published ones. Everything stays on ``weight``'s device.
"""

from __future__ import annotations

import torch

from .packing import ALGORITHMS, Algorithm, balanced_packing
from .replication import replicate_experts

# log2phy is dense, [layers, experts, most replicas of one expert]: past this many entries
# (2 GiB of int64) a plan is refused rather than exhausting memory.
MAX_LOG2PHY_ENTRIES = 1 << 28


def validate_shape(num_layers: int, num_experts: int, num_replicas: int, num_groups: int,
                   num_nodes: int, num_gpus: int) -> None:
    """Raise ``ValueError`` saying why a cluster shape cannot hold the experts."""
    counts = {"num_replicas": num_replicas, "num_groups": num_groups, "num_nodes": num_nodes,
              "num_gpus": num_gpus}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_layers == 0 or num_experts == 0:
        raise ValueError(f"weight is empty: shape [{num_layers}, {num_experts}]")
    if num_replicas < num_experts:
        raise ValueError(f"{num_replicas} slots cannot hold {num_experts} experts: "
                         f"num_replicas must be at least the number of experts")
    if num_replicas % num_gpus:
        raise ValueError(f"{num_replicas} slots cannot be split evenly over {num_gpus} GPUs")
    if num_gpus % num_nodes:
        raise ValueError(f"{num_gpus} GPUs cannot be split evenly over {num_nodes} nodes")
    if num_experts % num_groups:
        raise ValueError(f"{num_experts} experts cannot be split evenly into {num_groups} groups")


def validate_weight(weight: torch.Tensor) -> None:
    """Raise ``ValueError`` unless weight is a non-empty 2-D tensor of finite loads >= 0."""
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D [layers, experts], got shape {list(weight.shape)}")
    if weight.numel() == 0:
        raise ValueError(f"weight is empty: shape {list(weight.shape)}")
    if weight.dtype == torch.bool or weight.is_complex():
        raise ValueError(f"weight must hold real numbers, got dtype {weight.dtype}")
    if weight.is_floating_point() and not bool(torch.isfinite(weight).all()):
        raise ValueError("weight has NaN or infinite values")
    if bool((weight < 0).any()):
        raise ValueError("weight has negative values; loads are token counts >= 0")


def policy_name(num_groups: int, num_nodes: int) -> str:
    """"hierarchical" when groups split evenly over nodes, else "global"."""
    return "hierarchical" if num_groups % num_nodes == 0 else "global"


@torch.no_grad()
def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int,
                      num_gpus: int, *, algorithm: Algorithm = "hybrid", seed: int = 0,
                      num_candidates: int | None = None,
                      num_rounds: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plan the replication and placement of experts for every layer.

    Parameters:
        weight: [layers, experts], load of each logical expert (any real dtype, any device)
        num_replicas: physical slots per layer, a multiple of num_gpus
        num_groups: expert groups (the hierarchical policy keeps a group on one node)
        num_nodes: server nodes
        num_gpus: GPUs, a multiple of num_nodes
        algorithm: "hybrid" (multi-start search) or "greedy" (DeepSeek's published plans)
        seed: seeds every random draw of the hybrid
        num_candidates, num_rounds: the hybrid's search size; None picks the defaults of
            ``eplb_core.packing`` (128 candidates on CUDA, 2 on a CPU; rounds by pack count)

    Returns:
        phy2log: [layers, num_replicas], the logical expert in each slot
        log2phy: [layers, experts, max replicas], each expert's slots, padded with -1
        logcnt: [layers, experts], the number of replicas of each expert
    """
    validate_weight(weight)
    num_layers, num_experts = weight.shape
    validate_shape(num_layers, num_experts, num_replicas, num_groups, num_nodes, num_gpus)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    if (num_candidates is not None and num_candidates < 1) or (num_rounds is not None
                                                                and num_rounds < 0):
        raise ValueError("num_candidates must be >= 1 and num_rounds >= 0")
    weight = weight.float()
    generator = torch.Generator(device=weight.device).manual_seed(seed)

    def pack(w: torch.Tensor, num_packs: int) -> tuple[torch.Tensor, torch.Tensor]:
        return balanced_packing(w, num_packs, algorithm=algorithm, num_candidates=num_candidates,
                                num_rounds=num_rounds, generator=generator)

    if policy_name(num_groups, num_nodes) == "global":
        num_groups = num_nodes = 1
    # Inference mode spares the many small ops their autograd bookkeeping; the clones at the
    # end hand back ordinary tensors that callers may modify in place.
    with torch.inference_mode():
        phy2log, phy_rank, logcnt = _hierarchical(weight, num_replicas, num_groups, num_nodes,
                                                  num_gpus, pack)
    max_count = int(logcnt.max())
    if num_layers * num_experts * max_count > MAX_LOG2PHY_ENTRIES:
        raise ValueError(f"the plan gives one expert {max_count} replicas, so log2phy would "
                         f"hold {num_layers} x {num_experts} x {max_count} entries, more than "
                         f"{MAX_LOG2PHY_ENTRIES}; plan fewer layers at once or fewer slots")
    log2phy = torch.full((num_layers, num_experts, max_count), -1, dtype=torch.int64,
                         device=weight.device)
    log2phy.view(num_layers, -1).scatter_(
        -1, phy2log * max_count + phy_rank,
        torch.arange(num_replicas, dtype=torch.int64, device=weight.device).expand(num_layers, -1))
    return phy2log.clone(), log2phy, logcnt.clone()


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    """Row-wise inverse of a permutation: [rows, n]."""
    arange = torch.arange(perm.size(1), dtype=torch.int64, device=perm.device)
    return torch.empty_like(perm).scatter_(1, perm, arange.expand(perm.shape))


def _hierarchical(weight: torch.Tensor, num_phy: int, num_groups: int, num_nodes: int,
                  num_gpus: int, pack) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Groups to nodes, replicas within each node, replicas to the node's GPUs.

    weight: [layers, experts] -> phy2log, phy_rank: [layers, num_phy]; logcnt: [layers, experts]
    """
    num_layers, num_log = weight.shape
    group_size = num_log // num_groups
    groups_per_node = num_groups // num_nodes
    phy_per_gpu = num_phy // num_gpus
    device = weight.device

    # 1. Groups to nodes. "mlog" numbers experts node by node: node n owns a contiguous range.
    group_load = weight.unflatten(-1, (num_groups, group_size)).sum(-1)
    group_pack, group_rank = pack(group_load, num_nodes)
    log2mlog = (((group_pack * groups_per_node + group_rank) * group_size).unsqueeze(-1)
                + torch.arange(group_size, dtype=torch.int64, device=device)).flatten(-2)
    mlog2log = _inverse(log2mlog)

    # 2. Replicas within each node: [layers * nodes, experts per node].
    mlog_load = weight.gather(-1, mlog2log).view(-1, num_log // num_nodes)
    phy2mlog, phy_rank, mlogcnt = replicate_experts(mlog_load, num_phy // num_nodes)

    # 3. Replicas to the node's GPUs, each replica carrying an equal share of its expert's load.
    phy_load = (mlog_load / mlogcnt).gather(-1, phy2mlog)
    gpu_index, rank_on_gpu = pack(phy_load, num_gpus // num_nodes)
    pphy2phy = _inverse(gpu_index * phy_per_gpu + rank_on_gpu)

    pphy2mlog = phy2mlog.gather(-1, pphy2phy)
    node_offset = torch.arange(0, num_log, num_log // num_nodes, device=device).view(1, -1, 1)
    pphy2mlog = (pphy2mlog.view(num_layers, num_nodes, -1) + node_offset).flatten(-2)
    phy2log = mlog2log.gather(-1, pphy2mlog)
    rank = phy_rank.gather(-1, pphy2phy).view(num_layers, -1)
    logcnt = mlogcnt.view(num_layers, -1).gather(-1, log2mlog)
    return phy2log, rank, logcnt
