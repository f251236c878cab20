"""The UI server: ``streamlit run frontend/server.py`` serves ``frontend/app.py`` and answers page URLs itself.

Streamlit's page opens a page URL (``/runs``) by probing ``/runs/_stcore/health`` and ``/runs/_stcore/host-config``
first, as if ``/runs`` were a base path, before ``/_stcore/...``: two 404s in the browser console on every page
load (streamlit/streamlit#7074). Here page URLs get Streamlit's own ``index.html`` with the backend's base URL
set (``window.__streamlit.BACKEND_BASE_URL``, Streamlit's embedding setting), so the browser asks the right
address at once.
"""
from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `streamlit run` puts frontend/ on the path, not the repository root
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from frontend.serve import HostGuard  # noqa: E402
from frontend.settings import get_settings  # noqa: E402
from frontend.ui import PAGES  # noqa: E402

__all__ = ["app", "index_html", "PAGE_PATHS"]

INDEX = Path(st.__file__).resolve().parent / "static" / "index.html"
_DEFAULT_PAGE = "launch"  # app.py's default page, which st.navigation serves at / (its own path does not exist)
# the URL path of each page (st.navigation names them after the file: views/runs.py -> /runs), and the root
PAGE_PATHS = ("/", *(f"/{Path(p).stem}" for name, p in PAGES.items() if name != _DEFAULT_PAGE))
_BASE = ('<script>window.__streamlit = Object.assign(window.__streamlit || {}, '
         '{BACKEND_BASE_URL: window.location.origin + "/"});</script>')


def index_html() -> str:
    """Streamlit's index.html with the backend base URL set before its scripts run."""
    html = INDEX.read_text(encoding="utf-8")
    return html.replace("<head>", "<head>" + _BASE, 1)


async def _page(request: Request) -> HTMLResponse:
    return HTMLResponse(index_html(), headers={"Cache-Control": "no-cache"})


# The Host / Origin check (frontend.serve.HostGuard) wraps this app itself: `streamlit run` serves an st.App without
# building Streamlit's default application, so the launcher's hook alone would not see its requests.
app = st.App(Path(__file__).resolve().parent / "app.py", routes=[Route(p, _page) for p in PAGE_PATHS],
             middleware=[Middleware(HostGuard, allowed=get_settings().ui_host_names)])
