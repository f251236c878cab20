"""GLTR's peak memory: one trust-region step with the Lanczos solver on the autoencoder, run to the iteration cap.

Each measurement runs in a fresh Python process so that peaks do not mix. On the CPU the figure is the rise of
the process's peak resident set size (``ru_maxrss``) during the step over its resident size just before it; on a
GPU it is ``torch.cuda.max_memory_allocated`` during the step minus the memory allocated before it. The
tolerance is set tiny so the solver runs to ``max_cg_iters`` (the worst case: a full Lanczos basis).
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__ = ["measure_gltr_peak_memory", "step_peak_memory"]


def _rss_mb() -> float:
    import os

    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def step_peak_memory(solver: str, *, iterations: int, batch_size: int, device: str) -> dict[str, Any]:
    """In this process: build the autoencoder, take one TR step with ``solver`` and return the memory rise (MB)."""
    import resource

    import torch

    from bench.workload import make_workload
    from trainer.optim.factory import build_optimizer
    from trainer.registry import AE_TR

    w = make_workload("autoencoder", batch_size, device=device)
    hyper = {**AE_TR, "solver": solver, "krylov_tol": 1e-12, "max_cg_iters": iterations, "radius": 1e6,
             "max_radius": 1e6}
    opt = build_optimizer("tr-uniform", w.params, hyper)
    on_gpu = w.device.type == "cuda"
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(w.device)
        before = torch.cuda.memory_allocated(w.device) / 2**20
    else:
        before = _rss_mb()
    opt.step(w.loss)
    if on_gpu:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated(w.device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    params = sum(p.numel() for p in w.params)
    return {"solver": solver, "peak_rise_mb": peak - before, "cg_iterations": opt.last_trace["cg_iterations"],
            "parameters": params, "basis_mb": params * 4 * opt.last_trace["cg_iterations"] / 2**20,
            "batch_size": batch_size, "device": device}


def measure_gltr_peak_memory(*, iterations: int = 50, batch_size: int = 128, device: str = "cpu") -> dict[str, Any]:
    """GLTR and CG peak memory rise of one autoencoder TR step, each in its own process."""
    out: dict[str, Any] = {}
    for solver in ("lanczos", "cg"):
        code = ("import json, sys; from bench.gltr_memory import step_peak_memory; "
                f"print(json.dumps(step_peak_memory({solver!r}, iterations={iterations}, batch_size={batch_size}, "
                f"device={device!r})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{solver} measurement failed: {proc.stderr.strip()[-500:]}")
        out[solver] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out
