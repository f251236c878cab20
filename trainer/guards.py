"""Run guards: end runs that obviously failed (diverged loss, collapsed trust radius, CG stuck at its cap), and runs
that converged (a loss or gradient-norm floor met: ``completed``, never ``failed``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainer.config import Convergence, Guards
from trainer.optim.krylov import SolverExit
from trainer.optim.radius import TINY_LOSS
from trainer.reporting import RunStatus, StopReason

__all__ = ["Verdict", "RunGuard", "ConvergenceCheck"]

# Tolerance of "the loss did not move", in machine epsilons of the loss's dtype relative to |L| (the same scale
# as the trust-region noise floor's default, noise_floor_ulps = 4).
FLAT_ULPS = 4.0


@dataclass(frozen=True)
class Verdict:
    """Why a run must end: its final status, a sentence naming the rule and the setting that tripped, and the
    :class:`~trainer.reporting.StopReason`."""

    status: str
    message: str
    reason: str = StopReason.GUARD


class ConvergenceCheck:
    """``check`` returns a ``completed`` Verdict (reason converged) once a floor of ``Convergence`` has held for
    ``patience`` consecutive checks, else None.

    Floors: the minibatch loss ≤ ``loss_floor``; the minibatch gradient norm ≤ ``grad_norm_ratio`` × the first
    measured gradient norm (a first-order run measures it every ``grad_norm_every`` steps; unmeasured steps neither
    count nor break the streak).
    """

    def __init__(self, converged: Convergence) -> None:
        self.cfg = converged
        self.first_grad_norm: float | None = None
        self.loss_steps = 0
        self.grad_steps = 0

    def floors_met(self, loss: float, grad_norm: float | None) -> bool:
        """Whether this step's values meet a floor (whatever ``enabled`` and ``patience`` say)."""
        c = self.cfg
        if c.loss_floor is not None and math.isfinite(loss) and loss <= c.loss_floor:
            return True
        return (c.grad_norm_ratio is not None and grad_norm is not None and self.first_grad_norm is not None
                and grad_norm <= c.grad_norm_ratio * self.first_grad_norm)

    def check(self, step: int, loss: float, grad_norm: float | None) -> Verdict | None:
        c = self.cfg
        if grad_norm is not None and not math.isfinite(grad_norm):
            grad_norm = None
        if grad_norm is not None and self.first_grad_norm is None:
            self.first_grad_norm = grad_norm
            return None  # the reference itself
        if not c.enabled:
            return None
        if c.loss_floor is not None:
            self.loss_steps = self.loss_steps + 1 if math.isfinite(loss) and loss <= c.loss_floor else 0
            if self.loss_steps >= c.patience:
                return Verdict(RunStatus.COMPLETED,
                               f"converged at step {step}: the minibatch loss stayed <= {c.loss_floor:g} for "
                               f"{c.patience} consecutive steps (converged.loss_floor; last {loss:.3g})",
                               StopReason.CONVERGED)
        if c.grad_norm_ratio is not None and grad_norm is not None and self.first_grad_norm is not None:
            bound = c.grad_norm_ratio * self.first_grad_norm
            self.grad_steps = self.grad_steps + 1 if grad_norm <= bound else 0
            if self.grad_steps >= c.patience:
                return Verdict(RunStatus.COMPLETED,
                               f"converged at step {step}: the minibatch gradient norm stayed <= "
                               f"{c.grad_norm_ratio:g} x the first one ({self.first_grad_norm:.3g}) for {c.patience} "
                               f"consecutive checks (converged.grad_norm_ratio; last {grad_norm:.3g})",
                               StopReason.CONVERGED)
        return None


