"""Domain helpers shared by the API schemas and the store: run labels, the stored view of a RunConfig, and what
the store needs of a comparison request (so the store never imports the API's models)."""
from __future__ import annotations

from typing import Any, Protocol

from trainer.config import RunConfig
from trainer.registry import optimizer_label

__all__ = ["run_label", "stored_config", "ComparisonSpec"]


def run_label(optimizer: str, overrides: dict[str, Any], seed: int, batch_size: int | None = None,
              variants: list[str] | None = None) -> str:
    """E.g. "SGD lr=0.05 inputs=unit (seed 0)": the optimizer's label, the hyperparameters given, the batch size
    when given, the run-level switches that differ from their defaults (``RunConfig.variants()``), the seed."""
    parts = [optimizer_label(optimizer, overrides)] + [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in sorted(overrides.items())]
    if batch_size is not None:
        parts.append(f"batch={batch_size}")
    parts.extend(variants or [])
    return f"{' '.join(parts)} (seed {seed})"


def stored_config(config: RunConfig) -> dict[str, Any]:
    """The RunConfig as stored: JSON, with hyperparameters resolved and the batch size filled in."""
    data = config.model_dump(mode="json")
    data["optimizer"]["hyperparameters"] = config.optimizer.resolved()
    data["batch_size"] = config.effective_batch_size
    return data


class ComparisonSpec(Protocol):
    """A validated comparison request (the API's ``ComparisonCreate`` is one): a name, its JSON, its runs."""

    name: str

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...

    def run_configs(self) -> list[tuple[RunConfig, str]]: ...
