"""Fused CPU kernels for the trust-region step's vector work (Numba): one pass over the vectors where PyTorch takes many.

On the CPU, the Steihaug-Toint CG iteration written with PyTorch operations is about a dozen separate passes over
parameter-sized vectors (each ``torch.dot``/``mul``/``addcmul`` reads and writes whole vectors), which on the
Fashion-MNIST MLP costs more than a tenth of the TR step next to its gradient and Hessian-vector products. The same
arithmetic fused into loops takes three passes per iteration:

1. :func:`cg_curvature` — pᵀHp, sᵀMp and pᵀMp (the explicit M-inner products of DESIGN.md, not recursions);
2. :func:`cg_update` — s ← s + αp, r ← r + αHp and rᵀM⁻¹r, once α is known and the iteration is taken;
3. :func:`cg_direction` — p ← βp - M⁻¹r;

plus :func:`cg_init` and :func:`cg_final` around the loop (s = 0 and r = g are never written: the first update
reads g), and the norm
updates (:func:`adagrad_update`, :func:`rmsprop_update`) that fold a gradient in and refresh M in one pass.

The kernels work in place on NumPy views of contiguous CPU tensors (``Tensor.numpy()`` shares the memory), in the
vectors' own dtype (float32 or float64), accumulating sums in that dtype with reassociation allowed (SIMD partial
sums, as BLAS's dot does). They make no finite-math assumption: a NaN or Inf propagates to the returned sums, where
the solver's checks see it. ``M`` is passed as ``None`` for the identity (the spherical region); Numba compiles a
separate specialisation with the M-terms removed.

Numba compiles each kernel on first use and caches the machine code beside this file (``__pycache__``); without a
writable cache it compiles in memory. :func:`enabled` says whether a tensor can take this path: a CPU tensor of
float32/float64 with Numba importable. :func:`resolve` is the one place where the fused-or-PyTorch choice is made,
with torch.optim's ``fused`` convention (None: whichever the tensors allow; True: required; False: PyTorch's
operations, the device path that a GPU takes and that the host-synchronisation count measures). The trust-region
optimizer resolves its ``fused`` flag once, at construction, and passes the result down to its norm and solver.
"""
from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["enabled", "takes", "resolve", "numba_version", "views", "cg_init", "cg_curvature", "cg_update", "cg_direction",
           "cg_final", "adagrad_update", "rmsprop_update", "save_and_add", "warm_up"]

try:  # Numba is a pinned dependency (requirements.txt); without it every tensor takes the PyTorch path.
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on installs without numba
    numba = None  # type: ignore[assignment]  # Numba absent: every tensor takes the PyTorch path

_DTYPES = (torch.float32, torch.float64)
# Reassociation (vectorised reductions), contraction (FMA) and reciprocal approximation; never "nnan"/"ninf",
# so NaN and Inf behave as IEEE says and reach the solver's checks; NumPy's error model: x/0 is Inf, not an exception.
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


def numba_version() -> str | None:
    """The Numba version in use, or None when it is not installed."""
    return None if numba is None else str(numba.__version__)


def enabled(like: torch.Tensor) -> bool:
    """Whether vectors like ``like`` take the fused CPU path."""
    return (numba is not None and like.device.type == "cpu" and like.dtype in _DTYPES
            and not like.requires_grad)


