"""Sweep requests (issue 9): search spaces, grid generation, the winner criterion and the promote request."""
from __future__ import annotations

import itertools
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

from backend.domain import run_label
from backend.schemas import BatchSize, ComparisonOptimizer, Seed
from trainer.config import STRICT_INPUT, Budget, EvalEvery, RunConfig
from trainer.errors import error_summary
from trainer.registry import OPTIMIZERS, model_fits_dataset

__all__ = ["MAX_RUNS_PER_SWEEP", "MAX_POINTS_PER_PARAM", "log_grid", "SearchSpace", "Criterion", "SweepOptimizer",
           "SweepCreate", "PromoteRequest", "DEFAULT_LR_SPACE", "edge_flags"]

MAX_RUNS_PER_SWEEP = 500
MAX_POINTS_PER_PARAM = 50
_STRICT = STRICT_INPUT
# RunConfig fields a sweep sets itself (or that are server configuration): never through run_settings
_OWNED_FIELDS = {"dataset", "model", "optimizer", "budget", "seed", "batch_size", "eval_every", "train_subset",
                 "test_subset", "eval_train_size", "num_reconstructions", "device", "data_dir", "download"}
DEFAULT_LR_SPACE = {"low": 1e-4, "high": 1.0, "per_decade": 2}  # half decades: 1e-4, 3e-4, 1e-3, ..., 1

Scalar = float | int | str | bool


def _nice(v: float, per_decade: int) -> float:
    """Round a grid value to 1 significant digit (≤ 4 points per decade: 3.16e-4 → 3e-4) or 2 (finer grids)."""
    return float(f"{v:.{1 if per_decade <= 4 else 2}g}")


def log_grid(low: float, high: float, per_decade: int) -> list[float]:
    """Log-spaced values from ``low`` to ``high`` (both included when on the grid), ``per_decade`` per decade,
    rounded to readable values: ``log_grid(1e-4, 1, 2)`` = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1]."""
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"Invalid log range: need 0 < low <= high, both finite, got low={low}, high={high}")
    if not 1 <= per_decade <= 20:
        raise ValueError(f"Invalid per_decade {per_decade}: use 1..20")
    # log10(high) - log10(low), not log10(high / low): the quotient overflows for a subnormal low (5e-324)
    n = int(math.floor((math.log10(high) - math.log10(low)) * per_decade + 1e-9)) + 1
    if n > MAX_POINTS_PER_PARAM:
        raise ValueError(f"Invalid log range: {n} points; at most {MAX_POINTS_PER_PARAM} per hyperparameter "
                         "(narrow the range or use fewer points per decade)")
    values = [_nice(low * 10 ** (i / per_decade), per_decade) for i in range(n)]
    return list(dict.fromkeys(values))


class SearchSpace(BaseModel):
    """An explicit list of ``values``, or a log range ``low``..``high`` with ``per_decade`` points per decade."""

    model_config = _STRICT
    values: list[Scalar] | None = Field(default=None, max_length=MAX_POINTS_PER_PARAM)
    low: float | None = Field(default=None, gt=0, le=1e8)
    high: float | None = Field(default=None, gt=0, le=1e8)
    per_decade: int = Field(default=2, ge=1, le=20)

    @model_validator(mode="after")
    def _one_form(self) -> "SearchSpace":
        if self.values is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either values or low/high, not both")
            if not self.values:
                raise ValueError("empty grid: give at least one value")
            for v in self.values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"grid values must be finite, got {v}")
        elif self.low is None or self.high is None:
            raise ValueError("empty grid: give values, or both low and high of a log range")
        else:
            log_grid(self.low, self.high, self.per_decade)
        return self

    def grid(self) -> list[Scalar]:
        if self.values is not None:
            return list(dict.fromkeys(self.values))
        return log_grid(self.low, self.high, self.per_decade)  # type: ignore[arg-type]


