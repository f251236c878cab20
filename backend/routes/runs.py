"""Run routes: launch, list, inspect, cancel, delete; metrics, evaluations and reconstructions (export: routes/export.py)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import Field
from pydantic_core import to_json

from backend import audit, store
from backend.runner.scheduler import log_path
from backend.deps import (MAX_ID, MAX_PAGE, ConnectionDep, OwnerQuery, RunDep, SessionDep, UserDep, admit_runs,
                          require_owner, wake_scheduler)
from backend.errors import CONFLICT, FORBIDDEN, NOT_FOUND, QUEUE_FULL, responses
from backend.schemas import AnnotationPatch, EvalPage, MetricColumns, MetricsPage, ReconstructionList, RunList, RunOut
from backend.tables import ALL_STATUSES, METRIC_COLUMNS
from trainer.config import RunConfig

router = APIRouter(prefix="/runs", tags=["runs"])

SinceStep = Annotated[int | None, Query(ge=-1, le=MAX_ID, description="only points with step > since_step")]


def _statuses(status: list[str] | None) -> list[str] | None:
    """``?status=a,b`` or ``?status=a&status=b``; unknown names → 422 in FastAPI's error shape."""
    if not status:
        return None
    wanted = [s.strip() for value in status for s in value.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in ALL_STATUSES]
    if unknown:
        raise HTTPException(422, [{"loc": ["query", "status"], "type": "value_error", "input": status,
                                   "msg": f"unknown status {unknown}; choose from {list(ALL_STATUSES)}"}])
    return wanted


@router.post("", status_code=201, response_model=RunOut, dependencies=[Depends(wake_scheduler)],
             summary="Queue a run", responses=QUEUE_FULL)
def create_run(config: RunConfig, session: SessionDep, request: Request, user: UserDep) -> dict[str, Any]:
    admit_runs(request, session, [config], user)
    run = store.create_run(session, config, owner=user.name)
    audit.record(session, user.name, "create", "run", run.id, owner=user.name)
    session.commit()
    return store.run_view(run)


