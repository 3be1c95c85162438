"""Plans under a move budget: the most balance for at most ``max_moves`` changed slots.

A full replan moves most slots (70-90% of them on drifting traffic), while the placement in use
usually needs a few changes to serve new loads nearly as well. ``plan_within_budget`` builds,
for every layer, a ladder of placements that cost more and more moves and balance better and
better, then spends the budget across the layers where each move buys the most balance.

A layer's ladder holds:

1. A descent from the placement in use (``descend``): each step changes the heaviest GPU with
   the one action that lowers it most per move: give one of its experts another replica in
   place of a spare one (of an expert that has another) elsewhere, exchange one of its replicas
   with a lighter one on a light GPU, or turn one of its spare replicas into a replica of
   another expert. Every GPU an action changes ends below the heaviest GPU's load, so the
   layer's max never rises along a descent. Under the hierarchical policy each node is a
   problem of its own (its groups stay on it), and the layer's ladder combines its nodes'
   descents: to bring the layer's max down to a level, each node takes the fewest steps that
   bring it there.
2. Under the hierarchical policy, the same from the exchange of two groups between two nodes
   that most lowers the busiest node (``exchange_groups``): the pairing of groups on nodes
   drifts with the loads, and an exchange costs the two groups' slots.
3. The policy's own plan, deployed over the placement in use (nodes and GPUs renumbered, slots
   kept): what a layer takes when the budget affords it and nothing cheaper balances as well.

The budget goes where balance per move is highest (``allocate``): each ladder is reduced to its
upper concave envelope (a plateau followed by a drop counts at their average rate) and the steps
of all layers are taken in decreasing rate, as a prefix of that order, while the moves fit. A
larger budget takes a longer prefix, so no layer's max load is higher under a larger budget.
Experts that stay on a GPU then keep their slots (``migration.keep_slots``: never a move more).

Everything is batched over layers (and nodes); descents loop over steps only. No randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cluster import NODE_POLICIES, Cluster
from .metrics import replica_counts, trivial_placement
from .migration import deploy, kept_in_place
from .replication import replicate_experts

# Steps of each descent (per node under the hierarchical policy): this many, or half the GPUs
# of a problem if more (a step lowers one GPU). Descents stop earlier where no step gains; a
# budget never changes them, so that a larger budget takes more of the same ladders.
MAX_DESCENT_STEPS = 12
# The heaviest GPU trades replicas with the slots of this many of the lightest GPUs.
PARTNER_GPUS = 3
# A step must lower the heaviest GPU by more than this share of its load: less is not worth a
# move (traffic drifts more than that from one window to the next), and descents stay short.
_MIN_GAIN = 1e-3
# An exchange of groups must lower the busiest node by this share of its load: it costs the two
# groups' slots, which a smaller gain never repays.
_MIN_EXCHANGE_GAIN = 1e-2
# An action that costs no move (it puts a slot's old expert back) is rated as if it cost this.
_FREE_MOVE_COST = 0.5
# Bound on the [layers, points, points] tensor of the envelope computation per chunk.
_ENVELOPE_ELEMENTS = 1 << 22

Ladders = list[tuple[torch.Tensor, torch.Tensor]]  # (layers [n], their problems [n, per layer])


def plan_within_budget(
    weight: torch.Tensor,
    current: torch.Tensor | None,
    phy2log: torch.Tensor,
    logcnt: torch.Tensor,
    cluster: Cluster,
    policy: str,
    max_moves: int,
) -> torch.Tensor:
    """The most balanced placement that differs from ``current`` in at most ``max_moves`` slots.

    Parameters:
        weight: [layers, experts], loads (checked)
        current: [layers, slots], the placement in use (checked); None: the trivial layout
            (slot p holds expert p mod E), what an engine starts with
        phy2log, logcnt: the policy's plan ([layers, slots], [layers, experts]), deployed over
            ``current`` (nodes and GPUs renumbered, slots kept) as every layer's last point
        policy: "hierarchical", "spill" or "global". Under the hierarchical and spill
            policies, layers where ``current`` keeps each group on one node (groups / nodes
            groups per node) keep that structure: replicas move within a node, or two groups
            exchange nodes. Other layers (the trivial layout, a layer holding spill replicas)
            are kept, or replaced whole by the policy's plan where the budget affords it: a
            budget never leaves a layer half-way to the structure, nor spills more than the
            policy's plan.
        max_moves: the most slots, over all layers, whose expert may differ from ``current``

    Returns phy2log: [layers, slots]; every expert keeps at least one replica.
    """
    # Inference mode spares the descents' many small ops their autograd bookkeeping; the
    # clone hands back an ordinary tensor.
    with torch.inference_mode():
        placement = _plan_within_budget(
            weight, current, phy2log, logcnt, cluster, policy, max_moves
        )
    return placement.clone()


def _plan_within_budget(
    weight: torch.Tensor,
    current: torch.Tensor | None,
    phy2log: torch.Tensor,
    logcnt: torch.Tensor,
    cluster: Cluster,
    policy: str,
    max_moves: int,
) -> torch.Tensor:
    weight = weight.double()
    num_layers, num_experts = weight.shape
    if current is None:
        current = trivial_placement(num_layers, num_experts, cluster.num_replicas, weight.device)
    current = current.to(weight.device, torch.int64)
    target = deploy(
        current,
        phy2log,
        logcnt,
        cluster.num_gpus,
        cluster.whole_nodes(policy),
        renumber_gpus=True,
        keep_old_slots=True,
    )
    problems, ladders, gpus_per_problem = _problems(weight, current, cluster, policy)
    descent = descend(
        problems.weight.float(),
        problems.start,
        problems.reference,
        gpus_per_problem,
        _floors(problems, ladders, gpus_per_problem),
        max(MAX_DESCENT_STEPS, gpus_per_problem // 2),
    )

    # Every layer's points: the placement in use, each ladder's levels, the deployed target.
    costs = [torch.zeros(num_layers, 1, dtype=torch.int64, device=weight.device)]
    peaks = [_peak(weight, current, cluster.num_gpus).unsqueeze(1)]
    levels = []
    for layers, rows in ladders:
        cost, peak, steps = descent.ladder(rows)
        costs.append(_per_layer(cost, layers, num_layers, current.shape[1] + 1))
        peaks.append(_per_layer(peak.double(), layers, num_layers, float("inf")))
        levels.append(steps)
    costs.append((target != current).sum(-1, keepdim=True))
    peaks.append(_peak(weight, target, cluster.num_gpus).unsqueeze(1))
    peak = torch.cat(peaks, 1)
    mean_load = (weight.sum(-1) / cluster.num_gpus).unsqueeze(1)
    value = torch.where(peak > 0, mean_load / peak, torch.ones_like(peak))
    chosen = allocate(torch.cat(costs, 1), value, max_moves)

    # Replay each problem to the steps its layer's level takes (none where its layer chose
    # another point), and put each layer's chosen placement together.
    row_steps = torch.zeros(len(problems.weight), dtype=torch.int64, device=weight.device)
    picks, first = [], 1
    for (layers, rows), steps in zip(ladders, levels):
        level = chosen[layers] - first
        picked = (level >= 0) & (level < steps.shape[2])
        row_steps[rows[picked]] = (
            steps[picked]
            .gather(2, level[picked].view(-1, 1, 1).expand(-1, rows.shape[1], 1))
            .squeeze(2)
        )
        picks.append((layers[picked], rows[picked]))
        first += steps.shape[2]
    descended = problems.to_global(descent.replay(row_steps))
    placement = torch.where((chosen == value.shape[1] - 1).unsqueeze(1), target, current)
    for layers, rows in picks:
        placement[layers] = descended[rows].flatten(1)
    return kept_in_place(current, placement, cluster.num_gpus, num_experts)


def _problems(
    weight: torch.Tensor, current: torch.Tensor, cluster: Cluster, policy: str
) -> tuple[Problems, Ladders, int]:
    """The descents' problems and each ladder's layers and problems, and the GPUs of a problem.

    Under the hierarchical and spill policies: a problem per node of each structured layer,
    and one per node that an exchange of groups changes; the exchange's ladder shares the
    others with the first. Under the global policy: a problem per layer.
    """
    num_layers, num_experts = weight.shape
    if policy not in NODE_POLICIES:
        layers = torch.arange(num_layers, device=weight.device)
        return Problems.whole(weight, current), [(layers, layers.unsqueeze(1))], cluster.num_gpus
    group_node, structured = groups_on_nodes(current, cluster, num_experts)
    layers = structured.nonzero().flatten()
    base = Problems.by_node(
        weight[layers], current[layers], current[layers], group_node[layers], cluster
    )
    positions, swap_start, swap_nodes = exchange_groups(
        weight[layers], current[layers], group_node[layers], cluster
    )
    swapped = layers[positions]
    moved = Problems.by_node(weight[swapped], swap_start, current[swapped], swap_nodes, cluster)
    num_nodes, per_node = cluster.num_nodes, cluster.num_replicas // cluster.num_nodes
    changed = (swap_start != current[swapped]).view(len(swapped), num_nodes, per_node).any(-1)
    base_rows = torch.arange(len(base.weight), device=weight.device).view(len(layers), num_nodes)
    new_rows = len(base.weight) + changed.flatten().cumsum(0).view_as(changed) - 1
    exchange_rows = torch.where(changed, new_rows, base_rows[positions])
    return (
        base.extend(moved, changed.flatten()),
        [(layers, base_rows), (swapped, exchange_rows)],
        cluster.num_gpus // cluster.num_nodes,
    )


def _floors(problems: Problems, ladders: Ladders, gpus_per_problem: int) -> torch.Tensor:
    """Per problem, a load below which lowering its heaviest GPU cannot lower its layer's max:
    the busiest problem's mean GPU load in its ladder (a problem's load is fixed), the lower
    one for a problem two ladders share. [problems], float32."""
    mean = problems.weight.sum(-1) / gpus_per_problem
    floor = torch.full_like(mean, float("inf"))
    for _, rows in ladders:
        busiest = mean[rows].amax(1, keepdim=True).expand_as(rows)
        floor.scatter_reduce_(0, rows.flatten(), busiest.flatten(), "amin")
    return floor.float()


def _per_layer(
    values: torch.Tensor, layers: torch.Tensor, num_layers: int, missing: float
) -> torch.Tensor:
    """Spread a ladder's rows [ladders, K] over all layers, ``missing`` where a layer has none."""
    spread = torch.full(
        (num_layers, values.shape[1]), missing, dtype=values.dtype, device=values.device
    )
    spread[layers] = values
    return spread


