"""Job runner: a thread in the API process that starts queued runs on the executor, delivers cancels, reaps ends.

Every ``poll_interval`` seconds (or at once after ``wake()``) a tick: hands the runs whose worker ended
without a final state to the lifecycle module (failed with the reason, cancelled, or interrupted), asks
runs with a cancel request to stop and forces them after ``cancel_grace_seconds``, and claims queued runs
(FIFO) while the executor has room. The executor (``TRUSTLAB_EXECUTOR``: local warm workers or Ray) only
starts, stops and observes; state changes go through ``backend.runner.lifecycle``.
"""
from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from backend.runner import lifecycle
from backend.runner.devices import SlotPlan
from backend.runner.executor import Executor, Exit, make_executor
from backend.runner.local import REPO_ROOT, describe_exit
from backend.runner.states import RunState
from backend.runner.worker import log_path
from backend.settings import Settings

__all__ = ["Scheduler", "log_path", "describe_exit", "REPO_ROOT"]

log = logging.getLogger("trustlab.scheduler")


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
            self._finish(self.executor.shutdown(grace), shutting_down=True)

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
        with self._lock:
            self._finish(self.executor.poll())
            self._enforce_cancels()
            if not self._stopping.is_set():
                self._start_queued()
                self.executor.maintain()

    def _finish(self, exits: list[Exit], *, shutting_down: bool = False) -> None:
        for ended in exits:
            self._stop_sent.pop(ended.run_id, None)
            lifecycle.exit_outcome(self.engine, ended.run_id, ended.reason, stop_sent=ended.stop_sent,
                                   forced=ended.forced, shutting_down=shutting_down, log_tail=ended.log_tail,
                                   log_name=ended.log_name)

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