@router.get("", response_model=RunList, summary="List runs, newest first")
def list_runs(session: SessionDep,
              status: Annotated[list[Annotated[str, Field(max_length=200)]] | None, Query(
                  max_length=20, description=f"one or more of {', '.join(ALL_STATUSES)}, e.g. running or "
                                             "queued,running")] = None,
              comparison_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
              owner: OwnerQuery = None,
              limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
              offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> dict[str, Any]:
    runs, total = store.list_runs(session, statuses=_statuses(status), comparison_id=comparison_id, limit=limit,
                                  offset=offset, owner=owner)
    return {"items": [store.run_view(r) for r in runs], "total": total}


@router.get("/{run_id}", response_model=RunOut, summary="One run", responses=NOT_FOUND)
def get_run(run: RunDep) -> dict[str, Any]:
    return store.run_view(run)


@router.patch("/{run_id}", response_model=RunOut, summary="Set a run's tags and/or note",
              responses=responses(NOT_FOUND, FORBIDDEN))
def annotate_run(run: RunDep, body: AnnotationPatch, session: SessionDep, user: UserDep) -> dict[str, Any]:
    require_owner(user, run, "run", "edit")
    audit.record(session, user.name, "edit", "run", run.id, owner=run.owner,
                 detail=body.model_dump(exclude_none=True))
    store.annotate(session, run, tags=body.tags, note=body.note)
    return store.run_view(run)


@router.post("/{run_id}/cancel", response_model=RunOut, dependencies=[Depends(wake_scheduler)],
             summary="Dequeue a queued run, or stop a running one (it becomes cancelled within seconds)",
             responses=responses(NOT_FOUND, CONFLICT, FORBIDDEN))
def cancel_run(run: RunDep, session: SessionDep, user: UserDep) -> dict[str, Any]:
    require_owner(user, run, "run", "cancel")
    audit.record(session, user.name, "cancel", "run", run.id, owner=run.owner, detail={"status": run.status.value})
    return store.run_view(store.request_cancel(session, run))


@router.delete("/{run_id}", status_code=204, summary="Delete a finished run and all its data",
               responses=responses(NOT_FOUND, CONFLICT, FORBIDDEN))
def delete_run(run: RunDep, session: SessionDep, request: Request, user: UserDep) -> Response:
    require_owner(user, run, "run", "delete")
    audit.record(session, user.name, "delete", "run", run.id, owner=run.owner, detail={"label": run.label})
    store.delete_run(session, run)
    log_path(request.app.state.settings, run.id).unlink(missing_ok=True)
    return Response(status_code=204)


def _json(body: Any) -> Response:
    """Plain dicts/lists straight to JSON bytes (pydantic-core, in Rust): the hot polling routes skip re-validation."""
    return Response(content=to_json(body), media_type="application/json")


MAX_FIELDS_CHARS = 1000  # characters of a fields= selection


def metric_fields(fields: list[str] | None) -> tuple[str, ...]:
    """``?fields=a,b`` or ``?fields=a&fields=b`` (``step`` is always included); unknown names → 422."""
    if not fields:
        return METRIC_COLUMNS
    if sum(len(f) for f in fields) > MAX_FIELDS_CHARS:
        raise HTTPException(422, [{"loc": ["query", "fields"], "type": "value_error", "input": None,
                                   "msg": f"fields selection longer than {MAX_FIELDS_CHARS} characters; "
                                          f"choose from {list(METRIC_COLUMNS)}"}])
    try:
        return store.metric_fields([f for value in fields for f in value.split(",")])
    except ValueError as exc:
        raise HTTPException(422, [{"loc": ["query", "fields"], "type": "value_error", "input": fields,
                                   "msg": str(exc)}]) from None


@router.get("/{run_id}/metrics", response_model=MetricsPage | MetricColumns,
            summary="Step metrics, incremental and downsampled (row-wise, or column-wise with format=columns)",
            responses=NOT_FOUND)
def metrics(run: RunDep, conn: ConnectionDep, since_step: SinceStep = None,
            max_points: Annotated[int, Query(ge=2, le=100_000)] = 2000,
            until_step: Annotated[int | None, Query(ge=0, le=MAX_ID,
                                                    description="only points with step <= until_step (zoom)")] = None,
            fields: Annotated[list[str] | None, Query(description="e.g. train_loss,backprops (step always included)")
                              ] = None,
            format: Annotated[Literal["rows", "columns"], Query(  # noqa: A002
                description="rows: one object per step (points); columns: one array per field (columns)")] = "rows",
            ) -> Response:
    return _json(store.metrics_page(conn, run.id, since_step=since_step, max_points=max_points,
                                    fields=metric_fields(fields), until_step=until_step, layout=format))


@router.get("/{run_id}/evals", response_model=EvalPage, summary="Evaluations (train/test loss and accuracy)",
            responses=NOT_FOUND)
def evals(run: RunDep, conn: ConnectionDep, since_step: SinceStep = None) -> Response:
    return _json({"points": store.evaluations(conn, run.id, since_step=since_step)})


@router.get("/{run_id}/reconstructions", response_model=ReconstructionList,
            summary="Steps with autoencoder reconstructions", responses=NOT_FOUND)
def reconstructions(run: RunDep, session: SessionDep) -> dict[str, Any]:
    return store.reconstruction_list(session, run.id)


def _png(png: bytes | None, what: str, run_id: int, *, immutable: bool) -> Response:
    if png is None:
        raise HTTPException(404, f"run {run_id} has no {what}; GET /api/runs/{run_id}/reconstructions lists them "
                                 "(only autoencoder runs have images)")
    cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
    return Response(content=png, media_type="image/png", headers={"Cache-Control": cache})


@router.get("/{run_id}/reconstructions/latest.png", response_class=Response, summary="Newest reconstruction",
            responses=NOT_FOUND)
def latest_png(run: RunDep, session: SessionDep) -> Response:
    return _png(store.reconstruction_png(session, run.id), "reconstruction yet", run.id, immutable=False)


@router.get("/{run_id}/reconstructions/original.png", response_class=Response, summary="The input images",
            responses=NOT_FOUND)
def original_png(run: RunDep, session: SessionDep) -> Response:
    return _png(store.reconstruction_png(session, run.id, kind="original"), "original images", run.id,
                immutable=True)


@router.get("/{run_id}/reconstructions/{step}.png", response_class=Response, summary="Reconstruction at a step",
            responses=NOT_FOUND)
def step_png(run: RunDep, session: SessionDep, step: Annotated[int, Path(ge=0, le=MAX_ID)]) -> Response:
    return _png(store.reconstruction_png(session, run.id, step=step), f"reconstruction at step {step}", run.id,
                immutable=True)
