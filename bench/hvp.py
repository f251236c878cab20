"""Item 1: one Hessian-vector product as the TR optimizer computes it, divided by one gradient."""
from __future__ import annotations

from typing import Any

import torch

from bench.timing import Clock, median, summarize
from bench.workload import make_workload
from trainer.optim.hvp import GradientWithHVP

__all__ = ["measure_hvp_ratio"]


def measure_hvp_ratio(model_name: str, *, batch_size: int = 512, pairs: int = 100, warmup: int = 5,
                      device: str = "cpu", data_dir: str | None = None) -> dict[str, Any]:
    """Median over repeated (gradient, HVP) pairs of t_HVP / t_gradient on one fixed minibatch.

    gradient = forward + backward (``autograd.grad``), what a first-order step pays.
    HVP = ``GradientWithHVP.hvp(v)``, the call the TR optimizer makes once per CG iteration: one double
    backward through the graph kept by the create_graph gradient (that gradient is built outside the timed
    region, as the TR step pays it once for all its HVPs). The two are timed back to back, alternating which
    goes first, and the ratio is taken per pair so slow phases of a shared machine cancel.

    Also reported, for context: the create_graph gradient the TR step pays (relative to a plain gradient) and
    an HVP recomputed from scratch (forward + create_graph gradient + double backward).
    """
    w = make_workload(model_name, batch_size, device=device, data_dir=data_dir)
    clock = Clock(w.device)
    params = w.params
    gen = torch.Generator(device="cpu").manual_seed(1)
    n = sum(p.numel() for p in params)
    v = torch.randn(n, generator=gen).to(w.device)
    v /= torch.linalg.vector_norm(v)

    def time_gradient() -> float:
        t0 = clock()
        torch.autograd.grad(w.loss(), params)
        return clock() - t0

    def time_hvp() -> tuple[float, float]:
        t0 = clock()
        op = GradientWithHVP(w.loss(), params)
        t1 = clock()
        op.hvp(v)
        t2 = clock()
        op.release()
        return t1 - t0, t2 - t1

    grads, hvps, graph_grads, ratios = [], [], [], []
    for i in range(warmup + pairs):
        if i % 2 == 0:
            tg = time_gradient()
            tc, th = time_hvp()
        else:
            tc, th = time_hvp()
            tg = time_gradient()
        if i >= warmup:
            grads.append(tg)
            hvps.append(th)
            graph_grads.append(tc)
            ratios.append(th / tg)
    scratch = [graph_grads[i] + hvps[i] for i in range(len(hvps))]
    return {
        "model": model_name,
        "batch_size": batch_size,
        "parameters": n,
        "pairs": pairs,
        "hvp_over_grad": median(ratios),
        "hvp_over_grad_of_medians": median(hvps) / median(grads),
        "create_graph_grad_over_grad": median([graph_grads[i] / grads[i] for i in range(len(grads))]),
        "scratch_hvp_over_grad": median([scratch[i] / grads[i] for i in range(len(grads))]),
        "grad_ms": {k: (v * 1e3 if k != "n" else v) for k, v in summarize(grads).items()},
        "hvp_ms": {k: (v * 1e3 if k != "n" else v) for k, v in summarize(hvps).items()},
        "create_graph_grad_ms": {k: (v * 1e3 if k != "n" else v) for k, v in summarize(graph_grads).items()},
        "ratio": summarize(ratios),
    }
