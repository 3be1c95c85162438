"""EPLB core: expert replication and placement plans for MoE inference, in PyTorch."""

from .metrics import (
    PlanReport,
    balancedness,
    balancedness_bound,
    evaluate,
    gpu_loads,
    node_loads,
    trivial_placement,
)
from .packing import ALGORITHMS, balanced_packing, greedy_packing
from .policy import policy_name, rebalance_experts, validate_shape, validate_weight
from .replication import replicate_experts

__all__ = [
    "ALGORITHMS",
    "PlanReport",
    "balanced_packing",
    "balancedness",
    "balancedness_bound",
    "evaluate",
    "gpu_loads",
    "greedy_packing",
    "node_loads",
    "policy_name",
    "rebalance_experts",
    "replicate_experts",
    "trivial_placement",
    "validate_shape",
    "validate_weight",
]
