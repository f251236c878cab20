"""Worker process: ``python -m backend.runner.worker RUN_ID`` trains one stored run and writes its records back in batches.

``python -m backend.runner.worker --warm`` is a warm worker of the local executor's pool: it imports the
trainer and decodes datasets first, then waits for one run id on stdin, trains that run and exits. The
local executor's zygote (``backend.runner.zygote``) calls ``preload`` once and ``train_run`` in each forked child.
The scheduler claims the run (status "running") and starts this process; the worker reads the RunConfig
from the store, calls the trainer with a ``StoreReporter`` and sets the final status. SIGTERM (or SIGINT)
only sets a flag; the trainer sees it through ``should_stop()`` at the next step and ends the run, which
is then "cancelled" when a user asked for it and "interrupted" otherwise (the API shut down).

A store outage (server stopped, connection lost, SQLite locked, full or read-only) does not stop training: the
reporter keeps every record in memory and retries with backoff (``StoreOutage``), up to
``store_outage_seconds`` and ``store_buffer_mb``. Past either bound the run stops and ends "failed" with
"store unreachable for N s", written (with every record buffered) once the store answers again; a worker that
cannot write it within another ``store_outage_seconds`` exits with ``STORE_UNREACHABLE_EXIT`` and the
scheduler records the outcome when the store returns.
"""
from __future__ import annotations

import importlib
import os
import select as io_select
import signal
import sqlite3
import sys
import threading
import time
from typing import Any, Callable

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, bindparam, delete, insert, select, update
from sqlalchemy.exc import OperationalError

from backend.errors import is_store_outage, store_error_message
from backend.store_file import file_identity, sqlite_path
from backend.rollup import BlockRollup
from backend.runner import lifecycle
from backend.runner.lifecycle import finish_run, outcome
from backend.runner.states import RunState
from trainer.reporting import RunStatus, clean_json, clean_scalar
from backend.tables import (EVAL_COLUMNS, METRIC_COLUMNS, Evaluation, MetricBlock, Reconstruction, Run,
                            StepMetric, utcnow)

if TYPE_CHECKING:
    from backend.settings import Settings

__all__ = ["StoreReporter", "StoreOutage", "StoreUnreachable", "STORE_UNREACHABLE_EXIT", "main", "warm_main",
           "train_run", "preload", "finish_run", "clean_json", "log_path", "redirect_output"]

_STEP_TABLE = StepMetric.__table__
_EVAL_TABLE = Evaluation.__table__
_BLOCK_TABLE = MetricBlock.__table__


_clean = clean_scalar  # the one cleaning rule (trainer.reporting), per field of every record



STORE_UNREACHABLE_EXIT = 75  # EX_TEMPFAIL: the store stayed unreachable; the scheduler records the outcome


class StoreUnreachable(RuntimeError):
    """The store stayed unreachable past the worker's bound (the message says for how long and why)."""


