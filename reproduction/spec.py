"""What `make reproduce` runs (issue 10's protocol v2): experiments, budgets, step-size grids, seeds, targets.

Every experiment is a sweep (first-order baselines, SGD+momentum included, on a half-decade step-size grid with
the full budget, tuning seed 0) promoted to a comparison of the winners and the three TR methods on fresh seeds;
the statistics come from the product's results machinery (backend.stats through the API).
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
    eval_every: int  # optimizer steps between evaluations
    targets: tuple[float, ...]  # train-loss targets for the cost-to-target tables and verdicts
    settings: dict[str, Any] = field(default_factory=dict)  # extra settings every run shares (subsets, eval sizes)
    # any other RunConfig field every run shares, e.g. {"input_scaling": "unit"} (raw inputs, protocol v2)
    run_settings: dict[str, Any] = field(default_factory=dict)

    def tr_hyperparameters(self, optimizer: str) -> dict[str, Any]:
        """TR settings of the paper's preset for this experiment (Table 1; the autoencoder's own values)."""
        for o in PRESETS[self.preset]["optimizers"]:
            if o["name"] == optimizer:
                return dict(o["hyperparameters"])
        raise ValueError(f"{optimizer!r} is not in preset {self.preset!r}")

    def sweep_body(self) -> dict[str, Any]:
        """POST /api/sweeps: every first-order baseline on the step-size grid, full budget, tuning seeds."""
        return {
            "name": f"reproduction {self.name}", "dataset": "fashion-mnist", "model": self.model,
            "budget": {"backprops": self.backprops}, "seeds": list(self.tuning_seeds),
            "optimizers": [{"name": BASELINES[k][0], "hyperparameters": dict(BASELINES[k][1]),
                            "space": {"lr": dict(self.grid)}} for k in self.first_order],
            "criterion": {"kind": "final_train_loss", "k": 3},
            "batch_sizes": {"first-order": self.batch_first_order, "second-order": self.batch_tr},
            "eval_every": self.eval_every, "device": "cpu", **self.settings, "run_settings": dict(self.run_settings),
        }

    def promote_body(self) -> dict[str, Any]:
        """POST /api/sweeps/{id}/promote: the winners plus the three TR methods (preset settings), fresh seeds."""
        return {"seeds": list(self.seeds), "name": f"reproduction {self.name}",
                "extra_optimizers": [{"name": o, "hyperparameters": self.tr_hyperparameters(o)}
                                     for o in TR_OPTIMIZERS]}


_HALF_DECADES = {"low": 1e-4, "high": 1.0, "per_decade": 2}

MLP = Experiment(
    name="mlp", title="Fashion-MNIST MLP 784-128-10 (tanh)", model="mlp", preset="paper-fmnist-mlp",
    backprops=5000, tuning_seeds=(0,), seeds=(1, 2, 3, 4, 5),
    first_order=("sgd", "sgd-momentum", "adagrad", "rmsprop", "adam"), grid=dict(_HALF_DECADES),
    batch_first_order=32, batch_tr=512, eval_every=20,
    targets=(0.5, 0.4, 0.3),
    settings={"eval_train_size": 2048, "test_subset": 2000},
    run_settings={"input_scaling": "unit"},  # raw pixels / 255, as the paper (trustlab's classifier default standardises)
)

AUTOENCODER = Experiment(
    name="autoencoder", title="Fashion-MNIST autoencoder 784-1000-500-250-30 (20,000-image training subset)",
    model="autoencoder", preset="paper-fmnist-autoencoder",
    backprops=600, tuning_seeds=(0,), seeds=(1, 2, 3),
    first_order=("sgd", "sgd-momentum", "adagrad", "rmsprop"), grid={"low": 1e-3, "high": 1.0, "per_decade": 2},
    batch_first_order=32, batch_tr=512, eval_every=10,
    targets=(0.5, 0.45, 0.4),
    settings={"train_subset": 20000, "eval_train_size": 1000, "test_subset": 1000, "num_reconstructions": 8},
    run_settings={"input_scaling": "unit"},  # the autoencoder's only scaling (targets in [0, 1]); stated explicitly
)

EXPERIMENTS = {e.name: e for e in (MLP, AUTOENCODER)}


def quick(exp: Experiment) -> Experiment:
    """A tiny version to prove the pipeline works (seconds per run): 2 step sizes, 2 baselines, 3 fresh seeds."""
    return dataclasses.replace(
        exp, backprops=40, seeds=(1, 2, 3), first_order=exp.first_order[:2],
        grid={"low": 0.01, "high": 0.1, "per_decade": 1}, eval_every=5, targets=(2.0, 1.5),
        settings={**exp.settings, "train_subset": 512, "eval_train_size": 256, "test_subset": 256})
