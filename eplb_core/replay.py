"""Replay a load time series: plan on one window, score on the next.

A plan is computed from past traffic and then serves the traffic that follows, so its honest
score is on the window after the one it was computed from. The series ``[steps, layers,
experts]`` is cut into consecutive windows of ``window`` steps (trailing steps that do not fill
a window are dropped), each summed to ``[layers, experts]``. For every window i but the last,
each strategy plans on window i and is scored on window i (in-sample) and on window i+1 (next
window). "none" keeps the placement in use (the trivial layout unless one is given).

Under a move budget (``PlanOptions.max_moves``, or each of ``budgets``) each window is planned
from the placement deployed before it, so windows are planned in turn; ``budgets`` replays
several budgets in one call: the points of a frontier of balance against moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from .cluster import DEEPSEEK_V3_EXPERT_BYTES, Cluster
from .cost import check_cost, check_size, replay_cost
from .errors import LoadError, OptionError
from .limits import Limits
from .metrics import active_layers, balancedness, gpu_loads, trivial_placement
from .migration import check_copy_options, count_moves, validate_placement
from .packing import ALGORITHMS
from .plan import Plan, PlanOptions, check_request, deploy_plan, plan_checked
from .policy import validate_weight

NO_REBALANCING = "none"
GIB = 1 << 30
ROWS_PER_CALL = 512  # layers of stacked windows planned per rebalance_experts call

Progress = Callable[[int, int], None]  # (windows planned so far, windows to plan in all)
# A move budget per rebalance: a float in [0, 1] is a share of all slots (layers x slots per
# layer), an int a number of slots, None no budget.
Budget = float | int | None


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
class BudgetReplay:
    """One algorithm replayed under one move budget per rebalance."""

    algorithm: str
    budget: Budget  # as asked
    max_moves: int | None  # the budget in slots; None: the full plan, deployed
    figures: StrategyReplay

    def as_dict(self, expert_bytes: int = DEEPSEEK_V3_EXPERT_BYTES) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "budget": self.budget,
            "max_moves": self.max_moves,
            **_figures_dict(self.figures, expert_bytes),
        }


@dataclass(frozen=True)
class Replay:
    """The replay of a series: per-strategy figures, "none" first, then each algorithm."""

    cluster: Cluster
    options: PlanOptions
    num_steps: int  # steps in the series, idle ones included
    num_layers: int
    num_experts: int
    baseline: str  # "current" (the placement in use) or "trivial"
    window: int  # steps per window
    num_windows: int  # full windows in the series; num_windows - 1 are scored
    dropped_steps: int  # trailing steps that do not fill a window
    strategies: dict[str, StrategyReplay]
    idle_steps: tuple[int, int]  # leading and trailing steps without load, left out
    elapsed_ms: float
    device: str
    notes: list[str] = field(default_factory=list)
    budgets: list[BudgetReplay] = field(default_factory=list)  # per algorithm and budget
    expert_bytes: int = DEEPSEEK_V3_EXPERT_BYTES  # one expert's weights, for the GiB moved

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of ``POST /replay`` and ``eplb replay --json``: the parameters,
        the per-window figures and their means."""
        options = self.options
        return {
            "params": {
                **asdict(self.cluster),
                "seed": options.seed,
                "keep_slots": options.keep_slots,
                "renumber_gpus": options.renumber_gpus,
                "policy": options.policy,
                "spill_slots": options.spill_slots,
                "window": self.window,
                "max_moves": options.max_moves,
                "expert_bytes": self.expert_bytes,
            },
            "num_steps": self.num_steps,
            "num_layers": self.num_layers,
            "num_experts": self.num_experts,
            "baseline": self.baseline,
            "window": self.window,
            "num_windows": self.num_windows,
            "dropped_steps": self.dropped_steps,
            "idle_steps": {"leading": self.idle_steps[0], "trailing": self.idle_steps[1]},
            "notes": self.notes,
            "strategies": {
                name: _figures_dict(figures, self.expert_bytes)
                for name, figures in self.strategies.items()
            },
            "budgets": [entry.as_dict(self.expert_bytes) for entry in self.budgets],
            "elapsed_ms": self.elapsed_ms,
            "device": self.device,
        }


