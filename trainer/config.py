"""RunConfig: the single source of truth for one training run's configuration."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainer.registry import (DATASETS, MODELS, OPTIMIZERS, default_input_scaling, model_fits_dataset,
                              resolve_hyperparameters)

# evaluations per run when eval_every is not given (spread evenly over the budget)
DEFAULT_EVALUATIONS = 50

# Registry names as Literals: the OpenAPI schema enumerates them (the registry stays the one definition).
_OPTIMIZER_NAMES = tuple(OPTIMIZERS)
_MODEL_NAMES = tuple(MODELS)
_DATASET_NAMES = tuple(DATASETS)

__all__ = ["names_fit", "Budget", "EvalEvery", "OptimizerConfig", "RunConfig", "DEFAULT_EVALUATIONS", "Guards",
           "Convergence",
           "LEGACY_FIELDS", "from_stored", "MAX_BACKPROPS", "MAX_SECONDS", "MAX_SAMPLES", "STRICT_INPUT"]

# Every model a client's JSON reaches (here and the API's request models): unknown fields refused; NaN and
# ±Infinity refused (every number must be finite); types strict: no boolean for a number or a number for a
# boolean, no string for either (an integer is still a valid float, since JSON does not tell 1 from 1.0).
STRICT_INPUT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
_STRICT = STRICT_INPUT

MAX_BACKPROPS = 10**12
MAX_SECONDS = 30 * 24 * 3600.0  # 30 days
MAX_SAMPLES = 10_000_000  # larger than any registered dataset; the dataset's own size is checked too

# Fields older versions accepted from clients; stored configs may still hold them. Data locations are server
# configuration (TRUSTLAB_DATA_DIR / the CLI's --data-dir and --no-download), never part of a run.
LEGACY_FIELDS = ("data_dir", "download")


def names_fit(data: Any) -> Any:
    """A "before" check for request bodies: unknown model/dataset names get the registry's message (which lists the
    choices), ahead of pydantic's enum error; returns ``data`` unchanged."""
    if isinstance(data, dict) and isinstance(data.get("model"), str) and isinstance(data.get("dataset"), str):
        model_fits_dataset(data["model"], data["dataset"])
    return data


class Budget(BaseModel):
    """When to stop: the first limit reached ends the run. At least one is required."""

    model_config = _STRICT
    epochs: float | None = Field(default=None, gt=0, le=10_000, description="training epochs (fractional allowed)")
    backprops: int | None = Field(default=None, gt=0, le=MAX_BACKPROPS,
                                  description="gradients + Hessian-vector products")
    seconds: float | None = Field(default=None, gt=0, le=MAX_SECONDS, description="optimization wall time in seconds")

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
        return "epoch", float(self.epochs)  # type: ignore[arg-type]  # the validator keeps exactly one budget set


