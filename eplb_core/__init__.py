"""EPLB core: expert replication and placement plans for MoE inference, in PyTorch."""

from .cluster import POLICIES, PRESETS, Cluster, Preset
from .errors import (
    CancelledError,
    ClusterShapeError,
    EPLBError,
    InvariantError,
    LimitError,
    LoadError,
    LoadFormatError,
    OptionError,
    PlacementError,
)
from .limits import Limits
from .metrics import (
    Scores,
    balancedness,
    balancedness_bound,
    gpu_loads,
    node_loads,
    score,
    trivial_placement,
)
from .packing import ALGORITHMS, balanced_packing, greedy_packing
from .plan import (
    Evaluation,
    Plan,
    PlanOptions,
    Rebalance,
    evaluate,
    make_plan,
    rebalance,
    rebalance_experts,
)
from .replication import replicate_experts

__all__ = [
    "ALGORITHMS",
    "POLICIES",
    "PRESETS",
    "CancelledError",
    "Cluster",
    "ClusterShapeError",
    "EPLBError",
    "Evaluation",
    "InvariantError",
    "LimitError",
    "Limits",
    "LoadError",
    "LoadFormatError",
    "OptionError",
    "PlacementError",
    "Plan",
    "PlanOptions",
    "Preset",
    "Rebalance",
    "Scores",
    "balanced_packing",
    "balancedness",
    "balancedness_bound",
    "evaluate",
    "gpu_loads",
    "greedy_packing",
    "make_plan",
    "node_loads",
    "rebalance",
    "rebalance_experts",
    "replicate_experts",
    "score",
    "trivial_placement",
]
