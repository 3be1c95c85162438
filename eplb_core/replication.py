"""Replication: give the hottest logical experts the redundant physical slots."""

from __future__ import annotations

import torch

# Upper bound on elements of the [rows, experts, extra] candidate tensor built at once.
_MAX_CANDIDATE_ELEMENTS = 1 << 24


def replicate_experts(weight: torch.Tensor,
                      num_phy: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replicate ``num_log`` experts into ``num_phy`` slots, minimising the max load per replica.

    Same plan as DeepSeek's loop, which hands each redundant slot in turn to the expert with the
    largest ``weight / count`` (lowest index on ties). That loop picks the values ``w_e / j``
    (expert e's j-th extra replica) in decreasing order, ties by expert then j, so here the
    candidate values are built at once and the largest ``num_phy - num_log`` are taken with one
    stable sort. Only the ``extra`` heaviest experts can get an extra replica (each one that does
    was picked before every lighter expert), so only they are candidates.

    Parameters:
        weight: [rows, num_log], float
        num_phy: total slots per row, ``>= num_log``

    Returns:
        phy2log: [rows, num_phy], the logical expert in each slot (the first ``num_log`` slots
            hold experts 0..num_log-1, the redundant slots follow in pick order)
        rank: [rows, num_phy], the replica index of each slot within its expert
        logcnt: [rows, num_log], the number of replicas of each expert
    """
    rows, num_log = weight.shape
    extra = num_phy - num_log
    device = weight.device
    phy2log = torch.arange(num_phy, dtype=torch.int64, device=device).repeat(rows, 1)
    rank = torch.zeros(rows, num_phy, dtype=torch.int64, device=device)
    logcnt = torch.ones(rows, num_log, dtype=torch.int64, device=device)
    if extra == 0 or rows == 0:
        return phy2log, rank, logcnt

    hot = _largest_first_ties(weight, min(extra, num_log))
    depth = _replica_depth(weight, num_phy, extra)
    divisors = torch.arange(1, depth + 1, dtype=weight.dtype, device=device)
    chunk = max(1, _MAX_CANDIDATE_ELEMENTS // (hot.shape[1] * depth))
    picks = []
    for lo in range(0, rows, chunk):
        values = (weight[lo:lo + chunk].gather(1, hot[lo:lo + chunk]).unsqueeze(-1) / divisors)
        values = values.flatten(1)
        chosen = _largest_first_ties(values, extra)
        in_order = values.gather(1, chosen).sort(dim=-1, descending=True, stable=True).indices
        picks.append(chosen.gather(1, in_order))
    pick = torch.cat(picks)
    expert = hot.gather(1, pick // depth)
    phy2log[:, num_log:] = expert
    rank[:, num_log:] = pick % depth + 1
    logcnt.scatter_add_(1, expert, torch.ones_like(expert))
    return phy2log, rank, logcnt


def _largest_first_ties(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest values of each row, ties going to the lower index, in
    increasing index order: [rows, n] -> [rows, k]. (A top-k whose ties are deterministic,
    without sorting whole rows.)"""
    threshold = values.topk(k, dim=-1).values[:, -1:]
    above = values > threshold
    tied = values == threshold
    room = k - above.sum(-1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(-1) <= room))
    return chosen.nonzero()[:, 1].view(values.shape[0], k)


def _replica_depth(weight: torch.Tensor, num_phy: int, extra: int) -> int:
    """How many extra replicas any one expert can get, at most.

    When the loop stops, every expert f has ``w_f / c_f <= t`` for the last picked value ``t``,
    so ``num_phy >= W / t``; and an expert e with ``c_e >= 2`` was picked at ``w_e / (c_e - 1) >=
    t``. Together: ``c_e - 1 <= w_e * num_phy / W``. One more covers float rounding. Rows that sum
    to zero give every extra slot to expert 0, so they need the full depth.
    """
    total = weight.double().sum(-1)
    if bool((total <= 0).any()):
        return extra
    bound = (weight.double().amax(-1) * num_phy / total).max()
    return int(min(extra, int(bound.item()) + 1))
