"""The job runner with real worker processes (fake trainer): limits, cancel, crashes, kill -9, restarts, GPUs."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.db import make_engine, migrate
from backend.runner.devices import SlotPlan
from backend.main import create_app
from backend.runner.scheduler import Scheduler
from backend.tables import Run
from tests.backend.conftest import MLP_RUN, make_settings, wait_for, wait_status

FINAL = ("completed", "diverged", "failed", "cancelled", "interrupted")
LONG = {**MLP_RUN, "budget": {"seconds": 60}}


def _post(client: TestClient, **changes) -> int:
    r = client.post("/api/runs", json={**MLP_RUN, **changes})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _pid(client: TestClient, run_id: int) -> int:
    with client.app.state.engine.connect() as conn:
        return conn.execute(select(Run.pid).where(Run.id == run_id)).scalar()


def _points(client: TestClient, run_id: int) -> int:
    return client.get(f"/api/runs/{run_id}/metrics").json()["total"]


def test_runs_complete_within_the_concurrency_limit(live_client: TestClient) -> None:
    ids = [_post(live_client, seed=i) for i in range(3)] + [_post(live_client, **LONG)]
    for run_id in ids[:3]:
        run = wait_status(live_client, run_id, FINAL)
        assert run["status"] == "completed" and run["last_step"] == 50, run
    wait_status(live_client, ids[3], ("running",))
    running = live_client.get("/api/runs?status=running").json()["total"]
    assert running <= 2  # max_concurrent_runs=2
    live_client.post(f"/api/runs/{ids[3]}/cancel")
    wait_status(live_client, ids[3], FINAL)


def test_limit_of_one_keeps_the_second_run_queued(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, scheduler=True, max_concurrent_runs=1))) as client:
        first, second = _post(client, **LONG), _post(client)
        wait_status(client, first, ("running",))
        assert client.get(f"/api/runs/{second}").json()["status"] == "queued"
        client.post(f"/api/runs/{first}/cancel")
        assert wait_status(client, second, FINAL)["status"] == "completed"


def test_cancel_a_running_run_keeps_its_data(live_client: TestClient) -> None:
    run_id = _post(live_client, **LONG)
    wait_for(lambda: _points(live_client, run_id) >= 5)
    assert live_client.post(f"/api/runs/{run_id}/cancel").json()["status"] == "running"
    run = wait_status(live_client, run_id, FINAL, timeout=10)
    assert run["status"] == "cancelled" and run["error"].startswith("cancelled on request at step")
    assert run["finished_at"] and _points(live_client, run_id) >= 5
    assert live_client.delete(f"/api/runs/{run_id}").status_code == 204


def test_worker_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, scheduler=True, cancel_grace_seconds=0.5))) as client:
        run_id = _post(client, **{**LONG, "seed": 669})
        wait_for(lambda: _points(client, run_id) >= 3)
        client.post(f"/api/runs/{run_id}/cancel")
        run = wait_status(client, run_id, FINAL, timeout=10)
        assert run["status"] == "cancelled" and "SIGKILL" in run["error"] and "grace period" in run["error"]


def test_killed_worker_is_failed_with_the_reason(live_client: TestClient) -> None:
    run_id = _post(live_client, **LONG)
    wait_for(lambda: _points(live_client, run_id) >= 3)
    os.kill(_pid(live_client, run_id), signal.SIGKILL)
    run = wait_status(live_client, run_id, FINAL, timeout=10)
    assert run["status"] == "failed" and "killed by signal 9 (SIGKILL)" in run["error"]
    assert _points(live_client, run_id) >= 3


def test_crashed_worker_is_failed_with_its_stderr(live_client: TestClient) -> None:
    run_id = _post(live_client, seed=668)
    run = wait_status(live_client, run_id, FINAL)
    assert run["status"] == "failed" and "exited with code 3" in run["error"]
    assert "boom: simulated crash" in run["error"]


def test_diverged_run(live_client: TestClient) -> None:
    run = wait_status(live_client, _post(live_client, seed=666), FINAL)
    assert run["status"] == "diverged" and "step 3" in run["error"]


def test_restart_marks_running_runs_interrupted_and_starts_queued(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, scheduler=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    with TestClient(create_app(make_settings(tmp_path))) as client:  # no scheduler: leave runs as they are
        stale, queued = _post(client), _post(client)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE runs SET status='running', pid=1 WHERE id=?", (stale,))
    with TestClient(create_app(settings)) as client:
        run = client.get(f"/api/runs/{stale}").json()
        assert run["status"] == "interrupted" and "data logged so far is kept" in run["error"]
        assert wait_status(client, queued, FINAL)["status"] == "completed"


def test_shutdown_interrupts_running_runs(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, scheduler=True))) as client:
        run_id = _post(client, **LONG)
        wait_for(lambda: _points(client, run_id) >= 3)
    with TestClient(create_app(make_settings(tmp_path))) as client:
        run = client.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "interrupted" and "API shut down" in run["error"] and _points(client, run_id) >= 3


def test_gpu_runs_are_pinned(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        run_id = _post(client, seed=670, device="cuda:1")
        scheduler = Scheduler(settings, client.app.state.engine,
                              plan=SlotPlan(gpus=("4", "7"), slots=("4", "7"), torch_threads=3))
        try:
            scheduler.tick()
            assert scheduler.jobs[run_id].slot == 1  # cuda:1 → the second visible GPU
            wait_for(lambda: scheduler.tick() or client.get(f"/api/runs/{run_id}").json()["status"] in FINAL)
        finally:
            scheduler.stop()  # and its warm workers
        env = client.get(f"/api/runs/{run_id}").json()["summary"]["env"]
        assert env == {"CUDA_VISIBLE_DEVICES": "7", "OMP_NUM_THREADS": "3", "device": "cuda"}
