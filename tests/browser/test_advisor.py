"""The advisor and the frontier in headless Chromium: the sweep's charts draw with the choice in
use ringed, a sweep shows its progress as the server streams it and Cancel stops it on the
server, and a replay under several move budgets draws one point per budget."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import torch
from playwright.sync_api import Page, expect

from eplb_core.synthetic import drifting_series

pytestmark = pytest.mark.browser

TRACES = """(id) => document.getElementById(id).data.map((trace) => ({
  name: trace.name, x: Array.from(trace.x), y: Array.from(trace.y)}))"""


@pytest.fixture(scope="module")
def long_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DeepSeek-V3 shaped: 200 steps of 58 layers x 256 experts (SGLang's dump format)."""
    path = tmp_path_factory.mktemp("advisor") / "expert_distribution_recorder_1.pt"
    series = drifting_series(200, layers=58, experts=256, seed=9).round().to(torch.int32)
    torch.save({"logical_count": series}, path)
    return path


@pytest.fixture(scope="module")
def short_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("advisor") / "short.pt"
    series = drifting_series(60, layers=8, experts=64, seed=3).round().long()
    torch.save({"logical_count": series}, path)
    return path


def load_example(page: Page) -> None:
    page.get_by_role("button", name="Load example").click()
    expect(page.locator("#data-name")).to_have_text("deepseek-v3-example.csv")


def run_advisor(page: Page) -> None:
    page.get_by_role("button", name="Run the advisor").click()
    expect(page.locator("#advisor-results")).to_have_attribute(
        "data-drawn", "true", timeout=180_000
    )


def test_the_advisor_charts_slots_and_policies_with_the_choice_in_use(
    page: Page, server_url: str, console_errors: list[str], artifacts: Path
) -> None:
    load_example(page)
    # Defaults: the fewest slots that hold every expert plus 0, 1, 2, 4, 8 per GPU, and the
    # three policies where groups stay on nodes: 15 points, within the server's 16.
    expect(page.locator("#sweep-replicas")).to_have_value("256, 288, 320, 384, 512")
    expect(page.locator("#sweep-policies")).to_have_value("hierarchical, spill:1, global")
    expect(page.locator("#sweep-windows-row")).to_be_hidden()  # one window: no replays
    expect(page.locator("#sweep-hint")).to_have_text(
        "15 points: 5 slot counts × 3 policies, each a plan."
    )
    page.fill("#sweep-replicas", "256, 288, 320, 384, 512, 640")
    expect(page.locator("#sweep-hint")).to_contain_text("18 points: this server sweeps at most 16")
    expect(page.get_by_role("button", name="Run the advisor")).to_be_disabled()
    page.get_by_role("button", name="Reset to the defaults").click()
    expect(page.locator("#sweep-replicas")).to_have_value("256, 288, 320, 384, 512")
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    run_advisor(page)

    slots = {trace["name"]: trace for trace in page.evaluate(TRACES, "chart-sweep-slots")}
    assert {
        "hierarchical",
        "spill:1",
        "global",
        "extra expert memory per GPU",
        "your choice",
    } <= set(slots)
    assert slots["hierarchical"]["x"] == [8, 9, 10, 12, 16]  # slots per GPU
    # 42 MiB per expert x 58 layers per extra slot per GPU.
    assert slots["extra expert memory per GPU"]["y"] == pytest.approx(
        [extra * 58 * 42 / 1024 for extra in (0, 1, 2, 4, 8)]
    )
    response = httpx.post(
        f"{server_url}/sweep/upload",
        timeout=120,
        data={
            "num_groups": "8",
            "num_nodes": "4",
            "num_gpus": "32",
            "algorithm": "greedy",
            "num_replicas": ["256", "288", "320", "384", "512"],
            "policies": ["hierarchical", "spill:1", "global"],
        },
        files={
            "file": (
                "example.csv",
                httpx.get(f"{server_url}/dashboard/example.csv").content,
                "text/csv",
            )
        },
    )
    points = response.json()["points"]
    assert slots["hierarchical"]["y"] == [
        p["mean_balancedness"] for p in points if p["policy"] == "hierarchical"
    ]
    (chosen,) = [p for p in points if p["policy"] == "hierarchical" and p["num_replicas"] == 288]
    assert slots["your choice"]["x"] == [9] and slots["your choice"]["y"] == [
        chosen["mean_balancedness"]
    ]
    policies = {trace["name"]: trace for trace in page.evaluate(TRACES, "chart-sweep-policies")}
    assert set(policies) == {"hierarchical", "spill:1", "global", "your choice"}
    assert policies["your choice"]["x"] == [chosen["mean_nodes_per_token"]]
    expect(page.locator("#panel-sweep-windows")).to_be_hidden()
    expect(page.locator("#sweep-table tbody tr")).to_have_count(15)
    expect(page.locator("#advisor-stale")).to_be_hidden()
    page.locator("#advisor-results").screenshot(path=artifacts / "advisor.png")

    page.fill("#sweep-policies", "hierarchical, global")  # the choices are inputs
    expect(page.locator("#advisor-stale")).to_be_visible()
    assert console_errors == []


