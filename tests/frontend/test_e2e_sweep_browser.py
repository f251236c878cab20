"""End to end in a real browser: launch a tiny sweep from the Sweep page, promote the winners with the TR methods,
read the results table on Compare. Real API, UI and worker processes; the fake trainer keeps it fast."""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import processes
from tests.frontend.test_e2e_browser import ARTIFACTS, CHROMIUM, _fill, _free_port, _start, _start_ui, _stop, _wait_http

pytestmark = pytest.mark.slow


@pytest.fixture
def fast_product(tmp_path):
    """API (fake trainer in real worker processes) and UI on free ports; yields (ui_url, api_url)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    api_port, ui_port = _free_port(), _free_port()
    api_url, ui_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}"
    env = {**os.environ, "TRUSTLAB_DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "TRUSTLAB_DATA_DIR": str(tmp_path),
           "TRUSTLAB_VAR_DIR": str(tmp_path), "TRUSTLAB_API_URL": api_url, "PYTHONUNBUFFERED": "1",
           "TRUSTLAB_TRAINER": "tests.backend.fake_trainer:run", "TRUSTLAB_MAX_CONCURRENT_RUNS": "4"}
    api = _start([sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1", "--port",
                  str(api_port)], env, tmp_path / "api.log")
    ui = None
    try:
        _wait_http(f"{api_url}/api/health", api, tmp_path / "api.log")
        ui = _start_ui(ui_port, env, tmp_path)
        yield ui_url, api_url
    finally:
        for proc in (ui, api):
            if proc is not None:
                _stop(proc)
        processes.kill_marked(f"TRUSTLAB_VAR_DIR={tmp_path}")  # the API's workers and zygote: sessions of their own


def test_sweep_promote_results_table(fast_product):
    from playwright.sync_api import expect, sync_playwright

    ui_url, api_url = fast_product
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        try:
            page.goto(f"{ui_url}/sweep")
            page.get_by_role("heading", name="Sweep").wait_for(timeout=60_000)
            # one step size (1) x 5 first-order optimizers, plus the preset's equal tuning of the 3 TR methods
            # (radius x eta1, 3 x 3 each): 5 + 27 = 32 quick runs
            _fill(page, "Step size from", "1")
            page.get_by_text("backprops", exact=True).click()
            _fill(page, "backprops per run", "20")
            page.wait_for_timeout(800)
            page.get_by_role("button", name="Launch sweep").click()
            page.get_by_text("Sweep #1 queued: 32 runs").wait_for(timeout=30_000)
            page.get_by_text("32/32 runs finished").wait_for(timeout=300_000)
            _fill(page, "Fresh seeds", "1")
            page.wait_for_timeout(800)
            expect(page.get_by_role("spinbutton", name="Fresh seeds")).to_have_value("1")
            page.get_by_role("button", name="Promote winners").click()
            queued = page.get_by_text(re.compile(r"^Comparison #\d+ queued with \d+ runs\.$"))
            queued.wait_for(timeout=30_000)
            assert queued.inner_text() == "Comparison #2 queued with 8 runs."  # 1 seed x 8 winners (5 + 3 TR)
            deadline = time.time() + 90
            while time.time() < deadline:
                runs = httpx.get(f"{api_url}/api/comparisons/2", timeout=10).json()["runs"]
                if all(r["status"] == "completed" for r in runs):
                    break
                time.sleep(1)
            page.get_by_role("button", name="Open comparison #2 on Compare").click()
            page.get_by_role("heading", name="Results").wait_for(timeout=60_000)
            page.get_by_role("button", name="Download Markdown").wait_for(timeout=30_000)
            page.get_by_text(re.compile(r"^Not resolved \(\d+\)$")).wait_for(timeout=30_000)  # the expander
            page.get_by_role("heading", name="Paired difference to the reference").wait_for(timeout=30_000)
            table = httpx.get(f"{api_url}/api/comparisons/2/results", params={"format": "markdown"}, timeout=30).text
            # every winner is a row with its tuned setting; the TR methods were tuned too (issue 19: equal effort)
            assert "SGD+momentum lr=" in table and re.search(r"\| TR RMSprop [^|]*radius=[^|]*\| 1 \|", table), table
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "e2e-sweep-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
