"""Replay a load time series: plan on one window, score on the next.

A plan is computed from past traffic and then serves the traffic that follows, so its honest
score is on the window after the one it was computed from. The series ``[steps, layers,
experts]`` is cut into consecutive windows of ``window`` steps (trailing steps that do not fill
a window are dropped), each summed to ``[layers, experts]``. For every window i but the last,
each strategy plans on window i and is scored on window i (in-sample) and on window i+1 (next
window). "none" keeps the placement in use (the trivial layout unless one is given).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .metrics import evaluate, trivial_placement
from .migration import count_moves, deploy, validate_placement
from .packing import ALGORITHMS
from .policy import rebalance_experts, validate_shape, validate_weight

NO_REBALANCING = "none"
_ROWS_PER_CALL = 512  # layers of stacked windows planned per rebalance_experts call

Progress = Callable[[int, int], None]  # (windows planned so far, windows to plan in all)


@dataclass(frozen=True)
class StrategyReplay:
    """One strategy's figures, one entry per scored window (all windows but the last)."""

    in_sample: list[float]  # mean balancedness over layers, on the window planned from
    next_window: list[float]  # the same plan on the following window
    moves: list[int]  # slots whose expert changed from the placement deployed before

    @property
    def mean_in_sample(self) -> float:
        return sum(self.in_sample) / len(self.in_sample)

    @property
    def mean_next_window(self) -> float:
        return sum(self.next_window) / len(self.next_window)

    @property
    def total_moves(self) -> int:
        return sum(self.moves)


@dataclass(frozen=True)
class Replay:
    """The replay of a series: per-strategy figures, "none" first, then each algorithm."""

    window: int  # steps per window
    num_windows: int  # full windows in the series; num_windows - 1 are scored
    dropped_steps: int  # trailing steps that do not fill a window
    strategies: dict[str, StrategyReplay]

    def as_dict(self) -> dict:
        """Plain numbers and lists, ready for JSON: the per-window figures and their means."""
        return {
            "window": self.window,
            "num_windows": self.num_windows,
            "dropped_steps": self.dropped_steps,
            "strategies": {
                name: {"in_sample": figures.in_sample, "next_window": figures.next_window,
                       "moves": figures.moves, "mean_in_sample": figures.mean_in_sample,
                       "mean_next_window": figures.mean_next_window,
                       "total_moves": figures.total_moves}
                for name, figures in self.strategies.items()
            },
        }


def window_loads(series: torch.Tensor, window: int) -> torch.Tensor:
    """Sum consecutive blocks of ``window`` steps: [steps, L, E] -> [steps // window, L, E]."""
    if series.dim() != 3:
        raise ValueError(f"a replay needs a time series [steps, layers, experts], got shape "
                         f"{list(series.shape)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive number of steps, got {window!r}")
    num_windows = series.shape[0] // window
    if num_windows < 2:
        raise ValueError(f"a replay needs at least 2 windows of {window} steps; the series has "
                         f"{series.shape[0]} steps")
    return series[:num_windows * window].unflatten(0, (num_windows, window)).sum(1)


