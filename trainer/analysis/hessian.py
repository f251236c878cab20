"""Dense Hessians of a training loss and their diagonal / per-layer block mass (paper Figure 2, Appendix D).

The paper motivates diagonal norms by the diagonal dominance of neural-network Hessians: for a matrix H
the share of absolute mass on the diagonal, Σᵢ|Hᵢᵢ| / Σᵢⱼ|Hᵢⱼ| (Becker & LeCun 1988), is compared with
what a matrix without that structure would give. Here the reference is a random matrix of the same size
and spectrum, Q diag(λ(H)) Qᵀ with Q Haar-distributed (random orthogonal eigenvectors), plus the paper's two
baselines:

- a Wigner matrix (Proposition 1), in the convention that every entry on and above the diagonal is drawn from
  one distribution (diagonal and off-diagonal variances equal): share 1/n. (Under the GOE convention, diagonal
  variance twice the off-diagonal one, it would be √2/(√2 + n − 1).)
- the Hessian of ordinary least squares with random inputs (Proposition 2, Appendix D.2; the paper's Figure 2
  draws both): H = XᵀX/N for N inputs x ∈ ℝⁿ with i.i.d. zero-mean entries of variance σ². Then E|Hᵢᵢ| = σ² and,
  for large N, Hᵢⱼ (i ≠ j) is about N(0, σ⁴/N), so E|Hᵢⱼ| ≈ σ²·√(2/(πN)) and the diagonal share of E|H| is
  1 / (1 + (n − 1)·√(2/(πN))). Both the closed form and a simulation (Gaussian X of the analysis's N × n) are
  reported.

The same is reported for the per-layer diagonal blocks (the parameter tensors of one module form a block). A block
share is only meaningful against its baseline's: with one block holding 98% of the parameters any matrix puts
about 96% of its mass on the blocks, so the off-block mass 1 − share is compared with the baseline's
(``off_block_ratio``).

The Hessian is built from Hessian-vector products by forward-over-reverse differentiation (``torch.func``),
not by double backward, which stays in ``trainer.optim.hvp`` (the tests use it as the reference).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from trainer.analysis.sizes import MAX_HEATMAP_SIZE, MAX_HESSIAN_PARAMETERS, check_size

__all__ = ["MAX_HESSIAN_PARAMETERS", "MAX_HEATMAP_SIZE", "LossFn", "Block", "layer_blocks", "check_size",
           "dense_hessian", "mass_shares", "random_orthogonal", "random_rotations", "same_spectrum_baseline",
           "wigner_shares", "ols_shares", "ols_simulated_shares", "off_block_ratio", "abs_heatmap",
           "analyse_hessian"]

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""loss(output, inputs, targets), as ``trainer.models.loss_function`` returns."""



@dataclass(frozen=True)
class Block:
    """A diagonal block: the parameters ``start:stop`` of the flat vector, owned by module ``name``."""

    name: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def layer_blocks(model: nn.Module) -> list[Block]:
    """One block per module that owns trainable parameters (e.g. a Linear's weight and bias), in
    ``model.parameters()`` order, which is the order of the flat parameter vector."""
    blocks: list[Block] = []
    offset = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = name.rpartition(".")[0] or name
        n = p.numel()
        if blocks and blocks[-1].name == owner and blocks[-1].stop == offset:
            blocks[-1] = Block(owner, blocks[-1].start, offset + n)
        else:
            blocks.append(Block(owner, offset, offset + n))
        offset += n
    return blocks


