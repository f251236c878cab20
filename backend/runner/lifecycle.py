"""Run lifecycle: the only writer of a run's state (queue, claim, start, cancel, finish, crash, restart recovery).

Every transition is one conditional UPDATE (``WHERE status = <expected>``), so two writers (the API, a
worker, a scheduler tick) can race without a run ever leaving a terminal state or being claimed twice.
Executors start, cancel and observe work; the scheduler and the worker turn what they saw into a call
here. States: ``backend.runner.states.RunState``.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from backend.runner.states import RunState
from backend.tables import Run, utcnow
from trainer.reporting import RunStatus  # the trainer's summary statuses (torch-free module)

__all__ = ["INITIAL_STATE", "claim", "claim_by_hand", "record_worker", "request_cancel", "cancel_requested",
           "cancels_wanted", "finish_run", "outcome", "exit_outcome", "recover", "running_ids", "running_workers",
           "queued_runs", "CancelRefused"]

log = logging.getLogger("trustlab.lifecycle")

INITIAL_STATE = RunState.QUEUED  # what a new run row starts as (backend.store.create_run)


class CancelRefused(Exception):
    """The run already ended otherwise; there is nothing to cancel (the API answers 409)."""


def claim(engine: Engine, run_id: int) -> bool:
    """queued → running (the scheduler picked it). False if it was cancelled or deleted meanwhile."""
    with engine.begin() as conn:
        return bool(conn.execute(update(Run).where(Run.id == run_id, Run.status == RunState.QUEUED).values(
            status=RunState.RUNNING, started_at=utcnow(), cancel_requested=False)).rowcount)


def claim_by_hand(engine: Engine, run_id: int) -> RunState | None:
    """A worker started by hand on a stored run: claim it if queued. Returns the run's state now (None: no run)."""
    with engine.begin() as conn:
        status = conn.scalar(select(Run.status).where(Run.id == run_id))
        if status == RunState.QUEUED:
            claimed = conn.execute(update(Run).where(Run.id == run_id, Run.status == RunState.QUEUED)
                                   .values(status=RunState.RUNNING, started_at=utcnow())).rowcount
            status = RunState.RUNNING if claimed else conn.scalar(select(Run.status).where(Run.id == run_id))
    return None if status is None else RunState(status)


def record_worker(engine: Engine, run_id: int, *, pid: int | None) -> None:
    """Note which process trains a running run (shown to operators; used to find it after a crash)."""
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(pid=pid))


def request_cancel(session: Session, run: Run) -> Run:
    """Dequeue a queued run at once; flag a running one (its executor then stops it). Idempotent.

    Raises:
        CancelRefused: the run already ended with another state.
    """
    dequeued = session.execute(
        update(Run).where(Run.id == run.id, Run.status == RunState.QUEUED)
        .values(status=RunState.CANCELLED, finished_at=utcnow(), error="cancelled before it started")).rowcount
    if not dequeued:
        session.execute(update(Run).where(Run.id == run.id, Run.status == RunState.RUNNING)
                        .values(cancel_requested=True))
    session.commit()
    session.refresh(run)
    if run.status not in (RunState.RUNNING, RunState.CANCELLED):
        raise CancelRefused(f"run {run.id} already ended with status {run.status.value!r}; there is nothing to cancel")
    return run


def cancel_requested(engine: Engine, run_id: int) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def cancels_wanted(engine: Engine, run_ids: Iterable[int]) -> set[int]:
    """Which of ``run_ids`` are running with a cancel request."""
    ids = list(run_ids)
    if not ids:
        return set()
    with engine.connect() as conn:
        return set(conn.scalars(select(Run.id).where(Run.status == RunState.RUNNING,
                                                     Run.cancel_requested.is_(True), Run.id.in_(ids))))


def finish_run(engine: Engine, run_id: int, status: RunState | str, error: str | None,
               summary: dict[str, Any] | None) -> bool:
    """running → a terminal state (never overwrites one set elsewhere). True if this call set it."""
    state = RunState(status)
    if not state.terminal:
        raise ValueError(f"Invalid final state: {state.value!r}; choose one of the terminal states")
    with engine.begin() as conn:
        done = conn.execute(update(Run).where(Run.id == run_id, Run.status == RunState.RUNNING)
                            .values(status=state, error=error, summary=summary, finished_at=utcnow())).rowcount
    return bool(done)


