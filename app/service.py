"""The calls behind every planning route: ``rebalance`` (``POST /rebalance``, its upload
variants and the dashboard) and ``replay_series`` (``POST /replay`` and its upload variant).

They are CPU- (or GPU-) bound and synchronous: call them from plain ``def`` routes so that
FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

import torch

from eplb_core import Cluster, PlanOptions, Rebalance
from eplb_core import rebalance as plan_and_score
from eplb_core.errors import LimitError, LoadError
from eplb_core.plan import sum_steps
from eplb_core.replay import Replay, replay

from .config import Settings
from .schemas import PlanParams, RebalanceParams, ReplayParams


def rebalance(loads: torch.Tensor, params: RebalanceParams, settings: Settings,
              current: torch.Tensor | None = None) -> Rebalance:
    """Plan ``loads`` on the cluster ``params`` describes, starting from ``current``
    (``eplb_core.plan.rebalance``).

    Raises ``LimitError`` when the matrix is over the configured limits, and the core's other
    errors for what it refuses.
    """
    weight, _ = sum_steps(loads)
    check_limits(*weight.shape, params, settings)
    device = settings.torch_device
    return plan_and_score(loads.to(device), _cluster(params), _options(params, params.algorithm),
                          None if current is None else current.to(device))


def replay_series(series: torch.Tensor, params: ReplayParams, settings: Settings,
                  current: torch.Tensor | None = None) -> Replay:
    """Plan on each window of ``series`` ``[steps, layers, experts]`` and score on the next,
    for "none" (the placement in use, kept), greedy and hybrid (``eplb_core.replay``)."""
    if series.dim() != 3:
        raise LoadError(f"a replay needs a time series [steps, layers, experts]; got one "
                        f"window of shape {list(series.shape)} (plan it with /rebalance)")
    num_steps, num_layers, num_experts = series.shape
    check_limits(num_layers, num_experts, params, settings)
    num_windows = num_steps // params.window
    if num_windows > settings.max_windows:
        raise LimitError(f"too many windows: {num_steps} steps make {num_windows} windows of "
                         f"{params.window}; this server replays at most "
                         f"{settings.max_windows} (EPLB_MAX_WINDOWS): use a larger window")
    device = settings.torch_device
    return replay(series.to(device), params.window, _cluster(params), _options(params),
                  current=None if current is None else current.to(device))


def _cluster(params: PlanParams) -> Cluster:
    return Cluster(params.num_replicas, params.num_groups, params.num_nodes, params.num_gpus)


def _options(params: PlanParams, algorithm: str = "hybrid") -> PlanOptions:
    return PlanOptions(algorithm=algorithm, seed=params.seed, policy=params.policy,
                       keep_slots=params.keep_slots, renumber_gpus=params.renumber_gpus)


def check_limits(num_layers: int, num_experts: int, params: PlanParams,
                 settings: Settings) -> None:
    """422 when the matrix or the slot count is over what this server is configured to plan."""
    limits = (("layers", num_layers, settings.max_layers, "EPLB_MAX_LAYERS"),
              ("experts", num_experts, settings.max_experts, "EPLB_MAX_EXPERTS"),
              ("slots (num_replicas)", params.num_replicas, settings.max_replicas,
               "EPLB_MAX_REPLICAS"))
    for what, count, limit, variable in limits:
        if count > limit:
            raise LimitError(f"too many {what}: {count}; this server plans at most {limit} "
                             f"({variable})")


