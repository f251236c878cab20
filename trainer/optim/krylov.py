"""Krylov solvers for the trust-region subproblem min gᵀs + ½sᵀHs s.t. ‖s‖_M ≤ Δ (pure functions).

Both solvers see the Hessian only through an operator ``hvp(v) = H v`` and the norm only through the
diagonal ``precond`` = M (a positive 1-D tensor; ``None`` is the identity), so they can be tested on
explicit matrices. Each call of ``hvp`` is one Hessian-vector product and is counted in ``iterations``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Protocol

import numpy as np
import torch

from trainer.optim import fused as kernels

__all__ = ["SolverExit", "SubproblemResult", "Workspace", "steihaug_cg", "gltr", "solve_tridiagonal_tr", "stopping_threshold",
           "SOLVERS"]

Tensor = torch.Tensor
HVP = Callable[[Tensor], Tensor]


class SolverExit(str, Enum):  # noqa: UP042 - a StrEnum would change str(member) from "SolverExit.X" to the value
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
        step_norm: ‖s‖₂ (Euclidean).
        grad_norm: ‖g‖₂ (Euclidean).
    """

    step: Tensor
    model_decrease: float
    iterations: int
    exit: SolverExit
    step_norm_m: float
    step_norm: float
    grad_norm: float


class Workspace:
    """Reusable vectors for :func:`steihaug_cg`, so repeated solves of one size allocate nothing.

    Allocating and freeing a dozen parameter-sized vectors per solve costs more than the arithmetic on the CPU
    (the allocator returns large blocks to the OS, and every reuse page-faults). A trust-region optimizer keeps
    one workspace for its lifetime; a result's ``step`` then lives in the workspace and is valid until the next
    solve with it.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, Tensor] = {}
        self._views: dict[str, tuple[Tensor, np.ndarray]] = {}

    def get(self, name: str, like: Tensor) -> Tensor:
        """An uninitialised buffer ``name`` with ``like``'s shape, dtype and device (kept for the next call)."""
        buf = self._bufs.get(name)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._bufs[name] = torch.empty_like(like, memory_format=torch.contiguous_format)
        return buf

    def arrays(self, names: tuple[str, ...], like: Tensor) -> list[tuple[Tensor, np.ndarray]]:
        """Buffers like :meth:`get` (CPU), each with a NumPy view of its memory, made once and kept with it."""
        out = []
        for name in names:
            buf = self.get(name, like)
            view = self._views.get(name)
            if view is None or view[0] is not buf:
                view = self._views[name] = (buf, buf.numpy())
            out.append(view)
        return out

    def rows(self, name: str, n: int, like: Tensor) -> Tensor:
        """An uninitialised ``n × like.numel()`` buffer (e.g. a Lanczos basis), kept for the next call."""
        shape = (n, like.numel())
        buf = self._bufs.get(name)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != like.dtype or buf.device != like.device:
            self._bufs.pop(name, None)  # free the old one first: bases can be large
            buf = self._bufs[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf


def _check(grad: Tensor, radius: float, precond: Tensor | None, tol: float, theta: float, max_iter: int) -> None:
    """Argument checks that need no device values (M's positivity is checked with the first products)."""
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
    if precond is not None and precond.shape != grad.shape:
        raise ValueError(f"Invalid preconditioner shape {tuple(precond.shape)}; expected {tuple(grad.shape)}")


def _initial_product(r: Tensor, z: Tensor, precond: Tensor | None) -> float:
    """rᵀz (= ‖g‖²_{M⁻¹} for z = M⁻¹g), checking M > 0 in the same host transfer (one synchronisation)."""
    if precond is None:
        return float(torch.dot(r, z))
    rz, m_min = torch.stack((torch.dot(r, z), precond.min().to(r.dtype))).tolist()
    if not m_min > 0:
        raise ValueError("Invalid preconditioner: every entry of M must be positive")
    return rz


def stopping_threshold(g_norm: float, tol: float, theta: float) -> float:
    """The Krylov stopping threshold ‖g‖_{M⁻¹}·min(κ, ‖g‖_{M⁻¹}^θ) shared by both solvers (CGT §7.5.1)."""
    return g_norm * min(tol, g_norm**theta)


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
    workspace: Workspace | None = None,
    fused: bool | None = None,
) -> SubproblemResult:
    """Preconditioned Steihaug-Toint truncated CG (Conn, Gould & Toint, Algorithm 7.5.1).

    Minimizes m(s) = gᵀs + ½sᵀHs subject to ‖s‖_M = sqrt(Σ Mᵢsᵢ²) ≤ Δ, with the preconditioner equal to
    the norm matrix M. The M-inner products sᵀMp and pᵀMp are computed explicitly (O(d) each) every
    iteration rather than by the textbook recursions, which drift in floating point; ‖s‖²_M is advanced by
    ‖s + αp‖²_M = ‖s‖²_M + 2α sᵀMp + α² pᵀMp from them, and ‖s‖_M of the result is computed explicitly.

    Stopping rule (the same as :func:`gltr`'s, so a solver comparison is like for like): the
    preconditioned residual ‖r_k‖_{M⁻¹} = sqrt(r_kᵀM⁻¹r_k), r_k = g + Hs_k, is ≤ ‖g‖_{M⁻¹}·min(κ, ‖g‖_{M⁻¹}^θ)
    (:func:`stopping_threshold`); with M = I both norms are Euclidean.

    One driver (:func:`_cg_iterate`: the exits, τ and the stopping rule) over two implementations of the vector
    work: fused CPU passes (:class:`_FusedVectors`, :mod:`trainer.optim.fused`: three per iteration instead of
    about a dozen PyTorch operations) and PyTorch operations (:class:`_TorchVectors`, any device: one host
    synchronisation per iteration, since all scalars of an iteration, including those of the tentative update
    s + αp, travel in one transfer, plus one before and one after the loop). The two agree to rounding
    (tests/trainer/test_krylov.py runs every case on both).

    Args:
        grad: flat gradient g.
        hvp: callable v ↦ Hv.
        radius: trust radius Δ > 0 (in M-units).
        precond: diagonal M as a positive 1-D tensor; None for the identity (spherical region).
        tol: κ in the stopping rule. Default 0.1.
        theta: θ in the stopping rule. Default 0.5.
        max_iter: cap on iterations (= Hessian-vector products). Default 50.
        workspace: reuse its vectors (no allocation per solve); the returned step then lives in it. Default
            None: fresh vectors.
        fused: the fused CPU kernels (True: required, ValueError when the vectors cannot take them), PyTorch
            operations (False), or whichever the vectors allow (None, the default), as
            :func:`trainer.optim.fused.resolve` decides.

    Returns:
        SubproblemResult with exit INTERIOR (tolerance met), BOUNDARY, NEGATIVE_CURVATURE or MAX_ITER.
    """
    _check(grad, radius, precond, tol, theta, max_iter)
    g = grad.detach()
    ws = workspace if workspace is not None else Workspace()
    on_cpu = kernels.resolve(fused, g) if precond is None else kernels.resolve(fused, g, precond)
    vectors: _CGVectors = _FusedVectors(g, hvp, precond, ws) if on_cpu else _TorchVectors(g, hvp, precond, ws)
    rv = vectors.start()
    g_norm = math.sqrt(max(rv, 0.0))
    if g_norm == 0.0:
        return SubproblemResult(vectors.s.zero_(), 0.0, 0, SolverExit.INTERIOR, 0.0, 0.0, 0.0)
    exit_, hvps = _cg_iterate(vectors, rv, radius, stopping_threshold(g_norm, tol, theta) ** 2, max_iter)
    # m(s) = gᵀs + ½sᵀHs with Hs = r - g, so m(s) = ½(gᵀs + rᵀs): no extra Hessian-vector product.
    gs, rs, sms, ss, gg = vectors.finish()
    return SubproblemResult(vectors.s, -0.5 * (gs + rs), hvps, exit_, math.sqrt(max(sms, 0.0)),
                            math.sqrt(max(ss, 0.0)), math.sqrt(max(gg, 0.0)))


