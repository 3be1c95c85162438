"""The cluster a plan is for, its placement policy, and named presets of real deployments.

GPU g holds slots ``g*R/G .. (g+1)*R/G - 1``; node n holds GPUs ``n*G/N .. (n+1)*G/N - 1``.
The policy, as DeepSeek's EPLB chooses it ("auto"): hierarchical when the expert groups split
evenly over the nodes (a group's replicas stay on one node), else global (groups and nodes do
not constrain the plan). "spill" (asked for by name) keeps each group on a home node like the
hierarchical policy, and lets each GPU hold a few replicas of other nodes' experts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import ClusterShapeError, OptionError

Policy = Literal["auto", "hierarchical", "global", "spill"]
POLICIES: tuple[str, ...] = ("auto", "hierarchical", "global", "spill")
COUNT_FIELDS = ("num_replicas", "num_groups", "num_nodes", "num_gpus")
# The policies that keep every group on one (home) node: a node's groups move together.
NODE_POLICIES = ("hierarchical", "spill")


@dataclass(frozen=True)
class Cluster:
    """Physical expert slots per layer (over all GPUs), expert groups, nodes and GPUs.

    Checks what holds whatever the experts and the policy: positive counts, and slots that
    split evenly over the GPUs. ``check`` adds the rules that depend on them.
    """

    num_replicas: int
    num_groups: int
    num_nodes: int
    num_gpus: int

    def __post_init__(self) -> None:
        for name in COUNT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ClusterShapeError(f"{name} must be a positive integer, got {value!r}")
        if self.num_replicas % self.num_gpus:
            raise ClusterShapeError(
                f"{self.num_replicas} slots cannot be split evenly over {self.num_gpus} GPUs"
            )

    @property
    def slots_per_gpu(self) -> int:
        return self.num_replicas // self.num_gpus

    @property
    def has_nodes(self) -> bool:
        """Whether the GPUs split evenly over the nodes, so that per-node figures exist."""
        return self.num_gpus % self.num_nodes == 0

    @property
    def gpus_per_node(self) -> int | None:
        """GPUs per node, or None when they do not split evenly."""
        return self.num_gpus // self.num_nodes if self.has_nodes else None

    @property
    def auto_policy(self) -> str:
        """DeepSeek's rule: "hierarchical" when groups split evenly over nodes, else "global"."""
        return "hierarchical" if self.num_groups % self.num_nodes == 0 else "global"

    def whole_nodes(self, policy: str) -> int:
        """The nodes a plan of ``policy`` moves only as wholes when it is deployed or budgeted:
        under the hierarchical and spill policies a group stays on its (home) node, so a node's
        groups move together; otherwise any GPU may take any other's place (1)."""
        return self.num_nodes if policy in NODE_POLICIES else 1

    def check(self, num_experts: int, policy: str = "auto", spill_slots: int = 0) -> str:
        """The policy a plan of ``num_experts`` experts uses here ("auto" resolved), or
        ``ClusterShapeError`` saying why the cluster cannot hold them under it.

        Every policy needs at least one slot per expert. The hierarchical and spill ones also
        need the groups to split evenly over the nodes, the experts into groups and the GPUs
        over the nodes; the global one needs nothing more (groups and nodes do not constrain
        it). ``spill_slots`` (slots per GPU that may hold other nodes' experts) is at most the
        slots of a GPU, whatever the policy (``OptionError``).
        """
        if policy not in POLICIES:
            raise OptionError(f"unknown policy {policy!r}; expected one of {POLICIES}")
        if spill_slots > self.slots_per_gpu:
            raise OptionError(
                f"spill_slots {spill_slots} is more than the {self.slots_per_gpu} slots of a GPU"
            )
        if num_experts <= 0:
            raise ClusterShapeError(f"there are no experts to place ({num_experts})")
        if self.num_replicas < num_experts:
            raise ClusterShapeError(
                f"{self.num_replicas} slots cannot hold {num_experts} "
                f"experts: num_replicas must be at least the number of "
                f"experts"
            )
        resolved = self.auto_policy if policy == "auto" else policy
        if resolved in NODE_POLICIES:
            why = "" if policy == "auto" else f" (the {resolved} policy)"
            if self.num_groups % self.num_nodes:
                raise ClusterShapeError(
                    f"{self.num_groups} groups cannot be split evenly over "
                    f"{self.num_nodes} nodes{why}"
                )
            if num_experts % self.num_groups:
                raise ClusterShapeError(
                    f"{num_experts} experts cannot be split evenly into "
                    f"{self.num_groups} groups{why}"
                )
            if not self.has_nodes:
                raise ClusterShapeError(
                    f"{self.num_gpus} GPUs cannot be split evenly over {self.num_nodes} nodes{why}"
                )
        return resolved


# One DeepSeek-V3 routed expert in one layer, FP8: gate, up and down projections of 7168 x 2048
# one-byte weights (44,040,192 bytes).
DEEPSEEK_V3_EXPERT_BYTES = 3 * 7168 * 2048


@dataclass(frozen=True)
class Preset:
    """A real model and cluster: the shape its loads have and the cluster it is served on."""

    name: str
    model: str
    num_layers: int  # MoE layers
    num_experts: int  # routed experts per MoE layer
    cluster: Cluster
    description: str


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "deepseek-v3-prefill",
            "DeepSeek-V3",
            58,
            256,
            Cluster(288, 8, 4, 32),
            "prefill: 4 nodes x 8 GPUs, 256 experts in 8 groups + 32 redundant slots (9 per GPU)",
        ),
        Preset(
            "deepseek-v3-decode",
            "DeepSeek-V3",
            58,
            256,
            Cluster(288, 8, 18, 144),
            "decode: 18 nodes x 8 GPUs, 256 experts in 8 groups + 32 redundant slots (2 per GPU)",
        ),
        Preset(
            "qwen3-235b-a22b",
            "Qwen3-235B-A22B",
            94,
            128,
            Cluster(144, 1, 2, 16),
            "2 nodes x 8 GPUs, 128 experts (no expert groups: global policy) + 16 redundant "
            "slots (9 per GPU)",
        ),
    )
}
