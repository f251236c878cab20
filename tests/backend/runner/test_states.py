"""Run states: one enum, stored as plain strings, published by /api/meta, adopted by the UI and the client example."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.runner import lifecycle
from backend.runner.states import ACTIVE_STATES, TERMINAL_STATES, RunState, states_metadata
from backend.tables import Run
from frontend import run_states
from tests.backend.conftest import MLP_RUN


def test_enum_partitions_states_and_equals_its_strings() -> None:
    assert set(ACTIVE_STATES) | set(TERMINAL_STATES) == set(RunState)
    assert not set(ACTIVE_STATES) & set(TERMINAL_STATES)
    assert RunState.CANCELLED == "cancelled" and RunState("interrupted").terminal and not RunState.QUEUED.terminal


def test_meta_publishes_states(client: TestClient) -> None:
    published = client.get("/api/meta").json()["run_states"]
    assert published == states_metadata()
    assert published["all"][:2] == ["queued", "running"] and "interrupted" in published["terminal"]
    assert set(published["descriptions"]) == set(published["all"])


def test_store_keeps_plain_strings_and_reads_back_the_enum(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
    engine = client.app.state.engine
    with engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT status FROM runs WHERE id = ?", (run_id,)).scalar()
        typed = conn.scalar(select(Run.status).where(Run.id == run_id))
    assert raw == "queued" and type(raw) is str and typed is RunState.QUEUED


def test_unknown_state_is_refused_before_it_reaches_the_store(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
    assert lifecycle.claim(client.app.state.engine, run_id)
    with pytest.raises(ValueError):
        lifecycle.finish_run(client.app.state.engine, run_id, "exploded", None, None)
    with pytest.raises(ValueError, match="Invalid final state"):
        lifecycle.finish_run(client.app.state.engine, run_id, RunState.QUEUED, None, None)
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "running"


def test_openapi_lists_the_states(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["RunState"]["enum"] == [s.value for s in RunState]


def test_frontend_adopts_published_states_and_falls_back_without_them() -> None:
    saved = dict(run_states._state)
    try:
        assert run_states.is_active({"status": "running"}) and not run_states.is_terminal({"status": "queued"})
        run_states.update({"all": ["queued", "running", "paused", "done"], "active": ["queued", "running", "paused"],
                           "terminal": ["done"]})
        assert run_states.is_active({"status": "paused"}) and run_states.is_terminal({"status": "done"})
        assert not run_states.is_terminal({"status": "paused"})
        run_states.update({"all": "not a list"})  # malformed: ignored
        assert run_states.all_states() == ("queued", "running", "paused", "done")
    finally:
        run_states._state.clear()
        run_states._state.update(saved)


def test_api_client_meta_updates_run_states(client: TestClient) -> None:
    from frontend.api_client import ApiClient

    saved = dict(run_states._state)
    try:
        api = ApiClient.__new__(ApiClient)
        api._json = lambda method, path, **kw: client.get("/api" + path).json()  # type: ignore[attr-defined]
        api.meta()
        assert run_states.terminal() == frozenset(s.value for s in TERMINAL_STATES)
    finally:
        run_states._state.clear()
        run_states._state.update(saved)
