"""The local executor's warm pool (the zygote switched off; it is tested in test_zygote.py): runs go to pre-started workers, one process per run, the pool refills,
a worker dying idle is replaced (and the pool switches itself off after repeated deaths), cold start without it."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.main import create_app
from backend.runner import worker
from backend.runner.local import LocalExecutor
from backend.settings import Settings
from backend.tables import Run
from tests.backend.conftest import MLP_RUN, make_settings, wait_for, wait_status

FINAL = ("completed", "diverged", "failed", "cancelled", "interrupted")


def _executor(client: TestClient) -> LocalExecutor:
    return client.app.state.scheduler.executor


def _pid(client: TestClient, run_id: int) -> int:
    with client.app.state.engine.connect() as conn:
        return conn.execute(select(Run.pid).where(Run.id == run_id)).scalar()


def test_runs_use_warm_workers_one_process_each_and_the_pool_refills(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, scheduler=True, zygote=False, warm_workers=1))) as client:
        executor = _executor(client)
        wait_for(lambda: len(executor.warm) == 1)
        warm_pid = executor.warm[0].proc.pid
        first = client.post("/api/runs", json=MLP_RUN).json()["id"]
        assert wait_status(client, first, FINAL)["status"] == "completed"
        assert _pid(client, first) == warm_pid and executor.warm_starts == 1 and executor.cold_starts == 0
        wait_for(lambda: executor.warm and executor.warm[0].proc.pid != warm_pid)  # refilled with a new process
        second = client.post("/api/runs", json={**MLP_RUN, "seed": 1}).json()["id"]
        assert wait_status(client, second, FINAL)["status"] == "completed"
        assert _pid(client, second) not in (warm_pid, None) and executor.warm_starts == 2
        assert (Path(client.app.state.settings.log_dir) / f"run-{second}.log").exists()


def test_crash_in_a_warm_worker_fails_that_run_only(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, scheduler=True, zygote=False, warm_workers=1))) as client:
        wait_for(lambda: len(_executor(client).warm) == 1)
        crash = client.post("/api/runs", json={**MLP_RUN, "seed": 668}).json()["id"]
        run = wait_status(client, crash, FINAL)
        assert run["status"] == "failed" and "exited with code 3" in run["error"] and "boom" in run["error"]
        ok = client.post("/api/runs", json=MLP_RUN).json()["id"]
        assert wait_status(client, ok, FINAL)["status"] == "completed"


def test_worker_dying_idle_is_replaced_and_repeated_deaths_switch_the_pool_off(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, scheduler=True, zygote=False, warm_workers=1))) as client:
        executor = _executor(client)
        for _ in range(3):
            wait_for(lambda: executor.warm and executor.warm[0].proc.poll() is None)
            victim = executor.warm[0].proc
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            wait_for(lambda: not executor.warm or executor.warm[0].proc is not victim)  # noqa: B023 - waited on here
        time.sleep(0.5)
        assert executor.warm == [] and executor._warm_targets() == {}  # off after 3 idle deaths
        run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
        assert wait_status(client, run_id, FINAL)["status"] == "completed" and executor.cold_starts == 1


def test_no_warm_workers_means_cold_starts(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, scheduler=True, zygote=False, warm_workers=0))) as client:
        executor = _executor(client)
        run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
        assert wait_status(client, run_id, FINAL)["status"] == "completed"
        assert executor.warm == [] and executor.cold_starts == 1 and executor.warm_starts == 0


def test_shutdown_stops_idle_warm_workers(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, scheduler=True, zygote=False, warm_workers=2))) as client:
        executor = _executor(client)
        wait_for(lambda: len(executor.warm) == 2)
        procs = [w.proc for w in executor.warm]
    assert all(p.poll() is not None for p in procs)


@pytest.mark.slow
def test_preload_decodes_datasets_and_warms_the_trainer(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, warm_datasets="fashion-mnist,cifar10", data_dir=tmp_path / "data")
    from trainer.data import dataset_available

    expected = [n for n in ("fashion-mnist", "cifar10") if dataset_available(n, settings.data_dir)]
    before = len(worker._PRELOADED)
    assert worker.preload(settings) == expected
    assert len(worker._PRELOADED) - before == len(expected)
    assert worker.preload(Settings(var_dir=tmp_path, warm_datasets="")) == []
