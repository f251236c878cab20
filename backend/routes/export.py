"""Run export route: a run's records streamed as CSV (one table) or one JSON document, chunk by chunk."""
from __future__ import annotations

import csv
import io
import itertools
import json
from typing import Annotated, Any, Iterator, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from backend import store
from backend.deps import RunDep, SessionDep
from backend.errors import NOT_FOUND
from backend.schemas import RunOut
from backend.tables import EVAL_COLUMNS, METRIC_COLUMNS

router = APIRouter(prefix="/runs", tags=["runs"])

__all__ = ["router", "csv_rows", "json_document"]


def csv_rows(engine: Engine, run_id: int, table: str) -> Iterator[str]:
    """The ``table`` ("metrics" or "evals") of a run as CSV text, header first, one piece per stored chunk."""
    columns = METRIC_COLUMNS if table == "metrics" else EVAL_COLUMNS
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    with engine.connect() as conn:
        chunks = store.iter_metrics(conn, run_id) if table == "metrics" else [store.evaluations(conn, run_id)]
        for chunk in chunks:
            writer.writerows([[("" if p[c] is None else p[c]) for c in columns] for p in chunk])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def json_document(engine: Engine, run_id: int, view: Any) -> Iterator[str]:
    """``{"run": ..., "metrics": [...], "evaluations": [...]}`` as text pieces, the metrics chunk by chunk."""
    with engine.connect() as conn:  # the first chunk is read before the first piece (see _primed)
        chunks = store.iter_metrics(conn, run_id)
        head = list(itertools.islice(chunks, 1))
        yield '{"run": ' + view.model_dump_json() + ', "metrics": ['
        first = True
        for chunk in itertools.chain(head, chunks):
            body = ", ".join(json.dumps(p) for p in chunk)
            yield body if first else ", " + body
            first = False
        yield '], "evaluations": ' + json.dumps(store.evaluations(conn, run_id)) + "}"


def _primed(pieces: Iterator[str]) -> Iterator[str]:
    """The first piece made now, in the route (so a store error there answers 503 with Retry-After, not a
    dropped connection), the rest while streaming."""
    first = next(pieces, "")
    return itertools.chain([first], pieces)


@router.get("/{run_id}/export", summary="Download a run's records as CSV or JSON", responses=NOT_FOUND)
def export(run: RunDep, request: Request, session: SessionDep,
           format: Annotated[Literal["csv", "json"], Query(description="csv or json")] = "csv",  # noqa: A002
           table: Annotated[Literal["metrics", "evals"], Query(description="csv only: which table")] = "metrics",
           ) -> StreamingResponse:
    engine, run_id, view = request.app.state.engine, run.id, RunOut.model_validate(store.run_view(run))
    session.close()  # the stream takes its own connection: never hold two
    if format == "csv":
        return StreamingResponse(_primed(csv_rows(engine, run_id, table)), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="run-{run_id}-{table}.csv"'})
    return StreamingResponse(_primed(json_document(engine, run_id, view)), media_type="application/json",
                             headers={"Content-Disposition": f'attachment; filename="run-{run_id}.json"'})