def _cg_iterate(vectors: _CGVectors, rv: float, radius: float, stop_sq: float, max_iter: int
                ) -> tuple[SolverExit, int]:
    """The Steihaug-Toint iteration on ``vectors`` from s = 0, r = g, p = -M⁻¹g with rᵀM⁻¹r = ``rv``: returns the
    exit and the number of Hessian-vector products. Its rules are written once, for both implementations."""
    exit_ = SolverExit.MAX_ITER
    hvps = 0
    s_ms = 0.0
    for _ in range(max_iter):
        curv, s_mp, p_mp = vectors.curvature()
        hvps += 1
        if curv <= 0.0 or not math.isfinite(curv):
            vectors.to_boundary(_boundary_tau(s_ms, s_mp, p_mp, radius))
            exit_ = SolverExit.NEGATIVE_CURVATURE
            break
        # ‖s + αp‖²_M expanded in the explicit sᵀMp and pᵀMp of this iteration.
        alpha = rv / curv
        s_new_ms = s_ms + 2.0 * alpha * s_mp + alpha * alpha * p_mp
        if s_new_ms >= radius * radius:
            vectors.to_boundary(_boundary_tau(s_ms, s_mp, p_mp, radius))
            exit_ = SolverExit.BOUNDARY
            break
        rv_new = vectors.take(alpha)
        s_ms = s_new_ms
        if rv_new <= stop_sq:
            exit_ = SolverExit.INTERIOR
            break
        vectors.direction(rv_new / rv)
        rv = rv_new
    return exit_, hvps


