"""Comparison routes: launch one run per optimizer and seed, list, inspect, delete."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from backend import audit, store
from backend.deps import (MAX_ID, MAX_PAGE, ComparisonDep, OwnerQuery, SessionDep, UserDep, admit_runs,
                          require_owner, wake_scheduler)
from backend.errors import CONFLICT, FORBIDDEN, NOT_FOUND, QUEUE_FULL, responses
from backend.runner.scheduler import log_path
from backend.schemas import (AnnotationPatch, ComparisonCreate, ComparisonCreated, ComparisonDetail,
                             ComparisonList)

router = APIRouter(prefix="/comparisons", tags=["comparisons"])


@router.post("", status_code=201, response_model=ComparisonCreated, dependencies=[Depends(wake_scheduler)],
             summary="Queue one run per optimizer and seed (same seed: same initial weights and data order)",
             responses=QUEUE_FULL)
def create_comparison(body: ComparisonCreate, session: SessionDep, request: Request, user: UserDep
                      ) -> dict[str, Any]:
    admit_runs(request, session, [cfg for cfg, _label in body.run_configs()], user)
    comparison, runs = store.create_comparison(session, body, owner=user.name)
    audit.record(session, user.name, "create", "comparison", comparison.id, owner=user.name,
                 detail={"run_ids": [r.id for r in runs]})
    session.commit()
    return {"id": comparison.id, "run_ids": [r.id for r in runs]}


@router.get("", response_model=ComparisonList, summary="List comparisons, newest first")
def list_comparisons(session: SessionDep, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
                     offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0, owner: OwnerQuery = None) -> dict[str, Any]:
    items, total = store.list_comparisons(session, limit=limit, offset=offset, owner=owner)
    runs = store.comparison_runs(session, [c.id for c in items])
    return {"items": [store.comparison_view(c, runs[c.id]) for c in items], "total": total}


@router.get("/{comparison_id}", response_model=ComparisonDetail, summary="One comparison with its runs",
            responses=NOT_FOUND)
def get_comparison(comparison: ComparisonDep, session: SessionDep) -> dict[str, Any]:
    runs = store.comparison_runs(session, [comparison.id])[comparison.id]
    return store.comparison_view(comparison, runs, with_runs=True)


@router.patch("/{comparison_id}", response_model=ComparisonDetail, summary="Set a comparison's tags and/or note",
              responses=responses(NOT_FOUND, FORBIDDEN))
def annotate_comparison(comparison: ComparisonDep, body: AnnotationPatch, session: SessionDep, user: UserDep
                        ) -> dict[str, Any]:
    require_owner(user, comparison, "comparison", "edit")
    audit.record(session, user.name, "edit", "comparison", comparison.id, owner=comparison.owner,
                 detail=body.model_dump(exclude_none=True))
    store.annotate(session, comparison, tags=body.tags, note=body.note)
    runs = store.comparison_runs(session, [comparison.id])[comparison.id]
    return store.comparison_view(comparison, runs, with_runs=True)


@router.delete("/{comparison_id}", status_code=204, summary="Delete a comparison and its (finished) runs",
               responses=responses(NOT_FOUND, CONFLICT, FORBIDDEN))
def delete_comparison(comparison: ComparisonDep, session: SessionDep, request: Request, user: UserDep) -> Response:
    require_owner(user, comparison, "comparison", "delete")
    runs = store.comparison_runs(session, [comparison.id])[comparison.id]
    audit.record(session, user.name, "delete", "comparison", comparison.id, owner=comparison.owner,
                 detail={"name": comparison.name, "run_ids": [r.id for r in runs]})
    store.delete_comparison(session, comparison)
    for run in runs:
        log_path(request.app.state.settings, run.id).unlink(missing_ok=True)
    return Response(status_code=204)
