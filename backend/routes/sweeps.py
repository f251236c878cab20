"""Sweep routes: launch a hyperparameter sweep, watch its grid and winners, promote the winners to a comparison."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import ValidationError

from backend import audit, sweep_store
from backend.deps import MAX_ID, OwnerQuery, SessionDep, UserDep, admit_runs, require_owner, wake_scheduler
from backend.errors import FORBIDDEN, QUEUE_FULL, responses
from backend.schemas import ComparisonCreated
from backend.sweeps import PromoteRequest, SweepCreate
from backend.tables import Sweep
from trainer.config import from_stored

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


def get_sweep(sweep_id: Annotated[int, Path(ge=0, le=MAX_ID, description="sweep id")], session: SessionDep) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise HTTPException(404, f"sweep {sweep_id} not found; GET /api/sweeps lists them")
    return sweep


SweepDep = Annotated[Sweep, Depends(get_sweep)]


@router.post("", status_code=201, dependencies=[Depends(wake_scheduler)],
             summary="Queue one run per grid point, optimizer and tuning seed (ordinary runs, grouped)",
             responses=QUEUE_FULL)
def create_sweep(body: SweepCreate, session: SessionDep, request: Request, user: UserDep) -> dict[str, Any]:
    admit_runs(request, session, [cfg for _entry, _point, cfg, _label in body.run_configs()], user)
    sweep, runs = sweep_store.create_sweep(session, body, owner=user.name)
    audit.record(session, user.name, "create", "sweep", sweep.id, owner=user.name,
                 detail={"comparison_id": sweep.comparison_id, "runs": len(runs)})
    session.commit()
    return {"id": sweep.id, "comparison_id": sweep.comparison_id, "run_ids": [r.id for r in runs]}


@router.get("", summary="List sweeps, newest first (status and progress)")
def list_sweeps(session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0, owner: OwnerQuery = None) -> dict[str, Any]:
    items, total = sweep_store.list_sweeps(session, limit=limit, offset=offset, owner=owner)
    return {"items": [sweep_store.sweep_view(session, s, detail=False) for s in items], "total": total}


@router.get("/{sweep_id}", summary="One sweep: every grid point's criterion, each optimizer's best and edge flags")
def get_sweep_detail(sweep: SweepDep, session: SessionDep) -> dict[str, Any]:
    return sweep_store.sweep_view(session, sweep)


@router.post("/{sweep_id}/promote", status_code=201, response_model=ComparisonCreated,
             dependencies=[Depends(wake_scheduler)],
             summary="Compare the winners (+ extra optimizers) on fresh seeds (default 5)",
             responses=responses(FORBIDDEN, QUEUE_FULL))
def promote(sweep: SweepDep, session: SessionDep, request: Request, user: UserDep,
            body: PromoteRequest | None = None) -> dict[str, Any]:
    require_owner(user, sweep, "sweep", "promote")
    try:
        comparison, runs = sweep_store.promote(session, sweep, body or PromoteRequest(), owner=user.name)
    except (ValueError, ValidationError) as exc:
        session.rollback()
        field = "seeds" if "seeds" in str(exc) else "extra_optimizers"
        raise HTTPException(422, [{"loc": ["body", field], "type": "value_error", "msg": str(exc)}]) from None
    try:  # the new runs are flushed: the quotas count them (their configs are the sweep's, admitted before)
        admit_runs(request, session, [], user)
    except Exception:
        session.rollback()
        raise
    audit.record(session, user.name, "promote", "sweep", sweep.id, owner=sweep.owner,
                 detail={"comparison_id": comparison.id})
    audit.record(session, user.name, "create", "comparison", comparison.id, owner=user.name,
                 detail={"run_ids": [r.id for r in runs], "promoted_from_sweep": sweep.id})
    session.commit()
    return {"id": comparison.id, "run_ids": [r.id for r in runs]}


@router.post("/{sweep_id}/rerun", status_code=201, dependencies=[Depends(wake_scheduler)],
             responses=responses(FORBIDDEN, QUEUE_FULL), summary="Re-run every grid point without a result (its interrupted, cancelled or failed tuning runs)")
def rerun(sweep: SweepDep, session: SessionDep, request: Request, user: UserDep) -> dict[str, Any]:
    require_owner(user, sweep, "sweep", "re-run")
    admit_runs(request, session, [from_stored(run.config) for run in sweep_store.runs_to_rerun(session, sweep)], user)
    runs, replaced = sweep_store.rerun(session, sweep)
    for run, old in zip(runs, replaced):
        audit.record(session, user.name, "create", "run", run.id, owner=sweep.owner,
                     detail={"rerun_of": old, "sweep_id": sweep.id})
    session.commit()
    return {"run_ids": [r.id for r in runs], "replaced_run_ids": replaced}
