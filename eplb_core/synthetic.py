"""Deterministic synthetic expert loads, DeepSeek-V3 shaped by default (58 layers x 256 experts).

Token counts are integers (as a serving engine's counters are), stored as float32.
"""

from __future__ import annotations

import torch

DEEPSEEK_V3_LAYERS = 58
DEEPSEEK_V3_EXPERTS = 256
TOKENS_PER_LAYER = 8 * 4096 * 8  # tokens x top-8 routing, per layer and window
EXAMPLE_SEED = 2024  # the dashboard's and ``eplb example``'s sample


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _counts(probs: torch.Tensor, tokens: int, gen: torch.Generator) -> torch.Tensor:
    """Integer token counts close to ``probs * tokens`` per row: [layers, experts]."""
    probs = probs / probs.sum(-1, keepdim=True)
    expected = probs * tokens
    return (expected + torch.rand(expected.shape, generator=gen)).floor()


def zipf_loads(
    layers: int = DEEPSEEK_V3_LAYERS,
    experts: int = DEEPSEEK_V3_EXPERTS,
    seed: int = 0,
    exponent: float = 0.8,
    tokens: int = TOKENS_PER_LAYER,
) -> torch.Tensor:
    """Skewed: each layer ranks its experts at random and gives rank r a share ~ 1/(r+1)^s."""
    gen = _generator(seed)
    ranks = torch.rand(layers, experts, generator=gen).argsort(-1).float()
    return _counts((ranks + 1) ** -exponent, tokens, gen)


def hot_expert_loads(
    layers: int = DEEPSEEK_V3_LAYERS,
    experts: int = DEEPSEEK_V3_EXPERTS,
    seed: int = 0,
    num_hot: int = 4,
    heat: float = 12.0,
    tokens: int = TOKENS_PER_LAYER,
) -> torch.Tensor:
    """A near-uniform background with ``num_hot`` experts per layer ``heat`` times hotter."""
    gen = _generator(seed)
    probs = 1 + 0.3 * torch.rand(layers, experts, generator=gen)
    hot = torch.rand(layers, experts, generator=gen).argsort(-1)[:, :num_hot]
    probs.scatter_(1, hot, heat * (1 + torch.rand(layers, num_hot, generator=gen)))
    return _counts(probs, tokens, gen)


def uniform_loads(
    layers: int = DEEPSEEK_V3_LAYERS,
    experts: int = DEEPSEEK_V3_EXPERTS,
    seed: int = 0,
    spread: float = 0.1,
    tokens: int = TOKENS_PER_LAYER,
) -> torch.Tensor:
    """Near uniform: shares within +-spread of equal."""
    gen = _generator(seed)
    probs = 1 + spread * (2 * torch.rand(layers, experts, generator=gen) - 1)
    return _counts(probs, tokens, gen)


WORKLOADS = {"zipf": zipf_loads, "hot": hot_expert_loads, "uniform": uniform_loads}


def drifting_series(
    steps: int,
    layers: int = DEEPSEEK_V3_LAYERS,
    experts: int = DEEPSEEK_V3_EXPERTS,
    seed: int = 0,
    drift: float = 0.05,
    exponent: float = 1.0,
    tokens_per_step: int = 4096 * 8,
) -> torch.Tensor:
    """A time series ``[steps, layers, experts]`` whose expert popularity drifts.

    Each expert's log-popularity follows a random walk (step size ``drift``) around a Zipf
    profile, and each step's counts are sampled from it, so consecutive windows share most of
    their structure but not all of it, as real traffic does.
    """
    gen = _generator(seed)
    ranks = torch.rand(layers, experts, generator=gen).argsort(-1).float()
    base = -exponent * torch.log(ranks + 1)
    walk = drift * torch.randn(steps, layers, experts, generator=gen).cumsum(0)
    probs = torch.softmax(base + walk, -1)
    return torch.poisson(probs * tokens_per_step, generator=gen)


DEEPSEEK_V3_HIDDEN_LAYERS = 61  # SGLang's maps and dumps have a row per hidden layer
DEEPSEEK_V3_DENSE_LAYERS = 3  # the first layers have no experts: all-zero rows


def sglang_dump(
    steps: int,
    seed: int = 0,
    experts: int = DEEPSEEK_V3_EXPERTS,
    hidden_layers: int = DEEPSEEK_V3_HIDDEN_LAYERS,
    dense_layers: int = DEEPSEEK_V3_DENSE_LAYERS,
) -> dict[str, object]:
    """A dump shaped like SGLang's expert distribution recorder in ``stat`` mode (what
    ``/dump_expert_distribution_record`` writes on rank 0): ``logical_count`` int32
    ``[steps, hidden layers, experts]`` of drifting counts, the dense layers' rows all zero."""
    counts = torch.zeros(steps, hidden_layers, experts, dtype=torch.int32)
    counts[:, dense_layers:] = drifting_series(
        steps, hidden_layers - dense_layers, experts, seed=seed
    ).to(torch.int32)
    return {"rank": 0, "logical_count": counts, "average_utilization_rate_over_window": None}
