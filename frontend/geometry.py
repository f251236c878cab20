"""The paper's Figure 1: first-order methods on 2-D quadratics and the trust regions they imply.

Gradient descent minimizes the linear model ``m(s) = gᵀs`` inside the ball ‖s‖ ≤ η‖g‖; a diagonally
preconditioned step ``s = -η M⁻¹g`` (Adagrad, M = diag(sqrt(ε + Σ g²))) minimizes the same model inside
the ellipse ‖s‖_M ≤ Δ with Δ = η‖g‖_{M⁻¹} (paper Sec. 3.1, Eq. (5); Appendix B, Eq. (10)). A first-order
trust-region method chooses Δ itself from the ratio ρ of actual to predicted decrease (paper Algorithm 1
with a linear model). Everything here is plain numpy so the UI and the tests can call it directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from trainer.optim.radius import radius_update  # torch-free: the optimizer's own radius rule

__all__ = [
    "Quadratic",
    "Region",
    "Trajectory",
    "PROBLEMS",
    "METHODS",
    "get_problem",
    "linear_model_step",
    "gradient_descent",
    "adagrad",
    "first_order_trust_region",
    "run_method",
]


@dataclass(frozen=True)
class Quadratic:
    """f(x) = ½ xᵀAx + bᵀx with A symmetric positive definite; minimizer x* = -A⁻¹b."""

    name: str
    label: str
    A: np.ndarray
    b: np.ndarray
    start: np.ndarray
    gd_lr: float  # a step size that shows the method's behaviour well on this problem
    adagrad_lr: float
    description: str = ""

    def value(self, x: np.ndarray) -> float:
        x = np.asarray(x, dtype=float)
        return float(0.5 * x @ self.A @ x + self.b @ x)

    def values(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """f on a grid (``xs``, ``ys`` of equal shape), for contour plots."""
        a = self.A
        return 0.5 * (a[0, 0] * xs**2 + 2 * a[0, 1] * xs * ys + a[1, 1] * ys**2) + self.b[0] * xs + self.b[1] * ys

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self.A @ np.asarray(x, dtype=float) + self.b

    @property
    def minimizer(self) -> np.ndarray:
        return np.linalg.solve(self.A, -self.b)

    @property
    def condition_number(self) -> float:
        eig = np.linalg.eigvalsh(self.A)
        return float(eig[-1] / eig[0])


def _quadratic(name: str, label: str, eigenvalues: tuple[float, float], angle_deg: float, minimizer: tuple[float, float],
               start: tuple[float, float], gd_lr: float, adagrad_lr: float, description: str) -> Quadratic:
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    a = rot @ np.diag(eigenvalues) @ rot.T
    a = 0.5 * (a + a.T)
    b = -a @ np.asarray(minimizer, dtype=float)
    return Quadratic(name, label, a, b, np.asarray(start, dtype=float), gd_lr, adagrad_lr, description)


PROBLEMS: dict[str, Quadratic] = {
    q.name: q
    for q in (
        _quadratic("well-conditioned", "Well-conditioned", (1.0, 2.0), 0.0, (1.0, 0.5), (-2.5, 2.0), 0.3, 0.6,
                   "A = diag(1, 2): circles are almost the right shape."),
        _quadratic("ill-conditioned", "Ill-conditioned", (0.5, 10.0), 0.0, (1.0, 0.5), (-2.5, 2.0), 0.18, 0.6,
                   "A = diag(0.5, 10), axis-aligned: GD zig-zags across the valley, Adagrad's ellipses "
                   "stretch along the flat direction."),
        _quadratic("tilted", "Tilted (rotated 35°)", (0.5, 10.0), 35.0, (1.0, 0.5), (-2.5, 2.0), 0.18, 0.6,
                   "The ill-conditioned quadratic rotated by 35°: the valley is off-axis, so diagonal "
                   "ellipses fit it only partly."),
    )
}


def get_problem(name: str) -> Quadratic:
    """Look up a problem by name, raising ``ValueError`` naming the choices."""
    try:
        return PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown problem {name!r}; choose one of {sorted(PROBLEMS)}") from None


@dataclass(frozen=True)
class Region:
    """The region {center + s : ‖s‖_M ≤ radius} with ‖s‖_M = sqrt(Σ Mᵢ sᵢ²) (M a positive diagonal)."""

    center: np.ndarray
    radius: float
    matrix: np.ndarray  # the diagonal of M, shape (2,)

    def norm(self, s: np.ndarray) -> float:
        s = np.asarray(s, dtype=float)
        return float(np.sqrt(np.sum(self.matrix * s * s)))

    def boundary(self, n: int = 97) -> np.ndarray:
        """``n`` points on ‖x - center‖_M = radius (closed: first point = last), shape (n, 2)."""
        t = np.linspace(0.0, 2.0 * np.pi, n)
        unit = np.stack([np.cos(t), np.sin(t)], axis=1)
        return self.center + self.radius * unit / np.sqrt(self.matrix)

    @property
    def is_sphere(self) -> bool:
        return bool(np.allclose(self.matrix, self.matrix[0]))


@dataclass(frozen=True)
class Trajectory:
    """Iterates of one method plus, per iteration k, the region its step was taken in.

    ``steps[k]`` is the candidate step from ``iterates[k]`` (it always lies on the boundary of
    ``regions[k]``); ``accepted[k]`` tells whether it was taken (only trust-region methods reject).
    """

    method: str
    label: str
    iterates: np.ndarray  # (K+1, 2)
    regions: tuple[Region, ...]  # K
    steps: np.ndarray  # (K, 2)
    accepted: np.ndarray  # (K,) bool
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))  # f at iterates, (K+1,)

    @property
    def final(self) -> np.ndarray:
        return self.iterates[-1]


def linear_model_step(grad: np.ndarray, matrix: np.ndarray, radius: float) -> np.ndarray:
    """argmin gᵀs subject to ‖s‖_M ≤ Δ, in closed form: s = -Δ M⁻¹g / ‖g‖_{M⁻¹} (paper Eq. (10)).

    Args:
        grad: the gradient g.
        matrix: the positive diagonal of M.
        radius: Δ > 0.

    Returns the zero step when g = 0 (every feasible point is optimal).
    """
    if not radius > 0:
        raise ValueError(f"Invalid trust radius: {radius}")
    grad = np.asarray(grad, dtype=float)
    matrix = np.asarray(matrix, dtype=float)
    if np.any(matrix <= 0):
        raise ValueError(f"Invalid norm matrix: {matrix}; entries must be positive")
    dual = float(np.sqrt(np.sum(grad * grad / matrix)))  # ‖g‖_{M⁻¹}
    if dual == 0.0:
        return np.zeros_like(grad)
    return -radius * (grad / matrix) / dual


def _check_common(lr_or_radius: float, steps: int, what: str) -> None:
    if not (np.isfinite(lr_or_radius) and lr_or_radius > 0):
        raise ValueError(f"Invalid {what}: {lr_or_radius}; it must be a positive number")
    if not (isinstance(steps, (int, np.integer)) and 1 <= steps <= 10_000):
        raise ValueError(f"Invalid number of steps: {steps}; use an integer between 1 and 10000")


def _finish(method: str, label: str, problem: Quadratic, xs: list, regions: list, steps: list,
            accepted: list) -> Trajectory:
    iterates = np.array(xs, dtype=float)
    return Trajectory(method, label, iterates, tuple(regions), np.array(steps, dtype=float).reshape(-1, 2),
                      np.array(accepted, dtype=bool), np.array([problem.value(x) for x in iterates]))


_BLOWUP = 1e6  # stop a diverging method before the numbers overflow


def _preconditioned_descent(problem: Quadratic, lr: float, steps: int, precond) -> tuple[list, list, list, list]:
    """x ← x - η M⁻¹g with M = ``precond(g)`` (called once per step, may accumulate); records each step's
    implicit trust region ‖s‖_M ≤ η‖g‖_{M⁻¹} (paper Eq. (5)). Stops early when the iterates blow up."""
    x = problem.start.copy()
    xs, regions, ss, acc = [x.copy()], [], [], []
    for _ in range(steps):
        g = problem.grad(x)
        m = precond(g)
        s = -lr * g / m
        regions.append(Region(x.copy(), float(lr * np.sqrt(np.sum(g * g / m))), m))
        x = x + s
        xs.append(x.copy())
        ss.append(s)
        acc.append(True)
        if np.linalg.norm(x) > _BLOWUP:
            break
    return xs, regions, ss, acc


def gradient_descent(problem: Quadratic, *, lr: float, steps: int = 30) -> Trajectory:
    """x ← x - η g. Its implicit trust region is the ball ‖s‖ ≤ η‖g‖ (M = I).

    Args:
        problem: the quadratic.
        lr: step size η > 0 (converges for η < 2/λ_max(A)).
        steps: iterations (default 30).
    """
    _check_common(lr, steps, "step size")
    trace = _preconditioned_descent(problem, lr, steps, lambda g: np.ones(2))
    return _finish("gd", "Gradient descent", problem, *trace)


def adagrad(problem: Quadratic, *, lr: float, steps: int = 30, eps: float = 1e-10) -> Trajectory:
    """x ← x - η M⁻¹g with M = diag(sqrt(ε + Σₜ gₜ²)) (Duchi et al. 2011).

    Its implicit trust region at step k is the ellipse ‖s‖_M ≤ Δₖ = η‖g‖_{M⁻¹} (paper Eq. (5)).

    Args:
        problem: the quadratic.
        lr: step size η > 0.
        steps: iterations (default 30).
        eps: floor ε inside the square root (default 1e-10).
    """
    _check_common(lr, steps, "step size")
    if not eps > 0:
        raise ValueError(f"Invalid eps: {eps}")
    sum_sq = np.zeros(2)

    def precond(g: np.ndarray) -> np.ndarray:
        sum_sq[:] += g * g
        return np.sqrt(eps + sum_sq)

    trace = _preconditioned_descent(problem, lr, steps, precond)
    return _finish("adagrad", "Adagrad", problem, *trace)


def first_order_trust_region(problem: Quadratic, *, radius: float, steps: int = 30, norm: str = "uniform",
                             eta1: float = 0.1, eta2: float = 0.9, gamma1: float = 1.5, gamma2: float = 2.0,
                             max_radius: float = 10.0, eps: float = 1e-10) -> Trajectory:
    """Trust region on the linear model m(s) = gᵀs (paper Algorithm 1 without the quadratic term).

    Each step s = argmin gᵀs over ‖s‖_M ≤ Δ lies on the boundary; ρ = (f(x) - f(x+s)) / (-gᵀs).
    ρ ≥ η₂: accept, Δ ← min(γ₁Δ, Δ_max); η₁ ≤ ρ < η₂: accept; ρ < η₁: reject, Δ ← Δ/γ₂.

    Args:
        problem: the quadratic.
        radius: initial radius Δ₀ > 0 (in M-units).
        steps: iterations, rejected ones included (default 30).
        norm: ``"uniform"`` (M = I, a ball) or ``"adagrad"`` (M = diag(sqrt(ε + Σ g²)) over the gradients
            at accepted iterates).
        eta1, eta2: acceptance thresholds (defaults 0.1, 0.9), 0 ≤ η₁ ≤ η₂ ≤ 1.
        gamma1: growth factor (default 1.5) ≥ 1; gamma2: shrink divisor (default 2.0) > 1.
        max_radius: Δ_max (default 10).
        eps: Adagrad floor (default 1e-10).
    """
    _check_common(radius, steps, "trust radius")
    if norm not in ("uniform", "adagrad"):
        raise ValueError(f"Invalid norm: {norm!r}; choose 'uniform' or 'adagrad'")
    if not 0 <= eta1 <= eta2 <= 1:
        raise ValueError(f"Invalid thresholds: eta1={eta1}, eta2={eta2}; need 0 <= eta1 <= eta2 <= 1")
    if gamma1 < 1 or gamma2 <= 1:
        raise ValueError(f"Invalid radius factors: gamma1={gamma1} (>= 1), gamma2={gamma2} (> 1)")
    x = problem.start.copy()
    g = problem.grad(x)
    sum_sq = g * g
    delta = float(min(radius, max_radius))
    xs, regions, ss, acc = [x.copy()], [], [], []
    for _ in range(steps):
        m = np.ones(2) if norm == "uniform" else np.sqrt(eps + sum_sq)
        s = linear_model_step(g, m, delta)
        regions.append(Region(x.copy(), delta, m))
        ss.append(s)
        pred = -float(g @ s)
        if pred <= 0:  # stationary point: nothing left to gain
            acc.append(False)
            xs.append(x.copy())
            break
        rho = (problem.value(x) - problem.value(x + s)) / pred
        accepted, delta = radius_update(rho, delta, eta1=eta1, eta2=eta2, gamma1=gamma1, gamma2=gamma2,
                                        max_radius=max_radius)
        if accepted:
            x = x + s
            g = problem.grad(x)
            sum_sq = sum_sq + g * g
        acc.append(accepted)
        xs.append(x.copy())
    label = "1st-order TR (uniform)" if norm == "uniform" else "1st-order TR (Adagrad)"
    return _finish(f"tr-{norm}", label, problem, xs, regions, ss, acc)


def _tr_start_radius(problem: Quadratic, lr: float, norm: str) -> float:
    """Δ₀ that makes the first TR step equal the first GD (uniform) or Adagrad step of step size ``lr``."""
    g = problem.grad(problem.start)
    m = np.ones(2) if norm == "uniform" else np.sqrt(1e-10 + g * g)
    return float(lr * np.sqrt(np.sum(g * g / m))) or 1e-3


# name -> (label, which step size it uses, runner(problem, lr, steps))
METHODS: dict[str, tuple[str, str, Callable[[Quadratic, float, int], Trajectory]]] = {
    "gd": ("Gradient descent", "gd", lambda p, lr, n: gradient_descent(p, lr=lr, steps=n)),
    "adagrad": ("Adagrad", "adagrad", lambda p, lr, n: adagrad(p, lr=lr, steps=n)),
    "tr-uniform": ("1st-order TR (uniform)", "gd", lambda p, lr, n: first_order_trust_region(
        p, radius=_tr_start_radius(p, lr, "uniform"), steps=n, norm="uniform")),
    "tr-adagrad": ("1st-order TR (Adagrad)", "adagrad", lambda p, lr, n: first_order_trust_region(
        p, radius=_tr_start_radius(p, lr, "adagrad"), steps=n, norm="adagrad")),
}


def run_method(method: str, problem: Quadratic, *, lr: float, steps: int = 30) -> Trajectory:
    """Run a method from ``METHODS`` by name. TR methods start with the radius of the matching first step.

    Raises:
        ValueError: unknown method (the message lists the choices) or invalid step size / steps.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method][2](problem, lr, steps)