class _CGVectors(Protocol):
    """The vector work of one CG solve (s, r = g + Hs and p live in the implementation)."""

    s: Tensor

    def start(self) -> float:
        """Set s = 0, r = g, p = -M⁻¹g (checking M > 0); returns gᵀM⁻¹g."""

    def curvature(self) -> tuple[float, float, float]:
        """One HVP Hp; returns (pᵀHp, sᵀMp, pᵀMp)."""

    def to_boundary(self, tau: float) -> None:
        """s += τp, r += τHp (the last update: no scalars needed)."""

    def take(self, alpha: float) -> float:
        """s += αp, r += αHp; returns the new rᵀM⁻¹r."""

    def direction(self, beta: float) -> None:
        """p ← βp - M⁻¹r."""

    def finish(self) -> tuple[float, float, float, float, float]:
        """(gᵀs, rᵀs, sᵀMs, sᵀs, gᵀg)."""


class _FusedVectors:
    """CG's vector work as fused CPU passes (:mod:`trainer.optim.fused`) on NumPy views of the workspace; no
    tentative vectors, since on the CPU the scalars are at hand without a transfer. s = 0 and r = g are not
    written until the first update, which reads g."""

    def __init__(self, g: Tensor, hvp: HVP, precond: Tensor | None, ws: Workspace) -> None:
        names = ("s", "r", "p", "minv") if precond is not None else ("s", "r", "p")
        (self.s, self.s_n), (_, self.r_n), (self.p, self.p_n), *inv = ws.arrays(names, g)
        self.minv_n = inv[0][1] if inv else None
        self.g_n, self.m_n = kernels.views(g, precond)
        self.g, self.hvp = g, hvp
        self.first: np.ndarray | None = self.g_n  # s = 0 and r = g until the first update writes them
        self.hp_n: np.ndarray | None = None
        self.gg = 0.0

    def start(self) -> float:
        rv, self.gg, not_positive = kernels.cg_init(self.g_n, self.m_n, self.minv_n, self.p_n)
        if not_positive:
            raise ValueError("Invalid preconditioner: every entry of M must be positive")
        return rv

    def curvature(self) -> tuple[float, float, float]:
        hp = self.hvp(self.p)
        self.hp_n = hp.detach().to(self.g.dtype).contiguous().numpy()  # no copy when it already is (an HVP's is)
        return kernels.cg_curvature(self.p_n, self.hp_n, None if self.first is not None else self.s_n, self.m_n)

    def to_boundary(self, tau: float) -> None:
        kernels.cg_update(self.s_n, self.r_n, self.p_n, self.hp_n, self.minv_n, tau, self.first)

    def take(self, alpha: float) -> float:
        rv_new = kernels.cg_update(self.s_n, self.r_n, self.p_n, self.hp_n, self.minv_n, alpha, self.first)
        self.first = None
        return rv_new

    def direction(self, beta: float) -> None:
        kernels.cg_direction(self.p_n, self.r_n, self.minv_n, beta)

    def finish(self) -> tuple[float, float, float, float, float]:
        gs, rs, sms, ss = kernels.cg_final(self.g_n, self.s_n, self.r_n, self.m_n)
        return gs, rs, sms, ss, self.gg


