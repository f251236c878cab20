"""Item 4: latency of the metrics endpoint on a stored run of 200,000 points (full downsampled and incremental),
next to MLflow's bulk-interval query on the same losses.

The run is written through the worker's own ``StoreReporter`` (the production write path: batched inserts
and block rollups) into a fresh SQLite store; then ``uvicorn backend.main:app`` serves it and a keep-alive
HTTP client times ``GET /api/runs/{id}/metrics?max_points=2000`` and the incremental
``GET /api/runs/{id}/metrics?since_step=<last-100>&max_points=2000`` (request sent → body received).
The synthetic TR run rejects 10% of its steps. MLflow (when installed from bench/requirements.txt): the same
200,000 training losses logged into a local SQLite tracking store (``SqlAlchemyStore``, in process: no
server, no HTTP, which favours MLflow) and ``get_metric_history_bulk_interval(max_results=2000)`` timed.
"""
from __future__ import annotations

import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ApiServer, bench_environment, insert_run, open_store, temp_dir
from bench.timing import percentile, summarize

__all__ = ["measure_metrics_query", "measure_mlflow_bulk_interval", "synthetic_records", "fill_run"]

POINTS = 200_000


def synthetic_records(n: int, seed: int = 0):
    """TR-shaped step records: a decaying, noisy loss with occasional spikes."""
    rng = random.Random(seed)
    for step in range(1, n + 1):
        loss = 2.3 * math.exp(-step / 40_000) + 0.05 + 0.02 * rng.random()
        if rng.random() < 0.001:
            loss *= 5.0
        yield {"step": step, "backprops": 4 * step, "gradients": step, "hvps": 3 * step, "forwards": step,
               "epoch": step * 512 / 60_000, "wall_time": step * 0.008, "train_loss": loss,
               "grad_norm": 1.0 / math.sqrt(step), "step_norm": 0.01, "radius": 0.05 * (1 + rng.random()),
               "new_radius": 0.05, "rho": rng.random(), "cg_iterations": rng.randint(1, 10),
               "cg_exit": "boundary", "accepted": rng.random() < 0.9, "pred_decrease": 1e-3,
               "actual_decrease": 9e-4, "step_norm_m": 0.05}


def fill_run(engine: Any, n: int = POINTS) -> tuple[int, float]:
    """A completed run with ``n`` step records written by StoreReporter; returns (run id, seconds taken)."""
    from backend.runner.worker import StoreReporter

    config = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "tr-uniform"},
              "budget": {"backprops": 4 * n}, "device": "cpu"}
    run_id = insert_run(engine, config, status="running")
    reporter = StoreReporter(engine, run_id, threading.Event())
    t0 = time.perf_counter()
    reporter.on_start({"device": "cpu"})
    for rec in synthetic_records(n):
        reporter.on_step(rec)
    reporter.on_finish({"status": "completed", "message": "synthetic", "steps": n, "backprops": 4 * n})
    return run_id, time.perf_counter() - t0


def _time_requests(client: httpx.Client, url: str, params: dict[str, Any], n: int, check) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url, params=params)
        r.read()
        dt = time.perf_counter() - t0
        r.raise_for_status()
        check(r.json())
        out.append(dt)
    return out


def measure_metrics_query(*, requests: int = 100, points: int = POINTS) -> tuple[dict, dict, dict]:
    with temp_dir() as d:
        tmp = Path(d)
        engine = open_store(tmp)
        run_id, fill_seconds = fill_run(engine, points)
        engine.dispose()
        with ApiServer(tmp, env=bench_environment(tmp, TRUSTLAB_SCHEDULER="false")) as api, \
                httpx.Client(base_url=api.url, timeout=30.0) as client:
            url = f"/api/runs/{run_id}/metrics"
            full_params = {"max_points": 2000}

            def check_full(body: dict[str, Any]) -> None:
                if body["total"] != points or not 0 < len(body["points"]) <= 2000:
                    raise RuntimeError(f"unexpected metrics page: total {body['total']}, {len(body['points'])} points")

            inc_params = {"since_step": points - 100, "max_points": 2000}

            def check_inc(body: dict[str, Any]) -> None:
                if len(body["points"]) != 100:
                    raise RuntimeError(f"incremental fetch returned {len(body['points'])} points, expected 100")

            _time_requests(client, url, full_params, 5, check_full)  # warm-up (SQLite page cache, imports)
            _time_requests(client, url, inc_params, 5, check_inc)
            full, inc = [], []
            for _ in range(requests // 10):  # interleave the two kinds in rounds of 10
                full += _time_requests(client, url, full_params, 10, check_full)
                inc += _time_requests(client, url, inc_params, 10, check_inc)
            sample = client.get(url, params=full_params).json()
    ms = lambda xs: {k: (v * 1e3 if k != "n" else v) for k, v in summarize(xs).items()}  # noqa: E731
    details = {
        "points": points, "fill_seconds": fill_seconds, "requests_each": len(full),
        "full_ms": ms(full), "incremental_ms": ms(inc),
        "full_p50_ms": percentile(full, 50) * 1e3, "incremental_p50_ms": percentile(inc, 50) * 1e3,
        "returned_points_full": len(sample["points"]), "downsampled": sample["downsampled"],
        "client": "httpx keep-alive, same machine",
    }
    values = {"metrics_p95_ms": percentile(full, 95) * 1e3, "incremental_p95_ms": percentile(inc, 95) * 1e3}
    reasons: dict[str, str] = {}
    from bench.peers import peer_unavailable

    why = peer_unavailable("mlflow")
    if why:
        reasons["mlflow_bulk_interval_p95_ms"] = why
    else:
        peer = measure_mlflow_bulk_interval(points=points, requests=max(5, requests // 10))
        values["mlflow_bulk_interval_p95_ms"] = peer["p95_ms"]
        details["mlflow"] = peer
    return values, reasons, details


def measure_mlflow_bulk_interval(*, points: int = POINTS, requests: int = 20) -> dict[str, Any]:
    """p50/p95 of MLflow's ``get_metric_history_bulk_interval`` (max_results=2000) on ``points`` stored losses."""
    from mlflow.entities import Metric
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    with temp_dir() as d:
        tmp = Path(d)
        store = SqlAlchemyStore(f"sqlite:///{tmp / 'mlflow.db'}", str(tmp / "artifacts"))
        exp = store.create_experiment("bench")
        run = store.create_run(exp, user_id="bench", start_time=0, tags=[], run_name="tr")
        run_id = run.info.run_id
        t0 = time.perf_counter()
        batch: list[Any] = []
        for rec in synthetic_records(points):
            batch.append(Metric("train_loss", rec["train_loss"], 0, rec["step"]))
            if len(batch) == 1000:  # MLflow's log_batch limit per call
                store.log_batch(run_id, metrics=batch, params=[], tags=[])
                batch = []
        if batch:
            store.log_batch(run_id, metrics=batch, params=[], tags=[])
        fill = time.perf_counter() - t0
        times = []
        for i in range(requests + 2):
            t0 = time.perf_counter()
            got = store.get_metric_history_bulk_interval([run_id], "train_loss", 2000, None, None)
            dt = time.perf_counter() - t0
            if not 0 < len(got) <= 2002:
                raise RuntimeError(f"MLflow returned {len(got)} points")
            if i >= 2:  # two warm-up calls
                times.append(dt)
        store.engine.dispose()
    return {"p95_ms": percentile(times, 95) * 1e3, "p50_ms": percentile(times, 50) * 1e3, "requests": len(times),
            "fill_seconds": fill, "returned_points": len(got), "store": "SqlAlchemyStore on SQLite, in process"}
