"""Owners (issue 18, item 3): every object names its creator; members change only their own, admins anything."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.users import UsersFile
from tests.backend.conftest import MLP_RUN, make_settings, record_run

COMPARISON = {"name": "c", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 5},
              "seeds": [0], "optimizers": [{"name": "sgd"}]}
SWEEP = {"name": "s", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 5}, "seeds": [0],
         "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.01, 0.1]}}}]}


class Users:
    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def as_(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@pytest.fixture
def users(tmp_path: Path) -> Iterator[Users]:
    path = tmp_path / "users.json"
    f = UsersFile(path)
    tokens = {"alice": f.add("alice", "member"), "bob": f.add("bob", "member"), "root": f.add("root", "admin")}
    with TestClient(create_app(make_settings(tmp_path, users_file=path, api_token="single",
                                             max_queued_runs_per_user=3))) as c:
        tokens["admin"] = "single"
        yield Users(c, tokens)


def test_every_object_records_and_returns_its_owner(users: Users) -> None:
    c = users.client
    run = c.post("/api/runs", json=MLP_RUN, headers=users.as_("alice")).json()
    assert run["owner"] == "alice"
    assert c.get(f"/api/runs/{run['id']}", headers=users.as_("bob")).json()["owner"] == "alice"  # all may read
    cmp_ = c.post("/api/comparisons", json=COMPARISON, headers=users.as_("bob")).json()
    detail = c.get(f"/api/comparisons/{cmp_['id']}", headers=users.as_("bob")).json()
    assert detail["owner"] == "bob" and [r["owner"] for r in detail["runs"]] == ["bob"]
    assert c.get("/api/comparisons", headers=users.as_("bob")).json()["items"][0]["owner"] == "bob"
    sweep = c.post("/api/sweeps", json=SWEEP, headers=users.as_("alice"))
    assert sweep.status_code == 201, sweep.text
    sid = sweep.json()["id"]
    assert c.get(f"/api/sweeps/{sid}", headers=users.as_("alice")).json()["owner"] == "alice"
    assert c.get("/api/sweeps", headers=users.as_("alice")).json()["items"][0]["owner"] == "alice"
    assert {r["owner"] for r in c.get(f"/api/runs?comparison_id={sweep.json()['comparison_id']}",
                                      headers=users.as_("alice")).json()["items"]} == {"alice"}
    # TRUSTLAB_API_TOKEN signs in as the admin "admin"
    assert c.post("/api/runs", json=MLP_RUN, headers=users.as_("admin")).json()["owner"] == "admin"


def test_analysis_records_its_owner(users: Users) -> None:
    c = users.client
    narrow = {**MLP_RUN, "model": "mlp-narrow", "budget": {"backprops": 20}, "test_subset": 500}
    run_id = c.post("/api/runs", json=narrow, headers=users.as_("alice")).json()["id"]
    record_run(c, run_id, steps=10)
    r = c.post(f"/api/runs/{run_id}/analyses/hessian", json={"fractions": [0, 1], "batch_size": 64},
               headers=users.as_("bob"))  # anyone may analyse a run: the analysis is theirs
    assert r.status_code == 202, r.text
    assert r.json()["owner"] == "bob"
    assert c.get(f"/api/runs/{run_id}/analyses", headers=users.as_("alice")).json()["items"][0]["owner"] == "bob"


def test_members_change_only_their_own(users: Users) -> None:
    c = users.client
    run_id = c.post("/api/runs", json=MLP_RUN, headers=users.as_("alice")).json()["id"]
    for method, url, body in (("POST", f"/api/runs/{run_id}/cancel", None),
                              ("PATCH", f"/api/runs/{run_id}", {"note": "mine now"}),
                              ("DELETE", f"/api/runs/{run_id}", None)):
        r = c.request(method, url, json=body, headers=users.as_("bob"))
        assert r.status_code == 403, (method, r.text)
        assert "'alice'" in r.json()["detail"] and "'bob'" in r.json()["detail"]
    run = c.get(f"/api/runs/{run_id}", headers=users.as_("bob")).json()
    assert run["status"] == "queued" and run["note"] == ""  # nothing changed
    assert c.patch(f"/api/runs/{run_id}", json={"note": "ok"}, headers=users.as_("alice")).status_code == 200
    assert c.post(f"/api/runs/{run_id}/cancel", headers=users.as_("root")).json()["status"] == "cancelled"
    assert c.delete(f"/api/runs/{run_id}", headers=users.as_("root")).status_code == 204  # admins: anything

    cmp_id = c.post("/api/comparisons", json=COMPARISON, headers=users.as_("alice")).json()["id"]
    assert c.patch(f"/api/comparisons/{cmp_id}", json={"tags": ["x"]}, headers=users.as_("bob")).status_code == 403
    assert c.delete(f"/api/comparisons/{cmp_id}", headers=users.as_("bob")).status_code == 403
    for rid in c.get(f"/api/comparisons/{cmp_id}", headers=users.as_("alice")).json()["run_ids"]:
        assert c.post(f"/api/runs/{rid}/cancel", headers=users.as_("alice")).status_code == 200
    assert c.delete(f"/api/comparisons/{cmp_id}", headers=users.as_("alice")).status_code == 204

    sid = c.post("/api/sweeps", json=SWEEP, headers=users.as_("alice")).json()["id"]
    r = c.post(f"/api/sweeps/{sid}/promote", json={}, headers=users.as_("bob"))
    assert r.status_code == 403 and "'alice'" in r.json()["detail"]
    assert c.post(f"/api/sweeps/{sid}/promote", json={}, headers=users.as_("alice")).status_code == 409  # own: on


def test_lists_filter_by_owner(users: Users) -> None:
    c = users.client
    for who in ("alice", "bob", "alice"):
        c.post("/api/runs", json=MLP_RUN, headers=users.as_(who))
    c.post("/api/comparisons", json=COMPARISON, headers=users.as_("bob"))
    mine = c.get("/api/runs?owner=alice", headers=users.as_("bob")).json()
    assert mine["total"] == 2 and {r["owner"] for r in mine["items"]} == {"alice"}
    assert c.get("/api/runs", headers=users.as_("bob")).json()["total"] == 4
    assert c.get("/api/runs?owner=nobody", headers=users.as_("bob")).json()["total"] == 0
    assert c.get("/api/comparisons?owner=bob", headers=users.as_("bob")).json()["total"] == 1
    assert c.get("/api/comparisons?owner=alice", headers=users.as_("bob")).json()["total"] == 0
    assert c.get("/api/sweeps?owner=alice", headers=users.as_("bob")).json()["total"] == 0
    for url in ("/api/runs?owner=a%20b", "/api/comparisons?owner=" + "x" * 41, "/api/sweeps?owner=../x"):
        r = c.get(url, headers=users.as_("bob"))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "owner"], url


def test_per_user_queue_quota(users: Users) -> None:
    c = users.client
    for _ in range(3):
        assert c.post("/api/runs", json=MLP_RUN, headers=users.as_("alice")).status_code == 201
    r = c.post("/api/runs", json=MLP_RUN, headers=users.as_("alice"))
    assert r.status_code == 429 and r.headers["retry-after"]
    assert "TRUSTLAB_MAX_QUEUED_RUNS_PER_USER" in r.json()["detail"] and "'alice'" in r.json()["detail"]
    r = c.post("/api/sweeps", json=SWEEP, headers=users.as_("alice"))  # sweeps count too
    assert r.status_code == 429, r.text
    assert c.post("/api/runs", json=MLP_RUN, headers=users.as_("bob")).status_code == 201  # others still may
    assert c.get("/api/runs?owner=alice", headers=users.as_("bob")).json()["total"] == 3


def test_open_loopback_owner_is_the_local_user(client: TestClient) -> None:
    run = client.post("/api/runs", json=MLP_RUN).json()
    assert run["owner"] == "local"
    assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 200  # the local user is an admin


def test_local_user_name_is_a_setting(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, local_user="lab"))) as c:
        assert c.post("/api/runs", json=MLP_RUN).json()["owner"] == "lab"
