"""Reporter protocol: how a training run hands its records to whoever listens (CLI, worker, tests)."""
from __future__ import annotations

import enum
import math
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

__all__ = ["Reporter", "NullReporter", "ListReporter", "RunStatus", "StopReason", "StepTrace", "StepRecord", "EvalRecord",
           "Summary", "TR_TRACE_FIELDS", "clean_scalar", "clean_json"]


class RunStatus:
    """Final statuses a run can end with (strings, so they serialize as-is)."""

    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    STOPPED = "stopped"


class StopReason:
    """Why a run ended (``Summary.stop_reason``), beside its status: a ``completed`` run either used its budget or
    converged (trainer/guards.py; DESIGN.md "Converged is not failed"); the others name what ended it."""

    BUDGET = "budget"  # completed: a budget limit was reached
    CONVERGED = "converged"  # completed: a convergence floor was met, or the loss sat at its floor
    GUARD = "guard"  # failed or diverged: a run guard tripped
    REQUESTED = "requested"  # stopped: on request
    ERROR = "error"  # failed: an exception


# -- record types ----------------------------------------------------------------------------------------------
# The shapes of the records a run reports. The trainer hands plain dicts with these keys to the Reporter (no
# model is built per step: the hot path stays a dict); the API's MetricPoint / EvalPoint derive from these
# classes, and the tests check the trainer's records against them (extra keys are refused).


class StepTrace(BaseModel):
    """A trust-region step's internals (``TrustRegion.last_trace``, as reported); null for first-order runs.

    radius: Δ before the step; new_radius: Δ after it; rho: actual/predicted decrease (null if not finite);
    cg_iterations: Krylov iterations (= HVPs); cg_exit: the solver's exit (interior, boundary,
    negative_curvature, max_iter); accepted; pred_decrease, actual_decrease; step_norm_m: ‖s‖_M.
    """

    model_config = ConfigDict(extra="forbid")

    radius: float | None = None
    new_radius: float | None = None
    rho: float | None = None
    cg_iterations: int | None = None
    cg_exit: str | None = None
    accepted: bool | None = None
    pred_decrease: float | None = None
    actual_decrease: float | None = None
    step_norm_m: float | None = None


TR_TRACE_FIELDS: tuple[str, ...] = tuple(StepTrace.model_fields)


class _StepCore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: int
    backprops: int
    gradients: int | None = None
    hvps: int | None = None
    forwards: int | None = None
    epoch: float
    wall_time: float
    train_loss: float | None = None
    grad_norm: float | None = None
    step_norm: float | None = None


class StepRecord(StepTrace, _StepCore):
    """One optimizer step (``Reporter.on_step``): cost counters, the three x-axes, the minibatch loss and norms
    (first-order runs measure ``grad_norm``/``step_norm`` every ``grad_norm_every`` steps, else null), then the
    TR internals of :class:`StepTrace`."""


class EvalRecord(BaseModel):
    """One evaluation (``Reporter.on_eval``): loss on the fixed training subset and the test set; accuracies
    for classifiers (null for autoencoders)."""

    model_config = ConfigDict(extra="forbid")

    step: int
    backprops: int
    epoch: float
    wall_time: float
    train_loss: float | None = None
    test_loss: float | None = None
    train_accuracy: float | None = None
    test_accuracy: float | None = None


class Summary(BaseModel):
    """How a run ended (``Reporter.on_finish``); a run that failed early carries only status and message
    (plus ``traceback`` / ``public_message``)."""

    model_config = ConfigDict(extra="forbid")

    status: str
    message: str
    stop_reason: str | None = None  # StopReason
    public_message: str | None = None
    traceback: str | None = None
    device: str | None = None
    num_parameters: int | None = None
    steps: int | None = None
    backprops: int | None = None
    gradients: int | None = None
    hvps: int | None = None
    forwards: int | None = None
    epoch: float | None = None
    wall_time: float | None = None
    final_minibatch_loss: float | None = None
    final_train_loss: float | None = None
    final_test_loss: float | None = None
    final_test_accuracy: float | None = None


# -- cleaning ----------------------------------------------------------------------------------------------------


def clean_scalar(value: Any) -> Any:
    """A value the store and JSON accept: non-finite floats become None, numpy/torch scalars and enums plain
    Python, anything else its ``str``. Cheap for the common types (it runs per field of every step record)."""
    if value is None or type(value) in (int, bool, str):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return clean_scalar(value.value)
    if isinstance(value, (bool, int, float, str)):  # subclasses
        return clean_scalar(type(value).__mro__[-2](value))
    if hasattr(value, "item"):  # numpy / torch scalars
        return clean_scalar(value.item())
    return str(value)


def clean_json(value: Any) -> Any:
    """``value`` with :func:`clean_scalar` applied at every depth (dict keys become strings, tuples lists)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return clean_scalar(value)


@runtime_checkable
class Reporter(Protocol):
    """Receives a run's records. Methods must be cheap: they run between training steps.

    Record shapes (all plain JSON-able dicts; typed in :class:`StepRecord`, :class:`EvalRecord`, :class:`Summary`):
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
