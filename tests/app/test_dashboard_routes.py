"""The dashboard's routes for placements scored without planning, the advisor's sweep, one
layer in detail and a replay under move budgets: each answers what the REST route answers for
the same input (``/evaluate/upload``, ``/sweep/upload``, ``/rebalance/upload``,
``/replay/upload``), with the figures that show it; refusals are 4xx."""

from __future__ import annotations

import io
import json

import pytest
import torch
from fastapi.testclient import TestClient

from eplb_core.io import format_csv_matrix
from eplb_core.synthetic import drifting_series, zipf_loads
from tests.app.conftest import MakeClient

from .test_charts import values

CLUSTER = {"num_replicas": "40", "num_groups": "4", "num_nodes": "2", "num_gpus": "8"}
LOADS = zipf_loads(layers=3, experts=32, seed=11)


def csv(matrix: torch.Tensor, name: str) -> tuple[str, str, str]:
    return (name, format_csv_matrix(matrix), "text/csv")


def loads_file(loads: torch.Tensor = LOADS) -> dict:
    return {"file": csv(loads, "loads.csv")}


def series_file(series: torch.Tensor) -> dict:
    buffer = io.BytesIO()
    torch.save({"logical_count": series}, buffer)
    return {"file": ("dump.pt", buffer.getvalue(), "application/octet-stream")}


def shifted(layers: int, experts: int, slots: int, by: int) -> torch.Tensor:
    """Slot p holds expert (p + by) mod E: every expert at least once when slots >= E."""
    return ((torch.arange(slots) + by) % experts).expand(layers, slots).contiguous()


def without_time(document: dict) -> dict:
    return {key: value for key, value in document.items() if key != "elapsed_ms"}


# --- POST /dashboard/evaluate ---------------------------------------------------------------


def test_evaluate_is_the_rest_score_with_its_figures(client: TestClient) -> None:
    in_use, other = shifted(3, 32, 40, 0), shifted(3, 32, 40, 5)
    files = {
        **loads_file(),
        "placement": csv(other, "other.csv"),
        "compare": csv(in_use, "in-use.csv"),
    }

    response = client.post(
        "/dashboard/evaluate",
        files=files,
        data={**CLUSTER, "placement_name": "other", "compare_name": "the placement in use"},
    )
    rest = client.post("/evaluate/upload", files=files, data=CLUSTER).json()

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"result", "upload_id", "figures"}
    assert without_time(body["result"]) == without_time(rest)
    assert body["upload_id"] is not None
    # The per-GPU pair: the compare (the placement in use) left, the placement scored right.
    pair = body["figures"]["gpu"]
    left, right = pair["views"]["tokens"]["data"]
    assert values(left["z"]).tolist() == rest["compare"]["gpu_load"]
    assert values(right["z"]).tolist() == rest["placement"]["gpu_load"]
    titles = [note["text"] for note in pair["views"]["tokens"]["layout"]["annotations"]]
    assert titles == ["the placement in use", "other"]
    lines = {
        line["name"]: values(line["y"]).tolist() for line in body["figures"]["balancedness"]["data"]
    }
    assert lines == {
        "the placement in use": rest["compare"]["balancedness"],
        "other": rest["placement"]["balancedness"],
        "upper bound": rest["bound"],
    }


def test_evaluate_one_placement_by_upload_id(client: TestClient) -> None:
    preview = client.post("/dashboard/preview", files=loads_file()).json()
    in_use = shifted(3, 32, 40, 3)

    response = client.post(
        "/dashboard/evaluate",
        data={**CLUSTER, "upload_id": preview["upload_id"]},
        files={"placement": csv(in_use, "in-use.csv")},
    )
    rest = client.post(
        "/evaluate/upload",
        data=CLUSTER,
        files={**loads_file(), "placement": csv(in_use, "in-use.csv")},
    ).json()

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["upload_id"] == preview["upload_id"]
    assert without_time(body["result"]) == without_time(rest)
    assert body["result"]["compare"] is None and body["result"]["speedup"] is None
    (heatmap,) = body["figures"]["gpu"]["views"]["tokens"]["data"]
    assert values(heatmap["z"]).tolist() == rest["placement"]["gpu_load"]
    # Hovering a cell names the experts the GPU holds: GPU 0 holds slots 0..4.
    assert values(heatmap["customdata"])[0, 0] == "3, 4, 5, 6, 7"


