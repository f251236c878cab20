"""Store faults without a server: the reporter keeps every record through failing writes and retries, a run past
the outage bound ends failed with the reason, the scheduler keeps an exit until its outcome is stored and
reconciles rows and jobs, and SQLite faults (full disk, read-only file) answer 503 + Retry-After on the routes."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import OperationalError

from backend.main import create_app
from backend.runner import lifecycle, scheduler as scheduler_module
from backend.runner.worker import StoreReporter, log_path
from backend.tables import Evaluation, Reconstruction, Run, StepMetric
from tests.backend.conftest import MLP_RUN, make_settings, wait_for, wait_status
from tests.backend.runner.helpers import post_run

FINAL = ("completed", "diverged", "failed", "cancelled", "interrupted")


def _down() -> OperationalError:
    return OperationalError("INSERT ...", {}, sqlite3.OperationalError("unable to open database file"))


class _Flaky:
    """An engine stand-in that fails like an unreachable store while ``down`` is set (or for ``fail_next``
    more calls), and is the real engine otherwise."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.down, self.fail_next, self.failures = engine, False, 0, 0

    def _check(self) -> None:
        if self.down or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            self.failures += 1
            raise _down()

    def begin(self) -> Any:
        self._check()
        return self.engine.begin()

    def connect(self) -> Any:
        self._check()
        return self.engine.connect()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def _running_run(client: TestClient) -> int:
    run_id = post_run(client)
    with client.app.state.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(status="running"))
    return run_id


def _step(step: int) -> dict[str, Any]:
    return {"step": step, "backprops": step, "gradients": step, "hvps": 0, "forwards": 0, "epoch": step / 100,
            "wall_time": step * 0.01, "train_loss": 1.0 / step, "grad_norm": 1.0, "step_norm": 0.1}


def _eval(step: int) -> dict[str, Any]:
    return {"step": step, "backprops": step, "epoch": step / 100, "wall_time": step * 0.01, "train_loss": 0.5,
            "test_loss": 0.6, "train_accuracy": 0.8, "test_accuracy": 0.7}


