"""Registries of optimizers, models and datasets: one mapping drives the CLI, API, UI and tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from trainer import hyperparameters as hp

__all__ = [
    "OptimizerInfo",
    "ModelInfo",
    "DatasetInfo",
    "OPTIMIZERS",
    "MODELS",
    "DATASETS",
    "PRESETS",
    "SWEEP_PRESETS",
    "VARIANT_LABELS",
    "VARIANT_COLORS",
    "optimizer_label",
    "optimizer_color",
    "INPUT_SCALINGS",
    "AUTOENCODER_LOSSES",
    "default_input_scaling",
    "resolve_hyperparameters",
    "model_fits_dataset",
    "metadata",
    "is_trust_region",
    "TR_FAMILY",
]

# The family of the trust-region methods (OptimizerInfo.family); everything else is "first-order".
TR_FAMILY = "second-order"


@dataclass(frozen=True)
class OptimizerInfo:
    name: str
    label: str
    family: str  # "first-order" | "second-order"
    # The pydantic model of its hyperparameters (trainer/hyperparameters.py): validates, documents, JSON schema.
    hyperparameters: type[hp.Hyperparameters]
    default_batch_size: int
    description: str
    # build(params, resolved_hyperparameters, buffers) -> torch.optim.Optimizer (torch imported lazily)
    build: Callable[..., Any] = field(compare=False, repr=False, default=None)  # type: ignore[assignment]
    norm: str | None = None  # TR only: "uniform" | "adagrad" | "rmsprop"
    # Chart colour, the same in the dashboard (via /api/meta) and the reproduction's plots. First-order methods
    # and their TR counterparts share a hue family (SGD/TR uniform: grey/blue, Adagrad: orange/red,
    # RMSprop: teal/green); Adam is purple.
    color: str = "#8c564b"

    @property
    def is_trust_region(self) -> bool:
        return self.family == TR_FAMILY

    @property
    def hyperparameter_names(self) -> list[str]:
        return list(self.hyperparameters.model_fields)

    def defaults(self) -> dict[str, Any]:
        """Every hyperparameter's default."""
        return self.hyperparameters().model_dump()

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with the validated ``given`` values (``ValueError`` naming the field and the fix)."""
        return hp.resolve(self.name, self.hyperparameters, given)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "family": self.family,
            "color": self.color,
            "default_batch_size": self.default_batch_size,
            "description": self.description,
            "hyperparameters": hp.spec_list(self.hyperparameters),
        }


def _torch_optimizer(cls_name: str, adapt: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                     ) -> Callable[..., Any]:
    """Builder of ``torch.optim.<cls_name>`` whose keyword arguments are the resolved hyperparameters
    (``adapt`` maps them when torch spells them differently)."""

    def build(params: Any, h: dict[str, Any], buffers: Any = ()) -> Any:
        import torch

        return getattr(torch.optim, cls_name)(params, **(adapt(h) if adapt else h))

    return build


def _adam_kwargs(h: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in h.items() if k not in ("beta1", "beta2")}
    out["betas"] = (h["beta1"], h["beta2"])
    return out


def _trust_region(norm: str) -> Callable[..., Any]:
    """Builder of ``trainer.optim.trust_region.TrustRegion`` with the norm matrix ``norm``."""

    def build(params: Any, h: dict[str, Any], buffers: Any = ()) -> Any:
        from trainer.optim.trust_region import TrustRegion

        return TrustRegion(params, norm=norm, buffers=buffers, **h)

    return build


_FIRST_ORDER_BATCH = 128
_TR_BATCH = 512

OPTIMIZERS: dict[str, OptimizerInfo] = {
    o.name: o
    for o in (
        OptimizerInfo("sgd", "SGD", "first-order", hp.SGDHyperparameters, _FIRST_ORDER_BATCH, "torch.optim.SGD",
                      build=_torch_optimizer("SGD"), color="#7f7f7f"),
        OptimizerInfo("adagrad", "Adagrad", "first-order", hp.AdagradHyperparameters, _FIRST_ORDER_BATCH,
                      "torch.optim.Adagrad", build=_torch_optimizer("Adagrad"), color="#ff7f0e"),
        OptimizerInfo("rmsprop", "RMSprop", "first-order", hp.RMSpropHyperparameters, _FIRST_ORDER_BATCH,
                      "torch.optim.RMSprop", build=_torch_optimizer("RMSprop"), color="#17becf"),
        OptimizerInfo("adam", "Adam", "first-order", hp.AdamHyperparameters, _FIRST_ORDER_BATCH, "torch.optim.Adam",
                      build=_torch_optimizer("Adam", _adam_kwargs), color="#9467bd"),
        OptimizerInfo("tr-uniform", "TR uniform", TR_FAMILY, hp.TR_HYPERPARAMETERS["uniform"],
                      _TR_BATCH, "Trust region with a spherical constraint (M = I)",
                      build=_trust_region("uniform"), norm="uniform", color="#1f77b4"),
        OptimizerInfo("tr-adagrad", "TR Adagrad", TR_FAMILY, hp.TR_HYPERPARAMETERS["adagrad"],
                      _TR_BATCH, "Trust region with the Adagrad ellipsoid M = sqrt(ε + Σg²)",
                      build=_trust_region("adagrad"), norm="adagrad", color="#d62728"),
        OptimizerInfo("tr-rmsprop", "TR RMSprop", TR_FAMILY, hp.TR_HYPERPARAMETERS["rmsprop"],
                      _TR_BATCH, "Trust region with the RMSprop ellipsoid M = sqrt(βv + (1-β)g²) + ε",
                      build=_trust_region("rmsprop"), norm="rmsprop", color="#2ca02c"),
    )
}


def is_trust_region(optimizer: str) -> bool:
    """Whether the registered optimizer ``optimizer`` is a trust-region (second-order) method."""
    info = OPTIMIZERS.get(optimizer)
    if info is None:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    return info.is_trust_region


def resolve_hyperparameters(optimizer: str, given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with validated ``given`` values, through the optimizer's pydantic model.

    Raises:
        ValueError: unknown optimizer, unknown hyperparameter or a value out of range; the message
            names the field and the allowed values.
    """
    info = OPTIMIZERS.get(optimizer)
    if info is None:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    return info.resolve(given)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    label: str
    datasets: tuple[str, ...]
    task: str  # "classification" | "reconstruction"
    description: str
    # build(dataset: DatasetInfo) -> torch.nn.Module (torch imported lazily)
    build: Callable[..., Any] = field(compare=False, repr=False, default=None)  # type: ignore[assignment]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "datasets": list(self.datasets), "task": self.task,
                "description": self.description}


