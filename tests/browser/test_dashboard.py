"""The dashboard in headless Chromium: upload, rebalance, charts, summary, downloads, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from eplb_core.io import format_csv_matrix
from eplb_core.synthetic import zipf_loads

pytestmark = pytest.mark.browser

CHARTS = ("chart-input", "chart-gpu", "chart-node", "chart-balancedness")
FORM = {"num_replicas": "288", "num_groups": "8", "num_nodes": "4", "num_gpus": "32",
        "algorithm": "hybrid", "seed": "0"}


@pytest.fixture(scope="module")
def skewed_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DeepSeek-V3 shaped (58 x 256) Zipf matrix: a few experts carry most tokens."""
    path = tmp_path_factory.mktemp("loads") / "skewed.csv"
    path.write_text(format_csv_matrix(zipf_loads(seed=7)))
    return path


def form_values(page: Page) -> dict[str, str]:
    return {name: page.locator(f"#cluster-form [name={name}]").input_value() for name in FORM}


def upload(page: Page, path: Path) -> None:
    page.set_input_files("#loads-file", path)


def fetch_text(page: Page, selector: str) -> str:
    """What a download link serves, fetched inside the page."""
    return page.evaluate("async (selector) => (await fetch(document.querySelector(selector)"
                         ".href)).text()", selector)


@pytest.mark.parametrize("algorithm", ["greedy", "hybrid"])
def test_rebalance_draws_charts_summary_and_downloads(
        page: Page, skewed_csv: Path, algorithm: str, console_errors: list[str],
        outside_requests: list[str], artifacts: Path) -> None:
    upload(page, skewed_csv)
    expect(page.locator("#data-shape")).to_have_text("58 layers × 256 experts")
    expect(page.locator("#data-total")).to_have_text(
        f"{int(zipf_loads(seed=7).double().sum()):,} tokens")
    expect(page.locator("#chart-input svg.main-svg").first).to_be_attached()

    page.select_option("#cluster-form [name=algorithm]", algorithm)
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)

    for chart in CHARTS:
        expect(page.locator(f"#{chart} svg.main-svg").first).to_be_visible()
    balancedness = page.locator("#card-balancedness")
    before = float(balancedness.get_attribute("data-before"))
    after = float(balancedness.get_attribute("data-after"))
    assert 0 < before < after <= 1
    worst = page.locator("#card-worst")
    assert float(worst.get_attribute("data-after")) < float(worst.get_attribute("data-before"))
    expect(page.locator("#card-policy .policy")).to_have_text("hierarchical")
    expect(page.locator("#card-policy .algorithm")).to_have_text(algorithm)

    plan = json.loads(fetch_text(page, "#download-json"))
    # The plan file the CLI writes (eplb rebalance -o), from the server's export route.
    assert set(plan) == {"phy2log", "log2phy", "logcnt"}
    assert len(plan["phy2log"]) == 58 and {len(row) for row in plan["phy2log"]} == {288}
    for phy2log, logcnt in zip(plan["phy2log"], plan["logcnt"]):
        assert sorted(set(phy2log)) == list(range(256))
        assert [phy2log.count(expert) for expert in range(256)] == logcnt
    rows = fetch_text(page, "#download-csv").splitlines()
    assert [[int(cell) for cell in row.split(",")] for row in rows] == plan["phy2log"]

    assert console_errors == [] and outside_requests == []
    drawn_ms = float(page.locator("#results").get_attribute("data-drawn-ms"))
    (artifacts / f"rebalance-{algorithm}.json").write_text(json.dumps(
        {"matrix": [58, 256], "algorithm": algorithm, "pressed_to_drawn_ms": drawn_ms}))
    page.screenshot(path=artifacts / f"dashboard-{algorithm}.png", full_page=True)


def test_hovering_a_gpu_cell_names_its_experts(page: Page, skewed_csv: Path) -> None:
    upload(page, skewed_csv)
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)

    cell = page.locator("#chart-gpu .xy .nsewdrag").first  # the "before" subplot
    box = cell.bounding_box()
    # Layer 0 is the top row; GPU 0 the leftmost column: 32 GPUs, 58 layers.
    page.mouse.move(box["x"] + box["width"] / 64, box["y"] + box["height"] / 116)
    hover = page.locator("#chart-gpu .hoverlayer")
    expect(hover).to_contain_text("Layer 0")
    expect(hover).to_contain_text("GPU 0")
    expect(hover).to_contain_text("tokens")
    # Before rebalancing, GPU 0 holds slots 0..8: experts 0..8.
    expect(hover).to_contain_text("Experts 0, 1, 2, 3, 4, 5, 6, 7, 8")


