"""Take the README screenshots from a running UI: launch a small real comparison from the form, then shoot.

Usage (API and UI already running, e.g. ``make run``)::

    python -m scripts.screenshots --ui http://127.0.0.1:8501 --api http://127.0.0.1:8000 --out docs

Needs playwright and a Chromium (``--chromium``, default /usr/bin/chromium). Launches TR RMSprop vs SGD vs Adam
on Fashion-MNIST (MLP, optionally a training subset, a budget), waits for the runs to finish and saves
``screenshot-launch.png`` and ``screenshot-compare.png``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from frontend.api_client import ApiClient

__all__ = ["main"]

_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _fill(page, name: str, value: str) -> None:
    box = page.get_by_role("spinbutton", name=name)
    box.wait_for(timeout=20_000)
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(400)


def _choose_optimizers(page, labels: list[str]) -> None:
    """Make the optimizer multiselect hold exactly ``labels`` (e.g. "SGD (first-order)")."""
    box = page.locator("[data-testid='stMultiSelect']").first
    box.get_by_role("combobox").click()
    page.wait_for_timeout(500)
    for label in labels:
        option = page.get_by_role("option", name=label, exact=True)
        if option.count():  # listed = not selected yet
            option.click()
            page.wait_for_timeout(500)
    page.keyboard.press("Escape")
    for remove in box.get_by_role("button", name="Remove ").all()[::-1]:
        if remove.get_attribute("aria-label").removeprefix("Remove ") not in labels:
            remove.click()
            page.wait_for_timeout(500)


def _set_slider(page, label: str, value: float, step: float = 0.01) -> None:
    """Move a Streamlit slider to ``value`` with the arrow keys."""
    thumb = page.locator(f"input[type='range'][aria-label='{label}']").first
    thumb.focus()
    now = float(thumb.input_value())
    key = "ArrowRight" if value > now else "ArrowLeft"
    for _ in range(round(abs(value - now) / step)):
        page.keyboard.press(key)
    page.wait_for_timeout(1500)


def main(argv: list[str] | None = None) -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ui", default="http://127.0.0.1:8501")
    ap.add_argument("--api", default="http://127.0.0.1:8000", help="to know when the runs are done")
    ap.add_argument("--out", default="docs")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--budget-kind", default="epochs", choices=["epochs", "backprops", "seconds"])
    ap.add_argument("--budget", default="2")
    ap.add_argument("--train-subset", default="10000")
    ap.add_argument("--eval-every", default=None,
                    help="evaluation cadence in epochs (e.g. 0.1); default: the API's ~50 evaluations per run")
    ap.add_argument("--width", type=int, default=1400, help="browser window width in pixels (e.g. 800)")
    ap.add_argument("--suffix", default="", help="added to the file names, e.g. -800")
    ap.add_argument("--smoothing", type=float, default=None, help="set the Compare page's smoothing slider")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the runs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": 1850}, device_scale_factor=1)
        page.goto(args.ui)
        page.get_by_role("button", name="Launch").wait_for(timeout=60_000)
        _choose_optimizers(page, ["TR RMSprop (second-order)", "SGD (first-order)", "Adam (first-order)"])
        page.get_by_role("textbox", name="Name (comparisons)").fill("fmnist mlp: TR RMSprop vs SGD vs Adam")
        if args.budget_kind != "epochs":
            page.get_by_text(args.budget_kind.capitalize(), exact=True).click()
            page.wait_for_timeout(500)
        _fill(page, {"epochs": "Epochs", "backprops": "Backprops (gradients + HVPs)",
                     "seconds": "Seconds of optimization"}[args.budget_kind], args.budget)
        page.get_by_text("Hyperparameters (defaults").click()
        page.get_by_text("Advanced: batch sizes").click()
        _fill(page, "Training subset (0 = all)", args.train_subset)
        if args.eval_every is not None:
            page.get_by_role("combobox", name="Evaluate every").click()
            page.get_by_role("option", name="Epochs", exact=True).click()
            page.wait_for_timeout(500)
            _fill(page, "Every N epochs", args.eval_every)
        page.wait_for_timeout(1500)
        page.mouse.move(5, 5)
        page.screenshot(path=str(out / f"screenshot-launch{args.suffix}.png"))
        page.get_by_role("button", name="Launch").click()
        page.get_by_role("heading", name="Training loss").wait_for(timeout=300_000)
        page.set_viewport_size({"width": args.width, "height": 2500})
        deadline = time.time() + args.timeout
        client = ApiClient(args.api)
        active = client.meta()["run_states"]["active"]  # the API publishes its run states
        while time.time() < deadline:
            if not client.list_runs(status=",".join(active))["total"]:
                break
            page.wait_for_timeout(3000)
        if args.smoothing is not None:
            _set_slider(page, "Smoothing", args.smoothing)
        page.wait_for_timeout(4000)
        page.mouse.move(5, 5)
        page.screenshot(path=str(out / f"screenshot-compare{args.suffix}.png"))
        browser.close()
    print(f"saved {out / f'screenshot-launch{args.suffix}.png'} and {out / f'screenshot-compare{args.suffix}.png'}")


if __name__ == "__main__":
    main()