def _flat(d: "DatasetInfo") -> int:
    c, h, w = d.shape
    return c * h * w


def _build_mlp(d: "DatasetInfo") -> Any:
    from trainer.models import MLP

    hidden = (128,) if d.shape[0] == 1 else (128, 128)
    return MLP((_flat(d), *hidden, d.num_classes))


def _build_mlp_narrow(d: "DatasetInfo") -> Any:
    from trainer.models import MLP, NARROW_HIDDEN

    return MLP((_flat(d), NARROW_HIDDEN, d.num_classes))


def _build_resnet18(d: "DatasetInfo") -> Any:
    from trainer.models import resnet18

    return resnet18(d.shape[0], d.num_classes)


def _build_autoencoder(d: "DatasetInfo") -> Any:
    from trainer.models import Autoencoder

    return Autoencoder((_flat(d), 1000, 500, 250, 30))


def _build_conv_autoencoder(d: "DatasetInfo") -> Any:
    from trainer.models import ConvAutoencoder

    return ConvAutoencoder()


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("mlp", "MLP (tanh)", ("fashion-mnist", "mnist", "cifar10"), "classification",
                  "784-128-10 on (Fashion-)MNIST, 3072-128-128-10 on CIFAR-10; tanh, cross-entropy", _build_mlp),
        ModelInfo("mlp-narrow", "Narrow MLP (tanh)", ("fashion-mnist", "mnist"), "classification",
                  "784-4-10, tanh, cross-entropy (3,190 parameters): small enough for the dense Hessian analysis",
                  _build_mlp_narrow),
        ModelInfo("resnet18", "ResNet18", ("fashion-mnist", "mnist", "cifar10"), "classification",
                  "torchvision ResNet18; first convolution adapted to 1-channel input", _build_resnet18),
        ModelInfo("autoencoder", "Autoencoder", ("fashion-mnist", "mnist"), "reconstruction",
                  "784-1000-500-250-30, mirrored decoder, sigmoid except the code layer, pixel-wise BCE", _build_autoencoder),
        ModelInfo("conv-autoencoder", "Conv autoencoder", ("cifar10",), "reconstruction",
                  "3-layer convolutional encoder/decoder for 32x32 RGB images, pixel-wise BCE", _build_conv_autoencoder),
    )
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    label: str
    shape: tuple[int, int, int]
    num_classes: int
    train_size: int
    test_size: int
    description: str
    how_to_get: str
    # Where its files are: sub-folders of the data directory (ours first, then torchvision's layout), then
    # places outside it where distributions install datasets.
    local_dirs: tuple[str, ...] = ()
    system_locations: tuple[str, ...] = ()
    file_format: str = "idx"  # "idx" (gzipped or raw idx files) | "cifar-pickle" (python batches)
    torchvision_class: str = ""  # torchvision.datasets.<class> that downloads it
    # (mean, std) per channel, for input_scaling "standardize"
    normalization: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0,), (1.0,))


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("fashion-mnist", "Fashion-MNIST", (1, 28, 28), 10, 60000, 10000, "Zalando article images",
                    "on Debian/Ubuntu run `apt-get install dataset-fashion-mnist`, or go online once so "
                    "torchvision can download it into the data directory",
                    local_dirs=("fashion-mnist", "FashionMNIST/raw"),
                    system_locations=("/usr/share/datasets/fashion-mnist",),
                    torchvision_class="FashionMNIST", normalization=((0.2860,), (0.3530,))),
        DatasetInfo("mnist", "MNIST", (1, 28, 28), 10, 60000, 10000, "handwritten digits",
                    "go online once so torchvision can download it into the data directory, or copy the four "
                    "idx files into <data_dir>/MNIST/raw/",
                    local_dirs=("mnist", "MNIST/raw"), system_locations=("/usr/share/datasets/mnist",),
                    torchvision_class="MNIST", normalization=((0.1307,), (0.3081,))),
        DatasetInfo("cifar10", "CIFAR-10", (3, 32, 32), 10, 50000, 10000, "32x32 colour images in 10 classes",
                    "go online once so torchvision can download it into the data directory, or extract "
                    "cifar-10-python.tar.gz into <data_dir>/",
                    local_dirs=("cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
                    system_locations=("/usr/share/datasets/cifar10", "/usr/share/datasets/cifar-10"),
                    file_format="cifar-pickle", torchvision_class="CIFAR10",
                    normalization=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))),
    )
}