class OptimizerConfig(BaseModel):
    """An optimizer by registry name plus hyperparameter overrides."""

    model_config = _STRICT
    name: Literal[_OPTIMIZER_NAMES] = Field(  # type: ignore[valid-type]
        description="one of sgd, adagrad, rmsprop, adam, tr-uniform, tr-adagrad, tr-rmsprop")
    hyperparameters: dict[Annotated[str, Field(max_length=64)], Any] = Field(default_factory=dict, max_length=64)

    @field_validator("name", mode="before")
    @classmethod
    def _known(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in OPTIMIZERS:
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


class Guards(BaseModel):
    """Stop runs that obviously failed (trainer/guards.py). On by default with generous thresholds. A TR guard that
    trips while the loss sits at its floor ends the run completed (reason converged), not failed."""

    model_config = _STRICT
    enabled: bool = Field(default=True, description="check the guards below at every step")
    loss_factor: float = Field(default=100.0, gt=1, le=1e12,
                               description="diverged when the minibatch loss exceeds this multiple of the first "
                                           "step's loss (a non-finite loss always ends the run as diverged)")
    radius_floor: float = Field(default=1e-12, ge=0, le=1,
                                description="TR: stop when the trust radius stays below this ...")
    radius_patience: int = Field(default=50, ge=1, le=1_000_000, description="... for this many consecutive steps")
    cg_cap_patience: int = Field(default=500, ge=1, le=1_000_000,
                                 description="TR: stop when every subproblem solve hits the iteration cap for this "
                                             "many consecutive steps")


class Convergence(BaseModel):
    """End a run that has converged: ``completed`` with the reason, never ``failed`` (trainer/guards.py; DESIGN.md
    "Converged is not failed"). On by default; each floor is checked on the minibatch values every step records (a
    first-order run's gradient norm every ``grad_norm_every`` steps), and must hold ``patience`` times in a row."""

    model_config = _STRICT
    enabled: bool = Field(default=True, description="stop a run that has converged (status completed)")
    loss_floor: float | None = Field(
        default=1e-8, ge=0, le=1e6,
        description="converged when the minibatch loss is <= this (every built-in loss is >= 0; a cross-entropy at "
                    "1e-8 has memorised its batch); null = off")
    grad_norm_ratio: float | None = Field(
        default=1e-7, gt=0, le=1,
        description="converged when the minibatch gradient norm is <= this x the first step's gradient norm "
                    "(a relative test, independent of the loss's scale); null = off")
    patience: int = Field(default=3, ge=1, le=1_000_000,
                          description="... for this many consecutive checks")


class RunConfig(BaseModel):
    """Everything needed to reproduce one run. Unknown fields are refused."""

    model_config = _STRICT
    dataset: Literal[_DATASET_NAMES] = Field(description="fashion-mnist | mnist | cifar10")  # type: ignore[valid-type]
    model: Literal[_MODEL_NAMES] = Field(  # type: ignore[valid-type]
        description="mlp | resnet18 | autoencoder | conv-autoencoder")
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
    device: str = Field(default="auto", max_length=16,
                        description='"auto" (cuda if available), "cpu", "cuda" or "cuda:N"')
    train_subset: int | None = Field(default=None, ge=1, le=MAX_SAMPLES,
                                     description="use only the first N training samples (at most the dataset's size)")
    eval_train_size: int = Field(default=2048, ge=1, le=MAX_SAMPLES,
                                 description="size of the fixed training subset for eval loss")
    test_subset: int | None = Field(default=None, ge=1, le=MAX_SAMPLES,
                                    description="evaluate on the first N test samples only (at most the test set's size)")
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
    guards: Guards = Field(default_factory=Guards, description="stop runs that obviously failed")
    converged: Convergence = Field(default_factory=Convergence,
                                   description="stop runs that converged (status completed, with the reason)")
    l2: float = Field(default=0.0, ge=0.0, le=1.0,
                      description="L2 term added to the training loss: loss + l2·Σw² over all parameters (the "
                                  "authors' MLP code used 1e-4; the paper states none). 0 = off; it counts in the "
                                  "recorded train loss, gradients and Hessian")

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

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        return names_fit(data)

    @model_validator(mode="after")
    def _fits(self) -> "RunConfig":
        model_fits_dataset(self.model, self.dataset)
        info = DATASETS[self.dataset]
        if self.train_subset is not None and self.train_subset > info.train_size:
            raise ValueError(f"train_subset {self.train_subset} exceeds the {info.train_size} training samples of "
                             f"{self.dataset}; use at most {info.train_size} (or leave it out for all)")
        if self.test_subset is not None and self.test_subset > info.test_size:
            raise ValueError(f"test_subset {self.test_subset} exceeds the {info.test_size} test samples of "
                             f"{self.dataset}; use at most {info.test_size} (or leave it out for all)")
        if self.eval_train_size > info.train_size:
            raise ValueError(f"eval_train_size {self.eval_train_size} exceeds the {info.train_size} training "
                             f"samples of {self.dataset}; use at most {info.train_size}")
        reconstruction = MODELS[self.model].task == "reconstruction"
        if self.input_scaling is None:
            self.input_scaling = default_input_scaling(self.model)  # type: ignore[assignment]  # one of INPUT_SCALINGS
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
        if self.l2 > 0:
            out.append(f"l2={self.l2:g}")
        return out

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size or OPTIMIZERS[self.optimizer.name].default_batch_size

    @property
    def is_second_order(self) -> bool:
        return self.optimizer.family == "second-order"



def from_stored(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from a stored JSON config; fields of older versions (``LEGACY_FIELDS``) are dropped, never used."""
    return RunConfig.model_validate({k: v for k, v in data.items() if k not in LEGACY_FIELDS})
