"""Request and response models of the REST API (docs/API.md); RunConfig itself comes from the trainer."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError, field_validator, model_validator

from backend.limits import hide_paths

from trainer.config import MAX_SAMPLES, Budget, Guards, OptimizerConfig, RunConfig
from trainer.registry import OPTIMIZERS, model_fits_dataset

__all__ = ["UtcDatetime", "RunOut", "RunList", "ComparisonOut", "ComparisonDetail", "ComparisonList",
           "ComparisonCreate", "ComparisonCreated", "MetricPoint", "MetricsPage", "EvalPoint", "EvalPage",
           "ReconstructionList", "Health", "MAX_RUNS_PER_COMPARISON", "run_label"]

MAX_RUNS_PER_COMPARISON = 200  # the default of Settings.max_runs_per_comparison (checked in backend.deps.admit_runs)


def _utc_iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


# The store keeps naive UTC datetimes; responses say so with a trailing Z.
UtcDatetime = Annotated[datetime, PlainSerializer(_utc_iso, return_type=str)]

Status = Literal["queued", "running", "completed", "diverged", "failed", "cancelled", "interrupted"]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class RunOut(BaseModel):
    """A run as the API shows it."""

    id: int
    status: Status
    comparison_id: int | None
    config: dict[str, Any] = Field(description="RunConfig JSON with defaults filled (hyperparameters resolved)")
    optimizer: str
    label: str
    seed: int
    device: str | None = Field(description="where it trained (set when the worker starts)")
    error: str | None
    summary: dict[str, Any] | None
    progress: float = Field(description="fraction of the budget used, 0..1")
    last_step: int | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None

    @field_validator("error")
    @classmethod
    def _no_server_paths(cls, v: str | None) -> str | None:
        """Errors from the job runner quote worker logs; clients never see the server's paths."""
        return None if v is None else hide_paths(v)

    @field_validator("summary")
    @classmethod
    def _no_traceback(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else {k: x for k, x in v.items() if k != "traceback"}


class RunList(BaseModel):
    items: list[RunOut]
    total: int


class ComparisonOut(BaseModel):
    id: int
    name: str
    created_at: UtcDatetime
    run_ids: list[int]
    status: Literal["queued", "running", "completed", "finished", "empty"] = Field(
        description="running if any run is, else queued if any is, completed if all completed, "
                    "finished when all ended otherwise, empty when its runs were deleted")
    spec: dict[str, Any]


class ComparisonDetail(ComparisonOut):
    runs: list[RunOut]


class ComparisonList(BaseModel):
    items: list[ComparisonOut]
    total: int


class ComparisonCreated(BaseModel):
    id: int
    run_ids: list[int]


class ComparisonOptimizer(OptimizerConfig):
    """An optimizer of a comparison; ``batch_size`` overrides the family's batch size."""

    batch_size: int | None = Field(default=None, ge=1, le=65536)


Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
BatchSize = Annotated[int, Field(ge=1, le=65536)]


class ComparisonCreate(BaseModel):
    """One run per optimizer and seed; runs with the same seed share initial weights and data order."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=200)
    dataset: RunConfig.model_fields["dataset"].annotation = Field(  # type: ignore[valid-type]
        description="fashion-mnist | mnist | cifar10")
    model: RunConfig.model_fields["model"].annotation = Field(  # type: ignore[valid-type]
        description="mlp | resnet18 | autoencoder | conv-autoencoder")
    budget: Budget
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, max_length=100)
    optimizers: list[ComparisonOptimizer] = Field(min_length=1, max_length=50)
    batch_sizes: dict[Literal["first-order", "second-order"], BatchSize] | None = None
    eval_every: int | None = Field(default=None, ge=1, le=1_000_000)
    train_subset: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    test_subset: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    eval_train_size: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    num_reconstructions: int | None = Field(default=None, ge=1, le=16)
    device: str | None = Field(default=None, max_length=16)
    guards: Guards | None = Field(default=None, description="guard thresholds for every run (RunConfig.guards)")

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("model"), str) and isinstance(data.get("dataset"), str):
            model_fits_dataset(data["model"], data["dataset"])
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "ComparisonCreate":
        model_fits_dataset(self.model, self.dataset)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        try:
            self.run_configs()
        except ValidationError as exc:
            raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        return self

    def run_configs(self) -> list[tuple[RunConfig, str]]:
        """(RunConfig, label) per optimizer and seed, seeds outermost."""
        shared = {k: getattr(self, k) for k in ("eval_every", "train_subset", "test_subset", "eval_train_size",
                                                  "num_reconstructions", "device", "guards")
                  if getattr(self, k) is not None}
        out = []
        for seed in self.seeds:
            for opt in self.optimizers:
                batch = opt.batch_size or (self.batch_sizes or {}).get(OPTIMIZERS[opt.name].family)
                cfg = RunConfig(dataset=self.dataset, model=self.model, budget=self.budget, seed=seed,
                                optimizer={"name": opt.name, "hyperparameters": opt.hyperparameters},
                                batch_size=batch, **shared)
                out.append((cfg, run_label(opt.name, opt.hyperparameters, seed, opt.batch_size)))
        return out


def run_label(optimizer: str, overrides: dict[str, Any], seed: int, batch_size: int | None = None) -> str:
    """E.g. "SGD lr=0.05 (seed 0)": the optimizer's label, the hyperparameters given, the seed."""
    parts = [OPTIMIZERS[optimizer].label] + [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in sorted(overrides.items())]
    if batch_size is not None:
        parts.append(f"batch={batch_size}")
    return f"{' '.join(parts)} (seed {seed})"


class MetricPoint(BaseModel):
    """One optimizer step; the TR fields are null for first-order runs."""

    step: int
    backprops: int
    gradients: int | None = None
    hvps: int | None = None
    forwards: int | None = None
    epoch: float
    wall_time: float
    train_loss: float | None = None
    grad_norm: float | None = None
    step_norm: float | None = None
    radius: float | None = None
    new_radius: float | None = None
    rho: float | None = None
    cg_iterations: int | None = None
    cg_exit: str | None = None
    accepted: bool | None = None
    pred_decrease: float | None = None
    actual_decrease: float | None = None
    step_norm_m: float | None = None


class MetricsPage(BaseModel):
    points: list[MetricPoint]
    last_step: int | None = Field(description="the run's newest stored step (poll again with since_step=this)")
    total: int = Field(description="points with step > since_step before downsampling")
    downsampled: bool


class EvalPoint(BaseModel):
    step: int
    backprops: int
    epoch: float
    wall_time: float
    train_loss: float | None = None
    test_loss: float | None = None
    train_accuracy: float | None = None
    test_accuracy: float | None = None


class EvalPage(BaseModel):
    points: list[EvalPoint]


class ReconstructionList(BaseModel):
    steps: list[int]
    backprops: list[int | None]
    has_original: bool
