"""The advisor's sweeps: each point is the pipeline's own rebalance and replay figures."""

from __future__ import annotations

import pytest
import torch

from eplb_core import Cluster, PlanOptions, rebalance
from eplb_core.errors import CancelledError
from eplb_core.replay import replay
from eplb_core.sweep import default_replicas, sweep
from eplb_core.synthetic import drifting_series, zipf_loads

CLUSTER = Cluster(80, 8, 2, 8)  # 64 experts in 8 groups, 2 nodes of 4 GPUs
GREEDY = PlanOptions(algorithm="greedy")


def test_points_are_the_single_plan_figures() -> None:
    weight = zipf_loads(layers=4, experts=64, seed=3)

    result = sweep(weight, CLUSTER, GREEDY, num_replicas=[64, 72, 96], expert_bytes=1000)

    assert [point.num_replicas for point in result.points] == [64, 72, 96]
    for point in result.points:
        single = rebalance(weight, Cluster(point.num_replicas, 8, 2, 8), GREEDY)
        assert point.mean_balancedness == single.after.mean_balancedness
        assert point.bound == pytest.approx(float(single.bound.mean()))
        assert point.mean_nodes_per_token == single.after.mean_nodes_per_token
        assert point.slots_per_gpu == point.num_replicas // 8
        assert point.extra_memory_per_gpu_bytes == 1000 * 4 * (point.num_replicas - 64) // 8
        assert point.next_window is None and point.moves_per_1000_steps is None


def test_window_points_are_the_replay_figures() -> None:
    series = drifting_series(60, layers=3, experts=64, seed=4)

    result = sweep(
        series, CLUSTER, GREEDY, num_replicas=[80], windows=[10, 20], expert_bytes=1 << 30
    )

    assert [(p.num_replicas, p.window) for p in result.points] == [(80, 10), (80, 20)]
    for point in result.points:
        replayed = replay(series, point.window, CLUSTER, GREEDY, algorithms=["greedy"])
        figures = replayed.strategies["greedy"]
        assert point.next_window == figures.mean_next_window
        moves = figures.total_moves / (len(figures.moves) * point.window) * 1000
        assert point.moves_per_1000_steps == pytest.approx(moves)
        assert point.gib_per_1000_steps == pytest.approx(moves)  # 1 GiB per expert
        # In-sample: the plan of the whole series, as /rebalance plans an uploaded series.
        assert point.mean_balancedness == rebalance(series, CLUSTER, GREEDY).after.mean_balancedness


def test_policies_slots_and_windows_come_in_the_order_asked() -> None:
    series = drifting_series(40, layers=2, experts=64, seed=5)

    result = sweep(
        series,
        CLUSTER,
        GREEDY,
        num_replicas=[96, 80],
        windows=[20, 10],
        policies=[("global", 0), ("spill", 1)],
    )

    assert [(p.policy, p.num_replicas, p.window) for p in result.points] == [
        ("global", 96, 20),
        ("global", 96, 10),
        ("global", 80, 20),
        ("global", 80, 10),
        ("spill", 96, 20),
        ("spill", 96, 10),
        ("spill", 80, 20),
        ("spill", 80, 10),
    ]
    document = result.as_dict()
    assert document["params"]["num_replicas"] == [96, 80]
    assert document["params"]["windows"] == [20, 10]
    assert len(document["points"]) == 8


def test_default_slot_counts_add_slots_per_gpu() -> None:
    assert default_replicas(256, 32) == [256, 288, 320, 384, 512]
    assert default_replicas(250, 32, max_replicas=300) == [256, 288]
    result = sweep(zipf_loads(layers=2, experts=64), CLUSTER, GREEDY)
    assert [point.num_replicas for point in result.points] == [64, 72, 80, 96, 128]


def test_progress_counts_every_plan_and_can_stop_the_sweep() -> None:
    series = drifting_series(30, layers=2, experts=64, seed=6)
    calls: list[tuple[int, int]] = []
    sweep(
        series,
        CLUSTER,
        GREEDY,
        num_replicas=[80, 96],
        windows=[10],
        progress=lambda done, total: calls.append((done, total)),
    )
    # per slot count: one plan of the whole series, then 2 scored windows of 10 steps
    assert calls[-1] == (6, 6) and all(total == 6 for _, total in calls)

    def stop(done: int, total: int) -> None:
        raise CancelledError("stopped")

    with pytest.raises(CancelledError):
        sweep(series, CLUSTER, GREEDY, num_replicas=[80, 96], progress=stop)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_replicas": []}, "num_replicas is empty"),
        (
            {"num_replicas": [80, 84]},
            "num_replicas 84: 84 slots cannot be split evenly over 8 GPUs",
        ),
        ({"num_replicas": [56]}, "56 slots cannot hold 64 experts"),
        ({"windows": [10]}, "windows are for a time series"),
        ({"expert_bytes": -1}, "expert_bytes must be a whole number of bytes >= 0"),
        ({"policies": [("spill", 20)]}, "spill_slots"),
    ],
)
def test_a_sweep_is_refused_as_a_whole(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sweep(zipf_loads(layers=2, experts=64), CLUSTER, GREEDY, **kwargs)


def test_windows_must_fit_the_series() -> None:
    series = torch.ones(10, 2, 64)
    with pytest.raises(ValueError, match="window 6: a replay needs at least 2 windows"):
        sweep(series, CLUSTER, GREEDY, num_replicas=[80], windows=[5, 6])
