"""Architectures: parameter counts from the paper, shapes, and refused model/dataset pairs."""
import pytest
import torch

from trainer.models import MLP, build_model, count_parameters, loss_function, with_l2
from trainer.registry import DATASETS, MODELS


@pytest.mark.parametrize("model,dataset,params", [
    ("mlp", "fashion-mnist", 101_770), ("mlp-narrow", "fashion-mnist", 3_190), ("mlp", "cifar10", 411_146), ("autoencoder", "fashion-mnist", 2_837_314),
])
def test_parameter_counts_match_paper(model, dataset, params):
    assert count_parameters(build_model(model, dataset)) == params


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_runs_forward_and_loss_on_each_dataset(model):
    for dataset in MODELS[model].datasets:
        net = build_model(model, dataset)
        c, h, w = DATASETS[dataset].shape
        x = torch.rand(2, c, h, w)
        y = torch.tensor([1, 3])
        out = net(x)
        loss = loss_function(model)(out, x, y)
        assert loss.dim() == 0 and torch.isfinite(loss)
        if MODELS[model].task == "reconstruction":
            assert out.shape == x.shape
        else:
            assert out.shape == (2, 10)


def test_resnet18_first_conv_adapted_for_one_channel():
    net = build_model("resnet18", "fashion-mnist")
    assert net.conv1.in_channels == 1
    assert build_model("resnet18", "cifar10").conv1.in_channels == 3


def test_misfit_pair_refused():
    with pytest.raises(ValueError, match="does not fit dataset 'cifar10'"):
        build_model("autoencoder", "cifar10")


def test_autoencoder_losses_against_naive_formulas():
    from trainer.models import reconstruction_image

    torch.manual_seed(0)
    out, x = torch.randn(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    y = torch.zeros(4, dtype=torch.long)
    bce = loss_function("autoencoder", "bce")(out, x, y)
    p = torch.sigmoid(out)
    torch.testing.assert_close(bce, -(x * p.log() + (1 - x) * (1 - p).log()).mean(), rtol=1e-5, atol=1e-6)
    mse = loss_function("autoencoder", "mse")(out, x, y)
    torch.testing.assert_close(mse, ((out - x) ** 2).mean())
    assert loss_function("mlp", "bce") is loss_function("mlp")
    torch.testing.assert_close(reconstruction_image("bce")(out), p)
    img = reconstruction_image("mse")(out)
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    with pytest.raises(ValueError, match="Invalid autoencoder loss"):
        loss_function("autoencoder", "l1")


def test_with_l2_adds_the_penalty_to_the_loss_and_its_gradient():
    torch.manual_seed(0)
    net = MLP((4, 3, 2))
    params = list(net.parameters())
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1])
    base = loss_function("mlp")
    penalized = with_l2(base, params, 1e-2)
    out = net(x)
    expected = base(out, x, y) + 1e-2 * sum(float((p ** 2).sum()) for p in params)
    assert float(penalized(out, x, y)) == pytest.approx(float(expected), rel=1e-6)
    g_base = torch.autograd.grad(base(net(x), x, y), params)
    g_pen = torch.autograd.grad(penalized(net(x), x, y), params)
    for gb, gp, p in zip(g_base, g_pen, params):
        torch.testing.assert_close(gp, gb + 2 * 1e-2 * p.detach())
    assert with_l2(base, params, 0.0)(out, x, y).item() == pytest.approx(base(out, x, y).item())
    with pytest.raises(ValueError, match="Invalid l2"):
        with_l2(base, params, -1.0)