class _TorchVectors:
    """CG's vector work as PyTorch operations (any device). :meth:`curvature` also computes the tentative update
    s + αp, r + αHp with α = rᵀM⁻¹r / pᵀHp kept on the device, so that pᵀHp, sᵀMp, pᵀMp and the updated rᵀM⁻¹r
    reach the host in a single transfer; :meth:`take` swaps the tentative vectors in."""

    def __init__(self, g: Tensor, hvp: HVP, precond: Tensor | None, ws: Workspace) -> None:
        self.g, self.hvp, self.precond = g, hvp, precond
        self.minv = None if precond is None else torch.reciprocal(precond, out=ws.get("minv", g))
        self.s = ws.get("s", g).zero_()
        self.r = ws.get("r", g).copy_(g)  # residual r = g + Hs
        minv = self.minv
        self.v = torch.mul(self.r, minv, out=ws.get("v", g)) if minv is not None else self.r  # M⁻¹r (r when M = I)
        self.p = torch.neg(self.v, out=ws.get("p", g))
        # Tentative iterates and scratch: written each iteration, swapped in when the iteration is taken.
        self.s_new, self.r_new = ws.get("s_new", g), ws.get("r_new", g)
        self.v_new = ws.get("v_new", g) if minv is not None else None
        self.mp = ws.get("mp", g) if precond is not None else self.p  # M p
        self.tmp = ws.get("tmp", g) if precond is not None else None
        self.hp = self.p
        self.rv_t = self.rv_new_t = torch.dot(self.r, self.v)
        self.rv_new = 0.0

    def start(self) -> float:
        return _initial_product(self.r, self.v, self.precond)

    def curvature(self) -> tuple[float, float, float]:
        p = self.p
        hp = self.hp = self.hvp(p)
        if self.precond is not None:
            torch.mul(p, self.precond, out=self.mp)
        curv_t = torch.dot(p, hp)
        alpha_t = self.rv_t / curv_t
        torch.addcmul(self.s, p, alpha_t, out=self.s_new)
        torch.addcmul(self.r, hp, alpha_t, out=self.r_new)
        if self.minv is not None and self.v_new is not None:
            torch.mul(self.r_new, self.minv, out=self.v_new)
            rv_new_t = torch.dot(self.r_new, self.v_new)
        else:
            rv_new_t = torch.dot(self.r_new, self.r_new)
        scalars = torch.stack((curv_t, torch.dot(self.s, self.mp), torch.dot(p, self.mp), rv_new_t))
        self.rv_new_t = scalars[3]
        curv, s_mp, p_mp, self.rv_new = scalars.tolist()
        return curv, s_mp, p_mp

    def to_boundary(self, tau: float) -> None:
        self.s.add_(self.p, alpha=tau)
        self.r.add_(self.hp, alpha=tau)

    def take(self, alpha: float) -> float:
        # α as the device computed it in curvature() (the same quotient as the driver's).
        self.s, self.s_new = self.s_new, self.s
        self.r, self.r_new = self.r_new, self.r
        if self.v_new is not None:
            self.v, self.v_new = self.v_new, self.v
        else:
            self.v = self.r
        self.rv_t = self.rv_new_t
        return self.rv_new

    def direction(self, beta: float) -> None:
        self.p.mul_(beta).sub_(self.v)

    def finish(self) -> tuple[float, float, float, float, float]:
        s, g = self.s, self.g
        ss_t = torch.dot(s, s)
        precond, tmp = self.precond, self.tmp
        sms_t = torch.dot(torch.mul(s, precond, out=tmp), s) if precond is not None and tmp is not None else ss_t
        gs, rs, sms, ss, gg = torch.stack((torch.dot(g, s), torch.dot(self.r, s), sms_t, ss_t, torch.dot(g, g))).tolist()
        return gs, rs, sms, ss, gg