def _stored(engine: Engine, run_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        steps = list(conn.scalars(select(StepMetric.step).where(StepMetric.run_id == run_id).order_by(StepMetric.step)))
        evals = list(conn.scalars(select(Evaluation.step).where(Evaluation.run_id == run_id).order_by(Evaluation.step)))
        images = conn.scalar(select(func.count()).select_from(Reconstruction).where(Reconstruction.run_id == run_id))
        run = conn.execute(select(Run.status, Run.error, Run.last_step, Run.device).where(Run.id == run_id)).one()
    return {"steps": steps, "evals": evals, "images": images, "status": run.status, "error": run.error,
            "last_step": run.last_step, "device": run.device}


def test_the_reporter_keeps_every_record_through_an_outage_and_writes_them_when_it_ends(client: TestClient) -> None:
    """Before: flush() emptied its buffers before the transaction, so every record of a failed write was lost."""
    engine = client.app.state.engine
    run_id = _running_run(client)
    rep = StoreReporter(engine, run_id, threading.Event(), flush_seconds=0.0, flush_records=10,
                        outage_seconds=600, retry_max_seconds=0.001)
    flaky = rep.engine = _Flaky(engine)
    flaky.down = True  # down from the start: the run's info waits too
    rep.on_start({"device": "cpu"})
    for step in range(1, 301):
        flaky.down = step < 200
        rep.on_step(_step(step))
        if step in (50, 150, 250):
            rep.on_eval(_eval(step))
        if step == 120:
            rep.on_images(step, "reconstruction", b"\x89PNG 120")
        assert not rep.should_stop()
    rep.on_finish({"status": "completed", "steps": 300})
    stored = _stored(engine, run_id)
    assert flaky.failures > 10 and rep.outage.outages == 1
    assert stored["steps"] == list(range(1, 301)) and stored["evals"] == [50, 150, 250] and stored["images"] == 1
    assert (stored["status"], stored["error"], stored["last_step"], stored["device"]) == ("completed", None, 300, "cpu")


class _LostAnswer(_Flaky):
    """The next ``lose`` transactions commit, then fail as if the connection dropped before the answer."""

    lose = 0

    def begin(self) -> Any:
        if self.lose <= 0:
            return super().begin()
        self.lose -= 1
        outer = self.engine.begin()

        class _Committed:
            def __enter__(self) -> Any:
                return outer.__enter__()

            def __exit__(self, *exc: Any) -> None:
                outer.__exit__(*exc)
                if exc[0] is None:
                    raise _down()

        return _Committed()


def test_a_write_that_committed_but_seemed_to_fail_is_not_stored_twice(client: TestClient) -> None:
    engine = client.app.state.engine
    run_id = _running_run(client)
    rep = StoreReporter(engine, run_id, threading.Event(), flush_seconds=0.0, flush_records=40,
                        outage_seconds=600, retry_max_seconds=0.001)
    lost = rep.engine = _LostAnswer(engine)
    rep.on_start({"device": "cpu"})
    for step in range(1, 201):
        lost.lose = 1 if step in (40, 41, 120) else 0  # a batch, its retry, and another batch
        rep.on_step(_step(step))
    rep.on_finish({"status": "completed", "steps": 200})
    stored = _stored(engine, run_id)
    assert stored["steps"] == list(range(1, 201)) and stored["status"] == "completed", stored


def test_past_the_bound_the_run_stops_and_fails_with_the_reason_keeping_its_records(client: TestClient) -> None:
    engine = client.app.state.engine
    run_id = _running_run(client)
    rep = StoreReporter(engine, run_id, threading.Event(), flush_seconds=0.0, flush_records=5,
                        outage_seconds=0.01, retry_max_seconds=0.001)
    flaky = rep.engine = _Flaky(engine)
    rep.on_start({"device": "cpu"})
    rep.on_step(_step(1))
    flaky.down = True
    step = 1
    while not rep.should_stop():  # training goes on until the bound has passed
        step += 1
        rep.on_step(_step(step))
        assert step < 100_000
    assert rep.store_lost.startswith("store unreachable for") and "unable to open database file" in rep.store_lost
    flaky.down, flaky.fail_next = False, 3  # the store comes back after three more failed tries
    rep.on_finish({"status": "stopped", "steps": step})
    stored = _stored(engine, run_id)
    assert stored["status"] == "failed" and stored["error"].startswith("store unreachable for"), stored
    assert f"training stopped at step {step}" in stored["error"] and stored["steps"] == list(range(1, step + 1))


def test_a_memory_cap_bounds_the_buffer(client: TestClient) -> None:
    engine = client.app.state.engine
    run_id = _running_run(client)
    rep = StoreReporter(engine, run_id, threading.Event(), flush_seconds=0.0, flush_records=10,
                        outage_seconds=600, buffer_mb=0.05, retry_max_seconds=0.001)
    rep.engine = _Flaky(engine)
    rep.engine.down = True
    step = 0
    while not rep.should_stop():
        step += 1
        rep.on_step(_step(step))
        assert step < 10_000
    assert "memory cap" in rep.store_lost and rep.buffered_bytes() > 0.05 * 2**20
    assert step > 10  # it buffered a while first


def _api(tmp_path: Path, **overrides: Any) -> TestClient:
    return TestClient(create_app(make_settings(tmp_path, scheduler=True, **overrides)))


def test_an_exit_is_kept_until_its_outcome_is_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the executor forgot the job in poll(), exit_outcome raised (store down) and the run stayed
    "running" with no process behind it."""
    real, calls = lifecycle.exit_outcome, []

    def flaky_exit_outcome(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        if len(calls) <= 3:
            raise _down()
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduler_module.lifecycle, "exit_outcome", flaky_exit_outcome)
    with _api(tmp_path) as client:
        run_id = post_run(client, seed=668)  # the worker crashes without setting a final state
        run = wait_status(client, run_id, FINAL, timeout=60)
        assert run["status"] == "failed" and "exited with code 3" in run["error"], run
        assert calls[:4] == [run_id] * 4 and client.app.state.scheduler._thread.is_alive()
        wait_for(lambda: client.app.state.scheduler.jobs == {}, timeout=10)


def test_a_run_stored_as_running_without_a_job_gets_an_outcome(tmp_path: Path) -> None:
    """A claim that went through unseen (or a start whose failure could not be stored) strands no run."""
    with _api(tmp_path, max_concurrent_runs=1) as client:
        blocker = post_run(client, budget={"seconds": 60})
        wait_status(client, blocker, ("running",), timeout=60)  # the only slot is busy: nothing else starts
        orphan = post_run(client)
        with client.app.state.engine.begin() as conn:
            conn.execute(update(Run).where(Run.id == orphan).values(status="running"))
        run = wait_status(client, orphan, FINAL, timeout=30)
        assert run["status"] == "failed" and run["error"].startswith("no worker was running it"), run
        assert client.get(f"/api/runs/{blocker}").json()["status"] == "running"
        client.post(f"/api/runs/{blocker}/cancel")
        wait_status(client, blocker, FINAL, timeout=30)


def test_a_job_whose_run_is_no_longer_running_is_stopped(tmp_path: Path) -> None:
    with _api(tmp_path) as client:
        run_id = post_run(client, budget={"seconds": 60})
        wait_for(lambda: client.get(f"/api/runs/{run_id}/metrics").json()["total"] >= 5, timeout=60)  # training
        with client.app.state.engine.begin() as conn:  # ended elsewhere (e.g. by an API's reconciliation)
            conn.execute(update(Run).where(Run.id == run_id).values(status="failed", error="ended elsewhere"))
        wait_for(lambda: client.app.state.scheduler.jobs == {}, timeout=50)  # STRAY_GRACE_S, then stopped
        run = client.get(f"/api/runs/{run_id}").json()
        assert (run["status"], run["error"]) == ("failed", "ended elsewhere")


def test_the_scheduler_thread_survives_a_store_outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    down = threading.Event()
    real = lifecycle.running_workers

    def flaky(engine: Engine) -> Any:
        if down.is_set():
            raise _down()
        return real(engine)

    monkeypatch.setattr(scheduler_module.lifecycle, "running_workers", flaky)
    with _api(tmp_path) as client:
        sched = client.app.state.scheduler
        down.set()
        wait_for(lambda: sched.store_error is not None, timeout=10)
        assert "cannot be opened" in sched.store_error and sched._thread.is_alive()
        down.clear()
        wait_for(lambda: sched.store_error is None, timeout=10)
        run = wait_status(client, post_run(client), FINAL, timeout=60)
        assert run["status"] == "completed", run


def test_a_store_error_before_an_export_streams_answers_503(client: TestClient,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream's own store reads fail (the run lookup before them worked): 503, not a dropped connection."""
    from backend.routes import export

    run_id = post_run(client)

    def down(*_args: Any) -> Any:
        raise _down()

    monkeypatch.setattr(export.store, "iter_metrics", down)
    for params in ({"format": "csv"}, {"format": "json"}):
        r = client.get(f"/api/runs/{run_id}/export", params=params)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
        assert "cannot be opened" in r.json()["detail"], r.text


def test_a_locked_sqlite_store_answers_503_and_reads_still_work(tmp_path: Path) -> None:
    """Another process holds the write lock longer than the busy timeout: "database is locked" → 503."""
    settings = make_settings(tmp_path, sqlite_busy_timeout_ms=200)
    with TestClient(create_app(settings)) as client:
        run_id = post_run(client)
        holder = sqlite3.connect(str(tmp_path / "var" / "t.db"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            r = client.post("/api/runs", json=MLP_RUN)
            assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
            assert "locked by another writer" in r.json()["detail"], r.text
            assert client.get(f"/api/runs/{run_id}").status_code == 200  # WAL: readers are not blocked
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert client.post("/api/runs", json=MLP_RUN).status_code == 201


# -- SQLite faults on a small filesystem (root: tmpfs mounts) -----------------------------------------------------

@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only): the store's disk, to fill up."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _log(client: TestClient, run_id: int) -> str:
    path = log_path(client.app.state.settings, run_id)
    return path.read_text(errors="replace") if path.exists() else ""


def _503(response: Any, words: str) -> None:
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1, response.text
    assert words in response.json()["detail"], response.text


@pytest.mark.slow
def test_a_full_disk_answers_503_keeps_the_data_and_the_run_ends_with_the_reason(small_fs: Path,
                                                                                tmp_path: Path) -> None:
    with _api(tmp_path, database_url=f"sqlite:///{small_fs / 't.db'}", store_outage_seconds=2,
              store_retry_max_seconds=0.5) as client:
        run_id = post_run(client, budget={"seconds": 120})
        wait_for(lambda: client.get(f"/api/runs/{run_id}/metrics").json()["total"] >= 20, timeout=60)
        filler = small_fs / "filler"
        with filler.open("wb") as out:  # fill the disk
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        wait_for(lambda: "exiting with code 75" in _log(client, run_id), timeout=60)
        _503(client.post("/api/runs", json=MLP_RUN), "disk is full")
        listed = client.get("/api/runs")  # reading still works
        assert listed.status_code == 200 and listed.json()["items"][0]["status"] == "running"
        before = client.get(f"/api/runs/{run_id}/metrics").json()["total"]
        filler.unlink()  # space again: the scheduler records the outcome it kept
        run = wait_status(client, run_id, FINAL, timeout=30)
        assert run["status"] == "failed" and "store unreachable for" in run["error"], run
        assert "disk is full" in run["error"], run["error"]
        steps = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 5000}).json()
        assert steps["total"] >= before and [p["step"] for p in steps["points"]] == list(range(1, steps["total"] + 1))
        assert client.post("/api/runs", json=MLP_RUN).status_code == 201


