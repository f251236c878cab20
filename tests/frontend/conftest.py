"""Fixtures for the UI tests: a stubbed API client and an AppTest of the app on a chosen page."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from frontend import api_client
from tests.frontend.fakes import FakeApi

APP = str(Path(__file__).resolve().parents[2] / "frontend" / "app.py")


@pytest.fixture(scope="session", autouse=True)
def _plotly_js_installed():
    """The install step `make test` runs first (target frontend/static/plotly.min.js), for plain `pytest` runs:
    the browser tests start the app, whose live charts load Plotly from frontend/static/."""
    from frontend.live_chart import ensure_plotly_js

    ensure_plotly_js()


@pytest.fixture(autouse=True)
def _optimizer_colors():
    """The colours the app adopts from /api/meta at start (frontend.ui.load_run_states), for chart tests."""
    from frontend import charts
    from trainer.registry import metadata

    charts.adopt_colors(metadata()["optimizers"])
    yield


@pytest.fixture
def api():
    fake = FakeApi()
    api_client.set_client(fake)
    yield fake
    api_client.set_client(None)


@pytest.fixture
def open_page():
    """``open_page("compare")`` -> an AppTest that has rendered that page."""

    def _open(page: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        if page:
            at.switch_page(f"views/{page}.py").run()
        return at

    return _open


def _decode(obj):
    """Plotly's JSON packs numeric arrays as {"dtype", "bdata"} (base64); turn them back into lists."""
    if isinstance(obj, dict):
        if set(obj) >= {"dtype", "bdata"}:
            shape = obj.get("shape")
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=obj["dtype"])
            if shape:
                arr = arr.reshape([int(n) for n in str(shape).split(",")])
            return arr.tolist()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def figures(at: AppTest) -> list[dict]:
    """The Plotly figures on the page (st.plotly_chart, then the live charts), arrays decoded to lists."""
    static = [_decode(json.loads(e.proto.spec)) for e in at.get("plotly_chart")]
    live = [_decode(json.loads(e.proto.json)["figure"]) for e in at.get("bidi_component")
            if e.proto.component_name == "trustlab_live_plotly"]
    return static + live


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)
