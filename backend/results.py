"""Read a comparison's runs and evaluations from the store into the plain dicts backend.stats summarises."""
from __future__ import annotations

import re
from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import stats, store
from backend.tables import Run

__all__ = ["group_name", "stat_runs", "comparison_results", "comparison_paired_curves"]

_SEED_SUFFIX = re.compile(r" \(seed \d+\)$")


def group_name(label: str) -> str:
    """A run's label without its seed ("Adam lr=0.001 (seed 3)" → "Adam lr=0.001"): runs of one group differ
    only by seed, so the same optimizer with two settings (SGD and SGD+momentum) are two groups."""
    return _SEED_SUFFIX.sub("", label)


def stat_runs(session: Session, runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One dict per run with what backend.stats needs: group, seed, status, budget and evaluations."""
    conn = session.connection()
    return [{"group": group_name(r.label), "optimizer": r.optimizer, "seed": r.seed, "status": r.status,
             "run_id": r.id, "budget": (r.config or {}).get("budget") or {},
             "hyperparameters": ((r.config or {}).get("optimizer") or {}).get("hyperparameters") or {},
             "evals": store.evaluations(conn, r.id)} for r in runs]


def _comparison_data(session: Session, comparison_id: int, reference: str | None
                     ) -> tuple[list[dict[str, Any]], str | None]:
    """The comparison's runs for stats, and ``reference`` resolved: a group name, or an optimizer name (its first
    group), or None (the first group). Raises ValueError naming the choices when it matches nothing."""
    runs = session.scalars(select(Run).where(Run.comparison_id == comparison_id).order_by(Run.id)).all()
    data = stat_runs(session, runs)
    groups = list(dict.fromkeys(d["group"] for d in data))
    if reference is None:
        return data, groups[0] if groups else None
    if reference not in groups:
        by_optimizer = [d["group"] for d in data if d["optimizer"] == reference]
        if not by_optimizer:
            raise ValueError(f"Invalid reference {reference!r}: choose a group ({groups}) or an optimizer name "
                             f"({sorted({d['optimizer'] for d in data})})")
        reference = by_optimizer[0]
    return data, reference


def comparison_results(session: Session, comparison_id: int, *, reference: str | None, targets: Sequence[float],
                       k: int, level: float, n_boot: int = 10_000) -> dict[str, Any]:
    """backend.stats.results over the comparison's runs (``reference`` as in ``_comparison_data``)."""
    data, reference = _comparison_data(session, comparison_id, reference)
    out = stats.results(data, reference=reference, targets=targets, k=k, level=level, n_boot=n_boot)
    out["comparison_id"] = comparison_id
    return out


def comparison_paired_curves(session: Session, comparison_id: int, *, reference: str | None, axis: str,
                             points: int, level: float) -> dict[str, Any]:
    """backend.stats.paired_curves of the evaluated train loss over the comparison's runs."""
    data, reference = _comparison_data(session, comparison_id, reference)
    if reference is None:
        return {"reference": None, "axis": axis, "key": "train_loss", "level": level, "groups": []}
    return stats.paired_curves(data, reference=reference, axis=axis, points=points, level=level)
