"""GET /docs in a real browser (Playwright driving Debian's Chromium, which make test
installs): against a real server, the page renders every operation the database
declares, loads nothing from another host, breaks no rule of its CSP, logs no error, and
"Try it out" reaches the API."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, sync_playwright

from tests.e2e.test_attacks import chromium

RENDERED = 20_000  # ms: the bundle is parsed and the document fetched well within
# Each operation's method and path, as Swagger UI shows them.
OPERATIONS = """els => els.map(e => [
  e.querySelector(".opblock-summary-method").textContent,
  e.querySelector(".opblock-summary-path").getAttribute("data-path"),
])"""
# Registered before any script of the page runs (Playwright's init scripts are not
# subject to the page's CSP): every violation the browser reports.
WATCH_VIOLATIONS = """window.violations = [];
document.addEventListener("securitypolicyviolation", e => window.violations.push(
  `${e.effectiveDirective} ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`));"""


@pytest.fixture
def page() -> Iterator[Page]:
    """A fresh page in headless Chromium (Debian's: Playwright downloads no browser)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium(),
            args=["--no-sandbox"],  # root in CI
        )
        try:
            page = browser.new_page()
            page.add_init_script(WATCH_VIOLATIONS)
            yield page
        finally:
            browser.close()


def declared_operations(base: str) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation in /openapi.json: the routes SQL declares."""
    doc = httpx.get(f"{base}/openapi.json", timeout=10).json()
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def test_the_docs_render_the_routes_the_database_declares_from_this_host_only(serve, page):
    app = serve()
    origin = urlsplit(app.base).netloc
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":  # a CSP violation is one too
            errors.append(f"console: {message.text}")

    page.on("console", console)

    page.goto(f"{app.base}/docs", wait_until="load")
    page.wait_for_selector(".opblock-summary-path", timeout=RENDERED)
    shown = {(m, p) for m, p in page.eval_on_selector_all(".opblock-summary", OPERATIONS)}

    assert {
        ("GET", "/api/v1/incidents"),
        ("POST", "/api/v1/incidents"),
        ("GET", "/api/v1/incidents/{id}"),
        ("GET", "/api/v1/sse/incidents"),
    } <= shown
    assert shown == declared_operations(app.base)
    assert page.title() == "Emberlog API reference"
    assert page.locator(".info .title").inner_text().startswith("Emberlog API")
    elsewhere = [url for url in requested if urlsplit(url).netloc not in (origin, "")]
    assert elsewhere == []
    assert f"{app.base}/openapi.json" in requested
    assert page.evaluate("window.violations") == []
    assert errors == []


def test_try_it_out_reaches_the_api(serve, page):
    app = serve()
    page.goto(f"{app.base}/docs#/", wait_until="load")
    operation = page.locator(".opblock-get", has=page.locator('[data-path="/api/v1/incidents"]'))
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/incidents") as sent:
        operation.get_by_role("button", name="Execute").click()
    answer: Request = sent.value.request
    assert sent.value.status == 200
    assert urlsplit(answer.url).netloc == urlsplit(app.base).netloc
    status = operation.locator(".live-responses-table tbody .response-col_status")
    assert status.inner_text(timeout=RENDERED).strip() == "200"
    assert page.evaluate("window.violations") == []
