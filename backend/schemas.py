"""Request and response models of the REST API (docs/API.md); RunConfig itself comes from the trainer."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints, ValidationError,
                      field_validator, model_validator)

from backend.domain import run_label  # noqa: F401 - re-exported (schemas.run_label), defined in backend.domain
from backend.limits import hide_paths
from backend.runner.states import RunState
from trainer.config import (MAX_SAMPLES, STRICT_INPUT, Budget, Convergence, EvalEvery, Guards, OptimizerConfig, RunConfig,
                            names_fit)
from trainer.errors import error_summary
from trainer.registry import OPTIMIZERS, model_fits_dataset
from trainer.reporting import EvalRecord, StepRecord

__all__ = ["UtcDatetime", "RunOut", "RunList", "ComparisonOut", "ComparisonDetail", "ComparisonList",
           "ComparisonCreate", "ComparisonCreated", "MetricPoint", "MetricsPage", "EvalPoint", "EvalPage",
           "ReconstructionList", "Health", "MetricColumns", "RunCursor", "MetricsBatchRequest", "MetricsBatch",
           "MAX_BATCH_RUNS", "MAX_BATCH_POINTS", "MAX_RUNS_PER_COMPARISON", "run_label", "AnnotationPatch",
           "MAX_TAGS", "MAX_NOTE_CHARS"]

MAX_RUNS_PER_COMPARISON = 200  # the default of Settings.max_runs_per_comparison (checked in backend.deps.admit_runs)


def _utc_iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


# The store keeps naive UTC datetimes; responses say so with a trailing Z.
UtcDatetime = Annotated[datetime, PlainSerializer(_utc_iso, return_type=str)]

Status = RunState


MAX_TAGS = 20
MAX_NOTE_CHARS = 4000
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40,
                                       pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:+/-]*$")]


class AnnotationPatch(BaseModel):
    """PATCH body for a run or comparison: replace its tags and/or its note (omitted fields stay as they are)."""

    model_config = STRICT_INPUT
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS,
                                   description=f"at most {MAX_TAGS} tags of 1-40 characters: letters, digits, "
                                               "_ . : + / - (starting with a letter or digit); [] clears them")
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS,
                             description=f"free text, at most {MAX_NOTE_CHARS} characters; \"\" clears it")

    @field_validator("tags")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _something(self) -> "AnnotationPatch":
        if self.tags is None and self.note is None:
            raise ValueError("Invalid patch: give tags (a list of strings) and/or note (a string)")
        return self


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class RunOut(BaseModel):
    """A run as the API shows it."""

    id: int
    status: Status
    comparison_id: int | None
    config: dict[str, Any] = Field(description="RunConfig JSON with defaults filled (hyperparameters resolved)")
    optimizer: str
    family: str | None = Field(default=None, description="the optimizer's family in /api/meta: "
                               "'second-order' (trust region) or 'first-order'")
    label: str
    seed: int
    group_key: str = Field(description="the run's setting: its resolved config minus the seed and pure labels "
                           "(trainer.identity). Runs with equal keys are seeds of one group; results, bands and "
                           "sweeps group by it and nothing else")
    device: str | None = Field(description="where it trained (set when the worker starts)")
    error: str | None
    summary: dict[str, Any] | None
    progress: float = Field(description="fraction of the budget used, 0..1")
    last_step: int | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    tags: list[str] = Field(default_factory=list, description="set with PATCH /api/runs/{id}")
    note: str = Field(default="", description="set with PATCH /api/runs/{id}")
    owner: str = Field(description="the user who created it (only they or an admin may change it)")

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
    tags: list[str] = Field(default_factory=list, description="set with PATCH /api/comparisons/{id}")
    note: str = Field(default="", description="set with PATCH /api/comparisons/{id}")
    owner: str = Field(description="the user who created it (only they or an admin may change it)")


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

    model_config = STRICT_INPUT
    name: str = Field(min_length=1, max_length=200)
    dataset: RunConfig.model_fields["dataset"].annotation = Field(  # type: ignore[valid-type]
        description="fashion-mnist | mnist | cifar10")
    model: RunConfig.model_fields["model"].annotation = Field(  # type: ignore[valid-type]
        description="mlp | resnet18 | autoencoder | conv-autoencoder")
    budget: Budget
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, max_length=100)
    optimizers: list[ComparisonOptimizer] = Field(min_length=1, max_length=50)
    batch_sizes: dict[Literal["first-order", "second-order"], BatchSize] | None = None
    eval_every: Annotated[int, Field(ge=1, le=1_000_000)] | EvalEvery | None = Field(
        default=None, union_mode="left_to_right",
        description="shared by every run: N steps, or {\"epochs\": x} / {\"backprops\": N}; default ~50 per run")
    train_subset: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    test_subset: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    eval_train_size: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    num_reconstructions: int | None = Field(default=None, ge=1, le=16)
    device: str | None = Field(default=None, max_length=16)
    guards: Guards | None = Field(default=None, description="guard thresholds for every run (RunConfig.guards)")
    converged: Convergence | None = Field(default=None,
                                          description="convergence floors for every run (RunConfig.converged)")
    l2: float | None = Field(default=None, ge=0.0, le=1.0, description="L2 term in every run's loss (RunConfig.l2)")
    input_scaling: Literal["unit", "standardize"] | None = None
    autoencoder_loss: Literal["bce", "mse"] | None = None
    warm_start_epochs: float | None = Field(default=None, ge=0.0, le=1000.0,
                                            description="trust-region runs only; first-order runs of the same "
                                                        "comparison start cold")

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        return names_fit(data)

    @model_validator(mode="after")
    def _consistent(self) -> "ComparisonCreate":
        model_fits_dataset(self.model, self.dataset)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        try:
            self.run_configs()
        except ValidationError as exc:
            raise ValueError(error_summary(exc.errors())) from None
        return self

    def run_configs(self) -> list[tuple[RunConfig, str]]:
        """(RunConfig, label) per optimizer and seed, seeds outermost."""
        shared = {k: getattr(self, k) for k in ("eval_every", "train_subset", "test_subset", "eval_train_size",
                                                  "num_reconstructions", "device", "guards", "converged", "l2",
                                                  "input_scaling", "autoencoder_loss") if getattr(self, k) is not None}
        out = []
        for seed in self.seeds:
            for opt in self.optimizers:
                batch = opt.batch_size or (self.batch_sizes or {}).get(OPTIMIZERS[opt.name].family)
                second_order = OPTIMIZERS[opt.name].family == "second-order"
                warm = {"warm_start_epochs": self.warm_start_epochs} if self.warm_start_epochs and second_order else {}
                cfg = RunConfig(dataset=self.dataset, model=self.model, budget=self.budget, seed=seed,
                                optimizer={"name": opt.name, "hyperparameters": opt.hyperparameters},
                                batch_size=batch, **shared, **warm)
                out.append((cfg, run_label(opt.name, opt.hyperparameters, seed, opt.batch_size,
                                           variants=cfg.variants())))
        return out


class MetricPoint(StepRecord):
    """One optimizer step (``trainer.reporting.StepRecord``); the TR fields are null for first-order runs."""

    model_config = ConfigDict(extra="ignore")


class MetricsPage(BaseModel):
    points: list[MetricPoint]
    last_step: int | None = Field(description="the run's newest stored step (poll again with since_step=this)")
    total: int = Field(description="points with step > since_step before downsampling")
    downsampled: bool


class MetricColumns(BaseModel):
    """Column-wise metrics (``format=columns``): one array per selected field, all of the same length."""

    fields: list[str] = Field(description="the selected fields, step first")
    columns: dict[str, list[Any]] = Field(description="field -> values in step order (null where not recorded)")
    last_step: int | None = Field(description="the run's newest stored step (poll again with since_step=this)")
    total: int = Field(description="points in the range before downsampling")
    downsampled: bool


MAX_BATCH_RUNS = MAX_RUNS_PER_COMPARISON
MAX_BATCH_POINTS = 2_000_000  # runs x max_points of one batched request


class RunCursor(BaseModel):
    """Where the client's copy of a run ends: only newer points are sent."""

    model_config = STRICT_INPUT
    id: int = Field(ge=0, le=2**63 - 1)
    since_step: int | None = Field(default=None, ge=-1, le=2**63 - 1, description="metrics with step > this")
    eval_since_step: int | None = Field(default=None, ge=-1, le=2**63 - 1,
                                        description="evaluations with step > this")
    fields: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=64, description="this run's fields, instead of the request's (e.g. TR columns)")


