"""TrustRegion optimizer: radius rules, bit-exact rejection, convergence on known problems."""
import math
from typing import Callable

import pytest
import torch
from torch import nn

from trainer.optim.factory import build_optimizer
from trainer.optim.norms import AdagradNorm, RMSpropNorm, UniformNorm, make_norm
from trainer.optim.radius import reduction_ratio
from trainer.optim.trust_region import TrustRegion, radius_update

RULES = dict(eta1=0.01, eta2=0.95, gamma1=1.1, gamma2=1.5, max_radius=10.0)


@pytest.mark.parametrize("rho,accepted,radius", [
    (1.0, True, 1.1), (0.95, True, 1.1), (0.5, True, 1.0), (0.01, True, 1.0), (0.0099, False, 1 / 1.5),
    (-3.0, False, 1 / 1.5), (float("nan"), False, 1 / 1.5),
])
def test_radius_update_rules(rho, accepted, radius):
    ok, new = radius_update(rho, 1.0, **RULES)
    assert ok is accepted
    assert new == pytest.approx(radius)


def test_radius_capped_at_max():
    assert radius_update(1.0, 9.5, **RULES) == (True, 10.0)


def _rosenbrock_closure(x):
    def closure():
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    return closure


@pytest.mark.parametrize("solver", ["cg", "lanczos"])
@pytest.mark.parametrize("norm", ["uniform", "adagrad", "rmsprop"])
def test_converges_on_rosenbrock(solver, norm):
    x = nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))
    radius = 1e-2 if norm == "rmsprop" else 0.5
    opt = TrustRegion([x], norm=norm, solver=solver, radius=radius, max_radius=10.0, krylov_tol=1e-6)
    closure = _rosenbrock_closure(x)
    for _ in range(400):
        opt.step(closure)
        if float(closure().detach()) < 1e-14:
            break
    torch.testing.assert_close(x.detach(), torch.tensor([1.0, 1.0], dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["tr-uniform", "tr-adagrad", "tr-rmsprop"])
def test_converges_on_logistic_regression(name):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 5, generator=g, dtype=torch.float64)
    w_true = torch.tensor([1.5, -2.0, 0.5, 0.0, 1.0], dtype=torch.float64)
    y = (torch.rand(400, generator=g, dtype=torch.float64) < torch.sigmoid(X @ w_true)).double()
    w = nn.Parameter(torch.zeros(5, dtype=torch.float64))

    def loss():
        return nn.functional.binary_cross_entropy_with_logits(X @ w, y)

    opt = build_optimizer(name, [w], {"krylov_tol": 1e-8, "radius": 0.1 if name != "tr-rmsprop" else 0.01})
    for _ in range(200):
        opt.step(loss)
    # Optimum: gradient vanishes. Compare with a reference Newton solve.
    ref = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    for _ in range(30):
        lr = nn.functional.binary_cross_entropy_with_logits(X @ ref, y)
        gr = torch.autograd.grad(lr, ref, create_graph=True)[0]
        Hm = torch.stack([torch.autograd.grad(gr[i], ref, retain_graph=True)[0] for i in range(5)])
        with torch.no_grad():
            ref -= torch.linalg.solve(Hm, gr)
    torch.testing.assert_close(w.detach(), ref.detach(), atol=1e-5, rtol=1e-5)


