"""Pure summaries of saved runs: cost to reach a loss target, mean ± std over seeds, markdown tables."""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Sequence

__all__ = ["cost_to_target", "mean_std", "format_mean_std", "group_by_optimizer", "target_table",
           "final_table", "markdown_table", "final_losses", "compare", "best_by_final_loss"]


def cost_to_target(evals: Sequence[dict[str, Any]], target: float, *, x: str = "backprops",
                   loss: str = "train_loss") -> float | None:
    """``x`` (backprops, epoch, wall_time) at the first evaluation whose ``loss`` is ≤ ``target``; None if never.

    Evaluations are taken in order; missing or non-finite losses never count as reaching the target.
    """
    for e in evals:
        v = e.get(loss)
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v) and v <= target:
            return float(e[x])
    return None


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample std, n) over the values that are not None; std is 0 for a single value."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0), len(xs)


def _fmt(v: float, digits: int) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"


def format_mean_std(values: Sequence[float | None], *, digits: int = 3) -> str:
    """"m ± s" over the values present; "(k/n)" appended when only k of n seeds have a value; "—" if none."""
    m, s, k = mean_std(values)
    n = len(values)
    if m is None:
        return "not reached" if n else "—"
    text = f"{_fmt(m, digits)} ± {_fmt(s or 0.0, 2)}" if k > 1 else _fmt(m, digits)
    if k < n:
        text += f" ({k}/{n} seeds)"
    return text


def group_by_optimizer(runs: Iterable[dict[str, Any]], order: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped by optimizer name in ``order`` (optimizers without runs are omitted), seeds sorted."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["optimizer"], []).append(r)
    return {o: sorted(groups[o], key=lambda r: r["seed"]) for o in order if o in groups}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def target_table(groups: dict[str, list[dict[str, Any]]], targets: Sequence[float], labels: dict[str, str], *,
                 x: str = "backprops", digits: int = 3) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per optimizer, mean ± std over seeds of ``x`` at which each train-loss target is reached."""
    header = ["optimizer"] + [f"loss ≤ {t:g}" for t in targets]
    rows = []
    for o, runs in groups.items():
        rows.append([labels.get(o, o)] + [
            format_mean_std([cost_to_target(r["evals"], t, x=x) for r in runs], digits=digits) for t in targets])
    return header, rows


def final_table(groups: dict[str, list[dict[str, Any]]], labels: dict[str, str], *, classifier: bool
                ) -> tuple[list[str], list[list[str]]]:
    """Header and rows: final evaluated train/test loss (and test accuracy), backprops, epochs, wall time."""
    header = ["optimizer", "batch", "step size", "final train loss", "final test loss"]
    if classifier:
        header.append("test accuracy")
    header += ["backprops", "epochs", "wall time (s)"]
    rows = []
    for o, runs in groups.items():
        last = [r["evals"][-1] if r["evals"] else {} for r in runs]
        lr = runs[0].get("lr")
        row = [labels.get(o, o), str(runs[0]["config"]["batch_size"]), "—" if lr is None else f"{lr:g}",
               format_mean_std([e.get("train_loss") for e in last], digits=4),
               format_mean_std([e.get("test_loss") for e in last], digits=4)]
        if classifier:
            row.append(format_mean_std([e.get("test_accuracy") for e in last], digits=3))
        row += [format_mean_std([r["summary"].get("backprops") for r in runs], digits=4),
                format_mean_std([r["summary"].get("epoch") for r in runs], digits=3),
                format_mean_std([r["summary"].get("wall_time") for r in runs], digits=3)]
        rows.append(row)
    return header, rows


def final_losses(runs: Sequence[dict[str, Any]], key: str = "train_loss") -> list[float | None]:
    """The last evaluation's ``key`` of each run."""
    return [(r["evals"][-1].get(key) if r["evals"] else None) for r in runs]


def compare(a_runs: Sequence[dict[str, Any]], b_runs: Sequence[dict[str, Any]], targets: Sequence[float], *,
            x: str = "backprops") -> dict[str, Any]:
    """Which of two optimizers (seeds as runs) reaches the loss targets with less ``x``.

    A target decides for A when every seed of A reaches it and either every seed of B reaches it with a
    larger mean ``x`` or some seed of B never reaches it (and symmetrically for B); targets reached by neither
    in every seed decide nothing. Returns the per-target decisions, the counts, the hardest (lowest) decided
    target, its means, and ``winner``: "a" / "b" when that side wins the hardest decided target and at least
    as many targets as the other, "mixed" otherwise, None when no target decided.
    """
    decisions = []
    for t in sorted(targets, reverse=True):
        xa = [cost_to_target(r["evals"], t, x=x) for r in a_runs]
        xb = [cost_to_target(r["evals"], t, x=x) for r in b_runs]
        a_all = bool(xa) and all(v is not None for v in xa)
        b_all = bool(xb) and all(v is not None for v in xb)
        ma, mb = mean_std(xa)[0], mean_std(xb)[0]
        if a_all and b_all:
            side = "a" if ma < mb else "b" if mb < ma else "tie"
        elif a_all:
            side = "a"
        elif b_all:
            side = "b"
        else:
            side = None
        decisions.append({"target": t, "a": ma, "b": mb, "a_reached": sum(v is not None for v in xa),
                          "b_reached": sum(v is not None for v in xb), "seeds_a": len(xa), "seeds_b": len(xb),
                          "side": side})
    decided = [d for d in decisions if d["side"] in ("a", "b")]
    wins_a = sum(d["side"] == "a" for d in decided)
    wins_b = sum(d["side"] == "b" for d in decided)
    hardest = decided[-1] if decided else None
    if hardest is None:
        winner = None
    elif hardest["side"] == "a" and wins_a >= wins_b:
        winner = "a"
    elif hardest["side"] == "b" and wins_b >= wins_a:
        winner = "b"
    else:
        winner = "mixed"
    return {"decisions": decisions, "wins_a": wins_a, "wins_b": wins_b, "hardest": hardest, "winner": winner,
            "final_a": mean_std(final_losses(a_runs))[0], "final_b": mean_std(final_losses(b_runs))[0]}


def best_by_final_loss(groups: dict[str, list[dict[str, Any]]], names: Sequence[str]) -> str | None:
    """Among ``names``, the optimizer with the lowest mean final evaluated train loss."""
    scored = [(mean_std(final_losses(groups[o]))[0], o) for o in names if o in groups]
    scored = [(m, o) for m, o in scored if m is not None]
    return min(scored)[1] if scored else None
