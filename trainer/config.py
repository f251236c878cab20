"""RunConfig: the single source of truth for one training run's configuration."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainer.registry import OPTIMIZERS, model_fits_dataset, resolve_hyperparameters

__all__ = ["Budget", "EvalEvery", "OptimizerConfig", "RunConfig", "DEFAULT_EVALUATIONS"]

# evaluations per run when eval_every is not given (spread evenly over the budget)
DEFAULT_EVALUATIONS = 50

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


class EvalEvery(BaseModel):
    """Evaluation cadence along one cost axis: exactly one of steps, backprops or epochs.

    Backprops or epochs give every run of a comparison the same evaluation points whatever its batch size
    or optimizer family; steps (a plain integer ``eval_every`` means steps) do not.
    """

    model_config = _STRICT
    steps: int | None = Field(default=None, ge=1, le=1_000_000, description="every N optimizer steps")
    backprops: int | None = Field(default=None, ge=1, le=10**12, description="every N backprops")
    epochs: float | None = Field(default=None, gt=0, le=10_000, description="every N (fractional) epochs")

    @model_validator(mode="after")
    def _exactly_one(self) -> "EvalEvery":
        given = [k for k in ("steps", "backprops", "epochs") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"Invalid eval_every: give exactly one of steps, backprops or epochs, got {given or 'none'}")
        return self

    def axis(self) -> tuple[str, float]:
        """(counter, interval): counter is "step", "backprops" or "epoch" (the record's field names)."""
        if self.steps is not None:
            return "step", float(self.steps)
        if self.backprops is not None:
            return "backprops", float(self.backprops)
        return "epoch", float(self.epochs)


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
    eval_every: int | EvalEvery | None = Field(
        default=None, union_mode="left_to_right",
        description="evaluation cadence: an integer N (every N optimizer steps), or one of "
                    '{"steps": N}, {"backprops": N}, {"epochs": x}; default: about 50 evaluations spread '
                    "over the budget's epochs or backprops (every 50 steps for a budget in seconds only)")
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
    data_dir: str | None = Field(default=None, description="where datasets live; default from the environment")
    download: bool = Field(default=True, description="let torchvision download a missing dataset when online")

    @field_validator("eval_every")
    @classmethod
    def _eval_every(cls, v: int | EvalEvery | None) -> int | EvalEvery | None:
        if isinstance(v, int) and not 1 <= v <= 1_000_000:
            raise ValueError(f"Invalid eval_every: {v}; give 1 to 1000000 steps, or {{\"epochs\": x}} / "
                             "{\"backprops\": N}")
        return v

    def eval_schedule(self) -> tuple[str, float]:
        """(counter, interval) of the evaluation cadence, with the default resolved from the budget."""
        v = self.eval_every
        if isinstance(v, EvalEvery):
            return v.axis()
        if isinstance(v, int):
            return "step", float(v)
        if self.budget.epochs is not None:
            return "epoch", self.budget.epochs / DEFAULT_EVALUATIONS
        if self.budget.backprops is not None:
            return "backprops", max(1.0, float(self.budget.backprops // DEFAULT_EVALUATIONS))
        return "step", float(DEFAULT_EVALUATIONS)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError(f'device must be "auto", "cpu", "cuda" or "cuda:N", got {v!r}')

    @model_validator(mode="after")
    def _fits(self) -> "RunConfig":
        model_fits_dataset(self.model, self.dataset)
        return self

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size or OPTIMIZERS[self.optimizer.name].default_batch_size

    @property
    def is_second_order(self) -> bool:
        return self.optimizer.family == "second-order"

