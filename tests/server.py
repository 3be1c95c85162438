"""The service as users run it, for tests that need a real server: ``python -m app`` in a
subprocess on a free port of 127.0.0.1, with the ``EPLB_*`` settings given."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    address: tuple[str, int]
    process: subprocess.Popen[bytes]

    def peak_rss_bytes(self) -> int:
        """The server process's peak resident memory so far (Linux: VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc: peak memory is measured on Linux only")


@contextmanager
def start_server(settings: Mapping[str, str] = {}, timeout: float = 60) -> Iterator[Server]:
    """A running server, answering /healthz; stopped on exit."""
    port = free_port()
    env = {**os.environ, **settings, "EPLB_HOST": "127.0.0.1", "EPLB_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /healthz within {timeout} s")
            time.sleep(0.2)
        yield Server(url, ("127.0.0.1", port), process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # work the server could not interrupt
            process.kill()
            process.wait(timeout=10)
