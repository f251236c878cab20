"""Fixtures: an API on a temporary SQLite store (TestClient), with or without the job scheduler."""
from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import update

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
from fastapi.testclient import TestClient  # noqa: E402

from backend.main import create_app
from backend.settings import Settings
from backend.tables import Run
from backend.runner.worker import StoreReporter, finish_run

FAKE_TRAINER = "tests.backend.fake_trainer:run"

MLP_RUN: dict[str, Any] = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"},
                           "budget": {"backprops": 50}, "train_subset": 512, "eval_every": 10}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"var_dir": tmp_path / "var", "database_url": f"sqlite:///{tmp_path / 'var' / 't.db'}",
                              "data_dir": tmp_path / "data", "scheduler": False, "gpus": "",
                              "max_concurrent_runs": 2, "poll_interval": 0.1, "cancel_grace_seconds": 3.0,
                              "flush_seconds": 0.1, "trainer": FAKE_TRAINER, "warm_workers": 1, "warm_datasets": "",
                              "allowed_hosts": "testserver"}  # TestClient's Host header
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """API without the job runner: runs stay queued unless a test moves them along."""
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def live_client(tmp_path: Path) -> Iterator[TestClient]:
    """API with the job runner and the fake trainer in real worker processes."""
    with TestClient(create_app(make_settings(tmp_path, scheduler=True))) as c:
        yield c


# Waits are ceilings, not expectations: a poll returns as soon as its condition holds, so a generous ceiling costs
# nothing on a quiet machine and keeps a loaded one (load average ~20 once failed 30 s waits) from failing by
# timing alone. ``timeout`` is what a quiet machine needs; the ceiling is WAIT_SCALE times that.
WAIT_SCALE = float(os.environ.get("TRUSTLAB_TEST_WAIT_SCALE", "10"))


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` x ``WAIT_SCALE`` seconds."""
    ceiling = timeout * WAIT_SCALE
    deadline = time.monotonic() + ceiling
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {ceiling:g} s")
        time.sleep(interval)


def wait_status(client: TestClient, run_id: int, statuses: tuple[str, ...], timeout: float = 20.0) -> dict:
    def done() -> dict | None:
        run = client.get(f"/api/runs/{run_id}").json()
        return run if run["status"] in statuses else None

    return wait_for(done, timeout)


def record_run(client: TestClient, run_id: int, *, steps: int = 0, evals: tuple[int, ...] = (),
               images: tuple[int, ...] = (), status: str | None = "completed", tr: bool = False,
               spike: dict[int, float] | None = None, rejected: frozenset[int] = frozenset()) -> None:
    """Write records for a queued run as a worker would (StoreReporter), then give it a final status."""
    engine = client.app.state.engine
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(status="running"))
    rep = StoreReporter(engine, run_id, threading.Event(), flush_seconds=60, flush_records=1000)
    rep.on_start({"device": "cpu"})
    if images:
        rep.on_images(0, "original", b"\x89PNG original")
    for step in range(1, steps + 1):
        loss = (spike or {}).get(step, 1.0 + 1.0 / step)
        extra = {"radius": 0.1, "new_radius": 0.11, "rho": 0.9, "cg_iterations": 3, "cg_exit": "boundary",
                 "accepted": step not in rejected, "pred_decrease": 0.01, "actual_decrease": 0.009, "step_norm_m": 0.1} if tr else {}
        rep.on_step({"step": step, "backprops": 2 * step, "gradients": step, "hvps": step, "forwards": 0,
                     "epoch": step / 10, "wall_time": step * 0.01, "train_loss": loss, "grad_norm": 1.0,
                     "step_norm": 0.1, **extra})
        if step in evals:
            rep.on_eval({"step": step, "backprops": 2 * step, "epoch": step / 10, "wall_time": step * 0.01,
                         "train_loss": loss, "test_loss": loss + 0.1, "train_accuracy": 0.5, "test_accuracy": 0.4})
        if step in images:
            rep.on_images(step, "reconstruction", b"\x89PNG step %d" % step)
    rep.flush()
    if status is not None:
        rep.finish_records()
        finish_run(engine, run_id, status, None if status == "completed" else f"{status} for the test",
                   {"status": status, "steps": steps})
