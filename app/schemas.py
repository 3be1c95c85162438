"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from eplb_core.io import FLOAT32_MAX

Count = Annotated[int, Field(gt=0, le=2**31 - 1)]
Load = Annotated[float, Field(ge=0, le=FLOAT32_MAX, allow_inf_nan=False,
                              description="token count of one expert in one layer")]


class RebalanceParams(BaseModel):
    """The cluster shape and how to search for a plan."""

    num_replicas: Count = Field(description="physical expert slots per layer (all GPUs)")
    num_groups: Count = Field(description="expert groups; the hierarchical policy keeps a "
                                          "group on one node")
    num_nodes: Count = Field(description="server nodes")
    num_gpus: Count = Field(description="GPUs, a multiple of num_nodes")
    algorithm: Literal["hybrid", "greedy"] = Field(
        "hybrid", description='"hybrid" searches for better plans; "greedy" gives the '
                              "published DeepSeek EPLB plans")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds the hybrid's random draws")


class RebalanceRequest(RebalanceParams):
    """``POST /rebalance``: the parameters and the load matrix."""

    weight: list[Annotated[list[Load], Field(min_length=1)]] = Field(
        min_length=1, description="[layers][experts] token counts")

    @model_validator(mode="after")
    def _rectangular(self) -> RebalanceRequest:
        width = len(self.weight[0])
        for layer, row in enumerate(self.weight):
            if len(row) != width:
                raise ValueError(f"weight rows must have the same length: row {layer} has "
                                 f"{len(row)} {_values(len(row))}, row 0 has {width}")
        return self

    def params(self) -> RebalanceParams:
        """The parameters without the matrix."""
        return RebalanceParams(**self.model_dump(exclude={"weight"}))


def _values(count: int) -> str:
    return "value" if count == 1 else "values"


class Plan(BaseModel):
    """Where every expert's replicas go."""

    phy2log: list[list[int]] = Field(description="[layers][slots]: the expert in each slot")
    log2phy: list[list[list[int]]] = Field(
        description="[layers][experts][max replicas]: each expert's slots, padded with -1")
    logcnt: list[list[int]] = Field(description="[layers][experts]: replicas of each expert")
    policy: Literal["hierarchical", "global"]
    algorithm: Literal["hybrid", "greedy"]


class LoadReport(BaseModel):
    """How a placement spreads the load."""

    gpu_load: list[list[float]] = Field(description="[layers][gpus]")
    node_load: list[list[float]] = Field(description="[layers][nodes]")
    balancedness: list[float] = Field(description="per layer: mean GPU load / max GPU load")
    mean_balancedness: float = Field(description="balancedness averaged over layers")
    worst_max_over_mean: float = Field(description="the largest max/mean GPU load of a layer")


class RebalanceResponse(BaseModel):
    """A plan, its effect, and what was asked."""

    params: RebalanceParams
    num_layers: int
    num_experts: int
    plan: Plan
    before: LoadReport = Field(description="the unbalanced layout: slot p holds expert p mod E")
    after: LoadReport = Field(description="the plan")
    bound: list[float] = Field(description="per layer: no plan is more balanced than this")
    elapsed_ms: float = Field(description="time spent planning, in milliseconds")
    device: str = Field(description="the torch device the plan was computed on")


class ErrorResponse(BaseModel):
    """Every error the service itself reports."""

    detail: str


class ValidationErrorResponse(BaseModel):
    """422: an error of ours, or FastAPI's list of fields that failed validation."""

    detail: str | list[dict[str, object]]
