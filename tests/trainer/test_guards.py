"""Run guards (trainer/guards.py): each rule trips at its threshold and says why; the loop ends the run with it."""
from __future__ import annotations

from pathlib import Path

import pytest

import trainer
from trainer.config import Convergence, Guards
from trainer.guards import RunGuard
from trainer.reporting import ListReporter, StopReason, Summary

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
    assert s["stop_reason"] == StopReason.GUARD
    assert len(rep.steps) == 3


@needs_fmnist
def test_loop_marks_a_blown_up_sgd_run_diverged(tmp_path: Path) -> None:
    cfg = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd", "hyperparameters": {"lr": 100.0}},
           "budget": {"backprops": 300}, "train_subset": 1024, "test_subset": 100, "device": "cpu",
           "guards": {"loss_factor": 5}}
    s = trainer.run(cfg, ListReporter(), data_dir=tmp_path, download=False)
    assert s["status"] == "diverged" and s["steps"] < 300, s


# -- converged is not failed ---------------------------------------------------------------------------------------


def test_convergence_loss_floor_needs_patience_and_ends_completed() -> None:
    guard = RunGuard(Guards(), is_tr=False, converged=Convergence(loss_floor=1e-3, grad_norm_ratio=None, patience=2))
    assert guard.check(1, 1.0, {}) is None
    assert guard.check(2, 1e-4, {}) is None
    assert guard.check(3, 2e-3, {}) is None  # the streak breaks
    assert guard.check(4, 1e-4, {}) is None
    verdict = guard.check(5, 5e-4, {})
    assert verdict.status == "completed" and verdict.reason == StopReason.CONVERGED
    assert "converged at step 5" in verdict.message and "converged.loss_floor" in verdict.message


def test_convergence_gradient_floor_is_relative_to_the_first_and_skips_unmeasured_steps() -> None:
    guard = RunGuard(Guards(), is_tr=False, converged=Convergence(loss_floor=None, grad_norm_ratio=1e-3, patience=2))
    assert guard.check(1, 1.0, {"grad_norm": 50.0}) is None  # the reference: bound 0.05
    assert guard.check(2, 1.0, {"grad_norm": 0.04}) is None
    assert guard.check(3, 1.0, {"grad_norm": None}) is None  # not measured (first-order, grad_norm_every)
    verdict = guard.check(4, 1.0, {"grad_norm": 0.01})
    assert verdict.status == "completed" and "converged.grad_norm_ratio" in verdict.message
    assert "1e-03 x the first one (50)" in verdict.message.replace("0.001", "1e-03")


def test_convergence_off_and_floors_off_never_stop() -> None:
    for conv in (Convergence(enabled=False), Convergence(loss_floor=None, grad_norm_ratio=None)):
        guard = RunGuard(Guards(), is_tr=False, converged=conv)
        assert [guard.check(s, 0.0, {"grad_norm": 1.0 if s == 1 else 0.0}) for s in range(1, 20)] == [None] * 19


def test_radius_collapse_at_the_loss_floor_completes_converged() -> None:
    """The issue's case: the loss sits at 6.3e-9, every step changes it by exactly 0, the radius collapses."""
    off = Convergence(enabled=False)  # the at-floor rule holds even with the converged stop switched off
    guard = RunGuard(Guards(radius_floor=1e-12, radius_patience=3), is_tr=True, cg_cap=50, converged=off)
    flat = {"new_radius": 1e-20, "actual_decrease": 0.0, "grad_norm": 1.4e-7}
    assert [guard.check(s, 6.3e-9, flat) for s in (1, 2)] == [None, None]
    verdict = guard.check(3, 6.3e-9, flat)
    assert verdict.status == "completed" and verdict.reason == StopReason.CONVERGED
    assert "sits at its floor" in verdict.message and "guards.radius_floor" in verdict.message


def test_radius_collapse_with_a_loss_that_moves_still_fails() -> None:
    guard = RunGuard(Guards(radius_floor=1e-12, radius_patience=3), is_tr=True, cg_cap=50,
                     converged=Convergence(enabled=False))
    moving = {"new_radius": 1e-20, "actual_decrease": -1e-3, "grad_norm": 1.0}  # every step made it worse
    assert [guard.check(s, 0.5, moving) for s in (1, 2)] == [None, None]
    verdict = guard.check(3, 0.5, moving)
    assert verdict.status == "failed" and verdict.reason == StopReason.GUARD and "no step can make progress" in \
        verdict.message


def test_cg_cap_at_the_loss_floor_completes_and_a_floor_met_counts_too() -> None:
    guard = RunGuard(Guards(cg_cap_patience=2), is_tr=True, cg_cap=50, converged=Convergence(enabled=False))
    at_floor = {"cg_exit": "max_iter", "new_radius": 1.0, "actual_decrease": 1e-3}  # moving, but loss <= 1e-8
    assert guard.check(1, 5e-9, at_floor) is None
    verdict = guard.check(2, 5e-9, at_floor)
    assert verdict.status == "completed" and "iteration cap (50)" in verdict.message


def test_flat_means_within_a_few_ulps_of_the_loss() -> None:
    f32 = 2.0 ** -23
    guard = RunGuard(Guards(radius_floor=1.0, radius_patience=2), is_tr=True, converged=Convergence(enabled=False),
                     eps=f32)
    step = {"new_radius": 0.1, "actual_decrease": 3 * f32 * 0.7}  # 3 ulps of a loss of 0.7: noise
    assert guard.check(1, 0.7, step) is None
    assert guard.check(2, 0.7, step).status == "completed"
    guard = RunGuard(Guards(radius_floor=1.0, radius_patience=2), is_tr=True, converged=Convergence(enabled=False),
                     eps=f32)
    step = {"new_radius": 0.1, "actual_decrease": 8 * f32 * 0.7}  # 8 ulps: a real change
    assert guard.check(1, 0.7, step) is None
    assert guard.check(2, 0.7, step).status == "failed"


@needs_fmnist
def test_loop_ends_a_first_order_run_at_its_loss_floor_completed(tmp_path: Path) -> None:
    cfg = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd", "hyperparameters": {"lr": 0.5}},
           "budget": {"epochs": 50}, "train_subset": 64, "batch_size": 64, "test_subset": 100, "device": "cpu",
           "eval_every": 1000, "converged": {"loss_floor": 0.05, "patience": 2}}
    rep = ListReporter()
    s = trainer.run(cfg, rep, data_dir=tmp_path, download=False)
    assert s["status"] == "completed" and s["stop_reason"] == "converged", s["message"]
    assert "converged.loss_floor" in s["message"] and s["steps"] < 50
    assert [r["train_loss"] <= 0.05 for r in rep.steps[-2:]] == [True, True]
    assert Summary.model_validate({k: v for k, v in s.items()})  # the record type knows stop_reason