def _figures_dict(figures: StrategyReplay, expert_bytes: int) -> dict[str, Any]:
    per_window = figures.total_moves / len(figures.moves)
    return {
        "in_sample": figures.in_sample,
        "next_window": figures.next_window,
        "moves": figures.moves,
        "mean_in_sample": figures.mean_in_sample,
        "mean_next_window": figures.mean_next_window,
        "total_moves": figures.total_moves,
        "moves_per_window": per_window,
        "gib_per_window": per_window * expert_bytes / GIB,
    }


def budget_moves(budget: Budget, num_layers: int, num_replicas: int) -> int | None:
    """A budget in slots per rebalance: a float in [0, 1] is that share of all
    ``num_layers * num_replicas`` slots (rounded down), an int that many slots, None none.
    ``OptionError`` for anything else."""
    if budget is None:
        return None
    if isinstance(budget, float) and 0 <= budget <= 1:
        return int(budget * num_layers * num_replicas)
    if isinstance(budget, int) and not isinstance(budget, bool) and budget >= 0:
        return budget
    raise OptionError(
        f"a move budget is a share of all slots (a float in 0..1), a number of "
        f"slots (an int >= 0) or None, got {budget!r}"
    )


def max_moves_of(
    max_moves: int | None, move_budget: float | None, num_layers: int, num_replicas: int
) -> int | None:
    """``PlanOptions.max_moves`` from either form people give it: a number of slots, or a
    share of all ``num_layers * num_replicas`` slots (``budget_moves``); not both."""
    if max_moves is not None and move_budget is not None:
        raise OptionError(
            "give the move budget as max_moves (slots) or move_budget (a share "
            "of all slots), not both"
        )
    return (
        max_moves
        if move_budget is None
        else budget_moves(float(move_budget), num_layers, num_replicas)
    )


