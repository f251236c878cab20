"""`make reproduce`: per experiment a sweep, its winners promoted with the TR methods, then reproduction/REPORT.md.

Usage: python -m reproduction.run [--only mlp,autoencoder] [--workers 2] [--quick] [--results-dir DIR]

The reproduction is a client of the product: it starts the trustlab API in-process on its own SQLite store
(<results-dir>/lab/, the job runner trains ``--workers`` runs at a time with one torch thread each) and goes
through the same routes as the browser: POST /api/sweeps, GET /api/sweeps/{id} (winners, edge flags), POST
/api/sweeps/{id}/promote, GET /api/comparisons/{id}/results (paired statistics). Every finished run is then
exported to reproduction/results/<experiment>/<phase>/<run>.json.gz so the report can be rebuilt without
training (``python -m reproduction.report``). ``--quick`` runs a tiny version to prove the pipeline.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_info
from reproduction.protocol import open_lab, run_experiment
from trainer.data import DEFAULT_DATA_DIR
from reproduction.records import RESULTS_DIR
from reproduction.spec import EXPERIMENTS, quick

__all__ = ["main"]

DATA_DIR = Path(__file__).resolve().parent.parent / DEFAULT_DATA_DIR  # the trainer's default, under the repo root


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reproduction.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(EXPERIMENTS), help=f"experiments out of {','.join(EXPERIMENTS)}")
    p.add_argument("--workers", type=int, default=2, help="runs training at once (1 torch thread each)")
    p.add_argument("--quick", action="store_true", help="a tiny configuration that proves the pipeline works")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-report", action="store_true", help="train only; build the report later")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        print(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    exps = [quick(EXPERIMENTS[n]) if args.quick else EXPERIMENTS[n] for n in names]
    root: Path = args.results_dir
    t_start = time.perf_counter()
    started_at = _now()
    machine_at_start = machine_info("cpu")

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    for e in exps:  # a fresh reproduction: drop the saved runs of these experiments
        shutil.rmtree(root / e.name, ignore_errors=True)
    shutil.rmtree(root / "lab", ignore_errors=True)
    summaries: dict[str, Any] = {}
    with open_lab(root / "lab", data_dir=DATA_DIR, workers=args.workers) as client:
        for e in exps:
            summaries[e.name] = run_experiment(client, e, root, log=log)
    meta = {"machine": {**machine_info("cpu"), "git_commit": machine_at_start["git_commit"],
                        "modified_files": machine_at_start["modified_files"], "torch_threads": 1,
                        "load_average": machine_at_start.get("load_average")},
            "workers": args.workers, "torch_threads_per_run": 1, "quick": args.quick, "experiments": names,
            "started_at": started_at, "finished_at": _now(), "runs": summaries,
            "experiment_specs": {e.name: dataclasses.asdict(e) for e in exps},  # what ran (--quick differs)
            "training_seconds": time.perf_counter() - t_start}
    root.mkdir(parents=True, exist_ok=True)
    (root / "run_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(root / "lab", ignore_errors=True)  # the exported records are what the report reads
    if not args.no_report:
        from reproduction.report import build_report

        # the committed report lives beside the package; a run into another results folder reports there
        out = build_report(root, names=names) if root == RESULTS_DIR else build_report(root, names=names, out_dir=root)
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
