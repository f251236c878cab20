"""The sign-in page: when the API needs credentials, nothing else renders until this browser session signs in.

The API says whether it needs a token (public ``GET /api/auth``). Each session signs in with its own token (a
named user's, or the single TRUSTLAB_API_TOKEN); it is kept only in that session's ``st.session_state``
(server memory, gone when the session ends or on sign-out), never in the URL or on disk, and every API call of
the session carries it (``frontend.ui.client``). With no credentials configured the UI stays open, as the local
user, but only while it listens on loopback: an open API behind a UI reachable from other machines would give
them the API.
"""
from __future__ import annotations

import ipaddress
from typing import Any

import streamlit as st

from frontend import api_client
from frontend.api_client import ApiError, ApiUnreachable

__all__ = ["TOKEN_KEY", "USER_KEY", "gate", "sign_out", "signed_in_user", "signed_out"]

TOKEN_KEY = "_auth_token"
USER_KEY = "_auth_user"
_OPEN_KEY = "_auth_open"  # the local user, when the API needs no credentials
_NOTICE_KEY = "_auth_notice"


def _loopback(address: str | None) -> bool:
    if not address:
        return False
    host = address.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def signed_in_user() -> dict[str, Any] | None:
    """The session's user ({"name", "role"}), or None before sign-in."""
    return st.session_state.get(USER_KEY) or st.session_state.get(_OPEN_KEY)


def sign_out(notice: str | None = None) -> None:
    """Forget everything of this session (token, user, page state); ``notice`` shows on the sign-in page."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if notice:
        st.session_state[_NOTICE_KEY] = notice


def signed_out(exc: ApiError) -> bool:
    """After a 401 on a signed-in session (token rotated or removed), or on an open one whose API now needs
    credentials: sign out, say why; True if it did."""
    if exc.status_code != 401 or not (TOKEN_KEY in st.session_state or _OPEN_KEY in st.session_state):
        return False
    sign_out("The API no longer accepts your token (rotated or removed?). Sign in again."
             if TOKEN_KEY in st.session_state else "The API now needs credentials. Sign in.")
    return True


def _try(token: str) -> None:
    try:
        info = api_client.get_client().with_token(token).auth()
    except ApiError as exc:
        if exc.status_code == 401:
            st.session_state[_NOTICE_KEY] = ("Wrong token: the API did not accept it. Paste the token "
                                             "`python -m backend.users add NAME` printed for you (or the "
                                             "server's TRUSTLAB_API_TOKEN).")
            return
        raise
    user = info.get("user") if isinstance(info, dict) else None
    if not isinstance(user, dict) or not user.get("name"):
        st.session_state[_NOTICE_KEY] = "The API accepted the token but named no user; check the API version."
        return
    st.session_state[TOKEN_KEY] = token
    st.session_state[USER_KEY] = {"name": str(user["name"]), "role": str(user.get("role", "member"))}


def _sign_in_page() -> None:
    st.title("Sign in to trustlab")
    st.caption("This lab needs credentials. Your token stays in this browser tab's session only; closing the "
               "tab or signing out forgets it.")
    if notice := st.session_state.pop(_NOTICE_KEY, None):
        st.error(notice, icon=":material/lock:")
    with st.form("signin_form", clear_on_submit=True, enter_to_submit=True):
        token = st.text_input("Token", type="password", key="signin_token", placeholder="your trustlab token")
        submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:")
    if submitted:
        token = (token or "").strip()
        if not token:
            st.session_state[_NOTICE_KEY] = "Paste your token first."
        else:
            _try(token)
        st.rerun()


def gate() -> dict[str, Any]:
    """The session's user; renders the sign-in page (and nothing else) and stops the script until there is one."""
    from frontend.ui import show_api_error

    if TOKEN_KEY in st.session_state and USER_KEY in st.session_state:
        return st.session_state[USER_KEY]
    if _OPEN_KEY in st.session_state:
        return st.session_state[_OPEN_KEY]
    try:
        info = api_client.get_client().auth()
    except (ApiUnreachable, ApiError) as exc:
        show_api_error(exc)
        st.stop()
    if not info.get("required"):
        address = st.get_option("server.address")
        if address and not _loopback(address):
            st.error("**This UI is reachable from other machines, but the API needs no credentials.** Anyone "
                     "could use it. Add users (`python -m backend.users add NAME --admin`, TRUSTLAB_USERS_FILE) "
                     "or set TRUSTLAB_API_TOKEN on the API, or serve the UI on 127.0.0.1.", icon=":material/lock:")
            st.stop()
        user = info.get("user") or {"name": "local", "role": "admin"}
        st.session_state[_OPEN_KEY] = user
        return user
    _sign_in_page()
    st.stop()
    raise AssertionError("unreachable")  # pragma: no cover - st.stop raises
