"""Helpers shared by the core tests: the devices to run on, and random cluster shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import strategies as st

# The example of DeepSeek's EPLB README (github.com/deepseek-ai/EPLB, "Interface and
# Example"): its loads, cluster and the published plan, as facts to reproduce.
EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "deepseek_readme_example.json"

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ],
    ),
]


@dataclass(frozen=True)
class Shape:
    layers: int
    experts: int
    replicas: int
    groups: int
    nodes: int
    gpus: int

    @property
    def args(self) -> tuple[int, int, int, int]:
        return self.replicas, self.groups, self.nodes, self.gpus


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    """A cluster shape DeepSeek's EPLB accepts: hierarchical (groups divisible by nodes, experts
    by groups, GPUs by nodes), or global, where only the slots must split over the GPUs."""
    nodes = draw(st.integers(1, 4))
    if draw(st.booleans()):
        gpus = nodes * draw(st.integers(1, 4))
        groups = nodes * draw(st.integers(1, 3))
        experts = groups * draw(st.integers(1, 5))
    else:
        nodes = max(nodes, 2)
        gpus = draw(st.integers(1, 12))
        groups = draw(st.integers(1, 7).filter(lambda count: count % nodes))
        experts = draw(st.integers(1, 24))
    per_gpu = -(-experts // gpus) + draw(st.integers(0, 3))
    return Shape(draw(st.integers(1, 4)), experts, gpus * per_gpu, groups, nodes, gpus)


def random_weight(shape: Shape, seed: int, integer: bool) -> torch.Tensor:
    """Loads for a shape: skewed floats, or small integers (so that ties are common)."""
    gen = torch.Generator().manual_seed(seed)
    if integer:
        return torch.randint(0, 6, (shape.layers, shape.experts), generator=gen).float()
    return torch.rand(shape.layers, shape.experts, generator=gen) ** 3 * 1000