def trim_idle_steps(series: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Drop the leading and trailing steps without any load (an engine's recorder buffer that
    had not filled): [steps, L, E] -> the steps between, and how many went from each end."""
    busy = (series.flatten(1).amax(-1) > 0).nonzero().flatten()  # loads are >= 0
    if busy.numel() == 0:
        raise LoadError(f"the series has no load in any of its {series.shape[0]} steps")
    first, last = int(busy[0]), int(busy[-1])
    return series[first : last + 1], (first, series.shape[0] - 1 - last)


def window_loads(series: torch.Tensor, window: int) -> torch.Tensor:
    """Sum consecutive blocks of ``window`` steps: [steps, L, E] -> [steps // window, L, E]."""
    if series.dim() != 3:
        raise LoadError(
            f"a replay needs a time series [steps, layers, experts], got shape {list(series.shape)}"
        )
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise OptionError(f"window must be a positive number of steps, got {window!r}")
    num_windows = series.shape[0] // window
    if num_windows < 2:
        raise OptionError(
            f"a replay needs at least 2 windows of {window} steps; the series has "
            f"{series.shape[0]} steps with load"
        )
    return series[: num_windows * window].view(num_windows, window, *series.shape[1:]).sum(1)


def replay(
    series: torch.Tensor,
    window: int,
    cluster: Cluster,
    options: PlanOptions = PlanOptions(),
    *,
    algorithms: Sequence[str] = ALGORITHMS,
    current: torch.Tensor | None = None,
    progress: Progress | None = None,
    budgets: Sequence[Budget] = (),
    notes: Sequence[str] = (),
    expert_bytes: int = DEEPSEEK_V3_EXPERT_BYTES,
    limits: Limits | None = None,
) -> Replay:
    """Plan on each window and score on it and on the next, for "none" and each algorithm.

    Parameters:
        series: [steps, layers, experts], loads per step; leading and trailing steps without
            load are left out first (``trim_idle_steps``)
        window: steps per window
        cluster: the cluster planned for
        options: as for ``plan.make_plan`` (its ``algorithm`` is replaced by each of
            ``algorithms``); with ``renumber_gpus`` / ``keep_slots`` each plan is deployed over
            the placement deployed before it; with ``max_moves`` each window is planned from
            it under that budget
        algorithms: the algorithms to replay besides "none"
        current: [layers, slots], the placement in use before the first window (default: the
            trivial layout); "none" keeps it, and the first window's moves start from it
        progress: called with (windows planned, windows to plan) as planning goes; it may raise
            ``errors.CancelledError`` to stop the replay
        budgets: move budgets per rebalance to replay each algorithm under besides
            (``Budget``: a share of all slots as a float in 0..1, a number of slots as an int;
            None is the full plan deployed with renumbering and kept slots), each window
            planned from the placement deployed before it (``Replay.budgets``)
        notes: what the caller knows about the series (from reading its file), shown first
        expert_bytes: one expert's weights in one layer, for the GiB each rebalance copies
        limits: the sizes, windows, work and memory a caller (the service) allows, checked
            before any plan

    Returns the per-window balancedness (mean over the layers with load) in-sample and on the
    next window, and the moves each window's plan costs.
    """
    if series.dim() != 3:
        raise LoadError(
            f"a replay needs a time series [steps, layers, experts], got shape {list(series.shape)}"
        )
    started = time.perf_counter()
    validate_weight(series.flatten(0, 1))  # each step, before steps are trimmed and summed
    trimmed, idle_steps = trim_idle_steps(series)
    windows = window_loads(trimmed, window)
    num_windows, num_layers, num_experts = windows.shape
    unknown = [name for name in algorithms if name not in ALGORITHMS]
    if unknown:
        raise OptionError(f"unknown algorithm {unknown[0]!r}; expected some of {ALGORITHMS}")
    policy = check_request(windows.flatten(0, 1), cluster, options)
    check_copy_options(expert_bytes)
    # A list, not a dict: the share 1.0 and the single slot 1 are equal keys.
    budget_options = [
        (budget, _under_budget(options, budget_moves(budget, num_layers, cluster.num_replicas)))
        for budget in budgets
    ]
    baseline = "trivial" if current is None else "current"
    if current is None:
        current = trivial_placement(
            num_layers, num_experts, cluster.num_replicas, device=series.device
        )
    validate_placement(current, num_layers, num_experts, cluster.num_replicas)
    current = current.to(series.device, torch.int64)
    if limits is not None:
        check_size(series.shape, cluster, limits)
        limits.check(
            "max_windows", num_windows, f"windows of {window} steps in {trimmed.shape[0]} steps"
        )
        check_cost(
            replay_cost(
                windows,
                cluster,
                policy,
                options,
                len(algorithms),
                len(budgets),
                ROWS_PER_CALL,
                series.device,
            ),
            limits,
        )

    planned = windows[:-1]  # [scored windows, L, E]
    following = windows[1:]
    num_scored = num_windows - 1
    kept = current.expand(num_scored, -1, -1)
    strategies = {NO_REBALANCING: _score(planned, following, kept, None, cluster, [0] * num_scored)}
    planned_so_far = 0

    def advance(num_planned: int) -> None:
        nonlocal planned_so_far
        planned_so_far += num_planned
        if progress is not None:
            progress(planned_so_far, num_scored * len(algorithms) * (1 + len(budgets)))

    def replayed(each: PlanOptions) -> StrategyReplay:
        if each.max_moves is not None:
            phy2log, logcnt = _plan_in_turn(planned, current, cluster, each, policy, advance)
        else:
            phy2log, logcnt = _plan_windows(planned, cluster, each, policy, advance)
            if each.renumber_gpus or each.keep_slots:
                phy2log = _deploy_in_turn(current, phy2log, logcnt, cluster, policy, each)
        before = torch.cat([current.unsqueeze(0), phy2log[:-1]])
        moves = count_moves(before.flatten(0, 1), phy2log.flatten(0, 1)).per_layer
        return _score(
            planned,
            following,
            phy2log,
            logcnt,
            cluster,
            moves.view(num_scored, -1).sum(-1).tolist(),
        )

    for algorithm in algorithms:
        strategies[algorithm] = replayed(replace(options, algorithm=algorithm))
    frontier = [
        BudgetReplay(
            algorithm, budget, each.max_moves, replayed(replace(each, algorithm=algorithm))
        )
        for algorithm in algorithms
        for budget, each in budget_options
    ]
    if series.device.type == "cuda":
        torch.cuda.synchronize(series.device)
    return Replay(
        cluster=cluster,
        options=options,
        num_steps=series.shape[0],
        num_layers=num_layers,
        num_experts=num_experts,
        baseline=baseline,
        window=window,
        num_windows=num_windows,
        dropped_steps=trimmed.shape[0] - num_windows * window,
        strategies=strategies,
        idle_steps=idle_steps,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        device=str(series.device),
        notes=[*notes, *_notes(idle_steps)],
        budgets=frontier,
        expert_bytes=expert_bytes,
    )


def _under_budget(options: PlanOptions, max_moves: int | None) -> PlanOptions:
    """The options of a frontier's point: ``max_moves`` per rebalance, the plan deployed with
    renumbered GPUs and kept slots (all of the budget's kind move fewer slots)."""
    return replace(options, max_moves=max_moves, keep_slots=True, renumber_gpus=True)


def _notes(idle_steps: tuple[int, int]) -> list[str]:
    leading, trailing = idle_steps
    if not leading and not trailing:
        return []
    return [
        f"left out {leading} leading and {trailing} trailing steps without load (a "
        f"recorder buffer that had not filled)"
    ]


def _plan_windows(
    windows: torch.Tensor,
    cluster: Cluster,
    options: PlanOptions,
    policy: str,
    advance: Callable[[int], None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plan every window [windows, L, E] -> phy2log [windows, L, R], logcnt [windows, L, E].

    Plans are per layer, so stacking windows along the layer axis gives each window's plan
    exactly; a few windows go into each call so that ``advance`` can report progress.
    """
    num_layers = windows.shape[1]
    chunk = max(1, ROWS_PER_CALL // num_layers)
    undeployed = replace(options, keep_slots=False, renumber_gpus=False)
    phy2logs, logcnts = [], []
    for block in torch.split(windows, chunk):
        plan = plan_checked(block.flatten(0, 1), cluster, undeployed, policy)
        phy2logs.append(plan.phy2log.view(len(block), num_layers, -1))
        logcnts.append(plan.logcnt.view(len(block), num_layers, -1))
        advance(len(block))
    return torch.cat(phy2logs), torch.cat(logcnts)


def _plan_in_turn(
    windows: torch.Tensor,
    current: torch.Tensor,
    cluster: Cluster,
    options: PlanOptions,
    policy: str,
    advance: Callable[[int], None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plan the windows [windows, L, E] one after the other, each from the placement planned
    before it (``current`` first): phy2log [windows, L, R], logcnt [windows, L, E]."""
    phy2logs, logcnts = [], []
    for loads in windows:
        plan = plan_checked(loads, cluster, options, policy, current)
        phy2logs.append(plan.phy2log)
        logcnts.append(plan.logcnt)
        current = plan.phy2log
        advance(1)
    return torch.stack(phy2logs), torch.stack(logcnts)


def _deploy_in_turn(
    current: torch.Tensor,
    phy2log: torch.Tensor,
    logcnt: torch.Tensor,
    cluster: Cluster,
    policy: str,
    options: PlanOptions,
) -> torch.Tensor:
    """Deploy the plans [windows, L, R] one after the other from ``current``, each over the
    placement deployed before it."""
    deployed = []
    for plan, counts in zip(phy2log, logcnt):
        current = deploy_plan(Plan(plan, counts), current, cluster, policy, options).phy2log
        deployed.append(current)
    return torch.stack(deployed)


def _score(
    planned: torch.Tensor,
    following: torch.Tensor,
    phy2log: torch.Tensor,
    logcnt: torch.Tensor | None,
    cluster: Cluster,
    moves: list[int],
) -> StrategyReplay:
    """Balancedness of the plans [windows, L, R] on their own windows and on the next ones,
    each the mean over the window's layers with load."""
    phy2log = phy2log.flatten(0, 1)
    logcnt = None if logcnt is None else logcnt.flatten(0, 1)

    def per_window(loads: torch.Tensor) -> list[float]:
        flat = loads.flatten(0, 1)
        per_layer = balancedness(gpu_loads(flat, phy2log, cluster.num_gpus, logcnt))
        active = active_layers(loads).double()  # [windows, L]
        sums = (per_layer.view_as(active) * active).sum(-1)
        return (sums / active.sum(-1)).tolist()

    return StrategyReplay(
        in_sample=per_window(planned), next_window=per_window(following), moves=moves
    )
