"""`make bench`: measure trustlab itself, print a table and write bench/results/latest.json.

Usage: python -m bench.run [--only ITEM,ITEM,...] [--device cpu|cuda] [--threads N] [--quick] [--out PATH]

Items: hvp (HVP/gradient cost), breakdown (TR step time split), syncs (host synchronisations per TR step),
gltr_memory (GLTR peak memory on the autoencoder), logging (the loop with the store reporter, with TensorBoard and
with MLflow, vs without), metrics (metrics query latency on a 200k-point run, next to MLflow's bulk-interval
query), live (worker record → API), compare (a 40-run comparison's first load, payload and refresh through the
UI's data code), worker (worker start to first step with the dataset decode cache warm), launch (POST /api/runs →
first point, local executor with warm workers, two runs training meanwhile), load (100 clients polling metrics
while 4 runs train), hessian (one checkpoint of the Hessian-structure analysis), scale (50 tiny runs through each
executor). Without --only every item
runs and latest.json is rewritten; with --only the other figures already in latest.json are kept (each
figure carries the machine and time it was measured). On --device cuda the figures go under
``other_devices["cuda"]`` of the same file, beside the CPU ones. An item that cannot run (no backend,
no GPU) is recorded as null with the reason, never guessed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from bench.machine import describe, machine_info
from bench.table import FIGURES, build_table, figure_entry

__all__ = ["main", "ITEMS"]

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
ItemResult = tuple[dict[str, float | None], dict[str, str], dict[str, Any]]  # values, reasons, details


def _hvp(args: argparse.Namespace) -> ItemResult:
    from bench.hvp import measure_hvp_ratio

    mlp = measure_hvp_ratio("mlp", pairs=60 if args.quick else 300, device=args.device)
    ae = measure_hvp_ratio("autoencoder", pairs=8 if args.quick else 40, device=args.device)
    return ({"hvp_over_grad_mlp": mlp["hvp_over_grad"], "hvp_over_grad_autoencoder": ae["hvp_over_grad"]}, {},
            {"mlp": mlp, "autoencoder": ae})


def _breakdown(args: argparse.Namespace) -> ItemResult:
    from bench.breakdown import measure_breakdown

    steps, warmup, repeats = (40, 5, 1) if args.quick else (200, 50, 3)
    mlp = {}
    for o in ("tr-uniform", "tr-adagrad", "tr-rmsprop"):
        # Other work on a shared machine inflates the memory-bound parts most: the median of 3 measurements.
        runs = sorted((measure_breakdown("mlp", o, steps=steps, warmup=warmup, device=args.device, seed=k)
                       for k in range(repeats)), key=lambda r: r["shares"]["non_derivative_excl_rho"])
        mlp[o] = {**runs[len(runs) // 2], "repeats": [r["shares"]["non_derivative_excl_rho"] for r in runs]}
    ae = measure_breakdown("autoencoder", "tr-rmsprop", steps=3 if args.quick else 8, warmup=2,
                           device=args.device)
    worst = max(mlp.values(), key=lambda r: r["non_derivative_share"])
    return ({"tr_non_derivative_share": worst["non_derivative_share"],
             "tr_overhead_excl_rho_share": worst["shares"]["non_derivative_excl_rho"]}, {},
            {"mlp": mlp, "autoencoder": ae, "headline": f"MLP {worst['optimizer']} (the worst of the three norms)"})


def _syncs(args: argparse.Namespace) -> ItemResult:
    from bench.syncs import measure_tr_host_syncs

    steps = 10 if args.quick else 30
    runs = {f"{o}/{s}": measure_tr_host_syncs(o, steps=steps, solver=s)
            for o in ("tr-uniform", "tr-adagrad", "tr-rmsprop") for s in ("cg", "lanczos")}
    slopes = [r["per_cg_iteration"] for r in runs.values() if r["per_cg_iteration"] is not None]
    values = {"tr_host_syncs_per_cg_iteration": max(slopes) if slopes else None,
              "tr_host_syncs_constant_per_step": max(r["max_excess_over_iterations"] for r in runs.values())}
    reasons = {} if slopes else {"tr_host_syncs_per_cg_iteration": "CG iterations did not vary between steps"}
    return values, reasons, {"runs": runs, "method": "tensor→host conversions counted on the CPU (bench/syncs.py); "
                             "per iteration = least-squares slope of syncs on CG iterations per step, worst of "
                             "3 norms × 2 solvers; constant = max over steps of syncs - iterations"}


def _gltr_memory(args: argparse.Namespace) -> ItemResult:
    from bench.gltr_memory import measure_gltr_peak_memory

    iters = 10 if args.quick else 50
    res = measure_gltr_peak_memory(iterations=iters, batch_size=128, device=args.device)
    return {"gltr_peak_memory_mb": res["lanczos"]["peak_rise_mb"]}, {}, {
        **res, "method": f"one autoencoder TR step (batch 128) run to {iters} Lanczos iterations, fresh process; "
                         "CPU: peak RSS rise, GPU: max_memory_allocated rise"}


def _logging(args: argparse.Namespace) -> ItemResult:
    from bench.logging_overhead import measure_logging_overhead

    return measure_logging_overhead(repeats=2 if args.quick else 5, device=args.device)


def _metrics(args: argparse.Namespace) -> ItemResult:
    from bench.metrics_query import measure_metrics_query

    return measure_metrics_query(requests=20 if args.quick else 100)


def _load(args: argparse.Namespace) -> ItemResult:
    from bench.load import measure_load

    return measure_load(clients=100, runs=4, seconds=20 if args.quick else 60)


def _compare(args: argparse.Namespace) -> ItemResult:
    from bench.compare_load import measure_compare_load

    return measure_compare_load(refreshes=3 if args.quick else 7)


def _worker(args: argparse.Namespace) -> ItemResult:
    from bench.worker_start import measure_worker_start

    return measure_worker_start(repeats=2 if args.quick else 5, device=args.device)


def _live(args: argparse.Namespace) -> ItemResult:
    from bench.live_latency import measure_live_latency

    return measure_live_latency(device=args.device)


def _launch(args: argparse.Namespace) -> ItemResult:
    from bench.launch import measure_launch

    return measure_launch(launches=4 if args.quick else 10)


def _hessian(args: argparse.Namespace) -> ItemResult:
    from bench.hessian import measure_hessian_checkpoint

    r = measure_hessian_checkpoint(reference_columns=256 if args.quick else 4096, device=args.device)
    return {"hessian_checkpoint_s": r["first_checkpoint_s"]}, {}, r


def _scale(args: argparse.Namespace) -> ItemResult:
    from bench.scale import measure_scale

    return measure_scale(runs=10 if args.quick else 50)


ITEMS: dict[str, tuple[Callable[[argparse.Namespace], ItemResult], tuple[str, ...]]] = {
    "hvp": (_hvp, ("hvp_over_grad_mlp", "hvp_over_grad_autoencoder")),
    "breakdown": (_breakdown, ("tr_non_derivative_share", "tr_overhead_excl_rho_share")),
    "syncs": (_syncs, ("tr_host_syncs_per_cg_iteration", "tr_host_syncs_constant_per_step")),
    "gltr_memory": (_gltr_memory, ("gltr_peak_memory_mb",)),
    "logging": (_logging, ("logging_overhead_ratio", "logging_overhead_wall_ratio", "tensorboard_overhead_ratio",
                           "mlflow_overhead_ratio")),
    "metrics": (_metrics, ("metrics_p95_ms", "mlflow_bulk_interval_p95_ms", "incremental_p95_ms")),
    "live": (_live, ("live_latency_s",)),
    "compare": (_compare, ("compare_first_load_s_40_runs", "compare_payload_mb_40_runs",
                           "compare_refresh_ms_40_runs")),
    "worker": (_worker, ("worker_start_s", "worker_cold_start_s")),
    "launch": (_launch, ("launch_to_first_point_p50_s", "launch_to_first_point_p95_s")),
    "load": (_load, ("load_incremental_p50_ms", "load_incremental_p95_ms", "load_incremental_p99_ms",
                     "load_full_p95_ms", "load_full_p99_ms", "load_errors", "load_5xx")),
    "hessian": (_hessian, ("hessian_checkpoint_s",)),
    "scale": (_scale, ("scale_local_runs_per_minute", "scale_local_overhead_per_run_s", "scale_ray_runs_per_minute",
                       "scale_ray_overhead_per_run_s")),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(ITEMS), help=f"comma-separated items out of {','.join(ITEMS)}")
    p.add_argument("--device", default="cpu", help='"cpu" (default) or "cuda"')
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run; noisier figures)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the in-process items (hvp, breakdown); default 1, what trustlab's scheduler "
                        "gives each run on a 2-core machine, and robust when other work shares the cores")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file to write (default {RESULTS})")
    return p


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    items = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in items if s not in ITEMS]
    if unknown:
        print(f"unknown item(s) {unknown}; choose from {list(ITEMS)}", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device} requested but CUDA is not available on this machine", file=sys.stderr)
        return 2
    partial = set(items) != set(ITEMS)
    existing: dict[str, Any] = {}
    if args.out.is_file():
        try:
            existing = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            existing = {}
    on_gpu = args.device.startswith("cuda")
    torch.set_num_threads(max(1, args.threads))
    machine = machine_info(args.device)
    where = describe(machine)
    if on_gpu:
        section = existing.setdefault("other_devices", {}).setdefault(args.device, {})
        if not partial:
            section.clear()
    else:
        section = existing if partial else {"other_devices": existing.get("other_devices", {})}
    section["machine"] = machine
    figures: dict[str, Any] = section.setdefault("figures", {})
    details: dict[str, Any] = section.setdefault("details", {})
    print(f"trustlab bench on {where}; items: {', '.join(items)}", flush=True)
    for name in items:
        fn, keys = ITEMS[name]
        t0 = time.perf_counter()
        print(f"[{name}] running ...", flush=True)
        try:
            values, reasons, detail = fn(args)
        except Exception as exc:  # noqa: BLE001 - an item that cannot run is recorded with its reason
            traceback.print_exc()
            values, reasons = {}, {k: f"{type(exc).__name__}: {exc}" for k in keys}
            detail = {"error": f"{type(exc).__name__}: {exc}"}
        detail["seconds"] = round(time.perf_counter() - t0, 1)
        details[name] = detail
        for k in keys:
            figures[k] = figure_entry(k, values.get(k), reason=reasons.get(k) or "not measured", device=args.device,
                                      machine=where, measured_at=_now())
            section[k] = figures[k]["value"]
        print(f"[{name}] done in {detail['seconds']} s: " + ", ".join(f"{k}={section[k]}" for k in keys), flush=True)
    for fig in FIGURES:  # every required key is present, null with a reason when never measured
        if fig.key not in figures:
            figures[fig.key] = figure_entry(fig.key, None, reason="not run yet (python -m bench.run --only ...)",
                                            device=args.device, machine=where, measured_at=None)
            section[fig.key] = None
    section["generated_at"] = _now()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(existing if (partial or on_gpu) else section, indent=2, default=str) + "\n")
    tmp.replace(args.out)
    print()
    print(f"Machine: {where}")
    print(build_table(figures))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
