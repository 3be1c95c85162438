"""The one planning pipeline: loads + cluster + options -> a checked plan, and its figures.

``make_plan`` checks everything, places the experts (``policy.place``), deploys the plan over
the placement in use (``migration.deploy``) and checks the result's invariants.
``rebalance`` adds the figures every caller shows: loads before and after, balancedness, the
policy's bound and the moves. ``rebalance_experts`` is DeepSeek's drop-in on top of
``make_plan``. The service, the CLI, replay and the benchmarks all come through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import torch

from .budget import plan_within_budget
from .cluster import DEEPSEEK_V3_EXPERT_BYTES, Cluster
from .cost import check_cost, check_size, rebalance_cost
from .errors import InvariantError, LimitError, LoadError, OptionError, PlacementError
from .limits import Limits
from .metrics import (
    Scores,
    active_layers,
    balancedness_bound,
    moe_speedup,
    replica_counts,
    routable,
    score,
    trivial_placement,
)
from .migration import (
    MigrationCost,
    Moves,
    build_log2phy,
    check_copy_options,
    count_moves,
    deploy,
    migration_cost,
    rank_in_slot_order,
    validate_placement,
)
from .packing import ALGORITHMS
from .policy import place, validate_weight
from .traffic import routing

# log2phy is dense, [layers, experts, most replicas of one expert]: past this many entries
# (2 GiB of int64) a plan is refused rather than exhausting memory.
MAX_LOG2PHY_ENTRIES = 1 << 28


@dataclass(frozen=True)
class PlanOptions:
    """How to plan: the packing algorithm and its search, the policy, and how to deploy the plan
    over the placement in use (both steps keep the balance and move fewer experts)."""

    algorithm: str = "hybrid"
    seed: int = 0
    policy: str = "auto"
    keep_slots: bool = False
    renumber_gpus: bool = False
    num_candidates: int | None = None  # the hybrid's search; None: packing's defaults
    num_rounds: int | None = None
    spill_slots: int = 1  # the spill policy's slots per GPU for other nodes' experts
    max_moves: int | None = None  # the most slots whose expert may change; None: no budget

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise OptionError(f"unknown algorithm {self.algorithm!r}; expected one of {ALGORITHMS}")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not (0 <= self.seed < 2**64)
        ):
            raise OptionError(f"seed must be an integer in 0 .. 2**64 - 1, got {self.seed!r}")
        if self.num_candidates is not None and self.num_candidates < 1:
            raise OptionError(f"num_candidates must be at least 1, got {self.num_candidates}")
        if self.num_rounds is not None and self.num_rounds < 0:
            raise OptionError(f"num_rounds must be at least 0, got {self.num_rounds}")
        if (
            isinstance(self.spill_slots, bool)
            or not isinstance(self.spill_slots, int)
            or (self.spill_slots < 0)
        ):
            raise OptionError(f"spill_slots must be an integer >= 0, got {self.spill_slots!r}")
        if self.max_moves is not None and (
            isinstance(self.max_moves, bool)
            or not isinstance(self.max_moves, int)
            or self.max_moves < 0
        ):
            raise OptionError(
                f"max_moves must be a whole number of slots >= 0, got {self.max_moves!r}"
            )


@dataclass(frozen=True)
class Plan:
    """Where every expert's replicas go, for every layer.

    phy2log: [layers, slots], the logical expert in each slot
    logcnt: [layers, experts], the replicas of each expert
    phy_rank: [layers, slots], each slot's replica index within its expert (the order of an
        expert's slots in ``log2phy``); None lists them in slot order
    """

    phy2log: torch.Tensor
    logcnt: torch.Tensor
    phy_rank: torch.Tensor | None = None

    @classmethod
    def from_placement(cls, phy2log: torch.Tensor, num_experts: int | None = None) -> Plan:
        """The plan of a placement phy2log [layers, slots] (replica counts counted from it);
        ``PlacementError`` unless it holds every expert 0 .. num_experts - 1 (by default one
        more than its largest id, which must name fewer experts than it has slots)."""
        if phy2log.dim() != 2 or phy2log.numel() == 0:
            raise PlacementError(
                f"a placement (phy2log) is 2-D [layers, slots] and not empty, "
                f"got shape {list(phy2log.shape)}"
            )
        num_layers, num_slots = phy2log.shape
        if num_experts is None:
            largest = int(phy2log.max())
            if largest >= num_slots:
                raise PlacementError(
                    f"the placement names expert {largest}, but its "
                    f"{num_slots} slots hold at most experts 0..{num_slots - 1}"
                )
            num_experts = largest + 1
        validate_placement(phy2log, num_layers, num_experts, num_slots)
        phy2log = phy2log.long()
        return cls(phy2log, replica_counts(phy2log, num_experts))

    @cached_property
    def log2phy(self) -> torch.Tensor:
        """[layers, experts, most replicas]: each expert's slots, padded with -1."""
        num_layers = self.phy2log.shape[0]
        num_experts = self.logcnt.shape[1]
        max_count = int(self.logcnt.max())
        if num_layers * num_experts * max_count > MAX_LOG2PHY_ENTRIES:
            raise LimitError(
                f"the plan gives one expert {max_count} replicas, so log2phy would "
                f"hold {num_layers} x {num_experts} x {max_count} entries, more "
                f"than {MAX_LOG2PHY_ENTRIES}; plan fewer layers or fewer slots"
            )
        return build_log2phy(self.phy2log, self.logcnt, self.phy_rank)

    def check(self) -> None:
        """``InvariantError`` unless every slot holds a known expert, every expert has a
        replica, logcnt counts phy2log, and log2phy inverts it. Called on every plan made."""
        num_layers, num_slots = self.phy2log.shape
        num_experts = self.logcnt.shape[1]
        if self.phy2log.dtype != torch.int64 or bool(
            ((self.phy2log < 0) | (self.phy2log >= num_experts)).any()
        ):
            raise InvariantError("the plan has a slot without a valid expert")
        if not torch.equal(replica_counts(self.phy2log, num_experts), self.logcnt):
            raise InvariantError("the plan's replica counts do not match its slots")
        if int(self.logcnt.min()) < 1:
            raise InvariantError("the plan leaves an expert without a replica")
        rank = self.phy_rank
        if rank is None:
            rank = rank_in_slot_order(self.phy2log, self.logcnt)
        if not bool(((rank >= 0) & (rank < self.logcnt.gather(1, self.phy2log))).all()):
            raise InvariantError("the plan's replica ranks are out of range")
        # Each slot is found where its (expert, rank) points in log2phy, and log2phy lists
        # nothing else: it inverts phy2log.
        log2phy = self.log2phy
        found = log2phy.view(num_layers, -1).gather(1, self.phy2log * log2phy.shape[-1] + rank)
        slots = torch.arange(num_slots, device=found.device).expand_as(found)
        if not torch.equal(found, slots):
            raise InvariantError("the plan's log2phy does not invert its phy2log")
        if int(torch.count_nonzero(log2phy >= 0)) != num_layers * num_slots:
            raise InvariantError("the plan's log2phy lists more than its slots")


