"""Tests for frontend.live_chart: the payload of the in-place Plotly component and the Plotly JS copy."""
import json

import plotly
import plotly.graph_objects as go

from frontend.live_chart import ensure_plotly_js, figure_payload, plotly_js_url


def test_payload_carries_figure_height_and_point_count():
    fig = go.Figure([go.Scatter(x=list(range(10)), y=list(range(10))), go.Scatter(x=[1.0, 2.0], y=[3.0, 4.0])])
    fig.update_layout(height=333, uirevision="keep")
    p = figure_payload(fig)
    assert p["height"] == 333 and p["points"] == 12
    assert p["figure"]["layout"]["uirevision"] == "keep"
    assert p["src"] == plotly_js_url() and plotly.__version__ in p["src"]
    assert figure_payload(fig, height=100)["height"] == 100


def test_plotly_js_is_copied_once(tmp_path):
    dst = ensure_plotly_js(tmp_path)
    assert dst.name == "plotly.min.js" and dst.stat().st_size > 1_000_000
    mtime = dst.stat().st_mtime_ns
    assert ensure_plotly_js(tmp_path).stat().st_mtime_ns == mtime


def test_the_app_only_checks_for_plotly_js_and_says_how_to_install_it(tmp_path):
    from pathlib import Path

    from frontend.live_chart import plotly_js_missing

    assert "python -m frontend.live_chart" in plotly_js_missing(tmp_path)
    ensure_plotly_js(tmp_path)
    assert plotly_js_missing(tmp_path) is None
    app = (Path(__file__).resolve().parents[2] / "frontend" / "app.py").read_text()
    assert "ensure_plotly_js" not in app  # copying is an install step (Makefile, Dockerfile)


def test_every_chart_exports_svg_and_the_theme_follows_the_system(api, open_page):
    """Plotly's camera button saved PNGs only; .streamlit/config.toml forced the light theme."""
    import tomllib
    from pathlib import Path

    from frontend.live_chart import PLOTLY_CONFIG

    assert PLOTLY_CONFIG["toImageButtonOptions"]["format"] == "svg"
    a = api.add_run("tr-uniform", steps=30)
    api.add_comparison("svg", [a])
    at = open_page("compare")
    live = [json.loads(e.proto.json) for e in at.get("bidi_component")
            if e.proto.component_name == "trustlab_live_plotly"]
    assert live and all(c["config"]["toImageButtonOptions"]["format"] == "svg" for c in live)
    config = tomllib.loads((Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml").read_text())
    assert "base" not in config.get("theme", {})
