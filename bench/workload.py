"""Fixed benchmark workloads: a model, its loss and one Fashion-MNIST minibatch on a device."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.data import DEFAULT_DATA_DIR, load_dataset
from trainer.models import build_model, loss_function
from trainer.registry import MODELS

__all__ = ["Workload", "make_workload", "DATASET", "default_data_dir"]

DATASET = "fashion-mnist"


def default_data_dir() -> Path:
    """The dataset folder: ``data/`` in the repository (the trainer also finds system copies)."""
    return Path(__file__).resolve().parent.parent / DEFAULT_DATA_DIR


@dataclass
class Workload:
    model_name: str
    model: torch.nn.Module
    loss_fn: object
    x: torch.Tensor
    y: torch.Tensor
    device: torch.device

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss(self) -> torch.Tensor:
        return self.loss_fn(self.model(self.x), self.x, self.y)  # type: ignore[operator]


def make_workload(model_name: str, batch_size: int = 512, *, device: str = "cpu", seed: int = 0,
                  data_dir: str | Path | None = None) -> Workload:
    """``model_name`` ("mlp" | "autoencoder") on Fashion-MNIST with the first ``batch_size`` training images."""
    dev = torch.device(device)
    task = MODELS[model_name].task
    data = load_dataset(DATASET, data_dir or default_data_dir(), device=dev, normalize=task == "classification",
                        train_subset=batch_size, test_subset=1, download=False)
    torch.manual_seed(seed)
    model = build_model(model_name, DATASET).to(dev)
    model.train()
    return Workload(model_name, model, loss_function(model_name), data.train_x, data.train_y, dev)
