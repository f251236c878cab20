"""Results statistics of a comparison (pure numpy): smoothed finals, cost to a loss target, paired bootstrap verdicts.

Inputs are plain dicts, so the API, the UI's exports and `make reproduce` share one implementation:

    run = {"group": "Adam lr=0.001", "seed": 0, "status": "completed", "budget": {"backprops": 5000},
           "evals": [{"step", "backprops", "epoch", "wall_time", "train_loss", "test_loss", "test_accuracy"}, ...]}

Rules (issue 9, DESIGN.md rule 12): every figure says n; differences are paired by seed (same seed = same
initial weights and data order); intervals are percentile bootstrap intervals of the mean paired difference
with a seeded RNG and a stated level; a verdict is written only when the interval excludes zero, at least
``MIN_PAIRS`` seeds are paired and every seed of both groups reached the target (finished, for final values);
otherwise the sentence says "not resolved with n seeds". A run that stopped before reaching a target (budget
spent, cancelled, failed) is censored, never counted as slower; runs with unequal budgets are flagged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["AXES", "METRICS", "MIN_PAIRS", "finite", "smoothed_final", "final_value", "cost_to_target", "mean_std",
           "bootstrap_ci", "bootstrap_band", "paired_curves", "budget_summary", "Metric", "results", "results_rows", "results_csv",
           "results_markdown"]

MIN_PAIRS = 3  # fewer paired seeds than this never give a verdict (a bootstrap of 1-2 values says nothing)
AXES = {"backprops": "backprops", "epoch": "epochs", "wall_time": "wall time (s)"}
_BUDGET_AXIS = {"backprops": "backprops", "epochs": "epochs", "seconds": "wall time (s)"}


def finite(v: Any) -> float | None:
    """``v`` as a float when it is a finite number, else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def smoothed_final(evals: Sequence[Mapping[str, Any]], key: str = "train_loss", k: int = 3) -> float | None:
    """Mean of the last ``k`` evaluations' finite ``key`` values (fewer if the run has fewer); None if none."""
    if k < 1:
        raise ValueError(f"Invalid smoothing window k={k}: use k >= 1")
    values = [v for v in (finite(e.get(key)) for e in evals) if v is not None]
    return float(np.mean(values[-k:])) if values else None


def final_value(evals: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """The last evaluation's ``key`` when finite (the final test loss or accuracy); None otherwise."""
    return finite(evals[-1].get(key)) if evals else None


def cost_to_target(evals: Sequence[Mapping[str, Any]], target: float, *, axis: str = "backprops",
                   key: str = "train_loss") -> float | None:
    """``axis`` (backprops, epoch, wall_time) at the first evaluation with ``key`` ≤ ``target``; None if never."""
    for e in evals:
        v = finite(e.get(key))
        if v is not None and v <= target:
            return finite(e.get(axis))
    return None


def mean_std(values: Iterable[float | None]) -> dict[str, Any]:
    """{"mean", "std" (sample, ddof=1; 0 for one value), "n"} over the values that are not None."""
    xs = np.array([v for v in values if v is not None], dtype=np.float64)
    if xs.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(xs.mean()), "std": float(xs.std(ddof=1)) if xs.size > 1 else 0.0, "n": int(xs.size)}