def test_invalid_csv_shows_the_reason_and_keeps_data_and_form(
        page: Page, skewed_csv: Path, tmp_path: Path) -> None:
    upload(page, skewed_csv)
    expect(page.locator("#data-shape")).to_have_text("58 layers × 256 experts")
    page.get_by_role("button", name="DeepSeek-V3 decode").click()
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    page.fill("#cluster-form [name=seed]", "7")
    chosen = form_values(page)
    assert chosen == {**FORM, "num_nodes": "9", "num_gpus": "144", "algorithm": "greedy",
                      "seed": "7"}

    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5,six\n")
    upload(page, bad)

    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("row 2, column 3")
    expect(error).to_contain_text("'six' is not a number")
    expect(error).to_contain_text("skewed.csv is still loaded")
    assert form_values(page) == chosen
    expect(page.locator("#data-name")).to_have_text("skewed.csv")
    expect(page.get_by_role("button", name="Rebalance")).to_be_enabled()


def test_server_refusal_is_shown_next_to_the_form_and_nothing_is_lost(
        page: Page, skewed_csv: Path) -> None:
    upload(page, skewed_csv)
    expect(page.locator("#data-shape")).to_have_text("58 layers × 256 experts")
    page.fill("#cluster-form [name=num_replicas]", "8192")  # the page allows it, the server
    page.select_option("#cluster-form [name=algorithm]", "greedy")  # is limited to 4096
    chosen = form_values(page)
    page.get_by_role("button", name="Rebalance").click()

    error = page.locator("#error")
    expect(error).to_contain_text("Rebalance failed: too many slots (num_replicas): 8,192")
    expect(error).to_contain_text("EPLB_MAX_REPLICAS")
    assert form_values(page) == chosen
    expect(page.locator("#data-shape")).to_have_text("58 layers × 256 experts")
    expect(page.locator("#results")).to_be_hidden()

    page.fill("#cluster-form [name=num_replicas]", "288")
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)
    expect(error).to_be_hidden()


def test_inline_validation_says_why_a_shape_is_impossible(page: Page, skewed_csv: Path) -> None:
    button = page.get_by_role("button", name="Rebalance")
    expect(button).to_be_disabled()  # nothing loaded yet
    upload(page, skewed_csv)
    expect(button).to_be_enabled()
    message = page.locator("#validation")
    cases = {
        ("num_gpus", "35"): "288 slots cannot be split evenly over 35 GPUs.",
        ("num_nodes", "5"): "32 GPUs cannot be split evenly over 5 nodes.",
        ("num_groups", "3"): "256 experts cannot be split evenly into 3 groups.",
        ("num_replicas", "128"): "128 slots cannot hold 256 experts",
        ("seed", "-1"): "Seed must be a whole number of at least 0.",
    }
    for (field, value), reason in cases.items():
        original = page.locator(f"#cluster-form [name={field}]").input_value()
        page.fill(f"#cluster-form [name={field}]", value)
        expect(message).to_contain_text(reason)
        expect(button).to_be_disabled()
        page.fill(f"#cluster-form [name={field}]", original)
        expect(message).to_be_hidden()
        expect(button).to_be_enabled()


def test_example_and_presets(page: Page, console_errors: list[str]) -> None:
    page.get_by_role("button", name="Load example").click()
    expect(page.locator("#data-name")).to_have_text("deepseek-v3-example.csv")
    expect(page.locator("#data-shape")).to_have_text("58 layers × 256 experts")
    expect(page.locator("#chart-input svg.main-svg").first).to_be_attached()

    page.get_by_role("button", name="DeepSeek-V3 decode").click()
    assert form_values(page) == {**FORM, "num_nodes": "9", "num_gpus": "144"}
    expect(page.locator("#shape-hint")).to_contain_text("2 slots per GPU · 16 GPUs per node")
    expect(page.locator("#shape-hint")).to_contain_text("global policy")
    page.get_by_role("button", name="DeepSeek-V3 prefill").click()
    assert form_values(page) == FORM
    expect(page.locator("#shape-hint")).to_contain_text("hierarchical policy")
    assert console_errors == []


def test_a_csv_dropped_on_the_drop_zone_loads(page: Page, console_errors: list[str]) -> None:
    transfer = page.evaluate_handle(
        "(text) => { const data = new DataTransfer();"
        " data.items.add(new File([text], 'dropped.csv', {type: 'text/csv'})); return data; }",
        "layer,0,1,2,3\nL0,5,1,1,1\nL1,1,1,1,9\n")
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})

    expect(page.locator("#data-name")).to_have_text("dropped.csv")
    expect(page.locator("#data-shape")).to_have_text("2 layers × 4 experts")
    expect(page.locator("#data-total")).to_have_text("20 tokens")
    expect(page.locator("#chart-input svg.main-svg").first).to_be_attached()
    assert console_errors == []