def _peak(weight: torch.Tensor, phy2log: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """The heaviest GPU's load: [layers, experts], [layers, slots] -> [layers]."""
    counts = replica_counts(phy2log, weight.shape[1])
    slot_load = (weight / counts.clamp(min=1)).gather(1, phy2log)
    return slot_load.view(phy2log.shape[0], num_gpus, phy2log.shape[1] // num_gpus).sum(-1).amax(-1)


def groups_on_nodes(
    placement: torch.Tensor, cluster: Cluster, num_experts: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which node holds each group, and whether a layer keeps the hierarchical structure.

    A layer is structured when every group's replicas sit on one node and every node holds
    groups / nodes groups. placement: [layers, slots] -> group_node [layers, groups] (the
    highest node holding the group), structured [layers] bool.
    """
    num_layers, num_slots = placement.shape
    device = placement.device
    group_size = num_experts // cluster.num_groups
    slot_node = torch.arange(num_slots, device=device) // (num_slots // cluster.num_nodes)
    slot_node = slot_node.expand(num_layers, -1)
    group = placement // group_size
    shape = (num_layers, cluster.num_groups)
    lowest = torch.full(shape, cluster.num_nodes, dtype=torch.int64, device=device)
    lowest = lowest.scatter_reduce(1, group, slot_node, "amin")
    highest = torch.full(shape, -1, dtype=torch.int64, device=device)
    highest = highest.scatter_reduce(1, group, slot_node, "amax")
    groups_per_node = torch.zeros(num_layers, cluster.num_nodes, dtype=torch.int64, device=device)
    groups_per_node.scatter_add_(1, highest, torch.ones_like(highest))
    structured = (lowest == highest).all(-1) & (
        groups_per_node == cluster.num_groups // cluster.num_nodes
    ).all(-1)
    return highest, structured


def exchange_groups(
    weight: torch.Tensor, placement: torch.Tensor, group_node: torch.Tensor, cluster: Cluster
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exchange of two groups between two nodes that most lowers the busiest node, per layer
    of a structured ``placement`` [layers, slots].

    Each group takes over the other's slots: its experts one replica each, the spare slots to
    its hottest experts (``replicate_experts``), its heaviest replicas where the slots' heaviest
    ones were, so that the nodes' GPUs stay about as balanced as before.

    Returns the layers with an exchange that lowers the busiest node, [swapped]; their
    placements after it, [swapped, slots]; and their group-to-node map, [swapped, groups].
    """
    num_layers = placement.shape[0]
    num_groups = cluster.num_groups
    group_size = weight.shape[1] // num_groups
    device = weight.device
    group_load = weight.view(num_layers, num_groups, group_size).sum(-1)
    node_load = torch.zeros(num_layers, cluster.num_nodes, dtype=weight.dtype, device=device)
    node_load.scatter_add_(1, group_node, group_load)
    # Group a goes to group c's node and c to a's: node loads [layers, a, c, nodes].
    on_node = group_node.unsqueeze(-1) == torch.arange(cluster.num_nodes, device=device)
    on_node = on_node.to(weight.dtype)
    shift = (group_load.unsqueeze(1) - group_load.unsqueeze(2)).unsqueeze(-1)  # load_c - load_a
    after = node_load.unsqueeze(1).unsqueeze(1) + shift * (
        on_node.unsqueeze(2) - on_node.unsqueeze(1)
    )
    busiest = after.amax(-1).masked_fill(
        group_node.unsqueeze(2) == group_node.unsqueeze(1), float("inf")
    )
    best, pair = busiest.flatten(1).min(1)
    swapped = (best < node_load.amax(-1) * (1 - _MIN_EXCHANGE_GAIN)).nonzero().flatten()
    group_a, group_c = pair[swapped] // num_groups, pair[swapped] % num_groups
    weight, placement = weight[swapped], placement[swapped]
    start = placement.clone()
    for leaving, arriving in ((group_a, group_c), (group_c, group_a)) if len(swapped) else ():
        _refill(start, placement, weight, leaving, arriving, group_size)
    nodes = group_node[swapped].clone()
    rows = torch.arange(len(swapped), device=device)
    nodes[rows, group_a] = group_node[swapped, group_c]
    nodes[rows, group_c] = group_node[swapped, group_a]
    return swapped, start, nodes


def _refill(
    start: torch.Tensor,
    placement: torch.Tensor,
    weight: torch.Tensor,
    leaving: torch.Tensor,
    arriving: torch.Tensor,
    group_size: int,
) -> None:
    """Write group ``arriving``'s replicas, in place in ``start``, into the slots that
    ``placement`` gives group ``leaving``: the heaviest replica where the heaviest one was.

    start, placement: [layers, slots]; weight: [layers, experts]; leaving, arriving: [layers]
    """
    num_layers = placement.shape[0]
    device = placement.device
    held = placement // group_size == leaving.unsqueeze(1)  # [layers, slots]
    num_held = held.sum(-1, keepdim=True)  # at least group_size: each expert has a replica
    first = arriving.unsqueeze(1) * group_size
    arriving_weight = weight.gather(1, first + torch.arange(group_size, device=device))
    width = int(num_held.max())
    local, _, _ = replicate_experts(arriving_weight, width)  # extra replicas in pick order
    used = torch.arange(width, device=device) < num_held
    counts = torch.zeros(num_layers, group_size, dtype=torch.int64, device=device)
    counts.scatter_add_(1, local, used.long())
    share = arriving_weight.gather(1, local) / counts.gather(1, local).clamp(min=1)
    share = share.masked_fill(~used, float("-inf"))
    incoming = (first + local).gather(1, share.argsort(dim=-1, descending=True, stable=True))
    old_share = (weight / replica_counts(placement, weight.shape[1])).gather(1, placement)
    old_share = old_share.masked_fill(~held, float("-inf"))
    slots = old_share.argsort(dim=-1, descending=True, stable=True)[:, :width]
    start.scatter_(1, slots, torch.where(used, incoming, start.gather(1, slots)))


@dataclass(frozen=True)
class Problems:
    """Independent problems for the descents: one per node of a structured layer (its groups
    stay on it), or one per layer. Experts are numbered within each problem.

    weight: [rows, experts here]; start: [rows, slots here]; reference: [rows, slots here], the
    placement in use (-1 for an expert that is not here); experts: [rows, experts here], the
    global id of each
    """

    weight: torch.Tensor
    start: torch.Tensor
    reference: torch.Tensor
    experts: torch.Tensor

    @classmethod
    def whole(cls, weight: torch.Tensor, placement: torch.Tensor) -> Problems:
        """One problem per layer, from the placement in use [layers, slots]."""
        experts = torch.arange(weight.shape[1], device=weight.device).expand_as(weight)
        return cls(weight, placement, placement, experts)

    @classmethod
    def by_node(
        cls,
        weight: torch.Tensor,
        start: torch.Tensor,
        reference: torch.Tensor,
        group_node: torch.Tensor,
        cluster: Cluster,
    ) -> Problems:
        """One problem per (layer, node) of structured placements ``start`` [layers, slots],
        whose groups sit on the nodes ``group_node`` [layers, groups]; ``reference`` is the
        placement in use."""
        num_layers, num_experts = weight.shape
        num_nodes = cluster.num_nodes
        device = weight.device
        group_size = num_experts // cluster.num_groups
        here = cluster.num_groups // num_nodes * group_size
        node_groups = group_node.argsort(dim=-1, stable=True).view(
            num_layers, num_nodes, cluster.num_groups // num_nodes
        )
        experts = (
            node_groups.unsqueeze(-1) * group_size + torch.arange(group_size, device=device)
        ).view(num_layers, num_nodes, here)
        local = torch.full(
            (num_layers, num_nodes, num_experts), -1, dtype=torch.int64, device=device
        )
        local.scatter_(2, experts, torch.arange(here, device=device).expand_as(experts))
        slots = (num_layers, num_nodes, start.shape[1] // num_nodes)
        return cls(
            weight.unsqueeze(1).expand(-1, num_nodes, -1).gather(2, experts).flatten(0, 1),
            local.gather(2, start.view(slots)).flatten(0, 1),
            local.gather(2, reference.view(slots)).flatten(0, 1),
            experts.flatten(0, 1),
        )

    def extend(self, other: Problems, keep: torch.Tensor) -> Problems:
        """These problems, then the rows ``keep`` [rows of other] of ``other``."""
        return Problems(
            *(
                torch.cat([mine, theirs[keep]])
                for mine, theirs in (
                    (self.weight, other.weight),
                    (self.start, other.start),
                    (self.reference, other.reference),
                    (self.experts, other.experts),
                )
            )
        )

    def to_global(self, placement: torch.Tensor) -> torch.Tensor:
        """Placements [rows, slots here] in global expert ids."""
        return self.experts.gather(1, placement)


@dataclass(frozen=True)
class Descent:
    """The steps of a descent per problem: where it started, what each step wrote, and the
    heaviest GPU's load and the moves after each step.

    start: [rows, slots]; slots, experts: [steps, rows, 2] (a step writes two slots; a new
    replica writes the same slot twice); peak, moves: [rows, steps + 1] (column 0: the start)
    """

    start: torch.Tensor
    slots: torch.Tensor
    experts: torch.Tensor
    peak: torch.Tensor
    moves: torch.Tensor

    def replay(self, steps: torch.Tensor) -> torch.Tensor:
        """Each row's placement after its first ``steps[row]`` steps: [rows] -> [rows, slots]."""
        placement = self.start.clone()
        for step in range(int(steps.max()) if len(steps) else 0):
            active = (step < steps).unsqueeze(1)
            slots = self.slots[step]
            placement.scatter_(
                1, slots, torch.where(active, self.experts[step], placement.gather(1, slots))
            )
        return placement

    def ladder(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Combine the descents of each layer's problems ``rows`` [layers, problems] into one
        ladder per layer: for each level (a max load some problem reaches), every problem takes
        the fewest steps that bring it to that level or below.

        Returns, per layer and level ([layers, levels]): the moves (each problem's running
        maximum along its descent, summed), the layer's max load (inf where some problem never
        gets there), and the steps of each problem ([layers, problems, levels]).
        """
        peak = self.peak[rows].cummin(-1).values  # [layers, problems, steps + 1]
        moves = self.moves[rows].cummax(-1).values
        levels = peak.flatten(1)
        # Steps above a level: the count of peaks over it (the sequence ascends in -peak).
        steps = torch.searchsorted(
            -peak.contiguous(), (-levels).unsqueeze(1).expand(-1, rows.shape[1], -1).contiguous()
        )
        reached = (steps < peak.shape[2]).all(1)
        steps = steps.clamp(max=peak.shape[2] - 1)
        cost = moves.gather(2, steps).sum(1)
        layer_peak = peak.gather(2, steps).amax(1)
        return (
            cost,
            torch.where(reached, layer_peak, torch.full_like(layer_peak, float("inf"))),
            steps,
        )


def descend(
    weight: torch.Tensor,
    start: torch.Tensor,
    reference: torch.Tensor,
    num_gpus: int,
    floor: torch.Tensor,
    max_steps: int,
) -> Descent:
    """Lower each problem's heaviest GPU h step by step, by the action that gains most per move
    (``_best_actions``). A problem stops when no action gains, or when its heaviest GPU is
    down to ``floor`` (a load its layer's max cannot go below, so that lower is no use); the
    work shrinks to the problems still going.

    weight: [rows, experts] (float32 is enough); start, reference: [rows, slots] (expert ids;
    -1 in reference for an expert the problem does not hold); each row's slots fill
    ``num_gpus`` GPUs in order; floor: [rows].
    """
    rows = start.shape[0]
    partners = min(PARTNER_GPUS, num_gpus - 1)
    device = start.device
    placement = start.clone()
    peak = torch.zeros(rows, dtype=weight.dtype, device=device)
    moves = torch.zeros(rows, dtype=torch.int64, device=device)
    peaks, move_counts, slot_log, expert_log = [], [], [], []
    going = torch.arange(rows, device=device)
    for step in range(max_steps + 1):
        here = placement[going]
        peak[going], moves[going], slots, experts, found = _best_actions(
            weight[going], here, reference[going], num_gpus, partners if step < max_steps else 0
        )
        found &= peak[going] > floor[going] * (1 + _MIN_GAIN)
        peaks.append(peak.clone())
        move_counts.append(moves.clone())
        going, slots, experts = going[found], slots[found], experts[found]
        if not len(going):
            break
        here = here[found].scatter_(1, slots, experts)
        placement[going] = here
        # Problems that stopped write their slot 0 as it is: replaying the log is a no-op there.
        log_slots = torch.zeros(rows, 2, dtype=torch.int64, device=device)
        log_slots[going] = slots
        slot_log.append(log_slots)
        expert_log.append(placement.gather(1, log_slots))
    empty = torch.zeros(0, rows, 2, dtype=torch.int64, device=device)
    return Descent(
        start=start,
        slots=torch.stack(slot_log) if slot_log else empty,
        experts=torch.stack(expert_log) if expert_log else empty,
        peak=torch.stack(peaks, 1),
        moves=torch.stack(move_counts, 1),
    )


def _best_actions(
    weight: torch.Tensor,
    placement: torch.Tensor,
    reference: torch.Tensor,
    num_gpus: int,
    partners: int,
) -> tuple[torch.Tensor, ...]:
    """The heaviest GPU's load and the moves of each row, and the one action per row that lowers
    the heaviest GPU h most per move.

    The candidate actions (a replica's share: its expert's load over its replica count):
    - add: one of h's experts gets a new replica in a spare slot (its expert has another
      replica, not on h): one slot changes, that expert's other replicas get heavier, h's
      expert's lighter. The spare slots tried are those that leave their GPU, or their
      expert's heaviest other holder, lightest; as many as the exchange's.
    - exchange: one of h's replicas and a replica on one of the ``partners`` lightest GPUs
      trade places (two slots)
    - turn: one of h's replicas, of an expert that has another, becomes a replica of the expert
      whose new replica weighs least on h, or of the slot's expert in ``reference`` (one slot)
    An action is rated by the drop of h's load, or of the load of any GPU it lifts if higher
    (every GPU it changes must stay below h's old load, so the max never rises), over the moves
    it adds from ``reference`` (one that costs none is rated as half a move). GPUs whose experts
    gain a replica only get lighter from it, which is not counted: every estimate is of a load
    at least as high as the real one.

    weight: [rows, experts]; placement, reference: [rows, slots]. Returns peak [rows], moves
    [rows], and the action as two slot writes, slots and experts [rows, 2] (a one-slot action
    writes its slot twice), and whether a row has one, found [rows].
    """
    rows, num_slots = placement.shape
    per_gpu = num_slots // num_gpus
    device = weight.device
    counts = torch.zeros_like(weight).scatter_add_(
        1, placement, torch.ones_like(placement, dtype=weight.dtype)
    )
    share = weight / counts
    slot_share = share.gather(1, placement)
    load = slot_share.view(rows, num_gpus, per_gpu).sum(-1)
    peak, heavy = load.max(-1)
    moved = placement != reference
    moves = moved.sum(-1)
    if not partners:
        nothing = torch.zeros(rows, 2, dtype=torch.int64, device=device)
        return peak, moves, nothing, nothing, torch.zeros(rows, dtype=torch.bool, device=device)
    on_gpu = torch.arange(per_gpu, device=device)
    heavy_slots = heavy.unsqueeze(1) * per_gpu + on_gpu  # [rows, k]
    b = placement.gather(1, heavy_slots)  # h's experts
    light = load.scatter(1, heavy.unsqueeze(1), float("inf")).sort(-1).indices[:, :partners]
    j = (light.unsqueeze(-1) * per_gpu + on_gpu).flatten(1)  # exchange partners [rows, J]
    a = placement.gather(1, j)

    # Per expert: its share, how much heavier each replica gets when it loses one (0 without a
    # spare), what a new replica weighs, its replicas on h, and the load of its heaviest holder
    # but h if it loses a replica (-inf: none).
    spare = counts > 1
    heavier = torch.where(spare, weight / (counts - 1), share) - share
    new_share = weight / (counts + 1)
    on_heavy = torch.zeros_like(share).scatter_add_(1, b, torch.ones_like(b, dtype=share.dtype))
    by_gpu = placement.view(rows, num_gpus, per_gpu)
    copies_here = (
        (by_gpu.unsqueeze(-1) == by_gpu.unsqueeze(-2))
        .sum(-1, dtype=weight.dtype)
        .view(rows, num_slots)
    )
    slot_heavier = heavier.gather(1, placement)
    slot_load = load.repeat_interleave(per_gpu, 1)  # the load of each slot's GPU
    lifted = (slot_load + copies_here * slot_heavier).scatter(1, heavy_slots, float("-inf"))
    lifted_elsewhere = torch.full_like(share, float("-inf")).scatter_reduce(
        1, placement, lifted, "amax"
    )
    on_h_after = new_share + on_heavy * (new_share - share)  # h's load from a new replica
    # inf where an expert has no spare replica to give up.
    lifted_if_spare = torch.where(spare, lifted_elsewhere, float("inf"))
    share_b, heavier_b, on_heavy_b, on_h_after_b, lifted_b = (
        figure.gather(1, b) for figure in (share, heavier, on_heavy, on_h_after, lifted_if_spare)
    )
    # A slot's GPU without the slot's replica (its expert's others there get heavier), and the
    # heaviest other holder of its expert then: where a new replica of h's expert can go (not
    # on h, nor of an expert h holds, whose loss would lift h).
    without = slot_load - slot_share + (copies_here - 1) * slot_heavier
    lifted_there = (
        lifted_if_spare.masked_fill(on_heavy > 0, float("inf"))
        .gather(1, placement)
        .scatter(1, heavy_slots, float("inf"))
    )
    spare_slot = torch.maximum(without, lifted_there).sort(-1).indices[:, : j.shape[1]]
    moved = moved.to(weight.dtype)
    share_i, moved_i = slot_share.gather(1, heavy_slots), moved.gather(1, heavy_slots)
    share_j, load_j, moved_j = (
        figure.gather(1, j).unsqueeze(1) for figure in (slot_share, slot_load, moved)
    )
    without_g, lifted_g, moved_g = (
        figure.gather(1, spare_slot).unsqueeze(1) for figure in (without, lifted_there, moved)
    )
    ref_i = reference.gather(1, heavy_slots)
    peak_col = peak.view(rows, 1, 1)
    # Elementwise work on [rows, k, J] stays in float arithmetic (masks and conversions of that
    # size cost far more on a CPU): expert ids as floats, 1 where two differ.
    b_id = b.to(weight.dtype).unsqueeze(-1)

    def differ(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs_().clamp_(max=1)

    # Add [rows, k, J]: h's expert b into a spare slot g; exchange [rows, k, J]: h's replica
    # of b and j's trade places; turn [rows, k, 2]: to the lightest new replica, or back.
    new_h = (peak.unsqueeze(1) + on_h_after_b - new_share.gather(1, b)).unsqueeze(-1)
    add_peak = torch.maximum(
        without_g + new_share.gather(1, b).unsqueeze(-1), torch.maximum(lifted_g, new_h)
    )
    add_cost = differ(b_id, reference.gather(1, spare_slot).to(weight.dtype).unsqueeze(1)) - moved_g
    shift = share_i.unsqueeze(-1) - share_j
    swap_peak = torch.maximum(peak_col - shift, load_j + shift)
    swap_cost = (
        differ(a.to(weight.dtype).unsqueeze(1), ref_i.to(weight.dtype).unsqueeze(-1))
        + differ(b_id, reference.gather(1, j).to(weight.dtype).unsqueeze(1))
        - moved_i.unsqueeze(-1)
        - moved_j
    )
    lightest = on_h_after.min(1, keepdim=True).indices
    runner_up = on_h_after.scatter(1, lightest, float("inf")).min(1, keepdim=True).indices
    fresh = torch.where(lightest == b, runner_up, lightest)
    target = torch.stack([fresh, torch.where(ref_i >= 0, ref_i, fresh)], -1)
    keep_h = peak.unsqueeze(1) - share_b + (on_heavy_b - 1) * heavier_b
    turn_peak = torch.maximum(
        keep_h.unsqueeze(-1) + on_h_after.gather(1, target.flatten(1)).view_as(target),
        lifted_b.unsqueeze(-1).masked_fill(target == b.unsqueeze(-1), float("inf")),
    )
    turn_cost = (target != ref_i.unsqueeze(-1)).to(weight.dtype) - moved_i.unsqueeze(-1)
    # Rated by the drop of the heaviest GPU beyond _MIN_GAIN of its load, per move: an action
    # with a positive rating lowers it by more than that. The best of each kind, then of all.
    ceiling = peak_col * (1 - _MIN_GAIN)
    rated = [
        ((ceiling - action_peak) / cost.clamp_(min=_FREE_MOVE_COST)).flatten(1).max(1)
        for action_peak, cost in (
            (add_peak, add_cost),
            (swap_peak, swap_cost),
            (turn_peak, turn_cost),
        )
    ]
    best, kind = torch.stack([rating.values for rating in rated], 1).max(1)
    kind = kind.unsqueeze(1)  # 0 add, 1 exchange, 2 turn
    at = torch.stack([rating.indices for rating in rated], 1).gather(1, kind)
    width = (
        torch.tensor([[add_peak.shape[2], swap_peak.shape[2], turn_peak.shape[2]]], device=device)
        .expand(rows, -1)
        .gather(1, kind)
    )
    i, column = at // width, at % width
    is_swap, is_turn = kind == 1, kind == 2
    heavy_i = heavy_slots.gather(1, i)
    chosen_j = torch.where(kind == 0, spare_slot, j).gather(1, column.clamp(max=j.shape[1] - 1))
    turned_to = (
        target.gather(1, i.unsqueeze(-1).expand(-1, -1, 2))
        .squeeze(1)
        .gather(1, column.clamp(max=1))
    )
    # Add: j takes h's expert. Exchange: and h's slot takes j's. Turn: h's slot changes.
    slot_one = torch.where(is_turn, heavy_i, chosen_j)
    expert_one = torch.where(is_turn, turned_to, b.gather(1, i))
    slots = torch.cat([slot_one, torch.where(is_swap, heavy_i, slot_one)], 1)
    experts = torch.cat(
        [expert_one, torch.where(is_swap, placement.gather(1, chosen_j), expert_one)], 1
    )
    return peak, moves, slots, experts, best > 0


def allocate(cost: torch.Tensor, value: torch.Tensor, budget: int) -> torch.Tensor:
    """Choose one point per layer, at most ``budget`` in summed cost, for the most summed value.

    cost: [layers, points], int64, point 0 costing 0; value: [layers, points], float64, finite
    at point 0. Each layer's points make a staircase: by cost, the points that beat every point
    no dearer. Each staircase is replaced by its upper concave envelope, and the steps of all
    layers are taken in decreasing value per cost while the budget lasts: a prefix of that
    order, so a larger budget takes a superset. Returns the chosen point per layer, [layers].
    """
    num_layers = cost.shape[0]
    order = value.argsort(dim=-1, descending=True, stable=True)
    order = order.gather(1, cost.gather(1, order).argsort(dim=-1, stable=True))
    sorted_value = value.gather(1, order)
    earlier_best = torch.cat(
        [
            torch.full_like(sorted_value[:, :1], float("-inf")),
            sorted_value.cummax(-1).values[:, :-1],
        ],
        1,
    )
    corner = sorted_value > earlier_best
    # The corners, packed to the left; the rest of a row repeats its best value at a cost
    # beyond every point's, so that no budget takes it.
    width = int(corner.sum(-1).max())
    column = torch.where(corner, corner.cumsum(-1) - 1, width)
    beyond = int(cost.max()) + 1
    packed_cost = torch.full(
        (num_layers, width + 1), beyond, dtype=torch.float64, device=cost.device
    )
    packed_cost.scatter_(1, column, cost.gather(1, order).to(torch.float64))
    packed_value = sorted_value.amax(-1, keepdim=True).expand(-1, width + 1).clone()
    packed_value.scatter_(1, column, sorted_value)
    packed_point = torch.zeros_like(column).scatter_(1, column, order)[:, :width]
    packed_cost, packed_value = packed_cost[:, :width], packed_value[:, :width]
    chunk = max(1, _ENVELOPE_ELEMENTS // (width * width))
    rate = torch.cat(
        [
            _envelope_rates(packed_cost[lo : lo + chunk], packed_value[lo : lo + chunk])
            for lo in range(0, num_layers, chunk)
        ]
    ).flatten()
    step_cost = (packed_cost[:, 1:] - packed_cost[:, :-1]).flatten()
    by_rate = rate.argsort(dim=0, descending=True, stable=True)
    spent = step_cost[by_rate].cumsum(0)
    taken = torch.zeros_like(rate, dtype=torch.bool)
    taken[by_rate] = (spent <= budget) & (rate[by_rate] > 0)
    reached = taken.view(num_layers, width - 1).sum(-1, keepdim=True)
    return packed_point.gather(1, reached).squeeze(1)


def _envelope_rates(cost: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Slopes of the upper concave envelope of each row's staircase, per step between points:
    [rows, points] (cost and value non-decreasing) -> [rows, points - 1], non-increasing.

    The envelope's slope over step t is the min over i < t of the max over j >= t of the slope
    of the chord from point i to point j (the min-max formula of antitonic regression); a chord
    that costs nothing is free (+inf).
    """
    rise = value.unsqueeze(1) - value.unsqueeze(2)  # [rows, i, j]: value_j - value_i
    run = cost.unsqueeze(1) - cost.unsqueeze(2)
    chord = torch.where(run > 0, rise / run.clamp(min=1), torch.full_like(rise, float("inf")))
    best_after = chord.flip(-1).cummax(-1).values.flip(-1)  # [i, t]: max over j >= t
    worst_before = best_after.cummin(1).values  # [i, t]: min over i' <= i
    t = torch.arange(1, cost.shape[1], device=cost.device)
    return worst_before[:, t - 1, t].cummin(-1).values
