"""The report's verdict rules and its paired side sections (CG vs GLTR, raw vs standardised, equal wall time).

Pure functions over results tables (backend.stats.results) and saved run records; the statistics themselves are
the product's (backend.stats), so the report and the API agree. Verdict rule (issue 19, backend.stats): a sentence
is written only for a resolved comparison (exact sign-flip test, Holm over the table, >= 5 paired seeds, a
difference beyond its practical-equivalence margin, or "no practical difference"); wall time is never compared inside an equal-backprop comparison, where one method may have
stopped long before the other: wall-time verdicts come only from a comparison with equal wall-time budgets.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from backend import stats
from reproduction.analysis import markdown_table

__all__ = ["stat_runs", "findings", "per_seed_table", "paired_pair", "hvps_per_step", "solver_section",
           "scaling_section", "wall_findings"]


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def stat_runs(records: Iterable[Mapping[str, Any]], group: str) -> list[dict[str, Any]]:
    """Saved run records as backend.stats inputs, all in one ``group``."""
    return [{"group": group, "optimizer": r["optimizer"], "seed": r["seed"],
             "status": (r.get("summary") or {}).get("status"), "run_id": r.get("run_id"),
             "budget": (r.get("config") or {}).get("budget") or {}, "evals": r.get("evals") or []} for r in records]


def findings(res: Mapping[str, Any], axes: Sequence[str] = ("backprops",),
             finals: Sequence[str] | None = None) -> tuple[list[str], int]:
    """The resolved verdict sentences of a results table, for final values (those named in ``finals``, default
    all) and for targets on ``axes`` only, and how many other paired comparisons of those were not resolved."""
    resolved, unresolved = [], 0
    for g in res["groups"]:
        for p in g["paired"]:
            if p.get("target") is not None and p.get("axis") not in axes:
                continue
            if p.get("target") is None and finals is not None and p["metric"] not in finals:
                continue
            if p.get("verdict"):
                resolved.append(p["sentence"])
            else:
                unresolved += 1
    return resolved, unresolved


def per_seed_table(res: Mapping[str, Any], axis: str = "backprops") -> str:
    """One row per group: the per-seed smoothed final train loss and ``axis`` to each target ("—" = not
    reached within the budget), seeds in order, so every mean in the report can be checked seed by seed."""
    targets = res.get("targets") or []
    header = ["optimizer", "seeds", "smoothed final train loss per seed"]
    header += [f"{stats.AXES[axis]} to loss ≤ {t:g} per seed" for t in targets]
    rows = []
    for g in res["groups"]:
        ps = g["per_seed"]
        row = [g["group"], ", ".join(str(p["seed"]) for p in ps),
               ", ".join(_fmt(p["final_train_loss"]) for p in ps)]
        row += [", ".join(_fmt(p["to_target"][f"{t:g}"].get(axis)) for p in ps) for t in targets]
        rows.append(row)
    return markdown_table(header, rows)


def paired_pair(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], *, a_name: str, b_name: str,
                targets: Sequence[float], k: int = 3) -> dict[str, Any]:
    """backend.stats.results of two sets of records (``a`` the reference), paired by seed, backprops axis."""
    return stats.results(stat_runs(a, a_name) + stat_runs(b, b_name), reference=a_name, targets=targets,
                         axes=("backprops",), k=k)


def hvps_per_step(record: Mapping[str, Any]) -> float | None:
    """Hessian-vector products per optimizer step of a run (its summary's totals)."""
    s = record.get("summary") or {}
    hv, steps = stats.finite(s.get("hvps")), stats.finite(s.get("steps"))
    return hv / steps if hv is not None and steps else None


def _paired_interval(a: Mapping[int, float | None], b: Mapping[int, float | None]) -> dict[str, Any]:
    """Mean paired difference b − a over the seeds where both have a value; from ``stats.MIN_PAIRS`` pairs on, its
    paired t-interval and exact sign-flip p (backend.stats.paired_test; a family of one comparison)."""
    diffs = [b[s] - a[s] for s in sorted(set(a) & set(b)) if a[s] is not None and b[s] is not None]
    if not diffs:
        return {"n": 0, "mean": None, "ci": None, "p": None}
    if len(diffs) < stats.MIN_PAIRS:
        return {"n": len(diffs), "mean": sum(diffs) / len(diffs), "ci": None, "p": None}
    t = stats.paired_test(diffs)
    return {"n": t["n"], "mean": t["mean"], "ci": t["ci"], "p": t["p"]}


def solver_section(cg: Sequence[Mapping[str, Any]], gltr: Sequence[Mapping[str, Any]], *, label: str,
                   targets: Sequence[float], k: int = 3) -> dict[str, Any]:
    """CG vs GLTR (same stopping rule) for one TR method: the results table (reference CG), HVPs per step per
    seed with its paired difference, a Markdown table and the resolved sentences."""
    a, b = f"{label}, CG", f"{label}, GLTR"
    res = paired_pair(cg, gltr, a_name=a, b_name=b, targets=targets, k=k)
    hv_a = {r["seed"]: hvps_per_step(r) for r in cg}
    hv_b = {r["seed"]: hvps_per_step(r) for r in gltr}
    hv = _paired_interval(hv_a, hv_b)
    ga, gb = res["groups"][0], res["groups"][1] if len(res["groups"]) > 1 else None
    loss = next((p for p in (gb or {"paired": []})["paired"] if p["metric"] == "final_train_loss"), None)
    rows = []
    for name, g, hvs in ((a, ga, hv_a), (b, gb, hv_b)):
        if g is None:
            continue
        rows.append([name, str(g["n"]), ", ".join(_fmt(p["final_train_loss"]) for p in g["per_seed"]),
                     ", ".join(_fmt(hvs.get(p["seed"])) for p in g["per_seed"])])
    diff_row = ["GLTR − CG (paired, 95% CI)", str(hv["n"]),
                "—" if loss is None or loss["ci"] is None else
                f"{_fmt(loss['mean_diff'])} [{_fmt(loss['ci'][0])}, {_fmt(loss['ci'][1])}]",
                "—" if hv["ci"] is None else f"{_fmt(hv['mean'])} [{_fmt(hv['ci'][0])}, {_fmt(hv['ci'][1])}]"]
    table = markdown_table(["solver", "seeds", "smoothed final train loss per seed (equal backprops)",
                            "HVPs per step per seed"], rows + [diff_row])
    sentences, unresolved = findings(res)
    if hv["ci"] is not None and hv["n"] == len(hv_a) == len(hv_b) and hv["p"] <= 0.05 \
            and not hv["ci"][0] <= 0 <= hv["ci"][1]:
        sentences.append(f"{b} uses {'more' if hv['mean'] > 0 else 'fewer'} HVPs per step than {a}: mean "
                         f"difference {_fmt(hv['mean'])}, 95% paired t-interval [{_fmt(hv['ci'][0])}, "
                         f"{_fmt(hv['ci'][1])}]; exact sign-flip permutation test p = {hv['p']:.2g} (a comparison "
                         f"of its own), n = {hv['n']} paired seeds.")
    else:
        unresolved += 1
    return {"results": res, "hvps": hv, "table": table, "sentences": sentences, "unresolved": unresolved}


def scaling_section(raw: Sequence[Mapping[str, Any]], standardised: Sequence[Mapping[str, Any]], *, label: str,
                    target: float, k: int = 3) -> dict[str, Any]:
    """Raw vs standardised inputs for one TR method: backprops to train loss ≤ ``target`` per seed with k/n
    seeds reached, the paired difference (standardised − raw) and the resolved sentences."""
    a, b = f"{label}, raw inputs", f"{label}, standardised inputs"
    res = paired_pair(raw, standardised, a_name=a, b_name=b, targets=[target], k=k)
    cells = []
    for g in res["groups"]:
        t = g["targets"][0]
        per = ", ".join(_fmt(p["to_target"][f"{target:g}"]["backprops"]) for p in g["per_seed"])
        mean = t["backprops"]
        cells.append((g["group"], f"{t['reached']}/{t['n']}",
                      "not reached" if mean["mean"] is None else
                      (f"{_fmt(mean['mean'])} ± {_fmt(mean['std'])}" if mean["n"] > 1 else f"{_fmt(mean['mean'])} ± —")
                      + (f" (over {mean['n']})" if mean["n"] < t["n"] else ""),
                      per))
    pair = next((p for g in res["groups"] for p in g["paired"]
                 if p["metric"] == f"backprops_to_{target:g}"), None)
    sentences, unresolved = findings(res)
    return {"results": res, "cells": cells, "paired": pair, "sentences": sentences, "unresolved": unresolved}


def wall_findings(res: Mapping[str, Any], finals: Sequence[str] | None = None) -> tuple[list[str], int]:
    """Verdicts of an equal wall-time comparison: only the final values (every run had the same seconds)."""
    if (res.get("budget") or {}).get("axis") != stats.AXES["wall_time"]:
        raise ValueError("Invalid wall-time comparison: its runs need equal budgets in seconds")
    return findings(res, axes=(), finals=finals)