@pytest.mark.slow
def test_a_store_file_made_read_only_answers_503_and_a_run_rides_it_out(tmp_path: Path) -> None:
    """``chattr +i`` (immutable: root's writes fail too, which permission bits would not stop) on the store file
    and its WAL while the API and a worker have them open."""
    store = tmp_path / "store"
    with _api(tmp_path, database_url=f"sqlite:///{store / 't.db'}", store_retry_max_seconds=0.5) as client:
        run_id = post_run(client, budget={"backprops": 400, "seconds": 120})
        wait_for(lambda: client.get(f"/api/runs/{run_id}/metrics").json()["total"] >= 20, timeout=60)
        files = [str(p) for p in (store / "t.db", store / "t.db-wal") if p.exists()]
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", *files]).returncode != 0:
            pytest.skip("chattr +i is not available here (needs root and a filesystem with the immutable flag)")
        try:
            wait_for(lambda: "store unreachable while" in _log(client, run_id), timeout=60)
            _503(client.post("/api/runs", json=MLP_RUN), "read-only")
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)
        run = wait_status(client, run_id, FINAL, timeout=60)
        assert run["status"] == "completed" and run["last_step"] == 400, run
        steps = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 5000}).json()
        assert [p["step"] for p in steps["points"]] == list(range(1, 401))


