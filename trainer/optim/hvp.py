"""Hessian-vector products by double backward through the gradient's graph (the only such module)."""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["GradientWithHVP", "flatten", "unflatten_into"]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat 1-D tensor."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten_into(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat tensor into views shaped like ``like``."""
    out, offset = [], 0
    for t in like:
        n = t.numel()
        out.append(flat[offset:offset + n].view_as(t))
        offset += n
    return out


class GradientWithHVP:
    """The gradient of ``loss`` w.r.t. ``params`` plus an operator v ↦ ∇²loss·v that reuses its graph.

    The gradient is computed once with ``create_graph=True`` (one backprop); each ``hvp(v)`` is one
    further backward pass through that graph, ``autograd.grad(g·v, params, retain_graph=True)``, about
    the cost of one more gradient (Pearlmutter 1994). ``hvps`` counts the products computed.

    Args:
        loss: scalar loss with a graph to ``params``.
        params: the parameters (all requiring grad).
    """

    def __init__(self, loss: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        self.params = list(params)
        grads = torch.autograd.grad(loss, self.params, create_graph=True)
        self._flat_graph = flatten(grads)
        self.grad = self._flat_graph.detach()
        self.hvps = 0

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat vector ``v`` (same size as the gradient)."""
        if v.shape != self.grad.shape:
            raise ValueError(f"Invalid vector shape {tuple(v.shape)}; expected {tuple(self.grad.shape)}")
        dot = torch.dot(self._flat_graph, v.detach())
        hv = torch.autograd.grad(dot, self.params, retain_graph=True, allow_unused=True)
        self.hvps += 1
        return flatten([torch.zeros_like(p) if h is None else h for p, h in zip(self.params, hv)]).detach()

    def release(self) -> None:
        """Drop the graph (frees the activations kept for double backward)."""
        self._flat_graph = self.grad
