"""Request and response bodies of the REST API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from eplb_core.cluster import DEEPSEEK_V3_EXPERT_BYTES
from eplb_core.io import FLOAT32_MAX

Count = Annotated[int, Field(gt=0, le=2**31 - 1)]
Load = Annotated[
    float,
    Field(
        ge=0,
        le=FLOAT32_MAX,
        allow_inf_nan=False,
        description="token count of one expert in one layer",
    ),
]
ExpertId = Annotated[int, Field(ge=0, le=2**31 - 1, description="a logical expert")]
Placement = Annotated[list[Annotated[list[ExpertId], Field(min_length=1)]], Field(min_length=1)]


class PlanParams(BaseModel):
    """The cluster shape, the hybrid's seed, and how to deploy a plan over the placement in use."""

    num_replicas: Count = Field(description="physical expert slots per layer (all GPUs)")
    num_groups: Count = Field(
        description="expert groups; the hierarchical policy keeps a group on one node"
    )
    num_nodes: Count = Field(description="server nodes")
    num_gpus: Count = Field(description="GPUs, a multiple of num_nodes")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds the hybrid's random draws")
    keep_slots: bool = Field(
        False,
        description="re-order the plan within each GPU so that "
        "experts already on a GPU keep their slots: "
        "fewer moves, the same loads",
    )
    renumber_gpus: bool = Field(
        False,
        description="renumber nodes, and GPUs within a node, to "
        "keep the most experts where they are: fewer "
        "moves, the same balancedness",
    )
    policy: Literal["auto", "hierarchical", "global", "spill"] = Field(
        "auto",
        description='"auto": hierarchical when groups split evenly over nodes, else '
        'global (DeepSeek\'s rule); "hierarchical" or "global" explicitly; '
        '"spill": hierarchical, plus up to spill_slots slots per GPU for '
        "other nodes' experts where they buy balance",
    )
    spill_slots: int = Field(
        1,
        ge=0,
        le=2**31 - 1,
        description="the spill policy's slots per GPU for other nodes' "
        "experts (at most the slots per GPU)",
    )
    max_moves: int | None = Field(
        None,
        ge=0,
        le=2**62,
        description="the most slots (over all layers) whose expert "
        "may change from the placement in use: the "
        "plan is as balanced as that budget allows",
    )
    move_budget: float | None = Field(
        None,
        ge=0,
        le=1,
        description="the same budget as a share of all slots "
        "(layers x num_replicas); give one of the two",
    )
    expert_bytes: int = Field(
        DEEPSEEK_V3_EXPERT_BYTES,
        gt=0,
        le=2**50,
        description="one expert's weights in one layer, for the bytes "
        "a migration copies (default DeepSeek-V3 FP8)",
    )
    link_gb_per_s: float | None = Field(
        None,
        gt=0,
        le=1e6,
        description="each GPU's link bandwidth in GB/s: with it, the time the migration takes",
    )


class RebalanceParams(PlanParams):
    """The cluster shape and how to search for a plan."""

    algorithm: Literal["hybrid", "greedy"] = Field(
        "hybrid",
        description='"hybrid" searches for better plans; "greedy" gives the '
        "published DeepSeek EPLB plans",
    )


