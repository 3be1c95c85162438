"""Speed and quality of the greedy and hybrid policies on DeepSeek-V3-shaped workloads.

    python -m benchmarks.rebalance [--repeat 7] [--json out.json] [--seed-reference]

For every cluster config and workload it prints the mean balancedness (GPU level) of the
greedy, vLLM's batched policy, the hybrid and the upper bound, and the median time per call of:
the published algorithm as it runs (``tests.reference.published_rebalance``), vLLM's batched
numpy policy (``benchmarks.peers``), our greedy and our hybrid (``rebalance_experts``, end to
end: checks, plan and its invariant check), timed in turns so that load on the machine hits
them alike. ``--seed-reference`` also runs the seed spec's hybrid once (minutes per config on
a CPU). Timings use one torch thread unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from benchmarks.peers import vllm_rebalance
from eplb_core import Cluster, rebalance_experts
from eplb_core.metrics import balancedness_bound, score
from eplb_core.synthetic import WORKLOADS
from tests.reference import published_rebalance, seed_rebalance

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
    vllm: float
    hybrid: float
    bound: float
    published_ms: float
    vllm_ms: float
    greedy_ms: float
    hybrid_ms: float
    seed: float | None = None
    seed_s: float | None = None


def median_ms(fns: dict[str, Callable[[], object]], repeats: dict[str, int]) -> dict[str, float]:
    """Median wall time (ms) of each function over its repeats, after one warm-up call each;
    the calls take turns, so that load on the machine hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for turn in range(max(repeats.values())):
        for name, fn in fns.items():
            if turn < repeats[name]:
                start = time.perf_counter()
                fn()
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(config: str, workload: str, weight: torch.Tensor, args: argparse.Namespace) -> Row:
    shape = CONFIGS[config]
    cluster = Cluster(*shape)

    def balance(plan: tuple[torch.Tensor, ...]) -> float:
        return score(weight, plan[0].cpu(), cluster, plan[2].cpu()).mean_balancedness

    def run(algorithm: str) -> tuple[torch.Tensor, ...]:
        return rebalance_experts(
            weight.to(args.device),
            *shape,
            algorithm=algorithm,
            num_candidates=args.candidates,
            num_rounds=args.rounds,
        )

    greedy_plan = run("greedy")
    published = published_rebalance(weight, *shape)
    if not all(torch.equal(ours.cpu(), theirs) for ours, theirs in zip(greedy_plan, published)):
        raise SystemExit(f"{config}/{workload}: greedy differs from the published plan")
    ms = median_ms(
        {
            "published": lambda: published_rebalance(weight, *shape),
            "vllm": lambda: vllm_rebalance(weight, *shape),
            "greedy": lambda: run("greedy"),
            "hybrid": lambda: run("hybrid"),
        },
        {
            "published": args.published_repeat,
            "vllm": args.repeat,
            "greedy": args.repeat,
            "hybrid": args.repeat,
        },
    )
    row = Row(
        config=config,
        workload=workload,
        greedy=balance(greedy_plan),
        vllm=balance(vllm_rebalance(weight, *shape)),
        hybrid=balance(run("hybrid")),
        bound=float(balancedness_bound(weight, cluster, cluster.auto_policy).mean()),
        published_ms=ms["published"],
        vllm_ms=ms["vllm"],
        greedy_ms=ms["greedy"],
        hybrid_ms=ms["hybrid"],
    )
    if args.seed_reference:
        start = time.perf_counter()
        row.seed = balance(seed_rebalance(weight, *shape))
        row.seed_s = time.perf_counter() - start
    return row


def print_table(rows: list[Row]) -> None:
    """The README's table (markdown): balancedness, then median ms per call with the speed-up
    over the published code in brackets."""
    print(
        "| config | workload | greedy | vLLM | hybrid | seed hybrid | bound | published ms"
        " | vLLM ms | greedy ms | hybrid ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    previous = None
    for r in rows:
        label = (
            ""
            if r.config == previous
            else "{} {}".format(r.config.split("-")[0], "/".join(map(str, CONFIGS[r.config])))
        )
        previous = r.config
        seed = f"{r.seed:.5f}" if r.seed is not None else "-"
        times = " | ".join(
            f"{ms:.1f} ({r.published_ms / ms:.0f}x)" for ms in (r.vllm_ms, r.greedy_ms, r.hybrid_ms)
        )
        print(
            f"| {label} | {r.workload} | {r.greedy:.5f} | {r.vllm:.5f} | {r.hybrid:.5f} | {seed}"
            f" | {r.bound:.5f} | {r.published_ms:.0f} | {times} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed calls of our policies")
    parser.add_argument(
        "--published-repeat", type=int, default=3, help="timed calls of the published algorithm"
    )
    parser.add_argument("--candidates", type=int, default=None, help="hybrid candidates")
    parser.add_argument("--rounds", type=int, default=None, help="hybrid swap rounds")
    parser.add_argument("--device", default="cpu", help="torch device for our policies")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument(
        "--seed-reference", action="store_true", help="also run the seed spec's hybrid once (slow)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: every contender runs on one "
        "thread, and on a busy small machine two threads make some ops "
        "wait milliseconds for a descheduled worker; 0: torch's choice)",
    )
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