def takes(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can work on these tensors in place: each on the fused path, contiguous, one dtype."""
    first = tensors[0]
    return all(enabled(t) and t.is_contiguous() and t.dtype == first.dtype for t in tensors)


def resolve(fused: bool | None, *tensors: torch.Tensor) -> bool:
    """Whether work on ``tensors`` runs in the fused kernels, by torch.optim's convention for its ``fused`` flag:
    None takes them where the tensors allow (:func:`takes`), False never, True always (a ValueError says why
    the tensors cannot, and what to pass instead)."""
    if fused is None:
        return bool(tensors) and takes(*tensors)
    if fused and not (tensors and takes(*tensors)):
        why = ("Numba is not installed" if numba is None
               else "they must be contiguous CPU tensors of one dtype, float32 or float64, without requires_grad")
        raise ValueError(f"Invalid fused=True: the fused kernels cannot take these tensors ({why}); pass "
                         "fused=None to choose automatically or fused=False for PyTorch's operations")
    return bool(fused)


def views(*tensors: torch.Tensor | None) -> list[Any]:
    """Zero-copy NumPy views of contiguous CPU tensors (None stays None)."""
    out: list[Any] = []
    for t in tensors:
        if t is None:
            out.append(None)
        else:
            if not t.is_contiguous():
                raise ValueError("Invalid vector for the fused kernels: it must be contiguous")
            out.append(t.detach().numpy())
    return out


def _jit(fn: Any) -> Any:
    if numba is None:  # pragma: no cover
        return fn
    return njit(cache=True, nogil=True, boundscheck=False, fastmath=_FASTMATH, error_model="numpy")(fn)


@_jit
def _cg_init(g, m, minv, p):  # noqa: ANN001, ANN202 - Numba kernels take arrays
    """minv = 1/M, p = -M⁻¹g (s = 0 and r = g are implicit until the first update); returns (gᵀM⁻¹g, gᵀg, how many
    entries of M are not > 0)."""
    zero = g.dtype.type(0)
    one = g.dtype.type(1)
    rv = zero
    gg = zero
    bad = 0  # a count, not a min: it vectorises, and NaN counts as not positive
    for i in range(g.shape[0]):
        gi = g[i]
        gg += gi * gi
        if m is None:
            p[i] = -gi
        else:
            mi = m[i]
            bad += not (mi > zero)
            inv = one / mi
            minv[i] = inv
            vi = gi * inv
            p[i] = -vi
            rv += gi * vi
    if m is None:
        rv = gg
    return rv, gg, bad


@_jit
def _cg_curvature(p, hp, s, m):  # noqa: ANN001, ANN202
    """(pᵀHp, sᵀMp, pᵀMp); ``s`` None stands for s = 0."""
    zero = p.dtype.type(0)
    curv = zero
    s_mp = zero
    p_mp = zero
    for i in range(p.shape[0]):
        pi = p[i]
        curv += pi * hp[i]
        mpi = pi if m is None else m[i] * pi
        if s is not None:
            s_mp += s[i] * mpi
        p_mp += pi * mpi
    return curv, s_mp, p_mp


@_jit
def _cg_update(s, r, p, hp, minv, alpha, g):  # noqa: ANN001, ANN202
    """s += αp, r += αHp; returns rᵀM⁻¹r (M⁻¹r itself is not stored: the direction pass recomputes it).
    With ``g`` given, s and r are taken as 0 and g (the first iteration): s = αp, r = g + αHp."""
    rv = s.dtype.type(0)
    for i in range(s.shape[0]):
        if g is None:
            s[i] += alpha * p[i]
            ri = r[i] + alpha * hp[i]
        else:
            s[i] = alpha * p[i]
            ri = g[i] + alpha * hp[i]
        r[i] = ri
        if minv is None:
            rv += ri * ri
        else:
            rv += ri * minv[i] * ri
    return rv


@_jit
def _cg_direction(p, r, minv, beta):  # noqa: ANN001, ANN202
    """p = βp - M⁻¹r."""
    for i in range(p.shape[0]):
        if minv is None:
            p[i] = beta * p[i] - r[i]
        else:
            p[i] = beta * p[i] - minv[i] * r[i]


@_jit
def _cg_final(g, s, r, m):  # noqa: ANN001, ANN202
    """(gᵀs, rᵀs, sᵀMs, sᵀs)."""
    zero = s.dtype.type(0)
    gs = zero
    rs = zero
    sms = zero
    ss = zero
    for i in range(s.shape[0]):
        si = s[i]
        gs += g[i] * si
        rs += r[i] * si
        ss += si * si
        if m is not None:
            sms += m[i] * si * si
    if m is None:
        sms = ss
    return gs, rs, sms, ss


@_jit
def _adagrad_update(sum_sq, g, m, eps):  # noqa: ANN001, ANN202
    """sum_sq += g², M = sqrt(sum_sq + ε)."""
    for i in range(g.shape[0]):
        gi = g[i]
        acc = sum_sq[i] + gi * gi
        sum_sq[i] = acc
        m[i] = math.sqrt(acc + eps)


@_jit
def _rmsprop_update(avg_sq, g, m, beta, eps):  # noqa: ANN001, ANN202
    """avg_sq = β·avg_sq + (1-β)g², M = sqrt(avg_sq) + ε."""
    one_minus = avg_sq.dtype.type(1) - beta
    for i in range(g.shape[0]):
        gi = g[i]
        acc = beta * avg_sq[i] + one_minus * gi * gi
        avg_sq[i] = acc
        m[i] = math.sqrt(acc) + eps


@_jit
def _save_and_add(w, b, s, offset):  # noqa: ANN001, ANN202
    """b = w, w = w + s[offset:offset + len(w)]."""
    for i in range(w.shape[0]):
        wi = w[i]
        b[i] = wi
        w[i] = wi + s[offset + i]


def _scalar(x: float, like: Any) -> Any:
    return like.dtype.type(x)


def cg_init(g: Any, m: Any, minv: Any, p: Any) -> tuple[float, float, int]:
    """Set up CG: minv = 1/M, p = -M⁻¹g (``m`` and ``minv`` None for M = I); s = 0 and r = g stay implicit until
    the first :func:`cg_update` (pass ``g`` to it), which saves writing and re-reading two vectors.

    Returns (gᵀM⁻¹g, gᵀg, the number of entries of M that are not positive, NaN included)."""
    rv, gg, bad = _cg_init(g, m, minv, p)
    return float(rv), float(gg), int(bad)


def cg_curvature(p: Any, hp: Any, s: Any, m: Any) -> tuple[float, float, float]:
    """(pᵀHp, sᵀMp, pᵀMp) in one pass (``s`` None: s = 0)."""
    curv, s_mp, p_mp = _cg_curvature(p, hp, s, m)
    return float(curv), float(s_mp), float(p_mp)


def cg_update(s: Any, r: Any, p: Any, hp: Any, minv: Any, alpha: float, g: Any = None) -> float:
    """Take the CG step α in place (s += αp, r += αHp; with ``g``: s = αp, r = g + αHp); returns the new rᵀM⁻¹r.
    A step τ to the boundary is the same update with α = τ."""
    return float(_cg_update(s, r, p, hp, minv, _scalar(alpha, s), g))


def cg_direction(p: Any, r: Any, minv: Any, beta: float) -> None:
    """p ← βp - M⁻¹r in place."""
    _cg_direction(p, r, minv, _scalar(beta, p))


def cg_final(g: Any, s: Any, r: Any, m: Any) -> tuple[float, float, float, float]:
    """(gᵀs, rᵀs, sᵀMs, sᵀs) in one pass."""
    gs, rs, sms, ss = _cg_final(g, s, r, m)
    return float(gs), float(rs), float(sms), float(ss)


def adagrad_update(sum_sq: Any, g: Any, m: Any, eps: float) -> None:
    """Fold g² into the Adagrad sum and write M = sqrt(sum + ε), in one pass."""
    _adagrad_update(sum_sq, g, m, _scalar(eps, sum_sq))


def rmsprop_update(avg_sq: Any, g: Any, m: Any, beta: float, eps: float) -> None:
    """Fold g² into the RMSprop average and write M = sqrt(avg) + ε, in one pass."""
    _rmsprop_update(avg_sq, g, m, _scalar(beta, avg_sq), _scalar(eps, avg_sq))



def save_and_add(ws: list[Any], bs: list[Any], s: Any) -> None:
    """Take a step on parameters in one pass each: copy every flat parameter view ``w`` into its backup ``b``, then
    add its slice of the flat step ``s`` (the parameters in order, as :func:`~trainer.optim.hvp.unflatten_into`
    splits it). The same float additions as ``w.add_(s_slice)``, so the result is bit for bit PyTorch's."""
    offset = 0
    for w, b in zip(ws, bs):
        _save_and_add(w, b, s, offset)
        offset += w.shape[0]


def warm_up(dtype: torch.dtype = torch.float32) -> None:
    """Compile (or load from the cache) every kernel for ``dtype`` now, with and without M, so that a worker that
    has called this pays no compilation in its first trust-region step (the first call in a process also starts
    Numba's code generator, about half a second)."""
    if numba is None:  # pragma: no cover
        return
    g, m, minv, s, r, p, hp = views(*[torch.ones(2, dtype=dtype) for _ in range(7)])
    for mm, mi in ((m, minv), (None, None)):
        cg_init(g, mm, mi, p)
        cg_curvature(p, hp, None, mm)
        cg_curvature(p, hp, s, mm)
        cg_update(s, r, p, hp, mi, 0.5, g)
        cg_update(s, r, p, hp, mi, 0.5)
        cg_direction(p, r, mi, 0.5)
        cg_final(g, s, r, mm)
    adagrad_update(s, g, m, 1e-10)
    rmsprop_update(s, g, m, 0.8, 1e-10)
    save_and_add([r], [hp], s)
