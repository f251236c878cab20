"""Hessian structure (trainer.analysis.hessian): shares on matrices of known structure, the exact Hessian
against torch.func.hessian, the size limit, and checkpoint replay."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainer.analysis.hessian import (MAX_HESSIAN_PARAMETERS, Block, abs_heatmap, analyse_hessian, check_size,
                                      dense_hessian, layer_blocks, mass_shares, off_block_ratio, ols_shares,
                                      ols_simulated_shares, random_orthogonal, random_rotations,
                                      same_spectrum_baseline, wigner_shares)
from trainer.models import MLP, build_model, count_parameters
from trainer.optim.hvp import GradientWithHVP

BLOCKS_2_3 = [Block("a", 0, 2), Block("b", 2, 5)]


def _naive_shares(H: torch.Tensor, blocks: list[Block]) -> tuple[float, float]:
    """Entry-by-entry reference."""
    total = diag = block = 0.0
    owner = [next(k for k, b in enumerate(blocks) if b.start <= i < b.stop) for i in range(H.shape[0])]
    for i in range(H.shape[0]):
        for j in range(H.shape[1]):
            v = abs(float(H[i, j]))
            total += v
            diag += v if i == j else 0.0
            block += v if owner[i] == owner[j] else 0.0
    return diag / total, block / total


def test_diagonal_matrix_has_all_mass_on_the_diagonal() -> None:
    H = torch.diag(torch.tensor([3.0, -1.0, 2.0, 0.5, -4.0]))
    assert mass_shares(H, BLOCKS_2_3) == {"diagonal": 1.0, "block_diagonal": 1.0}


def test_block_diagonal_matrix_has_block_share_one() -> None:
    H = torch.zeros(5, 5)
    H[:2, :2] = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    H[2:, 2:] = torch.full((3, 3), -1.0)
    shares = mass_shares(H, BLOCKS_2_3)
    assert shares["block_diagonal"] == pytest.approx(1.0)
    assert shares["diagonal"] == pytest.approx((1 + 1 + 3) / (6 + 9))


def test_constant_matrix_shares_are_the_counting_fractions() -> None:
    H = torch.full((5, 5), -2.0)
    shares = mass_shares(H, BLOCKS_2_3)
    assert shares["diagonal"] == pytest.approx(5 / 25)
    assert shares["block_diagonal"] == pytest.approx((4 + 9) / 25)
    assert wigner_shares(BLOCKS_2_3) == pytest.approx(shares)  # i.i.d.-entry expectation = counting fractions


def test_shares_match_the_naive_reference_on_a_random_matrix() -> None:
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(7, 7, generator=gen, dtype=torch.float64)
    blocks = [Block("x", 0, 3), Block("y", 3, 4), Block("z", 4, 7)]
    shares = mass_shares(A + A.T, blocks)
    diag, block = _naive_shares(A + A.T, blocks)
    assert shares["diagonal"] == pytest.approx(diag, rel=1e-12)
    assert shares["block_diagonal"] == pytest.approx(block, rel=1e-12)


def test_zero_matrix_and_bad_blocks() -> None:
    assert mass_shares(torch.zeros(5, 5), BLOCKS_2_3) == {"diagonal": 0.0, "block_diagonal": 0.0}
    with pytest.raises(ValueError, match="Invalid blocks"):
        mass_shares(torch.eye(5), [Block("a", 0, 2), Block("b", 3, 5)])
    with pytest.raises(ValueError, match="cover 4 of 5"):
        mass_shares(torch.eye(5), [Block("a", 0, 4)])
    with pytest.raises(ValueError, match="square"):
        mass_shares(torch.zeros(2, 3), [Block("a", 0, 2)])


def test_random_orthogonal_is_orthogonal() -> None:
    Q = random_orthogonal(30, torch.Generator().manual_seed(0))
    assert torch.allclose(Q.T @ Q, torch.eye(30, dtype=torch.float64), atol=1e-12)


def test_same_spectrum_baseline_keeps_the_spectrum_and_loses_the_diagonal() -> None:
    n = 60
    lam = torch.linspace(-1.0, 3.0, n, dtype=torch.float64)
    blocks = [Block("a", 0, 20), Block("b", 20, 60)]
    # The diagonal matrix with these eigenvalues has share 1; rotated at random it is far from diagonal.
    base = same_spectrum_baseline(lam, blocks, draws=3, seed=1)
    assert base["diagonal_min"] <= base["diagonal"] <= base["diagonal_max"]
    assert base["diagonal"] < 0.25
    assert wigner_shares(blocks)["block_diagonal"] * 0.5 < base["block_diagonal"] < 0.9
    Q = random_orthogonal(n, torch.Generator().manual_seed(1))
    R = (Q * lam) @ Q.T
    assert torch.allclose(torch.linalg.eigvalsh(R), lam, atol=1e-10)
    assert same_spectrum_baseline(lam, blocks, draws=1, seed=1)["diagonal"] == pytest.approx(
        mass_shares(R, blocks)["diagonal"])
    with pytest.raises(ValueError, match="at least 1"):
        same_spectrum_baseline(lam, blocks, draws=0)
    reused = same_spectrum_baseline(lam, blocks, rotations=random_rotations(n, 3, seed=1))
    assert reused == base


def test_heatmap_is_the_mean_of_abs_h_per_cell() -> None:
    H = torch.arange(36, dtype=torch.float64).reshape(6, 6) - 18
    grid, edges = abs_heatmap(H, 3)
    assert edges == [0, 2, 4, 6]
    assert grid[0][0] == pytest.approx(float(H[:2, :2].abs().mean()))
    assert grid[2][1] == pytest.approx(float(H[4:, 2:4].abs().mean()))
    full, edges = abs_heatmap(H, 64)  # smaller than the grid: full resolution
    assert len(full) == 6 and edges == list(range(7)) and full[0][0] == 18.0
    with pytest.raises(ValueError, match="heatmap size"):
        abs_heatmap(H, 0)


def _tiny_problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    net = MLP((6, 3, 4))
    x = torch.randn(16, 6)
    y = torch.randint(0, 4, (16,))
    return net, x, y


def _ce(out: torch.Tensor, _x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out, y)


def test_dense_hessian_matches_double_backward_hvps_and_torch_func_hessian() -> None:
    net, x, y = _tiny_problem()
    params = list(net.parameters())
    H = dense_hessian(net, _ce, x, y, chunk_size=5)
    n = count_parameters(net)
    assert H.shape == (n, n) and H.dtype == torch.float64
    # Naive reference 1: one double-backward HVP per column (trainer.optim.hvp).
    op = GradientWithHVP(_ce(net(x), x, y), params)
    columns = torch.stack([op.hvp(torch.eye(n)[j]) for j in range(n)], 1).double()
    assert torch.allclose(H, columns, atol=1e-6)
    # Naive reference 2: torch.func.hessian per parameter pair.
    names = [name for name, _ in net.named_parameters()]

    def loss_of(*tensors: torch.Tensor) -> torch.Tensor:
        return _ce(torch.func.functional_call(net, dict(zip(names, tensors)), (x,)), x, y)

    blocks = torch.func.hessian(loss_of, argnums=tuple(range(len(params))))(*[p.detach() for p in params])
    rows = [torch.cat([blocks[i][j].reshape(params[i].numel(), params[j].numel()) for j in range(len(params))], 1)
            for i in range(len(params))]
    assert torch.allclose(H, torch.cat(rows, 0).double(), atol=1e-6)


def test_dense_hessian_of_a_quadratic_is_its_matrix() -> None:
    """L(w) = ½ wᵀAw for a linear layer without bias read as w: the Hessian is A exactly."""
    A = torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
    net = nn.Linear(3, 1, bias=False)

    def quad(_out: torch.Tensor, _x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        w = _out.reshape(-1)  # out = x @ wᵀ with x = I gives w itself
        return 0.5 * w @ A @ w

    H = dense_hessian(net, quad, torch.eye(3), torch.zeros(3))
    assert torch.allclose(H, A.double())
    assert mass_shares(H, [Block("w", 0, 3)])["diagonal"] == pytest.approx(9 / 11)


def test_layer_blocks_group_weight_and_bias() -> None:
    net = MLP((6, 3, 4))
    assert layer_blocks(net) == [Block("net.1", 0, 21), Block("net.3", 21, 37)]


def test_analyse_reports_shares_baselines_and_heatmap() -> None:
    net, x, y = _tiny_problem()
    result = analyse_hessian(net, _ce, x, y, heatmap_size=8, random_draws=2)
    n = count_parameters(net)
    shares = result["shares"]
    assert result["num_parameters"] == n == 37
    assert 0 < shares["diagonal"] < shares["block_diagonal"] <= 1
    assert sum(b["share"] for b in shares["per_block"]) == pytest.approx(shares["block_diagonal"])
    assert result["wigner"]["diagonal"] == pytest.approx(1 / n)
    assert 0 < result["random_same_spectrum"]["diagonal"] < 1
    assert len(result["heatmap"]) == 8 and len(result["heatmap_edges"]) == 9
    assert result["eigenvalues"]["min"] <= result["eigenvalues"]["max"]
    assert math.isfinite(result["loss"])


def test_ols_closed_form_is_the_explicit_expected_abs_matrix() -> None:
    """E|H| for H = XᵀX/N: σ² on the diagonal, σ²·√(2/(πN)) off it (large N); shares counted entry by entry."""
    N = 64
    c = math.sqrt(2 / (math.pi * N))
    n = sum(b.size for b in BLOCKS_2_3)
    expected = torch.full((n, n), c, dtype=torch.float64)
    expected.fill_diagonal_(1.0)
    diag, block = _naive_shares(expected, BLOCKS_2_3)
    got = ols_shares(BLOCKS_2_3, N)
    assert got["diagonal"] == pytest.approx(diag, rel=1e-12) == pytest.approx(1 / (1 + (n - 1) * c), rel=1e-12)
    assert got["block_diagonal"] == pytest.approx(block, rel=1e-12) and got["inputs"] == N
    with pytest.raises(ValueError, match="Invalid number of inputs"):
        ols_shares(BLOCKS_2_3, 0)


def test_ols_simulation_matches_its_closed_form_at_large_n() -> None:
    """Gaussian X: the simulated diagonal share approaches Proposition 2's value (the paper's Figure 6)."""
    blocks = [Block("a", 0, 10), Block("b", 10, 30)]
    N = 4000
    closed = ols_shares(blocks, N)
    sim = ols_simulated_shares(blocks, N, draws=3, seed=1)
    assert sim["diagonal"] == pytest.approx(closed["diagonal"], rel=0.05)
    assert sim["block_diagonal"] == pytest.approx(closed["block_diagonal"], rel=0.05)
    X = torch.randn(N, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert sim["diagonal"] != pytest.approx(mass_shares(torch.eye(30), blocks)["diagonal"])  # not the identity
    first = ols_simulated_shares(blocks, N, draws=1, seed=1)
    assert first == pytest.approx(mass_shares(X.T @ X / N, blocks))  # the same draw, computed explicitly


def test_off_block_ratio_compares_off_block_masses() -> None:
    assert off_block_ratio(0.99, 0.96) == pytest.approx(0.01 / 0.04)
    assert off_block_ratio(0.5, 0.5) == pytest.approx(1.0)
    assert off_block_ratio(1.0, 1.0) is None  # one block: no off-block mass to compare


def test_analyse_reports_the_ols_baseline_and_off_block_ratios() -> None:
    net, x, y = _tiny_problem()
    blocks = layer_blocks(net)
    sim = ols_simulated_shares(blocks, x.shape[0])
    result = analyse_hessian(net, _ce, x, y, heatmap_size=8, random_draws=1, ols_simulated=sim)
    assert result["ols"]["inputs"] == x.shape[0]
    assert result["ols"]["diagonal"] == pytest.approx(ols_shares(blocks, x.shape[0])["diagonal"])
    assert result["ols"]["simulated_diagonal"] == sim["diagonal"]
    block = result["shares"]["block_diagonal"]
    for key in ("random_same_spectrum", "wigner", "ols"):
        assert result["off_block_ratio"][key] == pytest.approx((1 - block) / (1 - result[key]["block_diagonal"]))
    assert "simulated_diagonal" not in analyse_hessian(net, _ce, x, y, heatmap_size=8, random_draws=1)["ols"]


def test_diverged_weights_are_refused() -> None:
    net, x, y = _tiny_problem()
    with torch.no_grad():
        net.net[1].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite.*earlier checkpoint"):
        analyse_hessian(net, _ce, x, y)


def test_size_limit_names_the_limit_and_the_fix() -> None:
    check_size(MAX_HESSIAN_PARAMETERS)
    with pytest.raises(ValueError, match=r"101,770 parameters, the limit is 4,096.*mlp-narrow"):
        check_size(101_770)
    big = build_model("mlp", "fashion-mnist")
    with pytest.raises(ValueError, match="Use the narrow MLP"):
        analyse_hessian(big, _ce, torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))
    narrow = build_model("mlp-narrow", "fashion-mnist")
    assert count_parameters(narrow) == 3_190 <= MAX_HESSIAN_PARAMETERS


NARROW_RUN = {"dataset": "mnist", "model": "mlp-narrow", "optimizer": {"name": "sgd"}, "budget": {"backprops": 8},
              "batch_size": 16, "eval_every": 4, "seed": 3}


def test_replay_returns_the_weights_and_losses_of_the_recorded_run(fake_mnist_dir) -> None:
    from trainer.analysis.checkpoints import replay_checkpoints
    from trainer.config import RunConfig
    from trainer.loop import run
    from trainer.reporting import ListReporter

    cfg = RunConfig.model_validate(NARROW_RUN)
    recorded = ListReporter()
    assert run(cfg, recorded, data_dir=fake_mnist_dir)["status"] == "completed"
    replay = replay_checkpoints(cfg, [0, 3, 5], data_dir=fake_mnist_dir)
    assert sorted(replay.states) == [0, 3, 5]
    assert replay.summary["status"] == "stopped" and replay.summary["steps"] == 5  # stops after the last one
    losses = {r["step"]: r["train_loss"] for r in recorded.steps}
    assert replay.losses == {0: None, 3: losses[3], 5: losses[5]}
    torch.manual_seed(3)
    init = build_model("mlp-narrow", "mnist").state_dict()
    assert all(torch.equal(init[k], replay.states[0][k]) for k in init)
    assert not torch.equal(replay.states[0]["net.1.weight"], replay.states[5]["net.1.weight"])
    with pytest.raises(RuntimeError, match=r"ended at step 8 .* before checkpoint step\(s\) \[50\]"):
        replay_checkpoints(cfg, [2, 50], data_dir=fake_mnist_dir)
    wall_only = RunConfig.model_validate({**NARROW_RUN, "budget": {"seconds": 5}})
    with pytest.raises(ValueError, match="max_backprops"):
        replay_checkpoints(wall_only, [1], data_dir=fake_mnist_dir)
