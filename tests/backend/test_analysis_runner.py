"""The analysis job runner: a worker that dies is reaped as failed with its exit reason; stale jobs are recovered."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert, select, update

from backend.analyses.runner import AnalysisRunner
from backend.db import make_engine, migrate
from backend.tables import Analysis, Run
from tests.backend.conftest import make_settings, wait_for


def _store(tmp_path: Path):
    settings = make_settings(tmp_path, scheduler=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(Run).values(id=1, status="completed", config={}, optimizer="sgd", label="x", seed=0))
        conn.execute(insert(Analysis).values(id=1, run_id=1, kind="hessian", status="running", params={}))
        conn.execute(insert(Analysis).values(id=2, run_id=1, kind="hessian", status="queued",
                                             params={"checkpoint_steps": [0]}))
    return settings, engine


def _status(engine, analysis_id: int):
    with engine.connect() as conn:
        return conn.execute(select(Analysis.status, Analysis.error).where(Analysis.id == analysis_id)).first()


def test_dead_worker_is_reaped_as_failed_and_stale_jobs_recovered(tmp_path: Path) -> None:
    settings, engine = _store(tmp_path)
    script = tmp_path / "dies.sh"
    script.write_text("#!/bin/sh\necho 'worker started and crashed' >&2\nexit 3\n")
    script.chmod(0o755)
    runner = AnalysisRunner(settings, engine, python=str(script), poll_interval=0.05)
    runner.start()  # recovers analysis 1 (left running by an earlier API), then starts analysis 2
    try:
        status, error = _status(engine, 1)
        assert status == "failed" and error.startswith("interrupted")
        wait_for(lambda: _status(engine, 2).status == "failed", timeout=20)
        error = _status(engine, 2).error
        assert "exited with code 3" in error and "worker started and crashed" in error  # reason + log tail
    finally:
        runner.stop()
    engine.dispose()


def test_stop_fails_the_running_job(tmp_path: Path) -> None:
    settings, engine = _store(tmp_path)
    with engine.begin() as conn:
        conn.execute(update(Analysis).where(Analysis.id == 1).values(status="completed"))
    script = tmp_path / "sleeps.sh"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    runner = AnalysisRunner(settings, engine, python=str(script), poll_interval=0.05)
    runner.start()
    wait_for(lambda: runner.jobs, timeout=10)
    runner.stop(grace=2)
    status, error = _status(engine, 2)
    assert status == "failed" and "API shut down" in error
    assert not runner.jobs
    engine.dispose()
