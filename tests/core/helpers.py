"""Helpers shared by the core tests: the devices to run on, and random cluster shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import strategies as st

_TESTDATA = "shared/testdata/deepseek_readme_example.json"
# shared/ sits beside the checkout (or, in some checkouts, inside it)
_CANDIDATES = [Path(__file__).resolve().parents[i] / _TESTDATA for i in (3, 2)]
EXAMPLE = next((path for path in _CANDIDATES if path.exists()), _CANDIDATES[0])

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device")]),
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
    """A valid cluster shape: hierarchical (groups divisible by nodes) or global."""
    nodes = draw(st.integers(1, 4))
    gpus = nodes * draw(st.integers(1, 4))
    if draw(st.booleans()):
        groups = nodes * draw(st.integers(1, 3))
    else:
        groups = draw(st.integers(1, 7))
    experts = groups * draw(st.integers(1, 5))
    per_gpu = -(-experts // gpus) + draw(st.integers(0, 3))
    return Shape(draw(st.integers(1, 4)), experts, gpus * per_gpu, groups, nodes, gpus)


def random_weight(shape: Shape, seed: int, integer: bool) -> torch.Tensor:
    """Loads for a shape: skewed floats, or small integers (so that ties are common)."""
    gen = torch.Generator().manual_seed(seed)
    if integer:
        return torch.randint(0, 6, (shape.layers, shape.experts), generator=gen).float()
    return torch.rand(shape.layers, shape.experts, generator=gen) ** 3 * 1000