class StoreOutage:
    """Retry bookkeeping of one worker's store writes: when the outage began, when to try next (the wait
    doubles from ``first_wait`` up to ``max_wait``), the last error. Messages go to stderr (the run's log).

    Args:
        limit_seconds: the outage a run rides out (``store_outage_seconds``).
        first_wait: the first wait between tries in seconds.
        max_wait: the longest wait between tries in seconds.
    """

    def __init__(self, limit_seconds: float, first_wait: float, max_wait: float) -> None:
        self.limit_seconds, self.first_wait, self.max_wait = limit_seconds, min(first_wait, max_wait), max_wait
        self.since: float | None = None
        self.wait = self.first_wait
        self.next_try = 0.0
        self.failures = 0
        self.cause = ""
        self.outages = 0  # outages ridden out so far (for the log and tests)
        self.longest = 0.0  # seconds of the longest outage ridden out

    @property
    def elapsed(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def failed(self, exc: BaseException, what: str) -> None:
        """A try failed with a store error: note it and schedule the next one."""
        now = time.monotonic()
        self.cause = store_error_message(exc)
        if self.since is None:
            self.since = now
            print(f"store unreachable while {what}: {self.cause}; keeping records in memory and retrying "
                  f"(for up to {self.limit_seconds:g} s)", file=sys.stderr, flush=True)
        self.failures += 1
        self.next_try = now + self.wait
        self.wait = min(self.wait * 2, self.max_wait)

    def recovered(self, detail: str = "") -> None:
        """A write went through: the outage (if any) is over."""
        if self.since is None:
            return
        elapsed = self.elapsed
        self.outages += 1
        self.longest = max(self.longest, elapsed)
        print(f"store reachable again after {elapsed:.1f} s ({self.failures} failed tries){detail}",
              file=sys.stderr, flush=True)
        self.since, self.wait, self.failures, self.next_try = None, self.first_wait, 0, 0.0

    def reason(self) -> str:
        """The stored error of a run stopped by the outage."""
        return f"store unreachable for {self.elapsed:.0f} s (limit {self.limit_seconds:g} s): {self.cause}"

    def call(self, fn: Callable[[], Any], what: str, *, deadline_seconds: float | None = None) -> Any:
        """``fn()`` retried on store errors (sleeping between tries) until it succeeds; raises StoreUnreachable
        once the outage has lasted ``deadline_seconds`` (default ``limit_seconds``) counted from this call."""
        limit = self.limit_seconds if deadline_seconds is None else deadline_seconds
        start = time.monotonic()
        while True:
            try:
                value = fn()
            except Exception as exc:  # noqa: BLE001 - only store outages are retried; the rest propagate
                if not is_store_outage(exc):
                    raise
                self.failed(exc, what)
                if time.monotonic() - start >= limit:
                    raise StoreUnreachable(self.reason()) from exc
                time.sleep(max(0.0, min(self.next_try, start + limit) - time.monotonic()))
                continue
            self.recovered()
            return value


class StoreReporter:
    """A trainer Reporter that buffers records and writes them in batches.

    A batch is written when ``flush_records`` records are buffered or ``flush_seconds`` have passed
    since the last write (checked at every step), and at the end. Each write is one transaction: bulk
    inserts of steps, block rollups and evaluations plus the run's progress counters. A crash loses at most
    the records not yet written: up to ``flush_seconds`` or ``flush_records`` of them.

    ``on_step`` only snapshots the record's fields (one C-level pass, a tuple) and checks the flush deadline;
    cleaning the values, the block rollups and the insert happen per batch in ``flush``. Between training
    steps the CPU caches are cold, so Python work there costs several times what the same work costs in one
    tight loop per batch; live readers see a step at the same time as before (at the write).

    A write that fails with a store error keeps everything buffered (the run's info, steps, blocks,
    evaluations, images and progress) and is tried again after a backoff (``outage``) while training goes
    on; nothing is dropped until its transaction commits. Past ``outage_seconds`` of failures, or
    ``buffer_mb`` of buffered records, ``should_stop()`` turns true and the run ends "failed" with
    "store unreachable for N s". ``on_finish`` retries its writes (for up to ``outage_seconds`` more).

    Args:
        engine: the store.
        run_id: the run being trained.
        stop: set (by the signal handler) to ask the trainer to stop.
        flush_seconds: the most time records wait in memory. Default 0.5.
        flush_records: the most records buffered. Default 500.
        parent_pid: the API process; when it disappears the run stops as "interrupted". Default: none.
        torch_threads: ``torch.set_num_threads`` value once training starts. Default: leave as is.
        outage_seconds: the store outage a run rides out. Default 300.
        buffer_mb: the most memory of records buffered during an outage (MiB). Default 256.
        retry_max_seconds: the longest wait between tries during an outage. Default 5.
    """

    def __init__(self, engine: Engine, run_id: int, stop: threading.Event, *, flush_seconds: float = 0.5,
                 flush_records: int = 500, parent_pid: int | None = None, torch_threads: int | None = None,
                 outage_seconds: float = 300.0, buffer_mb: float = 256.0, retry_max_seconds: float = 5.0) -> None:
        self.engine, self.run_id, self.stop = engine, run_id, stop
        self.flush_seconds, self.flush_records, self.parent_pid = flush_seconds, flush_records, parent_pid
        self.torch_threads = torch_threads
        self.orphaned = False
        self.finished = False
        self.records_written = 0
        self.flush_time = 0.0
        self._steps: list[tuple[Any, ...]] = []  # raw field values of each step record, METRIC_COLUMNS order
        self._rows: list[tuple[Any, ...]] = []  # cleaned step rows not yet written
        self._evals: dict[int, dict[str, Any]] = {}
        self._blocks: list[dict[str, Any]] = []
        self._rollup = BlockRollup()
        self._last: dict[str, Any] | None = None
        self._last_eval_backprops: dict[int, int] = {}
        self._info: dict[str, Any] | None = None  # the run's device and info, until written
        self._images: list[dict[str, Any]] = []  # reconstruction images not yet written
        self.outage = StoreOutage(outage_seconds, flush_seconds, retry_max_seconds)
        self.buffer_bytes = int(buffer_mb * 2**20)
        self.store_lost: str | None = None  # why the run stops: the store stayed unreachable past a bound
        self._file = sqlite_path(str(engine.url))  # a SQLite store: its identity is checked before each write
        self._file_id = file_identity(self._file) if self._file is not None else None
        self._next_flush = time.monotonic() + flush_seconds
        self._insert_steps = _Prepared(engine, insert(_STEP_TABLE), _STEP_ROW)
        self._insert_blocks = _Prepared(engine, insert(_BLOCK_TABLE), _BLOCK_ROW)
        self._insert_evals = _Prepared(engine, insert(_EVAL_TABLE), _EVAL_ROW)
        self._delete_evals = _Prepared(engine, delete(_EVAL_TABLE).where(_EVAL_TABLE.c.run_id == bindparam("e_run_id"),
                                                                         _EVAL_TABLE.c.step == bindparam("e_step")),
                                       ("e_run_id", "e_step"))
        self._update_progress = _Prepared(engine, _progress_update(), (*(f"p_{n}" for n in _PROGRESS), "p_run_id"))

    # -- Reporter protocol -------------------------------------------------------------------------
    def on_start(self, info: dict[str, Any]) -> None:
        torch = sys.modules.get("torch")  # the trainer has imported it by now; OMP_NUM_THREADS also says so
        if torch is not None and self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        device = info.get("device")
        self._info = {"device": None if device is None else str(device)[:64], "info": clean_json(info)}
        self.flush()  # written at once (or with the next batch once the store answers)

    def on_step(self, record: dict[str, Any]) -> None:
        self._steps.append(tuple(map(record.get, METRIC_COLUMNS)))
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
        backprops = self._last_eval_backprops.get(step)
        if backprops is None and self._last is not None and self._last["step"] == step:
            backprops = self._last["backprops"]
        if backprops is None and step == 0:
            backprops = 0
        self._images.append({"kind": kind, "step": step, "backprops": backprops, "png": bytes(png),
                             "created_at": utcnow()})
        self.flush()

    def on_finish(self, summary: dict[str, Any]) -> None:
        """Write every buffered record, then the final state; both retried through a store outage (for up to
        ``outage_seconds`` more), else StoreUnreachable."""
        self.finish_records()
        cancel_requested = self.outage.call(lambda: self.check_file() or lifecycle.cancel_requested(
            self.engine, self.run_id), "reading the run's cancel request")
        status, error = outcome(summary, cancel_requested=cancel_requested, orphaned=self.orphaned)
        if self.store_lost is not None and not cancel_requested:
            status, error = RunState.FAILED, (f"{self.store_lost}; training stopped at step "
                                              f"{summary.get('steps', 0)}, every record until then is stored")
        self.outage.call(lambda: self.check_file() or finish_run(self.engine, self.run_id, status, error,
                                                                 clean_json(summary)),
                         "recording the run's final state")
        self.finished = True

    def should_stop(self) -> bool:
        return self.stop.is_set() or self.orphaned or self.store_lost is not None

    # -- batching ----------------------------------------------------------------------------------
    def finish_records(self) -> None:
        """Close the open rollup block and write everything buffered (the end of a run's records)."""
        self._drain()  # the buffered steps go through the rollup before its open block is closed
        block = self._rollup.close()
        if block is not None:
            block["run_id"] = self.run_id
            self._blocks.append(block)
        self.outage.call(self._flush_or_raise, "writing the run's last records")

    def _drain(self) -> None:
        """Buffered step records → rows of (run_id, *METRIC_COLUMNS) with clean values, ready to insert; the
        blocks they close are buffered too."""
        if not self._steps:
            return
        raw, self._steps = self._steps, []
        rows = [(self.run_id, *map(_clean, values)) for values in raw]
        add, blocks = self._rollup.add, self._blocks
        for row in rows:
            closed = add(row[_STEP], row[_LOSS])
            if closed:
                for block in closed:
                    block["run_id"] = self.run_id
                blocks += closed
        last = rows[-1]
        self._last = {"step": last[_STEP], "backprops": last[_BACKPROPS], "epoch": last[_EPOCH],
                      "wall_time": last[_WALL_TIME]}
        self._rows += rows

    def flush(self) -> None:
        """Write everything buffered in one transaction; check that the API process is still there.

        On a store error the records stay buffered and the next try waits (backoff); past a bound the run
        is asked to stop (``store_lost``)."""
        self._next_flush = time.monotonic() + self.flush_seconds
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.orphaned = True
        try:
            self._flush_or_raise()
        except Exception as exc:  # noqa: BLE001 - a store outage is ridden out; anything else propagates
            if not is_store_outage(exc):
                raise
            self.outage.failed(exc, "writing records")
            self._next_flush = self.outage.next_try
            if self.store_lost is None:
                if self.outage.elapsed >= self.outage.limit_seconds:
                    self.store_lost = self.outage.reason()
                elif self.buffered_bytes() > self.buffer_bytes:
                    self.store_lost = (f"{self.outage.reason()}; the records buffered meanwhile reached the "
                                       f"memory cap ({self.buffer_bytes / 2**20:g} MiB, TRUSTLAB_STORE_BUFFER_MB)")
                if self.store_lost is not None:
                    print(f"stopping the run: {self.store_lost}", file=sys.stderr, flush=True)

    def buffered_bytes(self) -> int:
        """About how much memory the records not yet written take (estimated from one step record)."""
        pending = len(self._steps) + len(self._rows)
        sample = self._steps[-1] if self._steps else self._rows[-1] if self._rows else ()
        per_step = sys.getsizeof(sample) + sum(sys.getsizeof(v) for v in sample)
        return (pending * per_step + 1024 * (len(self._evals) + len(self._blocks))
                + sum(len(i["png"]) for i in self._images))

    def _delete_written(self, conn: Any, steps: list[tuple[Any, ...]], blocks: list[dict[str, Any]]) -> None:
        """Remove the rows of ``steps`` and ``blocks`` that an earlier, seemingly failed, try stored."""
        if steps:
            numbers = [row[_STEP] for row in steps]
            conn.execute(delete(_STEP_TABLE).where(_STEP_TABLE.c.run_id == self.run_id,
                                                   _STEP_TABLE.c.step.between(min(numbers), max(numbers))))
        if blocks:
            conn.execute(delete(_BLOCK_TABLE).where(_BLOCK_TABLE.c.run_id == self.run_id,
                                                    _BLOCK_TABLE.c.block.in_([b["block"] for b in blocks])))

    def check_file(self) -> None:
        """A SQLite store file deleted under us is an outage (never write into the deleted copy); a file replaced
        (restored by the API's guard) is reopened. Raises OperationalError for a missing file."""
        if self._file is None:
            return
        identity = file_identity(self._file)
        if identity is None:
            raise OperationalError("(store file check)", None, sqlite3.OperationalError(
                "unable to open database file: the store file was deleted (the API restores it)"))
        if identity != self._file_id:
            self.engine.dispose()  # pooled connections hold the deleted copy
            self._file_id = identity

    def _flush_or_raise(self) -> None:
        """One transaction with everything buffered; the buffers are emptied only once it committed."""
        if not (self._steps or self._rows or self._evals or self._blocks or self._images or self._info):
            return
        self.check_file()
        t0 = time.perf_counter()
        self._drain()
        steps, evals, blocks, images, info = self._rows, list(self._evals.values()), self._blocks, self._images, \
            self._info
        progress: dict[str, Any] = {}
        if self._last is not None:
            progress = {"last_step": self._last["step"], "last_backprops": self._last["backprops"],
                        "last_epoch": self._last["epoch"], "last_wall_time": self._last["wall_time"]}
        retry = self.outage.since is not None
        with self.engine.begin() as conn:
            if retry:  # a failed try may have committed after all (its answer lost): never insert a row twice
                self._delete_written(conn, steps, blocks)
            if info:
                conn.execute(update(Run).where(Run.id == self.run_id).values(**info))  # once per run
            if steps:
                self._insert_steps(conn, steps)
            if blocks:
                self._insert_blocks(conn, [tuple(b[name] for name in _BLOCK_ROW) for b in blocks])
            if evals:
                self._delete_evals(conn, [(self.run_id, e["step"]) for e in evals])  # an evaluation re-sent
                self._insert_evals(conn, [tuple(e[name] for name in _EVAL_ROW) for e in evals])
            for image in images:  # a few per run: no prepared statement
                conn.execute(delete(Reconstruction).where(Reconstruction.run_id == self.run_id,
                                                          Reconstruction.kind == image["kind"],
                                                          Reconstruction.step == image["step"]))
                conn.execute(insert(Reconstruction).values(run_id=self.run_id, **image))
            if progress:
                self._update_progress(conn, [(*(progress[n] for n in _PROGRESS), self.run_id)])
        self._rows, self._evals, self._blocks, self._images, self._info = [], {}, [], [], None
        self.records_written += len(steps) + len(evals)
        self.flush_time += time.perf_counter() - t0
        if self.outage.since is not None:
            self.outage.recovered(f"; wrote {len(steps)} buffered step(s) and {len(evals)} evaluation(s)")


_STEP_ROW = ("run_id", *METRIC_COLUMNS)  # the order of StoreReporter's step rows
_STEP, _LOSS, _BACKPROPS, _EPOCH, _WALL_TIME = (_STEP_ROW.index(c) for c in
                                                ("step", "train_loss", "backprops", "epoch", "wall_time"))


class _Prepared:
    """A statement rendered once for the engine's dialect and run through the DBAPI (``executemany``) with rows of
    plain values (tuples in the order ``names``): no per-row SQLAlchemy parameter processing and no statement
    compilation while training. The values are plain ints, floats, strings, bools and None (cleaned by
    ``clean_scalar``), which every driver takes as they are."""

    def __init__(self, engine: Engine, statement: Any, names: tuple[str, ...]) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        binds = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        if sorted(binds) != sorted(names):
            raise RuntimeError(f"statement binds {binds}, expected {list(names)}")
        self.sql, self.positional, self.binds = compiled.string, compiled.positional, binds
        self.order = [names.index(name) for name in binds]
        self.identity = self.order == list(range(len(names)))

    def __call__(self, conn: Any, rows: list[tuple[Any, ...]]) -> None:
        if not self.positional:
            params: list[Any] = [{n: row[i] for n, i in zip(self.binds, self.order)} for row in rows]
        elif self.identity:
            params = rows
        else:
            params = [tuple(row[i] for i in self.order) for row in rows]
        conn.exec_driver_sql(self.sql, params)


_BLOCK_ROW = tuple(c.name for c in _BLOCK_TABLE.columns)
_EVAL_ROW = ("run_id", *EVAL_COLUMNS)
_PROGRESS = ("last_step", "last_backprops", "last_epoch", "last_wall_time")


def _progress_update() -> Any:
    """The run's progress counters (bind parameters p_<column>, the run as p_run_id)."""
    return (update(Run.__table__).where(Run.__table__.c.id == bindparam("p_run_id"))
            .values({name: bindparam(f"p_{name}") for name in _PROGRESS}))


def log_path(settings: "Settings", run_id: int) -> Path:
    """Where a worker's stdout and stderr go."""
    return settings.log_dir / f"run-{run_id}.log"


def _load_trainer(spec: str) -> Callable[..., dict[str, Any]]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "run")


