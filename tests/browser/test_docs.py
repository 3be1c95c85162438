"""/docs in a real browser: Swagger UI renders the API from the app's own files, offline."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Route

pytestmark = pytest.mark.browser


def test_docs_render_with_no_outside_request(browser: Browser, server_url: str) -> None:
    context = browser.new_context(base_url=server_url)
    tab = context.new_page()
    outside: list[str] = []
    errors: list[str] = []

    def local_only(route: Route) -> None:
        if route.request.url.startswith(server_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    tab.route("**/*", local_only)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto("/docs")
    tab.wait_for_selector(".opblock-summary", timeout=30_000)

    paths = tab.locator(".opblock-summary-path").all_inner_texts()
    assert {"/rebalance", "/rebalance/csv", "/healthz"} <= set(paths)
    assert tab.inner_text(".info .title").startswith("EPLB")
    assert outside == [] and errors == []
    context.close()