def _mlp_problem(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(64, 10)
    y = torch.randint(0, 3, (64,))
    return net, lambda: nn.functional.cross_entropy(net(x), y)


def test_rejected_step_restores_parameters_bit_exactly():
    net, closure = _mlp_problem()
    # eta1 = 1 (> any ρ short of a perfect quadratic model) forces rejections.
    opt = TrustRegion(net.parameters(), radius=5.0, max_radius=10.0, eta1=1.0, eta2=1.0)
    before = [p.detach().clone() for p in net.parameters()]
    opt.step(closure)
    assert opt.last_trace["accepted"] is False
    for p, b in zip(net.parameters(), before):
        assert torch.equal(p.detach(), b)
    assert opt.radius == pytest.approx(5.0 / 1.5)
    assert opt.last_trace["new_radius"] == pytest.approx(5.0 / 1.5)


def test_accepted_step_moves_and_trace_is_complete():
    net, closure = _mlp_problem()
    opt = TrustRegion(net.parameters(), radius=0.05)
    before = [p.detach().clone() for p in net.parameters()]
    loss0 = float(closure().detach())
    opt.step(closure)
    t = opt.last_trace
    assert t["accepted"] is True
    assert float(closure()) < loss0
    assert t["rho"] == pytest.approx(t["actual_decrease"] / t["pred_decrease"])
    assert t["pred_decrease"] > 0
    assert t["step_norm_m"] <= 0.05 * (1 + 1e-5)
    moved = math.sqrt(sum(float(((p.detach() - b) ** 2).sum()) for p, b in zip(net.parameters(), before)))
    assert moved == pytest.approx(t["step_norm"], rel=1e-4)
    assert opt.gradients == 1 and opt.forwards == 1 and opt.hvps == t["cg_iterations"] >= 1
    assert t["cg_exit"] in {"interior", "boundary", "negative_curvature", "max_iter"}


def test_radius_follows_update_rules_over_many_steps():
    net, closure = _mlp_problem(1)
    opt = TrustRegion(net.parameters(), radius=0.3, gamma1=1.3, gamma2=2.0, eta1=0.2, eta2=0.8, max_radius=1.0)
    for _ in range(25):
        r0 = opt.radius
        opt.step(closure)
        t = opt.last_trace
        ok, expected = radius_update(t["rho"] if t["rho"] is not None else float("nan"), r0, eta1=0.2, eta2=0.8,
                                     gamma1=1.3, gamma2=2.0, max_radius=1.0)
        assert t["accepted"] is ok
        assert opt.radius == pytest.approx(expected)


def test_norm_update_accepted_rolls_back_rejected_gradients():
    net, closure = _mlp_problem()
    opt = TrustRegion(net.parameters(), norm="adagrad", norm_update="accepted", radius=5.0, eta1=1.0, eta2=1.0)
    opt.step(closure)
    assert opt.last_trace["accepted"] is False
    assert opt.norm.sum_sq is None
    net2, closure2 = _mlp_problem()
    opt2 = TrustRegion(net2.parameters(), norm="adagrad", norm_update="every", radius=5.0, eta1=1.0, eta2=1.0)
    opt2.step(closure2)
    assert opt2.norm.sum_sq is not None


def test_norm_matrices():
    g1, g2 = torch.tensor([3.0, 0.0]), torch.tensor([4.0, 0.0])
    n = AdagradNorm(eps=1e-10)
    n.update(g1)
    n.update(g2)
    torch.testing.assert_close(n.matrix(g1), torch.tensor([5.0, 1e-5]))
    r = RMSpropNorm(beta=0.8, eps=1e-10)
    r.update(g1)
    r.update(g2)
    v = 0.8 * 0.2 * 9 + 0.2 * 16
    torch.testing.assert_close(r.matrix(g1), torch.tensor([math.sqrt(v) + 1e-10, 1e-10]))
    assert bool((r.matrix(g1) > 0).all())  # ε floor keeps M positive
    assert UniformNorm().matrix(g1) is None
    with pytest.raises(ValueError, match="Invalid norm"):
        make_norm("diag")


@pytest.mark.parametrize("kwargs,match", [
    ({"radius": -1.0}, "Invalid trust radius"),
    ({"radius": 20.0, "max_radius": 10.0}, "Invalid max radius"),
    ({"eta1": 0.9, "eta2": 0.5}, "Invalid thresholds"),
    ({"gamma2": 1.0}, "Invalid gamma2"),
    ({"solver": "newton"}, "Invalid solver"),
    ({"colour": 1}, "Invalid trust-region option"),
])
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrustRegion([nn.Parameter(torch.zeros(2))], **kwargs)


def test_closure_required():
    opt = TrustRegion([nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="closure"):
        opt.step(None)


def _resnet_problem():
    import copy

    from trainer.models import build_model

    torch.manual_seed(0)
    net = build_model("resnet18", "fashion-mnist")
    net.train()
    x = torch.randn(4, 1, 28, 28)
    y = torch.randint(0, 10, (4,))
    return net, x, y, (lambda: nn.functional.cross_entropy(net(x), y)), copy.deepcopy


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.slow
def test_rejected_step_restores_batchnorm_buffers_on_resnet18():
    net, _x, _y, closure, _ = _resnet_problem()
    opt = TrustRegion(net.parameters(), buffers=net.buffers(), radius=5.0, max_radius=10.0, eta1=1.0, eta2=1.0,
                      max_cg_iters=2)
    before = _state(net)
    opt.step(closure)
    assert opt.last_trace["accepted"] is False
    after = _state(net)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert any(k.endswith("num_batches_tracked") for k in before)


@pytest.mark.slow
def test_accepted_step_counts_the_batch_once_in_batchnorm_statistics():
    net, x, _y, closure, deepcopy = _resnet_problem()
    reference = deepcopy(net)
    with torch.no_grad():
        reference(x)  # one training-mode forward pass at the initial weights: the expected statistics
    expected = {k: v for k, v in reference.state_dict().items() if not k.endswith(("weight", "bias"))}
    # A tiny radius makes the quadratic model accurate, so ρ ≈ 1 and the step is accepted.
    opt = TrustRegion(net.parameters(), buffers=net.buffers(), radius=1e-6, eta1=0.01, max_cg_iters=2)
    opt.step(closure)
    assert opt.last_trace["accepted"] is True
    state = net.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(state[k], v, rtol=1e-6, atol=1e-7, msg=k)
    tracked = [v for k, v in state.items() if k.endswith("num_batches_tracked")]
    assert tracked and all(int(t) == 1 for t in tracked)


@pytest.mark.slow
def test_without_buffers_given_the_rho_forward_pass_would_count_twice():
    # The failure the buffers argument fixes: two forward passes per step in training mode.
    net, _x, _y, closure, _ = _resnet_problem()
    opt = TrustRegion(net.parameters(), radius=1e-6, max_cg_iters=1)
    opt.step(closure)
    tracked = [v for k, v in net.state_dict().items() if k.endswith("num_batches_tracked")]
    assert all(int(t) == 2 for t in tracked)


def test_step_runs_torch_optim_hooks_and_shows_in_the_profiler():
    """torch.optim wraps TrustRegion.step as any optimizer's (public API only): its step hooks run, in order, a
    pre-hook may replace the closure, and a profiler sees the step's scope."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    x = nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))
    opt = TrustRegion([x], radius=0.5)
    calls = []
    other = _rosenbrock_closure(nn.Parameter(torch.tensor([0.5, 0.5], dtype=torch.float64)))
    handles = [
        register_optimizer_step_pre_hook(lambda o, a, k: calls.append("global pre")),
        opt.register_step_pre_hook(lambda o, a, k: (calls.append("pre"), ((o, _rosenbrock_closure(x)), k))[1]),
        opt.register_step_post_hook(lambda o, a, k: calls.append("post")),
        register_optimizer_step_post_hook(lambda o, a, k: calls.append("global post")),
    ]
    try:
        loss = opt.step(other)  # the pre-hook swaps in the closure on x
    finally:
        for h in handles:
            h.remove()
    assert calls == ["global pre", "pre", "post", "global post"]
    assert float(loss) == pytest.approx(float(_rosenbrock_closure(torch.tensor([-1.2, 1.0]))()))
    assert opt.gradients == 1 and not torch.equal(x.detach(), torch.tensor([-1.2, 1.0], dtype=torch.float64))

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step(_rosenbrock_closure(x))
    assert "Optimizer.step#TrustRegion.step" in {e.key for e in prof.key_averages()}


# -- the noise floor of ρ (DESIGN.md "Converged is not failed") --------------------------------------------------

F32 = torch.finfo(torch.float32).eps


@pytest.mark.parametrize("actual,pred,loss,rule,expected", [
    (0.0, 2e-15, 6.3e-9, "relative", 1.0),  # both below 4 ulps of the loss: agreement
    (0.0, 2e-15, 6.3e-9, "off", 0.0),  # the plain ratio: 0, a rejection
    (0.0, 2e-15, 6.3e-9, "authors", 0.0),  # above the authors' absolute 1e-15
    (0.0, 5e-16, 6.3e-9, "authors", 1.0),  # below it
    (0.0, 5e-16, 1.0, "authors", 1.0),
    (1e-3, 2e-3, 1.0, "relative", 0.5),  # far above the floor: the plain ratio
    (0.0, 1e-6, 1.0, "relative", 0.0),  # pred above 4·ε·|L| ≈ 4.8e-7: not noise
    (-1e-6, 1e-8, 1.0, "relative", -100.0),  # the loss rose beyond its noise: a real rejection
    (0.0, 0.0, 0.0, "relative", 1.0),  # a zero gradient at a zero loss
    (0.0, 0.0, 1.0, "off", math.nan),  # pred 0 outside the floor: no ratio
    (math.nan, 1e-12, 1.0, "relative", math.nan),  # the loss at w + s overflowed
    (-math.inf, 1e-12, 1.0, "authors", math.nan),
])
def test_reduction_ratio_noise_floor(actual, pred, loss, rule, expected):
    rho = reduction_ratio(actual, pred, loss, rule=rule, ulps=4.0, eps=F32)
    if math.isnan(expected):
        assert math.isnan(rho)
    else:
        assert rho == pytest.approx(expected)


def test_reduction_ratio_tolerance_is_ulps_times_eps_times_the_loss():
    tol = 4.0 * F32 * 2.0
    assert reduction_ratio(0.0, tol * 0.99, 2.0, ulps=4.0, eps=F32) == 1.0
    assert reduction_ratio(0.0, tol * 1.01, 2.0, ulps=4.0, eps=F32) == 0.0
    assert reduction_ratio(tol * 1.01, tol * 0.99, 2.0, ulps=4.0, eps=F32) != 1.0  # |actual| too large
    assert reduction_ratio(0.0, 1e-300, 2.0, ulps=0.0, eps=F32) == 0.0  # 0 ulps: only exact zeros
    with pytest.raises(ValueError, match="Invalid noise_floor"):
        reduction_ratio(0.0, 1.0, 1.0, rule="never")


def _flat_float32_problem(rule: str) -> tuple[TrustRegion, nn.Parameter, Callable[[], torch.Tensor]]:
    """L(x) = 1 + (x - c)⁴ in float32 with x - c = 1e-2: the gradient is 4e-6 and the model decrease ~7e-9 (a
    Newton step goes a third of the way), but L(x) and L(x + s) are both exactly 1.0 in float32 (the loss sits at
    its floor)."""
    c = torch.tensor([0.25], dtype=torch.float32)
    x = nn.Parameter(c + 1e-2)

    def closure():
        return 1.0 + ((x - c) ** 4).sum()

    return TrustRegion([x], norm="uniform", radius=0.05, noise_floor=rule), x, closure


def test_at_the_loss_floor_the_relative_rule_accepts_and_the_plain_ratio_rejects():
    opt, _, closure = _flat_float32_problem("relative")
    for _ in range(5):
        opt.step(closure)
        tr = opt.last_trace
        assert tr["actual_decrease"] == 0.0 and 0 < tr["pred_decrease"] < 4 * F32
        assert tr["accepted"] and tr["rho"] == 1.0
    assert opt.radius > 0.05  # grew: agreement counts as a very successful step

    opt, _, closure = _flat_float32_problem("off")
    for _ in range(5):
        opt.step(closure)
        assert not opt.last_trace["accepted"] and opt.last_trace["rho"] == 0.0
    assert opt.radius == pytest.approx(0.05 / 1.5 ** 5)  # the old behaviour: the radius collapses

    opt, _, closure = _flat_float32_problem("authors")  # pred ~1e-10 is above the authors' 1e-15
    opt.step(closure)
    assert not opt.last_trace["accepted"]


def _deep_copy(obj):
    if torch.is_tensor(obj):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def _assert_same(a, b):
    assert type(a) is type(b)
    if torch.is_tensor(a):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_radius_and_counters_live_in_the_first_parameters_state():
    """One source of truth, as LBFGS keeps its global state: the live radius is in self.state (param_groups keeps
    Δ₀), with the counters and the norm's state."""
    net, closure = _mlp_problem()
    opt = TrustRegion(net.parameters(), norm="adagrad", radius=0.05, gamma1=1.1, eta1=0.0, eta2=0.0)  # accepted: Δ grows
    for _ in range(3):
        opt.step(closure)
    state = opt.state[next(iter(net.parameters()))]
    assert opt.param_groups[0]["radius"] == 0.05
    assert state["radius"] == opt.radius == opt.last_trace["new_radius"] != 0.05
    assert (state["gradients"], state["forwards"]) == (3, 3) and state["hvps"] == opt.hvps >= 3
    assert state["norm"]["updates"] == 3 and state["norm"]["sum_sq"] is opt.norm.sum_sq
    saved = opt.state_dict()
    assert saved["state"][0]["radius"] == opt.radius and "trust_region" not in saved


@pytest.mark.parametrize("norm", ["uniform", "adagrad", "rmsprop"])
def test_state_dict_round_trips_any_number_of_times(norm):
    """Loading the same state dict twice (or into two optimizers) gives the same optimizer each time, and never
    changes the dict: before the fix, the first load popped its 'trust_region' entry and the second reset the
    radius to Δ₀ (0.055 back to 0.05)."""
    net, closure = _mlp_problem()
    radius = 1e-4 if norm == "rmsprop" else 0.05
    opt = TrustRegion(net.parameters(), norm=norm, radius=radius, eta1=0.0, eta2=0.0)
    for _ in range(2):
        opt.step(closure)
    grown = opt.radius
    assert grown > radius
    saved = opt.state_dict()
    pristine = _deep_copy(saved)
    start = [p.detach().clone() for p in net.parameters()]
    results = []
    for _ in range(2):  # the same dict, loaded twice into the same optimizer
        with torch.no_grad():
            for p, s in zip(net.parameters(), start):
                p.copy_(s)
        other = TrustRegion(net.parameters(), norm=norm, radius=radius, eta1=0.0, eta2=0.0)
        other.load_state_dict(saved)
        other.load_state_dict(saved)
        assert other.radius == grown and (other.gradients, other.hvps) == (opt.gradients, opt.hvps)
        other.step(closure)  # steps after loading do not write into the loaded dict
        _assert_same(saved, pristine)
        results.append((other.last_trace, [p.detach().clone() for p in net.parameters()]))
    (t1, p1), (t2, p2) = results
    assert t1 == t2 and t1["radius"] == grown
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_state_dict_is_a_snapshot_of_the_radius_and_counters():
    net, closure = _mlp_problem()
    opt = TrustRegion(net.parameters(), radius=0.05, eta1=0.0, eta2=0.0)
    opt.step(closure)
    saved = opt.state_dict()
    radius, gradients = saved["state"][0]["radius"], saved["state"][0]["gradients"]
    opt.step(closure)
    assert saved["state"][0]["radius"] == radius and saved["state"][0]["gradients"] == gradients == 1
    assert opt.radius != radius


def test_loading_a_state_saved_before_any_step_starts_over():
    net, closure = _mlp_problem()
    opt = TrustRegion(net.parameters(), norm="adagrad", radius=0.05, eta1=0.0, eta2=0.0)
    fresh = opt.state_dict()
    opt.step(closure)
    opt.load_state_dict(fresh)
    assert opt.radius == 0.05 and opt.gradients == 0 and opt.norm.updates == 0 and opt.norm.sum_sq is None


def test_old_state_dict_layout_is_refused_not_ignored():
    net, _ = _mlp_problem()
    opt = TrustRegion(net.parameters())
    old = {**opt.state_dict(), "trust_region": {"radius": 0.055}}
    with pytest.raises(ValueError, match="old top-level 'trust_region'"):
        opt.load_state_dict(old)
