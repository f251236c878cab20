"""Item: worker start-up, from process start to the first training step, with the dataset decode cache warm.

A run (Fashion-MNIST MLP, SGD, a budget of a few steps) is created in a fresh SQLite store and
``python -m backend.runner.worker RUN_ID`` started, ``repeats + 1`` times; the first start fills the decode cache
(``<data_dir>/cache``, as every worker start does) and is reported apart. The worker's training function is
``bench.hooks:timed_run``, which stamps each step; the figure is the median of (first step's wall-clock
time − the moment just before ``subprocess.Popen``). Also reported: the cold start (cache just emptied) and
each worker process's whole CPU time (a 3-step run: start-up dominates), which shared-machine load does not
inflate the way it inflates wall-clock time.
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO_DATA_DIR, REPO_ROOT, bench_environment, insert_run, open_store, temp_dir
from bench.hooks import TIMING_DIR_ENV
from bench.timing import median

__all__ = ["measure_worker_start"]


def _config() -> dict[str, Any]:
    return {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"}, "budget": {"backprops": 3},
            "batch_size": 128, "eval_every": 1_000_000, "eval_train_size": 1, "test_subset": 1, "seed": 0,
            "device": "cpu"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _start(engine: Any, env: dict[str, str], timing_dir: Path, cpu: list[float]) -> float:
    run_id = insert_run(engine, _config())
    before = set(timing_dir.iterdir())
    c0 = _children_cpu()
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "backend.runner.worker", str(run_id)], cwd=str(REPO_ROOT), env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}): {proc.stderr[-1500:]}")
    cpu.append(_children_cpu() - c0)
    new = [p for p in timing_dir.iterdir() if p not in before]
    if len(new) != 1:
        raise RuntimeError(f"worker wrote {len(new)} timing files; expected 1")
    steps = json.loads(new[0].read_text())["step_times"]
    if not steps:
        raise RuntimeError("the worker took no step")
    return float(steps[0][1]) - t0


def measure_worker_start(*, repeats: int = 5, device: str = "cpu") -> tuple[dict, dict, dict]:
    if device != "cpu":
        return ({}, {"worker_start_s": f"measured on the CPU only; asked for {device}"}, {})
    with temp_dir() as d:
        tmp = Path(d)
        data_dir = tmp / "data"  # a private data folder: its cache starts empty; the files come from the system
        timing_dir = tmp / "timings"
        timing_dir.mkdir()
        engine = open_store(tmp)
        env = bench_environment(tmp, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TRUSTLAB_TORCH_THREADS="1",
                                TRUSTLAB_DATA_DIR=str(data_dir), TRUSTLAB_TRAINER="bench.hooks:timed_run",
                                **{TIMING_DIR_ENV: str(timing_dir)})
        local = REPO_DATA_DIR
        if local.is_dir():  # datasets kept in the repository's data folder: use them, with a private cache
            for sub in local.iterdir():
                if sub.name != "cache":
                    (data_dir / sub.name).parent.mkdir(parents=True, exist_ok=True)
                    (data_dir / sub.name).symlink_to(sub)
        cpu_cold: list[float] = []
        cpu_warm: list[float] = []
        cold = _start(engine, env, timing_dir, cpu_cold)
        cached = sorted(p.name for p in (data_dir / "cache").glob("*.pt"))
        if not cached:
            raise RuntimeError(f"the worker wrote no decode cache under {data_dir / 'cache'}")
        warm = [_start(engine, env, timing_dir, cpu_warm) for _ in range(repeats)]
        shutil.rmtree(data_dir / "cache")
        cold_again = _start(engine, env, timing_dir, cpu_cold)
        engine.dispose()
    details = {"warm_seconds": warm, "cold_seconds": [cold, cold_again], "cache_files": cached,
               "warm_process_cpu_seconds": cpu_warm, "cold_process_cpu_seconds": cpu_cold,
               "what": "process start (Popen) → first step recorded, Fashion-MNIST MLP, 1 torch thread"}
    return {"worker_start_s": median(warm)}, {}, details
