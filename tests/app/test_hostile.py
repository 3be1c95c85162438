"""The service under hostile input and load, through a real server (``python -m app`` in a
subprocess): every case answers below 500 within 20 s, identical requests answer identically,
/healthz stays quick, slow and numerous clients are cut off, and the server's peak memory
stays under 2 GiB. Sizes are scaled to CI's 2 cores; traffic goes to 127.0.0.1 only."""

from __future__ import annotations

import io
import json
import select
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import torch

from tests.server import Server, start_server

GIB = 1 << 30
SMALL = {"num_replicas": 12, "num_groups": 1, "num_nodes": 1, "num_gpus": 4, "algorithm": "greedy"}
ENV = {
    "EPLB_HEADER_TIMEOUT": "1",
    "EPLB_BODY_TIMEOUT": "2",
    "EPLB_MAX_CONNECTIONS": "48",
    "EPLB_WORKERS": "2",
    "EPLB_QUEUE": "4",
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with start_server(ENV) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    seconds: float


def timed(http: httpx.Client, method: str, path: str, **kwargs: object) -> Answer:
    started = time.perf_counter()
    response = http.request(method, path, **kwargs)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    return Answer(response.status_code, body, seconds)


def pt(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def upload(name: str, data: bytes | str, **fields: object) -> dict:
    return {
        "files": {"file": (name, data, "application/octet-stream")},
        "data": {key: str(value) for key, value in {**SMALL, **fields}.items()},
    }


def deflate_bomb(megabytes: int) -> bytes:
    """A torch.save archive whose storage entry is a deflated run of zeros."""
    archive = zipfile.ZipFile(io.BytesIO(pt(torch.zeros(2, 2))))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as bomb:
        for entry in archive.infolist():
            if not entry.filename.endswith("/data/0"):
                bomb.writestr(entry, archive.read(entry))
                continue
            deflated = zipfile.ZipInfo(entry.filename)
            deflated.compress_type = zipfile.ZIP_DEFLATED
            with bomb.open(deflated, "w", force_zip64=True) as stream:
                for _ in range(megabytes):
                    stream.write(bytes(1 << 20))
    return out.getvalue()


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


CASES = [
    pytest.param(
        "POST",
        "/rebalance",
        {"json": {"weight": [[3e38] * 12], **SMALL}},
        422,
        id="float32-overflow-by-sums",
    ),
    pytest.param(
        "POST",
        "/replay",
        {
            "json": {
                "series": [[[3e38] * 12]] * 4,
                "window": 1,
                **{k: v for k, v in SMALL.items() if k != "algorithm"},
            }
        },
        422,
        id="replay-overflow-by-sums",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("bomb.pt", pt(torch.zeros(1).expand(128, 1024, 4096))),
        422,
        id="stride-zero-pt-bomb",
    ),
    pytest.param(
        "POST",
        "/dashboard/preview",
        {
            "files": {
                "file": (
                    "bomb.pt",
                    pt(torch.zeros(1).expand(128, 1024, 4096)),
                    "application/octet-stream",
                )
            }
        },
        422,
        id="stride-zero-bomb-preview",
    ),
    pytest.param(
        "POST", "/rebalance/upload", upload("bomb.pt", deflate_bomb(256)), 422, id="deflate-pt-bomb"
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("big.csv", "1," + "9" * 140_000 + "\n"),
        422,
        id="csv-cell-over-the-field-limit",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("h.csv", "layer,0,²\n1,2,3\n"),
        422,
        id="csv-header-superscript",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("deep.json", nested_json(100_000)),
        422,
        id="json-nested-100k",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("big.json", "[[1" + "0" * 5000 + ", 1]]"),
        422,
        id="json-5000-digit-integer",
    ),
    pytest.param(
        "POST", "/rebalance/upload", upload("inf.json", "[[1e400, 1]]"), 422, id="json-1e400"
    ),
    *[
        pytest.param(
            "POST",
            "/rebalance/upload",
            upload("odd.pt", pt(torch.ones(2, 4, dtype=dtype))),
            200,
            id=f"pt-{name}",
        )
        for name, dtype in (
            ("uint16", torch.uint16),
            ("uint32", torch.uint32),
            ("uint64", torch.uint64),
        )
    ],
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("f8.pt", pt(torch.ones(2, 4).to(torch.float8_e4m3fn))),
        422,
        id="pt-float8",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("sparse.pt", pt(torch.ones(2, 4).to_sparse())),
        422,
        id="pt-sparse-coo",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("csr.pt", pt(torch.ones(2, 4).to_sparse_csr())),
        422,
        id="pt-sparse-csr",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("q.pt", pt(torch.quantize_per_tensor(torch.ones(2, 4), 0.1, 0, torch.quint8))),
        422,
        id="pt-quantized",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload("nested.pt", pt(torch.nested.nested_tensor([torch.ones(4), torch.ones(4)]))),
        422,
        id="pt-nested",
    ),
    pytest.param(
        "POST",
        "/dashboard/preview",
        {
            "files": {
                "file": (
                    "g.pt",
                    pt(torch.ones(2, 4, requires_grad=True)),
                    "application/octet-stream",
                )
            }
        },
        200,
        id="pt-requires-grad-preview",
    ),
    pytest.param(
        "POST",
        "/dashboard/preview",
        {
            "files": {
                "file": (
                    "tall.pt",
                    pt(torch.ones(4_194_304, 1, dtype=torch.uint8)),
                    "application/octet-stream",
                )
            }
        },
        422,
        id="preview-over-the-layer-limit",
    ),
    pytest.param(
        "POST",
        "/export/physical_to_logical_map.json",
        {"json": {"phy2log": [[0, 1]] * 1100}},
        422,
        id="export-over-the-layer-limit",
    ),
    pytest.param(
        "POST",
        "/rebalance",
        {
            "json": {
                "weight": [[1.0] * 12] * 2,
                "num_replicas": 16384,
                "num_groups": 1,
                "num_nodes": 1,
                "num_gpus": 4096,
                "renumber_gpus": True,
                "keep_slots": True,
            }
        },
        None,
        id="renumber-gpus-4096-gpus",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload(
            "wide.pt",
            pt(
                torch.randint(
                    0,
                    255,
                    (64, 4096),
                    dtype=torch.uint8,
                    generator=torch.Generator().manual_seed(0),
                )
            ),
            num_replicas=16384,
            num_gpus=1,
            algorithm="hybrid",
        ),
        None,
        id="hybrid-one-pack",
    ),
    pytest.param(
        "POST",
        "/rebalance/upload",
        upload(
            "huge.pt",
            pt(torch.ones(1024, 4096, dtype=torch.uint8)),
            num_replicas=16384,
            num_gpus=4096,
        ),
        None,
        id="1024x4096-16384-slots",
    ),
]


@pytest.mark.parametrize(("method", "path", "request_args", "status"), CASES)
def test_hostile_requests_get_a_4xx_or_an_answer_quickly(
    http: httpx.Client, method: str, path: str, request_args: dict, status: int | None
) -> None:
    answer = timed(http, method, path, **request_args)

    assert answer.status < 500, answer.body
    assert answer.seconds < 20
    if status is not None:
        assert answer.status == status, answer.body
    if answer.status == 422:
        assert isinstance(answer.body["detail"], (str, list)) and answer.body["detail"]


def test_identical_requests_answer_identically(http: httpx.Client) -> None:
    request = {"weight": [[3e38] * 12], **SMALL}
    answers = [timed(http, "POST", "/rebalance", json=request) for _ in range(5)]
    assert {(answer.status, json.dumps(answer.body)) for answer in answers} == {
        (422, json.dumps(answers[0].body))
    }

    good = {
        "weight": torch.rand(6, 24, generator=torch.Generator().manual_seed(1)).tolist(),
        "num_replicas": 32,
        "num_groups": 4,
        "num_nodes": 2,
        "num_gpus": 8,
    }
    plans = [http.post("/rebalance", json=good).json() for _ in range(3)]
    assert all(plan["plan"] == plans[0]["plan"] for plan in plans)


def test_healthz_stays_quick_while_the_workers_plan(server: Server, http: httpx.Client) -> None:
    heavy = {
        "weight": torch.rand(58, 256, generator=torch.Generator().manual_seed(2)).tolist(),
        "num_replicas": 288,
        "num_groups": 8,
        "num_nodes": 4,
        "num_gpus": 32,
        "algorithm": "hybrid",
    }
    statuses: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            statuses.append(client.post("/rebalance", json=heavy).status_code)

    senders = [threading.Thread(target=send) for _ in range(8)]
    for sender in senders:
        sender.start()
    slowest = 0.0
    while any(sender.is_alive() for sender in senders):
        slowest = max(slowest, timed(http, "GET", "/healthz").seconds)
        time.sleep(0.05)
    for sender in senders:
        sender.join()

    assert slowest < 1.0
    # 2 workers and 4 waiting: the other requests are told to come back.
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 6


def test_a_full_queue_answers_503_with_retry_after(server: Server) -> None:
    heavy = {
        "weight": torch.rand(58, 256, generator=torch.Generator().manual_seed(3)).tolist(),
        "num_replicas": 288,
        "num_groups": 8,
        "num_nodes": 4,
        "num_gpus": 32,
    }
    responses: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            responses.append(client.post("/rebalance", json=heavy))

    senders = [threading.Thread(target=send) for _ in range(16)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()

    busy = [response for response in responses if response.status_code == 503]
    assert busy, "16 requests at once on 2 workers and a queue of 4"
    assert busy[0].headers["retry-after"] == "2"
    assert "EPLB_WORKERS + EPLB_QUEUE" in busy[0].json()["detail"]


def test_a_client_that_never_finishes_its_headers_is_cut_off(server: Server) -> None:
    with socket.create_connection(server.address) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        slow.settimeout(5)
        started = time.monotonic()
        assert slow.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 4  # EPLB_HEADER_TIMEOUT=1


def test_a_client_that_stops_sending_its_body_gets_408(server: Server) -> None:
    with socket.create_connection(server.address) as slow:
        slow.sendall(
            b"POST /rebalance HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"weight":'
        )
        slow.settimeout(10)
        answer = b""
        while chunk := slow.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"EPLB_BODY_TIMEOUT" in answer


def test_connections_past_the_cap_are_closed_at_once(server: Server) -> None:
    idle = [socket.create_connection(server.address) for _ in range(80)]
    try:
        time.sleep(0.3)  # well within EPLB_HEADER_TIMEOUT=1: only the cap closes them
        closed, _, _ = select.select(idle, [], [], 0)
    finally:
        for connection in idle:
            connection.close()
    assert len(closed) >= 80 - 48
    with httpx.Client(base_url=server.url) as fresh:
        assert fresh.get("/healthz").status_code == 200


def test_security_headers_and_no_cross_site_form_posts(server: Server, http: httpx.Client) -> None:
    for path in ("/", "/healthz", "/docs"):
        headers = http.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"

    forged = http.post(
        "/rebalance/upload",
        headers={"origin": "https://evil.example"},
        **upload("l.csv", "1,2,3,4\n"),
    )
    assert forged.status_code == 403
    same_site = http.post(
        "/rebalance/upload", headers={"origin": server.url}, **upload("l.csv", "1,2,3,4\n")
    )
    assert same_site.status_code == 200


def test_peak_memory_stays_under_2_gib(server: Server) -> None:
    """Run last in this module: the peak over every case above."""
    assert server.peak_rss_bytes() < 2 * GIB
