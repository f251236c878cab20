"""Item ``launch``: seconds from ``POST /api/runs`` to the run's first point visible through the API.

A real API (uvicorn, SQLite store, local executor with its defaults: CPU runs forked by its zygote, 3 run
slots) first starts two long background runs (TR RMSprop, Fashion-MNIST MLP) that keep training throughout.
Then ``launches`` small runs (SGD on the MLP, 40 steps) are launched one after another; for each, a client
polls ``GET /api/runs/{id}/metrics`` every 20 ms and notes when the first point appears. Between launches
the bench waits for the run to finish and ``settle`` seconds more (a user does not launch every second).
The background runs are cancelled at the end. ``zygote=False`` measures the warm-pool path instead.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from backend.runner.states import TERMINAL_STATES, RunState
from bench.harness import ApiServer, bench_environment, temp_dir
from bench.timing import median, percentile

__all__ = ["measure_launch"]

_BACKGROUND = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "tr-rmsprop"},
               "budget": {"seconds": 3600}, "device": "cpu", "eval_every": 1000}
_LAUNCH = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"}, "budget": {"backprops": 40},
           "device": "cpu", "eval_every": 1000, "test_subset": 1000, "eval_train_size": 1000}


def _first_point(http: httpx.Client, run_id: int, timeout: float, poll: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if http.get(f"/api/runs/{run_id}/metrics", params={"max_points": 2}).json()["total"] > 0:
            return time.monotonic() - t0
        time.sleep(poll)
    run = http.get(f"/api/runs/{run_id}").json()
    raise RuntimeError(f"run {run_id} showed no point within {timeout} s (status {run['status']}: {run['error']})")


def _wait_final(http: httpx.Client, run_id: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = http.get(f"/api/runs/{run_id}").json()
        if run["status"] in TERMINAL_STATES:
            return run
        time.sleep(0.1)
    raise RuntimeError(f"run {run_id} did not finish within {timeout} s")


def measure_launch(*, launches: int = 10, settle: float = 6.0, poll: float = 0.02, port: int | None = None,
                   warm_workers: int | None = None, zygote: bool = True) -> tuple[dict, dict, dict]:
    with temp_dir() as d:
        tmp = Path(d)
        extra = {"TRUSTLAB_MAX_CONCURRENT_RUNS": "3"}
        if warm_workers is not None:
            extra["TRUSTLAB_WARM_WORKERS"] = str(warm_workers)
        if not zygote:
            extra["TRUSTLAB_ZYGOTE"] = "0"
        with ApiServer(tmp, env=bench_environment(tmp, **extra), port=port) as api, \
                httpx.Client(base_url=api.url, timeout=30) as http:
            time.sleep(settle * 2)  # the API has just started its zygote (or warm pool)
            background = [http.post("/api/runs", json={**_BACKGROUND, "seed": s}).json()["id"] for s in (1, 2)]
            for run_id in background:
                _first_point(http, run_id, 120.0, 0.1)
            time.sleep(settle * 2)  # without the zygote they took the warm workers; the pool refills
            seconds = []
            for i in range(launches):
                r = http.post("/api/runs", json={**_LAUNCH, "seed": 10 + i})
                r.raise_for_status()
                run_id = r.json()["id"]
                seconds.append(_first_point(http, run_id, 120.0, poll))
                run = _wait_final(http, run_id)
                if run["status"] != RunState.COMPLETED:
                    raise RuntimeError(f"run {run_id} ended {run['status']}: {run['error']}")
                time.sleep(settle)
            still = [http.get(f"/api/runs/{b}").json()["status"] for b in background]
            for run_id in background:
                http.post(f"/api/runs/{run_id}/cancel")
            for run_id in background:
                _wait_final(http, run_id)
    values = {"launch_to_first_point_p50_s": median(seconds), "launch_to_first_point_p95_s": percentile(seconds, 95)}
    return values, {}, {"launch_seconds": [round(s, 3) for s in seconds], "launches": launches, "background_runs": 2,
                        "background_status_during": still, "settle_s": settle, "poll_s": poll,
                        "start_path": "zygote (fork server)" if zygote else "warm pool"}