class Criterion(BaseModel):
    """How the winner of each optimizer is chosen: lowest smoothed final train loss (mean of the last ``k``
    evaluations, default), highest final test accuracy, or fewest backprops to train loss ≤ ``target``."""

    model_config = _STRICT
    kind: Literal["final_train_loss", "final_test_accuracy", "backprops_to_target"] = "final_train_loss"
    k: int = Field(default=3, ge=1, le=100)
    target: float | None = Field(default=None, gt=0, le=1e6, allow_inf_nan=False)

    @model_validator(mode="after")
    def _target(self) -> "Criterion":
        if self.kind == "backprops_to_target" and self.target is None:
            raise ValueError("criterion backprops_to_target needs a target train loss, e.g. \"target\": 0.3")
        return self

    @property
    def lower_is_better(self) -> bool:
        return self.kind != "final_test_accuracy"

    @property
    def label(self) -> str:
        return {"final_train_loss": f"smoothed final train loss (last {self.k} evals)",
                "final_test_accuracy": "final test accuracy",
                "backprops_to_target": f"backprops to train loss ≤ {self.target:g}" if self.target else ""}[self.kind]


class SweepOptimizer(BaseModel):
    """One optimizer of a sweep: fixed hyperparameters and a search space (default: lr over half decades 1e-4..1)."""

    model_config = _STRICT
    name: str
    hyperparameters: dict[str, Scalar] = Field(default_factory=dict, max_length=30)
    space: dict[str, SearchSpace] = Field(default_factory=dict, max_length=5)
    batch_size: BatchSize | None = None

    @model_validator(mode="after")
    def _valid(self) -> "SweepOptimizer":
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; choose one of {sorted(OPTIMIZERS)}")
        info = OPTIMIZERS[self.name]
        if not self.space:
            if "lr" not in info.hyperparameter_names:
                raise ValueError(f"space: {self.name} has no step size; give a search space over one of "
                                 f"{info.hyperparameter_names} (e.g. radius)")
            self.space = {"lr": SearchSpace(**DEFAULT_LR_SPACE)}
        for key in self.space:
            if key not in info.hyperparameter_names:
                raise ValueError(f"space: unknown hyperparameter {key!r} for {self.name}; allowed: "
                                 f"{info.hyperparameter_names}")
        size = math.prod(len(s.grid()) for s in self.space.values())
        if size > MAX_RUNS_PER_SWEEP:  # before enumerating: a 5-parameter space could hold 50^5 points
            raise ValueError(f"space: {size} grid points for {self.name}; a sweep runs at most {MAX_RUNS_PER_SWEEP}")
        for point in self.points():
            info.resolve({**self.hyperparameters, **point})  # names, types and ranges: the optimizer's model
        return self

    def points(self) -> list[dict[str, Scalar]]:
        """The Cartesian product of the search space, in order."""
        keys = list(self.space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.space[k].grid() for k in keys))]


