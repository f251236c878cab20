"""The trust-region radius rule (acceptance and new radius from ρ), torch-free: the optimizer and the UI's
Figure-1 demo (frontend/geometry.py) share it."""
from __future__ import annotations

import math

__all__ = ["radius_update"]


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
