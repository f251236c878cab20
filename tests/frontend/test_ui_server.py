"""The UI port gives nobody the API (issue 18, item 2): a real API with named users and the real UI
(``python -m frontend.serve``) on free loopback ports, driven over Streamlit's own websocket protocol.

Without credentials a client sees the sign-in page only (no run or comparison names, no pages, no widgets) and
cannot launch, cancel or delete, even by sending the widget ids a signed-in session uses; signed in, it can.
A DNS-rebinding pair (Origin = Host = evil.example:PORT) and cross-origin upgrades are refused.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from backend.users import UsersFile
from tests.frontend.streamlit_ws import Render, Session, bool_value, text_value, trigger

ROOT = Path(__file__).resolve().parents[2]
SECRET = "secret-cmp-xyz"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_http(url: str, proc: subprocess.Popen, log: Path, ceiling: float = 180) -> None:
    """Poll until ``url`` answers 200 (the ceiling is generous: a loaded machine starts slowly)."""
    deadline = time.monotonic() + ceiling
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {ceiling} s:\n{log.read_text()[-3000:]}")


class Lab:
    def __init__(self, api_url: str, ui_port: int, tokens: dict[str, str]) -> None:
        self.api_url, self.ui_port, self.tokens = api_url, ui_port, tokens

    def api(self, method: str, path: str, who: str = "root", **kw) -> httpx.Response:
        return httpx.request(method, self.api_url + "/api" + path, timeout=30,
                             headers={"Authorization": f"Bearer {self.tokens[who]}"}, **kw)

    def runs(self) -> list[dict]:
        return self.api("GET", "/runs?limit=500").json()["items"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("ui-auth")
    users = UsersFile(tmp / "users.json")
    tokens = {"root": users.add("root", "admin"), "alice": users.add("alice", "member")}
    api_port, ui_port = _free_port(), _free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = {**os.environ, "TRUSTLAB_DATABASE_URL": f"sqlite:///{tmp}/t.db", "TRUSTLAB_VAR_DIR": str(tmp),
           "TRUSTLAB_USERS_FILE": str(tmp / "users.json"), "TRUSTLAB_SCHEDULER": "false",
           "TRUSTLAB_PORT": str(api_port), "TRUSTLAB_API_URL": api_url, "PYTHONUNBUFFERED": "1"}
    env.pop("TRUSTLAB_API_TOKEN", None)
    env.pop("TRUSTLAB_UI_ALLOWED_HOSTS", None)
    api = _start([sys.executable, "-m", "backend.serve"], env, tmp / "api.log")
    ui = None
    try:
        _wait_http(f"{api_url}/api/health", api, tmp / "api.log")
        ui = _start([sys.executable, "-m", "frontend.serve", "--server.port", str(ui_port)], env, tmp / "ui.log")
        _wait_http(f"http://127.0.0.1:{ui_port}/_stcore/health", ui, tmp / "ui.log")
        lab = Lab(api_url, ui_port, tokens)
        body = {"name": SECRET, "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 5},
                "seeds": [0], "optimizers": [{"name": "sgd"}]}
        assert lab.api("POST", "/comparisons", json=body).status_code == 201  # root's
        alice_run = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "adam"},
                     "budget": {"backprops": 5}}
        assert lab.api("POST", "/runs", "alice", json=alice_run).status_code == 201
        yield lab
    finally:
        for proc in (ui, api):
            if proc is not None:
                _stop(proc)


def _sign_in(s: Session, token: str) -> Render:
    r = s.rerun()
    return s.rerun(widgets=[text_value(r.widget_id("text_input", "Token"), token),
                            trigger(r.widget_id("button", "Sign in"))])


def _only_sign_in(r: Render) -> None:
    assert "Sign in to trustlab" in r.text
    assert SECRET not in r.text and "SGD" not in r.text and "Adam" not in r.text
    assert r.pages() == {}
    assert {(k, label) for k, label, _ in r.widgets()} == {("text_input", "Token"), ("button", "Sign in")}


def _run_checkbox(r: Render, run_id: int) -> str:
    return next(i for k, _label, i in r.widgets() if k == "checkbox" and i.endswith(f"runs_sel_{run_id}"))


def test_without_credentials_nothing_renders_and_nothing_can_be_pressed(lab: Lab) -> None:
    # A signed-in session shows what there is to see and press ...
    alice_run = next(r["id"] for r in lab.runs() if r["owner"] == "alice")
    with Session(lab.ui_port) as signed:
        home = _sign_in(signed, lab.tokens["alice"])
        pages = home.pages()
        assert set(pages) >= {"Launch", "Runs", "Compare"}
        launch_id = home.widget_id("button", "Launch")
        runs_page = signed.rerun(pages["Runs"])
        assert SECRET in runs_page.text  # members see everyone's runs
        box, cancel = _run_checkbox(runs_page, alice_run), runs_page.widget_id("button", "Cancel")
        delete = runs_page.widget_id("button", "Delete…")
        delete_cmp = runs_page.widget_id("button", "Delete comparison…")
    before = lab.runs()
    # ... a session without credentials, sending those very page hashes and widget ids, sees and does nothing.
    with Session(lab.ui_port) as anonymous:
        _only_sign_in(anonymous.rerun())
        for page_hash in pages.values():
            _only_sign_in(anonymous.rerun(page_hash))
        _only_sign_in(anonymous.rerun(pages["Launch"], [trigger(launch_id)]))
        _only_sign_in(anonymous.rerun(pages["Runs"], [bool_value(box, True)]))
        _only_sign_in(anonymous.rerun(pages["Runs"], [bool_value(box, True), trigger(cancel)]))
        _only_sign_in(anonymous.rerun(pages["Runs"], [bool_value(box, True), trigger(delete)]))
        _only_sign_in(anonymous.rerun(pages["Runs"], [trigger(delete_cmp)]))
        wrong = _sign_in(anonymous, "not-a-token")
        _only_sign_in(wrong)
        assert "Wrong token" in wrong.text
    assert lab.runs() == before  # nothing launched, cancelled or deleted


def test_signed_in_session_launches_cancels_and_deletes_its_own(lab: Lab) -> None:
    with Session(lab.ui_port) as s:
        home = _sign_in(s, lab.tokens["alice"])
        assert "alice" in home.text
        pages = home.pages()
        known = {r["id"] for r in lab.runs()}
        s.rerun(pages["Launch"], [trigger(home.widget_id("button", "Launch"))])
        launched = [r for r in lab.runs() if r["id"] not in known]  # the default form: a comparison
        assert launched and {r["owner"] for r in launched} == {"alice"}
        new = launched[0]["id"]
        page = s.rerun(pages["Runs"])
        box, cancel = _run_checkbox(page, new), page.widget_id("button", "Cancel")
        s.rerun(pages["Runs"], [bool_value(box, True)])
        s.rerun(pages["Runs"], [bool_value(box, True), trigger(cancel)])
        assert lab.api("GET", f"/runs/{new}").json()["status"] == "cancelled"
        page = s.rerun(pages["Runs"], [bool_value(box, True)])
        page = s.rerun(pages["Runs"], [bool_value(box, True), trigger(page.widget_id("button", "Delete…"))])
        s.rerun(pages["Runs"], [bool_value(box, True), trigger(page.widget_id("button", "Yes, delete these runs"))])
        assert lab.api("GET", f"/runs/{new}").status_code == 404
        # another user's run: the API refuses, and the page says whose it is
        root_run = next(r["id"] for r in lab.runs() if r["owner"] == "root")
        page = s.rerun(pages["Runs"])
        box = _run_checkbox(page, root_run)
        s.rerun(pages["Runs"], [bool_value(box, True)])
        refused = s.rerun(pages["Runs"], [bool_value(box, True), trigger(cancel)])
        assert "belongs to 'root'" in refused.text
        assert lab.api("GET", f"/runs/{root_run}").json()["status"] == "queued"
        # sign out: back to the sign-in page, nothing of the session left
        out = s.rerun(pages["Runs"], [trigger(page.widget_id("button", "Sign out"))])
        _only_sign_in(out)
        _only_sign_in(s.rerun(pages["Runs"]))


def test_rebinding_host_and_cross_origin_upgrades_are_refused(lab: Lab) -> None:
    port = lab.ui_port
    evil = f"evil.example:{port}"
    with pytest.raises(InvalidStatus) as refused:
        Session(port, host=evil, origin=f"http://{evil}")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        Session(port, origin=f"http://{evil}")  # Host is fine, Origin is another site
    with pytest.raises(InvalidStatus):
        Session(port, host=evil)  # no Origin (a non-browser client), rebinding Host
    r = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": evil}, timeout=30)
    assert r.status_code == 400 and "TRUSTLAB_UI_ALLOWED_HOSTS" in r.text
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200
    with Session(port, host=f"localhost:{port}", origin=f"http://localhost:{port}") as s:  # loopback names: fine
        _only_sign_in(s.rerun())
