"""Replication: give the hottest logical experts the redundant physical slots."""

from __future__ import annotations

import torch

# Bound on the candidate values built at once, [rows, candidates per row].
_MAX_CANDIDATE_ELEMENTS = 1 << 24


def replicate_experts(weight: torch.Tensor,
                      num_phy: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replicate ``num_log`` experts into ``num_phy`` slots, minimising the max load per replica.

    Same plan as DeepSeek's loop, which hands each redundant slot in turn to the expert with the
    largest ``weight / count`` (lowest index on ties). That loop picks the values ``w_e / j``
    (expert e's j-th extra replica) in decreasing order, ties by expert then j, so here the
    candidate values are built at once and the largest ``num_phy - num_log`` taken, in that
    order. Only the ``extra`` heaviest experts can get an extra replica (each one that does was
    picked before every lighter expert), and expert e only ``_replica_depths`` of them, so a
    row has at most ``num_phy + extra`` candidates, however skewed the loads.

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

    hot = _largest_first_ties(weight, min(extra, num_log))  # [rows, h], increasing ids
    hot_weight = weight.gather(1, hot)
    depth = _replica_depths(weight, hot_weight, num_phy, extra)  # [rows, h]
    width = int(depth.sum(-1).max())
    chunk = max(1, _MAX_CANDIDATE_ELEMENTS // width)
    experts, ranks = [], []
    for lo in range(0, rows, chunk):
        expert, replica = _pick(hot[lo:lo + chunk], hot_weight[lo:lo + chunk],
                                depth[lo:lo + chunk], width, extra)
        experts.append(expert)
        ranks.append(replica)
    expert = torch.cat(experts)
    phy2log[:, num_log:] = expert
    rank[:, num_log:] = torch.cat(ranks)
    logcnt.scatter_add_(1, expert, torch.ones_like(expert))
    return phy2log, rank, logcnt


def _pick(hot: torch.Tensor, hot_weight: torch.Tensor, depth: torch.Tensor, width: int,
          extra: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``extra`` picks of each row, in pick order: the expert and its replica index j.

    Row r's candidates are laid out expert by expert (increasing id), ``w / 1 .. w / depth``
    each, padded with -inf to ``width``; ties then go to the lower position, as in the loop.
    hot, hot_weight, depth: [rows, h] -> expert, j: [rows, extra]
    """
    rows, num_hot = hot.shape
    device = hot.device
    lengths = depth.flatten()
    owner = torch.repeat_interleave(torch.arange(rows * num_hot, device=device), lengths)
    segment_start = lengths.cumsum(0) - lengths
    position = torch.arange(owner.numel(), device=device)  # in the flat list of candidates
    j = position - segment_start[owner] + 1
    row = owner // num_hot
    row_start = segment_start.view(rows, num_hot)[:, 0]
    values = torch.full((rows, width), float("-inf"), dtype=hot_weight.dtype, device=device)
    values[row, position - row_start[row]] = hot_weight.flatten()[owner] / j.to(hot_weight.dtype)
    chosen = _largest_first_ties(values, extra)
    picks = chosen.gather(1, values.gather(1, chosen).sort(dim=-1, descending=True,
                                                           stable=True).indices)
    ends = depth.cumsum(-1)  # [rows, h], each expert's end position in its row
    which = torch.searchsorted(ends, picks, right=True)
    replica = picks - (ends - depth).gather(1, which) + 1
    return hot.gather(1, which), replica


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


def _replica_depths(weight: torch.Tensor, hot_weight: torch.Tensor, num_phy: int,
                    extra: int) -> torch.Tensor:
    """How many extra replicas each hot expert can get, at most: [rows, h], each >= 1.

    When the loop stops, every expert f has ``w_f / c_f <= t`` for the last picked value ``t``,
    so ``num_phy >= W / t``; and an expert e with ``c_e >= 2`` was picked at ``w_e / (c_e - 1) >=
    t``. Together: ``c_e - 1 <= w_e * num_phy / W``. One more covers float rounding. A row that
    sums to zero gives every extra slot to its first expert.
    """
    total = weight.double().sum(-1, keepdim=True)
    bound = (hot_weight.double() * num_phy / total.clamp(min=1e-300)).floor() + 1
    depth = bound.clamp(max=extra).long()
    zero_rows = (total <= 0).squeeze(-1)
    depth[zero_rows] = 1
    depth[zero_rows, 0] = extra
    return depth