def check_request(
    weight: torch.Tensor,
    cluster: Cluster,
    options: PlanOptions,
    current: torch.Tensor | None = None,
) -> str:
    """Every check of a plan request, before any work: the loads, the cluster under the
    policy, the placement in use. Returns the resolved policy."""
    validate_weight(weight)
    num_layers, num_experts = weight.shape
    policy = cluster.check(num_experts, options.policy, options.spill_slots)
    if current is not None:
        validate_placement(current, num_layers, num_experts, cluster.num_replicas)
    return policy


@torch.no_grad()
def make_plan(
    weight: torch.Tensor,
    cluster: Cluster,
    options: PlanOptions = PlanOptions(),
    current: torch.Tensor | None = None,
) -> Plan:
    """Plan every layer of ``weight`` [layers, experts] (any real dtype, any device; the plan
    is on the same device) on ``cluster``.

    ``current`` is the placement in use, phy2log [layers, slots]: with ``renumber_gpus`` and
    ``keep_slots`` the plan is deployed over it (the same balance, fewer moves). With
    ``options.max_moves`` the plan changes at most that many slots of ``current`` (of the
    trivial layout when ``current`` is None), as balanced as the budget allows
    (``budget.plan_within_budget``; renumbering and kept slots included).

    Raises a ``ValueError`` subclass of ``eplb_core.errors`` for bad input, and
    ``InvariantError`` if the plan broke its own guarantees.
    """
    policy = check_request(weight, cluster, options, current)
    return plan_checked(weight, cluster, options, policy, current)


