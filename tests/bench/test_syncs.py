"""Host synchronisations of the TR step: the counter itself, and at most one per Krylov iteration + a constant."""
import pytest
import torch

from bench.syncs import count_host_syncs, fit_line, measure_tr_host_syncs

# Per TR step outside the Krylov loop: loss value, ‖g‖_{M⁻¹} (with M > 0), m(s) with the step/grad norms, ρ's loss.
CONSTANT = 4


def test_counter_counts_each_conversion_and_restores_methods():
    t = torch.tensor([1.5, 2.0])
    with count_host_syncs() as c:
        float(t[0])
        t.sum().item()
        t.tolist()
        if t[0] > 0:
            int(t[1])
        t.numpy()
    assert c.calls["__float__"] == 1 and c.calls["item"] == 1 and c.calls["tolist"] == 1
    assert c.calls["__bool__"] == 1 and c.calls["__int__"] == 1 and c.calls["numpy"] == 1
    assert c.total == 6
    assert "item" not in torch.Tensor.__dict__ and "__bool__" not in torch.Tensor.__dict__
    with count_host_syncs() as c2:
        pass
    assert c2.total == 0


def test_fit_line():
    assert fit_line([1, 2, 3], [6, 7, 8]) == pytest.approx((1.0, 5.0))
    assert fit_line([2, 2], [3, 4]) is None


@pytest.mark.parametrize("optimizer,solver", [("tr-uniform", "cg"), ("tr-adagrad", "cg"), ("tr-adagrad", "lanczos"),
                                              ("tr-rmsprop", "lanczos")])
def test_tr_step_syncs_at_most_one_per_krylov_iteration_plus_constant(optimizer, solver):
    r = measure_tr_host_syncs(optimizer, steps=6, solver=solver, batch_size=64)
    assert sum(r["cg_iterations"]) > 0
    for syncs, iters in zip(r["syncs_per_step"], r["cg_iterations"]):
        assert syncs <= iters + CONSTANT, r
