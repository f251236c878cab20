"""Counting host synchronisations (tensor → Python value conversions) of the TR step, emulated on the CPU.

On a GPU every ``.item()``, ``.tolist()``, ``float(t)``, ``int(t)``, ``bool(t)`` (a tensor in a Python branch)
and ``.numpy()`` waits for the device. :func:`count_host_syncs` wraps those methods of ``torch.Tensor`` for the
duration of a block and counts the calls, so the count can be taken (and tested) on a CPU-only machine. The count
is of the path a GPU takes: the TR step is built with ``fused=False`` (no fused CPU kernels of
:mod:`trainer.optim.fused`, which on a CPU read their scalars without any device transfer).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

__all__ = ["SyncCounter", "count_host_syncs", "measure_tr_host_syncs", "fit_line"]

_METHODS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


@dataclass
class SyncCounter:
    """Calls per conversion method since the block started."""

    calls: dict[str, int] = field(default_factory=lambda: {m: 0 for m in _METHODS})

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@contextmanager
def count_host_syncs() -> Iterator[SyncCounter]:
    """Count tensor → host conversions inside the block (not re-entrant; restores the methods on exit)."""
    counter = SyncCounter()
    originals = {m: torch.Tensor.__dict__.get(m) for m in _METHODS}
    inherited = {m: getattr(torch.Tensor, m) for m in _METHODS}

    def wrap(name: str, fn: Any) -> Any:
        def counted(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            counter.calls[name] += 1
            return fn(self, *args, **kwargs)
        return counted

    for m in _METHODS:
        setattr(torch.Tensor, m, wrap(m, inherited[m]))
    try:
        yield counter
    finally:
        for m in _METHODS:
            if originals[m] is None:
                delattr(torch.Tensor, m)
            else:
                setattr(torch.Tensor, m, originals[m])


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of ys on xs; None when the xs do not vary."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def measure_tr_host_syncs(optimizer: str = "tr-adagrad", *, steps: int = 30, solver: str = "cg", seed: int = 0,
                          batch_size: int = 512, device: str = "cpu") -> dict[str, Any]:
    """Host syncs of ``steps`` TR steps on the Fashion-MNIST-shaped MLP (synthetic data; syncs do not depend on it).

    Returns per-step counts, CG iterations, and the fit syncs = constant + per_iteration·iterations. ``device``:
    where the model and batches live ("cpu" emulates the GPU path; "cuda" counts the real one).
    """
    from trainer.models import build_model, loss_function
    from trainer.optim.trust_region import TrustRegion
    from trainer.registry import OPTIMIZERS, resolve_hyperparameters

    torch.manual_seed(seed)
    model = build_model("mlp", "fashion-mnist").to(device)
    loss_fn = loss_function("mlp")
    # fused=False: the device (GPU) path, whose synchronisations are counted here on the CPU.
    opt = TrustRegion([p for p in model.parameters() if p.requires_grad], norm=OPTIMIZERS[optimizer].norm,
                      fused=False, **resolve_hyperparameters(optimizer, {"solver": solver}))
    gen = torch.Generator().manual_seed(seed)
    per_step: list[int] = []
    iters: list[int] = []
    for _ in range(steps):
        xb = torch.rand(batch_size, 1, 28, 28, generator=gen).to(device)
        yb = torch.randint(0, 10, (batch_size,), generator=gen).to(device)

        def closure() -> torch.Tensor:
            return loss_fn(model(xb), xb, yb)  # noqa: B023 - the closure is used in this iteration only

        with count_host_syncs() as c:
            opt.step(closure)
        per_step.append(c.total)
        iters.append(int(opt.last_trace["cg_iterations"]))
    fit = fit_line([float(i) for i in iters], [float(s) for s in per_step])
    return {"optimizer": optimizer, "solver": solver, "steps": steps, "syncs_per_step": per_step,
            "cg_iterations": iters, "per_cg_iteration": fit[0] if fit else None,
            "constant_per_step": fit[1] if fit else None,
            "max_excess_over_iterations": max(s - i for s, i in zip(per_step, iters))}
