"""The one rebalancing call behind ``POST /rebalance``, ``POST /rebalance/csv`` and the dashboard.

It is CPU- (or GPU-) bound and synchronous: call it from a plain ``def`` route so that FastAPI
runs it in its thread pool, off the event loop.
"""

from __future__ import annotations

import time

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
from eplb_core.metrics import PlanReport

from .config import Settings
from .schemas import LoadReport, Plan, RebalanceParams, RebalanceResponse


def rebalance(weight: torch.Tensor, params: RebalanceParams,
              settings: Settings) -> RebalanceResponse:
    """Plan ``weight`` ([layers, experts] loads) on the cluster ``params`` describes.

    Raises ``HTTPException`` 422 with a readable message when the matrix is over the configured
    limits or the core rejects the matrix or the cluster shape.
    """
    check_limits(weight, params, settings)
    try:
        validate_weight(weight)
        validate_shape(*weight.shape, params.num_replicas, params.num_groups, params.num_nodes,
                       params.num_gpus)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None

    device = settings.torch_device
    weight = weight.to(device=device, dtype=torch.float32)
    started = time.perf_counter()
    phy2log, log2phy, logcnt = rebalance_experts(
        weight, params.num_replicas, params.num_groups, params.num_nodes, params.num_gpus,
        algorithm=params.algorithm, seed=params.seed)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed_ms = (time.perf_counter() - started) * 1000

    num_layers, num_experts = weight.shape
    before = evaluate(weight, trivial_placement(num_layers, num_experts, params.num_replicas,
                                                device=device),
                      params.num_gpus, params.num_nodes)
    after = evaluate(weight, phy2log, params.num_gpus, params.num_nodes, logcnt)
    return RebalanceResponse(
        params=params,
        num_layers=num_layers,
        num_experts=num_experts,
        plan=Plan(phy2log=phy2log.tolist(), log2phy=log2phy.tolist(), logcnt=logcnt.tolist(),
                  policy=policy_name(params.num_groups, params.num_nodes),
                  algorithm=params.algorithm),
        before=_load_report(before),
        after=_load_report(after),
        bound=balancedness_bound(weight, params.num_replicas, params.num_gpus).tolist(),
        elapsed_ms=elapsed_ms,
        device=str(device),
    )


def check_limits(weight: torch.Tensor, params: RebalanceParams, settings: Settings) -> None:
    """422 when the matrix or the slot count is over what this server is configured to plan."""
    limits = (("layers", weight.shape[0], settings.max_layers, "EPLB_MAX_LAYERS"),
              ("experts", weight.shape[-1], settings.max_experts, "EPLB_MAX_EXPERTS"),
              ("slots (num_replicas)", params.num_replicas, settings.max_replicas,
               "EPLB_MAX_REPLICAS"))
    for what, count, limit, variable in limits:
        if count > limit:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"too many {what}: {count}; this server plans at most {limit} "
                                f"({variable})")


def _load_report(report: PlanReport) -> LoadReport:
    return LoadReport(gpu_load=report.gpu_load.tolist(), node_load=report.node_load.tolist(),
                      balancedness=report.balancedness.tolist(),
                      mean_balancedness=report.mean_balancedness,
                      worst_max_over_mean=report.worst_max_over_mean)
