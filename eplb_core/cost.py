"""What one plan costs, from its shape alone: time and peak memory, before any work is done.

``plan_cost`` estimates one ``make_plan`` call (checks, placement, log2phy and the invariant
check) from the number of layers and experts, the cluster, the policy and the packing options.
It is pure arithmetic, so a service can refuse a request that would take too long or too much
memory (``Limits.max_work``, ``Limits.max_memory_bytes``) before it starts. Costs add up
(several calls, e.g. the windows of a replay) and scale (``3 * cost``).

Units: ``work`` is seconds of one torch thread on this project's 2-core CPU; ``peak_bytes`` is
the rise of the process's resident memory during the call (the loads passed in not included).
Both are upper-ish: each stage is costed at its slowest path, the LPT at its worst case (loads
on which it takes one item a step), the hybrid's swap search for all its rounds, and log2phy
``[layers, experts, most replicas]`` at its largest, one expert taking every spare slot of its
node, unless the caller knows a tighter ``max_replicas`` (``replica_bound`` of the loads).
``benchmarks/cost.py`` prints the estimates against measurements on a grid of shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from .cluster import Cluster
from .errors import OptionError
from .limits import Limits
from .packing import (
    _DENSE_SWAP_ITEMS,
    _SWAP_ELEMENTS,
    ALGORITHMS,
    CPU_CANDIDATES,
    CUDA_CANDIDATES,
    default_rounds,
)

if TYPE_CHECKING:
    from .plan import PlanOptions
from .replication import _MAX_CANDIDATE_ELEMENTS

# Calibrated on this project's 2-core CPU, one torch thread (benchmarks/cost.py):
_OP = 5e-6  # one small torch op, Python included
_ELEMENT = 2e-9  # one element of an elementwise op, gather or scatter
_SORT = 6e-9  # one element of a row sort, per log2 of the row's length
_PAIR = 5e-9  # one (heavy item, pack, item) triple of a dense swap round
_SEARCHED = 180e-9  # one item of a swap round by binary search
# log2phy as Plan.check handles it now (a boolean mask, its int64 sum, boolean indexing); a
# check that gathers each slot's entry instead needs about half of both.
_LOG2PHY_ENTRY = 25e-9  # one log2phy entry: filled, then checked
_LOG2PHY_BYTES = 18  # int64 log2phy, the check's mask and its int64 sum
_CANDIDATE_BYTES = 48  # one replication candidate (expert, j, value, sort, gathers)
_ITEM_BYTES = 64  # one item of a packing (sorted values and ids, codes, pack, rank, inverse)
_HYBRID_BYTES = 72  # one item of one hybrid candidate (orders, noise, slots, weights)
_BASE_BYTES = 2 << 20  # allocator slack of any call


@dataclass(frozen=True)
class Cost:
    """Estimated ``work`` (seconds on this project's 2-core CPU, one thread) and
    ``peak_bytes``. ``a + b`` is the cost of both calls (memory added too, which is the safe
    side when the first call's results are kept); ``n * cost`` that of n such calls."""

    work: float
    peak_bytes: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.work + other.work, self.peak_bytes + other.peak_bytes)

    def __mul__(self, times: float) -> Cost:
        if times < 0:
            raise ValueError(f"a cost cannot be scaled by a negative number ({times})")
        return Cost(self.work * times, math.ceil(self.peak_bytes * times))

    __rmul__ = __mul__


ZERO = Cost(0.0, 0)


def plan_cost(
    num_layers: int,
    num_experts: int,
    cluster: Cluster,
    policy: str,
    algorithm: str,
    num_candidates: int | None = None,
    num_rounds: int | None = None,
    device: torch.device | str = "cpu",
    *,
    max_replicas: int | None = None,
) -> Cost:
    """The cost of one ``make_plan`` call for loads of shape [num_layers, num_experts].

    Parameters:
        cluster, policy: the cluster and the resolved policy ("hierarchical" or "global",
            as ``Cluster.check`` returns it)
        algorithm, num_candidates, num_rounds: the packing and the hybrid's search (None: the
            defaults of ``eplb_core.packing`` for ``device``)
        max_replicas: the most replicas one expert can get, if known (``replica_bound``);
            None takes the worst case, every spare slot of a node on one expert
    """
    if policy not in ("hierarchical", "global"):
        raise OptionError(
            f"plan_cost needs a resolved policy, 'hierarchical' or 'global', got {policy!r}"
        )
    if algorithm not in ALGORITHMS:
        raise OptionError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    layers, experts = num_layers, num_experts
    groups, nodes = (cluster.num_groups, cluster.num_nodes) if policy == "hierarchical" else (1, 1)
    slots = cluster.num_replicas
    rows = layers * nodes
    node_experts, node_slots = experts // nodes, slots // nodes
    gpus_per_node = cluster.num_gpus // nodes
    candidates = num_candidates or _default_candidates(device)

    def pack(num_rows: int, items: int, num_packs: int) -> Cost:
        return packing_cost(num_rows, items, num_packs, algorithm, candidates, num_rounds)

    most = node_slots - node_experts + 1
    if max_replicas is not None:
        most = max(1, min(most, max_replicas))
    log2phy = layers * experts * most
    checks = Cost(60 * _OP + 12 * layers * experts * _ELEMENT, 16 * layers * experts)
    plan = Cost(
        40 * _OP + 30 * layers * slots * _ELEMENT + log2phy * _LOG2PHY_ENTRY,
        48 * layers * slots + log2phy * _LOG2PHY_BYTES,
    )
    stages = [
        pack(layers, groups, nodes),
        _replication(rows, node_experts, node_slots),
        pack(rows, node_slots, gpus_per_node),
    ]
    # Stages run one after another: time adds up, memory peaks at the largest stage, on top of
    # what the plan keeps ([layers, slots] int64 tensors) and the final log2phy and its check.
    work = checks.work + plan.work + sum(stage.work for stage in stages) + 20 * _OP
    peak = (
        _BASE_BYTES
        + checks.peak_bytes
        + max(plan.peak_bytes, max(stage.peak_bytes for stage in stages) + 32 * layers * slots)
    )
    return Cost(work, peak)


def _replication(rows: int, experts: int, slots: int) -> Cost:
    """Replicating [rows, experts] into ``slots`` per row: about ``slots`` candidate values per
    row, built and sorted in chunks of rows."""
    extra = slots - experts
    outputs = 24 * rows * slots + 8 * rows * experts
    if extra == 0:
        return Cost(6 * _OP + 3 * rows * slots * _ELEMENT, outputs)
    width = slots + 1
    chunk = max(1, _MAX_CANDIDATE_ELEMENTS // width)
    chunks = -(-rows // chunk)
    work = (
        30 * _OP
        + chunks * 20 * _OP
        + 12 * rows * experts * _ELEMENT
        + rows * width * (16 * _ELEMENT + math.log2(width + 1) * _SORT)
    )
    return Cost(work, outputs + 40 * rows * experts + min(rows, chunk) * width * _CANDIDATE_BYTES)


def packing_cost(
    rows: int,
    items: int,
    packs: int,
    algorithm: str,
    num_candidates: int | None = None,
    num_rounds: int | None = None,
    device: torch.device | str = "cpu",
) -> Cost:
    """The cost of ``balanced_packing`` of [rows, items] into ``packs`` packs, at its worst
    case (the LPT handing over to its item loop; every swap round of every hybrid candidate)."""
    per_pack = items // packs
    if rows == 0 or per_pack == 1:
        return Cost(4 * _OP + 2 * rows * items * _ELEMENT, 16 * rows * items)
    work = 12 * _OP + rows * items * (8 * _ELEMENT + math.log2(items) * _SORT)
    peak = _ITEM_BYTES * rows * items
    if packs == 1:
        return Cost(work, peak)
    if per_pack == 2:
        return Cost(work + 10 * _OP + rows * packs * math.log2(packs) * _SORT, peak)
    # The item loop: n steps of 5 ops, three on [rows, packs]. The round-at-a-time loop (5
    # packs or more) takes about n/m steps on most loads; past 2 n/m + 8 it hands over to the
    # item loop, which is the worst case costed here.
    item_step = 5 * _OP + rows * packs * 1.5 * _ELEMENT
    work += items * item_step
    if packs >= 5:
        round_step = 16 * _OP + rows * packs * (10 * _ELEMENT + math.log2(packs) * _SORT / 2)
        work += (2 * per_pack + 8) * round_step
    if algorithm != "hybrid":
        return Cost(work, peak)
    hybrid_cost = _search(
        rows,
        items,
        packs,
        num_candidates or _default_candidates(device),
        default_rounds(packs) if num_rounds is None else num_rounds,
    )
    return Cost(work + hybrid_cost.work, max(peak, hybrid_cost.peak_bytes) + peak)


def _search(rows: int, items: int, packs: int, candidates: int, rounds: int) -> Cost:
    """The hybrid's multi-start search: candidate orders, their placement in rounds, and every
    swap round for every candidate (none dropping out early), in chunks of rows."""
    per_pack = items // packs
    chunk = max(1, _SWAP_ELEMENTS // (candidates * items))
    chunks = -(-rows // chunk)
    problems = rows * candidates
    elements = problems * items
    orders = 20 * _OP * chunks + elements * (12 * _ELEMENT + math.log2(items) * _SORT)
    placing = chunks * per_pack * 6 * _OP + elements * (8 * _ELEMENT + 2 * math.log2(packs) * _SORT)
    pairs_per_item = min(per_pack, _DENSE_SWAP_ITEMS)
    if per_pack <= _DENSE_SWAP_ITEMS:
        per_round = elements * (pairs_per_item * _PAIR + 30 * _ELEMENT)
    else:
        per_round = elements * _SEARCHED
    swap_chunk = max(1, _SWAP_ELEMENTS // (packs * per_pack * pairs_per_item))
    swap_chunks = -(-min(problems, chunk * candidates) // swap_chunk) * chunks
    swaps = rounds * (swap_chunks * 45 * _OP + per_round)
    finish = 20 * _OP * chunks + elements * 12 * _ELEMENT
    peak = (
        min(rows, chunk) * candidates * items * _HYBRID_BYTES
        + min(problems, swap_chunk) * packs * per_pack * pairs_per_item * 8
    )
    return Cost(orders + placing + swaps + finish, peak)


def _default_candidates(device: torch.device | str) -> int:
    return CUDA_CANDIDATES if torch.device(device).type == "cuda" else CPU_CANDIDATES


def replica_bound(weight: torch.Tensor, cluster: Cluster, policy: str) -> int:
    """The most replicas any one expert can get in a plan of ``weight`` [layers, experts], at
    most: ``floor(w * slots / W) + 1`` per expert (``replication._replica_depths``), where under
    the hierarchical policy W is at least the load of the expert's own group and slots are a
    node's. Costs a pass over the loads; a tighter ``max_replicas`` for ``plan_cost``."""
    loads = weight.double()
    if policy == "hierarchical":
        slots = cluster.num_replicas // cluster.num_nodes
        spare = slots - weight.shape[1] // cluster.num_nodes
        loads = loads.view(loads.shape[0], cluster.num_groups, -1)
        totals = loads.sum(-1, keepdim=True)
        # A node whose groups all carry nothing gives its first expert every spare slot.
        idle = int((totals == 0).sum(-2).max()) >= cluster.num_groups // cluster.num_nodes
    else:
        slots = cluster.num_replicas
        spare = slots - weight.shape[1]
        totals = loads.sum(-1, keepdim=True)
        idle = bool((totals == 0).any())
    if spare == 0:
        return 1
    if idle:
        return spare + 1
    most = float((loads / totals.clamp(min=1e-300)).max()) * slots * (1 + 1e-6)
    return int(min(spare, math.floor(most))) + 1


# Measured against the plain plan of the same shape (benchmarks.policies, benchmarks.migration):
SPILL_FACTOR = 3.0  # the spill policy repacks the nodes it changes: 2.5-3x the hierarchical
BUDGET_FACTOR = 3.0  # a move budget's descents and the full plan: at most about 3x
_RESPONSE_BYTES = 12  # one number of an answer, as JSON text


def rebalance_cost(
    weight: torch.Tensor,
    cluster: Cluster,
    policy: str,
    options: PlanOptions,
    *,
    rows: int | None = None,
    device: torch.device | str = "cpu",
) -> Cost:
    """The cost of ``plan.rebalance`` of ``weight`` [layers, experts] (or of planning ``rows``
    such layers at once, e.g. the stacked windows of a replay): the plan under its policy and
    budget, its figures, and its answer (every number of it, as JSON text)."""
    num_layers, num_experts = weight.shape
    rows = num_layers if rows is None else rows
    planned = "hierarchical" if policy == "spill" else policy
    most = replica_bound(weight, cluster, planned)
    cost = plan_cost(
        rows,
        num_experts,
        cluster,
        planned,
        options.algorithm,
        options.num_candidates,
        options.num_rounds,
        device,
        max_replicas=most,
    )
    if policy == "spill":
        cost = SPILL_FACTOR * cost
    if options.max_moves is not None:
        cost = BUDGET_FACTOR * cost
    numbers = rows * (3 * cluster.num_replicas + num_experts * (most + 1) + 6 * cluster.num_gpus)
    figures = Cost(40 * _OP + numbers * 20 * _ELEMENT, numbers * _RESPONSE_BYTES)
    return cost + figures


def replay_cost(
    windows: torch.Tensor,
    cluster: Cluster,
    policy: str,
    options: PlanOptions,
    num_algorithms: int,
    num_budgets: int,
    rows_per_call: int,
    device: torch.device | str = "cpu",
) -> Cost:
    """The cost of ``replay.replay`` of ``windows`` [windows, layers, experts]: each algorithm
    plans every scored window (stacked, ``rows_per_call`` layers a call), and once more under
    each budget, one window after the other."""
    num_windows, num_layers, _ = windows.shape
    scored = max(1, num_windows - 1)
    stacked = windows.flatten(0, 1)
    call_rows = min(scored * num_layers, max(num_layers, rows_per_call))
    calls = -(-scored * num_layers // call_rows)
    one_call = rebalance_cost(stacked, cluster, policy, options, rows=call_rows, device=device)
    budgeted = rebalance_cost(
        stacked, cluster, policy, replace(options, max_moves=0), rows=num_layers, device=device
    )
    work = num_algorithms * (calls * one_call.work + num_budgets * scored * budgeted.work)
    return Cost(work, max(one_call.peak_bytes, budgeted.peak_bytes))


def check_size(shape: Sequence[int], cluster: Cluster, limits: Limits) -> None:
    """``LimitError`` when the loads of ``shape`` [(steps,) layers, experts], or the slots, are
    over the limits (the limits a load file is read under, for loads from anywhere)."""
    limits.check("max_layers", shape[-2], "layers")
    limits.check("max_experts", shape[-1], "experts")
    limits.check("max_replicas", cluster.num_replicas, "slots (num_replicas)")
    limits.check(
        "max_elements",
        math.prod(shape),
        "load values (" + " x ".join(f"{size:,}" for size in shape) + ")",
    )


def check_cost(cost: Cost, limits: Limits) -> None:
    """``LimitError`` when a request's estimated work or memory is over the limits."""
    limits.check("max_work", round(cost.work, 1), "seconds of estimated work")
    limits.check("max_memory_bytes", cost.peak_bytes, "bytes of estimated memory")
