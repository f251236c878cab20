"""Job runner: a thread in the API process that starts queued runs on the executor, delivers cancels, reaps ends.

Every ``poll_interval`` seconds (or at once after ``wake()``) a tick: hands the runs whose worker ended
without a final state to the lifecycle module (failed with the reason, cancelled, or interrupted), asks
runs with a cancel request to stop and forces them after ``cancel_grace_seconds``, and claims queued runs
(FIFO) while the executor has room. The executor (``TRUSTLAB_EXECUTOR``: local warm workers or Ray) only
starts, stops and observes; state changes go through ``backend.runner.lifecycle``.

Every tick also reconciles the store with the executor: a run stored as running with no job (its start
failed while the store was down, or a claim went through unseen) and no live worker elsewhere gets an
outcome; a job whose run is no longer running (ended or deleted elsewhere) is stopped. An exit is
forgotten by the executor only once its outcome is stored. A store error in any step of a tick is logged
once per outage and the tick goes on (the scheduler thread never dies of it); the next tick retries.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from sqlalchemy import Engine

from backend.errors import is_store_outage, store_error_message
from backend.runner import lifecycle
from backend.runner.devices import SlotPlan
from backend.runner.executor import Executor, Exit, make_executor
from backend.runner.local import REPO_ROOT, describe_exit
from backend.runner.states import RunState
from backend.runner.worker import log_path
from backend.settings import Settings

__all__ = ["Scheduler", "log_path", "describe_exit", "REPO_ROOT"]

log = logging.getLogger("trustlab.scheduler")

# A run stored as running without a job gets this long (seconds) to resolve itself (a worker started by hand
# notes its pid) before the reconciliation gives it an outcome; a job whose run is not running gets
# STRAY_GRACE_S (a worker that has just stored its run's end is exiting: tearing down torch can take seconds).
RECONCILE_GRACE_S = 2.0
STRAY_GRACE_S = 15.0


class Scheduler:
    """Starts queued runs up to the executor's capacity and watches them (see the module docstring).

    Args:
        settings: the API's settings (``executor`` picks the executor).
        engine: the store.
        plan: local executor only: run slots (default from settings and visible GPUs).
        executor: use this executor instead of the one the settings name (tests, benchmarks).
    """

    def __init__(self, settings: Settings, engine: Engine, *, plan: SlotPlan | None = None,
                 executor: Executor | None = None) -> None:
        self.settings, self.engine = settings, engine
        if executor is None:
            executor = make_executor(settings, engine, **({"plan": plan} if plan is not None else {}))
        self.executor = executor
        self._stop_sent: dict[int, float] = {}
        self._unowned: dict[int, float] = {}  # running rows without a job → first seen (monotonic)
        self._strays: dict[int, float] = {}  # jobs whose run is not running → first seen
        self.store_error: str | None = None  # the store error of the last tick (None: the store answered)
        self._tick_errors: list[str] = []
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def plan(self) -> SlotPlan | None:
        """The local executor's slot plan (None for other executors)."""
        return getattr(self.executor, "plan", None)

    @property
    def jobs(self) -> dict:
        """The local executor's running jobs by run id (empty for other executors)."""
        return getattr(self.executor, "jobs", {})

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Re-attach runs still alive on the executor, mark other runs left "running" interrupted, tick."""
        self.recover()
        with self._lock:
            self.executor.maintain()
        log.info("%s", self.executor.describe())
        self._thread = threading.Thread(target=self._loop, name="trustlab-scheduler", daemon=True)
        self._thread.start()

    def recover(self) -> int:
        """Runs stored as running: those the executor still sees are watched again, the rest interrupted."""
        reattached = self.executor.reattach(lifecycle.running_ids(self.engine))
        if reattached:
            log.info("re-attached to %d run(s) still running: %s", len(reattached), sorted(reattached))
        return lifecycle.recover(self.engine, reattached=reattached)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, grace: float | None = None) -> None:
        """Stop ticking; stop every run (forced after ``grace`` s) and mark those it ended "interrupted"."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        grace = min(self.settings.cancel_grace_seconds, 10.0) if grace is None else grace
        with self._lock:
            exits = self.executor.shutdown(grace)
            try:
                self._finish(exits, shutting_down=True)
            except Exception as exc:  # noqa: BLE001 - store down: the next API start marks them interrupted
                if not is_store_outage(exc):
                    raise
                log.error("store unreachable at shutdown (%s): %d run(s) stay running in the store until the next "
                          "API start marks them interrupted", store_error_message(exc), len(exits))

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep scheduling; the store may be busy for a moment
                log.exception("scheduler tick failed")
            self._wake.wait(self.settings.poll_interval)
            self._wake.clear()

    # -- one tick ----------------------------------------------------------------------------------
    def tick(self) -> None:
        """One round: record ended runs, reconcile, deliver cancels, start queued runs, maintain the executor.
        A store error stops only the step it hit (the others still run); it is logged once per outage."""
        with self._lock:
            self._tick_errors = []
            self._guard(lambda: self._finish(self.executor.poll()))
            self._guard(self._reconcile)
            self._guard(self._enforce_cancels)
            if not self._stopping.is_set() and not self._tick_errors:
                self._guard(self._start_queued)
            self.executor.maintain()
            self._note_store(self._tick_errors[0] if self._tick_errors else None)

    def _guard(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - a store outage is retried next tick; anything else propagates
            if not is_store_outage(exc):
                raise
            self._tick_errors.append(store_error_message(exc))

    def _note_store(self, error: str | None) -> None:
        if error is not None and self.store_error is None:
            log.warning("store unreachable: %s; ended runs are kept until their outcome is stored, retrying every "
                        "tick", error)
        elif error is None and self.store_error is not None:
            log.info("store reachable again")
        self.store_error = error

    def _finish(self, exits: list[Exit], *, shutting_down: bool = False) -> None:
        """Store each exit's outcome, then let the executor forget it (an exit whose outcome could not be
        stored is reported again at the next poll)."""
        for ended in exits:
            lifecycle.exit_outcome(self.engine, ended.run_id, ended.reason, stop_sent=ended.stop_sent,
                                   forced=ended.forced, shutting_down=shutting_down, log_tail=ended.log_tail,
                                   log_name=ended.log_name)
            self._stop_sent.pop(ended.run_id, None)
            self.executor.acknowledge(ended.run_id)

    def _reconcile(self) -> None:
        """Runs stored as running without a job → an outcome (after ``RECONCILE_GRACE_S``); jobs whose run is not
        running → stopped (after ``STRAY_GRACE_S``, forced after ``cancel_grace_seconds`` more)."""
        now = time.monotonic()
        stored = lifecycle.running_workers(self.engine)
        jobs = self.executor.running()
        unowned = {run_id: self._unowned.get(run_id, now) for run_id in stored if run_id not in jobs}
        self._unowned = unowned
        for run_id, since in unowned.items():
            if now - since < RECONCILE_GRACE_S or self.executor.alive_elsewhere(run_id, stored[run_id]):
                continue
            lifecycle.exit_outcome(self.engine, run_id, "no worker was running it (its start or its end was "
                                   "not recorded, e.g. during a store outage)", stop_sent=False, forced=False,
                                   shutting_down=False)
            self._unowned.pop(run_id, None)
        strays = {run_id: self._strays.get(run_id, now) for run_id in jobs if run_id not in stored}
        self._strays = strays
        for run_id, since in strays.items():
            if now - since < STRAY_GRACE_S:
                continue
            sent = self._stop_sent.get(run_id)
            if sent is None:
                log.warning("run %d is not running in the store but its worker still is %.0f s later: stopping it",
                            run_id, now - since)
                self.executor.stop_run(run_id, force=False)
                self._stop_sent[run_id] = now
            elif sent > 0 and now - sent >= self.settings.cancel_grace_seconds:
                self.executor.stop_run(run_id, force=True)
                self._stop_sent[run_id] = -1.0

    def _enforce_cancels(self) -> None:
        running = self.executor.running()
        if not running:
            return
        now = time.monotonic()
        for run_id in lifecycle.cancels_wanted(self.engine, running):
            sent = self._stop_sent.get(run_id)
            if sent is None:
                self.executor.stop_run(run_id, force=False)
                self._stop_sent[run_id] = now
            elif now - sent >= self.settings.cancel_grace_seconds and sent > 0:
                self.executor.stop_run(run_id, force=True)
                self._stop_sent[run_id] = -1.0  # forced; nothing more to send

    def _start_queued(self) -> None:
        if not self.executor.has_capacity():
            return
        for run_id, config in lifecycle.queued_runs(self.engine, limit=64):
            if not self.executor.has_capacity():
                return
            if not self.executor.fits(config):
                continue  # its GPU is busy; later runs may still fit
            if not lifecycle.claim(self.engine, run_id):
                continue  # cancelled (or deleted) meanwhile
            try:
                self.executor.start(run_id, config)
            except (OSError, RuntimeError) as exc:
                lifecycle.finish_run(self.engine, run_id, RunState.FAILED,
                                     f"could not start the worker process: {exc}", None)
