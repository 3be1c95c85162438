"""Replication: give the hottest logical experts the redundant physical slots."""

from __future__ import annotations

import torch

# Bound on the candidate values built at once, [rows, candidates per row].
_MAX_CANDIDATE_ELEMENTS = 1 << 21


def replicate_experts(
    weight: torch.Tensor, num_phy: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replicate ``num_log`` experts into ``num_phy`` slots, minimising the max load per replica.

    Same plan as DeepSeek's loop, which hands each redundant slot in turn to the expert with the
    largest ``weight / count`` (lowest index on ties). That loop picks the values ``w_e / j``
    (expert e's j-th extra replica) in decreasing order, ties by expert then j, so here the
    candidate values are built at once and the largest ``num_phy - num_log`` taken, in that
    order, with one stable sort per row. Expert e can only get ``_replica_depths`` extra replicas,
    so a row has at most about ``num_phy`` candidates, however skewed the loads.

    Parameters:
        weight: [rows, num_log], float, >= 0
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
    logcnt = torch.ones(rows, num_log, dtype=torch.int64, device=device)
    if extra == 0 or rows == 0:
        phy2log = torch.arange(num_phy, dtype=torch.int64, device=device).repeat(rows, 1)
        return phy2log, torch.zeros_like(phy2log), logcnt
    depth = _replica_depths(weight, num_phy, extra)
    ends = depth.cumsum(-1)  # [rows, E], each expert's end in its row's list of candidates
    width = int(ends[:, -1].max())
    chunk = max(1, _MAX_CANDIDATE_ELEMENTS // width)
    picks = [
        _pick(weight[lo : lo + chunk], depth[lo : lo + chunk], ends[lo : lo + chunk], width, extra)
        for lo in range(0, rows, chunk)
    ]
    expert = torch.cat([p[0] for p in picks])
    first = torch.arange(num_log, dtype=torch.int64, device=device).expand(rows, num_log)
    phy2log = torch.cat([first, expert], 1)
    rank = torch.cat([torch.zeros_like(first), torch.cat([p[1] for p in picks])], 1)
    logcnt.scatter_add_(1, expert, torch.ones_like(expert))
    return phy2log, rank, logcnt


def _pick(
    weight: torch.Tensor, depth: torch.Tensor, ends: torch.Tensor, width: int, extra: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``extra`` picks of each row, in pick order: the expert and its replica index j.

    Row r's candidates are laid out expert by expert (increasing id), ``w / 1 .. w / depth``
    each, padded with -1; a stable sort, largest first, orders them as the loop picks them
    (ties to the lower position: the lower expert, then the lower j).
    weight, depth, ends: [rows, E] -> expert, j: [rows, extra]
    """
    rows, num_log = weight.shape
    device = weight.device
    # The expert of each position: how many experts end at or before it.
    expert = torch.zeros(rows, width + 1, dtype=torch.int64, device=device)
    expert.scatter_add_(1, ends, torch.ones_like(ends)).cumsum_(1)
    expert = expert[:, :width]
    unused = expert == num_log  # past the row's last candidate
    expert.clamp_(max=num_log - 1)
    j = torch.arange(1, width + 1, device=device) - (ends - depth).gather(1, expert)
    value = (weight.gather(1, expert) / j).masked_fill_(unused, -1)  # as the loop's w / count
    picks = value.sort(dim=-1, descending=True, stable=True).indices[:, :extra]
    return expert.gather(1, picks), j.gather(1, picks)


def _replica_depths(weight: torch.Tensor, num_phy: int, extra: int) -> torch.Tensor:
    """How many extra replicas each expert can get, at most: [rows, E].

    Let t be the last value the loop picks. When it stops, every expert f has
    ``w_f / c_f <= t``, so ``num_phy >= W / t``; and an expert e with ``c_e >= 2`` was picked at
    ``w_e / (c_e - 1) >= t``. Together: ``c_e - 1 <= w_e * num_phy / W``, up to rounding (for
    float32 a relative 2**-23 while t is a normal number, i.e. unless W is below
    ``num_phy * 2**-125``; such rows get a valid plan that may differ from the loop's), covered
    by a 1e-6 margin. A row that sums to zero gives every extra slot to its first expert.
    """
    total = weight.sum(-1, keepdim=True, dtype=torch.float64)
    # In float64, so that tiny loads do not overflow the scale: every row has >= extra
    # candidates, since the floors of shares summing to num_phy sum to more than num_phy - E.
    share = weight.double() * (num_phy * (1 + 1e-6) / total)
    depth = share.clamp_(max=extra).long()  # shares >= 0: truncation is the floor
    zero_rows = (total <= 0).squeeze(-1)
    if bool(zero_rows.any()):  # (idle layers; their shares are NaN)
        depth[zero_rows] = 0
        depth[zero_rows, 0] = extra
    return depth
