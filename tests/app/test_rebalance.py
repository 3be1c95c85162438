"""POST /rebalance and /rebalance/csv: the published plan, the same plan from a CSV, figures that
agree with the plan, the hybrid's gain, and concurrent requests off the event loop."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from app import service
from app.config import Settings
from app.main import create_app
from eplb_core.io import format_csv_matrix
from eplb_core.synthetic import zipf_loads
from tests.app.conftest import MakeClient


def form_fields(body: dict) -> dict[str, str]:
    """The parameters of a JSON body as the CSV route's form fields."""
    return {key: str(value) for key, value in body.items() if key != "weight"}


def test_readme_vector_gives_the_published_plan(
    client: TestClient, readme_example: dict, readme_request: dict
) -> None:
    response = client.post("/rebalance", json=readme_request)

    assert response.status_code == 200, response.text
    body = response.json()
    plan = body["plan"]
    assert plan["phy2log"] == readme_example["expected_greedy_phy2log"]
    assert plan["logcnt"] == readme_example["expected_greedy_logcnt"]
    assert plan["policy"] == "hierarchical" and plan["algorithm"] == "greedy"
    assert body["params"] == {
        "num_replicas": 16,
        "num_groups": 4,
        "num_nodes": 2,
        "num_gpus": 8,
        "algorithm": "greedy",
        "seed": 0,
        "keep_slots": False,
        "renumber_gpus": False,
        "policy": "auto",
        "spill_slots": 1,
        "max_moves": None,
    }
    assert (body["num_layers"], body["num_experts"]) == (2, 12)
    assert body["device"] == str(Settings().torch_device) and body["elapsed_ms"] >= 0
    for layer, slots in enumerate(plan["phy2log"]):  # log2phy inverts phy2log
        for expert, replicas in enumerate(plan["log2phy"][layer]):
            placed = [slot for slot in replicas if slot >= 0]
            assert len(placed) == plan["logcnt"][layer][expert]
            assert all(slots[slot] == expert for slot in placed)


def test_figures_agree_with_the_plan(client: TestClient, readme_request: dict) -> None:
    body = client.post("/rebalance", json=readme_request).json()

    for report in (body["before"], body["after"]):
        assert [len(row) for row in report["gpu_load"]] == [8, 8]
        assert [len(row) for row in report["node_load"]] == [2, 2]
        for layer, weights in enumerate(readme_request["weight"]):
            gpu = report["gpu_load"][layer]
            assert sum(gpu) == pytest.approx(sum(weights))
            assert report["node_load"][layer] == pytest.approx([sum(gpu[:4]), sum(gpu[4:])])
            assert report["balancedness"][layer] == pytest.approx(sum(gpu) / 8 / max(gpu))
        assert report["mean_balancedness"] == pytest.approx(sum(report["balancedness"]) / 2)
        assert report["worst_max_over_mean"] == pytest.approx(
            max(1 / value for value in report["balancedness"])
        )
    after = body["after"]["balancedness"]
    assert all(a <= bound + 1e-9 for a, bound in zip(after, body["bound"]))


def test_before_is_the_unbalanced_layout(client: TestClient) -> None:
    """Slot p holds expert p mod E: with 6 slots for 4 experts, experts 0 and 1 are doubled."""
    body = client.post(
        "/rebalance",
        json={
            "weight": [[1, 2, 3, 4]],
            "num_replicas": 6,
            "num_groups": 1,
            "num_nodes": 1,
            "num_gpus": 2,
            "algorithm": "greedy",
        },
    ).json()

    # GPU 0: slots 0-2 = half of e0, half of e1, e2; GPU 1: slots 3-5 = e3, half of e0, e1.
    assert body["before"]["gpu_load"] == [[4.5, 5.5]]
    assert body["before"]["balancedness"] == [pytest.approx(5 / 5.5)]


