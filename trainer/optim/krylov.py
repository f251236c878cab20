"""Krylov solvers for the trust-region subproblem min gᵀs + ½sᵀHs s.t. ‖s‖_M ≤ Δ (pure functions).

Both solvers see the Hessian only through an operator ``hvp(v) = H v`` and the norm only through the
diagonal ``precond`` = M (a positive 1-D tensor; ``None`` is the identity), so they can be tested on
explicit matrices. Each call of ``hvp`` is one Hessian-vector product and is counted in ``iterations``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import torch

__all__ = ["SolverExit", "SubproblemResult", "steihaug_cg", "gltr", "solve_tridiagonal_tr", "SOLVERS"]

Tensor = torch.Tensor
HVP = Callable[[Tensor], Tensor]


class SolverExit(str, Enum):
    """Why the Krylov iteration stopped."""

    INTERIOR = "interior"  # residual tolerance met inside the region
    BOUNDARY = "boundary"  # the step reached ‖s‖_M = Δ
    NEGATIVE_CURVATURE = "negative_curvature"  # pᵀHp ≤ 0 (CG) / indefinite model on the boundary (Lanczos)
    MAX_ITER = "max_iter"  # iteration cap reached


@dataclass(frozen=True)
class SubproblemResult:
    """Outcome of one subproblem solve.

    Attributes:
        step: the step s (same shape, dtype and device as the gradient).
        model_decrease: -m(s) = -(gᵀs + ½sᵀHs) ≥ 0, the predicted decrease.
        iterations: Hessian-vector products used.
        exit: why the solver stopped.
        step_norm_m: ‖s‖_M.
    """

    step: Tensor
    model_decrease: float
    iterations: int
    exit: SolverExit
    step_norm_m: float


def _check(grad: Tensor, radius: float, precond: Tensor | None, tol: float, theta: float, max_iter: int) -> None:
    if grad.dim() != 1:
        raise ValueError(f"Invalid gradient: expected a flat 1-D tensor, got shape {tuple(grad.shape)}")
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"Invalid trust radius: {radius}")
    if not tol > 0:
        raise ValueError(f"Invalid krylov tolerance: {tol}")
    if theta < 0:
        raise ValueError(f"Invalid theta: {theta}")
    if max_iter < 1:
        raise ValueError(f"Invalid max_iter: {max_iter}")
    if precond is not None:
        if precond.shape != grad.shape:
            raise ValueError(f"Invalid preconditioner shape {tuple(precond.shape)}; expected {tuple(grad.shape)}")
        if not bool((precond > 0).all()):
            raise ValueError("Invalid preconditioner: every entry of M must be positive")


def _boundary_tau(s_ms: float, s_mp: float, p_mp: float, radius: float) -> float:
    """Positive root τ of ‖s + τp‖²_M = Δ², from the explicit M-inner products (CGT eq. 7.5.5)."""
    # p_mp τ² + 2 s_mp τ + (s_ms - Δ²) = 0; c ≤ 0 because s is inside the region.
    c = s_ms - radius * radius
    disc = math.sqrt(max(s_mp * s_mp - p_mp * c, 0.0))
    # Numerically stable form of (-s_mp + disc) / p_mp.
    if s_mp >= 0:
        return -c / (s_mp + disc) if (s_mp + disc) > 0 else 0.0
    return (disc - s_mp) / p_mp


def steihaug_cg(
    grad: Tensor,
    hvp: HVP,
    radius: float,
    *,
    precond: Tensor | None = None,
    tol: float = 0.1,
    theta: float = 0.5,
    max_iter: int = 50,
) -> SubproblemResult:
    """Preconditioned Steihaug-Toint truncated CG (Conn, Gould & Toint, Algorithm 7.5.1).

    Minimizes m(s) = gᵀs + ½sᵀHs subject to ‖s‖_M = sqrt(Σ Mᵢsᵢ²) ≤ Δ, with the preconditioner equal to
    the norm matrix M. The M-inner products sᵀMs, sᵀMp and pᵀMp are computed explicitly (O(d) each)
    rather than by the textbook recursions, which drift in floating point.

    Args:
        grad: flat gradient g.
        hvp: callable v ↦ Hv.
        radius: trust radius Δ > 0 (in M-units).
        precond: diagonal M as a positive 1-D tensor; None for the identity (spherical region).
        tol: κ in the stopping rule ‖r_k‖ ≤ ‖g‖·min(κ, ‖g‖^θ). Default 0.1.
        theta: θ in the stopping rule. Default 0.5.
        max_iter: cap on iterations (= Hessian-vector products). Default 50.

    Returns:
        SubproblemResult with exit INTERIOR (tolerance met), BOUNDARY, NEGATIVE_CURVATURE or MAX_ITER.
    """
    _check(grad, radius, precond, tol, theta, max_iter)
    g = grad.detach()
    minv = None if precond is None else 1.0 / precond

    s = torch.zeros_like(g)
    r = g.clone()  # residual r = g + Hs
    v = r * minv if minv is not None else r  # preconditioned residual M⁻¹r (aliases r when M = I)
    p = -v
    rv = float(torch.dot(r, v))
    g_norm = math.sqrt(rv) if minv is None else float(torch.linalg.vector_norm(g))
    if g_norm == 0.0:
        return SubproblemResult(s, 0.0, 0, SolverExit.INTERIOR, 0.0)
    stop_sq = (g_norm * min(tol, g_norm**theta)) ** 2
    exit_ = SolverExit.MAX_ITER
    hvps = 0
    s_ms = 0.0
    for _ in range(max_iter):
        hp = hvp(p)
        hvps += 1
        mp = p * precond if precond is not None else p
        # pᵀHp, sᵀMp, pᵀMp computed explicitly each iteration (one conversion for the three).
        curv, s_mp, p_mp = torch.stack((torch.dot(p, hp), torch.dot(s, mp), torch.dot(p, mp))).tolist()
        if curv <= 0.0 or not math.isfinite(curv):
            tau = _boundary_tau(s_ms, s_mp, p_mp, radius)
            s.add_(p, alpha=tau)
            r.add_(hp, alpha=tau)
            exit_ = SolverExit.NEGATIVE_CURVATURE
            break
        alpha = rv / curv
        s_next_ms = s_ms + 2 * alpha * s_mp + alpha * alpha * p_mp
        if s_next_ms >= radius * radius:
            tau = _boundary_tau(s_ms, s_mp, p_mp, radius)
            s.add_(p, alpha=tau)
            r.add_(hp, alpha=tau)
            exit_ = SolverExit.BOUNDARY
            break
        s.add_(p, alpha=alpha)
        r.add_(hp, alpha=alpha)
        if minv is None:
            s_ms, rr = torch.stack((torch.dot(s, s), torch.dot(r, r))).tolist()
            rv_new = rr
        else:
            v = r * minv
            s_ms, rr, rv_new = torch.stack((torch.dot(s * precond, s), torch.dot(r, r), torch.dot(r, v))).tolist()
        if rr <= stop_sq:
            exit_ = SolverExit.INTERIOR
            break
        beta = rv_new / rv
        rv = rv_new
        p = p.mul_(beta).sub_(v)
    # m(s) = gᵀs + ½sᵀHs with Hs = r - g, so m(s) = ½(gᵀs + rᵀs): no extra Hessian-vector product.
    gs, rs, sms = torch.stack((torch.dot(g, s), torch.dot(r, s),
                               torch.dot(s * precond, s) if precond is not None else torch.dot(s, s))).tolist()
    return SubproblemResult(s, -0.5 * (gs + rs), hvps, exit_, math.sqrt(max(sms, 0.0)))


def solve_tridiagonal_tr(
    alphas: Tensor, betas: Tensor, gamma0: float, radius: float
) -> tuple[Tensor, float, bool]:
    """Exact solution of min γ₀e₁ᵀh + ½hᵀTh s.t. ‖h‖₂ ≤ Δ for a symmetric tridiagonal T (float64).

    Characterizes the global minimizer as in Moré & Sorensen (1983): (T + λI)h = -γ₀e₁ with
    T + λI ⪰ 0, λ ≥ 0 and λ(‖h‖ - Δ) = 0. T is at most max_iter × max_iter, so instead of Cholesky-based
    Newton iterations we work in T's eigenbasis, where ‖h(λ)‖ is explicit and the secular equation
    1/‖h(λ)‖ = 1/Δ is solved by safeguarded Newton; the hard case (e₁ orthogonal to the leftmost
    eigenvector) is handled exactly by adding the eigenvector component that reaches the boundary.

    Returns:
        (h, λ, on_boundary).
    """
    k = alphas.numel()
    T = torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)
    evals, evecs = torch.linalg.eigh(T)
    c = gamma0 * evecs[0, :]  # coordinates of γ₀e₁ in the eigenbasis
    lmin = float(evals[0])
    scale = max(1.0, float(evals.abs().max()))
    eps = 1e-12 * scale

    def h_of(lam: float) -> Tensor:
        return -(evecs @ (c / (evals + lam)))

    if lmin > eps:
        h = h_of(0.0)
        if float(torch.linalg.vector_norm(h)) <= radius:
            return h, 0.0, False
    lo = max(0.0, -lmin)
    # Hard case: the component of c on the leftmost eigenspace vanishes.
    mask = (evals - lmin).abs() <= 1e-10 * scale
    c_left = float(torch.linalg.vector_norm(c[mask]))
    if c_left <= 1e-12 * max(1.0, abs(gamma0)):
        lam = lo
        denom = evals + lam
        coeff = torch.where(mask, torch.zeros_like(c), c / torch.where(mask, torch.ones_like(denom), denom))
        h = -(evecs @ coeff)
        hn = float(torch.linalg.vector_norm(h))
        if hn <= radius:
            u = evecs[:, int(torch.nonzero(mask)[0])]
            # h + τu with ‖h + τu‖ = Δ; h ⟂ u, so τ = sqrt(Δ² - ‖h‖²).
            tau = math.sqrt(max(radius * radius - hn * hn, 0.0))
            return h + tau * u, lam, True
    # Secular equation φ(λ) = 1/‖h(λ)‖ - 1/Δ = 0 on (lo, ∞); φ is concave and increasing there.
    lam = lo + max(eps, 1e-12)
    hi = lo + float(torch.linalg.vector_norm(c)) / radius + scale
    for _ in range(200):
        d = evals + lam
        w = c / d
        hn2 = float(torch.dot(w, w))
        hn = math.sqrt(hn2)
        phi = 1.0 / hn - 1.0 / radius
        if abs(phi) <= 1e-12 / radius:
            break
        if phi > 0:
            hi = min(hi, lam)
        else:
            lo = max(lo, lam)
        dphi = float(torch.dot(w, w / d)) / (hn2 * hn)
        lam_new = lam - phi / dphi
        if not (lo < lam_new < hi):
            lam_new = 0.5 * (lo + hi)
        if abs(lam_new - lam) <= 1e-15 * max(1.0, lam):
            lam = lam_new
            break
        lam = lam_new
    return h_of(lam), lam, True


def gltr(
    grad: Tensor,
    hvp: HVP,
    radius: float,
    *,
    precond: Tensor | None = None,
    tol: float = 0.1,
    theta: float = 0.5,
    max_iter: int = 50,
) -> SubproblemResult:
    """Generalized Lanczos trust-region solver (GLTR; Gould, Lucidi, Roma & Toint 1999; CGT §7.5.4).

    Builds an M-orthonormal Lanczos basis Q_k of the Krylov space K_k(M⁻¹H, M⁻¹g), so that
    Q_kᵀHQ_k = T_k is tridiagonal and ‖Q_k h‖_M = ‖h‖₂. Each iteration solves the tridiagonal problem
    min γ₀e₁ᵀh + ½hᵀT_kh s.t. ‖h‖ ≤ Δ exactly (:func:`solve_tridiagonal_tr`), so, unlike truncated CG,
    it continues past the boundary and follows the most negative curvature of the subspace. The
    residual ‖g + Hs‖_{M⁻¹} = γ_{k+1}|e_kᵀh| is known without extra products; the iteration stops when it
    is ≤ ‖g‖_{M⁻¹}·min(κ, ‖g‖_{M⁻¹}^θ) (identical to CG's rule when M = I), on an invariant subspace, or at
    ``max_iter`` (at most d iterations). The basis (k vectors of size d) is kept: it assembles s at the end
    and fully reorthogonalizes each new Lanczos vector, which keeps T_k faithful in floating point.

    Args: as :func:`steihaug_cg`.

    Returns:
        SubproblemResult; exit INTERIOR (solution strictly inside), BOUNDARY (on the boundary with a
        positive definite T_k), NEGATIVE_CURVATURE (on the boundary with T_k indefinite) or MAX_ITER.
    """
    _check(grad, radius, precond, tol, theta, max_iter)
    g = grad.detach()
    minv = None if precond is None else 1.0 / precond
    z = g * minv if minv is not None else g.clone()
    gamma0 = math.sqrt(max(float(torch.dot(g, z)), 0.0))
    if gamma0 == 0.0:
        return SubproblemResult(torch.zeros_like(g), 0.0, 0, SolverExit.INTERIOR, 0.0)
    stop = gamma0 * min(tol, gamma0**theta)
    basis: list[Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    w_prev = torch.zeros_like(g)
    r = g.clone()
    gamma = gamma0
    hvps = 0
    exit_ = SolverExit.MAX_ITER
    h = torch.zeros(1, dtype=torch.float64)
    lam, on_boundary = 0.0, False
    for _ in range(min(max_iter, g.numel())):
        q = z / gamma  # M-orthonormal direction
        w = r / gamma  # = M q
        basis.append(q)
        hq = hvp(q)
        hvps += 1
        delta = float(torch.dot(q, hq))
        alphas.append(delta)
        r = hq - delta * w - (betas[-1] if betas else 0.0) * w_prev
        # Full reorthogonalization against the stored basis (O(kd), cheap next to an HVP): without it,
        # finite precision re-introduces converged directions and T_k acquires spurious eigenvalues.
        Q = torch.stack(basis)
        corr = Q.T @ (Q @ r)
        r = r - (corr * precond if precond is not None else corr)
        w_prev = w
        z = r * minv if minv is not None else r
        gamma_next = math.sqrt(max(float(torch.dot(r, z)), 0.0))
        a = torch.tensor(alphas, dtype=torch.float64)
        b = torch.tensor(betas, dtype=torch.float64)
        h, lam, on_boundary = solve_tridiagonal_tr(a, b, gamma0, radius)
        residual = gamma_next * abs(float(h[-1]))
        invariant = gamma_next <= 1e-12 * max(1.0, gamma0)
        if residual <= stop or invariant:
            exit_ = SolverExit.INTERIOR
            break
        if not math.isfinite(gamma_next):
            break
        betas.append(gamma_next)
        gamma = gamma_next
    if exit_ is SolverExit.INTERIOR and on_boundary:
        a = torch.tensor(alphas, dtype=torch.float64)
        b = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        T = torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)
        indefinite = float(torch.linalg.eigvalsh(T)[0]) < 0
        exit_ = SolverExit.NEGATIVE_CURVATURE if indefinite else SolverExit.BOUNDARY
    coeffs = h.to(dtype=g.dtype, device=g.device)
    s = torch.zeros_like(g)
    for i, q in enumerate(basis[: coeffs.numel()]):
        s.add_(q, alpha=float(coeffs[i]))
    a = torch.tensor(alphas, dtype=torch.float64)
    b = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
    T = torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)
    model = gamma0 * float(h[0]) + 0.5 * float(h @ (T @ h))
    return SubproblemResult(s, -model, hvps, exit_, float(torch.linalg.vector_norm(h)))


SOLVERS: dict[str, Callable[..., SubproblemResult]] = {"cg": steihaug_cg, "lanczos": gltr}
