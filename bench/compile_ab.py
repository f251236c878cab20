"""A/B of torch.compile (CPU, Inductor) against the Numba kernels for the TR step's CG vector work (not run by tests).

The vector work of one Steihaug-Toint iteration on the Fashion-MNIST MLP (d = 101,770 parameters, the size of every
CG vector whatever the batch; the paper's batch 512 sets only the HVP's cost, which neither variant touches), with
the Adagrad norm (M given) and the spherical one (M = I):

1. curvature: pᵀHp, sᵀMp, pᵀMp;
2. update: s += αp, r += αHp and rᵀM⁻¹r;
3. direction: p = βp - M⁻¹r.

Variants: ``numba`` (trainer.optim.fused, what the TR step runs on a CPU), ``compile`` (the same three passes as
PyTorch functions under ``torch.compile(dynamic=False)``, which Inductor fuses into C++ loops), and ``eager``
(the PyTorch operations uncompiled, for scale). Each is timed in one process, alternating in rounds, in process CPU
time; the compile variant's first-call compilation is reported apart.

Run: ``python -m bench.compile_ab [--rounds 30] [--iters 200]``; prints a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

import torch

from trainer.optim import fused

D = 101_770  # Fashion-MNIST MLP 784-128-10


def _torch_passes() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    def curvature(p: torch.Tensor, hp: torch.Tensor, s: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        mp = p if m is None else m * p
        return torch.stack((torch.dot(p, hp), torch.dot(s, mp), torch.dot(p, mp)))

    def update(s: torch.Tensor, r: torch.Tensor, p: torch.Tensor, hp: torch.Tensor, minv: torch.Tensor | None,
               alpha: torch.Tensor) -> torch.Tensor:
        s.add_(alpha * p)
        r.add_(alpha * hp)
        return torch.dot(r, r) if minv is None else torch.dot(r, minv * r)

    def direction(p: torch.Tensor, r: torch.Tensor, minv: torch.Tensor | None, beta: torch.Tensor) -> None:
        p.mul_(beta).sub_(r if minv is None else minv * r)

    return curvature, update, direction


def _vectors(with_m: bool, seed: int = 0) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    v = {k: torch.randn(D, generator=gen) * 1e-3 for k in ("s", "r", "p", "hp")}
    v["m"] = torch.rand(D, generator=gen) + 0.5 if with_m else None
    v["minv"] = 1.0 / v["m"] if with_m else None
    return v


def _run_numba(v: dict[str, Any], iters: int) -> float:
    s, r, p, hp, m, minv = fused.views(v["s"], v["r"], v["p"], v["hp"], v["m"], v["minv"])
    t = time.process_time()
    for _ in range(iters):
        fused.cg_curvature(p, hp, s, m)  # the three scalars reach Python as floats, as in the solver
        fused.cg_update(s, r, p, hp, minv, 1e-6)
        fused.cg_direction(p, r, minv, 0.5)
    return (time.process_time() - t) / iters


def _run_torch(passes: tuple[Callable[..., Any], ...], v: dict[str, Any], iters: int) -> float:
    curvature, update, direction = passes
    alpha, beta = torch.tensor(1e-6), torch.tensor(0.5)
    t = time.process_time()
    for _ in range(iters):
        curvature(v["p"], v["hp"], v["s"], v["m"]).tolist()  # the solver needs the scalars on the host
        float(update(v["s"], v["r"], v["p"], v["hp"], v["minv"], alpha))
        direction(v["p"], v["r"], v["minv"], beta)
    return (time.process_time() - t) / iters


def measure(rounds: int = 30, iters: int = 200) -> dict[str, Any]:
    """µs per CG iteration's vector work for each variant, with and without M (medians over alternating rounds)."""
    torch.set_num_threads(1)  # the worker's setting for one run per core; both variants run single-threaded
    fused.warm_up(torch.float32)
    eager = _torch_passes()
    compiled = tuple(torch.compile(f, dynamic=False, fullgraph=True) for f in _torch_passes())
    out: dict[str, Any] = {"d": D, "rounds": rounds, "iters_per_round": iters, "torch": torch.__version__,
                           "numba": fused.numba_version()}
    for with_m in (True, False):
        key = "adagrad" if with_m else "uniform"
        v = _vectors(with_m)
        t0 = time.perf_counter()
        _run_torch(compiled, v, 1)  # compiles the three passes for this signature
        compile_s = time.perf_counter() - t0
        times: dict[str, list[float]] = {"numba": [], "compile": [], "eager": []}
        for i in range(rounds):
            order = ["numba", "compile", "eager"]
            for name in order if i % 2 == 0 else order[::-1]:
                vv = _vectors(with_m, seed=i)
                if name == "numba":
                    times[name].append(_run_numba(vv, iters))
                else:
                    times[name].append(_run_torch(compiled if name == "compile" else eager, vv, iters))
        med = {k: statistics.median(t) * 1e6 for k, t in times.items()}
        out[key] = {"us_per_iteration": {k: round(x, 1) for k, x in med.items()},
                    "compile_over_numba": round(med["compile"] / med["numba"], 2),
                    "first_call_compile_seconds": round(compile_s, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.rounds, args.iters), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
