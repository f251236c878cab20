"""Request and response models of the analyses API (POST/GET /api/runs/{id}/analyses...)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from backend.limits import hide_paths
from trainer.config import STRICT_INPUT
from trainer.analysis.sizes import MAX_HEATMAP_SIZE

__all__ = ["HessianRequest", "AnalysisOut", "AnalysisList", "MAX_CHECKPOINTS", "MAX_HESSIAN_BATCH",
           "MAX_ACTIVE_ANALYSES"]

MAX_CHECKPOINTS = 8
MAX_HESSIAN_BATCH = 2048
MAX_ACTIVE_ANALYSES = 8  # queued + running, over all runs: each one is minutes of CPU
_MAX_STEP = 2**63 - 1


class HessianRequest(BaseModel):
    """Which checkpoints of the run to analyse and on how large a fixed batch."""

    model_config = STRICT_INPUT
    steps: list[int] | None = Field(
        default=None, min_length=1, max_length=MAX_CHECKPOINTS,
        description=f"optimizer steps to analyse (0 = initialization), 1..{MAX_CHECKPOINTS} of them, each at most "
                    "the run's last step; give steps or fractions")
    fractions: list[float] | None = Field(
        default=None, min_length=1, max_length=MAX_CHECKPOINTS,
        description="checkpoints as fractions 0..1 of the run's last step (rounded to a step); give steps or fractions")
    batch_size: int = Field(default=512, ge=1, le=MAX_HESSIAN_BATCH,
                            description="the fixed batch: the first N training samples of the run's data")
    heatmap_size: int = Field(default=64, ge=8, le=MAX_HEATMAP_SIZE,
                              description="side of the downsampled |H| heatmap returned per checkpoint")
    random_draws: int = Field(default=2, ge=1, le=5,
                              description="random same-spectrum matrices averaged for the baseline")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        bad = [s for s in v if not 0 <= s <= _MAX_STEP]
        if bad:
            raise ValueError(f"steps must be >= 0, got {bad}")
        return sorted(set(v))

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        bad = [f for f in v if not 0.0 <= f <= 1.0]  # NaN fails too
        if bad:
            raise ValueError(f"fractions must lie in [0, 1] (0 = initialization, 1 = the last step), got {bad}")
        return sorted(set(v))

    @model_validator(mode="after")
    def _one_of(self) -> "HessianRequest":
        if (self.steps is None) == (self.fractions is None):
            raise ValueError('give exactly one of "steps" (e.g. [0, 100, 200]) or "fractions" (e.g. [0, 0.5, 1])')
        return self

    def resolve_steps(self, last_step: int) -> list[int]:
        """The checkpoint steps for a run whose last step is ``last_step``."""
        if self.steps is not None:
            return list(self.steps)
        return sorted({round(f * last_step) for f in self.fractions or []})


class AnalysisOut(BaseModel):
    """One analysis: its status and, once there, results (GET of one analysis includes the heatmaps)."""

    id: int
    run_id: int
    kind: Literal["hessian"]
    status: Literal["queued", "running", "completed", "failed"]
    params: dict[str, Any]
    progress: dict[str, int] = Field(description="checkpoints done and total")
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime

    @field_validator("error")
    @classmethod
    def _no_server_paths(cls, v: str | None) -> str | None:
        """Errors quote the analysis worker's log; clients never see the server's paths."""
        return None if v is None else hide_paths(v)
    started_at: datetime | None
    finished_at: datetime | None
    owner: str = Field(description="the user who asked for it")


class AnalysisList(BaseModel):
    items: list[AnalysisOut]
