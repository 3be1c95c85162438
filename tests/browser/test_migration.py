"""Migration-aware planning, policies, placements scored without planning and one layer in
detail, in headless Chromium: the move budget caps the moves, the migration card gives the
bytes and the time, the spill policy gives nodes per token, Score shows the placement in use
without Rebalance, and a click on a heatmap opens its layer with its numbers."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from eplb_core import rebalance_experts
from eplb_core.io import format_csv_matrix
from eplb_core.synthetic import zipf_loads

pytestmark = pytest.mark.browser

PREFILL = {"num_replicas": "288", "num_groups": "8", "num_nodes": "4", "num_gpus": "32"}
EXPERT_BYTES = 44040192  # DeepSeek-V3's expert in FP8, the form's default (42 MiB)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """DeepSeek-V3 shaped loads, the placement in use (a greedy plan of other loads), and a
    second placement (a plan of yet other loads)."""
    folder = tmp_path_factory.mktemp("migration")
    paths = {
        "loads": folder / "loads.csv",
        "in_use": folder / "in-use.csv",
        "other": folder / "other.csv",
    }
    paths["loads"].write_text(format_csv_matrix(zipf_loads(seed=21)))
    for name, seed in (("in_use", 22), ("other", 23)):
        placement, _, _ = rebalance_experts(
            zipf_loads(seed=seed), 288, 8, 4, 32, algorithm="greedy"
        )
        paths[name].write_text(format_csv_matrix(placement))
    return paths


def upload(page: Page, path: Path, placement: Path | None = None) -> None:
    page.set_input_files("#loads-file", path)
    expect(page.locator("#data-name")).to_have_text(path.name)
    if placement is not None:
        page.locator("#deploy summary").click()
        page.set_input_files("#placement-file", placement)
        expect(page.locator("#placement-name")).to_have_text(placement.name)


def rebalance(page: Page) -> None:
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)


def rest(server_url: str, route: str, form: dict, **files: Path) -> dict:
    response = httpx.post(
        f"{server_url}{route}",
        data=form,
        timeout=60,
        files={name: (path.name, path.read_bytes(), "text/csv") for name, path in files.items()},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_move_budget_caps_the_moves_and_the_migration_card_gives_the_bytes(
    page: Page, files: dict[str, Path], server_url: str, console_errors: list[str], artifacts: Path
) -> None:
    upload(page, files["loads"], files["in_use"])
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    page.fill("#cluster-form [name=move_budget_pct]", "5")
    budget = math.floor(0.05 * 58 * 288)
    expect(page.locator("#budget-hint")).to_contain_text(f"At most {budget:,} slots of 16,704")
    expect(page.locator("#deploy summary")).to_contain_text("in-use.csv · budget 5%")
    page.fill("#cluster-form [name=link_gb_per_s]", "100")
    rebalance(page)

    moves = page.locator("#card-moves")
    expect(moves).to_be_visible()
    total = int(moves.get_attribute("data-total"))
    assert int(moves.get_attribute("data-budget")) == budget
    assert 0 < total <= budget
    expect(moves.locator(".moves")).to_have_text(f"{total:,}")
    expect(moves.locator(".note")).to_contain_text(f"budget {budget:,} (5% of slots)")
    expected = rest(
        server_url,
        "/rebalance/upload",
        {**PREFILL, "algorithm": "greedy", "move_budget": "0.05", "link_gb_per_s": "100"},
        file=files["loads"],
        placement=files["in_use"],
    )
    assert total == expected["moves"]["total"]
    migration = page.locator("#card-migration")
    expect(migration).to_be_visible()
    assert int(migration.get_attribute("data-total-bytes")) == total * EXPERT_BYTES
    busiest = expected["migration"]["max_gpu_bytes"]
    assert int(migration.get_attribute("data-max-gpu-bytes")) == busiest
    assert float(migration.get_attribute("data-seconds")) == pytest.approx(busiest / 100e9)
    expect(migration.locator(".total")).to_have_text(f"{total * EXPERT_BYTES / 2**30:.2f} GiB")
    expect(migration.locator(".note")).to_contain_text(
        f"{busiest / 2**30:.2f} GiB into GPU {expected['migration']['busiest_gpu']}, the busiest"
    )
    expect(migration.locator(".note")).to_contain_text("at 100 GB/s")
    speedup = page.locator("#card-speedup")
    assert float(speedup.get_attribute("data-speedup")) == pytest.approx(expected["speedup"])
    page.locator("#results .cards").screenshot(path=artifacts / "cards-budget.png")

    # A larger budget buys more balance with more moves; the budget is an input: the plan on
    # screen is out of date until planned again.
    capped_after = float(page.locator("#card-balancedness").get_attribute("data-after"))
    page.fill("#cluster-form [name=move_budget_pct]", "20")
    expect(page.locator("#results-stale")).to_be_visible()
    rebalance(page)
    assert int(moves.get_attribute("data-total")) <= math.floor(0.2 * 58 * 288)
    assert int(moves.get_attribute("data-total")) > total
    assert float(page.locator("#card-balancedness").get_attribute("data-after")) >= capped_after
    page.fill("#cluster-form [name=expert_mib]", "21")  # the expert size is an input too
    expect(page.locator("#results-stale")).to_be_visible()
    page.fill("#cluster-form [name=move_budget_pct]", "120")
    expect(page.locator("#validation")).to_contain_text("from 0 to 100%")
    expect(page.get_by_role("button", name="Rebalance")).to_be_disabled()
    assert console_errors == []


def test_the_spill_policy_asks_for_its_slots_and_shows_nodes_per_token(
    page: Page, files: dict[str, Path], server_url: str
) -> None:
    upload(page, files["loads"])
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    spill = page.locator("#cluster-form [name=spill_slots]")
    expect(spill).to_be_hidden()
    page.select_option("#cluster-form [name=policy]", "spill")
    expect(spill).to_be_visible()
    expect(page.locator("#shape-hint")).to_contain_text("spill policy")
    page.fill("#cluster-form [name=spill_slots]", "10")  # a GPU has 9 slots
    expect(page.locator("#validation")).to_contain_text("10 is more than the 9 slots of a GPU")
    page.fill("#cluster-form [name=spill_slots]", "2")
    expect(page.locator("#validation")).to_be_hidden()
    rebalance(page)

    expect(page.locator("#card-policy .policy")).to_have_text("spill")
    expected = rest(
        server_url,
        "/rebalance/upload",
        {**PREFILL, "algorithm": "greedy", "policy": "spill", "spill_slots": "2"},
        file=files["loads"],
    )
    assert expected["params"]["spill_slots"] == 2
    traffic = page.locator("#card-traffic")
    before, after = (
        expected["before"]["mean_nodes_per_token"],
        expected["after"]["mean_nodes_per_token"],
    )
    assert float(traffic.get_attribute("data-before")) == before
    assert float(traffic.get_attribute("data-after")) == after
    expect(traffic.locator(".before")).to_have_text(f"{before:.2f}")
    expect(traffic.locator(".after")).to_have_text(f"{after:.2f}")
    expect(traffic.locator(".note")).to_contain_text("nodes a token is sent to")

    page.fill("#cluster-form [name=spill_slots]", "1")  # an input: the plan is out of date
    expect(page.locator("#results-stale")).to_be_visible()
    page.select_option("#cluster-form [name=policy]", "hierarchical")
    expect(spill).to_be_hidden()


def test_score_shows_the_placement_in_use_without_rebalancing(
    page: Page, files: dict[str, Path], server_url: str, console_errors: list[str], artifacts: Path
) -> None:
    score = page.get_by_role("button", name="Score", exact=True)
    expect(score).to_be_disabled()
    upload(page, files["loads"])
    expect(page.locator("#evaluate-hint")).to_contain_text("Choose the placement in use")
    expect(score).to_be_disabled()
    page.locator("#deploy summary").click()
    page.set_input_files("#placement-file", files["in_use"])
    expect(score).to_be_enabled()
    score.click()
    results = page.locator("#evaluate-results")
    expect(results).to_have_attribute("data-drawn", "true", timeout=60_000)

    expect(page.locator("#results")).to_be_hidden()  # nothing was planned
    expected = rest(
        server_url, "/evaluate/upload", PREFILL, file=files["loads"], placement=files["in_use"]
    )
    rows = page.locator("#evaluate-table tbody tr")
    expect(rows).to_have_count(1)
    in_use = page.locator("#evaluate-table tr[data-placement=in-use]")
    assert float(in_use.get_attribute("data-mean-balancedness")) == expected["mean_balancedness"]
    expect(in_use.locator("td").nth(0)).to_have_text(f"{expected['mean_balancedness']:.3f}")
    expect(in_use.locator("td").nth(2)).to_have_text(
        f"{expected['placement']['mean_nodes_per_token']:.2f}"
    )
    heatmap = page.locator("#chart-evaluate-gpu")
    page.check("#evaluate-gpu-view input[value=tokens]")
    assert (
        page.evaluate(
            "Array.from(document.getElementById('chart-evaluate-gpu').data[0].z,"
            " (row) => Array.from(row))"
        )
        == expected["placement"]["gpu_load"]
    )
    expect(heatmap).to_contain_text("the placement in use")

    # A second placement beside it: its moves and speed-up from the placement in use.
    page.set_input_files("#compare-file", files["other"])
    expect(page.locator("#evaluate-stale")).to_be_visible()
    score.click()
    expect(page.locator("#evaluate-stale")).to_be_hidden(timeout=60_000)
    expect(rows).to_have_count(2)
    both = rest(
        server_url,
        "/evaluate/upload",
        PREFILL,
        file=files["loads"],
        placement=files["other"],
        compare=files["in_use"],
    )
    other = page.locator("#evaluate-table tr[data-placement=compare]")
    expect(other.locator("th")).to_have_text("other.csv")
    assert float(other.get_attribute("data-mean-balancedness")) == both["mean_balancedness"]
    assert int(other.get_attribute("data-moves")) == both["moves"]["total"]
    expect(other.locator("td").nth(4)).to_have_text(f"{both['speedup']:.2f}×")
    expect(heatmap).to_contain_text("other.csv")

    # The plan on screen joins them once planned from the same placement in use.
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    rebalance(page)
    expect(rows).to_have_count(3)
    plan = page.locator("#evaluate-table tr[data-placement=plan]")
    assert float(plan.get_attribute("data-mean-balancedness")) == float(
        page.locator("#card-balancedness").get_attribute("data-after")
    )
    results.screenshot(path=artifacts / "evaluate.png")
    assert console_errors == []


def click_layer(page: Page, chart: str, layer: int, layers: int = 58) -> None:
    """Click the cell of ``layer`` (rows top down) in the first heatmap of ``chart``."""
    cell = page.locator(f"#{chart} .nsewdrag").first
    cell.scroll_into_view_if_needed()
    box = cell.bounding_box()
    page.mouse.click(
        box["x"] + box["width"] * 0.1, box["y"] + box["height"] * (layer + 0.5) / layers
    )


def test_a_click_on_a_heatmap_opens_its_layer(
    page: Page, files: dict[str, Path], server_url: str, console_errors: list[str], artifacts: Path
) -> None:
    upload(page, files["loads"], files["in_use"])
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    rebalance(page)
    expected = rest(
        server_url,
        "/rebalance/upload",
        {**PREFILL, "algorithm": "greedy"},
        file=files["loads"],
        placement=files["in_use"],
    )

    dialog = page.locator("#layer-dialog")
    expect(dialog).to_be_hidden()
    click_layer(page, "chart-gpu", 12)
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("data-drawn", "12", timeout=30_000)
    expect(page.locator("#layer-title")).to_have_text("Layer 12 of 58")
    # Each GPU's load before and after: the plan's numbers for this layer.
    bars = page.evaluate("""() => Object.fromEntries(document.getElementById('chart-layer-gpu')
        .data.filter((trace) => trace.type === 'bar')
        .map((trace) => [trace.name, Array.from(trace.y)]))""")
    assert bars == {
        "the placement in use": expected["before"]["gpu_load"][12],
        "the plan": expected["after"]["gpu_load"][12],
    }
    summary = page.locator("#layer-summary tbody tr")
    expect(summary).to_have_count(2)
    expect(summary.nth(1).locator("td").nth(0)).to_have_text(
        f"{expected['after']['balancedness'][12]:.3f}"
    )
    expect(page.locator("#layer-note")).to_contain_text(
        f"{expected['moves']['per_layer'][12]:,} slots change expert"
    )
    # Replicas per expert: the plan's logcnt; the hottest experts with theirs.
    replicas = page.evaluate("""() => Array.from(document.getElementById('chart-layer-experts')
        .data.find((trace) => trace.name === 'replicas, the plan').y)""")
    assert replicas == expected["plan"]["logcnt"][12]
    loads = zipf_loads(seed=21)[12].tolist()
    hottest = sorted(range(256), key=lambda expert: -loads[expert])[:10]
    rows = page.locator("#layer-hottest tbody tr")
    expect(rows).to_have_count(10)
    expect(rows.first.locator("th")).to_have_text(str(hottest[0]))
    expect(rows.first.locator("td").nth(2)).to_contain_text(
        f"→ {expected['plan']['logcnt'][12][hottest[0]]}"
    )
    dialog.screenshot(path=artifacts / "layer-dialog.png")

    page.get_by_role("button", name="Next layer").click()
    expect(dialog).to_have_attribute("data-drawn", "13", timeout=30_000)
    expect(page.locator("#layer-title")).to_have_text("Layer 13 of 58")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # The loads' heatmap opens its layers too, under the plan on screen.
    click_layer(page, "chart-input", 40)
    expect(dialog).to_have_attribute("data-drawn", "40", timeout=30_000)
    expect(page.locator("#layer-summary tbody tr")).to_have_count(2)
    page.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # By number, for the keyboard.
    page.fill("#layer-number", "3")
    page.press("#layer-number", "Enter")
    expect(dialog).to_have_attribute("data-drawn", "3", timeout=30_000)
    expect(page.locator("#layer-title")).to_have_text("Layer 3 of 58")
    assert page.evaluate("window.cspViolations") == []
    assert console_errors == []
