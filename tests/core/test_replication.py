"""replicate_experts: the published one-slot-at-a-time loop's plan, ties and zeros included."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference import published_replication
from eplb_core import replicate_experts


@settings(max_examples=150, deadline=None)
@given(rows=st.integers(1, 6), experts=st.integers(1, 12), extra=st.integers(0, 20),
       seed=st.integers(0, 2**16), kind=st.sampled_from(["float", "int", "sparse"]))
def test_matches_published_loop(rows: int, experts: int, extra: int, seed: int, kind: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    if kind == "float":
        weight = torch.rand(rows, experts, generator=gen) ** 3 * 100
    elif kind == "int":
        weight = torch.randint(0, 8, (rows, experts), generator=gen).float()
    else:  # mostly zeros, whole zero rows included
        weight = torch.randint(0, 3, (rows, experts), generator=gen).float()
        weight *= torch.rand(rows, 1, generator=gen) < 0.5
    ours = replicate_experts(weight, experts + extra)
    theirs = published_replication(weight, experts + extra)
    for mine, published in zip(ours, theirs):
        assert torch.equal(mine, published)


def test_hottest_expert_gets_the_spare_slots(device: str) -> None:
    weight = torch.tensor([[100.0, 10.0, 10.0, 10.0]], device=device)
    phy2log, rank, logcnt = replicate_experts(weight, 7)
    assert logcnt.tolist() == [[4, 1, 1, 1]]
    assert phy2log.tolist() == [[0, 1, 2, 3, 0, 0, 0]]
    assert rank.tolist() == [[0, 0, 0, 0, 1, 2, 3]]
