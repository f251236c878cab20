"""Run guards: end runs that obviously failed (diverged loss, collapsed trust radius, CG stuck at its cap)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainer.config import Guards
from trainer.optim.krylov import SolverExit
from trainer.reporting import RunStatus

__all__ = ["Verdict", "RunGuard"]


@dataclass(frozen=True)
class Verdict:
    """Why a run must end: its final status and a sentence naming the guard and the setting that tripped."""

    status: str
    message: str


class RunGuard:
    """Checks every step's record against ``Guards`` thresholds; ``check`` returns a Verdict to stop, else None.

    Rules (each a stated reason in the run's final message):
      - loss not finite → diverged (always on, even with ``enabled=False``: nothing can continue from NaN);
      - loss > ``loss_factor`` × the first step's loss (when that is > 0) → diverged;
      - TR only: radius < ``radius_floor`` for ``radius_patience`` consecutive steps → failed ("stopped by guard");
      - TR only: the subproblem solver hit its iteration cap on ``cg_cap_patience`` consecutive steps → failed.

    Args:
        guards: the run's thresholds (RunConfig.guards).
        is_tr: whether the optimizer is a trust-region method.
        cg_cap: the subproblem iteration cap (hyperparameter ``max_cg_iters``), for the message only.
    """

    def __init__(self, guards: Guards, *, is_tr: bool, cg_cap: int | None = None) -> None:
        self.guards, self.is_tr, self.cg_cap = guards, is_tr, cg_cap
        self.initial_loss: float | None = None
        self.small_radius_steps = 0
        self.capped_steps = 0

    def check(self, step: int, loss: float, record: dict[str, Any]) -> Verdict | None:
        if not math.isfinite(loss):
            return Verdict(RunStatus.DIVERGED, f"training loss became {loss} at step {step}")
        g = self.guards
        if not g.enabled:
            return None
        if self.initial_loss is None:
            self.initial_loss = loss
        elif self.initial_loss > 0 and loss > g.loss_factor * self.initial_loss:
            return Verdict(RunStatus.DIVERGED,
                           f"training loss {loss:.4g} at step {step} exceeds {g.loss_factor:g} x the first step's "
                           f"loss {self.initial_loss:.4g} (guards.loss_factor)")
        if not self.is_tr:
            return None
        radius = record.get("new_radius", record.get("radius"))
        if radius is not None and radius < g.radius_floor:
            self.small_radius_steps += 1
            if self.small_radius_steps >= g.radius_patience:
                return Verdict(RunStatus.FAILED,
                               f"stopped by guard at step {step}: the trust radius stayed below {g.radius_floor:g} "
                               f"for {g.radius_patience} consecutive steps (guards.radius_floor / radius_patience); "
                               "no step can make progress")
        else:
            self.small_radius_steps = 0
        exit_ = record.get("cg_exit")
        if getattr(exit_, "value", exit_) == SolverExit.MAX_ITER.value:
            self.capped_steps += 1
            if self.capped_steps >= g.cg_cap_patience:
                return Verdict(RunStatus.FAILED,
                               f"stopped by guard at step {step}: the subproblem solver hit its iteration cap "
                               f"({self.cg_cap}) on {g.cg_cap_patience} consecutive steps (guards.cg_cap_patience); "
                               "raise max_cg_iters or use another solver")
        else:
            self.capped_steps = 0
        return None
