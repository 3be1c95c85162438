"""Load test: N concurrent ``POST /rebalance`` on a DeepSeek-V3 sized matrix, through uvicorn.

    .venv/bin/python -m scripts.concurrent_rebalance [--requests 20] [--algorithm hybrid]

Starts ``uvicorn app.main:app`` on a free port, sends the requests at once, and prints the
status codes, the wall time, and per-request latency and planning time (``elapsed_ms``).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time

import httpx

from eplb_core.synthetic import zipf_loads


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def run(url: str, requests: int, body: dict) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        async def one() -> tuple[int, float, float]:
            started = time.perf_counter()
            response = await http.post("/rebalance", json=body)
            latency = time.perf_counter() - started
            planning = response.json().get("elapsed_ms", float("nan")) / 1000
            return response.status_code, latency, planning

        started = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(requests)))
        wall = time.perf_counter() - started
    codes = [code for code, _, _ in results]
    latencies = sorted(latency for _, latency, _ in results)
    planning = [seconds for _, _, seconds in results]
    print(f"{requests} concurrent POST /rebalance, {body['algorithm']}, "
          f"{len(body['weight'])}x{len(body['weight'][0])}, {body['num_replicas']} slots, "
          f"{body['num_nodes']} nodes x {body['num_gpus']} GPUs")
    print(f"status codes: {sorted(set(codes))} ({codes.count(200)}/{requests} OK)")
    print(f"wall time {wall:.2f} s; latency median {statistics.median(latencies):.2f} s, "
          f"max {latencies[-1]:.2f} s; planning median {statistics.median(planning):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--algorithm", choices=["hybrid", "greedy"], default="hybrid")
    args = parser.parse_args()
    body = {"weight": zipf_loads().tolist(), "num_replicas": 288, "num_groups": 8,
            "num_nodes": 4, "num_gpus": 32, "algorithm": args.algorithm}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--port",
                               str(port), "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        asyncio.run(run(url, args.requests, body))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
