"""The local executor's zygote (fork server): runs are forked worker processes that train, stop, crash and end
like any worker; a dead zygote is replaced (and switched off after repeated deaths) without losing runs; a
dead API stops its forked runs. Real processes throughout (the zygote, its forked children, a SQLite store)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.main import create_app
from backend.runner.local import LocalExecutor
from backend.runner.zygote import ForkedProcess
from backend.tables import Run
from tests.backend.conftest import MLP_RUN, make_settings, wait_for, wait_status
from tests.backend.runner.helpers import points as _points, post_run as _post, worker_pid as _pid

FINAL = ("completed", "diverged", "failed", "cancelled", "interrupted")
LONG = {**MLP_RUN, "budget": {"seconds": 60}}


def _api(tmp_path: Path, **overrides: Any) -> TestClient:
    return TestClient(create_app(make_settings(tmp_path, **{"scheduler": True, "warm_workers": 0, **overrides})))


def _ready(client: TestClient) -> LocalExecutor:
    executor: LocalExecutor = client.app.state.scheduler.executor
    wait_for(lambda: executor.zygote is not None and executor.zygote.ready, timeout=60)
    return executor


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_run_is_forked_by_the_zygote_and_completes(tmp_path: Path) -> None:
    with _api(tmp_path) as client:
        executor = _ready(client)
        zygote_pid = executor.zygote.proc.pid
        run_id = _post(client, **LONG)
        wait_for(lambda: _points(client, run_id) >= 3, timeout=30)
        pid = _pid(client, run_id)
        assert pid not in (None, zygote_pid) and _parent(pid) == zygote_pid  # one process per run, the zygote's child
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # its own session and process group
        client.post(f"/api/runs/{run_id}/cancel")
        assert wait_status(client, run_id, FINAL, timeout=30)["status"] == "cancelled"
        done = _post(client, seed=3)
        run = wait_status(client, done, FINAL, timeout=30)
        assert run["status"] == "completed" and run["last_step"] == 50 and _points(client, done) == 50, run
        assert executor.zygote_starts == 2 and executor.cold_starts == 0 and executor.warm_starts == 0


def test_stop_by_sigterm_and_forced_by_sigkill(tmp_path: Path) -> None:
    with _api(tmp_path, cancel_grace_seconds=0.5) as client:
        executor = _ready(client)
        polite, stubborn = _post(client, **LONG), _post(client, **{**LONG, "seed": 669})
        wait_for(lambda: _points(client, polite) >= 3 and _points(client, stubborn) >= 3, timeout=30)
        client.post(f"/api/runs/{polite}/cancel")
        client.post(f"/api/runs/{stubborn}/cancel")
        run = wait_status(client, polite, FINAL, timeout=30)
        assert run["status"] == "cancelled" and run["error"].startswith("cancelled on request at step"), run
        run = wait_status(client, stubborn, FINAL, timeout=30)
        assert run["status"] == "cancelled" and "killed by signal 9 (SIGKILL) after the grace period" in run["error"]
        assert executor.zygote_starts == 2


def test_crashing_children_fail_only_their_run(tmp_path: Path) -> None:
    with _api(tmp_path, worker_memory_gb=1.0) as client:
        executor = _ready(client)
        zygote_pid = executor.zygote.proc.pid
        crash, oom = _post(client, seed=668), _post(client, seed=671)
        run = wait_status(client, crash, FINAL, timeout=30)
        assert run["status"] == "failed" and "exited with code 3" in run["error"] and "boom" in run["error"], run
        run = wait_status(client, oom, FINAL, timeout=30)  # RLIMIT_AS applies in the forked child
        assert run["status"] == "failed" and run["error"].startswith("out of memory (limit 1 GB"), run
        aborted = _post(client, **LONG)
        wait_for(lambda: _points(client, aborted) >= 1, timeout=30)
        os.kill(_pid(client, aborted), signal.SIGABRT)  # as os.abort() in the child: its status via the zygote
        run = wait_status(client, aborted, FINAL, timeout=30)
        assert run["status"] == "failed" and "killed by signal 6 (SIGABRT)" in run["error"], run
        ok = _post(client)
        assert wait_status(client, ok, FINAL, timeout=30)["status"] == "completed"
        assert executor.zygote.proc.pid == zygote_pid and executor.zygote_starts == 4  # the zygote lives on


def test_two_forked_runs_keep_separate_logs_and_results(tmp_path: Path) -> None:
    with _api(tmp_path) as client:
        executor = _ready(client)
        slow, crash = _post(client, **{**LONG, "budget": {"seconds": 1.5}}), _post(client, seed=668)
        assert wait_status(client, crash, FINAL, timeout=30)["status"] == "failed"
        assert client.get(f"/api/runs/{slow}").json()["status"] == "running"  # both ran at once
        run = wait_status(client, slow, FINAL, timeout=30)
        assert run["status"] == "completed" and run["error"] is None and _points(client, slow) == run["last_step"]
        assert _points(client, crash) == 0
        logs = Path(client.app.state.settings.log_dir)
        assert "boom" in (logs / f"run-{crash}.log").read_text()
        assert "boom" not in (logs / f"run-{slow}.log").read_text()
        assert executor.zygote_starts == 2


def test_killed_zygote_is_replaced_and_its_running_child_still_ends_right(tmp_path: Path) -> None:
    with _api(tmp_path) as client:
        executor = _ready(client)
        first = executor.zygote
        keeps, killed = _post(client, **LONG), _post(client, **{**LONG, "seed": 5})
        wait_for(lambda: _points(client, keeps) >= 3 and _points(client, killed) >= 3, timeout=30)
        first.proc.send_signal(signal.SIGKILL)
        wait_for(lambda: executor.zygote is not None and executor.zygote is not first and executor.zygote.ready,
                 timeout=60)
        before = _points(client, keeps)
        wait_for(lambda: _points(client, keeps) > before, timeout=10)  # the orphaned children train on
        os.kill(_pid(client, killed), signal.SIGKILL)  # its zygote is gone: the executor sees it through a pidfd
        run = wait_status(client, killed, FINAL, timeout=30)
        assert run["status"] == "failed" and "exit status is unknown" in run["error"], run
        client.post(f"/api/runs/{keeps}/cancel")
        assert wait_status(client, keeps, FINAL, timeout=30)["status"] == "cancelled"
        after = _post(client, seed=4)
        assert wait_status(client, after, FINAL, timeout=30)["status"] == "completed"
        assert executor.zygote_starts == 3 and executor.cold_starts == 0


def test_repeated_zygote_deaths_switch_it_off_and_runs_start_without_it(tmp_path: Path) -> None:
    with _api(tmp_path, warm_workers=1) as client:
        executor = client.app.state.scheduler.executor
        assert executor._warm_targets() == {}  # no idle CPU interpreters while the zygote serves
        for _ in range(3):
            wait_for(lambda: executor.zygote is not None and executor.zygote.alive(), timeout=30)
            victim = executor.zygote
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(timeout=10)
            wait_for(lambda: executor.zygote is not victim, timeout=30)  # noqa: B023 - waited on here
        time.sleep(0.3)
        assert executor.zygote is None and not executor._zygote_wanted()
        wait_for(lambda: len(executor.warm) == 1, timeout=30)  # the warm pool takes over CPU runs
        run_id = _post(client)
        assert wait_status(client, run_id, FINAL, timeout=30)["status"] == "completed"
        assert executor.warm_starts + executor.cold_starts == 1 and executor.zygote_starts == 0


def test_setting_off_means_no_zygote(tmp_path: Path) -> None:
    with _api(tmp_path, zygote=False) as client:
        executor = client.app.state.scheduler.executor
        run_id = _post(client)
        assert wait_status(client, run_id, FINAL, timeout=30)["status"] == "completed"
        assert executor.zygote is None and executor.cold_starts == 1 and executor.zygote_starts == 0


_DYING_API = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from backend.db import make_engine, migrate
    from backend.runner import lifecycle
    from backend.runner.local import LocalExecutor
    from tests.backend.conftest import MLP_RUN, make_settings
    from backend.store import create_run
    from backend.db import make_session_factory
    from trainer.config import RunConfig

    tmp = Path(sys.argv[1])
    settings = make_settings(tmp, warm_workers=0)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    with make_session_factory(engine)() as session:
        run = create_run(session, RunConfig.model_validate({**MLP_RUN, "budget": {"seconds": 60}}))
        session.commit()
        run_id = int(run.id)
    executor = LocalExecutor(settings, engine)
    deadline = time.monotonic() + 60
    while not (executor.zygote and executor.zygote.ready) and time.monotonic() < deadline:
        executor.maintain()
        time.sleep(0.05)
    assert lifecycle.claim(engine, run_id)
    executor.start(run_id, {})
    print(json.dumps({"run": run_id, "child": executor.jobs[run_id].proc.pid, "zygote": executor.zygote.proc.pid}),
          flush=True)
    time.sleep(600)
""")


