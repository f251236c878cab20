"""The worker: batched writes, final status mapping, value cleaning, and ``main`` with a fake trainer."""
from __future__ import annotations

import resource
import signal
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.runner import worker
from backend.settings import Settings
from backend.tables import Run
from backend.runner.lifecycle import outcome
from backend.runner.worker import StoreReporter, clean_json
from tests.backend.conftest import FAKE_TRAINER, MLP_RUN


def _queued(client: TestClient, **changes) -> int:
    return client.post("/api/runs", json={**MLP_RUN, **changes}).json()["id"]


def _count(client: TestClient, table: str, run_id: int) -> int:
    with client.app.state.engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE run_id=?", (run_id,)).scalar()


def _step(step: int, **extra) -> dict:
    return {"step": step, "backprops": step, "epoch": step / 10, "wall_time": 0.01 * step, "train_loss": 1.0,
            **extra}


def test_batches_by_count_and_by_time(client: TestClient) -> None:
    run_id = _queued(client)
    rep = StoreReporter(client.app.state.engine, run_id, threading.Event(), flush_seconds=0.2, flush_records=50)
    for s in range(1, 50):
        rep.on_step(_step(s))
    assert _count(client, "step_metrics", run_id) == 0  # still buffered
    rep.on_step(_step(50))
    assert _count(client, "step_metrics", run_id) == 50  # 50 records → one batch
    rep.on_step(_step(51))
    time.sleep(0.25)
    rep.on_step(_step(52))
    assert _count(client, "step_metrics", run_id) == 52  # 0.2 s passed → flushed
    assert client.get(f"/api/runs/{run_id}").json()["last_step"] == 52


def test_non_finite_values_are_stored_as_null(client: TestClient) -> None:
    run_id = _queued(client)
    rep = StoreReporter(client.app.state.engine, run_id, threading.Event())
    rep.on_step(_step(1, rho=float("inf"), grad_norm=float("nan"), train_loss=float("nan")))
    rep.finish_records()
    point = client.get(f"/api/runs/{run_id}/metrics").json()["points"][0]
    assert point["rho"] is None and point["grad_norm"] is None and point["train_loss"] is None
    assert clean_json({"a": [1.0, float("-inf")], "b": {"c": float("nan")}}) == {"a": [1.0, None], "b": {"c": None}}


@pytest.mark.parametrize("summary,cancel,orphaned,expected", [
    ({"status": "completed"}, False, False, ("completed", None)),
    ({"status": "diverged", "message": "training loss became nan at step 7"}, False, False,
     ("diverged", "training loss became nan at step 7")),
    ({"status": "failed", "message": "DatasetUnavailable: cifar10"}, False, False, ("failed", "DatasetUnavailable: cifar10")),
    ({"status": "stopped", "steps": 12}, True, False, ("cancelled", "cancelled on request at step 12")),
    ({"status": "stopped", "steps": 12}, False, False, ("interrupted", "interrupted at step 12: the API shut down")),
    ({"status": "stopped", "steps": 3}, False, True, ("interrupted", "interrupted at step 3: its API process went away")),
])
def test_final_status(summary: dict, cancel: bool, orphaned: bool, expected: tuple) -> None:
    assert outcome(summary, cancel_requested=cancel, orphaned=orphaned) == expected


def _run_main(monkeypatch: pytest.MonkeyPatch, settings: Settings, run_id: int) -> int:
    monkeypatch.setenv("TRUSTLAB_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("TRUSTLAB_TRAINER", FAKE_TRAINER)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    # the worker caps its own address space (RLIMIT_AS); in this test process that cap must not outlive the call,
    # or every later child (Chromium reserves far more address space than it uses) inherits it and crashes
    limit = resource.getrlimit(resource.RLIMIT_AS)
    try:
        return worker.main([str(run_id)])
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limit)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_main_trains_a_queued_run(client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _queued(client, budget={"backprops": 70})
    assert _run_main(monkeypatch, settings, run_id) == 0
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "completed" and run["progress"] == 1.0 and run["last_step"] == 70
    assert run["started_at"] and run["finished_at"] and run["device"] == "cpu" and run["summary"]["steps"] == 70
    assert _count(client, "step_metrics", run_id) == 70 and _count(client, "metric_blocks", run_id) == 3
    assert [e["step"] for e in client.get(f"/api/runs/{run_id}/evals").json()["points"]] == [0, 70]


@pytest.mark.parametrize("seed,status,error", [(666, "diverged", "nan at step 3"),
                                               (667, "failed", "simulated trainer failure")])
def test_main_reports_divergence_and_failure(client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                             seed: int, status: str, error: str) -> None:
    run_id = _queued(client, seed=seed)
    assert _run_main(monkeypatch, settings, run_id) == 0
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == status and error in run["error"]


def test_main_leaves_finished_runs_alone(client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _queued(client)
    client.post(f"/api/runs/{run_id}/cancel")
    assert _run_main(monkeypatch, settings, run_id) == 0
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "cancelled"
    assert _count(client, "step_metrics", run_id) == 0
    assert _run_main(monkeypatch, settings, 999) == 2
    assert worker.main(["x"]) == 2


def test_final_status_never_overwrites(client: TestClient) -> None:
    run_id = _queued(client)
    engine = client.app.state.engine
    assert not worker.finish_run(engine, run_id, "completed", None, None)  # still queued, not running
    with engine.connect() as conn:
        assert conn.execute(select(Run.status).where(Run.id == run_id)).scalar() == "queued"
