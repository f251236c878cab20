"""Pure helpers of the Sweep page: the entries of a sweep preset and the POST /api/sweeps body built from the form."""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["entry_label", "sweep_request", "default_name", "CRITERIA"]

CRITERIA = {"final_train_loss": "smoothed final train loss (lowest)", "final_test_accuracy": "final test accuracy "
            "(highest)", "backprops_to_target": "backprops to a train-loss target (fewest)"}


def entry_label(entry: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """"SGD", "SGD+momentum (momentum=0.9)": the entry's label (the API names variants) or the optimizer's, and
    its fixed hyperparameters."""
    fixed = entry.get("hyperparameters") or {}
    name = entry.get("label") or labels.get(entry["name"], entry["name"])
    return name + (f" ({', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in fixed.items())})"
                   if fixed else "")


_PER_DECADE_WORDS = {1: "decades", 2: "half decades", 3: "third decades"}


def default_name(preset: Mapping[str, Any], low: float, high: float, per_decade: int) -> str:
    """The preset's label with the step-size grid actually chosen: "Fashion-MNIST MLP: first-order step-size grid
    (half decades 0.001..0.1)" (the preset's own label names its default grid, 1e-4..1)."""
    head = str(preset.get("label") or "sweep").split(" (")[0]
    steps = _PER_DECADE_WORDS.get(int(per_decade), f"{int(per_decade)} points per decade")
    return f"{head} ({steps} {float(low):g}..{float(high):g})"


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(";", ",").split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"Invalid tuning seeds {text!r}: give integers separated by commas, e.g. 0, 1") from None
    if not seeds:
        raise ValueError("Invalid tuning seeds: give at least one, e.g. 0")
    return seeds


def sweep_request(preset: Mapping[str, Any], state: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """The sweep body: the chosen preset entries, each with its own space but the step-size range of the form
    (lr from ``low`` to ``high`` with ``per_decade`` points), the budget, seeds, subset and criterion.

    Raises:
        ValueError: no optimizer chosen, bad seeds, or a target criterion without a target.
    """
    chosen = [e for e in preset["optimizers"] if entry_label(e, labels) in state["entries"]]
    if not chosen:
        raise ValueError("Pick at least one optimizer to sweep")
    lr_space = {"low": float(state["low"]), "high": float(state["high"]), "per_decade": int(state["per_decade"])}
    optimizers = []
    for e in chosen:
        space = {k: (lr_space if k == "lr" else v) for k, v in (e.get("space") or {"lr": lr_space}).items()}
        optimizers.append({"name": e["name"], "hyperparameters": dict(e.get("hyperparameters") or {}), "space": space})
    criterion: dict[str, Any] = {"kind": state["criterion"], "k": int(state.get("k", 3))}
    if state["criterion"] == "backprops_to_target":
        if not state.get("target"):
            raise ValueError("The criterion 'backprops to a target' needs a train-loss target")
        criterion["target"] = float(state["target"])
    body: dict[str, Any] = {
        "name": state["name"] or default_name(preset, state["low"], state["high"], state["per_decade"]),
        "dataset": preset["dataset"], "model": preset["model"],
        # the API's types are strict: a backprops budget is an integer (a number input gives 100.0)
        "budget": {state["budget_kind"]: int(state["budget"]) if state["budget_kind"] == "backprops"
                   else float(state["budget"])}, "seeds": _seeds(state["seeds"]),
        "optimizers": optimizers, "criterion": criterion, "batch_sizes": preset.get("batch_sizes"),
    }
    if state.get("train_subset"):
        body["train_subset"] = int(state["train_subset"])
    if state.get("eval_every"):
        body["eval_every"] = int(state["eval_every"])
    return body
