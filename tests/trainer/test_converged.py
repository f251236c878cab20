"""Converged is not failed (issue 19 §3): full-batch Fashion-MNIST MLP on 512 images, TR uniform and TR RMSprop.

Before the fix both runs ended ``failed: ... no step can make progress``: the loss reached ~6e-9 (train accuracy 1),
every later step changed it by exactly 0 in float32, ρ = 0/pred rejected every step and the radius collapsed to
~1e-21 (TR RMSprop at step 214). Now the run ends ``completed`` with reason converged, by its default floors.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import trainer
from trainer.reporting import ListReporter, StopReason

needs_fmnist = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                                  reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")


def _full_batch(optimizer: str, **over) -> dict:
    cfg = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": optimizer},
           "budget": {"epochs": 600}, "train_subset": 512, "batch_size": 512, "eval_train_size": 512,
           "test_subset": 100, "eval_every": 100_000, "device": "cpu"}
    cfg.update(over)
    return cfg


@needs_fmnist
@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["tr-uniform", "tr-rmsprop"])
def test_full_batch_run_at_its_floor_ends_completed_converged(optimizer: str, tmp_path: Path) -> None:
    rep = ListReporter()
    s = trainer.run(_full_batch(optimizer), rep, data_dir=tmp_path, download=False)
    assert s["status"] == "completed", s["message"]
    assert s["stop_reason"] == StopReason.CONVERGED and s["message"].startswith("converged at step"), s["message"]
    assert s["steps"] < 600  # ended by convergence, long before the budget
    assert s["final_train_loss"] < 1e-5 and rep.evals[-1]["train_accuracy"] == 1.0
    radii = [r["new_radius"] for r in rep.steps]
    assert min(radii) > 1e-12  # the noise floor keeps the radius from collapsing
