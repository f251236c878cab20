"""HVPs by double backward equal the explicit Hessian times v."""
import pytest
import torch
from torch import nn

from trainer.optim.hvp import GradientWithHVP, flatten, unflatten_into


def _net_loss(seed: int, act):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 5), act(), nn.Linear(5, 3)).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    params = list(net.parameters())
    shapes = [p.shape for p in params]

    def loss_of(flat):
        ps = unflatten_into(flat, params)
        h = torch.nn.functional.linear(x, ps[0], ps[1])
        h = act()(h)
        out = torch.nn.functional.linear(h, ps[2], ps[3])
        return torch.nn.functional.cross_entropy(out, y)

    return net, params, shapes, loss_of, x, y


@pytest.mark.parametrize("act", [nn.Tanh, nn.Sigmoid])
@pytest.mark.parametrize("seed", [0, 1])
def test_hvp_matches_explicit_hessian(act, seed):
    net, params, _, loss_of, x, y = _net_loss(seed, act)
    flat = flatten([p.detach() for p in params])
    H = torch.autograd.functional.hessian(loss_of, flat)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    op = GradientWithHVP(loss, params)
    torch.testing.assert_close(op.grad, torch.autograd.functional.jacobian(loss_of, flat))
    for _ in range(3):
        v = torch.randn_like(flat)
        torch.testing.assert_close(op.hvp(v), H @ v, rtol=1e-10, atol=1e-12)
    assert op.hvps == 3


def test_hvp_rejects_wrong_shape():
    net, params, _, _, x, y = _net_loss(0, nn.Tanh)
    op = GradientWithHVP(torch.nn.functional.cross_entropy(net(x), y), params)
    with pytest.raises(ValueError, match="Invalid vector shape"):
        op.hvp(torch.zeros(3, dtype=torch.float64))
