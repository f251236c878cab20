"""Diagonal trust-region norms ‖s‖_M = sqrt(Σ Mᵢsᵢ²): uniform, Adagrad and RMSprop (DESIGN.md step 2)."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

__all__ = ["DiagonalNorm", "UniformNorm", "AdagradNorm", "RMSpropNorm", "make_norm", "NORMS"]


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

    def update(self, grad: torch.Tensor) -> None:
        sq = grad.detach() * grad.detach()
        self.sum_sq = sq if self.sum_sq is None else self.sum_sq.add_(sq)
        self.updates += 1

    def matrix(self, like: torch.Tensor) -> torch.Tensor | None:
        if self.sum_sq is None:
            return torch.full_like(like, self.eps**0.5)
        return torch.sqrt(self.sum_sq + self.eps)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "sum_sq": self.sum_sq}

    def load_state_dict(self, state: dict) -> None:
        self.updates, self.sum_sq = state["updates"], state["sum_sq"]


class RMSpropNorm(DiagonalNorm):
    """M = sqrt(v) + ε with v ← βv + (1-β)g² (Tieleman & Hinton 2012), v₀ = 0; ε is a fixed floor."""

    name = "rmsprop"

    def __init__(self, *, beta: float = 0.8, eps: float = 1e-10) -> None:
        super().__init__(eps=eps)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta: {beta}")
        self.beta = beta
        self.avg_sq: torch.Tensor | None = None

    def update(self, grad: torch.Tensor) -> None:
        sq = grad.detach() * grad.detach()
        if self.avg_sq is None:
            self.avg_sq = sq.mul_(1.0 - self.beta)
        else:
            self.avg_sq.mul_(self.beta).add_(sq, alpha=1.0 - self.beta)
        self.updates += 1

    def matrix(self, like: torch.Tensor) -> torch.Tensor | None:
        if self.avg_sq is None:
            return torch.full_like(like, self.eps)
        return torch.sqrt(self.avg_sq).add_(self.eps)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "avg_sq": self.avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.updates, self.avg_sq = state["updates"], state["avg_sq"]


NORMS = {"uniform": UniformNorm, "adagrad": AdagradNorm, "rmsprop": RMSpropNorm}


def make_norm(name: str, *, beta: float = 0.8, eps: float = 1e-10) -> DiagonalNorm:
    """Build a norm by name."""
    if name not in NORMS:
        raise ValueError(f"Invalid norm: {name!r}; choose one of {sorted(NORMS)}")
    if name == "rmsprop":
        return RMSpropNorm(beta=beta, eps=eps)
    return NORMS[name](eps=eps)