def _budget(value: object) -> object:
    """A budget as a form sends it: "" / "none" / "full" (the full plan), else a number."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "null", "full"):
            return None
        return int(text) if text.isdigit() else float(text)
    return value


Budget = Annotated[
    float | int | None,
    BeforeValidator(_budget),
    Field(
        description="a move budget per rebalance: a share of all slots (a number in 0..1 with a "
        "point, e.g. 0.1), a number of slots (a whole number, e.g. 500), or null for "
        "the full plan, deployed"
    ),
]


class ReplayParams(PlanParams):
    """The cluster shape and the window a series is cut into."""

    window: Count = Field(
        description="steps per window: each window's plan is scored on it and on the next one"
    )
    budgets: list[Budget] | None = Field(
        None,
        max_length=16,
        description="move budgets to replay each algorithm under too, "
        "each window planned from the placement deployed "
        "before it: the frontier of balance against moves",
    )


# DeepSeek's EPLB README example: what /docs offers to try.
README_EXAMPLE: dict[str, JsonValue] = {
    "weight": [
        [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
        [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
    ],
    "num_replicas": 16,
    "num_groups": 4,
    "num_nodes": 2,
    "num_gpus": 8,
    "algorithm": "greedy",
}


class RebalanceRequest(RebalanceParams):
    """``POST /rebalance``: the parameters, the load matrix and the placement in use."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [README_EXAMPLE]})

    weight: list[Annotated[list[Load], Field(min_length=1)]] = Field(
        min_length=1,
        description="[layers][experts] token counts (one window; post a time "
        "series to /replay, or upload it to plan on its sum)",
    )
    current: Placement | None = Field(
        None,
        description="[layers][slots]: the placement in use (phy2log); default the "
        "trivial layout, slot p holds expert p mod E",
    )

    @field_validator("weight", mode="before")
    @classmethod
    def _one_window(cls, weight: object) -> object:
        if _depth(weight) > 2:
            raise ValueError(
                "weight is one window [layers][experts], got a deeper array: post "
                "a time series [steps][layers][experts] to /replay, or upload it "
                "to /rebalance/upload to plan on the sum of its steps"
            )
        return weight

    @model_validator(mode="after")
    def _rectangular(self) -> RebalanceRequest:
        _check_rectangular("weight", self.weight)
        _check_rectangular("current", self.current)
        return self

    def params(self) -> RebalanceParams:
        """The parameters without the matrix and the placement."""
        return RebalanceParams(**self.model_dump(exclude={"weight", "current"}))


class ReplayRequest(ReplayParams):
    """``POST /replay``: the parameters, the load time series and the placement in use."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "series": [[[8, 4, 3, 1]], [[1, 8, 4, 3]], [[4, 4, 4, 4]], [[2, 2, 6, 2]]],
                    "window": 1,
                    "num_replicas": 4,
                    "num_groups": 1,
                    "num_nodes": 1,
                    "num_gpus": 2,
                }
            ]
        },
    )

    series: list[
        Annotated[list[Annotated[list[Load], Field(min_length=1)]], Field(min_length=1)]
    ] = Field(min_length=1, description="[steps][layers][experts] token counts per step")
    current: Placement | None = Field(
        None,
        description="[layers][slots]: the placement in use before the first window "
        "(phy2log); default the trivial layout",
    )

    @model_validator(mode="after")
    def _rectangular(self) -> ReplayRequest:
        _check_series(self.series)
        _check_rectangular("current", self.current)
        return self

    def params(self) -> ReplayParams:
        """The parameters without the series and the placement."""
        return ReplayParams(**self.model_dump(exclude={"series", "current"}))


class PlacementBody(BaseModel):
    """A placement to export: ``phy2log`` [layers][slots]."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"phy2log": [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1]]}]
        },
    )

    phy2log: Placement

    @model_validator(mode="after")
    def _rectangular(self) -> PlacementBody:
        _check_rectangular("phy2log", self.phy2log)
        return self


def _values(count: int) -> str:
    return "value" if count == 1 else "values"


def _depth(value: object) -> int:
    """How deep the first elements of nested lists go: 1 for [1], 3 for [[[1]]]."""
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth


def _check_series(series: Sequence[Sequence[Sequence[object]]]) -> None:
    """``ValueError`` unless every step has the layers, and every layer the experts, of the
    first."""
    num_layers, num_experts = len(series[0]), len(series[0][0])
    for step, matrix in enumerate(series):
        if len(matrix) != num_layers:
            raise ValueError(
                f"every step of series needs the same layers: step {step} has "
                f"{len(matrix)}, step 0 has {num_layers}"
            )
        for layer, row in enumerate(matrix):
            if len(row) != num_experts:
                raise ValueError(
                    f"every layer of series needs the same experts: step "
                    f"{step}, layer {layer} has {len(row)}, step 0, layer 0 "
                    f"has {num_experts}"
                )


def _check_rectangular(name: str, rows: Sequence[Sequence[object]] | None) -> None:
    """``ValueError`` unless every row has the length of row 0."""
    if not rows:
        return
    width = len(rows[0])
    for index, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(
                f"{name} rows must have the same length: row {index} has "
                f"{len(row)} {_values(len(row))}, row 0 has {width}"
            )


