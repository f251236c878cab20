"""Diagonal trust-region norms ‖s‖_M = sqrt(Σ Mᵢsᵢ²): uniform, Adagrad and RMSprop (DESIGN.md step 2)."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from trainer.optim import fused

__all__ = ["DiagonalNorm", "UniformNorm", "AdagradNorm", "RMSpropNorm", "make_norm", "NORMS"]


def _reuse(buf: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``buf`` when it matches ``like`` (shape, dtype, device), else a new buffer: no allocation per step."""
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
        return torch.empty_like(like)
    return buf


class DiagonalNorm(ABC):
    """A norm matrix M kept as a positive vector; ``update(g)`` folds in a minibatch gradient."""

    name = "base"

    def __init__(self, *, eps: float = 1e-10) -> None:
        if not eps > 0:
            raise ValueError(f"Invalid eps: {eps}")
        self.eps = eps
        self.updates = 0

    @abstractmethod
    def update(self, grad: torch.Tensor) -> None:
        """Fold one minibatch gradient into the accumulator."""

    @abstractmethod
    def matrix(self, like: torch.Tensor) -> torch.Tensor | None:
        """Current M (``None`` means the identity)."""

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]


class UniformNorm(DiagonalNorm):
    """M = I: the spherical trust region."""

    name = "uniform"

    def update(self, grad: torch.Tensor) -> None:
        self.updates += 1

    def matrix(self, like: torch.Tensor) -> torch.Tensor | None:
        return None


class AdagradNorm(DiagonalNorm):
    """M = sqrt(ε + Σₜ gₜ²) (Duchi et al. 2011), ε kept as a floor so M > 0 always."""

    name = "adagrad"

    def __init__(self, *, eps: float = 1e-10) -> None:
        super().__init__(eps=eps)
        self.sum_sq: torch.Tensor | None = None
        self._m: torch.Tensor | None = None  # M for the current sum (None: recompute at the next matrix())

    def update(self, grad: torch.Tensor) -> None:
        g = grad.detach()
        if self.sum_sq is None:
            self.sum_sq = torch.zeros_like(g)
        m = _reuse(getattr(self, "_buf", None), self.sum_sq)
        self._buf = m
        if fused.enabled(g) and g.is_contiguous() and self.sum_sq.dtype == g.dtype:
            fused.adagrad_update(*fused.views(self.sum_sq, g, m), self.eps)  # one pass: the sum and M
        else:
            self.sum_sq.addcmul_(g, g)
            torch.add(self.sum_sq, self.eps, out=m).sqrt_()
        self._m = m
        self.updates += 1

    def matrix(self, like: torch.Tensor) -> torch.Tensor | None:
        """M (a buffer reused by the next update: use it before updating again)."""
        if self.sum_sq is None:
            return torch.full_like(like, self.eps**0.5)
        if self._m is None:
            self._buf = _reuse(getattr(self, "_buf", None), self.sum_sq)
            self._m = torch.add(self.sum_sq, self.eps, out=self._buf).sqrt_()
        return self._m

    def state_dict(self) -> dict:
        return {"updates": self.updates, "sum_sq": self.sum_sq}

    def load_state_dict(self, state: dict) -> None:
        self.updates, self.sum_sq = state["updates"], state["sum_sq"]
        self._m = None


class RMSpropNorm(DiagonalNorm):
    """M = sqrt(v) + ε with v ← βv + (1-β)g² (Tieleman & Hinton 2012), v₀ = 0; ε is a fixed floor."""

    name = "rmsprop"

    def __init__(self, *, beta: float = 0.8, eps: float = 1e-10) -> None:
        super().__init__(eps=eps)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta: {beta}")
        self.beta = beta
        self.avg_sq: torch.Tensor | None = None
        self._m: torch.Tensor | None = None  # M for the current average (None: recompute at the next matrix())

    def update(self, grad: torch.Tensor) -> None:
        g = grad.detach()
        if self.avg_sq is None:
            self.avg_sq = torch.zeros_like(g)
        m = _reuse(getattr(self, "_buf", None), self.avg_sq)
        self._buf = m
        if fused.enabled(g) and g.is_contiguous() and self.avg_sq.dtype == g.dtype:
            fused.rmsprop_update(*fused.views(self.avg_sq, g, m), self.beta, self.eps)  # one pass: v and M
        else:
            self.avg_sq.mul_(self.beta).addcmul_(g, g, value=1.0 - self.beta)
            torch.sqrt(self.avg_sq, out=m).add_(self.eps)
        self._m = m
        self.updates += 1

    def matrix(self, like: torch.Tensor) -> torch.Tensor | None:
        """M (a buffer reused by the next update: use it before updating again)."""
        if self.avg_sq is None:
            return torch.full_like(like, self.eps)
        if self._m is None:
            self._buf = _reuse(getattr(self, "_buf", None), self.avg_sq)
            self._m = torch.sqrt(self.avg_sq, out=self._buf).add_(self.eps)
        return self._m

    def state_dict(self) -> dict:
        return {"updates": self.updates, "avg_sq": self.avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.updates, self.avg_sq = state["updates"], state["avg_sq"]
        self._m = None


NORMS = {"uniform": UniformNorm, "adagrad": AdagradNorm, "rmsprop": RMSpropNorm}


def make_norm(name: str, *, beta: float = 0.8, eps: float = 1e-10) -> DiagonalNorm:
    """Build a norm by name."""
    if name not in NORMS:
        raise ValueError(f"Invalid norm: {name!r}; choose one of {sorted(NORMS)}")
    if name == "rmsprop":
        return RMSpropNorm(beta=beta, eps=eps)
    return NORMS[name](eps=eps)
