"""Architectures: parameter counts from the paper, shapes, and refused model/dataset pairs."""
import pytest
import torch

from trainer.models import build_model, count_parameters, loss_function
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
