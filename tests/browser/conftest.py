"""Fixtures of the browser tests: the app served by ``python -m app`` on a free port, and
Debian's Chromium.

Without Chromium the browser tests are skipped with one line saying how to enable them, except
on CI (``CI=true``), where they must run: there a missing Chromium fails them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Route,
    sync_playwright,
)

from tests.server import start_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Low enough that a form the page accepts can still be refused by the server (test_errors).
MAX_REPLICAS = 4096
VIEWPORT = {"width": 1440, "height": 900}


@contextmanager
def serve(**settings: str) -> Iterator[str]:
    """``python -m app`` with the test settings and ``EPLB_<NAME>`` for each of ``settings``,
    answering /healthz; its URL."""
    # The advisor's Cancel test runs a sweep of about 20 s, whose (conservative) estimate is
    # over the default EPLB_MAX_WORK: these tests are about the page, not the limits.
    env = {
        "EPLB_MAX_REPLICAS": str(MAX_REPLICAS),
        "EPLB_MAX_WORK": "1000",
        **{f"EPLB_{name.upper()}": value for name, value in settings.items()},
    }
    with start_server(env) as server:
        yield server.url


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """The app with the test settings, shared by the browser tests."""
    with serve() as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium (``apt-get install chromium``; ``make test`` installs it)."""
    if not Path(CHROMIUM).exists():
        reason = (
            f"Chromium is not installed at {CHROMIUM}: run `make chromium` (apt-get "
            f"install chromium, as root) or set CHROMIUM to enable the browser tests"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; on CI they must run")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def console_errors() -> list[str]:
    """The page's console errors and uncaught exceptions, filled while a test runs."""
    return []


@pytest.fixture
def outside_requests() -> list[str]:
    """URLs the page asked for outside the app (a CDN, a web font); they are refused."""
    return []


OpenPage = Callable[[str], Page]


@pytest.fixture
def open_page(
    browser: Browser, console_errors: list[str], outside_requests: list[str]
) -> Iterator[OpenPage]:
    """``open_page(server_url)``: a fresh 1440x900 tab on that server's dashboard, offline but
    for the app, recording console errors."""
    contexts = []

    def open_on(server_url: str) -> Page:
        context = browser.new_context(viewport=VIEWPORT, base_url=server_url)
        contexts.append(context)
        return _dashboard_tab(context, server_url, console_errors, outside_requests)

    yield open_on
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: OpenPage, server_url: str) -> Page:
    """A fresh 1440x900 tab on the dashboard (see ``open_page``)."""
    return open_page(server_url)


# Records what the Content-Security-Policy blocks (the init script itself runs outside it).
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (event) => window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`));
"""


def _dashboard_tab(
    context: BrowserContext, server_url: str, console_errors: list[str], outside_requests: list[str]
) -> Page:
    """The dashboard in a new tab of ``context``: requests outside the app refused and
    recorded, console errors and CSP violations recorded."""

    def app_only(route: Route) -> None:
        url = route.request.url
        if url.startswith((server_url, "blob:", "data:")):
            route.continue_()
        else:
            outside_requests.append(url)
            route.abort()

    context.route("**/*", app_only)
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    tab = context.new_page()

    def record(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    tab.on("console", record)
    tab.on("pageerror", lambda error: console_errors.append(str(error)))
    tab.goto("/")
    return tab


def downloaded(page: Page, selector: str) -> tuple[str, bytes]:
    """Press a download button: the name and the bytes of the file the browser saves."""
    with page.expect_download() as info:
        page.click(selector)
    download = info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``tests/artifacts/`` (ignored by git): screenshots and timings."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
