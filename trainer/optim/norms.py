"""Diagonal trust-region norms ‖s‖_M = sqrt(Σ Mᵢsᵢ²): uniform, Adagrad and RMSprop (DESIGN.md step 2)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from trainer.optim import fused as kernels

__all__ = ["DiagonalNorm", "UniformNorm", "AdagradNorm", "RMSpropNorm", "make_norm", "NORMS"]


def _reuse(buf: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``buf`` when it matches ``like`` (shape, dtype, device), else a new buffer: no allocation per step."""
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
        return torch.empty_like(like)
    return buf


class DiagonalNorm(ABC):
    """A norm matrix M kept as a positive vector; ``update(g)`` folds in a minibatch gradient.

    ``fused`` chooses the fused CPU kernels for the update as :func:`trainer.optim.fused.resolve` does (None:
    wherever the tensors allow); the trust-region optimizer passes the choice it resolved once.
    """

    name = "base"

    def __init__(self, *, eps: float = 1e-10, fused: bool | None = None) -> None:
        if not eps > 0:
            raise ValueError(f"Invalid eps: {eps}")
        self.eps = eps
        self.fused = fused
        self.updates = 0

    @abstractmethod
    def update(self, grad: torch.Tensor) -> None:
        """Fold one minibatch gradient into the accumulator."""

    @abstractmethod
    def matrix(self, like: torch.Tensor) -> torch.Tensor | None:
        """Current M (``None`` means the identity)."""

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = state["updates"]


class UniformNorm(DiagonalNorm):
    """M = I: the spherical trust region."""

    name = "uniform"

    def update(self, grad: torch.Tensor) -> None:
        self.updates += 1

    def matrix(self, like: torch.Tensor) -> torch.Tensor | None:
        return None


class _AccumulatedNorm(DiagonalNorm):
    """A norm whose M is a function of an accumulator of squared gradients, kept beside it.

    ``update`` folds a gradient in and refreshes M in the same call (one fused pass on a CPU); loading a state
    marks M stale, and ``matrix`` recomputes it then. Subclasses name the accumulator (``_acc_name``, the key in
    ``state_dict``) and give the fold and the map accumulator → M, fused and in PyTorch.
    """

    _acc_name = "acc"

    def __init__(self, *, eps: float = 1e-10, fused: bool | None = None) -> None:
        super().__init__(eps=eps, fused=fused)
        setattr(self, self._acc_name, None)
        self._m: torch.Tensor | None = None  # M's buffer, reused across updates
        self._stale = True  # M does not reflect the accumulator (a state was loaded)

    @property
    def _acc(self) -> torch.Tensor | None:
        acc: torch.Tensor | None = getattr(self, self._acc_name)
        return acc

    @abstractmethod
    def _fold_fused(self, acc: torch.Tensor, g: torch.Tensor, m: torch.Tensor) -> None:
        """acc ← fold(acc, g) and m ← M(acc) in one pass."""

    @abstractmethod
    def _fold(self, acc: torch.Tensor, g: torch.Tensor) -> None:
        """acc ← fold(acc, g) in place."""

    @abstractmethod
    def _compute(self, acc: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """m ← M(acc); returns m."""

    @abstractmethod
    def _initial(self, like: torch.Tensor) -> torch.Tensor:
        """M before any gradient."""

    def update(self, grad: torch.Tensor) -> None:
        g = grad.detach()
        acc = self._acc
        if acc is None:
            acc = torch.zeros_like(g)
            setattr(self, self._acc_name, acc)
        m = self._m = _reuse(self._m, acc)
        if kernels.resolve(self.fused, acc, g, m):
            self._fold_fused(acc, g, m)
        else:
            self._fold(acc, g)
            self._compute(acc, m)
        self._stale = False
        self.updates += 1

    def matrix(self, like: torch.Tensor) -> torch.Tensor | None:
        """M (a buffer reused by the next update: use it before updating again)."""
        acc = self._acc
        if acc is None:
            return self._initial(like)
        if self._stale:
            self._m = self._compute(acc, _reuse(self._m, acc))
            self._stale = False
        return self._m

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, self._acc_name: self._acc}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = state["updates"]
        setattr(self, self._acc_name, state[self._acc_name])
        self._stale = True


class AdagradNorm(_AccumulatedNorm):
    """M = sqrt(ε + Σₜ gₜ²) (Duchi et al. 2011), ε kept as a floor so M > 0 always."""

    name = "adagrad"
    _acc_name = "sum_sq"

    def _fold_fused(self, acc: torch.Tensor, g: torch.Tensor, m: torch.Tensor) -> None:
        acc_n, g_n, m_n = kernels.views(acc, g, m)
        kernels.adagrad_update(acc_n, g_n, m_n, self.eps)

    def _fold(self, acc: torch.Tensor, g: torch.Tensor) -> None:
        acc.addcmul_(g, g)

    def _compute(self, acc: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return torch.add(acc, self.eps, out=m).sqrt_()

    def _initial(self, like: torch.Tensor) -> torch.Tensor:
        return torch.full_like(like, self.eps**0.5)


class RMSpropNorm(_AccumulatedNorm):
    """M = sqrt(v) + ε with v ← βv + (1-β)g² (Tieleman & Hinton 2012), v₀ = 0; ε is a fixed floor."""

    name = "rmsprop"
    _acc_name = "avg_sq"

    def __init__(self, *, beta: float = 0.8, eps: float = 1e-10, fused: bool | None = None) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta: {beta}")
        super().__init__(eps=eps, fused=fused)
        self.beta = beta

    def _fold_fused(self, acc: torch.Tensor, g: torch.Tensor, m: torch.Tensor) -> None:
        acc_n, g_n, m_n = kernels.views(acc, g, m)
        kernels.rmsprop_update(acc_n, g_n, m_n, self.beta, self.eps)

    def _fold(self, acc: torch.Tensor, g: torch.Tensor) -> None:
        acc.mul_(self.beta).addcmul_(g, g, value=1.0 - self.beta)

    def _compute(self, acc: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(acc, out=m).add_(self.eps)

    def _initial(self, like: torch.Tensor) -> torch.Tensor:
        return torch.full_like(like, self.eps)


NORMS = {"uniform": UniformNorm, "adagrad": AdagradNorm, "rmsprop": RMSpropNorm}


def make_norm(name: str, *, beta: float = 0.8, eps: float = 1e-10, fused: bool | None = None) -> DiagonalNorm:
    """Build a norm by name (``fused``: see :class:`DiagonalNorm`)."""
    if name not in NORMS:
        raise ValueError(f"Invalid norm: {name!r}; choose one of {sorted(NORMS)}")
    if name == "rmsprop":
        return RMSpropNorm(beta=beta, eps=eps, fused=fused)
    return NORMS[name](eps=eps, fused=fused)
