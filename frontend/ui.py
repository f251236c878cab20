"""Small Streamlit helpers shared by the pages: API calls with errors in words, run titles, the meta cache."""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, TypeVar

import streamlit as st

from frontend import api_client, charts, run_states
from frontend.api_client import ApiError, ApiUnreachable

__all__ = ["call", "show_api_error", "client", "meta", "load_run_states", "run_title", "PAGES"]

log = logging.getLogger("trustlab.ui")

T = TypeVar("T")

# page files, relative to frontend/app.py (st.navigation and st.switch_page use these)
PAGES = {"launch": "views/launch.py", "runs": "views/runs.py", "compare": "views/compare.py",
         "geometry": "views/geometry.py", "sweep": "views/sweep.py", "hessian": "views/hessian.py"}


def client() -> Any:
    """The API client for this browser session: the process-wide one (``frontend.api_client.get_client``; a stub
    in tests) carrying the session's own token once it signed in (frontend/signin.py)."""
    from frontend.signin import TOKEN_KEY

    base = api_client.get_client()
    token = st.session_state.get(TOKEN_KEY)
    return base.with_token(token) if token else base


def show_api_error(exc: Exception) -> None:
    """Say in words what went wrong talking to the API."""
    if isinstance(exc, ApiUnreachable):
        st.error(f"**The trustlab API is unreachable.** Tried {exc.url} ({exc.reason}).\n\n"
                 "Start it with `make run` (API and UI together) or `make api`, or set TRUSTLAB_API_URL to "
                 "where it runs, then reload this page.", icon=":material/cloud_off:")
    elif isinstance(exc, ApiError):
        from frontend.signin import signed_out

        if signed_out(exc):  # the session's token stopped working: back to the sign-in page
            st.rerun()
        st.error("**The API refused the request.**\n\n" + "\n".join(f"- {m}" for m in exc.messages),
                 icon=":material/error:")
    else:
        raise exc


def call(fn: Callable[..., T], *args: Any, stop: bool = True, **kwargs: Any) -> T | None:
    """Run an API call; on failure show what went wrong in words and stop the page (or return ``None``)."""
    try:
        return fn(*args, **kwargs)
    except (ApiUnreachable, ApiError) as exc:
        show_api_error(exc)
    if stop:
        st.stop()
    return None


def meta() -> Mapping[str, Any]:
    """GET /api/meta, fetched once per session."""
    if "_meta" not in st.session_state:
        st.session_state["_meta"] = call(client().meta)
    return st.session_state["_meta"]


def load_run_states() -> None:
    """Adopt the API's run states and optimizer colours once per session (pages that never call ``meta()`` need
    them too).

    Without an API the pages say so themselves on their first call; here only a log line, and the
    fallback of ``frontend.run_states`` stays until a later page load succeeds.
    """
    if st.session_state.get("_run_states_loaded"):
        return
    try:
        if "_meta" not in st.session_state:
            st.session_state["_meta"] = client().meta()
    except (ApiUnreachable, ApiError) as exc:
        log.warning("run states not loaded from the API yet: %s", exc)
        return
    published = st.session_state.get("_meta") or {}
    run_states.update(published.get("run_states"))
    charts.adopt_colors(published.get("optimizers"))
    st.session_state["_run_states_loaded"] = True


def run_title(run: Mapping[str, Any]) -> str:
    return f"#{run['id']} {run.get('label') or run.get('optimizer') or ''}".strip()
