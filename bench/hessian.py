"""Item: the cost of one checkpoint of the Hessian-structure analysis (paper Fig. 2) on the narrow MLP."""
from __future__ import annotations

import time
from typing import Any

import torch

from bench.workload import make_workload
from trainer.analysis.hessian import (dense_hessian, layer_blocks, mass_shares, random_rotations,
                                      same_spectrum_baseline)
from trainer.optim.hvp import GradientWithHVP

__all__ = ["measure_hessian_checkpoint"]


def measure_hessian_checkpoint(*, batch_size: int = 512, draws: int = 2, reference_columns: int = 4096,
                               device: str = "cpu", data_dir: str | None = None) -> dict[str, Any]:
    """Seconds of each stage of one checkpoint (mlp-narrow, 3,190 parameters, Fashion-MNIST batch ``batch_size``).

    Stages: the dense Hessian (forward-over-reverse HVPs, vectorized), its eigenvalues, the Haar rotations of
    the same-spectrum baseline (drawn once per analysis, reused across checkpoints) and the baseline shares.
    For context, the same Hessian by one double-backward HVP per column (``trainer.optim.hvp``) is timed on
    ``reference_columns`` columns (all n by default; fewer are scaled up to n).
    """
    w = make_workload("mlp-narrow", batch_size, device=device, data_dir=data_dir)
    sync = torch.cuda.synchronize if w.device.type == "cuda" else (lambda: None)
    blocks = layer_blocks(w.model)
    t = {}
    t0 = time.perf_counter()
    H = dense_hessian(w.model, w.loss_fn, w.x, w.y)
    sync()
    t["hessian_s"] = time.perf_counter() - t0
    n = H.shape[0]
    t0 = time.perf_counter()
    eig = torch.linalg.eigvalsh(H)
    t["eigenvalues_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rotations = random_rotations(n, draws, seed=0)
    t["rotations_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    baseline = same_spectrum_baseline(eig, blocks, rotations=rotations)
    shares = mass_shares(H, blocks)
    t["baseline_s"] = time.perf_counter() - t0
    reference = None
    if reference_columns:
        op = GradientWithHVP(w.loss(), w.params)
        e = torch.zeros(n, device=w.device)
        cols = min(reference_columns, n)
        t0 = time.perf_counter()
        for j in range(cols):
            e[j] = 1.0
            op.hvp(e)
            e[j] = 0.0
        sync()
        reference = (time.perf_counter() - t0) * n / cols
    return {
        "parameters": n, "batch_size": batch_size, "draws": draws,
        **{k: round(v, 3) for k, v in t.items()},
        "checkpoint_s": round(t["hessian_s"] + t["eigenvalues_s"] + t["baseline_s"], 3),
        "first_checkpoint_s": round(sum(t.values()), 3),
        "double_backward_hessian_s": None if reference is None else round(reference, 3),
        "double_backward_columns_timed": min(reference_columns, n),
        "diagonal_share": shares["diagonal"], "random_diagonal_share": baseline["diagonal"],
        "block_share": shares["block_diagonal"], "random_block_share": baseline["block_diagonal"],
    }
