"""Build an optimizer from its registry name and resolved hyperparameters (the entry's ``build``)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from trainer.registry import OPTIMIZERS, resolve_hyperparameters

__all__ = ["build_optimizer"]


def build_optimizer(name: str, params: Iterable[torch.Tensor], hyperparameters: dict[str, Any] | None = None,
                    *, buffers: Iterable[torch.Tensor] = ()) -> torch.optim.Optimizer:
    """The optimizer registered as ``name`` over ``params``; missing hyperparameters take their defaults.

    ``buffers`` (the model's buffers, e.g. BatchNorm statistics) let a trust-region method restore them on a
    rejected step and keep its ρ forward pass out of them; first-order optimizers ignore them.
    """
    h = resolve_hyperparameters(name, hyperparameters or {})
    return OPTIMIZERS[name].build(params, h, buffers)
