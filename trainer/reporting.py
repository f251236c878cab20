"""Reporter protocol: how a training run hands its records to whoever listens (CLI, worker, tests)."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Reporter", "NullReporter", "ListReporter", "RunStatus"]


class RunStatus:
    """Final statuses a run can end with (strings, so they serialize as-is)."""

    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    STOPPED = "stopped"


@runtime_checkable
class Reporter(Protocol):
    """Receives a run's records. Methods must be cheap: they run between training steps.

    Record shapes (all plain JSON-able dicts):
      * ``on_start(info)``: ``device``, ``num_parameters``, ``train_size``, ``test_size``, ``batch_size``,
        ``hyperparameters`` (resolved), ``optimizer_family``, ``task``.
      * ``on_step(record)``: ``step``, ``backprops``, ``gradients``, ``hvps``, ``forwards``, ``epoch``,
        ``wall_time``, ``train_loss``, ``grad_norm``, ``step_norm`` (first-order runs: every
        ``grad_norm_every`` steps, else None); TR adds ``radius`` (before the step),
        ``new_radius``, ``rho``, ``cg_iterations``, ``cg_exit``, ``accepted``, ``pred_decrease``,
        ``actual_decrease``, ``step_norm_m``.
      * ``on_eval(record)``: ``step``, ``backprops``, ``epoch``, ``wall_time``, ``train_loss``, ``test_loss``
        and, for classifiers, ``train_accuracy`` and ``test_accuracy``.
      * ``on_images(step, kind, png)``: ``kind`` is ``"original"`` (once, step 0) or ``"reconstruction"``;
        ``png`` is a vertical strip of the fixed test images.
      * ``on_finish(summary)``: ``status`` (RunStatus), ``message``, ``steps``, ``backprops``, ``epoch``,
        ``wall_time``, ``final_minibatch_loss`` and the last evaluation's ``final_train_loss``,
        ``final_test_loss``, ``final_test_accuracy``.
    """

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_step(self, record: dict[str, Any]) -> None: ...

    def on_eval(self, record: dict[str, Any]) -> None: ...

    def on_images(self, step: int, kind: str, png: bytes) -> None: ...

    def on_finish(self, summary: dict[str, Any]) -> None: ...

    def should_stop(self) -> bool: ...


class NullReporter:
    """Discards everything; never asks to stop."""

    def on_start(self, info: dict[str, Any]) -> None:
        return None

    def on_step(self, record: dict[str, Any]) -> None:
        return None

    def on_eval(self, record: dict[str, Any]) -> None:
        return None

    def on_images(self, step: int, kind: str, png: bytes) -> None:
        return None

    def on_finish(self, summary: dict[str, Any]) -> None:
        return None

    def should_stop(self) -> bool:
        return False


class ListReporter(NullReporter):
    """Keeps every record in memory (tests, notebooks); ``stop_after`` steps it asks to stop."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.info: dict[str, Any] = {}
        self.steps: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.images: list[tuple[int, str, bytes]] = []
        self.summary: dict[str, Any] | None = None
        self.stop_after = stop_after

    def on_start(self, info: dict[str, Any]) -> None:
        self.info = info

    def on_step(self, record: dict[str, Any]) -> None:
        self.steps.append(record)

    def on_eval(self, record: dict[str, Any]) -> None:
        self.evals.append(record)

    def on_images(self, step: int, kind: str, png: bytes) -> None:
        self.images.append((step, kind, png))

    def on_finish(self, summary: dict[str, Any]) -> None:
        self.summary = summary

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.steps) >= self.stop_after
