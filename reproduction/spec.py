"""What `make reproduce` runs (protocol v3, issue 19): experiments, budgets, tuning grids, seeds, targets.

Every experiment is a sweep with equal tuning effort (9 configurations per method: the first-order baselines,
SGD+momentum included, on a half-decade step-size grid 1e-4..1; the three TR methods on Δ₀ × η₁ at 0.1×, 1× and
10× the preset's values), full budget, tuning seed 0, promoted to a comparison of every winner on fresh seeds;
every run is evaluated at the same backprop points (one resolution for costs to a target); the statistics come
from the product's results machinery (backend.stats through the API: exact sign-flip test, Holm, >= 5 pairs).
Protocol v2 (REPORT.md's saved runs) swept the baselines only, on 7 points for the autoencoder, with 3
autoencoder seeds and evaluations every N optimizer steps; saved specs in run_meta.json keep that.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainer.registry import OPTIMIZERS, PRESETS, optimizer_label

__all__ = ["Experiment", "MLP", "AUTOENCODER", "EXPERIMENTS", "TR_OPTIMIZERS", "BASELINES", "LABELS", "baseline_key",
           "quick"]

TR_OPTIMIZERS = ("tr-uniform", "tr-adagrad", "tr-rmsprop")
# First-order baselines by key: (registry optimizer, fixed hyperparameters). SGD+momentum is a baseline of its own.
BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("sgd", {}), "sgd-momentum": ("sgd", {"momentum": 0.9}), "adagrad": ("adagrad", {}),
    "rmsprop": ("rmsprop", {}), "adam": ("adam", {}),
}
LABELS = {**{name: info.label for name, info in OPTIMIZERS.items()},
          **{k: optimizer_label(o, h) for k, (o, h) in BASELINES.items()}}


def baseline_key(optimizer: str, hyperparameters: dict[str, Any]) -> str:
    """The key a run is reported under: the baseline whose fixed settings it has, else the optimizer name."""
    for key, (name, fixed) in BASELINES.items():
        if name == optimizer and fixed and all(hyperparameters.get(k) == v for k, v in fixed.items()):
            return key
    return optimizer


@dataclass(frozen=True)
class Experiment:
    """One comparison: shared data/model settings, an equal backprop budget, the grid, the seeds and targets."""

    name: str
    title: str
    model: str
    preset: str
    backprops: int  # equal budget for every run, sweep and comparison alike (gradients + HVPs)
    tuning_seeds: tuple[int, ...]
    seeds: tuple[int, ...]  # fresh seeds of the promoted comparison
    first_order: tuple[str, ...]  # keys of BASELINES
    grid: dict[str, float]  # step-size log range: low, high, per_decade
    batch_first_order: int
    batch_tr: int
    # evaluation cadence: optimizer steps (int, protocol v2) or {"backprops": N} (v3: every run of a comparison is
    # evaluated at the same backprop points, so costs to a target have one resolution, issue 19)
    eval_every: int | dict[str, int]
    targets: tuple[float, ...]  # train-loss targets for the cost-to-target tables and verdicts
    settings: dict[str, Any] = field(default_factory=dict)  # extra settings every run shares (subsets, eval sizes)
    # any other RunConfig field every run shares, e.g. {"input_scaling": "unit"} (raw inputs, protocol v2)
    run_settings: dict[str, Any] = field(default_factory=dict)
    # Side comparisons on the comparison's seeds, paired with its runs (same seed = same weights and data order):
    solver_optimizers: tuple[str, ...] = ()  # TR methods run again with solver "lanczos" (GLTR) vs the CG runs
    scaling_optimizers: tuple[str, ...] = ()  # TR methods run again with standardised inputs vs the raw-input runs
    scaling_target: float = 0.3  # train-loss target of the raw vs standardised section
    wall_seconds: float | None = None  # equal wall-time budget for the best TR vs the best first-order method
    wall_eval_epochs: float = 0.1  # evaluation cadence of that comparison (runs differ in steps per second)
    # Equal tuning effort (protocol v3, issue 19): the TR methods are swept too, on Δ₀ × η₁ with these factors
    # around the preset's values (3 × 3 = 9 configurations, as a baseline's 9 step sizes). None (protocol v2): the
    # TR methods run at the preset's fixed values, untuned.
    tr_grid: dict[str, tuple[float, ...]] | None = None

    def tr_hyperparameters(self, optimizer: str) -> dict[str, Any]:
        """TR settings of the paper's preset for this experiment (Table 1; the autoencoder's own values)."""
        for o in PRESETS[self.preset]["optimizers"]:
            if o["name"] == optimizer:
                return dict(o["hyperparameters"])
        raise ValueError(f"{optimizer!r} is not in preset {self.preset!r}")

    def tr_space(self, optimizer: str) -> dict[str, dict[str, list[float]]]:
        """The TR method's search space: each hyperparameter of ``tr_grid`` at its factors × the preset's value
        (the registry default where the preset sets none)."""
        from trainer.registry import OPTIMIZERS

        base = {**OPTIMIZERS[optimizer].defaults(), **self.tr_hyperparameters(optimizer)}
        return {k: {"values": [float(f"{base[k] * f:.3g}") for f in factors]}
                for k, factors in (self.tr_grid or {}).items()}

    def sweep_body(self) -> dict[str, Any]:
        """POST /api/sweeps: every first-order baseline on the step-size grid (and, with ``tr_grid``, every TR
        method on its Δ₀ × η₁ grid), full budget, tuning seeds."""
        tr = [{"name": o, "hyperparameters": {k: v for k, v in self.tr_hyperparameters(o).items()
                                              if k not in (self.tr_grid or {})}, "space": self.tr_space(o)}
              for o in TR_OPTIMIZERS] if self.tr_grid else []
        return {
            "name": f"reproduction {self.name}", "dataset": "fashion-mnist", "model": self.model,
            "budget": {"backprops": self.backprops}, "seeds": list(self.tuning_seeds),
            "optimizers": [{"name": BASELINES[k][0], "hyperparameters": dict(BASELINES[k][1]),
                            "space": {"lr": dict(self.grid)}} for k in self.first_order] + tr,
            "criterion": {"kind": "final_train_loss", "k": 3},
            "batch_sizes": {"first-order": self.batch_first_order, "second-order": self.batch_tr},
            "eval_every": self.eval_every, "device": "cpu", **self.settings, "run_settings": dict(self.run_settings),
        }

    def promote_body(self) -> dict[str, Any]:
        """POST /api/sweeps/{id}/promote: the winners (the TR methods' too when they were swept; else the three TR
        methods at the preset's settings), fresh seeds."""
        return {"seeds": list(self.seeds), "name": f"reproduction {self.name}",
                "extra_optimizers": [] if self.tr_grid else [{"name": o, "hyperparameters": self.tr_hyperparameters(o)}
                                                             for o in TR_OPTIMIZERS]}


    def side_body(self, what: str, optimizers: list[dict[str, Any]], *, budget: dict[str, Any] | None = None,
                  eval_every: Any = None, **run_settings: Any) -> dict[str, Any]:
        """POST /api/comparisons for a side comparison: the comparison's seeds, data and batch sizes, the given
        optimizers (name + hyperparameters), the backprop budget unless ``budget`` is given."""
        return {"name": f"reproduction {self.name} {what}", "dataset": "fashion-mnist", "model": self.model,
                "budget": budget or {"backprops": self.backprops}, "seeds": list(self.seeds), "optimizers": optimizers,
                "batch_sizes": {"first-order": self.batch_first_order, "second-order": self.batch_tr},
                "eval_every": self.eval_every if eval_every is None else eval_every, "device": "cpu",
                **self.settings, **{**self.run_settings, **run_settings}}

    def solver_body(self, tuned: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """The GLTR runs of the CG vs GLTR section (the CG runs are the comparison's own), at the TR settings the
        comparison uses (``tuned``: optimizer → the sweep winner's hyperparameters; default the preset's)."""
        if not self.solver_optimizers:
            return None
        hp = {o: (tuned or {}).get(o) or self.tr_hyperparameters(o) for o in self.solver_optimizers}
        return self.side_body("GLTR", [{"name": o, "hyperparameters": {**hp[o], "solver": "lanczos"}}
                                       for o in self.solver_optimizers])

    def scaling_body(self, tuned: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """The standardised-input runs of the raw vs standardised section (the raw runs are the comparison's own),
        at the comparison's TR settings (``tuned`` as in ``solver_body``)."""
        if not self.scaling_optimizers:
            return None
        return self.side_body("standardised inputs",
                              [{"name": o, "hyperparameters": (tuned or {}).get(o) or self.tr_hyperparameters(o)}
                               for o in self.scaling_optimizers], input_scaling="standardize")

    def wall_body(self, tr: dict[str, Any], first_order: dict[str, Any]) -> dict[str, Any] | None:
        """The equal wall-time comparison of the best TR method and the best first-order method (name +
        hyperparameters each, chosen from the comparison's results)."""
        if self.wall_seconds is None:
            return None
        return self.side_body("equal wall time", [tr, first_order], budget={"seconds": self.wall_seconds},
                              eval_every={"epochs": self.wall_eval_epochs})


_HALF_DECADES = {"low": 1e-4, "high": 1.0, "per_decade": 2}
# Δ₀ and η₁ at a tenth, once and ten times the preset's value: 9 TR configurations, as 9 step sizes per baseline
_TR_GRID = {"radius": (0.1, 1.0, 10.0), "eta1": (0.1, 1.0, 10.0)}

MLP = Experiment(
    name="mlp", title="Fashion-MNIST MLP 784-128-10 (tanh)", model="mlp", preset="paper-fmnist-mlp",
    backprops=5000, tuning_seeds=(0,), seeds=(1, 2, 3, 4, 5),
    first_order=("sgd", "sgd-momentum", "adagrad", "rmsprop", "adam"), grid=dict(_HALF_DECADES),
    batch_first_order=32, batch_tr=512, eval_every={"backprops": 20},
    targets=(0.5, 0.4, 0.3),
    settings={"eval_train_size": 2048, "test_subset": 2000},
    run_settings={"input_scaling": "unit"},  # raw pixels / 255, as the paper (trustlab's classifier default standardises)
    solver_optimizers=("tr-rmsprop",), scaling_optimizers=TR_OPTIMIZERS, scaling_target=0.3, wall_seconds=10.0,
    tr_grid=dict(_TR_GRID),
)

AUTOENCODER = Experiment(
    name="autoencoder", title="Fashion-MNIST autoencoder 784-1000-500-250-30 (20,000-image training subset)",
    model="autoencoder", preset="paper-fmnist-autoencoder",
    backprops=600, tuning_seeds=(0,), seeds=(1, 2, 3, 4, 5),  # v3: at least 5 paired seeds for any test
    # 9 step sizes (protocol v2 had 7, 1e-3..1, and RMSprop's best was its lower edge); the TR methods get 9 too
    first_order=("sgd", "sgd-momentum", "adagrad", "rmsprop"), grid=dict(_HALF_DECADES),
    batch_first_order=32, batch_tr=512, eval_every={"backprops": 10},
    targets=(0.5, 0.45, 0.4),
    settings={"train_subset": 20000, "eval_train_size": 1000, "test_subset": 1000, "num_reconstructions": 8},
    run_settings={"input_scaling": "unit"},  # the autoencoder's only scaling (targets in [0, 1]); stated explicitly
    tr_grid=dict(_TR_GRID),
)

EXPERIMENTS = {e.name: e for e in (MLP, AUTOENCODER)}


def quick(exp: Experiment) -> Experiment:
    """A tiny version to prove the pipeline works (seconds per run): 2 step sizes, 2 baselines, 2 radii per TR
    method, 3 fresh seeds."""
    return dataclasses.replace(
        exp, backprops=40, seeds=(1, 2, 3), first_order=exp.first_order[:2],
        grid={"low": 0.01, "high": 0.1, "per_decade": 1}, eval_every={"backprops": 5}, targets=(2.0, 1.5),
        settings={**exp.settings, "train_subset": 512, "eval_train_size": 256, "test_subset": 256},
        scaling_target=1.5, wall_seconds=None if exp.wall_seconds is None else 1.0, wall_eval_epochs=0.5,
        tr_grid={"radius": (1.0, 10.0)} if exp.tr_grid else None)
