"""trustlab UI pages' entry point; `make run` serves it with `streamlit run frontend/server.py`."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `streamlit run` puts frontend/ on the path, not the repository root
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from frontend.live_chart import plotly_js_missing  # noqa: E402
from frontend.settings import get_settings  # noqa: E402
from frontend.signin import TOKEN_KEY, gate, sign_out  # noqa: E402
from frontend.ui import PAGES, load_run_states  # noqa: E402

if (_why := plotly_js_missing()) is not None:  # copied at install time (Makefile, Dockerfile), not here
    logging.getLogger("trustlab.ui").warning("live charts will not load Plotly: %s", _why)
# Pages in a bar across the top (it folds into a menu on narrow windows), so the sidebar holds only the API
# address and starts collapsed: an 800 px window keeps its full width for the controls and charts.
st.set_page_config(page_title="trustlab", page_icon="📉", layout="wide", initial_sidebar_state="collapsed")
# When the API needs credentials, nothing below renders (no pages, no run names) until this session signs in.
user = gate()

navigation = st.navigation([
    st.Page(PAGES["launch"], title="Launch", icon=":material/rocket_launch:", default=True),
    st.Page(PAGES["runs"], title="Runs", icon=":material/format_list_bulleted:"),
    st.Page(PAGES["compare"], title="Compare", icon=":material/monitoring:"),
    st.Page(PAGES["sweep"], title="Sweep", icon=":material/tune:"),
    st.Page(PAGES["geometry"], title="Geometry", icon=":material/blur_circular:"),
    st.Page(PAGES["hessian"], title="Hessian", icon=":material/grid_on:"),
], position="top")
with st.sidebar:
    st.caption(f"trustlab · optimizers compared live · API {get_settings().api_url}")
    st.caption(f"Signed in as **{user['name']}** ({user['role']})")
    if TOKEN_KEY in st.session_state:
        st.button("Sign out", key="signout", icon=":material/logout:", on_click=sign_out)
load_run_states()  # run states come from GET /api/meta, never from a copy in the UI
navigation.run()
