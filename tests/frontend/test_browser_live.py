"""In a real browser (real API + UI): live charts stay opaque while the page refreshes."""
from __future__ import annotations

import httpx
import pytest

from tests.frontend.test_e2e_browser import CHROMIUM, product  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

# Every live chart's element container: its computed opacity and whether Streamlit marks it stale.
_CHART_OPACITY_JS = """() => Array.from(document.querySelectorAll('[data-testid="stElementContainer"]'))
    .filter(e => e.querySelector('.trustlab-plot') && !e.querySelector('[data-testid="stElementContainer"]'))
    .map(e => [Number(getComputedStyle(e).opacity), e.getAttribute('data-stale') === 'true'])"""


def test_live_charts_stay_opaque_during_refreshes(product):  # noqa: F811 - the fixture
    """Streamlit fades every element of a rerunning fragment to 0.33 until it is re-sent; the TR internals,
    drawn last, were faded in many refreshes. Samples the charts' opacity over refreshes of training runs."""
    from playwright.sync_api import sync_playwright

    ui_url, api_url = product
    created = httpx.post(f"{api_url}/api/comparisons", timeout=30, json={
        "name": "live", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 40000},
        "train_subset": 2048, "seeds": [0], "optimizers": [{"name": "tr-uniform"}, {"name": "adam"}],
        "eval_every": {"backprops": 4000}})
    assert created.status_code == 201, created.text
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.goto(f"{ui_url}/compare")
            page.get_by_role("heading", name="Trust-region internals").wait_for(timeout=120_000)
            page.locator(".trustlab-plot").nth(2).wait_for(timeout=60_000)
            stale: list[float] = []
            for _ in range(400):  # until enough refreshes were caught mid-rerun (each refresh marks them stale)
                stale += [o for o, is_stale in page.evaluate(_CHART_OPACITY_JS) if is_stale]
                if len(stale) >= 10:
                    break
                page.wait_for_timeout(150)
            runs = httpx.get(f"{api_url}/api/comparisons/{created.json()['id']}", timeout=10).json()["runs"]
            for r in runs:
                httpx.post(f"{api_url}/api/runs/{r['id']}/cancel", timeout=10)
            assert stale, "no refresh was seen while it ran"
            assert min(stale) == 1.0, f"live charts faded during refreshes: {sorted(stale)[:10]}"
        finally:
            browser.close()


def test_no_page_load_asks_for_anything_missing(product):  # noqa: F811 - the fixture
    """Opening a page URL (/runs, /compare, ...) logged two 404s (/<page>/_stcore/health and host-config: Streamlit
    probed the page path as a base path). Every page, loaded by its URL: no 4xx response, no console error about
    one (the sandbox's transient net::ERR_NETWORK_CHANGED is the machine's, not the app's)."""
    from playwright.sync_api import sync_playwright

    from frontend.server import PAGE_PATHS

    ui_url, _ = product
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            failed: list[str] = []
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("console", lambda m: failed.append(f"console: {m.text}")
                    if m.type == "error" and ("404" in m.text or "status of 4" in m.text) else None)
            for path in PAGE_PATHS:
                page.goto(ui_url + path)
                page.locator("h1").first.wait_for(timeout=60_000)
                page.wait_for_timeout(1500)
            assert failed == []
        finally:
            browser.close()


def test_page_urls_get_streamlits_index_with_the_backend_base_url():
    from frontend.server import PAGE_PATHS, index_html

    html = index_html()
    assert html.index("BACKEND_BASE_URL") < html.index('<script type="module"')
    assert set(PAGE_PATHS) == {"/", "/runs", "/compare", "/sweep", "/geometry", "/hessian"}
