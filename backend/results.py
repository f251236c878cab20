"""Read a comparison's runs and evaluations from the store into the plain dicts backend.stats summarises.

Runs are grouped by their stored ``group_key`` (trainer.identity) and nothing else; the label only names a group.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import stats, store
from backend.tables import Run
from trainer.identity import group_key_of_stored

__all__ = ["group_name", "group_names", "stat_runs", "comparison_results", "comparison_paired_curves"]

_SEED_SUFFIX = re.compile(r" \(seed \d+\)$")


def group_name(label: str) -> str:
    """A run's label without its seed ("Adam lr=0.001 (seed 3)" → "Adam lr=0.001"): how a group is *written*.
    Grouping never uses it (``Run.group_key`` does)."""
    return _SEED_SUFFIX.sub("", label)


def group_names(runs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """group_key → display name for (group_key, label) pairs: the first run's label without its seed; two groups
    that would read the same get their key's first 6 digits appended ("Adam lr=0.001 [a73195]")."""
    first: dict[str, str] = {}
    for key, label in runs:
        first.setdefault(key, group_name(label))
    counts: dict[str, int] = {}
    for name in first.values():
        counts[name] = counts.get(name, 0) + 1
    return {k: (f"{n} [{k[:6]}]" if counts[n] > 1 else n) for k, n in first.items()}


def _key(run: Run) -> str:
    return run.group_key or group_key_of_stored(run.config or {})


def stat_runs(session: Session, runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One dict per run with what backend.stats needs: group (the group key), name, seed, status, budget and
    evaluations."""
    conn = session.connection()
    names = group_names([(_key(r), r.label) for r in runs])
    return [{"group": _key(r), "name": names[_key(r)], "optimizer": r.optimizer, "seed": r.seed, "status": r.status,
             "run_id": r.id, "budget": (r.config or {}).get("budget") or {},
             "hyperparameters": ((r.config or {}).get("optimizer") or {}).get("hyperparameters") or {},
             "evals": store.evaluations(conn, r.id)} for r in runs]


def _comparison_data(session: Session, comparison_id: int, reference: str | None
                     ) -> tuple[list[dict[str, Any]], str | None]:
    """The comparison's runs for stats, and ``reference`` resolved to a group key: a group key, a group's name, or
    an optimizer name (its first group), or None (the first group). Raises ValueError naming the choices when it
    matches nothing."""
    runs = session.scalars(select(Run).where(Run.comparison_id == comparison_id).order_by(Run.id)).all()
    data = stat_runs(session, runs)
    groups = list(dict.fromkeys(d["group"] for d in data))
    if reference is None:
        return data, groups[0] if groups else None
    if reference not in groups:
        matches = ([d["group"] for d in data if d["name"] == reference]
                   or [d["group"] for d in data if d["optimizer"] == reference])
        if not matches:
            names = list(dict.fromkeys(d["name"] for d in data))
            raise ValueError(f"Invalid reference {reference!r}: choose a group ({names}), a group key ({groups}) or "
                             f"an optimizer name ({sorted({d['optimizer'] for d in data})})")
        reference = matches[0]
    return data, reference


def comparison_results(session: Session, comparison_id: int, *, reference: str | None, targets: Sequence[float],
                       k: int, level: float, n_boot: int = 10_000) -> dict[str, Any]:
    """backend.stats.results over the comparison's runs (``reference`` as in ``_comparison_data``)."""
    data, reference = _comparison_data(session, comparison_id, reference)
    out = stats.results(data, reference=reference, targets=targets, k=k, level=level, n_boot=n_boot)
    out["comparison_id"] = comparison_id
    tuning = tuning_budgets(session, comparison_id, data)
    for g in out["groups"]:
        g["tuning"] = tuning.get(g["group_key"], _UNTUNED)
    return out


_UNTUNED: dict[str, Any] = {"configurations": 1, "tuned": False, "sweep_id": None, "space": {},
            "note": "not tuned here: 1 configuration (fixed values)"}


def _edges(values: list[Any]) -> list[Any]:
    nums = sorted(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))
    return [nums[0], nums[-1]] if nums else list(values)


def tuning_budgets(session: Session, comparison_id: int, data: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """group_key → how much tuning its setting got, for a comparison promoted from a sweep: the configurations
    its sweep entry tried, the tuning seeds, and each swept hyperparameter's grid edges. A group matches the entry
    with the same optimizer whose winner's hyperparameters it has (the most specific entry wins: SGD+momentum
    over SGD). Groups without a sweep entry are "not tuned here"."""
    from backend.sweep_store import sweep_view
    from backend.tables import Comparison, Sweep

    comparison = session.get(Comparison, comparison_id)
    sweep_id = ((comparison.spec if comparison is not None else None) or {}).get("promoted_from_sweep")
    sweep = session.get(Sweep, sweep_id) if sweep_id is not None else None
    if sweep is None:
        return {}
    view = sweep_view(session, sweep)
    seeds = (sweep.spec or {}).get("seeds") or []
    out: dict[str, dict[str, Any]] = {}
    for d in data:
        matches = [o for o in view["optimizers"] if o["name"] == d["optimizer"] and o["best"] is not None
                   and all(d["hyperparameters"].get(k) == v for k, v in o["best"]["hyperparameters"].items())]
        if not matches:
            continue
        o = max(matches, key=lambda o: len(o["hyperparameters"]))
        space = {k: _edges(v) for k, v in o["space"].items()}
        grid = "; ".join(f"{k} {v[0]:g}..{v[-1]:g}" if len(v) == 2 else f"{k} {v}" for k, v in space.items())
        out[d["group"]] = {"configurations": len(o["points"]), "tuned": True, "sweep_id": sweep.id,
                           "tuning_seeds": len(seeds), "space": space,
                           "note": f"{len(o['points'])} configurations × {len(seeds)} tuning seed(s) ({grid})"}
    return out


def comparison_paired_curves(session: Session, comparison_id: int, *, reference: str | None, axis: str,
                             points: int, level: float) -> dict[str, Any]:
    """backend.stats.paired_curves of the evaluated train loss over the comparison's runs."""
    data, reference = _comparison_data(session, comparison_id, reference)
    if reference is None:
        return {"reference": None, "axis": axis, "key": "train_loss", "level": level, "groups": []}
    return stats.paired_curves(data, reference=reference, axis=axis, points=points, level=level)
