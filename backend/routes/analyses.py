"""Analysis routes: queue a Hessian-structure analysis of a finished run (a job in its own process), list, inspect."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from backend.analyses import store
from backend.analyses.runner import runner_for
from backend.analyses.schemas import AnalysisList, AnalysisOut, HessianRequest
from backend import audit
from backend.deps import MAX_ID, RunDep, SessionDep, UserDep

router = APIRouter(prefix="/runs/{run_id}/analyses", tags=["analyses"])


def _wake(request: Request) -> None:
    runner = runner_for(request.app.state)
    if runner is not None:
        runner.wake()


@router.post("/hessian", status_code=202, response_model=AnalysisOut,
             summary="Queue a Hessian-structure analysis (paper Fig. 2) of a finished run")
def create_hessian(body: HessianRequest, run: RunDep, session: SessionDep, request: Request, user: UserDep
                   ) -> dict[str, Any]:
    try:
        analysis = store.create_hessian(session, run, body, owner=user.name)
    except store.Refused as exc:
        raise HTTPException(422, [{"loc": exc.loc, "type": "value_error", "msg": str(exc)}]) from exc
    audit.record(session, user.name, "create", "analysis", analysis.id, owner=user.name, detail={"run_id": run.id})
    session.commit()
    _wake(request)
    return store.analysis_view(analysis)


@router.get("", response_model=AnalysisList, summary="A run's analyses, newest first (results without heatmaps)")
def list_analyses(run: RunDep, session: SessionDep, request: Request) -> dict[str, Any]:
    _wake(request)  # starts the runner on first use, so analyses queued before a restart proceed
    return {"items": [store.analysis_view(a, heatmaps=False) for a in store.list_analyses(session, run.id)]}


@router.get("/{analysis_id}", response_model=AnalysisOut, summary="One analysis with its results and heatmaps")
def get_analysis(run: RunDep, session: SessionDep,
                 analysis_id: Annotated[int, Path(ge=0, le=MAX_ID, description="analysis id")],
                 heatmaps: Annotated[bool, Query(description="include the |H| heatmaps")] = True) -> dict[str, Any]:
    analysis = store.get_analysis(session, run.id, analysis_id)
    if analysis is None:
        raise HTTPException(404, f"analysis {analysis_id} of run {run.id} not found; "
                                 f"GET /api/runs/{run.id}/analyses lists them")
    return store.analysis_view(analysis, heatmaps=heatmaps)
