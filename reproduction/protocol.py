"""The reproduction protocol through the product's API: sweep → winners with edge flags → promote → results.

``open_lab`` starts the trustlab API in-process (its own SQLite store, the job runner training ``workers`` runs at
a time); ``run_experiment`` drives one experiment through the same routes the browser uses and exports every
finished run in the record format reproduction/report.py reads.
"""
from __future__ import annotations

import base64
import contextlib
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from reproduction.records import STEP_FIELDS, TR_ONLY_FIELDS, save_run
from reproduction.spec import Experiment, baseline_key
from trainer.registry import is_trust_region

__all__ = ["open_lab", "run_experiment", "wait_for_comparison", "export_record", "chosen_from_sweep",
           "chosen_tr_from_sweep", "best_optimizers"]

_FIRST_ORDER_STEP_EVERY = 20  # as reproduction.records.compact: first-order minibatch losses are a sanity trace
_FINAL = {"completed", "diverged", "failed", "cancelled", "interrupted"}


@contextlib.contextmanager
def open_lab(var_dir: Path, *, data_dir: Path, workers: int, trainer: str | None = None) -> Iterator[Any]:
    """A client of an in-process trustlab API on a fresh SQLite store under ``var_dir`` with its job runner
    (``trainer``: the training function's "module:function", tests pass a fake)."""
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

    from backend.main import create_app
    from backend.settings import Settings

    var_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(var_dir=var_dir, database_url=f"sqlite:///{var_dir.resolve() / 'store.db'}",
                        data_dir=data_dir, scheduler=True, gpus="", max_concurrent_runs=workers, torch_threads=1,
                        **({"trainer": trainer} if trainer else {}))
    # a loopback Host header: the API accepts only its own names (Settings.allowed_host_names)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client


def _ok(response: Any) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} → {response.status_code}: "
                           f"{response.text[:2000]}")
    return response.json() if "json" in response.headers.get("content-type", "") else response.text


def wait_for_comparison(client: Any, comparison_id: int, *, log: Callable[[str], None], poll: float = 2.0,
                        what: str = "") -> list[dict[str, Any]]:
    """Poll until every run of the comparison has ended; returns the runs."""
    last = -1
    while True:
        runs = _ok(client.get(f"/api/comparisons/{comparison_id}"))["runs"]
        done = sum(r["status"] in _FINAL for r in runs)
        if done != last:
            log(f"{what}: {done}/{len(runs)} runs finished")
            last = done
        if done == len(runs):
            return runs
        time.sleep(poll)


def export_record(client: Any, run: dict[str, Any], *, experiment: str, phase: str) -> dict[str, Any]:
    """One finished run in the reproduction's record format (config, summary, evaluations, thinned steps, images)."""
    doc = _ok(client.get(f"/api/runs/{run['id']}/export", params={"format": "json"}))
    cfg = run["config"]
    hyper = cfg["optimizer"]["hyperparameters"]
    key = baseline_key(run["optimizer"], hyper)
    tr = is_trust_region(run["optimizer"])
    every = 1 if tr else _FIRST_ORDER_STEP_EVERY
    metrics = doc["metrics"]
    steps = [s for i, s in enumerate(metrics) if i % every == 0 or i == len(metrics) - 1]
    fields = [f for f in STEP_FIELDS if tr or f not in TR_ONLY_FIELDS]
    images: dict[str, Any] = {}
    listing = _ok(client.get(f"/api/runs/{run['id']}/reconstructions"))
    for kind, path in (("original", "original.png"), ("reconstruction", "latest.png")):
        if (kind == "original" and listing["has_original"]) or (kind == "reconstruction" and listing["steps"]):
            png = client.get(f"/api/runs/{run['id']}/reconstructions/{path}").content
            images[kind] = {"step": listing["steps"][-1] if listing["steps"] else 0,
                            "png": base64.b64encode(png).decode("ascii")}
    summary = {k: v for k, v in (run.get("summary") or {}).items() if k != "traceback"}
    summary["status"] = run["status"]
    lr = hyper.get("lr") if not tr else None
    # a swept TR method has several grid points per seed: its tuned settings name the record (protocol v3)
    point = "".join(f"_{k}{hyper[k]:g}" for k in ("radius", "eta1") if tr and phase == "grid" and k in hyper)
    return {"experiment": experiment, "phase": phase, "optimizer": key, "seed": run["seed"], "lr": lr,
            "config": cfg, "key": f"{key}{'' if lr is None else f'_lr{lr:g}'}{point}_s{run['seed']}",
            "run_id": run["id"],
            "label": run["label"], "elapsed_seconds": summary.get("wall_time"), "info": {"device": run.get("device")},
            "summary": summary, "evals": doc["evaluations"], "steps": {f: [s.get(f) for s in steps] for f in fields},
            "images": images}


