"""End to end in a real browser: real API + UI on free ports, launch a comparison from the form, watch it train."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import processes

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
    """A free port; within E2E_PORT_RANGE ("8500-8549") when set (parallel test runs keep to their ranges)."""
    lo, _, hi = os.environ.get("E2E_PORT_RANGE", "").partition("-")
    candidates = range(int(lo), int(hi) + 1) if lo and hi else [0]
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            if port and port in _TAKEN:
                continue
            _TAKEN.add(s.getsockname()[1])
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in E2E_PORT_RANGE={os.environ.get('E2E_PORT_RANGE')}")


_TAKEN: set[int] = set()


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = processes.STARTUP_SECONDS) -> None:
    processes.wait_http(url, proc, log, timeout)


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return processes.start(cmd, env=env, cwd=ROOT, log=log)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server we started: its process group, SIGTERM then (after a grace) SIGKILL."""
    processes.stop(proc)


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
        ui = _start_ui(ui_port, env, tmp_path)
        yield ui_url, api_url
    finally:
        for proc in (ui, api):
            if proc is not None:
                _stop(proc)
        processes.kill_marked(f"TRUSTLAB_VAR_DIR={tmp_path}")  # the API's workers and zygote: sessions of their own


def _start_ui(port: int, env: dict, tmp_path: Path) -> subprocess.Popen:
    """The Streamlit UI on loopback ``port`` (log in ``tmp_path/ui.log``), once its health check answers."""
    ui = _start([sys.executable, "-m", "streamlit", "run", "frontend/server.py", "--server.address", "127.0.0.1",
                 "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                env, tmp_path / "ui.log")
    _wait_http(f"http://127.0.0.1:{port}/_stcore/health", ui, tmp_path / "ui.log")
    return ui


def _fill(page, name: str, value: str) -> None:
    box = page.get_by_role("spinbutton", name=name)
    box.wait_for(timeout=20_000)
    box.fill(value)
    box.press("Enter")


def _choose(page, label: str, option: str, attempts: int = 3) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``.

    A script rerun triggered by the previous input can re-render the widget and close its open list on a loaded
    machine; then the list is opened again (up to ``attempts`` times) rather than waiting for an option that left.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        page.get_by_role("combobox", name=label).click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=10_000)
            break
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
            page.wait_for_timeout(1000)
    page.wait_for_timeout(500)


# an element is reachable when it lies inside the window, is what a click at its centre hits (not clipped by
# a narrow column) and neither it nor its two parents cut their text short
_REACHABLE_JS = """e => { e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    const cut = [e, e.parentElement, e.parentElement && e.parentElement.parentElement]
        .some(n => n && n.scrollWidth > n.clientWidth + 1);
    return r.left >= 0 && r.right <= window.innerWidth && !!hit && (e.contains(hit) || hit.contains(e)) && !cut; }"""

_LAYOUT_JS = """() => { const d = document.querySelector('.js-plotly-plot');
    return d ? [d.layout.xaxis.title.text, d.layout.yaxis.type] : null; }"""


def _wait_for(page, fn, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"timed out waiting for {what}")


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
            _choose(page, "Evaluate every", "Backprops")
            _fill(page, "Every N backprops", "200")
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
            _wait_for(page, lambda: "xr=" in page.url, "the zoom range in the URL")
            grown = first
            while time.time() < deadline and grown <= first:
                page.wait_for_timeout(1000)
                grown = loss_points()
            assert grown > first, f"the loss chart did not grow ({first} points)"
            assert page.evaluate(_XRANGE_JS) == zoomed, "a live update lost the zoom"
            page.evaluate(_AUTOSCALE_JS)
            _wait_for(page, lambda: "xr=" not in page.url, "autoscale to clear the zoom from the URL")

            runs = httpx.get(f"{api_url}/api/runs", timeout=10).json()["items"]
            assert sorted(r["optimizer"] for r in runs) == ["adam", "tr-rmsprop"]
            assert all(r["config"]["train_subset"] == 1024 and r["config"]["budget"]["backprops"] == 4000
                       and r["config"]["eval_every"]["backprops"] == 200 for r in runs)
            assert page.locator("[data-testid='stException']").count() == 0
            page.mouse.move(5, 5)  # no hover label in the picture
            page.wait_for_timeout(2500)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "compare.png"))

            # deep link: the view's controls go into the URL, and a reload shows the same view
            page.locator("[data-testid='stButtonGroup']").get_by_text("epochs", exact=True).click()
            page.get_by_text("Log scale", exact=True).click()
            _wait_for(page, lambda: "x=epochs" in page.url and "log=0" in page.url, "the URL to carry the view")
            _wait_for(page, lambda: page.evaluate(_LAYOUT_JS) == ["Epochs", "linear"], "the chart to follow")
            link = page.url
            page.reload()
            page.get_by_role("heading", name="Training loss").wait_for(timeout=60_000)
            _wait_for(page, lambda: page.evaluate(_LAYOUT_JS) == ["Epochs", "linear"], "the reloaded view")
            assert page.url == link

            # narrow window: every Compare control stays inside an 800 px viewport, labels whole
            page.set_viewport_size({"width": 800, "height": 1600})
            page.wait_for_timeout(1500)
            controls = [page.locator("[data-testid='stButtonGroup']").get_by_text(name, exact=True)
                        for name in ("backprops", "epochs", "wall time", "steps")]
            controls += [page.get_by_text(name, exact=True) for name in ("Log scale", "Mean ± std", "Smoothing")]
            for control in controls:
                assert control.evaluate(_REACHABLE_JS), f"{control} is cut off or truncated at 800 px"
            page.screenshot(path=str(ARTIFACTS / "compare-800.png"))
            page.set_viewport_size({"width": 1400, "height": 2200})

            # deletion: select one run exactly, see what will go, confirm; the other run stays
            for r in runs:
                httpx.post(f"{api_url}/api/runs/{r['id']}/cancel", timeout=10)
            _wait_for(page, lambda: not any(r["status"] in ("queued", "running") for r in httpx.get(
                f"{api_url}/api/runs", timeout=10).json()["items"]), "the runs to stop", timeout=60)
            doomed, kept = sorted(r["id"] for r in runs)
            # cancelled, or ended before the cancel reached it: completed, or "failed" when the TR run memorised the
            # 1024-sample subset (loss ~1e-9) and the radius-collapse guard stopped it (trainer/guards.py)
            doomed_run = httpx.get(f"{api_url}/api/runs/{doomed}", timeout=10).json()
            status = doomed_run["status"]
            assert status in ("cancelled", "completed", "failed"), doomed_run
            page.goto(f"{ui_url}/runs")
            page.get_by_role("heading", name="Runs").wait_for(timeout=60_000)
            page.get_by_text(re.compile(rf"^#{doomed} .* · {status}$")).click()
            page.get_by_role("button", name="Delete…").click()
            page.get_by_text("Delete 1 run and all their points?").wait_for(timeout=20_000)
            page.get_by_text(f"#{doomed} TR RMSprop").first.wait_for(timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "delete-confirmation.png"))
            assert {r["id"] for r in httpx.get(f"{api_url}/api/runs", timeout=10).json()["items"]} == {doomed, kept}
            page.get_by_role("button", name="Yes, delete these runs").click()
            page.get_by_text(f"Deleted run #{doomed}.").wait_for(timeout=20_000)
            assert [r["id"] for r in httpx.get(f"{api_url}/api/runs", timeout=10).json()["items"]] == [kept]
            assert page.locator("[data-testid='stException']").count() == 0
        finally:
            browser.close()
