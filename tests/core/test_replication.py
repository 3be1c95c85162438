"""replicate_experts: the published one-slot-at-a-time loop's plan, ties and zeros included."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core import replicate_experts
from tests.reference import published_replication


@settings(max_examples=300, deadline=None)
@given(
    rows=st.integers(1, 6),
    experts=st.integers(1, 12),
    extra=st.integers(0, 30),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["float", "float64", "int", "sparse", "multiples"]),
)
def test_matches_published_loop(rows: int, experts: int, extra: int, seed: int, kind: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    if kind == "float":
        weight = torch.rand(rows, experts, generator=gen) ** 3 * 100
    elif kind == "float64":  # as the metrics' bound calls it
        weight = torch.rand(rows, experts, generator=gen, dtype=torch.float64) ** 3 * 100
    elif kind == "int":
        weight = torch.randint(0, 8, (rows, experts), generator=gen).float()
    elif kind == "sparse":  # mostly zeros, whole zero rows included
        weight = torch.randint(0, 3, (rows, experts), generator=gen).float()
        weight *= torch.rand(rows, 1, generator=gen) < 0.5
    else:  # divisors of 12: w_e / j ties across experts (12/3 = 4/1 = 8/2)
        divisors = torch.tensor([1.0, 2, 3, 4, 6, 8, 12])
        weight = divisors[torch.randint(0, 7, (rows, experts), generator=gen)]
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


def test_skewed_and_tiny_loads() -> None:
    # One expert with nearly all the load takes most of many spare slots; the candidates stay
    # about as many as the slots. Loads far below a float32's normal range still plan validly.
    weight = torch.tensor([[1e6, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    ours = replicate_experts(weight, 4 + 300)
    for mine, published in zip(ours, published_replication(weight, 4 + 300)):
        assert torch.equal(mine, published)
    tiny = torch.tensor([[1e-40, 0.0, 3e-41, 1e-45]])
    phy2log, _rank, logcnt = replicate_experts(tiny, 12)
    assert int(logcnt.sum()) == 12 and torch.equal(
        torch.bincount(phy2log[0], minlength=4), logcnt[0]
    )
