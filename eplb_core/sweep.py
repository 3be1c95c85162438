"""The deployment advisor's sweeps: how many redundant slots, and how often to rebalance.

Each point of a sweep is the pipeline's own figures for one choice, so a point equals what
``plan.rebalance`` and ``replay.replay`` answer for the same parameters:

- ``mean_balancedness``: the plan of the whole loads (a series summed over its steps) on them,
  ``rebalance(...).after.mean_balancedness``;
- ``bound``: the policy's bound, mean over the layers with load;
- ``next_window`` (a time series only): the replay's mean next-window balancedness, each
  window planned and scored on the one after it;
- the costs: the extra expert memory each GPU holds for its redundant slots, and for a series
  the expert copies (and bytes) a rebalance every ``window`` steps moves per 1,000 steps.

Points are the product of the policies, the slot counts and the windows asked, in the order
asked (policies outer, windows inner), so a page can draw balance against slots, against
moves, or against the traffic each policy costs (``mean_nodes_per_token``). Every point is
checked before any is planned, so a sweep is refused as a whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from .cluster import DEEPSEEK_V3_EXPERT_BYTES, POLICIES, Cluster
from .cost import Cost, check_cost, check_size, rebalance_cost, replay_cost
from .errors import ClusterShapeError, OptionError
from .limits import Limits
from .metrics import Scores, active_layers, balancedness_bound, routable, score
from .plan import PlanOptions, plan_checked, sum_steps
from .policy import validate_weight
from .replay import GIB, ROWS_PER_CALL, replay, trim_idle_steps, window_loads
from .traffic import routing

DEFAULT_EXTRA_SLOTS_PER_GPU = (0, 1, 2, 4, 8)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SweepPoint:
    """The figures of one choice of slots (and rebalance window)."""

    policy: str  # as asked ("auto" stays "auto")
    spill_slots: int
    num_replicas: int
    window: int | None  # steps between rebalances; None when no replay was asked
    slots_per_gpu: int
    extra_slots_per_gpu: float  # (slots - experts) / GPUs
    extra_memory_per_gpu_bytes: int  # expert_bytes x layers x extra slots per GPU
    mean_balancedness: float  # in-sample, the plan of the whole loads on them
    mean_nodes_per_token: float | None  # the plan's traffic on the whole loads
    bound: float  # mean over the layers with load
    next_window: float | None  # the replay's mean next-window balancedness
    moves_per_1000_steps: float | None
    gib_per_1000_steps: float | None  # moves x expert_bytes, per 1,000 steps


@dataclass(frozen=True)
class Sweep:
    """A sweep's points, in the order asked."""

    cluster: Cluster  # the groups, nodes and GPUs (its slot count is not used)
    options: PlanOptions
    policies: list[tuple[str, int]]  # (policy, spill_slots), in the order asked
    replicas: list[int]  # the slot counts, in the order asked
    windows: list[int] | None  # the replay windows, in the order asked
    num_layers: int
    num_experts: int
    num_steps: int | None
    expert_bytes: int
    points: list[SweepPoint]
    elapsed_ms: float
    device: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of ``POST /sweep`` and ``eplb sweep --json``."""
        cluster = asdict(self.cluster)
        del cluster["num_replicas"]
        return {
            "params": {
                **cluster,
                "num_replicas": self.replicas,
                "windows": self.windows,
                "policies": [
                    {"policy": policy, "spill_slots": spill} for policy, spill in self.policies
                ],
                "algorithm": self.options.algorithm,
                "seed": self.options.seed,
                "expert_bytes": self.expert_bytes,
            },
            "num_layers": self.num_layers,
            "num_experts": self.num_experts,
            "num_steps": self.num_steps,
            "points": [asdict(point) for point in self.points],
            "notes": self.notes,
            "elapsed_ms": self.elapsed_ms,
            "device": self.device,
        }


def policy_choice(text: str, spill_slots: int) -> tuple[str, int]:
    """A policy as a sweep names it, and its spill slots: ``"spill:2"`` -> ("spill", 2); a name
    alone takes ``spill_slots`` (the options' own)."""
    name, _, slots = text.partition(":")
    if name not in POLICIES or (slots and not slots.isdigit()):
        raise OptionError(
            f"expected POLICY[:SPILL_SLOTS] with POLICY one of {', '.join(POLICIES)}, got {text!r}"
        )
    return name, int(slots) if slots else spill_slots


def default_replicas(num_experts: int, num_gpus: int, max_replicas: int | None = None) -> list[int]:
    """Slot counts worth comparing: the fewest that hold every expert (rounded up to whole
    GPUs) plus 0, 1, 2, 4, 8 slots per GPU, up to ``max_replicas``."""
    base = -(-num_experts // num_gpus) * num_gpus
    counts = [base + extra * num_gpus for extra in DEFAULT_EXTRA_SLOTS_PER_GPU]
    return [count for count in counts if max_replicas is None or count <= max_replicas] or [base]


def sweep(
    loads: torch.Tensor,
    cluster: Cluster,
    options: PlanOptions = PlanOptions(),
    *,
    num_replicas: Sequence[int] | None = None,
    windows: Sequence[int] | None = None,
    policies: Sequence[tuple[str, int]] | None = None,
    expert_bytes: int = DEEPSEEK_V3_EXPERT_BYTES,
    progress: Progress | None = None,
    notes: Sequence[str] = (),
    limits: Limits | None = None,
) -> Sweep:
    """Plan ``loads`` for each policy and slot count (and replay a series for each window).

    Parameters:
        loads: [layers, experts], or a series [steps, layers, experts]
        cluster: the groups, nodes and GPUs (its slot count is not used)
        options: as for ``plan.rebalance``
        num_replicas: the slot counts to compare (default ``default_replicas``)
        policies: (policy, spill_slots) pairs to compare (default: the options' own)
        windows: steps per window of the replays (a series only); None: no replay
        expert_bytes: one expert's weights in one layer, for the memory and traffic figures
        progress: called with (plans made, plans to make); it may raise
            ``errors.CancelledError`` to stop the sweep
        limits: the points, sizes, windows, work and memory a caller (the service) allows,
            checked before any plan (``check_sweep``)
    """
    started = time.perf_counter()
    weight, num_steps = sum_steps(loads)  # once: a series' sum is a pass over every step
    num_layers, num_experts = weight.shape
    choices = list(policies or [(options.policy, options.spill_slots)])
    clusters, steps_with_load = check_sweep(
        loads,
        cluster,
        options,
        num_replicas=num_replicas,
        windows=windows,
        policies=choices,
        expert_bytes=expert_bytes,
        limits=limits,
        weight=weight,
    )
    counts = [each.num_replicas for each in clusters]
    replays = list(windows) if windows else [None]
    total = (
        len(choices)
        * len(clusters)
        * (1 + sum(_windows_planned(steps_with_load, w) for w in replays))
    )
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    points = []
    exact = weight.double()
    active = active_layers(exact)
    # The tokens' group choices depend on the loads and the groups only: the same for every point.
    picks = routing(exact, cluster) if routable(num_experts, cluster) else None
    for policy, spill_slots in choices:
        chosen = replace(options, policy=policy, spill_slots=spill_slots)
        for each in clusters:
            # The figures ``rebalance`` gives the plan ("after" and the bound), with the same
            # functions; none of the "before" figures a sweep does not show.
            resolved = each.check(num_experts, policy)  # checked before: resolves "auto"
            plan = plan_checked(weight, each, chosen, resolved)
            scores = score(exact, plan.phy2log, each, plan.logcnt, picks=picks)
            bound = balancedness_bound(exact, each, resolved)
            advance(1)
            for window in replays:
                replayed = None if window is None else _replay(loads, window, each, chosen, advance)
                points.append(
                    _point(
                        each,
                        num_experts,
                        scores,
                        chosen,
                        float(bound[active].mean()),
                        expert_bytes,
                        window,
                        replayed,
                    )
                )
    return Sweep(
        cluster=cluster,
        options=options,
        policies=choices,
        replicas=counts,
        windows=None if windows is None else list(windows),
        num_layers=num_layers,
        num_experts=num_experts,
        num_steps=num_steps,
        expert_bytes=expert_bytes,
        points=points,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        device=str(loads.device),
        notes=list(notes),
    )


def check_sweep(
    loads: torch.Tensor,
    cluster: Cluster,
    options: PlanOptions,
    *,
    num_replicas: Sequence[int] | None = None,
    windows: Sequence[int] | None = None,
    policies: Sequence[tuple[str, int]] = (),
    expert_bytes: int = DEEPSEEK_V3_EXPERT_BYTES,
    limits: Limits | None = None,
    weight: torch.Tensor | None = None,
) -> tuple[list[Cluster], int | None]:
    """Every check of a sweep, before any plan: the cluster of each slot count under each
    policy, the steps with load of a series that every window can replay (None without
    windows), and, given ``limits``, the points, sizes, windows, work and memory of the whole
    sweep. ``weight``: the loads summed over their steps, when the caller has it already."""
    if weight is None:
        weight, _ = sum_steps(loads)
    validate_weight(weight)
    if isinstance(expert_bytes, bool) or not isinstance(expert_bytes, int) or expert_bytes < 0:
        raise OptionError(
            f"expert_bytes must be a whole number of bytes >= 0, got {expert_bytes!r}"
        )
    num_experts = weight.shape[1]
    counts = list(
        default_replicas(num_experts, cluster.num_gpus) if num_replicas is None else num_replicas
    )
    if not counts:
        raise OptionError("num_replicas is empty: give at least one slot count")
    clusters = [_cluster(cluster, count) for count in counts]
    for policy, spill_slots in policies or [(options.policy, options.spill_slots)]:
        replace(options, policy=policy, spill_slots=spill_slots)  # checks the option values
        for each in clusters:
            try:
                each.check(num_experts, policy, spill_slots)
            except ClusterShapeError as error:
                raise ClusterShapeError(
                    f"num_replicas {each.num_replicas}, policy {policy}: {error}"
                ) from None
    steps = None if windows is None else _check_windows(loads, windows)
    if limits is not None:
        _check_limits(
            loads, weight, clusters, options, policies or [(options.policy, 0)], windows, limits
        )
    return clusters, steps


def _check_limits(
    loads: torch.Tensor,
    weight: torch.Tensor,
    clusters: list[Cluster],
    options: PlanOptions,
    policies: Sequence[tuple[str, int]],
    windows: Sequence[int] | None,
    limits: Limits,
) -> None:
    """The sweep's points, each point's size and windows, and the whole sweep's cost (its
    plans' work adds up; its memory is that of the largest, which run one after another)."""
    num_experts = weight.shape[1]
    limits.check(
        "max_sweep_points", len(policies) * len(clusters) * len(windows or [None]), "sweep points"
    )
    replayed = (
        []
        if not windows
        else [window_loads(trim_idle_steps(loads)[0], window) for window in windows]
    )
    for window, each_windows in zip(windows or [], replayed):
        limits.check("max_windows", len(each_windows), f"windows of {window} steps")
    costs = []
    for each in clusters:
        check_size(loads.shape, each, limits)
        for policy, _ in policies:
            resolved = each.check(num_experts, policy)
            costs.append(rebalance_cost(weight, each, resolved, options, device=loads.device))
            costs += [
                replay_cost(windowed, each, resolved, options, 1, 0, ROWS_PER_CALL, loads.device)
                for windowed in replayed
            ]
    check_cost(
        Cost(sum(cost.work for cost in costs), max(cost.peak_bytes for cost in costs)), limits
    )


def _cluster(base: Cluster, num_replicas: int) -> Cluster:
    """The cluster with ``num_replicas`` slots, its refusal naming the point."""
    try:
        return Cluster(num_replicas, base.num_groups, base.num_nodes, base.num_gpus)
    except ClusterShapeError as error:
        raise ClusterShapeError(f"num_replicas {num_replicas!r}: {error}") from None


def _check_windows(loads: torch.Tensor, windows: Sequence[int]) -> int:
    """The steps with load of the series, once every window is checked to replay on it."""
    if loads.dim() != 3:
        raise OptionError(
            "windows are for a time series [steps, layers, experts]; the loads are one window"
        )
    if not windows:
        raise OptionError("windows is empty: give at least one window, or none at all")
    steps = trim_idle_steps(loads)[0].shape[0]
    for window in windows:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise OptionError(f"window {window!r}: a window is a positive number of steps")
        if steps // window < 2:
            raise OptionError(
                f"window {window}: a replay needs at least 2 windows, and the "
                f"series has {steps} steps with load"
            )
    return steps


def _windows_planned(steps: int | None, window: int | None) -> int:
    """Plans a replay of ``window`` makes: one per scored window."""
    return 0 if steps is None or window is None else steps // window - 1


def _replay(
    loads: torch.Tensor,
    window: int,
    cluster: Cluster,
    options: PlanOptions,
    advance: Callable[[int], None],
) -> tuple[float, float]:
    """The mean next-window balancedness of ``options.algorithm`` and its moves per step."""
    last = 0

    def report(done: int, _: int) -> None:
        nonlocal last
        advance(done - last)
        last = done

    result = replay(
        loads, window, cluster, options, algorithms=[options.algorithm], progress=report
    )
    figures = result.strategies[options.algorithm]
    return figures.mean_next_window, figures.total_moves / (len(figures.moves) * window)


def _point(
    cluster: Cluster,
    num_experts: int,
    scores: Scores,
    options: PlanOptions,
    bound: float,
    expert_bytes: int,
    window: int | None,
    replayed: tuple[float, float] | None,
) -> SweepPoint:
    num_layers = scores.balancedness.shape[0]
    extra = (cluster.num_replicas - num_experts) / cluster.num_gpus
    moves = None if replayed is None else replayed[1] * 1000
    return SweepPoint(
        policy=options.policy,
        spill_slots=options.spill_slots,
        num_replicas=cluster.num_replicas,
        window=window,
        slots_per_gpu=cluster.slots_per_gpu,
        extra_slots_per_gpu=extra,
        extra_memory_per_gpu_bytes=round(expert_bytes * num_layers * extra),
        mean_balancedness=scores.mean_balancedness,
        mean_nodes_per_token=scores.mean_nodes_per_token,
        bound=bound,
        next_window=None if replayed is None else replayed[0],
        moves_per_1000_steps=moves,
        gib_per_1000_steps=None if moves is None else moves * expert_bytes / GIB,
    )