@torch.no_grad()
def plan_checked(
    weight: torch.Tensor,
    cluster: Cluster,
    options: PlanOptions,
    policy: str,
    current: torch.Tensor | None = None,
) -> Plan:
    """``make_plan`` of a request that ``check_request`` has passed, ``policy`` its resolved
    policy: for callers that check once and plan many times (replay's windows, a sweep's
    points). The plan's own invariants are still checked."""
    weight = weight.float()
    generator = torch.Generator(device=weight.device).manual_seed(options.seed)
    phy2log, phy_rank, logcnt = place(
        weight,
        cluster,
        policy,
        algorithm=options.algorithm,
        generator=generator,
        num_candidates=options.num_candidates,
        num_rounds=options.num_rounds,
        spill_slots=options.spill_slots,
    )
    if options.max_moves is not None:
        # The budget's placement is the core's own output: its checks are the invariants'.
        placement = plan_within_budget(
            weight, current, phy2log, logcnt, cluster, policy, options.max_moves
        )
        plan = Plan(placement, replica_counts(placement, weight.shape[1]))
        plan.check()
        return plan
    plan = Plan(phy2log, logcnt, phy_rank)
    if current is not None:
        return deploy_plan(plan, current.to(phy2log.device, torch.int64), cluster, policy, options)
    plan.check()
    return plan


def deploy_plan(
    plan: Plan, current: torch.Tensor, cluster: Cluster, policy: str, options: PlanOptions
) -> Plan:
    """The plan as it goes over the placement in use ``current`` [layers, slots], with the
    options' ``renumber_gpus`` and ``keep_slots`` (neither changes the balance); checked."""
    if options.renumber_gpus or options.keep_slots:
        plan = Plan(
            deploy(
                current,
                plan.phy2log,
                plan.logcnt,
                cluster.num_gpus,
                cluster.whole_nodes(policy),
                renumber_gpus=options.renumber_gpus,
                keep_old_slots=options.keep_slots,
            ),
            plan.logcnt,
        )
    plan.check()
    return plan


