"""Item: worker start-up, from asking for a run's worker process to its first training step, dataset decode cache warm.

A run (Fashion-MNIST MLP, SGD, a budget of a few steps, CPU, 1 torch thread) is created in a fresh SQLite store.
The worker's training function is ``bench.hooks:timed_run``, which stamps each step.

- ``worker_start_s`` (the product's start path, goal ≤ 1.5 s): a real ``LocalExecutor`` in this process starts
  its zygote (fork server; torch, the trainer and the dataset loaded once) and, once it is ready,
  ``executor.start(run_id)`` is called ``repeats`` times, one run after another; the figure is the median of
  (first step's wall-clock time − the moment just before ``executor.start``). That covers the request to the
  zygote, the fork, the child's set-up (session, log, memory limit, a fresh store engine, claiming the run)
  and the trainer's start on the already decoded dataset.
- ``worker_cold_start_s`` (no goal; what a fresh interpreter costs): ``python -m backend.runner.worker RUN_ID``
  started with ``subprocess`` (the path without a zygote), median of (first step − the moment just before
  Popen) with the cache warm. The very first such start fills the decode cache and is reported apart, as is
  one more start after emptying the cache.
- CPU seconds of each worker process (``wait4``'s rusage: forked children through the zygote, cold ones as this
  process's children), which shared-machine load inflates less than wall-clock time.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.harness import REPO_DATA_DIR, REPO_ROOT, bench_environment, insert_run, open_store, temp_dir
from bench.hooks import TIMING_DIR_ENV
from bench.timing import median

__all__ = ["measure_worker_start"]

_TRAINER = "bench.hooks:timed_run"


def _config() -> dict[str, Any]:
    return {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"}, "budget": {"backprops": 3},
            "batch_size": 128, "eval_every": 1_000_000, "eval_train_size": 1, "test_subset": 1, "seed": 0,
            "device": "cpu"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _first_step(timing_dir: Path, pid: int) -> float:
    path = timing_dir / f"{pid}.json"
    if not path.exists():
        raise RuntimeError(f"worker {pid} wrote no timing file {path.name}")
    steps = json.loads(path.read_text())["step_times"]
    if not steps:
        raise RuntimeError(f"worker {pid} took no step")
    return float(steps[0][1])


def _cold_start(engine: Any, env: dict[str, str], timing_dir: Path, cpu: list[float]) -> float:
    run_id = insert_run(engine, _config())
    c0 = _children_cpu()
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "backend.runner.worker", str(run_id)], cwd=str(REPO_ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}): {out[-1500:]}")
    cpu.append(_children_cpu() - c0)
    return _first_step(timing_dir, proc.pid) - t0


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` for the block: the executor hands its environment on to the zygote."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _zygote_starts(tmp: Path, data_dir: Path, timing_dir: Path, engine: Any, repeats: int) -> dict[str, Any]:
    """``repeats`` runs started through a real LocalExecutor's zygote: seconds to the first step, CPU, ready time."""
    from sqlalchemy import select

    from backend.runner.local import LocalExecutor
    from backend.runner.states import RunState
    from backend.runner.zygote import ForkedProcess
    from backend.settings import Settings
    from backend.tables import Run

    settings = Settings(var_dir=tmp / "var", database_url=f"sqlite:///{tmp / 'bench.db'}", data_dir=data_dir,
                        trainer=_TRAINER, warm_workers=0, warm_datasets="fashion-mnist", zygote=True,
                        max_concurrent_runs=1, torch_threads=1, gpus="")
    seconds: list[float] = []
    cpu: list[float] = []
    with _environ(**{TIMING_DIR_ENV: str(timing_dir)}):
        executor = LocalExecutor(settings, engine)
        try:
            t0 = time.monotonic()
            while not (executor.zygote is not None and executor.zygote.ready):
                executor.maintain()
                if executor.zygote is None and not executor._zygote_wanted():
                    raise RuntimeError("the zygote could not be started (see the log messages above)")
                if time.monotonic() - t0 > 300:
                    raise RuntimeError("the zygote was not ready within 300 s")
                time.sleep(0.02)
            ready_s = time.monotonic() - t0
            for _ in range(repeats):
                run_id = insert_run(engine, _config(), status="running")
                t_ask = time.time()
                executor.start(run_id, _config())
                child = executor.jobs[run_id].proc
                if not isinstance(child, ForkedProcess):
                    raise RuntimeError(f"run {run_id} was not forked by the zygote")
                deadline = time.monotonic() + 300
                while not (exits := executor.poll()):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"run {run_id} did not end within 300 s")
                    time.sleep(0.01)
                if child.returncode != 0:
                    raise RuntimeError(f"forked worker failed: {exits[0].reason}\n{exits[0].log_tail[-1500:]}")
                seconds.append(_first_step(timing_dir, child.pid) - t_ask)
                cpu.append(child.cpu_seconds or 0.0)
                with engine.connect() as conn:
                    status = conn.scalar(select(Run.status).where(Run.id == run_id))
                if status != RunState.COMPLETED:
                    raise RuntimeError(f"forked run {run_id} ended {status}")
            info = executor.zygote.ready_info
        finally:
            executor.shutdown(5.0)
    return {"seconds": seconds, "cpu": cpu, "ready_s": ready_s, "ready_info": info}


