"""Worker process: ``python -m backend.worker RUN_ID`` trains one stored run and writes its records back in batches.

The scheduler claims the run (status "running") and starts this process; the worker reads the RunConfig
from the store, calls the trainer with a ``StoreReporter`` and sets the final status. SIGTERM (or SIGINT)
only sets a flag; the trainer sees it through ``should_stop()`` at the next step and ends the run, which
is then "cancelled" when a user asked for it and "interrupted" otherwise (the API shut down).
"""
from __future__ import annotations

import enum
import importlib
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

from sqlalchemy import Engine, delete, insert, select, update

from backend.rollup import BlockRollup
from backend.tables import (EVAL_COLUMNS, METRIC_COLUMNS, Evaluation, MetricBlock, Reconstruction, Run,
                            StepMetric, utcnow)

__all__ = ["StoreReporter", "main", "final_status", "clean_json"]

_STEP_TABLE = StepMetric.__table__
_EVAL_TABLE = Evaluation.__table__
_BLOCK_TABLE = MetricBlock.__table__


def _clean(value: Any) -> Any:
    """A value the store and JSON accept: non-finite floats become None, numpy/torch scalars plain Python."""
    if value is None or type(value) in (int, bool, str):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return _clean(value.value)
    if isinstance(value, (bool, int, float, str)):  # subclasses
        return _clean(type(value).__mro__[-2](value))
    if hasattr(value, "item"):  # numpy / torch scalars
        return _clean(value.item())
    return str(value)


def clean_json(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return clean_json(value.value)
    if value is None or isinstance(value, (int, bool, str)):
        return value
    if hasattr(value, "item"):
        return clean_json(value.item())
    return str(value)


def final_status(summary: dict[str, Any], *, cancel_requested: bool, orphaned: bool) -> tuple[str, str | None]:
    """Map the trainer's summary status to the store's (status, error)."""
    status = summary.get("status")
    message = summary.get("message") or None
    if status == "completed":
        return "completed", None
    if status == "diverged":
        return "diverged", message or f"diverged at step {summary.get('steps')}"
    if status == "stopped":
        if cancel_requested:
            return "cancelled", f"cancelled on request at step {summary.get('steps', 0)}"
        why = "its API process went away" if orphaned else "the API shut down"
        return "interrupted", f"interrupted at step {summary.get('steps', 0)}: {why}"
    return "failed", message or f"trainer ended with unknown status {status!r}"


class StoreReporter:
    """A trainer Reporter that buffers records and writes them in batches.

    A batch is written when ``flush_records`` records are buffered or ``flush_seconds`` have passed
    since the last write (checked at every step), and at the end. Each write is one transaction: bulk
    inserts of steps, block rollups and evaluations plus the run's progress counters.

    Args:
        engine: the store.
        run_id: the run being trained.
        stop: set (by the signal handler) to ask the trainer to stop.
        flush_seconds: the most time records wait in memory. Default 0.5.
        flush_records: the most records buffered. Default 500.
        parent_pid: the API process; when it disappears the run stops as "interrupted". Default: none.
        torch_threads: ``torch.set_num_threads`` value once training starts. Default: leave as is.
    """

    def __init__(self, engine: Engine, run_id: int, stop: threading.Event, *, flush_seconds: float = 0.5,
                 flush_records: int = 500, parent_pid: int | None = None, torch_threads: int | None = None) -> None:
        self.engine, self.run_id, self.stop = engine, run_id, stop
        self.flush_seconds, self.flush_records, self.parent_pid = flush_seconds, flush_records, parent_pid
        self.torch_threads = torch_threads
        self.orphaned = False
        self.finished = False
        self.records_written = 0
        self.flush_time = 0.0
        self._steps: list[dict[str, Any]] = []
        self._evals: dict[int, dict[str, Any]] = {}
        self._blocks: list[dict[str, Any]] = []
        self._rollup = BlockRollup()
        self._last: dict[str, Any] | None = None
        self._last_eval_backprops: dict[int, int] = {}
        self._next_flush = time.monotonic() + flush_seconds

    # -- Reporter protocol -------------------------------------------------------------------------
    def on_start(self, info: dict[str, Any]) -> None:
        torch = sys.modules.get("torch")  # the trainer has imported it by now; OMP_NUM_THREADS also says so
        if torch is not None and self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        device = info.get("device")
        with self.engine.begin() as conn:
            conn.execute(update(Run).where(Run.id == self.run_id)
                         .values(device=None if device is None else str(device)[:64], info=clean_json(info)))

    def on_step(self, record: dict[str, Any]) -> None:
        row = {name: _clean(record.get(name)) for name in METRIC_COLUMNS}
        row["run_id"] = self.run_id
        self._steps.append(row)
        self._last = row
        closed = self._rollup.add(row["step"], row["train_loss"])
        if closed:
            for block in closed:
                block["run_id"] = self.run_id
            self._blocks += closed
        if len(self._steps) >= self.flush_records or time.monotonic() >= self._next_flush:
            self.flush()

    def on_eval(self, record: dict[str, Any]) -> None:
        row = {name: _clean(record.get(name)) for name in EVAL_COLUMNS}
        row["run_id"] = self.run_id
        self._evals[row["step"]] = row
        self._last_eval_backprops[row["step"]] = row["backprops"]
        if time.monotonic() >= self._next_flush:
            self.flush()

    def on_images(self, step: int, kind: str, png: bytes) -> None:
        self.flush()
        backprops = self._last_eval_backprops.get(step)
        if backprops is None and self._last is not None and self._last["step"] == step:
            backprops = self._last["backprops"]
        if backprops is None and step == 0:
            backprops = 0
        with self.engine.begin() as conn:
            conn.execute(delete(Reconstruction).where(Reconstruction.run_id == self.run_id,
                                                      Reconstruction.kind == kind, Reconstruction.step == step))
            conn.execute(insert(Reconstruction).values(run_id=self.run_id, kind=kind, step=step,
                                                       backprops=backprops, png=bytes(png), created_at=utcnow()))

    def on_finish(self, summary: dict[str, Any]) -> None:
        self.finish_records()
        with self.engine.connect() as conn:
            cancel_requested = bool(conn.scalar(select(Run.cancel_requested).where(Run.id == self.run_id)))
        status, error = final_status(summary, cancel_requested=cancel_requested, orphaned=self.orphaned)
        finish_run(self.engine, self.run_id, status, error, clean_json(summary))
        self.finished = True

    def should_stop(self) -> bool:
        return self.stop.is_set() or self.orphaned

    # -- batching ----------------------------------------------------------------------------------
    def finish_records(self) -> None:
        """Close the open rollup block and write everything buffered (the end of a run's records)."""
        block = self._rollup.close()
        if block is not None:
            block["run_id"] = self.run_id
            self._blocks.append(block)
        self.flush()

    def flush(self) -> None:
        """Write everything buffered in one transaction; check that the API process is still there."""
        self._next_flush = time.monotonic() + self.flush_seconds
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.orphaned = True
        if not (self._steps or self._evals or self._blocks):
            return
        t0 = time.perf_counter()
        steps, evals, blocks = self._steps, list(self._evals.values()), self._blocks
        self._steps, self._evals, self._blocks = [], {}, []
        progress: dict[str, Any] = {}
        if self._last is not None:
            progress = {"last_step": self._last["step"], "last_backprops": self._last["backprops"],
                        "last_epoch": self._last["epoch"], "last_wall_time": self._last["wall_time"]}
        with self.engine.begin() as conn:
            if steps:
                conn.execute(insert(_STEP_TABLE), steps)
            if blocks:
                conn.execute(insert(_BLOCK_TABLE), blocks)
            if evals:
                conn.execute(delete(_EVAL_TABLE).where(_EVAL_TABLE.c.run_id == self.run_id,
                                                       _EVAL_TABLE.c.step.in_([e["step"] for e in evals])))
                conn.execute(insert(_EVAL_TABLE), evals)
            if progress:
                conn.execute(update(Run).where(Run.id == self.run_id).values(**progress))
        self.records_written += len(steps) + len(evals)
        self.flush_time += time.perf_counter() - t0


def finish_run(engine: Engine, run_id: int, status: str, error: str | None, summary: dict[str, Any] | None) -> bool:
    """Set the final status of a run that is still "running" (never overwrite one set elsewhere)."""
    with engine.begin() as conn:
        done = conn.execute(update(Run).where(Run.id == run_id, Run.status == "running")
                            .values(status=status, error=error, summary=summary, finished_at=utcnow())).rowcount
    return bool(done)


def _load_trainer(spec: str) -> Callable[..., dict[str, Any]]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "run")


