"""Item 2: where a TR iteration's time goes: gradient, HVPs, CG vector work, ρ evaluation, norm, bookkeeping.

The trainer is not modified: for the duration of a measurement the names ``GradientWithHVP`` and ``SOLVERS``
inside ``trainer.optim.trust_region`` are swapped for timing wrappers around the very same code, the norm's
``update``/``matrix`` are wrapped on the optimizer instance, and the closure times itself (its call with
gradients enabled is the forward pass of the gradient; its call under ``no_grad`` is the ρ evaluation).
On the CPU the parts are timed in process CPU time (``time.process_time``), on a GPU in synchronized wall time.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch

import trainer.optim.trust_region as tr_module
from bench.timing import Clock
from trainer.data import load_dataset
from trainer.models import build_model, loss_function
from trainer.optim.factory import build_optimizer
from trainer.registry import MODELS, PRESETS

__all__ = ["measure_breakdown", "PARTS", "DERIVATIVE_PARTS", "shares"]

PARTS = ("gradient", "hvp", "cg_vector", "rho_eval", "norm", "bookkeeping")
DERIVATIVE_PARTS = ("gradient", "hvp")


def shares(totals: dict[str, float]) -> dict[str, float]:
    """Each part's fraction of the summed step time, plus ``non_derivative`` = 1 - (gradient + hvp) and
    ``non_derivative_excl_rho`` (the same without the ρ forward pass, which the algorithm cannot skip)."""
    total = sum(totals[p] for p in PARTS)
    if total <= 0:
        raise ValueError("no time was measured")
    out = {p: totals[p] / total for p in PARTS}
    out["non_derivative"] = 1.0 - sum(out[p] for p in DERIVATIVE_PARTS)
    out["non_derivative_excl_rho"] = out["non_derivative"] - out["rho_eval"]
    return out


class _Timers:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.t = {p: 0.0 for p in PARTS}
        self.solve = 0.0
        self.hvp_in_solve = 0.0
        self.step = 0.0
        self.hvps = 0

    def reset(self) -> None:
        self.__init__(self.clock)  # type: ignore[misc]


@contextmanager
def _instrumented(timers: _Timers) -> Iterator[None]:
    clock = timers.clock
    original_op, original_solvers = tr_module.GradientWithHVP, tr_module.SOLVERS

    class TimedGradientWithHVP(original_op):  # type: ignore[misc, valid-type]
        def __init__(self, loss: torch.Tensor, params: Any) -> None:
            t0 = clock()
            super().__init__(loss, params)
            timers.t["gradient"] += clock() - t0

        def hvp(self, v: torch.Tensor) -> torch.Tensor:
            t0 = clock()
            out = super().hvp(v)
            dt = clock() - t0
            timers.t["hvp"] += dt
            timers.hvp_in_solve += dt
            timers.hvps += 1
            return out

    def timed(solve: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            timers.hvp_in_solve = 0.0
            t0 = clock()
            result = solve(*args, **kwargs)
            dt = clock() - t0
            timers.t["cg_vector"] += dt - timers.hvp_in_solve
            return result
        return wrapper

    tr_module.GradientWithHVP = TimedGradientWithHVP
    tr_module.SOLVERS = {k: timed(f) for k, f in original_solvers.items()}
    try:
        yield
    finally:
        tr_module.GradientWithHVP, tr_module.SOLVERS = original_op, original_solvers


def _wrap_norm(opt: Any, timers: _Timers) -> None:
    clock, norm = timers.clock, opt.norm
    update, matrix = norm.update, norm.matrix

    def timed_update(g: torch.Tensor) -> None:
        t0 = clock()
        update(g)
        timers.t["norm"] += clock() - t0

    def timed_matrix(like: torch.Tensor) -> Any:
        t0 = clock()
        out = matrix(like)
        timers.t["norm"] += clock() - t0
        return out

    norm.update, norm.matrix = timed_update, timed_matrix


def measure_breakdown(model_name: str, optimizer: str, *, steps: int = 100, warmup: int = 5, batch_size: int = 512,
                      device: str = "cpu", data_dir: str | None = None, seed: int = 0,
                      train_subset: int | None = None) -> dict[str, Any]:
    """Run ``warmup + steps`` TR iterations from the initialization and split the time of the last ``steps``.

    The optimizer uses the registry defaults (the paper's Table 1); the autoencoder uses the preset's TR
    settings. Each step draws a fresh minibatch as the training loop does.
    """
    from bench.workload import default_data_dir

    dev = torch.device(device)
    # On the CPU, process CPU time: robust when other work shares the cores (wall time is not).
    clock = Clock(dev) if dev.type == "cuda" else time.process_time
    task = MODELS[model_name].task
    data = load_dataset("fashion-mnist", data_dir or default_data_dir(), device=dev,
                        normalize=task == "classification", train_subset=train_subset, test_subset=1, download=False)
    torch.manual_seed(seed)
    model = build_model(model_name, "fashion-mnist").to(dev)
    model.train()
    loss_fn = loss_function(model_name)
    hyper: dict[str, Any] = {}
    if model_name == "autoencoder":
        preset = PRESETS["paper-fmnist-autoencoder"]
        hyper = next(dict(o["hyperparameters"]) for o in preset["optimizers"] if o["name"] == optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    timers = _Timers(clock)
    gen = torch.Generator().manual_seed(seed)
    n = data.train_size
    cg_iters: list[int] = []
    accepted = 0
    with _instrumented(timers):
        opt = build_optimizer(optimizer, params, hyper)
        _wrap_norm(opt, timers)
        for i in range(warmup + steps):
            if i == warmup:
                timers.reset()
                cg_iters.clear()
                accepted = 0
            idx = torch.randint(0, n, (batch_size,), generator=gen).to(dev)
            xb, yb = data.train_x[idx], data.train_y[idx]

            def closure() -> torch.Tensor:
                grad_mode = torch.is_grad_enabled()
                t0 = clock()
                out = loss_fn(model(xb), xb, yb)  # noqa: B023 - the closure is used in this iteration only
                if not grad_mode:
                    out = out.detach()
                    float(out)  # the optimizer converts it right away; include that sync here
                timers.t["gradient" if grad_mode else "rho_eval"] += clock() - t0
                return out

            t0 = clock()
            opt.step(closure)
            timers.step += clock() - t0
            cg_iters.append(int(opt.last_trace.get("cg_iterations") or 0))
            accepted += bool(opt.last_trace.get("accepted"))
    measured = sum(timers.t[p] for p in PARTS if p != "bookkeeping")
    timers.t["bookkeeping"] = max(timers.step - measured, 0.0)
    sh = shares(timers.t)
    return {
        "model": model_name, "optimizer": optimizer, "batch_size": batch_size, "steps": steps,
        "step_ms": 1e3 * timers.step / steps,
        "seconds": dict(timers.t),
        "shares": sh,
        "non_derivative_share": sh["non_derivative"],
        "mean_cg_iterations": sum(cg_iters) / max(len(cg_iters), 1),
        "acceptance_rate": accepted / steps,
    }
