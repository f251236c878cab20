"""Batched metrics route: new points of many runs (a comparison or a list) in one column-wise request."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from backend import store
from backend.deps import ConnectionDep
from backend.routes.runs import _json
from backend.schemas import MAX_BATCH_POINTS, MetricsBatch, MetricsBatchRequest

router = APIRouter(prefix="/metrics", tags=["metrics"])


def _unprocessable(field: str, msg: str, value: object) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "type": "value_error", "input": value, "msg": msg}])


@router.post("/batch", response_model=MetricsBatch,
             summary="New points of many runs in one request (column-wise, selected fields, downsampled)")
def batch(body: MetricsBatchRequest, conn: ConnectionDep) -> Response:
    try:
        fields = store.metric_fields(body.fields)
        cursors = [(c.id, c.since_step, c.eval_since_step, None if c.fields is None else store.metric_fields(c.fields))
                   for c in body.runs]
    except ValueError as exc:
        raise _unprocessable("fields", str(exc), body.fields) from None
    try:
        runs = store.metrics_batch(conn, cursors, comparison_id=body.comparison_id, fields=fields,
                                   max_points=body.max_points, evals=body.evals, point_cap=MAX_BATCH_POINTS)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise _unprocessable("runs", str(exc), [c[0] for c in cursors]) from None
    return _json({"runs": runs})
