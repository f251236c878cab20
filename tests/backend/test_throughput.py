"""GET /api/throughput: this server's measured speed per setting, from completed runs only."""
from __future__ import annotations

import pytest

from backend import throughput
from tests.backend.conftest import record_run

RUN = {"dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 20}, "optimizer": {"name": "adam"}}


@pytest.fixture(autouse=True)
def _fresh_cache():
    throughput.clear_cache()
    yield
    throughput.clear_cache()


def test_seconds_per_backprop_and_sample_from_completed_runs(client):
    ids = [client.post("/api/runs", json={**RUN, "seed": s}).json()["id"] for s in (0, 1)]
    failed = client.post("/api/runs", json={**RUN, "seed": 2, "optimizer": {"name": "sgd"}}).json()["id"]
    for i in ids:
        record_run(client, i, steps=10)  # 20 backprops in 0.1 s, epoch 1.0
    record_run(client, failed, steps=10, status="failed")
    body = client.get("/api/throughput").json()
    assert body["runs_used"] == 2
    item, = body["items"]
    assert (item["dataset"], item["model"], item["optimizer"], item["runs"]) == ("fashion-mnist", "mlp", "adam", 2)
    assert item["seconds_per_backprop"] == pytest.approx(0.1 / 20)
    assert item["seconds_per_sample"] == pytest.approx(0.1 / 60000)
    assert item["batch_size"] == client.get(f"/api/runs/{ids[0]}").json()["config"]["batch_size"]


def test_empty_store_and_the_cache(client):
    assert client.get("/api/throughput").json()["items"] == []
    rid = client.post("/api/runs", json=RUN).json()["id"]
    record_run(client, rid, steps=10)
    assert client.get("/api/throughput").json()["items"] == []  # cached for TTL_SECONDS
    throughput.clear_cache()
    assert len(client.get("/api/throughput").json()["items"]) == 1