def test_a_series_gets_the_windows_chart(
    page: Page, short_series: Path, console_errors: list[str]
) -> None:
    page.set_input_files("#loads-file", short_series)
    expect(page.locator("#data-steps")).to_have_text("60 steps")
    expect(page.locator("#sweep-windows-row")).to_be_visible()
    # A few windows: the series cut into about 20, 10 and 5.
    expect(page.locator("#sweep-windows")).to_have_value("3, 6, 12")
    expect(page.locator("#sweep-policies")).to_have_value("hierarchical")
    page.fill("#sweep-replicas", "64, 288")
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    run_advisor(page)

    lines = {trace["name"]: trace for trace in page.evaluate(TRACES, "chart-sweep-windows")}
    assert set(lines) == {"64 slots", "288 slots (yours)"}
    for line in lines.values():
        assert len(line["x"]) == 3  # a point per window
    expect(page.locator("#sweep-policies-note")).to_contain_text("One policy swept")
    assert console_errors == []


def admitted(server_url: str) -> int:
    return httpx.get(f"{server_url}/healthz").json()["admitted"]


def test_a_sweep_shows_its_progress_and_cancel_stops_it_on_the_server(
    page: Page, long_series: Path, server_url: str, console_errors: list[str], artifacts: Path
) -> None:
    page.set_input_files("#loads-file", long_series)
    expect(page.locator("#data-steps")).to_have_text("200 steps", timeout=60_000)
    # 347 plans per slot count, 1,740 in all: about 20 s of planning on a 2-core CPU.
    page.fill("#sweep-windows", "1, 2, 4")
    page.get_by_role("button", name="Run the advisor").click()

    bar = page.locator("#sweep-progress")
    expect(page.locator("#sweep-running")).to_be_visible()
    expect(page.locator("#sweep-progress-text")).to_contain_text(" of ", timeout=60_000)
    expect(page.locator("#busy-text")).to_contain_text("Sweeping…")
    page.wait_for_function("document.getElementById('sweep-progress').value >= 1")
    done, total = float(bar.get_attribute("value")), float(bar.get_attribute("max"))
    assert 1 <= done < total / 4, (done, total)
    assert admitted(server_url) == 1  # the sweep holds its place in the pool
    page.locator("#advisor-panel").screenshot(path=artifacts / "advisor-progress.png")

    page.get_by_role("button", name="Cancel").click()
    cancelled = time.monotonic()
    expect(page.locator("#sweep-status")).to_have_text("Cancelled: the server stopped the sweep.")
    expect(page.locator("#sweep-running")).to_be_hidden()
    expect(page.locator("#busy")).to_be_hidden()
    # The server stops at its next progress report, well before the three quarters of the
    # sweep still to run (seconds) would have ended.
    while admitted(server_url) and time.monotonic() < cancelled + 5:
        time.sleep(0.1)
    assert admitted(server_url) == 0, "the sweep still runs on the server"
    page.wait_for_timeout(1000)
    expect(page.locator("#advisor-results")).to_be_hidden()  # no result arrived
    expect(page.locator("#error")).to_be_hidden()
    expect(page.get_by_role("button", name="Run the advisor")).to_be_enabled()
    assert console_errors == []


def test_a_replay_under_budgets_draws_a_point_per_budget(
    page: Page, short_series: Path, console_errors: list[str], artifacts: Path
) -> None:
    page.set_input_files("#loads-file", short_series)
    expect(page.locator("#data-steps")).to_have_text("60 steps")
    budgets = page.locator("#replay-budgets")
    expect(budgets).to_have_value("full, 5%, 10%, 20%")
    expect(page.locator("#budgets-hint")).to_contain_text(
        "full plan, 5% (115), 10% (230), 20% (460)"
    )  # of 8 layers x 288 slots
    budgets.fill("full, 5%, ten")
    expect(page.locator("#budgets-hint")).to_contain_text('"ten" is not a move budget')
    expect(page.get_by_role("button", name="Replay")).to_be_disabled()
    budgets.fill("full, 5%, 10%, 20%, 300")
    page.fill("#replay-window", "10")
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("#replay-results")).to_have_attribute("data-drawn", "true", timeout=120_000)

    expect(page.locator("#panel-frontier")).to_be_visible()
    lines = {trace["name"]: trace for trace in page.evaluate(TRACES, "chart-frontier")}
    assert set(lines) == {"no rebalancing", "greedy", "hybrid"}
    for algorithm in ("greedy", "hybrid"):
        assert len(lines[algorithm]["x"]) == 5  # one point per budget
        assert lines[algorithm]["x"] == sorted(lines[algorithm]["x"])
    assert lines["no rebalancing"]["x"] == [0]
    rows = page.locator("#frontier-table tbody tr")
    expect(rows).to_have_count(10)
    expect(rows.first.locator("td").first).to_have_text("5%")
    expect(page.locator("#frontier-table")).to_contain_text("300 slots")
    page.locator("#panel-frontier").screenshot(path=artifacts / "frontier.png")

    budgets.fill("full, 5%")  # the budgets are inputs of the replay
    expect(page.locator("#replay-stale")).to_be_visible()
    expect(page.locator("#results-stale")).to_be_hidden()
    assert console_errors == []
