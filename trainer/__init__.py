"""trustlab trainer: trust-region and first-order optimizers, models, data and the training loop."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config import Budget, OptimizerConfig, RunConfig
from trainer.reporting import ListReporter, NullReporter, Reporter, RunStatus

__all__ = ["Budget", "OptimizerConfig", "RunConfig", "Reporter", "NullReporter", "ListReporter", "RunStatus", "run"]


def run(config: RunConfig | dict[str, Any], reporter: Reporter | None = None, *, data_dir: str | Path | None = None,
        download: bool = True) -> dict[str, Any]:
    """Train one run (see ``trainer.loop.run``)."""
    from trainer.loop import run as _run

    return _run(config, reporter, data_dir=data_dir, download=download)