def model_fits_dataset(model: str, dataset: str) -> None:
    """Raise ``ValueError`` naming the allowed pairs when ``model`` cannot train on ``dataset``."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    if dataset not in MODELS[model].datasets:
        raise ValueError(f"model {model!r} does not fit dataset {dataset!r}; it trains on {list(MODELS[model].datasets)}")


# How pixel values reach the model (applied after decoding to float in [0, 1]); RunConfig.input_scaling.
INPUT_SCALINGS: dict[str, str] = {
    "unit": "divide by 255: pixels in [0, 1], un-centred (the paper's and the authors' choice)",
    "standardize": "divide by 255, then subtract the per-channel mean and divide by the per-channel std",
}
# Reconstruction losses of the autoencoders; RunConfig.autoencoder_loss.
AUTOENCODER_LOSSES: dict[str, str] = {
    "bce": "pixel-wise binary cross-entropy on a sigmoid output (the paper's text)",
    "mse": "mean squared error on a linear output layer (what the authors' code did)",
}


def default_input_scaling(model: str) -> str:
    """``standardize`` for classifiers (trustlab's historical default), ``unit`` for autoencoders (targets in [0, 1])."""
    return "unit" if MODELS[model].task == "reconstruction" else "standardize"


# The paper's experiments. Each preset is a comparison: shared settings plus one entry per optimizer.
_FIRST_ORDER_GRID = {"sgd": 0.1, "adagrad": 0.01, "rmsprop": 0.001, "adam": 0.001}
AE_TR = {"eta1": 1e-5, "eta2": 0.9, "gamma2": 1.25, "radius": 1e-3}

PRESETS: dict[str, dict[str, Any]] = {
    "paper-fmnist-mlp": {
        "label": "Fashion-MNIST MLP (paper Fig. 2 / 9)",
        "dataset": "fashion-mnist", "model": "mlp", "budget": {"epochs": 10}, "input_scaling": "unit",
        "optimizers": [{"name": n, "hyperparameters": {}} for n in ("tr-uniform", "tr-adagrad", "tr-rmsprop")]
        + [{"name": n, "hyperparameters": {"lr": lr}} for n, lr in _FIRST_ORDER_GRID.items()],
        "batch_sizes": {"first-order": 32, "second-order": 512},
        "notes": "Table 1 defaults for TR; first-order batch 32 as in the paper, step sizes from a grid search; "
                 "raw pixels divided by 255 as in the paper.",
    },
    "paper-fmnist-autoencoder": {
        "label": "Fashion-MNIST autoencoder (paper Fig. 3 / 12)",
        "dataset": "fashion-mnist", "model": "autoencoder", "budget": {"epochs": 10}, "input_scaling": "unit",
        "optimizers": [{"name": n, "hyperparameters": dict(AE_TR)}
                       for n in ("tr-uniform", "tr-adagrad", "tr-rmsprop")]
        + [{"name": n, "hyperparameters": {"lr": lr}} for n, lr in
           {"sgd": 0.1, "adagrad": 0.01, "rmsprop": 0.001}.items()],
        "batch_sizes": {"first-order": 32, "second-order": 512},
        "notes": "Autoencoder TR settings: η₁ = 1e-5, η₂ = 0.9, γ₂ = 1.25, Δ₀ = 1e-3.",
    },
    "paper-cifar10-resnet18": {
        "label": "CIFAR-10 ResNet18 (paper Fig. 9)",
        "dataset": "cifar10", "model": "resnet18", "budget": {"epochs": 5}, "input_scaling": "unit",
        "optimizers": [{"name": n, "hyperparameters": {}} for n in ("tr-uniform", "tr-adagrad", "tr-rmsprop")]
        + [{"name": n, "hyperparameters": {"lr": lr}} for n, lr in _FIRST_ORDER_GRID.items()],
        "batch_sizes": {"first-order": 32, "second-order": 128},
        "notes": "TR batch 128 for ResNet18 (memory), as in the paper.",
    },
}


# Settings of an optimizer that make it a baseline of its own, labelled as such in runs, sweeps and results:
# (optimizer, hyperparameter) → label used when that hyperparameter is set to a non-zero value.
VARIANT_LABELS: dict[tuple[str, str], str] = {("sgd", "momentum"): "SGD+momentum"}
# ... and their chart colours (a variant without one is drawn in its optimizer's colour).
VARIANT_COLORS: dict[tuple[str, str], str] = {("sgd", "momentum"): "#8c564b"}


def optimizer_label(name: str, hyperparameters: dict[str, Any] | None = None) -> str:
    """The optimizer's label, or its variant's ("SGD+momentum" for sgd with momentum > 0)."""
    for (opt, param), label in VARIANT_LABELS.items():
        if opt == name and (hyperparameters or {}).get(param):
            return label
    return OPTIMIZERS[name].label


def optimizer_color(name: str, hyperparameters: dict[str, Any] | None = None) -> str:
    """The optimizer's chart colour, or its variant's (SGD+momentum's for sgd with momentum > 0)."""
    for (opt, param), color in VARIANT_COLORS.items():
        if opt == name and (hyperparameters or {}).get(param):
            return color
    return OPTIMIZERS[name].color


_HALF_DECADES = {"low": 1e-4, "high": 1.0, "per_decade": 2}


def _sweep_entry(name: str, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """A sweep preset's optimizer: step size over half decades 1e-4..1, its label (the variant's, if any)."""
    return {"name": name, "label": optimizer_label(name, fixed), "hyperparameters": dict(fixed or {}),
            "space": {"lr": dict(_HALF_DECADES)}}


# Equal tuning effort (issue 19): the TR methods get a grid of the same size as a baseline's 9 step sizes: 3 initial
# radii (Δ₀: its Table-1 default × 0.1, × 1, × 10; Δ is in M-units, so the RMSprop norm has its own scale) × 3
# acceptance thresholds η₁ (a decade either side of Table 1's 0.01). The paper states no grid for either; these
# centre on its Table 1 values.
TR_ETA1_GRID = [0.001, 0.01, 0.1]
TR_RADIUS_FACTORS = [0.1, 1.0, 10.0]


def _tr_sweep_entry(name: str) -> dict[str, Any]:
    """A sweep preset's TR method: Δ₀ × η₁ on 3 × 3 points around its registry (Table 1) defaults."""
    radius = OPTIMIZERS[name].defaults()["radius"]
    return {"name": name, "label": OPTIMIZERS[name].label, "hyperparameters": {},
            "space": {"radius": {"values": [float(f"{radius * f:.3g}") for f in TR_RADIUS_FACTORS]},
                      "eta1": {"values": list(TR_ETA1_GRID)}}}


# Step-size sweeps (POST /api/sweeps): each entry an optimizer, fixed hyperparameters and a search space.
SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "paper-fmnist-mlp-grid": {
        "label": "Fashion-MNIST MLP: equal tuning (first-order lr half decades 1e-4..1; TR Δ₀ × η₁ 3 × 3)",
        "dataset": "fashion-mnist", "model": "mlp", "budget": {"epochs": 10}, "seeds": [0],
        "batch_sizes": {"first-order": 32, "second-order": 512},
        "criterion": {"kind": "final_train_loss", "k": 3},
        "optimizers": [_sweep_entry("sgd"), _sweep_entry("sgd", {"momentum": 0.9}), _sweep_entry("adagrad"),
                       _sweep_entry("rmsprop"), _sweep_entry("adam")]
        + [_tr_sweep_entry(n) for n in ("tr-uniform", "tr-adagrad", "tr-rmsprop")],
        "promote_with": [],
        "notes": "Equal tuning effort: 9 configurations per method. First-order: step size on half decades "
                 "1e-4..1 (trustlab's grid; the paper says its step sizes come from a grid search but states no "
                 "grid). TR: initial radius Δ₀ at 0.1×, 1× and 10× its Table-1 value × η₁ in {0.001, 0.01, 0.1} "
                 "(trustlab's grid, centred on Table 1). SGD+momentum (0.9) is the baseline practitioners tune "
                 "first. Promote every winner, TR methods included.",
    },
}


def metadata(dataset_available: dict[str, bool] | None = None) -> dict[str, Any]:
    """Everything a client needs to build a launch form."""
    avail = dataset_available or {}
    return {
        "optimizers": [o.as_dict() for o in OPTIMIZERS.values()],
        "models": [m.as_dict() for m in MODELS.values()],
        "datasets": [
            {"name": d.name, "label": d.label, "shape": list(d.shape), "num_classes": d.num_classes,
             "train_size": d.train_size, "test_size": d.test_size, "description": d.description,
             "how_to_get": d.how_to_get, "available": avail.get(d.name)}
            for d in DATASETS.values()
        ],
        "presets": [{"name": k, **v} for k, v in PRESETS.items()],
        "sweep_presets": [{"name": k, **v} for k, v in SWEEP_PRESETS.items()],
        "input_scalings": [{"name": k, "description": v} for k, v in INPUT_SCALINGS.items()],
        "autoencoder_losses": [{"name": k, "description": v} for k, v in AUTOENCODER_LOSSES.items()],
    }

