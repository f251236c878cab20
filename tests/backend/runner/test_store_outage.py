"""A store outage on a real throwaway PostgreSQL (stopped with ``pg_ctl stop -m fast``, then started again) while
real worker processes of the local executor train: no point and no step lost, 503 + Retry-After on the API
meanwhile, and past TRUSTLAB_STORE_OUTAGE_SECONDS a run that ends "failed" with the reason once the store is back."""
from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.main import create_app
from backend.runner.worker import log_path
from backend.tables import StepMetric
from bench.postgres import PostgresCluster, PostgresUnavailable, create_database, throwaway_cluster
from tests.backend.conftest import make_settings, wait_for, wait_status
from tests.backend.runner.helpers import post_run

pytestmark = pytest.mark.slow

FINAL = ("completed", "diverged", "failed", "cancelled", "interrupted")
OUTAGE_S = 10.0  # the outage ridden out here (the figure for the closing note comes from scripts/store_outage.py)
# A tiny real run (Fashion-MNIST MLP on 512 samples) that trains for a while: the outage falls inside it.
TINY = {"optimizer": {"name": "sgd"}, "batch_size": 32, "train_subset": 512, "test_subset": 256,
        "eval_train_size": 256, "eval_every": 2000}


def _port() -> int | None:
    """A free port within PG_PORT_RANGE ("32000-32099") when set (parallel test runs keep to their ranges)."""
    lo, _, hi = os.environ.get("PG_PORT_RANGE", "").partition("-")
    if not lo:
        return None
    for port in range(int(lo), int(hi or lo) + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in PG_PORT_RANGE={os.environ['PG_PORT_RANGE']}")


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster per test (it is stopped and started by the test)."""
    try:
        with throwaway_cluster(_port()) as c:
            yield c
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


def _api(tmp_path: Path, url: str, **overrides: Any) -> TestClient:
    from trainer.data import dataset_available

    if not dataset_available("fashion-mnist", tmp_path / "data"):
        pytest.skip("Fashion-MNIST is not on this machine (apt dataset-fashion-mnist or data/)")
    settings = make_settings(tmp_path, database_url=url, scheduler=True, trainer="trainer:run",
                             warm_datasets="fashion-mnist", max_concurrent_runs=1, torch_threads=1,
                             store_retry_max_seconds=0.5, **overrides)
    return TestClient(create_app(settings))


def _steps(client: TestClient, run_id: int) -> tuple[int, int, int]:
    """(count, min, max) of the run's stored steps."""
    with client.app.state.engine.connect() as conn:
        row = conn.execute(select(func.count(), func.min(StepMetric.step), func.max(StepMetric.step))
                           .where(StepMetric.run_id == run_id)).one()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


def _log(client: TestClient, run_id: int) -> str:
    path = log_path(client.app.state.settings, run_id)
    return path.read_text(errors="replace") if path.exists() else ""


def _answers_503(client: TestClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    r = client.request(method, path, **kwargs)
    assert r.status_code == 503, (path, r.status_code, r.text)
    assert int(r.headers["Retry-After"]) >= 1 and "store" in r.json()["detail"], r.text
    return r.json()


def test_a_run_rides_out_a_postgres_outage_losing_no_point_and_no_step(cluster: PostgresCluster,
                                                                       tmp_path: Path) -> None:
    url = create_database(cluster.url, "outage")
    with _api(tmp_path, url) as client:
        run_id = post_run(client, **TINY, budget={"seconds": OUTAGE_S + 15})
        wait_for(lambda: _steps(client, run_id)[0] >= 10, timeout=120)
        before = _steps(client, run_id)[2]
        cluster.stop("fast")
        try:
            wait_for(lambda: "store unreachable while" in _log(client, run_id), timeout=30)
            detail = _answers_503(client, "GET", "/api/runs")["detail"]
            assert "refuses connections" in detail or "OperationalError" in detail, detail
            _answers_503(client, "GET", f"/api/runs/{run_id}")
            _answers_503(client, "GET", f"/api/runs/{run_id}/metrics")
            _answers_503(client, "GET", f"/api/runs/{run_id}/metrics", params={"format": "columns"})
            _answers_503(client, "POST", "/api/metrics/batch", json={"runs": [{"id": run_id}]})
            _answers_503(client, "GET", f"/api/runs/{run_id}/export")
            assert client.get("/api/health").status_code == 503
            time.sleep(OUTAGE_S)  # the outage itself (not an assertion on time)
        finally:
            cluster.start()
        run = wait_status(client, run_id, FINAL, timeout=120)
        assert run["status"] == "completed" and run["error"] is None, run
        count, first, last = _steps(client, run_id)
        assert (count, first, last) == (run["last_step"], 1, run["last_step"]), (count, first, last, run)
        assert run["summary"]["steps"] == last  # every step the trainer took is stored, in order, no gap
        log = _log(client, run_id)
        written = [int(n) for n in re.findall(r"wrote (\d+) buffered step", log)]
        assert written and sum(written) > 0 and last > before, log  # training went on while the store was down
        assert client.get("/api/runs").status_code == 200 and client.get(f"/api/runs/{run_id}/metrics").json()[
            "total"] == last
        wait_for(lambda: client.app.state.scheduler.jobs == {}, timeout=30)  # the exit was stored and forgotten
        print(f"outage figures: {sum(written)} steps buffered and written after the outage; {last} steps trained, "
              f"{count} stored, {last - count} lost; log: {re.findall(r'store reachable again after [0-9.]+ s', log)}")


def test_an_outage_past_the_bound_fails_the_run_with_the_reason_once_the_store_returns(
        cluster: PostgresCluster, tmp_path: Path) -> None:
    url = create_database(cluster.url, "bound")
    with _api(tmp_path, url, store_outage_seconds=2) as client:
        run_id = post_run(client, **TINY, budget={"seconds": 120})
        wait_for(lambda: _steps(client, run_id)[0] >= 10, timeout=120)
        cluster.stop("fast")
        try:
            # The worker stops training past the bound, retries its last writes as long again, then exits; the
            # scheduler keeps the exit until it can store the outcome.
            wait_for(lambda: "exiting with code 75" in _log(client, run_id), timeout=60)
            executor = client.app.state.scheduler.executor
            wait_for(lambda: run_id in executor._exits, timeout=30)  # the scheduler saw the exit
            assert run_id in client.app.state.scheduler.jobs  # still held: its outcome is not stored yet
            _answers_503(client, "GET", f"/api/runs/{run_id}")
        finally:
            cluster.start()
        run = wait_status(client, run_id, FINAL, timeout=60)
        assert run["status"] == "failed" and "store unreachable for" in run["error"], run
        assert "code 75" in run["error"] and "limit 2 s" in run["error"], run["error"]
        count, first, last = _steps(client, run_id)
        assert count == last and first == 1  # what was stored before the outage is all there, no gap
        wait_for(lambda: client.app.state.scheduler.jobs == {}, timeout=10)
