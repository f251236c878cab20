"""Run store operations: create, list, cancel and delete runs and comparisons; read metrics fast."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np
from sqlalchemy import Connection, bindparam, delete, func, select, text, update
from sqlalchemy.orm import Session

from backend.downsample import minmax_indices
from backend.rollup import block_of
from backend.schemas import ComparisonCreate, run_label
from backend.tables import (ACTIVE_STATUSES, EVAL_COLUMNS, METRIC_COLUMNS, Comparison, Evaluation,
                            MetricBlock, Reconstruction, Run, StepMetric, utcnow)
from trainer.config import RunConfig

__all__ = ["stored_config", "create_run", "create_comparison", "list_runs", "list_comparisons", "comparison_runs",
           "run_view", "comparison_view", "progress", "request_cancel", "delete_run", "delete_comparison",
           "metrics_page", "evaluations", "reconstruction_list", "reconstruction_png", "iter_metrics",
           "Conflict"]

_IN_CHUNK = 900  # bound parameters per IN (...) clause; below SQLite's historical limit of 999


class Conflict(Exception):
    """The request contradicts the run's state (→ HTTP 409); the message says what to do."""


# ---------------------------------------------------------------------------------------------- runs

def stored_config(config: RunConfig) -> dict[str, Any]:
    """The RunConfig as stored: JSON, with hyperparameters resolved and the batch size filled in."""
    data = config.model_dump(mode="json")
    data["optimizer"]["hyperparameters"] = config.optimizer.resolved()
    data["batch_size"] = config.effective_batch_size
    return data


def create_run(session: Session, config: RunConfig, *, comparison_id: int | None = None,
               label: str | None = None) -> Run:
    run = Run(config=stored_config(config), optimizer=config.optimizer.name, seed=config.seed,
              label=label or run_label(config.optimizer.name, config.optimizer.hyperparameters, config.seed,
                                       variants=config.variants()),
              comparison_id=comparison_id, status="queued", cancel_requested=False, created_at=utcnow())
    session.add(run)
    session.flush()
    return run


def create_comparison(session: Session, body: ComparisonCreate) -> tuple[Comparison, list[Run]]:
    comparison = Comparison(name=body.name, spec=body.model_dump(mode="json"), created_at=utcnow())
    session.add(comparison)
    session.flush()
    runs = [create_run(session, cfg, comparison_id=comparison.id, label=label) for cfg, label in body.run_configs()]
    return comparison, runs


def list_runs(session: Session, *, statuses: list[str] | None, comparison_id: int | None, limit: int,
              offset: int) -> tuple[list[Run], int]:
    """Newest first."""
    query = select(Run)
    if statuses:
        query = query.where(Run.status.in_(statuses))
    if comparison_id is not None:
        query = query.where(Run.comparison_id == comparison_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Run.id.desc()).limit(limit).offset(offset)).all()
    return list(items), int(total)


def progress(run: Run) -> float:
    """Fraction of the budget used: the largest of epochs, backprops and seconds used / allowed."""
    if run.status == "completed":
        return 1.0
    budget = (run.config or {}).get("budget") or {}
    fractions = [used / limit for used, limit in ((run.last_epoch, budget.get("epochs")),
                                                 (run.last_backprops, budget.get("backprops")),
                                                 (run.last_wall_time, budget.get("seconds")))
                 if used is not None and limit]
    return float(min(1.0, max(fractions))) if fractions else 0.0


def run_view(run: Run) -> dict[str, Any]:
    """The API's Run shape (RunOut)."""
    return {
        "id": run.id, "status": run.status, "comparison_id": run.comparison_id, "config": run.config,
        "optimizer": run.optimizer, "label": run.label, "seed": run.seed, "device": run.device,
        "error": run.error, "summary": run.summary, "progress": progress(run), "last_step": run.last_step,
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
    }


