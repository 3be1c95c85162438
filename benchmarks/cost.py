"""Calibration of ``eplb_core.cost``: estimated vs measured time and peak memory of make_plan.

    python -m benchmarks.cost [--quick] [--shapes NAME ...] [--algorithms greedy hybrid]
                              [--timeout 300] [--json out.json]

Every shape runs in a fresh subprocess with one torch thread, on Zipf-skewed integer loads
(``eplb_core.synthetic.zipf_loads``): one warm-up plan of a tiny shape, then one timed
``make_plan`` call (checks, placement, log2phy and the invariant check). Its peak memory is the
rise of the resident set's high-water mark over the resident set just before the call (the mark
is reset through ``/proc/self/clear_refs`` where Linux allows it). The table shows the
estimate for the shape alone (log2phy at its worst case) and the estimate that knows the loads'
``replica_bound``, which is the one to compare with the measurement.

Zipf loads are the common case; the estimate is for the worst. A second table times
``balanced_packing`` alone on one heavy item per pack and light equal items (a few hot experts,
the rest near idle): the light items fill the lightest pack one a step, so the LPT hands over
to its item loop, the case the estimate is built on (``packing_cost``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

from eplb_core import Cluster
from eplb_core.cost import packing_cost, plan_cost, replica_bound


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    experts: int
    slots: int
    groups: int
    nodes: int
    gpus: int

    @property
    def cluster(self) -> Cluster:
        return Cluster(self.slots, self.groups, self.nodes, self.gpus)


SHAPES = [
    Shape("tiny", 1, 8, 8, 1, 1, 1),
    Shape("small", 4, 16, 24, 4, 2, 4),
    Shape("qwen3", 94, 128, 144, 1, 2, 16),
    Shape("prefill", 58, 256, 288, 8, 4, 32),
    Shape("decode", 58, 256, 288, 8, 18, 144),
    Shape("global-320", 58, 256, 320, 8, 5, 64),
    Shape("8-experts", 16, 8, 4096, 1, 1, 64),
    Shape("prefill-1024", 1024, 256, 288, 8, 4, 32),
    Shape("decode-1024", 1024, 256, 288, 8, 18, 144),
    Shape("global-1024", 1024, 256, 320, 8, 5, 64),
    Shape("1024x1024", 1024, 1024, 2048, 16, 8, 256),
    Shape("1024x512-g", 1024, 512, 1024, 1, 1, 128),
    Shape("k1-4096gpu", 256, 1024, 4096, 1, 1, 4096),
    Shape("4096-hier", 64, 4096, 16384, 64, 8, 256),
    Shape("4096-global", 64, 4096, 16384, 1, 1, 4096),
    Shape("4096-64gpu", 64, 4096, 16384, 1, 1, 64),
    Shape("2-packs", 64, 4096, 16384, 1, 1, 2),
    Shape("1-pack", 64, 4096, 16384, 1, 1, 1),
]
# Worst-case packings: (rows, items, packs).
PACKINGS = [
    (232, 72, 8),
    (58, 320, 64),
    (1024, 320, 64),
    (16, 4096, 64),
    (64, 2048, 256),
    (64, 16384, 4096),
]
QUICK = [
    "tiny",
    "small",
    "qwen3",
    "prefill",
    "decode",
    "global-320",
    "8-experts",
    "prefill-1024",
    "global-1024",
]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass


def worker(spec: dict) -> dict:
    """One timed make_plan call of a shape in this (fresh) process."""
    from eplb_core.plan import PlanOptions, make_plan
    from eplb_core.synthetic import zipf_loads

    torch.set_num_threads(1)
    shape = Shape(**spec["shape"])
    options = PlanOptions(algorithm=spec["algorithm"])
    make_plan(zipf_loads(layers=2, experts=16), Cluster(24, 4, 2, 4), options)  # warm-up
    weight = zipf_loads(layers=shape.layers, experts=shape.experts)
    bound = replica_bound(weight, shape.cluster, shape.cluster.check(shape.experts))
    _reset_peak()
    before = _rss_bytes()
    start = time.perf_counter()
    plan = make_plan(weight, shape.cluster, options)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {
        "seconds": seconds,
        "peak_bytes": max(peak, 0),
        "replica_bound": bound,
        "max_replicas": int(plan.logcnt.max()),
    }


def pack_worker(spec: dict) -> dict:
    """One timed greedy ``balanced_packing`` of geometric items in this (fresh) process."""
    from eplb_core import balanced_packing

    torch.set_num_threads(1)
    rows, items, packs = spec["packing"]
    balanced_packing(torch.rand(4, 40), 8, algorithm="greedy")  # warm-up
    gen = torch.Generator().manual_seed(0)
    weight = torch.ones(rows, items)
    weight[:, :packs] = 1e6 * (1 + torch.rand(rows, packs, generator=gen))
    start = time.perf_counter()
    balanced_packing(weight, packs, algorithm="greedy")
    return {"seconds": time.perf_counter() - start}


def measure(spec: dict, timeout: float) -> dict | None:
    """Run a worker in a subprocess; None when it ran out of time or failed."""
    spec = json.dumps(spec)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.cost", "--worker", spec],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as failed:
        print(failed.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="the small and medium shapes only")
    parser.add_argument("--shapes", nargs="+", choices=[s.name for s in SHAPES])
    parser.add_argument(
        "--algorithms", nargs="+", default=["greedy", "hybrid"], choices=["greedy", "hybrid"]
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds per measurement")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(pack_worker(spec) if "packing" in spec else worker(spec)))
        return

    names = args.shapes or (QUICK if args.quick else [s.name for s in SHAPES])
    print(
        f"{'shape':<13} {'layers':>6} {'experts':>7} {'slots':>6} {'gpus':>5} {'policy':<12}"
        f" {'algo':<6} {'est s':>8} {'meas s':>8} {'ratio':>6} {'worst MiB':>10}"
        f" {'est MiB':>8} {'meas MiB':>8} {'ratio':>6}"
    )
    rows = []
    for shape in (s for s in SHAPES if s.name in names):
        policy = shape.cluster.check(shape.experts)
        for algorithm in args.algorithms:
            got = measure({"shape": shape.__dict__, "algorithm": algorithm}, args.timeout)
            worst = plan_cost(shape.layers, shape.experts, shape.cluster, policy, algorithm)
            est = plan_cost(
                shape.layers,
                shape.experts,
                shape.cluster,
                policy,
                algorithm,
                max_replicas=got["replica_bound"] if got else None,
            )
            row = {
                "shape": shape.name,
                "policy": policy,
                "algorithm": algorithm,
                "estimated_s": est.work,
                "estimated_bytes": est.peak_bytes,
                "worst_case_bytes": worst.peak_bytes,
                "measured": got,
            }
            rows.append(row)
            mib = 1 << 20
            if got:
                measured = (
                    f"{got['seconds']:8.3f} {got['seconds'] / est.work:6.2f}",
                    f"{got['peak_bytes'] / mib:8.1f} {got['peak_bytes'] / est.peak_bytes:6.2f}",
                )
            else:
                measured = (f"{'-':>8} {'-':>6}", f"{'-':>8} {'-':>6}")
            print(
                f"{shape.name:<13} {shape.layers:>6} {shape.experts:>7} {shape.slots:>6}"
                f" {shape.gpus:>5} {policy:<12} {algorithm:<6} {est.work:8.3f} {measured[0]}"
                f" {worst.peak_bytes / mib:10.1f} {est.peak_bytes / mib:8.1f} {measured[1]}",
                flush=True,
            )
    print(
        f"\n{'rows':>6} {'items':>6} {'packs':>6} {'est s':>8} {'meas s':>8} {'ratio':>6}"
        "  (greedy packing, m heavy items and light ones: the worst case)"
    )
    for packing in PACKINGS if not args.quick else PACKINGS[:3]:
        got = measure({"packing": packing}, args.timeout)
        est = packing_cost(*packing, "greedy")
        rows.append({"packing": packing, "estimated_s": est.work, "measured": got})
        measured = f"{got['seconds']:8.3f} {got['seconds'] / est.work:6.2f}" if got else "-"
        print(
            f"{packing[0]:>6} {packing[1]:>6} {packing[2]:>6} {est.work:8.3f} {measured}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