@pytest.mark.slow
def test_a_store_file_deleted_under_the_api_is_restored_and_loses_nothing(tmp_path: Path) -> None:
    """``rm t.db t.db-wal t.db-shm`` while a run trains: the API restores the file from its open copy; the worker
    buffers meanwhile and reopens the restored file; the run completes with every step; a fresh process
    reading the file afterwards sees everything."""
    store = tmp_path / "store" / "t.db"
    with _api(tmp_path, database_url=f"sqlite:///{store}", store_retry_max_seconds=0.5) as client:
        done = wait_status(client, post_run(client), FINAL, timeout=60)
        run_id = post_run(client, budget={"backprops": 400, "seconds": 120})
        wait_for(lambda: client.get(f"/api/runs/{run_id}/metrics").json()["total"] >= 20, timeout=60)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        wait_for(lambda: client.app.state.store_guard.restores == 1, timeout=30)
        assert store.exists() and client.get(f"/api/runs/{done['id']}").json()["status"] == "completed"
        run = wait_status(client, run_id, FINAL, timeout=60)
        assert run["status"] == "completed" and run["last_step"] == 400, run
    fresh = sqlite3.connect(store)  # what a restarted API would find
    steps = [r[0] for r in fresh.execute("SELECT step FROM step_metrics WHERE run_id = ? ORDER BY step", (run_id,))]
    statuses = dict(fresh.execute("SELECT id, status FROM runs"))
    fresh.close()
    assert steps == list(range(1, 401)) and statuses == {done["id"]: "completed", run_id: "completed"}