def request_cancel(session: Session, run: Run) -> Run:
    """Dequeue a queued run at once; flag a running one (the scheduler sends SIGTERM). Idempotent."""
    now = utcnow()
    dequeued = session.execute(
        update(Run).where(Run.id == run.id, Run.status == "queued")
        .values(status="cancelled", finished_at=now, error="cancelled before it started")).rowcount
    if not dequeued:
        session.execute(update(Run).where(Run.id == run.id, Run.status == "running").values(cancel_requested=True))
    session.commit()
    session.refresh(run)
    if run.status not in ("running", "cancelled"):
        raise Conflict(f"run {run.id} already ended with status {run.status!r}; there is nothing to cancel")
    return run


def _delete_run_rows(session: Session, run_ids: list[int]) -> None:
    for table in (StepMetric, MetricBlock, Evaluation, Reconstruction):
        session.execute(delete(table).where(table.run_id.in_(run_ids)))
    session.execute(delete(Run).where(Run.id.in_(run_ids)))


def delete_run(session: Session, run: Run) -> None:
    if run.status in ACTIVE_STATUSES:
        raise Conflict(f"run {run.id} is {run.status}; cancel it first (POST /api/runs/{run.id}/cancel), "
                       "then delete it once it has stopped")
    _delete_run_rows(session, [run.id])
    session.commit()


# ---------------------------------------------------------------------------------------- comparisons

def comparison_runs(session: Session, comparison_ids: Iterable[int]) -> dict[int, list[Run]]:
    ids = list(comparison_ids)
    out: dict[int, list[Run]] = {i: [] for i in ids}
    if ids:
        for run in session.scalars(select(Run).where(Run.comparison_id.in_(ids)).order_by(Run.id)):
            out[run.comparison_id].append(run)
    return out


def _comparison_status(runs: list[Run]) -> str:
    statuses = {r.status for r in runs}
    if not statuses:
        return "empty"
    if "running" in statuses:
        return "running"
    if "queued" in statuses:
        return "queued"
    return "completed" if statuses == {"completed"} else "finished"


def comparison_view(comparison: Comparison, runs: list[Run], *, with_runs: bool = False) -> dict[str, Any]:
    view = {"id": comparison.id, "name": comparison.name, "created_at": comparison.created_at,
            "run_ids": [r.id for r in runs], "status": _comparison_status(runs), "spec": comparison.spec}
    if with_runs:
        view["runs"] = [run_view(r) for r in runs]
    return view


def list_comparisons(session: Session, *, limit: int, offset: int) -> tuple[list[Comparison], int]:
    total = session.scalar(select(func.count()).select_from(Comparison)) or 0
    items = session.scalars(select(Comparison).order_by(Comparison.id.desc()).limit(limit).offset(offset)).all()
    return list(items), int(total)


def delete_comparison(session: Session, comparison: Comparison) -> None:
    runs = comparison_runs(session, [comparison.id])[comparison.id]
    active = [r.id for r in runs if r.status in ACTIVE_STATUSES]
    if active:
        raise Conflict(f"comparison {comparison.id} still has active runs {active}; cancel them first "
                       f"(POST /api/runs/{{id}}/cancel)")
    _delete_run_rows(session, [r.id for r in runs])
    session.execute(delete(Comparison).where(Comparison.id == comparison.id))
    session.commit()


# -------------------------------------------------------------------------------------------- metrics

_M = StepMetric.__table__
_E = Evaluation.__table__
_B = MetricBlock.__table__


def _rows_to_points(rows: Iterable[tuple], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row)) for row in rows]


def _range_count(conn: Connection, run_id: int, lower: int) -> int:
    cond = (_M.c.run_id == run_id) & (_M.c.step > lower)
    return int(conn.scalar(select(func.count()).select_from(_M).where(cond)) or 0)