class MetricsBatchRequest(BaseModel):
    """New points of many runs in one request: the runs of ``comparison_id`` and/or the listed ``runs``."""

    model_config = STRICT_INPUT
    comparison_id: int | None = Field(default=None, ge=0, le=2**63 - 1)
    runs: list[RunCursor] = Field(default_factory=list, max_length=MAX_BATCH_RUNS)
    fields: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=64, description="metric fields to send (step always included); default all")
    max_points: int = Field(default=2000, ge=2, le=100_000, description="per run, min/max-downsampled")
    evals: bool = Field(default=True, description="also send each run's new evaluations")

    @model_validator(mode="after")
    def _consistent(self) -> "MetricsBatchRequest":
        if self.comparison_id is None and not self.runs:
            raise ValueError("give comparison_id or a non-empty runs list")
        ids = [c.id for c in self.runs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"runs must name each run once, got ids {ids}")
        if len(ids) * self.max_points > MAX_BATCH_POINTS:
            raise ValueError(f"{len(ids)} runs x max_points {self.max_points} exceeds {MAX_BATCH_POINTS} points; "
                             "lower max_points or ask for fewer runs per request")
        return self


class EvalColumns(BaseModel):
    fields: list[str]
    columns: dict[str, list[Any]]


class RunMetricColumns(MetricColumns):
    id: int
    status: Status
    evals: EvalColumns | None = None


class MetricsBatch(BaseModel):
    runs: list[RunMetricColumns]


class EvalPoint(EvalRecord):
    """One evaluation (``trainer.reporting.EvalRecord``)."""

    model_config = ConfigDict(extra="ignore")


class EvalPage(BaseModel):
    points: list[EvalPoint]


class ReconstructionList(BaseModel):
    steps: list[int]
    backprops: list[int | None]
    has_original: bool
