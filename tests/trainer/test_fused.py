"""The fused CPU kernels (trainer.optim.fused) against the PyTorch operations they replace."""
import math

import pytest
import torch
from torch import nn

from trainer.optim import fused
from trainer.optim.hvp import unflatten_into
from trainer.optim.krylov import Workspace, steihaug_cg
from trainer.optim.norms import AdagradNorm, RMSpropNorm
from trainer.optim.trust_region import TrustRegion


def _problem(seed, d=40, dtype=torch.float64, pd=False):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, dtype=torch.float64, generator=gen)
    H = A @ A.T / d + 0.5 * torch.eye(d, dtype=torch.float64) if pd else (A + A.T) / 2
    g = torch.randn(d, dtype=torch.float64, generator=gen)
    M = torch.rand(d, dtype=torch.float64, generator=gen) * 3 + 0.2
    return H.to(dtype), g.to(dtype), M.to(dtype)


def test_fused_path_is_taken_for_cpu_float_vectors_only():
    """Numba is a pinned dependency: a CPU float vector can take the fused path (never silently not)."""
    assert fused.numba_version() is not None
    g = torch.randn(5, dtype=torch.float64)
    assert fused.enabled(g) and fused.enabled(g.float())
    assert not fused.enabled(torch.randn(5, dtype=torch.float16))
    assert not fused.enabled(torch.randn(5, dtype=torch.float64, requires_grad=True))
    with pytest.raises(ValueError, match="contiguous"):
        fused.views(torch.randn(4, 4)[:, 0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("precond", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_fused_and_torch_cg_agree(dtype, precond, seed):
    """Same exits, iterations, steps and scalars from both implementations, on PD and indefinite problems, for
    a step inside the region, on the boundary, and along negative curvature."""
    H, g, M = _problem(seed, dtype=dtype, pd=bool(seed % 2))
    M = M if precond else None
    tol = 1e-9 if dtype == torch.float64 else 5e-3  # float32 CG: rounding differences grow over the iterations
    for radius in (0.05, 0.5, 50.0):
        results = {}
        for on in (True, False):
            r = steihaug_cg(g, lambda v: H @ v, radius, precond=M, tol=1e-3, theta=0.0, max_iter=60,
                            workspace=Workspace(), fused=on)
            results[on] = (r, r.step.clone())
        (a, sa), (b, sb) = results[True], results[False]
        # float32 sums in a different order can cross the stopping threshold one iteration apart
        slack = 0 if dtype == torch.float64 else 1
        assert a.exit == b.exit and abs(a.iterations - b.iterations) <= slack, (radius, a, b)
        assert torch.allclose(sa, sb, rtol=tol, atol=tol * float(sb.abs().max())), radius
        for f in ("model_decrease", "step_norm_m", "step_norm", "grad_norm"):
            assert getattr(a, f) == pytest.approx(getattr(b, f), rel=tol, abs=tol), f
        s64, H64, g64 = sa.double(), H.double(), g.double()
        assert a.step_norm == pytest.approx(float(s64.norm()), rel=tol)
        assert a.grad_norm == pytest.approx(float(g64.norm()), rel=tol)
        m_norm = float(s64.norm()) if M is None else math.sqrt(float((M.double() * s64 * s64).sum()))
        assert a.step_norm_m == pytest.approx(m_norm, rel=tol)
        assert a.model_decrease == pytest.approx(-float(g64 @ s64 + 0.5 * s64 @ H64 @ s64), rel=max(tol, 1e-6),
                                                 abs=1e-6)


@pytest.mark.parametrize("norm_cls", [AdagradNorm, RMSpropNorm])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_norm_updates_match_torch(norm_cls, dtype):
    """Folding gradients into M: the one-pass kernel and the PyTorch operations give the same M and state."""
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(1000, generator=gen, dtype=torch.float64).to(dtype) * 10.0 ** k for k in range(-3, 2)]
    norms = {}
    for on in (True, False):
        n = norm_cls(eps=1e-10, fused=on)
        for gr in grads:
            n.update(gr)
        norms[on] = n
    a, b = norms[True], norms[False]
    rtol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(a.matrix(grads[0]), b.matrix(grads[0]), rtol=rtol, atol=0)
    for key, value in a.state_dict().items():
        other = b.state_dict()[key]
        if torch.is_tensor(value):
            torch.testing.assert_close(value, other, rtol=rtol, atol=0)
        else:
            assert value == other


@pytest.mark.parametrize("norm_cls", [AdagradNorm, RMSpropNorm])
def test_norm_matrix_follows_a_loaded_state(norm_cls):
    """M is kept with the accumulator; loading a state (a checkpoint, a rolled-back rejection) recomputes it."""
    n = norm_cls(eps=1e-10)
    n.update(torch.tensor([3.0, 4.0], dtype=torch.float64))
    saved = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in n.state_dict().items()}
    m_saved = n.matrix(torch.zeros(2, dtype=torch.float64)).clone()
    n.update(torch.tensor([30.0, 40.0], dtype=torch.float64))
    assert not torch.equal(n.matrix(torch.zeros(2, dtype=torch.float64)), m_saved)
    n.load_state_dict(saved)
    torch.testing.assert_close(n.matrix(torch.zeros(2, dtype=torch.float64)), m_saved, rtol=0, atol=0)


class _SharedBuffer(nn.Module):
    """Parameters that are views into one flat buffer (their storage cannot be swapped)."""

    def __init__(self) -> None:
        super().__init__()
        flat = torch.randn(10 * 8 + 8 * 3, generator=torch.Generator().manual_seed(1))
        self.flat = flat
        self.w1 = nn.Parameter(flat[:80].view(10, 8))
        self.w2 = nn.Parameter(flat[80:].view(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w1) @ self.w2


def _problem_net(shared: bool):
    torch.manual_seed(0)
    net = _SharedBuffer() if shared else nn.Sequential(nn.Linear(10, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(64, 10)
    y = torch.randint(0, 3, (64,))
    return net, lambda: nn.functional.cross_entropy(net(x), y)


@pytest.mark.parametrize("shared", [False, True])
def test_trial_parameters_are_restored_bit_exactly_and_kept_when_accepted(shared):
    """Rejected: w is back bit for bit; accepted: w + s is kept, in place (the Parameter objects and, for views into
    a shared buffer, the buffer see the step)."""
    net, closure = _problem_net(shared)
    params = list(net.parameters())
    ids = [id(p) for p in params]
    before = [p.detach().clone() for p in params]
    opt = TrustRegion(params, radius=5.0, max_radius=10.0, eta1=1.0, eta2=1.0)  # ρ < 1: rejected
    opt.step(closure)
    assert opt.last_trace["accepted"] is False
    assert all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), before))
    accept = TrustRegion(params, radius=0.05, eta1=0.0, eta2=1.0)
    for _ in range(3):  # three accepted steps: the backup storage is reused
        loss0 = float(closure().detach())
        accept.step(closure)
        assert accept.last_trace["accepted"] is True
        assert float(closure().detach()) < loss0
    assert [id(p) for p in net.parameters()] == ids
    moved = math.sqrt(sum(float(((p.detach() - b) ** 2).sum()) for p, b in zip(net.parameters(), before)))
    assert moved > 0
    if shared:  # the flat buffer the parameters view has moved with them
        assert torch.equal(net.flat[:80].view(10, 8), net.w1.detach())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_save_and_add_is_torchs_copy_and_add_bit_for_bit(dtype):
    gen = torch.Generator().manual_seed(3)
    shapes = [(7, 5), (5,), (3, 7), (1,)]
    params = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    step = torch.randn(sum(math.prod(s) for s in shapes), generator=gen, dtype=dtype) * 1e-3
    expected = [p + s for p, s in zip(params, unflatten_into(step, params))]
    originals = [p.clone() for p in params]
    backups = [torch.empty_like(p) for p in params]
    fused.save_and_add(fused.views(*[p.reshape(-1) for p in params]),
                       fused.views(*[b.reshape(-1) for b in backups]), fused.views(step)[0])
    assert all(torch.equal(b, o) for b, o in zip(backups, originals))
    assert all(torch.equal(p, e) for p, e in zip(params, expected))


@pytest.mark.parametrize("contiguous", [True, False])
def test_tr_step_moves_parameters_by_the_step_and_tells_autograd(contiguous):
    """The step is w + s exactly (contiguous CPU parameters take one fused pass, others PyTorch's ops), and autograd's
    in-place checks still see the change: a graph that saved the old parameters refuses to backpropagate."""
    net, closure = _problem_net(False)
    if not contiguous:  # a transposed parameter cannot be a flat view
        net[0].weight = nn.Parameter(net[0].weight.detach().t().contiguous().t())
        assert not net[0].weight.is_contiguous()
    params = list(net.parameters())
    opt = TrustRegion(params, radius=0.05, eta1=0.0, eta2=1.0)  # every step with ρ > 0 accepted
    stale = closure()  # saves the current parameters for its backward
    before = [p.detach().clone() for p in params]
    versions = [p._version for p in params]
    opt.step(closure)
    assert opt.last_trace["accepted"] is True
    step = unflatten_into(opt._workspace._bufs["s"], params)  # the solver's step, kept in its workspace
    assert all(torch.equal(p.detach(), b + s) for p, b, s in zip(params, before, step))
    assert all(p._version > v for p, v in zip(params, versions))
    assert opt.fused is contiguous  # fused=None: the fused kernels exactly where the parameters allow them
    assert (opt._views is not None) is contiguous
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()


def test_resolve_is_torchs_fused_convention():
    """None: fused where the tensors allow; False: never; True: required, or a ValueError that says what to pass."""
    cpu = torch.randn(5, dtype=torch.float64)
    half = torch.randn(5, dtype=torch.float16)
    strided = torch.randn(4, 4, dtype=torch.float64)[:, 0]
    assert fused.resolve(None, cpu) is True and fused.resolve(False, cpu) is False and fused.resolve(True, cpu) is True
    for bad in (half, strided, cpu.float()):
        assert fused.resolve(None, cpu, bad) is False
        assert fused.resolve(False, cpu, bad) is False
        with pytest.raises(ValueError, match="fused=False"):
            fused.resolve(True, cpu, bad)


@pytest.mark.parametrize("flag", [None, True, False])
def test_trust_region_resolves_fused_once_and_passes_it_down(flag, monkeypatch):
    """The optimizer's ``fused`` flag is resolved at construction (torch.optim's convention) and decides every
    fused-or-PyTorch choice of a step: the norm update, the CG solve and the save-and-add of the parameters."""
    net, closure = _problem_net(False)
    calls = []
    real = fused.resolve
    monkeypatch.setattr(fused, "resolve", lambda f, *t: calls.append(f) or real(f, *t))
    opt = TrustRegion(net.parameters(), norm="adagrad", radius=0.05, fused=flag)
    expected = flag is not False
    assert opt.fused is expected and opt.norm.fused is expected
    assert calls == [flag]
    kernel_calls = []
    for name in ("cg_init", "adagrad_update", "save_and_add"):
        real_kernel = getattr(fused, name)
        monkeypatch.setattr(fused, name, lambda *a, _k=real_kernel, _n=name: kernel_calls.append(_n) or _k(*a))
    opt.step(closure)
    assert calls[1:] == [expected, expected]  # the norm and the solver were handed the resolved flag
    assert sorted(kernel_calls) == (["adagrad_update", "cg_init", "save_and_add"] if expected else [])


def test_trust_region_fused_true_refuses_parameters_it_cannot_take():
    net, _ = _problem_net(False)
    params = [p.detach().half().requires_grad_() for p in net.parameters()]
    with pytest.raises(ValueError, match="Invalid fused=True"):
        TrustRegion(params, fused=True)
    assert TrustRegion(params).fused is False