def _loss_series(conn: Connection, run_id: int, lower: int, upper: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) with lower < step < upper; null losses become NaN."""
    cond = (_M.c.run_id == run_id) & (_M.c.step > lower)
    if upper is not None:
        cond &= _M.c.step < upper
    rows = conn.execute(select(_M.c.step, _M.c.train_loss).where(cond).order_by(_M.c.step)).all()
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    steps, losses = zip(*rows)
    return np.array(steps, dtype=np.int64), np.array(losses, dtype=np.float64)


def _full_rows(conn: Connection, run_id: int, steps: list[int]) -> list[dict[str, Any]]:
    columns = tuple(_M.c[name] for name in METRIC_COLUMNS)
    query = select(*columns).where(_M.c.run_id == run_id, _M.c.step.in_(bindparam("steps", expanding=True)))
    points: list[dict[str, Any]] = []
    for i in range(0, len(steps), _IN_CHUNK):
        points += _rows_to_points(conn.execute(query, {"steps": steps[i:i + _IN_CHUNK]}).all(), METRIC_COLUMNS)
    points.sort(key=lambda p: p["step"])
    return points


def _block_candidates(conn: Connection, run_id: int, lower: int, blocks: list[tuple]
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """Candidate (steps, losses) for downsampling and the point count, from block rollups plus raw edge rows.

    Candidates: the raw rows before the first full block, each block's min- and max-loss steps (in step
    order), the raw rows after the last block; the range's first and last steps are always among them.
    """
    columns = list(zip(*blocks))  # column-wise: much faster than per-Row access
    ints = np.array(columns[:5], dtype=np.int64).T  # first, last, count, min_step, max_step
    lo, hi = (np.array(c, dtype=np.float64) for c in columns[5:])  # None → NaN
    head_steps, head_losses = _loss_series(conn, run_id, lower, int(ints[0, 0]))
    tail_steps, tail_losses = _loss_series(conn, run_id, int(ints[-1, 1]))
    total = len(head_steps) + int(ints[:, 2].sum()) + len(tail_steps)
    min_first = ints[:, 3] <= ints[:, 4]
    pair_steps = np.where(min_first[:, None], ints[:, 3:5], ints[:, 4:2:-1]).ravel()
    pair_losses = np.where(min_first[:, None], np.stack((lo, hi), 1), np.stack((hi, lo), 1)).ravel()
    edges_first = [] if len(head_steps) else [int(ints[0, 0])]
    edges_last = [] if len(tail_steps) else [int(ints[-1, 1])]
    mid_steps = np.concatenate((np.asarray(edges_first, dtype=np.int64), pair_steps,
                                np.asarray(edges_last, dtype=np.int64)))
    mid_losses = np.concatenate((np.full(len(edges_first), np.nan), pair_losses, np.full(len(edges_last), np.nan)))
    fresh = np.ones(len(mid_steps), dtype=bool)
    fresh[1:] = mid_steps[1:] != mid_steps[:-1]  # a block whose min and max (or first) coincide
    steps = np.concatenate((head_steps, mid_steps[fresh], tail_steps))
    losses = np.concatenate((head_losses, mid_losses[fresh], tail_losses))
    return steps, losses, total


def metrics_page(conn: Connection, run_id: int, *, since_step: int | None, max_points: int) -> dict[str, Any]:
    """Points with step > ``since_step`` (all when None), min/max-downsampled to at most ``max_points``.

    Rejected TR steps are always kept (up to ``max_points / 4`` of them, evenly spread), so charts can
    mark every rejection. Every query is a range scan of a (run_id, step|block) primary key or index. Long ranges are downsampled from
    the block rollups (two candidates per 32 steps: the min- and max-loss steps) plus the raw rows of
    the partial blocks at either end, so the cost grows with n/32, not n; then only the kept steps'
    full rows are read. Ranges of fewer than ``max_points / 4`` blocks read (step, loss) of every row
    and downsample that.
    """
    lower = -1 if since_step is None else since_step
    last_step = conn.scalar(select(func.max(_M.c.step)).where(_M.c.run_id == run_id))
    if last_step is None or last_step <= lower:
        return {"points": [], "last_step": last_step, "total": 0, "downsampled": False}
    blocks = conn.execute(
        select(_B.c.first_step, _B.c.last_step, _B.c.count, _B.c.min_step, _B.c.max_step, _B.c.min_loss,
               _B.c.max_loss)
        .where(_B.c.run_id == run_id, _B.c.block >= block_of(lower + 1), _B.c.first_step > lower)
        .order_by(_B.c.block)).all()
    if 4 * len(blocks) >= max_points:  # at least max_points / 2 candidates: enough detail
        steps, losses, total = _block_candidates(conn, run_id, lower, blocks)
    else:  # fewer than 8 * max_points rows: read them
        total = _range_count(conn, run_id, lower)
        if total <= max_points:
            columns = tuple(_M.c[name] for name in METRIC_COLUMNS)
            rows = conn.execute(select(*columns).where(_M.c.run_id == run_id, _M.c.step > lower)
                                .order_by(_M.c.step)).all()
            return {"points": _rows_to_points(rows, METRIC_COLUMNS), "last_step": last_step, "total": total,
                    "downsampled": False}
        steps, losses = _loss_series(conn, run_id, lower)
    rejected = _rejected_steps(conn, run_id, lower, cap=max_points // 4) if max_points >= 8 else []
    keep = steps[minmax_indices(losses, max_points - len(rejected))].tolist()
    keep = sorted(set(keep).union(rejected))
    return {"points": _full_rows(conn, run_id, keep), "last_step": last_step, "total": total,
            "downsampled": len(keep) < total}


def _rejected_steps(conn: Connection, run_id: int, lower: int, *, cap: int) -> list[int]:
    """Steps after ``lower`` whose TR step was rejected (partial index), at most ``cap``, evenly spread."""
    steps = conn.scalars(select(_M.c.step).where(_M.c.run_id == run_id, _M.c.step > lower, text("NOT accepted"))
                         .order_by(_M.c.step)).all()
    if len(steps) <= cap:
        return list(steps)
    return [steps[i] for i in np.linspace(0, len(steps) - 1, cap).round().astype(np.int64).tolist()]


def iter_metrics(conn: Connection, run_id: int, *, chunk: int = 5000) -> Iterator[list[dict[str, Any]]]:
    """All step metrics of a run in step order, ``chunk`` rows at a time (keyset pagination)."""
    columns = tuple(_M.c[name] for name in METRIC_COLUMNS)
    after = -1
    while True:
        rows = conn.execute(select(*columns).where(_M.c.run_id == run_id, _M.c.step > after)
                            .order_by(_M.c.step).limit(chunk)).all()
        if not rows:
            return
        yield _rows_to_points(rows, METRIC_COLUMNS)
        after = rows[-1][0]


def evaluations(conn: Connection, run_id: int, *, since_step: int | None = None) -> list[dict[str, Any]]:
    lower = -1 if since_step is None else since_step
    columns = tuple(_E.c[name] for name in EVAL_COLUMNS)
    rows = conn.execute(select(*columns).where(_E.c.run_id == run_id, _E.c.step > lower).order_by(_E.c.step)).all()
    return _rows_to_points(rows, EVAL_COLUMNS)


def reconstruction_list(session: Session, run_id: int) -> dict[str, Any]:
    rows = session.execute(select(Reconstruction.kind, Reconstruction.step, Reconstruction.backprops)
                           .where(Reconstruction.run_id == run_id).order_by(Reconstruction.step)).all()
    recon = [r for r in rows if r.kind == "reconstruction"]
    return {"steps": [r.step for r in recon], "backprops": [r.backprops for r in recon],
            "has_original": any(r.kind == "original" for r in rows)}


def reconstruction_png(session: Session, run_id: int, *, kind: str = "reconstruction",
                       step: int | None = None) -> bytes | None:
    """The PNG at ``step`` (the newest when None), or None."""
    query = select(Reconstruction.png).where(Reconstruction.run_id == run_id, Reconstruction.kind == kind)
    if step is not None:
        query = query.where(Reconstruction.step == step)
    return session.scalar(query.order_by(Reconstruction.step.desc()).limit(1))