def _solve_tridiagonal_np(alphas: np.ndarray, betas: np.ndarray, gamma0: float, radius: float
                          ) -> tuple[np.ndarray, float, bool]:
    """:func:`solve_tridiagonal_tr` on host float64 arrays (no device tensors, so no synchronisation)."""
    from scipy.linalg import eigh_tridiagonal  # LAPACK's tridiagonal eigensolver; only the Lanczos solver needs it

    evals, evecs = eigh_tridiagonal(alphas, betas[: len(alphas) - 1])
    c = gamma0 * evecs[0, :]  # coordinates of γ₀e₁ in the eigenbasis
    lmin = float(evals[0])
    scale = max(1.0, float(np.abs(evals).max()))
    eps = 1e-12 * scale

    def h_of(lam: float) -> np.ndarray:
        return -(evecs @ (c / (evals + lam)))

    if lmin > eps:
        h = h_of(0.0)
        if float(np.linalg.norm(h)) <= radius:
            return h, 0.0, False
    lo = max(0.0, -lmin)
    # Hard case: the component of c on the leftmost eigenspace vanishes.
    mask = np.abs(evals - lmin) <= 1e-10 * scale
    c_left = float(np.linalg.norm(c[mask]))
    if c_left <= 1e-12 * max(1.0, abs(gamma0)):
        lam = lo
        denom = np.where(mask, 1.0, evals + lam)
        coeff = np.where(mask, 0.0, c / denom)
        h = -(evecs @ coeff)
        hn = float(np.linalg.norm(h))
        if hn <= radius:
            u = evecs[:, int(np.flatnonzero(mask)[0])]
            # h + τu with ‖h + τu‖ = Δ; h ⟂ u, so τ = sqrt(Δ² - ‖h‖²).
            tau = math.sqrt(max(radius * radius - hn * hn, 0.0))
            return h + tau * u, lam, True
    # Secular equation φ(λ) = 1/‖h(λ)‖ - 1/Δ = 0 on (lo, ∞); φ is concave and increasing there.
    lam = lo + max(eps, 1e-12)
    hi = lo + float(np.linalg.norm(c)) / radius + scale
    for _ in range(200):
        d = evals + lam
        w = c / d
        hn2 = float(w @ w)
        hn = math.sqrt(hn2)
        phi = 1.0 / hn - 1.0 / radius
        if abs(phi) <= 1e-12 / radius:
            break
        if phi > 0:
            hi = min(hi, lam)
        else:
            lo = max(lo, lam)
        dphi = float(w @ (w / d)) / (hn2 * hn)
        lam_new = lam - phi / dphi
        if not (lo < lam_new < hi):
            lam_new = 0.5 * (lo + hi)
        if abs(lam_new - lam) <= 1e-15 * max(1.0, lam):
            lam = lam_new
            break
        lam = lam_new
    return h_of(lam), lam, True


def solve_tridiagonal_tr(
    alphas: Tensor, betas: Tensor, gamma0: float, radius: float
) -> tuple[Tensor, float, bool]:
    """Exact solution of min γ₀e₁ᵀh + ½hᵀTh s.t. ‖h‖₂ ≤ Δ for a symmetric tridiagonal T (float64).

    Characterizes the global minimizer as in Moré & Sorensen (1983): (T + λI)h = -γ₀e₁ with
    T + λI ⪰ 0, λ ≥ 0 and λ(‖h‖ - Δ) = 0. T is at most max_iter × max_iter, so instead of Cholesky-based
    Newton iterations we work in T's eigenbasis, where ‖h(λ)‖ is explicit and the secular equation
    1/‖h(λ)‖ = 1/Δ is solved by safeguarded Newton; the hard case (e₁ orthogonal to the leftmost
    eigenvector) is handled exactly by adding the eigenvector component that reaches the boundary.
    The work runs on the host in NumPy (T is tiny), so GLTR never synchronises the device for it.

    Args:
        alphas: diagonal of T (k values). betas: off-diagonal (k-1 values).
        gamma0: ‖g‖_{M⁻¹}. radius: Δ.

    Returns:
        (h as a float64 CPU tensor, λ, on_boundary).
    """
    h, lam, on_boundary = _solve_tridiagonal_np(np.asarray(alphas, dtype=np.float64),
                                                np.asarray(betas, dtype=np.float64), float(gamma0), float(radius))
    return torch.from_numpy(h), lam, on_boundary


def _tridiagonal(alphas: list[float], betas: list[float]) -> np.ndarray:
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas[: len(alphas) - 1], dtype=np.float64)
    return np.diag(a) + np.diag(b, 1) + np.diag(b, -1)


