"""Speed of the advisor's sweeps against the single calls they are made of.

    python -m benchmarks.advisor [--repeat 3] [--threads 1]

On DeepSeek-V3 shaped loads (58 x 256, prefill 288/8/4/32), for greedy and hybrid, the median
time of: one ``rebalance``; a sweep of 8 slot counts (256 .. 512) on that one window; one
``replay`` of a 1,000-step drifting series in windows of 50; and a sweep of 4 window sizes
(25, 50, 100, 200) over it. The issue's targets: each sweep within 4x its single call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from eplb_core import Cluster, PlanOptions, rebalance
from eplb_core.replay import replay
from eplb_core.sweep import sweep
from eplb_core.synthetic import drifting_series, zipf_loads

CLUSTER = Cluster(288, 8, 4, 32)
SLOTS = [256, 288, 320, 352, 384, 416, 448, 512]
WINDOWS = [25, 50, 100, 200]


def median_ms(run: Callable[[], object], repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    weight, series = zipf_loads(), drifting_series(1000)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; median ms of "
        f"{args.repeat} runs"
    )
    print("| algorithm | one plan | 8 slot counts | ratio | one replay | 4 windows | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for algorithm in ("greedy", "hybrid"):
        options = PlanOptions(algorithm=algorithm)
        one = median_ms(lambda o=options: rebalance(weight, CLUSTER, o), args.repeat)
        slots = median_ms(
            lambda o=options: sweep(weight, CLUSTER, o, num_replicas=SLOTS), args.repeat
        )
        replayed = median_ms(
            lambda o=options: replay(series, 50, CLUSTER, o, algorithms=[o.algorithm]), args.repeat
        )
        windows = median_ms(
            lambda o=options: sweep(series, CLUSTER, o, num_replicas=[288], windows=WINDOWS),
            args.repeat,
        )
        print(
            f"| {algorithm} | {one:.1f} | {slots:.1f} | {slots / one:.1f}x | "
            f"{replayed:.0f} | {windows:.0f} | {windows / replayed:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