def train_run(run_id: int, settings: "Settings", stop: threading.Event, *, parent_pid: int | None,
              train: Callable[..., dict[str, Any]] | None = None, api_pidfd: int | None = None) -> int:
    """Train stored run ``run_id`` in this process and set its final state. Exit code: 0 trained (any final
    state) or nothing to do, 1 worker error, 2 no such run.

    ``parent_pid``: the API process is our parent (cold and warm workers); the run stops as "interrupted" when
    the parent changes. ``api_pidfd``: a pidfd of the API process for workers that are not its children
    (forked by the zygote); the run stops the same way when that process ends."""
    from backend.db import make_engine
    from backend import limits
    from trainer.config import from_stored

    engine = make_engine(settings.resolved_database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    outage = StoreOutage(settings.store_outage_seconds, settings.flush_seconds, settings.store_retry_max_seconds)
    try:
        state = outage.call(lambda: lifecycle.claim_by_hand(engine, run_id), "claiming the run")
        if state is None:
            print(f"run {run_id} not found in {settings.resolved_database_url}", file=sys.stderr)
            return 2
        if state != RunState.RUNNING:
            print(f"run {run_id} is {state.value}; nothing to do", file=sys.stderr)
            return 0
        outage.call(lambda: lifecycle.record_worker(engine, run_id, pid=os.getpid()), "noting the worker pid")

        def read_config() -> Any:
            with engine.connect() as conn:
                return conn.scalar(select(Run.config).where(Run.id == run_id))

        stored = outage.call(read_config, "reading the run's config")
        try:
            config = from_stored(stored)
        except ValueError as exc:
            invalid = f"stored config is no longer valid: {exc}"
            outage.call(lambda: finish_run(engine, run_id, RunState.FAILED, invalid, None), "failing the run")
            return 0
        if settings.pinned_gpu is not None and config.device.startswith("cuda:"):
            config = config.model_copy(update={"device": "cuda"})  # CUDA_VISIBLE_DEVICES shows one GPU
        reporter = StoreReporter(engine, run_id, stop, flush_seconds=settings.flush_seconds,
                                 flush_records=settings.flush_records, parent_pid=parent_pid,
                                 torch_threads=settings.torch_threads, outage_seconds=settings.store_outage_seconds,
                                 buffer_mb=settings.store_buffer_mb,
                                 retry_max_seconds=settings.store_retry_max_seconds)
        if api_pidfd is not None:
            _watch_api(api_pidfd, reporter)
        reporter = limits.prepare_worker(settings, config, reporter)
        train = train or _load_trainer(settings.trainer)
        summary = train(config, reporter, data_dir=str(settings.data_dir), download=settings.download)
        if not reporter.finished:  # a trainer that returned without on_finish
            reporter.on_finish(summary if isinstance(summary, dict) else {"status": RunStatus.FAILED,
                                                                          "message": "trainer returned no summary"})
        return 0
    except StoreUnreachable as exc:  # the scheduler records the outcome (with this log's tail) once it can
        print(f"worker {run_id}: run failed: {exc}; exiting with code {STORE_UNREACHABLE_EXIT} so that the "
              f"scheduler records it once the store answers", file=sys.stderr, flush=True)
        return STORE_UNREACHABLE_EXIT
    except Exception as exc:  # noqa: BLE001 - the run must not stay "running"
        try:
            error = limits.worker_error(exc, settings.worker_memory_gb)
            outage.call(lambda: finish_run(engine, run_id, RunState.FAILED, error, None), "failing the run")
        except Exception as store_exc:  # noqa: BLE001 - store unreachable: say so on stderr, which the scheduler tails
            print(f"worker {run_id}: could not record the failure in the store: "
                  f"{type(store_exc).__name__}: {store_exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _watch_api(pidfd: int, reporter: StoreReporter) -> None:
    """Mark ``reporter`` orphaned (the trainer stops at its next step) once the process behind ``pidfd`` ends."""

    def watch() -> None:
        io_select.select([pidfd], [], [])
        reporter.orphaned = True

    threading.Thread(target=watch, name="api-watch", daemon=True).start()


def preload(settings: "Settings") -> list[str]:
    """Warm a worker: import the training function, decode the configured datasets through ``trainer.data``'s
    public loader (kept in this process), and train a tiny run per dataset (one first-order and one TR step
    on 64 samples, records discarded) so that lazy imports and first-call initialisation are paid now,
    not by the next real run. Returns the datasets warmed."""
    _load_trainer(settings.trainer)
    names = [n.strip() for n in settings.warm_datasets.split(",") if n.strip()]
    if not names:
        return []
    import trainer
    from trainer.config import RunConfig
    from trainer.data import dataset_available, load_dataset
    from trainer.registry import MODELS

    device = "cpu" if settings.pinned_gpu is None else "cuda"
    loaded = []
    for name in names:
        if not dataset_available(name, settings.data_dir):
            print(f"warm worker: dataset {name!r} is not on this machine; not preloaded", flush=True)
            continue
        _PRELOADED.append(load_dataset(name, settings.data_dir, download=False))
        model = next((m for m, spec in MODELS.items() if name in spec.datasets), None)
        for optimizer in ("sgd", "tr-uniform") if model else ():
            config = RunConfig.model_validate({
                "dataset": name, "model": model, "optimizer": {"name": optimizer}, "budget": {"backprops": 2},
                "train_subset": 64, "test_subset": 64, "eval_train_size": 64, "batch_size": 32, "device": device})
            summary = trainer.run(config, None, data_dir=str(settings.data_dir))
            if summary.get("status") != RunStatus.COMPLETED:
                print(f"warm worker: warm-up run on {name} ended {summary.get('status')}: {summary.get('message')}",
                      flush=True)
        loaded.append(name)
    if device == "cpu" and loaded:
        from trainer.optim import fused

        fused.warm_up()  # every TR kernel compiled or loaded from its cache now, not in a run's first step
    return loaded


_PRELOADED: list[Any] = []  # decoded datasets of a warm worker (trainer.data caches by path when it can)


def redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (fds 1 and 2) to ``path`` from now on."""
    sys.stdout.flush()
    sys.stderr.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def warm_main() -> int:
    """A warm worker: import and preload, then wait for one run id on stdin, train it, exit.

    SIGTERM while idle ends the process at once; while training it asks the trainer to stop (as for a
    cold worker). End of stdin (the pool closed it, or the API died) ends it too.
    """
    from backend.settings import Settings

    stop = threading.Event()
    busy = threading.Event()

    def on_signal(*_: Any) -> None:
        if not busy.is_set():
            os._exit(0)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    parent_pid = os.getppid()
    settings = Settings()
    t0 = time.perf_counter()
    loaded = preload(settings)
    print(f"warm worker {os.getpid()}: ready in {time.perf_counter() - t0:.2f} s (datasets: {loaded or 'none'})",
          flush=True)
    line = sys.stdin.readline().strip()
    if not line.isdigit():
        return 0
    busy.set()
    run_id = int(line)
    redirect_output(log_path(settings, run_id))
    return train_run(run_id, settings, stop, parent_pid=parent_pid)


def main(argv: list[str] | None = None) -> int:
    """``RUN_ID``: train that run; ``--warm``: a warm worker (see ``warm_main``). Exit code 2: usage."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--warm"]:
        return warm_main()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m backend.runner.worker RUN_ID | --warm", file=sys.stderr)
        return 2
    from backend.settings import Settings

    return train_run(int(args[0]), Settings(), stop, parent_pid=os.getppid())


if __name__ == "__main__":
    sys.exit(main())
