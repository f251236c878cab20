"""A Plotly chart that updates in place (Plotly.react), so live refreshes keep the user's zoom.

``st.plotly_chart`` derives its element identity from the figure, so every refresh with new points mounts a
new chart and the zoom is lost. This custom component (``st.components.v2``) keeps one chart per key and
hands each new figure to ``Plotly.react``; the figure's ``layout.uirevision`` then preserves zoom and pan.
Plotly's JavaScript comes from the installed ``plotly`` package, served as an app static file
(``server.enableStaticServing`` in ``.streamlit/config.toml``).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import plotly
import plotly.graph_objects as go
import streamlit as st

__all__ = ["PLOTLY_CONFIG", "STATIC_DIR", "ensure_plotly_js", "plotly_js_missing", "plotly_js_url", "figure_payload", "static_serving", "live_plotly_chart"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Plotly's options for every chart of the app: no logo; the camera button saves an SVG (vector, for papers)
PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True,
                                 "toImageButtonOptions": {"format": "svg", "filename": "trustlab-chart"}}
_JS_NAME = "plotly.min.js"

_JS = r"""
function loadPlotly(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__trustlabPlotly) {
    window.__trustlabPlotly = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.async = true;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => {
        window.__trustlabPlotly = null;
        reject(new Error("could not load " + src + ". Start Streamlit from the repository root so it reads "
          + ".streamlit/config.toml (server.enableStaticServing = true)."));
      };
      document.head.appendChild(s);
    });
  }
  return window.__trustlabPlotly;
}

export default function (component) {
  const { data, parentElement } = component;
  let root = parentElement.querySelector(":scope > .trustlab-plot");
  if (!root) {
    root = document.createElement("div");
    root.className = "trustlab-plot";
    root.style.width = "100%";
    parentElement.appendChild(root);
  }
  root.style.height = data.height + "px";
  root.dataset.points = String(data.points);
  loadPlotly(data.src)
    .then((Plotly) => {
      const layout = Object.assign({}, data.figure.layout, { autosize: true, height: data.height });
      return Plotly.react(root, data.figure.data, layout, data.config).then(() => {
        if (!root.__trustlabResize) {
          root.__trustlabResize = new ResizeObserver(() => Plotly.Plots.resize(root));
          root.__trustlabResize.observe(root);
        }
        root.__trustlabSetState = component.setStateValue;
        if (data.report_xrange && !root.__trustlabRelayout) {
          // report the user's zoom on the x axis (any subplot: they share it) so the page can put it in the URL
          root.__trustlabRelayout = true;
          root.on("plotly_relayout", (ev) => {
            let lo, hi, auto = false;
            for (const [k, v] of Object.entries(ev || {})) {
              if (/^xaxis\d*\.range\[0\]$/.test(k)) lo = v;
              else if (/^xaxis\d*\.range\[1\]$/.test(k)) hi = v;
              else if (/^xaxis\d*\.range$/.test(k) && Array.isArray(v)) { lo = v[0]; hi = v[1]; }
              else if (/^xaxis\d*\.autorange$/.test(k) && v) auto = true;
            }
            const set = root.__trustlabSetState;
            if (!set) return;
            if (lo !== undefined && hi !== undefined && Number(lo) < Number(hi)) set("xrange", [Number(lo), Number(hi)]);
            else if (auto) set("xrange", null);
          });
        }
      });
    })
    .catch((err) => { root.textContent = "Chart unavailable: " + err.message; });
  return () => {
    root.__trustlabRelayout = false;
    if (root.__trustlabResize) root.__trustlabResize.disconnect();
    if (window.Plotly) window.Plotly.purge(root);
  };
}
"""

# While a refresh reruns the page, Streamlit draws every element not yet re-sent at its "stale" opacity (0.33):
# a live chart would fade on every tick and the more the busier the server. Live charts update in place, so
# their element containers stay opaque (the rule is global: this component does not isolate its styles).
_CSS = """
[data-testid="stElementContainer"][data-stale="true"]:has(> * .trustlab-plot),
[data-testid="stElementContainer"][data-stale="true"]:has(.trustlab-plot) {
  opacity: 1 !important;
  transition: none !important;
}
"""

_component = st.components.v2.component("trustlab_live_plotly", js=_JS, css=_CSS, isolate_styles=False)


def ensure_plotly_js(static_dir: Path = STATIC_DIR) -> Path:
    """Copy the installed plotly package's ``plotly.min.js`` into ``static_dir`` (once per version).

    An install step, not an app-start one: ``make venv`` (target frontend/static/plotly.min.js) and the Docker
    build run it as ``python -m frontend.live_chart``.
    """
    src = Path(plotly.__file__).resolve().parent / "package_data" / _JS_NAME
    dst = static_dir / _JS_NAME
    if not dst.exists() or dst.stat().st_size != src.stat().st_size:
        static_dir.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
    return dst


def plotly_js_url() -> str:
    """Where the browser finds Plotly: Streamlit serves ``frontend/static/`` at ``app/static/``."""
    return f"app/static/{_JS_NAME}?v={plotly.__version__}"


def _count_points(fig: dict[str, Any]) -> int:
    total = 0
    for trace in fig.get("data", []):
        x = trace.get("x")
        if isinstance(x, list):
            total += len(x)
        elif isinstance(x, dict) and "bdata" in x:
            total += len(x["bdata"]) * 3 // 4 // max(1, {"f8": 8, "f4": 4, "i8": 8, "i4": 4, "i2": 2, "i1": 1,
                                                         "u1": 1}.get(x.get("dtype", "f8"), 8))
    return total


def figure_payload(fig: go.Figure, *, height: int | None = None) -> dict[str, Any]:
    """The JSON the component receives: the figure, its height, Plotly's URL and a point count."""
    spec = json.loads(fig.to_json())
    h = int(height or spec.get("layout", {}).get("height") or 420)
    return {"figure": spec, "height": h, "src": plotly_js_url(), "points": _count_points(spec),
            "config": PLOTLY_CONFIG}


