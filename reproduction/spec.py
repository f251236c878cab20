"""What `make reproduce` runs: experiments, budgets, the step-size grid, seeds and loss targets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.registry import OPTIMIZERS, PRESETS

__all__ = ["Experiment", "MLP", "AUTOENCODER", "EXPERIMENTS", "LR_GRID", "TR_OPTIMIZERS", "FIRST_ORDER",
           "RunSpec", "grid_runs", "main_runs", "LABELS"]

# Step sizes tried for every first-order method (the paper grid-searched but does not list its grid).
LR_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
TR_OPTIMIZERS = ("tr-uniform", "tr-adagrad", "tr-rmsprop")
LABELS = {name: info.label for name, info in OPTIMIZERS.items()}


@dataclass(frozen=True)
class Experiment:
    """One comparison: shared data/model settings, an equal backprop budget, the optimizers and seeds."""

    name: str
    title: str
    model: str
    preset: str
    backprops: int  # equal budget for every optimizer (gradients + HVPs)
    grid_backprops: int  # shorter budget of the step-size search (seed 0)
    seeds: tuple[int, ...]
    first_order: tuple[str, ...]
    batch_first_order: int
    batch_tr: int
    eval_every_first_order: int  # optimizer steps between evaluations
    eval_every_tr: int
    targets: tuple[float, ...]  # train-loss targets for the backprops-to-target table
    settings: dict[str, Any] = field(default_factory=dict)  # extra RunConfig fields (subsets, eval sizes)

    def tr_hyperparameters(self, optimizer: str) -> dict[str, Any]:
        """TR settings of the paper's preset for this experiment (Table 1; the autoencoder's own values)."""
        for o in PRESETS[self.preset]["optimizers"]:
            if o["name"] == optimizer:
                return dict(o["hyperparameters"])
        raise ValueError(f"{optimizer!r} is not in preset {self.preset!r}")


MLP = Experiment(
    name="mlp", title="Fashion-MNIST MLP 784-128-10 (tanh)", model="mlp", preset="paper-fmnist-mlp",
    backprops=7000, grid_backprops=1500, seeds=(0, 1, 2),
    first_order=("sgd", "adagrad", "rmsprop", "adam"), batch_first_order=32, batch_tr=512,
    eval_every_first_order=80, eval_every_tr=20,
    targets=(0.5, 0.4, 0.3, 0.25, 0.2),
    settings={"eval_train_size": 2048, "test_subset": 2000},
)

AUTOENCODER = Experiment(
    name="autoencoder", title="Fashion-MNIST autoencoder 784-1000-500-250-30 (20,000-image training subset)",
    model="autoencoder", preset="paper-fmnist-autoencoder",
    backprops=1000, grid_backprops=300, seeds=(0,),
    first_order=("sgd", "adagrad", "rmsprop"), batch_first_order=32, batch_tr=512,
    eval_every_first_order=40, eval_every_tr=8,
    targets=(0.5, 0.45, 0.4, 0.37),
    settings={"train_subset": 20000, "eval_train_size": 1000, "test_subset": 1000, "num_reconstructions": 8},
)

EXPERIMENTS = {e.name: e for e in (MLP, AUTOENCODER)}
FIRST_ORDER = ("sgd", "adagrad", "rmsprop", "adam")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the reproduction: where it is saved and its RunConfig."""

    experiment: str
    phase: str  # "grid" | "main"
    optimizer: str
    seed: int
    lr: float | None
    config: dict[str, Any]
    cost: float  # rough relative cost, to start the longest runs first

    @property
    def key(self) -> str:
        lr = "" if self.lr is None else f"_lr{self.lr:g}"
        return f"{self.optimizer}{lr}_s{self.seed}"


def _config(exp: Experiment, optimizer: str, seed: int, backprops: int, hyper: dict[str, Any],
            eval_every: int | None = None) -> dict[str, Any]:
    tr = OPTIMIZERS[optimizer].family == "second-order"
    return {
        "dataset": "fashion-mnist", "model": exp.model, "optimizer": {"name": optimizer, "hyperparameters": hyper},
        "budget": {"backprops": backprops}, "batch_size": exp.batch_tr if tr else exp.batch_first_order,
        "eval_every": eval_every or (exp.eval_every_tr if tr else exp.eval_every_first_order),
        "seed": seed, "device": "cpu", **exp.settings,
    }


_COST = {"mlp": 1.0, "autoencoder": 25.0}  # per backprop at batch 32 (TR batch 512 ≈ 5× more per backprop)


def grid_runs(exp: Experiment) -> list[RunSpec]:
    """Every first-order method at every step size of LR_GRID, seed 0, the shorter grid budget."""
    return [RunSpec(exp.name, "grid", o, 0, lr,
                    _config(exp, o, 0, exp.grid_backprops, {"lr": lr}, eval_every=10**6),
                    _COST[exp.model] * exp.grid_backprops)
            for o in exp.first_order for lr in LR_GRID]


def main_runs(exp: Experiment, chosen_lr: dict[str, float]) -> list[RunSpec]:
    """The comparison: TR with the preset's settings and first-order methods at their chosen step size."""
    out = []
    for seed in exp.seeds:
        for o in TR_OPTIMIZERS:
            out.append(RunSpec(exp.name, "main", o, seed, None,
                               _config(exp, o, seed, exp.backprops, exp.tr_hyperparameters(o)),
                               5 * _COST[exp.model] * exp.backprops))
        for o in exp.first_order:
            if o not in chosen_lr:
                continue
            out.append(RunSpec(exp.name, "main", o, seed, chosen_lr[o],
                               _config(exp, o, seed, exp.backprops, {"lr": chosen_lr[o]}),
                               _COST[exp.model] * exp.backprops))
    return out
