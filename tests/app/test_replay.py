"""POST /replay and /replay/upload: figures recomputed by hand on a tiny series, the same replay
from JSON, an SGLang-shaped .pt dump and the core, the placement in use, and every refusal."""

from __future__ import annotations

import io

import pytest
import torch
from fastapi.testclient import TestClient

from eplb_core import Cluster, PlanOptions
from eplb_core.replay import replay
from eplb_core.synthetic import drifting_series
from tests.app.conftest import MakeClient

from .test_errors import message

# One layer, 4 experts on 4 slots over 2 GPUs (2 slots each): no replicas, only packing.
CLUSTER = {"num_replicas": 4, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}
# Windows of 2 steps: [8, 4, 3, 1], [1, 8, 4, 3], [4, 4, 4, 4]; the 7th step is dropped.
SERIES = [
    [[5, 2, 1, 1]],
    [[3, 2, 2, 0]],
    [[1, 4, 4, 1]],
    [[0, 4, 0, 2]],
    [[2, 2, 2, 2]],
    [[2, 2, 2, 2]],
    [[9, 9, 9, 9]],
]


def pt_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def form(**fields: object) -> dict[str, str]:
    return {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in fields.items()
    }


def test_replay_figures_match_a_hand_computation(client: TestClient) -> None:
    """Without rebalancing GPU 0 holds experts 0, 1 and GPU 1 experts 2, 3. The best split of
    [8, 4, 3, 1] is {8, 1} | {4, 3}: 9 vs 7 tokens, balancedness 8/9; that split meets
    [1, 8, 4, 3] as 4 vs 12 (8/12). The plan of window 1 pairs {8, 1} | {4, 3} again, experts
    {0, 1} | {2, 3}, which is perfect on [4, 4, 4, 4]."""
    response = client.post(
        "/replay", json={"series": SERIES, "window": 2, **CLUSTER, "keep_slots": True}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["num_steps"], body["num_layers"], body["num_experts"]) == (7, 1, 4)
    assert (body["window"], body["num_windows"], body["dropped_steps"]) == (2, 3, 1)
    assert body["baseline"] == "trivial"
    assert body["params"] == {
        **CLUSTER,
        "window": 2,
        "seed": 0,
        "keep_slots": True,
        "renumber_gpus": False,
        "policy": "auto",
        "spill_slots": 1,
        "max_moves": None,
        "expert_bytes": 44_040_192,
    }
    none = body["strategies"]["none"]
    assert none["in_sample"] == pytest.approx([8 / 12, 8 / 9])
    assert none["next_window"] == pytest.approx([8 / 9, 1.0])
    assert none["moves"] == [0, 0] and none["total_moves"] == 0
    assert none["mean_in_sample"] == pytest.approx((8 / 12 + 8 / 9) / 2)
    assert none["mean_next_window"] == pytest.approx((8 / 9 + 1) / 2)
    for name in ("greedy", "hybrid"):
        figures = body["strategies"][name]
        assert figures["in_sample"] == pytest.approx([8 / 9, 8 / 9]), name
        assert figures["next_window"] == pytest.approx([8 / 12, 1.0]), name
        assert figures["mean_in_sample"] == pytest.approx(8 / 9)
        assert figures["mean_next_window"] == pytest.approx((8 / 12 + 1) / 2)
        # Keeping slots, each GPU keeps one of its two experts and takes one new: 2 moves.
        assert figures["moves"] == [2, 2] and figures["total_moves"] == 4, name
    assert list(body["strategies"]) == ["none", "greedy", "hybrid"]
    assert body["elapsed_ms"] >= 0 and body["device"] == "cpu"


def test_an_sglang_dump_replays_as_the_json_series_and_the_core(client: TestClient) -> None:
    counts = torch.randint(0, 100, (12, 3, 8), generator=torch.Generator().manual_seed(4))
    dump = pt_bytes({"rank": 0, "logical_count": counts})
    cluster = {"num_replicas": 12, "num_groups": 2, "num_nodes": 2, "num_gpus": 4, "seed": 5}

    uploaded = client.post(
        "/replay/upload",
        data=form(**cluster, window=3),
        files={
            "file": ("expert_distribution_recorder_1700000000.pt", dump, "application/octet-stream")
        },
    )
    posted = client.post("/replay", json={"series": counts.tolist(), "window": 3, **cluster})

    assert uploaded.status_code == 200, uploaded.text
    assert posted.status_code == 200, posted.text
    core = replay(counts.double(), 3, Cluster(12, 2, 2, 4), PlanOptions(seed=5)).as_dict()
    for body in (uploaded.json(), posted.json()):
        assert body["num_steps"] == 12 and body["num_windows"] == 4
        assert body["strategies"] == core["strategies"]