def measure_worker_start(*, repeats: int = 5, device: str = "cpu") -> tuple[dict, dict, dict]:
    if device != "cpu":
        return ({}, {"worker_start_s": f"measured on the CPU only; asked for {device}"}, {})
    cold_repeats = max(1, min(3, repeats))
    with temp_dir() as d:
        tmp = Path(d)
        data_dir = tmp / "data"  # a private data folder: its cache starts empty; the files come from the system
        timing_dir = tmp / "timings"
        timing_dir.mkdir()
        engine = open_store(tmp)
        env = bench_environment(tmp, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TRUSTLAB_TORCH_THREADS="1",
                                TRUSTLAB_DATA_DIR=str(data_dir), TRUSTLAB_TRAINER=_TRAINER,
                                **{TIMING_DIR_ENV: str(timing_dir)})
        local = REPO_DATA_DIR
        if local.is_dir():  # datasets kept in the repository's data folder: use them, with a private cache
            for sub in local.iterdir():
                if sub.name != "cache":
                    (data_dir / sub.name).parent.mkdir(parents=True, exist_ok=True)
                    (data_dir / sub.name).symlink_to(sub)
        cpu_cold: list[float] = []
        cpu_cold_cache: list[float] = []
        first = _cold_start(engine, env, timing_dir, cpu_cold_cache)
        cached = sorted(p.name for p in (data_dir / "cache").glob("*.pt"))
        if not cached:
            raise RuntimeError(f"the worker wrote no decode cache under {data_dir / 'cache'}")
        forked = _zygote_starts(tmp, data_dir, timing_dir, engine, repeats)
        cold = [_cold_start(engine, env, timing_dir, cpu_cold) for _ in range(cold_repeats)]
        shutil.rmtree(data_dir / "cache")
        cold_empty_cache = _cold_start(engine, env, timing_dir, cpu_cold_cache)
        engine.dispose()
    details = {
        "what": "worker_start_s: LocalExecutor.start() asks its ready zygote for the run's process (fork) → first "
                "training step recorded, median of sequential runs; worker_cold_start_s: Popen of `python -m "
                "backend.runner.worker RUN_ID` → first step, median; both Fashion-MNIST MLP, SGD, CPU, 1 torch "
                "thread, decode cache warm",
        "zygote_seconds": forked["seconds"], "zygote_process_cpu_seconds": forked["cpu"],
        "zygote_ready_s": round(forked["ready_s"], 3), "zygote_ready": forked["ready_info"],
        "cold_seconds": cold, "cold_process_cpu_seconds": cpu_cold,
        "cold_cache_empty_seconds": [first, cold_empty_cache], "cold_cache_empty_process_cpu_seconds": cpu_cold_cache,
        "cache_files": cached,
    }
    return {"worker_start_s": median(forked["seconds"]), "worker_cold_start_s": median(cold)}, {}, details
