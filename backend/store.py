"""Run store operations: create, list, cancel and delete runs and comparisons; read metrics fast."""
from __future__ import annotations

import json
from functools import cache, lru_cache
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from sqlalchemy import (BigInteger, Boolean, Connection, String, bindparam, delete, func, select, text,
                        union_all)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from trainer.downsample import minmax_indices
from backend.rollup import block_of
from backend.runner import lifecycle
from backend.runner.states import RunState
from backend.domain import ComparisonSpec, run_label, stored_config
from backend.tables import (ACTIVE_STATUSES, EVAL_COLUMNS, METRIC_COLUMNS, Comparison, Evaluation,
                            MetricBlock, Reconstruction, Run, StepMetric, utcnow)
from trainer.config import RunConfig
from trainer.identity import group_key, group_key_of_stored
from trainer.registry import OPTIMIZERS

__all__ = ["stored_config", "create_run", "create_comparison", "list_runs", "list_comparisons", "comparison_runs",
           "run_view", "comparison_view", "progress", "request_cancel", "delete_run", "delete_comparison",
           "metric_fields", "metric_rows", "metrics_page", "METRIC_LAYOUTS", "metrics_batch", "evaluations",
           "evaluation_columns", "reconstruction_list", "reconstruction_png", "iter_metrics",
           "Conflict", "annotate"]

_IN_CHUNK = 900  # bound parameters per IN (...) clause; below SQLite's historical limit of 999


class Conflict(Exception):
    """The request contradicts the run's state (→ HTTP 409); the message says what to do."""


# ---------------------------------------------------------------------------------------------- runs

def create_run(session: Session, config: RunConfig, *, comparison_id: int | None = None,
               label: str | None = None, owner: str = "local") -> Run:
    """A queued run owned by ``owner`` (a user name; routes pass the signed-in user)."""
    run = Run(config=stored_config(config), optimizer=config.optimizer.name, seed=config.seed, owner=owner,
              group_key=group_key(config),
              label=label or run_label(config.optimizer.name, config.optimizer.hyperparameters, config.seed,
                                       variants=config.variants()),
              comparison_id=comparison_id, status=lifecycle.INITIAL_STATE, cancel_requested=False, created_at=utcnow())
    session.add(run)
    session.flush()
    return run


def create_comparison(session: Session, body: ComparisonSpec, *, owner: str = "local"
                      ) -> tuple[Comparison, list[Run]]:
    comparison = Comparison(name=body.name, spec=body.model_dump(mode="json"), created_at=utcnow(), owner=owner)
    session.add(comparison)
    session.flush()
    runs = [create_run(session, cfg, comparison_id=comparison.id, label=label, owner=owner)
            for cfg, label in body.run_configs()]
    return comparison, runs


def list_runs(session: Session, *, statuses: list[str] | None, comparison_id: int | None, limit: int,
              offset: int, owner: str | None = None) -> tuple[list[Run], int]:
    """Newest first; ``owner``: only that user's."""
    query = select(Run)
    if owner is not None:
        query = query.where(Run.owner == owner)
    if statuses:
        query = query.where(Run.status.in_(statuses))
    if comparison_id is not None:
        query = query.where(Run.comparison_id == comparison_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Run.id.desc()).limit(limit).offset(offset)).all()
    return list(items), int(total)


def progress(run: Run) -> float:
    """Fraction of the budget used: the largest of epochs, backprops and seconds used / allowed."""
    if run.status == RunState.COMPLETED:
        return 1.0
    budget = (run.config or {}).get("budget") or {}
    fractions = [used / limit for used, limit in ((run.last_epoch, budget.get("epochs")),
                                                 (run.last_backprops, budget.get("backprops")),
                                                 (run.last_wall_time, budget.get("seconds")))
                 if used is not None and limit]
    return float(min(1.0, max(fractions))) if fractions else 0.0


def _family(optimizer: str) -> str | None:
    """The registry's family of ``optimizer`` (None for a name no longer registered)."""
    info = OPTIMIZERS.get(optimizer)
    return info.family if info is not None else None