def test_the_placement_in_use_is_what_none_keeps_and_moves_start_from(client: TestClient) -> None:
    # GPU 0 holds experts 1, 2 and GPU 1 experts 0, 3: the split the plan of window 0 makes.
    current = [[1, 2, 0, 3]]
    response = client.post(
        "/replay",
        json={
            "series": SERIES,
            "window": 2,
            **CLUSTER,
            "current": current,
            "keep_slots": True,
            "renumber_gpus": True,
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["baseline"] == "current"
    none = body["strategies"]["none"]
    assert none["in_sample"] == pytest.approx([8 / 9, 8 / 12])
    assert none["next_window"] == pytest.approx([8 / 12, 1.0])
    for name in ("greedy", "hybrid"):
        assert body["strategies"][name]["moves"] == [0, 2], name  # window 0 is already in place


def test_a_placement_file_goes_with_the_upload(client: TestClient) -> None:
    series = pt_bytes(torch.tensor(SERIES))
    fields = form(**CLUSTER, window=2, keep_slots=True, renumber_gpus=True)

    response = client.post(
        "/replay/upload",
        data=fields,
        files={"file": ("series.pt", series), "placement": ("in-use.csv", "1,2,0,3\n", "text/csv")},
    )

    assert response.status_code == 200, response.text
    assert response.json()["baseline"] == "current"
    assert response.json()["strategies"]["greedy"]["moves"] == [0, 2]


SERIES_ERRORS = [
    pytest.param(
        {"series": [[[1, 2]], [[3, 4]]], "window": 2},
        422,
        "a replay needs at least 2 windows of 2 steps; the series has 2 steps",
        id="one-window",
    ),
    pytest.param(
        {"series": [[[1, 2]], [[3, 4]]] * 6, "window": 1},
        422,
        "too many windows of 1 steps in 12 steps: 12; this server takes at most 8 "
        "(EPLB_MAX_WINDOWS)",
        id="too-many-windows",
    ),
    pytest.param(
        {"series": [[[1, 2]], [[3, 4], [5, 6]]], "window": 1},
        422,
        "body: Value error, every step of series needs the same layers: step 1 has 2, step 0 has 1",
        id="ragged-layers",
    ),
    pytest.param(
        {"series": [[[1, 2]], [[3, 4, 5]]], "window": 1},
        422,
        "body: Value error, every layer of series needs the same experts: step 1, "
        "layer 0 has 3, step 0, layer 0 has 2",
        id="ragged-experts",
    ),
    pytest.param(
        {"series": [[1, 2], [3, 4]], "window": 1},
        422,
        "body.series.0.0: Input should be a valid array",
        id="two-dimensional",
    ),
    pytest.param(
        {"series": [[[1, -2]], [[3, 4]]], "window": 1},
        422,
        "body.series.0.0.1: Input should be greater than or equal to 0",
        id="negative",
    ),
    pytest.param(
        {"series": [[[1, 2]], [[3, 4]]], "window": 0},
        422,
        "body.window: Input should be greater than 0",
        id="window-zero",
    ),
    pytest.param(
        {"series": [[[1, 2]], [[3, 4]]], "window": 1, "num_replicas": 3},
        422,
        "3 slots cannot be split evenly over 2 GPUs",
        id="bad-cluster",
    ),
    pytest.param(
        {"series": [[[1, 2]], [[3, 4]]], "window": 1, "current": [[0, 0, 0, 0]]},
        422,
        "the placement holds no replica of expert 1 in layer 0",
        id="bad-placement",
    ),
    pytest.param(
        {"series": [[[1, 2]], [[3, 4]]], "window": 1, "current": [[0, 1]]},
        422,
        "the placement has shape [1, 2]; this plan needs [1, 4] (layers, slots)",
        id="placement-shape",
    ),
    pytest.param(
        {"series": [[[1] * 17]] * 2, "window": 1, "num_replicas": 18},
        422,
        "too many experts: 17; this server takes at most 16 (EPLB_MAX_EXPERTS)",
        id="too-many-experts",
    ),
]


@pytest.mark.parametrize(("body", "status", "expected"), SERIES_ERRORS)
def test_replay_errors(make_client: MakeClient, body: dict, status: int, expected: str) -> None:
    limited = make_client(max_windows=8, max_experts=16)
    shape = {"num_replicas": 4, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}

    response = limited.post("/replay", json={**shape, **body})

    assert response.status_code == status, response.text
    assert message(response.json()).startswith(expected)


UPLOAD_ERRORS = [
    pytest.param(
        ("loads.csv", "1,2\n3,4\n", "text/csv"),
        None,
        422,
        "a replay needs a time series [steps, layers, experts]; got one window of "
        "shape [2, 2] (plan it with /rebalance)",
        id="one-window-csv",
    ),
    pytest.param(
        ("dump.pt", pt_bytes({"counts": torch.ones(4, 1, 2)}), "application/octet-stream"),
        None,
        422,
        "the file 'dump.pt': found a dict with keys 'counts'; expected a tensor "
        "[layers, experts] (one window) or [steps, layers, experts] (a time series), "
        "or a dict with a 'logical_count' key holding one",
        id="dict-without-key",
    ),
    pytest.param(
        ("series.pt", pt_bytes(torch.ones(2, 2, 1, 2)), "application/octet-stream"),
        None,
        422,
        "the file 'series.pt': found a 4-D array of shape [2, 2, 1, 2]; "
        "expected 2-D [layers, experts] (one window) or 3-D [steps, layers, experts] "
        "(a time series)",
        id="four-dimensional",
    ),
    pytest.param(
        ("series.pt", pt_bytes(torch.ones(4, 1, 2)), "application/octet-stream"),
        ("in-use.json", b'{"placement": [[0, 1, 0, 1]]}', "application/json"),
        422,
        "the file 'in-use.json': found an object with keys 'placement'; expected a "
        "nested list [layers, slots] of expert ids, or an object with a 'phy2log', "
        "'physical_to_logical_map' or 'last_physical_to_logical_map' key holding one",
        id="placement-without-key",
    ),
    pytest.param(
        ("series.png", b"\x89PNG", "image/png"),
        None,
        415,
        "the file 'series.png' has content type 'image/png'; expected CSV, JSON or a .pt file",
        id="content-type",
    ),
]


@pytest.mark.parametrize(("loads", "placement", "status", "expected"), UPLOAD_ERRORS)
def test_replay_upload_errors(
    client: TestClient, loads: tuple, placement: tuple | None, status: int, expected: str
) -> None:
    files = {"file": loads} if placement is None else {"file": loads, "placement": placement}

    response = client.post("/replay/upload", data=form(**CLUSTER, window=1), files=files)

    assert response.status_code == status, response.text
    assert message(response.json()).startswith(expected)


def test_replay_routes_need_their_content_type(client: TestClient) -> None:
    posted = client.post(
        "/replay",
        data=form(**CLUSTER, window=2),
        files={"file": ("s.pt", pt_bytes(torch.tensor(SERIES)))},
    )
    uploaded = client.post("/replay/upload", json={"series": SERIES, "window": 2, **CLUSTER})

    assert (posted.status_code, uploaded.status_code) == (415, 415)
    assert posted.json()["detail"] == (
        "expected a body of type application/json, got 'multipart/form-data'"
    )
    assert uploaded.json()["detail"] == (
        "expected a body of type multipart/form-data, got 'application/json'"
    )


def test_replay_under_move_budgets_draws_the_frontier(client: TestClient) -> None:
    series = drifting_series(24, layers=3, experts=16, seed=9)
    buffer = io.BytesIO()
    torch.save({"logical_count": series}, buffer)
    form = {
        "num_replicas": "24",
        "num_groups": "4",
        "num_nodes": "2",
        "num_gpus": "8",
        "window": "4",
        "budgets": ["0.1", "12", "full"],
        "expert_bytes": "1073741824",
    }

    response = client.post(
        "/replay/upload",
        data=form,
        files={"file": ("dump.pt", buffer.getvalue(), "application/octet-stream")},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    entries = [
        (entry["algorithm"], entry["budget"], entry["max_moves"]) for entry in body["budgets"]
    ]
    assert entries == [
        (algorithm, budget, moves)
        for algorithm in ("greedy", "hybrid")
        for budget, moves in ((0.1, 7), (12, 12), (None, None))
    ]
    for entry in body["budgets"]:
        if entry["max_moves"] is not None:
            assert max(entry["moves"]) <= entry["max_moves"]
        assert entry["gib_per_window"] == pytest.approx(entry["moves_per_window"])  # 1 GiB
    assert list(body["strategies"]) == ["none", "greedy", "hybrid"]
