"""PATCH /api/runs/{id} and /api/comparisons/{id}: tags and a note, bounded and validated; bad input stores nothing."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import MLP_RUN


def _run(client: TestClient) -> dict:
    r = client.post("/api/runs", json=MLP_RUN)
    assert r.status_code == 201, r.text
    return r.json()


def test_tags_and_note_on_a_run_are_stored_and_listed(client: TestClient) -> None:
    run = _run(client)
    assert run["tags"] == [] and run["note"] == ""
    r = client.patch(f"/api/runs/{run['id']}", json={"tags": ["baseline", " lr-sweep ", "baseline"]})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["baseline", "lr-sweep"] and r.json()["note"] == ""
    r = client.patch(f"/api/runs/{run['id']}", json={"note": "diverged at lr 1; retry with 0.5"})
    assert r.json()["tags"] == ["baseline", "lr-sweep"]  # omitted fields stay
    listed = client.get("/api/runs").json()["items"][0]
    assert listed["tags"] == ["baseline", "lr-sweep"] and listed["note"].startswith("diverged at lr 1")
    assert client.patch(f"/api/runs/{run['id']}", json={"tags": [], "note": ""}).json()["tags"] == []


def test_tags_and_note_on_a_comparison(client: TestClient) -> None:
    spec = {"name": "c", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 40},
            "optimizers": [{"name": "sgd"}]}
    cid = client.post("/api/comparisons", json=spec).json()["id"]
    r = client.patch(f"/api/comparisons/{cid}", json={"tags": ["paper-fig2"], "note": "Table 1 settings"})
    assert r.status_code == 200, r.text
    listed = client.get("/api/comparisons").json()["items"][0]
    assert listed["tags"] == ["paper-fig2"] and listed["note"] == "Table 1 settings"
    assert client.patch("/api/comparisons/999", json={"note": "x"}).status_code == 404


@pytest.mark.parametrize("body,needle", [
    ({"tags": ["has space"]}, "tags"),
    ({"tags": ["x" * 41]}, "at most 40 characters"),
    ({"tags": [f"t{i}" for i in range(21)]}, "at most 20 items"),
    ({"tags": "baseline"}, "valid list"),
    ({"tags": [""]}, "at least 1 character"),
    ({"note": "n" * 4001}, "at most 4000 characters"),
    ({}, "Invalid patch: give tags"),
    ({"label": "mine"}, "Extra inputs are not permitted"),
])
def test_bad_patches_are_refused_and_store_nothing(client: TestClient, body: dict, needle: str) -> None:
    run = _run(client)
    r = client.patch(f"/api/runs/{run['id']}", json=body)
    assert r.status_code == 422 and needle in r.text, r.text
    again = client.get(f"/api/runs/{run['id']}").json()
    assert again["tags"] == [] and again["note"] == ""