class SweepCreate(BaseModel):
    """A sweep: every grid point of every optimizer trained with every tuning seed, as ordinary runs."""

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=200)
    dataset: str
    model: str
    budget: Budget
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, max_length=10,
                              description="tuning seeds (promote uses fresh ones)")
    optimizers: list[SweepOptimizer] = Field(min_length=1, max_length=20)
    criterion: Criterion = Field(default_factory=Criterion)
    batch_sizes: dict[Literal["first-order", "second-order"], BatchSize] | None = None
    eval_every: Annotated[int, Field(ge=1, le=1_000_000)] | EvalEvery | None = Field(
        default=None, union_mode="left_to_right",
        description='as a run\'s: N optimizer steps, or {"backprops": N} / {"epochs": x} (the same evaluation points '
                    "for every run whatever its cost per step: cost-to-target at one resolution)")
    train_subset: int | None = Field(default=None, ge=1, le=10_000_000)
    test_subset: int | None = Field(default=None, ge=1, le=10_000_000)
    eval_train_size: int | None = Field(default=None, ge=1, le=10_000_000)
    num_reconstructions: int | None = Field(default=None, ge=1, le=16)
    device: str | None = Field(default=None, max_length=16)
    run_settings: dict[str, Scalar] = Field(
        default_factory=dict, max_length=20,
        description="any other RunConfig field every run (and the promoted comparison) shares, e.g. "
                    '{"input_scaling": "unit"}; validated by RunConfig')

    @field_validator("run_settings")
    @classmethod
    def _not_owned(cls, v: dict[str, Scalar]) -> dict[str, Scalar]:
        owned = sorted(set(v) & _OWNED_FIELDS)
        if owned:
            raise ValueError(f"run_settings may not set {owned}: the sweep sets them (use its own fields)")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v

    @field_validator("optimizers")
    @classmethod
    def _size(cls, v: list[SweepOptimizer], info: ValidationInfo) -> list[SweepOptimizer]:
        seeds = len(info.data.get("seeds") or [0])
        total = seeds * sum(len(o.points()) for o in v)
        if total > MAX_RUNS_PER_SWEEP:
            raise ValueError(f"{total} runs requested (grid points x {seeds} seed(s)); at most "
                             f"{MAX_RUNS_PER_SWEEP} per sweep: use fewer points per decade, a narrower range "
                             "or fewer seeds")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "SweepCreate":
        model_fits_dataset(self.model, self.dataset)
        try:
            self.run_configs()
        except ValidationError as exc:
            raise ValueError(error_summary(exc.errors())) from None
        return self

    def shared(self) -> dict[str, Any]:
        """Settings every run of the sweep (and of its promoted comparison) shares."""
        return {k: getattr(self, k) for k in ("eval_every", "train_subset", "test_subset", "eval_train_size",
                                              "num_reconstructions", "device") if getattr(self, k) is not None}

    def batch_for(self, opt: SweepOptimizer | ComparisonOptimizer) -> int | None:
        return opt.batch_size or (self.batch_sizes or {}).get(OPTIMIZERS[opt.name].family)

    def run_configs(self) -> list[tuple[int, dict[str, Scalar], RunConfig, str]]:
        """(optimizer entry, grid point, RunConfig, label) per grid point and seed, seeds outermost."""
        out = []
        for seed in self.seeds:
            for i, opt in enumerate(self.optimizers):
                for point in opt.points():
                    hyper = {**opt.hyperparameters, **point}
                    cfg = RunConfig(dataset=self.dataset, model=self.model, budget=self.budget, seed=seed,
                                    optimizer={"name": opt.name, "hyperparameters": hyper},
                                    batch_size=self.batch_for(opt), **self.shared(), **self.run_settings)
                    out.append((i, point, cfg, run_label(opt.name, hyper, seed, opt.batch_size)))
        return out


class PromoteRequest(BaseModel):
    """Launch a comparison of each optimizer's winner (plus ``extra_optimizers``, e.g. the TR methods) on fresh
    seeds: ``seeds`` if given (none of them a tuning seed), else ``n_seeds`` seeds after the largest tuning seed."""

    model_config = _STRICT
    n_seeds: int = Field(default=5, ge=1, le=50)
    seeds: list[Seed] | None = Field(default=None, min_length=1, max_length=50)
    extra_optimizers: list[ComparisonOptimizer] = Field(default_factory=list, max_length=20)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    allow_missing: bool = Field(default=False, description="promote even though some grid points have no result "
                                                           "(interrupted, cancelled or failed runs): their winner "
                                                           "may be missing; default: refuse (409)")


def edge_flags(space: dict[str, list[Scalar]], best: dict[str, Scalar]) -> list[str]:
    """Warnings for a best value on the edge of its numeric grid ("best lr is the largest tried: extend the grid")."""
    flags = []
    for key, values in space.items():
        nums = sorted({v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if len(nums) < 2 or key not in best:
            continue
        if best[key] == nums[-1]:
            flags.append(f"best {key} is the largest tried ({nums[-1]:g}): extend the grid upward")
        elif best[key] == nums[0]:
            flags.append(f"best {key} is the smallest tried ({nums[0]:g}): extend the grid downward")
    return flags

