"""Model architectures of the paper (DESIGN.md "Architectures") and their losses, by registry name."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from trainer.registry import DATASETS, MODELS, model_fits_dataset

__all__ = ["build_model", "loss_function", "reconstruction_image", "with_l2", "MLP", "Autoencoder", "ConvAutoencoder",
           "resnet18", "count_parameters"]


class MLP(nn.Module):
    """Fully connected tanh network; ``sizes`` = (inputs, hidden..., classes)."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Autoencoder(nn.Module):
    """Deep autoencoder 784-1000-500-250-30 with a mirrored decoder (Hinton & Salakhutdinov 2006).

    Sigmoid after every layer but the 30-unit code layer. ``forward`` returns the last Linear layer's output:
    with the default "bce" loss these are logits of the output sigmoid (applied inside a numerically stable
    pixel-wise binary cross-entropy); with the "mse" variant the output layer is linear (see ``loss_function``).
    """

    def __init__(self, sizes: tuple[int, ...] = (784, 1000, 500, 250, 30)) -> None:
        super().__init__()
        enc: list[nn.Module] = [nn.Flatten()]
        for i in range(len(sizes) - 1):
            enc.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                enc.append(nn.Sigmoid())
        dec: list[nn.Module] = []
        rev = sizes[::-1]
        for i in range(len(rev) - 1):
            dec.append(nn.Linear(rev[i], rev[i + 1]))
            if i < len(rev) - 2:
                dec.append(nn.Sigmoid())
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).view_as(x)


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder for 3x32x32 images (3 strided convolutions, 3 transposed); logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 12, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(12, 24, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(24, 48, 4, stride=2, padding=1), nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(48, 24, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(24, 12, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(12, 3, 4, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def resnet18(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet18 (untrained), its first convolution adapted to ``in_channels`` input channels."""
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


NARROW_HIDDEN = 4  # mlp-narrow: 784-4-10 = 3,190 parameters, within the dense-Hessian limit


def build_model(model: str, dataset: str) -> nn.Module:
    """Instantiate ``model`` for ``dataset`` with its registry entry's builder (``ValueError`` when they do not fit)."""
    model_fits_dataset(model, dataset)
    return MODELS[model].build(DATASETS[dataset])


def _bce_logits(out: torch.Tensor, x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out, x)


def _mse_linear(out: torch.Tensor, x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, x)


def _cross_entropy(out: torch.Tensor, _x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


# RunConfig.autoencoder_loss → (loss on the last layer's output, that output as an image in [0, 1]).
# Both read the same final Linear layer: "bce" treats it as logits of a sigmoid output, "mse" as a linear output.
_RECONSTRUCTION: dict[str, tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "bce": (_bce_logits, torch.sigmoid),
    "mse": (_mse_linear, lambda out: out.clamp(0.0, 1.0)),
}


def loss_function(model: str, autoencoder_loss: str = "bce"
                  ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """loss(output, inputs, labels), both mean-reduced: cross-entropy for classifiers; for autoencoders pixel-wise
    BCE on a sigmoid output ("bce", the paper) or MSE on a linear output ("mse", the authors' code)."""
    if MODELS[model].task != "reconstruction":
        return _cross_entropy
    if autoencoder_loss not in _RECONSTRUCTION:
        raise ValueError(f"Invalid autoencoder loss {autoencoder_loss!r}; choose one of {sorted(_RECONSTRUCTION)}")
    return _RECONSTRUCTION[autoencoder_loss][0]


def with_l2(loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
            params: list[torch.Tensor], l2: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss_fn`` plus the L2 term ``l2``·Σ‖w‖² over ``params`` (RunConfig.l2; the authors' MLP code added one with
    coefficient 1e-4). Inside the loss, it is part of the gradient, the Hessian and ρ of every optimizer."""
    if not 0.0 <= l2 < float("inf"):
        raise ValueError(f"Invalid l2: {l2}; need 0 <= l2 < inf")

    def penalized(output: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return loss_fn(output, inputs, labels) + l2 * sum(p.pow(2).sum() for p in params)

    return penalized


def reconstruction_image(autoencoder_loss: str = "bce") -> Callable[[torch.Tensor], torch.Tensor]:
    """Map an autoencoder's output to images in [0, 1] (sigmoid for "bce", clamp of the linear output for "mse")."""
    if autoencoder_loss not in _RECONSTRUCTION:
        raise ValueError(f"Invalid autoencoder loss {autoencoder_loss!r}; choose one of {sorted(_RECONSTRUCTION)}")
    return _RECONSTRUCTION[autoencoder_loss][1]


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