class Plan(BaseModel):
    """Where every expert's replicas go."""

    phy2log: list[list[int]] = Field(description="[layers][slots]: the expert in each slot")
    log2phy: list[list[list[int]]] | None = Field(
        None,
        description="[layers][experts][max replicas]: each expert's slots, padded with "
        "-1 (left out of the dashboard's answers)",
    )
    logcnt: list[list[int]] = Field(description="[layers][experts]: replicas of each expert")
    policy: Literal["hierarchical", "global", "spill"]
    algorithm: Literal["hybrid", "greedy"]


class LoadReport(BaseModel):
    """How a placement spreads the load."""

    gpu_load: list[list[float]] = Field(description="[layers][gpus]")
    node_load: list[list[float]] | None = Field(
        description="[layers][nodes]; null when the GPUs do not split evenly over the nodes "
        "(the notes say so)"
    )
    balancedness: list[float] = Field(description="per layer: mean GPU load / max GPU load")
    mean_balancedness: float = Field(description="balancedness averaged over the layers with load")
    worst_max_over_mean: float = Field(description="the largest max/mean GPU load of a layer")
    nodes_per_token: list[float] | None = Field(
        description="per layer: the expected nodes a token reaches under group-limited routing "
        "(4 of the groups, then 8 experts, by load); null where the nodes or the "
        "groups do not split evenly"
    )
    mean_nodes_per_token: float | None = Field(description="its mean over the layers with load")


Baseline = Literal["current", "trivial"]
BASELINE_DESCRIPTION = (
    'what "before" and the moves start from: "current", the placement '
    'given, or "trivial", slot p holds expert p mod E'
)


class Moves(BaseModel):
    """Slots whose expert changes from the placement before: expert weight copies to move."""

    per_layer: list[int] = Field(description="[layers]")
    total: int


class RebalanceResponse(BaseModel):
    """A plan, its effect, and what was asked."""

    params: RebalanceParams
    num_layers: int
    num_experts: int
    num_steps: int | None = Field(
        description="the steps of an uploaded time series, summed "
        "into the matrix planned; null for one window"
    )
    plan: Plan
    baseline: Baseline = Field(description=BASELINE_DESCRIPTION)
    before: LoadReport = Field(
        description="the placement before: the one in use, or the trivial layout"
    )
    after: LoadReport = Field(description="the plan")
    moves: Moves = Field(description="slots whose expert the plan changes")
    migration: Migration = Field(description="the bytes those moves copy, and the time")
    speedup: float = Field(
        description="expected speed-up of the MoE part of a step, from "
        "before to the plan: a layer waits for its busiest GPU, "
        "so the sum over layers of the max GPU load, before / "
        "after"
    )
    bound: list[float] = Field(description="per layer: no plan is more balanced than this")
    idle_layers: list[int] = Field(
        description="layers without load (dense layers in an "
        "engine's dump): planned, and left out of the "
        "summary figures"
    )
    notes: list[str] = Field(description="what to know about these figures, in words")
    elapsed_ms: float = Field(description="time spent planning, in milliseconds")
    device: str = Field(description="the torch device the plan was computed on")


class StrategyFigures(BaseModel):
    """One strategy's replay, one entry per scored window (every window but the last)."""

    in_sample: list[float] = Field(
        description="mean balancedness over layers of the plan on the window it was planned on"
    )
    next_window: list[float] = Field(
        description="the same plan on the next window: the honest score"
    )
    moves: list[int] = Field(
        description="slots whose expert changed from the placement deployed before"
    )
    mean_in_sample: float
    mean_next_window: float
    total_moves: int
    moves_per_window: float
    gib_per_window: float = Field(description="moves_per_window x expert_bytes, in GiB")


class BudgetFigures(StrategyFigures):
    """One algorithm replayed under one move budget per rebalance: a point of the frontier."""

    algorithm: Literal["greedy", "hybrid"]
    budget: float | int | None = Field(description="as asked")
    max_moves: int | None = Field(description="the budget in slots; null for the full plan")


class Migration(BaseModel):
    """What the moves copy: every slot whose expert changes receives that expert's weights."""

    moves: int
    expert_bytes: int
    total_bytes: int
    max_gpu_bytes: int = Field(description="the most any one GPU receives: the critical path")
    busiest_gpu: int
    link_gb_per_s: float | None
    seconds: float | None = Field(
        description="max_gpu_bytes / link bandwidth; null without a bandwidth"
    )


