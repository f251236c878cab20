"""The executor interface (start, cancel, observe work) and the registry behind ``TRUSTLAB_EXECUTOR=local|ray``.

An executor never writes run state: it reports what it saw (``Exit``) and the scheduler hands that to
``backend.runner.lifecycle``; an exit is reported again at every poll until the scheduler, having stored its
outcome, calls ``acknowledge`` (a store outage never loses one). Workers themselves finish runs they trained
through the same module.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backend.settings import Settings

__all__ = ["Exit", "Executor", "EXECUTORS", "make_executor"]


@dataclass(frozen=True)
class Exit:
    """A run's worker ended (for whatever reason). ``reason`` is a sentence ("worker process exited with code 3")."""

    run_id: int
    reason: str
    stop_sent: bool = False   # we asked it to stop (cancel or shutdown)
    forced: bool = False      # ... and had to force it after the grace period
    log_tail: str = ""
    log_name: str = ""


class Executor(Protocol):
    """Where runs execute. All methods are called from the scheduler thread only."""

    name: str

    def describe(self) -> str:
        """One line for the API's start-up log (capacity, devices)."""

    def has_capacity(self) -> bool:
        """A new run could start now (some slot is free)."""

    def has_gpus(self) -> bool:
        """Runs can be placed on a GPU (decides whether the API's CPU memory estimate applies to device=auto)."""

    def start(self, run_id: int, config: dict[str, Any]) -> None:
        """Start a claimed run (the caller claims only after ``fits``). Raises OSError or RuntimeError when
        starting failed, including when no free slot suits its device after all; the scheduler then fails the run
        with that message."""

    def fits(self, config: dict[str, Any]) -> bool:
        """A free slot suits this run's device request."""

    def running(self) -> set[int]:
        """Run ids this executor is watching."""

    def stop_run(self, run_id: int, *, force: bool) -> None:
        """Ask a run to stop (force: kill it now)."""

    def poll(self) -> list[Exit]:
        """Runs whose worker ended and that are not acknowledged yet (their jobs are kept until then)."""

    def acknowledge(self, run_id: int) -> None:
        """The outcome of the run's exit is stored: forget its job."""

    def alive_elsewhere(self, run_id: int, pid: int | None) -> bool:
        """A run stored as running (worker ``pid``) has no job here: whether its worker lives anyway (started
        by hand, or an actor found again and watched from now on)."""

    def reattach(self, run_ids: list[int]) -> set[int]:
        """After an API restart: the ``run_ids`` stored as running that are still alive and now watched again."""

    def maintain(self) -> None:
        """Housekeeping each tick (refill a warm pool, notice lost nodes)."""

    def shutdown(self, grace: float) -> list[Exit]:
        """Stop every run (SIGTERM / cancel, force after ``grace`` s) and release resources; their exits."""


EXECUTORS: dict[str, str] = {
    "local": "backend.runner.local:LocalExecutor",
    "ray": "backend.runner.ray_executor:RayExecutor",
}


def make_executor(settings: "Settings", engine: "Engine", **kwargs: Any) -> Executor:
    """The executor ``settings.executor`` names (imported lazily: Ray is an optional extra)."""
    try:
        spec = EXECUTORS[settings.executor]
    except KeyError:
        raise ValueError(f"Invalid executor: {settings.executor!r}; set TRUSTLAB_EXECUTOR to one of "
                         f"{sorted(EXECUTORS)}") from None
    module, _, name = spec.partition(":")
    factory: Callable[..., Executor] = getattr(importlib.import_module(module), name)
    return factory(settings, engine, **kwargs)