def run_view(run: Run) -> dict[str, Any]:
    """The API's Run shape (RunOut)."""
    return {
        "id": run.id, "status": run.status, "comparison_id": run.comparison_id, "config": run.config,
        "optimizer": run.optimizer, "family": _family(run.optimizer), "label": run.label, "seed": run.seed,
        "group_key": run.group_key or group_key_of_stored(run.config or {}), "device": run.device,
        "error": run.error, "summary": run.summary, "progress": progress(run), "last_step": run.last_step,
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
        "tags": list(run.tags or []), "note": run.note or "", "owner": run.owner,
    }


def annotate(session: Session, obj: Run | Comparison, *, tags: list[str] | None, note: str | None) -> None:
    """Replace the tags and/or the note of a run or comparison (``None``: leave as is); commits."""
    if tags is not None:
        obj.tags = list(tags)
    if note is not None:
        obj.note = note
    session.commit()


def request_cancel(session: Session, run: Run) -> Run:
    """Dequeue a queued run at once; flag a running one (the runner stops it). Idempotent (lifecycle module)."""
    try:
        return lifecycle.request_cancel(session, run)
    except lifecycle.CancelRefused as exc:
        raise Conflict(str(exc)) from None


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
    if RunState.RUNNING in statuses:
        return "running"
    if RunState.QUEUED in statuses:
        return "queued"
    return "completed" if statuses == {RunState.COMPLETED} else "finished"


def comparison_view(comparison: Comparison, runs: list[Run], *, with_runs: bool = False) -> dict[str, Any]:
    view = {"id": comparison.id, "name": comparison.name, "created_at": comparison.created_at,
            "run_ids": [r.id for r in runs], "status": _comparison_status(runs), "spec": comparison.spec,
            "tags": list(comparison.tags or []), "note": comparison.note or "", "owner": comparison.owner}
    if with_runs:
        view["runs"] = [run_view(r) for r in runs]
    return view


def list_comparisons(session: Session, *, limit: int, offset: int, owner: str | None = None
                     ) -> tuple[list[Comparison], int]:
    query = select(Comparison)
    if owner is not None:
        query = query.where(Comparison.owner == owner)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Comparison.id.desc()).limit(limit).offset(offset)).all()
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
_R = Run.__table__

def metric_fields(fields: Iterable[str] | None) -> tuple[str, ...]:
    """The validated field selection, ``step`` first (always included); None → every column.

    Raises:
        ValueError: naming the unknown fields and the known ones.
    """
    if fields is None:
        return METRIC_COLUMNS
    wanted = [f.strip() for f in fields if f and f.strip()]
    unknown = sorted({f for f in wanted if f not in METRIC_COLUMNS})
    if unknown:
        raise ValueError(f"Invalid field(s) {unknown}; choose from {list(METRIC_COLUMNS)}")
    out = ["step"] + [f for f in METRIC_COLUMNS if f != "step" and f in set(wanted)]
    return tuple(out)


# Metric columns the driver may return as integers (SQLite stores booleans as 0/1).
_BOOL_FIELDS = frozenset(c.name for c in StepMetric.__table__.columns if isinstance(c.type, Boolean))


def _as_bools(values: Iterable[Any]) -> list[bool | None]:
    return [None if v is None else bool(v) for v in values]


