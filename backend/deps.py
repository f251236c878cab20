"""FastAPI dependencies: store sessions and the one place where unknown ids become 404s."""
from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from backend.settings import Settings
from backend.tables import Comparison, Run

__all__ = ["SessionDep", "ConnectionDep", "SettingsDep", "RunDep", "ComparisonDep", "MAX_ID", "wake_scheduler"]

MAX_ID = 2**63 - 1


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_connection(request: Request) -> Iterator[Connection]:
    with request.app.state.engine.connect() as conn:
        yield conn


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
ConnectionDep = Annotated[Connection, Depends(get_connection)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_run(run_id: Annotated[int, Path(ge=0, le=MAX_ID, description="run id")], session: SessionDep) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(404, f"run {run_id} not found; GET /api/runs lists the runs")
    return run


def get_comparison(comparison_id: Annotated[int, Path(ge=0, le=MAX_ID, description="comparison id")],
                   session: SessionDep) -> Comparison:
    comparison = session.get(Comparison, comparison_id)
    if comparison is None:
        raise HTTPException(404, f"comparison {comparison_id} not found; GET /api/comparisons lists them")
    return comparison


RunDep = Annotated[Run, Depends(get_run)]
ComparisonDep = Annotated[Comparison, Depends(get_comparison)]


def wake_scheduler(request: Request) -> None:
    """Let the job runner act now (start a new run, deliver a cancel) instead of at its next tick."""
    scheduler = getattr(request.app.state, "scheduler", None)
    if scheduler is not None:
        scheduler.wake()