@pytest.mark.parametrize(
    ("files", "data", "status", "expected"),
    [
        (
            {"placement": csv(shifted(2, 32, 40, 0), "p.csv")},
            {},
            422,
            "the placement has shape [2, 40]; this plan needs [3, 40]",
        ),
        ({}, {}, 422, "missing"),
        (
            {"placement": csv(shifted(3, 32, 40, 0), "p.csv")},
            {"num_gpus": "7"},
            422,
            "40 slots cannot be split evenly over 7 GPUs",
        ),
        (
            {"placement": csv(shifted(3, 32, 40, 0), "p.csv")},
            {"algorithm": "greedy"},
            422,
            "Unknown field",
        ),
        (
            {"placement": csv(shifted(3, 32, 40, 0), "p.csv")},
            {"upload_id": "0" * 32},
            410,
            "no longer kept",
        ),
    ],
)
def test_evaluate_refusals(
    client: TestClient, files: dict, data: dict, status: int, expected: str
) -> None:
    sent = {} if "upload_id" in data else loads_file()
    response = client.post("/dashboard/evaluate", files={**sent, **files}, data={**CLUSTER, **data})

    assert response.status_code == status, response.text
    assert expected in json.dumps(response.json()["detail"])


# --- POST /dashboard/sweep ------------------------------------------------------------------

SWEEP = {"num_groups": "4", "num_nodes": "2", "num_gpus": "8", "algorithm": "greedy"}


def test_sweep_is_the_rest_sweep_with_the_advisors_charts(client: TestClient) -> None:
    fields = {
        **SWEEP,
        "num_replicas": ["32", "40", "48"],
        "policies": ["hierarchical", "spill:1", "global"],
    }

    response = client.post(
        "/dashboard/sweep", files=loads_file(), data={**fields, "current_replicas": "40"}
    )
    rest = client.post("/sweep/upload", files=loads_file(), data=fields).json()

    assert response.status_code == 200, response.text
    body = response.json()
    assert without_time(body["result"]) == without_time(rest)
    figures = body["figures"]
    assert figures["windows"] is None  # one window: nothing replayed
    slots = {trace["name"]: trace for trace in figures["slots"]["data"]}
    hierarchical = [p for p in rest["points"] if p["policy"] == "hierarchical"]
    assert values(slots["hierarchical"]["y"]).tolist() == [
        p["mean_balancedness"] for p in hierarchical
    ]
    assert values(slots["hierarchical"]["x"]).tolist() == [p["slots_per_gpu"] for p in hierarchical]
    memory = slots["extra expert memory per GPU"]
    assert memory["yaxis"] == "y2"
    assert values(memory["y"]).tolist() == pytest.approx(
        [p["extra_memory_per_gpu_bytes"] / 2**30 for p in hierarchical]
    )
    # The choice in use (auto is hierarchical here, with 40 slots) is ringed.
    (ring,) = [trace for trace in figures["slots"]["data"] if trace["name"] == "your choice"]
    (current,) = [p for p in hierarchical if p["num_replicas"] == 40]
    assert (ring["x"], ring["y"]) == ([current["slots_per_gpu"]], [current["mean_balancedness"]])
    # The policy comparison: a point per policy at the slot count in use.
    policies = {trace["name"]: trace for trace in figures["policies"]["data"]}
    assert set(policies) == {"hierarchical", "spill:1", "global", "your choice"}
    for point in rest["points"]:
        if point["num_replicas"] == 40:
            name = "spill:1" if point["policy"] == "spill" else point["policy"]
            assert policies[name]["x"] == [point["mean_nodes_per_token"]]
            assert policies[name]["y"] == [point["mean_balancedness"]]


def test_the_choice_in_use_is_named_as_the_policies_are(client: TestClient) -> None:
    fields = {
        **SWEEP,
        "num_replicas": ["32", "48"],
        "policies": ["hierarchical", "spill:2"],
        "current_policy": "spill:2",
        "current_replicas": "48",
    }

    body = client.post("/dashboard/sweep", files=loads_file(), data=fields).json()

    (spill,) = [
        p for p in body["result"]["points"] if p["policy"] == "spill" and p["num_replicas"] == 48
    ]
    policies = {trace["name"]: trace for trace in body["figures"]["policies"]["data"]}
    assert policies["your choice"]["y"] == [spill["mean_balancedness"]]
    assert policies["your choice"]["x"] == [spill["mean_nodes_per_token"]]
    refused = client.post(
        "/dashboard/sweep", files=loads_file(), data={**fields, "current_policy": "fastest"}
    )
    assert refused.status_code == 422