def _rows_to_points(rows: Iterable[tuple], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    points = [dict(zip(columns, row)) for row in rows]
    for name in _BOOL_FIELDS.intersection(columns):
        for point in points:
            value = point[name]
            if value is not None and value is not True and value is not False:
                point[name] = bool(value)
    return points


def _rows_to_columns(rows: list[tuple], columns: tuple[str, ...]) -> dict[str, list[Any]]:
    if not rows:
        return {c: [] for c in columns}
    return {c: _as_bools(values) if c in _BOOL_FIELDS else list(values) for c, values in zip(columns, zip(*rows))}


# The metric queries are built once (bind parameters: run_id, lower < step <= upper, ...) and reused: building
# a SQLAlchemy statement costs about as much as running a small one. ``upper`` is _TOP when there is no bound.
_TOP = 2**62  # above every step (steps are BIGINT)


def _steps_in(lower: str = "lower", upper: str = "upper") -> Any:
    return ((_M.c.run_id == bindparam("run_id")) & (_M.c.step > bindparam(lower, type_=BigInteger))
            & (_M.c.step <= bindparam(upper, type_=BigInteger)))


def _range(run_id: int, lower: int, upper: int | None) -> dict[str, int]:
    """The bind parameters of lower < step <= upper (no upper bound when None) for one run."""
    return {"run_id": run_id, "lower": lower, "upper": _TOP if upper is None else upper}


# The complete blocks inside lower < step <= upper (block_lo = block_of(lower + 1), block_hi = block_of(upper)).
_BLOCKS_IN = ((_B.c.run_id == bindparam("run_id")) & (_B.c.block >= bindparam("block_lo", type_=BigInteger))
              & (_B.c.first_step > bindparam("lower", type_=BigInteger))
              & (_B.c.block <= bindparam("block_hi", type_=BigInteger))
              & (_B.c.last_step <= bindparam("upper", type_=BigInteger)))
_LAST_STEP = select(func.max(_M.c.step)).where(_M.c.run_id == bindparam("run_id"))
_RANGE_COUNT = select(func.count()).select_from(_M).where(_steps_in())
_LOSSES = select(_M.c.step, _M.c.train_loss).where(_steps_in()).order_by(_M.c.step)
_BLOCK_SPAN = select(func.count(), func.min(_B.c.first_step), func.max(_B.c.last_step),
                     func.sum(_B.c.count)).where(_BLOCKS_IN)
_BLOCK_PAIRS = select(_B.c.min_step, _B.c.max_step, _B.c.min_loss, _B.c.max_loss).where(_BLOCKS_IN).order_by(_B.c.block)
_EDGES = union_all(select(_M.c.step, _M.c.train_loss).where(_steps_in("lower", "head_upper")),
                   select(_M.c.step, _M.c.train_loss).where(_steps_in("tail_lower", "upper"))).subquery()
_EDGE_LOSSES = select(_EDGES).order_by(_EDGES.c.step)  # raw rows before the first and after the last block
_REJECTED = _steps_in() & text("NOT accepted")
_REJECTED_HEAD = select(_M.c.step).where(_REJECTED).order_by(_M.c.step).limit(bindparam("cap"))
_REJECTED_LAST = select(func.max(_M.c.step)).where(_REJECTED)
_REJECTED_AT_OR_AFTER = select(func.min(_M.c.step)).where(_REJECTED, _M.c.step >= bindparam("t", type_=BigInteger))


def _fetch(conn: Connection, query: Any, params: dict[str, Any]) -> list[tuple]:
    """A query's rows as plain DBAPI tuples: no per-row SQLAlchemy processing (several times less CPU). Values
    come as the driver returns them: booleans are 0/1 on SQLite (the layouts make them bool)."""
    return conn.execute(query, params).cursor.fetchall()


def _range_count(conn: Connection, run_id: int, lower: int, upper: int | None) -> int:
    return int(conn.scalar(_RANGE_COUNT, _range(run_id, lower, upper)) or 0)


def _pairs(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) of (step, loss) rows; null losses become NaN."""
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    pairs = np.array(rows, dtype=np.float64)  # None -> NaN; steps stay exact below 2**53
    return pairs[:, 0].astype(np.int64), pairs[:, 1]


def _loss_series(conn: Connection, run_id: int, lower: int, upper: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) with lower < step <= upper; null losses become NaN."""
    return _pairs(_fetch(conn, _LOSSES, _range(run_id, lower, upper)))


@lru_cache(maxsize=256)
def _rows_in_range(fields: tuple[str, ...]) -> Any:
    return select(*(_M.c[name] for name in fields)).where(_steps_in()).order_by(_M.c.step)


def _values_sqlite() -> Any:
    return func.json_each(bindparam("kept", type_=String)).table_valued("value")


def _values_postgresql() -> Any:
    return func.unnest(bindparam("kept", type_=ARRAY(BigInteger))).table_valued("value").render_derived()


# Dialect → (a table-valued expression of the list of steps bound as "kept", how that list is bound), so kept
# rows are looked up by one semi-join.
_STEP_VALUES: dict[str, tuple[Callable[[], Any], Callable[[list[int]], Any]]] = {
    "sqlite": (_values_sqlite, json.dumps), "postgresql": (_values_postgresql, list)}


@lru_cache(maxsize=256)
def _rows_at_steps(dialect: str, fields: tuple[str, ...]) -> Any:
    kept = _STEP_VALUES[dialect][0]()
    return (select(*(_M.c[name] for name in fields))
            .where(_M.c.run_id == bindparam("run_id"), _M.c.step.in_(select(kept.c.value))).order_by(_M.c.step))


@lru_cache(maxsize=256)  # keyed by the client's field selection: bounded
def _rows_in_list(fields: tuple[str, ...]) -> Any:
    return select(*(_M.c[name] for name in fields)).where(_M.c.run_id == bindparam("run_id"),
                                                           _M.c.step.in_(bindparam("steps", expanding=True)))


@cache
def _rejected_spread(dialect: str) -> Any:
    """For each target step (bound as "kept"), the first rejection at or after it and at most ``last``."""
    target = _STEP_VALUES[dialect][0]()
    inner = _M.alias("rejected")
    seek = (select(func.min(inner.c.step))
            .where(inner.c.run_id == bindparam("run_id"), inner.c.step >= target.c.value,
                   inner.c.step <= bindparam("last", type_=BigInteger), text("NOT rejected.accepted"))
            .scalar_subquery())
    return select(seek).select_from(target)


def _rows_at(conn: Connection, run_id: int, steps: list[int], fields: tuple[str, ...]) -> list[tuple]:
    """The ``fields`` of the rows at ``steps`` (sorted), as plain DBAPI tuples: one semi-join against the steps
    passed as one table-valued parameter (SQLite ``json_each``, PostgreSQL ``unnest``), chunked IN-lists on other
    databases."""
    values = _STEP_VALUES.get(conn.dialect.name)
    if values is not None:  # a semi-join: the planner seeks the primary key once per kept step
        return _fetch(conn, _rows_at_steps(conn.dialect.name, fields), {"run_id": run_id, "kept": values[1](steps)})
    rows: list[tuple] = []
    for i in range(0, len(steps), _IN_CHUNK):
        rows += _fetch(conn, _rows_in_list(fields), {"run_id": run_id, "steps": steps[i:i + _IN_CHUNK]})
    rows.sort(key=lambda r: r[0])
    return rows


def _block_params(run_id: int, lower: int, upper: int | None) -> dict[str, int]:
    top = _TOP if upper is None else upper
    return {"run_id": run_id, "lower": lower, "upper": top, "block_lo": block_of(lower + 1), "block_hi": block_of(top)}


def _block_candidates(conn: Connection, run_id: int, lower: int, upper: int | None, span: tuple[int, int, int]
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """Candidate (steps, losses) for downsampling and the point count, from block rollups plus raw edge rows.

    ``span``: (first step of the first block, last step of the last block, steps in the blocks). Candidates: the
    raw rows before the first block, each block's min- and max-loss steps (in step order), the raw rows after
    the last block; the range's first and last steps are always among them. The blocks are read as four
    plain columns (their count and edges come from one aggregate beforehand), the edge rows with one
    statement of two primary-key ranges.
    """
    first, last, counted = span
    blocks = _fetch(conn, _BLOCK_PAIRS, _block_params(run_id, lower, upper))
    cols = np.array(blocks, dtype=np.float64)  # None (no finite loss in a block) -> NaN; steps exact below 2**53
    edge_steps, edge_losses = _pairs(_fetch(conn, _EDGE_LOSSES, {**_range(run_id, lower, upper),
                                                                 "head_upper": first - 1, "tail_lower": last}))
    n_head = int(np.searchsorted(edge_steps, first))
    head_steps, head_losses = edge_steps[:n_head], edge_losses[:n_head]
    tail_steps, tail_losses = edge_steps[n_head:], edge_losses[n_head:]
    total = n_head + counted + len(tail_steps)
    min_first = cols[:, 0] <= cols[:, 1]
    pair_steps = np.where(min_first[:, None], cols[:, 0:2], cols[:, 1::-1]).astype(np.int64).ravel()
    pair_losses = np.where(min_first[:, None], cols[:, 2:4], cols[:, 3:1:-1]).ravel()
    edges_first = [] if len(head_steps) else [first]
    edges_last = [] if len(tail_steps) else [last]
    mid_steps = np.concatenate((np.asarray(edges_first, dtype=np.int64), pair_steps,
                                np.asarray(edges_last, dtype=np.int64)))
    mid_losses = np.concatenate((np.full(len(edges_first), np.nan), pair_losses, np.full(len(edges_last), np.nan)))
    fresh = np.ones(len(mid_steps), dtype=bool)
    fresh[1:] = mid_steps[1:] != mid_steps[:-1]  # a block whose min and max (or first) coincide
    steps = np.concatenate((head_steps, mid_steps[fresh], tail_steps))
    losses = np.concatenate((head_losses, mid_losses[fresh], tail_losses))
    return steps, losses, total


def metric_rows(conn: Connection, run_id: int, *, since_step: int | None, max_points: int,
                fields: tuple[str, ...] = METRIC_COLUMNS, until_step: int | None = None
                ) -> tuple[list[tuple], int | None, int, bool]:
    """(rows of ``fields``, last stored step, points in range, downsampled) for since_step < step <= until_step.

    Rows are plain DBAPI tuples (booleans may be 0/1; :func:`metrics_page`'s layouts make them bool).
    At most ``max_points`` rows, min/max-downsampled on the training loss. Rejected TR steps are always
    kept (up to ``max_points / 4`` of them, evenly spread, picked in SQL by a join), so charts can
    mark every rejection. Every query is a range scan of a (run_id, step|block) primary key or index. Long
    ranges are downsampled from the block rollups (two candidates per 32 steps: the min- and max-loss steps)
    plus the raw rows of the partial blocks at either end, so the cost grows with n/32, not n; then the kept
    steps' rows are read by one join against the list of kept steps. Ranges of fewer than ``max_points / 4``
    blocks read (step, loss) of every row and downsample that.
    """
    lower = -1 if since_step is None else since_step
    last_step = conn.scalar(_LAST_STEP, {"run_id": run_id})
    if last_step is None or last_step <= lower or (until_step is not None and until_step <= lower):
        return [], last_step, 0, False
    n_blocks, first, last, counted = conn.execute(_BLOCK_SPAN, _block_params(run_id, lower, until_step)).one()
    if 4 * n_blocks >= max_points:  # at least max_points / 2 candidates: enough detail
        steps, losses, total = _block_candidates(conn, run_id, lower, until_step,
                                                 (int(first), int(last), int(counted)))
    else:  # fewer than 8 * max_points rows: read them
        total = _range_count(conn, run_id, lower, until_step)
        if total <= max_points:
            return _fetch(conn, _rows_in_range(fields), _range(run_id, lower, until_step)), last_step, total, False
        steps, losses = _loss_series(conn, run_id, lower, until_step)
    rejected = _rejected_steps(conn, run_id, lower, until_step, cap=max_points // 4) if max_points >= 8 else []
    keep = steps[minmax_indices(losses, max_points - len(rejected))].tolist()
    keep = sorted(set(keep).union(rejected))
    return _rows_at(conn, run_id, keep, fields), last_step, total, len(keep) < total


def metrics_page(conn: Connection, run_id: int, *, since_step: int | None, max_points: int,
                 fields: tuple[str, ...] = METRIC_COLUMNS, until_step: int | None = None,
                 layout: str = "rows") -> dict[str, Any]:
    """The metrics response: row-wise (``points``: one dict per step) or column-wise (``columns``: one array
    per field, ``fields`` naming them in order). See :func:`metric_rows` for the selection."""
    rows, last_step, total, downsampled = metric_rows(conn, run_id, since_step=since_step, max_points=max_points,
                                                      fields=fields, until_step=until_step)
    return {**_LAYOUTS[layout](rows, fields), "last_step": last_step, "total": total, "downsampled": downsampled}


_LAYOUTS: dict[str, Callable[[list[tuple], tuple[str, ...]], dict[str, Any]]] = {
    "rows": lambda rows, fields: {"points": _rows_to_points(rows, fields)},
    "columns": lambda rows, fields: {"fields": list(fields), "columns": _rows_to_columns(rows, fields)},
}
METRIC_LAYOUTS = tuple(_LAYOUTS)


def metrics_batch(conn: Connection, cursors: list[tuple[int, int | None, int | None, tuple[str, ...] | None]], *,
                  comparison_id: int | None, fields: tuple[str, ...], max_points: int, evals: bool,
                  point_cap: int | None = None) -> list[dict[str, Any]]:
    """Column-wise new points of several runs in one call: the runs of ``comparison_id`` (if given) and the
    ``cursors`` (run id, since_step, eval_since_step, fields or None for ``fields``); a comparison's runs without
    a cursor start from scratch.

    Raises:
        LookupError: naming the run ids (or the comparison) that do not exist.
        ValueError: a cursor names a run outside the comparison, or runs x max_points exceeds ``point_cap``.
    """
    since = {rid: (s, e, f) for rid, s, e, f in cursors}
    runs = _R.c
    if comparison_id is not None:
        if conn.scalar(select(Comparison.__table__.c.id).where(Comparison.__table__.c.id == comparison_id)) is None:
            raise LookupError(f"comparison {comparison_id} not found; GET /api/comparisons lists them")
        found = conn.execute(select(runs.id, runs.status).where(runs.comparison_id == comparison_id)
                             .order_by(runs.id)).all()
        outside = sorted(set(since) - {r[0] for r in found})
        if outside:
            raise ValueError(f"Invalid runs: {outside} are not in comparison {comparison_id}; "
                             "leave them out or drop comparison_id")
    else:
        found = conn.execute(select(runs.id, runs.status).where(runs.id.in_(list(since))).order_by(runs.id)).all()
        missing = sorted(set(since) - {r[0] for r in found})
        if missing:
            raise LookupError(f"run(s) {missing} not found; GET /api/runs lists the runs")
    if point_cap is not None and len(found) * max_points > point_cap:
        raise ValueError(f"Invalid max_points: {len(found)} runs x {max_points} exceeds {point_cap} points; "
                         "lower max_points or ask for fewer runs")
    out = []
    for run_id, status in found:
        since_step, eval_since, own_fields = since.get(run_id, (None, None, None))
        page = metrics_page(conn, run_id, since_step=since_step, max_points=max_points, fields=own_fields or fields,
                            layout="columns")
        item = {"id": run_id, "status": status, **page}
        if evals:
            item["evals"] = evaluation_columns(conn, run_id, since_step=eval_since)
        out.append(item)
    return out


def _rejected_steps(conn: Connection, run_id: int, lower: int, upper: int | None, *, cap: int) -> list[int]:
    """Steps in range whose TR step was rejected, at most ``cap``, spread evenly over the steps.

    All of them when there are at most ``cap`` (read with ``LIMIT cap + 1``: never more rows than that).
    Otherwise, in SQL: ``cap`` target steps evenly spaced from the first to the last rejection are passed as
    one table-valued parameter, and each target is joined to the first rejection at or after it (a short
    index range each), so the cost grows with ``cap``, not with the number of rejections (a count of 20,000
    rejections alone costs more than all the seeks). The first and the last rejection are always kept.
    """
    params = _range(run_id, lower, upper)
    head = [row[0] for row in _fetch(conn, _REJECTED_HEAD, {**params, "cap": cap + 1})]
    if len(head) <= cap:
        return head
    values = _STEP_VALUES.get(conn.dialect.name)
    last = int(conn.scalar(_REJECTED_LAST, params))
    targets = np.unique(np.linspace(head[0], last, cap).round().astype(np.int64)).tolist()
    if values is None:  # other databases: one query per target
        found = {conn.scalar(_REJECTED_AT_OR_AFTER, {**params, "t": t}) for t in targets}
    else:
        found = {row[0] for row in _fetch(conn, _rejected_spread(conn.dialect.name),
                                          {"run_id": run_id, "last": last, "kept": values[1](targets)})}
    return sorted(int(s) for s in found if s is not None)


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


def _evaluation_rows(conn: Connection, run_id: int, since_step: int | None) -> list[tuple]:
    lower = -1 if since_step is None else since_step
    columns = tuple(_E.c[name] for name in EVAL_COLUMNS)
    return list(conn.execute(select(*columns).where(_E.c.run_id == run_id, _E.c.step > lower)
                             .order_by(_E.c.step)).all())


def evaluations(conn: Connection, run_id: int, *, since_step: int | None = None) -> list[dict[str, Any]]:
    return _rows_to_points(_evaluation_rows(conn, run_id, since_step), EVAL_COLUMNS)


def evaluation_columns(conn: Connection, run_id: int, *, since_step: int | None = None) -> dict[str, Any]:
    """Evaluations after ``since_step``, column-wise: ``{"fields": [...], "columns": {field: [...]}}``."""
    return {"fields": list(EVAL_COLUMNS), "columns": _rows_to_columns(_evaluation_rows(conn, run_id, since_step),
                                                                      EVAL_COLUMNS)}


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