def chosen_tr_from_sweep(view: dict[str, Any]) -> dict[str, Any]:
    """Per swept TR method (protocol v3): the chosen point, its hyperparameters, each grid point's criterion
    (None = diverged/failed, keyed "radius=…, eta1=…") and the edge flags."""
    out = {}
    for o in view["optimizers"]:
        if "lr" in o["space"]:
            continue
        out[baseline_key(o["name"], o["hyperparameters"])] = {
            "point": o["best"]["point"] if o["best"] else None,
            "hyperparameters": o["best"]["hyperparameters"] if o["best"] else None,
            "losses": {", ".join(f"{k}={v:g}" for k, v in p["point"].items()): p["value"] for p in o["points"]},
            "grid": o["space"], "edge_flags": o["edge_flags"], "label": o["label"]}
    return out


def chosen_from_sweep(view: dict[str, Any]) -> dict[str, Any]:
    """Per baseline: the chosen lr, each grid point's criterion (None = diverged/failed) and the edge flags."""
    out = {}
    for o in view["optimizers"]:
        if "lr" not in o["space"]:  # a swept TR method: chosen_tr_from_sweep
            continue
        key = baseline_key(o["name"], o["hyperparameters"])
        out[key] = {"lr": o["best"]["point"].get("lr") if o["best"] else None,
                    "losses": {repr(p["point"]["lr"]): p["value"] for p in o["points"]},
                    "grid": o["space"]["lr"], "edge_flags": o["edge_flags"], "label": o["label"]}
    return out


