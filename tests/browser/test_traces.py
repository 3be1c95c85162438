"""Traces in headless Chromium: a .pt time series (SGLang's dump) replayed with its chart, the
placement in use with its moves, and SGLang's map downloaded as a .pt."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
import torch
from playwright.sync_api import Page, expect

from eplb_core import rebalance_experts
from eplb_core.io import format_csv_matrix
from eplb_core.synthetic import drifting_series, zipf_loads
from tests.browser.conftest import downloaded

pytestmark = pytest.mark.browser

PREFILL = {
    "num_replicas": "288",
    "num_groups": "8",
    "num_nodes": "4",
    "num_gpus": "32",
    "seed": "0",
}
STEPS, LAYERS, EXPERTS = 60, 8, 64


@pytest.fixture(scope="module")
def sglang_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dump shaped like SGLang's expert distribution recorder's: a dict whose
    ``logical_count`` is [steps, layers, experts] int64 token counts."""
    counts = drifting_series(STEPS, layers=LAYERS, experts=EXPERTS, seed=3).round().long()
    path = tmp_path_factory.mktemp("dump") / "expert_distribution_recorder_1700000000.pt"
    torch.save({"rank": 0, "logical_count": counts}, path)
    return path


def test_a_pt_time_series_replays_with_its_chart(
    page: Page,
    sglang_dump: Path,
    server_url: str,
    console_errors: list[str],
    outside_requests: list[str],
    artifacts: Path,
) -> None:
    expect(page.locator("#replay-panel")).to_be_hidden()
    page.set_input_files("#loads-file", sglang_dump)
    expect(page.locator("#data-shape")).to_have_text(f"{LAYERS} layers × {EXPERTS} experts")
    expect(page.locator("#data-steps")).to_have_text(f"{STEPS} steps")
    expect(page.locator("#replay-panel")).to_be_visible()
    expect(page.locator("#replay-window")).to_have_value(str(STEPS // 10))

    page.fill("#replay-window", "7")
    expect(page.locator("#window-hint")).to_have_text(
        "8 windows of 7 steps, 7 scored · the last 4 steps dropped"
    )
    page.fill("#replay-window", "31")
    expect(page.locator("#window-hint")).to_contain_text("A replay needs at least 2 windows")
    expect(page.get_by_role("button", name="Replay")).to_be_disabled()
    page.fill("#replay-window", "10")
    expect(page.locator("#window-hint")).to_have_text("6 windows of 10 steps, 5 scored")
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("#replay-results")).to_have_attribute("data-drawn", "true", timeout=60_000)

    chart = page.locator("#chart-replay")
    expect(chart.locator("svg.main-svg").first).to_be_visible()
    expect(chart.locator(".scatterlayer .trace")).to_have_count(6)  # 3 strategies x 2 scores
    expect(chart.locator(".legendtext").first).to_have_text("none, next window")
    expect(page.locator("#replay-stale")).to_be_hidden()
    chart.screenshot(path=artifacts / "replay-chart.png")
    response = httpx.post(
        f"{server_url}/replay/upload",
        data={**PREFILL, "window": "10"},
        files={"file": (sglang_dump.name, sglang_dump.read_bytes())},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    expected = response.json()["strategies"]
    for name in ("none", "greedy", "hybrid"):
        card = page.locator(f"#card-replay-{name}")
        assert float(card.get_attribute("data-next-window")) == expected[name]["mean_next_window"]
        assert float(card.get_attribute("data-in-sample")) == expected[name]["mean_in_sample"]
        expect(card.locator(".next")).to_have_text(f"{expected[name]['mean_next_window']:.3f}")
        expect(card.locator(".in-sample")).to_have_text(
            f"in-sample {expected[name]['mean_in_sample']:.3f}"
        )
    expect(page.locator("#card-replay-series .windows")).to_have_text("5 windows scored")

    page.get_by_role("button", name="Rebalance").click()  # plans on the sum of every step
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)
    expect(page.locator("#card-policy .note")).to_contain_text(f"{STEPS} steps summed")
    expect(page.locator("#replay-results")).to_be_visible()
    expect(page.locator("#replay-stale")).to_be_hidden()  # the algorithm is not the replay's
    page.fill("#replay-window", "12")
    expect(page.locator("#replay-stale")).to_be_visible()
    expect(page.locator("#results-stale")).to_be_hidden()  # the window is not the plan's

    assert console_errors == [] and outside_requests == []
    page.screenshot(path=artifacts / "dashboard-replay.png", full_page=True)


def test_placement_in_use_counts_moves_and_exports_the_sglang_map(
    page: Page, tmp_path: Path, server_url: str, console_errors: list[str], artifacts: Path
) -> None:
    loads = zipf_loads(layers=4, experts=EXPERTS, seed=5)
    loads_path = tmp_path / "loads.csv"
    loads_path.write_text(format_csv_matrix(loads))
    in_use, _, _ = rebalance_experts(
        zipf_loads(layers=4, experts=EXPERTS, seed=6), 288, 8, 4, 32, algorithm="greedy"
    )
    placement_path = tmp_path / "in-use.csv"
    placement_path.write_text(format_csv_matrix(in_use))

    page.set_input_files("#loads-file", loads_path)
    expect(page.locator("#data-shape")).to_have_text(f"4 layers × {EXPERTS} experts")
    expect(page.locator("#replay-panel")).to_be_hidden()  # one window: nothing to replay
    page.locator("#deploy summary").click()
    page.set_input_files("#placement-file", placement_path)
    expect(page.locator("#placement-name")).to_have_text("in-use.csv")
    expect(page.locator("#deploy summary")).to_contain_text("in-use.csv")
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    page.check("#cluster-form [name=keep_slots]")
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)

    form = {**PREFILL, "algorithm": "greedy", "keep_slots": "true"}
    response = httpx.post(
        f"{server_url}/rebalance/upload",
        data=form,
        timeout=60,
        files={
            "file": ("loads.csv", loads_path.read_bytes(), "text/csv"),
            "placement": ("in-use.csv", placement_path.read_bytes(), "text/csv"),
        },
    )
    assert response.status_code == 200, response.text
    expected = response.json()
    moves = page.locator("#card-moves")
    assert int(moves.get_attribute("data-total")) == expected["moves"]["total"]
    expect(moves.locator(".note")).to_contain_text(
        "slots change expert from the placement in use (slots kept)"
    )
    expect(page.locator("#chart-gpu")).to_contain_text("Before: the placement in use")

    page.screenshot(path=artifacts / "dashboard-moves.png", full_page=True)
    name, content = downloaded(page, "#download-map-pt")
    assert name == "physical_to_logical_map.pt"
    exported = torch.load(io.BytesIO(content), weights_only=True)
    assert list(exported) == ["physical_to_logical_map"]
    placement = exported["physical_to_logical_map"]
    assert placement.dtype == torch.int64 and list(placement.shape) == [4, 288]
    assert placement.tolist() == expected["plan"]["phy2log"]

    page.get_by_role("button", name="Remove").click()
    expect(page.locator("#placement-chosen")).to_be_hidden()
    expect(page.locator("#results-stale")).to_be_visible()  # planned from the removed one
    expect(page.locator("#download-map-pt")).to_be_disabled()
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)
    expect(moves).to_be_hidden()  # nothing in use to move from
    expect(page.locator("#chart-gpu")).to_contain_text("Before: slot p holds expert p mod E")
    assert console_errors == []
