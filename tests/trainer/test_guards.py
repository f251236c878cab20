"""Run guards (trainer/guards.py): each rule trips at its threshold and says why; the loop ends the run with it."""
from __future__ import annotations

from pathlib import Path

import pytest

import trainer
from trainer.config import Guards
from trainer.guards import RunGuard
from trainer.reporting import ListReporter

needs_fmnist = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                                  reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")


def test_non_finite_loss_diverges_even_with_guards_off() -> None:
    guard = RunGuard(Guards(enabled=False), is_tr=False)
    assert guard.check(1, 2.0, {}) is None
    verdict = guard.check(2, float("inf"), {})
    assert verdict.status == "diverged" and "inf at step 2" in verdict.message


def test_loss_above_factor_times_initial_diverges() -> None:
    guard = RunGuard(Guards(loss_factor=10), is_tr=False)
    assert guard.check(1, 2.0, {}) is None
    assert guard.check(2, 19.9, {}) is None
    verdict = guard.check(3, 20.5, {})
    assert verdict.status == "diverged" and "guards.loss_factor" in verdict.message


def test_tr_radius_floor_needs_n_consecutive_steps() -> None:
    guard = RunGuard(Guards(radius_floor=1e-6, radius_patience=3), is_tr=True, cg_cap=50)
    small, big = {"new_radius": 1e-8}, {"new_radius": 1.0}
    assert [guard.check(s, 1.0, r) for s, r in enumerate([small, small, big, small, small], 1)] == [None] * 5
    verdict = guard.check(6, 1.0, small)
    assert verdict.status == "failed" and "trust radius stayed below 1e-06 for 3" in verdict.message


def test_tr_cg_cap_every_step_stops() -> None:
    guard = RunGuard(Guards(cg_cap_patience=2), is_tr=True, cg_cap=50)
    assert guard.check(1, 1.0, {"cg_exit": "max_iter", "new_radius": 1.0}) is None
    assert guard.check(2, 1.0, {"cg_exit": "boundary", "new_radius": 1.0}) is None
    assert guard.check(3, 1.0, {"cg_exit": "max_iter", "new_radius": 1.0}) is None
    verdict = guard.check(4, 1.0, {"cg_exit": "max_iter", "new_radius": 1.0})
    assert verdict.status == "failed" and "iteration cap (50) on 2 consecutive" in verdict.message


def test_first_order_runs_skip_tr_rules() -> None:
    guard = RunGuard(Guards(radius_floor=1.0, radius_patience=1, cg_cap_patience=1), is_tr=False)
    assert guard.check(1, 1.0, {"new_radius": 0.0, "cg_exit": "max_iter"}) is None


@needs_fmnist
def test_loop_stops_a_tr_run_whose_radius_collapsed(tmp_path: Path) -> None:
    cfg = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "tr-uniform"},
           "budget": {"backprops": 2000}, "train_subset": 1024, "test_subset": 100, "device": "cpu",
           "guards": {"radius_floor": 1.0, "radius_patience": 3}}  # Δ₀ = 0.05 < 1: trips at step 3
    rep = ListReporter()
    s = trainer.run(cfg, rep, data_dir=tmp_path, download=False)
    assert s["status"] == "failed" and s["steps"] == 3 and "stopped by guard" in s["message"], s["message"]
    assert len(rep.steps) == 3


@needs_fmnist
def test_loop_marks_a_blown_up_sgd_run_diverged(tmp_path: Path) -> None:
    cfg = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd", "hyperparameters": {"lr": 100.0}},
           "budget": {"backprops": 300}, "train_subset": 1024, "test_subset": 100, "device": "cpu",
           "guards": {"loss_factor": 5}}
    s = trainer.run(cfg, ListReporter(), data_dir=tmp_path, download=False)
    assert s["status"] == "diverged" and s["steps"] < 300, s
