"""Build an optimizer from its registry name and resolved hyperparameters."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from trainer.optim.trust_region import TrustRegion
from trainer.registry import OPTIMIZERS, resolve_hyperparameters

__all__ = ["build_optimizer"]


def _sgd(params, h):
    return torch.optim.SGD(params, lr=h["lr"], momentum=h["momentum"], nesterov=h["nesterov"],
                           weight_decay=h["weight_decay"])


def _adagrad(params, h):
    return torch.optim.Adagrad(params, lr=h["lr"], lr_decay=h["lr_decay"], eps=h["eps"],
                               weight_decay=h["weight_decay"])


def _rmsprop(params, h):
    return torch.optim.RMSprop(params, lr=h["lr"], alpha=h["alpha"], eps=h["eps"], momentum=h["momentum"],
                               weight_decay=h["weight_decay"])


def _adam(params, h):
    return torch.optim.Adam(params, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                            weight_decay=h["weight_decay"])


_FIRST_ORDER = {"sgd": _sgd, "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam}


def build_optimizer(name: str, params: Iterable[torch.Tensor], hyperparameters: dict[str, Any] | None = None,
                    *, buffers: Iterable[torch.Tensor] = ()) -> torch.optim.Optimizer:
    """The optimizer registered as ``name`` over ``params``; missing hyperparameters take their defaults.

    ``buffers`` (the model's buffers, e.g. BatchNorm statistics) let a trust-region method restore them on a
    rejected step and keep its ρ forward pass out of them; first-order optimizers ignore them.
    """
    h = resolve_hyperparameters(name, hyperparameters or {})
    info = OPTIMIZERS[name]
    if info.family == "second-order":
        return TrustRegion(params, norm=info.norm, buffers=buffers, **h)
    return _FIRST_ORDER[name](params, h)
