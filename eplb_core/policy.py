"""Placement policies: hierarchical (groups to nodes, then replicas to GPUs), global, spill.

``place`` is the stage of the pipeline (``eplb_core.plan``) that turns loads into a placement;
with the greedy packing its plans are DeepSeek's published ones. Everything stays on
``weight``'s device.
"""

from __future__ import annotations

import torch

from .cluster import NODE_POLICIES, Cluster
from .errors import LoadError
from .packing import pack_slots
from .replication import replicate_experts
from .spill import Pack, spill

# Plans add loads up in float32 (as DeepSeek's does): a layer's total must stay well inside it.
MAX_LAYER_LOAD = 1e38


def validate_weight(weight: torch.Tensor) -> None:
    """Raise ``LoadError`` unless weight is a non-empty 2-D tensor of finite loads >= 0 whose
    layers each sum to a float32."""
    if not isinstance(weight, torch.Tensor):
        raise LoadError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise LoadError(f"weight must be 2-D [layers, experts], got shape {list(weight.shape)}")
    if weight.numel() == 0:
        raise LoadError(f"weight is empty: shape {list(weight.shape)}")
    if weight.dtype == torch.bool or weight.is_complex():
        raise LoadError(f"weight must hold real numbers, got dtype {weight.dtype}")
    # One pass for the sums, one for the minimum. A NaN or an infinity makes its layer's sum
    # non-finite; so does a sum past a float's range, told apart by a look at the values.
    # (Floats sum in their own dtype, fast; integers in float64, which cannot wrap.)
    totals = weight.sum(-1) if weight.is_floating_point() else weight.sum(-1, dtype=torch.float64)
    if not bool(torch.isfinite(totals).all()) and not bool(torch.isfinite(weight).all()):
        raise LoadError("weight has NaN or infinite values")
    if float(weight.min()) < 0:
        raise LoadError("weight has negative values; loads are token counts >= 0")
    heaviest = int(totals.argmax())
    if float(totals[heaviest]) > MAX_LAYER_LOAD:
        raise LoadError(
            f"layer {heaviest} sums to {float(totals[heaviest]):.4g} tokens, more "
            f"than a float32 can add up ({MAX_LAYER_LOAD:.3g}); scale the loads down"
        )


def place(
    weight: torch.Tensor,
    cluster: Cluster,
    policy: str,
    *,
    algorithm: str,
    generator: torch.Generator,
    num_candidates: int | None = None,
    num_rounds: int | None = None,
    spill_slots: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replicate and place every layer's experts under a resolved policy.

    Parameters:
        weight: [layers, experts], float32, checked (``validate_weight``, ``Cluster.check``)
        policy: "hierarchical", "global" (the hierarchical policy with one group and one
            node, as in DeepSeek's EPLB) or "spill" (the hierarchical plan, then up to
            ``spill_slots`` replicas per GPU of other nodes' experts: ``eplb_core.spill``)
        algorithm, num_candidates, num_rounds: the packing (``packing.pack_slots``)
        generator: every random draw of the hybrid, on weight's device

    Returns:
        phy2log: [layers, num_replicas], the logical expert in each slot
        phy_rank: [layers, num_replicas], each slot's replica index within its expert
        logcnt: [layers, experts], the number of replicas of each expert
    """

    def pack(w: torch.Tensor, num_packs: int) -> torch.Tensor:
        return pack_slots(
            w,
            num_packs,
            algorithm=algorithm,
            num_candidates=num_candidates,
            num_rounds=num_rounds,
            generator=generator,
        )

    groups, nodes = (cluster.num_groups, cluster.num_nodes) if policy in NODE_POLICIES else (1, 1)
    # Inference mode spares the many small ops their autograd bookkeeping; the clones hand
    # back ordinary tensors that callers may modify in place.
    with torch.inference_mode():
        plan = _hierarchical(weight, cluster.num_replicas, groups, nodes, cluster.num_gpus, pack)
        if policy == "spill":
            plan = spill(weight, plan, cluster, spill_slots, pack)
        phy2log, phy_rank, logcnt = plan
    return phy2log.clone(), phy_rank.clone(), logcnt.clone()


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    """Row-wise inverse of a permutation: [rows, n]."""
    arange = torch.arange(perm.size(1), dtype=torch.int64, device=perm.device)
    return torch.empty_like(perm).scatter_(1, perm, arange.expand(perm.shape))


def _hierarchical(
    weight: torch.Tensor, num_phy: int, num_groups: int, num_nodes: int, num_gpus: int, pack: Pack
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Groups to nodes, replicas within each node, replicas to the node's GPUs.

    weight: [layers, experts] -> phy2log, phy_rank: [layers, num_phy]; logcnt: [layers, experts]
    """
    num_layers, num_log = weight.shape
    group_size = num_log // num_groups
    device = weight.device

    # 1. Groups to nodes. "mlog" numbers experts node by node: node n owns a contiguous range,
    # its groups in their slots' order.
    group_load = weight.view(num_layers, num_groups, group_size).sum(-1)
    group_in_slot = pack(group_load, num_nodes)
    mlog2log = (
        (group_in_slot * group_size).unsqueeze(-1)
        + torch.arange(group_size, dtype=torch.int64, device=device)
    ).flatten(-2)
    log2mlog = _inverse(mlog2log)

    # 2. Replicas within each node: [layers * nodes, experts per node].
    mlog_load = weight.gather(-1, mlog2log).view(-1, num_log // num_nodes)
    phy2mlog, phy_rank, mlogcnt = replicate_experts(mlog_load, num_phy // num_nodes)

    # 3. Replicas to the node's GPUs, each replica carrying an equal share of its expert's load.
    phy_load = (mlog_load / mlogcnt).gather(-1, phy2mlog)
    pphy2phy = pack(phy_load, num_gpus // num_nodes)  # the replica in each slot of the node

    pphy2mlog = phy2mlog.gather(-1, pphy2phy)
    node_offset = torch.arange(0, num_log, num_log // num_nodes, device=device).view(1, -1, 1)
    pphy2mlog = (pphy2mlog.view(num_layers, num_nodes, -1) + node_offset).flatten(-2)
    phy2log = mlog2log.gather(-1, pphy2mlog)
    rank = phy_rank.gather(-1, pphy2phy).view(num_layers, -1)
    logcnt = mlogcnt.view(num_layers, -1).gather(-1, log2mlog)
    return phy2log, rank, logcnt
