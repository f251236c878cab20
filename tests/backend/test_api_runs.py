"""Every /api/runs route on a temporary SQLite store (no job runner: tests move runs along by hand)."""
from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from tests.backend.conftest import MLP_RUN, record_run


def _post(client: TestClient, **changes) -> dict:
    r = client.post("/api/runs", json={**MLP_RUN, **changes})
    assert r.status_code == 201, r.text
    return r.json()


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/api/health").json() == {"status": "ok"}
    assert client.get("/docs").status_code == 200
    assert "/api/runs/{run_id}/metrics" in client.get("/openapi.json").json()["paths"]


def test_meta(client: TestClient) -> None:
    meta = client.get("/api/meta").json()
    sgd = next(o for o in meta["optimizers"] if o["name"] == "sgd")
    assert sgd["family"] == "first-order" and any(h["name"] == "lr" and h["default"] == 0.1 for h in sgd["hyperparameters"])
    tr = next(o for o in meta["optimizers"] if o["name"] == "tr-rmsprop")
    assert tr["family"] == "second-order"
    datasets = {d["name"]: d for d in meta["datasets"]}
    assert datasets["fashion-mnist"]["available"] is True  # /usr/share/datasets/fashion-mnist
    assert isinstance(datasets["cifar10"]["available"], bool)
    assert {m["name"] for m in meta["models"]} >= {"mlp", "autoencoder"}
    assert any(p["name"] == "paper-fmnist-mlp" for p in meta["presets"])


def test_create_and_get(client: TestClient) -> None:
    run = _post(client, optimizer={"name": "tr-rmsprop", "hyperparameters": {"radius": 0.001}}, seed=3)
    assert run["status"] == "queued" and run["optimizer"] == "tr-rmsprop" and run["seed"] == 3
    assert run["label"] == "TR RMSprop radius=0.001 (seed 3)"
    assert run["config"]["optimizer"]["hyperparameters"]["gamma2"] == 1.75  # defaults filled in
    assert run["config"]["batch_size"] == 512
    assert run["created_at"].endswith("Z") and run["started_at"] is None and run["progress"] == 0.0
    assert client.get(f"/api/runs/{run['id']}").json() == run


