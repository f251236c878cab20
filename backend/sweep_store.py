"""Sweep store operations: create a sweep's runs, summarise its grid per optimizer, promote the winners."""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend import stats, store
from backend.results import group_name, stat_runs
from backend.domain import run_label
from backend.schemas import ComparisonCreate
from backend.store import Conflict
from backend.sweeps import Criterion, PromoteRequest, SweepCreate, SweepOptimizer, edge_flags
from backend.tables import ACTIVE_STATUSES, Comparison, Run, Sweep, SweepRun, utcnow
from trainer.config import RunConfig, from_stored

__all__ = ["create_sweep", "list_sweeps", "sweep_view", "promote", "criterion_value", "rerun", "runs_to_rerun",
           "RERUN_STATUSES"]

# A tuning run that ended in one of these has no result through no verdict on its hyperparameters (the API
# restarted under it, someone cancelled it, its worker failed): its grid point is marked and can be re-run.
RERUN_STATUSES = ("interrupted", "cancelled", "failed")


def create_sweep(session: Session, body: SweepCreate, *, owner: str = "local") -> tuple[Sweep, list[Run]]:
    """The sweep, a comparison grouping its tuning runs (so live charts, cancel and delete work on them), and
    one queued run per grid point and tuning seed. The caller commits."""
    spec = body.model_dump(mode="json")
    comparison = Comparison(name=f"sweep: {body.name}"[:200], created_at=utcnow(), owner=owner,
                            spec={**{k: spec[k] for k in ("dataset", "model", "budget", "seeds")}, "sweep": True})
    session.add(comparison)
    session.flush()
    sweep = Sweep(name=body.name, spec=spec, comparison_id=comparison.id, created_at=utcnow(), owner=owner)
    session.add(sweep)
    session.flush()
    runs = []
    for entry, point, cfg, label in body.run_configs():
        run = store.create_run(session, cfg, comparison_id=comparison.id, label=label, owner=owner)
        session.add(SweepRun(run_id=run.id, sweep_id=sweep.id, entry=entry, point=point))
        runs.append(run)
    comparison.spec = {**comparison.spec, "sweep_id": sweep.id}
    session.flush()
    return sweep, runs


def list_sweeps(session: Session, *, limit: int, offset: int, owner: str | None = None
                ) -> tuple[list[Sweep], int]:
    query = select(Sweep)
    if owner is not None:
        query = query.where(Sweep.owner == owner)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Sweep.id.desc()).limit(limit).offset(offset)).all()
    return list(items), int(total)


_CRITERIA: dict[str, Callable[[Criterion, list[dict[str, Any]]], float | None]] = {
    "final_train_loss": lambda c, evals: stats.smoothed_final(evals, "train_loss", c.k),
    "final_test_accuracy": lambda c, evals: stats.final_value(evals, "test_accuracy"),
    "backprops_to_target": lambda c, evals: stats.cost_to_target(evals, c.target or 0.0, axis="backprops"),
}


def criterion_value(criterion: Criterion, run: dict[str, Any]) -> float | None:
    """The criterion of one finished run (None when it has no value: no evaluation, or target not reached)."""
    return _CRITERIA[criterion.kind](criterion, run["evals"])


def _status(statuses: list[str]) -> str:
    if not statuses:
        return "empty"
    if "running" in statuses:
        return "running"
    if "queued" in statuses:
        return "queued"
    return "finished"


