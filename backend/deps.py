"""FastAPI dependencies: store sessions and the one place where unknown ids become 404s.

A request holds at most one store connection: the session's, which the connection dependency reuses.
"""
from __future__ import annotations

from typing import Annotated, Any, Iterator

from fastapi import Depends, HTTPException, Path, Query, Request
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from backend.errors import QueueFull
from backend.limits import check_fits
from backend.security import USER_KEY
from backend.settings import Settings
from backend.tables import Comparison, Run
from backend.users import NAME_PATTERN, User
from trainer.config import RunConfig

__all__ = ["SessionDep", "ConnectionDep", "SettingsDep", "RunDep", "ComparisonDep", "MAX_ID", "MAX_PAGE",
           "wake_scheduler", "admit_runs", "UserDep", "OwnerQuery", "require_owner", "require_admin"]

MAX_ID = 2**63 - 1
MAX_PAGE = 500  # most items per list page


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_connection(session: Annotated[Session, Depends(get_session, scope="function")]) -> Connection:
    """The request session's own connection (never a second one from the pool)."""
    return session.connection()


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


# scope="function": the session (and its connection) closes as soon as the route returns, not after the
# response has been sent to a possibly slow client.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ConnectionDep = Annotated[Connection, Depends(get_connection)]


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


def get_user(request: Request) -> User:
    """The signed-in user (the request gate, backend/security.py, puts it in the scope)."""
    user = request.scope.get(USER_KEY)
    if not isinstance(user, User):
        raise HTTPException(401, "sign in: send 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    return user


UserDep = Annotated[User, Depends(get_user)]
OwnerQuery = Annotated[str | None, Query(max_length=40, pattern=NAME_PATTERN,
                                         description="only objects of this user (a user name)")]


def require_owner(user: User, obj: Any, kind: str, action: str) -> None:
    """Members change only their own objects; admins anything. Otherwise 403 naming the owner."""
    if user.is_admin or obj.owner == user.name:
        return
    raise HTTPException(403, f"{kind} {obj.id} belongs to {obj.owner!r}; only {obj.owner!r} or an admin may "
                             f"{action} it (you are {user.name!r}, a member)")


def require_admin(user: User, what: str) -> None:
    if not user.is_admin:
        raise HTTPException(403, f"{what} is for admins; you are {user.name!r}, a member (an admin can run "
                                 f"`python -m backend.users add NAME --admin`)")


def wake_scheduler(request: Request) -> None:
    """Let the job runner act now (start a new run, deliver a cancel) instead of at its next tick."""
    scheduler = getattr(request.app.state, "scheduler", None)
    if scheduler is not None:
        scheduler.wake()


def admit_runs(request: Request, session: Session, configs: list[RunConfig], user: User) -> None:
    """Refuse runs before anything is stored: too many for one request (422), the queue is full (429), the
    user's own queued runs would pass TRUSTLAB_MAX_QUEUED_RUNS_PER_USER (429), or a run clearly cannot fit in
    a CPU worker's memory (422, naming the estimate and the setting)."""
    settings: Settings = request.app.state.settings
    if len(configs) > settings.max_runs_per_comparison:
        raise HTTPException(422, [{"loc": ["body"], "type": "value_error", "msg": (
            f"{len(configs)} runs requested (seeds x optimizers); at most {settings.max_runs_per_comparison} "
            "(setting TRUSTLAB_MAX_RUNS_PER_COMPARISON)")}])
    queued = session.scalar(select(func.count()).select_from(Run).where(Run.status == "queued")) or 0
    if queued + len(configs) > settings.max_queued_runs:
        raise QueueFull(f"{queued} runs are queued and this request adds {len(configs)}; at most "
                        f"{settings.max_queued_runs} may wait (setting TRUSTLAB_MAX_QUEUED_RUNS). Wait for runs "
                        "to start or cancel some")
    mine = session.scalar(select(func.count()).select_from(Run).where(Run.status == "queued",
                                                                      Run.owner == user.name)) or 0
    if mine + len(configs) > settings.max_queued_runs_per_user:
        raise QueueFull(f"{user.name!r} has {mine} runs queued and this request adds {len(configs)}; at most "
                        f"{settings.max_queued_runs_per_user} per user may wait (setting "
                        "TRUSTLAB_MAX_QUEUED_RUNS_PER_USER). Wait for your runs to start or cancel some")
    scheduler = getattr(request.app.state, "scheduler", None)
    gpus = scheduler is not None and scheduler.executor.has_gpus()
    for config in configs:
        if config.device == "cpu" or not gpus:
            try:
                check_fits(config, settings.worker_memory_gb)
            except ValueError as exc:
                raise HTTPException(422, [{"loc": ["body", "batch_size"], "type": "value_error",
                                           "msg": str(exc)}]) from None
