"""End to end in a real browser: real API + UI on free ports, launch a comparison from the form, watch it train."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.slow

# Per-chart point counts of the traces drawn (Plotly decodes the typed arrays into _fullData).
_COUNT_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(
    d => (d._fullData || []).map(t => t._length || (t.x ? t.x.length : 0)))"""


_XRANGE_JS = """() => { const d = document.querySelector('.js-plotly-plot');
    return [d.layout.xaxis.range, d.layout.xaxis.autorange]; }"""
_AUTOSCALE_JS = """() => window.Plotly.relayout(document.querySelector('.js-plotly-plot'),
    {'xaxis.autorange': true, 'yaxis.autorange': true})"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {timeout}s:\n{log.read_text()[-3000:]}")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server we started, with the workers it spawned (its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def product(tmp_path):
    """The real API (temporary SQLite store) and the real UI, on free ports; yields (ui_url, api_url)."""
    if not (ROOT / "backend" / "main.py").exists():
        pytest.skip("backend/main.py is not there yet")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    api_port, ui_port = _free_port(), _free_port()
    api_url, ui_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}"
    env = {**os.environ, "TRUSTLAB_DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "TRUSTLAB_DATA_DIR": str(tmp_path),
           "TRUSTLAB_VAR_DIR": str(tmp_path), "TRUSTLAB_API_URL": api_url, "PYTHONUNBUFFERED": "1"}
    api = _start([sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1", "--port",
                  str(api_port)], env, tmp_path / "api.log")
    ui = None
    try:
        _wait_http(f"{api_url}/api/health", api, tmp_path / "api.log")
        meta = httpx.get(f"{api_url}/api/meta", timeout=10).json()
        fmnist = next(d for d in meta["datasets"] if d["name"] == "fashion-mnist")
        if fmnist.get("available") is False:
            pytest.skip(f"Fashion-MNIST is not installed: {fmnist['how_to_get']}")
        ui = _start([sys.executable, "-m", "streamlit", "run", "frontend/app.py", "--server.address", "127.0.0.1",
                     "--server.port", str(ui_port), "--server.headless", "true",
                     "--browser.gatherUsageStats", "false"], env, tmp_path / "ui.log")
        _wait_http(f"{ui_url}/_stcore/health", ui, tmp_path / "ui.log")
        yield ui_url, api_url
    finally:
        for proc in (ui, api):
            if proc is not None:
                _stop(proc)


def _fill(page, name: str, value: str) -> None:
    box = page.get_by_role("spinbutton", name=name)
    box.wait_for(timeout=20_000)
    box.fill(value)
    box.press("Enter")


def test_launch_a_comparison_and_watch_the_loss_chart_grow(product):
    from playwright.sync_api import sync_playwright

    ui_url, api_url = product
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.goto(ui_url)
            page.get_by_role("heading", name="Launch").wait_for(timeout=60_000)
            # Fashion-MNIST MLP is the default pair; TR RMSprop vs Adam the default optimizers
            page.get_by_text("Backprops", exact=True).click()
            _fill(page, "Backprops (gradients + HVPs)", "4000")
            page.get_by_text("Advanced: batch sizes").click()
            _fill(page, "Training subset (0 = all)", "1024")
            _fill(page, "Evaluate every N steps", "20")
            page.get_by_text("A comparison of 2 optimizer(s)").wait_for(timeout=20_000)
            page.wait_for_timeout(800)  # let the last value reach the server
            page.get_by_role("button", name="Launch").click()

            page.get_by_role("heading", name="Compare").wait_for(timeout=60_000)
            page.get_by_role("heading", name="Training loss").wait_for(timeout=120_000)

            def loss_points() -> int:
                counts = page.evaluate(_COUNT_JS)
                return sum(counts[0]) if counts else 0

            deadline = time.time() + 120
            first = 0
            while time.time() < deadline and first == 0:
                first = loss_points()
                page.wait_for_timeout(500)
            assert first > 0, "the loss chart never showed points"
            # zoom into the loss chart; live updates must keep that zoom (Plotly.react + uirevision)
            area = page.locator(".js-plotly-plot").first.locator(".nsewdrag").first.bounding_box()
            x0, y0 = area["x"] + area["width"] * 0.1, area["y"] + area["height"] * 0.1
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + area["width"] * 0.4, y0 + area["height"] * 0.6, steps=10)
            page.mouse.up()
            zoomed = page.evaluate(_XRANGE_JS)
            assert zoomed[1] is False, "the drag did not zoom"
            grown = first
            while time.time() < deadline and grown <= first:
                page.wait_for_timeout(1000)
                grown = loss_points()
            assert grown > first, f"the loss chart did not grow ({first} points)"
            assert page.evaluate(_XRANGE_JS) == zoomed, "a live update lost the zoom"
            page.evaluate(_AUTOSCALE_JS)

            runs = httpx.get(f"{api_url}/api/runs", timeout=10).json()["items"]
            assert sorted(r["optimizer"] for r in runs) == ["adam", "tr-rmsprop"]
            assert all(r["config"]["train_subset"] == 1024 and r["config"]["budget"]["backprops"] == 4000
                       for r in runs)
            assert page.locator("[data-testid='stException']").count() == 0
            page.mouse.move(5, 5)  # no hover label in the picture
            page.wait_for_timeout(2500)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "compare.png"))
        finally:
            browser.close()