def test_list_filters_and_pages(client: TestClient) -> None:
    ids = [_post(client, seed=i)["id"] for i in range(5)]
    record_run(client, ids[0], steps=3)
    page = client.get("/api/runs", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and [r["id"] for r in page["items"]] == [ids[3], ids[2]]
    assert [r["id"] for r in client.get("/api/runs?status=completed").json()["items"]] == [ids[0]]
    assert client.get("/api/runs?status=queued,completed").json()["total"] == 5
    assert client.get("/api/runs?status=queued&status=running").json()["total"] == 4
    comp = client.post("/api/comparisons", json={"name": "c", "dataset": "fashion-mnist", "model": "mlp",
                                                 "budget": {"backprops": 5}, "optimizers": [{"name": "adam"}]}).json()
    listed = client.get("/api/runs", params={"comparison_id": comp["id"]}).json()
    assert [r["id"] for r in listed["items"]] == comp["run_ids"]


def test_progress_and_completion_fields(client: TestClient) -> None:
    run = _post(client, budget={"backprops": 100})
    record_run(client, run["id"], steps=10, status=None)
    live = client.get(f"/api/runs/{run['id']}").json()
    assert live["status"] == "running" and live["progress"] == 0.2 and live["last_step"] == 10
    assert live["device"] == "cpu"


def test_cancel_queued_run_dequeues_it(client: TestClient) -> None:
    run = _post(client)
    r = client.post(f"/api/runs/{run['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 200  # idempotent
    assert client.get("/api/runs?status=queued").json()["total"] == 0


def test_cancel_running_run_flags_it_and_finished_run_conflicts(client: TestClient) -> None:
    running, done = _post(client), _post(client)
    record_run(client, running["id"], steps=2, status=None)
    assert client.post(f"/api/runs/{running['id']}/cancel").json()["status"] == "running"
    with client.app.state.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT cancel_requested FROM runs WHERE id=?", (running["id"],)).scalar() == 1
    record_run(client, done["id"], steps=2)
    r = client.post(f"/api/runs/{done['id']}/cancel")
    assert r.status_code == 409 and "already ended with status 'completed'" in r.json()["detail"]


def test_delete(client: TestClient) -> None:
    done, queued, running = _post(client), _post(client), _post(client)
    record_run(client, done["id"], steps=40, evals=(10,), images=(10,))
    record_run(client, running["id"], steps=1, status=None)
    for run in (queued, running):
        r = client.delete(f"/api/runs/{run['id']}")
        assert r.status_code == 409 and "cancel it first" in r.json()["detail"]
    assert client.delete(f"/api/runs/{done['id']}").status_code == 204
    assert client.get(f"/api/runs/{done['id']}").status_code == 404
    with client.app.state.engine.connect() as conn:
        for table in ("step_metrics", "metric_blocks", "evaluations", "reconstructions"):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE run_id=?", (done["id"],)).scalar() == 0
    assert client.get("/api/runs").json()["total"] == 2


def test_metrics_incremental_and_downsampled(client: TestClient) -> None:
    run = _post(client)
    record_run(client, run["id"], steps=5000, tr=True, spike={2222: 99.0, 4321: -5.0})
    full = client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 100000}).json()
    assert full["total"] == 5000 and len(full["points"]) == 5000 and not full["downsampled"]
    assert full["last_step"] == 5000 and full["points"][0]["radius"] == 0.1 and full["points"][0]["cg_exit"] == "boundary"
    small = client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 200}).json()
    steps = [p["step"] for p in small["points"]]
    assert small["downsampled"] and len(steps) <= 200 and steps == sorted(steps)
    assert {1, 5000, 2222, 4321} <= set(steps) and small["total"] == 5000
    newer = client.get(f"/api/runs/{run['id']}/metrics", params={"since_step": 4990}).json()
    assert [p["step"] for p in newer["points"]] == list(range(4991, 5001)) and newer["last_step"] == 5000
    assert client.get(f"/api/runs/{run['id']}/metrics", params={"since_step": 5000}).json()["points"] == []
    mid = client.get(f"/api/runs/{run['id']}/metrics", params={"since_step": 1000, "max_points": 50}).json()
    mid_steps = [p["step"] for p in mid["points"]]
    assert mid_steps[0] == 1001 and mid_steps[-1] == 5000 and {2222, 4321} <= set(mid_steps) and len(mid_steps) <= 50
    assert mid["total"] == 4000
    raw = client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 1000}).json()  # < max_points/4 blocks
    raw_steps = [p["step"] for p in raw["points"]]
    assert raw["downsampled"] and 900 < len(raw_steps) <= 1000 and {1, 5000, 2222, 4321} <= set(raw_steps)


def test_downsampled_metrics_keep_every_rejected_step(client: TestClient) -> None:
    run = _post(client)
    rejected = frozenset(range(37, 6000, 211))  # 29 rejections spread over a smooth loss curve
    record_run(client, run["id"], steps=6000, tr=True, rejected=rejected)
    for max_points in (200, 1000):
        page = client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": max_points}).json()
        steps = [p["step"] for p in page["points"]]
        assert page["downsampled"] and len(steps) <= max_points and steps == sorted(set(steps))
        assert rejected <= set(steps)
        assert all(p["accepted"] is (p["step"] not in rejected) for p in page["points"])
    # More rejections than a quarter of the points: capped, evenly spread, still within max_points.
    page = client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 40}).json()
    kept = [p["step"] for p in page["points"] if not p["accepted"]]
    assert len(page["points"]) <= 40 and len(kept) == 10 and kept[0] == 37 and kept[-1] == max(rejected)


def test_metrics_of_a_run_still_writing(client: TestClient) -> None:
    run = _post(client)
    record_run(client, run["id"], steps=3000, status=None, spike={2990: 42.0})  # open block not rolled up yet
    page = client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 100}).json()
    steps = [p["step"] for p in page["points"]]
    assert page["total"] == 3000 and steps[0] == 1 and steps[-1] == 3000 and 2990 in steps and len(steps) <= 100