def bootstrap_ci(diffs: Sequence[float], *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences.

    Resamples the n differences with replacement ``n_boot`` times (``numpy.random.default_rng(seed)``, so the
    same input gives the same interval) and returns the (1-level)/2 and (1+level)/2 quantiles of the means.
    """
    if not 0.5 <= level < 1:
        raise ValueError(f"Invalid confidence level {level}: use 0.5 <= level < 1")
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError("Invalid differences: need at least one, all finite")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_band(diffs: np.ndarray, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile bootstrap band of the mean over seeds (rows) of ``diffs`` (seeds × points): the seeds
    are resampled together, so each resample is a whole set of paired curves."""
    if not 0.5 <= level < 1:
        raise ValueError(f"Invalid confidence level {level}: use 0.5 <= level < 1")
    d = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.shape[0], size=(n_boot, d.shape[0]))
    means = d[idx].mean(axis=1)  # n_boot × points
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def paired_curves(runs: Sequence[Mapping[str, Any]], *, reference: str, axis: str = "backprops",
                  key: str = "train_loss", points: int = 100, level: float = 0.95, n_boot: int = 2000,
                  seed: int = 0) -> dict[str, Any]:
    """Per group, the paired difference (group − reference) of the evaluated ``key`` against ``axis``.

    For each seed both groups ran, both evaluation curves are linearly interpolated onto a common grid of
    ``points`` values from 0 to the smallest final ``axis`` value among all pairs (so every grid point has all
    n pairs); the curve is the mean difference over seeds with a pointwise bootstrap band.

    Returns {"reference", "axis", "key", "level", "groups": [{"group", "optimizer", "n", "x", "mean", "lo", "hi"}]};
    a group with no complete pair has n = 0 and empty lists.
    """
    if axis not in AXES:
        raise ValueError(f"Invalid axis {axis!r}: choose from {list(AXES)}")
    if not 2 <= points <= 2000:
        raise ValueError(f"Invalid points {points}: use 2..2000")

    def curve(run: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        pts = [(finite(e.get(axis)), finite(e.get(key))) for e in run.get("evals") or []]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if len(pts) < 2:
            return None
        xs, ys = np.array(pts).T
        order = np.argsort(xs, kind="stable")
        return xs[order], ys[order]

    by_group: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in runs:
        by_group.setdefault(r["group"], {})[r["seed"]] = r
    if reference not in by_group:
        raise ValueError(f"Invalid reference {reference!r}: choose one of {list(by_group)}")
    ref = {s: curve(r) for s, r in by_group[reference].items()}
    out = []
    for name, seeds in by_group.items():
        if name == reference:
            continue
        pairs = [(c, ref[s]) for s, r in seeds.items() if s in ref and ref[s] is not None
                 and (c := curve(r)) is not None]
        optimizer = next(iter(seeds.values())).get("optimizer")
        if not pairs:
            out.append({"group": name, "optimizer": optimizer, "n": 0, "x": [], "mean": [], "lo": [], "hi": []})
            continue
        end = min(min(a[0][-1], b[0][-1]) for a, b in pairs)
        grid = np.linspace(0.0, end, points)
        diffs = np.array([np.interp(grid, *a) - np.interp(grid, *b) for a, b in pairs])
        lo, hi = bootstrap_band(diffs, level=level, n_boot=n_boot, seed=seed)
        out.append({"group": name, "optimizer": optimizer, "n": len(pairs), "x": grid.tolist(), "mean": diffs.mean(axis=0).tolist(),
                    "lo": lo.tolist(), "hi": hi.tolist()})
    return {"reference": reference, "axis": axis, "key": key, "level": level, "groups": out}


def budget_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Which budget axis the runs share and whether their budgets are equal.

    Returns {"axis": "backprops" | "epochs" | "wall time (s)" | None, "equal": bool, "budgets": {group: budget},
    "note": a sentence}. Budgets are equal when every run has the same budget dict.
    """
    per_group: dict[str, dict[str, Any]] = {}
    distinct: list[dict[str, Any]] = []
    for r in runs:
        b = {k: v for k, v in (r.get("budget") or {}).items() if v is not None}
        per_group.setdefault(r["group"], b)
        if b not in distinct:
            distinct.append(b)
    if len(distinct) == 1 and len(distinct[0]) == 1:
        (name, value), = distinct[0].items()
        return {"axis": _BUDGET_AXIS.get(name, name), "equal": True, "budgets": per_group,
                "note": f"equal budgets in {_BUDGET_AXIS.get(name, name)}: {value:g} per run"}
    if len(distinct) == 1:
        parts = ", ".join(f"{_BUDGET_AXIS.get(k, k)} {v:g}" for k, v in distinct[0].items())
        return {"axis": None, "equal": True, "budgets": per_group,
                "note": f"equal budgets, the first limit reached ends a run ({parts})"}
    return {"axis": None, "equal": False, "budgets": per_group,
            "note": "UNEQUAL budgets: " + "; ".join(f"{g}: {b}" for g, b in per_group.items())
            + ". Final values are not compared; runs that stopped before a target are not counted as slower."}


@dataclass(frozen=True)
class Metric:
    """A per-run number the table reports: its name, how it is read, and which direction is better."""

    name: str
    label: str
    lower_is_better: bool
    target: float | None = None
    axis: str | None = None

    def value(self, run: Mapping[str, Any], k: int) -> float | None:
        evals = run.get("evals") or []
        if self.target is not None:
            return cost_to_target(evals, self.target, axis=self.axis or "backprops")
        if self.name == "final_train_loss":
            return smoothed_final(evals, "train_loss", k)
        return final_value(evals, self.name.removeprefix("final_"))

    @property
    def is_target(self) -> bool:
        return self.target is not None


METRICS = (Metric("final_train_loss", "smoothed final train loss", True),
           Metric("final_test_loss", "final test loss", True),
           Metric("final_test_accuracy", "final test accuracy", False))


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _paired(metric: Metric, runs: list[Mapping[str, Any]], ref_runs: list[Mapping[str, Any]], *, k: int,
            level: float, n_boot: int, seed: int, equal_budgets: bool, name: str, ref_name: str) -> dict[str, Any]:
    """Paired difference (this − reference) of ``metric`` over the seeds both groups have, with a verdict."""
    mine = {r["seed"]: r for r in runs}
    theirs = {r["seed"]: r for r in ref_runs}
    seeds = sorted(set(mine) & set(theirs))
    n = len(seeds)
    out: dict[str, Any] = {"metric": metric.name, "label": metric.label, "target": metric.target,
                           "axis": metric.axis, "n_seeds": n, "n_pairs": 0, "mean_diff": None, "ci": None,
                           "level": level, "verdict": None}
    pairs = []
    for s in seeds:
        a, b = metric.value(mine[s], k), metric.value(theirs[s], k)
        ok = (a is not None and b is not None
              and (metric.is_target or (mine[s]["status"] == "completed" and theirs[s]["status"] == "completed")))
        if ok:
            pairs.append(a - b)
    out["n_pairs"] = len(pairs)
    what = (f"{AXES[metric.axis or 'backprops']} to train loss ≤ {metric.target:g}" if metric.is_target
            else metric.label)
    if pairs:
        out["mean_diff"] = float(np.mean(pairs))
        out["ci"] = list(bootstrap_ci(pairs, level=level, n_boot=n_boot, seed=seed))
    pct = f"{level:.0%}"
    interval = (f"mean difference {_fmt(out['mean_diff'])}, {pct} CI [{_fmt(out['ci'][0])}, {_fmt(out['ci'][1])}]"
                if pairs else "no paired values")
    reasons = []
    if n < MIN_PAIRS:
        reasons.append(f"a verdict needs at least {MIN_PAIRS} paired seeds")
    if len(pairs) < n:
        reasons.append(f"only {len(pairs)}/{n} seeds reached the target in both" if metric.is_target
                       else f"only {len(pairs)}/{n} seed pairs completed")
    if not metric.is_target and not equal_budgets:
        reasons.append("budgets are unequal")
    if pairs and out["ci"][0] <= 0 <= out["ci"][1]:
        reasons.append("the interval includes zero")
    if reasons:
        out["sentence"] = (f"{name} vs {ref_name}, {what}: not resolved with {n} seeds ({interval}; "
                           + "; ".join(reasons) + ").")
        return out
    better = (out["mean_diff"] < 0) == metric.lower_is_better
    if metric.is_target:
        word = ("less" if better else "more") if metric.axis == "wall_time" else ("fewer" if better else "more")
        out["verdict"] = "better" if better else "worse"
        out["sentence"] = (f"{name} reaches train loss ≤ {metric.target:g} in {word} {AXES[metric.axis or 'backprops']}"
                           f" than {ref_name}: {interval}, {n}/{n} seeds reached it in both.")
    else:
        word = ("lower" if out["mean_diff"] < 0 else "higher")
        out["verdict"] = "better" if better else "worse"
        out["sentence"] = f"{name} has a {word} {metric.label} than {ref_name}: {interval}, n = {n} paired seeds."
    return out


def results(runs: Sequence[Mapping[str, Any]], *, reference: str | None = None, targets: Sequence[float] = (),
            axes: Sequence[str] = ("backprops", "epoch", "wall_time"), k: int = 3, level: float = 0.95,
            n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """The results table of a comparison: per group per-seed values, mean ± std, costs to targets with k/n
    seeds reached, and paired differences against ``reference`` (a group name; default the first group).

    Raises:
        ValueError: ``reference`` names no group, or an axis is unknown.
    """
    for a in axes:
        if a not in AXES:
            raise ValueError(f"Invalid axis {a!r}: choose from {list(AXES)}")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["group"], []).append(r)
    for g in groups.values():
        g.sort(key=lambda r: r["seed"])
    if not groups:
        return {"reference": reference, "groups": [], "verdicts": [], "budget": budget_summary([]),
                "targets": list(targets), "k": k, "level": level, "n_boot": n_boot, "bootstrap_seed": seed}
    ref = reference if reference is not None else next(iter(groups))
    if ref not in groups:
        raise ValueError(f"Invalid reference {ref!r}: choose one of {list(groups)}")
    budget = budget_summary(runs)
    out_groups, verdicts = [], []
    for name, gruns in groups.items():
        per_seed = []
        for r in gruns:
            row = {"seed": r["seed"], "run_id": r.get("run_id"), "status": r["status"],
                   **{m.name: m.value(r, k) for m in METRICS},
                   "to_target": {f"{t:g}": {a: cost_to_target(r.get("evals") or [], t, axis=a) for a in axes}
                                 for t in targets}}
            per_seed.append(row)
        completed = [p for p in per_seed if p["status"] == "completed"]
        entry: dict[str, Any] = {
            "group": name, "optimizer": gruns[0].get("optimizer"), "n": len(gruns),
            "statuses": {s: sum(p["status"] == s for p in per_seed) for s in sorted({p["status"] for p in per_seed})},
            "per_seed": per_seed,
            # finals over completed runs only: a cancelled or failed run's last value is not a final value
            **{m.name: mean_std(p[m.name] for p in completed) for m in METRICS},
            "targets": [{"target": t, "reached": sum(p["to_target"][f"{t:g}"][axes[0]] is not None for p in per_seed),
                         "n": len(per_seed),
                         **{a: mean_std(p["to_target"][f"{t:g}"][a] for p in per_seed) for a in axes}}
                        for t in targets],
            "paired": [],
        }
        if name != ref:
            metrics = list(METRICS) + [Metric(f"{a}_to_{t:g}", f"{AXES[a]} to train loss ≤ {t:g}", True, t, a)
                                       for t in targets for a in axes]
            for m in metrics:
                p = _paired(m, gruns, groups[ref], k=k, level=level, n_boot=n_boot, seed=seed,
                            equal_budgets=budget["equal"], name=name, ref_name=ref)
                entry["paired"].append(p)
                verdicts.append(p["sentence"])
        out_groups.append(entry)
    return {"reference": ref, "groups": out_groups, "verdicts": verdicts, "budget": budget, "targets": list(targets),
            "axes": list(axes), "k": k, "level": level, "n_boot": n_boot, "bootstrap_seed": seed}


def _ms(s: Mapping[str, Any], n: int) -> str:
    if s["mean"] is None:
        return "—"
    text = f"{_fmt(s['mean'])} ± {_fmt(s['std'])}" if s["n"] > 1 else _fmt(s["mean"])
    return f"{text} (n={s['n']})" if s["n"] == n else f"{text} ({s['n']}/{n})"


def results_rows(res: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The table as strings: one row per group (mean ± std, k/n reached, the paired interval of the final loss)."""
    axes = res.get("axes") or ["backprops"]
    header = ["optimizer", "seeds", "smoothed final train loss", "final test loss", "final test accuracy"]
    header += [f"{AXES[axes[0]]} to loss ≤ {t:g}" for t in res["targets"]]
    header += [f"Δ final train loss vs {res['reference']} ({res['level']:.0%} CI)"]
    rows = []
    for g in res["groups"]:
        n = g["n"]
        row = [g["group"], str(n)] + [_ms(g[m.name], n) for m in METRICS]
        for t in g["targets"]:
            row.append(f"{_ms(t[axes[0]], t['n']) if t['reached'] else 'not reached'} [{t['reached']}/{t['n']} reached]")
        ref_pair = next((p for p in g["paired"] if p["metric"] == "final_train_loss"), None)
        if ref_pair is None:
            row.append("reference")
        elif ref_pair["ci"] is None:
            row.append("—")
        else:
            row.append(f"{_fmt(ref_pair['mean_diff'])} [{_fmt(ref_pair['ci'][0])}, {_fmt(ref_pair['ci'][1])}]")
        rows.append(row)
    return header, rows


def results_csv(res: Mapping[str, Any]) -> str:
    """One line per run (group, seed, status, finals, cost to each target on each axis): the raw numbers."""
    import csv
    import io

    axes = res.get("axes") or ["backprops"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [f"{a}_to_{t:g}" for t in res["targets"] for a in axes]
    w.writerow(["group", "seed", "run_id", "status"] + [m.name for m in METRICS] + cols)
    for g in res["groups"]:
        for p in g["per_seed"]:
            w.writerow([g["group"], p["seed"], p["run_id"], p["status"]]
                       + ["" if p[m.name] is None else repr(p[m.name]) for m in METRICS]
                       + ["" if p["to_target"][f"{t:g}"][a] is None else repr(p["to_target"][f"{t:g}"][a])
                          for t in res["targets"] for a in axes])
    return buf.getvalue()


def results_markdown(res: Mapping[str, Any]) -> str:
    """A Markdown table to paste into a paper, with the budget note and the verdict sentences under it."""
    header, rows = results_rows(res)
    esc = [[c.replace("|", "\\|") for c in r] for r in [header] + rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    lines += ["", f"Budget: {res['budget']['note']}. Mean ± sample std over seeds; smoothed final = mean of the "
                  f"last {res['k']} evaluations; intervals: {res['level']:.0%} percentile bootstrap of the mean "
                  f"paired difference (pairs by seed, {res['n_boot']} resamples, RNG seed {res['bootstrap_seed']}).",
              ""]
    lines += [f"- {v}" for v in res["verdicts"]]
    return "\n".join(lines) + "\n"
