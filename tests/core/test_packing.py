"""balanced_packing: valid packings, greedy = published LPT, hybrid never worse than greedy."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core import balanced_packing, packing
from tests.reference import published_packing


def pack_loads(weight: torch.Tensor, pack_index: torch.Tensor, num_packs: int) -> torch.Tensor:
    loads = torch.zeros(weight.shape[0], num_packs, dtype=torch.float64, device=weight.device)
    return loads.scatter_add_(1, pack_index, weight.double())


def check_packing(pack_index: torch.Tensor, rank_in_pack: torch.Tensor, num_packs: int) -> None:
    rows, n = pack_index.shape
    per_pack = n // num_packs
    counts = torch.zeros(rows, num_packs, dtype=torch.int64, device=pack_index.device)
    counts.scatter_add_(1, pack_index, torch.ones_like(pack_index))
    assert bool((counts == per_pack).all()), "every pack holds exactly n/m items"
    slot = pack_index * per_pack + rank_in_pack
    assert torch.equal(slot.sort(1).values, torch.arange(n, device=slot.device).expand(rows, n))


@st.composite
def problems(draw: st.DrawFn, max_packs: int = 6) -> tuple[torch.Tensor, int]:
    num_packs = draw(st.integers(1, max_packs))
    per_pack = draw(st.integers(1, 7))
    rows = draw(st.integers(1, 5))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    shape = (rows, num_packs * per_pack)
    kind = draw(st.sampled_from(["int", "float", "sparse", "float64"]))
    if kind == "int":  # many ties
        weight = torch.randint(0, 5, shape, generator=gen).float()
    elif kind == "float":
        weight = torch.rand(shape, generator=gen) ** 4 * 100
    elif kind == "sparse":  # mostly zeros, whole zero rows included
        weight = torch.randint(0, 3, shape, generator=gen).float()
        weight *= torch.rand(rows, 1, generator=gen) < 0.6
    else:
        weight = torch.rand(shape, generator=gen, dtype=torch.float64) * 10
    return weight, num_packs


@settings(max_examples=400, deadline=None)
@given(problem=problems(max_packs=24))
def test_greedy_is_published_lpt(problem: tuple[torch.Tensor, int]) -> None:
    # Up to 24 packs: LPT goes an item at a time below 5 packs and a round at a time above.
    weight, num_packs = problem
    ours = balanced_packing(weight, num_packs, algorithm="greedy")
    theirs = published_packing(weight, num_packs)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_greedy_is_published_lpt_with_many_items_and_ties() -> None:
    # Long rows of equal and zero loads: a round at a time must still break ties as LPT does.
    gen = torch.Generator().manual_seed(5)
    weight = torch.randint(0, 3, (6, 32 * 20), generator=gen).float()
    weight[0] = 1.0
    weight[1] = 0.0
    weight[2, :40] = -0.0
    for num_packs in (2, 5, 8, 32):
        ours = balanced_packing(weight, num_packs, algorithm="greedy")
        theirs = published_packing(weight, num_packs)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@settings(max_examples=150, deadline=None)
@given(problem=problems(), candidates=st.sampled_from([1, 2, 5, 16]), seed=st.integers(0, 99))
def test_hybrid_never_worse_than_greedy(
    problem: tuple[torch.Tensor, int], candidates: int, seed: int
) -> None:
    weight, num_packs = problem
    gen = torch.Generator().manual_seed(seed)
    hybrid = balanced_packing(weight, num_packs, num_candidates=candidates, generator=gen)
    check_packing(*hybrid, num_packs)
    greedy = balanced_packing(weight, num_packs, algorithm="greedy")
    hybrid_max = pack_loads(weight, hybrid[0], num_packs).amax(1)
    greedy_max = pack_loads(weight, greedy[0], num_packs).amax(1)
    # Sums of float32 items in float64 are exact up to rounding of ~1e-12 relative.
    assert bool((hybrid_max <= greedy_max * (1 + 1e-9)).all())


def test_hybrid_improves_on_greedy_where_lpt_is_poor(device: str) -> None:
    # LPT: 25 | 15, 11 -> 25+9+3=37 vs 15+11+5=31 (max 37); the optimum is 25+5+3 | 15+11+9 (35).
    weight = torch.tensor([[3.0, 11, 9, 25, 5, 15]], device=device)
    greedy = balanced_packing(weight, 2, algorithm="greedy")
    hybrid = balanced_packing(weight, 2)
    assert pack_loads(weight, greedy[0], 2).amax().item() == 37
    assert pack_loads(weight, hybrid[0], 2).amax().item() == 35
    check_packing(*hybrid, 2)


def test_two_per_pack_greedy_is_optimal() -> None:
    # With two items per pack LPT pairs heaviest with lightest, which minimises the max load.
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        weight = torch.randint(0, 20, (1, 8), generator=gen).float()
        greedy = balanced_packing(weight, 4, algorithm="greedy")[0]
        assert pack_loads(weight, greedy, 4).max().item() == _best_pairing(weight[0].tolist())


def _best_pairing(values: list[float]) -> float:
    """The smallest possible max pair sum, by brute force over perfect matchings."""
    if not values:
        return 0.0
    first, rest = values[0], values[1:]
    return min(
        max(first + rest[i], _best_pairing(rest[:i] + rest[i + 1 :])) for i in range(len(rest))
    )


def test_hybrid_is_deterministic_and_seeded(device: str) -> None:
    weight = torch.rand(16, 40, generator=torch.Generator().manual_seed(0)).to(device) ** 3

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator(device=device).manual_seed(seed)
        return balanced_packing(weight, 5, num_candidates=32, generator=gen)[0]

    assert torch.equal(run(1), run(1))


def test_one_item_per_pack_is_identity() -> None:
    weight = torch.rand(3, 6)
    pack_index, rank = balanced_packing(weight, 6)
    assert torch.equal(pack_index, torch.arange(6).expand(3, 6))
    assert not bool(rank.any())


def test_uneven_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="7 items cannot be split evenly into 2 packs"):
        balanced_packing(torch.ones(1, 7), 2)


def test_hybrid_with_one_pack_or_many_items_per_pack() -> None:
    # One pack holds everything: the greedy's packing, no search. Many items per pack take the
    # binary-search swaps; both stay never worse than the greedy.
    gen = torch.Generator().manual_seed(2)
    weight = torch.rand(3, 600, generator=gen) ** 3 * 100
    assert torch.equal(
        balanced_packing(weight, 1)[1], balanced_packing(weight, 1, algorithm="greedy")[1]
    )
    for num_packs in (2, 3, 4):
        hybrid = balanced_packing(weight, num_packs, num_candidates=4)
        check_packing(*hybrid, num_packs)
        greedy = balanced_packing(weight, num_packs, algorithm="greedy")
        assert bool(
            (
                pack_loads(weight, hybrid[0], num_packs).amax(1)
                <= pack_loads(weight, greedy[0], num_packs).amax(1)
            ).all()
        )


def test_swap_search_by_binary_search_matches_all_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(4)
    w = (torch.rand(12, 6, 80, generator=gen) ** 3 * 1000).floor()  # integer loads: ties
    monkeypatch.setattr(packing, "_DENSE_SWAP_ITEMS", 80)
    all_pairs = packing._improving_swaps(w)
    monkeypatch.setattr(packing, "_DENSE_SWAP_ITEMS", 16)
    searched = packing._improving_swaps(w)
    assert all(torch.equal(a, b) for a, b in zip(all_pairs, searched))


def test_greedy_is_published_lpt_where_rounds_make_little_progress() -> None:
    # Each item far lighter than the one before: the lightest pack stays the lightest, so the
    # round-at-a-time LPT takes one item a step and hands over to the item loop.
    weight = 4.0 ** -torch.arange(60.0).repeat(3, 1)
    weight[1] = weight[1].flip(0)
    ours = balanced_packing(weight, 6, algorithm="greedy")
    theirs = published_packing(weight, 6)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
