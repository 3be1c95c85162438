"""One pipeline: the CLI's ``--json`` document is the API's answer for the same file and
parameters (the planning time and the device aside), for every command both have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from eplb_core.cli import main
from eplb_core.io import format_csv_matrix
from eplb_core.synthetic import drifting_series, zipf_loads

CLUSTER = {"num_replicas": "24", "num_groups": "4", "num_nodes": "2", "num_gpus": "8"}
CLI_CLUSTER = ["--groups", "4", "--nodes", "2", "--gpus", "8"]


def untimed(document: dict) -> dict:
    return {key: value for key, value in document.items() if key not in ("elapsed_ms", "device")}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    window = tmp_path / "loads.csv"
    window.write_text(format_csv_matrix(zipf_loads(layers=6, experts=16, seed=5)))
    series = tmp_path / "dump.pt"
    torch.save({"logical_count": drifting_series(40, layers=6, experts=16).long()}, series)
    placement = tmp_path / "placement.csv"
    placement.write_text(format_csv_matrix((torch.arange(24) * 7 % 16).expand(6, 24).contiguous()))
    return {"window": window, "series": series, "placement": placement}


@pytest.mark.parametrize(
    ("command", "route", "loads", "cli", "form", "with_placement"),
    [
        (
            "rebalance",
            "/rebalance/upload",
            "window",
            ["--algorithm", "greedy", "--move-budget", "0.25", "--link-gbps", "50"],
            {"algorithm": "greedy", "move_budget": "0.25", "link_gb_per_s": "50"},
            True,
        ),
        (
            "rebalance",
            "/rebalance/upload",
            "series",
            ["--policy", "spill", "--spill-slots", "1", "--seed", "3"],
            {"policy": "spill", "spill_slots": "1", "seed": "3"},
            False,
        ),
        (
            "replay",
            "/replay/upload",
            "series",
            ["--window", "10", "--budgets", "0.1", "full", "--no-progress"],
            {"window": "10", "budgets": ["0.1", "full"]},
            True,
        ),
        ("evaluate", "/evaluate/upload", "window", [], {}, True),
        (
            "sweep",
            "/sweep/upload",
            "series",
            ["--replicas", "16", "24", "--windows", "10", "20", "--no-progress"],
            {"num_replicas": ["16", "24"], "windows": ["10", "20"]},
            False,
        ),
        (
            "sweep",
            "/sweep/upload",
            "window",
            ["--replicas", "24", "--policies", "spill", "global", "--spill-slots", "2"],
            {"num_replicas": ["24"], "policies": ["spill", "global"], "spill_slots": "2"},
            False,
        ),
    ],
)
def test_the_cli_prints_the_apis_document(
    client: TestClient,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    route: str,
    loads: str,
    cli: list[str],
    form: dict,
    with_placement: bool,
) -> None:
    written = tmp_path / "out.json"
    placement_flag = "--placement" if command == "evaluate" else "--current"
    argv = [command, str(files[loads]), *CLI_CLUSTER, *cli, "--json", str(written)]
    if command != "sweep":  # a sweep's slot counts are its own
        argv += ["--replicas", "24"]
    if with_placement:
        argv += [placement_flag, str(files["placement"])]
    assert main(argv) == 0, capsys.readouterr().err

    upload = {"file": (files[loads].name, files[loads].read_bytes())}
    if with_placement:
        upload["placement"] = ("placement.csv", files["placement"].read_bytes())
    response = client.post(route, files=upload, data={**CLUSTER, **form})

    assert response.status_code == 200, response.text
    assert untimed(json.loads(written.read_text())) == untimed(response.json())
