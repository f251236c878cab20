"""A training function for the worker (``TRUSTLAB_TRAINER=bench.hooks:timed_run``) that also writes timings.

It is ``trainer.run`` with the reporter wrapped: the wall-clock (and process CPU) time of ``on_start``, of every
``on_step`` call (taken before the record is handed on) and of the return of ``on_finish`` are written, when the run
ends, to ``$BENCH_TIMING_DIR/<pid>.json``. The wrapper adds one ``time.time()`` and a list append per step.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from trainer.loop import run

__all__ = ["timed_run", "TimingReporter", "TIMING_DIR_ENV"]

TIMING_DIR_ENV = "BENCH_TIMING_DIR"


class TimingReporter:
    """Forwards every call to ``inner`` and notes when they happened."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.started: float | None = None
        self.finished: float | None = None
        self.cpu_started: float | None = None
        self.cpu_finished: float | None = None
        self.step_times: list[tuple[int, float]] = []
        self.last_step: dict[str, Any] | None = None

    def on_start(self, info: dict[str, Any]) -> None:
        self.started = time.time()
        self.cpu_started = time.process_time()
        self.inner.on_start(info)

    def on_step(self, record: dict[str, Any]) -> None:
        self.step_times.append((record["step"], time.time()))
        self.last_step = record
        self.inner.on_step(record)

    def on_eval(self, record: dict[str, Any]) -> None:
        self.inner.on_eval(record)

    def on_images(self, step: int, kind: str, png: bytes) -> None:
        self.inner.on_images(step, kind, png)

    def on_finish(self, summary: dict[str, Any]) -> None:
        self.inner.on_finish(summary)
        self.finished = time.time()
        self.cpu_finished = time.process_time()

    def should_stop(self) -> bool:
        return self.inner.should_stop()

    def timings(self, summary: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "started": self.started, "finished": self.finished,
            "train_seconds": None if self.started is None or self.finished is None else self.finished - self.started,
            "train_cpu_seconds": None if self.cpu_started is None or self.cpu_finished is None
            else self.cpu_finished - self.cpu_started,
            "step_times": self.step_times,
            "last_minibatch_loss": None if self.last_step is None else self.last_step.get("train_loss"),
            "summary": {k: v for k, v in summary.items() if k != "traceback"},
            "store_flush_seconds": getattr(self.inner, "flush_time", None),
            "records_written": getattr(self.inner, "records_written", None),
        }


def timed_run(config: Any, reporter: Any = None, *, data_dir: Any = None, download: bool = True) -> dict[str, Any]:
    """``trainer.run`` with timings; written to ``$BENCH_TIMING_DIR/<pid>.json`` when that is set."""
    from trainer.reporting import NullReporter

    wrapper = TimingReporter(reporter if reporter is not None else NullReporter())
    summary = run(config, wrapper, data_dir=data_dir, download=download)
    folder = os.environ.get(TIMING_DIR_ENV)
    if folder:
        path = Path(folder) / f"{os.getpid()}.json"
        path.write_text(json.dumps(wrapper.timings(summary), default=str))
    return summary
