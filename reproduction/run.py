"""`make reproduce`: step-size grid, the MLP and autoencoder comparisons, then reproduction/REPORT.md.

Usage: python -m reproduction.run [--only mlp,autoencoder] [--workers 2] [--resume] [--scale 1.0]

Runs execute in ``--workers`` processes with one torch thread each (the default, 2, fits a 2-core machine).
Every run is saved to reproduction/results/<experiment>/<phase>/<run>.json.gz as soon as it ends, so the
report can be rebuilt without training (``python -m reproduction.report``) and ``--resume`` skips runs that
are already saved. ``--scale`` multiplies every budget (a smoke run uses e.g. 0.05 with ``--results-dir``).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import multiprocessing as mp
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.machine import machine_info
from reproduction.records import RESULTS_DIR, compact, load_run, save_run
from reproduction.spec import EXPERIMENTS, Experiment, RunSpec, grid_runs, main_runs

__all__ = ["main", "choose_step_sizes"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _train(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """Train one run in a worker process and save its record; returns a one-line summary."""
    from trainer.loop import run
    from trainer.reporting import ListReporter

    reporter = ListReporter()
    t0 = time.perf_counter()
    summary = run(spec["config"], reporter, data_dir=DATA_DIR, download=False)
    elapsed = time.perf_counter() - t0
    save_run(compact(spec, reporter, elapsed), Path(path))
    return {"key": spec["key"], "status": summary["status"], "message": summary.get("message"),
            "final_train_loss": summary.get("final_minibatch_loss"), "eval_train_loss": summary.get("final_train_loss"),
            "elapsed": elapsed, "wall_time": summary.get("wall_time"), "backprops": summary.get("backprops")}


def choose_step_sizes(grid: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per optimizer, the step size with the lowest final evaluated train loss among runs that completed.

    Args:
        grid: saved grid records (``optimizer``, ``lr``, ``summary`` with ``status``; ``evals``).
    Returns:
        {optimizer: {"lr": best, "losses": {lr: final eval train loss or None}}}; optimizers whose every
        step size diverged are left out.
    """
    out: dict[str, dict[str, Any]] = {}
    for rec in grid:
        o = rec["optimizer"]
        entry = out.setdefault(o, {"lr": None, "losses": {}})
        loss = None
        if rec["summary"].get("status") == "completed" and rec["evals"]:
            last = rec["evals"][-1].get("train_loss")
            loss = last if last is not None and math.isfinite(last) else None
        entry["losses"][repr(rec["lr"])] = loss
    for o, entry in list(out.items()):
        valid = {float(k): v for k, v in entry["losses"].items() if v is not None}
        if not valid:
            del out[o]
            continue
        entry["lr"] = min(valid, key=lambda lr: (valid[lr], lr))
    return out


def _scaled(exp: Experiment, scale: float) -> Experiment:
    if scale == 1.0:
        return exp
    return dataclasses.replace(
        exp, backprops=max(20, int(exp.backprops * scale)), grid_backprops=max(10, int(exp.grid_backprops * scale)),
        eval_every_first_order=max(1, int(exp.eval_every_first_order * scale)),
        eval_every_tr=max(1, int(exp.eval_every_tr * scale)))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _path(root: Path, s: RunSpec) -> Path:
    return root / s.experiment / s.phase / f"{s.key}.json.gz"


def _payload(s: RunSpec) -> dict[str, Any]:
    return {**dataclasses.asdict(s), "key": s.key}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reproduction.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(EXPERIMENTS), help=f"experiments out of {','.join(EXPERIMENTS)}")
    p.add_argument("--workers", type=int, default=2, help="parallel training processes (1 torch thread each)")
    p.add_argument("--resume", action="store_true", help="skip runs whose record is already saved")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every budget (smoke runs)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-report", action="store_true", help="train only; build the report later")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        print(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}", file=sys.stderr)
        return 2
    exps = [_scaled(EXPERIMENTS[n], args.scale) for n in names]
    root: Path = args.results_dir
    t_start = time.perf_counter()
    started_at = _now()
    machine_at_start = machine_info("cpu")  # the code version before any record is rewritten
    done = {"n": 0}

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    def submit(pool: ProcessPoolExecutor, s: RunSpec) -> Future | None:
        path = _path(root, s)
        if args.resume and path.is_file():
            return None
        fut = pool.submit(_train, _payload(s), str(path))

        def report(f: Future, s: RunSpec = s) -> None:
            done["n"] += 1
            try:
                r = f.result()
                log(f"{s.experiment}/{s.phase}/{s.key}: {r['status']} in {r['elapsed']:.1f} s "
                    f"(final minibatch loss {r['final_train_loss']})")
            except Exception as exc:  # noqa: BLE001 - logged; the report shows the run as missing
                log(f"{s.experiment}/{s.phase}/{s.key}: FAILED {type(exc).__name__}: {exc}")
        fut.add_done_callback(report)
        return fut

    if not args.resume:  # a fresh reproduction: drop the saved runs of these experiments
        for e in exps:
            for old in list((root / e.name).glob("*/*.json.gz")) + list((root / e.name).glob("chosen_lr.json")):
                old.unlink()
        (root / "run_meta.json").unlink(missing_ok=True)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx, initializer=_init_worker) as pool:
        # TR runs do not depend on the grid: queue the longest first, then the grid, then first-order runs.
        tr_runs = sorted((s for e in exps for s in main_runs(e, {}) if s.optimizer.startswith("tr-")),
                         key=lambda s: -s.cost)
        for s in tr_runs:
            submit(pool, s)
        grid_futs: dict[str, list[Future]] = {}
        for e in exps:
            grid_futs[e.name] = [f for f in (submit(pool, s) for s in grid_runs(e)) if f is not None]
        for e in exps:
            for f in grid_futs[e.name]:
                f.exception()  # wait
            grid = [load_run(_path(root, s)) for s in grid_runs(e) if _path(root, s).is_file()]
            chosen = choose_step_sizes(grid)
            (root / e.name).mkdir(parents=True, exist_ok=True)
            (root / e.name / "chosen_lr.json").write_text(json.dumps(chosen, indent=2) + "\n")
            log(f"{e.name}: step sizes chosen on seed 0: " + ", ".join(f"{o}={c['lr']:g}" for o, c in chosen.items()))
            for s in main_runs(e, {o: c["lr"] for o, c in chosen.items()}):
                if not s.optimizer.startswith("tr-"):
                    submit(pool, s)
    log(f"training done ({done['n']} runs)")
    meta_path = root / "run_meta.json"
    meta = json.loads(meta_path.read_text()) if (args.resume and meta_path.is_file()) else {}
    meta.update({"machine": {**machine_info("cpu"), "git_commit": machine_at_start["git_commit"],
                             "modified_files": machine_at_start["modified_files"]}, "workers": args.workers, "torch_threads_per_run": 1,
                 "scale": args.scale, "experiments": names, "started_at": meta.get("started_at", started_at),
                 "finished_at": _now(), "runs_trained_this_time": done["n"],
                 "training_seconds": meta.get("training_seconds", 0.0) + (time.perf_counter() - t_start)})
    meta["machine"]["torch_threads"] = 1
    root.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    if not args.no_report:
        from reproduction.report import build_report

        # the committed report lives beside the package; a run into another results folder reports there
        out = build_report(root, names=names) if root == RESULTS_DIR else build_report(root, names=names, out_dir=root)
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