def replay(series: torch.Tensor, window: int, num_replicas: int, num_groups: int,
           num_nodes: int, num_gpus: int, *, algorithms: Sequence[str] = ALGORITHMS,
           seed: int = 0, current: torch.Tensor | None = None, preserve_slots: bool = False,
           renumber_gpus: bool = False, progress: Progress | None = None) -> Replay:
    """Plan on each window and score on it and on the next, for "none" and each algorithm.

    Parameters:
        series: [steps, layers, experts], loads per step
        window: steps per window
        num_replicas, num_groups, num_nodes, num_gpus: the cluster, as in ``rebalance_experts``
        algorithms: the algorithms to replay besides "none"
        seed: the hybrid's seed
        current: [layers, slots], the placement in use before the first window (default: the
            trivial layout); "none" keeps it, and the first window's moves start from it
        preserve_slots: deploy each plan with ``keep_slots`` against the one before it
        renumber_gpus: renumber each plan's nodes and GPUs with ``match_gpus`` against the one
            before it (before keeping slots, when both are asked for)
        progress: called with (windows planned, windows to plan) as planning goes

    Returns the per-window balancedness (mean over layers) in-sample and on the next window,
    and the moves each window's plan costs.
    """
    windows = window_loads(series, window)
    num_windows, num_layers, num_experts = windows.shape
    validate_weight(windows.flatten(0, 1))
    validate_shape(num_layers, num_experts, num_replicas, num_groups, num_nodes, num_gpus)
    unknown = [name for name in algorithms if name not in ALGORITHMS]
    if unknown:
        raise ValueError(f"unknown algorithm {unknown[0]!r}; expected some of {ALGORITHMS}")
    if current is None:
        current = trivial_placement(num_layers, num_experts, num_replicas, device=series.device)
    validate_placement(current, num_layers, num_experts, num_replicas)
    current = current.long()

    planned = windows[:-1]  # [scored windows, L, E]
    following = windows[1:]
    num_scored = num_windows - 1
    strategies = {NO_REBALANCING: _score(planned, following, current.expand(num_scored, -1, -1),
                                         None, num_gpus, num_nodes, [0] * num_scored)}
    cluster = (num_replicas, num_groups, num_nodes, num_gpus)
    planned_so_far = 0

    def advance(num_planned: int) -> None:
        nonlocal planned_so_far
        planned_so_far += num_planned
        if progress is not None:
            progress(planned_so_far, num_scored * len(algorithms))

    for algorithm in algorithms:
        phy2log, logcnt = _plan_windows(planned, cluster, algorithm, seed, advance)
        if preserve_slots or renumber_gpus:
            phy2log = _deploy_in_turn(current, phy2log, logcnt, num_gpus, num_nodes,
                                      renumber_gpus=renumber_gpus, keep_old_slots=preserve_slots)
        before = torch.cat([current.unsqueeze(0), phy2log[:-1]])
        moves = count_moves(before.flatten(0, 1), phy2log.flatten(0, 1)).per_layer
        strategies[algorithm] = _score(planned, following, phy2log, logcnt, num_gpus, num_nodes,
                                       moves.view(num_scored, -1).sum(-1).tolist())
    return Replay(window=window, num_windows=num_windows,
                  dropped_steps=series.shape[0] - num_windows * window, strategies=strategies)


def _plan_windows(windows: torch.Tensor, cluster: tuple[int, int, int, int], algorithm: str,
                  seed: int, advance: Callable[[int], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Plan every window [windows, L, E] -> phy2log [windows, L, R], logcnt [windows, L, E].

    Plans are per layer, so stacking windows along the layer axis gives each window's plan
    exactly; a few windows go into each call so that ``advance`` can report progress.
    """
    num_layers = windows.shape[1]
    chunk = max(1, _ROWS_PER_CALL // num_layers)
    phy2logs, logcnts = [], []
    for block in windows.split(chunk):
        phy2log, _, logcnt = rebalance_experts(block.flatten(0, 1), *cluster,
                                               algorithm=algorithm, seed=seed)
        phy2logs.append(phy2log.unflatten(0, (len(block), num_layers)))
        logcnts.append(logcnt.unflatten(0, (len(block), num_layers)))
        advance(len(block))
    return torch.cat(phy2logs), torch.cat(logcnts)


def _deploy_in_turn(current: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor,
                    num_gpus: int, num_nodes: int, **options: bool) -> torch.Tensor:
    """Deploy the plans [windows, L, R] one after the other from ``current``, each with
    ``deploy`` over the placement deployed before it."""
    deployed = []
    for plan, counts in zip(phy2log, logcnt):
        current = deploy(current, plan, counts, num_gpus, num_nodes, **options)
        deployed.append(current)
    return torch.stack(deployed)


def _score(planned: torch.Tensor, following: torch.Tensor, phy2log: torch.Tensor,
           logcnt: torch.Tensor | None, num_gpus: int, num_nodes: int,
           moves: list[int]) -> StrategyReplay:
    """Balancedness of the plans [windows, L, R] on their own windows and on the next ones."""
    phy2log = phy2log.flatten(0, 1)
    logcnt = None if logcnt is None else logcnt.flatten(0, 1)

    def per_window(loads: torch.Tensor) -> list[float]:
        report = evaluate(loads.flatten(0, 1), phy2log, num_gpus, num_nodes, logcnt)
        return report.balancedness.view(len(loads), -1).mean(-1).tolist()

    return StrategyReplay(in_sample=per_window(planned), next_window=per_window(following),
                          moves=moves)