def dense_hessian(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor, *,
                  limit: int = MAX_HESSIAN_PARAMETERS, chunk_size: int = 256) -> torch.Tensor:
    """The exact Hessian ∇²L(w) of L(w) = ``loss_fn(model_w(inputs), inputs, targets)`` as an n×n float64 tensor.

    Column j is the Hessian-vector product H·eⱼ by forward-over-reverse differentiation (``torch.func.jvp``
    of ``torch.func.grad``, Pearlmutter 1994), vectorized over ``chunk_size`` columns at a time (no Python loop over
    columns). ``make bench`` (item hessian) times it against one double-backward HVP per column; on the shared
    2-core CPU neither was consistently faster (0.9-2.5×). The tests check both give the same matrix.
    The result is symmetrized, (H + Hᵀ)/2, which only removes floating-point asymmetry.

    Args:
        model: the network; its trainable parameters, in ``parameters()`` order, are the variables.
        loss_fn: ``loss(output, inputs, targets)`` (``trainer.models.loss_function``).
        inputs, targets: the fixed batch.
        limit: the most parameters allowed. Default ``MAX_HESSIAN_PARAMETERS``.
        chunk_size: columns computed together (memory ∝ chunk_size × batch activations). Default 256.

    Raises:
        ValueError: more than ``limit`` parameters.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    n = sum(p.numel() for _, p in named)
    check_size(n, limit)
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])
    frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    frozen.update({name: b for name, b in model.named_buffers()})

    def loss_of(w: torch.Tensor) -> torch.Tensor:
        values, offset = dict(frozen), 0
        for name, p in named:
            values[name] = w[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        return loss_fn(torch.func.functional_call(model, values, (inputs,)), inputs, targets)

    grad = torch.func.grad(loss_of)

    def column(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(grad, (flat,), (v,))[1]

    eye = torch.eye(n, dtype=flat.dtype, device=flat.device)
    H = torch.vmap(column, chunk_size=chunk_size)(eye).to(device="cpu", dtype=torch.float64)
    return (H + H.T) / 2


def mass_shares(H: torch.Tensor, blocks: Sequence[Block]) -> dict[str, float]:
    """Share of Σ|Hᵢⱼ| on the diagonal and on the diagonal blocks (``blocks`` must tile 0..n).

    Returns ``{"diagonal": ..., "block_diagonal": ...}``; both are 0 for the zero matrix (no mass at all).
    """
    n = H.shape[0]
    if H.ndim != 2 or H.shape[1] != n:
        raise ValueError(f"Invalid matrix shape {tuple(H.shape)}; expected a square matrix")
    _check_tiling(blocks, n)
    A = H.abs().to(torch.float64)
    total = float(A.sum())
    if total == 0.0:
        return {"diagonal": 0.0, "block_diagonal": 0.0}
    diag = float(A.diagonal().sum())
    block = sum(float(A[b.start:b.stop, b.start:b.stop].sum()) for b in blocks)
    return {"diagonal": diag / total, "block_diagonal": block / total}


def _check_tiling(blocks: Sequence[Block], n: int) -> None:
    pos = 0
    for b in blocks:
        if b.start != pos or b.stop <= b.start:
            raise ValueError(f"Invalid blocks: {b} does not continue at index {pos}")
        pos = b.stop
    if pos != n:
        raise ValueError(f"Invalid blocks: they cover {pos} of {n} indices")


def random_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed n×n orthogonal matrix: QR of a Gaussian matrix with R's diagonal signs made positive
    (Mezzadri 2007), float64."""
    Z = torch.randn(n, n, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(Z)
    signs = torch.sign(R.diagonal())
    signs[signs == 0] = 1.0
    return Q * signs


def random_rotations(n: int, draws: int, seed: int = 0) -> list[torch.Tensor]:
    """``draws`` Haar-random n×n orthogonal matrices from ``seed`` (reusable across checkpoints of one model)."""
    if draws < 1:
        raise ValueError(f"Invalid number of random draws: {draws}; use at least 1")
    gen = torch.Generator().manual_seed(seed)
    return [random_orthogonal(n, gen) for _ in range(draws)]


def same_spectrum_baseline(eigenvalues: torch.Tensor, blocks: Sequence[Block], *, draws: int = 2, seed: int = 0,
                           rotations: Sequence[torch.Tensor] | None = None) -> dict[str, float]:
    """Mean shares (and their spread over the draws) of Q diag(λ) Qᵀ for Haar-random orthogonal Q.

    Args:
        eigenvalues: λ, the spectrum to keep.
        blocks: the diagonal blocks.
        draws, seed: how many Q to draw and from which seed. Default 2, 0.
        rotations: the Q to use instead (``random_rotations``); drawing them is the costly part.

    Returns ``diagonal``, ``block_diagonal`` (means) and ``diagonal_min/max``, ``block_diagonal_min/max``.
    """
    lam = eigenvalues.to(torch.float64)
    if rotations is None:
        rotations = random_rotations(lam.numel(), draws, seed)
    shares = [mass_shares((Q * lam) @ Q.T, blocks) for Q in rotations]
    out: dict[str, float] = {}
    for key in ("diagonal", "block_diagonal"):
        values = [s[key] for s in shares]
        out[key] = sum(values) / len(values)
        out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
    return out


def wigner_shares(blocks: Sequence[Block]) -> dict[str, float]:
    """Expected-|W| shares of a Wigner matrix whose entries share one distribution (paper Proposition 1):
    diagonal 1/n, block-diagonal Σ_b n_b² / n²."""
    n = sum(b.size for b in blocks)
    return {"diagonal": 1.0 / n, "block_diagonal": sum(b.size ** 2 for b in blocks) / n ** 2}


def ols_shares(blocks: Sequence[Block], inputs: int) -> dict[str, float]:
    """Diagonal and block-diagonal shares of E|H| for the OLS Hessian H = XᵀX/N with i.i.d. zero-mean inputs
    (paper Proposition 2; the large-N form): with c = √(2/(πN)), E|Hᵢᵢ| = σ², E|Hᵢⱼ| ≈ σ²c, so

        diagonal = n / (n + n(n − 1)c) = 1 / (1 + (n − 1)c),
        block_diagonal = (n + (Σ_b n_b² − n)c) / (n + n(n − 1)c).

    Args:
        blocks: the diagonal blocks (n = their total size, the number of parameters).
        inputs: N, the number of inputs (the analysis's batch size).
    """
    if inputs < 1:
        raise ValueError(f"Invalid number of inputs: {inputs}; use at least 1")
    n = sum(b.size for b in blocks)
    c = (2.0 / (torch.pi * inputs)) ** 0.5
    total = n + n * (n - 1) * c
    return {"diagonal": n / total, "block_diagonal": (n + (sum(b.size ** 2 for b in blocks) - n) * c) / total,
            "inputs": inputs}


def ols_simulated_shares(blocks: Sequence[Block], inputs: int, *, draws: int = 1, seed: int = 0) -> dict[str, float]:
    """Mean shares of H = XᵀX/N for ``draws`` Gaussian N×n matrices X (the paper's Figure 6 simulation; the
    closed form :func:`ols_shares` is its large-N limit). Costs N·n² per draw."""
    if inputs < 1 or draws < 1:
        raise ValueError(f"Invalid OLS simulation: inputs {inputs}, draws {draws}; use at least 1 of each")
    n = sum(b.size for b in blocks)
    gen = torch.Generator().manual_seed(seed)
    shares = []
    for _ in range(draws):
        X = torch.randn(inputs, n, generator=gen, dtype=torch.float64)
        shares.append(mass_shares(X.T @ X / inputs, blocks))
    return {key: sum(s[key] for s in shares) / draws for key in ("diagonal", "block_diagonal")}


def off_block_ratio(block_share: float, baseline_block_share: float) -> float | None:
    """(1 − block share) / (1 − the baseline's): how much of its mass H keeps off the layer blocks relative to
    the baseline (< 1: more concentrated on the blocks). None when the baseline has no off-block mass."""
    off = 1.0 - baseline_block_share
    return (1.0 - block_share) / off if off > 0 else None


def abs_heatmap(H: torch.Tensor, size: int = 64) -> tuple[list[list[float]], list[int]]:
    """|H| averaged over a ``size``×``size`` grid of near-equal cells (mass-preserving downsampling).

    Returns the grid (rows of floats, 4 significant digits) and the ``size + 1`` parameter-index edges of the
    cells. A matrix smaller than ``size`` is returned at full resolution.
    """
    if not 1 <= size <= MAX_HEATMAP_SIZE:
        raise ValueError(f"Invalid heatmap size: {size}; use 1..{MAX_HEATMAP_SIZE}")
    n = H.shape[0]
    k = min(size, n)
    edges = [round(i * n / k) for i in range(k + 1)]
    A = H.abs().to(torch.float64)
    # Mean of each cell = (S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]) / area with the 2-D prefix sum S.
    S = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    S[1:, 1:] = A.cumsum(0).cumsum(1)
    e = torch.tensor(edges)
    cells = S[e[1:]][:, e[1:]] - S[e[:-1]][:, e[1:]] - S[e[1:]][:, e[:-1]] + S[e[:-1]][:, e[:-1]]
    sizes = (e[1:] - e[:-1]).to(torch.float64)
    grid = cells / sizes[:, None] / sizes[None, :]
    return [[float(f"{v:.4g}") for v in row] for row in grid.tolist()], edges


def analyse_hessian(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor, *,
                    limit: int = MAX_HESSIAN_PARAMETERS, heatmap_size: int = 64, random_draws: int = 2,
                    seed: int = 0, rotations: Sequence[torch.Tensor] | None = None,
                    ols_simulated: dict[str, float] | None = None) -> dict[str, Any]:
    """Hessian structure of the loss on the batch (``inputs``, ``targets``) at the model's current weights.

    Args:
        model: the network (its trainable parameters are the Hessian's variables).
        loss_fn: ``loss(output, inputs, targets)``.
        inputs, targets: the fixed batch.
        limit: parameter cap. Default ``MAX_HESSIAN_PARAMETERS``.
        heatmap_size: side of the downsampled |H|. Default 64.
        random_draws: Haar draws of the same-spectrum baseline. Default 2.
        seed: seed of those draws. Default 0.
        rotations: Haar matrices to reuse instead of drawing ``random_draws`` new ones (``random_rotations``).

    Returns a JSON-able dict: ``num_parameters``, ``loss``, ``shares`` (diagonal, block_diagonal, per_block),
    ``random_same_spectrum``, ``wigner``, ``ols`` (closed form for N = the batch's size, plus ``simulated_*``
    from ``ols_simulated`` when given), ``off_block_ratio`` (per baseline, :func:`off_block_ratio`),
    ``eigenvalues`` (min, max, negative count, Σ|λ|), ``blocks``, ``heatmap`` and ``heatmap_edges``.

    ``ols_simulated``: the result of :func:`ols_simulated_shares` for this model and batch (it does not depend on
    the weights, so a caller analysing several checkpoints computes it once). Default: not simulated.
    """
    check_size(sum(p.numel() for p in model.parameters() if p.requires_grad), limit)
    blocks = layer_blocks(model)
    with torch.no_grad():
        loss_value = float(loss_fn(model(inputs), inputs, targets))
    H = dense_hessian(model, loss_fn, inputs, targets, limit=limit)
    if not bool(torch.isfinite(H).all()):
        raise ValueError(f"Invalid Hessian: it has non-finite entries (loss {loss_value}); the weights have "
                         "diverged, choose an earlier checkpoint")
    eig = torch.linalg.eigvalsh(H)
    A = H.abs()
    total = float(A.sum())
    per_block = [{"name": b.name, "start": b.start, "stop": b.stop,
                  "share": float(A[b.start:b.stop, b.start:b.stop].sum()) / total if total else 0.0}
                 for b in blocks]
    grid, edges = abs_heatmap(H, heatmap_size)
    shares = mass_shares(H, blocks)
    baselines = {"random_same_spectrum": same_spectrum_baseline(eig, blocks, draws=random_draws, seed=seed,
                                                                rotations=rotations),
                 "wigner": wigner_shares(blocks), "ols": ols_shares(blocks, int(inputs.shape[0]))}
    if ols_simulated is not None:
        baselines["ols"].update({f"simulated_{k}": ols_simulated[k] for k in ("diagonal", "block_diagonal")})
    return {
        "num_parameters": H.shape[0],
        "loss": loss_value,
        "shares": {**shares, "per_block": per_block},
        **baselines,
        "off_block_ratio": {k: off_block_ratio(shares["block_diagonal"], b["block_diagonal"])
                            for k, b in baselines.items()},
        "eigenvalues": {"min": float(eig[0]), "max": float(eig[-1]), "negative": int((eig < 0).sum()),
                        "abs_sum": float(eig.abs().sum())},
        "blocks": [{"name": b.name, "start": b.start, "stop": b.stop} for b in blocks],
        "heatmap": grid,
        "heatmap_edges": edges,
    }