def run_experiment(client: Any, exp: Experiment, root: Path, *, log: Callable[[str], None], poll: float = 2.0
                   ) -> dict[str, Any]:
    """Sweep, promote, results for one experiment; writes <root>/<exp>/{grid,main}/*.json.gz, chosen_lr.json,
    sweep.json, results.json and results.md. Returns a short summary."""
    t0 = time.perf_counter()
    sweep = _ok(client.post("/api/sweeps", json=exp.sweep_body()))
    log(f"{exp.name}: sweep #{sweep['id']} queued ({len(sweep['run_ids'])} runs)")
    wait_for_comparison(client, sweep["comparison_id"], log=log, poll=poll, what=f"{exp.name} sweep")
    view = _ok(client.get(f"/api/sweeps/{sweep['id']}"))
    folder = root / exp.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.json").write_text(json.dumps({k: view[k] for k in ("id", "criterion", "optimizers")},
                                                  indent=1, default=str) + "\n")
    chosen = chosen_from_sweep(view)
    (folder / "chosen_lr.json").write_text(json.dumps(chosen, indent=2) + "\n")
    for key, c in chosen.items():
        log(f"{exp.name}: {key} lr={c['lr']}" + "".join(f" [{f}]" for f in c["edge_flags"]))
    chosen_tr = chosen_tr_from_sweep(view)
    if chosen_tr:
        (folder / "chosen_tr.json").write_text(json.dumps(chosen_tr, indent=2) + "\n")
        for key, c in chosen_tr.items():
            log(f"{exp.name}: {key} {c['point']}" + "".join(f" [{f}]" for f in c["edge_flags"]))
    tuned = {key: c["hyperparameters"] for key, c in chosen_tr.items() if c["hyperparameters"]}
    for run in _ok(client.get(f"/api/comparisons/{sweep['comparison_id']}"))["runs"]:
        rec = export_record(client, run, experiment=exp.name, phase="grid")
        save_run(rec, folder / "grid" / f"{rec['key']}.json.gz")
    promoted = _ok(client.post(f"/api/sweeps/{sweep['id']}/promote", json=exp.promote_body()))
    log(f"{exp.name}: comparison #{promoted['id']} queued ({len(promoted['run_ids'])} runs)")
    sides: dict[str, dict[str, Any]] = {}  # phase → {"id", "what"}; queued now so the workers never wait
    for phase, body in (("gltr", exp.solver_body(tuned)), ("standardised", exp.scaling_body(tuned))):
        if body is not None:
            created = _ok(client.post("/api/comparisons", json=body))
            sides[phase] = {"id": created["id"], "name": body["name"]}
            log(f"{exp.name}: side comparison {phase} #{created['id']} queued ({len(created['run_ids'])} runs)")
    runs = wait_for_comparison(client, promoted["id"], log=log, poll=poll, what=f"{exp.name} comparison")
    for run in runs:
        rec = export_record(client, run, experiment=exp.name, phase="main")
        save_run(rec, folder / "main" / f"{rec['key']}.json.gz")
    params = {"reference": "tr-uniform", "targets": list(exp.targets), "k": 3}
    res = _ok(client.get(f"/api/comparisons/{promoted['id']}/results", params=params))
    (folder / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    md = _ok(client.get(f"/api/comparisons/{promoted['id']}/results", params={**params, "format": "markdown"}))
    (folder / "results.md").write_text(md)
    if exp.wall_seconds is not None:
        tr, fo = best_optimizers(res, runs)
        if tr is not None and fo is not None:
            body = exp.wall_body(tr, fo)
            created = _ok(client.post("/api/comparisons", json=body))
            sides["wall"] = {"id": created["id"], "name": body["name"]}
            log(f"{exp.name}: equal wall-time comparison #{created['id']} queued ({tr['name']} vs {fo['name']}, "
                f"{exp.wall_seconds:g} s each)")
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    for phase, side in sides.items():
        side_runs = wait_for_comparison(client, side["id"], log=log, poll=poll, what=f"{exp.name} {phase}")
        for run in side_runs:
            rec = export_record(client, run, experiment=exp.name, phase=phase)
            save_run(rec, folder / phase / f"{rec['key']}.json.gz")
            statuses[run["status"]] = statuses.get(run["status"], 0) + 1
        side["runs"] = len(side_runs)
        if phase == "wall":  # one comparison: the product's own results table, reference = the TR method
            ref = next(r["optimizer"] for r in side_runs if r["optimizer"].startswith("tr-"))
            side["results"] = _ok(client.get(f"/api/comparisons/{side['id']}/results",
                                             params={"reference": ref, "targets": list(exp.targets), "k": 3}))
    (folder / "sides.json").write_text(json.dumps(sides, indent=1) + "\n")
    return {"sweep_id": sweep["id"], "comparison_id": promoted["id"], "sweep_runs": len(sweep["run_ids"]),
            "comparison_runs": len(runs), "side_comparisons": {k: v["id"] for k, v in sides.items()},
            "side_runs": sum(v["runs"] for v in sides.values()), "statuses": statuses,
            "seconds": round(time.perf_counter() - t0, 1)}


def best_optimizers(res: dict[str, Any], runs: list[dict[str, Any]]
                    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The TR group and the first-order group with the lowest mean smoothed final train loss in a results table
    (completed runs), each as {"name", "hyperparameters"} read from one of its runs; None where no group has one."""
    from trainer.registry import OPTIMIZERS

    config = {r["group_key"]: r["config"]["optimizer"] for r in runs}  # one group identity (issue 19)
    best: dict[bool, tuple[float, str]] = {}
    for g in res["groups"]:
        mean = g["final_train_loss"]["mean"]
        tr = (g["optimizer"] or "").startswith("tr-")
        if mean is not None and g["group_key"] in config and (tr not in best or mean < best[tr][0]):
            best[tr] = (mean, g["group_key"])

    def pick(tr: bool) -> dict[str, Any] | None:
        if tr not in best:
            return None
        o = config[best[tr][1]]
        defaults = OPTIMIZERS[o["name"]].defaults()  # the step size and what differs from the defaults: short labels
        return {"name": o["name"], "hyperparameters": {
            k: v for k, v in o["hyperparameters"].items() if k == "lr" or k not in defaults or defaults[k] != v}}

    return pick(True), pick(False)