def test_children_stop_as_interrupted_when_the_api_process_dies(tmp_path: Path) -> None:
    from backend.db import make_engine

    api = subprocess.Popen([sys.executable, "-c", _DYING_API, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                           cwd=str(Path(__file__).resolve().parents[3]))
    try:
        info = json.loads(api.stdout.readline())
        engine = make_engine(make_settings(tmp_path).resolved_database_url)

        def row() -> Any:
            with engine.connect() as conn:
                return conn.execute(select(Run.status, Run.error, Run.last_step).where(Run.id == info["run"])).first()

        wait_for(lambda: (row().last_step or 0) >= 3, timeout=30)
        api.kill()
        api.wait(timeout=10)
        final = wait_for(lambda: row() if row().status != "running" else None, timeout=30)
        assert final.status == "interrupted" and "its API process went away" in final.error, final
        wait_for(lambda: not Path(f"/proc/{info['child']}").exists() or _zombie(info["child"]), timeout=10)
        wait_for(lambda: not Path(f"/proc/{info['zygote']}").exists() or _zombie(info["zygote"]), timeout=10)
        engine.dispose()
    finally:
        if api.poll() is None:
            api.kill()
            api.wait(timeout=10)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_forked_process_reports_its_exit_like_popen(tmp_path: Path) -> None:
    """ForkedProcess against a real zygote: describe_exit of its status, pidfd signalling, CPU seconds."""
    with _api(tmp_path) as client:
        executor = _ready(client)
        run_id = _post(client, **LONG)
        wait_for(lambda: _points(client, run_id) >= 1, timeout=30)
        job = executor.jobs.get(run_id)
        assert job is not None and isinstance(job.proc, ForkedProcess)
        client.post(f"/api/runs/{run_id}/cancel")
        assert wait_status(client, run_id, FINAL, timeout=30)["status"] == "cancelled"
        wait_for(lambda: run_id not in executor.jobs, timeout=10)  # the scheduler saw the exit
        assert job.proc.returncode == 0 and job.proc.reason == "worker process exited with code 0"
        assert job.proc.cpu_seconds is not None and job.proc.cpu_seconds >= 0 and job.proc.pidfd is None


@pytest.mark.slow
def test_real_trainer_through_a_single_threaded_zygote(tmp_path: Path) -> None:
    """The real trainer: the zygote imports torch and decodes Fashion-MNIST with one thread and no more; a forked
    run trains with the scheduler's thread count and stores its metrics."""
    from trainer.data import dataset_available

    if not dataset_available("fashion-mnist", tmp_path / "data"):
        pytest.skip("Fashion-MNIST is not on this machine (apt dataset-fashion-mnist or data/)")
    with _api(tmp_path, trainer="trainer:run", warm_datasets="fashion-mnist", torch_threads=2) as client:
        executor = _ready(client)
        zygote_pid = executor.zygote.proc.pid
        assert executor.zygote.ready_info.endswith("fashion-mnist")
        assert len(os.listdir(f"/proc/{zygote_pid}/task")) == 1  # no OpenMP pool, no helper thread
        run_id = _post(client, budget={"backprops": 20}, batch_size=64, train_subset=2000, test_subset=500,
                       eval_train_size=500, eval_every=10)
        run = wait_status(client, run_id, FINAL, timeout=120)
        assert run["status"] == "completed", run
        assert _points(client, run_id) == 20 and executor.zygote_starts == 1
        evals = client.get(f"/api/runs/{run_id}/evals").json()["points"]
        assert len(evals) >= 2 and all(0 <= e["test_accuracy"] <= 1 for e in evals), evals
        assert len(os.listdir(f"/proc/{zygote_pid}/task")) == 1


def test_a_threaded_zygote_refuses_to_serve_and_runs_start_cold(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR", logger="trustlab.runner.local")
    with _api(tmp_path, trainer="tests.backend.runner.threaded_trainer:run") as client:
        executor = client.app.state.scheduler.executor
        wait_for(lambda: not executor._zygote_wanted(), timeout=60)  # 3 zygotes refused; it stays off
        assert executor.zygote is None and executor.zygote_starts == 0
        log_dir = Path(client.app.state.settings.log_dir)
        run_id = _post(client)
        assert wait_status(client, run_id, FINAL, timeout=30)["status"] == "completed"
        assert executor.cold_starts == 1 and executor.zygote_starts == 0
    assert not list(log_dir.glob("zygote-*.log"))
    said = [r.getMessage() for r in caplog.records]
    assert sum("the zygote exited (it exited with code 3)" in m and "2 threads after the warm-up" in m
               for m in said) == 3, said
    assert any("the zygote died 3 times" in m for m in said), said  # removed once nothing needs them


def test_without_pidfds_children_are_still_stopped_and_watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox that refuses pidfd_open in the API process (seccomp): signals go by pid, exits still arrive."""

    def refused(pid: int, flags: int = 0) -> int:
        raise PermissionError(1, "Operation not permitted")

    with _api(tmp_path) as client:
        executor = _ready(client)
        monkeypatch.setattr(os, "pidfd_open", refused)  # this process only; the zygote keeps its own
        stopped, orphan = _post(client, **LONG), _post(client, **{**LONG, "seed": 7})
        wait_for(lambda: _points(client, stopped) >= 3 and _points(client, orphan) >= 3, timeout=30)
        assert executor.jobs[stopped].proc.pidfd is None
        client.post(f"/api/runs/{stopped}/cancel")
        assert wait_status(client, stopped, FINAL, timeout=30)["status"] == "cancelled"
        zygote = executor.zygote.proc
        zygote.send_signal(signal.SIGKILL)
        zygote.wait(timeout=10)  # gone before its child: nobody reports the child's status
        os.kill(_pid(client, orphan), signal.SIGKILL)
        run = wait_status(client, orphan, FINAL, timeout=30)
        assert run["status"] == "failed" and "exit status is unknown" in run["error"], run
