"""Shared helpers of the runner tests: start an MLP run, count its points, read its worker's pid."""
from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.tables import Run
from tests.backend.conftest import MLP_RUN


def post_run(client: TestClient, **changes: Any) -> int:
    r = client.post("/api/runs", json={**MLP_RUN, **changes})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def points(client: TestClient, run_id: int) -> int:
    return client.get(f"/api/runs/{run_id}/metrics").json()["total"]


def worker_pid(client: TestClient, run_id: int) -> int | None:
    with client.app.state.engine.connect() as conn:
        return conn.execute(select(Run.pid).where(Run.id == run_id)).scalar()