def test_csv_upload_gives_the_same_plan(client: TestClient, readme_request: dict) -> None:
    expected = client.post("/rebalance", json=readme_request).json()
    weight = readme_request["weight"]
    plain = format_csv_matrix(weight)
    labelled = (
        "layer;"
        + ";".join(f"expert {e}" for e in range(12))
        + "\n\n"
        + "".join(f"L{layer};" + ";".join(map(str, row)) + "\n" for layer, row in enumerate(weight))
    )

    for text in (plain, labelled):
        response = client.post(
            "/rebalance/csv",
            files={"file": ("loads.csv", text, "text/csv")},
            data=form_fields(readme_request),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["plan"] == expected["plan"]
        assert body["after"] == expected["after"] and body["before"] == expected["before"]


def test_hybrid_is_at_least_as_balanced_as_before_on_skewed_loads(client: TestClient) -> None:
    weight = zipf_loads(layers=3, experts=32, seed=1)
    response = client.post(
        "/rebalance",
        json={
            "weight": weight.tolist(),
            "num_replicas": 40,
            "num_groups": 4,
            "num_nodes": 2,
            "num_gpus": 8,
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["plan"]["algorithm"] == "hybrid"
    before, after = body["before"]["balancedness"], body["after"]["balancedness"]
    assert all(a >= b for a, b in zip(after, before))
    assert body["after"]["mean_balancedness"] > body["before"]["mean_balancedness"]


@pytest.mark.anyio
async def test_concurrent_requests_all_succeed() -> None:
    """20 requests at once, through the ASGI app, with room for them all in the queue: every
    one answers with the same plan."""
    request = {
        "weight": zipf_loads(layers=4, experts=32, seed=2).tolist(),
        "num_replicas": 40,
        "num_groups": 4,
        "num_nodes": 2,
        "num_gpus": 8,
        "seed": 3,
    }
    transport = httpx.ASGITransport(app=create_app(Settings(workers=2, queue=18)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        responses = await asyncio.gather(
            *(http.post("/rebalance", json=request) for _ in range(20))
        )

    assert [response.status_code for response in responses] == [200] * 20
    plans = [response.json()["plan"] for response in responses]
    assert all(plan == plans[0] for plan in plans)


@pytest.mark.anyio
async def test_planning_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, readme_request: dict
) -> None:
    """While a plan is being computed, the server still answers /healthz."""
    planning_started, health_answered = threading.Event(), threading.Event()
    plan = service.plan

    def slow_plan(*args: object) -> object:
        planning_started.set()
        # Run on the event loop, this wait would keep /healthz from being answered.
        assert health_answered.wait(timeout=10), "/healthz was not answered during planning"
        return plan(*args)

    monkeypatch.setattr(service, "plan", slow_plan)
    transport = httpx.ASGITransport(app=create_app(Settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        planning = asyncio.ensure_future(http.post("/rebalance", json=readme_request))
        assert await asyncio.to_thread(planning_started.wait, 10)
        health = await http.get("/healthz")
        health_answered.set()
        response = await planning

    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert response.status_code == 200, response.text


def test_the_spill_policy_and_the_traffic_figure(client: TestClient) -> None:
    weight = zipf_loads(layers=4, experts=64, seed=5).tolist()
    cluster = {
        "num_replicas": 80,
        "num_groups": 8,
        "num_nodes": 2,
        "num_gpus": 8,
        "algorithm": "greedy",
    }

    hierarchical = client.post(
        "/rebalance", json={"weight": weight, **cluster, "policy": "hierarchical"}
    ).json()
    spill = client.post(
        "/rebalance", json={"weight": weight, **cluster, "policy": "spill", "spill_slots": 1}
    )

    assert spill.status_code == 200, spill.text
    body = spill.json()
    assert body["plan"]["policy"] == "spill"
    assert body["params"]["policy"] == "spill" and body["params"]["spill_slots"] == 1
    # The spill plan is never less balanced in-sample than the hierarchical one it starts from.
    assert body["after"]["mean_balancedness"] >= hierarchical["after"]["mean_balancedness"]
    for report in (body["before"], body["after"]):
        assert len(report["nodes_per_token"]) == 4
        assert 1 <= report["mean_nodes_per_token"] <= 2  # 2 nodes


def test_spill_slots_above_the_slots_per_gpu_are_refused(client: TestClient) -> None:
    response = client.post(
        "/rebalance",
        json={
            "weight": [[1, 2, 3, 4]],
            "num_replicas": 8,
            "num_groups": 2,
            "num_nodes": 2,
            "num_gpus": 4,
            "policy": "spill",
            "spill_slots": 3,
        },
    )

    assert response.status_code == 422
    assert "spill_slots" in response.json()["detail"]


CLUSTER_FIELDS = ("num_replicas", "num_groups", "num_nodes", "num_gpus")


def test_json_loads_are_held_to_the_element_limit_as_files_are(
    make_client: MakeClient, readme_request: dict
) -> None:
    client = make_client(max_elements=20)  # the example is 2 x 12
    cluster = {key: readme_request[key] for key in CLUSTER_FIELDS}
    series = {**cluster, "series": [readme_request["weight"]] * 2, "window": 1}

    for route, body in (("/rebalance", readme_request), ("/replay", series)):
        response = client.post(route, json=body)
        assert response.status_code == 422, route
        assert "too many load values" in response.json()["detail"]
        assert "(EPLB_MAX_ELEMENTS)" in response.json()["detail"]
