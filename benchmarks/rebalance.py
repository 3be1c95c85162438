"""Speed and quality of the greedy and hybrid policies on DeepSeek-V3-shaped workloads.

    python -m benchmarks.rebalance [--repeat 5] [--json out.json] [--seed-reference]

For every cluster config and workload it prints the mean balancedness (GPU level) of the
greedy and the hybrid, the upper bound, and the median time per call of: the published
algorithm as it runs (``tests.reference.published_rebalance``), our greedy and our hybrid.
``--seed-reference`` also runs the seed spec's hybrid once (minutes per config on a CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from tests.reference import published_rebalance, seed_rebalance
from eplb_core import Cluster, rebalance_experts
from eplb_core.metrics import balancedness_bound, score
from eplb_core.synthetic import WORKLOADS

CONFIGS = {
    # name: (num_replicas, num_groups, num_nodes, num_gpus)
    "prefill": (288, 8, 4, 32),
    "decode": (288, 8, 18, 144),
    # 8 groups over 5 nodes: the global policy, where the nodes need not split the GPUs.
    "global-320": (320, 8, 5, 64),
}


@dataclass
class Row:
    config: str
    workload: str
    greedy: float
    hybrid: float
    bound: float
    published_ms: float
    greedy_ms: float
    hybrid_ms: float
    seed: float | None = None
    seed_s: float | None = None


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(config: str, workload: str, weight: torch.Tensor, args: argparse.Namespace) -> Row:
    shape = CONFIGS[config]
    cluster = Cluster(*shape)

    def balance(plan: tuple[torch.Tensor, ...]) -> float:
        return score(weight, plan[0].cpu(), cluster, plan[2].cpu()).mean_balancedness

    def run(algorithm: str) -> tuple[torch.Tensor, ...]:
        return rebalance_experts(weight.to(args.device), *shape, algorithm=algorithm,
                                 num_candidates=args.candidates, num_rounds=args.rounds)

    greedy_plan = run("greedy")
    published = published_rebalance(weight, *shape)
    if not torch.equal(greedy_plan[0].cpu(), published[0]):
        raise SystemExit(f"{config}/{workload}: greedy differs from the published plan")
    row = Row(
        config=config, workload=workload,
        greedy=balance(greedy_plan), hybrid=balance(run("hybrid")),
        bound=float(balancedness_bound(weight, cluster, cluster.auto_policy).mean()),
        published_ms=median_ms(lambda: published_rebalance(weight, *shape), args.published_repeat),
        greedy_ms=median_ms(lambda: run("greedy"), args.repeat),
        hybrid_ms=median_ms(lambda: run("hybrid"), args.repeat),
    )
    if args.seed_reference:
        start = time.perf_counter()
        row.seed = balance(seed_rebalance(weight, *shape))
        row.seed_s = time.perf_counter() - start
    return row


def print_table(rows: list[Row]) -> None:
    head = (f"{'config':<11} {'workload':<8} {'greedy':>8} {'hybrid':>8} {'seed':>8} {'bound':>8}"
            f" {'published':>10} {'greedy':>9} {'hybrid':>9} {'pub/greedy':>10} {'pub/hybrid':>10}")
    print(head)
    print(f"{'':<11} {'':<8} {'(mean balancedness)':>35} {'(median ms per call)':>30}")
    for r in rows:
        seed = f"{r.seed:8.5f}" if r.seed is not None else f"{'-':>8}"
        print(f"{r.config:<11} {r.workload:<8} {r.greedy:8.5f} {r.hybrid:8.5f} {seed} {r.bound:8.5f}"
              f" {r.published_ms:10.1f} {r.greedy_ms:9.2f} {r.hybrid_ms:9.2f}"
              f" {r.published_ms / r.greedy_ms:9.0f}x {r.published_ms / r.hybrid_ms:9.0f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed calls of our policies")
    parser.add_argument("--published-repeat", type=int, default=3,
                        help="timed calls of the published algorithm")
    parser.add_argument("--candidates", type=int, default=None, help="hybrid candidates")
    parser.add_argument("--rounds", type=int, default=None, help="hybrid swap rounds")
    parser.add_argument("--device", default="cpu", help="torch device for our policies")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--seed-reference", action="store_true",
                        help="also run the seed spec's hybrid once (slow)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    rows = []
    for config in args.configs:
        for workload in args.workloads:
            rows.append(measure(config, workload, WORKLOADS[workload](), args))
            print(f"  done {config}/{workload}", flush=True)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) for r in rows], out, indent=1)


if __name__ == "__main__":
    main()
