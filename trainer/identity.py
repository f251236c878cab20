"""The group identity of runs: ``group_key`` = the resolved run config minus the seed and pure labelling fields.

Runs of one setting (same data, model, optimizer with every hyperparameter resolved, batch size, budget,
evaluation cadence, input scaling, guards, ...) share a key whatever their seed; any other difference, however
small (``input_scaling``, the dataset, a budget), makes another group. Computed here once; the store keeps it per
run and every band, mean, result row and sweep point groups by it (DESIGN.md, "Group identity").
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from trainer.config import LEGACY_FIELDS, RunConfig, from_stored

__all__ = ["IDENTITY_EXCLUDED", "group_key", "group_key_of_stored", "identity_config"]

# Left out of the identity: the seed (what varies inside a group) and fields that only change what is shown, never
# what is trained or measured (how many reconstructions the UI shows). Legacy fields were never used.
IDENTITY_EXCLUDED = ("seed", "num_reconstructions") + LEGACY_FIELDS


def identity_config(config: RunConfig) -> dict[str, Any]:
    """The resolved config the key is computed from: hyperparameters with their registry defaults, the effective
    batch size and the resolved evaluation cadence filled in; ``IDENTITY_EXCLUDED`` removed."""
    data = config.model_dump(mode="json")
    data["optimizer"]["hyperparameters"] = config.optimizer.resolved()
    data["batch_size"] = config.effective_batch_size
    counter, every = config.eval_schedule()
    data["eval_every"] = {counter: every}
    return {k: v for k, v in data.items() if k not in IDENTITY_EXCLUDED}


def _digest(data: Mapping[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def group_key(config: RunConfig) -> str:
    """16 hex digits naming the run's setting: equal for runs that differ only in the seed (or labels)."""
    return _digest(identity_config(config))


def group_key_of_stored(data: Mapping[str, Any]) -> str:
    """``group_key`` of a stored JSON config. A config this version cannot validate any more (an optimizer no
    longer registered) is keyed by its stored JSON minus the excluded fields, so it still groups with its seeds."""
    try:
        return group_key(from_stored(dict(data)))
    except (ValueError, KeyError, TypeError):
        return "x" + _digest({k: v for k, v in data.items() if k not in IDENTITY_EXCLUDED})[1:]
