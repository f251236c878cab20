"""AppTest: the sign-in page (issue 18, item 2): nothing renders before sign-in when the API needs a token;
a wrong token says so; the token lives in the session only; sign-out forgets it; the Runs page shows owners."""
from __future__ import annotations

from frontend.signin import TOKEN_KEY
from tests.frontend.conftest import texts

ALICE = "tok-alice-0123456789"
ROOT = "tok-root-0123456789"


def _users(api) -> None:
    api.users = {ALICE: {"name": "alice", "role": "member"}, ROOT: {"name": "root", "role": "admin"}}


def _sign_in(at, token: str):
    at.text_input(key="signin_token").input(token)
    next(b for b in at.button if b.label == "Sign in").click().run()
    return at


def _everything(at) -> str:
    return "\n".join(texts(getattr(at, kind)) for kind in ("title", "markdown", "caption", "error", "info"))


def test_sign_in_page_shows_nothing_else(api, open_page):
    _users(api)
    api.add_comparison("secret comparison", [api.add_run("adam", status="running", steps=5)])
    at = open_page()
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in to trustlab"]
    assert "secret comparison" not in _everything(at) and "Adam" not in _everything(at)
    assert [w.label for w in at.text_input] == ["Token"] and [b.label for b in at.button] == ["Sign in"]
    assert not at.dataframe and not at.sidebar.button
    assert not [c for c in api.calls if c[0] in ("list_runs", "list_comparisons", "meta")]  # no data fetched


def test_wrong_token_says_so_and_stays_on_the_sign_in_page(api, open_page):
    _users(api)
    at = _sign_in(open_page(), "wrong-token")
    assert not at.exception
    assert "Wrong token" in texts(at.error)
    assert [t.value for t in at.title] == ["Sign in to trustlab"]
    assert TOKEN_KEY not in at.session_state


def test_sign_in_then_sign_out(api, open_page):
    _users(api)
    api.add_run("adam", status="completed", steps=5)
    at = _sign_in(open_page(), ALICE)
    assert not at.exception
    assert [t.value for t in at.title] == ["Launch"]
    assert at.session_state[TOKEN_KEY] == ALICE  # session state only: not in the URL
    assert not at.query_params
    assert "Signed in as **alice** (member)" in texts(at.sidebar.caption)
    at.switch_page("views/runs.py").run()
    assert at.dataframe[0].value["run"].tolist() == ["Adam (seed 0)"]
    assert ("list_runs", None) in api.calls
    at.sidebar.button(key="signout").click().run()
    assert [t.value for t in at.title] == ["Sign in to trustlab"]
    assert TOKEN_KEY not in at.session_state


def test_a_revoked_token_returns_to_the_sign_in_page(api, open_page):
    _users(api)
    api.add_run("adam", status="completed", steps=5)
    at = _sign_in(open_page(), ALICE)
    api.users.pop(ALICE)  # removed with `python -m backend.users remove alice`
    at.switch_page("views/runs.py").run()
    assert [t.value for t in at.title] == ["Sign in to trustlab"]
    assert "no longer accepts your token" in texts(at.error)


def test_open_api_needs_no_sign_in(api, open_page):
    at = open_page()
    assert [t.value for t in at.title] == ["Launch"]
    assert "Signed in as **local** (admin)" in texts(at.sidebar.caption)
    assert not at.sidebar.button  # nothing to sign out of


def test_runs_page_owner_column_and_mine_filter(api, open_page):
    _users(api)
    api.owner = "root"
    api.add_run("adam", status="completed", steps=5)
    api.owner = "alice"
    mine = api.add_run("sgd", status="completed", steps=5)
    at = _sign_in(open_page(), ALICE)
    at.switch_page("views/runs.py").run()
    table = at.dataframe[0].value
    assert table["owner"].tolist() == ["alice", "root"]
    at.toggle(key="runs_mine").set_value(True).run()
    assert not at.exception
    assert at.dataframe[0].value["id"].tolist() == [mine["id"]]
    assert at.toggle(key="runs_mine").label == "Only mine (alice)"


def test_open_api_behind_a_non_loopback_ui_is_refused(api, open_page, monkeypatch):
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        api.add_run("adam", status="completed", steps=5)
        at = open_page()
    finally:
        config.set_option("server.address", before)
    assert not at.exception
    assert "reachable from other machines" in texts(at.error)
    assert not at.title and "Adam" not in _everything(at)


def test_an_api_that_starts_needing_credentials_shows_the_sign_in_page(api, open_page):
    api.add_run("adam", status="completed", steps=5)
    at = open_page("runs")
    assert at.dataframe
    _users(api)  # the API restarted with a users file
    at.run()
    assert [t.value for t in at.title] == ["Sign in to trustlab"]
    assert "now needs credentials" in texts(at.error)