def static_serving() -> bool:
    """Whether Streamlit serves ``frontend/static/`` (``server.enableStaticServing``)."""
    return bool(st.get_option("server.enableStaticServing"))


def _reported_xrange(state: Any) -> list[float] | None:
    """The x range the browser reported (``None``: autoscaled or nothing reported); malformed values → None."""
    value = state.get("xrange") if hasattr(state, "get") else getattr(state, "xrange", None)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return [lo, hi] if lo < hi and all(map(lambda v: abs(v) < 1e300, (lo, hi))) else None


def live_plotly_chart(fig: go.Figure, *, key: str, height: int | None = None,
                      on_xrange: Callable[[list[float] | None], None] | None = None) -> None:
    """Show ``fig``; later calls with the same ``key`` update the same chart in place (zoom kept).

    Without static serving (Streamlit started without the repository's ``.streamlit/config.toml``) the chart
    falls back to ``st.plotly_chart``: it still updates, but a refresh resets the zoom.

    Args:
        on_xrange: called with the x range ([lo, hi], or ``None`` after autoscale) when the user zooms.
    """
    if not static_serving():
        st.plotly_chart(fig, key=key, theme=None, width="stretch", config=PLOTLY_CONFIG)
        return
    payload = figure_payload(fig, height=height)
    if on_xrange is None:
        _component(key=key, data=payload, height=payload["height"])
        return
    payload["report_xrange"] = True
    _component(key=key, data=payload, height=payload["height"],
               on_xrange_change=lambda: on_xrange(_reported_xrange(st.session_state.get(key) or {})))


def plotly_js_missing(static_dir: Path = STATIC_DIR) -> str | None:
    """Why live charts cannot load Plotly (the install step has not run for this plotly version), or None."""
    src = Path(plotly.__file__).resolve().parent / "package_data" / _JS_NAME
    dst = static_dir / _JS_NAME
    if dst.exists() and dst.stat().st_size == src.stat().st_size:
        return None
    return (f"{dst} is missing or from another plotly version: run `make run` (or `python -m frontend.live_chart`) "
            "to copy it from the installed plotly package")


if __name__ == "__main__":
    print(ensure_plotly_js())
