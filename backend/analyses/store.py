"""Stored analyses: create (validated against the run), list, view, and the job transitions of the runner/worker."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from backend.analyses.schemas import MAX_ACTIVE_ANALYSES, HessianRequest
from backend.store import Conflict
from backend.tables import ACTIVE_STATUSES, Analysis, Run, utcnow

__all__ = ["Refused", "create_hessian", "list_analyses", "get_analysis", "analysis_view", "claim", "start_next",
           "save_progress", "finish", "recover", "model_parameter_count"]


class Refused(ValueError):
    """The request does not fit the run (→ 422); ``loc`` names the field, the message says the fix."""

    def __init__(self, loc: list[str], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def model_parameter_count(model: str, dataset: str) -> int:
    """Trainable parameters of a registry model, counted on the meta device (no memory, no weights; torch-free
    in the API process: :func:`backend.limits.model_sizes`)."""
    from backend.limits import model_sizes

    return model_sizes(model, dataset)[1]


def create_hessian(session: Session, run: Run, request: HessianRequest, *, owner: str = "local") -> Analysis:
    """Queue a Hessian analysis of ``run`` (not committed).

    Raises:
        Conflict: the run has not finished, or too many analyses are waiting.
        Refused: a checkpoint beyond the run's last step, a batch larger than its training set, or a model
            too large for a dense Hessian.
    """
    from trainer.analysis.sizes import MAX_HESSIAN_PARAMETERS, check_size

    if run.status in ACTIVE_STATUSES:
        raise Conflict(f"run {run.id} is {run.status}; analyse it once it has finished")
    config = run.config or {}
    try:
        check_size(model_parameter_count(str(config.get("model")), str(config.get("dataset"))), MAX_HESSIAN_PARAMETERS)
    except ValueError as exc:
        raise Refused(["path", "run_id"], f"run {run.id}: {exc}") from exc
    last = run.last_step or 0
    steps = request.resolve_steps(last)
    beyond = [s for s in steps if s > last]
    if beyond:
        raise Refused(["body", "steps"], f"steps {beyond} are beyond run {run.id}'s last step {last}; "
                                         f"choose steps in 0..{last} (0 = initialization)")
    train_size = (run.info or {}).get("train_size")
    if isinstance(train_size, int) and request.batch_size > train_size:
        raise Refused(["body", "batch_size"], f"batch_size {request.batch_size} exceeds run {run.id}'s training set "
                                              f"of {train_size} samples; use at most {train_size}")
    active = session.scalar(select(func.count()).select_from(Analysis).where(Analysis.status.in_(ACTIVE_STATUSES)))
    if (active or 0) >= MAX_ACTIVE_ANALYSES:
        raise Conflict(f"{active} analyses are already queued or running (the limit is {MAX_ACTIVE_ANALYSES}); "
                       "wait for them to finish")
    analysis = Analysis(run_id=run.id, kind="hessian", status="queued", owner=owner,
                        params={**request.model_dump(), "checkpoint_steps": steps})
    session.add(analysis)
    session.flush()
    return analysis


def list_analyses(session: Session, run_id: int) -> list[Analysis]:
    return list(session.scalars(select(Analysis).where(Analysis.run_id == run_id).order_by(Analysis.id.desc())))


def get_analysis(session: Session, run_id: int, analysis_id: int) -> Analysis | None:
    analysis = session.get(Analysis, analysis_id)
    return analysis if analysis is not None and analysis.run_id == run_id else None


def analysis_view(analysis: Analysis, *, heatmaps: bool = True) -> dict[str, Any]:
    """The API's AnalysisOut shape; ``heatmaps=False`` drops the |H| grids (lists stay small)."""
    result = analysis.result
    if result is not None and not heatmaps:
        result = {**result, "checkpoints": [{k: v for k, v in c.items() if k not in ("heatmap", "heatmap_edges")}
                                            for c in result.get("checkpoints", [])]}
    total = len(analysis.params.get("checkpoint_steps", []))
    done = len((analysis.result or {}).get("checkpoints", []))
    return {"id": analysis.id, "run_id": analysis.run_id, "kind": analysis.kind, "status": analysis.status,
            "params": analysis.params, "progress": {"done": done, "total": total}, "error": analysis.error,
            "result": result, "created_at": analysis.created_at, "started_at": analysis.started_at,
            "finished_at": analysis.finished_at, "owner": analysis.owner}


# -- job transitions (runner in the API process, worker in its own process) ---------------------------

def start_next(engine: Engine) -> int | None:
    """Claim the oldest queued analysis (→ "running") and return its id; None when none is queued."""
    with engine.begin() as conn:
        queued = conn.scalars(select(Analysis.id).where(Analysis.status == "queued").order_by(Analysis.id)
                              .limit(8)).all()
        for analysis_id in queued:
            if conn.execute(update(Analysis).where(Analysis.id == analysis_id, Analysis.status == "queued")
                            .values(status="running", started_at=utcnow())).rowcount:
                return analysis_id
    return None


def claim(engine: Engine, analysis_id: int, pid: int) -> dict[str, Any] | None:
    """The worker's start: record its pid; a queued analysis (started by hand) becomes running. Returns the
    analysis params with the run's config and last backprops, or None when there is nothing to do."""
    with engine.begin() as conn:
        row = conn.execute(select(Analysis.status, Analysis.params, Analysis.run_id)
                           .where(Analysis.id == analysis_id)).first()
        if row is None or row.status not in ("queued", "running"):
            return None
        conn.execute(update(Analysis).where(Analysis.id == analysis_id)
                     .values(status="running", pid=pid, started_at=func.coalesce(Analysis.started_at, utcnow())))
        run = conn.execute(select(Run.config, Run.last_backprops).where(Run.id == row.run_id)).first()
    if run is None:
        return None
    return {"params": row.params, "run_id": row.run_id, "config": run.config, "last_backprops": run.last_backprops}


def save_progress(engine: Engine, analysis_id: int, result: dict[str, Any]) -> None:
    """Store the results so far (checkpoints finished); the page draws them while the rest is computed."""
    with engine.begin() as conn:
        conn.execute(update(Analysis).where(Analysis.id == analysis_id, Analysis.status == "running")
                     .values(result=result))


def finish(engine: Engine, analysis_id: int, status: str, error: str | None,
           result: dict[str, Any] | None = None) -> bool:
    """Set the final status of a running analysis (never overwrite one set elsewhere); keeps partial results."""
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow()}
    if result is not None:
        values["result"] = result
    with engine.begin() as conn:
        done = conn.execute(update(Analysis).where(Analysis.id == analysis_id, Analysis.status == "running")
                            .values(**values)).rowcount
    return bool(done)


def recover(engine: Engine) -> int:
    """Fail analyses left "running" by an earlier API process (their workers stop when it is gone)."""
    with engine.begin() as conn:
        return conn.execute(update(Analysis).where(Analysis.status == "running").values(
            status="failed", finished_at=utcnow(),
            error="interrupted: the API process running it stopped; launch the analysis again")).rowcount
