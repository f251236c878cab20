"""The trust-region radius rule (acceptance and new radius from ρ), torch-free: the optimizer and the UI's
Figure-1 demo (frontend/geometry.py) share it."""
from __future__ import annotations

import math

__all__ = ["radius_update", "reduction_ratio", "TINY_LOSS", "AUTHORS_SMALL_DECREASE"]

# max(|L|, TINY_LOSS) scales the relative noise floor, so a loss of exactly 0 still has a (tiny) tolerance.
TINY_LOSS = 1e-30
# The authors' code sets ρ := 1 when the model decrease is below this (noise_floor "authors").
AUTHORS_SMALL_DECREASE = 1e-15


def radius_update(
    rho: float, radius: float, *, eta1: float, eta2: float, gamma1: float, gamma2: float, max_radius: float
) -> tuple[bool, float]:
    """Acceptance and new radius from ρ (CGT Algorithm 6.1.1 with the paper's parameters).

    ρ ≥ η₂: accept, Δ ← min(γ₁Δ, Δ_max); η₁ ≤ ρ < η₂: accept, Δ unchanged; otherwise (ρ < η₁ or ρ not
    finite): reject, Δ ← Δ/γ₂.

    Returns:
        (accepted, new_radius)
    """
    if not math.isfinite(rho) or rho < eta1:
        return False, radius / gamma2
    if rho >= eta2:
        return True, min(gamma1 * radius, max_radius)
    return True, radius


def reduction_ratio(actual: float, pred: float, loss: float, *, rule: str = "relative", ulps: float = 4.0,
                    eps: float = 2.0 ** -23) -> float:
    """ρ = actual / predicted decrease, with the noise floor of DESIGN.md ("Converged is not failed").

    Near a minimum both decreases fall below the loss's floating-point resolution: in float32 a loss of 6e-9 changes
    by exactly 0 or by a few ulps whatever the step, so the plain ratio is rounding noise, every step is rejected and
    the radius collapses although nothing is wrong. The rules (hyperparameter ``noise_floor``):

    - ``"relative"``: when |pred| ≤ tol and |actual| ≤ tol with tol = ``ulps`` · ``eps`` · max(|L|, TINY_LOSS),
      the step counts as agreement, ρ := 1 (accepted; the radius grows). ``eps`` is the machine epsilon of the
      loss's dtype (float32: 2⁻²³ ≈ 1.19e-7, so the default 4 ulps is about 4.8e-7·|L|).
    - ``"authors"``: the authors' code: ρ := 1 whenever |pred| < 1e-15 (absolute, whatever the loss's size).
    - ``"off"``: the plain ratio.

    A non-finite ``actual`` (the loss at w + s overflowed) or, outside the floor, pred ≤ 0 gives NaN (reject).

    Args:
        actual: L - L_new. pred: the model decrease -m(s). loss: L.
        rule: "relative" | "authors" | "off". Default "relative".
        ulps: the relative rule's tolerance in machine epsilons. Default 4.
        eps: machine epsilon of the loss's dtype. Default float32's.
    """
    if not math.isfinite(actual) or not math.isfinite(pred):
        return float("nan")
    if rule == "relative":
        tol = ulps * eps * max(abs(loss), TINY_LOSS)
        if abs(pred) <= tol and abs(actual) <= tol:
            return 1.0
    elif rule == "authors":
        if abs(pred) < AUTHORS_SMALL_DECREASE:  # their test: abs(model_improvement) < 1e-15
            return 1.0
    elif rule != "off":
        raise ValueError(f"Invalid noise_floor: {rule!r}; choose 'relative', 'authors' or 'off'")
    return actual / pred if pred > 0 else float("nan")
