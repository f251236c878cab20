"""The run lifecycle through each executor (parametrised): complete, cancel queued, cancel running, grace then
force, worker killed, API restarted. Real worker processes with the fake trainer; the Ray variant runs on a
real local Ray cluster (loopback, token auth, 2 CPUs) with a throwaway PostgreSQL store."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from bench.ray_cluster import LocalRayCluster, ray_available
from tests.backend.conftest import MLP_RUN, make_settings, wait_for, wait_status
from tests.backend.runner.helpers import points as _points, post_run as _post, worker_pid as _pid
from tests.backend.test_postgres import pg_url, postgres  # noqa: F401 - fixtures

FINAL = ("completed", "diverged", "failed", "cancelled", "interrupted")
LONG = {**MLP_RUN, "budget": {"seconds": 60}}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalRayCluster]:
    if not ray_available():
        pytest.skip("Ray is not installed (optional extra): pip install -r requirements-ray.txt")
    with LocalRayCluster() as cluster:
        yield cluster


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.slow)])
def make_api(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., TestClient]:
    """``make_api(**settings)`` → a TestClient factory for an API with the job runner on this executor."""
    kind = request.param
    extra: dict[str, Any] = {}
    if kind == "ray":
        cluster = request.getfixturevalue("ray_cluster")
        url = request.getfixturevalue("pg_url")
        extra = {"executor": "ray", "database_url": url, "ray_address": cluster.address,
                 "ray_node_ip": cluster.head_ip, "ray_namespace": url.rsplit("/", 1)[-1]}  # one per store

    def factory(**overrides: Any) -> TestClient:
        return TestClient(create_app(make_settings(tmp_path, scheduler=True, **{**extra, **overrides})))

    factory.kind = kind  # type: ignore[attr-defined]
    return factory


def test_run_completes(make_api: Callable[..., TestClient]) -> None:
    with make_api() as client:
        run = wait_status(client, _post(client), FINAL, timeout=60)
        assert run["status"] == "completed" and run["last_step"] == 50 and run["error"] is None, run


def test_cancel_queued_run(make_api: Callable[..., TestClient]) -> None:
    with make_api(max_concurrent_runs=1) as client:
        first, second = _post(client, **LONG), _post(client)
        wait_status(client, first, ("running",), timeout=60)
        assert client.get(f"/api/runs/{second}").json()["status"] == "queued"
        run = client.post(f"/api/runs/{second}/cancel").json()
        assert run["status"] == "cancelled" and run["error"] == "cancelled before it started"
        client.post(f"/api/runs/{first}/cancel")
        assert wait_status(client, first, FINAL, timeout=60)["status"] == "cancelled"
        assert _points(client, second) == 0


def test_cancel_running_run_keeps_its_data(make_api: Callable[..., TestClient]) -> None:
    with make_api() as client:
        run_id = _post(client, **LONG)
        wait_for(lambda: _points(client, run_id) >= 5, timeout=60)
        assert client.post(f"/api/runs/{run_id}/cancel").json()["status"] == "running"
        run = wait_status(client, run_id, FINAL, timeout=30)
        assert run["status"] == "cancelled" and run["error"].startswith("cancelled on request at step"), run
        assert _points(client, run_id) >= 5


def test_run_ignoring_stop_is_forced_after_the_grace_period(make_api: Callable[..., TestClient]) -> None:
    with make_api(cancel_grace_seconds=0.5) as client:
        run_id = _post(client, **{**LONG, "seed": 669})
        wait_for(lambda: _points(client, run_id) >= 3, timeout=60)
        client.post(f"/api/runs/{run_id}/cancel")
        run = wait_status(client, run_id, FINAL, timeout=30)
        assert run["status"] == "cancelled" and "after the grace period" in run["error"], run


def test_killed_worker_fails_the_run_with_the_reason(make_api: Callable[..., TestClient]) -> None:
    with make_api() as client:
        run_id = _post(client, **LONG)
        wait_for(lambda: _points(client, run_id) >= 3, timeout=60)
        os.kill(_pid(client, run_id), signal.SIGKILL)
        run = wait_status(client, run_id, FINAL, timeout=30)
        expected = {"local": "killed by signal 9 (SIGKILL)", "ray": "Ray actor died"}[make_api.kind]
        assert run["status"] == "failed" and expected in run["error"], run
        assert _points(client, run_id) >= 3


def test_api_restart(make_api: Callable[..., TestClient]) -> None:
    """Local: the API's workers stop with it (interrupted, data kept). Ray: the run keeps training on the
    cluster and the next API process re-attaches to it (it can still be cancelled)."""
    with make_api() as client:
        run_id = _post(client, **LONG)
        wait_for(lambda: _points(client, run_id) >= 3, timeout=60)
    with make_api() as client:
        run = client.get(f"/api/runs/{run_id}").json()
        if make_api.kind == "local":
            assert run["status"] == "interrupted" and "API shut down" in run["error"], run
            return
        assert run["status"] == "running", run
        before = _points(client, run_id)
        wait_for(lambda: _points(client, run_id) > before, timeout=30)  # still training
        client.post(f"/api/runs/{run_id}/cancel")
        run = wait_status(client, run_id, FINAL, timeout=30)
        assert run["status"] == "cancelled", run


def test_ray_refuses_sqlite(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TRUSTLAB_DATABASE_URL to a PostgreSQL server"):
        with TestClient(create_app(make_settings(tmp_path, scheduler=True, executor="ray"))):
            pass


@pytest.mark.slow
def test_ray_places_runs_on_a_second_node_and_fails_them_when_it_dies(tmp_path: Path, pg_url: str) -> None:  # noqa: F811 - the pytest fixture imported above
    """Two Ray nodes on this machine (127.0.0.2 head, 127.0.0.3 worker offering the custom resource
    ``trustlab_node2``); runs request that resource, so Ray must place them on the second node."""
    if not ray_available():
        pytest.skip("Ray is not installed (optional extra): pip install -r requirements-ray.txt")
    with LocalRayCluster(gcs_port=6391, head_ip="127.0.0.2", port_base=20400) as cluster:
        cluster.add_node("127.0.0.3", cpus=2, resources='{"trustlab_node2": 4}')
        settings = make_settings(tmp_path, scheduler=True, executor="ray", database_url=pg_url,
                                 ray_address=cluster.address, ray_node_ip=cluster.head_ip, ray_namespace="twonodes",
                                 ray_run_resources='{"trustlab_node2": 1}')
        with TestClient(create_app(settings)) as client:
            executor = client.app.state.scheduler.executor
            wait_for(lambda: len([n for n in executor.ray.nodes() if n["Alive"]]) == 2, timeout=90)
            done = _post(client)
            assert wait_status(client, done, FINAL, timeout=90)["status"] == "completed"
            wait_for(lambda: done in executor.placements, timeout=10)
            assert executor.placements[done] == "127.0.0.3"
            long = _post(client, **LONG)
            wait_for(lambda: _points(client, long) >= 3, timeout=60)
            cluster.kill_node(1)
            run = wait_status(client, long, FINAL, timeout=90)
            assert run["status"] == "failed" and "Ray actor died" in run["error"], run


def test_local_workers_need_no_pythonpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers are started with ``-m`` from the repository root (or find the installed packages): the executor
    injects no PYTHONPATH, and an API started in another directory still runs them to the end."""
    from types import SimpleNamespace

    from backend.runner.local import LocalExecutor

    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = make_settings(tmp_path, scheduler=True)
    env = LocalExecutor._environment(SimpleNamespace(plan=SimpleNamespace(torch_threads=1), settings=settings), None)
    assert "PYTHONPATH" not in env
    with TestClient(create_app(settings)) as client:
        run = wait_status(client, _post(client), FINAL, timeout=60)
        assert run["status"] == "completed" and run["error"] is None, run
