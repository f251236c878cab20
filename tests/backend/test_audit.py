"""The audit trail (issue 18, item 3): who created, cancelled, edited, deleted what and when; admins read it."""
from __future__ import annotations

from fastapi.testclient import TestClient

from tests.backend.conftest import MLP_RUN
from tests.backend.test_owners import COMPARISON, Users, users  # noqa: F401 - the fixture


def test_changes_are_recorded_and_admins_read_them(users: Users) -> None:  # noqa: F811
    c = users.client
    run_id = c.post("/api/runs", json=MLP_RUN, headers=users.as_("alice")).json()["id"]
    c.patch(f"/api/runs/{run_id}", json={"tags": ["a"], "note": "n"}, headers=users.as_("alice"))
    assert c.post(f"/api/runs/{run_id}/cancel", headers=users.as_("bob")).status_code == 403  # refused: no event
    c.post(f"/api/runs/{run_id}/cancel", headers=users.as_("root"))
    c.delete(f"/api/runs/{run_id}", headers=users.as_("alice"))
    cmp_id = c.post("/api/comparisons", json=COMPARISON, headers=users.as_("bob")).json()["id"]

    r = c.get("/api/audit", headers=users.as_("root"))
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 5
    got = [(e["actor"], e["action"], e["object_type"], e["object_id"], e["owner"]) for e in body["items"]]
    assert got == [("bob", "create", "comparison", cmp_id, "bob"), ("alice", "delete", "run", run_id, "alice"),
                   ("root", "cancel", "run", run_id, "alice"), ("alice", "edit", "run", run_id, "alice"),
                   ("alice", "create", "run", run_id, "alice")]
    assert body["items"][3]["detail"] == {"tags": ["a"], "note": "n"}
    assert all(e["at"].endswith("Z") for e in body["items"])
    # filters and pages
    assert [e["action"] for e in c.get("/api/audit?actor=root", headers=users.as_("root")).json()["items"]] == \
        ["cancel"]
    by_object = c.get(f"/api/audit?object_type=run&object_id={run_id}", headers=users.as_("root")).json()
    assert by_object["total"] == 4
    page = c.get("/api/audit?limit=2&offset=1", headers=users.as_("root")).json()
    assert page["total"] == 5 and [e["id"] for e in page["items"]] == [e["id"] for e in body["items"][1:3]]
    assert c.get("/api/audit?action=delete", headers=users.as_("admin")).json()["total"] == 1  # the API token


def test_members_may_not_read_the_audit_trail(users: Users) -> None:  # noqa: F811
    r = users.client.get("/api/audit", headers=users.as_("alice"))
    assert r.status_code == 403 and "admins" in r.json()["detail"]
    assert users.client.get("/api/audit").status_code == 401


def test_audit_queries_are_validated(users: Users) -> None:  # noqa: F811
    c = users.client
    for query, field in (("limit=501", "limit"), ("limit=0", "limit"), ("action=steal", "action"),
                         ("object_type=user", "object_type"), ("actor=a%20b", "actor"), ("object_id=-1", "object_id")):
        r = c.get(f"/api/audit?{query}", headers=users.as_("root"))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", field], query


def test_a_refused_change_leaves_no_event(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
    r = client.delete(f"/api/runs/{run_id}")  # queued: 409, nothing deleted
    assert r.status_code == 409
    events = client.get("/api/audit").json()["items"]  # the open loopback API: the local admin
    assert [(e["actor"], e["action"]) for e in events] == [("local", "create")]
