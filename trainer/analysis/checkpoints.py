"""A run's weights at chosen steps, by replaying it deterministically from its RunConfig and seed.

Runs store no weights; the trainer is deterministic for a seed on the CPU (same config → same records), so
an analysis re-trains the run up to its last checkpoint and copies the state dict at each checkpoint step.
The replayed minibatch losses are returned beside the weights, so the caller can check them against the
stored records of the original run (a run trained on a GPU may not replay bit for bit).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from trainer.config import Budget, RunConfig
from trainer.reporting import NullReporter

__all__ = ["Replay", "CheckpointReporter", "replay_checkpoints"]


@dataclass
class Replay:
    """What a replay produced: the model (weights of the last step trained), the run's data and loss, the
    state dict at each checkpoint step and the replayed minibatch loss at each checkpoint step (None at 0)."""

    model: nn.Module
    data: Any  # trainer.data.TensorData
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    states: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    losses: dict[int, float | None] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class CheckpointReporter(NullReporter):
    """Copies the model's weights at the wanted steps (0 = the initial weights) and asks the trainer to stop
    after the last one. Uses the trainer's optional ``on_setup(model, data, loss_fn)`` hook."""

    def __init__(self, steps: Sequence[int], should_stop: Callable[[], bool] | None = None) -> None:
        if not steps or min(steps) < 0:
            raise ValueError(f"Invalid checkpoint steps {list(steps)}; give one or more steps >= 0")
        self.wanted = frozenset(int(s) for s in steps)
        self.external_stop = should_stop
        self.model: nn.Module | None = None
        self.data: Any = None
        self.loss_fn: Any = None
        self.states: dict[int, dict[str, torch.Tensor]] = {}
        self.losses: dict[int, float | None] = {}
        self.summary: dict[str, Any] = {}
        self.last_step = 0

    def _snapshot(self, step: int, loss: float | None) -> None:
        assert self.model is not None
        self.states[step] = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.losses[step] = loss

    def on_setup(self, model: nn.Module, data: Any, loss_fn: Any) -> None:
        self.model, self.data, self.loss_fn = model, data, loss_fn
        if 0 in self.wanted:
            self._snapshot(0, None)

    def on_step(self, record: dict[str, Any]) -> None:
        self.last_step = int(record["step"])
        if self.last_step in self.wanted:
            self._snapshot(self.last_step, record.get("train_loss"))

    def on_finish(self, summary: dict[str, Any]) -> None:
        self.summary = summary

    def should_stop(self) -> bool:
        return len(self.states) == len(self.wanted) or bool(self.external_stop and self.external_stop())


def replay_checkpoints(config: RunConfig, steps: Sequence[int], *, data_dir: str | Path | None = None,
                       max_backprops: int | None = None, should_stop: Callable[[], bool] | None = None) -> Replay:
    """Re-train ``config`` on the CPU and return the weights at each of ``steps``.

    Args:
        config: the run's stored configuration (seed included).
        steps: optimizer steps to capture; 0 is the initialization.
        data_dir: dataset directory (as for ``trainer.run``). Default: the trainer's.
        max_backprops: budget of the replay, e.g. the original run's final backprops count, which makes
            runs with a wall-time budget replay to the same step. Default: the config's budget without
            its wall-time limit (one of epochs / backprops must then be set).
        should_stop: polled every step; True ends the replay early (``InterruptedError``).

    Raises:
        RuntimeError: the replay failed or ended before the last checkpoint (the message says where).
        InterruptedError: ``should_stop`` asked to stop.
    """
    from trainer.loop import run  # late: trainer.loop imports the models and data modules

    if max_backprops is not None:
        budget = Budget(backprops=max_backprops)
    elif config.budget.epochs is not None or config.budget.backprops is not None:
        budget = Budget(epochs=config.budget.epochs, backprops=config.budget.backprops)
    else:
        raise ValueError("Invalid replay budget: the run has only a wall-time budget; pass max_backprops "
                         "(the run's final backprops count)")
    cfg = config.model_copy(update={"device": "cpu", "budget": budget})
    reporter = CheckpointReporter(steps, should_stop)
    summary = run(cfg, reporter, data_dir=data_dir, download=False)
    if should_stop is not None and should_stop():
        raise InterruptedError("replay stopped on request")
    if summary.get("status") == "failed":
        raise RuntimeError(f"replaying the run failed: {summary.get('message')}")
    missing = sorted(reporter.wanted - set(reporter.states))
    if missing or reporter.model is None:
        raise RuntimeError(f"the replay ended at step {reporter.last_step} ({summary.get('status')}: "
                           f"{summary.get('message')}) before checkpoint step(s) {missing}; choose steps the run "
                           f"reached")
    return Replay(model=reporter.model, data=reporter.data, loss_fn=reporter.loss_fn, states=reporter.states,
                  losses=reporter.losses, summary=summary)
