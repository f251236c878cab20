"""Tests for trainer.registry: each entry builds its optimizer, model and dataset; family and defaults defined once."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision

from trainer import data as data_mod
from trainer import registry
from trainer.models import build_model
from trainer.optim.factory import build_optimizer
from trainer.optim.trust_region import TR_DEFAULTS, TrustRegion
from trainer.registry import DATASETS, MODELS, OPTIMIZERS, is_trust_region


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_entry_builds_its_optimizer(name):
    info = OPTIMIZERS[name]
    opt = build_optimizer(name, [torch.nn.Parameter(torch.zeros(3))])
    if info.is_trust_region:
        assert isinstance(opt, TrustRegion) and opt.param_groups[0]["norm"] == info.norm
    else:
        assert type(opt).__name__ == info.description.removeprefix("torch.optim.")
    group = opt.param_groups[0]
    for name, default in info.defaults().items():  # the registry's defaults reach the optimizer
        if name in group:
            assert group[name] == default, name
    if name == "adam":
        assert group["betas"] == (0.9, 0.999)


def test_an_optimizer_added_in_one_place_is_buildable(monkeypatch):
    adamw = dataclasses.replace(OPTIMIZERS["adam"], name="adamw", label="AdamW",
                                build=registry._torch_optimizer("AdamW", registry._adam_kwargs))
    monkeypatch.setitem(OPTIMIZERS, "adamw", adamw)
    opt = build_optimizer("adamw", [torch.nn.Parameter(torch.zeros(2))], {"lr": 0.01})
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 0.01
    assert not is_trust_region("adamw")


def test_family_and_trust_region_defaults_are_the_registry_s():
    assert [n for n in OPTIMIZERS if is_trust_region(n)] == ["tr-uniform", "tr-adagrad", "tr-rmsprop"]
    with pytest.raises(ValueError, match="unknown optimizer"):
        is_trust_region("lbfgs")
    assert {k: v for k, v in TR_DEFAULTS.items() if k != "norm"} == OPTIMIZERS["tr-uniform"].defaults()
    assert TR_DEFAULTS["radius"] == 0.05 and TR_DEFAULTS["gamma2"] == 1.5 and TR_DEFAULTS["max_cg_iters"] == 50


@pytest.mark.parametrize("model", ["mlp", "mlp-narrow", "autoencoder", "conv-autoencoder"])
def test_every_model_entry_builds_for_its_datasets(model):
    for dataset in MODELS[model].datasets:
        net = build_model(model, dataset)
        assert isinstance(net, torch.nn.Module)
        c, h, w = DATASETS[dataset].shape
        out = net(torch.zeros(2, c, h, w))
        assert out.shape[0] == 2


def test_dataset_entries_carry_where_and_how_to_read_them(tmp_path):
    for name, info in DATASETS.items():
        assert info.file_format in data_mod._FORMATS
        assert hasattr(torchvision.datasets, info.torchvision_class), name
        assert len(info.normalization[0]) == len(info.normalization[1]) == info.shape[0]
        folder, looked = data_mod.find_dataset(name, tmp_path)
        assert looked[: len(info.local_dirs)] == [tmp_path / d for d in info.local_dirs]
        assert [str(p) for p in looked[len(info.local_dirs):]] == list(info.system_locations)
    assert data_mod.NORMALIZATION["cifar10"] == DATASETS["cifar10"].normalization
