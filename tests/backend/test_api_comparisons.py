"""POST/GET/DELETE /api/comparisons: one run per optimizer and seed, shared settings, derived status."""
from __future__ import annotations

from fastapi.testclient import TestClient

from tests.backend.conftest import record_run

SPEC = {"name": "fmnist mlp", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 40},
        "seeds": [0, 1], "train_subset": 512, "eval_every": 5,
        "optimizers": [{"name": "sgd", "hyperparameters": {"lr": 0.05}}, {"name": "tr-uniform"},
                       {"name": "adam", "batch_size": 64}],
        "batch_sizes": {"first-order": 32, "second-order": 256}}


def test_create_one_run_per_optimizer_and_seed(client: TestClient) -> None:
    r = client.post("/api/comparisons", json=SPEC)
    assert r.status_code == 201, r.text
    created = r.json()
    assert len(created["run_ids"]) == 6
    detail = client.get(f"/api/comparisons/{created['id']}").json()
    runs = detail["runs"]
    assert detail["name"] == "fmnist mlp" and detail["status"] == "queued" and detail["spec"]["seeds"] == [0, 1]
    assert [(r["optimizer"], r["seed"]) for r in runs] == [("sgd", 0), ("tr-uniform", 0), ("adam", 0),
                                                           ("sgd", 1), ("tr-uniform", 1), ("adam", 1)]
    assert [r["config"]["batch_size"] for r in runs[:3]] == [32, 256, 64]
    assert runs[0]["label"] == "SGD lr=0.05 (seed 0)" and runs[2]["label"] == "Adam batch=64 (seed 0)"
    assert all(r["comparison_id"] == created["id"] and r["config"]["train_subset"] == 512 for r in runs)
    assert runs[0]["config"]["optimizer"]["hyperparameters"]["lr"] == 0.05


def test_list_status_and_delete(client: TestClient) -> None:
    first = client.post("/api/comparisons", json={**SPEC, "seeds": [0], "optimizers": [{"name": "sgd"}]}).json()
    second = client.post("/api/comparisons", json={**SPEC, "name": "two", "seeds": [0]}).json()
    listing = client.get("/api/comparisons").json()
    assert listing["total"] == 2 and [c["id"] for c in listing["items"]] == [second["id"], first["id"]]
    assert listing["items"][1]["run_ids"] == first["run_ids"]
    r = client.delete(f"/api/comparisons/{first['id']}")
    assert r.status_code == 409 and "still has active runs" in r.json()["detail"]
    record_run(client, first["run_ids"][0], steps=3)
    assert client.get(f"/api/comparisons/{first['id']}").json()["status"] == "completed"
    assert client.delete(f"/api/comparisons/{first['id']}").status_code == 204
    assert client.get(f"/api/comparisons/{first['id']}").status_code == 404
    assert client.get(f"/api/runs/{first['run_ids'][0]}").status_code == 404
    assert client.get("/api/comparisons").json()["total"] == 1


def test_eval_every_in_epochs_is_shared_by_every_run(client: TestClient) -> None:
    r = client.post("/api/comparisons", json={**SPEC, "budget": {"epochs": 1}, "eval_every": {"epochs": 0.05}})
    assert r.status_code == 201, r.text
    runs = client.get(f"/api/comparisons/{r.json()['id']}").json()["runs"]
    assert {r["config"]["eval_every"]["epochs"] for r in runs} == {0.05}
    bad = client.post("/api/comparisons", json={**SPEC, "eval_every": {"epochs": 1, "steps": 3}})
    assert bad.status_code == 422 and "exactly one of steps, backprops or epochs" in bad.text
