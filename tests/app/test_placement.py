"""The placement in use through POST /rebalance and its upload: "before" and the moves start
from it, keeping slots and renumbering GPUs move fewer experts at the same loads, and bad
placements are refused with the reason."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from eplb_core import rebalance_experts
from eplb_core.io import format_csv_matrix, map_to_json, map_to_pt
from eplb_core.synthetic import zipf_loads

from .test_errors import message

# 4 experts on 4 slots over 2 GPUs: the plan of [8, 4, 3, 1] splits them {8, 1} | {4, 3}.
TINY = {
    "weight": [[8, 4, 3, 1]],
    "num_replicas": 4,
    "num_groups": 1,
    "num_nodes": 1,
    "num_gpus": 2,
    "algorithm": "greedy",
}
# 4 layers x 32 experts on 48 slots, 8 GPUs in 2 nodes.
SHAPE = {"num_replicas": 48, "num_groups": 4, "num_nodes": 2, "num_gpus": 8}


@pytest.fixture(scope="module")
def in_use() -> torch.Tensor:
    """A placement an engine could be running: the plan of other traffic."""
    phy2log, _, _ = rebalance_experts(
        zipf_loads(layers=4, experts=32, seed=11), 48, 4, 2, 8, algorithm="greedy"
    )
    return phy2log


@pytest.fixture(scope="module")
def weight() -> list[list[float]]:
    return zipf_loads(layers=4, experts=32, seed=12).tolist()


def test_moves_count_the_slots_whose_expert_changes(client: TestClient) -> None:
    current = [[3, 2, 1, 0]]  # GPU 0 holds experts 3, 2; GPU 1 experts 1, 0

    body = client.post("/rebalance", json={**TINY, "current": current}).json()

    new = body["plan"]["phy2log"][0]
    changed = sum(old != slot for old, slot in zip(current[0], new))
    assert body["moves"] == {"per_layer": [changed], "total": changed}
    assert body["baseline"] == "current"
    # Before is the placement in use: 1 + 3 tokens on GPU 0, 4 + 8 on GPU 1.
    assert body["before"]["gpu_load"] == [[4.0, 12.0]]


def test_a_placement_that_already_has_the_plan_moves_nothing(client: TestClient) -> None:
    """GPU 0 holds experts 1, 2 and GPU 1 experts 0, 3: the plan's split on other GPUs and in
    other slots. Renumbered and re-ordered, it is the placement as it is."""
    current = [[2, 1, 3, 0]]

    body = client.post(
        "/rebalance", json={**TINY, "current": current, "keep_slots": True, "renumber_gpus": True}
    ).json()

    assert body["plan"]["phy2log"] == current
    assert body["plan"]["log2phy"] == [[[3], [1], [0], [2]]]
    assert body["moves"] == {"per_layer": [0], "total": 0}
    assert body["before"]["balancedness"] == body["after"]["balancedness"] == [pytest.approx(8 / 9)]


def test_keeping_slots_from_the_trivial_layout(client: TestClient) -> None:
    """Slot p holds expert p: each GPU keeps one of its experts and takes one, 2 moves, on
    whichever GPU the plan puts each pair."""
    body = client.post("/rebalance", json={**TINY, "keep_slots": True}).json()

    assert body["baseline"] == "trivial"
    assert body["moves"] == {"per_layer": [2], "total": 2}


@pytest.mark.parametrize("algorithm", ["greedy", "hybrid"])
def test_keeping_slots_changes_no_gpu_load_and_never_adds_moves(
    client: TestClient, in_use: torch.Tensor, weight: list, algorithm: str
) -> None:
    request = {"weight": weight, **SHAPE, "algorithm": algorithm, "current": in_use.tolist()}

    plain = client.post("/rebalance", json=request).json()
    kept = client.post("/rebalance", json={**request, "keep_slots": True}).json()

    assert kept["after"] == plain["after"]  # every GPU's and node's load, balancedness
    assert kept["plan"]["logcnt"] == plain["plan"]["logcnt"]
    assert all(k <= p for k, p in zip(kept["moves"]["per_layer"], plain["moves"]["per_layer"]))
    assert kept["moves"]["total"] < plain["moves"]["total"]
    for layer, (phy2log, log2phy) in enumerate(
        zip(kept["plan"]["phy2log"], kept["plan"]["log2phy"])
    ):
        for expert, slots in enumerate(log2phy):  # log2phy follows the re-ordered slots
            assert sorted(s for s in slots if s >= 0) == [
                slot for slot, held in enumerate(phy2log) if held == expert
            ], (layer, expert)


def test_renumbering_gpus_keeps_the_balance_and_moves_fewer(
    client: TestClient, in_use: torch.Tensor, weight: list
) -> None:
    request = {
        "weight": weight,
        **SHAPE,
        "algorithm": "greedy",
        "current": in_use.tolist(),
        "keep_slots": True,
    }

    kept = client.post("/rebalance", json=request).json()
    renumbered = client.post("/rebalance", json={**request, "renumber_gpus": True}).json()

    assert renumbered["after"]["balancedness"] == pytest.approx(kept["after"]["balancedness"])
    assert sorted(map(sorted, renumbered["after"]["gpu_load"])) == sorted(
        map(sorted, kept["after"]["gpu_load"])
    )
    assert renumbered["moves"]["total"] <= kept["moves"]["total"]


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda p: ("in-use.csv", format_csv_matrix(p), "text/csv"), id="csv"),
        pytest.param(
            lambda p: ("in-use.json", json.dumps(p.tolist()), "application/json"), id="json-list"
        ),
        pytest.param(
            lambda p: ("in-use.json", map_to_json(p), "application/json"), id="json-sglang-map"
        ),
        pytest.param(
            lambda p: ("in-use.pt", map_to_pt(p), "application/octet-stream"), id="pt-sglang-map"
        ),
    ],
)
def test_an_uploaded_placement_is_the_json_current(
    client: TestClient, in_use: torch.Tensor, weight: list, encode
) -> None:
    request = {"weight": weight, **SHAPE, "algorithm": "greedy", "keep_slots": True}
    expected = client.post("/rebalance", json={**request, "current": in_use.tolist()}).json()
    fields = {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in request.items()
        if key != "weight"
    }

    response = client.post(
        "/rebalance/upload",
        data=fields,
        files={
            "file": ("loads.csv", format_csv_matrix(weight), "text/csv"),
            "placement": encode(in_use),
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["baseline"] == "current"
    for key in ("plan", "before", "after", "moves"):
        assert body[key] == expected[key], key


PLACEMENT_ERRORS = [
    pytest.param(
        [[0, 1]],
        "the placement has shape [1, 2]; this plan needs [1, 4] (layers, slots)",
        id="wrong-shape",
    ),
    pytest.param(
        [[0, 1, 2, 3], [0, 1, 2, 3]],
        "the placement has shape [2, 4]; this plan needs [1, 4] (layers, slots)",
        id="wrong-layers",
    ),
    pytest.param([[0, 1, 2, 7]], "the placement has expert ids outside 0..3", id="unknown-expert"),
    pytest.param(
        [[0, 1, 2, 2]],
        "the placement holds no replica of expert 3 in layer 0; every "
        "expert needs at least one slot",
        id="expert-missing",
    ),
    pytest.param(
        [[0, 1, 2, -1]],
        "body.current.0.3: Input should be greater than or equal to 0",
        id="negative-id",
    ),
    pytest.param(
        [[0, 1, 2, 1.5]],
        "body.current.0.3: Input should be a valid integer, got a number with a fractional part",
        id="fraction",
    ),
    pytest.param(
        [[0, 1], [2]],
        "body: Value error, current rows must have the same length: row 1 has 1 value, row 0 has 2",
        id="ragged",
    ),
    pytest.param(
        [], "body.current: List should have at least 1 item after validation, not 0", id="empty"
    ),
]


@pytest.mark.parametrize(("current", "expected"), PLACEMENT_ERRORS)
def test_bad_placements_are_refused_with_the_reason(
    client: TestClient, current: list, expected: str
) -> None:
    response = client.post("/rebalance", json={**TINY, "current": current})

    assert response.status_code == 422, response.text
    assert message(response.json()) == expected


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        pytest.param(
            ("in-use.csv", "0,1,2\n", "text/csv"),
            "the placement has shape [1, 3]; this plan needs [1, 4] (layers, slots)",
            id="wrong-shape",
        ),
        pytest.param(
            ("in-use.csv", "0,1.5,2,3\n", "text/csv"),
            "the file 'in-use.csv': found fractions; a placement holds whole expert ids",
            id="fractions",
        ),
        pytest.param(
            ("in-use.json", "[[[0, 1, 2, 3]]]", "application/json"),
            "the file "
            "'in-use.json': found shape [1, 1, 4]; a placement is 2-D [layers, slots] and "
            "not empty",
            id="three-dimensional",
        ),
        pytest.param(
            ("in-use.pt", b"not a zip", "application/octet-stream"),
            "the file 'in-use.pt': the file is not a .pt file torch.save wrote",
            id="not-a-pt",
        ),
    ],
)
def test_bad_placement_files_are_refused_with_the_reason(
    client: TestClient, placement: tuple, expected: str
) -> None:
    fields = {key: str(value) for key, value in TINY.items() if key != "weight"}

    response = client.post(
        "/rebalance/upload",
        data=fields,
        files={"file": ("loads.csv", "8,4,3,1\n", "text/csv"), "placement": placement},
    )

    assert response.status_code == 422, response.text
    assert message(response.json()).startswith(expected)


def test_a_move_budget_caps_the_moves_and_prices_them(client: TestClient) -> None:
    weight = zipf_loads(layers=4, experts=64, seed=8).tolist()
    # Global policy (1 group over 2 nodes): the trivial layout in use is a valid start.
    cluster = {
        "num_replicas": 80,
        "num_groups": 1,
        "num_nodes": 2,
        "num_gpus": 8,
        "algorithm": "greedy",
    }
    in_use = [[slot % 64 for slot in range(80)]] * 4

    free = client.post(
        "/rebalance",
        json={
            "weight": weight,
            **cluster,
            "current": in_use,
            "keep_slots": True,
            "renumber_gpus": True,
        },
    ).json()
    capped = client.post(
        "/rebalance",
        json={
            "weight": weight,
            **cluster,
            "current": in_use,
            "max_moves": 20,
            "expert_bytes": 1000,
            "link_gb_per_s": 2.0,
        },
    )
    shared = client.post(
        "/rebalance", json={"weight": weight, **cluster, "current": in_use, "move_budget": 0.0625}
    ).json()  # 20 of 320 slots

    assert capped.status_code == 200, capped.text
    body = capped.json()
    assert body["params"]["max_moves"] == 20 and shared["params"]["max_moves"] == 20
    assert 0 < body["moves"]["total"] <= 20 < free["moves"]["total"]
    assert shared["plan"] == body["plan"]
    assert body["after"]["mean_balancedness"] > body["before"]["mean_balancedness"]
    migration = body["migration"]
    assert migration["moves"] == body["moves"]["total"]
    assert migration["total_bytes"] == 1000 * body["moves"]["total"]
    assert migration["seconds"] == pytest.approx(migration["max_gpu_bytes"] / 2e9)


def test_one_budget_form_at_a_time(client: TestClient) -> None:
    response = client.post(
        "/rebalance",
        json={
            "weight": [[1, 2, 3, 4]],
            "num_replicas": 4,
            "num_groups": 1,
            "num_nodes": 1,
            "num_gpus": 2,
            "max_moves": 2,
            "move_budget": 0.5,
        },
    )

    assert response.status_code == 422
    assert response.json()["detail"].endswith("not both")