class ReplayResponse(BaseModel):
    """Each window's plan scored on its own window and on the next, per strategy."""

    params: ReplayParams
    num_steps: int
    num_layers: int
    num_experts: int
    window: int = Field(description="steps per window")
    num_windows: int = Field(description="full windows; all but the last are scored")
    dropped_steps: int = Field(description="trailing steps that do not fill a window")
    idle_steps: dict[Literal["leading", "trailing"], int] = Field(
        description="steps without load at either end, left out before windowing"
    )
    notes: list[str] = Field(description="what to know about these figures, in words")
    baseline: Baseline = Field(description=BASELINE_DESCRIPTION)
    strategies: dict[Literal["none", "greedy", "hybrid"], StrategyFigures] = Field(
        description='"none" keeps the placement in use; "greedy" and "hybrid" replan every window'
    )
    budgets: list[BudgetFigures] = Field(description="each algorithm under each budget asked")
    elapsed_ms: float = Field(description="time spent replaying, in milliseconds")
    device: str = Field(description="the torch device the plans were computed on")


class ClusterParams(BaseModel):
    """The cluster a placement runs on, and the policy whose bound is shown."""

    num_replicas: Count = Field(description="physical expert slots per layer (all GPUs)")
    num_groups: Count = Field(description="expert groups")
    num_nodes: Count = Field(description="server nodes")
    num_gpus: Count = Field(description="GPUs")
    policy: Literal["auto", "hierarchical", "global", "spill"] = Field(
        "auto", description="the policy whose bound is shown (auto: DeepSeek's rule)"
    )


