"""Load test of the running service: latency percentiles and throughput of ``POST /rebalance``
on a DeepSeek-V3 sized matrix, at several client counts, with /healthz probed throughout.

    .venv/bin/python -m scripts.load [--clients 1 8 32] [--requests 64] [--algorithms greedy hybrid]

Starts ``python -m app`` on a free port of 127.0.0.1 (traffic goes nowhere else), sends
``--requests`` requests per (algorithm, client count) from that many concurrent clients, and
prints per row: status counts, p50/p95/p99 latency, requests per second, the median planning
time the server reports (``elapsed_ms``), and the slowest /healthz answer meanwhile. Every loop
is bounded in count and in time (``--deadline`` seconds per row).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from eplb_core.synthetic import zipf_loads

ROOT = Path(__file__).resolve().parents[1]
HEALTH_EVERY_SECONDS = 0.1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def probe_health(http: httpx.AsyncClient, stop: asyncio.Event) -> float:
    """The slowest /healthz answer, in ms, until ``stop``."""
    slowest = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        await http.get("/healthz", timeout=10)
        slowest = max(slowest, (time.perf_counter() - started) * 1000)
        await asyncio.sleep(HEALTH_EVERY_SECONDS)
    return slowest


async def run_row(
    url: str, body: bytes, clients: int, requests: int, deadline: float
) -> dict[str, object]:
    """``requests`` POSTs from ``clients`` concurrent clients; their figures."""
    latencies: list[float] = []
    planning: list[float] = []
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(requests):
        queue.put_nowait(number)
    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=deadline) as http:
        stop = asyncio.Event()
        health = asyncio.ensure_future(probe_health(http, stop))

        async def client() -> None:
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await http.post(
                    "/rebalance", content=body, headers={"content-type": "application/json"}
                )
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    planning.append(response.json()["elapsed_ms"])

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), deadline)
        wall = time.perf_counter() - started
        stop.set()
        slowest_health = await health
    return {
        "statuses": dict(statuses),
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "rps": requests / wall,
        "planning": statistics.median(planning or [0.0]),
        "health": slowest_health,
    }


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EPLB_HOST": "127.0.0.1", "EPLB_PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until_up(url: str, server: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer /healthz within {seconds:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=64, help="requests per row")
    parser.add_argument("--algorithms", nargs="+", default=["greedy", "hybrid"])
    parser.add_argument("--deadline", type=float, default=120, help="seconds per row at most")
    parser.add_argument(
        "--port",
        type=int,
        help="measure the server already listening on this port of 127.0.0.1 "
        "(e.g. an older version) instead of starting one",
    )
    args = parser.parse_args(argv)

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    server = None if args.port else start_server(port)
    try:
        if server is not None:
            wait_until_up(url, server)
        print(
            f"{'algorithm':<9}{'clients':>8}  {'statuses':<18}{'p50 ms':>8}{'p95 ms':>8}"
            f"{'p99 ms':>8}{'req/s':>8}{'plan ms':>9}{'health ms':>10}"
        )
        for algorithm in args.algorithms:
            request = {
                "weight": zipf_loads().tolist(),
                "num_replicas": 288,
                "num_groups": 8,
                "num_nodes": 4,
                "num_gpus": 32,
                "algorithm": algorithm,
            }
            body = httpx.Request("POST", url, json=request).content
            asyncio.run(run_row(url, body, 1, 4, args.deadline))  # warm-up
            for clients in args.clients:
                row = asyncio.run(run_row(url, body, clients, args.requests, args.deadline))
                statuses = " ".join(
                    f"{code}x{count}" for code, count in sorted(row["statuses"].items())
                )  # type: ignore[attr-defined]
                print(
                    f"{algorithm:<9}{clients:>8}  {statuses:<18}{row['p50']:>8.1f}"
                    f"{row['p95']:>8.1f}{row['p99']:>8.1f}{row['rps']:>8.1f}"
                    f"{row['planning']:>9.1f}{row['health']:>10.1f}",
                    flush=True,
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
