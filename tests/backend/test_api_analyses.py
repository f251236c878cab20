"""Analyses API: validation (422 naming the field, nothing stored), state conflicts, and real analysis jobs."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from backend.main import create_app
from backend.tables import Analysis, Run
from tests.backend.conftest import make_settings, record_run, wait_for

NARROW: dict[str, Any] = {"dataset": "fashion-mnist", "model": "mlp-narrow", "optimizer": {"name": "sgd"},
                          "budget": {"backprops": 20}, "train_subset": 512, "eval_every": 10, "test_subset": 500}


def _finished_run(client: TestClient, steps: int = 10, config: dict[str, Any] | None = None) -> int:
    run_id = client.post("/api/runs", json=config or NARROW).json()["id"]
    record_run(client, run_id, steps=steps)
    return run_id


def _count(client: TestClient) -> int:
    with client.app.state.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Analysis))


@pytest.mark.parametrize("body,field", [
    ({}, "body"),
    ({"steps": [0, 5], "fractions": [0.5]}, "body"),
    ({"steps": []}, "steps"),
    ({"steps": [-1]}, "steps"),
    ({"steps": list(range(9))}, "steps"),
    ({"fractions": [1.5]}, "fractions"),
    ({"fractions": ["nan"]}, "fractions"),
    ({"steps": [1], "batch_size": 0}, "batch_size"),
    ({"steps": [1], "batch_size": 100_000}, "batch_size"),
    ({"steps": [1], "heatmap_size": 4096}, "heatmap_size"),
    ({"steps": [1], "random_draws": 50}, "random_draws"),
    ({"steps": [1], "path": "/etc/passwd"}, "path"),
])
def test_bad_bodies_get_422_naming_the_field_and_store_nothing(client: TestClient, body, field) -> None:
    run_id = _finished_run(client)
    r = client.post(f"/api/runs/{run_id}/analyses/hessian", json=body)
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json()["detail"]]
    assert any(field in loc[1:] or (field == "body" and loc == ["body"]) for loc in locs), locs
    assert _count(client) == 0


def test_run_must_fit_finish_and_have_the_steps(client: TestClient) -> None:
    big = _finished_run(client, config={**NARROW, "model": "mlp"})
    r = client.post(f"/api/runs/{big}/analyses/hessian", json={"steps": [0]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["path", "run_id"]
    assert "101,770 parameters" in r.text and "mlp-narrow" in r.text

    queued = client.post("/api/runs", json=NARROW).json()["id"]
    r = client.post(f"/api/runs/{queued}/analyses/hessian", json={"steps": [0]})
    assert r.status_code == 409 and "once it has finished" in r.text

    run_id = _finished_run(client, steps=10)
    r = client.post(f"/api/runs/{run_id}/analyses/hessian", json={"steps": [0, 11]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "steps"]
    assert "beyond run" in r.text and "0..10" in r.text
    with client.app.state.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(info={"train_size": 100}))
    r = client.post(f"/api/runs/{run_id}/analyses/hessian", json={"steps": [0], "batch_size": 101})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "batch_size"]
    assert client.post("/api/runs/999/analyses/hessian", json={"steps": [0]}).status_code == 404
    assert _count(client) == 0


def test_fractions_become_steps_and_the_analysis_is_queued(client: TestClient) -> None:
    run_id = _finished_run(client, steps=10)
    r = client.post(f"/api/runs/{run_id}/analyses/hessian", json={"fractions": [0, 0.26, 1], "batch_size": 64})
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "queued" and created["params"]["checkpoint_steps"] == [0, 3, 10]
    assert created["progress"] == {"done": 0, "total": 3}
    items = client.get(f"/api/runs/{run_id}/analyses").json()["items"]
    assert [a["id"] for a in items] == [created["id"]]
    assert client.get(f"/api/runs/{run_id}/analyses/{created['id']}").json()["status"] == "queued"
    other = _finished_run(client)
    assert client.get(f"/api/runs/{other}/analyses/{created['id']}").status_code == 404  # not that run's
    client.delete(f"/api/runs/{run_id}")
    assert _count(client) == 0  # deleted with the run


def test_active_analyses_are_capped(client: TestClient) -> None:
    run_id = _finished_run(client)
    for _ in range(8):
        assert client.post(f"/api/runs/{run_id}/analyses/hessian", json={"steps": [0]}).status_code == 202
    r = client.post(f"/api/runs/{run_id}/analyses/hessian", json={"steps": [0]})
    assert r.status_code == 409 and "limit is 8" in r.text


@pytest.fixture
def real_client(tmp_path: Path):
    """API with the job runners and the real trainer (Fashion-MNIST from the system package)."""
    with TestClient(create_app(make_settings(tmp_path, scheduler=True, trainer="trainer:run"))) as c:
        yield c
        runner = getattr(c.app.state, "analysis_runner", None)
        if runner is not None:
            runner.stop()


def _wait_analysis(client: TestClient, run_id: int, analysis_id: int, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        a = client.get(f"/api/runs/{run_id}/analyses/{analysis_id}").json()
        return a if a["status"] in ("completed", "failed") else None

    return wait_for(done, timeout, interval=0.2)


@pytest.mark.slow
def test_end_to_end_analysis_of_a_trained_run(real_client: TestClient) -> None:
    """A real run (worker process) then a real analysis job (its own process) on the same SQLite file."""
    run_id = real_client.post("/api/runs", json=NARROW).json()["id"]
    run = wait_for(lambda: (r := real_client.get(f"/api/runs/{run_id}").json())["status"] not in ("queued", "running")
                   and r, timeout=120)
    assert run["status"] == "completed", run
    r = real_client.post(f"/api/runs/{run_id}/analyses/hessian",
                         json={"fractions": [1], "batch_size": 64, "heatmap_size": 16, "random_draws": 1})
    assert r.status_code == 202, r.text
    analysis = _wait_analysis(real_client, run_id, r.json()["id"])
    assert analysis["status"] == "completed", analysis["error"]
    result = analysis["result"]
    assert result["num_parameters"] == 3190 and result["batch_size"] == 64
    assert result["replay_matches"] is True  # the CPU replay reproduced the recorded minibatch losses
    last, = result["checkpoints"]
    assert last["step"] == 20 and analysis["params"]["checkpoint_steps"] == [20]
    assert last["replay_matches"] is True
    assert last["replayed_minibatch_loss"] == pytest.approx(last["recorded_minibatch_loss"], rel=1e-6)
    assert 0 < last["shares"]["diagonal"] < last["shares"]["block_diagonal"] <= 1
    assert 0 < last["random_same_spectrum"]["diagonal"] < 1
    assert last["wigner"]["diagonal"] == pytest.approx(1 / 3190)
    c = math.sqrt(2 / (math.pi * 64))  # the OLS baseline for N = 64 inputs (Proposition 2), and its simulation
    assert last["ols"]["inputs"] == 64 and last["ols"]["diagonal"] == pytest.approx(1 / (1 + 3189 * c))
    assert 0 < last["ols"]["simulated_diagonal"] < 1 and set(last["off_block_ratio"]) == {
        "random_same_spectrum", "wigner", "ols"}
    assert len(last["heatmap"]) == 16 and all(len(row) == 16 for row in last["heatmap"])
    assert [b["name"] for b in result["blocks"]] == ["net.1", "net.3"]
    listed = real_client.get(f"/api/runs/{run_id}/analyses").json()["items"][0]
    assert "heatmap" not in listed["result"]["checkpoints"][0]  # lists stay small
    assert listed["progress"] == {"done": 1, "total": 1}


@pytest.mark.slow
def test_analysis_that_cannot_replay_fails_with_the_reason(real_client: TestClient) -> None:
    run_id = real_client.post("/api/runs", json={**NARROW, "budget": {"backprops": 5}}).json()["id"]
    wait_for(lambda: real_client.get(f"/api/runs/{run_id}").json()["status"] == "completed", timeout=120)
    with real_client.app.state.engine.begin() as conn:  # pretend the run went further than its budget allows
        conn.execute(update(Run).where(Run.id == run_id).values(last_step=9))
    r = real_client.post(f"/api/runs/{run_id}/analyses/hessian", json={"steps": [9], "batch_size": 32})
    analysis = _wait_analysis(real_client, run_id, r.json()["id"])
    assert analysis["status"] == "failed"
    assert "ended at step 5" in analysis["error"] and "[9]" in analysis["error"]


def test_analysis_errors_never_show_server_paths(tmp_path) -> None:
    """A failed analysis quotes its worker's log; the API answers with the paths masked (issue 8, item 1)."""
    from backend.analyses.schemas import AnalysisOut

    leaked = f"worker process exited with code 1\n--- last lines of the worker log ({tmp_path}/var/logs/analysis-1.log)"
    out = AnalysisOut(id=1, run_id=1, kind="hessian", status="failed", params={}, progress={"done": 0, "total": 1},
                      error=leaked, result=None, created_at="2026-01-01T00:00:00", started_at=None, finished_at=None, owner="local")
    assert str(tmp_path) not in out.error and "analysis-1.log" not in out.error
    assert out.error.startswith("worker process exited with code 1")
