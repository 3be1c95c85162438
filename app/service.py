"""The calls behind every planning route: ``rebalance`` (``POST /rebalance``, its upload
variants and the dashboard) and ``replay_series`` (``POST /replay`` and its upload variant).

They are CPU- (or GPU-) bound and synchronous: call them from plain ``def`` routes so that
FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from fastapi import HTTPException, status

from eplb_core import (
    balancedness_bound,
    evaluate,
    policy_name,
    rebalance_experts,
    trivial_placement,
    validate_shape,
    validate_weight,
)
from eplb_core.io import FLOAT32_MAX
from eplb_core.metrics import PlanReport
from eplb_core.migration import (
    build_log2phy,
    count_moves,
    deploy,
    validate_placement,
)
from eplb_core.replay import replay

from .config import Settings
from .schemas import (
    LoadReport,
    Moves,
    Plan,
    PlanParams,
    RebalanceParams,
    RebalanceResponse,
    ReplayParams,
    ReplayResponse,
)


def rebalance(loads: torch.Tensor, params: RebalanceParams, settings: Settings,
              current: torch.Tensor | None = None) -> RebalanceResponse:
    """Plan ``loads`` on the cluster ``params`` describes, starting from ``current``.

    ``loads`` is one window ``[layers, experts]``, or a time series ``[steps, layers,
    experts]`` whose steps are summed into the window planned. ``current`` is the placement in
    use, phy2log ``[layers, slots]`` (default: the trivial layout); the plan is deployed over it
    as ``params.renumber_gpus`` and ``params.keep_slots`` ask, and its moves are counted.

    Raises ``HTTPException`` 422 with a readable message when the matrix is over the configured
    limits or the core rejects the matrix, the cluster shape or the placement.
    """
    weight, num_steps = sum_steps(loads)
    num_layers, num_experts = weight.shape
    check_limits(num_layers, num_experts, params, settings)
    with _unprocessable():
        validate_weight(weight)
        validate_shape(num_layers, num_experts, params.num_replicas, params.num_groups,
                       params.num_nodes, params.num_gpus)
        if float(weight.max()) > FLOAT32_MAX:
            raise ValueError(f"a load of {float(weight.max()):.4g} tokens (summed over the "
                             f"steps) is too large for a float32")
        if current is not None:
            validate_placement(current, num_layers, num_experts, params.num_replicas)

    device = settings.torch_device
    weight = weight.to(device=device, dtype=torch.float32)
    before = _before(current, num_layers, num_experts, params, device)
    started = time.perf_counter()
    with _unprocessable():  # a plan too large to hold is refused by the core
        phy2log, log2phy, logcnt = rebalance_experts(
            weight, params.num_replicas, params.num_groups, params.num_nodes, params.num_gpus,
            algorithm=params.algorithm, seed=params.seed)
    if params.renumber_gpus or params.keep_slots:
        phy2log = deploy(before, phy2log, logcnt, params.num_gpus, params.num_nodes,
                         renumber_gpus=params.renumber_gpus, keep_old_slots=params.keep_slots)
        log2phy = build_log2phy(phy2log, logcnt)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed_ms = (time.perf_counter() - started) * 1000

    moves = count_moves(before, phy2log)
    return RebalanceResponse(
        params=params,
        num_layers=num_layers,
        num_experts=num_experts,
        num_steps=num_steps,
        plan=Plan(phy2log=phy2log.tolist(), log2phy=log2phy.tolist(), logcnt=logcnt.tolist(),
                  policy=policy_name(params.num_groups, params.num_nodes),
                  algorithm=params.algorithm),
        baseline="trivial" if current is None else "current",
        before=_load_report(evaluate(weight, before, params.num_gpus, params.num_nodes)),
        after=_load_report(evaluate(weight, phy2log, params.num_gpus, params.num_nodes, logcnt)),
        moves=Moves(per_layer=moves.per_layer.tolist(), total=moves.total),
        bound=balancedness_bound(weight, params.num_replicas, params.num_gpus, params.num_groups,
                                 params.num_nodes).tolist(),
        elapsed_ms=elapsed_ms,
        device=str(device),
    )


def replay_series(series: torch.Tensor, params: ReplayParams, settings: Settings,
                  current: torch.Tensor | None = None) -> ReplayResponse:
    """Plan on each window of ``series`` ``[steps, layers, experts]`` and score on the next,
    for "none" (the placement in use, kept), greedy and hybrid (``eplb_core.replay``).

    Raises ``HTTPException`` 422 for one window instead of a series, a series over the
    configured limits, or what the core rejects (too few windows, the cluster shape, the
    placement).
    """
    if series.dim() != 3:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"a replay needs a time series [steps, layers, experts]; got one "
                            f"window of shape {list(series.shape)} (plan it with /rebalance)")
    num_steps, num_layers, num_experts = series.shape
    check_limits(num_layers, num_experts, params, settings)
    num_windows = num_steps // params.window
    if num_windows > settings.max_windows:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"too many windows: {num_steps} steps make {num_windows} windows of "
                            f"{params.window}; this server replays at most "
                            f"{settings.max_windows} (EPLB_MAX_WINDOWS): use a larger window")

    device = settings.torch_device
    started = time.perf_counter()
    with _unprocessable():
        result = replay(series.to(device), params.window, params.num_replicas, params.num_groups,
                        params.num_nodes, params.num_gpus, seed=params.seed,
                        current=None if current is None else current.to(device),
                        preserve_slots=params.keep_slots, renumber_gpus=params.renumber_gpus)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed_ms = (time.perf_counter() - started) * 1000
    return ReplayResponse(params=params, num_steps=num_steps, num_layers=num_layers,
                          num_experts=num_experts,
                          baseline="trivial" if current is None else "current",
                          elapsed_ms=elapsed_ms, device=str(device), **result.as_dict())


def sum_steps(loads: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """A time series ``[steps, layers, experts]`` summed over its steps (in float64), and its
    number of steps; one window ``[layers, experts]`` as it is, and None."""
    if loads.dim() == 3:
        return loads.double().sum(0), loads.shape[0]
    return loads, None


def check_limits(num_layers: int, num_experts: int, params: PlanParams,
                 settings: Settings) -> None:
    """422 when the matrix or the slot count is over what this server is configured to plan."""
    limits = (("layers", num_layers, settings.max_layers, "EPLB_MAX_LAYERS"),
              ("experts", num_experts, settings.max_experts, "EPLB_MAX_EXPERTS"),
              ("slots (num_replicas)", params.num_replicas, settings.max_replicas,
               "EPLB_MAX_REPLICAS"))
    for what, count, limit, variable in limits:
        if count > limit:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"too many {what}: {count}; this server plans at most {limit} "
                                f"({variable})")


def _before(current: torch.Tensor | None, num_layers: int, num_experts: int,
            params: PlanParams, device: torch.device) -> torch.Tensor:
    """The placement a plan starts from: ``current``, or the trivial layout."""
    if current is None:
        return trivial_placement(num_layers, num_experts, params.num_replicas, device=device)
    return current.to(device=device, dtype=torch.int64)


@contextmanager
def _unprocessable() -> Iterator[None]:
    """The core's ``ValueError`` raised inside becomes a 422 carrying its message."""
    try:
        yield
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


def _load_report(report: PlanReport) -> LoadReport:
    return LoadReport(gpu_load=report.gpu_load.tolist(), node_load=report.node_load.tolist(),
                      balancedness=report.balancedness.tolist(),
                      mean_balancedness=report.mean_balancedness,
                      worst_max_over_mean=report.worst_max_over_mean)