class EvaluateRequest(ClusterParams):
    """``POST /evaluate``: loads, the placement to score, and optionally a second one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "weight": README_EXAMPLE["weight"],
                    "placement": [
                        [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                        [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
                    ],
                    "num_replicas": 16,
                    "num_groups": 4,
                    "num_nodes": 2,
                    "num_gpus": 8,
                }
            ]
        },
    )

    weight: list[Annotated[list[Load], Field(min_length=1)]] = Field(
        min_length=1, description="[layers][experts] token counts"
    )
    placement: Placement = Field(description="[layers][slots]: the placement to score (phy2log)")
    compare: Placement | None = Field(
        None, description="[layers][slots]: a second placement to score beside it"
    )

    @model_validator(mode="after")
    def _rectangular(self) -> EvaluateRequest:
        for name in ("weight", "placement", "compare"):
            _check_rectangular(name, getattr(self, name))
        return self

    def params(self) -> ClusterParams:
        return ClusterParams(**self.model_dump(include=set(ClusterParams.model_fields)))


class EvaluateResponse(BaseModel):
    """A placement's figures on the loads, and a second placement's beside them."""

    params: ClusterParams
    num_layers: int
    num_steps: int | None
    mean_balancedness: float = Field(
        description="the placement's balancedness, mean over the layers with load"
    )
    worst_max_over_mean: float
    placement: LoadReport
    compare: LoadReport | None
    moves: Moves | None = Field(
        description="slots whose expert differs between compare and placement"
    )
    speedup: float | None = Field(description="expected MoE speed-up of placement over compare")
    bound: list[float]
    idle_layers: list[int]
    notes: list[str]
    elapsed_ms: float
    device: str


class ClusterQuery(BaseModel):
    """A cluster to check, and the experts it must hold (0 when not known yet)."""

    num_replicas: Count
    num_groups: Count
    num_nodes: Count
    num_gpus: Count
    num_experts: int = Field(0, ge=0, le=2**31 - 1)
    policy: Literal["auto", "hierarchical", "global", "spill"] = "auto"
    spill_slots: int = Field(1, ge=0, le=2**31 - 1)
    window: int = Field(0, ge=0, le=2**31 - 1, description="a replay window to check (0: none)")
    num_steps: int = Field(0, ge=0, le=2**31 - 1, description="the steps of the series")


class ClusterCheck(BaseModel):
    """Whether the cluster can hold the experts: the reason when not; what it means when so."""

    ok: bool
    problem: str | None = None
    policy: str | None = None
    slots_per_gpu: int | None = None
    gpus_per_node: int | None = None


PolicyChoice = Annotated[
    str,
    Field(
        pattern=r"^(auto|hierarchical|global|spill)(:[0-9]{1,9})?$",
        description="a policy, and for spill its slots per GPU: auto, hierarchical, global, "
        "spill:1, ...",
    ),
]


class SweepParams(BaseModel):
    """What a sweep compares: slot counts, rebalance windows (a series only) and policies."""

    num_replicas: list[Count] | None = Field(
        None,
        min_length=1,
        description="slot counts to compare; default the fewest that hold "
        "every expert plus 0, 1, 2, 4, 8 per GPU",
    )
    num_groups: Count = Field(description="expert groups")
    num_nodes: Count = Field(description="server nodes")
    num_gpus: Count = Field(description="GPUs")
    windows: list[Count] | None = Field(
        None,
        min_length=1,
        description="steps between rebalances to replay (a time series "
        "only): each point's next-window balancedness and moves",
    )
    policies: list[PolicyChoice] | None = Field(
        None, min_length=1, description="policies to compare; default policy and spill_slots"
    )
    algorithm: Literal["hybrid", "greedy"] = "hybrid"
    seed: int = Field(0, ge=0, le=2**32 - 1)
    policy: Literal["auto", "hierarchical", "global", "spill"] = "auto"
    spill_slots: int = Field(1, ge=0, le=2**31 - 1)
    expert_bytes: int = Field(
        DEEPSEEK_V3_EXPERT_BYTES,
        ge=0,
        le=2**50,
        description="one expert's weights in one layer (default "
        "DeepSeek-V3 FP8, 3 x 7168 x 2048 bytes)",
    )


class SweepRequest(SweepParams):
    """``POST /sweep``: one window ``weight`` or a time series ``series``, and the choices."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "weight": README_EXAMPLE["weight"],
                    "num_replicas": [12, 16, 24],
                    "num_groups": 4,
                    "num_nodes": 2,
                    "num_gpus": 4,
                    "algorithm": "greedy",
                }
            ]
        },
    )

    weight: list[Annotated[list[Load], Field(min_length=1)]] | None = Field(
        None, min_length=1, description="[layers][experts]: one window"
    )
    series: (
        list[Annotated[list[Annotated[list[Load], Field(min_length=1)]], Field(min_length=1)]]
        | None
    ) = Field(None, min_length=1, description="[steps][layers][experts]: a time series")

    @model_validator(mode="after")
    def _one_of(self) -> SweepRequest:
        if (self.weight is None) == (self.series is None):
            raise ValueError(
                "give the loads as weight (one window) or series (a time series), one of them"
            )
        _check_rectangular("weight", self.weight)
        if self.series is not None:
            _check_series(self.series)
        return self

    def params(self) -> SweepParams:
        return SweepParams(**self.model_dump(exclude={"weight", "series"}))

    def loads(self) -> list[Any]:
        """The loads given: the series, else the window."""
        return self.series if self.series is not None else self.weight or []


class SweepPointReport(BaseModel):
    """One choice's figures."""

    policy: str
    spill_slots: int
    num_replicas: int
    window: int | None = Field(description="steps between rebalances; null without windows")
    slots_per_gpu: int
    extra_slots_per_gpu: float
    extra_memory_per_gpu_bytes: int = Field(
        description="expert_bytes x layers x extra slots per GPU"
    )
    mean_balancedness: float = Field(
        description="in-sample: the plan of the whole loads on "
        "them, as /rebalance's after.mean_balancedness"
    )
    mean_nodes_per_token: float | None
    bound: float = Field(description="the policy's bound, mean over the layers with load")
    next_window: float | None = Field(
        description="the replay's mean next-window balancedness; null without a window"
    )
    moves_per_1000_steps: float | None
    gib_per_1000_steps: float | None


class SweepResponse(BaseModel):
    """The sweep's points, in the order asked (policies, then slot counts, then windows)."""

    params: dict[str, object]
    num_layers: int
    num_experts: int
    num_steps: int | None
    points: list[SweepPointReport]
    notes: list[str]
    elapsed_ms: float
    device: str


class ErrorResponse(BaseModel):
    """Every error the service itself reports."""

    detail: str


class ValidationErrorResponse(BaseModel):
    """422: an error of ours, or FastAPI's list of fields that failed validation."""

    detail: str | list[dict[str, object]]
