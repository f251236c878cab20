"""Item 3: one first-order epoch through ``python -m backend.runner.worker`` and the store, versus the same loop without
the store reporter, a bare PyTorch loop, and the same loop logging to the peers (TensorBoard, MLflow).

Kinds of process, each started fresh, alternated, ``repeats`` times (bare, trainer and worker ``store_repeats``
times, default 3 x ``repeats``: the headline pair gets more samples):
  * bare: ``python -m bench.bare_loop bare`` — the reference loop;
  * trainer: ``python -m bench.bare_loop trainer`` — ``trainer.run`` with a reporter that drops records;
  * worker: ``python -m backend.runner.worker RUN_ID`` on a run created in a SQLite store, with the real
    StoreReporter; the worker's training function is ``bench.hooks:timed_run`` (``trainer.run`` plus timestamps);
  * tensorboard, mlflow: ``python -m bench.bare_loop <peer>`` — ``trainer.run`` logging every numeric field of
    every record to that tool (bench/peers.py; skipped, with the reason, when it is not installed).
Headline ratios: CPU time of the training phase with a logger over the same ``trainer.run`` loop without one
(``trainer``): ``logging_overhead_ratio`` (the store), ``tensorboard_overhead_ratio``, ``mlflow_overhead_ratio``.
The time compared is the training phase: from data and model ready (the trainer's ``on_start``) to the end
of training including the final store write (``on_finish`` returned) — not the process start-up (importing
torch, SQLAlchemy, reading the dataset), which is reported separately as whole-process times. The summary's
``wall_time`` is not used: it excludes logging by design. The headline ratio uses the process CPU time of that
phase (median over repeats): on a shared 2-core machine the wall clock of a one-second phase swings by tens
of percent with other people's load, while CPU time counts the work done, including the store writes (SQLite
in WAL mode with synchronous=NORMAL does not wait for the disk on commit). The wall-clock ratio is reported
beside it. All processes use one torch thread, as the
scheduler gives each run on a 2-core machine. Evaluation is shrunk to one sample (it is not training).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.bare_loop import overhead_config
from bench.harness import REPO_ROOT, bench_environment, insert_run, open_store, temp_dir
from bench.hooks import TIMING_DIR_ENV
from bench.peers import PEERS, peer_unavailable
from bench.timing import median

__all__ = ["measure_logging_overhead"]


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(REPO_ROOT), env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return time.perf_counter() - t0


def measure_logging_overhead(*, repeats: int = 5, store_repeats: int | None = None,
                             device: str = "cpu") -> tuple[dict, dict, dict]:
    """``repeats`` rounds of every kind; the bare, trainer and worker kinds (about 4 s each) run in
    ``store_repeats`` rounds (default 3 x ``repeats``): the headline compares two ~0.45 s phases whose CPU time
    swings by a few percent from run to run on a shared machine, so it gets more samples than the peers."""
    store_repeats = max(repeats, 3 * repeats if store_repeats is None else store_repeats)
    if device != "cpu":
        return ({}, {"logging_overhead_ratio": f"measured on the CPU only (the worker comparison is about "
                                               f"logging, not the device); asked for {device}"}, {})
    with temp_dir() as d:
        tmp = Path(d)
        timing_dir = tmp / "timings"
        timing_dir.mkdir()
        engine = open_store(tmp)
        env = bench_environment(tmp, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TRUSTLAB_TORCH_THREADS="1",
                                TRUSTLAB_TRAINER="bench.hooks:timed_run", **{TIMING_DIR_ENV: str(timing_dir)})
        py = sys.executable
        skipped = {peer: why for peer in PEERS if (why := peer_unavailable(peer))}
        kinds = ("bare", "trainer", "worker", *(p for p in PEERS if p not in skipped))
        rows: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for i in range(store_repeats + 1):  # the first round warms the page cache and is dropped
            round_kinds = kinds if i <= repeats else ("bare", "trainer", "worker")
            order = round_kinds if i % 2 == 0 else tuple(reversed(round_kinds))
            for kind in order:
                out = tmp / f"{kind}-{i}.json"
                if kind == "worker":
                    run_id = insert_run(engine, overhead_config())
                    cmd = [py, "-m", "backend.runner.worker", str(run_id)]
                    before = set(timing_dir.iterdir())
                    wall = _run(cmd, env)
                    new = [p for p in timing_dir.iterdir() if p not in before]
                    if len(new) != 1:
                        raise RuntimeError(f"worker wrote {len(new)} timing files; expected 1")
                    t = json.loads(new[0].read_text())
                    rec = {"train_seconds": t["train_seconds"], "train_cpu_seconds": t["train_cpu_seconds"],
                           "final_train_loss": t["last_minibatch_loss"],
                           "steps": t["summary"]["steps"], "store_flush_seconds": t["store_flush_seconds"],
                           "records_written": t["records_written"], "status": t["summary"]["status"]}
                else:
                    wall = _run([py, "-m", "bench.bare_loop", kind, str(out), "--threads", "1",
                                 "--data-dir", env["TRUSTLAB_DATA_DIR"], "--log-dir", str(tmp / f"{kind}-log-{i}")],
                                env)
                    rec = json.loads(out.read_text())
                rec["process_seconds"] = wall
                if i > 0:
                    rows[kind].append(rec)
        engine.dispose()
    med = {k: median([r["train_seconds"] for r in v]) for k, v in rows.items()}
    cpu = {k: median([r["train_cpu_seconds"] for r in v]) for k, v in rows.items()}
    proc = {k: median([r["process_seconds"] for r in v]) for k, v in rows.items()}
    same = len({round(r["final_train_loss"], 6) for v in rows.values() for r in v}) == 1
    details = {
        "what": "training phase (data and model ready → training done, store flushed); 1 epoch, batch 128, SGD",
        "repeats": repeats, "torch_threads": 1,
        "median_train_cpu_seconds": cpu, "median_train_seconds": med, "median_process_seconds": proc,
        "worker_over_bare": cpu["worker"] / cpu["bare"],
        "trainer_over_bare": cpu["trainer"] / cpu["bare"],
        "worker_over_trainer": cpu["worker"] / cpu["trainer"],
        "worker_over_trainer_paired_median": median([w["train_cpu_seconds"] / t["train_cpu_seconds"]
                                                     for w, t in zip(rows["worker"], rows["trainer"])]),
        "store_repeats": store_repeats,
        "wall_worker_over_bare": med["worker"] / med["bare"],
        "wall_trainer_over_bare": med["trainer"] / med["bare"],
        "whole_process_worker_over_bare": proc["worker"] / proc["bare"],
        "same_final_loss_everywhere": same,
        "median_store_flush_seconds": median([r["store_flush_seconds"] or 0.0 for r in rows["worker"]]),
        "records_written": rows["worker"][0]["records_written"] if rows["worker"] else None,
        "runs": rows,
    }
    values = {"logging_overhead_ratio": details["worker_over_trainer"],
              "logging_overhead_wall_ratio": med["worker"] / med["trainer"]}
    reasons = {}
    for peer in PEERS:
        if peer in skipped:
            reasons[f"{peer}_overhead_ratio"] = skipped[peer]
        else:
            values[f"{peer}_overhead_ratio"] = cpu[peer] / cpu["trainer"]
            details[f"{peer}_over_trainer"] = values[f"{peer}_overhead_ratio"]
    details["skipped_peers"] = skipped
    details["headline"] = "CPU time of the training phase with the logger / the same trainer.run loop without one"
    return values, reasons, details