def _point_summary(criterion: Criterion, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A grid point over its tuning seeds. Its value is the mean criterion when every seed completed with a value;
    a diverged seed disqualifies the point; a cancelled or failed one leaves it without a value."""
    values = [criterion_value(criterion, r) if r["status"] == "completed" else None for r in runs]
    statuses = [r["status"] for r in runs]
    diverged = "diverged" in statuses
    complete = all(s == "completed" for s in statuses) and all(v is not None for v in values)
    value = float(sum(values) / len(values)) if complete and values and not diverged else None  # type: ignore[arg-type]
    note = None
    needs_rerun = not diverged and any(s in RERUN_STATUSES for s in statuses)
    if diverged:
        note = "diverged"
    elif any(s in ACTIVE_STATUSES for s in statuses):
        note = "running"
    elif needs_rerun:
        note = f"no result ({', '.join(sorted({s for s in statuses if s in RERUN_STATUSES}))}): re-run it"
    elif not complete:
        note = ("target not reached" if criterion.kind == "backprops_to_target"
                and all(s == "completed" for s in statuses) else "a run did not complete")
    keys = sorted({r["group"] for r in runs})
    if len(keys) > 1:  # never by construction; said, not averaged, if it ever happens
        value, note = None, f"runs of {len(keys)} different settings (group keys {keys}) at one grid point"
    elif len({r["seed"] for r in runs}) < len(runs):
        value, note = None, "a tuning seed is repeated at this grid point; its mean would not be over seeds"
    return {"run_ids": [r["run_id"] for r in runs], "statuses": statuses, "seeds": [r["seed"] for r in runs],
            "group_key": keys[0] if len(keys) == 1 else None, "values": values, "value": value, "note": note, "needs_rerun": needs_rerun}


def _entry_view(i: int, opt: SweepOptimizer, criterion: Criterion, runs: list[dict[str, Any]],
                points: dict[int, dict[str, Any]]) -> dict[str, Any]:
    by_point: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_point.setdefault(repr(sorted(points[r["run_id"]].items())), []).append(r)
    grid = opt.points()
    rows = []
    for point in grid:
        rruns = sorted(by_point.get(repr(sorted(point.items())), []), key=lambda r: r["seed"])
        rows.append({"point": point, **_point_summary(criterion, rruns)})
    scored = [r for r in rows if r["value"] is not None]
    best = None
    if scored:
        pick = min if criterion.lower_is_better else max
        winner = pick(scored, key=lambda r: r["value"])
        best = {"point": winner["point"], "hyperparameters": {**opt.hyperparameters, **winner["point"]},
                "value": winner["value"], "run_ids": winner["run_ids"]}
    finished = all(s not in ACTIVE_STATUSES for r in rows for s in r["statuses"])
    space = {k: s.grid() for k, s in opt.space.items()}
    label = group_name(run_label(opt.name, opt.hyperparameters, 0, opt.batch_size))
    return {"index": i, "name": opt.name, "label": label, "hyperparameters": opt.hyperparameters,
            "batch_size": opt.batch_size, "space": space, "points": rows, "best": best, "finished": finished,
            "edge_flags": edge_flags(space, best["point"]) if best else [],
            "message": None if best or not finished else "no grid point completed with a value: nothing to promote"}


def sweep_view(session: Session, sweep: Sweep, *, detail: bool = True) -> dict[str, Any]:
    """The API's Sweep shape: status and progress; with ``detail``, per optimizer every grid point's criterion
    over the tuning seeds, the best configuration and edge flags."""
    body = SweepCreate.model_validate(sweep.spec)
    links = session.execute(select(SweepRun.run_id, SweepRun.entry, SweepRun.point)
                            .where(SweepRun.sweep_id == sweep.id)).all()
    run_rows = session.scalars(select(Run).where(Run.id.in_([link.run_id for link in links])).order_by(Run.id)).all() \
        if links else []
    statuses = [r.status for r in run_rows]
    view: dict[str, Any] = {
        "id": sweep.id, "name": sweep.name, "created_at": sweep.created_at, "comparison_id": sweep.comparison_id,
        "promoted_comparison_id": sweep.promoted_comparison_id, "status": _status(statuses), "owner": sweep.owner,
        "runs_total": len(links), "runs_finished": sum(s not in ACTIVE_STATUSES for s in statuses),
        "criterion": {**body.criterion.model_dump(), "label": body.criterion.label,
                      "better": "lower" if body.criterion.lower_is_better else "higher"},
        "spec": sweep.spec,
        "runs_to_rerun": sum(s in RERUN_STATUSES for s in statuses),
    }
    if not detail:
        return view
    data = stat_runs(session, run_rows)
    entries = {link.run_id: link.entry for link in links}
    points = {link.run_id: link.point for link in links}
    view["optimizers"] = [_entry_view(i, opt, body.criterion, [d for d in data if entries[d["run_id"]] == i], points)
                          for i, opt in enumerate(body.optimizers)]
    return view


def _point_text(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def _rerun_links(session: Session, sweep: Sweep) -> list[Any]:
    return list(session.execute(select(SweepRun, Run).join(Run, Run.id == SweepRun.run_id)
                                .where(SweepRun.sweep_id == sweep.id, Run.status.in_(RERUN_STATUSES))
                                .order_by(Run.id)).all())


def runs_to_rerun(session: Session, sweep: Sweep) -> list[Run]:
    """The tuning runs :func:`rerun` would replace."""
    return [run for _link, run in _rerun_links(session, sweep)]


def rerun(session: Session, sweep: Sweep) -> tuple[list[Run], list[int]]:
    """Queue a fresh run (same config, same seed) for every tuning run of ``sweep`` that ended without a result
    (:data:`RERUN_STATUSES`); the new run takes the old one's place in the grid, the old run and its data stay
    (outside the sweep's grid, still in its comparison). Returns (new runs, replaced run ids). The caller commits.

    Raises:
        Conflict: no tuning run needs a re-run.
    """
    links = _rerun_links(session, sweep)
    if not links:
        raise Conflict(f"sweep {sweep.id} has no interrupted, cancelled or failed tuning run: nothing to re-run")
    runs, replaced = [], []
    for link, old in links:
        cfg = from_stored(old.config)
        run = store.create_run(session, cfg, comparison_id=old.comparison_id, label=old.label, owner=sweep.owner)
        session.add(SweepRun(run_id=run.id, sweep_id=sweep.id, entry=link.entry, point=link.point))
        session.delete(link)
        runs.append(run)
        replaced.append(old.id)
    session.flush()
    return runs, replaced


def promote(session: Session, sweep: Sweep, request: PromoteRequest, *, owner: str = "local") -> tuple[Comparison, list[Run]]:
    """A comparison of every optimizer's winner plus ``request.extra_optimizers`` on fresh seeds, with the sweep's
    dataset, model, budget and shared settings. The caller commits.

    Raises:
        Conflict: the sweep still has active runs, a grid point has no result (unless ``allow_missing``), or an
            optimizer has no winner.
        ValueError: a requested seed was a tuning seed.
    """
    view = sweep_view(session, sweep)
    body = SweepCreate.model_validate(sweep.spec)
    if view["status"] in ("running", "queued"):
        raise Conflict(f"sweep {sweep.id} still has {view['runs_total'] - view['runs_finished']} active run(s); "
                       "wait until it finishes (or cancel them) before promoting")
    unrun = [f"{o['label']} {_point_text(p['point'])}" for o in view["optimizers"] for p in o["points"]
             if p["needs_rerun"]]
    if unrun and not request.allow_missing:
        shown = ", ".join(unrun[:10]) + (f" and {len(unrun) - 10} more" if len(unrun) > 10 else "")
        raise Conflict(f"{len(unrun)} grid point(s) of sweep {sweep.id} have no result (a tuning run was "
                       f"interrupted, cancelled or failed): {shown}. The winner may be among them: re-run them "
                       f"(POST /api/sweeps/{sweep.id}/rerun) and promote when they finish, or promote anyway with "
                       '"allow_missing": true')
    missing = [o["label"] for o in view["optimizers"] if o["best"] is None]
    if missing:
        raise Conflict(f"no winner for {missing}: every grid point failed, diverged or missed the target; "
                       "extend or repair the grid in a new sweep")
    if request.seeds is not None:
        reused = sorted(set(request.seeds) & set(body.seeds))
        if reused:
            raise ValueError(f"seeds {reused} were tuning seeds; promote on fresh seeds")
        seeds = request.seeds
    else:
        start = max(body.seeds) + 1
        seeds = list(range(start, start + request.n_seeds))
    winners = [{"name": o["name"], "hyperparameters": o["best"]["hyperparameters"], "batch_size": o["batch_size"]}
               for o in view["optimizers"]]
    extras = [o.model_dump(exclude_none=True) for o in request.extra_optimizers]
    comparison_body = ComparisonCreate(
        name=request.name or f"{sweep.name}: winners", dataset=body.dataset, model=body.model, budget=body.budget,
        seeds=seeds, optimizers=winners + extras, batch_sizes=body.batch_sizes, **body.shared())
    comparison = Comparison(name=comparison_body.name, created_at=utcnow(), owner=owner,
                            spec={**comparison_body.model_dump(mode="json"), "promoted_from_sweep": sweep.id,
                                  "run_settings": body.run_settings})
    session.add(comparison)
    session.flush()
    runs = []
    for cfg, label in comparison_body.run_configs():
        if body.run_settings:  # fields ComparisonCreate does not carry (e.g. input_scaling)
            cfg = RunConfig.model_validate({**cfg.model_dump(), **body.run_settings})
        runs.append(store.create_run(session, cfg, comparison_id=comparison.id, label=label, owner=owner))
    sweep.promoted_comparison_id = comparison.id
    session.flush()
    return comparison, runs