def rebalance_experts(
    weight: torch.Tensor,
    num_replicas: int,
    num_groups: int,
    num_nodes: int,
    num_gpus: int,
    *,
    algorithm: str = "hybrid",
    seed: int = 0,
    current: torch.Tensor | None = None,
    policy: str = "auto",
    spill_slots: int = 1,
    num_candidates: int | None = None,
    num_rounds: int | None = None,
    max_moves: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DeepSeek's ``eplb.rebalance_experts``: replicate and place every layer's experts.

    Parameters:
        weight: [layers, experts], load of each logical expert (any real dtype, any device)
        num_replicas: physical slots per layer, a multiple of num_gpus
        num_groups: expert groups (the hierarchical policy keeps a group on one node)
        num_nodes: server nodes
        num_gpus: GPUs
        algorithm: "hybrid" (multi-start search) or "greedy" (DeepSeek's published plans)
        seed: seeds every random draw of the hybrid
        current: [layers, slots], the placement in use; the plan is deployed over it with the
            fewest moves at the same balance (nodes and GPUs renumbered, slots kept)
        policy: "auto" (DeepSeek's rule: hierarchical when groups split evenly over nodes,
            else global), "hierarchical", "global" or "spill" (groups stay on a home node;
            up to ``spill_slots`` slots per GPU may hold other nodes' experts:
            ``eplb_core.spill``)
        spill_slots: the spill policy's slots per GPU for other nodes' experts, 0 .. slots
            per GPU (0 gives the hierarchical plan)
        num_candidates, num_rounds: the hybrid's search size; None picks the defaults of
            ``eplb_core.packing`` (128 candidates on CUDA, 2 on a CPU; rounds by pack count)
        max_moves: the most slots, summed over layers, whose expert may differ from
            ``current`` (from the trivial layout, slot p holding expert p mod E, when
            ``current`` is None); the plan is the most balanced the budget allows
            (``eplb_core.budget``). 0 returns ``current``; None: no budget

    Returns:
        phy2log: [layers, num_replicas], the logical expert in each slot
        log2phy: [layers, experts, max replicas], each expert's slots, padded with -1
        logcnt: [layers, experts], the number of replicas of each expert
    """
    options = PlanOptions(
        algorithm=algorithm,
        seed=seed,
        policy=policy,
        keep_slots=current is not None,
        renumber_gpus=current is not None,
        num_candidates=num_candidates,
        num_rounds=num_rounds,
        spill_slots=spill_slots,
        max_moves=max_moves,
    )
    plan = make_plan(
        weight, Cluster(num_replicas, num_groups, num_nodes, num_gpus), options, current
    )
    return plan.phy2log, plan.log2phy, plan.logcnt


def mean_over_active(values: torch.Tensor, idle_layers: Sequence[int]) -> float:
    """The mean of per-layer ``values`` [layers] over the layers not in ``idle_layers``."""
    active = torch.ones(len(values), dtype=torch.bool, device=values.device)
    active[list(idle_layers)] = False
    return float(values[active].mean())


@dataclass(frozen=True)
class Rebalance:
    """A plan and every figure shown with it."""

    cluster: Cluster
    options: PlanOptions
    policy: str  # the policy used ("auto" resolved)
    num_steps: int | None  # steps of a time series summed into the loads planned
    plan: Plan
    baseline: str  # "current" (the placement in use) or "trivial" (slot p holds expert p mod E)
    placement_before: torch.Tensor  # [layers, slots], the baseline's phy2log
    before: Scores
    after: Scores
    moves: Moves
    migration: MigrationCost  # the bytes the moves copy, and the time given a bandwidth
    speedup: float  # expected MoE speed-up from before to after (``metrics.moe_speedup``)
    bound: torch.Tensor  # [layers], no plan under the policy is more balanced
    idle_layers: list[int]  # layers without load: planned, left out of the summary figures
    elapsed_ms: float  # planning and deploying
    notes: list[str] = field(default_factory=list)

    @property
    def mean_bound(self) -> float:
        """The bound's mean over the layers with load, as the mean balancedness is taken."""
        return mean_over_active(self.bound, self.idle_layers)

    def as_dict(self, *, log2phy: bool = True, tensors: bool = False) -> dict[str, Any]:
        """The JSON document of ``POST /rebalance`` and ``eplb rebalance --json``; without
        ``log2phy`` (which the others derive from ``phy2log``) where a page needs none; with
        ``tensors``, its arrays stay tensors for a serializer that writes them directly."""
        out = _writer(tensors)
        return {
            "params": {
                **asdict(self.cluster),
                "seed": self.options.seed,
                "keep_slots": self.options.keep_slots,
                "renumber_gpus": self.options.renumber_gpus,
                "algorithm": self.options.algorithm,
                "policy": self.options.policy,
                "spill_slots": self.options.spill_slots,
                "max_moves": self.options.max_moves,
            },
            "num_layers": self.plan.phy2log.shape[0],
            "num_experts": self.plan.logcnt.shape[1],
            "num_steps": self.num_steps,
            "plan": {
                "phy2log": out(self.plan.phy2log),
                **({"log2phy": out(self.plan.log2phy)} if log2phy else {}),
                "logcnt": out(self.plan.logcnt),
                "policy": self.policy,
                "algorithm": self.options.algorithm,
            },
            "baseline": self.baseline,
            "before": scores_dict(self.before, tensors),
            "after": scores_dict(self.after, tensors),
            "moves": {"per_layer": out(self.moves.per_layer), "total": self.moves.total},
            "migration": self.migration.as_dict(),
            "speedup": self.speedup,
            "bound": out(self.bound),
            "idle_layers": self.idle_layers,
            "notes": self.notes,
            "elapsed_ms": self.elapsed_ms,
            "device": str(self.plan.phy2log.device),
        }


def scores_dict(scores: Scores, tensors: bool = False) -> dict[str, Any]:
    """A placement's figures as JSON values (arrays as tensors with ``tensors``)."""
    out = _writer(tensors)
    return {
        "gpu_load": out(scores.gpu_load),
        "node_load": None if scores.node_load is None else out(scores.node_load),
        "balancedness": out(scores.balancedness),
        "mean_balancedness": scores.mean_balancedness,
        "worst_max_over_mean": scores.worst_max_over_mean,
        "nodes_per_token": None if scores.nodes_per_token is None else out(scores.nodes_per_token),
        "mean_nodes_per_token": scores.mean_nodes_per_token,
    }


def _writer(tensors: bool) -> Callable[[torch.Tensor], Any]:
    """How ``as_dict`` writes an array: a nested list, or the tensor itself on the CPU."""
    return (lambda array: array.cpu()) if tensors else (lambda array: array.tolist())


def sum_steps(loads: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """A time series [steps, layers, experts] summed over its steps (in float64), and its
    number of steps; one window [layers, experts] as it is, and None."""
    if not isinstance(loads, torch.Tensor) or loads.dim() not in (2, 3):
        shape = list(loads.shape) if isinstance(loads, torch.Tensor) else type(loads).__name__
        raise LoadError(f"loads are [layers, experts] or [steps, layers, experts], got {shape}")
    if loads.dim() == 3:
        return loads.sum(0, dtype=torch.float64), loads.shape[0]
    return loads, None


def rebalance(
    loads: torch.Tensor,
    cluster: Cluster,
    options: PlanOptions = PlanOptions(),
    current: torch.Tensor | None = None,
    notes: Sequence[str] = (),
    *,
    expert_bytes: int = DEEPSEEK_V3_EXPERT_BYTES,
    link_gb_per_s: float | None = None,
    limits: Limits | None = None,
) -> Rebalance:
    """Plan ``loads`` (one window [layers, experts], or a series [steps, layers, experts] planned
    on the sum of its steps) and score the plan against the placement it replaces: ``current``
    (phy2log [layers, slots]) or the trivial layout. ``notes``: what the caller knows about the
    loads (from reading their file), shown first. ``expert_bytes`` and ``link_gb_per_s``: what
    one expert's weights weigh in a layer, and each GPU's link, for the migration's cost.
    ``limits``: the sizes, work and memory a caller (the service) allows, checked before any
    work (``cost.check_cost``)."""
    weight, num_steps = sum_steps(loads)
    num_layers, num_experts = weight.shape
    policy = check_request(weight, cluster, options, current)
    check_copy_options(expert_bytes, link_gb_per_s)
    device = weight.device
    if limits is not None:
        check_size(loads.shape, cluster, limits)
        check_cost(rebalance_cost(weight, cluster, policy, options, device=device), limits)
    before = (
        trivial_placement(num_layers, num_experts, cluster.num_replicas, device)
        if current is None
        else current.to(device, torch.int64)
    )
    started = time.perf_counter()
    plan = plan_checked(weight, cluster, options, policy, before)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed_ms = (time.perf_counter() - started) * 1000
    exact = weight.double()
    idle = (~active_layers(exact)).nonzero().flatten().tolist()
    picks = routing(exact, cluster) if routable(num_experts, cluster) else None
    scores_before = score(exact, before, cluster, picks=picks)
    scores_after = score(exact, plan.phy2log, cluster, plan.logcnt, picks=picks)
    return Rebalance(
        cluster=cluster,
        options=options,
        policy=policy,
        num_steps=num_steps,
        plan=plan,
        baseline="trivial" if current is None else "current",
        placement_before=before,
        before=scores_before,
        after=scores_after,
        moves=count_moves(before, plan.phy2log),
        migration=migration_cost(
            before,
            plan.phy2log,
            cluster.num_gpus,
            expert_bytes=expert_bytes,
            link_gb_per_s=link_gb_per_s,
        ),
        speedup=moe_speedup(scores_before, scores_after, exact),
        bound=balancedness_bound(exact, cluster, policy),
        idle_layers=idle,
        elapsed_ms=elapsed_ms,
        notes=[*notes, *plan_notes(cluster, idle, num_layers)],
    )


@dataclass(frozen=True)
class Evaluation:
    """A placement in use scored on loads, without planning; optionally beside a second one."""

    cluster: Cluster
    policy: str  # the policy whose bound is shown ("auto" resolved)
    num_steps: int | None
    placement: Scores
    compare: Scores | None  # the second placement's figures
    moves: Moves | None  # slots whose expert differs between the two
    speedup: float | None  # expected MoE speed-up of ``placement`` over ``compare``
    bound: torch.Tensor  # [layers]
    idle_layers: list[int]
    elapsed_ms: float
    device: str
    notes: list[str] = field(default_factory=list)

    @property
    def mean_bound(self) -> float:
        """The bound's mean over the layers with load, as the mean balancedness is taken."""
        return mean_over_active(self.bound, self.idle_layers)

    def as_dict(self, *, tensors: bool = False) -> dict[str, Any]:
        """The JSON document of ``POST /evaluate`` and ``eplb evaluate --json`` (arrays as
        tensors with ``tensors``)."""
        out = _writer(tensors)
        num_layers, _ = self.placement.gpu_load.shape
        return {
            "params": {**asdict(self.cluster), "policy": self.policy},
            "num_layers": num_layers,
            "num_steps": self.num_steps,
            "mean_balancedness": self.placement.mean_balancedness,
            "worst_max_over_mean": self.placement.worst_max_over_mean,
            "placement": scores_dict(self.placement, tensors),
            "compare": None if self.compare is None else scores_dict(self.compare, tensors),
            "moves": None
            if self.moves is None
            else {"per_layer": out(self.moves.per_layer), "total": self.moves.total},
            "speedup": self.speedup,
            "bound": out(self.bound),
            "idle_layers": self.idle_layers,
            "notes": self.notes,
            "elapsed_ms": self.elapsed_ms,
            "device": self.device,
        }


def evaluate(
    loads: torch.Tensor,
    cluster: Cluster,
    placement: torch.Tensor,
    compare: torch.Tensor | None = None,
    policy: str = "auto",
    notes: Sequence[str] = (),
    limits: Limits | None = None,
) -> Evaluation:
    """Score ``placement`` (phy2log [layers, slots]) on ``loads`` (one window [layers,
    experts], or a series summed over its steps), and ``compare`` beside it: the same figures
    as ``rebalance`` gives a plan, the moves between the two, and the speed-up of the MoE part
    of a step from ``compare`` to ``placement``."""
    started = time.perf_counter()
    weight, num_steps = sum_steps(loads)
    validate_weight(weight)
    num_layers, num_experts = weight.shape
    policy = cluster.check(num_experts, policy)
    if limits is not None:
        check_size(loads.shape, cluster, limits)
    exact = weight.double()
    device = weight.device
    picks = routing(exact, cluster) if routable(num_experts, cluster) else None
    scored = []
    for phy2log in (placement, compare):
        if phy2log is not None:
            validate_placement(phy2log, num_layers, num_experts, cluster.num_replicas)
            scored.append(score(exact, phy2log.to(device, torch.int64), cluster, picks=picks))
    idle = (~active_layers(exact)).nonzero().flatten().tolist()
    second = scored[1] if compare is not None else None
    return Evaluation(
        cluster=cluster,
        policy=policy,
        num_steps=num_steps,
        placement=scored[0],
        compare=second,
        moves=None
        if compare is None
        else count_moves(compare.to(device, torch.int64), placement.to(device, torch.int64)),
        speedup=None if second is None else moe_speedup(second, scored[0], exact),
        bound=balancedness_bound(exact, cluster, policy),
        idle_layers=idle,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        device=str(device),
        notes=[*notes, *plan_notes(cluster, idle, num_layers)],
    )


def plan_notes(cluster: Cluster, idle_layers: list[int], num_layers: int) -> list[str]:
    """What a user should know about the figures: layers left out of the means, and per-node
    figures that do not exist."""
    notes = []
    if idle_layers and len(idle_layers) < num_layers:
        listed = ", ".join(map(str, idle_layers[:8])) + (", ..." if len(idle_layers) > 8 else "")
        which = "layer" if len(idle_layers) == 1 else "layers"
        carry = "carries" if len(idle_layers) == 1 else "carry"
        notes.append(
            f"{len(idle_layers)} of {num_layers} layers {carry} no load ({which} "
            f"{listed}; dense layers in an engine's dump): planned, and left out of "
            f"the mean balancedness and the worst max/mean"
        )
    if not cluster.has_nodes:
        notes.append(
            f"no per-node figures: {cluster.num_gpus} GPUs do not split evenly over "
            f"{cluster.num_nodes} nodes (the global policy does not need them to)"
        )
    return notes