def gltr(
    grad: Tensor,
    hvp: HVP,
    radius: float,
    *,
    precond: Tensor | None = None,
    tol: float = 0.1,
    theta: float = 0.5,
    max_iter: int = 50,
    workspace: Workspace | None = None,
    fused: bool | None = None,
) -> SubproblemResult:
    """Generalized Lanczos trust-region solver (GLTR; Gould, Lucidi, Roma & Toint 1999; CGT §7.5.4).

    Builds an M-orthonormal Lanczos basis Q_k of the Krylov space K_k(M⁻¹H, M⁻¹g), so that
    Q_kᵀHQ_k = T_k is tridiagonal and ‖Q_k h‖_M = ‖h‖₂. Each iteration solves the tridiagonal problem
    min γ₀e₁ᵀh + ½hᵀT_kh s.t. ‖h‖ ≤ Δ exactly (:func:`solve_tridiagonal_tr`), so, unlike truncated CG,
    it continues past the boundary and follows the most negative curvature of the subspace.

    Stopping rule (the same as :func:`steihaug_cg`'s): the preconditioned residual
    ‖g + Hs_k‖_{M⁻¹} = γ_{k+1}|e_kᵀh_k|, known without extra products, is ≤ ‖g‖_{M⁻¹}·min(κ, ‖g‖_{M⁻¹}^θ)
    (:func:`stopping_threshold`); also on an invariant subspace, or at ``max_iter`` (at most d iterations).

    The basis is one preallocated ``min(max_iter, d) × d`` tensor (Q_k is a view of its first k rows, never
    rebuilt): it assembles s at the end and fully reorthogonalizes each new Lanczos vector, which keeps T_k
    faithful in floating point. Host synchronisations: one per iteration plus one before the loop.

    Args: as :func:`steihaug_cg`; with a ``workspace`` the basis is allocated once across solves. ``fused`` is
    accepted for the solvers' common signature and changes nothing: GLTR's vector work is PyTorch's.

    Returns:
        SubproblemResult; exit INTERIOR (solution strictly inside), BOUNDARY (on the boundary with a
        positive definite T_k), NEGATIVE_CURVATURE (on the boundary with T_k indefinite) or MAX_ITER.
    """
    _check(grad, radius, precond, tol, theta, max_iter)
    g = grad.detach()
    minv = None if precond is None else 1.0 / precond
    z = g * minv if minv is not None else g.clone()
    gamma0 = math.sqrt(max(_initial_product(g, z, precond), 0.0))
    if gamma0 == 0.0:
        return SubproblemResult(torch.zeros_like(g), 0.0, 0, SolverExit.INTERIOR, 0.0, 0.0,
                                float(torch.linalg.vector_norm(g)))
    stop = stopping_threshold(gamma0, tol, theta)
    n_max = min(max_iter, g.numel())
    ws = workspace if workspace is not None else Workspace()
    basis = ws.rows("basis", n_max, g)  # rows q_0, q_1, ... (M-orthonormal)
    alphas: list[float] = []
    betas: list[float] = []
    w_prev: Tensor | None = None
    r = g.clone()
    gamma = gamma0
    hvps = 0
    exit_ = SolverExit.MAX_ITER
    h = np.zeros(1)
    on_boundary = False
    for k in range(n_max):
        q = torch.div(z, gamma, out=basis[k])  # M-orthonormal direction
        w = r / gamma  # = M q
        hq = hvp(q)
        hvps += 1
        delta_t = torch.dot(q, hq)
        r = hq - delta_t * w
        if w_prev is not None:
            r.sub_(w_prev, alpha=betas[-1])
        # Full reorthogonalization against the stored basis (O(kd), cheap next to an HVP): without it,
        # finite precision re-introduces converged directions and T_k acquires spurious eigenvalues.
        Q = basis[: k + 1]
        corr = Q.T @ (Q @ r)
        r.sub_(corr * precond if precond is not None else corr)
        w_prev = w
        z = r * minv if minv is not None else r
        delta, gamma_sq = torch.stack((delta_t, torch.dot(r, z))).tolist()
        gamma_next = math.sqrt(max(gamma_sq, 0.0))
        alphas.append(delta)
        h, _, on_boundary = _solve_tridiagonal_np(np.asarray(alphas), np.asarray(betas), gamma0, radius)
        residual = gamma_next * abs(float(h[-1]))
        invariant = gamma_next <= 1e-12 * max(1.0, gamma0)
        if residual <= stop or invariant:
            exit_ = SolverExit.INTERIOR
            break
        if not math.isfinite(gamma_next):
            break
        betas.append(gamma_next)
        gamma = gamma_next
    T = _tridiagonal(alphas, betas)
    if exit_ is SolverExit.INTERIOR and on_boundary:
        from scipy.linalg import eigh_tridiagonal

        lmin = float(eigh_tridiagonal(np.diag(T), np.diag(T, 1), eigvals_only=True, select="i", select_range=(0, 0))[0])
        exit_ = SolverExit.NEGATIVE_CURVATURE if lmin < 0 else SolverExit.BOUNDARY
    m = h.shape[0]
    s = torch.as_tensor(h, dtype=g.dtype).to(g.device) @ basis[:m]
    model = gamma0 * float(h[0]) + 0.5 * float(h @ (T @ h))
    step_norm, grad_norm = torch.stack((torch.linalg.vector_norm(s), torch.linalg.vector_norm(g))).tolist()
    return SubproblemResult(s, -model, hvps, exit_, float(np.linalg.norm(h)), step_norm, grad_norm)


SOLVERS: dict[str, Callable[..., SubproblemResult]] = {"cg": steihaug_cg, "lanczos": gltr}
