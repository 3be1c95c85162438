"""The page's layout in headless Chromium as the window changes: charts stay inside their
panels, subplot titles stay apart, the busy overlay stays in view."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from app.charts import NARROW_WIDTH

pytestmark = pytest.mark.browser

CHARTS = ("chart-input", "chart-gpu", "chart-node", "chart-balancedness")
PAIRS = ("chart-gpu", "chart-node")
WIDTHS = (1440, 1100, 900, 700, 390)

# Per chart: its plot's and its panel's boxes (the panel's inside its padding).
BOXES = """(ids) => ids.map((id) => {
  const chart = document.getElementById(id);
  const panel = chart.closest(".panel");
  const style = getComputedStyle(panel);
  const outer = panel.getBoundingClientRect();
  const plot = chart.querySelector("svg.main-svg").getBoundingClientRect();
  return {
    id, plotLeft: plot.left, plotRight: plot.right, plotWidth: plot.width,
    left: outer.left + parseFloat(style.paddingLeft),
    right: outer.right - parseFloat(style.paddingRight),
  };
})"""
FITS = f"""(ids) => ({BOXES})(ids).every((box) =>
  box.plotLeft >= box.left - 0.5 && box.plotRight <= box.right + 0.5 &&
  box.plotWidth >= 0.9 * (box.right - box.left))"""
# The subplot titles of a chart: their boxes on screen.
TITLES = """(id) => [...document.querySelectorAll(`#${id} .annotation-text`)].map((title) => {
  const box = title.getBoundingClientRect();
  return {text: title.textContent, left: box.left, right: box.right, top: box.top,
          bottom: box.bottom};
})"""


def overlap(a: dict, b: dict) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


def test_charts_stay_inside_their_panels_when_the_window_resizes(
    page: Page, artifacts: Path, console_errors: list[str]
) -> None:
    page.get_by_role("button", name="Load example").click()
    expect(page.locator("#data-name")).to_have_text("deepseek-v3-example.csv")
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)

    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        try:
            page.wait_for_function(FITS, arg=list(CHARTS), timeout=10_000)
        except PlaywrightTimeout:  # say which chart, and where
            pytest.fail(f"at {width} px: {page.evaluate(BOXES, list(CHARTS))}")
        for chart in PAIRS:
            titles = page.evaluate(TITLES, chart)
            panel = page.locator(f"#{chart}").locator("xpath=ancestor::article").bounding_box()
            assert [title["text"] for title in titles][1] == "After: the plan"
            assert not overlap(*titles), f"{chart} at {width} px: {titles}"
            for title in titles:
                assert (
                    panel["x"] <= title["left"] and title["right"] <= panel["x"] + panel["width"]
                ), f"{chart} at {width} px: {title}"
        # A narrow panel stacks the pair: the "after" heatmap under the "before" one.
        before, after = page.locator("#chart-gpu .nsewdrag").all()
        stacked = after.bounding_box()["y"] > before.bounding_box()["y"] + 100
        chart_width = page.evaluate("document.getElementById('chart-gpu').clientWidth")
        assert stacked == (chart_width < NARROW_WIDTH), (width, chart_width)
        if width in (1440, 390):
            page.screenshot(path=artifacts / f"dashboard-{width}.png", full_page=True)
            page.locator("#panel-gpu").screenshot(path=artifacts / f"panel-gpu-{width}.png")
            page.locator("#panel-node").screenshot(path=artifacts / f"panel-node-{width}.png")

    page.set_viewport_size({"width": 1440, "height": 900})  # and back
    page.wait_for_function(FITS, arg=list(CHARTS), timeout=10_000)
    assert console_errors == []


def test_the_busy_overlay_stays_in_view_while_the_page_scrolls(page: Page) -> None:
    page.get_by_role("button", name="Load example").click()
    expect(page.locator("#data-name")).to_have_text("deepseek-v3-example.csv")
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)

    held: list[Route] = []

    def hold(route: Route) -> None:  # (Playwright takes a Python function, not a builtin)
        held.append(route)

    # The next plan waits until released.
    page.route("**/dashboard/rebalance", hold)
    page.fill("#cluster-form [name=seed]", "1")
    page.get_by_role("button", name="Rebalance").click()
    label = page.locator("#busy .busy-label")
    expect(label).to_have_text("Planning…")
    for scroll in (0, 900, 1800, 10_000):
        page.evaluate("(y) => window.scrollTo(0, y)", scroll)
        page.wait_for_timeout(100)
        box = label.bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 900, (scroll, box)
    assert page.evaluate("window.scrollY") > 1000  # the page did scroll

    held[0].continue_()
    expect(page.locator("#busy")).to_be_hidden(timeout=60_000)
    expect(page.locator("#card-policy .note")).to_contain_text("seed 1")


NEW_CHARTS = (
    "chart-evaluate-gpu",
    "chart-evaluate-balancedness",
    "chart-sweep-slots",
    "chart-sweep-policies",
)


def test_scores_and_the_advisor_stay_inside_their_panels(
    page: Page, tmp_path: Path, artifacts: Path, console_errors: list[str]
) -> None:
    placement = tmp_path / "in-use.csv"  # slot p holds expert p mod 256
    placement.write_text(
        "".join(",".join(str(slot % 256) for slot in range(288)) + "\n" for _ in range(58))
    )
    page.get_by_role("button", name="Load example").click()
    expect(page.locator("#data-name")).to_have_text("deepseek-v3-example.csv")
    page.locator("#deploy summary").click()
    page.set_input_files("#placement-file", placement)
    page.get_by_role("button", name="Score", exact=True).click()
    expect(page.locator("#evaluate-results")).to_have_attribute(
        "data-drawn", "true", timeout=60_000
    )
    page.select_option("#cluster-form [name=algorithm]", "greedy")
    page.get_by_role("button", name="Run the advisor").click()
    expect(page.locator("#advisor-results")).to_have_attribute(
        "data-drawn", "true", timeout=120_000
    )

    for width in (1440, 700, 390):
        page.set_viewport_size({"width": width, "height": 900})
        try:
            page.wait_for_function(FITS, arg=list(NEW_CHARTS), timeout=10_000)
        except PlaywrightTimeout:
            pytest.fail(f"at {width} px: {page.evaluate(BOXES, list(NEW_CHARTS))}")
        # Tables scroll inside their panels, never the page sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        if width == 390:
            page.locator("#advisor-results").screenshot(path=artifacts / "advisor-390.png")
            page.locator("#evaluate-results").screenshot(path=artifacts / "evaluate-390.png")
    assert console_errors == []
