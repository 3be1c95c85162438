"""The dashboard in headless Chromium: upload, rebalance, charts and their views, summary,
notes, downloads, out-of-date results, the server's checks, errors, plurals, the CSP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from eplb_core import PRESETS
from eplb_core.io import format_csv_matrix
from eplb_core.synthetic import zipf_loads
from tests.browser.conftest import downloaded

pytestmark = pytest.mark.browser

CHARTS = ("chart-input", "chart-gpu", "chart-node", "chart-balancedness")
FORM = {
    "num_replicas": "288",
    "num_groups": "8",
    "num_nodes": "4",
    "num_gpus": "32",
    "algorithm": "hybrid",
    "policy": "auto",
    "seed": "0",
}
DOWNLOADS = ("#download-json", "#download-csv", "#download-map-json", "#download-map-pt")


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
    expect(page.locator("#data-name")).to_have_text(path.name)


def rebalance(page: Page) -> None:
    """Press Rebalance and wait until every chart is drawn."""
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)


def rest_plan(server_url: str, path: Path, **form: str) -> dict:
    """The plan of the REST service for the same file and form."""
    response = httpx.post(
        f"{server_url}/rebalance/upload",
        data={**FORM, **form},
        timeout=60,
        files={"file": (path.name, path.read_bytes(), "text/csv")},
    )
    assert response.status_code == 200, response.text
    return response.json()


def drawn_z(page: Page, chart: str) -> list[list[list[float | None]]]:
    """The z matrices of the heatmaps Plotly has drawn in ``chart``."""
    return page.evaluate(
        "(id) => document.getElementById(id).data.map((trace) => "
        "Array.from(trace.z, (row) => Array.from(row)))",
        chart,
    )


@pytest.mark.parametrize("algorithm", ["greedy", "hybrid"])
def test_rebalance_draws_charts_summary_and_downloads(
    page: Page,
    skewed_csv: Path,
    algorithm: str,
    console_errors: list[str],
    outside_requests: list[str],
    artifacts: Path,
) -> None:
    upload(page, skewed_csv)
    expect(page.locator("#data-shape")).to_have_text("58 layers × 256 experts")
    expect(page.locator("#data-total")).to_have_text(
        f"{int(zipf_loads(seed=7).double().sum()):,} tokens"
    )
    expect(page.locator("#chart-input svg.main-svg").first).to_be_attached()

    page.select_option("#cluster-form [name=algorithm]", algorithm)
    rebalance(page)

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
    expect(page.locator("#result-notes")).to_be_hidden()  # nothing to note on this plan

    name, content = downloaded(page, "#download-json")
    plan = json.loads(content)
    # The plan file the CLI writes (eplb rebalance -o), from the server's export route.
    assert name == "plan.json"
    assert set(plan) == {"phy2log", "log2phy", "logcnt"}
    assert len(plan["phy2log"]) == 58 and {len(row) for row in plan["phy2log"]} == {288}
    for phy2log, logcnt in zip(plan["phy2log"], plan["logcnt"]):
        assert sorted(set(phy2log)) == list(range(256))
        assert [phy2log.count(expert) for expert in range(256)] == logcnt
    name, content = downloaded(page, "#download-csv")
    assert name == "phy2log.csv"
    rows = content.decode().splitlines()
    assert [[int(cell) for cell in row.split(",")] for row in rows] == plan["phy2log"]

    assert console_errors == [] and outside_requests == []
    drawn_ms = float(page.locator("#results").get_attribute("data-drawn-ms"))
    (artifacts / f"rebalance-{algorithm}.json").write_text(
        json.dumps({"matrix": [58, 256], "algorithm": algorithm, "pressed_to_drawn_ms": drawn_ms})
    )
    page.screenshot(path=artifacts / f"dashboard-{algorithm}.png", full_page=True)


def test_hovering_a_gpu_cell_names_its_experts(page: Page, skewed_csv: Path) -> None:
    upload(page, skewed_csv)
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    rebalance(page)

    for view in ("ratio", "tokens"):
        page.check(f"#gpu-view input[value={view}]")
        cell = page.locator("#chart-gpu .xy .nsewdrag").first  # the "before" subplot
        cell.scroll_into_view_if_needed()
        box = cell.bounding_box()
        # Layer 0 is the top row; GPU 0 the leftmost column: 32 GPUs, 58 layers.
        page.mouse.move(box["x"] + box["width"] / 64, box["y"] + box["height"] / 116)
        hover = page.locator("#chart-gpu .hoverlayer")
        expect(hover).to_contain_text("Layer 0")
        expect(hover).to_contain_text("GPU 0")
        expect(hover).to_contain_text("tokens")
        # Before rebalancing, GPU 0 holds slots 0..8: experts 0..8.
        expect(hover).to_contain_text("Experts 0, 1, 2, 3, 4, 5, 6, 7, 8")
        page.mouse.move(0, 0)


def test_the_per_layer_view_shows_each_load_over_its_layer_mean(
    page: Page, skewed_csv: Path, server_url: str, artifacts: Path
) -> None:
    upload(page, skewed_csv)
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    rebalance(page)
    expected = rest_plan(server_url, skewed_csv, algorithm="greedy")

    # A flat plan is invisible next to the hot layout in tokens: the GPU chart opens on the
    # ratio view, where the imbalance it leaves shows.
    expect(page.locator("#gpu-view input[value=ratio]")).to_be_checked()
    before, after = drawn_z(page, "chart-gpu")
    for drawn, loads in (
        (before, expected["before"]["gpu_load"]),
        (after, expected["after"]["gpu_load"]),
    ):
        for drawn_row, row in zip(drawn, loads, strict=True):
            mean = sum(row) / len(row)
            assert drawn_row == pytest.approx([load / mean for load in row], abs=1e-4)
    expect(page.locator("#chart-gpu")).to_contain_text("× layer mean")
    page.locator("#panel-gpu").screenshot(path=artifacts / "gpu-ratio.png")

    page.check("#gpu-view input[value=tokens]")
    expect(page.locator("#chart-gpu .cbtitle")).to_have_text("tokens")
    assert drawn_z(page, "chart-gpu") == [
        expected["before"]["gpu_load"],
        expected["after"]["gpu_load"],
    ]
    page.check("#gpu-view input[value=ratio]")
    expect(page.locator("#chart-gpu .cbtitle").first).to_have_text("× layer mean")
    # The node chart switches on its own.
    node_view = page.locator("#node-view input:checked").get_attribute("value")
    assert node_view in ("ratio", "tokens")
    other = "tokens" if node_view == "ratio" else "ratio"
    page.check(f"#node-view input[value={other}]")
    expect(page.locator("#gpu-view input[value=ratio]")).to_be_checked()
    node_z = drawn_z(page, "chart-node")
    if other == "tokens":
        assert node_z[1] == expected["after"]["node_load"]
    else:
        row = expected["after"]["node_load"][0]
        assert node_z[1][0] == pytest.approx(
            [load / (sum(row) / len(row)) for load in row], abs=1e-4
        )

    # A view picked stays picked for the next plan.
    page.fill("#cluster-form [name=seed]", "1")
    rebalance(page)
    expect(page.locator(f"#node-view input[value={other}]")).to_be_checked()
    expect(page.locator("#gpu-view input[value=ratio]")).to_be_checked()


def test_changing_inputs_after_a_plan_marks_results_out_of_date(
    page: Page, skewed_csv: Path, tmp_path: Path
) -> None:
    stale = page.locator("#results-stale")
    upload(page, skewed_csv)
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    rebalance(page)
    expect(stale).to_be_hidden()
    for selector in DOWNLOADS:
        expect(page.locator(selector)).to_be_enabled()

    page.locator("#deploy summary").click()  # the options of the placement in use
    changes = [
        lambda: page.fill("#cluster-form [name=seed]", "3"),
        lambda: page.select_option("#cluster-form [name=policy]", "global"),
        lambda: page.check("#cluster-form [name=keep_slots]"),
        lambda: page.select_option("#preset", "deepseek-v3-decode"),
    ]
    for change in changes:
        change()
        expect(stale).to_be_visible()
        expect(page.locator("#results")).to_have_class("results is-stale")
        for selector in DOWNLOADS:
            expect(page.locator(selector)).to_be_disabled()
        expect(page.locator("#download-state")).to_contain_text("Out of date")
        rebalance(page)
        expect(stale).to_be_hidden()
        for selector in DOWNLOADS:
            expect(page.locator(selector)).to_be_enabled()

    # New loads: the plan on screen is of the old ones.
    other = tmp_path / "other.csv"
    other.write_text(format_csv_matrix(zipf_loads(seed=8)))
    upload(page, other)
    expect(stale).to_be_visible()
    expect(page.locator("#download-json")).to_be_disabled()
    rebalance(page)
    expect(stale).to_be_hidden()
    expect(page.locator("#download-json")).to_be_enabled()


def test_invalid_csv_shows_the_reason_and_keeps_data_and_form(
    page: Page, skewed_csv: Path, tmp_path: Path
) -> None:
    upload(page, skewed_csv)
    expect(page.locator("#data-shape")).to_have_text("58 layers × 256 experts")
    page.select_option("#preset", "deepseek-v3-decode")
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    page.fill("#cluster-form [name=seed]", "7")
    chosen = form_values(page)
    assert chosen == {
        **FORM,
        "num_nodes": "18",
        "num_gpus": "144",
        "algorithm": "greedy",
        "seed": "7",
    }

    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5,six\n")
    page.set_input_files("#loads-file", bad)

    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("row 2, column 3")
    expect(error).to_contain_text("'six' is not a number")
    expect(error).to_contain_text("skewed.csv is still loaded")
    assert form_values(page) == chosen
    expect(page.locator("#data-name")).to_have_text("skewed.csv")
    expect(page.get_by_role("button", name="Rebalance")).to_be_enabled()


def test_the_servers_limits_are_checked_as_you_type(page: Page, skewed_csv: Path) -> None:
    upload(page, skewed_csv)
    page.fill("#cluster-form [name=num_replicas]", "8192")  # this server takes 4096 at most

    expect(page.locator("#validation")).to_contain_text(
        "Too many slots (num_replicas): 8,192; this server takes at most 4,096 (EPLB_MAX_REPLICAS)"
    )
    expect(page.get_by_role("button", name="Rebalance")).to_be_disabled()


def test_server_refusal_is_shown_next_to_the_form_and_nothing_is_lost(
    page: Page, skewed_csv: Path, tmp_path: Path
) -> None:
    upload(page, skewed_csv)
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    placement = tmp_path / "in-use.csv"
    placement.write_text("0,1,2\n2,1,0\n")  # not the 58 x 288 the plan needs
    page.set_input_files("#placement-file", placement)
    chosen = form_values(page)
    page.get_by_role("button", name="Rebalance").click()

    error = page.locator("#error")
    expect(error).to_contain_text(
        "Rebalance failed: the placement has shape [2, 3]; this plan needs [58, 288]"
    )
    assert form_values(page) == chosen
    expect(page.locator("#data-shape")).to_have_text("58 layers × 256 experts")
    expect(page.locator("#results")).to_be_hidden()

    page.locator("#deploy summary").click()
    page.get_by_role("button", name="Remove").click()
    rebalance(page)
    expect(error).to_be_hidden()


def test_the_server_says_why_a_shape_is_impossible(page: Page, skewed_csv: Path) -> None:
    checks: list[str] = []

    def record(request: Request) -> None:
        if "/dashboard/check?" in request.url:
            checks.append(request.url)

    button = page.get_by_role("button", name="Rebalance")
    expect(button).to_be_disabled()  # nothing loaded yet
    upload(page, skewed_csv)
    expect(button).to_be_enabled()
    page.on("request", record)
    message = page.locator("#validation")
    # The core's own words, from GET /dashboard/check: the page holds no copy of the rules.
    cases = {
        ("num_gpus", "35"): "288 slots cannot be split evenly over 35 GPUs.",
        ("num_replicas", "128"): "128 slots cannot hold 256 experts: num_replicas must be at "
        "least the number of experts.",
        ("num_gpus", "0"): "GPUs: Input should be greater than 0.",
    }
    for (field, value), reason in cases.items():
        original = page.locator(f"#cluster-form [name={field}]").input_value()
        checks.clear()
        page.locator(f"#cluster-form [name={field}]").fill("")
        page.locator(f"#cluster-form [name={field}]").press_sequentially(value, delay=20)
        expect(message).to_have_text(reason)
        expect(button).to_be_disabled()
        # Asked once, after the last keystroke.
        assert len(checks) == 1 and f"{field}={value}&" in checks[0], checks
        page.fill(f"#cluster-form [name={field}]", original)
        expect(message).to_be_hidden()
        expect(button).to_be_enabled()

    # The policy select: hierarchical needs the groups to split over the nodes.
    page.fill("#cluster-form [name=num_groups]", "3")
    expect(message).to_be_hidden()  # auto: 3 groups over 4 nodes is a global plan
    expect(page.locator("#shape-hint")).to_contain_text("global policy")
    page.select_option("#cluster-form [name=policy]", "hierarchical")
    expect(message).to_have_text(
        "3 groups cannot be split evenly over 4 nodes (the hierarchical policy)."
    )
    expect(button).to_be_disabled()
    page.fill("#cluster-form [name=seed]", "-1")
    expect(message).to_have_text("Seed must be a whole number of at least 0.")


def test_notes_and_a_cluster_without_per_node_figures(page: Page, skewed_csv: Path) -> None:
    upload(page, skewed_csv)
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    page.fill("#cluster-form [name=num_nodes]", "5")  # 32 GPUs over 5 nodes: global
    expect(page.locator("#shape-hint")).to_contain_text("no per-node figures")
    rebalance(page)

    expect(page.locator("#card-policy .policy")).to_have_text("global")
    notes = page.locator("#result-notes li")
    expect(notes).to_have_count(1)
    expect(notes.first).to_have_text(
        "No per-node figures: 32 GPUs do not split evenly over 5 "
        "nodes (the global policy does not need them to)."
    )
    expect(page.locator("#node-missing")).to_have_text(
        "No per-node loads: 32 GPUs do not split evenly over 5 nodes."
    )
    expect(page.locator("#chart-node")).to_be_hidden()
    expect(page.locator("#node-view")).to_be_hidden()

    page.fill("#cluster-form [name=num_nodes]", "4")
    rebalance(page)
    expect(page.locator("#result-notes")).to_be_hidden()
    expect(page.locator("#node-missing")).to_be_hidden()
    expect(page.locator("#chart-node svg.main-svg").first).to_be_visible()


def test_example_and_every_preset(page: Page, console_errors: list[str]) -> None:
    page.get_by_role("button", name="Load example").click()
    expect(page.locator("#data-name")).to_have_text("deepseek-v3-example.csv")
    expect(page.locator("#data-shape")).to_have_text("58 layers × 256 experts")
    expect(page.locator("#chart-input svg.main-svg").first).to_be_attached()

    select = page.get_by_label("Preset")
    expect(select).to_have_value("deepseek-v3-prefill")  # the form opens on it
    options = select.locator("option")
    expect(options).to_have_count(len(PRESETS) + 1)  # and "Custom cluster"
    for preset in PRESETS.values():
        select.select_option(preset.name)
        cluster = preset.cluster
        assert {
            name: form_values(page)[name]
            for name in ("num_replicas", "num_groups", "num_nodes", "num_gpus")
        } == {
            "num_replicas": str(cluster.num_replicas),
            "num_groups": str(cluster.num_groups),
            "num_nodes": str(cluster.num_nodes),
            "num_gpus": str(cluster.num_gpus),
        }
        expect(page.locator("#preset-description")).to_contain_text(preset.description)
        expect(page.locator("#preset-description")).to_contain_text(
            f"{preset.num_layers} layers × {preset.num_experts} experts"
        )

    select.select_option(label="DeepSeek-V3 decode · 144 GPUs")
    expect(page.locator("#shape-hint")).to_contain_text("2 slots per GPU · 8 GPUs per node")
    expect(page.locator("#shape-hint")).to_contain_text("global policy")
    select.select_option(label="DeepSeek-V3 prefill · 32 GPUs")
    expect(page.locator("#shape-hint")).to_contain_text("hierarchical policy")
    page.fill("#cluster-form [name=num_gpus]", "16")
    expect(select).to_have_value("")  # no preset is this cluster
    expect(page.locator("#preset-description")).to_be_hidden()
    page.fill("#cluster-form [name=num_gpus]", "32")
    expect(select).to_have_value("deepseek-v3-prefill")
    assert console_errors == []


def test_a_csv_dropped_on_the_drop_zone_loads(page: Page, console_errors: list[str]) -> None:
    transfer = page.evaluate_handle(
        "(text) => { const data = new DataTransfer();"
        " data.items.add(new File([text], 'dropped.csv', {type: 'text/csv'})); return data; }",
        "layer,0,1,2,3\nL0,5,1,1,1\nL1,1,1,1,9\n",
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})

    expect(page.locator("#data-name")).to_have_text("dropped.csv")
    expect(page.locator("#data-shape")).to_have_text("2 layers × 4 experts")
    expect(page.locator("#data-total")).to_have_text("20 tokens")
    expect(page.locator("#chart-input svg.main-svg").first).to_be_attached()
    assert console_errors == []


def test_counts_are_singular_or_plural(page: Page, tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"logical_count": [[[1, 0]]]}))  # 1 step, 1 layer, 2 experts
    upload(page, one)
    expect(page.locator("#data-steps")).to_have_text("1 step")
    expect(page.locator("#data-shape")).to_have_text("1 layer × 2 experts")
    expect(page.locator("#data-total")).to_have_text("1 token")

    three = tmp_path / "three.json"
    three.write_text(
        json.dumps({"logical_count": [[[2, 0, 1, 1]], [[1, 1, 1, 1]], [[0, 2, 1, 1]]]})
    )
    upload(page, three)
    expect(page.locator("#data-steps")).to_have_text("3 steps")
    expect(page.locator("#data-shape")).to_have_text("1 layer × 4 experts")
    window, hint = page.locator("#replay-window"), page.locator("#window-hint")
    window.fill("1")
    expect(hint).to_have_text("3 windows of 1 step, 2 scored")
    window.fill("2")
    expect(hint).to_have_text("A replay needs at least 2 windows: 3 steps hold 1 of 2 steps.")

    for name, value in (
        ("num_replicas", "4"),
        ("num_groups", "1"),
        ("num_nodes", "1"),
        ("num_gpus", "4"),
    ):
        page.fill(f"#cluster-form [name={name}]", value)
    expect(page.locator("#shape-hint")).to_contain_text("1 slot per GPU · 4 GPUs per node")
    page.fill("#cluster-form [name=num_nodes]", "4")
    expect(page.locator("#shape-hint")).to_contain_text("1 slot per GPU · 1 GPU per node")
    window.fill("1")
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("#replay-results")).to_have_attribute("data-drawn", "true", timeout=60_000)
    expect(page.locator("#card-replay-series .windows")).to_have_text("2 windows scored")
    expect(page.locator("#card-replay-series .note")).to_contain_text("3 windows of 1 step;")
    rebalance(page)
    expect(page.locator("#card-policy .note")).to_have_text(
        "4 slots on 4 GPUs in 4 nodes, 1 group, seed 0; 3 steps summed"
    )


def test_the_page_runs_under_its_csp_without_console_errors(
    page: Page,
    skewed_csv: Path,
    server_url: str,
    console_errors: list[str],
    outside_requests: list[str],
) -> None:
    policy = httpx.get(server_url).headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-eval" not in policy

    upload(page, skewed_csv)
    rebalance(page)
    page.check("#gpu-view input[value=tokens]")
    page.check("#node-view input[value=ratio]")
    page.set_viewport_size({"width": 390, "height": 800})
    page.wait_for_timeout(300)  # the charts take their narrow layouts
    downloaded(page, "#download-map-pt")
    page.fill("#cluster-form [name=num_gpus]", "35")
    expect(page.locator("#validation")).to_be_visible()

    assert page.evaluate("window.cspViolations") == []
    assert console_errors == [] and outside_requests == []
