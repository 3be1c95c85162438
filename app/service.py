"""The calls behind the routes: plain functions over the core's pipeline, with the server's
limits and device. No HTTP here: refusals are the core's errors (``app.errors`` maps them).

They are CPU- (or GPU-) bound: the routes run them in the work pool (``app.pool``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from eplb_core import Cluster, Evaluation, PlanOptions, Rebalance, evaluate, rebalance
from eplb_core.errors import LoadError
from eplb_core.io import LoadFile
from eplb_core.replay import Replay, max_moves_of, replay
from eplb_core.sweep import Sweep, check_sweep, default_replicas, policy_choice, sweep

from .config import Settings
from .schemas import ClusterParams, PlanParams, RebalanceParams, ReplayParams, SweepParams


def cluster_of(params: PlanParams | ClusterParams) -> Cluster:
    return Cluster(params.num_replicas, params.num_groups, params.num_nodes, params.num_gpus)


def options_of(params: PlanParams, num_layers: int, algorithm: str = "hybrid") -> PlanOptions:
    """The core's options; a ``move_budget`` (a share of all slots) becomes ``max_moves``."""
    max_moves = max_moves_of(params.max_moves, params.move_budget, num_layers, params.num_replicas)
    return PlanOptions(
        algorithm=algorithm,
        seed=params.seed,
        policy=params.policy,
        spill_slots=params.spill_slots,
        keep_slots=params.keep_slots,
        renumber_gpus=params.renumber_gpus,
        max_moves=max_moves,
    )


def plan(
    loaded: LoadFile,
    params: RebalanceParams,
    settings: Settings,
    current: torch.Tensor | None = None,
) -> Rebalance:
    """Plan the loads (one window, or a series planned on the sum of its steps) on the
    cluster ``params`` describes, from ``current`` or the placement the file carries
    (``eplb_core.plan.rebalance``)."""
    loads = loaded.loads
    current, notes = loaded.in_use(current)
    device = settings.torch_device
    return rebalance(
        loads.to(device),
        cluster_of(params),
        options_of(params, loads.shape[-2], params.algorithm),
        None if current is None else current.to(device),
        notes,
        expert_bytes=params.expert_bytes,
        link_gb_per_s=params.link_gb_per_s,
        limits=settings.limits,
    )


def replay_series(
    loaded: LoadFile,
    params: ReplayParams,
    settings: Settings,
    current: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Replay:
    """Plan on each window of the series [steps, layers, experts] and score on the next, for
    "none" (the placement in use, kept), greedy and hybrid (``eplb_core.replay``)."""
    series = loaded.loads
    if series.dim() != 3:
        raise LoadError(
            f"a replay needs a time series [steps, layers, experts]; got one "
            f"window of shape {list(series.shape)} (plan it with /rebalance)"
        )
    current, notes = loaded.in_use(current)
    device = settings.torch_device
    return replay(
        series.to(device),
        params.window,
        cluster_of(params),
        options_of(params, series.shape[1]),
        current=None if current is None else current.to(device),
        progress=progress,
        budgets=params.budgets or (),
        notes=notes,
        expert_bytes=params.expert_bytes,
        limits=settings.limits,
    )


def score_placement(
    loaded: LoadFile,
    params: ClusterParams,
    settings: Settings,
    placement: torch.Tensor,
    compare: torch.Tensor | None = None,
) -> Evaluation:
    """Score a placement on the loads without planning, and ``compare`` beside it
    (``eplb_core.plan.evaluate``)."""
    device = settings.torch_device
    return evaluate(
        loaded.loads.to(device),
        cluster_of(params),
        placement.to(device),
        None if compare is None else compare.to(device),
        params.policy,
        loaded.notes,
        limits=settings.limits,
    )


def prepare_sweep(
    loaded: LoadFile, params: SweepParams, settings: Settings
) -> Callable[[Callable[[int, int], None] | None], Sweep]:
    """Every check of a sweep (``eplb_core.sweep.check_sweep`` with the server's limits on
    points, sizes, windows, work and memory), then the sweep itself to run, given a progress
    callback: a refusal comes before any plan (and before a stream starts)."""
    loads = loaded.loads.to(settings.torch_device)
    limits = settings.limits
    counts = params.num_replicas or default_replicas(
        loads.shape[-1], params.num_gpus, limits.max_replicas
    )
    policies = (
        None
        if params.policies is None
        else [policy_choice(choice, params.spill_slots) for choice in params.policies]
    )
    cluster = Cluster(counts[0], params.num_groups, params.num_nodes, params.num_gpus)
    options = PlanOptions(
        algorithm=params.algorithm,
        seed=params.seed,
        policy=params.policy,
        spill_slots=params.spill_slots,
    )
    check_sweep(
        loads,
        cluster,
        options,
        num_replicas=counts,
        windows=params.windows,
        policies=policies or (),
        expert_bytes=params.expert_bytes,
        limits=limits,
    )

    def run(progress: Callable[[int, int], None] | None) -> Sweep:
        return sweep(
            loads,
            cluster,
            options,
            num_replicas=counts,
            windows=params.windows,
            policies=policies,
            expert_bytes=params.expert_bytes,
            progress=progress,
            notes=loaded.notes,
        )

    return run