def main(argv: list[str] | None = None) -> int:
    """Train run ``argv[0]``. Exit codes: 0 trained (any final status) or nothing to do, 1 worker error, 2 usage."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m backend.worker RUN_ID", file=sys.stderr)
        return 2
    run_id = int(args[0])
    parent_pid = os.getppid()

    from backend import limits
    from backend.db import make_engine
    from backend.settings import Settings
    from trainer.config import from_stored

    settings = Settings()
    engine = make_engine(settings.resolved_database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        with engine.begin() as conn:
            run = conn.execute(select(Run.status, Run.config).where(Run.id == run_id)).first()
            if run is None:
                print(f"run {run_id} not found in {settings.resolved_database_url}", file=sys.stderr)
                return 2
            if run.status == "queued":  # started by hand rather than by the scheduler
                conn.execute(update(Run).where(Run.id == run_id, Run.status == "queued")
                             .values(status="running", started_at=utcnow()))
            elif run.status != "running":
                print(f"run {run_id} is {run.status}; nothing to do", file=sys.stderr)
                return 0
            conn.execute(update(Run).where(Run.id == run_id).values(pid=os.getpid()))
        try:
            config = from_stored(run.config)
        except ValueError as exc:
            finish_run(engine, run_id, "failed", f"stored config is no longer valid: {exc}", None)
            return 0
        if settings.pinned_gpu is not None and config.device.startswith("cuda:"):
            config = config.model_copy(update={"device": "cuda"})  # CUDA_VISIBLE_DEVICES shows one GPU
        reporter = StoreReporter(engine, run_id, stop, flush_seconds=settings.flush_seconds,
                                 flush_records=settings.flush_records, parent_pid=parent_pid,
                                 torch_threads=settings.torch_threads)
        reporter = limits.prepare_worker(settings, config, reporter)
        train = _load_trainer(settings.trainer)
        summary = train(config, reporter, data_dir=str(settings.data_dir), download=settings.download)
        if not reporter.finished:  # a trainer that returned without on_finish
            reporter.on_finish(summary if isinstance(summary, dict) else {"status": "failed",
                                                                          "message": "trainer returned no summary"})
        return 0
    except Exception as exc:  # noqa: BLE001 - the run must not stay "running"
        try:
            finish_run(engine, run_id, "failed", limits.worker_error(exc, settings.worker_memory_gb), None)
        except Exception as store_exc:  # noqa: BLE001 - store unreachable: say so on stderr, which the scheduler tails
            print(f"worker {run_id}: could not record the failure in the store: "
                  f"{type(store_exc).__name__}: {store_exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
