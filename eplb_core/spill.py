"""The spill policy: the hierarchical plan, plus a few replicas across nodes where they buy balance.

The hierarchical policy keeps every group on one node, so a node's load is the load of its
groups, and the busiest node bounds the balance. The spill policy starts from the hierarchical
plan (the groups' homes, the replicas within each node) and lets the busiest nodes hand load to
the lightest: a slot of a light node that held a spare replica of one of its own experts takes a
replica of a hot expert of a busy node instead. That replica takes its share of the expert's
load off the busy node. Every expert keeps at least one replica on its home node, and a GPU
holds at most ``spill_slots`` replicas of experts from other nodes.

The budget: a node's slots hold one replica of each of its own experts first, so it can host at
most ``min(spill_slots * GPUs per node, slots per node - its experts)`` replicas from other
nodes (DeepSeek-V3 prefill: 8, one per GPU, whatever ``spill_slots >= 1``), and each one takes
the place of one of its spare replicas (the one it misses least). The groups' homes are the
hierarchical plan's.

Which replicas: the load a token sends across nodes grows with the load spilled, so the policy
spills no more than balance needs. The target of every node is the mean node load (or more,
when the heaviest replica keeps the GPUs above that anyway); each step moves one replica, from
the node furthest above its target to a node below it, choosing the expert whose share best
fills the gap (the largest cut in the load above target; among equal cuts, the least load
moved) and, on the receiving node, the spare replica whose loss costs the least (the expert
whose load per replica rises the least, among those with two or more replicas and none on
other nodes).

The nodes that changed are packed again: their other nodes' replicas, with their lightest
replicas, fill ``spill_slots`` seats per GPU first, then the rest are packed around them.

Whether a layer spills: only when the spilled plan's balancedness on the planned loads beats
the hierarchical plan's by at least ``MIN_GAIN``; every other layer keeps its hierarchical plan
exactly. Near-uniform loads leave every node close to the mean, so they rarely spill: a small
in-sample gain would be paid in traffic on every later window and is mostly noise (without the
threshold, near-uniform loads spilled a few layers for +0.0003 on the planned window and lost
up to 0.0007 on the next; ``benchmarks/policies.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .cluster import Cluster
from .metrics import balancedness, gpu_loads
from .migration import rank_in_slot_order
from .replication import replicate_experts

MIN_GAIN = 0.005  # balancedness a layer must gain on the planned loads to spill
STEP_GAIN = 1e-4  # a move must cut the load above target by this share of a node's target
TIE_BREAK = 1e-6  # of equal gains, the least load moved: gain - TIE_BREAK * load moved
_EXCLUDED = 1e300  # a cost (or minus a gain) that is never chosen

# A packing of weighted items into equal packs, per row: (weights [rows, n], packs) ->
# (pack index, rank in pack), each [rows, n].
Pack = Callable[[torch.Tensor, int], torch.Tensor]  # weight, packs -> item in each slot


def spill(
    weight: torch.Tensor,
    hierarchical: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    cluster: Cluster,
    spill_slots: int,
    pack: Pack,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The spill plan of every layer, from its hierarchical plan.

    Parameters:
        weight: [layers, experts], float32
        hierarchical: phy2log, phy_rank [layers, slots] and logcnt [layers, experts] of the
            hierarchical plan on ``cluster`` (every expert's replicas on its group's node)
        spill_slots: replicas of other nodes' experts one GPU may hold, at most
        pack: the packing of replicas onto GPUs, ``(weights [rows, n], packs) -> (pack index,
            rank in pack)``

    Returns phy2log, phy_rank [layers, slots] and logcnt [layers, experts]; layers that do not
    spill are the hierarchical plan's rows, unchanged, and so are the nodes of a spilling
    layer whose replicas and their loads stay the same.
    """
    phy2log, phy_rank, logcnt = hierarchical
    num_layers, num_experts = weight.shape
    num_nodes = cluster.num_nodes
    slots_per_node = cluster.num_replicas // num_nodes
    spill_per_node = min(
        (cluster.num_gpus // cluster.num_nodes) * spill_slots,
        slots_per_node - num_experts // num_nodes,
    )
    if spill_per_node == 0:
        return hierarchical
    device = weight.device
    node_of_slot = torch.arange(cluster.num_replicas, device=device) // slots_per_node
    home = torch.empty_like(logcnt).scatter_(1, phy2log, node_of_slot.expand_as(phy2log))
    before = torch.zeros(num_layers, num_experts, num_nodes, dtype=torch.float64, device=device)
    before.scatter_(2, home.unsqueeze(-1), logcnt.unsqueeze(-1).double())
    on_node = _move_replicas(weight.double(), home, before, cluster, spill_per_node)

    # The nodes whose replicas, or the loads of their replicas, changed: [layers, nodes].
    recounted = (on_node.sum(-1) != logcnt).unsqueeze(-1)
    changed = ((on_node != before) | (recounted & (on_node > 0))).any(1)
    rows = changed.any(-1).nonzero().flatten()
    if rows.numel() == 0:
        return hierarchical
    candidate = phy2log[rows].view(len(rows), num_nodes, slots_per_node).clone()
    candidate[changed[rows]] = _place_on_gpus(
        weight[rows], home[rows], on_node[rows], changed[rows], cluster, spill_slots, pack
    )
    candidate = candidate.flatten(1)
    gain = balancedness(gpu_loads(weight[rows], candidate, cluster.num_gpus)) - balancedness(
        gpu_loads(weight[rows], phy2log[rows], cluster.num_gpus)
    )
    keep = gain >= MIN_GAIN
    rows, candidate = rows[keep], candidate[keep]
    phy2log, phy_rank, logcnt = phy2log.clone(), phy_rank.clone(), logcnt.clone()
    phy2log[rows] = candidate
    logcnt[rows] = on_node[rows].sum(-1).long()
    phy_rank[rows] = rank_in_slot_order(candidate, logcnt[rows])
    return phy2log, phy_rank, logcnt


def _move_replicas(
    weight: torch.Tensor,
    home: torch.Tensor,
    on_node: torch.Tensor,
    cluster: Cluster,
    spill_per_node: int,
) -> torch.Tensor:
    """Move replicas between nodes until no node above its target can hand load to a node
    below it (see the module's docstring). All layers step together; a step makes at most one
    move per layer, and each move fills one of a node's ``spill_per_node`` foreign slots.

    weight: [layers, experts] float64; home: [layers, experts], each expert's node;
    on_node: [layers, experts, nodes] float64, replicas of each expert on each node
    -> the replicas after the moves, [layers, experts, nodes] float64
    """
    num_layers, num_experts, num_nodes = on_node.shape
    home_experts = num_experts // num_nodes
    gpus_per_node = cluster.num_gpus // cluster.num_nodes
    device = weight.device
    layer = torch.arange(num_layers, device=device)
    node = torch.arange(num_nodes, device=device)
    _, _, best_counts = replicate_experts(weight, cluster.num_replicas)
    target = torch.maximum(
        weight.sum(-1) / num_nodes, (weight / best_counts).amax(-1) * gpus_per_node
    ).unsqueeze(-1)
    # Experts node by node: load, count [layers, home node, expert of it]; replicas
    # [layers, node holding them, home node, expert].
    members = home.argsort(dim=-1, stable=True)
    shape = (num_layers, num_nodes, home_experts)
    load = weight.gather(1, members).view(shape)
    replicas = on_node.gather(1, members.unsqueeze(-1).expand(-1, -1, num_nodes))
    replicas = replicas.transpose(1, 2).reshape(num_layers, num_nodes, *shape[1:])
    count = replicas.sum(1)
    # What giving up a replica costs a donor, its new load per replica: only experts with two
    # or more replicas, all at home, can give.
    donor_cost = torch.where(count >= 2, load / (count - 1).clamp(min=1), _EXCLUDED)
    foreign = torch.zeros(num_layers, num_nodes, dtype=torch.float64, device=device)
    active = torch.ones(num_layers, dtype=torch.bool, device=device)

    for _ in range(num_nodes * spill_per_node):
        replica_load = load / count
        node_load = torch.bmm(
            replicas.view(num_layers, num_nodes, -1), replica_load.view(num_layers, -1, 1)
        ).squeeze(-1)
        excess, busy = (node_load - target).max(-1)
        cost, donor = donor_cost.min(-1)  # [layers, nodes]
        # A donor may not become the heaviest replica.
        ceiling = torch.maximum(
            target / gpus_per_node, replica_load.flatten(1).amax(-1, keepdim=True)
        )
        receives = (
            (foreign < spill_per_node)
            & (cost <= ceiling)
            & (node_load < target)
            & (node != busy.unsqueeze(-1))
        )

        # Candidates: each expert x of the busy node to each node m, [layers, m, x]. With c
        # replicas, a at home and b on m, one more on m takes w a / (c (c+1)) off the busy node
        # and brings w (c - b) / (c (c+1)) to m.
        of_busy = busy.view(-1, 1, 1).expand(-1, 1, home_experts)
        count_x = count.gather(1, of_busy)  # [layers, 1, x]
        share = load.gather(1, of_busy) / (count_x * (count_x + 1))
        on_m = replicas.gather(2, busy.view(-1, 1, 1, 1).expand(-1, num_nodes, 1, home_experts))
        on_m = on_m.squeeze(2)  # [layers, m, x]
        at_home = on_m.gather(1, of_busy)
        cut = torch.minimum(excess.view(-1, 1, 1), share * at_home)
        received = share * (count_x - on_m)
        over = (received - (target - node_load).unsqueeze(-1)).clamp(min=0)
        gain = cut - over - (~receives).double().unsqueeze(-1) * _EXCLUDED
        # The largest cut of the load above target; of equal ones, the least load moved.
        choice = (gain - TIE_BREAK * received).flatten(1).argmax(-1)
        best_gain = gain.flatten(1).gather(1, choice.unsqueeze(-1)).squeeze(-1)
        active &= best_gain > STEP_GAIN * target.squeeze(-1)
        if not bool(active.any()):
            break
        rows = layer[active]
        source, to, moved = busy[rows], choice[rows] // home_experts, choice[rows] % home_experts
        given = donor[rows, to]
        replicas[rows, to, source, moved] += 1
        replicas[rows, to, to, given] -= 1
        count[rows, source, moved] += 1
        count[rows, to, given] -= 1
        donor_cost[rows, source, moved] = _EXCLUDED
        left = count[rows, to, given]
        donor_cost[rows, to, given] = torch.where(
            left >= 2, load[rows, to, given] / (left - 1).clamp(min=1), _EXCLUDED
        )
        foreign[rows, to] += 1
    replicas = replicas.flatten(2).transpose(1, 2)  # [layers, experts node by node, nodes]
    return torch.empty_like(on_node).scatter_(
        1, members.unsqueeze(-1).expand(-1, -1, num_nodes), replicas
    )


def _pack_of(pack: Pack, load: torch.Tensor, packs: int) -> torch.Tensor:
    """Each item's pack under ``pack`` (which answers the item in each slot): [rows, n]."""
    slots = pack(load, packs)
    position = torch.arange(slots.shape[1], device=slots.device).expand_as(slots)
    return torch.empty_like(slots).scatter_(1, slots, position // (slots.shape[1] // packs))


def _place_on_gpus(
    weight: torch.Tensor,
    home: torch.Tensor,
    on_node: torch.Tensor,
    changed: torch.Tensor,
    cluster: Cluster,
    spill_slots: int,
    pack: Pack,
) -> torch.Tensor:
    """Pack the replicas of the ``changed`` nodes onto their GPUs, at most ``spill_slots`` of
    other nodes' experts per GPU.

    weight, home: [layers, experts]; on_node: [layers, experts, nodes], replicas on each node;
    changed: [layers, nodes] bool -> the changed nodes' slots [changed nodes, slots per node]

    In two stages per node: first the "spill seats", ``spill_slots`` per GPU, which take every
    foreign replica and, to fill the rest, the node's lightest replicas; then the remaining
    replicas, packed together with one stand-in item per GPU that carries the GPU's seat load
    plus a constant larger than twice the node's load, so that any packing that minimises the
    heaviest GPU gives each GPU exactly one stand-in.
    """
    num_experts, num_nodes = on_node.shape[1:]
    gpus = cluster.num_gpus // cluster.num_nodes
    slots_per_node = cluster.num_replicas // num_nodes
    seats = gpus * spill_slots
    device = weight.device

    # Each changed node's replicas as items [rows, slots per node], by expert id.
    layer, node = changed.nonzero(as_tuple=True)
    counts = on_node[layer, :, node].long()  # [rows, experts]
    experts = torch.arange(num_experts, device=device).repeat(len(layer))
    items = experts.repeat_interleave(counts.flatten()).view(-1, slots_per_node)
    item_load = (weight / on_node.sum(-1)).to(weight.dtype)[layer.unsqueeze(-1), items]
    foreign = home[layer.unsqueeze(-1), items] != node.unsqueeze(-1)
    if seats >= slots_per_node:
        gpu = _pack_of(pack, item_load, gpus)
        return _lay_out(items, gpu, torch.zeros_like(gpu))

    # Stage 1: the seats. Foreign replicas first, then the lightest.
    order = torch.where(foreign, -1.0, item_load).argsort(dim=-1, stable=True)
    seated, rest = order[:, :seats], order[:, seats:]
    seat_load = item_load.gather(1, seated)
    seat_gpu = _pack_of(pack, seat_load, gpus)
    gpu_seat_load = torch.zeros(
        len(layer), gpus, dtype=item_load.dtype, device=device
    ).scatter_add_(1, seat_gpu, seat_load)
    # Stage 2: the rest, with one stand-in per GPU.
    big = 2 * item_load.sum(-1, keepdim=True) + 1
    rest_gpu = _pack_of(pack, torch.cat([gpu_seat_load + big, item_load.gather(1, rest)], 1), gpus)
    gpu = torch.empty_like(order)
    gpu.scatter_(1, seated, rest_gpu[:, :gpus].gather(1, seat_gpu))
    gpu.scatter_(1, rest, rest_gpu[:, gpus:])
    return _lay_out(items, gpu, torch.ones_like(order).scatter_(1, seated, 0))


def _lay_out(items: torch.Tensor, gpu: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
    """A node's slots from its items' GPUs, seats first within a GPU: [rows, slots per node]."""
    return items.gather(1, (gpu * 2 + stage).argsort(dim=-1, stable=True))