def outcome(summary: dict[str, Any], *, cancel_requested: bool, orphaned: bool) -> tuple[RunState, str | None]:
    """The final (state, error) of a run whose trainer returned ``summary`` (its ``status`` is a ``RunStatus``)."""
    status = summary.get("status")
    message = summary.get("message") or None
    if status == RunStatus.COMPLETED:
        return RunState.COMPLETED, None
    if status == RunStatus.DIVERGED:
        return RunState.DIVERGED, message or f"diverged at step {summary.get('steps')}"
    if status == RunStatus.STOPPED:
        if cancel_requested:
            return RunState.CANCELLED, f"cancelled on request at step {summary.get('steps', 0)}"
        why = "its API process went away" if orphaned else "the API shut down"
        return RunState.INTERRUPTED, f"interrupted at step {summary.get('steps', 0)}: {why}"
    return RunState.FAILED, message or f"trainer ended with unknown status {status!r}"


def exit_outcome(engine: Engine, run_id: int, reason: str, *, stop_sent: bool, forced: bool, shutting_down: bool,
                 log_tail: str = "", log_name: str = "") -> tuple[RunState, str] | None:
    """Finish a run whose worker ended without setting a final state (killed, crashed, node lost).

    The same rule for every executor: a requested cancel → cancelled; the API shutting down → interrupted;
    anything else → failed with the reason and the end of the worker's log. Returns what was set, or None
    when the run had already ended (the worker finished it) or is gone.
    """
    with engine.connect() as conn:
        row = conn.execute(select(Run.status, Run.cancel_requested).where(Run.id == run_id)).first()
    if row is None or row.status != RunState.RUNNING:
        return None
    if row.cancel_requested or (stop_sent and not shutting_down):
        waited = " after the grace period" if forced else ""
        state, error = RunState.CANCELLED, f"cancelled on request; {reason}{waited}"
    elif shutting_down:
        state, error = RunState.INTERRUPTED, f"interrupted: the API shut down; {reason}"
    else:
        state = RunState.FAILED
        error = reason + (f"\n--- last lines of the worker log ({log_name}) ---\n{log_tail}" if log_tail else "")
    if not finish_run(engine, run_id, state, error, None):
        return None
    log.info("run %d: %s", run_id, error.splitlines()[0])
    return state, error


def recover(engine: Engine, *, reattached: Iterable[int] = ()) -> int:
    """At API start: runs left running by an earlier API process become interrupted, except ``reattached``
    (still alive on a cluster and observed again). Returns how many were marked."""
    keep = list(reattached)
    query = update(Run).where(Run.status == RunState.RUNNING)
    if keep:
        query = query.where(Run.id.not_in(keep))
    with engine.begin() as conn:
        count = conn.execute(query.values(
            status=RunState.INTERRUPTED, finished_at=utcnow(),
            error="interrupted: the API process running it stopped; the data logged so far is kept")).rowcount
    if count:
        log.warning("marked %d run(s) left running by an earlier API process as interrupted", count)
    return count


def running_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(Run.id).where(Run.status == RunState.RUNNING).order_by(Run.id)))


def running_workers(engine: Engine) -> dict[int, int | None]:
    """Run id → recorded worker pid (None before the worker noted it) of every run stored as running."""
    with engine.connect() as conn:
        return {int(r[0]): r[1] for r in conn.execute(select(Run.id, Run.pid).where(Run.status == RunState.RUNNING))}


def queued_runs(engine: Engine, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """(id, config) of the oldest queued runs, FIFO."""
    with engine.connect() as conn:
        rows = conn.execute(select(Run.id, Run.config).where(Run.status == RunState.QUEUED).order_by(Run.id)
                            .limit(limit)).all()
    return [(int(r[0]), r[1] or {}) for r in rows]