class RunGuard:
    """Checks every step's record against ``Guards`` thresholds; ``check`` returns a Verdict to stop, else None.

    Rules (each a stated reason in the run's final message):
      - loss not finite → diverged (always on, even with ``enabled=False``: nothing can continue from NaN);
      - a floor of ``converged`` held for its patience → completed, reason converged (:class:`ConvergenceCheck`;
        its own ``enabled`` switch, independent of the guards');
      - loss > ``loss_factor`` × the first step's loss (when that is > 0) → diverged;
      - TR only: radius < ``radius_floor`` for ``radius_patience`` consecutive steps → failed ("stopped by guard");
      - TR only: the subproblem solver hit its iteration cap on ``cg_cap_patience`` consecutive steps → failed.

    Converged is not failed: when a TR guard trips while the loss sits at its floor — it met a floor of
    ``converged`` (whether or not that stop is enabled), or it moved by no more than its rounding noise
    (``FLAT_ULPS`` machine epsilons of |L|) on every step of the guard's streak — the run ends ``completed``
    with reason converged and the guard named in the message.

    Args:
        guards: the run's thresholds (RunConfig.guards).
        is_tr: whether the optimizer is a trust-region method.
        cg_cap: the subproblem iteration cap (hyperparameter ``max_cg_iters``), for the message only.
        converged: the run's convergence floors (RunConfig.converged), for the at-floor rule. Default: the defaults.
        eps: machine epsilon of the loss's dtype. Default float32's.
    """

    def __init__(self, guards: Guards, *, is_tr: bool, cg_cap: int | None = None,
                 converged: Convergence | None = None, eps: float = 2.0 ** -23) -> None:
        self.guards, self.is_tr, self.cg_cap = guards, is_tr, cg_cap
        self.convergence = ConvergenceCheck(converged or Convergence())
        self.eps = eps
        self.initial_loss: float | None = None
        self.small_radius_steps = 0
        self.capped_steps = 0
        self.flat_steps = 0  # consecutive steps whose actual decrease was within the loss's rounding noise
        self.at_floor_steps = 0  # consecutive steps meeting a convergence floor

    def _at_floor(self, streak: int) -> bool:
        """Whether the loss sat at its floor over the last ``streak`` steps (see the class docstring)."""
        return self.flat_steps >= streak or self.at_floor_steps >= 1

    def _trip(self, step: int, loss: float, streak: int, message: str) -> Verdict:
        if self._at_floor(streak):
            return Verdict(RunStatus.COMPLETED,
                           f"converged at step {step}: the loss sits at its floor ({loss:.3g}; a convergence floor "
                           f"is met or the loss moved by no more than its rounding noise for {streak} steps), so the "
                           f"guard that tripped ({message}) does not fail the run", StopReason.CONVERGED)
        return Verdict(RunStatus.FAILED, f"stopped by guard at step {step}: {message}")

    def check(self, step: int, loss: float, record: dict[str, Any]) -> Verdict | None:
        if not math.isfinite(loss):
            return Verdict(RunStatus.DIVERGED, f"training loss became {loss} at step {step}")
        converged = self.convergence.check(step, loss, record.get("grad_norm"))
        if converged is not None:
            return converged
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
        actual = record.get("actual_decrease")
        flat = (actual is not None and math.isfinite(actual)
                and abs(actual) <= FLAT_ULPS * self.eps * max(abs(loss), TINY_LOSS))
        self.flat_steps = self.flat_steps + 1 if flat else 0
        at_floor = self.convergence.floors_met(loss, record.get("grad_norm"))
        self.at_floor_steps = self.at_floor_steps + 1 if at_floor else 0
        radius = record.get("new_radius", record.get("radius"))
        if radius is not None and radius < g.radius_floor:
            self.small_radius_steps += 1
            if self.small_radius_steps >= g.radius_patience:
                return self._trip(step, loss, g.radius_patience,
                                  f"the trust radius stayed below {g.radius_floor:g} for {g.radius_patience} "
                                  "consecutive steps (guards.radius_floor / radius_patience); no step can make "
                                  "progress")
        else:
            self.small_radius_steps = 0
        exit_ = record.get("cg_exit")
        if getattr(exit_, "value", exit_) == SolverExit.MAX_ITER.value:
            self.capped_steps += 1
            if self.capped_steps >= g.cg_cap_patience:
                return self._trip(step, loss, g.cg_cap_patience,
                                  f"the subproblem solver hit its iteration cap ({self.cg_cap}) on "
                                  f"{g.cg_cap_patience} consecutive steps (guards.cg_cap_patience); raise "
                                  "max_cg_iters or use another solver")
        else:
            self.capped_steps = 0
        return None
