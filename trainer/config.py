"""RunConfig: the single source of truth for one training run's configuration."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainer.registry import MODELS, OPTIMIZERS, default_input_scaling, model_fits_dataset, resolve_hyperparameters

__all__ = ["Budget", "OptimizerConfig", "RunConfig"]

_STRICT = ConfigDict(extra="forbid")


class Budget(BaseModel):
    """When to stop: the first limit reached ends the run. At least one is required."""

    model_config = _STRICT
    epochs: float | None = Field(default=None, gt=0, le=10_000, description="training epochs (fractional allowed)")
    backprops: int | None = Field(default=None, gt=0, description="gradients + Hessian-vector products")
    seconds: float | None = Field(default=None, gt=0, description="optimization wall time in seconds")

    @model_validator(mode="after")
    def _at_least_one(self) -> "Budget":
        if self.epochs is None and self.backprops is None and self.seconds is None:
            raise ValueError("set at least one budget: epochs, backprops or seconds")
        return self


class OptimizerConfig(BaseModel):
    """An optimizer by registry name plus hyperparameter overrides."""

    model_config = _STRICT
    name: str = Field(description="one of sgd, adagrad, rmsprop, adam, tr-uniform, tr-adagrad, tr-rmsprop")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {v!r}; choose one of {sorted(OPTIMIZERS)}")
        return v

    @model_validator(mode="after")
    def _hyper(self) -> "OptimizerConfig":
        resolve_hyperparameters(self.name, self.hyperparameters)
        return self

    @property
    def family(self) -> str:
        return OPTIMIZERS[self.name].family

    def resolved(self) -> dict[str, Any]:
        """All hyperparameters: registry defaults overlaid with the given values."""
        return resolve_hyperparameters(self.name, self.hyperparameters)


class RunConfig(BaseModel):
    """Everything needed to reproduce one run. Unknown fields are refused."""

    model_config = _STRICT
    dataset: str = Field(description="fashion-mnist | mnist | cifar10")
    model: str = Field(description="mlp | resnet18 | autoencoder | conv-autoencoder")
    optimizer: OptimizerConfig
    budget: Budget
    batch_size: int | None = Field(default=None, ge=1, le=65536,
                                   description="minibatch size; default 512 for TR, 128 for first-order")
    eval_every: int = Field(default=50, ge=1, le=1_000_000, description="evaluate every N optimizer steps")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    device: str = Field(default="auto", description='"auto" (cuda if available), "cpu", "cuda" or "cuda:N"')
    train_subset: int | None = Field(default=None, ge=1, description="use only the first N training samples")
    eval_train_size: int = Field(default=2048, ge=1, description="size of the fixed training subset for eval loss")
    test_subset: int | None = Field(default=None, ge=1, description="evaluate on the first N test samples only")
    grad_norm_every: int = Field(default=10, ge=1, le=1_000_000,
                                 description="first-order runs: record grad_norm and step_norm every N steps "
                                             "(null in between; measuring them costs ~15% of a small MLP step); "
                                             "TR runs get them every step for free")
    num_reconstructions: int = Field(default=8, ge=1, le=16, description="autoencoders: test images shown")
    input_scaling: Literal["unit", "standardize"] | None = Field(
        default=None, description='"unit" divides pixels by 255 (the paper\'s choice; un-centred inputs), "standardize" '
                                  'also subtracts the per-channel mean and divides by the std. Default (null): '
                                  '"standardize" for classifiers, "unit" for autoencoders; the stored config always '
                                  'holds the value used')
    autoencoder_loss: Literal["bce", "mse"] = Field(
        default="bce", description='autoencoders: "bce" = pixel-wise binary cross-entropy on a sigmoid output (the '
                                   'paper); "mse" = mean squared error on a linear output layer (the authors\' code)')
    warm_start_epochs: float = Field(
        default=0.0, ge=0.0, le=1000.0,
        description="trust-region runs: epochs of Adagrad (registry defaults, the run's batch size) before the TR "
                    "method starts, as in the authors' autoencoder configs; counted in backprops, epochs and wall "
                    "time like any step. 0 = off")
    data_dir: str | None = Field(default=None, description="where datasets live; default from the environment")
    download: bool = Field(default=True, description="let torchvision download a missing dataset when online")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError(f'device must be "auto", "cpu", "cuda" or "cuda:N", got {v!r}')

    @model_validator(mode="after")
    def _fits(self) -> "RunConfig":
        model_fits_dataset(self.model, self.dataset)
        reconstruction = MODELS[self.model].task == "reconstruction"
        if self.input_scaling is None:
            self.input_scaling = default_input_scaling(self.model)
        if reconstruction and self.input_scaling != "unit":
            raise ValueError(f'Invalid input_scaling {self.input_scaling!r} for the {self.model}: an autoencoder '
                             'reconstructs pixels in [0, 1]; use "unit"')
        if not reconstruction and self.autoencoder_loss != "bce":
            raise ValueError(f"Invalid autoencoder_loss {self.autoencoder_loss!r}: the {self.model} is a classifier "
                             '(cross-entropy); leave autoencoder_loss at "bce"')
        if self.warm_start_epochs > 0 and OPTIMIZERS[self.optimizer.name].family != "second-order":
            raise ValueError(f"Invalid warm_start_epochs {self.warm_start_epochs}: a warm start precedes a "
                             f"trust-region method; {self.optimizer.name} is first-order, set it to 0")
        return self

    def variants(self) -> list[str]:
        """Run-level switches that differ from their defaults, as short label parts (e.g. "inputs=unit")."""
        out = []
        if self.input_scaling != default_input_scaling(self.model):
            out.append(f"inputs={self.input_scaling}")
        if self.autoencoder_loss != "bce":
            out.append(f"loss={self.autoencoder_loss}")
        if self.warm_start_epochs > 0:
            out.append(f"warm={self.warm_start_epochs:g}ep")
        return out

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size or OPTIMIZERS[self.optimizer.name].default_batch_size

    @property
    def is_second_order(self) -> bool:
        return self.optimizer.family == "second-order"