def test_sweep_of_a_series_streams_its_progress_then_the_windows_chart(client: TestClient) -> None:
    series = drifting_series(24, layers=2, experts=32, seed=4)
    fields = {
        **SWEEP,
        "num_replicas": ["32", "40"],
        "windows": ["4", "6"],
        "current_replicas": "40",
    }

    with client.stream(
        "POST",
        "/dashboard/sweep",
        files=series_file(series),
        data=fields,
        headers={"accept": "application/x-ndjson"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    rest = client.post(
        "/sweep/upload",
        files=series_file(series),
        data={key: value for key, value in fields.items() if key != "current_replicas"},
    ).json()

    progress = [line["progress"] for line in lines[:-1]]
    assert progress and progress[-1]["done"] == progress[-1]["total"]
    answer = lines[-1]["result"]
    assert [p["next_window"] for p in answer["result"]["points"]] == [
        p["next_window"] for p in rest["points"]
    ]
    windows = answer["figures"]["windows"]
    by_count = {trace["name"]: trace for trace in windows["data"]}
    assert set(by_count) == {"32 slots", "40 slots (yours)"}
    for count, name in ((32, "32 slots"), (40, "40 slots (yours)")):
        line = [p for p in rest["points"] if p["num_replicas"] == count]
        assert values(by_count[name]["y"]).tolist() == [p["next_window"] for p in line]
        assert values(by_count[name]["x"]).tolist() == [p["moves_per_1000_steps"] for p in line]
        assert by_count[name]["text"] == ["4", "6"]  # a point per window, labelled
    assert answer["figures"]["policies"] is None  # one policy: nothing to compare


def test_a_sweep_over_the_points_limit_is_refused_before_the_stream(
    make_client: MakeClient,
) -> None:
    client = make_client(max_sweep_points=4)

    response = client.post(
        "/dashboard/sweep",
        files=loads_file(),
        data={**SWEEP, "num_replicas": ["32", "40", "48", "56", "64"]},
        headers={"accept": "application/x-ndjson"},
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "detail": "too many sweep points: 5; this server takes at most 4 (EPLB_MAX_SWEEP_POINTS)"
    }


def test_a_sweep_with_a_bad_policy_is_refused(client: TestClient) -> None:
    response = client.post(
        "/dashboard/sweep", files=loads_file(), data={**SWEEP, "policies": ["fastest"]}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-2:] == ["policies", 0]


# --- POST /dashboard/layer ------------------------------------------------------------------


def test_a_layer_is_the_plans_layer(client: TestClient) -> None:
    in_use = shifted(3, 32, 40, 7)
    form = {**CLUSTER, "algorithm": "greedy"}
    plan = client.post(
        "/rebalance/upload",
        data=form,
        files={**loads_file(), "placement": csv(in_use, "in-use.csv")},
    ).json()
    after = json.dumps({"phy2log": plan["plan"]["phy2log"]})

    response = client.post(
        "/dashboard/layer",
        data={**CLUSTER, "layer": "1", "after_name": "the plan"},
        files={
            **loads_file(),
            "placement": csv(in_use, "in-use.csv"),
            "after": ("plan.json", after, "application/json"),
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    result = body["result"]
    assert (result["layer"], result["num_layers"], result["num_experts"]) == (1, 3, 32)
    assert result["loads"] == LOADS[1].double().tolist()
    assert result["before"]["name"] == "in-use.csv"
    assert result["after"]["name"] == "the plan"
    assert result["before"]["gpu_load"] == plan["before"]["gpu_load"][1]
    assert result["after"]["gpu_load"] == plan["after"]["gpu_load"][1]
    assert result["after"]["balancedness"] == pytest.approx(plan["after"]["balancedness"][1])
    assert result["before"]["balancedness"] == pytest.approx(plan["before"]["balancedness"][1])
    assert result["after"]["replicas"] == plan["plan"]["logcnt"][1]
    # Slot p holds expert (p + 7) mod 32: experts 7..14 twice.
    assert result["before"]["replicas"] == [2 if 7 <= expert <= 14 else 1 for expert in range(32)]
    assert result["moves"] == plan["moves"]["per_layer"][1]
    assert result["bound"] == pytest.approx(plan["bound"][1])
    hottest = result["hottest"]
    assert [hot["tokens"] for hot in hottest] == sorted(LOADS[1].double().tolist(), reverse=True)[
        :10
    ]
    for hot in hottest:
        assert hot["replicas_after"] == plan["plan"]["logcnt"][1][hot["expert"]]
        assert hot["tokens_per_replica"] == pytest.approx(hot["tokens"] / hot["replicas_after"])
        assert hot["share"] == pytest.approx(hot["tokens"] / float(LOADS[1].double().sum()))
    bars = {trace["name"]: trace for trace in body["figures"]["gpu"]["data"]}
    assert values(bars["the plan"]["y"]).tolist() == plan["after"]["gpu_load"][1]
    assert values(bars["in-use.csv"]["y"]).tolist() == plan["before"]["gpu_load"][1]


def test_a_layer_without_a_plan_is_the_trivial_layout(client: TestClient) -> None:
    response = client.post("/dashboard/layer", data={**CLUSTER, "layer": "0"}, files=loads_file())

    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["after"] is None and result["moves"] is None
    assert result["before"]["name"] == "slot p holds expert p mod E"
    # 40 slots over 32 experts: experts 0..7 twice.
    assert result["before"]["replicas"] == [2] * 8 + [1] * 24


@pytest.mark.parametrize(
    ("data", "files", "expected"),
    [
        ({"layer": "3"}, {}, "layer 3: the loads have 3 layers (0 to 2)"),
        ({"layer": "-1"}, {}, "greater than or equal to 0"),
        (
            {"layer": "0"},
            {"after": csv(shifted(3, 32, 48, 0), "plan.csv")},
            "the placement has shape [3, 48]; this plan needs [3, 40]",
        ),
        ({"layer": "0", "num_replicas": "16"}, {}, "16 slots cannot hold 32 experts"),
    ],
)
def test_layer_refusals(client: TestClient, data: dict, files: dict, expected: str) -> None:
    response = client.post(
        "/dashboard/layer", data={**CLUSTER, **data}, files={**loads_file(), **files}
    )

    assert response.status_code == 422, response.text
    assert expected in json.dumps(response.json()["detail"])


# --- POST /dashboard/replay with budgets ----------------------------------------------------


def test_replay_under_budgets_charts_the_frontier(client: TestClient) -> None:
    series = drifting_series(12, layers=2, experts=32, seed=5)
    form = {**CLUSTER, "window": "3", "budgets": ["full", "0.05", "0.2", "10"]}

    response = client.post("/dashboard/replay", files=series_file(series), data=form)
    rest = client.post("/replay/upload", files=series_file(series), data=form).json()

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"]["budgets"] == rest["budgets"]
    traces = {trace["name"]: trace for trace in body["frontier"]["data"]}
    assert set(traces) == {"no rebalancing", "greedy", "hybrid"}
    assert traces["no rebalancing"]["x"] == [0]
    assert traces["no rebalancing"]["y"] == [rest["strategies"]["none"]["mean_next_window"]]
    for algorithm in ("greedy", "hybrid"):
        entries = sorted(
            (entry for entry in rest["budgets"] if entry["algorithm"] == algorithm),
            key=lambda entry: entry["total_moves"],
        )
        line = traces[algorithm]
        assert len(values(line["x"])) == 4  # one point per budget
        assert values(line["x"]).tolist() == pytest.approx(
            [entry["moves_per_window"] for entry in entries]
        )
        assert values(line["y"]).tolist() == [entry["mean_next_window"] for entry in entries]
        assert sorted(line["text"]) == sorted(["full plan", "5%", "20%", "10 slots"])


def test_replay_without_budgets_has_no_frontier(client: TestClient) -> None:
    series = drifting_series(6, layers=2, experts=32, seed=6)

    response = client.post(
        "/dashboard/replay", files=series_file(series), data={**CLUSTER, "window": "3"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["frontier"] is None