def test_metrics_of_a_run_without_points(client: TestClient) -> None:
    run = _post(client)
    assert client.get(f"/api/runs/{run['id']}/metrics").json() == {"points": [], "last_step": None, "total": 0,
                                                                    "downsampled": False}


def test_evals(client: TestClient) -> None:
    run = _post(client)
    record_run(client, run["id"], steps=30, evals=(10, 20, 30))
    points = client.get(f"/api/runs/{run['id']}/evals").json()["points"]
    assert [p["step"] for p in points] == [10, 20, 30] and points[0]["test_accuracy"] == 0.4
    assert [p["step"] for p in client.get(f"/api/runs/{run['id']}/evals?since_step=10").json()["points"]] == [20, 30]


def test_reconstructions(client: TestClient) -> None:
    run = _post(client)
    record_run(client, run["id"], steps=20, evals=(10, 20), images=(10, 20))
    rid = run["id"]
    assert client.get(f"/api/runs/{rid}/reconstructions").json() == {"steps": [10, 20], "backprops": [20, 40],
                                                                     "has_original": True}
    latest = client.get(f"/api/runs/{rid}/reconstructions/latest.png")
    assert latest.status_code == 200 and latest.headers["content-type"] == "image/png"
    assert latest.content == b"\x89PNG step 20"
    assert client.get(f"/api/runs/{rid}/reconstructions/10.png").content == b"\x89PNG step 10"
    assert client.get(f"/api/runs/{rid}/reconstructions/original.png").content == b"\x89PNG original"
    missing = client.get(f"/api/runs/{rid}/reconstructions/15.png")
    assert missing.status_code == 404 and "no reconstruction at step 15" in missing.json()["detail"]
    other = _post(client)
    r = client.get(f"/api/runs/{other['id']}/reconstructions/latest.png")
    assert r.status_code == 404 and "only autoencoder runs have images" in r.json()["detail"]


def test_export(client: TestClient) -> None:
    run = _post(client)
    record_run(client, run["id"], steps=12, evals=(6, 12), tr=True)
    r = client.get(f"/api/runs/{run['id']}/export?format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 12 and rows[0]["step"] == "1" and rows[0]["rho"] == "0.9"
    evals = list(csv.DictReader(io.StringIO(client.get(f"/api/runs/{run['id']}/export?format=csv&table=evals").text)))
    assert [e["step"] for e in evals] == ["6", "12"]
    doc = client.get(f"/api/runs/{run['id']}/export", params={"format": "json"}).json()
    assert doc["run"]["id"] == run["id"] and len(doc["metrics"]) == 12 and len(doc["evaluations"]) == 2


def test_unknown_ids_are_404_everywhere(client: TestClient) -> None:
    routes = [("GET", "/api/runs/{}"), ("POST", "/api/runs/{}/cancel"), ("DELETE", "/api/runs/{}"),
              ("GET", "/api/runs/{}/metrics"), ("GET", "/api/runs/{}/evals"), ("GET", "/api/runs/{}/reconstructions"),
              ("GET", "/api/runs/{}/reconstructions/latest.png"), ("GET", "/api/runs/{}/reconstructions/3.png"),
              ("GET", "/api/runs/{}/reconstructions/original.png"), ("GET", "/api/runs/{}/export")]
    for method, path in routes:
        r = client.request(method, path.format(4242))
        assert r.status_code == 404 and r.json()["detail"].startswith("run 4242 not found"), (method, path)
    for method in ("GET", "DELETE"):
        r = client.request(method, "/api/comparisons/77")
        assert r.status_code == 404 and r.json()["detail"].startswith("comparison 77 not found")


def test_ids_are_never_reused(client: TestClient) -> None:
    first = _post(client)
    client.post(f"/api/runs/{first['id']}/cancel")
    assert client.delete(f"/api/runs/{first['id']}").status_code == 204
    assert _post(client)["id"] == first["id"] + 1
